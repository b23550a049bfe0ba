#include "server/server_flags.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "models/status_macros.h"
#include "server/command_line.h"

namespace foxserve {
namespace server {

const char kServerUsage[] =
    "usage: foxserve [flags]\n"
    "  --model DIR              model folder (default: the shipped model)\n"
    "  --host ADDR              listen address (default 0.0.0.0)\n"
    "  --port N                 gRPC port (default 50051; 0: any free port)\n"
    "  --metrics-port N         Prometheus /metrics port (default 9400; -1: off)\n"
    "  --device cpu|cuda|auto   (default auto: CUDA when available, else CPU)\n"
    "  --threads N              CPU backend threads (default: all)\n"
    "  --max-num-seqs N         sequences in the running batch (default 64)\n"
    "  --max-batch-tokens N     tokens per engine step (default 2048)\n"
    "  --max-queued N           requests waiting before RESOURCE_EXHAUSTED (default 256)\n"
    "  --kv-cache-bytes N       KV cache size (default 1 GiB on the CPU, 8 GiB on a GPU)\n"
    "  --kv-eviction on|off     free KV blocks ACP proved dead while requests run (default on)\n"
    "  --sample-from-candidates on|off  top-k/top-p/min-p requests draw from the row's top\n"
    "                           candidates found on the device (default on; same tokens)\n"
    "  --overlap-decode on|off  launch a greedy decode step before the previous one's tokens\n"
    "                           reach the host (default on; GPU only; same tokens)\n"
    "  --max-model-len N        prompt + generated tokens (default: the config's)\n"
    "  --acp-log-eps X|off      ACP tolerance log(eps) (default: the config's, else -10)\n"
    "  --drain-timeout S        seconds to finish requests on SIGTERM (default 30)\n"
    "  --reflection on|off      gRPC server reflection (default off: it exposes the schema)\n"
    "  --max-receive-bytes N    largest request message (default 4194304)\n"
    "  --metrics-per-head on|off  per-head ACP series (default off)\n"
    "  --tls-cert FILE          PEM certificate chain: serve gRPC over TLS (with --tls-key)\n"
    "  --tls-key FILE           PEM private key of --tls-cert\n"
    "  --tls-client-ca FILE     PEM CA bundle: require client certificates it signed (mTLS)\n"
    "  --auth-token-file FILE   require 'authorization: Bearer <the file's token>' on\n"
    "                           foxserve.v1 calls (health stays open)\n";

std::string DefaultModelDir() { return FOXSERVE_DEFAULT_MODEL_DIR; }

absl::StatusOr<ServerOptions> ParseServerFlags(const std::vector<std::string>& args) {
  FOXSERVE_ASSIGN_OR_RETURN(
      CommandLine cl,
      CommandLine::Parse(args, {"model", "host", "port", "metrics-port", "device", "threads",
                                "max-num-seqs", "max-batch-tokens", "max-queued", "kv-cache-bytes",
                                "max-model-len", "acp-log-eps", "drain-timeout", "reflection",
                                "max-receive-bytes", "metrics-per-head", "kv-eviction",
                                "sample-from-candidates", "overlap-decode", "tls-cert", "tls-key",
                                "tls-client-ca", "auth-token-file"}));
  ServerOptions o;
  o.model_dir = cl.GetOr("model", DefaultModelDir());
  o.host = cl.GetOr("host", o.host);
  FOXSERVE_ASSIGN_OR_RETURN(int64_t port, cl.Int("port", o.port, 0, 65535));
  o.port = static_cast<int>(port);
  FOXSERVE_ASSIGN_OR_RETURN(int64_t metrics_port, cl.Int("metrics-port", o.metrics_port, -1, 65535));
  o.metrics_port = static_cast<int>(metrics_port);
  o.device = cl.GetOr("device", o.device);
  FOXSERVE_ASSIGN_OR_RETURN(int64_t threads, cl.Int("threads", 0, 0, 1024));
  o.threads = static_cast<int>(threads);
  FOXSERVE_ASSIGN_OR_RETURN(o.max_num_seqs, cl.Int("max-num-seqs", o.max_num_seqs, 1, 1 << 16));
  FOXSERVE_ASSIGN_OR_RETURN(o.max_batch_tokens,
                            cl.Int("max-batch-tokens", o.max_batch_tokens, 1, 1 << 24));
  FOXSERVE_ASSIGN_OR_RETURN(o.max_queued, cl.Int("max-queued", o.max_queued, 1, 1 << 24));
  if (cl.Has("kv-cache-bytes")) {
    FOXSERVE_ASSIGN_OR_RETURN(o.kv_cache_bytes,
                              cl.Int("kv-cache-bytes", 0, 1 << 20, int64_t{1} << 42));
  }
  FOXSERVE_ASSIGN_OR_RETURN(o.kv_eviction, cl.Bool("kv-eviction", true));
  FOXSERVE_ASSIGN_OR_RETURN(o.sample_from_candidates, cl.Bool("sample-from-candidates", true));
  FOXSERVE_ASSIGN_OR_RETURN(o.overlap_decode, cl.Bool("overlap-decode", true));
  FOXSERVE_ASSIGN_OR_RETURN(o.max_model_len, cl.Int("max-model-len", 0, 0, int64_t{1} << 24));
  if (cl.GetOr("acp-log-eps", "") == "off") {
    o.acp = false;
  } else if (cl.Has("acp-log-eps")) {
    FOXSERVE_ASSIGN_OR_RETURN(double log_eps, cl.Double("acp-log-eps", -10, -1e6, -1e-6));
    o.acp_log_eps = log_eps;
  }
  FOXSERVE_ASSIGN_OR_RETURN(o.drain_timeout_seconds, cl.Double("drain-timeout", 30, 0, 86400));
  FOXSERVE_ASSIGN_OR_RETURN(o.reflection, cl.Bool("reflection", false));
  FOXSERVE_ASSIGN_OR_RETURN(o.max_receive_bytes,
                            cl.Int("max-receive-bytes", o.max_receive_bytes, 1024, 1 << 30));
  FOXSERVE_ASSIGN_OR_RETURN(o.metrics_per_head, cl.Bool("metrics-per-head", false));
  o.tls.cert_file = cl.GetOr("tls-cert", "");
  o.tls.key_file = cl.GetOr("tls-key", "");
  o.tls.client_ca_file = cl.GetOr("tls-client-ca", "");
  o.auth_token_file = cl.GetOr("auth-token-file", "");
  return o;
}

}  // namespace server
}  // namespace foxserve
