#include "server/fox_server.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/impl/server_builder_option.h"
#include "models/status_macros.h"
#include "server/log.h"

namespace foxserve {
namespace server {
namespace {

// Server reflection on or off for one ServerBuilder. Loading libgrpc++_reflection registers the
// reflection plugin for every ServerBuilder of the process (a static initializer calls
// InitProtoReflectionServerBuilderPlugin), so "off" has to remove it.
class ReflectionOption : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionOption(bool enabled) : enabled_(enabled) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    auto plugin = std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>();
    const std::string name = plugin->name();
    plugins->erase(std::remove_if(plugins->begin(), plugins->end(),
                                  [&](const auto& p) { return p->name() == name; }),
                   plugins->end());
    if (enabled_) plugins->push_back(std::move(plugin));
  }

 private:
  const bool enabled_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<FoxServer>> FoxServer::Start(const ServerOptions& options) {
  std::unique_ptr<FoxServer> s(new FoxServer());
  s->options_ = options;
  if (options.device != "cpu" && options.device != "cuda" && options.device != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("--device must be cpu, cuda or auto, got \"", options.device, "\""));
  }

  // - Security settings first: a mistake there should not cost a model load.
  FOXSERVE_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                            MakeServerCredentials(options.tls));
  if (!options.auth_token_file.empty()) {
    FOXSERVE_ASSIGN_OR_RETURN(s->auth_, BearerTokenAuth::FromFile(options.auth_token_file));
  }

  // - Model.
  LogInfo(absl::StrCat("loading model from ", options.model_dir));
  engine::BackendOptions backend_options;
  backend_options.device = options.device;
  backend_options.num_threads = options.threads;
  backend_options.kv_cache_bytes = options.kv_cache_bytes;
  backend_options.acp.enabled = options.acp;
  if (options.acp_log_eps) {
    backend_options.acp.log_eps = *options.acp_log_eps;
    backend_options.log_eps_from_config = false;
  }
  ProgressBar bar("loading weights");
  if (options.show_progress) backend_options.progress = [&bar](int64_t d, int64_t t) { bar.Update(d, t); };
  FOXSERVE_ASSIGN_OR_RETURN(s->backend_, engine::LoadBackend(options.model_dir, backend_options));
  auto tokenizer = models::LoadTokenizer(options.model_dir);
  if (tokenizer.ok()) {
    s->tokenizer_ = std::move(tokenizer).value();
  } else if (absl::IsNotFound(tokenizer.status())) {
    LogWarning("the model folder has no tokenizer: requests must send token ids");
  } else {
    return tokenizer.status();
  }
  const models::FoxConfig& config = s->backend_->config();

  // - Engine.
  engine::EngineOptions engine_options;
  engine_options.scheduler.max_num_seqs = options.max_num_seqs;
  engine_options.scheduler.max_batch_tokens = options.max_batch_tokens;
  engine_options.evict_dead_pages = options.kv_eviction;
  engine_options.sample_from_candidates = options.sample_from_candidates;
  engine_options.overlap_decode = options.overlap_decode;
  engine_options.max_model_len = options.max_model_len > 0 ? options.max_model_len
                                 : config.max_position_embeddings
                                     ? *config.max_position_embeddings
                                     : 4096;
  if (options.max_num_seqs < 1 || options.max_batch_tokens < 1 || options.max_queued < 1) {
    return absl::InvalidArgumentError(
        "--max-num-seqs, --max-batch-tokens and --max-queued must be at least 1");
  }
  s->metrics_ = std::make_unique<ServerMetrics>(config.num_hidden_layers, config.num_heads,
                                                options.metrics_per_head);
  s->engine_ = std::make_unique<engine::ThreadedEngine>(
      std::make_unique<engine::Engine>(s->backend_.get(), s->tokenizer_.get(), engine_options,
                                       s->metrics_.get()),
      options.max_queued);

  // - Metrics endpoint.
  if (options.metrics_port >= 0) {
    FOXSERVE_RETURN_IF_ERROR(s->metrics_->StartServing(
        absl::StrCat(options.host, ":", options.metrics_port), s->engine_.get()));
  }

