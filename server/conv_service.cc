#include "server/conv_service.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/conv.h"
#include "core/geometry.h"
#include "core/tensor_shape.h"
#include "core/validator.h"
#include "server/convert.h"
#include "server/status_mapping.h"

namespace convserve {
namespace {

using Clock = std::chrono::steady_clock;

// Room for everything in a response besides the output payload (shape,
// field tags, timings, kernel name).
constexpr int64_t kResponseOverheadBytes = 4096;

// a * b, or nullopt-like -1 on overflow (all operands are >= 0 here).
int64_t SaturatingMultiply(int64_t a, int64_t b) {
  int64_t product = 0;
  if (__builtin_mul_overflow(a, b, &product)) return -1;
  return product;
}

int64_t Macs(const ConvGeometry& geometry) {
  int64_t macs = 1;
  for (int64_t factor : {geometry.batch, geometry.out_channels, geometry.output_spatial_size(),
                         geometry.in_channels_per_group(), geometry.kernel_size()}) {
    macs = SaturatingMultiply(macs, factor);
    if (macs < 0) return -1;
  }
  return macs;
}

std::string DescribeWeightShape(const ConvSpec& spec) {
  return spec.weight_layout == WeightLayout::kOutInSpatial
             ? "(C_out, C_in/groups, *kernel) for the layer"
             : "(*kernel, C_in/groups, C_out) for the layer";
}

// A layer with its weights, decoded and checked against each other.
struct DecodedLayer {
  ConvSpec spec;
  FloatTensor weight;
  FloatTensor bias;  // empty without bias
};

absl::StatusOr<ConvSpec> DecodeSpec(const std::string& prefix, bool has_layer,
                                    const v1::ConvLayer& layer) {
  if (!has_layer) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "layer: expected a layer description, got none (the field is missing)"));
  }
  return ToConvSpec(prefix + "layer", layer);
}

// Decodes a layer's weight and bias tensors and checks them against `spec`;
// `prefix` names the fields ("" for Conv, "layers[1]." for LoadModel).
absl::StatusOr<DecodedLayer> DecodeWeights(const std::string& prefix, const ConvSpec& spec,
                                           bool has_weight, const v1::Tensor& weight, bool has_bias,
                                           const v1::Tensor& bias) {
  DecodedLayer decoded;
  decoded.spec = spec;
  absl::StatusOr<ResolvedLayer> resolved = ResolveLayer(decoded.spec);
  if (!resolved.ok()) return resolved.status();
  const std::vector<int64_t>* weight_shape = &resolved->weight_shape;
  absl::StatusOr<FloatTensor> weight_tensor = DecodeTensor(prefix + "weight", has_weight, weight);
  if (!weight_tensor.ok()) return weight_tensor.status();
  absl::Status shape_ok = CheckShape(prefix + "weight", *weight_shape,
                                     DescribeWeightShape(decoded.spec), weight_tensor->shape);
  if (!shape_ok.ok()) return shape_ok;
  decoded.weight = *std::move(weight_tensor);

  if (decoded.spec.bias) {
    absl::StatusOr<FloatTensor> bias_tensor = DecodeTensor(prefix + "bias", has_bias, bias);
    if (!bias_tensor.ok()) {
      if (!has_bias) {
        return absl::InvalidArgumentError(absl::StrCat(prefix, "bias: expected a tensor of shape [",
                                                       decoded.spec.out_channels, "] because ",
                                                       prefix, "layer.bias is true, got none"));
      }
      return bias_tensor.status();
    }
    shape_ok =
        CheckShape(prefix + "bias", {decoded.spec.out_channels}, "(C_out)", bias_tensor->shape);
    if (!shape_ok.ok()) return shape_ok;
    decoded.bias = *std::move(bias_tensor);
  } else if (has_bias) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "bias: expected no tensor because ", prefix,
                     "layer.bias is false, got one of shape ",
                     ShapeToString({bias.shape().begin(), bias.shape().end()})));
  }
  return decoded;
}

}  // namespace

void UnaryCall::Complete(const absl::Status& status, bool caller_fault) {
  absl::Status result = status;
  if (result.ok()) {
    const grpc::Status serialized = SerializeResponse(response_bytes_);
    if (!serialized.ok()) {
      result = absl::InternalError("response: serialization failed: " + serialized.error_message());
    }
  }
  if (!result.ok()) {
    const std::string code_name = absl::StatusCodeToString(result.code());
    const std::string message(result.message());
    if (caller_fault || IsClientError(result.code())) {
      spdlog::warn("{} from {} failed: {}: {}", method_, context_->peer(), code_name, message);
    } else {
      spdlog::error("{} from {} failed: {}: {}", method_, context_->peer(), code_name, message);
    }
  } else {
    spdlog::debug("{} from {} ok", method_, context_->peer());
  }
  Finish(ToGrpcStatus(result));
}

