// flag_environment.cc: CONVSERVE_<FLAG> environment variables applied to absl flags.
#include "server/flag_environment.h"

#include <algorithm>
#include <cctype>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace convserve {
namespace {

// Whether `argv` names flag `name` (absl accepts one or two dashes, a value
// after '=' or in the next argument, and --noname for booleans; parsing
// stops at "--").
bool SetOnCommandLine(int argc, const char* const* argv, absl::string_view name) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "-")) continue;
    absl::ConsumePrefix(&arg, "-");
    const absl::string_view key = arg.substr(0, arg.find('='));
    if (key == name || key == absl::StrCat("no", name)) return true;
  }
  return false;
}

template <typename Visit>
void ForEachOurFlag(const std::function<bool(absl::string_view)>& is_ours, Visit visit) {
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!flag->IsRetired() && is_ours(flag->Filename())) flags.push_back(flag);
  }
  // A stable order for messages and the start-up line.
  std::sort(flags.begin(), flags.end(),
            [](const absl::CommandLineFlag* a, const absl::CommandLineFlag* b) {
              return a->Name() < b->Name();
            });
  for (absl::CommandLineFlag* flag : flags) visit(*flag);
}

}  // namespace

std::string EnvironmentVariableFor(absl::string_view flag_name) {
  std::string variable = "CONVSERVE_";
  for (char c : flag_name) variable.push_back(static_cast<char>(std::toupper(c)));
  return variable;
}

absl::Status ApplyFlagEnvironment(int argc, const char* const* argv,
                                  const std::function<bool(absl::string_view file)>& is_ours,
                                  const std::function<const char*(const char*)>& getenv) {
  absl::Status status;
  ForEachOurFlag(is_ours, [&](absl::CommandLineFlag& flag) {
    if (!status.ok() || SetOnCommandLine(argc, argv, flag.Name())) return;
    const std::string variable = EnvironmentVariableFor(flag.Name());
    const char* value = getenv(variable.c_str());
    if (value == nullptr) return;
    std::string error;
    if (!flag.ParseFrom(value, &error)) {
      status = absl::InvalidArgumentError(
          absl::StrCat(variable, " (--", flag.Name(), "): cannot use '", value, "': ", error));
    }
  });
  return status;
}

std::vector<FlagOrigin> ConfiguredFlags(int argc, const char* const* argv,
                                        const std::function<bool(absl::string_view file)>& is_ours,
                                        const std::function<const char*(const char*)>& getenv) {
  std::vector<FlagOrigin> origins;
  ForEachOurFlag(is_ours, [&](const absl::CommandLineFlag& flag) {
    const std::string name(flag.Name());
    const std::string variable = EnvironmentVariableFor(name);
    std::string from;
    if (SetOnCommandLine(argc, argv, name)) {
      from = absl::StrCat("--", name);
    } else if (getenv(variable.c_str()) != nullptr) {
      from = variable;
    } else {
      return;
    }
    origins.push_back({name, flag.CurrentValue(), from});
  });
  return origins;
}

}  // namespace convserve
