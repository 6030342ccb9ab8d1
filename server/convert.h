// convert.h: all proto <-> core conversion of the ConvServe API.
//
// Everything here treats the request as untrusted: enum values are range
// checked, tensor byte sizes are checked against their shapes (overflow-safe,
// via the core's CheckPayloadBytes) before any payload byte is read, and
// every error names the field, what was expected and what was received.
// Each proto enum maps to its core enum through one table in convert.cc,
// read by both directions and by the "expected one of ..." messages.
// Stateless: every function is safe to call from any thread.
#ifndef CONVSERVE_SERVER_CONVERT_H_
#define CONVSERVE_SERVER_CONVERT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "convserve/v1/convserve.pb.h"
#include "core/conv_spec.h"
#include "core/geometry.h"
#include "core/tensor_shape.h"
#include "core/validator.h"
#include "server/model_registry.h"

namespace convserve {

// The wire format is little-endian and the server reinterprets payload bytes
// in place, so it only builds for little-endian hosts.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ConvServe needs a little-endian host");

// Converts the wire layer description into a ConvSpec. Only range-checks the
// enums and activation_alpha; everything else is left to the core's
// validator. `field` prefixes messages ("layer", "layers[2].layer").
absl::StatusOr<ConvSpec> ToConvSpec(const std::string& field, const v1::ConvLayer& layer);

// ToConvSpec() of a request's layer field, refusing a missing one. `prefix`
// names the message holding it ("" for Conv, "layers[1]." for LoadModel);
// `has_layer` is the proto's has_layer().
absl::StatusOr<ConvSpec> DecodeSpec(const std::string& prefix, bool has_layer,
                                    const v1::ConvLayer& layer);

// The inverse of ToConvSpec (used to describe loaded models).
v1::ConvLayer ToProtoLayer(const ConvSpec& spec);

// A float32 tensor decoded from a request, viewing (not owning) the request's
// bytes, or a float32 copy of them: the exact conversion of a FLOAT16 or
// BFLOAT16 tensor, or an aligned copy of FLOAT32 bytes that are not
// float-aligned.
struct FloatTensor {
  std::vector<int64_t> shape;
  absl::Span<const float> values;
  std::vector<float> aligned_copy;  // holds `values` only when a copy was needed.
  v1::ElementType wire_type = v1::ELEMENT_TYPE_FLOAT32;  // as sent
};

// Checks presence, element type (FLOAT32, FLOAT16 or BFLOAT16), shape and
// byte size (elements times the type's size) of `tensor` (named `field` in
// messages) and views its values, converting half types to float32 (into
// aligned_copy: callers charge its size to the memory budget). `present` is
// the proto's has_<field>() (a missing tensor is refused).
absl::StatusOr<FloatTensor> DecodeTensor(const std::string& field, bool present,
                                         const v1::Tensor& tensor);

// The element type of a response's output: `requested` (a request's
// output_type, named `field` in messages), or `input_type` for
// ELEMENT_TYPE_UNSPECIFIED. INVALID_ARGUMENT for a type that is not FLOAT32,
// FLOAT16 or BFLOAT16.
absl::StatusOr<v1::ElementType> DecodeOutputType(const std::string& field,
                                                 v1::ElementType requested,
                                                 v1::ElementType input_type);

// Rounds `count` float32 values at `values` in place to `type` (a type
// DecodeOutputType returns), to nearest even; the encoded values fill the
// buffer's first bytes. Returns their byte count (count * element size).
size_t EncodeOutputInPlace(v1::ElementType type, float* values, size_t count);

// Checks that a tensor's shape equals the one the layer requires.
absl::Status CheckShape(const std::string& field, const std::vector<int64_t>& expected,
                        const std::string& expected_meaning, const std::vector<int64_t>& got);

// What the weight shape of `spec` means, for messages: "(C_out, C_in/groups,
// *kernel) for the layer" or "(*kernel, C_in/groups, C_out) for the layer".
std::string DescribeWeightShape(const ConvSpec& spec);

// A resolved layer with its weights, decoded and checked against each other.
// The tensors view the request's bytes: the request must outlive them.
struct DecodedLayer {
  ResolvedLayer layer;
  FloatTensor weight;
  FloatTensor bias;  // empty without bias
};

// Decodes a layer's weight and bias tensors and checks them against `layer`
// (layer.weight_shape, bias present exactly when the layer has one, of shape
// [C_out]); `prefix` names the fields ("" for Conv, "layers[1]." for
// LoadModel). `has_weight` / `has_bias` are the proto's has_weight() /
// has_bias().
absl::StatusOr<DecodedLayer> DecodeWeights(const std::string& prefix, const ResolvedLayer& layer,
                                           bool has_weight, const v1::Tensor& weight, bool has_bias,
                                           const v1::Tensor& bias);

// Applies a LoadModelRequest's precision to its layers: PRECISION_FAST turns
// the CONV_ALGORITHM_AUTO layers Winograd runs (CheckWinograd()) to
// ConvAlgorithm::kWinograd; PRECISION_EXACT leaves every layer as it is.
// INVALID_ARGUMENT naming `precision` for a value outside the enum.
absl::Status ApplyPrecision(v1::Precision precision, std::vector<DecodedLayer>* layers);

// The validation options a ValidateShapeRequest's enforce_framework asks
// for: FRAMEWORK_UNSPECIFIED enforces none. INVALID_ARGUMENT naming
// enforce_framework for a value outside the enum.
absl::StatusOr<ValidateOptions> ToValidateOptions(v1::Framework enforce_framework);

v1::Framework ToProtoFramework(Framework framework);

// Fills the wire shape report from the core's.
void ToProtoReport(const ShapeReport& report, v1::ShapeReport* out);

// Describes a loaded model: name, sizes and every layer.
void ToProtoModelInfo(const Model& model, v1::ModelInfo* out);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_CONVERT_H_
