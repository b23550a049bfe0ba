// Runs a command through the shell and captures what it prints.
#ifndef FOXSERVE_TESTS_SUPPORT_SUBPROCESS_H_
#define FOXSERVE_TESTS_SUPPORT_SUBPROCESS_H_

#include <string>

namespace foxserve {
namespace testing {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout, and stderr when merged
};

// Runs `command` with /bin/sh; stderr is merged into output when merge_stderr.
CommandResult RunCommand(const std::string& command, bool merge_stderr = true);

// Quotes `arg` for /bin/sh.
std::string ShellQuote(const std::string& arg);

}  // namespace testing
}  // namespace foxserve

#endif  // FOXSERVE_TESTS_SUPPORT_SUBPROCESS_H_
