// conv_service.cc: the ConvService handlers and how they hand work to the compute pool.
#include "server/conv_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "core/checked_math.h"
#include "core/conv.h"
#include "core/geometry.h"
#include "core/model_graph.h"
#include "core/onnx_import.h"
#include "core/printable.h"
#include "core/tensor_shape.h"
#include "core/validator.h"
#include "server/build_info.h"
#include "server/convert.h"
#include "server/logging.h"

namespace convserve {
namespace {

using Clock = std::chrono::steady_clock;

// The values decoding copied out of the request (to align them), if any.
int64_t CopiedElements(const FloatTensor& tensor) {
  return static_cast<int64_t>(tensor.aligned_copy.size());
}

// The layers of the ONNX model in `bytes` (LoadModelRequest.onnx), whose
// tensors view the weights `imported` keeps; adds their bytes to
// `weight_bytes`.
absl::Status DecodeOnnxLayers(const std::string& bytes, const OnnxImportOptions& import_options,
                              ImportedModel* imported, std::vector<DecodedLayer>* layers,
                              int64_t* weight_bytes) {
  absl::StatusOr<ImportedModel> model = ImportOnnx(bytes, import_options);
  if (!model.ok()) return model.status();
  *imported = *std::move(model);
  for (const ImportedLayer& layer : imported->layers) {
    absl::StatusOr<ResolvedLayer> resolved = ResolveLayer(layer.spec);
    if (!resolved.ok()) return resolved.status();
    DecodedLayer decoded;
    decoded.layer = *std::move(resolved);
    decoded.weight.shape = decoded.layer.weight_shape;
    decoded.weight.values = layer.weight;
    if (layer.spec.bias) {
      decoded.bias.shape = {layer.spec.out_channels};
      decoded.bias.values = layer.bias;
    }
    *weight_bytes +=
        static_cast<int64_t>((layer.weight.size() + layer.bias.size()) * sizeof(float));
    layers->push_back(std::move(decoded));
  }
  return absl::OkStatus();
}

// A RunModel call's work, checked and resolved on the gRPC thread; shared so
// that the pool's copyable std::function can carry it.
struct RunModelJob {
  std::shared_ptr<const Model> model;  // kept alive even if unloaded meanwhile
  FloatTensor input;
  GraphPlan plan;  // the model's graph on this input
  v1::ElementType output_type = v1::ELEMENT_TYPE_FLOAT32;
};

BatchingOptions ToBatchingOptions(const v1::LoadModelRequest& request) {
  return {request.batching().max_batch_size(), request.batching().max_queue_delay_us()};
}

int64_t ElapsedNs(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count();
}

// Runs `model` (`plan`: its graph on this input) on `input`. The last step
// writes into what `last_output` returns, called once before it runs.
absl::Status RunLayers(const Model& model, const GraphPlan& plan, const float* input,
                       const std::function<float*()>& last_output, const StopToken& stop) {
  std::vector<const ConvOperator*> ops;
  ops.reserve(model.layers.size());
  for (const std::unique_ptr<ConvOperator>& op : model.layers) ops.push_back(op.get());
  return RunGraph(model.graph, ops, plan, input, last_output, stop);
}

// `model`'s layers as PlanGraph() reads them.
std::vector<const ResolvedLayer*> ResolvedLayers(const Model& model) {
  std::vector<const ResolvedLayer*> layers;
  for (const std::unique_ptr<ConvOperator>& op : model.layers) layers.push_back(&op->layer());
  return layers;
}

// `model`'s graph on `input_shape`, with every step checked against the
// server's limits.
absl::StatusOr<GraphPlan> PlanModel(const Model& model, const std::vector<int64_t>& input_shape,
                                    const RequestLimits& limits) {
  absl::StatusOr<GraphPlan> plan =
      PlanGraph(model.graph, ResolvedLayers(model), input_shape, model.name);
  if (!plan.ok()) return plan.status();
  for (size_t i = 0; i < model.graph.steps.size(); ++i) {
    const GraphStep& step = model.graph.steps[i];
    const bool first = i == 0 && step.inputs[0] == 0;
    if (step.op == StepOp::kConv) {
      absl::Status checked =
          CheckLimits(first ? std::string() : absl::StrCat("layers[", step.layer, "]."),
                      plan->geometries[i], limits);
      if (!checked.ok()) return checked;
      continue;
    }
    const int64_t elements = CheckedProduct(plan->shapes[i + 1]).value();  // PlanGraph checked it
    if (elements > limits.max_elements) {
      return absl::ResourceExhaustedError(
          absl::StrCat("model '", model.name, "' ", model.graph.Describe(static_cast<int>(i)),
                       ": output of ", elements, " elements exceeds the server limit of ",
                       limits.max_elements, " elements per tensor (--max_elements)"));
    }
  }
  return plan;
}

// Runs one RunModel call by itself; the last layer writes straight into the
// response's bytes.
absl::Status RunModelAlone(UnaryCall* call, const RunModelJob& job, v1::RunModelResponse* response,
                           const StopToken& stop) {
  const Clock::time_point start = Clock::now();
  absl::Status run = RunLayers(
      *job.model, job.plan, job.input.values.data(),
      [&] {
        return call->PrepareOutputPayload(job.plan.output_shape(), response->mutable_output());
      },
      stop);
  if (!run.ok()) return run;
  call->ConvertOutputPayload(job.output_type, response->mutable_output());
  response->set_compute_time_ns(ElapsedNs(start));
  return absl::OkStatus();
}

// `work`'s status, or the error an exception escaping it stands for.
absl::Status CatchExceptions(const std::function<absl::Status()>& work) {
  try {
    return work();
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("the server ran out of memory for this call");
  } catch (const std::exception& error) {
    return absl::InternalError(absl::StrCat("unexpected exception: ", error.what()));
  } catch (...) {
    return absl::InternalError("unexpected exception");
  }
}

// Packs `layers` into `model`'s operators (the expensive part of a load),
// counting their parameters, and connects them as `graph` says (no steps: a
// chain); checks `stop` between layers.
absl::Status PackLayers(const std::vector<DecodedLayer>& layers, const ModelGraph& graph,
                        const StopToken& stop, Model* model) {
  model->graph = graph.steps.empty() ? ModelGraph::Chain(static_cast<int>(layers.size())) : graph;
  absl::Status connected = model->graph.Check(static_cast<int>(layers.size()));
  if (!connected.ok()) return connected;
  for (const DecodedLayer& layer : layers) {
    if (stop.StopRequested()) return StoppedError();
    absl::StatusOr<std::unique_ptr<ConvOperator>> op =
        ConvOperator::Create(layer.layer, layer.weight.values, layer.bias.values);
    if (!op.ok()) return op.status();
    model->parameters +=
        static_cast<int64_t>(layer.weight.values.size() + layer.bias.values.size());
    model->layers.push_back(*std::move(op));
  }
  return absl::OkStatus();
}

}  // namespace

ConvServiceImpl::ConvServiceImpl(const ServiceOptions& options, ComputePool* pool,
                                 CallObserver* observer)
    : options_(options),
      pool_(pool),
      observer_(observer),
      budget_(options.memory_budget_bytes),
      models_(options.max_model_bytes, options.max_models),
      batcher_([pool](std::function<void()> work) { return pool->Submit(std::move(work)); }),
      streams_(std::chrono::seconds(options.stream_idle_timeout_s)) {}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* ConvServiceImpl::StreamModel(
    grpc::CallbackServerContext* context) {
  absl::Status admitted;
  if (options_.require_tls) admitted = RequireTlsTransport(TransportSecurityType(*context));
  if (admitted.ok() && !options_.auth_token.empty()) {
    admitted = CheckBearerToken(context->client_metadata(), options_.auth_token);
  }
  if (admitted.ok() && draining_.load()) {
    admitted = absl::UnavailableError("the server is shutting down; retry on another replica");
  }
  return StartStreamCall({&options_, &models_, &budget_, pool_, observer_, &stop_all_work_,
                          &streams_, options_.small_call_macs},
                         context, admitted);
}

absl::Status ConvServiceImpl::Stopped(const UnaryCall& call, bool during) const {
  const char* const when =
      during ? "during its computation, which was stopped" : "before its computation started";
  if (stop_all_work_.load()) {
    return absl::UnavailableError(
        absl::StrCat("the server is shutting down (--shutdown_timeout_s passed) and stopped this "
                     "call ",
                     when, "; retry on another replica"));
  }
  if (call.deadline_passed()) {
    return absl::DeadlineExceededError(absl::StrCat("the call's deadline passed ", when));
  }
  return absl::CancelledError(absl::StrCat("the call was cancelled ", when));
}

void ConvServiceImpl::RunIfAdmitted(UnaryCall* call, const absl::Status& admitted, int64_t macs,
                                    std::function<absl::Status(const StopToken&)> work) {
  if (!admitted.ok()) {
    call->Complete(admitted);
    return;
  }
  const ComputePool::Lane lane =
      macs < options_.small_call_macs ? ComputePool::Lane::kSmall : ComputePool::Lane::kLarge;
  call->MarkQueued();
  absl::Status queued = pool_->Submit(lane, [this, call, work = std::move(work)] {
    call->MarkComputeStarted();
    const StopToken stop = call->MakeStopToken(&stop_all_work_);
    absl::Status status;
    if (call->context()->IsCancelled() || stop.StopRequested()) {
      status = Stopped(*call, /*during=*/false);
    } else {
      status = CatchExceptions([&work, &stop] { return work(stop); });
      // Only a stop token makes the core return CANCELLED.
      if (status.code() == absl::StatusCode::kCancelled) status = Stopped(*call, /*during=*/true);
    }
    call->MarkComputeEnded();
    call->Complete(status);
  });
  if (!queued.ok()) call->Complete(queued);  // the work was dropped unrun
}

absl::Status ConvServiceImpl::CheckLayerCount(int64_t layers, int64_t steps) const {
  if (std::max(layers, steps) <= options_.max_layers_per_model) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "layers: the model has ", layers, " layers",
      steps > layers ? absl::StrCat(" and ", steps - layers,
                                    " other graph steps (sums, concatenations, activations), ",
                                    steps, " steps in all")
                     : std::string(),
      ", more than the server's limit of ", options_.max_layers_per_model,
      " layers per model (--max_layers_per_model",
      steps > layers ? ", which counts every step" : "", ")"));
}

