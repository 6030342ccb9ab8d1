// conv_service.h: the convserve.v1.ConvService gRPC adapter.
//
// A thin layer: converts requests into core types (convert.h), checks the
// server's limits and memory budget, hands the computation to the compute
// pool and converts the result back. Every failure goes through
// ToGrpcStatus() and is logged once. Handlers never throw and never block a
// gRPC thread on a convolution.
#ifndef CONVSERVE_SERVER_CONV_SERVICE_H_
#define CONVSERVE_SERVER_CONV_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "convserve/v1/convserve.grpc.pb.h"
#include "core/conv_spec.h"
#include "server/compute_pool.h"
#include "server/memory_budget.h"
#include "server/model_registry.h"

namespace convserve {

// Limits of one server. Each is named in the error a request above it gets.
struct ServiceOptions {
  int64_t max_message_bytes = 256 << 20;          // --max_message_bytes
  int64_t max_elements = int64_t{1} << 28;        // --max_elements: per tensor.
  int64_t max_macs = int64_t{1} << 40;            // --max_macs: per request.
  int64_t memory_budget_bytes = int64_t{2} << 30; // --memory_budget_bytes
  int64_t max_model_bytes = int64_t{1} << 30;     // --max_model_bytes: all models.
};

class ConvServiceImpl final : public v1::ConvService::CallbackService {
 public:
  // `pool` must outlive the service and be drained before it is destroyed.
  ConvServiceImpl(const ServiceOptions& options, ComputePool* pool);

  grpc::ServerUnaryReactor* Conv(grpc::CallbackServerContext* context,
                                 const v1::ConvRequest* request,
                                 v1::ConvResponse* response) override;
  grpc::ServerUnaryReactor* ValidateShape(grpc::CallbackServerContext* context,
                                          const v1::ValidateShapeRequest* request,
                                          v1::ValidateShapeResponse* response) override;
  grpc::ServerUnaryReactor* LoadModel(grpc::CallbackServerContext* context,
                                      const v1::LoadModelRequest* request,
                                      v1::LoadModelResponse* response) override;
  grpc::ServerUnaryReactor* RunModel(grpc::CallbackServerContext* context,
                                     const v1::RunModelRequest* request,
                                     v1::RunModelResponse* response) override;
  grpc::ServerUnaryReactor* UnloadModel(grpc::CallbackServerContext* context,
                                        const v1::UnloadModelRequest* request,
                                        v1::UnloadModelResponse* response) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;

  // From now on every new call fails with UNAVAILABLE; calls already
  // accepted run to completion. Called when the server starts draining.
  void StartDraining() { draining_.store(true); }

  const MemoryBudget& memory_budget() const { return budget_; }

 private:
  // Checks a resolved layer against --max_elements / --max_macs and the
  // response against --max_message_bytes.
  absl::Status CheckLimits(const std::string& field, const ConvGeometry& geometry) const;
  absl::Status CheckResponseSize(const std::vector<int64_t>& output_shape) const;

  // Runs `work` (which returns the call's status) on the compute pool, then
  // finishes the call. Refuses calls already cancelled or past their deadline.
  void RunOnPool(const char* method, grpc::CallbackServerContext* context,
                 grpc::ServerUnaryReactor* reactor, std::function<absl::Status()> work);

  // True (and the call finished with UNAVAILABLE) when the server drains.
  bool RefuseIfDraining(const char* method, grpc::CallbackServerContext* context,
                        grpc::ServerUnaryReactor* reactor);

  const ServiceOptions options_;
  std::atomic<bool> draining_{false};
  ComputePool* const pool_;
  MemoryBudget budget_;
  ModelRegistry models_;
};

// Finishes a call with `status`, logging it once if it failed (WARN for the
// caller's mistakes, ERROR for the server's).
void FinishCall(const char* method, grpc::CallbackServerContext* context,
                grpc::ServerUnaryReactor* reactor, const absl::Status& status);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_CONV_SERVICE_H_
