// model_registry.h: the named models a server holds.
//
// A model is immutable once built: layers with their operators (weights
// packed once at load). Calls running a model hold a shared_ptr to it, so
// unloading or replacing a model never disturbs a call in flight.
// Thread-safe.
#ifndef CONVSERVE_SERVER_MODEL_REGISTRY_H_
#define CONVSERVE_SERVER_MODEL_REGISTRY_H_

#include <climits>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/conv.h"
#include "core/model_graph.h"
#include "server/batcher.h"

namespace convserve {

// What a loaded model holds in memory beyond its weights, charged against
// --max_model_bytes with them. Measured as the RSS a server grows by (Release
// build, glibc malloc): about 2.9 KB per layer when loading one model of
// 20000 1x1 layers (its operator, packed-weight and description headers,
// allocator slack), and 1.7 KB per one-layer model over 3000 such models.
constexpr int64_t kBytesPerModelLayer = 3072;
constexpr int64_t kBytesPerModel = 1024;

// What a model of `layers` layers holding `weight_bytes` weight bytes counts
// against --max_model_bytes.
inline int64_t ModelBytes(int64_t weight_bytes, int64_t layers) {
  return weight_bytes + layers * kBytesPerModelLayer + kBytesPerModel;
}

struct Model {
  std::string name;
  std::vector<std::unique_ptr<ConvOperator>> layers;
  ModelGraph graph;  // how the layers connect: a chain, or an ONNX model's graph
  int64_t parameters = 0;
  int64_t weight_bytes = 0;
  int64_t charged_bytes = 0;          // what it counts against the limit: ModelBytes()
  int64_t version = 0;                // the model repository's version folder; 0 from LoadModel
  std::string source;                 // the model file it was read from; empty from LoadModel
  std::vector<int64_t> input_shape;   // the fixed input shape its file declares, if any
  std::vector<int64_t> output_shape;  // the output for input_shape; empty when that is
  // Dynamic batching of its RunModel calls (batcher.h); off by default.
  BatchingOptions batching;
};

class ModelRegistry {
 public:
  // REQUIRES: max_total_bytes >= 0 (--max_model_bytes), max_models >= 1
  // (--max_models).
  explicit ModelRegistry(int64_t max_total_bytes, int64_t max_models = INT64_MAX)
      : max_total_weight_bytes_(max_total_bytes), max_models_(max_models) {}

  // Adds `model`. ALREADY_EXISTS if the name is taken and !replace;
  // RESOURCE_EXHAUSTED if the models would hold more than the limit (their
  // charged_bytes) or be more than max_models.
  absl::Status Add(std::shared_ptr<const Model> model, bool replace);

  // What Add() of a model of that name and charged size would say now; lets
  // a load fail before it spends time and memory packing weights.
  absl::Status CheckAdd(const std::string& name, int64_t charged_bytes, bool replace) const;

  // The model named `name`, or NOT_FOUND.
  absl::StatusOr<std::shared_ptr<const Model>> Find(const std::string& name) const;

  // NOT_FOUND if no such model.
  absl::Status Remove(const std::string& name);

  // Sorted by name.
  std::vector<std::shared_ptr<const Model>> List() const;

  // How many models are loaded, and the weight bytes they hold together.
  size_t size() const;
  int64_t total_weight_bytes() const;

 private:
  absl::Status CheckAddLocked(const std::string& name, int64_t weight_bytes, bool replace) const;

  const int64_t max_total_weight_bytes_;
  const int64_t max_models_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const Model>> models_;  // guarded by mutex_
  int64_t total_charged_bytes_ = 0;  // guarded by mutex_; see Model::charged_bytes
  int64_t total_weight_bytes_ = 0;   // guarded by mutex_
};

// OK if `name` is 1..128 characters of [A-Za-z0-9_.-]; INVALID_ARGUMENT otherwise.
absl::Status CheckModelName(const std::string& name);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_MODEL_REGISTRY_H_
