// access_log.h: one INFO line per finished call (--access_log).
//
//   [2026-11-26 04:09:52.123] [info] access method=RunModel model=resnet
//   request_id=6f1c0e5a9b2d4c7e8f00112233445566 peer=ipv4:127.0.0.1:41234
//   code=OK bytes_in=602151 bytes_out=12845 queue_s=0.000012 compute_s=0.003411
//   total_s=0.003620
//
// (one line; in JSON every field is a key: see logging.h). A failed call also
// has its WARN or ERROR line, carrying the error message and the same
// request_id (UnaryCall::Complete); the access line does not repeat the
// message, so it stays short and holds no caller text but the model name and
// the ID, both bounded and escaped.
#ifndef CONVSERVE_SERVER_ACCESS_LOG_H_
#define CONVSERVE_SERVER_ACCESS_LOG_H_

#include "server/call_record.h"

namespace convserve {

// Logs the access line of `record` at INFO (see above): method, model (empty
// for calls that name none), request_id, peer, code (its name, e.g.
// INVALID_ARGUMENT), bytes_in and bytes_out (the serialized request and
// response), queue_s, compute_s and total_s (seconds; see CallRecord).
void LogAccessLine(const CallRecord& record);

// The access log as a CallObserver. Thread-safe; costs one formatted line
// per call (nothing when the log level is above info).
class AccessLog final : public CallObserver {
 public:
  void OnCallCompleted(const CallRecord& record) override { LogAccessLine(record); }
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_ACCESS_LOG_H_
