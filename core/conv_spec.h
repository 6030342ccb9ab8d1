// conv_spec.h: the description of one convolution layer, independent of any
// framework or transport. Every other part of ConvServe (validator, kernels,
// server, clients) speaks in these types.
//
// A ConvSpec is *input*: nothing in it is trusted until Validate() (see
// validator.h) has checked it against an input shape and resolved it into a
// ConvGeometry, the fully numeric form the kernels run on.
#ifndef CONVSERVE_CORE_CONV_SPEC_H_
#define CONVSERVE_CORE_CONV_SPEC_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace convserve {

// Convolutions have 1, 2 or 3 spatial axes.
inline constexpr int kMaxSpatialRank = 3;

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
  std::array<int64_t, kMaxSpatialRank> input{1, 1, 1};
  std::array<int64_t, kMaxSpatialRank> output{1, 1, 1};
  std::array<int64_t, kMaxSpatialRank> kernel{1, 1, 1};
  std::array<int64_t, kMaxSpatialRank> stride{1, 1, 1};
  std::array<int64_t, kMaxSpatialRank> dilation{1, 1, 1};
  std::array<int64_t, kMaxSpatialRank> pad_begin{0, 0, 0};
  std::array<int64_t, kMaxSpatialRank> pad_end{0, 0, 0};
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
  // Element counts; Validate() has checked that none overflows.
  int64_t input_elements() const { return batch * in_channels * input_spatial_size(); }
  int64_t output_elements() const { return batch * out_channels * output_spatial_size(); }
  int64_t weight_elements() const { return out_channels * in_channels_per_group() * kernel_size(); }
  int64_t bias_elements() const { return bias ? out_channels : 0; }
  // Multiply-accumulates of one run; ResolveGeometry() checked that 2 * macs() fits.
  int64_t macs() const { return output_elements() * in_channels_per_group() * kernel_size(); }
};

// Names as they appear in messages, the CLI and the proto ("same_upper", ...).
absl::string_view PaddingPresetName(PaddingPreset preset);
absl::string_view PaddingModeName(PaddingMode mode);
absl::string_view ActivationName(Activation activation);
absl::string_view DataLayoutName(DataLayout layout);
absl::string_view WeightLayoutName(WeightLayout layout);

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
