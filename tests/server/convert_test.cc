// Proto <-> core conversion: layers and their enum tables, tensors, weights,
// validation options and descriptions of models.
#include "server/convert.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace convserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::Tensor FloatTensorProto(const std::vector<int64_t>& shape, const std::vector<float>& values) {
  v1::Tensor tensor;
  tensor.mutable_shape()->Add(shape.begin(), shape.end());
  tensor.set_element_type(v1::ELEMENT_TYPE_FLOAT32);
  tensor.set_data(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  return tensor;
}

TEST(ToConvSpecTest, ConvertsEveryField) {
  v1::ConvLayer layer;
  layer.set_spatial_rank(2);
  layer.set_in_channels(4);
  layer.set_out_channels(8);
  layer.add_kernel(3);
  layer.add_stride(2);
  layer.add_pad_begin(1);
  layer.add_pad_end(2);
  layer.set_padding_mode(v1::PADDING_MODE_REFLECT);
  layer.set_activation(v1::ACTIVATION_LEAKY_RELU);
  layer.set_activation_alpha(0.2f);
  layer.set_data_layout(v1::DATA_LAYOUT_CHANNELS_LAST);
  layer.set_weight_layout(v1::WEIGHT_LAYOUT_HWIO);
  layer.set_bias(true);
  absl::StatusOr<ConvSpec> spec = ToConvSpec("layer", layer);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->groups, 1);  // unset groups means 1
  EXPECT_THAT(spec->kernel, ElementsAre(3));
  EXPECT_THAT(spec->pad_end, ElementsAre(2));
  EXPECT_EQ(spec->padding_mode, PaddingMode::kReflect);
  EXPECT_EQ(spec->activation, Activation::kLeakyRelu);
  EXPECT_FLOAT_EQ(spec->activation_alpha, 0.2f);
  EXPECT_EQ(spec->data_layout, DataLayout::kChannelsLast);
  EXPECT_EQ(spec->weight_layout, WeightLayout::kSpatialInOut);
  EXPECT_TRUE(spec->bias);

  // And back.
  v1::ConvLayer round_trip = ToProtoLayer(*spec);
  EXPECT_EQ(round_trip.padding_mode(), v1::PADDING_MODE_REFLECT);
  EXPECT_EQ(round_trip.activation(), v1::ACTIVATION_LEAKY_RELU);
  EXPECT_EQ(round_trip.weight_layout(), v1::WEIGHT_LAYOUT_HWIO);
}

TEST(ToConvSpecTest, UnsetAlphaIsNaN) {
  v1::ConvLayer layer;
  absl::StatusOr<ConvSpec> spec = ToConvSpec("layer", layer);
  ASSERT_TRUE(spec.ok());
  EXPECT_TRUE(std::isnan(spec->activation_alpha));
}

TEST(ToConvSpecTest, RefusesOutOfRangeEnums) {
  v1::ConvLayer layer;
  layer.set_activation(static_cast<v1::Activation>(42));
  absl::StatusOr<ConvSpec> spec = ToConvSpec("layers[3].layer", layer);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()),
              HasSubstr("layers[3].layer.activation: expected one of"));
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("got 42"));

  layer.set_activation(v1::ACTIVATION_NONE);
  layer.set_data_layout(static_cast<v1::DataLayout>(-1));
  EXPECT_THAT(std::string(ToConvSpec("layer", layer).status().message()),
              HasSubstr("layer.data_layout"));
}

// Every value of a ConvLayer enum decodes, and comes back as itself; every
// core value (as many as the proto's, numbered alike) goes there and back.
template <typename Proto, typename Core>
void ExpectEveryValueRoundTrips(void (v1::ConvLayer::*set)(Proto),
                                Proto (v1::ConvLayer::*get)() const, Core ConvSpec::*core_field) {
  const google::protobuf::EnumDescriptor* descriptor = google::protobuf::GetEnumDescriptor<Proto>();
  std::vector<int> core_values;
  for (int i = 0; i < descriptor->value_count(); ++i) {
    const Proto value = static_cast<Proto>(descriptor->value(i)->number());
    v1::ConvLayer layer;
    (layer.*set)(value);
    absl::StatusOr<ConvSpec> spec = ToConvSpec("layer", layer);
    ASSERT_TRUE(spec.ok()) << descriptor->value(i)->name() << ": " << spec.status();
    EXPECT_EQ((ToProtoLayer(*spec).*get)(), value) << descriptor->value(i)->name();
    core_values.push_back(static_cast<int>((*spec).*core_field));
  }
  // One core value per wire value: no two wire values share one.
  std::sort(core_values.begin(), core_values.end());
  EXPECT_EQ(std::adjacent_find(core_values.begin(), core_values.end()), core_values.end())
      << descriptor->name();
  for (int core = 0; core < descriptor->value_count(); ++core) {
    ConvSpec spec;
    spec.*core_field = static_cast<Core>(core);
    absl::StatusOr<ConvSpec> round_trip = ToConvSpec("layer", ToProtoLayer(spec));
    ASSERT_TRUE(round_trip.ok()) << round_trip.status();
    EXPECT_EQ(static_cast<int>((*round_trip).*core_field), core) << descriptor->name();
  }
}

