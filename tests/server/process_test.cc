// The process's signals (SIGPIPE ignored, SIGHUP survived, stop signals taken in order)
// and its raised file limit.
#include "server/process.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>

namespace convserve {
namespace {

TEST(ProcessTest, ABrokenPipeFailsTheWriteInsteadOfKillingTheProcess) {
  IgnoreBrokenPipes();
  int ends[2];
  ASSERT_EQ(pipe(ends), 0);
  close(ends[0]);
  errno = 0;
  EXPECT_EQ(write(ends[1], "log line\n", 9), -1);
  EXPECT_EQ(errno, EPIPE);
  close(ends[1]);
}

TEST(ProcessTest, WaitForStopSignalTakesHangupsAndReturnsTheStopSignal) {
  const sigset_t signals = BlockServerSignals();
  // Blocked, so they stay pending for this thread until taken.
  ASSERT_EQ(pthread_kill(pthread_self(), SIGHUP), 0);
  ASSERT_EQ(pthread_kill(pthread_self(), SIGTERM), 0);
  int hangups = 0;
  EXPECT_EQ(WaitForStopSignal(signals, [&hangups] { ++hangups; }), SIGTERM);
  EXPECT_EQ(hangups, 1);
  ASSERT_EQ(pthread_kill(pthread_self(), SIGINT), 0);
  EXPECT_EQ(WaitForStopSignal(signals, nullptr), SIGINT);
}

TEST(ProcessTest, ForcedExitCodesAreThoseOfAShell) {
  EXPECT_EQ(ForcedExitCode(SIGINT), 130);
  EXPECT_EQ(ForcedExitCode(SIGTERM), 143);
}

TEST(ProcessTest, RaisesTheSoftFileLimitToTheHardOne) {
  rlimit original{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original), 0);
  if (original.rlim_max < 128) GTEST_SKIP() << "hard limit " << original.rlim_max;
  rlimit lowered = original;
  lowered.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);
  const FileLimit limit = RaiseFileLimit();
  EXPECT_EQ(limit.error, "");
  EXPECT_EQ(limit.before, 64u);
  EXPECT_EQ(limit.after, original.rlim_max);
  EXPECT_EQ(limit.hard, original.rlim_max);
  rlimit now{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(now.rlim_cur, original.rlim_max);
  EXPECT_EQ(DescribeFileLimit(limit), "open files: soft limit 64 -> " +
                                          std::to_string(original.rlim_max) + " (hard " +
                                          std::to_string(original.rlim_max) + ")");
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &original), 0);
}

}  // namespace
}  // namespace convserve
