// conv_spec.cc: enum names, axis names and the activation formulas of a ConvSpec.
#include "core/conv_spec.h"

#include <cmath>

namespace convserve {

namespace {

template <typename Enum, size_t N>
absl::string_view NameIn(const EnumEntry<Enum> (&table)[N], Enum value) {
  const EnumEntry<Enum>* entry = FindEnum(table, value);
  return entry == nullptr ? "unknown" : entry->name;
}

}  // namespace

absl::string_view PaddingPresetName(PaddingPreset preset) {
  return NameIn(kPaddingPresets, preset);
}
absl::string_view PaddingModeName(PaddingMode mode) { return NameIn(kPaddingModes, mode); }
absl::string_view ActivationName(Activation activation) { return NameIn(kActivations, activation); }
absl::string_view DataLayoutName(DataLayout layout) { return NameIn(kDataLayouts, layout); }
absl::string_view WeightLayoutName(WeightLayout layout) { return NameIn(kWeightLayouts, layout); }
absl::string_view ConvAlgorithmName(ConvAlgorithm algorithm) {
  return NameIn(kConvAlgorithms, algorithm);
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
