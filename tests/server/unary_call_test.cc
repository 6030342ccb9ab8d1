// The hand-written response framing (FrameResponseWithPayload) against
// protobuf's own parser and serializer, and the output payload of a call.
#include "server/unary_call.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace convserve {
namespace {

// The bytes of `buffer`, and how many slices held them.
std::string Flatten(const grpc::ByteBuffer& buffer, size_t* slice_count = nullptr) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  if (slice_count != nullptr) *slice_count = slices.size();
  return bytes;
}

// `count` distinct floats in a malloc'ed payload, and the same as bytes.
OutputPayload MakePayload(size_t count, std::string* bytes) {
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) values[i] = static_cast<float>(i) * 0.25f - 7.0f;
  bytes->assign(reinterpret_cast<const char*>(values.data()), count * sizeof(float));
  OutputPayload payload(static_cast<char*>(std::malloc(count * sizeof(float) + 1)));
  std::memcpy(payload.get(), bytes->data(), bytes->size());
  return payload;
}

v1::Tensor OutputWithoutData(size_t count) {
  v1::Tensor output;
  output.add_shape(1);
  output.add_shape(static_cast<int64_t>(count));
  output.set_element_type(v1::ELEMENT_TYPE_FLOAT32);
  return output;
}

// `framed` (which parsed as `parsed`) is what protobuf writes for `whole`.
// An empty payload is the one difference: proto3 leaves an empty bytes field
// out, the frame writes it with length 0, which parses the same.
void ExpectSameBytes(const std::string& framed, const google::protobuf::Message& whole,
                     const google::protobuf::Message& parsed, size_t count) {
  if (count > 0) {
    EXPECT_TRUE(framed == whole.SerializeAsString());
  } else {
    EXPECT_TRUE(parsed.SerializeAsString() == whole.SerializeAsString());
  }
}

// Float counts around every length the varints change at: 0, 1, 31 / 32
// floats (127 / 128 bytes), 127 / 128, 4095 / 4096 (16383 / 16384 bytes),
// 16383 / 16384, and 524287 / 524288 (2^21 bytes).
const size_t kCounts[] = {0, 1, 2, 31, 32, 127, 128, 4095, 4096, 16383, 16384, 524287, 524288};

// Frames a `Response` (ConvResponse or RunModelResponse) of every size in
// kCounts, with and without the rest of the message that `fill_rest`
// writes, and holds the bytes to protobuf's own parser and serializer.
template <typename Response>
void ExpectFramingMatchesProtobuf(void (*fill_rest)(Response*)) {
  for (size_t count : kCounts) {
    for (bool with_rest : {true, false}) {
      SCOPED_TRACE(testing::Message() << count << " floats, rest " << with_rest);
      std::string payload_bytes;
      OutputPayload payload = MakePayload(count, &payload_bytes);
      const char* payload_address = payload.get();
      const v1::Tensor output = OutputWithoutData(count);
      Response rest;
      if (with_rest) fill_rest(&rest);
      grpc::ByteBuffer buffer;
      ASSERT_TRUE(
          FrameResponseWithPayload(output, rest, std::move(payload), payload_bytes.size(), &buffer)
              .ok());
      size_t slices = 0;
      const std::string bytes = Flatten(buffer, &slices);
      EXPECT_EQ(slices, with_rest ? 3u : 2u);

      Response parsed;
      ASSERT_TRUE(parsed.ParseFromString(bytes));
      ASSERT_TRUE(parsed.has_output());
      EXPECT_THAT(parsed.output().shape(), testing::ElementsAre(1, static_cast<int64_t>(count)));
      EXPECT_EQ(parsed.output().element_type(), v1::ELEMENT_TYPE_FLOAT32);
      EXPECT_TRUE(parsed.output().data() == payload_bytes);

      // Every field as sent, and byte for byte what protobuf writes for the
      // whole message.
      Response whole = rest;
      *whole.mutable_output() = output;
      whole.mutable_output()->set_data(payload_bytes);
      EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(parsed, whole));
      ExpectSameBytes(bytes, whole, parsed, count);

      // The payload travels as its own slice, not copied.
      std::vector<grpc::Slice> dumped;
      ASSERT_TRUE(buffer.Dump(&dumped).ok());
      if (count > 0) {
        EXPECT_EQ(reinterpret_cast<const char*>(dumped[1].begin()), payload_address);
      }
    }
  }
}

TEST(FrameResponseWithPayloadTest, ConvResponseParsesBackAndMatchesTheGeneratedBytes) {
  ExpectFramingMatchesProtobuf<v1::ConvResponse>([](v1::ConvResponse* rest) {
    rest->set_compute_time_ns(1234567890123);
    rest->set_kernel("igemm-f32-avx2-6x16");
  });
}

TEST(FrameResponseWithPayloadTest, RunModelResponseParsesBackAndMatchesTheGeneratedBytes) {
  ExpectFramingMatchesProtobuf<v1::RunModelResponse>(
      [](v1::RunModelResponse* rest) { rest->set_compute_time_ns(99); });
}

// A call without gRPC behind it: enough for its payload and serialization,
// which touch neither the context nor the reactor.
const grpc::ByteBuffer kNoRequest;

class DetachedCall final : public UnaryCall {
 public:
  explicit DetachedCall(grpc::ByteBuffer* response_bytes)
      : UnaryCall("Test", nullptr, &kNoRequest, response_bytes, /*observer=*/nullptr) {}
  ~DetachedCall() override = default;

  v1::ConvResponse response;

  grpc::Status SerializeResponse(grpc::ByteBuffer* out) override {
    const v1::Tensor output = std::move(*response.mutable_output());
    response.clear_output();
    return SerializeWithPayload(output, response, out);
  }
};

TEST(UnaryCallTest, PrepareOutputPayloadIsAlignedAndBecomesTheResponseData) {
  grpc::ByteBuffer buffer;
  DetachedCall call(&buffer);
  float* values = call.PrepareOutputPayload({2, 3, 5}, call.response.mutable_output());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(values) % 64, 0u);
  EXPECT_TRUE(call.response.output().data().empty());  // kept apart from the message
  for (int i = 0; i < 30; ++i) values[i] = static_cast<float>(i) - 10.5f;
  call.response.set_kernel("reference");
  ASSERT_TRUE(call.SerializeResponse(&buffer).ok());

  v1::ConvResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(Flatten(buffer)));
  EXPECT_THAT(parsed.output().shape(), testing::ElementsAre(2, 3, 5));
  EXPECT_EQ(parsed.output().element_type(), v1::ELEMENT_TYPE_FLOAT32);
  ASSERT_EQ(parsed.output().data().size(), 30 * sizeof(float));
  float received[30];
  std::memcpy(received, parsed.output().data().data(), sizeof(received));
  for (int i = 0; i < 30; ++i) EXPECT_EQ(received[i], static_cast<float>(i) - 10.5f);
  EXPECT_EQ(parsed.kernel(), "reference");
}

}  // namespace
}  // namespace convserve
