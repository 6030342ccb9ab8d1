// flag_environment.h: server flags from the environment (CONVSERVE_<FLAG>),
// as containers and Kubernetes configure a process, with an explicit
// command-line flag winning over its variable.
#ifndef CONVSERVE_SERVER_FLAG_ENVIRONMENT_H_
#define CONVSERVE_SERVER_FLAG_ENVIRONMENT_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace convserve {

// Where a flag's value came from.
struct FlagOrigin {
  std::string name;   // "compute_threads"
  std::string value;  // as absl prints it
  std::string from;   // "--compute_threads" or "CONVSERVE_COMPUTE_THREADS"
};

// "CONVSERVE_COMPUTE_THREADS" for "compute_threads".
std::string EnvironmentVariableFor(absl::string_view flag_name);

// For every registered absl flag whose defining file satisfies `is_ours`
// and that `argv` does not set explicitly (as --name, --name=v, -name,
// --noname, ...), sets it from the environment variable
// EnvironmentVariableFor(name) when that is present. `getenv` reads the
// environment (std::getenv in production). Call before absl::ParseCommandLine,
// which then applies the explicit flags over these.
// INVALID_ARGUMENT naming the variable when a value does not parse.
absl::Status ApplyFlagEnvironment(int argc, const char* const* argv,
                                  const std::function<bool(absl::string_view file)>& is_ours,
                                  const std::function<const char*(const char*)>& getenv);

// After parsing: every flag of ours that the command line or the environment
// set, with its value and where it came from (the command line wins).
std::vector<FlagOrigin> ConfiguredFlags(int argc, const char* const* argv,
                                        const std::function<bool(absl::string_view file)>& is_ours,
                                        const std::function<const char*(const char*)>& getenv);

}  // namespace convserve

#endif  // CONVSERVE_SERVER_FLAG_ENVIRONMENT_H_
