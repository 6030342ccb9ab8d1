// usable_cpus.cc: the affinity mask and the cgroup v2 CPU quota of this process.
#include "server/usable_cpus.h"

#include <sched.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace convserve {
namespace {

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream file(path);
  if (!file) return std::nullopt;
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace

std::optional<int> CpusOfQuota(absl::string_view cpu_max) {
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::StripAsciiWhitespace(cpu_max), ' ', absl::SkipEmpty());
  int64_t quota = 0, period = 0;
  if (fields.size() != 2 || fields[0] == "max" || !absl::SimpleAtoi(fields[0], &quota) ||
      !absl::SimpleAtoi(fields[1], &period) || quota <= 0 || period <= 0) {
    return std::nullopt;
  }
  return static_cast<int>(std::max<int64_t>(1, (quota + period - 1) / period));
}

std::optional<int> CgroupCpuLimit(absl::string_view proc_self_cgroup,
                                  const std::string& cgroup_root) {
  std::string path;
  bool found = false;
  for (absl::string_view line : absl::StrSplit(proc_self_cgroup, '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) {
      path = std::string(absl::StripAsciiWhitespace(line));
      found = true;
    }
  }
  if (!found) return std::nullopt;
  std::optional<int> limit;
  // Every ancestor's quota applies too; the tightest one wins.
  while (true) {
    if (std::optional<std::string> text = ReadFile(cgroup_root + path + "/cpu.max")) {
      if (std::optional<int> cpus = CpusOfQuota(*text)) {
        limit = limit ? std::min(*limit, *cpus) : *cpus;
      }
    }
    if (path.empty() || path == "/") break;
    const size_t slash = path.rfind('/');
    path = slash == std::string::npos || slash == 0 ? "" : path.substr(0, slash);
  }
  return limit;
}

int UsableCpus() {
  int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t mask;
  if (sched_getaffinity(0, sizeof(mask), &mask) == 0) cpus = std::max(1, CPU_COUNT(&mask));
  if (std::optional<std::string> cgroup = ReadFile("/proc/self/cgroup")) {
    if (std::optional<int> limit = CgroupCpuLimit(*cgroup, "/sys/fs/cgroup")) {
      cpus = std::min(cpus, *limit);
    }
  }
  return std::max(1, cpus);
}

}  // namespace convserve