float* UnaryCall::PrepareOutputPayload(const std::vector<int64_t>& shape, v1::Tensor* tensor) {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  tensor->mutable_shape()->Assign(shape.begin(), shape.end());
  tensor->set_element_type(v1::ELEMENT_TYPE_FLOAT32);
  tensor->clear_data();
  const size_t bytes = static_cast<size_t>(count) * sizeof(float);
  constexpr size_t kAlignment = 64;  // a cache line, and AVX-512's vector
  void* memory = std::aligned_alloc(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  if (memory == nullptr) throw std::bad_alloc();
  payload_.reset(static_cast<char*>(memory));
  payload_bytes_ = bytes;
  return static_cast<float*>(memory);
}

namespace {

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

size_t VarintSize(uint64_t value) {
  size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}

}  // namespace

grpc::Status UnaryCall::SerializeWithPayload(const v1::Tensor& output,
                                             const google::protobuf::MessageLite& rest,
                                             grpc::ByteBuffer* out) {
  static_assert(v1::Tensor::kDataFieldNumber == 3,
                "the header below writes Tensor.data as field 3");
  // Protobuf's wire format: a length-delimited field is its tag
  // (number << 3 | 2), its length as a varint, then its bytes; a message's
  // fields may come in any order, and its serialized fields concatenate.
  std::string tensor_fields;
  std::string tail;
  if (!output.SerializeToString(&tensor_fields) || !rest.SerializeToString(&tail)) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "the response does not serialize");
  }
  const uint64_t data_bytes = payload_bytes_;
  std::string head;
  head.push_back(static_cast<char>(1 << 3 | 2));  // output (field 1), a Tensor
  AppendVarint(tensor_fields.size() + 1 + VarintSize(data_bytes) + data_bytes, &head);
  head += tensor_fields;
  head.push_back(static_cast<char>(3 << 3 | 2));  // Tensor.data (field 3)
  AppendVarint(data_bytes, &head);
  grpc::Slice slices[3] = {grpc::Slice(head), grpc::Slice(payload_.get(), data_bytes, std::free),
                           grpc::Slice(tail)};
  payload_.release();  // owned by its slice now: freed once gRPC has sent it
  *out = grpc::ByteBuffer(slices, tail.empty() ? 2 : 3);
  return grpc::Status::OK;
}

ConvServiceImpl::ConvServiceImpl(const ServiceOptions& options, ComputePool* pool)
    : options_(options),
      pool_(pool),
      budget_(options.memory_budget_bytes),
      models_(options.max_model_bytes) {}

absl::Status ConvServiceImpl::CheckLimits(const std::string& field,
                                          const ConvGeometry& geometry) const {
  const std::pair<const char*, int64_t> tensors[] = {
      {"input", geometry.input_elements()},
      {"output", geometry.output_elements()},
      {"weight", geometry.weight_elements()},
  };
  for (const auto& [name, elements] : tensors) {
    if (elements > options_.max_elements) {
      return absl::ResourceExhaustedError(
          absl::StrCat(field, name, ": ", elements, " elements exceed the server limit of ",
                       options_.max_elements, " elements per tensor (--max_elements)"));
    }
  }
  const int64_t macs = Macs(geometry);
  if (macs < 0 || macs > options_.max_macs) {
    return absl::ResourceExhaustedError(absl::StrCat(
        field, "layer: ", macs < 0 ? std::string("more than 2^63") : absl::StrCat(macs),
        " multiply-accumulates exceed the server limit of ", options_.max_macs,
        " per request (--max_macs)"));
  }
  return absl::OkStatus();
}

absl::Status ConvServiceImpl::CheckResponseSize(const std::vector<int64_t>& output_shape) const {
  int64_t elements = 1;
  for (int64_t dim : output_shape) elements = SaturatingMultiply(elements, dim);
  const int64_t bytes = SaturatingMultiply(elements, sizeof(float));
  if (bytes < 0 || bytes > options_.max_message_bytes - kResponseOverheadBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("output: ", ShapeToString(output_shape), " float32 is ", bytes,
                     " bytes, more than the server's send limit of ", options_.max_message_bytes,
                     " bytes per message (--max_message_bytes)"));
  }
  return absl::OkStatus();
}

