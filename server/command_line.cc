#include "server/command_line.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace foxserve {
namespace server {

absl::StatusOr<CommandLine> CommandLine::Parse(const std::vector<std::string>& args,
                                               const std::set<std::string>& known,
                                               const std::set<std::string>& switches) {
  CommandLine cl;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!absl::StartsWith(arg, "--") || arg.size() == 2) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", arg, "\""));
    }
    std::string name = arg.substr(2), value;
    const size_t eq = name.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (known.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (!inline_value) {
      if (switches.count(name) > 0) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
    }
    cl.values_[name] = value;
  }
  return cl;
}

std::optional<std::string> CommandLine::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string CommandLine::GetOr(const std::string& name, const std::string& fallback) const {
  auto v = Get(name);
  return v ? *v : fallback;
}

absl::StatusOr<std::string> CommandLine::Required(const std::string& name) const {
  auto v = Get(name);
  if (!v) return absl::InvalidArgumentError(absl::StrCat("missing required flag --", name));
  return *v;
}

absl::StatusOr<int64_t> CommandLine::Int(const std::string& name, int64_t fallback, int64_t min,
                                         int64_t max) const {
  auto v = Get(name);
  if (!v) return fallback;
  int64_t out;
  if (!absl::SimpleAtoi(*v, &out) || out < min || out > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " must be an integer in [", min, ", ", max, "], got \"", *v, "\""));
  }
  return out;
}

absl::StatusOr<double> CommandLine::Double(const std::string& name, double fallback, double min,
                                           double max) const {
  auto v = Get(name);
  if (!v) return fallback;
  double out;
  if (!absl::SimpleAtod(*v, &out) || !(out >= min && out <= max)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " must be a number in [", min, ", ", max, "], got \"", *v, "\""));
  }
  return out;
}

absl::StatusOr<bool> CommandLine::Bool(const std::string& name, bool fallback) const {
  auto v = Get(name);
  if (!v) return fallback;
  if (*v == "on" || *v == "true" || *v == "1") return true;
  if (*v == "off" || *v == "false" || *v == "0") return false;
  return absl::InvalidArgumentError(absl::StrCat("--", name, " must be on or off, got \"", *v, "\""));
}

}  // namespace server
}  // namespace foxserve
