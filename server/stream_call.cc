// stream_call.cc: the StreamModel reactor, its admission checks and the idle-stream watchdog.
#include "server/stream_call.h"

#include <grpcpp/impl/codegen/proto_utils.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "convserve/v1/convserve.pb.h"
#include "core/checked_math.h"
#include "core/printable.h"
#include "core/streaming.h"
#include "core/tensor_shape.h"
#include "server/convert.h"
#include "server/logging.h"
#include "server/request_id.h"
#include "server/status_mapping.h"

namespace convserve {

class StreamCall final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  using Clock = std::chrono::steady_clock;

  StreamCall(const StreamServices& services, grpc::CallbackServerContext* context)
      : services_(services), context_(context), started_(Clock::now()) {
    record_.method = "StreamModel";
    CallRequestId id = TakeRequestId(context_->client_metadata());
    record_.request_id = std::move(id.id);
    request_id_status_ = std::move(id.status);
    context_->AddInitialMetadata(kRequestIdKey, record_.request_id);
    if (services_.observer != nullptr) services_.observer->OnCallStarted(record_.method);
  }

  void Begin(const absl::Status& admitted) {
    services_.streams->Add(this);
    std::lock_guard<std::mutex> lock(mutex_);
    if (!admitted.ok()) return FinishLocked(admitted);
    if (!request_id_status_.ok()) return FinishLocked(request_id_status_);
    StartReadLocked();
  }