TEST(EnumTableTest, EveryValueRoundTrips) {
  ExpectEveryValueRoundTrips(&v1::ConvLayer::set_padding, &v1::ConvLayer::padding,
                             &ConvSpec::padding);
  ExpectEveryValueRoundTrips(&v1::ConvLayer::set_padding_mode, &v1::ConvLayer::padding_mode,
                             &ConvSpec::padding_mode);
  ExpectEveryValueRoundTrips(&v1::ConvLayer::set_activation, &v1::ConvLayer::activation,
                             &ConvSpec::activation);
  ExpectEveryValueRoundTrips(&v1::ConvLayer::set_data_layout, &v1::ConvLayer::data_layout,
                             &ConvSpec::data_layout);
  ExpectEveryValueRoundTrips(&v1::ConvLayer::set_weight_layout, &v1::ConvLayer::weight_layout,
                             &ConvSpec::weight_layout);
  ExpectEveryValueRoundTrips(&v1::ConvLayer::set_algorithm, &v1::ConvLayer::algorithm,
                             &ConvSpec::algorithm);
}

TEST(EnumTableTest, WireValuesMapToTheCoreValuesOfTheSameMeaning) {
  v1::ConvLayer layer;
  layer.set_padding(v1::PADDING_PRESET_SAME_LOWER);
  layer.set_padding_mode(v1::PADDING_MODE_CIRCULAR);
  layer.set_activation(v1::ACTIVATION_GELU);
  layer.set_data_layout(v1::DATA_LAYOUT_CHANNELS_FIRST);
  layer.set_weight_layout(v1::WEIGHT_LAYOUT_OIHW);
  absl::StatusOr<ConvSpec> spec = ToConvSpec("layer", layer);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->padding, PaddingPreset::kSameLower);
  EXPECT_EQ(spec->padding_mode, PaddingMode::kCircular);
  EXPECT_EQ(spec->activation, Activation::kGelu);
  EXPECT_EQ(spec->data_layout, DataLayout::kChannelsFirst);
  EXPECT_EQ(spec->weight_layout, WeightLayout::kOutInSpatial);
}

TEST(EnumTableTest, RefusalListsEveryValueByItsProtoName) {
  struct Case {
    void (*set)(v1::ConvLayer*);
    const char* message;
  };
  const Case cases[] = {
      {[](v1::ConvLayer* l) { l->set_padding(static_cast<v1::PaddingPreset>(17)); },
       "layer.padding: expected one of EXPLICIT(0), VALID(1), SAME_UPPER(2), SAME_LOWER(3), "
       "CAUSAL(4), got 17"},
      {[](v1::ConvLayer* l) { l->set_padding_mode(static_cast<v1::PaddingMode>(4)); },
       "layer.padding_mode: expected one of ZEROS(0), REFLECT(1), REPLICATE(2), CIRCULAR(3), "
       "got 4"},
      {[](v1::ConvLayer* l) { l->set_activation(static_cast<v1::Activation>(9)); },
       "layer.activation: expected one of NONE(0), RELU(1), RELU6(2), LEAKY_RELU(3), ELU(4), "
       "SIGMOID(5), TANH(6), SILU(7), GELU(8), got 9"},
      {[](v1::ConvLayer* l) { l->set_data_layout(static_cast<v1::DataLayout>(-1)); },
       "layer.data_layout: expected one of CHANNELS_FIRST(0), CHANNELS_LAST(1), got -1"},
      {[](v1::ConvLayer* l) { l->set_weight_layout(static_cast<v1::WeightLayout>(2)); },
       "layer.weight_layout: expected one of OIHW(0), HWIO(1), got 2"},
      {[](v1::ConvLayer* l) { l->set_algorithm(static_cast<v1::ConvAlgorithm>(3)); },
       "layer.algorithm: expected one of AUTO(0), DIRECT(1), WINOGRAD(2), got 3"},
  };
  for (const Case& c : cases) {
    v1::ConvLayer layer;
    c.set(&layer);
    absl::Status status = ToConvSpec("layer", layer).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(), c.message);
  }
}

