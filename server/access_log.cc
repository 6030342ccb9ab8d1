// access_log.cc: the access line of a call.
#include "server/access_log.h"

#include <string>

#include "absl/status/status.h"
#include "server/logging.h"

namespace convserve {

void LogAccessLine(const CallRecord& record) {
  if (!spdlog::default_logger_raw()->should_log(spdlog::level::info)) return;
  const std::string code = absl::StatusCodeToString(record.code);
  LogEvent(spdlog::level::info, "access",
           {{"method", record.method},
            {"model", record.model},
            {"request_id", record.request_id},
            {"peer", record.peer},
            {"code", code},
            {"bytes_in", record.request_bytes},
            {"bytes_out", record.response_bytes},
            {"queue_s", record.queue_seconds},
            {"compute_s", record.compute_seconds},
            {"total_s", record.total_seconds}});
}

}  // namespace convserve
