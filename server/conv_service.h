// conv_service.h: the convserve.v1.ConvService handlers.
//
// A thin layer: converts requests into core types (convert.h), checks the
// server's limits (limits.h) and memory budget, hands the computation to the
// compute pool and converts the result back. Every failure goes through
// ToGrpcStatus() and is logged once (UnaryCall::Complete). Handlers never
// throw and never block a gRPC thread on a convolution. Thread-safe: gRPC
// calls the methods from any of its threads; the shared state (budget,
// models, draining flag) is.
#ifndef CONVSERVE_SERVER_CONV_SERVICE_H_
#define CONVSERVE_SERVER_CONV_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "convserve/v1/convserve.grpc.pb.h"
#include "core/conv_spec.h"
#include "server/auth.h"
#include "server/batcher.h"
#include "server/compute_pool.h"
#include "server/limits.h"
#include "server/memory_budget.h"
#include "server/model_registry.h"
#include "server/model_repository.h"
#include "server/stream_call.h"
#include "server/tls.h"
#include "server/unary_call.h"
#include "server/wire_scan.h"

namespace convserve {

// --small_call_macs' default: calls below it take a few tens of microseconds
// on one thread (bench/RPC_RESULTS.md, "Small-call lane").
inline constexpr int64_t kDefaultSmallCallMacs = int64_t{1} << 20;

// Limits of one server: those of each request, and these. Each is named in
// the error a request above it gets.
struct ServiceOptions : RequestLimits {
  int64_t memory_budget_bytes = int64_t{2} << 30;  // --memory_budget_bytes
  int64_t max_model_bytes = int64_t{1} << 30;      // --max_model_bytes: all models.
  int64_t max_models = 1024;                       // --max_models
  int64_t max_layers_per_model = 1024;             // --max_layers_per_model
  // Non-empty: every call needs "authorization: Bearer <auth_token>" (--auth_token_file).
  std::string auth_token;
  // ConvService only over TLS (--tls_cert_file): calls on a plaintext
  // connection (the --health_listen port) get UNAUTHENTICATED.
  bool require_tls = false;
  // Conv calls of fewer multiply-accumulates run on the compute pool's small
  // lane (compute_pool.h); 0: every call runs on the large lane (--small_call_macs).
  int64_t small_call_macs = kDefaultSmallCallMacs;
  // A StreamModel stream that gets no message for this long is ended
  // (--stream_idle_timeout_s).
  int64_t stream_idle_timeout_s = 300;
};

// The generated service with every method registered as a raw callback
// method (see unary_call.h for why).
using RawConvService = v1::ConvService::WithRawCallbackMethod_Conv<
    v1::ConvService::WithRawCallbackMethod_ValidateShape<
        v1::ConvService::WithRawCallbackMethod_LoadModel<
            v1::ConvService::WithRawCallbackMethod_RunModel<
                v1::ConvService::WithRawCallbackMethod_UnloadModel<
                    v1::ConvService::WithRawCallbackMethod_ListModels<
                        v1::ConvService::WithRawCallbackMethod_GetServerInfo<
                            v1::ConvService::WithRawCallbackMethod_StreamModel<
                                v1::ConvService::Service>>>>>>>>;

class ConvServiceImpl final : public RawConvService {
 public:
  // `pool` must outlive the service and be drained before it is destroyed;
  // `observer` (may be null), told about every finished call, must outlive
  // the calls.
  ConvServiceImpl(const ServiceOptions& options, ComputePool* pool,
                  CallObserver* observer = nullptr);