// One decoded layer of `kernel` x `kernel` with `algorithm` (weights unused).
DecodedLayer LayerWith(int64_t kernel, ConvAlgorithm algorithm) {
  ConvSpec spec;
  spec.in_channels = 2;
  spec.out_channels = 2;
  spec.kernel = {kernel, kernel};
  spec.algorithm = algorithm;
  absl::StatusOr<ResolvedLayer> resolved = ResolveLayer(spec);
  EXPECT_TRUE(resolved.ok()) << resolved.status();
  DecodedLayer layer;
  layer.layer = *resolved;
  return layer;
}

TEST(ApplyPrecisionTest, FastTurnsOnlyAutoLayersWinogradRunsToWinograd) {
  std::vector<DecodedLayer> layers = {LayerWith(3, ConvAlgorithm::kAuto),
                                      LayerWith(1, ConvAlgorithm::kAuto),
                                      LayerWith(3, ConvAlgorithm::kDirect)};
  std::vector<DecodedLayer> exact = layers;
  ASSERT_TRUE(ApplyPrecision(v1::PRECISION_EXACT, &exact).ok());
  for (const DecodedLayer& layer : exact) {
    EXPECT_NE(layer.layer.spec.algorithm, ConvAlgorithm::kWinograd);
  }
  ASSERT_TRUE(ApplyPrecision(v1::PRECISION_FAST, &layers).ok());
  EXPECT_EQ(layers[0].layer.spec.algorithm, ConvAlgorithm::kWinograd);
  EXPECT_EQ(layers[1].layer.spec.algorithm, ConvAlgorithm::kAuto);  // 1x1: stays direct
  EXPECT_EQ(layers[2].layer.spec.algorithm, ConvAlgorithm::kDirect);
  absl::Status bad = ApplyPrecision(static_cast<v1::Precision>(5), &layers);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.message(), "precision: expected PRECISION_EXACT or PRECISION_FAST, got 5");
}

TEST(ToValidateOptionsTest, MapsEveryFramework) {
  absl::StatusOr<ValidateOptions> none = ToValidateOptions(v1::FRAMEWORK_UNSPECIFIED);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->enforce_framework);
  const std::pair<v1::Framework, Framework> frameworks[] = {
      {v1::FRAMEWORK_PYTORCH, Framework::kPyTorch},
      {v1::FRAMEWORK_KERAS, Framework::kKeras},
      {v1::FRAMEWORK_ONNX, Framework::kOnnx},
  };
  for (const auto& [proto, core] : frameworks) {
    absl::StatusOr<ValidateOptions> options = ToValidateOptions(proto);
    ASSERT_TRUE(options.ok());
    EXPECT_TRUE(options->enforce_framework);
    EXPECT_EQ(options->framework, core);
    EXPECT_EQ(ToProtoFramework(core), proto);
  }
  absl::Status bad = ToValidateOptions(static_cast<v1::Framework>(7)).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.message(),
            "enforce_framework: expected one of UNSPECIFIED(0), PYTORCH(1), KERAS(2), ONNX(3), "
            "got 7");
}

TEST(DecodeSpecTest, RefusesAMissingLayer) {
  v1::ConvLayer layer;
  absl::Status missing = DecodeSpec("layers[2].", false, layer).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.message(),
            "layers[2].layer: expected a layer description, got none (the field is missing)");
  layer.set_padding(static_cast<v1::PaddingPreset>(9));
  EXPECT_THAT(std::string(DecodeSpec("layers[2].", true, layer).status().message()),
              HasSubstr("layers[2].layer.padding: expected one of"));
  layer.set_padding(v1::PADDING_PRESET_VALID);
  EXPECT_TRUE(DecodeSpec("", true, layer).ok());
}

