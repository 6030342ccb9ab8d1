// libFuzzer target for model loading: a LoadModel of fuzzed layers, then RunModel on it, through
// the real service.
//
// Builds a LoadModelRequest of one to four layers (fuzz_requests.h; usually
// each layer's in_channels follows the previous out_channels so that whole
// models load), loads it over the in-process channel, runs it on a fuzzed
// input, lists and unloads it. Fails on a crash, a sanitizer report, a hang,
// an unexpected status code, a status message above 1 KiB, an OK RunModel
// whose output is not the shape of the last layer's, or a model that stays
// loaded after UnloadModel.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <string>

#include "convserve/v1/convserve.pb.h"
#include "tests/fuzz/fuzz_requests.h"
#include "tests/fuzz/inprocess_service.h"

namespace {

using convserve::fuzz::InProcessService;
using convserve::fuzz::kMethods;
namespace v1 = convserve::v1;

// A model name: proto3 strings must be UTF-8, so ASCII only, control
// characters included (a name with a newline must not forge a log line).
std::string Name(FuzzedDataProvider& data, size_t max_length) {
  std::string name = data.ConsumeRandomLengthString(max_length);
  for (char& c : name) c = static_cast<char>(c & 0x7f);
  return name;
}

void Check(const grpc::Status& status) {
  if (!convserve::fuzz::IsExpectedCode(status.error_code())) __builtin_trap();
  if (status.error_message().size() > 1024) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  FuzzedDataProvider data(bytes, size);
  v1::LoadModelRequest load;
  load.set_name(data.ConsumeBool() ? "m" : Name(data, 64));
  load.set_replace(data.ConsumeBool());
  const int layers = data.ConsumeIntegralInRange(1, 4);
  for (int i = 0; i < layers; ++i) {
    v1::ModelLayer* layer = load.add_layers();
    convserve::fuzz::FillLayer(data, layer->mutable_layer());
    if (i > 0 && data.ConsumeIntegralInRange(0, 7) != 0) {
      const v1::ConvLayer& previous = load.layers(i - 1).layer();
      layer->mutable_layer()->set_in_channels(previous.out_channels());
      layer->mutable_layer()->set_spatial_rank(previous.spatial_rank());
      layer->mutable_layer()->set_data_layout(previous.data_layout());
    }
    convserve::fuzz::FillParameters(data, layer->layer(), layer->mutable_weight(),
                                    layer->mutable_bias());
  }
  v1::RunModelRequest run;
  run.set_name(data.ConsumeBool() ? load.name() : Name(data, 16));
  convserve::fuzz::FillInput(data, run.mutable_input());

  InProcessService& service = InProcessService::Get();
  grpc::ByteBuffer response;
  const grpc::Status loaded = service.Call(kMethods[2], load.SerializeAsString(), &response);
  Check(loaded);
  const grpc::Status ran = service.Call(kMethods[3], run.SerializeAsString(), &response);
  Check(ran);
  if (ran.ok()) {
    v1::RunModelResponse output;
    if (!grpc::SerializationTraits<v1::RunModelResponse>::Deserialize(&response, &output).ok()) {
      __builtin_trap();
    }
    int64_t elements = 1;
    for (int64_t dim : output.output().shape()) elements *= dim;
    if (static_cast<int64_t>(output.output().data().size()) != elements * 4) __builtin_trap();
  }
  if (loaded.ok()) {
    v1::UnloadModelRequest unload;
    unload.set_name(load.name());
    Check(service.Call(kMethods[4], unload.SerializeAsString(), &response));
    service.Call(kMethods[5], "", &response);
    v1::ListModelsResponse listed;
    if (!grpc::SerializationTraits<v1::ListModelsResponse>::Deserialize(&response, &listed).ok()) {
      __builtin_trap();
    }
    for (const v1::ModelInfo& model : listed.models()) {
      if (model.name() == load.name()) __builtin_trap();
    }
  }
  return 0;
}
