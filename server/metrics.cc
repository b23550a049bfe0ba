#include "server/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <exception>
#include <thread>

#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace foxserve {
namespace server {
namespace {

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4,
          0.5,   0.75,   1.0,   2.5,  5.0,  7.5,  10,   20,  40,  80};
}

prometheus::MetricFamily Gauge(const std::string& name, const std::string& help, double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = prometheus::MetricType::Gauge;
  prometheus::ClientMetric metric;
  metric.gauge.value = value;
  family.metric.push_back(metric);
  return family;
}

const char* kPhases[] = {"prefill", "decode"};

}  // namespace

// Engine state read at scrape time from the ThreadedEngine's snapshots.
class ServerMetrics::EngineGauges : public prometheus::Collectable {
 public:
  explicit EngineGauges(const engine::ThreadedEngine* engine) : engine_(engine) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    const double used = static_cast<double>(engine_->kv_pages_used());
    const double total = static_cast<double>(engine_->kv_pages_total());
    return {
        Gauge("foxserve_queue_length", "Requests waiting for admission.", engine_->num_waiting()),
        Gauge("foxserve_running_sequences", "Sequences in the running batch.",
              engine_->num_running()),
        Gauge("foxserve_requests_in_flight", "Requests accepted and not finished.",
              engine_->num_in_flight()),
        Gauge("foxserve_kv_blocks_used", "KV cache pages (one head, 64 tokens) in use.", used),
        Gauge("foxserve_kv_blocks_free", "KV cache pages free.", total - used),
        Gauge("foxserve_kv_blocks_capacity", "KV cache pages in the pool.", total),
        Gauge("foxserve_kv_usage_ratio", "Fraction of KV cache pages in use.",
              total > 0 ? used / total : 0.0),
        Gauge("foxserve_kv_bytes_saved",
              "KV cache bytes that requests in flight would hold without ACP eviction.",
              static_cast<double>(engine_->kv_pages_evicted()) * engine_->kv_page_bytes()),
        Gauge("foxserve_engine_healthy", "1 while the engine can serve.", engine_->healthy()),
        Gauge("foxserve_accepting_requests", "0 once draining has begun.", engine_->accepting()),
    };
  }

 private:
  const engine::ThreadedEngine* engine_;
};

ServerMetrics::ServerMetrics(int64_t num_layers, int64_t num_heads, bool per_head)
    : num_layers_(num_layers),
      num_heads_(num_heads),
      per_head_(per_head),
      registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  requests_ = &BuildCounter()
                   .Name("foxserve_requests_total")
                   .Help("Generation requests by how they ended (reason) and their gRPC status.")
                   .Register(*registry_);
  auto& ttft = BuildHistogram()
                   .Name("foxserve_time_to_first_token_seconds")
                   .Help("From arrival to the first generated token.")
                   .Register(*registry_);
  ttft_ = &ttft.Add({}, LatencyBuckets());
  auto& itl = BuildHistogram()
                  .Name("foxserve_inter_token_latency_seconds")
                  .Help("Between consecutive generated tokens of a request.")
                  .Register(*registry_);
  itl_ = &itl.Add({}, LatencyBuckets());
  auto& duration = BuildHistogram()
                       .Name("foxserve_request_duration_seconds")
                       .Help("From arrival to the last output, for requests the engine accepted.")
                       .Register(*registry_);
  request_duration_ = &duration.Add({}, LatencyBuckets());
  auto& step = BuildHistogram()
                   .Name("foxserve_step_duration_seconds")
                   .Help("Wall time of one engine iteration (schedule, forward, sample).")
                   .Register(*registry_);
  step_duration_ = &step.Add({}, LatencyBuckets());
  prompt_tokens_ = &BuildCounter()
                        .Name("foxserve_prompt_tokens_total")
                        .Help("Prompt tokens of finished requests.")
                        .Register(*registry_)
                        .Add({});
  generated_tokens_ = &BuildCounter()
                           .Name("foxserve_generated_tokens_total")
                           .Help("Tokens generated.")
                           .Register(*registry_)
                           .Add({});
  preemptions_ = &BuildCounter()
                      .Name("foxserve_preemptions_total")
                      .Help("Sequences preempted (recomputed later) because the KV pool ran dry.")
                      .Register(*registry_)
                      .Add({});
  steps_ = &BuildCounter()
                .Name("foxserve_engine_steps_total")
                .Help("Engine iterations that ran a batch.")
                .Register(*registry_)
                .Add({});
  steps_overlapped_ = &BuildCounter()
                           .Name("foxserve_engine_steps_overlapped_total")
                           .Help("Engine iterations launched before the previous step's tokens "
                                 "reached the host (overlapped greedy decode).")
                           .Register(*registry_)
                           .Add({});
  evicted_ = &BuildCounter()
                  .Name("foxserve_acp_evicted_blocks_total")
                  .Help("KV pages freed by ACP eviction: blocks dead for every future query.")
                  .Register(*registry_)
                  .Add({});
  auto& candidates = BuildCounter()
                         .Name("foxserve_sampling_candidates_total")
                         .Help("Sampled tokens drawn from their row's top candidates (served) or, "
                               "when the filters reached past them, from the whole row (missed).")
                         .Register(*registry_);
  candidates_served_ = &candidates.Add({{"result", "served"}});
  candidates_missed_ = &candidates.Add({{"result", "missed"}});
  auto& computed = BuildCounter()
                       .Name("foxserve_acp_blocks_computed_total")
                       .Help("Attention (query block, key block) tiles computed, by layer and phase.")
                       .Register(*registry_);
  auto& skipped = BuildCounter()
                      .Name("foxserve_acp_blocks_skipped_total")
                      .Help("Attention tiles skipped by ACP, by layer and phase.")
                      .Register(*registry_);
  for (int p = 0; p < 2; ++p) {
    for (int64_t l = 0; l < num_layers; ++l) {
      const std::map<std::string, std::string> labels = {{"layer", absl::StrCat(l)},
                                                         {"phase", kPhases[p]}};
      acp_computed_.push_back(&computed.Add(labels));
      acp_skipped_.push_back(&skipped.Add(labels));
    }
  }
  auto& ratio = BuildGauge()
                    .Name("foxserve_acp_pruned_block_ratio")
                    .Help("Skipped / (computed + skipped) attention tiles since start, by layer.")
                    .Register(*registry_);
  for (int64_t l = 0; l < num_layers; ++l) acp_ratio_.push_back(&ratio.Add({{"layer", absl::StrCat(l)}}));
  acp_ratio_total_ = &BuildGauge()
                          .Name("foxserve_acp_pruned_block_ratio_overall")
                          .Help("Skipped / (computed + skipped) attention tiles since start.")
                          .Register(*registry_)
                          .Add({});
  if (per_head) {
    auto& head_computed = BuildCounter()
                              .Name("foxserve_acp_head_blocks_computed_total")
                              .Help("Attention tiles computed, by layer and head.")
                              .Register(*registry_);
    auto& head_skipped = BuildCounter()
                             .Name("foxserve_acp_head_blocks_skipped_total")
                             .Help("Attention tiles skipped by ACP, by layer and head.")
                             .Register(*registry_);
    for (int64_t l = 0; l < num_layers; ++l) {
      for (int64_t h = 0; h < num_heads; ++h) {
        const std::map<std::string, std::string> labels = {{"layer", absl::StrCat(l)},
                                                           {"head", absl::StrCat(h)}};
        acp_head_computed_.push_back(&head_computed.Add(labels));
        acp_head_skipped_.push_back(&head_skipped.Add(labels));
      }
    }
  }
}