TEST(DecodeTensorTest, ViewsTheBytes) {
  const v1::Tensor tensor = FloatTensorProto({2, 2}, {1, 2, 3, 4});
  absl::StatusOr<FloatTensor> decoded = DecodeTensor("input", true, tensor);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_THAT(decoded->shape, ElementsAre(2, 2));
  EXPECT_THAT(decoded->values, ElementsAre(1, 2, 3, 4));
  EXPECT_TRUE(decoded->aligned_copy.empty());
  EXPECT_EQ(static_cast<const void*>(decoded->values.data()),
            static_cast<const void*>(tensor.data().data()));  // no copy
}

TEST(DecodeTensorTest, RefusesMissingWrongTypeAndWrongSize) {
  v1::Tensor tensor = FloatTensorProto({2, 2}, {1, 2, 3, 4});
  EXPECT_THAT(std::string(DecodeTensor("weight", false, tensor).status().message()),
              HasSubstr("weight: expected a tensor, got none"));

  tensor.set_element_type(v1::ELEMENT_TYPE_INT8);
  EXPECT_THAT(std::string(DecodeTensor("input", true, tensor).status().message()),
              HasSubstr("got ELEMENT_TYPE_INT8"));
  tensor.set_element_type(static_cast<v1::ElementType>(99));
  EXPECT_THAT(std::string(DecodeTensor("input", true, tensor).status().message()),
              HasSubstr("got 99"));

  tensor.set_element_type(v1::ELEMENT_TYPE_FLOAT32);
  tensor.mutable_data()->pop_back();
  absl::Status status = DecodeTensor("input", true, tensor).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("expected 16 bytes"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("got 15"));

  tensor.clear_shape();
  EXPECT_THAT(std::string(DecodeTensor("input", true, tensor).status().message()),
              HasSubstr("input.shape: expected at least one dimension"));

  // Overflowing shapes are refused before anything is allocated.
  tensor.add_shape(int64_t{1} << 32);
  tensor.add_shape(int64_t{1} << 32);
  tensor.add_shape(2);
  EXPECT_EQ(DecodeTensor("input", true, tensor).status().code(),
            absl::StatusCode::kInvalidArgument);
}

v1::Tensor HalfTensorProto(v1::ElementType type, const std::vector<int64_t>& shape,
                           const std::vector<uint16_t>& bits) {
  v1::Tensor tensor;
  tensor.mutable_shape()->Add(shape.begin(), shape.end());
  tensor.set_element_type(type);
  tensor.set_data(reinterpret_cast<const char*>(bits.data()), bits.size() * sizeof(uint16_t));
  return tensor;
}

TEST(DecodeTensorTest, ConvertsHalfTypesToFloat32Exactly) {
  // float16: 1, -2, 65504 (largest), 2^-24 (smallest subnormal), -0, Inf.
  absl::StatusOr<FloatTensor> decoded =
      DecodeTensor("input", true,
                   HalfTensorProto(v1::ELEMENT_TYPE_FLOAT16, {2, 3},
                                   {0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00}));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->wire_type, v1::ELEMENT_TYPE_FLOAT16);
  EXPECT_THAT(decoded->shape, ElementsAre(2, 3));
  EXPECT_THAT(decoded->values, ElementsAre(1.0f, -2.0f, 65504.0f, 0x1p-24f, -0.0f, INFINITY));
  EXPECT_TRUE(std::signbit(decoded->values[4]));
  // The decoded copy is what the memory budget charges.
  EXPECT_EQ(decoded->aligned_copy.size(), 6u);

  // bfloat16: the top half of a float32.
  decoded = DecodeTensor("weight", true,
                         HalfTensorProto(v1::ELEMENT_TYPE_BFLOAT16, {3}, {0x3f80, 0xc0a0, 0x7f7f}));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_THAT(decoded->values, ElementsAre(1.0f, -5.0f, 0x1.fep127f));
}

TEST(DecodeTensorTest, HalfTypesTwoBytesPerElement) {
  v1::Tensor tensor = HalfTensorProto(v1::ELEMENT_TYPE_BFLOAT16, {2, 2}, {1, 2, 3, 4, 5});
  absl::Status status = DecodeTensor("layers[1].weight", true, tensor).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "layers[1].weight: expected 8 bytes for shape [2, 2] bfloat16, got 10");
  tensor.mutable_data()->pop_back();
  status = DecodeTensor("input", true, tensor).status();
  EXPECT_EQ(status.message(),
            "input: expected 8 bytes for shape [2, 2] bfloat16, got 9 (not a multiple of 2)");
  // Float32 bytes sent as float16.
  tensor = FloatTensorProto({2, 2}, {1, 2, 3, 4});
  tensor.set_element_type(v1::ELEMENT_TYPE_FLOAT16);
  EXPECT_EQ(DecodeTensor("bias", true, tensor).status().message(),
            "bias: expected 8 bytes for shape [2, 2] float16, got 16");
}