void ConvServiceImpl::RunIfAdmitted(UnaryCall* call, const absl::Status& admitted,
                                    std::function<absl::Status()> work) {
  if (!admitted.ok()) {
    call->Complete(admitted);
    return;
  }
  pool_->Submit([call, work = std::move(work)] {
    grpc::CallbackServerContext* context = call->context();
    absl::Status status;
    if (context->IsCancelled()) {
      status = absl::CancelledError("the call was cancelled before its computation started");
    } else if (context->deadline() < std::chrono::system_clock::now()) {
      status =
          absl::DeadlineExceededError("the call's deadline passed before its computation started");
    } else {
      try {
        status = work();
      } catch (const std::bad_alloc&) {
        status = absl::ResourceExhaustedError("the server ran out of memory for this call");
      } catch (const std::exception& error) {
        status = absl::InternalError(absl::StrCat("unexpected exception: ", error.what()));
      } catch (...) {
        status = absl::InternalError("unexpected exception");
      }
    }
    call->Complete(status);
  });
}

void ConvServiceImpl::HandleConv(UnaryCall* call, const v1::ConvRequest* request,
                                 v1::ConvResponse* response) {
  // Everything up to the admission decision is cheap and runs here; shared
  // so that the pool's copyable std::function can carry it.
  struct Job {
    DecodedLayer layer;
    FloatTensor input;
    ConvGeometry geometry;
    MemoryBudget::Reservation reservation;
  };
  auto job = std::make_shared<Job>();
  absl::Status status = [&]() -> absl::Status {
    // Layer, then input, then weights: the first error reported is the one
    // the others follow from.
    absl::StatusOr<ConvSpec> spec = DecodeSpec("", request->has_layer(), request->layer());
    if (!spec.ok()) return spec.status();
    absl::StatusOr<FloatTensor> input =
        DecodeTensor("input", request->has_input(), request->input());
    if (!input.ok()) return input.status();
    job->input = *std::move(input);
    absl::StatusOr<ConvGeometry> geometry = ResolveGeometry(*spec, job->input.shape);
    if (!geometry.ok()) return geometry.status();
    job->geometry = *geometry;
    absl::StatusOr<DecodedLayer> layer = DecodeWeights(
        "", *spec, request->has_weight(), request->weight(), request->has_bias(), request->bias());
    if (!layer.ok()) return layer.status();
    job->layer = *std::move(layer);
    absl::Status limits = CheckLimits("", job->geometry);
    if (!limits.ok()) return limits;
    absl::Status size = CheckResponseSize(OutputShape(job->geometry));
    if (!size.ok()) return size;
    // The output buffer plus the operator's packed copy of the weights.
    absl::StatusOr<MemoryBudget::Reservation> reservation =
        budget_.Reserve("Conv", (job->geometry.output_elements() + job->geometry.weight_elements() +
                                 job->geometry.bias_elements()) *
                                    static_cast<int64_t>(sizeof(float)));
    if (!reservation.ok()) return reservation.status();
    job->reservation = *std::move(reservation);
    return absl::OkStatus();
  }();
  RunIfAdmitted(call, status, [call, job, response]() -> absl::Status {
    const Clock::time_point start = Clock::now();
    absl::StatusOr<std::unique_ptr<ConvOperator>> op =
        ConvOperator::Create(job->layer.spec, job->layer.weight.values, job->layer.bias.values);
    if (!op.ok()) return op.status();
    float* output =
        call->PrepareOutputPayload(OutputShape(job->geometry), response->mutable_output());
    absl::Status run = (*op)->Run(job->geometry, job->input.values.data(), output);
    if (!run.ok()) return run;
    response->set_compute_time_ns(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
    response->set_kernel((*op)->KernelName(job->geometry));
    job->reservation.Release();
    return absl::OkStatus();
  });
}

void ConvServiceImpl::HandleValidateShape(UnaryCall* call, const v1::ValidateShapeRequest* request,
                                          v1::ValidateShapeResponse* response) {
  // Validation only does arithmetic on the description: cheap enough to run
  // on the gRPC thread.
  absl::Status status = [&]() -> absl::Status {
    if (!request->has_layer()) {
      return absl::InvalidArgumentError(
          "layer: expected a layer description, got none (the field is missing)");
    }
    absl::StatusOr<ConvSpec> spec = ToConvSpec("layer", request->layer());
    if (!spec.ok()) return spec.status();
    ValidateOptions options;
    switch (request->enforce_framework()) {
      case v1::FRAMEWORK_UNSPECIFIED:
        break;
      case v1::FRAMEWORK_PYTORCH:
        options = {true, Framework::kPyTorch};
        break;
      case v1::FRAMEWORK_KERAS:
        options = {true, Framework::kKeras};
        break;
      case v1::FRAMEWORK_ONNX:
        options = {true, Framework::kOnnx};
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("enforce_framework: expected one of UNSPECIFIED(0), PYTORCH(1), "
                         "KERAS(2), ONNX(3), got ",
                         static_cast<int>(request->enforce_framework())));
    }
    absl::StatusOr<ShapeReport> report =
        Validate(*spec, {request->input_shape().begin(), request->input_shape().end()}, options);
    if (!report.ok()) return report.status();
    ToProtoReport(*report, response->mutable_report());
    return absl::OkStatus();
  }();
  call->Complete(status);
  return;
}