ServerMetrics::~ServerMetrics() { StopServing(); }

absl::Status ServerMetrics::StartServing(const std::string& address,
                                         const engine::ThreadedEngine* engine) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
  engine_gauges_ = std::make_shared<EngineGauges>(engine);
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(engine_gauges_);
  return absl::OkStatus();
}

void ServerMetrics::StopServing() {
  if (exposer_ == nullptr) return;
  // civetweb's listener polls with a 2 s timeout before it notices the stop request; a
  // connection wakes it at once.
  const int port = this->port();
  std::thread wake([port] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    close(fd);
  });
  exposer_.reset();
  wake.join();
}

int ServerMetrics::port() const {
  if (exposer_ == nullptr) return -1;
  const auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? -1 : ports.front();
}

void ServerMetrics::CountRequest(const std::string& reason, const std::string& code) {
  requests_->Add({{"reason", reason}, {"code", code}}).Increment();
}

void ServerMetrics::OnStep(const engine::StepStats& stats) {
  if (stats.num_batched_tokens > 0) {
    steps_->Increment();
    if (stats.launched_ahead) steps_overlapped_->Increment();
    step_duration_->Observe(stats.seconds);
  }
  preemptions_->Increment(static_cast<double>(stats.num_preempted));
  evicted_->Increment(static_cast<double>(stats.num_evicted));
  if (stats.acp_computed.empty()) return;
  const int64_t L = num_layers_, H = num_heads_;
  for (int p = 0; p < 2; ++p) {
    for (int64_t l = 0; l < L; ++l) {
      uint64_t c = 0, s = 0;
      for (int64_t h = 0; h < H; ++h) {
        const size_t i = (p * L + l) * H + h;
        c += stats.acp_computed[i];
        s += stats.acp_skipped[i];
        if (per_head_) {
          acp_head_computed_[l * H + h]->Increment(static_cast<double>(stats.acp_computed[i]));
          acp_head_skipped_[l * H + h]->Increment(static_cast<double>(stats.acp_skipped[i]));
        }
      }
      acp_computed_[p * L + l]->Increment(static_cast<double>(c));
      acp_skipped_[p * L + l]->Increment(static_cast<double>(s));
    }
  }
  double all_c = 0, all_s = 0;
  for (int64_t l = 0; l < L; ++l) {
    const double c = acp_computed_[l]->Value() + acp_computed_[L + l]->Value();
    const double s = acp_skipped_[l]->Value() + acp_skipped_[L + l]->Value();
    acp_ratio_[l]->Set(c + s > 0 ? s / (c + s) : 0.0);
    all_c += c;
    all_s += s;
  }
  acp_ratio_total_->Set(all_c + all_s > 0 ? all_s / (all_c + all_s) : 0.0);
}

void ServerMetrics::OnFirstToken(double seconds) { ttft_->Observe(seconds); }
void ServerMetrics::OnCandidateSampling(int64_t served, int64_t missed) {
  candidates_served_->Increment(static_cast<double>(served));
  candidates_missed_->Increment(static_cast<double>(missed));
}
void ServerMetrics::OnInterTokenLatency(double seconds) { itl_->Observe(seconds); }

void ServerMetrics::OnRequestFinished(const engine::FinishedRequestStats& stats) {
  prompt_tokens_->Increment(static_cast<double>(stats.prompt_tokens));
  generated_tokens_->Increment(static_cast<double>(stats.generated_tokens));
  request_duration_->Observe(stats.seconds);
}

}  // namespace server
}  // namespace foxserve
