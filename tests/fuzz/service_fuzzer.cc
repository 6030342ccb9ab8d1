// libFuzzer target for the gRPC boundary: arbitrary bytes as each method's request, through the
// real service.
//
// The first byte picks the method; the rest is sent as its serialized request
// over an in-process channel (inprocess_service.h), so gRPC's raw-bytes
// methods, the parsing, every handler, the compute pool and the response
// framing all see it. Half the Conv inputs are built structurally instead
// (fuzz_requests.h), to get past the parser into the deep paths. Fails on a
// crash, a sanitizer report, a hang, an unexpected status code, a status
// message above 1 KiB or an OK response that does not parse.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <string>

#include "convserve/v1/convserve.pb.h"
#include "tests/fuzz/fuzz_requests.h"
#include "tests/fuzz/inprocess_service.h"

namespace {

using convserve::fuzz::InProcessService;

template <typename Response>
bool Parses(grpc::ByteBuffer* bytes) {
  Response response;
  return grpc::SerializationTraits<Response>::Deserialize(bytes, &response).ok();
}

// Whether an OK response to `method` (an index into kMethods) parses as its type.
bool ResponseParses(int method, grpc::ByteBuffer* bytes) {
  namespace v1 = convserve::v1;
  switch (method) {
    case 0:
      return Parses<v1::ConvResponse>(bytes);
    case 1:
      return Parses<v1::ValidateShapeResponse>(bytes);
    case 2:
      return Parses<v1::LoadModelResponse>(bytes);
    case 3:
      return Parses<v1::RunModelResponse>(bytes);
    case 4:
      return Parses<v1::UnloadModelResponse>(bytes);
    case 5:
      return Parses<v1::ListModelsResponse>(bytes);
    default:
      return Parses<v1::GetServerInfoResponse>(bytes);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  FuzzedDataProvider data(bytes, size);
  const int method = data.ConsumeIntegralInRange(0, convserve::fuzz::kMethodCount - 1);
  std::string request;
  if (method == 0 && data.ConsumeBool()) {
    convserve::v1::ConvRequest conv;
    convserve::fuzz::FillLayer(data, conv.mutable_layer());
    convserve::fuzz::FillInput(data, conv.mutable_input());
    convserve::fuzz::FillParameters(data, conv.layer(), conv.mutable_weight(), conv.mutable_bias());
    request = conv.SerializeAsString();
  } else {
    request = data.ConsumeRemainingBytesAsString();
  }
  InProcessService& service = InProcessService::Get();
  grpc::ByteBuffer response;
  const grpc::Status status = service.Call(convserve::fuzz::kMethods[method], request, &response);
  if (!convserve::fuzz::IsExpectedCode(status.error_code())) __builtin_trap();
  if (status.error_message().size() > 1024) __builtin_trap();
  if (status.ok() && !ResponseParses(method, &response)) __builtin_trap();
  if (method == 2 && status.ok()) service.UnloadAll();
  return 0;
}
