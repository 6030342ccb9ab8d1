// onnx_const_eval.h: evaluates, at load time, the ONNX nodes whose inputs are
// all constant (the small shape and padding computations exporters emit, e.g.
// PyTorch's ~15 nodes that compute a reflect Pad's pads).
//
// Values are held in double (real types) or int64 (integer and bool types),
// which represents every float32, int32 and int64 exactly; the element type
// is kept so that Cast and the consumers see ONNX's types. Every op checks
// its inputs (ranks, axes, index ranges) and the size of what it would make
// (at most kMaxFoldedElements) before allocating. Stateless and thread-safe.
#ifndef CONVSERVE_CORE_ONNX_CONST_EVAL_H_
#define CONVSERVE_CORE_ONNX_CONST_EVAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "onnx/onnx_pb.h"

namespace convserve {

// The largest tensor constant folding may produce: shape and pad
// computations are tiny; anything near this is not one.
inline constexpr int64_t kMaxFoldedElements = int64_t{1} << 20;

struct ConstTensor {
  int32_t type = onnx::TensorProto::FLOAT;  // an onnx::TensorProto::DataType
  std::vector<int64_t> dims;
  std::vector<double> reals;  // FLOAT / DOUBLE
  std::vector<int64_t> ints;  // the integer types and BOOL

  bool is_real() const;
  int64_t size() const { return static_cast<int64_t>(is_real() ? reals.size() : ints.size()); }
  // Element i as a double / as an int64 (reals truncated toward zero).
  double real(int64_t i) const;
  int64_t integer(int64_t i) const;
};

// The name of an element type ("FLOAT", "INT64", ...) for messages.
std::string TensorTypeName(int32_t type);

// Whether the tensor keeps its values outside the model (external data).
bool HasExternalData(const onnx::TensorProto& tensor);

// Decodes an initializer or attribute tensor of type FLOAT, DOUBLE, INT64,
// INT32, INT16, INT8, UINT8, UINT16 or BOOL, checking its element count
// against the bytes it holds. `what` names it in messages.
absl::StatusOr<ConstTensor> DecodeTensor(const onnx::TensorProto& tensor, const std::string& what);

// Reads a FLOAT tensor's values as float32, without the double copy.
absl::StatusOr<std::vector<float>> DecodeFloats(const onnx::TensorProto& tensor,
                                                const std::string& what);

// Whether EvaluateNode() knows `op_type` (domain ai.onnx).
bool IsFoldableOp(const std::string& op_type);

// Evaluates `node` (IsFoldableOp) on constant `inputs` (one per node input;
// null for an omitted optional input) under default-domain `opset`.
// INVALID_ARGUMENT naming the attribute or input, expected and received.
// `Shape` is not evaluated here: it needs no input value (ShapeOf()).
absl::StatusOr<ConstTensor> EvaluateNode(const onnx::NodeProto& node,
                                         const std::vector<const ConstTensor*>& inputs, int opset);

// The output of a Shape node (attributes start/end of opset 15) on a tensor
// of static shape `dims`.
absl::StatusOr<ConstTensor> ShapeOf(const onnx::NodeProto& node, const std::vector<int64_t>& dims);

// Attribute helpers shared with the importer: the attribute named `name` or
// null.
const onnx::AttributeProto* FindAttribute(const onnx::NodeProto& node, const std::string& name);

}  // namespace convserve

#endif  // CONVSERVE_CORE_ONNX_CONST_EVAL_H_
