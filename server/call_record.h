// call_record.h: what one finished call did, for the access log and the metrics.
#ifndef CONVSERVE_SERVER_CALL_RECORD_H_
#define CONVSERVE_SERVER_CALL_RECORD_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace convserve {

// One finished call. Strings are as received (not escaped nor truncated):
// whoever writes them out bounds and escapes them.
struct CallRecord {
  const char* method = "";  // "Conv", "RunModel", ...
  std::string model;        // the model a model call names; empty otherwise
  std::string request_id;   // the caller's x-request-id or one the server made
  std::string peer;         // gRPC's peer string, e.g. "ipv4:127.0.0.1:5555"
  absl::StatusCode code = absl::StatusCode::kOk;
  bool caller_fault = false;   // the failure was the caller's (INVALID_ARGUMENT, ...)
  int64_t request_bytes = 0;   // the serialized request, as gRPC handed it over
  int64_t response_bytes = 0;  // the serialized response; 0 on failure
  double queue_seconds = 0;    // waiting for the compute pool; 0 if never queued
  double compute_seconds = 0;  // running on the compute pool; 0 if never run there
  double total_seconds = 0;    // from the handler's start to the call's completion
};

// Told about every call when it completes. Implementations must be
// thread-safe (calls complete on gRPC's and the compute pool's threads) and
// quick (they run on those threads).
class CallObserver {
 public:
  virtual ~CallObserver() = default;
  // A call of `method` arrived (before its request is parsed).
  virtual void OnCallStarted(const char* method) { (void)method; }
  // It completed; every OnCallStarted is followed by exactly one of these.
  virtual void OnCallCompleted(const CallRecord& record) = 0;
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_CALL_RECORD_H_
