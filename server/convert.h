// convert.h: proto <-> core conversion for the ConvServe API.
//
// Everything here treats the request as untrusted: enum values are range
// checked, tensor byte sizes are checked against their shapes (overflow-safe,
// via the core's CheckPayloadBytes) before any payload byte is read, and
// every error names the field, what was expected and what was received.
#ifndef CONVSERVE_SERVER_CONVERT_H_
#define CONVSERVE_SERVER_CONVERT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "convserve/v1/convserve.pb.h"
#include "core/conv_spec.h"
#include "core/tensor_shape.h"
#include "core/validator.h"

namespace convserve {

// The wire format is little-endian and the server reinterprets payload bytes
// in place, so it only builds for little-endian hosts.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ConvServe needs a little-endian host");

// Converts the wire layer description into a ConvSpec. Only range-checks the
// enums; everything else is left to the core's validator. `field` prefixes
// messages ("layer", "layers[2].layer").
absl::StatusOr<ConvSpec> ToConvSpec(const std::string& field, const v1::ConvLayer& layer);

// The inverse of ToConvSpec (used to describe loaded models).
v1::ConvLayer ToProtoLayer(const ConvSpec& spec);

// A float32 tensor decoded from a request, viewing (not owning) the request's
// bytes, or an aligned copy of them when the bytes are not float-aligned.
struct FloatTensor {
  std::vector<int64_t> shape;
  absl::Span<const float> values;
  std::vector<float> aligned_copy;  // holds `values` only when a copy was needed.
};

// Checks presence, element type, shape and byte size of `tensor` (named
// `field` in messages) and views its values. `present` is the proto's
// has_<field>() (a missing tensor is refused).
absl::StatusOr<FloatTensor> DecodeTensor(const std::string& field, bool present,
                                         const v1::Tensor& tensor);

// Checks that a tensor's shape equals the one the layer requires.
absl::Status CheckShape(const std::string& field, const std::vector<int64_t>& expected,
                        const std::string& expected_meaning, const std::vector<int64_t>& got);

// Prepares `tensor` to receive `shape` in float32 and returns the buffer to
// write the values into: the response's own bytes field, so the output is
// written once and never copied. REQUIRES: the element count of `shape` has
// been checked (it is allocated here).
float* PrepareOutput(const std::vector<int64_t>& shape, v1::Tensor* tensor);

// Fills the wire shape report from the core's.
void ToProtoReport(const ShapeReport& report, v1::ShapeReport* out);

v1::Framework ToProtoFramework(Framework framework);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_CONVERT_H_
