// usable_cpus.h: how many CPUs this process may really use: its affinity
// mask and its cgroup v2 CPU quota, not the host's core count.
#ifndef CONVSERVE_SERVER_USABLE_CPUS_H_
#define CONVSERVE_SERVER_USABLE_CPUS_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace convserve {

// The CPUs a quota line of cgroup v2's cpu.max allows ("max 100000" -> none,
// "150000 100000" -> 2: a quota of 1.5 CPUs needs 2 threads to be used),
// or nullopt when there is no quota or the line does not parse.
std::optional<int> CpusOfQuota(absl::string_view cpu_max);

// The tightest quota on the way from the process's cgroup to the root:
// `proc_self_cgroup` is the text of /proc/self/cgroup (cgroup v2's line is
// "0::/path"), `cgroup_root` where the v2 hierarchy is mounted
// (/sys/fs/cgroup). nullopt without a quota (or without cgroup v2).
std::optional<int> CgroupCpuLimit(absl::string_view proc_self_cgroup,
                                  const std::string& cgroup_root);

// min(CPUs in the affinity mask, the cgroup quota), at least 1: the default
// of --compute_threads.
int UsableCpus();

}  // namespace convserve

#endif  // CONVSERVE_SERVER_USABLE_CPUS_H_
