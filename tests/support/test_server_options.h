// The in-process server the tests start: loopback, ephemeral gRPC and metrics ports, two engine
// threads, a small KV pool and batch. Tests change what their case needs on the copy they get.
#ifndef FOXSERVE_TESTS_SUPPORT_TEST_SERVER_OPTIONS_H_
#define FOXSERVE_TESTS_SUPPORT_TEST_SERVER_OPTIONS_H_

#include <string>

#include "server/fox_server.h"

namespace foxserve {
namespace testing {

inline server::ServerOptions TestServerOptions(const std::string& model_dir) {
  server::ServerOptions o;
  o.model_dir = model_dir;
  o.host = "127.0.0.1";
  o.port = 0;
  o.metrics_port = 0;
  o.threads = 2;
  o.max_num_seqs = 16;
  o.max_batch_tokens = 512;
  o.kv_cache_bytes = 64 << 20;
  o.max_model_len = 1024;
  o.drain_timeout_seconds = 5;
  return o;
}

}  // namespace testing
}  // namespace foxserve

#endif  // FOXSERVE_TESTS_SUPPORT_TEST_SERVER_OPTIONS_H_
