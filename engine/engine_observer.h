// Hooks through which the engine reports what the metrics need, without depending on a metrics
// library. Called on the engine thread; implementations must be quick.
#ifndef FOXSERVE_ENGINE_ENGINE_OBSERVER_H_
#define FOXSERVE_ENGINE_ENGINE_OBSERVER_H_

#include <cstdint>
#include <vector>

#include "engine/request.h"

namespace foxserve {
namespace engine {

enum class AcpPhase { kPrefill = 0, kDecode = 1 };

struct StepStats {
  int64_t num_running = 0;
  int64_t num_waiting = 0;
  int64_t num_batched_tokens = 0;
  int64_t num_prefill_tokens = 0;
  int64_t num_decode_tokens = 0;
  int64_t num_preempted = 0;
  int64_t kv_pages_used = 0;
  int64_t kv_pages_total = 0;
  int64_t num_evicted = 0;  // pages ACP eviction freed in this step
  double seconds = 0;  // wall time of the step
  // Launched behind a step in flight, from its device-side tokens (overlapped decode).
  bool launched_ahead = false;
  // ACP blocks of this step: [phase][layer][head], phase as AcpPhase.
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  std::vector<uint64_t> acp_computed;
  std::vector<uint64_t> acp_skipped;
};

struct FinishedRequestStats {
  FinishReason reason = FinishReason::kNone;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double seconds = 0;  // arrival to finish
};

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnStep(const StepStats& stats) {}
  virtual void OnFirstToken(double seconds_since_arrival) {}
  virtual void OnInterTokenLatency(double seconds) {}
  // After a step's tokens are chosen, before they go out: tokens drawn from the rows' top
  // candidates (served) and those whose filters reached past them (missed: drawn from the row).
  virtual void OnCandidateSampling(int64_t served, int64_t missed) {}
  virtual void OnRequestFinished(const FinishedRequestStats& stats) {}
};

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_ENGINE_OBSERVER_H_