void ConvServiceImpl::HandleConv(UnaryCall* call, const v1::ConvRequest* request,
                                 v1::ConvResponse* response) {
  // Everything up to the admission decision is cheap and runs here; shared
  // so that the pool's copyable std::function can carry it.
  struct Job {
    DecodedLayer layer;
    FloatTensor input;
    ConvGeometry geometry;
    v1::ElementType output_type = v1::ELEMENT_TYPE_FLOAT32;
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
    absl::StatusOr<v1::ElementType> output_type =
        DecodeOutputType("output_type", request->output_type(), job->input.wire_type);
    if (!output_type.ok()) return output_type.status();
    job->output_type = *output_type;
    absl::StatusOr<ResolvedLayer> resolved = ResolveLayer(*spec);
    if (!resolved.ok()) return resolved.status();
    absl::StatusOr<ConvGeometry> geometry = ResolveGeometry(*resolved, job->input.shape);
    if (!geometry.ok()) return geometry.status();
    job->geometry = *geometry;
    absl::StatusOr<DecodedLayer> layer =
        DecodeWeights("", *resolved, request->has_weight(), request->weight(), request->has_bias(),
                      request->bias());
    if (!layer.ok()) return layer.status();
    job->layer = *std::move(layer);
    absl::Status limits = CheckLimits("", job->geometry, options_);
    if (!limits.ok()) return limits;
    absl::Status size = CheckResponseSize(OutputShape(job->geometry), options_);
    if (!size.ok()) return size;
    // The output buffer, the operator's packed copy of the weights, the
    // request (call->request_memory_bytes()) and the decoded tensors' copies
    // if decoding had to make any: what the call holds while it waits in the
    // queue and computes.
    absl::StatusOr<MemoryBudget::Reservation> reservation = budget_.Reserve(
        "Conv", (job->geometry.output_elements() + job->geometry.weight_elements() +
                 job->geometry.bias_elements() + CopiedElements(job->input) +
                 CopiedElements(job->layer.weight) + CopiedElements(job->layer.bias)) *
                        static_cast<int64_t>(sizeof(float)) +
                    call->request_memory_bytes());
    if (!reservation.ok()) return reservation.status();
    // Until the output's last byte has been sent, not just computed.
    call->HoldUntilDone(*std::move(reservation));
    return absl::OkStatus();
  }();
  const int64_t macs = status.ok() ? job->geometry.macs() : 0;
  RunIfAdmitted(call, status, macs, [call, job, response](const StopToken& stop) -> absl::Status {
    const Clock::time_point start = Clock::now();
    absl::StatusOr<std::unique_ptr<ConvOperator>> op =
        ConvOperator::Create(job->layer.layer, job->layer.weight.values, job->layer.bias.values);
    if (!op.ok()) return op.status();
    float* output =
        call->PrepareOutputPayload(OutputShape(job->geometry), response->mutable_output());
    absl::Status run = (*op)->Run(job->geometry, job->input.values.data(), output, stop);
    if (!run.ok()) return run;
    call->ConvertOutputPayload(job->output_type, response->mutable_output());
    response->set_compute_time_ns(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
    response->set_kernel((*op)->KernelName(job->geometry));
    return absl::OkStatus();
  });
}

void ConvServiceImpl::HandleValidateShape(UnaryCall* call, const v1::ValidateShapeRequest* request,
                                          v1::ValidateShapeResponse* response) {
  // Validation only does arithmetic on the description: cheap enough to run
  // on the gRPC thread.
  absl::Status status = [&]() -> absl::Status {
    absl::StatusOr<ConvSpec> spec = DecodeSpec("", request->has_layer(), request->layer());
    if (!spec.ok()) return spec.status();
    absl::StatusOr<ValidateOptions> options = ToValidateOptions(request->enforce_framework());
    if (!options.ok()) return options.status();
    absl::StatusOr<ShapeReport> report =
        Validate(*spec, {request->input_shape().begin(), request->input_shape().end()}, *options);
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
  auto imported = std::make_shared<ImportedModel>();  // an ONNX model's weights, viewed by `layers`
  auto reservation = std::make_shared<MemoryBudget::Reservation>();
  int64_t weight_bytes = 0;
  int64_t charged_bytes = 0;  // what the model counts against --max_model_bytes
  int64_t copied_bytes = 0;   // the decoded float32 copies of half-type weights
  call->set_model(request->name());
  absl::Status status = [&]() -> absl::Status {
    absl::Status name_ok = CheckModelName(request->name());
    if (!name_ok.ok()) return name_ok;
    absl::Status batching_ok = CheckBatchingOptions("batching.", ToBatchingOptions(*request));
    if (!batching_ok.ok()) return batching_ok;
    if (!request->onnx().empty()) {
      if (request->layers_size() > 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "layers, onnx: expected either layers or an ONNX model, got both (",
            request->layers_size(), " layers and ", request->onnx().size(), " ONNX bytes)"));
      }
      // The parsed model and the imported weights, until the weights are packed.
      absl::StatusOr<MemoryBudget::Reservation> import_memory =
          budget_.Reserve("LoadModel", 2 * static_cast<int64_t>(request->onnx().size()));
      if (!import_memory.ok()) return import_memory.status();
      call->HoldUntilDone(*std::move(import_memory));
      // A message: the smaller of the model and message limits bounds it.
      OnnxImportOptions import_options;
      import_options.source = "onnx";
      import_options.max_bytes = std::min(options_.max_model_bytes, options_.max_message_bytes);
      import_options.max_bytes_name = options_.max_model_bytes <= options_.max_message_bytes
                                          ? "--max_model_bytes"
                                          : "--max_message_bytes";
      absl::Status onnx = DecodeOnnxLayers(request->onnx(), import_options, imported.get(),
                                           layers.get(), &weight_bytes);
      if (!onnx.ok()) return onnx;
    } else if (request->layers_size() == 0) {
      return absl::InvalidArgumentError(
          "layers: expected at least one layer (or an ONNX model in onnx), got none");
    }
    const int64_t steps = static_cast<int64_t>(imported->graph.steps.size());
    absl::Status count = CheckLayerCount(
        std::max<int64_t>(request->layers_size(), static_cast<int64_t>(layers->size())), steps);
    if (!count.ok()) return count;
    for (int i = 0; i < request->layers_size(); ++i) {
      const v1::ModelLayer& layer = request->layers(i);
      const std::string prefix = absl::StrCat("layers[", i, "].");
      absl::StatusOr<ConvSpec> spec = DecodeSpec(prefix, layer.has_layer(), layer.layer());
      if (!spec.ok()) return spec.status();
      absl::StatusOr<ResolvedLayer> resolved = ResolveLayer(*spec);
      if (!resolved.ok()) return resolved.status();
      absl::StatusOr<DecodedLayer> decoded = DecodeWeights(
          prefix, *resolved, layer.has_weight(), layer.weight(), layer.has_bias(), layer.bias());
      if (!decoded.ok()) return decoded.status();
      if (i > 0) {
        const ConvSpec& previous = layers->back().layer.spec;
        const ConvSpec& spec = decoded->layer.spec;
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
      copied_bytes += (CopiedElements(decoded->weight) + CopiedElements(decoded->bias)) *
                      static_cast<int64_t>(sizeof(float));
      layers->push_back(*std::move(decoded));
    }
    absl::Status precision = ApplyPrecision(request->precision(), layers.get());
    if (!precision.ok()) return precision;
    // A graph's other steps cost what a layer's description does.
    charged_bytes = ModelBytes(weight_bytes, std::max(static_cast<int64_t>(layers->size()), steps));
    absl::Status room = models_.CheckAdd(request->name(), charged_bytes, request->replace());
    if (!room.ok()) return room;
    // The request and the decoded copies of its weights, held until the call is done.
    absl::StatusOr<MemoryBudget::Reservation> request_memory =
        budget_.Reserve("LoadModel", call->request_memory_bytes() + copied_bytes);
    if (!request_memory.ok()) return request_memory.status();
    call->HoldUntilDone(*std::move(request_memory));
    // The packed copies are made before the model is stored.
    absl::StatusOr<MemoryBudget::Reservation> reserved = budget_.Reserve("LoadModel", weight_bytes);
    if (!reserved.ok()) return reserved.status();
    *reservation = *std::move(reserved);
    return absl::OkStatus();
  }();
  // Packing the weights is the expensive part: it runs on the compute pool.
  RunIfAdmitted(call, status,
                [this, call, request, response, layers, imported, weight_bytes, charged_bytes,
                 reservation](const StopToken& stop) -> absl::Status {
                  auto model = std::make_shared<Model>();
                  model->name = request->name();
                  model->weight_bytes = weight_bytes;
                  model->charged_bytes = charged_bytes;
                  model->batching = ToBatchingOptions(*request);
                  absl::Status packed = PackLayers(*layers, imported->graph, stop, model.get());
                  if (!packed.ok()) return packed;
                  ToProtoModelInfo(*model, response->mutable_model());
                  const std::string name = model->name;
                  const int64_t parameters = model->parameters;
                  // Once stored, the weights count against --max_model_bytes instead.
                  reservation->Release();
                  absl::Status added = models_.Add(std::move(model), request->replace());
                  if (added.ok()) {
                    LogEvent(spdlog::level::info,
                             absl::StrCat("loaded model '", Printable(name), "' (", parameters,
                                          " parameters)"),
                             {{"request_id", call->request_id()}});
                  }
                  return added;
                });
}

class ConvServiceImpl::RunModelItem final : public BatchItem {
 public:
  RunModelItem(ConvServiceImpl* service, UnaryCall* call, std::shared_ptr<RunModelJob> job,
               v1::RunModelResponse* response)
      : service_(service), call_(call), job_(std::move(job)), response_(response) {}

  int64_t samples() const override { return job_->input.shape[0]; }
  absl::Status Abandoned() const override {
    if (!call_->context()->IsCancelled() && !call_->cancelled() &&
        !call_->MakeStopToken(&service_->stop_all_work_).StopRequested()) {
      return absl::OkStatus();
    }
    return service_->Stopped(*call_, /*during=*/false);
  }
  void Fail(const absl::Status& status) override { call_->Complete(status); }

  UnaryCall* call() const { return call_; }
  const RunModelJob& job() const { return *job_; }
  v1::RunModelResponse* response() const { return response_; }

 private:
  ConvServiceImpl* const service_;
  UnaryCall* const call_;
  const std::shared_ptr<RunModelJob> job_;
  v1::RunModelResponse* const response_;
};

void ConvServiceImpl::HandleRunModel(UnaryCall* call, const v1::RunModelRequest* request,
                                     v1::RunModelResponse* response) {
  auto job = std::make_shared<RunModelJob>();
  call->set_model(request->name());
  absl::Status status = [&]() -> absl::Status {
    absl::StatusOr<std::shared_ptr<const Model>> model = models_.Find(request->name());
    if (!model.ok()) return model.status();
    job->model = *std::move(model);
    absl::StatusOr<FloatTensor> input =
        DecodeTensor("input", request->has_input(), request->input());
    if (!input.ok()) return input.status();
    job->input = *std::move(input);
    absl::StatusOr<v1::ElementType> output_type =
        DecodeOutputType("output_type", request->output_type(), job->input.wire_type);
    if (!output_type.ok()) return output_type.status();
    job->output_type = *output_type;
    // Resolve every step up front so that a bad input fails before any work.
    absl::StatusOr<GraphPlan> plan = PlanModel(*job->model, job->input.shape, options_);
    if (!plan.ok()) return plan.status();
    job->plan = *std::move(plan);
    const std::vector<int64_t>& shape = job->plan.output_shape();
    const int64_t intermediate_elements = job->plan.intermediate_elements;
    absl::Status size = CheckResponseSize(shape, options_);
    if (!size.ok()) return size;
    // Every layer's output, the request and the input's copy if decoding made one.
    absl::StatusOr<MemoryBudget::Reservation> reservation =
        budget_.Reserve("RunModel", (intermediate_elements + CopiedElements(job->input)) *
                                            static_cast<int64_t>(sizeof(float)) +
                                        call->request_memory_bytes());
    if (!reservation.ok()) return reservation.status();
    call->HoldUntilDone(*std::move(reservation));
    return absl::OkStatus();
  }();
  if (status.ok() && job->model->batching.enabled()) {
    call->MarkQueued();
    BatchKey key{job->model.get(),
                 std::vector<int64_t>(job->input.shape.begin() + 1, job->input.shape.end())};
    const BatchingOptions options = job->model->batching;
    batcher_.Add(
        std::move(key), options, std::make_unique<RunModelItem>(this, call, job, response),
        [this](std::vector<std::unique_ptr<BatchItem>> batch) { RunModelBatch(std::move(batch)); });
    return;
  }
  RunIfAdmitted(call, status, [call, job, response](const StopToken& stop) -> absl::Status {
    return RunModelAlone(call, *job, response, stop);
  });
}

void ConvServiceImpl::HandleUnloadModel(UnaryCall* call, const v1::UnloadModelRequest* request,
                                        v1::UnloadModelResponse* /*response*/) {
  call->set_model(request->name());
  absl::Status status = models_.Remove(request->name());
  if (status.ok()) {
    LogEvent(spdlog::level::info, absl::StrCat("unloaded model '", Printable(request->name()), "'"),
             {{"request_id", call->request_id()}});
  }
  call->Complete(status);
  return;
}

void ConvServiceImpl::HandleListModels(UnaryCall* call, const v1::ListModelsRequest* /*request*/,
                                       v1::ListModelsResponse* response) {
  for (const std::shared_ptr<const Model>& model : models_.List()) {
    ToProtoModelInfo(*model, response->add_models());
  }
  if (repository_ != nullptr) {
    for (const RefusedModel& refused : repository_->Refused()) {
      v1::ModelInfo* info = response->add_models();
      info->set_name(refused.name);
      info->set_version(refused.version);
      info->set_source(refused.path);
      info->set_ready(false);
      info->set_status(refused.reason);
    }
    // Sorted by name; a name's serving version before its refused one.
    std::stable_sort(response->mutable_models()->begin(), response->mutable_models()->end(),
                     [](const v1::ModelInfo& a, const v1::ModelInfo& b) {
                       return a.name() != b.name() ? a.name() < b.name() : a.ready() > b.ready();
                     });
  }
  call->Complete(absl::OkStatus());
  return;
}

absl::StatusOr<std::shared_ptr<Model>> ConvServiceImpl::BuildOnnxModel(
    const std::string& source, const std::string& bytes, v1::Precision precision) const {
  ImportedModel imported;
  std::vector<DecodedLayer> layers;
  int64_t weight_bytes = 0;
  // A file is not a message: only --max_model_bytes bounds it.
  OnnxImportOptions import_options;
  import_options.source = source;
  import_options.max_bytes = options_.max_model_bytes;
  import_options.max_bytes_name = "--max_model_bytes";
  absl::Status decoded = DecodeOnnxLayers(bytes, import_options, &imported, &layers, &weight_bytes);
  if (!decoded.ok()) return decoded;
  absl::Status precise = ApplyPrecision(precision, &layers);
  if (!precise.ok()) return precise;
  const int64_t steps = static_cast<int64_t>(imported.graph.steps.size());
  absl::Status count = CheckLayerCount(static_cast<int64_t>(layers.size()), steps);
  if (!count.ok()) return count;
  auto model = std::make_shared<Model>();
  model->weight_bytes = weight_bytes;
  model->charged_bytes =
      ModelBytes(weight_bytes, std::max(static_cast<int64_t>(layers.size()), steps));
  absl::Status packed = PackLayers(layers, imported.graph, StopToken(), model.get());
  if (!packed.ok()) return packed;
  // The shapes the file fixes, and what they give through the layers.
  const bool fixed = !imported.input_shape.empty() &&
                     std::all_of(imported.input_shape.begin(), imported.input_shape.end(),
                                 [](int64_t extent) { return extent > 0; });
  if (fixed) {
    absl::StatusOr<GraphPlan> plan =
        PlanGraph(model->graph, ResolvedLayers(*model), imported.input_shape, Printable(source));
    if (!plan.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          Printable(source), ": the graph's input shape ", ShapeToString(imported.input_shape),
          " does not run through its layers: ", plan.status().message()));
    }
    const std::vector<int64_t> shape = plan->output_shape();
    model->input_shape = imported.input_shape;
    model->output_shape = shape;
  }
  return model;
}

