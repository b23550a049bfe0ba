// Runs a command through the shell and captures what it prints.
#ifndef FOXSERVE_TESTS_SUPPORT_SUBPROCESS_H_
#define FOXSERVE_TESTS_SUPPORT_SUBPROCESS_H_

#include <string>
#include <vector>

namespace foxserve {
namespace testing {

struct CommandResult {
  int exit_code = -1;  // -1 when the command could not be started
  std::string output;  // stdout, and stderr when merged (else stderr goes to the test's stderr)
};

// Runs `command` with /bin/sh.
CommandResult RunCommand(const std::string& command, bool merge_stderr = false);

// Quotes `arg` for /bin/sh.
std::string ShellQuote(const std::string& arg);

}  // namespace testing
}  // namespace foxserve


namespace foxserve {
namespace testing {

// A child process started with fork/exec, its stdout and stderr going to `log_path`. Killed
// (SIGKILL) on destruction if still running.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv, const std::string& log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool started() const { return pid_ > 0; }
  // The process id while it runs (-1 once waited for).
  int pid() const { return pid_; }
  void Signal(int signal);
  // The exit code (128 + signal when killed by one), or -1 if it is still running at the timeout.
  int Wait(double timeout_seconds);

 private:
  int pid_ = -1;
  int status_ = -1;
};

}  // namespace testing
}  // namespace foxserve

#endif  // FOXSERVE_TESTS_SUPPORT_SUBPROCESS_H_
