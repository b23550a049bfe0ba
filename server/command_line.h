// A small `--flag value` / `--flag=value` parser for the foxserve binaries. Unlike a global flag
// registry it keeps no process-wide state, and every command states the flags it accepts, so a
// misspelled flag is an error rather than silently ignored.
#ifndef FOXSERVE_SERVER_COMMAND_LINE_H_
#define FOXSERVE_SERVER_COMMAND_LINE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace foxserve {
namespace server {

class CommandLine {
 public:
  // Parses args (without the program and command names). `known` lists accepted flag names
  // (without "--"); `switches` those that take no value. Anything else is InvalidArgument.
  static absl::StatusOr<CommandLine> Parse(const std::vector<std::string>& args,
                                           const std::set<std::string>& known,
                                           const std::set<std::string>& switches = {});

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> Get(const std::string& name) const;
  std::string GetOr(const std::string& name, const std::string& fallback) const;
  absl::StatusOr<std::string> Required(const std::string& name) const;
  // Typed accessors: InvalidArgument naming the flag when the text does not parse or falls
  // outside [min, max].
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t fallback, int64_t min,
                              int64_t max) const;
  absl::StatusOr<double> Double(const std::string& name, double fallback, double min,
                                double max) const;
  // "on"/"off"/"true"/"false"/"1"/"0"; a switch given without a value is true.
  absl::StatusOr<bool> Bool(const std::string& name, bool fallback) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace server
}  // namespace foxserve

#endif  // FOXSERVE_SERVER_COMMAND_LINE_H_