  grpc::ServerUnaryReactor* Conv(grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override {
    return Start<v1::ConvRequest, v1::ConvResponse>("Conv", context, request, response,
                                                    &ConvServiceImpl::HandleConv);
  }
  grpc::ServerUnaryReactor* ValidateShape(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override {
    return Start<v1::ValidateShapeRequest, v1::ValidateShapeResponse>(
        "ValidateShape", context, request, response, &ConvServiceImpl::HandleValidateShape);
  }
  grpc::ServerUnaryReactor* LoadModel(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override {
    return Start<v1::LoadModelRequest, v1::LoadModelResponse>(
        "LoadModel", context, request, response, &ConvServiceImpl::HandleLoadModel);
  }
  grpc::ServerUnaryReactor* RunModel(grpc::CallbackServerContext* context,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override {
    return Start<v1::RunModelRequest, v1::RunModelResponse>("RunModel", context, request, response,
                                                            &ConvServiceImpl::HandleRunModel);
  }
  grpc::ServerUnaryReactor* UnloadModel(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override {
    return Start<v1::UnloadModelRequest, v1::UnloadModelResponse>(
        "UnloadModel", context, request, response, &ConvServiceImpl::HandleUnloadModel);
  }
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override {
    return Start<v1::ListModelsRequest, v1::ListModelsResponse>(
        "ListModels", context, request, response, &ConvServiceImpl::HandleListModels);
  }
  grpc::ServerUnaryReactor* GetServerInfo(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer* request,
                                          grpc::ByteBuffer* response) override {
    return Start<v1::GetServerInfoRequest, v1::GetServerInfoResponse>(
        "GetServerInfo", context, request, response, &ConvServiceImpl::HandleGetServerInfo);
  }

  // A StreamModel call (stream_call.h).
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* StreamModel(
      grpc::CallbackServerContext* context) override;

  // From now on every new call fails with UNAVAILABLE; calls already
  // accepted run to completion, streams end once their current chunk's
  // output is sent. Called when the server starts draining.
  void StartDraining() {
    draining_.store(true);
    batcher_.Shutdown();  // calls waiting for batch mates go to the pool now
    streams_.StartDraining();
  }

  // Stops the computations running and queued (within a work item, about a
  // millisecond): their calls end with UNAVAILABLE and free their memory.
  // Called when the drain's --shutdown_timeout_s has passed. Implies
  // StartDraining().
  void StopAllWork() {
    StartDraining();
    stop_all_work_.store(true);
  }

  const MemoryBudget& memory_budget() const { return budget_; }
  const ModelRegistry& models() const { return models_; }
  ModelRegistry* mutable_models() { return &models_; }

  // A model built from the ONNX file `bytes` (the model repository's
  // builder): imported, its AUTO layers set as `precision` says (as
  // LoadModelRequest.precision), checked against --max_layers_per_model and
  // --max_model_bytes, its weights packed. `source` names the file in errors.
  absl::StatusOr<std::shared_ptr<Model>> BuildOnnxModel(
      const std::string& source, const std::string& bytes,
      v1::Precision precision = v1::PRECISION_EXACT) const;

  // ListModels also lists the files `repository` refused (ready false); it
  // must outlive this. Call before serving.
  void set_model_repository(const ModelRepository* repository) { repository_ = repository; }

 private:
  // Creates the call, parses its request and hands it to `handler`, which
  // must Complete() it (now or later, from the compute pool).
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* Start(const char* method, grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request, grpc::ByteBuffer* response,
                                  void (ConvServiceImpl::*handler)(UnaryCall*, const Request*,
                                                                   Response*)) {
    auto* call =
        new TypedUnaryCall<Request, Response>(method, context, request, response, observer_);
    if (options_.require_tls) {
      absl::Status secure = RequireTlsTransport(TransportSecurityType(*context));
      if (!secure.ok()) {
        call->Complete(secure, /*caller_fault=*/true);
        return call;
      }
    }
    if (!options_.auth_token.empty()) {
      absl::Status authorized = CheckBearerToken(context->client_metadata(), options_.auth_token);
      if (!authorized.ok()) {
        call->Complete(authorized);
        return call;
      }
    }
    if (!call->request_id_status().ok()) {
      call->Complete(call->request_id_status());
      return call;
    }
    if (draining_.load()) {
      call->Complete(
          absl::UnavailableError("the server is shutting down; retry on another "
                                 "replica"));
      return call;
    }
    if constexpr (std::is_same_v<Request, v1::LoadModelRequest>) {
      // Counted on the wire: parsing millions of tiny layers would allocate
      // gigabytes before the handler could refuse them.
      absl::Status layers =
          CheckLayerCount(CountTopLevelField(*request, v1::LoadModelRequest::kLayersFieldNumber));
      if (!layers.ok()) {
        call->Complete(layers);
        return call;
      }
    }
    absl::Status parsed = call->Parse(*request);
    if (!parsed.ok()) {
      // INTERNAL is what gRPC itself answers to unparsable requests, but the
      // fault is the caller's: logged at WARN.
      call->Complete(parsed, /*caller_fault=*/true);
      return call;
    }
    // Handlers complete the call (or hand it to the pool) as their last
    // step, so an exception can only come before that: the call is still
    // open and is completed here. Nothing may unwind into gRPC.
    try {
      (this->*handler)(call, &call->request, &call->response);
    } catch (const std::bad_alloc&) {
      call->Complete(absl::ResourceExhaustedError("the server ran out of memory for this call"));
    } catch (...) {
      call->Complete(absl::InternalError("unexpected exception in the request handler"));
    }
    return call;
  }

  // RESOURCE_EXHAUSTED naming --max_layers_per_model if a model of `layers`
  // layers, or a graph of `steps` steps (layers, sums, concatenations, lone
  // activations: each costs what a layer's description does), is above it.
  absl::Status CheckLayerCount(int64_t layers, int64_t steps = 0) const;

  void HandleConv(UnaryCall* call, const v1::ConvRequest* request, v1::ConvResponse* response);
  void HandleValidateShape(UnaryCall* call, const v1::ValidateShapeRequest* request,
                           v1::ValidateShapeResponse* response);
  void HandleLoadModel(UnaryCall* call, const v1::LoadModelRequest* request,
                       v1::LoadModelResponse* response);
  void HandleRunModel(UnaryCall* call, const v1::RunModelRequest* request,
                      v1::RunModelResponse* response);
  void HandleUnloadModel(UnaryCall* call, const v1::UnloadModelRequest* request,
                         v1::UnloadModelResponse* response);
  void HandleListModels(UnaryCall* call, const v1::ListModelsRequest* request,
                        v1::ListModelsResponse* response);
  void HandleGetServerInfo(UnaryCall* call, const v1::GetServerInfoRequest* request,
                           v1::GetServerInfoResponse* response);

  // Completes the call with `admitted` if that is an error (the request was
  // refused before any work); otherwise runs `work` (which returns the
  // call's status) on the compute pool, then completes the call: on the
  // small lane if it needs fewer than --small_call_macs multiply-accumulates
  // (`macs`), on the large lane otherwise. Refuses
  // calls already cancelled, past their deadline or stopped (StopAllWork)
  // when their turn comes. `work` gets the call's stop token and returns
  // CANCELLED when the token stopped it; the call then ends with why
  // (Stopped()).
  void RunIfAdmitted(UnaryCall* call, const absl::Status& admitted, int64_t macs,
                     std::function<absl::Status(const StopToken&)> work);
  // The same on the large lane, for work whose size is not counted in MACs.
  void RunIfAdmitted(UnaryCall* call, const absl::Status& admitted,
                     std::function<absl::Status(const StopToken&)> work) {
    RunIfAdmitted(call, admitted, INT64_MAX, std::move(work));
  }

  // One RunModel call waiting in batcher_, and the runner of its batches
  // (conv_service.cc). Runs the calls of `batch` as one computation on
  // their concatenated inputs, or one by one when that cannot be done.
  class RunModelItem;
  void RunModelBatch(std::vector<std::unique_ptr<BatchItem>> batch);

  // Why `call`'s computation stops (before it started, or `during` it):
  // UNAVAILABLE when the server stops all work, DEADLINE_EXCEEDED when the
  // call's deadline has passed, CANCELLED otherwise.
  absl::Status Stopped(const UnaryCall& call, bool during) const;

  const ServiceOptions options_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> stop_all_work_{false};  // see StopAllWork
  ComputePool* const pool_;
  CallObserver* const observer_;
  MemoryBudget budget_;
  ModelRegistry models_;
  const ModelRepository* repository_ = nullptr;
  Batcher batcher_;         // RunModel calls of models with batching on
  StreamRegistry streams_;  // waits for the streams when destroyed
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_CONV_SERVICE_H_
