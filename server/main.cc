// foxserve: serves a FoX model over gRPC. See server/server_flags.cc for the flags.
//
// SIGTERM or SIGINT drains: health turns NOT_SERVING, new requests get UNAVAILABLE, requests in
// flight get up to --drain-timeout to finish, then the process exits 0.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/stubs/logging.h"
#include "server/fox_server.h"
#include "server/log.h"
#include "server/server_flags.h"

namespace {

// protobuf logs one line per refused message (a string field with invalid UTF-8, say): a client
// could fill the log at will. Forward at most one line per 10 s, saying how many were dropped.
void RateLimitedProtobufLog(google::protobuf::LogLevel level, const char* file, int line,
                            const std::string& message) {
  static std::mutex mu;
  static std::chrono::steady_clock::time_point last{};
  static int64_t dropped = 0;
  std::lock_guard<std::mutex> lock(mu);
  const auto now = std::chrono::steady_clock::now();
  if (last != std::chrono::steady_clock::time_point{} && now - last < std::chrono::seconds(10)) {
    ++dropped;
    return;
  }
  last = now;
  std::string text = absl::StrCat("protobuf: ", message);
  if (dropped > 0) absl::StrAppend(&text, " (", dropped, " protobuf messages dropped before this)");
  dropped = 0;
  if (level >= google::protobuf::LOGLEVEL_ERROR) {
    foxserve::server::LogError(text);
  } else {
    foxserve::server::LogWarning(text);
  }
}

}  // namespace

int main(int argc, char** argv) {
  google::protobuf::SetLogHandler(&RateLimitedProtobufLog);
  using namespace foxserve::server;
  const std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::fputs(kServerUsage, stdout);
      return 0;
    }
  }
  auto options = ParseServerFlags(args);
  if (!options.ok()) {
    std::fprintf(stderr, "foxserve: %s\n%s", std::string(options.status().message()).c_str(),
                 kServerUsage);
    return 2;
  }
  options->show_progress = isatty(STDERR_FILENO);  // a progress bar only on a terminal
  // Signals are taken by sigwait below: block them before any thread starts so that every thread
  // inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = FoxServer::Start(*options);
  if (!server.ok()) {
    LogError(absl::StrCat("cannot start: ", server.status().ToString()));
    return 1;
  }
  int received = 0;
  sigwait(&signals, &received);
  LogInfo(absl::StrCat("received ", received == SIGTERM ? "SIGTERM" : "SIGINT"));
  (*server)->Shutdown();
  return 0;
}