TEST(DecodeTensorTest, RefusesUnsupportedTypesNamingTheAccepted) {
  v1::Tensor tensor = FloatTensorProto({2}, {1, 2});
  for (v1::ElementType type :
       {v1::ELEMENT_TYPE_FLOAT64, v1::ELEMENT_TYPE_INT8, v1::ELEMENT_TYPE_UNSPECIFIED}) {
    tensor.set_element_type(type);
    absl::Status status = DecodeTensor("input", true, tensor).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(),
              "input.element_type: expected ELEMENT_TYPE_FLOAT32, ELEMENT_TYPE_FLOAT16 or "
              "ELEMENT_TYPE_BFLOAT16, got " +
                  v1::ElementType_Name(type));
  }
}

TEST(DecodeOutputTypeTest, DefaultsToTheInputTypeAndRefusesOthers) {
  EXPECT_EQ(
      *DecodeOutputType("output_type", v1::ELEMENT_TYPE_UNSPECIFIED, v1::ELEMENT_TYPE_BFLOAT16),
      v1::ELEMENT_TYPE_BFLOAT16);
  EXPECT_EQ(*DecodeOutputType("output_type", v1::ELEMENT_TYPE_FLOAT32, v1::ELEMENT_TYPE_FLOAT16),
            v1::ELEMENT_TYPE_FLOAT32);
  EXPECT_EQ(*DecodeOutputType("output_type", v1::ELEMENT_TYPE_FLOAT16, v1::ELEMENT_TYPE_FLOAT32),
            v1::ELEMENT_TYPE_FLOAT16);
  absl::Status status =
      DecodeOutputType("output_type", v1::ELEMENT_TYPE_INT8, v1::ELEMENT_TYPE_FLOAT32).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("output_type: expected ELEMENT_TYPE_FLOAT32, ELEMENT_TYPE_FLOAT16 or "
                        "ELEMENT_TYPE_BFLOAT16, got ELEMENT_TYPE_INT8"));
  EXPECT_THAT(std::string(DecodeOutputType("output_type", static_cast<v1::ElementType>(77),
                                           v1::ELEMENT_TYPE_FLOAT32)
                              .status()
                              .message()),
              HasSubstr("got 77"));
}

TEST(EncodeOutputInPlaceTest, RoundsToNearestEvenIntoTheBufferStart) {
  // 1 + 2^-11 is a float16 tie (even: 1), 1 + 3 * 2^-11 rounds up to
  // 1 + 2^-9; 70000 overflows to Inf. 19 values: a vector and a remainder.
  std::vector<float> values = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 70000.0f, -2.5f};
  values.resize(19, 0.5f);
  std::vector<float> buffer = values;
  EXPECT_EQ(EncodeOutputInPlace(v1::ELEMENT_TYPE_FLOAT16, buffer.data(), buffer.size()), 38u);
  const uint16_t* bits = reinterpret_cast<const uint16_t*>(buffer.data());
  EXPECT_THAT(std::vector<uint16_t>(bits, bits + 5),
              ElementsAre(0x3c00, 0x3c02, 0x7c00, 0xc100, 0x3800));
  EXPECT_EQ(bits[18], 0x3800);

  buffer = values;
  EXPECT_EQ(EncodeOutputInPlace(v1::ELEMENT_TYPE_BFLOAT16, buffer.data(), buffer.size()), 38u);
  bits = reinterpret_cast<const uint16_t*>(buffer.data());
  EXPECT_THAT(std::vector<uint16_t>(bits, bits + 4), ElementsAre(0x3f80, 0x3f80, 0x4789, 0xc020));

  buffer = values;
  EXPECT_EQ(EncodeOutputInPlace(v1::ELEMENT_TYPE_FLOAT32, buffer.data(), buffer.size()), 76u);
  EXPECT_EQ(buffer, values);
}

