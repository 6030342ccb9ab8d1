// logging.h: the server's log lines: text or JSON, structured fields, and gRPC's own lines.
//
// Everything goes through spdlog's default logger (standard output), in one
// of two formats chosen by --log_format:
//
//   text  [2026-11-26 04:09:52.123] [info] access method=Conv model="" ...
//         spdlog's default line, with every byte of the message outside
//         printable ASCII C-escaped (\n, \x1b), so that one event is always
//         one line, whatever caller text it quotes.
//   json  {"time":"2026-11-26T04:09:52.123Z","level":"info","message":"access",
//          "method":"Conv",...}
//         one object per line; time is RFC 3339 in UTC with milliseconds,
//         level is spdlog's name (trace, debug, info, warning, error,
//         critical), fields are keys of their own; strings are escaped by
//         nlohmann::json (invalid UTF-8 replaced by U+FFFD), so no text can
//         end the object or the line.
#ifndef CONVSERVE_SERVER_LOGGING_H_
#define CONVSERVE_SERVER_LOGGING_H_

#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace convserve {

enum class LogFormat { kText, kJson };

// "text" or "json"; otherwise INVALID_ARGUMENT naming --log_format.
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name);

// A formatter writing `format` (see above), for spdlog loggers.
std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format);

// Makes every spdlog logger, and those made later, write `format`, and
// LogEvent() render fields for it. Call before other threads log: spdlog
// does not guard a formatter change against concurrent logging.
void SetLogFormat(LogFormat format);

// The format SetLogFormat() set last; kText before any call.
LogFormat CurrentLogFormat();

// Routes gRPC's own log lines (gpr_log) through spdlog's default logger, so
// the server writes one format: gRPC's DEBUG, INFO and ERROR become debug,
// info and error, with fields source=grpc, file and line. Which lines gRPC
// writes at all is still up to its GRPC_VERBOSITY (default ERROR). Call at
// the start of main, before gRPC starts.
void RouteGrpcLogs();

// A named value in a log line: text (bounded to kMaxEchoedBytes bytes, then
// "...(N bytes)": fields may carry caller-supplied text), an integer or a
// number of seconds. Refers to its text: lives only as long as the LogEvent()
// call it is made for.
class LogField {
 public:
  enum class Kind { kText, kInteger, kSeconds };

  LogField(const char* key, absl::string_view text) : key_(key), kind_(Kind::kText), text_(text) {}
  LogField(const char* key, const std::string& text) : LogField(key, absl::string_view(text)) {}
  LogField(const char* key, const char* text) : LogField(key, absl::string_view(text)) {}
  LogField(const char* key, int64_t integer)
      : key_(key), kind_(Kind::kInteger), integer_(integer) {}
  LogField(const char* key, int integer) : LogField(key, int64_t{integer}) {}
  LogField(const char* key, double seconds) : key_(key), kind_(Kind::kSeconds), seconds_(seconds) {}

  const char* key() const { return key_; }
  Kind kind() const { return kind_; }
  absl::string_view text() const { return text_; }
  int64_t integer() const { return integer_; }
  double seconds() const { return seconds_; }

 private:
  const char* key_;
  Kind kind_;
  absl::string_view text_;
  int64_t integer_ = 0;
  double seconds_ = 0;
};

// Logs `message` with `fields` at `level` through spdlog's default logger.
// Text: the message, then " key=value" per field; a text value as it is
// when it is a non-empty run of [A-Za-z0-9_.:/@+[]-] (names, codes, peers)
// of at most kMaxEchoedBytes bytes, otherwise double-quoted, escaped and
// truncated by Printable(); seconds with 6
// decimals. JSON: each field a key of the line's object, after time, level
// and message. Costs nothing when `level` is off. Thread-safe.
void LogEvent(spdlog::level::level_enum level, absl::string_view message,
              std::initializer_list<LogField> fields);

// How the text format writes a text value (see LogEvent).
std::string TextFieldValue(absl::string_view text);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_LOGGING_H_
