// Prometheus metrics of the server, all named foxserve_*, served on /metrics by prometheus-cpp.
// Label values come from small fixed sets (finish reasons, status codes, phases, layer numbers;
// heads only with per_head): never from request data.
//
// Thread-safety: all methods are thread-safe (prometheus-cpp metrics are).
#ifndef FOXSERVE_SERVER_METRICS_H_
#define FOXSERVE_SERVER_METRICS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/engine_observer.h"
#include "engine/threaded_engine.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace foxserve {
namespace server {

class ServerMetrics : public engine::EngineObserver {
 public:
  ServerMetrics(int64_t num_layers, int64_t num_heads, bool per_head);
  ~ServerMetrics() override;

  // Serves /metrics on `address` ("127.0.0.1:9400"); call once. The engine gauges (queue,
  // running, KV pages, health) are read from `engine` at scrape time, so they are exact even when
  // no step runs. `engine` must outlive the exposer (StopServing).
  absl::Status StartServing(const std::string& address, const engine::ThreadedEngine* engine);
  void StopServing();
  // The port actually bound (useful with port 0), or -1.
  int port() const;

  // A request that ended: `reason` is a FinishReason name or "rejected"; `code` a gRPC code name.
  void CountRequest(const std::string& reason, const std::string& code);

  // EngineObserver.
  void OnStep(const engine::StepStats& stats) override;
  void OnFirstToken(double seconds) override;
  void OnInterTokenLatency(double seconds) override;
  void OnRequestFinished(const engine::FinishedRequestStats& stats) override;
  void OnCandidateSampling(int64_t served, int64_t missed) override;

 private:
  class EngineGauges;

  const int64_t num_layers_;
  const int64_t num_heads_;
  const bool per_head_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<EngineGauges> engine_gauges_;

  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Histogram* ttft_;
  prometheus::Histogram* itl_;
  prometheus::Histogram* request_duration_;
  prometheus::Histogram* step_duration_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generated_tokens_;
  prometheus::Counter* preemptions_;
  prometheus::Counter* steps_;
  prometheus::Counter* steps_overlapped_;
  prometheus::Counter* evicted_;
  prometheus::Counter* candidates_served_;
  prometheus::Counter* candidates_missed_;
  // [phase][layer]
  std::vector<prometheus::Counter*> acp_computed_;
  std::vector<prometheus::Counter*> acp_skipped_;
  std::vector<prometheus::Gauge*> acp_ratio_;  // [layer], cumulative
  prometheus::Gauge* acp_ratio_total_;
  // [layer][head], with per_head only.
  std::vector<prometheus::Counter*> acp_head_computed_;
  std::vector<prometheus::Counter*> acp_head_skipped_;
};

}  // namespace server
}  // namespace foxserve

#endif  // FOXSERVE_SERVER_METRICS_H_