  void OnReadDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mutex_);
    reading_ = false;
    if (finished_) return;
    if (!ok) {
      // The client closed its side (the normal end), or went away.
      // Logged once done: a client that cancels may first be seen closing
      // its side, and gRPC calls OnCancel() before OnDone().
      return FinishLocked(absl::OkStatus(), /*caller_fault=*/false, /*log_now=*/false);
    }
    record_.request_bytes += static_cast<int64_t>(request_bytes_.Length());
    absl::Status status;
    try {
      status = HandleMessage();
    } catch (const std::bad_alloc&) {
      status = absl::ResourceExhaustedError("the server ran out of memory for this stream");
    } catch (...) {
      status = absl::InternalError("unexpected exception in the stream's handler");
    }
    if (!status.ok()) FinishLocked(status);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mutex_);
    chunk_reservation_.Release();  // the output has been sent
    if (finished_) return;
    if (!ok) return FinishLocked(absl::CancelledError("the client went away"));
    if (services_.streams->draining()) return FinishLocked(Draining());
    StartReadLocked();
  }

  void OnCancel() override { cancelled_.store(true); }

  void OnDone() override {
    // Whoever finished the call has released the lock before this returns.
    { std::lock_guard<std::mutex> lock(mutex_); }
    services_.streams->Remove(this);
    if (!logged_) {
      if (status_.ok() && cancelled_.load()) {
        status_ = absl::CancelledError("the client cancelled the stream");
      }
      LogEnd();
    }
    delete this;
  }

  // Called by the watchdog (under the registry's lock): ends the stream if
  // it waits for its client since more than the idle timeout, or the server
  // drains.
  void CheckIdle(Clock::time_point now) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_ || !reading_) return;
    if (services_.streams->draining()) return FinishLocked(Draining());
    const std::chrono::milliseconds timeout = services_.streams->idle_timeout();
    if (now - read_started_ >= timeout) {
      FinishLocked(absl::DeadlineExceededError(absl::StrCat(
                       "the stream was idle: no message for ",
                       std::chrono::duration_cast<std::chrono::seconds>(timeout).count(),
                       " s (--stream_idle_timeout_s); start a new stream to continue")),
                   /*caller_fault=*/true);
    }
  }

 private:
  static absl::Status Draining() {
    return absl::UnavailableError(
        "the server is shutting down; start the stream again on another replica");
  }

  void StartReadLocked() {
    reading_ = true;
    read_started_ = Clock::now();
    StartRead(&request_bytes_);
  }

  // Parses and admits the message just read and hands its chunk to the
  // compute pool. Under mutex_.
  absl::Status HandleMessage() {
    request_.Clear();
    grpc::ByteBuffer bytes(request_bytes_);
    request_bytes_.Clear();
    const int64_t message_bytes = static_cast<int64_t>(bytes.Length());
    if (!grpc::SerializationTraits<v1::StreamModelRequest>::Deserialize(&bytes, &request_).ok()) {
      return absl::InvalidArgumentError(
          "request: the bytes received are not a valid convserve.v1.StreamModelRequest message");
    }
    const bool first = messages_ == 0;
    ++messages_;
    if (first) {
      record_.model = request_.name();
      absl::Status named = CheckModelName(request_.name());
      if (!named.ok()) return named;
      absl::StatusOr<std::shared_ptr<const Model>> model = services_.models->Find(request_.name());
      if (!model.ok()) return model.status();
      model_ = *std::move(model);
      // Refused before any chunk: the causality does not depend on it.
      if (!model_->graph.IsChain()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "model '", Printable(model_->name),
            "' is a graph (residual Add, Concat or a separate activation): StreamModel runs "
            "chains of layers only, each reading the previous one's output; use RunModel"));
      }
      for (size_t i = 0; i < model_->layers.size(); ++i) {
        absl::Status streamable =
            CheckStreamable(model_->layers[i]->layer(),
                            absl::StrCat("model '", Printable(model_->name), "' layers[", i, "]"));
        if (!streamable.ok()) return streamable;
      }
      LogEvent(spdlog::level::info,
               absl::StrCat("StreamModel from ", context_->peer(), " started on model '",
                            Printable(model_->name), "'"),
               {{"request_id", record_.request_id}});
      if (!request_.has_chunk()) {  // a message naming the model only
        StartReadLocked();
        return absl::OkStatus();
      }
    } else {
      if (!request_.name().empty() && request_.name() != model_->name) {
        return absl::InvalidArgumentError(
            absl::StrCat("name: expected empty or '", Printable(model_->name),
                         "' (the stream's model) after the first message, got '",
                         Printable(request_.name()), "'"));
      }
      if (!request_.has_chunk()) {
        return absl::InvalidArgumentError(
            "chunk: expected a chunk in every message after the first, got none");
      }
    }
    absl::StatusOr<FloatTensor> chunk = DecodeTensor("chunk", true, request_.chunk());
    if (!chunk.ok()) return chunk.status();
    chunk_ = *std::move(chunk);
    if (!stream_) {
      std::vector<const ConvOperator*> layers;
      for (const auto& op : model_->layers) layers.push_back(op.get());
      absl::StatusOr<ConvStream> stream = ConvStream::Create(
          std::move(layers), chunk_.shape, absl::StrCat("model '", Printable(model_->name), "' "));
      if (!stream.ok()) return stream.status();
      std::optional<int64_t> state_bytes =
          CheckedMul(stream->max_state_elements(), static_cast<int64_t>(sizeof(float)));
      if (!state_bytes)
        return absl::ResourceExhaustedError("chunk: the stream's state is too large");
      absl::StatusOr<MemoryBudget::Reservation> reserved = services_.budget->Reserve(
          "StreamModel (the stream's state)", *state_bytes + kStreamOverheadBytes);
      if (!reserved.ok()) return reserved.status();
      state_reservation_ = *std::move(reserved);
      stream_.emplace(*std::move(stream));
    }
    absl::Status shape = stream_->CheckChunkShape("chunk.shape", chunk_.shape);
    if (!shape.ok()) return shape;
    absl::StatusOr<StreamChunkPlan> plan = stream_->PlanChunk(chunk_.shape[stream_->time_axis()]);
    if (!plan.ok()) return plan.status();
    int64_t output_elements = 0;
    int64_t macs = 0;  // over all layers, to choose the compute pool's lane
    for (size_t i = 0; i < plan->geometries.size(); ++i) {
      macs = CheckedAdd(macs, plan->geometries[i].macs()).value_or(INT64_MAX);
      absl::Status limits =
          CheckLimits(absl::StrCat("layers[", i, "]."), plan->geometries[i], *services_.limits);
      if (!limits.ok()) return limits;
      if (i + 1 == model_->layers.size()) output_elements = plan->geometries[i].output_elements();
    }
    absl::Status size = CheckResponseSize({output_elements}, *services_.limits);
    if (!size.ok()) return size;
    // The chunk's intermediates and output, its serialized response, the
    // message (received bytes and parsed copy) and the chunk's aligned copy.
    absl::StatusOr<MemoryBudget::Reservation> reserved = services_.budget->Reserve(
        "StreamModel",
        (plan->work_elements + output_elements + static_cast<int64_t>(chunk_.aligned_copy.size())) *
                static_cast<int64_t>(sizeof(float)) +
            2 * message_bytes);
    if (!reserved.ok()) return reserved.status();
    chunk_reservation_ = *std::move(reserved);
    queued_ = Clock::now();
    return services_.pool->Submit(
        macs < services_.small_call_macs ? ComputePool::Lane::kSmall : ComputePool::Lane::kLarge,
        [this] { Compute(); });
  }

  // Runs the chunk on the compute pool and writes its output.
  void Compute() {
    const Clock::time_point start = Clock::now();
    record_.queue_seconds += std::chrono::duration<double>(start - queued_).count();
    absl::Status status;
    try {
      status = RunChunk();
    } catch (const std::bad_alloc&) {
      status = absl::ResourceExhaustedError("the server ran out of memory for this stream");
    } catch (const std::exception& error) {
      status = absl::InternalError(absl::StrCat("unexpected exception: ", error.what()));
    } catch (...) {
      status = absl::InternalError("unexpected exception");
    }
    record_.compute_seconds += std::chrono::duration<double>(Clock::now() - start).count();
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_) return;
    if (!status.ok()) return FinishLocked(status);
    record_.response_bytes += static_cast<int64_t>(response_bytes_.Length());
    StartWrite(&response_bytes_);
  }

  absl::Status RunChunk() {
    const StopToken stop(&cancelled_, services_.stop_all_work);
    if (stop.StopRequested()) return Stopped();
    const Clock::time_point start = Clock::now();
    std::vector<float> output;
    std::vector<int64_t> output_shape;
    absl::Status pushed = stream_->Push(chunk_.shape, chunk_.values, &output, &output_shape, stop);
    chunk_ = FloatTensor();
    request_.Clear();  // the chunk's values are no longer needed
    if (pushed.code() == absl::StatusCode::kCancelled) return Stopped();
    if (!pushed.ok()) return pushed;
    v1::StreamModelResponse response;
    v1::Tensor* tensor = response.mutable_output();
    tensor->mutable_shape()->Assign(output_shape.begin(), output_shape.end());
    tensor->set_element_type(v1::ELEMENT_TYPE_FLOAT32);
    tensor->set_data(reinterpret_cast<const char*>(output.data()), output.size() * sizeof(float));
    response.set_compute_time_ns(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
    bool own_buffer = false;
    response_bytes_.Clear();  // the previous chunk's, sent
    const grpc::Status serialized = grpc::SerializationTraits<v1::StreamModelResponse>::Serialize(
        response, &response_bytes_, &own_buffer);
    if (!serialized.ok()) {
      return absl::InternalError("response: serialization failed: " + serialized.error_message());
    }
    return absl::OkStatus();
  }

  absl::Status Stopped() const {
    if (services_.stop_all_work->load()) {
      return absl::UnavailableError(
          "the server is shutting down (--shutdown_timeout_s passed) and stopped this stream; "
          "start it again on another replica");
    }
    return absl::CancelledError("the stream was cancelled during a chunk's computation");
  }

  // Ends the call with `status`, logged now or (!log_now) in OnDone().
  // Under mutex_.
  void FinishLocked(const absl::Status& status, bool caller_fault = false, bool log_now = true) {
    finished_ = true;
    status_ = status;
    caller_fault_ = caller_fault;
    // Nothing computes now (a chunk's work ends before it finishes the call):
    // the tails go back to the budget at once, not once gRPC is done.
    if (stream_) {
      samples_in_ = stream_->samples_in();
      samples_out_ = stream_->samples_out();
      stream_.reset();
    }
    state_reservation_.Release();
    chunk_reservation_.Release();  // no write is outstanding
    if (log_now) LogEnd();
    Finish(ToGrpcStatus(status));
  }

  // Logs the stream's end and tells the observer.
  void LogEnd() {
    logged_ = true;
    const absl::Status& status = status_;
    const bool client = !status.ok() && (caller_fault_ || IsClientError(status.code()));
    const std::string peer = context_->peer();
    LogEvent(
        status.ok() || status.code() == absl::StatusCode::kCancelled ? spdlog::level::info
        : client                                                     ? spdlog::level::warn
                                                                     : spdlog::level::err,
        absl::StrCat("StreamModel from ", peer, " ended: ", absl::StatusCodeToString(status.code()),
                     status.ok() ? "" : ": ", status.ok() ? "" : BoundedStatusMessage(status)),
        {{"request_id", record_.request_id},
         {"messages", messages_},
         {"samples_in", samples_in_},
         {"samples_out", samples_out_}});
    if (services_.observer != nullptr) {
      record_.peer = peer;
      record_.code = status.code();
      record_.caller_fault = client;
      record_.total_seconds = std::chrono::duration<double>(Clock::now() - started_).count();
      services_.observer->OnCallCompleted(record_);
    }
  }

  const StreamServices services_;
  grpc::CallbackServerContext* const context_;
  const Clock::time_point started_;
  std::atomic<bool> cancelled_{false};  // see OnCancel

  std::mutex mutex_;
  bool reading_ = false;            // guarded by mutex_: a read is outstanding
  bool finished_ = false;           // guarded by mutex_: Finish() was called
  Clock::time_point read_started_;  // guarded by mutex_

  // Touched by one stage at a time (read, compute, write), in turn.
  grpc::ByteBuffer request_bytes_;
  grpc::ByteBuffer response_bytes_;
  v1::StreamModelRequest request_;
  FloatTensor chunk_;  // views request_
  int64_t messages_ = 0;
  std::shared_ptr<const Model> model_;  // kept alive even if unloaded meanwhile
  std::optional<ConvStream> stream_;
  MemoryBudget::Reservation state_reservation_;  // the tails, for the stream's life
  MemoryBudget::Reservation chunk_reservation_;  // one chunk, until its output is sent
  Clock::time_point queued_;
  CallRecord record_;
  absl::Status request_id_status_;
  absl::Status status_;  // what the call ended with
  bool caller_fault_ = false;
  bool logged_ = false;     // LogEnd() ran
  int64_t samples_in_ = 0;  // the stream's, once it has ended
  int64_t samples_out_ = 0;
};

