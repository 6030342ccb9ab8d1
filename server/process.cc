// process.cc: signal handling and the file limit of the server process.
#include "server/process.h"

#include <pthread.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"

namespace convserve {
namespace {

bool IsStopSignal(int signal) { return signal == SIGINT || signal == SIGTERM; }

std::string LimitText(rlim_t value) {
  return value == RLIM_INFINITY ? "unlimited" : absl::StrCat(value);
}

}  // namespace

void IgnoreBrokenPipes() { signal(SIGPIPE, SIG_IGN); }

sigset_t BlockServerSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

int WaitForStopSignal(const sigset_t& signals, const std::function<void()>& on_hangup) {
  for (;;) {
    int signal = 0;
    if (sigwait(&signals, &signal) != 0) continue;
    if (IsStopSignal(signal)) return signal;
    if (signal == SIGHUP && on_hangup) on_hangup();
  }
}

void OnStopSignalAgain(const sigset_t& signals, std::function<void(int)> on_force,
                       std::function<void()> on_hangup) {
  std::thread([signals, on_force = std::move(on_force), on_hangup = std::move(on_hangup)] {
    on_force(WaitForStopSignal(signals, on_hangup));
  }).detach();
}

int ForcedExitCode(int signal) { return 128 + signal; }

FileLimit RaiseFileLimit() {
  FileLimit result;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    result.error = absl::StrCat("getrlimit(RLIMIT_NOFILE): ", std::strerror(errno));
    return result;
  }
  result.before = result.after = limit.rlim_cur;
  result.hard = limit.rlim_max;
  if (limit.rlim_cur == limit.rlim_max) return result;
  rlimit raised = limit;
  raised.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
    result.error = absl::StrCat("setrlimit(RLIMIT_NOFILE, ", LimitText(raised.rlim_cur),
                                "): ", std::strerror(errno));
    return result;
  }
  result.after = raised.rlim_cur;
  return result;
}

std::string DescribeFileLimit(const FileLimit& limit) {
  std::string text = limit.before == limit.after
                         ? absl::StrCat("open files: soft limit ", LimitText(limit.after))
                         : absl::StrCat("open files: soft limit ", LimitText(limit.before), " -> ",
                                        LimitText(limit.after));
  absl::StrAppend(&text, " (hard ", LimitText(limit.hard), ")");
  if (!limit.error.empty()) absl::StrAppend(&text, "; not raised: ", limit.error);
  return text;
}

}  // namespace convserve
