// process.h: the server process's signals and file limit.
//
// Signals: SIGPIPE is ignored (a reader of stdout that goes away must not
// kill the server at its next log line: the write fails instead). SIGINT,
// SIGTERM and SIGHUP are blocked in every thread and taken synchronously by
// one: the first SIGINT or SIGTERM starts the drain, a second one during the
// drain exits at once, and SIGHUP is logged and otherwise ignored (nothing to
// reload yet).
#ifndef CONVSERVE_SERVER_PROCESS_H_
#define CONVSERVE_SERVER_PROCESS_H_

#include <signal.h>
#include <sys/resource.h>

#include <functional>
#include <string>

namespace convserve {

// Ignores SIGPIPE for the whole process. Call first thing in main().
void IgnoreBrokenPipes();

// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread, and so in every
// thread it starts afterwards; returns that set for WaitForStopSignal().
// Call before any thread starts (gRPC's, TBB's).
sigset_t BlockServerSignals();

// Waits for SIGINT or SIGTERM among `signals` and returns it; calls
// `on_hangup` for each SIGHUP meanwhile.
int WaitForStopSignal(const sigset_t& signals, const std::function<void()>& on_hangup);

// Starts a detached thread that takes `signals` from now on: SIGHUP calls
// `on_hangup`; SIGINT or SIGTERM calls `on_force(signal)`, which must not
// return (it should end the process, e.g. with std::_Exit).
void OnStopSignalAgain(const sigset_t& signals, std::function<void(int)> on_force,
                       std::function<void()> on_hangup);

// The exit code of a forced exit on `signal`: 128 + its number, as a shell
// reports a process killed by it (130 for SIGINT, 143 for SIGTERM).
int ForcedExitCode(int signal);

// What RaiseFileLimit() did.
struct FileLimit {
  rlim_t before = 0;  // the soft limit found
  rlim_t after = 0;   // the soft limit now
  rlim_t hard = 0;
  std::string error;  // why it could not be raised, if it could not
};

// Raises the soft limit of open files (RLIMIT_NOFILE) to the hard limit.
// Every connection holds a descriptor, and gRPC 1.51 stops accepting for good
// once accept() fails with EMFILE, so the common soft limit of 1024 is a cap
// on clients that, when reached, silently ends the server's service.
FileLimit RaiseFileLimit();

// "open files: soft limit 1024 -> 4096 (hard 4096)", or why not.
std::string DescribeFileLimit(const FileLimit& limit);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_PROCESS_H_
