// The `foxserve` command line.
#ifndef FOXSERVE_SERVER_SERVER_FLAGS_H_
#define FOXSERVE_SERVER_SERVER_FLAGS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/fox_server.h"

namespace foxserve {
namespace server {

// The model served when --model is not given: the one shipped in the repository.
std::string DefaultModelDir();

// Parses the flags; InvalidArgument naming the flag.
absl::StatusOr<ServerOptions> ParseServerFlags(const std::vector<std::string>& args);

extern const char kServerUsage[];

}  // namespace server
}  // namespace foxserve

#endif  // FOXSERVE_SERVER_SERVER_FLAGS_H_
