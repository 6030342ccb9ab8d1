// ModelRegistry and CheckModelName: the named models a server holds.
#include "server/model_registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace convserve {
namespace {

using ::testing::HasSubstr;

TEST(ModelRegistryTest, AddFindReplaceRemove) {
  ModelRegistry registry(1000);
  auto model = std::make_shared<Model>();
  model->name = "a";
  model->weight_bytes = 600;
  model->charged_bytes = 600;
  ASSERT_TRUE(registry.Add(model, false).ok());
  EXPECT_EQ(registry.Add(model, false).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(registry.Add(model, true).ok());  // replacing frees the old bytes first

  auto other = std::make_shared<Model>();
  other->name = "b";
  other->weight_bytes = 500;
  other->charged_bytes = 500;
  absl::Status full = registry.Add(other, false);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(full.message()), HasSubstr("--max_model_bytes=1000"));
  EXPECT_EQ(registry.CheckAdd("b", 400, false).code(), absl::StatusCode::kOk);

  absl::StatusOr<std::shared_ptr<const Model>> found = registry.Find("a");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ((*found)->weight_bytes, 600);
  absl::Status missing = registry.Find("zzz").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(),
            "name: no model named 'zzz' is loaded (1 model is loaded; ListModels lists them)");

  EXPECT_TRUE(registry.Remove("a").ok());
  EXPECT_EQ(registry.Remove("a").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(registry.Add(other, false).ok());
  EXPECT_EQ(registry.List().size(), 1u);
}

TEST(ModelRegistryTest, CountsModelsAndTheirBytes) {
  ModelRegistry registry(1000);
  EXPECT_EQ(registry.size(), 0u);
  EXPECT_EQ(registry.total_weight_bytes(), 0);
  auto a = std::make_shared<Model>();
  a->name = "a";
  a->weight_bytes = 300;
  auto b = std::make_shared<Model>();
  b->name = "b";
  b->weight_bytes = 200;
  ASSERT_TRUE(registry.Add(a, false).ok());
  ASSERT_TRUE(registry.Add(b, false).ok());
  EXPECT_EQ(registry.size(), 2u);
  EXPECT_EQ(registry.total_weight_bytes(), a->weight_bytes + b->weight_bytes);
  auto smaller_a = std::make_shared<Model>();
  smaller_a->name = "a";
  smaller_a->weight_bytes = 100;
  ASSERT_TRUE(registry.Add(smaller_a, true).ok());  // replaces: still two models
  EXPECT_EQ(registry.size(), 2u);
  EXPECT_EQ(registry.total_weight_bytes(), smaller_a->weight_bytes + b->weight_bytes);
  ASSERT_TRUE(registry.Remove("b").ok());
  EXPECT_EQ(registry.size(), 1u);
  EXPECT_EQ(registry.total_weight_bytes(), smaller_a->weight_bytes);
}

TEST(ModelRegistryTest, ChargesBookkeepingAndCapsTheModelCount) {
  // A model of a million 4-byte layers holds gigabytes beyond its 4 MB of weights.
  EXPECT_EQ(ModelBytes(4 << 20, 1 << 20),
            (4 << 20) + (int64_t{1} << 20) * kBytesPerModelLayer + kBytesPerModel);
  ModelRegistry registry(1 << 20, /*max_models=*/2);
  for (const char* name : {"a", "b", "c"}) {
    auto model = std::make_shared<Model>();
    model->name = name;
    model->weight_bytes = 4;
    model->charged_bytes = ModelBytes(4, 1);
    absl::Status added = registry.Add(model, false);
    if (std::string(name) != "c") {
      EXPECT_TRUE(added.ok()) << added;
      continue;
    }
    EXPECT_EQ(added.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(std::string(added.message()),
                HasSubstr("2 models are loaded, the server's limit (--max_models=2)"));
    // Replacing a loaded model does not add one.
    model->name = "a";
    EXPECT_TRUE(registry.Add(model, true).ok());
  }
}

TEST(ModelNameTest, AcceptsOnlyPlainNames) {
  EXPECT_TRUE(CheckModelName("resnet50-v1.5_int").ok());
  EXPECT_FALSE(CheckModelName("").ok());
  EXPECT_FALSE(CheckModelName("a b").ok());
  EXPECT_FALSE(CheckModelName(std::string(129, 'a')).ok());
  EXPECT_THAT(std::string(CheckModelName("x/y").message()), HasSubstr("got 'x/y'"));
}

// RELIABILITY row 11: NOT_FOUND names the model asked for, escaped and
// truncated, never the inventory (60k loaded names made 7.7 MB messages).
TEST(ModelRegistryTest, NotFoundNamesTheModelNotTheInventory) {
  ModelRegistry registry(int64_t{1} << 40);
  for (int i = 0; i < 1000; ++i) {
    auto model = std::make_shared<Model>();
    model->name = "loaded-model-" + std::to_string(i);
    ASSERT_TRUE(registry.Add(model, false).ok());
  }
  for (const absl::Status& missing :
       {registry.Find("absent").status(), registry.Remove("absent")}) {
    EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(missing.message(),
              "name: no model named 'absent' is loaded (1000 models are loaded; ListModels lists "
              "them)");
  }
  const std::string huge(8 << 20, 'n');
  EXPECT_THAT(std::string(registry.Find(std::string("m\n") + "x").status().message()),
              HasSubstr("'m\\nx'"));
  EXPECT_THAT(std::string(registry.Remove("a\nb").message()), HasSubstr("'a\\nb'"));
  EXPECT_LT(registry.Find(huge).status().message().size(), 300u);
  EXPECT_THAT(std::string(registry.Remove(huge).message()), HasSubstr("...(8388608 bytes)"));
}

TEST(ModelNameTest, EchoesABadNameEscapedAndTruncated) {
  const std::string forged = "m\"\n[2026-11-26 00:00:00.000] [critical] FORGED";
  const std::string message(CheckModelName(forged).message());
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_THAT(message, HasSubstr("got 'm\\\"\\n[2026-11-26 00:00:00.000] [critical] FORGED'"));
  const absl::Status huge = CheckModelName(std::string(8 << 20, 'n'));
  EXPECT_LT(huge.message().size(), 400u);
  EXPECT_THAT(std::string(huge.message()), HasSubstr("...(8388608 bytes)' (8388608 characters)"));
}

}  // namespace
}  // namespace convserve
