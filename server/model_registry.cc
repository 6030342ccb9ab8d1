// model_registry.cc: the named models, their total weight bytes and the model-name rule.
#include "server/model_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/printable.h"

namespace convserve {
namespace {

// NOT_FOUND naming `name` (escaped, truncated) and how many models are loaded,
// not which: with thousands loaded, their names would make a message of
// megabytes (ListModels lists them).
absl::Status NotLoaded(const std::string& name, size_t loaded) {
  return absl::NotFoundError(
      absl::StrCat("name: no model named '", Printable(name), "' is loaded (", loaded,
                   loaded == 1 ? " model is" : " models are", " loaded; ListModels lists them)"));
}

}  // namespace

absl::Status ModelRegistry::CheckAddLocked(const std::string& name, int64_t weight_bytes,
                                           bool replace) const {
  auto existing = models_.find(name);
  int64_t freed = 0;
  if (existing != models_.end()) {
    if (!replace) {
      return absl::AlreadyExistsError(absl::StrCat(
          "name: a model named '", Printable(name),
          "' is already loaded (set replace = true to replace it, or unload it first)"));
    }
    freed = existing->second->charged_bytes;
  } else if (static_cast<int64_t>(models_.size()) >= max_models_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "name: ", models_.size(), " models are loaded, the server's limit (--max_models=",
        max_models_, "); unload a model first"));
  }
  const int64_t others = total_charged_bytes_ - freed;
  if (weight_bytes > max_total_weight_bytes_ - others) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "layers: the model holds ", weight_bytes, " bytes (its weights, and ", kBytesPerModelLayer,
        " per layer and ", kBytesPerModel, " per model of bookkeeping); with the ", others,
        " bytes of the models already loaded that exceeds the limit --max_model_bytes=",
        max_total_weight_bytes_, " (unload a model first)"));
  }
  return absl::OkStatus();
}

absl::Status ModelRegistry::CheckAdd(const std::string& name, int64_t weight_bytes,
                                     bool replace) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return CheckAddLocked(name, weight_bytes, replace);
}

absl::Status ModelRegistry::Add(std::shared_ptr<const Model> model, bool replace) {
  std::lock_guard<std::mutex> lock(mutex_);
  absl::Status room = CheckAddLocked(model->name, model->charged_bytes, replace);
  if (!room.ok()) return room;
  auto existing = models_.find(model->name);
  if (existing != models_.end()) {
    total_charged_bytes_ -= existing->second->charged_bytes;
    total_weight_bytes_ -= existing->second->weight_bytes;
  }
  total_charged_bytes_ += model->charged_bytes;
  total_weight_bytes_ += model->weight_bytes;
  models_[model->name] = std::move(model);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Model>> ModelRegistry::Find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = models_.find(name);
  if (found == models_.end()) return NotLoaded(name, models_.size());
  return found->second;
}

absl::Status ModelRegistry::Remove(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = models_.find(name);
  if (found == models_.end()) return NotLoaded(name, models_.size());
  total_charged_bytes_ -= found->second->charged_bytes;
  total_weight_bytes_ -= found->second->weight_bytes;
  models_.erase(found);
  return absl::OkStatus();
}

std::vector<std::shared_ptr<const Model>> ModelRegistry::List() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::shared_ptr<const Model>> models;
  for (const auto& [name, model] : models_) models.push_back(model);
  return models;
}

size_t ModelRegistry::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return models_.size();
}

int64_t ModelRegistry::total_weight_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return total_weight_bytes_;
}

absl::Status CheckModelName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 128;
  for (char c : name) {
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    ok = ok && allowed;
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("name: expected 1 to 128 characters of [A-Za-z0-9_.-], got '", Printable(name),
                   "' (", name.size(), " characters)"));
}

}  // namespace convserve
