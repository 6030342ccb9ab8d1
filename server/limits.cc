// limits.cc: checks a request's sizes against the server's limits.
#include "server/limits.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/checked_math.h"
#include "core/tensor_shape.h"

namespace convserve {

absl::Status CheckLimits(const std::string& field, const ConvGeometry& geometry,
                         const RequestLimits& limits) {
  const std::pair<const char*, int64_t> tensors[] = {
      {"input", geometry.input_elements()},
      {"output", geometry.output_elements()},
      {"weight", geometry.weight_elements()},
  };
  for (const auto& [name, elements] : tensors) {
    if (elements > limits.max_elements) {
      return absl::ResourceExhaustedError(
          absl::StrCat(field, name, ": ", elements, " elements exceed the server limit of ",
                       limits.max_elements, " elements per tensor (--max_elements)"));
    }
  }
  const int64_t macs = geometry.macs();
  if (macs > limits.max_macs) {
    return absl::ResourceExhaustedError(
        absl::StrCat(field, "layer: ", macs, " multiply-accumulates exceed the server limit of ",
                     limits.max_macs, " per request (--max_macs)"));
  }
  return absl::OkStatus();
}

absl::Status CheckResponseSize(const std::vector<int64_t>& output_shape,
                               const RequestLimits& limits) {
  std::optional<int64_t> bytes = sizeof(float);
  for (int64_t dim : output_shape) {
    if (bytes) bytes = CheckedMul(*bytes, dim);
  }
  if (!bytes || *bytes > limits.max_message_bytes - kResponseOverheadBytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("output: ", ShapeToString(output_shape), " float32 is ",
                     bytes ? absl::StrCat(*bytes) : std::string("more than 2^63"),
                     " bytes, more than the server's send limit of ", limits.max_message_bytes,
                     " bytes per message (--max_message_bytes)"));
  }
  return absl::OkStatus();
}

}  // namespace convserve
