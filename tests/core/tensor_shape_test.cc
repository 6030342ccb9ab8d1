// ShapeToString(), CheckedElementCount() and CheckPayloadBytes(): shapes as messages show them.
#include "core/tensor_shape.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace convserve {
namespace {

TEST(ShapeToStringTest, ShowsShortShapesWhole) {
  EXPECT_EQ(ShapeToString({}), "[]");
  EXPECT_EQ(ShapeToString({1, 3, 224, 224}), "[1, 3, 224, 224]");
  EXPECT_EQ(ShapeToString({1, 2, 3, 4, 5, 6, 7, 8}), "[1, 2, 3, 4, 5, 6, 7, 8]");
}

TEST(ShapeToStringTest, ShowsEightEntriesOfALongListAndItsCount) {
  EXPECT_EQ(ShapeToString({1, 2, 3, 4, 5, 6, 7, 8, 9}),
            "[1, 2, 3, 4, 5, 6, 7, 8, ... (9 entries)]");
  const std::string shown = ShapeToString(std::vector<int64_t>(1000000, -9000000000000000000));
  EXPECT_LT(shown.size(), 200u);
  EXPECT_NE(shown.find("... (1000000 entries)]"), std::string::npos);
}

TEST(CheckedElementCountTest, ABadDimensionOfALongShapeGivesAShortMessage) {
  std::vector<int64_t> shape(1000000, 1);
  shape.back() = 0;
  absl::StatusOr<int64_t> count = CheckedElementCount("input", shape);
  ASSERT_EQ(count.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LT(count.status().message().size(), 300u);
  EXPECT_NE(count.status().message().find("got 0 at dim 999999 of [1, 1, 1, 1, 1, 1, 1, 1, ... "
                                          "(1000000 entries)]"),
            std::string::npos)
      << count.status().message();
}

TEST(CheckPayloadBytesTest, NamesTheFieldAndBothSizes) {
  EXPECT_TRUE(CheckPayloadBytes("input", {1, 2}, 8).ok());
  absl::Status status = CheckPayloadBytes("weight", {64, 3, 7, 7}, 37636);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "weight: expected 37632 bytes for shape [64, 3, 7, 7] float32, got 37636");
}

}  // namespace
}  // namespace convserve
