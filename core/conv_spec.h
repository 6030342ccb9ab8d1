// conv_spec.h: the description of one convolution layer, independent of any
// framework or transport. Every other part of ConvServe (validator, kernels,
// server, clients) speaks in these types.
//
// A ConvSpec is *input*: nothing in it is trusted until ResolveLayer() and
// ResolveGeometry() (geometry.h) have checked it and resolved it into a
// ConvGeometry, the fully numeric form the kernels run on.
#ifndef CONVSERVE_CORE_CONV_SPEC_H_
#define CONVSERVE_CORE_CONV_SPEC_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace convserve {

// Convolutions have 1, 2 or 3 spatial axes.
inline constexpr int kMaxSpatialRank = 3;

// One value per spatial axis of a resolved layer, outermost (D) first; a 1-D
// or 2-D layer fills the trailing axes (see ConvGeometry).
using SpatialAxes = std::array<int64_t, kMaxSpatialRank>;

// How the (begin, end) padding of each spatial axis is decided.
enum class PaddingPreset {
  kExplicit,   // pad_begin / pad_end as given (symmetric or asymmetric).
  kValid,      // no padding.
  kSameUpper,  // output = ceil(n / s); odd extra cell at the end (TF/Keras "same", ONNX
               // SAME_UPPER).
  kSameLower,  // output = ceil(n / s); odd extra cell at the beginning (ONNX SAME_LOWER).
  kCausal,     // begin = d * (k - 1), end = 0 (Keras Conv1D "causal").
};

// What the padded cells hold.
enum class PaddingMode { kZeros, kReflect, kReplicate, kCircular };

// Applied after the bias.
enum class Activation {
  kNone,
  kRelu,
  kRelu6,
  kLeakyRelu,  // alpha: negative slope, default 0.01.
  kElu,        // alpha: default 1.0.
  kSigmoid,
  kTanh,
  kSilu,
  kGelu,  // exact form, with erf.
};

// Layout of the input and output tensors.
enum class DataLayout {
  kChannelsFirst,  // (N, C, *S): PyTorch, ONNX.
  kChannelsLast,   // (N, *S, C): Keras default, tf.nn NHWC.
};

// Layout of the weight tensor.
enum class WeightLayout {
  kOutInSpatial,  // (C_out, C_in/g, *K): PyTorch, ONNX ("oihw").
  kSpatialInOut,  // (*K, C_in/g, C_out): Keras, tf.nn ("hwio").
};

// Which algorithm runs a layer on the fast path.
enum class ConvAlgorithm {
  kAuto,      // Direct, unless the model's precision setting allows Winograd (the server
              // resolves it per layer at load; a single call's kAuto is direct).
  kDirect,    // Direct convolution: parity with PyTorch within 1e-5 * S + 1e-6.
  kWinograd,  // Winograd F(4x4, 3x3) / F(2x2, 3x3): 2-D 3x3 layers, stride and dilation 1,
              // one group, zero padding (geometry.h CheckWinograd()); within 1e-4 * S4 + 1e-5
              // (README "The core").
};

// One convolution layer as a user writes it.
//
// Per-axis vectors (kernel, stride, dilation, pad_begin, pad_end) hold either
// one value per spatial axis or a single value that applies to every axis;
// stride, dilation and the pads may also be empty (stride/dilation 1, pads 0).
struct ConvSpec {
  int spatial_rank = 2;           // 1, 2 or 3.
  int64_t in_channels = 0;        // C_in.
  int64_t out_channels = 0;       // C_out.
  int64_t groups = 1;             // g; depthwise when g == C_in.
  std::vector<int64_t> kernel;    // K, in cells.
  std::vector<int64_t> stride;    // s >= 1.
  std::vector<int64_t> dilation;  // d >= 1.
  PaddingPreset padding = PaddingPreset::kExplicit;
  std::vector<int64_t> pad_begin;  // Only with kExplicit.
  std::vector<int64_t> pad_end;    // Only with kExplicit.
  PaddingMode padding_mode = PaddingMode::kZeros;
  bool bias = true;
  Activation activation = Activation::kNone;
  // Parameter of kLeakyRelu / kElu. NaN (the default) means the framework
  // default for that activation (0.01 / 1.0).
  float activation_alpha = __builtin_nanf("");
  DataLayout data_layout = DataLayout::kChannelsFirst;
  WeightLayout weight_layout = WeightLayout::kOutInSpatial;
  ConvAlgorithm algorithm = ConvAlgorithm::kAuto;
};

// A validated layer bound to one input shape: every value resolved and
// checked, so kernels can run on it without further checks.
//
// Spatial axes are always three: a 1-D or 2-D layer is a 3-D one with leading
// axes of size 1 (kernel 1, stride 1, dilation 1, no padding). Axis 2 is the
// innermost (W). `spatial_rank` keeps the user's rank for shapes.
struct ConvGeometry {
  int spatial_rank = 2;
  int64_t batch = 1;
  int64_t in_channels = 1;
  int64_t out_channels = 1;
  int64_t groups = 1;
  SpatialAxes input{1, 1, 1};
  SpatialAxes output{1, 1, 1};
  SpatialAxes kernel{1, 1, 1};
  SpatialAxes stride{1, 1, 1};
  SpatialAxes dilation{1, 1, 1};
  SpatialAxes span{1, 1, 1};  // d * (k - 1) + 1: cells one window covers.
  SpatialAxes pad_begin{0, 0, 0};
  SpatialAxes pad_end{0, 0, 0};
  PaddingMode padding_mode = PaddingMode::kZeros;
  bool bias = true;
  Activation activation = Activation::kNone;
  float activation_alpha = 0.0f;  // Resolved (never NaN).
  DataLayout data_layout = DataLayout::kChannelsFirst;
  WeightLayout weight_layout = WeightLayout::kOutInSpatial;

