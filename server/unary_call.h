// unary_call.h: one unary call: its messages, its completion and its response framing.
//
// The service registers its methods as raw (ByteBuffer) callback methods and
// parses requests here, because gRPC's generated callback handlers answer a
// request that fails to parse with an empty UNIMPLEMENTED; ConvServe answers
// INTERNAL naming the message type (docs/RELIABILITY.md row 2). Parsing and
// serializing use gRPC's own SerializationTraits, so this costs no copy
// beyond what the generated handlers do; responses with an output tensor
// avoid even the serialization copy of their values (PrepareOutputPayload).
#ifndef CONVSERVE_SERVER_UNARY_CALL_H_
#define CONVSERVE_SERVER_UNARY_CALL_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "convserve/v1/convserve.pb.h"
#include "core/stop_token.h"
#include "server/call_record.h"
#include "server/memory_budget.h"

namespace convserve {

// Frees memory from std::malloc / std::aligned_alloc.
struct FreeDeleter {
  void operator()(void* memory) const { std::free(memory); }
};

// A response's output values, kept apart from the message (see
// UnaryCall::PrepareOutputPayload).
using OutputPayload = std::unique_ptr<char, FreeDeleter>;

// Writes into `out` the bytes of a response message whose field 1 is
// `output` (a Tensor without data) holding the `payload_bytes` bytes of
// `payload` as its data (Tensor field 3), followed by the fields of `rest`
// (the response without its output): a small header, the payload itself and
// the rest, as three slices (two when `rest` serializes to nothing). These
// are the bytes the generated serializer writes for the whole message, with
// no copy of the payload. `payload` is handed over to `out` (freed once gRPC
// has sent it), or freed here on failure: INTERNAL if `output` or `rest` does
// not serialize.
// REQUIRES: `output` has no data; `rest` has no field 1.
grpc::Status FrameResponseWithPayload(const v1::Tensor& output,
                                      const google::protobuf::MessageLite& rest,
                                      OutputPayload payload, size_t payload_bytes,
                                      grpc::ByteBuffer* out);

// A call in progress. Owns itself: deleted by gRPC's OnDone() after Complete().
// Not thread-safe, and need not be: one thread at a time holds a call (the
// gRPC thread that starts it, then at most one compute pool item); only
// OnCancel() comes from another thread, and sets an atomic flag.
class UnaryCall : public grpc::ServerUnaryReactor {
 public:
  using Clock = std::chrono::steady_clock;

  // Finishes the call with `status`, serializing the response first when it
  // is OK, logs a failure once (WARN for the caller's mistakes, ERROR for
  // the server's; `caller_fault` marks a failure as the caller's whatever its
  // code) and tells the observer. Call exactly once; the call may be deleted
  // on return.
  void Complete(const absl::Status& status, bool caller_fault = false);

  grpc::CallbackServerContext* context() const { return context_; }
  const char* method() const { return method_; }
  // The call's ID (request_id.h): the caller's x-request-id or one made
  // here; in the response's initial metadata and in every log line about
  // the call.
  const std::string& request_id() const { return record_.request_id; }
  // INVALID_ARGUMENT if the caller's x-request-id was refused (the call must
  // then fail with it); OK otherwise.
  const absl::Status& request_id_status() const { return request_id_status_; }

  // What the access log and the metrics learn about the call; filled in as
  // the call goes (set_model, the Mark* times), completed by Complete().
  CallRecord& record() { return record_; }
  void set_model(const std::string& name) { record_.model = name; }
  // The call waits for the compute pool from now on.
  void MarkQueued() { queued_ = Clock::now(); }
  // Its work starts, or ends, on the compute pool now.
  void MarkComputeStarted() { compute_started_ = Clock::now(); }
  void MarkComputeEnded() { compute_ended_ = Clock::now(); }

  // Keeps `reservation` until gRPC is done with the call (OnDone), that is
  // until the response's last byte has been sent or the call has failed:
  // the output buffer the reservation stands for lives that long, and so do
  // the request's bytes and parsed message. May be called more than once.
  void HoldUntilDone(MemoryBudget::Reservation reservation) {
    held_.push_back(std::move(reservation));
  }

  // What the request holds in memory while the call lives: gRPC's received
  // bytes and the parsed message, whose bytes fields copy them.
  int64_t request_memory_bytes() const { return 2 * record_.request_bytes; }

