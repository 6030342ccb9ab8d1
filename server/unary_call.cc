// unary_call.cc: completing a call and framing its response bytes by hand.
#include "server/unary_call.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <new>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/convert.h"
#include "server/logging.h"
#include "server/request_id.h"
#include "server/status_mapping.h"

namespace convserve {
namespace {

// Protobuf's base-128 varint: 7 bits per byte, least significant first, the
// high bit set on every byte but the last.
void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// The number of bytes AppendVarint() writes for `value`.
size_t VarintSize(uint64_t value) {
  size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}

}  // namespace

grpc::Status FrameResponseWithPayload(const v1::Tensor& output,
                                      const google::protobuf::MessageLite& rest,
                                      OutputPayload payload, size_t payload_bytes,
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
  const uint64_t data_bytes = payload_bytes;
  std::string head;
  head.push_back(static_cast<char>(1 << 3 | 2));  // output (field 1), a Tensor
  AppendVarint(tensor_fields.size() + 1 + VarintSize(data_bytes) + data_bytes, &head);
  head += tensor_fields;
  head.push_back(static_cast<char>(3 << 3 | 2));  // Tensor.data (field 3)
  AppendVarint(data_bytes, &head);
  grpc::Slice slices[3] = {grpc::Slice(head), grpc::Slice(payload.get(), data_bytes, std::free),
                           grpc::Slice(tail)};
  payload.release();  // owned by its slice now: freed once gRPC has sent it
  *out = grpc::ByteBuffer(slices, tail.empty() ? 2 : 3);
  return grpc::Status::OK;
}

void UnaryCall::Complete(const absl::Status& status, bool caller_fault) {
  absl::Status result = status;
  if (result.ok()) {
    const grpc::Status serialized = SerializeResponse(response_bytes_);
    if (!serialized.ok()) {
      result = absl::InternalError("response: serialization failed: " + serialized.error_message());
    }
  }
  if (!result.ok()) {
    // The message may quote caller text: the log format keeps it on one line,
    // and BoundedStatusMessage keeps it as short as what the caller gets.
    const std::string peer = context_->peer();
    LogEvent(
        caller_fault || IsClientError(result.code()) ? spdlog::level::warn : spdlog::level::err,
        absl::StrCat(method_, " from ", peer, " failed: ", absl::StatusCodeToString(result.code()),
                     ": ", BoundedStatusMessage(result)),
        {{"request_id", record_.request_id}});
  } else if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("{} from {} request_id={} ok", method_, context_->peer(),
                  TextFieldValue(record_.request_id));
  }
  if (observer_ != nullptr) {
    const auto seconds = [](Clock::duration duration) {
      return std::chrono::duration<double>(duration).count();
    };
    const Clock::time_point now = Clock::now();
    record_.peer = context_->peer();
    record_.code = result.code();
    record_.caller_fault = !result.ok() && (caller_fault || IsClientError(result.code()));
    record_.response_bytes = result.ok() ? static_cast<int64_t>(response_bytes_->Length()) : 0;
    const Clock::time_point epoch{};
    if (queued_ != epoch) {
      record_.queue_seconds =
          seconds((compute_started_ != epoch ? compute_started_ : now) - queued_);
    }
    if (compute_started_ != epoch) {
      record_.compute_seconds =
          seconds((compute_ended_ != epoch ? compute_ended_ : now) - compute_started_);
    }
    record_.total_seconds = seconds(now - started_);
    observer_->OnCallCompleted(record_);
  }
  Finish(ToGrpcStatus(result));
}

void UnaryCall::AssignRequestId() {
  if (context_ == nullptr) {  // a call without gRPC behind it (unary_call_test)
    record_.request_id = NewRequestId();
    return;
  }
  CallRequestId id = TakeRequestId(context_->client_metadata());
  record_.request_id = std::move(id.id);
  request_id_status_ = std::move(id.status);
  context_->AddInitialMetadata(kRequestIdKey, record_.request_id);
}

StopToken UnaryCall::MakeStopToken(const std::atomic<bool>* server_stop) const {
  if (context_ == nullptr) return StopToken(&cancelled_, server_stop);  // unary_call_test
  // The deadline on the steady clock: the system clock may jump. gRPC's
  // "no deadline" is the system clock's maximum, and far deadlines are
  // never reached; both become "none" (and avoid overflowing the sum).
  const auto left = context_->deadline() - std::chrono::system_clock::now();
  StopToken::Clock::time_point deadline = StopToken::Clock::time_point::max();
  if (left < std::chrono::hours(24 * 365)) {
    deadline =
        StopToken::Clock::now() + std::chrono::duration_cast<StopToken::Clock::duration>(left);
  }
  return StopToken(&cancelled_, server_stop, deadline);
}

bool UnaryCall::deadline_passed() const {
  if (context_ == nullptr) return false;
  // gRPC cancels a call at its deadline by its own clock, which may run a few
  // milliseconds ahead of the system clock's reading here: a deadline that
  // close counts as passed.
  return context_->deadline() < std::chrono::system_clock::now() + std::chrono::milliseconds(100);
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

void UnaryCall::ConvertOutputPayload(v1::ElementType type, v1::Tensor* tensor) {
  payload_bytes_ = EncodeOutputInPlace(type, reinterpret_cast<float*>(payload_.get()),
                                       payload_bytes_ / sizeof(float));
  tensor->set_element_type(type);
}

grpc::Status UnaryCall::SerializeWithPayload(const v1::Tensor& output,
                                             const google::protobuf::MessageLite& rest,
                                             grpc::ByteBuffer* out) {
  return FrameResponseWithPayload(output, rest, std::move(payload_), payload_bytes_, out);
}

}  // namespace convserve
