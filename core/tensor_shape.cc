// tensor_shape.cc: checked element counts, payload sizes and shape printing.
#include "core/tensor_shape.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/checked_math.h"

namespace convserve {

std::string ShapeToString(const std::vector<int64_t>& shape) {
  if (shape.size() <= kMaxShownEntries) return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
  return absl::StrCat("[", absl::StrJoin(shape.begin(), shape.begin() + kMaxShownEntries, ", "),
                      ", ... (", shape.size(), " entries)]");
}

absl::StatusOr<int64_t> CheckedElementCount(absl::string_view field,
                                            const std::vector<int64_t>& shape) {
  int64_t elements = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 1) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": expected every dimension >= 1, got ",
                                                     shape[i], " at dim ", i, " of ",
                                                     ShapeToString(shape)));
    }
    std::optional<int64_t> next = CheckedMul(elements, shape[i]);
    if (!next) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": element count of shape ",
                                                     ShapeToString(shape), " overflows 64 bits"));
    }
    elements = *next;
  }
  if (!CheckedMul(elements, static_cast<int64_t>(sizeof(float)))) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": byte size of shape ", ShapeToString(shape), " float32 overflows 64 bits"));
  }
  return elements;
}

absl::Status CheckPayloadBytes(absl::string_view field, const std::vector<int64_t>& shape,
                               uint64_t byte_size, uint64_t element_bytes,
                               absl::string_view element_type) {
  absl::StatusOr<int64_t> elements = CheckedElementCount(field, shape);
  if (!elements.ok()) return elements.status();
  // CheckedElementCount() keeps count * sizeof(float) below 2^63.
  const uint64_t expected = static_cast<uint64_t>(*elements) * element_bytes;
  if (byte_size != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": expected ", expected, " bytes for shape ", ShapeToString(shape), " ",
        element_type, ", got ", byte_size,
        byte_size % element_bytes != 0 ? absl::StrCat(" (not a multiple of ", element_bytes, ")")
                                       : ""));
  }
  return absl::OkStatus();
}

}  // namespace convserve
