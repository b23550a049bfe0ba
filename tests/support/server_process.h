// The foxserve binary as a child process on 127.0.0.1, for tests that need a real process:
// signals, crashes and restarts, its memory and file descriptors.
#ifndef FOXSERVE_TESTS_SUPPORT_SERVER_PROCESS_H_
#define FOXSERVE_TESTS_SUPPORT_SERVER_PROCESS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "tests/support/subprocess.h"

namespace foxserve {
namespace testing {

class ServerProcess {
 public:
  // Runs `binary` with `args` plus --host 127.0.0.1 --port P --metrics-port M (fresh ports),
  // output to `log_path`. Ready() waits for it to serve.
  ServerProcess(const std::string& binary, const std::vector<std::string>& args,
                const std::string& log_path, int port = 0);

  // Waits until the log says it serves and health answers SERVING; false after `seconds`.
  bool Ready(double seconds = 60);
  // A new plaintext channel to it.
  std::shared_ptr<grpc::Channel> Channel() const;

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  int pid() const { return child_->pid(); }
  ChildProcess& child() { return *child_; }
  std::string Log() const;

  // /metrics as "name{labels}" -> value; empty on failure (with a test failure).
  std::map<std::string, double> Scrape() const;
  // Resident set size and open descriptors of the process, from /proc; -1 when gone.
  int64_t RssBytes() const;
  int FdCount() const;

 private:
  std::string log_path_;
  int port_ = 0;
  int metrics_port_ = 0;
  std::unique_ptr<ChildProcess> child_;
};

// The sum of every sample of a metric family whose name is `name` (all label sets).
double SumFamily(const std::map<std::string, double>& samples, const std::string& name);

}  // namespace testing
}  // namespace foxserve

#endif  // FOXSERVE_TESTS_SUPPORT_SERVER_PROCESS_H_
