// onnx_import.h: an ONNX model as ConvServe layers and the graph that connects them.
//
// ImportOnnx() accepts the graphs ConvServe runs exactly: from the graph's
// one input to its one output, a graph (core/model_graph.h) of
//   [Pad] -> Conv -> [BatchNormalization] -> [activation]
// blocks, the residual Add of two tensors and the Concat of tensors on the
// channel axis (each possibly followed by an activation), and activations by
// themselves. The Pad (constant 0, reflect or edge) is merged into the
// Conv's padding and padding mode, an inference-form BatchNormalization is
// folded into the Conv's weight and bias (in double, then rounded to float),
// and the activation (Relu, LeakyRelu, Clip 0..6, Elu, Sigmoid, Tanh, and
// the SiLU x * Sigmoid(x) and erf-GELU patterns exporters emit) is fused.
// Subgraphs on constant inputs (Constant, ConstantOfShape, Concat, Reshape,
// Slice, Transpose, Cast, Gather, Shape of a fixed-shape tensor, ...) are
// evaluated at load. Everything else is refused with INVALID_ARGUMENT
// listing the unsupported nodes.
//
// The bytes are untrusted: they are refused above a byte limit before
// parsing, parsed with protobuf's limits, run through ONNX's checker and
// shape inference, and every error names the node and attribute, what was
// expected and what was received. Opsets 9-17 of the default domain; tensors
// with external data are refused. Stateless and thread-safe.
#ifndef CONVSERVE_CORE_ONNX_IMPORT_H_
#define CONVSERVE_CORE_ONNX_IMPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/conv_spec.h"
#include "core/model_graph.h"

namespace convserve {

// One Conv of the graph, with what followed it fused in.
struct ImportedLayer {
  ConvSpec spec;              // channels_first, oihw, as ONNX.
  std::vector<float> weight;  // spec's weight shape (C_out, C_in/g, *K).
  std::vector<float> bias;    // C_out values when spec.bias, else empty.
  std::string node;           // the Conv node's name, for messages.
};

struct ImportedModel {
  std::vector<ImportedLayer> layers;  // in the graph's order.
  ModelGraph graph;                   // how they connect; steps name the nodes.
  std::vector<int64_t> input_shape;   // as the graph declares it; -1: not fixed.
  int64_t opset = 0;                  // of the default domain.
};

struct OnnxImportOptions {
  std::string source = "model.onnx";     // names the model at the start of messages.
  int64_t max_bytes = int64_t{1} << 30;  // larger models are refused unparsed.
  std::string max_bytes_name;  // what sets max_bytes, for that message ("--max_model_bytes").
};

// The model `bytes` (a serialized onnx.ModelProto) describes. Errors:
// RESOURCE_EXHAUSTED above options.max_bytes; INVALID_ARGUMENT for anything
// else, prefixed with options.source.
absl::StatusOr<ImportedModel> ImportOnnx(absl::string_view bytes, const OnnxImportOptions& options);

// The longest message ImportOnnx() returns (the unsupported-node list is cut
// to fit, see CapMessage()).
inline constexpr size_t kMaxImportMessageBytes = 2048;

}  // namespace convserve

#endif  // CONVSERVE_CORE_ONNX_IMPORT_H_
