// wire_scan.h: counting a field in a request's wire bytes before they are parsed.
//
// Parsing allocates one object per sub-message: a LoadModelRequest of two
// million 28-byte layers is a 56 MB message that parses into gigabytes. A
// scan of the wire bytes counts the layers first, without allocating, so a
// request above --max_layers_per_model is refused before it is parsed.
#ifndef CONVSERVE_SERVER_WIRE_SCAN_H_
#define CONVSERVE_SERVER_WIRE_SCAN_H_

#include <grpcpp/support/byte_buffer.h>

#include <cstdint>

namespace convserve {

// How many times field `field_number` occurs at the top level of the
// protobuf message serialized in `bytes` (nested messages are skipped, not
// read), or -1 if the bytes are not a well-formed message (the parser then
// says what is wrong). Reads the bytes once, allocates nothing per field.
int64_t CountTopLevelField(const grpc::ByteBuffer& bytes, int field_number);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_WIRE_SCAN_H_
