// model_repository.h: models served from a directory of model files, in
// Triton's layout.
//
//   DIR/<model name>/<version>/model.onnx
//
// <model name> follows the model-name rule (CheckModelName); <version> is a
// positive decimal number, and the highest version that has a model.onnx is
// the one served. Entries whose names start with '.' are skipped (Kubernetes
// mounts a ConfigMap or volume through "..data" links).
//
// Sync() brings the registry in line with the directory:
//   - a new model, or a served one whose file changed (another version, size,
//     modification time or inode), is read and built beside the version
//     serving now, then swapped in atomically (ModelRegistry::Add with
//     replace): calls in flight keep the version they started with;
//   - a model that fails to read or build is refused with the reason logged
//     (once: the same file is not tried again until it changes), and the
//     version already serving, if any, stays;
//   - a model whose folder (or last model.onnx) is gone is unloaded;
//   - a model of the same name loaded through LoadModel is left alone (the
//     repository only replaces or unloads what it loaded itself).
// Files are read with a size limit checked before reading. Thread-safe:
// Sync() calls (start-up, SIGHUP, the poll thread) run one at a time.
#ifndef CONVSERVE_SERVER_MODEL_REPOSITORY_H_
#define CONVSERVE_SERVER_MODEL_REPOSITORY_H_

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <ctime>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "convserve/v1/convserve.pb.h"
#include "server/model_registry.h"

namespace convserve {

inline constexpr char kModelFileName[] = "model.onnx";

// One model the directory offers: its highest version with a model file.
struct RepositoryEntry {
  std::string name;
  int64_t version = 0;
  std::string path;       // DIR/<name>/<version>/model.onnx
  std::string model_dir;  // DIR/<name>/<version>: external data must stay inside it
  std::string config;     // DIR/<name>/config.pbtxt if there is one, else empty
};

// What the directory holds now, and what in it was skipped and why.
struct RepositoryScan {
  std::vector<RepositoryEntry> entries;  // sorted by name
  std::vector<std::string> skipped;      // "DIR/x y: not a model name ...", for the log
};

// Lists `root`. INVALID_ARGUMENT naming --model_repository if it is not a
// readable directory.
absl::StatusOr<RepositoryScan> ScanModelRepository(const std::string& root);

// The bytes of the regular file `path` (symbolic links are followed), or
// INVALID_ARGUMENT naming the file when it cannot be opened or read, is not a
// regular file, or is larger than `max_bytes` (checked before reading).
absl::StatusOr<std::string> ReadModelFile(const std::string& path, int64_t max_bytes);

// A model file the repository could not serve, as ListModels shows it.
struct RefusedModel {
  std::string name;
  int64_t version = 0;
  std::string path;
  std::string reason;
};

// What a model's config.pbtxt sets.
struct RepositoryConfig {
  BatchingOptions batching;
  v1::Precision precision = v1::PRECISION_EXACT;
};

// The settings a Triton config.pbtxt (`text`, from `path`) gives: dynamic
// batching, on when it has `dynamic_batching` and max_batch_size > 0; the
// precision, from `parameters` key "precision" ("exact" or "fast"). Fields
// ConvServe does not read are ignored; INVALID_ARGUMENT naming the file for
// text that does not parse, values out of CheckBatchingOptions' bounds, or
// another precision.
absl::StatusOr<RepositoryConfig> ParseRepositoryConfig(const std::string& path,
                                                       const std::string& text);

// What one Sync() did.
struct RepositorySyncReport {
  int loaded = 0;                    // new models and new versions swapped in
  int unchanged = 0;                 // served, or refused before, and the file unchanged
  int unloaded = 0;                  // gone from the directory
  std::vector<std::string> refused;  // "name: reason", one per model that failed
};

class ModelRepository {
 public:
  // Builds a model from the bytes of its file, its AUTO layers as
  // `precision` says. The repository fills in the model's name, version and
  // source. `model_dir` is the version folder.
  using Builder = std::function<absl::StatusOr<std::shared_ptr<Model>>(
      const std::string& name, const std::string& bytes, const std::string& model_dir,
      v1::Precision precision)>;

  // `registry` must outlive this. max_file_bytes: the largest model file
  // read (--max_model_bytes).
  ModelRepository(std::string root, int64_t max_file_bytes, ModelRegistry* registry,
                  Builder builder);
  // Stops the poll thread, if any. Models stay in the registry.
  ~ModelRepository();

  ModelRepository(const ModelRepository&) = delete;
  ModelRepository& operator=(const ModelRepository&) = delete;

  // Scans the directory and loads, swaps and unloads as described above;
  // logs each change and each refusal. An error only if the directory
  // itself cannot be listed (the models served stay then).
  absl::StatusOr<RepositorySyncReport> Sync();

  // Runs Sync() on a thread of its own until destruction: every
  // `interval_s` seconds (--model_repository_poll_s; 0: never by itself) and
  // whenever RequestSync() asks. REQUIRES: interval_s >= 0; called at most once.
  void StartBackground(int64_t interval_s);

  // Wakes the background thread for one Sync() (SIGHUP); returns at once.
  void RequestSync();

  // The model files refused by the last Sync() that are still in the
  // directory, sorted by name.
  std::vector<RefusedModel> Refused() const;

  const std::string& root() const { return root_; }

 private:
  // A file's size, modification time and inode; all 0 when it is absent.
  struct FileStat {
    int64_t size = 0;
    int64_t mtime_ns = 0;
    ino_t inode = 0;
    bool operator==(const FileStat& other) const {
      return size == other.size && mtime_ns == other.mtime_ns && inode == other.inode;
    }
  };
  static FileStat StatOf(const std::string& path);
  // What identifies the files a served model was built from.
  struct FileIdentity {
    int64_t version = 0;
    std::string path;
    FileStat model;
    FileStat config;  // of config.pbtxt; all 0 without one
    bool operator==(const FileIdentity& other) const {
      return version == other.version && path == other.path && model == other.model &&
             config == other.config;
    }
  };
  struct Served {
    FileIdentity file;
    std::shared_ptr<const Model> model;  // what the registry held when we put it there
  };

  // The registry holds the model this repository put there under `name`.
  bool StillOurs(const std::string& name, const Served& served) const;
  // Reads and builds `entry`; on success swaps it in and records it.
  absl::Status Load(const RepositoryEntry& entry, const FileIdentity& file);

  const std::string root_;
  const int64_t max_file_bytes_;
  ModelRegistry* const registry_;
  const Builder builder_;

  std::mutex sync_mutex_;                 // one Sync() at a time
  std::map<std::string, Served> served_;  // guarded by sync_mutex_
  // Files that failed to load, not retried (nor logged again) until they change.
  struct Refusal {
    FileIdentity file;
    RefusedModel model;
  };
  mutable std::mutex refused_mutex_;        // taken inside sync_mutex_, never around it
  std::map<std::string, Refusal> refused_;  // guarded by refused_mutex_

  std::mutex poll_mutex_;
  std::condition_variable poll_wake_;
  bool stopping_ = false;        // guarded by poll_mutex_
  bool sync_requested_ = false;  // guarded by poll_mutex_
  std::thread poller_;
};

}  // namespace convserve

#endif  // CONVSERVE_SERVER_MODEL_REPOSITORY_H_