// A 1-D layer of 2 -> 3 channels, kernel 2.
ConvSpec SmallSpec(bool bias, WeightLayout weight_layout = WeightLayout::kOutInSpatial) {
  ConvSpec spec;
  spec.spatial_rank = 1;
  spec.in_channels = 2;
  spec.out_channels = 3;
  spec.kernel = {2};
  spec.bias = bias;
  spec.weight_layout = weight_layout;
  return spec;
}

TEST(DecodeWeightsTest, DecodesWeightAndBias) {
  const v1::Tensor weight = FloatTensorProto({3, 2, 2}, std::vector<float>(12, 0.5f));
  const v1::Tensor bias = FloatTensorProto({3}, {1, 2, 3});
  absl::StatusOr<DecodedLayer> decoded =
      DecodeWeights("", *ResolveLayer(SmallSpec(true)), true, weight, true, bias);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_THAT(decoded->weight.shape, ElementsAre(3, 2, 2));
  EXPECT_EQ(decoded->weight.values.size(), 12u);
  EXPECT_THAT(decoded->bias.values, ElementsAre(1, 2, 3));
  EXPECT_EQ(decoded->layer.spec.out_channels, 3);

  absl::StatusOr<DecodedLayer> no_bias =
      DecodeWeights("", *ResolveLayer(SmallSpec(false)), true, weight, false, v1::Tensor());
  ASSERT_TRUE(no_bias.ok()) << no_bias.status();
  EXPECT_TRUE(no_bias->bias.values.empty());
}

TEST(DecodeWeightsTest, RefusesWeightAndBiasThatDisagreeWithTheLayer) {
  const v1::Tensor weight = FloatTensorProto({3, 2, 2}, std::vector<float>(12, 0.5f));
  const v1::Tensor bias = FloatTensorProto({3}, {1, 2, 3});

  absl::Status hwio =
      DecodeWeights("layers[1].", *ResolveLayer(SmallSpec(false, WeightLayout::kSpatialInOut)),
                    true, weight, false, v1::Tensor())
          .status();
  EXPECT_EQ(hwio.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(hwio.message(),
            "layers[1].weight: expected shape [2, 2, 3] (*kernel, C_in/groups, C_out) for the "
            "layer, got [3, 2, 2]");
  EXPECT_EQ(DescribeWeightShape(SmallSpec(false)), "(C_out, C_in/groups, *kernel) for the layer");

  EXPECT_THAT(
      std::string(DecodeWeights("", *ResolveLayer(SmallSpec(false)), false, weight, false, bias)
                      .status()
                      .message()),
      HasSubstr("weight: expected a tensor, got none"));
  EXPECT_EQ(DecodeWeights("", *ResolveLayer(SmallSpec(true)), true, weight, false, v1::Tensor())
                .status()
                .message(),
            "bias: expected a tensor of shape [3] because layer.bias is true, got none");
  EXPECT_EQ(DecodeWeights("", *ResolveLayer(SmallSpec(false)), true, weight, true, bias)
                .status()
                .message(),
            "bias: expected no tensor because layer.bias is false, got one of shape [3]");
  EXPECT_EQ(DecodeWeights("", *ResolveLayer(SmallSpec(true)), true, weight, true,
                          FloatTensorProto({1}, {1}))
                .status()
                .message(),
            "bias: expected shape [3] (C_out), got [1]");
}

TEST(ToProtoModelInfoTest, DescribesNameSizesAndLayers) {
  Model model;
  model.name = "m";
  model.parameters = 15;
  model.weight_bytes = 60;
  absl::StatusOr<std::unique_ptr<ConvOperator>> op =
      ConvOperator::Create(SmallSpec(true), std::vector<float>(12, 0.5f), {1, 2, 3});
  ASSERT_TRUE(op.ok()) << op.status();
  model.layers.push_back(*std::move(op));
  v1::ModelInfo info;
  ToProtoModelInfo(model, &info);
  EXPECT_EQ(info.name(), "m");
  EXPECT_EQ(info.parameters(), 15);
  EXPECT_EQ(info.weight_bytes(), 60);
  ASSERT_EQ(info.layers_size(), 1);
  EXPECT_EQ(info.layers(0).out_channels(), 3);
  EXPECT_THAT(info.layers(0).kernel(), ElementsAre(2));
  EXPECT_TRUE(info.layers(0).bias());
}

}  // namespace
}  // namespace convserve
