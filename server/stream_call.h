// stream_call.h: one StreamModel call, a causal model run over a signal sent in chunks.
//
// The call reads one message, runs its chunk through the stream's ConvStream
// (core/streaming.h) on the compute pool, writes the chunk's output, and
// only then reads the next message: one chunk at a time per stream, in
// order, so a stream holds its layers' tails plus at most one chunk. The
// tails are reserved in the memory budget when the first chunk fixes the
// stream's shape, for the stream's life; each chunk's working memory from
// its arrival until its output is sent.
//
// A stream ends OK when the client closes its side; with the error of the
// first bad message (the model, its causality, the chunk's shape or limits);
// with DEADLINE_EXCEEDED when the client sends nothing for
// --stream_idle_timeout_s; with UNAVAILABLE when the server drains; with
// CANCELLED when the client cancels (its chunk's computation stops within a
// work item). Each stream logs one line when it starts and one when it ends
// (with its request ID, chunks and samples), and counts as one call in the
// access log and the metrics.
#ifndef CONVSERVE_SERVER_STREAM_CALL_H_
#define CONVSERVE_SERVER_STREAM_CALL_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>

#include "server/call_record.h"
#include "server/compute_pool.h"
#include "server/limits.h"
#include "server/memory_budget.h"
#include "server/model_registry.h"

namespace convserve {

class StreamCall;

// The live streams of a service, and the thread that ends idle ones.
// Thread-safe.
class StreamRegistry {
 public:
  // `idle_timeout`: how long a stream may wait for its client's next
  // message (--stream_idle_timeout_s).
  explicit StreamRegistry(std::chrono::milliseconds idle_timeout);
  // Stops the watchdog. REQUIRES: every stream has ended (OnDone).
  ~StreamRegistry();

  std::chrono::milliseconds idle_timeout() const { return idle_timeout_; }

  // Ends every stream waiting for its client with UNAVAILABLE now, and every
  // other one once its chunk's output is sent.
  void StartDraining();
  bool draining() const { return draining_.load(); }

  // How many streams are open.
  size_t size() const;

 private:
  friend class StreamCall;
  void Add(StreamCall* call);
  void Remove(StreamCall* call);
  void Watch();  // the watchdog's loop

  const std::chrono::milliseconds idle_timeout_;
  std::atomic<bool> draining_{false};
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::set<StreamCall*> calls_;  // guarded by mutex_
  bool stopping_ = false;        // guarded by mutex_
  std::thread watchdog_;         // last: starts once the rest is built
};

// What a stream uses of its service. Everything must outlive the streams.
struct StreamServices {
  const RequestLimits* limits = nullptr;
  ModelRegistry* models = nullptr;
  MemoryBudget* budget = nullptr;
  ComputePool* pool = nullptr;
  CallObserver* observer = nullptr;        // may be null
  const std::atomic<bool>* stop_all_work;  // the service's StopAllWork flag
  StreamRegistry* streams = nullptr;
  // Chunks of fewer multiply-accumulates (over all layers) run on the
  // compute pool's small lane (--small_call_macs).
  int64_t small_call_macs = 0;
};

// Memory a stream holds besides its tails: its messages, ConvStream and
// reactor (charged with the tails when the stream starts).
inline constexpr int64_t kStreamOverheadBytes = 16 << 10;

// Starts a StreamModel call. `admitted` is the verdict of the service's
// checks (TLS, token, draining): an error ends the call at once with it.
// Returns the reactor gRPC drives; it deletes itself when done.
grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* StartStreamCall(
    const StreamServices& services, grpc::CallbackServerContext* context,
    const absl::Status& admitted);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_STREAM_CALL_H_
