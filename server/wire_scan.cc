// wire_scan.cc: a top-level field count over a ByteBuffer, with protobuf's own reader.
#include "server/wire_scan.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <climits>

namespace convserve {

int64_t CountTopLevelField(const grpc::ByteBuffer& bytes, int field_number) {
  using google::protobuf::internal::WireFormatLite;
  grpc::ByteBuffer copy(bytes);  // shares the slices
  grpc::ProtoBufferReader reader(&copy);
  google::protobuf::io::CodedInputStream input(&reader);
  input.SetTotalBytesLimit(INT_MAX);
  int64_t count = 0;
  for (;;) {
    const uint32_t tag = input.ReadTag();
    // 0: the end of the bytes (at a field boundary), or malformed bytes.
    if (tag == 0) return input.ConsumedEntireMessage() ? count : -1;
    if (WireFormatLite::GetTagFieldNumber(tag) == field_number) ++count;
    if (!WireFormatLite::SkipField(&input, tag)) return -1;
  }
}

}  // namespace convserve
