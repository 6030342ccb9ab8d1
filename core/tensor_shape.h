// tensor_shape.h: checked element counts, payload sizes and printing of
// tensor shapes, for any tensor a request declares.
//
// A declared shape is input, and input lies: every count here is
// overflow-checked in 64 bits (bytes included) before anything is allocated.
#ifndef CONVSERVE_CORE_TENSOR_SHAPE_H_
#define CONVSERVE_CORE_TENSOR_SHAPE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace convserve {

// Multiplies the dimensions of `shape`; INVALID_ARGUMENT naming `field` if a
// dimension is < 1 or the element count or its float32 byte size overflows.
absl::StatusOr<int64_t> CheckedElementCount(absl::string_view field,
                                            const std::vector<int64_t>& shape);

// Checks that a tensor payload of `byte_size` bytes holds `shape` in
// elements of `element_bytes` bytes named `element_type`; `field` names the
// tensor in the message ("weight: expected 37632 bytes for shape
// [64, 3, 7, 7] float32, got 37636").
absl::Status CheckPayloadBytes(absl::string_view field, const std::vector<int64_t>& shape,
                               uint64_t byte_size, uint64_t element_bytes = sizeof(float),
                               absl::string_view element_type = "float32");

// The most entries of a shape or of a per-axis list that messages show.
inline constexpr size_t kMaxShownEntries = 8;

// "[1, 3, 224, 224]". Also prints per-axis lists (kernel, stride, pads). A
// declared list may be a million entries long: beyond kMaxShownEntries only
// the first ones are shown, then the count, "[1, 1, 1, 1, 1, 1, 1, 1, ...
// (1000000 entries)]", so no message echoes more than a few hundred bytes.
std::string ShapeToString(const std::vector<int64_t>& shape);

}  // namespace convserve

#endif  // CONVSERVE_CORE_TENSOR_SHAPE_H_
