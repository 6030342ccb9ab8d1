// MemoryBudget: admission control by working memory.
#include "server/memory_budget.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace convserve {
namespace {

using ::testing::HasSubstr;

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

}  // namespace
}  // namespace convserve
