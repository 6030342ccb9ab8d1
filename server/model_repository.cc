// model_repository.cc: scanning the model directory, reading files with a limit, and the swaps.
#include "server/model_repository.h"

#include <fcntl.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "convserve/v1/convserve.pb.h"
#include "core/printable.h"

namespace convserve {
namespace {

namespace fs = std::filesystem;

constexpr char kModelConfigName[] = "config.pbtxt";
constexpr int64_t kMaxConfigBytes = 1 << 20;  // Triton's configs are a few KB

// A version folder's name as a number: 1 to 18 decimal digits, above 0.
bool ParseVersion(const std::string& text, int64_t* version) {
  if (text.empty() || text.size() > 18) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(text, version) && *version > 0;
}

bool IsDirectory(const fs::path& path) {
  std::error_code error;
  return fs::is_directory(path, error);  // follows links
}

// The entries of `dir` (names only), skipping those starting with '.'.
std::vector<std::string> VisibleNames(const fs::path& dir, std::error_code* error) {
  std::vector<std::string> names;
  for (fs::directory_iterator it(dir, *error), end; !*error && it != end; it.increment(*error)) {
    std::string name = it->path().filename().string();
    if (!name.empty() && name[0] != '.') names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string ErrnoText(int error) { return std::strerror(error); }

}  // namespace

absl::StatusOr<RepositoryScan> ScanModelRepository(const std::string& root) {
  std::error_code error;
  if (!IsDirectory(root)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--model_repository: expected a directory of <model name>/<version>/",
                     kModelFileName, ", got '", Printable(root), "', which is not a directory"));
  }
  const std::vector<std::string> models = VisibleNames(root, &error);
  if (error) {
    return absl::InvalidArgumentError(
        absl::StrCat("--model_repository: cannot list '", Printable(root), "': ", error.message()));
  }
  RepositoryScan scan;
  for (const std::string& name : models) {
    const fs::path model_path = fs::path(root) / name;
    if (!IsDirectory(model_path)) continue;  // files beside the model folders (READMEs, ...)
    if (absl::Status valid = CheckModelName(name); !valid.ok()) {
      scan.skipped.push_back(absl::StrCat(Printable(model_path.string()), ": ", valid.message()));
      continue;
    }
    std::error_code list_error;
    const std::vector<std::string> versions = VisibleNames(model_path, &list_error);
    if (list_error) {
      scan.skipped.push_back(
          absl::StrCat(Printable(model_path.string()), ": cannot list it: ", list_error.message()));
      continue;
    }
    RepositoryEntry best;
    for (const std::string& folder : versions) {
      int64_t version = 0;
      if (!ParseVersion(folder, &version) || version <= best.version) continue;
      const fs::path file = model_path / folder / kModelFileName;
      std::error_code exists_error;
      if (!fs::exists(file, exists_error)) continue;
      best.name = name;
      best.version = version;
      best.path = file.string();
      best.model_dir = (model_path / folder).string();
    }
    std::error_code config_error;
    if (fs::exists(model_path / kModelConfigName, config_error)) {
      best.config = (model_path / kModelConfigName).string();
    }
    if (best.version == 0) {
      scan.skipped.push_back(absl::StrCat(Printable(model_path.string()),
                                          ": no version folder (a number above 0) holds a ",
                                          kModelFileName));
      continue;
    }
    scan.entries.push_back(std::move(best));
  }
  return scan;
}

absl::StatusOr<RepositoryConfig> ParseRepositoryConfig(const std::string& path,
                                                       const std::string& text) {
  // Triton's configs hold many fields ConvServe does not read: skipped.
  class Collector : public google::protobuf::io::ErrorCollector {
   public:
    void AddError(int line, google::protobuf::io::ColumnNumber column,
                  const std::string& message) override {
      if (first.empty())
        first = absl::StrCat("line ", line + 1, ", column ", column + 1, ": ", message);
    }
    std::string first;
  } errors;
  google::protobuf::TextFormat::Parser parser;
  parser.AllowUnknownField(true);
  parser.AllowUnknownExtension(true);
  parser.RecordErrorsTo(&errors);
  v1::RepositoryModelConfig config;
  if (!parser.ParseFromString(text, &config)) {
    return absl::InvalidArgumentError(absl::StrCat(
        Printable(path), ": expected a model configuration in protobuf text format, got ",
        Printable(errors.first)));
  }
  RepositoryConfig result;
  BatchingOptions& options = result.batching;
  if (config.has_dynamic_batching() && config.max_batch_size() > 0) {
    options.max_batch_size = config.max_batch_size();
    options.max_queue_delay_us = config.dynamic_batching().max_queue_delay_microseconds();
  }
  absl::Status valid = CheckBatchingOptions(absl::StrCat(Printable(path), ": "), options);
  if (!valid.ok()) return valid;
  for (const v1::RepositoryModelConfig::Parameter& parameter : config.parameters()) {
    if (parameter.key() != "precision") continue;
    const std::string& value = parameter.value().string_value();
    if (value == "exact") {
      result.precision = v1::PRECISION_EXACT;
    } else if (value == "fast") {
      result.precision = v1::PRECISION_FAST;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(Printable(path),
                       ": parameters \"precision\": expected \"exact\" or "
                       "\"fast\", got \"",
                       Printable(value, 64), "\""));
    }
  }
  return result;
}

