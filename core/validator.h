// validator.h: explains a layer to a person: output shape, parameters, MACs,
// the per-axis derivation, warnings, and what each framework makes of it.
//
// Validate() resolves the layer with geometry.h (the checks every request
// gets: INVALID_ARGUMENT naming the field, what was expected and what was
// received) and builds a ShapeReport from the resolved values. The request
// path resolves with geometry.h directly and skips the explanations.
#ifndef CONVSERVE_CORE_VALIDATOR_H_
#define CONVSERVE_CORE_VALIDATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/conv_spec.h"
#include "core/geometry.h"

namespace convserve {

// The frameworks whose conventions and restrictions the report speaks about.
enum class Framework { kPyTorch, kKeras, kOnnx };
// Every framework with its name, in the order reports list them.
inline constexpr EnumEntry<Framework> kFrameworks[] = {
    {Framework::kPyTorch, "PyTorch"},
    {Framework::kKeras, "Keras"},
    {Framework::kOnnx, "ONNX"},
};

// One spatial axis, in the output formula's own steps:
//   span   = d * (k - 1) + 1
//   padded = n + begin + end
//   output = floor((padded - span) / s) + 1
struct AxisReport {
  int64_t input = 0;     // n
  int64_t kernel = 0;    // k
  int64_t stride = 0;    // s
  int64_t dilation = 0;  // d
  int64_t pad_begin = 0;
  int64_t pad_end = 0;
  int64_t span = 0;          // cells one kernel window covers
  int64_t padded = 0;        // n + begin + end
  int64_t output = 0;        // windows that fit
  int64_t unread_cells = 0;  // (padded - span) mod s: cells past the last window
  std::string derivation;    // the steps above with this axis's numbers
};

// Whether a framework accepts the layer as ConvServe resolved it, and how to
// write the same layer there.
struct FrameworkVerdict {
  Framework framework = Framework::kPyTorch;
  bool accepted = false;
  std::string reason;      // why it refuses (empty when accepted)
  std::string equivalent;  // code that builds the same layer in that framework
};

struct ShapeReport {
  std::vector<int64_t> input_shape;
  std::vector<int64_t> output_shape;  // in the spec's data layout
  std::vector<int64_t> weight_shape;  // in the spec's weight layout
  std::vector<int64_t> bias_shape;    // empty without bias
  std::vector<AxisReport> axes;       // one per spatial axis, outermost first
  int64_t parameters = 0;
  int64_t macs = 0;
  int64_t flops = 0;
  int64_t input_bytes = 0;
  int64_t output_bytes = 0;
  int64_t weight_bytes = 0;
  std::vector<std::string> warnings;
  std::vector<FrameworkVerdict> frameworks;  // PyTorch, Keras, ONNX in order
  ConvGeometry geometry;                     // what the kernels run
};

struct ValidateOptions {
  // When set, the layer is also refused (INVALID_ARGUMENT, with that
  // framework's reason) if the framework would refuse it.
  bool enforce_framework = false;
  Framework framework = Framework::kPyTorch;
};

// Checks `spec` against `input_shape` (the full tensor shape, batch and
// channels included, in spec.data_layout) and explains the layer.
absl::StatusOr<ShapeReport> Validate(const ConvSpec& spec, const std::vector<int64_t>& input_shape,
                                     const ValidateOptions& options = {});

}  // namespace convserve

#endif  // CONVSERVE_CORE_VALIDATOR_H_
