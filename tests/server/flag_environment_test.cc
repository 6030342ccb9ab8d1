// flag_environment.h: CONVSERVE_<FLAG> variables, an explicit flag winning,
// bad values named, and where each configured value came from.
#include "server/flag_environment.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"

ABSL_FLAG(int, env_test_threads, 0, "a test flag");
ABSL_FLAG(std::string, env_test_listen, "0.0.0.0:1", "a test flag");
ABSL_FLAG(bool, env_test_verbose, false, "a test flag");

namespace convserve {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;

bool IsThisFile(absl::string_view file) { return absl::StrContains(file, "flag_environment_test"); }

class FlagEnvironmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::SetFlag(&FLAGS_env_test_threads, 0);
    absl::SetFlag(&FLAGS_env_test_listen, "0.0.0.0:1");
    absl::SetFlag(&FLAGS_env_test_verbose, false);
  }
  std::function<const char*(const char*)> Environment() {
    return [this](const char* name) -> const char* {
      auto it = environment_.find(name);
      return it == environment_.end() ? nullptr : it->second.c_str();
    };
  }
  std::map<std::string, std::string> environment_;
};

TEST_F(FlagEnvironmentTest, VariableNames) {
  EXPECT_EQ(EnvironmentVariableFor("compute_threads"), "CONVSERVE_COMPUTE_THREADS");
}

TEST_F(FlagEnvironmentTest, TheEnvironmentSetsFlagsTheCommandLineDoesNotName) {
  environment_ = {{"CONVSERVE_ENV_TEST_THREADS", "3"},
                  {"CONVSERVE_ENV_TEST_LISTEN", "127.0.0.1:6000"},
                  {"CONVSERVE_ENV_TEST_VERBOSE", "true"}};
  const char* argv[] = {"server", "--env_test_listen=10.0.0.1:7", "--noenv_test_verbose"};
  ASSERT_TRUE(ApplyFlagEnvironment(3, argv, IsThisFile, Environment()).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_env_test_threads), 3);
  // Named on the command line: left for absl::ParseCommandLine to set.
  EXPECT_EQ(absl::GetFlag(FLAGS_env_test_listen), "0.0.0.0:1");
  EXPECT_FALSE(absl::GetFlag(FLAGS_env_test_verbose));
  EXPECT_THAT(ConfiguredFlags(3, argv, IsThisFile, Environment()),
              ElementsAre(Field(&FlagOrigin::from, "--env_test_listen"),
                          Field(&FlagOrigin::from, "CONVSERVE_ENV_TEST_THREADS"),
                          Field(&FlagOrigin::from, "--env_test_verbose")));
}

TEST_F(FlagEnvironmentTest, ASingleDashAndASeparateValueCountAsExplicit) {
  environment_ = {{"CONVSERVE_ENV_TEST_THREADS", "3"}};
  const char* argv[] = {"server", "-env_test_threads", "5"};
  ASSERT_TRUE(ApplyFlagEnvironment(3, argv, IsThisFile, Environment()).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_env_test_threads), 0);
}

TEST_F(FlagEnvironmentTest, ABadValueNamesTheVariableAndTheFlag) {
  environment_ = {{"CONVSERVE_ENV_TEST_THREADS", "many"}};
  const char* argv[] = {"server"};
  absl::Status status = ApplyFlagEnvironment(1, argv, IsThisFile, Environment());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("CONVSERVE_ENV_TEST_THREADS (--env_test_threads)"));
  EXPECT_THAT(status.message(), HasSubstr("'many'"));
}

TEST_F(FlagEnvironmentTest, NothingSetMeansNothingConfigured) {
  const char* argv[] = {"server"};
  ASSERT_TRUE(ApplyFlagEnvironment(1, argv, IsThisFile, Environment()).ok());
  EXPECT_TRUE(ConfiguredFlags(1, argv, IsThisFile, Environment()).empty());
}

}  // namespace
}  // namespace convserve