void ConvServiceImpl::HandleLoadModel(UnaryCall* call, const v1::LoadModelRequest* request,
                                      v1::LoadModelResponse* response) {
  auto layers = std::make_shared<std::vector<DecodedLayer>>();
  auto reservation = std::make_shared<MemoryBudget::Reservation>();
  int64_t weight_bytes = 0;
  absl::Status status = [&]() -> absl::Status {
    absl::Status name_ok = CheckModelName(request->name());
    if (!name_ok.ok()) return name_ok;
    if (request->layers_size() == 0) {
      return absl::InvalidArgumentError("layers: expected at least one layer, got none");
    }
    for (int i = 0; i < request->layers_size(); ++i) {
      const v1::ModelLayer& layer = request->layers(i);
      const std::string prefix = absl::StrCat("layers[", i, "].");
      absl::StatusOr<ConvSpec> spec = DecodeSpec(prefix, layer.has_layer(), layer.layer());
      if (!spec.ok()) return spec.status();
      absl::StatusOr<DecodedLayer> decoded = DecodeWeights(
          prefix, *spec, layer.has_weight(), layer.weight(), layer.has_bias(), layer.bias());
      if (!decoded.ok()) return decoded.status();
      if (i > 0) {
        const ConvSpec& previous = layers->back().spec;
        const ConvSpec& spec = decoded->spec;
        if (spec.in_channels != previous.out_channels) {
          return absl::InvalidArgumentError(
              absl::StrCat(prefix, "layer.in_channels: expected ", previous.out_channels,
                           " (layers[", i - 1, "].layer.out_channels), got ", spec.in_channels));
        }
        if (spec.spatial_rank != previous.spatial_rank) {
          return absl::InvalidArgumentError(
              absl::StrCat(prefix, "layer.spatial_rank: expected ", previous.spatial_rank,
                           " (layers[", i - 1, "].layer.spatial_rank), got ", spec.spatial_rank));
        }
        if (spec.data_layout != previous.data_layout) {
          return absl::InvalidArgumentError(absl::StrCat(
              prefix, "layer.data_layout: expected ",
              std::string(DataLayoutName(previous.data_layout)), " (layers[", i - 1,
              "].layer.data_layout), got ", std::string(DataLayoutName(spec.data_layout))));
        }
      }
      weight_bytes += static_cast<int64_t>(
          (decoded->weight.values.size() + decoded->bias.values.size()) * sizeof(float));
      layers->push_back(*std::move(decoded));
    }
    absl::Status room = models_.CheckAdd(request->name(), weight_bytes, request->replace());
    if (!room.ok()) return room;
    // The packed copies are made before the model is stored.
    absl::StatusOr<MemoryBudget::Reservation> reserved = budget_.Reserve("LoadModel", weight_bytes);
    if (!reserved.ok()) return reserved.status();
    *reservation = *std::move(reserved);
    return absl::OkStatus();
  }();
  // Packing the weights is the expensive part: it runs on the compute pool.
  RunIfAdmitted(call, status,
                [this, request, response, layers, weight_bytes, reservation]() -> absl::Status {
                  auto model = std::make_shared<Model>();
                  model->name = request->name();
                  model->weight_bytes = weight_bytes;
                  v1::ModelInfo* info = response->mutable_model();
                  for (const DecodedLayer& layer : *layers) {
                    absl::StatusOr<std::unique_ptr<ConvOperator>> op =
                        ConvOperator::Create(layer.spec, layer.weight.values, layer.bias.values);
                    if (!op.ok()) return op.status();
                    model->parameters +=
                        static_cast<int64_t>(layer.weight.values.size() + layer.bias.values.size());
                    model->layers.push_back(*std::move(op));
                    *info->add_layers() = ToProtoLayer(layer.spec);
                  }
                  info->set_name(model->name);
                  info->set_parameters(model->parameters);
                  info->set_weight_bytes(model->weight_bytes);
                  const std::string name = model->name;
                  // Once stored, the weights count against --max_model_bytes instead.
                  reservation->Release();
                  absl::Status added = models_.Add(std::move(model), request->replace());
                  if (added.ok())
                    spdlog::info("loaded model '{}' ({} parameters)", name, info->parameters());
                  return added;
                });
}

