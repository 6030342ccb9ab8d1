// usable_cpus.h: cgroup v2 quotas (cpu.max) along the process's cgroup path.
#include "server/usable_cpus.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace convserve {
namespace {

TEST(CpusOfQuotaTest, RoundsAFractionalQuotaUp) {
  EXPECT_EQ(CpusOfQuota("200000 100000\n"), 2);
  EXPECT_EQ(CpusOfQuota("150000 100000"), 2);
  EXPECT_EQ(CpusOfQuota("50000 100000"), 1);
  EXPECT_EQ(CpusOfQuota("max 100000\n"), std::nullopt);
  EXPECT_EQ(CpusOfQuota(""), std::nullopt);
  EXPECT_EQ(CpusOfQuota("12 x"), std::nullopt);
  EXPECT_EQ(CpusOfQuota("-1 100000"), std::nullopt);
}

class CgroupTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/convserve_cgroup_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void Write(const std::string& dir, const std::string& cpu_max) {
    std::filesystem::create_directories(root_ + dir);
    std::ofstream(root_ + dir + "/cpu.max") << cpu_max << "\n";
  }
  std::string root_;
};

TEST_F(CgroupTreeTest, TheTightestQuotaOnThePathWins) {
  Write("", "max 100000");
  Write("/kubepods", "400000 100000");
  Write("/kubepods/pod1", "150000 100000");
  Write("/kubepods/pod1/ctr", "max 100000");
  EXPECT_EQ(CgroupCpuLimit("0::/kubepods/pod1/ctr\n", root_), 2);
  EXPECT_EQ(CgroupCpuLimit("0::/kubepods\n", root_), 4);
}

TEST_F(CgroupTreeTest, NoQuotaOrNoCgroupV2MeansNoLimit) {
  Write("", "max 100000");
  Write("/a", "max 100000");
  EXPECT_EQ(CgroupCpuLimit("0::/a\n", root_), std::nullopt);
  // cgroup v1 lines only.
  EXPECT_EQ(CgroupCpuLimit("4:memory:/x\n1:cpu:/\n", root_), std::nullopt);
  // A path whose files are missing.
  EXPECT_EQ(CgroupCpuLimit("0::/missing/deeper\n", root_), std::nullopt);
}

TEST(UsableCpusTest, AtLeastOneAndAtMostTheHardware) {
  const int cpus = UsableCpus();
  EXPECT_GE(cpus, 1);
  EXPECT_LE(static_cast<unsigned>(cpus), std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace
}  // namespace convserve
