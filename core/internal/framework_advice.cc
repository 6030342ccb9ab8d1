// framework_advice.cc: per-framework verdicts and equivalent code for a resolved layer.
#include "core/internal/framework_advice.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/geometry.h"

namespace convserve {
namespace {

// The user's axes of a 3-axis geometry array, outermost first.
std::vector<int64_t> UserAxes(const SpatialAxes& values, int rank) {
  return std::vector<int64_t>(values.end() - rank, values.end());
}

// Python literal of a per-axis value: "3" for 1-D, "(3, 3)" otherwise.
std::string PyAxes(const std::vector<int64_t>& values) {
  if (values.size() == 1) return absl::StrCat(values[0]);
  return absl::StrCat("(", absl::StrJoin(values, ", "), ")");
}

bool AllEqual(const std::vector<int64_t>& values, int64_t expected) {
  for (int64_t v : values) {
    if (v != expected) return false;
  }
  return true;
}

struct Pads {
  std::vector<int64_t> begin, end;
  bool any() const { return !AllEqual(begin, 0) || !AllEqual(end, 0); }
  bool symmetric() const { return begin == end; }
  bool operator==(const Pads& other) const { return begin == other.begin && end == other.end; }
  // "(2, 3) on axis L" for each asymmetric axis.
  std::string Asymmetric(int rank) const {
    std::vector<std::string> parts;
    const std::vector<std::string> names = SpatialAxisNames(rank);
    for (int i = 0; i < rank; ++i) {
      if (begin[i] != end[i])
        parts.push_back(absl::StrCat("(", begin[i], ", ", end[i], ") on axis ", names[i]));
    }
    return absl::StrJoin(parts, ", ");
  }
};

Pads PadsOf(const ConvGeometry& g) {
  return {UserAxes(g.pad_begin, g.spatial_rank), UserAxes(g.pad_end, g.spatial_rank)};
}

// The pads `preset` would choose for this input (Keras "same" is SAME_UPPER).
Pads PresetPadsOf(PaddingPreset preset, const ResolvedLayer& layer, const ConvGeometry& g) {
  Pads pads;
  for (int i = kMaxSpatialRank - g.spatial_rank; i < kMaxSpatialRank; ++i) {
    const auto [begin, end] = PresetPads(preset, g.input[i], layer.stride[i], g.span[i]);
    pads.begin.push_back(begin);
    pads.end.push_back(end);
  }
  return pads;
}

// Permutation (as a Python tuple) from (*K, I, O) to (O, I, *K), and back.
std::string HwioToOihw(int rank) {
  std::vector<int> perm = {rank + 1, rank};
  for (int i = 0; i < rank; ++i) perm.push_back(i);
  return absl::StrCat("(", absl::StrJoin(perm, ", "), ")");
}
std::string OihwToHwio(int rank) {
  std::vector<int> perm;
  for (int i = 0; i < rank; ++i) perm.push_back(i + 2);
  perm.push_back(1);
  perm.push_back(0);
  return absl::StrCat("(", absl::StrJoin(perm, ", "), ")");
}
// Data permutations channels_last <-> channels_first.
std::string LastToFirst(int rank) {
  std::vector<int> perm = {0, rank + 1};
  for (int i = 0; i < rank; ++i) perm.push_back(i + 1);
  return absl::StrCat("(", absl::StrJoin(perm, ", "), ")");
}
std::string FirstToLast(int rank) {
  std::vector<int> perm = {0};
  for (int i = 0; i < rank; ++i) perm.push_back(i + 2);
  perm.push_back(1);
  return absl::StrCat("(", absl::StrJoin(perm, ", "), ")");
}

std::string TorchActivation(const ConvGeometry& g, absl::string_view y) {
  const float a = g.activation_alpha;
  switch (g.activation) {
    case Activation::kNone:
      return std::string(y);
    case Activation::kRelu:
      return absl::StrCat("F.relu(", y, ")");
    case Activation::kRelu6:
      return absl::StrCat("F.relu6(", y, ")");
    case Activation::kLeakyRelu:
      return absl::StrCat("F.leaky_relu(", y, ", negative_slope=", a, ")");
    case Activation::kElu:
      return absl::StrCat("F.elu(", y, ", alpha=", a, ")");
    case Activation::kSigmoid:
      return absl::StrCat("torch.sigmoid(", y, ")");
    case Activation::kTanh:
      return absl::StrCat("torch.tanh(", y, ")");
    case Activation::kSilu:
      return absl::StrCat("F.silu(", y, ")");
    case Activation::kGelu:
      return absl::StrCat("F.gelu(", y, ")");
  }
  return std::string(y);
}

FrameworkVerdict AdvisePyTorch(const ResolvedLayer& layer, const ConvGeometry& g) {
  const ConvSpec& spec = layer.spec;
  FrameworkVerdict verdict{Framework::kPyTorch, true, "", ""};
  const int rank = g.spatial_rank;
  const Pads pads = PadsOf(g);
  const bool stride_one = AllEqual(UserAxes(layer.stride, rank), 1);
  const bool same_native = spec.padding == PaddingPreset::kSameUpper && stride_one;
  std::vector<std::string> lines;
  if (g.data_layout == DataLayout::kChannelsLast) {
    lines.push_back(
        absl::StrCat("x = x.permute", LastToFirst(rank),
                     "  # channels_last -> (N, C, *S): PyTorch convs are channels_first"));
  }
  std::string padding_arg;
  if (same_native) {
    padding_arg = "padding='same'";
  } else if (pads.symmetric()) {
    padding_arg = absl::StrCat("padding=", PyAxes(pads.begin));
  } else {
    verdict.accepted = false;
    if (spec.padding == PaddingPreset::kSameUpper || spec.padding == PaddingPreset::kSameLower) {
      verdict.reason = absl::StrCat(
          spec.padding == PaddingPreset::kSameUpper
              ? "padding='same' is refused for stride > 1"
              : "padding='same' puts the odd padding cell at the end, not the beginning",
          ", and the resolved pads ", pads.Asymmetric(rank),
          " are asymmetric, which the layer's integer padding cannot express");
    } else {
      verdict.reason = absl::StrCat("nn.Conv", rank, "d takes symmetric padding only; pads ",
                                    pads.Asymmetric(rank), " are asymmetric");
    }
    std::vector<int64_t> torch_pads;  // last axis first: (W_begin, W_end, H_begin, ...)
    for (int i = rank - 1; i >= 0; --i) {
      torch_pads.push_back(pads.begin[i]);
      torch_pads.push_back(pads.end[i]);
    }
    const absl::string_view mode =
        g.padding_mode == PaddingMode::kZeros ? "constant" : PaddingModeName(g.padding_mode);
    lines.push_back(
        absl::StrCat("x = F.pad(x, (", absl::StrJoin(torch_pads, ", "), "), mode='", mode, "')"));
    padding_arg = "padding=0";
  }
  std::string mode_arg;
  if (g.padding_mode != PaddingMode::kZeros && padding_arg != "padding=0") {
    mode_arg = absl::StrCat(", padding_mode='", PaddingModeName(g.padding_mode), "'");
  }
  lines.push_back(absl::StrCat(
      "conv = torch.nn.Conv", rank, "d(in_channels=", g.in_channels,
      ", out_channels=", g.out_channels, ", kernel_size=", PyAxes(UserAxes(g.kernel, rank)),
      ", stride=", PyAxes(UserAxes(layer.stride, rank)), ", ", padding_arg,
      ", dilation=", PyAxes(UserAxes(layer.dilation, rank)), ", groups=", g.groups,
      ", bias=", g.bias ? "True" : "False", mode_arg, ")"));
  if (g.weight_layout == WeightLayout::kSpatialInOut) {
    lines.push_back(absl::StrCat("conv.weight.data = w.permute", HwioToOihw(rank),
                                 "  # (*K, C_in/g, C_out) -> (C_out, C_in/g, *K)"));
  }
  lines.push_back(absl::StrCat("y = ", TorchActivation(g, "conv(x)")));
  if (g.data_layout == DataLayout::kChannelsLast) {
    lines.push_back(absl::StrCat("y = y.permute", FirstToLast(rank), "  # back to channels_last"));
  }
  verdict.equivalent = absl::StrJoin(lines, "\n");
  return verdict;
}

std::string KerasActivation(const ConvGeometry& g) {
  switch (g.activation) {
    case Activation::kNone:
      return "None";
    case Activation::kRelu:
      return "'relu'";
    case Activation::kRelu6:
      return "tf.nn.relu6";
    case Activation::kLeakyRelu:
      return absl::StrCat("lambda v: tf.nn.leaky_relu(v, alpha=", g.activation_alpha, ")");
    case Activation::kElu:
      return g.activation_alpha == 1.0f ? "'elu'"
                                        : absl::StrCat("lambda v: tf.where(v > 0, v, ",
                                                       g.activation_alpha, " * tf.math.expm1(v))");
    case Activation::kSigmoid:
      return "'sigmoid'";
    case Activation::kTanh:
      return "'tanh'";
    case Activation::kSilu:
      return "'swish'";
    case Activation::kGelu:
      return "lambda v: tf.nn.gelu(v, approximate=False)";
  }
  return "None";
}

FrameworkVerdict AdviseKeras(const ResolvedLayer& layer, const ConvGeometry& g) {
  const ConvSpec& spec = layer.spec;
  FrameworkVerdict verdict{Framework::kKeras, true, "", ""};
  const int rank = g.spatial_rank;
  const Pads pads = PadsOf(g);
  std::vector<std::string> reasons;
  std::vector<std::string> lines;
  const bool strided = !AllEqual(UserAxes(layer.stride, rank), 1);
  const bool dilated = !AllEqual(UserAxes(layer.dilation, rank), 1);
  const bool subsample = strided && dilated;
  if (subsample) {
    reasons.push_back("strides > 1 together with dilation_rate > 1 are refused");
  }

  std::string keras_padding;
  bool explicit_pad_layer = false;
  if (!pads.any()) {
    keras_padding = "valid";
  } else if (g.padding_mode != PaddingMode::kZeros) {
    explicit_pad_layer = true;
    if (g.padding_mode == PaddingMode::kReflect) {
      reasons.push_back(
          "Keras pads with zeros only; reflect padding needs tf.pad(mode='REFLECT') "
          "before a 'valid' conv");
    } else {
      reasons.push_back(
          absl::StrCat("Keras pads with zeros only, and neither Keras nor tf.pad has ",
                       PaddingModeName(g.padding_mode), " padding",
                       g.padding_mode == PaddingMode::kReplicate
                           ? " (tf.pad's 'SYMMETRIC' equals it only for pads <= 1)"
                           : ""));
    }
  } else if (pads == PresetPadsOf(PaddingPreset::kSameUpper, layer, g) && !subsample) {
    keras_padding = "same";
  } else if (rank == 1 && pads == PresetPadsOf(PaddingPreset::kCausal, layer, g) && !subsample) {
    keras_padding = "causal";
  } else {
    explicit_pad_layer = true;
    if (!subsample) {
      reasons.push_back(absl::StrCat(
          "Keras padding is only 'valid', 'same' or 'causal' (Conv1D); pads ", "begin ",
          PyAxes(pads.begin), " end ", PyAxes(pads.end), " are none of those"));
    }
  }
  if (explicit_pad_layer || (subsample && pads.any())) {
    keras_padding = "valid";
    std::vector<std::string> per_axis;
    for (int i = 0; i < rank; ++i)
      per_axis.push_back(absl::StrCat("(", pads.begin[i], ", ", pads.end[i], ")"));
    const std::string pad_arg =
        rank == 1 ? per_axis[0] : absl::StrCat("(", absl::StrJoin(per_axis, ", "), ")");
    if (g.padding_mode == PaddingMode::kZeros) {
      lines.push_back(absl::StrCat("x = keras.layers.ZeroPadding", rank, "D(padding=", pad_arg,
                                   ", data_format='", DataLayoutName(g.data_layout), "')(x)"));
    } else {
      std::vector<std::string> tf_pads = {"[0, 0]"};
      if (g.data_layout == DataLayout::kChannelsFirst) tf_pads.push_back("[0, 0]");
      for (int i = 0; i < rank; ++i)
        tf_pads.push_back(absl::StrCat("[", pads.begin[i], ", ", pads.end[i], "]"));
      if (g.data_layout == DataLayout::kChannelsLast) tf_pads.push_back("[0, 0]");
      lines.push_back(absl::StrCat(
          "x = tf.pad(x, [", absl::StrJoin(tf_pads, ", "), "], mode='",
          g.padding_mode == PaddingMode::kReflect ? "REFLECT" : "SYMMETRIC", "')",
          g.padding_mode == PaddingMode::kReflect ? "" : "  # no exact equivalent: see reason"));
    }
  }
  if (rank > 1 && spec.padding == PaddingPreset::kCausal && pads.any()) {
    reasons.push_back("'causal' padding exists for Conv1D only");
  }
  const std::vector<int64_t> strides = UserAxes(layer.stride, rank);
  lines.push_back(absl::StrCat(
      "conv = keras.layers.Conv", rank, "D(filters=", g.out_channels,
      ", kernel_size=", PyAxes(UserAxes(g.kernel, rank)),
      ", strides=", subsample ? PyAxes(std::vector<int64_t>(rank, 1)) : PyAxes(strides),
      ", padding='", keras_padding, "', dilation_rate=", PyAxes(UserAxes(layer.dilation, rank)),
      ", groups=", g.groups, ", use_bias=", g.bias ? "True" : "False", ", data_format='",
      DataLayoutName(g.data_layout), "', activation=", KerasActivation(g), ")"));
  if (g.weight_layout == WeightLayout::kOutInSpatial) {
    lines.push_back(absl::StrCat("kernel = np.transpose(w, ", OihwToHwio(rank),
                                 ")  # (C_out, C_in/g, *K) -> Keras (*K, C_in/g, C_out)"));
  } else {
    lines.push_back("kernel = w  # already Keras's (*K, C_in/g, C_out)");
  }
  lines.push_back("y = conv(x)");
  if (subsample) {
    std::vector<std::string> slices = {":"};
    if (g.data_layout == DataLayout::kChannelsFirst) slices.push_back(":");
    for (int64_t s : strides) slices.push_back(absl::StrCat("::", s));
    if (g.data_layout == DataLayout::kChannelsLast) slices.push_back(":");
    lines.push_back(absl::StrCat("y = y[", absl::StrJoin(slices, ", "),
                                 "]  # stride after a stride-1 dilated conv: the same windows"));
  }
  verdict.accepted = reasons.empty();
  verdict.reason = absl::StrJoin(reasons, "; ");
  verdict.equivalent = absl::StrJoin(lines, "\n");
  return verdict;
}

std::string OnnxActivation(const ConvGeometry& g) {
  switch (g.activation) {
    case Activation::kNone:
      return "";
    case Activation::kRelu:
      return "Relu";
    case Activation::kRelu6:
      return "Clip(min=0, max=6)";
    case Activation::kLeakyRelu:
      return absl::StrCat("LeakyRelu(alpha=", g.activation_alpha, ")");
    case Activation::kElu:
      return absl::StrCat("Elu(alpha=", g.activation_alpha, ")");
    case Activation::kSigmoid:
      return "Sigmoid";
    case Activation::kTanh:
      return "Tanh";
    case Activation::kSilu:
      return "Mul(y, Sigmoid(y))";
    case Activation::kGelu:
      return "Gelu (opset 20; before: 0.5 * y * (1 + Erf(y / sqrt(2))))";
  }
  return "";
}

FrameworkVerdict AdviseOnnx(const ResolvedLayer& layer, const ConvGeometry& g) {
  const ConvSpec& spec = layer.spec;
  FrameworkVerdict verdict{Framework::kOnnx, true, "", ""};
  const int rank = g.spatial_rank;
  const Pads pads = PadsOf(g);
  std::vector<std::string> reasons;
  std::vector<std::string> lines;
  if (g.data_layout == DataLayout::kChannelsLast) {
    reasons.push_back("Conv takes channels_first (N, C, *S) data only");
    lines.push_back(absl::StrCat("x = Transpose(x, perm=", LastToFirst(rank), ")"));
  }
  std::string pad_attr;
  const bool mode_pad = g.padding_mode != PaddingMode::kZeros && pads.any();
  if (mode_pad) {
    const char* onnx_mode = g.padding_mode == PaddingMode::kReflect     ? "reflect"
                            : g.padding_mode == PaddingMode::kReplicate ? "edge"
                                                                        : "wrap";
    reasons.push_back(absl::StrCat("Conv pads with zeros only; ", PaddingModeName(g.padding_mode),
                                   " padding needs a Pad node (mode='", onnx_mode, "'",
                                   g.padding_mode == PaddingMode::kCircular ? ", opset 19+" : "",
                                   ") first"));
    std::vector<int64_t> all = {0, 0};
    all.insert(all.end(), pads.begin.begin(), pads.begin.end());
    all.push_back(0);
    all.push_back(0);
    all.insert(all.end(), pads.end.begin(), pads.end.end());
    lines.push_back(
        absl::StrCat("x = Pad(x, pads=[", absl::StrJoin(all, ", "), "], mode='", onnx_mode, "')"));
    pad_attr = "auto_pad='VALID'";
  } else if (spec.padding == PaddingPreset::kSameUpper) {
    pad_attr = "auto_pad='SAME_UPPER'";
  } else if (spec.padding == PaddingPreset::kSameLower) {
    pad_attr = "auto_pad='SAME_LOWER'";
  } else if (!pads.any()) {
    pad_attr = "auto_pad='VALID'";
  } else {
    std::vector<int64_t> all = pads.begin;
    all.insert(all.end(), pads.end.begin(), pads.end.end());
    pad_attr = absl::StrCat("pads=[", absl::StrJoin(all, ", "), "]");
  }
  auto list = [](const std::vector<int64_t>& v) {
    return absl::StrCat("[", absl::StrJoin(v, ", "), "]");
  };
  const std::string weight = g.weight_layout == WeightLayout::kSpatialInOut
                                 ? absl::StrCat("Transpose(w, perm=", HwioToOihw(rank), ")")
                                 : std::string("w");
  lines.push_back(absl::StrCat("y = Conv(x, ", weight, g.bias ? ", b" : "",
                               ", kernel_shape=", list(UserAxes(g.kernel, rank)),
                               ", strides=", list(UserAxes(layer.stride, rank)),
                               ", dilations=", list(UserAxes(layer.dilation, rank)),
                               ", group=", g.groups, ", ", pad_attr, ")"));
  if (g.activation != Activation::kNone) lines.push_back(absl::StrCat("y = ", OnnxActivation(g)));
  if (g.data_layout == DataLayout::kChannelsLast) {
    lines.push_back(absl::StrCat("y = Transpose(y, perm=", FirstToLast(rank), ")"));
  }
  verdict.accepted = reasons.empty();
  verdict.reason = absl::StrJoin(reasons, "; ");
  verdict.equivalent = absl::StrJoin(lines, "\n");
  return verdict;
}

}  // namespace

FrameworkVerdict AdviseFramework(Framework framework, const ResolvedLayer& layer,
                                 const ConvGeometry& geometry) {
  switch (framework) {
    case Framework::kPyTorch:
      return AdvisePyTorch(layer, geometry);
    case Framework::kKeras:
      return AdviseKeras(layer, geometry);
    case Framework::kOnnx:
      return AdviseOnnx(layer, geometry);
  }
  return {};
}

}  // namespace convserve