void ConvServiceImpl::HandleRunModel(UnaryCall* call, const v1::RunModelRequest* request,
                                     v1::RunModelResponse* response) {
  struct Job {
    std::shared_ptr<const Model> model;  // kept alive even if unloaded meanwhile
    FloatTensor input;
    std::vector<ConvGeometry> geometries;  // one per layer
    MemoryBudget::Reservation reservation;
  };
  auto job = std::make_shared<Job>();
  absl::Status status = [&]() -> absl::Status {
    absl::StatusOr<std::shared_ptr<const Model>> model = models_.Find(request->name());
    if (!model.ok()) return model.status();
    job->model = *std::move(model);
    absl::StatusOr<FloatTensor> input =
        DecodeTensor("input", request->has_input(), request->input());
    if (!input.ok()) return input.status();
    job->input = *std::move(input);
    // Resolve every layer up front so that a bad input fails before any work.
    std::vector<int64_t> shape = job->input.shape;
    int64_t intermediate_elements = 0;
    for (size_t i = 0; i < job->model->layers.size(); ++i) {
      const std::string prefix = absl::StrCat("layers[", i, "].");
      absl::StatusOr<ConvGeometry> geometry = ResolveGeometry(job->model->layers[i]->spec(), shape);
      if (!geometry.ok()) {
        return absl::Status(
            geometry.status().code(),
            i == 0
                ? std::string(geometry.status().message())
                : absl::StrCat("model '", job->model->name, "' ", prefix,
                               " on the previous layer's output: ", geometry.status().message()));
      }
      absl::Status limits = CheckLimits(i == 0 ? "" : prefix, *geometry);
      if (!limits.ok()) return limits;
      shape = OutputShape(*geometry);
      intermediate_elements += geometry->output_elements();
      job->geometries.push_back(*geometry);
    }
    absl::Status size = CheckResponseSize(shape);
    if (!size.ok()) return size;
    absl::StatusOr<MemoryBudget::Reservation> reservation =
        budget_.Reserve("RunModel", intermediate_elements * static_cast<int64_t>(sizeof(float)));
    if (!reservation.ok()) return reservation.status();
    job->reservation = *std::move(reservation);
    return absl::OkStatus();
  }();
  RunIfAdmitted(call, status, [call, job, response]() -> absl::Status {
    const Clock::time_point start = Clock::now();
    std::vector<float> current;  // the previous layer's output
    std::vector<float> next;
    const float* input = job->input.values.data();
    const size_t last = job->geometries.size() - 1;
    for (size_t i = 0; i <= last; ++i) {
      const ConvGeometry& geometry = job->geometries[i];
      float* output = nullptr;
      if (i == last) {
        // The last layer writes straight into the response's bytes.
        output = call->PrepareOutputPayload(OutputShape(geometry), response->mutable_output());
      } else {
        next.resize(static_cast<size_t>(geometry.output_elements()));
        output = next.data();
      }
      absl::Status run = job->model->layers[i]->Run(geometry, input, output);
      if (!run.ok()) return run;
      if (i != last) {
        current.swap(next);
        input = current.data();
      }
    }
    response->set_compute_time_ns(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
    job->reservation.Release();
    return absl::OkStatus();
  });
}

void ConvServiceImpl::HandleUnloadModel(UnaryCall* call, const v1::UnloadModelRequest* request,
                                        v1::UnloadModelResponse* /*response*/) {
  absl::Status status = models_.Remove(request->name());
  if (status.ok()) spdlog::info("unloaded model '{}'", request->name());
  call->Complete(status);
  return;
}

void ConvServiceImpl::HandleListModels(UnaryCall* call, const v1::ListModelsRequest* /*request*/,
                                       v1::ListModelsResponse* response) {
  for (const std::shared_ptr<const Model>& model : models_.List()) {
    v1::ModelInfo* info = response->add_models();
    info->set_name(model->name);
    info->set_parameters(model->parameters);
    info->set_weight_bytes(model->weight_bytes);
    for (const std::unique_ptr<ConvOperator>& layer : model->layers) {
      *info->add_layers() = ToProtoLayer(layer->spec());
    }
  }
  call->Complete(absl::OkStatus());
  return;
}

}  // namespace convserve
