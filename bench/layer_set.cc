#include "bench/layer_set.h"

#include <cctype>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace convserve {
namespace bench {
namespace {

// A parsed JSON value: just what layers.json uses.
struct Value {
  enum class Kind { kNumber, kString, kArray, kObject, kOther } kind = Kind::kOther;
  double number = 0;
  std::string text;
  std::vector<Value> items;
  std::map<std::string, Value> fields;
};

class Parser {
 public:
  explicit Parser(const std::string& text) : text_(text) {}

  absl::StatusOr<Value> ParseDocument() {
    absl::StatusOr<Value> value = Parse();
    if (!value.ok()) return value;
    SkipSpace();
    if (pos_ != text_.size()) return Error("trailing characters");
    return value;
  }

 private:
  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat("layers file: ", what, " at byte ", pos_));
  }

  void SkipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }

  bool Consume(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  absl::StatusOr<std::string> ParseString() {
    if (!Consume('"')) return Error("expected a string");
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) ++pos_;  // Escapes kept literally.
      out += text_[pos_++];
    }
    if (pos_ >= text_.size()) return Error("unterminated string");
    ++pos_;
    return out;
  }

  absl::StatusOr<Value> Parse() {
    SkipSpace();
    if (pos_ >= text_.size()) return Error("unexpected end");
    Value value;
    const char c = text_[pos_];
    if (c == '{') {
      ++pos_;
      value.kind = Value::Kind::kObject;
      if (Consume('}')) return value;
      do {
        absl::StatusOr<std::string> key = ParseString();
        if (!key.ok()) return key.status();
        if (!Consume(':')) return Error("expected ':'");
        absl::StatusOr<Value> field = Parse();
        if (!field.ok()) return field;
        value.fields[*key] = std::move(*field);
      } while (Consume(','));
      if (!Consume('}')) return Error("expected '}'");
    } else if (c == '[') {
      ++pos_;
      value.kind = Value::Kind::kArray;
      if (Consume(']')) return value;
      do {
        absl::StatusOr<Value> item = Parse();
        if (!item.ok()) return item;
        value.items.push_back(std::move(*item));
      } while (Consume(','));
      if (!Consume(']')) return Error("expected ']'");
    } else if (c == '"') {
      absl::StatusOr<std::string> text = ParseString();
      if (!text.ok()) return text.status();
      value.kind = Value::Kind::kString;
      value.text = std::move(*text);
    } else if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      size_t used = 0;
      value.number = std::stod(text_.substr(pos_, 32), &used);
      value.kind = Value::Kind::kNumber;
      pos_ += used;
    } else {
      // true / false / null: not used by the layer fields.
      while (pos_ < text_.size() && std::isalpha(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    }
    return value;
  }

  const std::string& text_;
  size_t pos_ = 0;
};

absl::StatusOr<int64_t> Integer(const Value& layer, const std::string& key, int64_t fallback) {
  auto it = layer.fields.find(key);
  if (it == layer.fields.end()) return fallback;
  if (it->second.kind != Value::Kind::kNumber) {
    return absl::InvalidArgumentError(absl::StrCat("layers file: '", key, "' is not a number"));
  }
  return static_cast<int64_t>(it->second.number);
}

absl::StatusOr<std::vector<int64_t>> Integers(const Value& layer, const std::string& key) {
  auto it = layer.fields.find(key);
  if (it == layer.fields.end() || it->second.kind != Value::Kind::kArray) {
    return absl::InvalidArgumentError(absl::StrCat("layers file: '", key, "' is not a list"));
  }
  std::vector<int64_t> out;
  for (const Value& item : it->second.items) out.push_back(static_cast<int64_t>(item.number));
  return out;
}

}  // namespace

absl::StatusOr<std::vector<BenchLayer>> ReadLayerSet(const std::string& path) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("layers file: cannot open ", path));
  std::stringstream buffer;
  buffer << file.rdbuf();
  const std::string text = buffer.str();
  absl::StatusOr<Value> document = Parser(text).ParseDocument();
  if (!document.ok()) return document.status();
  auto layers = document->fields.find("layers");
  if (layers == document->fields.end() || layers->second.kind != Value::Kind::kArray) {
    return absl::InvalidArgumentError("layers file: no 'layers' list");
  }
  std::vector<BenchLayer> out;
  for (const Value& item : layers->second.items) {
    BenchLayer layer;
    auto name = item.fields.find("name");
    if (name != item.fields.end()) layer.name = name->second.text;
    struct {
      const char* key;
      int64_t* field;
      int64_t fallback;
    } scalars[] = {{"n", &layer.batch, 1},         {"c", &layer.in_channels, -1},
                   {"k", &layer.out_channels, -1}, {"stride", &layer.stride, 1},
                   {"pad", &layer.pad, 0},         {"dilation", &layer.dilation, 1},
                   {"groups", &layer.groups, 1}};
    for (const auto& scalar : scalars) {
      absl::StatusOr<int64_t> v = Integer(item, scalar.key, scalar.fallback);
      if (!v.ok()) return v.status();
      if (*v < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("layers file: layer '", layer.name, "' has no '", scalar.key, "'"));
      }
      *scalar.field = *v;
    }
    absl::StatusOr<std::vector<int64_t>> spatial = Integers(item, "spatial");
    if (!spatial.ok()) return spatial.status();
    absl::StatusOr<std::vector<int64_t>> kernel = Integers(item, "kernel");
    if (!kernel.ok()) return kernel.status();
    layer.spatial = std::move(*spatial);
    layer.kernel = std::move(*kernel);
    out.push_back(std::move(layer));
  }
  return out;
}

}  // namespace bench
}  // namespace convserve
