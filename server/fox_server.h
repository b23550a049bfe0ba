// The whole server: model and backend, tokenizer, engine thread, gRPC service with health (and
// reflection when asked for), optional TLS / mTLS and bearer token, and the metrics endpoint. Used by the `foxserve` binary and by the tests, which
// run it in-process on 127.0.0.1.
#ifndef FOXSERVE_SERVER_FOX_SERVER_H_
#define FOXSERVE_SERVER_FOX_SERVER_H_

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend_factory.h"
#include "engine/threaded_engine.h"
#include "models/tokenizer.h"
#include "server/auth.h"
#include "server/generation_service.h"
#include "server/metrics.h"

namespace grpc {
class Server;
}

namespace foxserve {
namespace server {

// Request metadata (headers) larger than this is refused by gRPC.
inline constexpr int kMaxMetadataBytes = 8 << 10;

struct ServerOptions {
  std::string model_dir;
  std::string host = "0.0.0.0";
  int port = 50051;          // 0: any free port
  int metrics_port = 9400;   // 0: any free port; -1: no metrics endpoint
  std::string device = "auto";  // cpu | cuda | auto
  int threads = 0;           // CPU backend threads; 0: one per hardware thread
  int64_t max_num_seqs = 64;
  int64_t max_batch_tokens = 2048;
  int64_t max_queued = 256;
  std::optional<int64_t> kv_cache_bytes;  // unset: 1 GiB on the CPU, 8 GiB on a GPU
  bool kv_eviction = true;  // return ACP-dead KV blocks to the pool while requests run
  bool sample_from_candidates = true;  // EngineOptions::sample_from_candidates
  bool overlap_decode = true;          // EngineOptions::overlap_decode
  int64_t max_model_len = 0;  // 0: the config's max_position_embeddings, else 4096
  bool acp = true;
  std::optional<double> acp_log_eps;  // unset: the config's, else -10
  double drain_timeout_seconds = 30;
  bool reflection = false;  // exposes the whole schema: debugging only
  int64_t max_receive_bytes = 4 << 20;
  TlsOptions tls;               // empty cert_file: plaintext
  std::string auth_token_file;  // empty: no bearer-token check
  bool metrics_per_head = false;
  bool show_progress = false;  // a progress bar while loading weights
};

class FoxServer {
 public:
  // Loads the model and starts serving. Errors name what failed (model files, ports, options).
  static absl::StatusOr<std::unique_ptr<FoxServer>> Start(const ServerOptions& options);
  ~FoxServer();

  int port() const { return port_; }
  int metrics_port() const { return metrics_ ? metrics_->port() : -1; }
  const engine::ThreadedEngine& engine() const { return *engine_; }

  // Graceful stop: health turns NOT_SERVING and new requests get UNAVAILABLE at once; requests in
  // flight may finish until the drain timeout, then are cancelled with UNAVAILABLE; then the
  // listeners close. Returns whether everything finished on its own.
  bool Shutdown();

 private:
  FoxServer() = default;

  ServerOptions options_;
  std::unique_ptr<engine::ModelBackend> backend_;
  std::unique_ptr<models::Tokenizer> tokenizer_;
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<engine::ThreadedEngine> engine_;
  std::unique_ptr<BearerTokenAuth> auth_;
  std::unique_ptr<GenerationService> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int port_ = -1;
  bool shut_down_ = false;
};

}  // namespace server
}  // namespace foxserve

#endif  // FOXSERVE_SERVER_FOX_SERVER_H_
