// unary_call.h: one unary call of the callback API, with its messages.
//
// The service registers its methods as raw (ByteBuffer) callback methods and
// parses requests here, because gRPC's generated callback handlers answer a
// request that fails to parse with an empty UNIMPLEMENTED; ConvServe answers
// INTERNAL naming the message type (RELIABILITY row 2). Parsing and
// serializing use gRPC's own SerializationTraits, so this costs no copy
// beyond what the generated handlers do.
#ifndef CONVSERVE_SERVER_UNARY_CALL_H_
#define CONVSERVE_SERVER_UNARY_CALL_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <string>

#include "absl/status/status.h"

namespace convserve {

// A call in progress. Owns itself: deleted by gRPC's OnDone() after Complete().
class UnaryCall : public grpc::ServerUnaryReactor {
 public:
  // Finishes the call with `status`, serializing the response first when it
  // is OK, and logs a failure once (WARN for the caller's mistakes, ERROR for
  // the server's; `caller_fault` marks a failure as the caller's whatever its
  // code). Call exactly once; the call may be deleted on return.
  void Complete(const absl::Status& status, bool caller_fault = false);

  grpc::CallbackServerContext* context() const { return context_; }
  const char* method() const { return method_; }

  void OnDone() override { delete this; }

 protected:
  UnaryCall(const char* method, grpc::CallbackServerContext* context,
            grpc::ByteBuffer* response_bytes)
      : method_(method), context_(context), response_bytes_(response_bytes) {}
  ~UnaryCall() override = default;

  // Writes the response message into `out`.
  virtual grpc::Status SerializeResponse(grpc::ByteBuffer* out) = 0;

 private:
  const char* const method_;
  grpc::CallbackServerContext* const context_;
  grpc::ByteBuffer* const response_bytes_;
};

// The call of one method, holding its request and response messages.
template <typename Request, typename Response>
class TypedUnaryCall final : public UnaryCall {
 public:
  TypedUnaryCall(const char* method, grpc::CallbackServerContext* context,
                 grpc::ByteBuffer* response_bytes)
      : UnaryCall(method, context, response_bytes) {}

  // Parses the request bytes. INTERNAL when they are not a `Request`.
  absl::Status Parse(const grpc::ByteBuffer& request_bytes) {
    // Copying a ByteBuffer shares its slices; Deserialize consumes the copy.
    grpc::ByteBuffer bytes(request_bytes);
    grpc::Status parsed = grpc::SerializationTraits<Request>::Deserialize(&bytes, &request);
    if (parsed.ok()) return absl::OkStatus();
    std::string message = "request: the bytes received are not a valid " +
                          Request::descriptor()->full_name() + " message";
    if (!parsed.error_message().empty()) message += " (" + parsed.error_message() + ")";
    return absl::InternalError(message);
  }

  Request request;
  Response response;

 private:
  grpc::Status SerializeResponse(grpc::ByteBuffer* out) override {
    bool own_buffer = false;
    return grpc::SerializationTraits<Response>::Serialize(response, out, &own_buffer);
  }
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_UNARY_CALL_H_
