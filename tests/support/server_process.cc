#include "tests/support/server_process.h"

#include <dirent.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/support/grpc_test_util.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {

ServerProcess::ServerProcess(const std::string& binary, const std::vector<std::string>& args,
                             const std::string& log_path, int port)
    : log_path_(log_path), port_(port > 0 ? port : PickFreePort()), metrics_port_(PickFreePort()) {
  std::vector<std::string> argv = {binary, "--host", "127.0.0.1", "--port", std::to_string(port_),
                                   "--metrics-port", std::to_string(metrics_port_)};
  argv.insert(argv.end(), args.begin(), args.end());
  WriteFileOrDie(log_path_, "");
  child_ = std::make_unique<ChildProcess>(argv, log_path_);
}

std::string ServerProcess::Log() const {
  std::ifstream in(log_path_, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool ServerProcess::Ready(double seconds) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  // Connect once the server says it listens: an early failed connection would put the channel
  // into reconnect backoff.
  while (Log().find("serving gRPC") == std::string::npos) {
    if (std::chrono::steady_clock::now() > deadline || child_->Wait(0) >= 0) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto channel = Channel();
  while (std::chrono::steady_clock::now() < deadline) {
    auto h = HealthCheck(channel);
    if (h.ok() && *h == 1) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::shared_ptr<grpc::Channel> ServerProcess::Channel() const {
  return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials());
}

std::map<std::string, double> ServerProcess::Scrape() const { return ScrapeMetrics(metrics_port_); }

int64_t ServerProcess::RssBytes() const {
  std::ifstream in(absl::StrCat("/proc/", child_->pid(), "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "NNN kB"
  }
  return -1;
}

int ServerProcess::FdCount() const {
  DIR* dir = opendir(absl::StrCat("/proc/", child_->pid(), "/fd").c_str());
  if (dir == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n;
}

double SumFamily(const std::map<std::string, double>& samples, const std::string& name) {
  double sum = 0;
  for (const auto& [key, value] : samples) {
    if (key == name || key.rfind(name + "{", 0) == 0) sum += value;
  }
  return sum;
}

}  // namespace testing
}  // namespace foxserve
