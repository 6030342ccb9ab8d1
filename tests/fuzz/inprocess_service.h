// inprocess_service.h: the real ConvService behind an in-process gRPC channel, for the fuzzers.
//
// Requests go through gRPC's whole server path (raw-bytes methods, parsing,
// the handlers, the compute pool, response framing) without sockets. Limits
// are small so that every input runs in milliseconds and memory stays
// bounded however many models the inputs load.
#ifndef CONVSERVE_TESTS_FUZZ_INPROCESS_SERVICE_H_
#define CONVSERVE_TESTS_FUZZ_INPROCESS_SERVICE_H_

#include <google/protobuf/stubs/logging.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>

#include "convserve/v1/convserve.pb.h"
#include "server/compute_pool.h"
#include "server/conv_service.h"

namespace convserve::fuzz {

// The service's methods, as gRPC names them.
inline constexpr const char* kMethods[] = {
    "/convserve.v1.ConvService/Conv",          "/convserve.v1.ConvService/ValidateShape",
    "/convserve.v1.ConvService/LoadModel",     "/convserve.v1.ConvService/RunModel",
    "/convserve.v1.ConvService/UnloadModel",   "/convserve.v1.ConvService/ListModels",
    "/convserve.v1.ConvService/GetServerInfo",
};
inline constexpr int kMethodCount = sizeof(kMethods) / sizeof(kMethods[0]);

class InProcessService {
 public:
  // The one instance, built on first use and never destroyed (libFuzzer
  // exits without unwinding its callers).
  static InProcessService& Get() {
    static InProcessService* service = new InProcessService();
    return *service;
  }

  // Calls `method` with `request` as its serialized message; the response's
  // bytes go to `response`. Waits for the answer (at most 20 s: a call that
  // takes longer is a hang worth reporting, and gets DEADLINE_EXCEEDED).
  grpc::Status Call(const std::string& method, const std::string& request,
                    grpc::ByteBuffer* response) {
    grpc::Slice slice(request);
    grpc::ByteBuffer request_bytes(&slice, 1);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    std::promise<grpc::Status> done;
    stub_->UnaryCall(&context, method, grpc::StubOptions(), &request_bytes, response,
                     [&done](grpc::Status status) { done.set_value(std::move(status)); });
    return done.get_future().get();
  }

  // Unloads every model, so that state does not pile up across inputs.
  void UnloadAll() {
    grpc::ByteBuffer listed;
    if (!Call(kMethods[5], "", &listed).ok()) return;
    v1::ListModelsResponse models;
    if (!grpc::SerializationTraits<v1::ListModelsResponse>::Deserialize(&listed, &models).ok()) {
      return;
    }
    for (const v1::ModelInfo& model : models.models()) {
      v1::UnloadModelRequest unload;
      unload.set_name(model.name());
      grpc::ByteBuffer ignored;
      Call(kMethods[4], unload.SerializeAsString(), &ignored);
    }
  }

 private:
  static ServiceOptions SmallLimits() {
    ServiceOptions options;
    options.max_message_bytes = 4 << 20;
    options.max_elements = 1 << 20;
    options.max_macs = 1 << 22;
    options.memory_budget_bytes = 64 << 20;
    options.max_model_bytes = 16 << 20;
    return options;
  }

  InProcessService() : pool_(1), service_(SmallLimits(), &pool_) {
    // Every refused input would log a line (the service's WARN, protobuf's
    // complaint about invalid UTF-8): millions of lines, and most of the time.
    spdlog::set_level(spdlog::level::off);
    google::protobuf::SetLogHandler(nullptr);
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    builder.SetMaxReceiveMessageSize(4 << 20);
    builder.SetMaxSendMessageSize(4 << 20);
    server_ = builder.BuildAndStart();
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
    stub_ = std::make_unique<grpc::GenericStub>(channel_);
  }

  ComputePool pool_;
  ConvServiceImpl service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
};

// Codes a call may end with; anything else (UNKNOWN from an escaped
// exception, DEADLINE_EXCEEDED from a hang, ...) is a bug.
inline bool IsExpectedCode(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::INTERNAL:  // what an unparsable request gets (RELIABILITY row 2)
      return true;
    default:
      return false;
  }
}

}  // namespace convserve::fuzz

#endif  // CONVSERVE_TESTS_FUZZ_INPROCESS_SERVICE_H_