  int64_t in_channels_per_group() const { return in_channels / groups; }
  int64_t out_channels_per_group() const { return out_channels / groups; }
  int64_t input_spatial_size() const { return input[0] * input[1] * input[2]; }
  int64_t output_spatial_size() const { return output[0] * output[1] * output[2]; }
  int64_t kernel_size() const { return kernel[0] * kernel[1] * kernel[2]; }
  // Element counts; ResolveGeometry() has checked that none overflows.
  int64_t input_elements() const { return batch * in_channels * input_spatial_size(); }
  int64_t output_elements() const { return batch * out_channels * output_spatial_size(); }
  int64_t weight_elements() const { return out_channels * in_channels_per_group() * kernel_size(); }
  int64_t bias_elements() const { return bias ? out_channels : 0; }
  // Multiply-accumulates of one run; ResolveGeometry() checked that 2 * macs() fits.
  int64_t macs() const { return output_elements() * in_channels_per_group() * kernel_size(); }
};

// One table per enum: each value with its name as it appears in messages,
// the CLIs and the reports ("same_upper", ...), in declaration order. The
// only place the names are written; everything else reads these tables.
template <typename Enum>
struct EnumEntry {
  Enum value;
  absl::string_view name;
};
inline constexpr EnumEntry<PaddingPreset> kPaddingPresets[] = {
    {PaddingPreset::kExplicit, "explicit"},    {PaddingPreset::kValid, "valid"},
    {PaddingPreset::kSameUpper, "same_upper"}, {PaddingPreset::kSameLower, "same_lower"},
    {PaddingPreset::kCausal, "causal"},
};
inline constexpr EnumEntry<PaddingMode> kPaddingModes[] = {
    {PaddingMode::kZeros, "zeros"},
    {PaddingMode::kReflect, "reflect"},
    {PaddingMode::kReplicate, "replicate"},
    {PaddingMode::kCircular, "circular"},
};
inline constexpr EnumEntry<Activation> kActivations[] = {
    {Activation::kNone, "none"},   {Activation::kRelu, "relu"},
    {Activation::kRelu6, "relu6"}, {Activation::kLeakyRelu, "leaky_relu"},
    {Activation::kElu, "elu"},     {Activation::kSigmoid, "sigmoid"},
    {Activation::kTanh, "tanh"},   {Activation::kSilu, "silu"},
    {Activation::kGelu, "gelu"},
};
inline constexpr EnumEntry<DataLayout> kDataLayouts[] = {
    {DataLayout::kChannelsFirst, "channels_first"},
    {DataLayout::kChannelsLast, "channels_last"},
};
inline constexpr EnumEntry<WeightLayout> kWeightLayouts[] = {
    {WeightLayout::kOutInSpatial, "oihw"},
    {WeightLayout::kSpatialInOut, "hwio"},
};
inline constexpr EnumEntry<ConvAlgorithm> kConvAlgorithms[] = {
    {ConvAlgorithm::kAuto, "auto"},
    {ConvAlgorithm::kDirect, "direct"},
    {ConvAlgorithm::kWinograd, "winograd"},
};

// The entry of `value` in `table`, or null for a value outside the enum
// (enums may come from a wire format that does not range-check them).
template <typename Enum, size_t N>
constexpr const EnumEntry<Enum>* FindEnum(const EnumEntry<Enum> (&table)[N], Enum value) {
  for (const EnumEntry<Enum>& entry : table) {
    if (entry.value == value) return &entry;
  }
  return nullptr;
}

// The names of a table, ", "-separated: "zeros, reflect, replicate, circular".
template <typename Enum, size_t N>
std::string EnumNames(const EnumEntry<Enum> (&table)[N]) {
  std::string names;
  for (const EnumEntry<Enum>& entry : table) {
    if (!names.empty()) names += ", ";
    names.append(entry.name.data(), entry.name.size());
  }
  return names;
}

// Names from the tables above; "unknown" for a value outside the enum.
absl::string_view PaddingPresetName(PaddingPreset preset);
absl::string_view PaddingModeName(PaddingMode mode);
absl::string_view ActivationName(Activation activation);
absl::string_view DataLayoutName(DataLayout layout);
absl::string_view WeightLayoutName(WeightLayout layout);
absl::string_view ConvAlgorithmName(ConvAlgorithm algorithm);

// Names of the spatial axes of a rank-`rank` layer, outermost first: {"L"},
// {"H", "W"} or {"D", "H", "W"} (PyTorch's names).
std::vector<std::string> SpatialAxisNames(int rank);

// Default alpha of kLeakyRelu (0.01) and kElu (1.0); 0 for the others.
float DefaultActivationAlpha(Activation activation);

// Applies `activation` to one value. Shared by every kernel so that all paths
// agree on the exact formula (e.g. GELU with erf).
float ApplyActivation(Activation activation, float alpha, float value);

}  // namespace convserve

#endif  // CONVSERVE_CORE_CONV_SPEC_H_