  // Sets the response's output `tensor` to `shape` in float32 and returns the
  // room for its values, kept apart from the message: a 64-byte aligned
  // buffer that the response's bytes take over as one slice, so the values
  // are written once, never zero-filled nor copied by serialization.
  // `tensor` must be the response's `output` field (number 1). At most once
  // per call. Throws std::bad_alloc. REQUIRES: the element count of `shape`
  // has been checked against the limits.
  float* PrepareOutputPayload(const std::vector<int64_t>& shape, v1::Tensor* tensor);

  // Rounds the float32 values written into PrepareOutputPayload()'s buffer
  // to `type` in place (server/convert.h EncodeOutputInPlace) and sets
  // `tensor`'s element_type; FLOAT32 leaves them as they are. REQUIRES:
  // PrepareOutputPayload() with `tensor` was called; `type` is one that
  // DecodeOutputType() returns.
  void ConvertOutputPayload(v1::ElementType type, v1::Tensor* tensor);

  // A token that stops the call's computation once gRPC cancels the call
  // (the client cancelled, its connection broke or its deadline passed),
  // once its deadline passes, or once `server_stop` (may be null; must
  // outlive the call) is set.
  StopToken MakeStopToken(const std::atomic<bool>* server_stop) const;

  // Whether gRPC has cancelled the call, or its deadline has passed.
  bool cancelled() const { return cancelled_.load(); }
  bool deadline_passed() const;

  // gRPC calls this (from any thread) when the call is cancelled.
  void OnCancel() override { cancelled_.store(true); }
  void OnDone() override { delete this; }

 protected:
  // `observer` (may be null) is told about the call when it completes.
  UnaryCall(const char* method, grpc::CallbackServerContext* context,
            const grpc::ByteBuffer* request_bytes, grpc::ByteBuffer* response_bytes,
            CallObserver* observer)
      : method_(method),
        context_(context),
        response_bytes_(response_bytes),
        observer_(observer),
        started_(Clock::now()) {
    record_.method = method;
    record_.request_bytes = static_cast<int64_t>(request_bytes->Length());
    AssignRequestId();
    if (observer_ != nullptr) observer_->OnCallStarted(method);
  }
  ~UnaryCall() override = default;

  // Writes the response message into `out`.
  virtual grpc::Status SerializeResponse(grpc::ByteBuffer* out) = 0;

  bool has_payload() const { return payload_ != nullptr; }

  // FrameResponseWithPayload() with the payload of PrepareOutputPayload(),
  // which gRPC owns from then on. REQUIRES: has_payload().
  grpc::Status SerializeWithPayload(const v1::Tensor& output,
                                    const google::protobuf::MessageLite& rest,
                                    grpc::ByteBuffer* out);

 private:
  // Sets the call's ID and sends it back as initial metadata.
  void AssignRequestId();

  const char* const method_;
  grpc::CallbackServerContext* const context_;
  grpc::ByteBuffer* const response_bytes_;
  CallObserver* const observer_;
  OutputPayload payload_;  // see PrepareOutputPayload
  size_t payload_bytes_ = 0;
  std::vector<MemoryBudget::Reservation> held_;  // see HoldUntilDone
  std::atomic<bool> cancelled_{false};           // see OnCancel
  CallRecord record_;
  absl::Status request_id_status_;  // see request_id_status()
  const Clock::time_point started_;
  Clock::time_point queued_{};  // the epoch: never queued
  Clock::time_point compute_started_{};
  Clock::time_point compute_ended_{};
};

// Whether `Response` has a Tensor `output` as field 1 (ConvResponse, RunModelResponse).
template <typename Response, typename = void>
struct HasOutputTensor : std::false_type {};
template <typename Response>
struct HasOutputTensor<Response, std::void_t<decltype(Response::kOutputFieldNumber)>>
    : std::bool_constant<
          Response::kOutputFieldNumber == 1 &&
          std::is_same_v<decltype(std::declval<Response&>().mutable_output()), v1::Tensor*>> {};

// The call of one method, holding its request and response messages.
template <typename Request, typename Response>
class TypedUnaryCall final : public UnaryCall {
 public:
  TypedUnaryCall(const char* method, grpc::CallbackServerContext* context,
                 const grpc::ByteBuffer* request_bytes, grpc::ByteBuffer* response_bytes,
                 CallObserver* observer)
      : UnaryCall(method, context, request_bytes, response_bytes, observer) {}

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
    if constexpr (HasOutputTensor<Response>::value) {
      if (has_payload()) {
        const v1::Tensor output = std::move(*response.mutable_output());
        response.clear_output();
        return SerializeWithPayload(output, response, out);
      }
    }
    bool own_buffer = false;
    return grpc::SerializationTraits<Response>::Serialize(response, out, &own_buffer);
  }
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_UNARY_CALL_H_