void ConvServiceImpl::HandleGetServerInfo(UnaryCall* call,
                                          const v1::GetServerInfoRequest* /*request*/,
                                          v1::GetServerInfoResponse* response) {
  response->set_version(kVersion);
  response->set_git_commit(kGitCommit);
  response->set_build_type(kBuildType);
  for (const std::string& tier : KernelTiers()) response->add_kernel_tiers(tier);
  response->set_compute_threads(pool_->threads());
  v1::ServerLimits* limits = response->mutable_limits();
  limits->set_max_message_bytes(options_.max_message_bytes);
  limits->set_max_elements(options_.max_elements);
  limits->set_max_macs(options_.max_macs);
  limits->set_memory_budget_bytes(options_.memory_budget_bytes);
  limits->set_max_model_bytes(options_.max_model_bytes);
  limits->set_max_queued_calls(pool_->max_queued());
  limits->set_max_models(options_.max_models);
  limits->set_max_layers_per_model(options_.max_layers_per_model);
  limits->set_small_call_macs(options_.small_call_macs);
  limits->set_stream_idle_timeout_s(options_.stream_idle_timeout_s);
  response->set_auth_required(!options_.auth_token.empty());
  call->Complete(absl::OkStatus());
}

void ConvServiceImpl::RunModelBatch(std::vector<std::unique_ptr<BatchItem>> batch) {
  std::vector<RunModelItem*> items;
  for (const std::unique_ptr<BatchItem>& item : batch) {
    items.push_back(static_cast<RunModelItem*>(item.get()));
    items.back()->call()->MarkComputeStarted();
  }
  // Each call by itself, as RunIfAdmitted() runs it: with one call, and when
  // the merged run cannot be made.
  const auto run_each_alone = [&] {
    for (RunModelItem* item : items) {
      UnaryCall* call = item->call();
      absl::Status status = item->Abandoned();
      if (status.ok()) {
        const StopToken stop = call->MakeStopToken(&stop_all_work_);
        status = CatchExceptions(
            [&] { return RunModelAlone(call, item->job(), item->response(), stop); });
        if (status.code() == absl::StatusCode::kCancelled) status = Stopped(*call, /*during=*/true);
      }
      call->MarkComputeEnded();
      call->Complete(status);
    }
  };
  if (items.size() == 1) {
    run_each_alone();
    return;
  }
  // The merged run: the inputs concatenated along N (every layout has N
  // first, so each call's samples are one contiguous run of values), the
  // layers run once, the output split back at the same boundaries.
  const RunModelJob& first = items.front()->job();
  int64_t samples = 0;
  int64_t input_elements = 0;
  int64_t output_elements = 0;
  for (RunModelItem* item : items) {
    samples += item->samples();
    input_elements += static_cast<int64_t>(item->job().input.values.size());
    output_elements += item->job().plan.output_elements();
  }
  GraphPlan plan = first.plan;
  plan.SetBatch(samples);
  // Each call's reservation covers its own intermediates and output; the
  // merged input and output are extra. Without room for them, or if the
  // merged run fails, the calls run one by one: no call fails for having
  // been batched.
  absl::StatusOr<MemoryBudget::Reservation> reservation = budget_.Reserve(
      "RunModel batch", (input_elements + output_elements) * static_cast<int64_t>(sizeof(float)));
  if (!reservation.ok()) {
    run_each_alone();
    return;
  }
  std::vector<float> output;
  const Clock::time_point start = Clock::now();
  // Only the server's stop stops the merged run: a call cancelled or past
  // its deadline meanwhile fails after it, and its batch mates do not notice.
  absl::Status status = CatchExceptions([&] {
    std::vector<float> input(static_cast<size_t>(input_elements));
    float* to = input.data();
    for (RunModelItem* item : items) {
      const absl::Span<const float> values = item->job().input.values;
      to = std::copy(values.begin(), values.end(), to);
    }
    output.resize(static_cast<size_t>(output_elements));
    return RunLayers(
        *first.model, plan, input.data(), [&] { return output.data(); },
        StopToken(&stop_all_work_));
  });
  const int64_t compute_time_ns = ElapsedNs(start);
  if (!status.ok() && status.code() != absl::StatusCode::kCancelled) {
    run_each_alone();
    return;
  }
  const float* from = output.data();
  for (RunModelItem* item : items) {
    UnaryCall* call = item->call();
    const GraphPlan& own = item->job().plan;
    absl::Status result;
    if (!status.ok() || !item->Abandoned().ok()) {
      result = Stopped(*call, /*during=*/true);
    } else {
      result = CatchExceptions([&] {
        float* payload =
            call->PrepareOutputPayload(own.output_shape(), item->response()->mutable_output());
        std::copy(from, from + own.output_elements(), payload);
        call->ConvertOutputPayload(item->job().output_type, item->response()->mutable_output());
        // The merged run's time: what this call's computation took.
        item->response()->set_compute_time_ns(compute_time_ns);
        return absl::OkStatus();
      });
    }
    from += own.output_elements();
    call->MarkComputeEnded();
    call->Complete(result);
  }
}

}  // namespace convserve
