// foxserve: serves a FoX model over gRPC. See server/server_flags.cc for the flags.
//
// SIGTERM or SIGINT drains: health turns NOT_SERVING, new requests get UNAVAILABLE, requests in
// flight get up to --drain-timeout to finish, then the process exits 0.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/fox_server.h"
#include "server/log.h"
#include "server/server_flags.h"

int main(int argc, char** argv) {
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
