// The server's adapter pieces on their own: proto -> core conversion, tensor
// decoding, status mapping, the memory budget and the model registry.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "server/auth.h"
#include "server/convert.h"
#include "server/memory_budget.h"
#include "server/model_registry.h"
#include "server/status_mapping.h"

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

TEST(PrepareOutputTest, WritesIntoTheResponseBuffer) {
  v1::Tensor tensor;
  float* output = PrepareOutput({1, 3}, &tensor);
  output[0] = 1.5f;
  output[2] = -2.0f;
  EXPECT_EQ(tensor.data().size(), 12u);
  EXPECT_EQ(static_cast<const void*>(output), static_cast<const void*>(tensor.data().data()));
  float values[3];
  std::memcpy(values, tensor.data().data(), sizeof(values));
  EXPECT_EQ(values[0], 1.5f);
  EXPECT_EQ(values[2], -2.0f);
  EXPECT_THAT(tensor.shape(), ElementsAre(1, 3));
  EXPECT_EQ(tensor.element_type(), v1::ELEMENT_TYPE_FLOAT32);
}

TEST(StatusMappingTest, KeepsCodeAndMessage) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  grpc::Status status = ToGrpcStatus(absl::NotFoundError("name: no model named 'x'"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "name: no model named 'x'");
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("x")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // absl itself turns codes outside the canonical set into UNKNOWN.
  EXPECT_EQ(ToGrpcStatus(absl::Status(static_cast<absl::StatusCode>(77), "odd")).error_code(),
            grpc::StatusCode::UNKNOWN);
  EXPECT_TRUE(IsClientError(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(IsClientError(absl::StatusCode::kInternal));
}

TEST(MemoryBudgetTest, ReservesAndReleases) {
  MemoryBudget budget(100);
  absl::StatusOr<MemoryBudget::Reservation> first = budget.Reserve("Conv", 60);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(budget.in_use(), 60);
  absl::StatusOr<MemoryBudget::Reservation> second = budget.Reserve("Conv", 50);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("--memory_budget_bytes=100"));
  EXPECT_FALSE(budget.Reserve("Conv", -1).ok());
  {
    MemoryBudget::Reservation moved = *std::move(first);
    EXPECT_EQ(budget.in_use(), 60);
  }
  EXPECT_EQ(budget.in_use(), 0);
  EXPECT_TRUE(budget.Reserve("Conv", 100).ok());
  EXPECT_EQ(budget.in_use(), 0);  // the temporary reservation was released
}

TEST(ModelRegistryTest, AddFindReplaceRemove) {
  ModelRegistry registry(1000);
  auto model = std::make_shared<Model>();
  model->name = "a";
  model->weight_bytes = 600;
  ASSERT_TRUE(registry.Add(model, false).ok());
  EXPECT_EQ(registry.Add(model, false).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(registry.Add(model, true).ok());  // replacing frees the old bytes first

  auto other = std::make_shared<Model>();
  other->name = "b";
  other->weight_bytes = 500;
  absl::Status full = registry.Add(other, false);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(full.message()), HasSubstr("--max_model_bytes=1000"));
  EXPECT_EQ(registry.CheckAdd("b", 400, false).code(), absl::StatusCode::kOk);

  absl::StatusOr<std::shared_ptr<const Model>> found = registry.Find("a");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ((*found)->weight_bytes, 600);
  absl::Status missing = registry.Find("zzz").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr("loaded: a"));

  EXPECT_TRUE(registry.Remove("a").ok());
  EXPECT_EQ(registry.Remove("a").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(registry.Add(other, false).ok());
  EXPECT_EQ(registry.List().size(), 1u);
}

TEST(AuthTest, ChecksBearerToken) {
  std::multimap<grpc::string_ref, grpc::string_ref> metadata;
  EXPECT_EQ(CheckBearerToken(metadata, "abc").code(), absl::StatusCode::kUnauthenticated);
  metadata.emplace("authorization", "Bearer abc");
  EXPECT_TRUE(CheckBearerToken(metadata, "abc").ok());
  EXPECT_EQ(CheckBearerToken(metadata, "abd").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(CheckBearerToken(metadata, "abcd").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(CheckBearerToken(metadata, "ab").code(), absl::StatusCode::kUnauthenticated);
  metadata.clear();
  metadata.emplace("authorization", "Basic abc");
  EXPECT_THAT(std::string(CheckBearerToken(metadata, "abc").message()), HasSubstr("Bearer"));
  EXPECT_EQ(ReadTokenFile("/nonexistent/token").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ModelNameTest, AcceptsOnlyPlainNames) {
  EXPECT_TRUE(CheckModelName("resnet50-v1.5_int").ok());
  EXPECT_FALSE(CheckModelName("").ok());
  EXPECT_FALSE(CheckModelName("a b").ok());
  EXPECT_FALSE(CheckModelName(std::string(129, 'a')).ok());
  EXPECT_THAT(std::string(CheckModelName("x/y").message()), HasSubstr("got 'x/y'"));
}

}  // namespace
}  // namespace convserve