StreamRegistry::StreamRegistry(std::chrono::milliseconds idle_timeout)
    : idle_timeout_(idle_timeout), watchdog_([this] { Watch(); }) {}

StreamRegistry::~StreamRegistry() {
  std::unique_lock<std::mutex> lock(mutex_);
  // gRPC ends every stream when the server shuts down; their OnDone may
  // still be on the way.
  wake_.wait(lock, [this] { return calls_.empty(); });
  stopping_ = true;
  lock.unlock();
  wake_.notify_all();
  watchdog_.join();
}

void StreamRegistry::StartDraining() {
  draining_.store(true);
  std::lock_guard<std::mutex> lock(mutex_);
  const StreamCall::Clock::time_point now = StreamCall::Clock::now();
  for (StreamCall* call : calls_) call->CheckIdle(now);
}

size_t StreamRegistry::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return calls_.size();
}

void StreamRegistry::Add(StreamCall* call) {
  std::lock_guard<std::mutex> lock(mutex_);
  calls_.insert(call);
}

void StreamRegistry::Remove(StreamCall* call) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    calls_.erase(call);
  }
  wake_.notify_all();
}

void StreamRegistry::Watch() {
  // A stream ends within a quarter of the timeout (at most a second) after it.
  const std::chrono::milliseconds period =
      std::clamp(idle_timeout_ / 4, std::chrono::milliseconds(10), std::chrono::milliseconds(1000));
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, period);
    const StreamCall::Clock::time_point now = StreamCall::Clock::now();
    for (StreamCall* call : calls_) call->CheckIdle(now);
  }
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* StartStreamCall(
    const StreamServices& services, grpc::CallbackServerContext* context,
    const absl::Status& admitted) {
  auto* call = new StreamCall(services, context);
  call->Begin(admitted);
  return call;
}

}  // namespace convserve
