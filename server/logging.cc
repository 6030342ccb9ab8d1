// logging.cc: the text and JSON formatters, structured fields and gRPC's log function.
#include "server/logging.h"

#include <grpc/support/log.h>
#include <spdlog/details/log_msg.h>
#include <spdlog/pattern_formatter.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/printable.h"

namespace convserve {
namespace {

std::atomic<LogFormat> current_format{LogFormat::kText};

// The fields of the LogEvent() running on this thread, for the JSON
// formatter: spdlog's synchronous loggers format on the logging thread,
// within the log() call.
struct ThreadFields {
  const LogField* begin = nullptr;
  size_t count = 0;
};
thread_local ThreadFields thread_fields;

bool IsPrintableAscii(char c) { return c >= 0x20 && c <= 0x7e; }

// `text` with every byte outside printable ASCII C-escaped; backslashes and
// quotes stay as they are (they cannot break a line).
std::string EscapeUnprintable(absl::string_view text) {
  std::string escaped;
  escaped.reserve(text.size() + 16);
  for (char c : text) {
    switch (c) {
      case '\n':
        escaped += "\\n";
        break;
      case '\r':
        escaped += "\\r";
        break;
      case '\t':
        escaped += "\\t";
        break;
      default:
        if (IsPrintableAscii(c)) {
          escaped.push_back(c);
        } else {
          escaped += absl::StrFormat("\\x%02x", static_cast<unsigned char>(c));
        }
    }
  }
  return escaped;
}

// spdlog's default line, its message escaped by EscapeUnprintable().
class TextFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    bool clean = true;
    for (char c : msg.payload) clean = clean && IsPrintableAscii(c);
    if (clean) {
      pattern_.format(msg, dest);
      return;
    }
    const std::string escaped =
        EscapeUnprintable(absl::string_view(msg.payload.data(), msg.payload.size()));
    spdlog::details::log_msg copy = msg;
    copy.payload = spdlog::string_view_t(escaped.data(), escaped.size());
    pattern_.format(copy, dest);
    // The colour sink colours the level by these (mutable for that purpose).
    msg.color_range_start = copy.color_range_start;
    msg.color_range_end = copy.color_range_end;
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<TextFormatter>();
  }

 private:
  spdlog::pattern_formatter pattern_;  // spdlog's default pattern
};

// "2026-11-26T04:09:52.123Z" for `time`.
std::string Rfc3339Utc(spdlog::log_clock::time_point time) {
  const auto since_epoch = time.time_since_epoch();
  const auto seconds = std::chrono::floor<std::chrono::seconds>(since_epoch);
  const int64_t milliseconds =
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
  const time_t whole = static_cast<time_t>(seconds.count());
  struct tm utc {};
  gmtime_r(&whole, &utc);
  char text[64];
  std::snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(milliseconds));
  return text;
}

// A field's text as JSON carries it: at most kMaxEchoedBytes bytes, then
// "...(N bytes)" (escaping is the JSON library's job).
std::string BoundedText(absl::string_view text) {
  if (text.size() <= kMaxEchoedBytes) return std::string(text);
  return absl::StrCat(text.substr(0, kMaxEchoedBytes), "...(", text.size(), " bytes)");
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::ordered_json line;
    line["time"] = Rfc3339Utc(msg.time);
    const spdlog::string_view_t level = spdlog::level::to_string_view(msg.level);
    line["level"] = std::string(level.data(), level.size());
    line["message"] = std::string(msg.payload.data(), msg.payload.size());
    for (size_t i = 0; i < thread_fields.count; ++i) {
      const LogField& field = thread_fields.begin[i];
      switch (field.kind()) {
        case LogField::Kind::kText:
          line[field.key()] = BoundedText(field.text());
          break;
        case LogField::Kind::kInteger:
          line[field.key()] = field.integer();
          break;
        case LogField::Kind::kSeconds:
          line[field.key()] = field.seconds();
          break;
      }
    }
    const std::string text =
        line.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

bool IsBareTextChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == ':' ||
         c == '/' || c == '@' || c == '+' || c == '[' || c == ']' || c == '-';
}

void LogGrpcLine(gpr_log_func_args* args) {
  spdlog::level::level_enum level = spdlog::level::err;
  if (args->severity == GPR_LOG_SEVERITY_DEBUG) level = spdlog::level::debug;
  if (args->severity == GPR_LOG_SEVERITY_INFO) level = spdlog::level::info;
  absl::string_view file = args->file != nullptr ? args->file : "";
  const size_t slash = file.rfind('/');
  if (slash != absl::string_view::npos) file.remove_prefix(slash + 1);
  LogEvent(level, args->message != nullptr ? args->message : "",
           {{"source", "grpc"}, {"file", file}, {"line", args->line}});
}

}  // namespace

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("--log_format: expected text or json, got '", Printable(name), "'"));
}

std::unique_ptr<spdlog::formatter> MakeLogFormatter(LogFormat format) {
  if (format == LogFormat::kJson) return std::make_unique<JsonFormatter>();
  return std::make_unique<TextFormatter>();
}

void SetLogFormat(LogFormat format) {
  current_format.store(format);
  spdlog::set_formatter(MakeLogFormatter(format));
}

LogFormat CurrentLogFormat() { return current_format.load(); }

void RouteGrpcLogs() { gpr_set_log_function(LogGrpcLine); }

std::string TextFieldValue(absl::string_view text) {
  // Bounded as in JSON: an 8 MiB model name must not make an 8 MiB line.
  bool bare = !text.empty() && text.size() <= kMaxEchoedBytes;
  for (char c : text) bare = bare && IsBareTextChar(c);
  if (bare) return std::string(text);
  return absl::StrCat("\"", Printable(text), "\"");
}

void LogEvent(spdlog::level::level_enum level, absl::string_view message,
              std::initializer_list<LogField> fields) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  if (current_format.load() == LogFormat::kJson) {
    struct Scope {  // the fields are this call's only, however it ends
      explicit Scope(std::initializer_list<LogField> fields) {
        thread_fields = {fields.begin(), fields.size()};
      }
      ~Scope() { thread_fields = {}; }
    } scope(fields);
    logger->log(level, spdlog::string_view_t(message.data(), message.size()));
    return;
  }
  std::string line(message);
  for (const LogField& field : fields) {
    absl::StrAppend(&line, " ", field.key(), "=");
    switch (field.kind()) {
      case LogField::Kind::kText:
        line += TextFieldValue(field.text());
        break;
      case LogField::Kind::kInteger:
        absl::StrAppend(&line, field.integer());
        break;
      case LogField::Kind::kSeconds:
        line += absl::StrFormat("%.6f", field.seconds());
        break;
    }
  }
  logger->log(level, spdlog::string_view_t(line.data(), line.size()));
}

}  // namespace convserve
