// `foxserve-cli generate --server HOST:PORT`: a gRPC client of a running foxserve.
#ifndef FOXSERVE_SERVER_CLI_REMOTE_H_
#define FOXSERVE_SERVER_CLI_REMOTE_H_

#include <ostream>
#include <string>

#include "foxserve/v1/generation.pb.h"

namespace foxserve {
namespace server {

struct RemoteOptions {
  std::string server;  // host:port
  bool stream = false;
  bool print_ids = false;
  double timeout_seconds = 600;
};

// Sends `request`, prints the text to `out` (as it arrives with stream) and, with print_ids, the
// token ids on the last line. On an RPC error prints "CODE_NAME: message" to `err`.
// Returns the process exit code: 0 on success, 1 on an RPC error.
int RemoteGenerate(const RemoteOptions& options, const v1::GenerateRequest& request,
                   std::ostream& out, std::ostream& err);

}  // namespace server
}  // namespace foxserve

#endif  // FOXSERVE_SERVER_CLI_REMOTE_H_
