#include "core/conv_spec.h"

#include <cmath>

namespace convserve {

absl::string_view PaddingPresetName(PaddingPreset preset) {
  switch (preset) {
    case PaddingPreset::kExplicit:
      return "explicit";
    case PaddingPreset::kValid:
      return "valid";
    case PaddingPreset::kSameUpper:
      return "same_upper";
    case PaddingPreset::kSameLower:
      return "same_lower";
    case PaddingPreset::kCausal:
      return "causal";
  }
  return "unknown";
}

absl::string_view PaddingModeName(PaddingMode mode) {
  switch (mode) {
    case PaddingMode::kZeros:
      return "zeros";
    case PaddingMode::kReflect:
      return "reflect";
    case PaddingMode::kReplicate:
      return "replicate";
    case PaddingMode::kCircular:
      return "circular";
  }
  return "unknown";
}

absl::string_view ActivationName(Activation activation) {
  switch (activation) {
    case Activation::kNone:
      return "none";
    case Activation::kRelu:
      return "relu";
    case Activation::kRelu6:
      return "relu6";
    case Activation::kLeakyRelu:
      return "leaky_relu";
    case Activation::kElu:
      return "elu";
    case Activation::kSigmoid:
      return "sigmoid";
    case Activation::kTanh:
      return "tanh";
    case Activation::kSilu:
      return "silu";
    case Activation::kGelu:
      return "gelu";
  }
  return "unknown";
}

absl::string_view DataLayoutName(DataLayout layout) {
  return layout == DataLayout::kChannelsFirst ? "channels_first" : "channels_last";
}

absl::string_view WeightLayoutName(WeightLayout layout) {
  return layout == WeightLayout::kOutInSpatial ? "oihw" : "hwio";
}

std::vector<std::string> SpatialAxisNames(int rank) {
  switch (rank) {
    case 1:
      return {"L"};
    case 2:
      return {"H", "W"};
    default:
      return {"D", "H", "W"};
  }
}

float DefaultActivationAlpha(Activation activation) {
  switch (activation) {
    case Activation::kLeakyRelu:
      return 0.01f;
    case Activation::kElu:
      return 1.0f;
    default:
      return 0.0f;
  }
}

float ApplyActivation(Activation activation, float alpha, float x) {
  switch (activation) {
    case Activation::kNone:
      return x;
    // NaN must propagate as in PyTorch: written so that a NaN x fails every
    // comparison and falls through to x itself.
    case Activation::kRelu:
      return x < 0.0f ? 0.0f : x;
    case Activation::kRelu6:
      return x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x);
    case Activation::kLeakyRelu:
      return x < 0.0f ? alpha * x : x;
    case Activation::kElu:
      return x < 0.0f ? alpha * std::expm1(x) : x;
    case Activation::kSigmoid:
      return 1.0f / (1.0f + std::exp(-x));
    case Activation::kTanh:
      return std::tanh(x);
    case Activation::kSilu:
      return x / (1.0f + std::exp(-x));
    case Activation::kGelu:
      return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
  }
  return x;
}

}  // namespace convserve