absl::StatusOr<std::string> ReadModelFile(const std::string& path, int64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Printable(path), ": cannot open it: ", ErrnoText(errno)));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Printable(path), ": cannot stat it: ", ErrnoText(errno)));
  }
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Printable(path), ": expected a regular file, got another kind of file"));
  }
  if (info.st_size > max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(Printable(path), ": the file is ", info.st_size,
                                                   " bytes, more than the limit of ", max_bytes,
                                                   " bytes (--max_model_bytes)"));
  }
  std::string bytes(static_cast<size_t>(info.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t got = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(Printable(path), ": cannot read it: ", ErrnoText(errno)));
    }
    if (got == 0) {
      return absl::InvalidArgumentError(absl::StrCat(Printable(path), ": expected ", bytes.size(),
                                                     " bytes, read ", done,
                                                     " (the file shrank while it was read)"));
    }
    done += static_cast<size_t>(got);
  }
  return bytes;
}

ModelRepository::ModelRepository(std::string root, int64_t max_file_bytes, ModelRegistry* registry,
                                 Builder builder)
    : root_(std::move(root)),
      max_file_bytes_(max_file_bytes),
      registry_(registry),
      builder_(std::move(builder)) {}

ModelRepository::~ModelRepository() {
  {
    std::lock_guard<std::mutex> lock(poll_mutex_);
    stopping_ = true;
  }
  poll_wake_.notify_all();
  if (poller_.joinable()) poller_.join();
}

ModelRepository::FileStat ModelRepository::StatOf(const std::string& path) {
  struct stat info {};
  FileStat stat;
  if (::stat(path.c_str(), &info) == 0) {
    stat.size = info.st_size;
    stat.mtime_ns =
        static_cast<int64_t>(info.st_mtim.tv_sec) * 1'000'000'000 + info.st_mtim.tv_nsec;
    stat.inode = info.st_ino;
  }
  return stat;
}

bool ModelRepository::StillOurs(const std::string& name, const Served& served) const {
  absl::StatusOr<std::shared_ptr<const Model>> current = registry_->Find(name);
  return current.ok() && *current == served.model;
}

absl::Status ModelRepository::Load(const RepositoryEntry& entry, const FileIdentity& file) {
  absl::StatusOr<std::string> bytes = ReadModelFile(entry.path, max_file_bytes_);
  if (!bytes.ok()) return bytes.status();
  RepositoryConfig settings;
  if (!entry.config.empty()) {
    absl::StatusOr<std::string> config = ReadModelFile(entry.config, kMaxConfigBytes);
    if (!config.ok()) return config.status();
    absl::StatusOr<RepositoryConfig> parsed = ParseRepositoryConfig(entry.config, *config);
    if (!parsed.ok()) return parsed.status();
    settings = *parsed;
  }
  absl::StatusOr<std::shared_ptr<Model>> model =
      builder_(entry.name, *bytes, entry.model_dir, settings.precision);
  if (!model.ok()) return model.status();
  (*model)->batching = settings.batching;
  (*model)->name = entry.name;
  (*model)->version = entry.version;
  (*model)->source = entry.path;
  std::shared_ptr<const Model> built = *std::move(model);
  absl::Status added = registry_->Add(built, /*replace=*/true);
  if (!added.ok()) return added;
  served_[entry.name] = Served{file, std::move(built)};
  return absl::OkStatus();
}