  // - gRPC.
  v1::ModelInfo info;
  info.set_model_type(models::kFoxModelType);
  info.set_model_path(options.model_dir);
  info.set_vocab_size(static_cast<uint32_t>(config.vocab_size));
  info.set_hidden_size(static_cast<uint32_t>(config.hidden_size));
  info.set_num_layers(static_cast<uint32_t>(config.num_hidden_layers));
  info.set_num_heads(static_cast<uint32_t>(config.num_heads));
  info.set_head_dim(static_cast<uint32_t>(config.head_dim));
  info.set_max_model_len(static_cast<uint32_t>(engine_options.max_model_len));
  info.set_tokenizer(s->tokenizer_ ? s->tokenizer_->kind() : "none");
  for (int32_t id : config.eos_token_ids) info.add_eos_token_ids(id);
  if (s->tokenizer_ && s->tokenizer_->bos_id()) {
    info.set_bos_token_id(*s->tokenizer_->bos_id());
  } else if (config.bos_token_id) {
    info.set_bos_token_id(*config.bos_token_id);
  }
  info.set_backend(s->backend_->name());
  info.set_acp_enabled(s->backend_->acp().enabled);
  info.set_acp_log_eps(s->backend_->acp().log_eps);
  info.set_kv_page_size(static_cast<uint32_t>(s->backend_->page_size()));
  info.set_kv_pages_total(static_cast<uint64_t>(s->backend_->num_pages()));
  info.set_acp_eviction(s->backend_->acp().enabled && options.kv_eviction);
  info.set_acp_bound(config.qk_norm ? "qk_norm" : "weights");
  s->service_ = std::make_unique<GenerationService>(s->engine_.get(), s->tokenizer_.get(), info,
                                                    s->metrics_.get(), s->auth_.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.SetOption(std::make_unique<ReflectionOption>(options.reflection));
  builder.AddListeningPort(absl::StrCat(options.host, ":", options.port), credentials, &s->port_);
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_receive_bytes));
  // Request metadata (headers) beyond this is refused by the library (gRPC's default soft limit,
  // made explicit so that it is tested and documented).
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, kMaxMetadataBytes);
  // Find peers that vanished without closing their connection, so their streams are cancelled
  // and their KV pages freed.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  s->grpc_server_ = builder.BuildAndStart();
  if (s->grpc_server_ == nullptr || s->port_ <= 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", options.host, ":", options.port,
        options.tls.cert_file.empty()
            ? ""
            : " with TLS (check that --tls-key is the key of --tls-cert and both are PEM)"));
  }
  s->grpc_server_->GetHealthCheckService()->SetServingStatus(true);

  LogInfo(absl::StrFormat(
      "model: FoX%s, %d layers, %d heads of %d, vocab %d, tokenizer %s, backend %s",
      config.is_pro() ? " (Pro)" : "", config.num_hidden_layers, config.num_heads, config.head_dim,
      config.vocab_size, info.tokenizer(), info.backend()));
  LogInfo(absl::StrFormat(
      "engine: max_model_len %d, max_num_seqs %d, max_batch_tokens %d, KV pool %d pages of %d "
      "tokens (%.1f MiB), ACP %s (log eps %.3g, bound on |q||k| from %s), eviction of dead "
      "blocks %s",
      engine_options.max_model_len, options.max_num_seqs, options.max_batch_tokens,
      s->backend_->num_pages(), s->backend_->page_size(),
      static_cast<double>(s->backend_->num_pages() * s->backend_->page_bytes()) / (1 << 20),
      options.acp ? "on" : "off", s->backend_->acp().log_eps,
      config.qk_norm ? "the qk-norm weights" : "the projection weights' spectral norms",
      info.acp_eviction() ? "on" : "off"));
  if (options.reflection && s->auth_ != nullptr) {
    LogWarning("--reflection on: server reflection answers without the bearer token");
  }
  LogInfo(absl::StrCat("serving gRPC", options.tls.cert_file.empty() ? "" : " over TLS",
                       options.tls.client_ca_file.empty() ? "" : " (client certificates required)",
                       s->auth_ != nullptr ? ", bearer token required" : "", " on ",
                       options.host, ":", s->port_,
                       s->metrics_port() > 0 ? absl::StrCat(", metrics on ", options.host, ":",
                                                            s->metrics_port(), "/metrics")
                                             : ""));
  return s;
}

FoxServer::~FoxServer() { Shutdown(); }

bool FoxServer::Shutdown() {
  if (shut_down_) return true;
  shut_down_ = true;
  if (grpc_server_ == nullptr) {  // Start failed part way
    if (metrics_) metrics_->StopServing();
    return true;
  }
  grpc_server_->GetHealthCheckService()->SetServingStatus(false);
  LogInfo(absl::StrFormat("draining: up to %.1f s for %d requests in flight",
                          options_.drain_timeout_seconds, engine_->num_in_flight()));
  const auto deadline = engine::Clock::now() +
                        std::chrono::duration_cast<engine::Clock::duration>(
                            std::chrono::duration<double>(options_.drain_timeout_seconds));
  const bool drained = engine_->Drain(deadline);
  if (!drained) LogWarning("drain timeout: cancelled the requests still in flight");
  // Every generation has its final status queued; give the library a moment to send them, then
  // cancel whatever is left (seen: health checks made during the drain can hold Shutdown for
  // seconds otherwise).
  grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  grpc_server_->Wait();
  metrics_->StopServing();
  LogInfo("stopped");
  return drained;
}

}  // namespace server
}  // namespace foxserve