absl::StatusOr<RepositorySyncReport> ModelRepository::Sync() {
  std::lock_guard<std::mutex> lock(sync_mutex_);
  absl::StatusOr<RepositoryScan> scan = ScanModelRepository(root_);
  if (!scan.ok()) return scan.status();
  for (const std::string& skipped : scan->skipped) {
    spdlog::warn("model repository: skipped {}", skipped);
  }
  RepositorySyncReport report;
  std::set<std::string> present;
  for (const RepositoryEntry& entry : scan->entries) {
    present.insert(entry.name);
    FileIdentity file;
    file.version = entry.version;
    file.path = entry.path;
    file.model = StatOf(entry.path);
    if (!entry.config.empty()) file.config = StatOf(entry.config);
    auto served = served_.find(entry.name);
    const bool ours = served != served_.end() && StillOurs(entry.name, served->second);
    if (ours && served->second.file == file) {
      ++report.unchanged;
      continue;
    }
    {
      std::lock_guard<std::mutex> refused_lock(refused_mutex_);
      auto refused_before = refused_.find(entry.name);
      if (refused_before != refused_.end() && refused_before->second.file == file) {
        ++report.unchanged;
        continue;
      }
    }
    // A name taken through LoadModel is tried again at every Sync(): it may
    // be unloaded meanwhile.
    const bool taken = !ours && registry_->Find(entry.name).ok();
    absl::Status loaded =
        taken ? absl::AlreadyExistsError(
                    "a model of that name was loaded through LoadModel; unload it to serve this "
                    "file")
              : Load(entry, file);
    if (loaded.ok()) {
      std::lock_guard<std::mutex> refused_lock(refused_mutex_);
      refused_.erase(entry.name);
      ++report.loaded;
      spdlog::info("model repository: serving {} version {} from {}", entry.name, entry.version,
                   Printable(entry.path));
    } else {
      const std::string reason = absl::StrCat(
          loaded.message(),
          ours ? absl::StrCat(" (version ", served->second.file.version, " stays)") : "");
      std::lock_guard<std::mutex> refused_lock(refused_mutex_);
      refused_[entry.name] = Refusal{taken ? FileIdentity{} : file,
                                     RefusedModel{entry.name, entry.version, entry.path, reason}};
      report.refused.push_back(absl::StrCat(entry.name, ": ", reason));
    }
  }
  {
    std::lock_guard<std::mutex> refused_lock(refused_mutex_);
    for (auto it = refused_.begin(); it != refused_.end();) {
      it = present.count(it->first) == 0 ? refused_.erase(it) : std::next(it);
    }
  }
  for (auto it = served_.begin(); it != served_.end();) {
    if (present.count(it->first) == 0) {
      if (StillOurs(it->first, it->second) && registry_->Remove(it->first).ok()) {
        ++report.unloaded;
        spdlog::info("model repository: unloaded {} (its folder is gone)", it->first);
      }
      it = served_.erase(it);
    } else {
      ++it;
    }
  }
  for (const std::string& refused : report.refused) {
    spdlog::warn("model repository: refused {}", refused);
  }
  return report;
}

void ModelRepository::StartBackground(int64_t interval_s) {
  poller_ = std::thread([this, interval_s] {
    std::unique_lock<std::mutex> lock(poll_mutex_);
    for (;;) {
      auto woken = [this] { return stopping_ || sync_requested_; };
      if (interval_s > 0) {
        poll_wake_.wait_for(lock, std::chrono::seconds(interval_s), woken);
      } else {
        poll_wake_.wait(lock, woken);
      }
      if (stopping_) return;
      sync_requested_ = false;
      lock.unlock();
      absl::StatusOr<RepositorySyncReport> report = Sync();
      if (report.ok()) {
        spdlog::info("model repository {}: {} loaded, {} unchanged, {} unloaded, {} refused",
                     Printable(root_), report->loaded, report->unchanged, report->unloaded,
                     report->refused.size());
      } else {
        spdlog::warn("model repository: {}; the models served stay",
                     std::string(report.status().message()));
      }
      lock.lock();
    }
  });
}

void ModelRepository::RequestSync() {
  {
    std::lock_guard<std::mutex> lock(poll_mutex_);
    sync_requested_ = true;
  }
  poll_wake_.notify_all();
}

std::vector<RefusedModel> ModelRepository::Refused() const {
  std::lock_guard<std::mutex> lock(refused_mutex_);
  std::vector<RefusedModel> refused;
  for (const auto& [name, refusal] : refused_) refused.push_back(refusal.model);
  return refused;
}

}  // namespace convserve
