// Runs one sequence straight through a backend, without the scheduler: the path of
// `foxserve-cli`, the golden tests and the benchmarks. Owns the sequence's state and pages.
#ifndef FOXSERVE_ENGINE_SEQUENCE_RUNNER_H_
#define FOXSERVE_ENGINE_SEQUENCE_RUNNER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kv_block_manager.h"
#include "engine/model_backend.h"
#include "engine/sampler.h"

namespace foxserve {
namespace engine {

class SequenceRunner {
 public:
  // Both pointers are borrowed and must outlive the runner.
  SequenceRunner(ModelBackend* backend, KvBlockManager* blocks, int64_t max_total_tokens);
  ~SequenceRunner();  // returns the pages
  SequenceRunner(const SequenceRunner&) = delete;
  SequenceRunner& operator=(const SequenceRunner&) = delete;

  // Appends `tokens`, in chunks of at most `chunk_size` tokens (0: one chunk). Returns the logits
  // [count, vocab] of every token when all_logits, else [1, vocab] of the last one.
  absl::StatusOr<std::vector<float>> Feed(absl::Span<const int32_t> tokens, bool all_logits,
                                          int64_t chunk_size = 0);

  const models::SequenceKvState& state() const { return *state_; }
  // Frees ACP-dead pages after every chunk, as the engine does (off by default).
  void set_evict_dead_pages(bool evict) { evict_dead_pages_ = evict; }
  int64_t num_evicted_pages() const { return state_->num_evicted_pages(); }
  const models::AcpCounters& acp_counters() const { return acp_counters_; }

 private:
  ModelBackend* backend_;
  KvBlockManager* blocks_;
  std::unique_ptr<models::SequenceKvState> state_;
  models::AcpCounters acp_counters_;
  bool evict_dead_pages_ = false;
};

struct GenerateOptions {
  int64_t max_new_tokens = 16;
  bool stop_at_eos = true;
  int64_t prefill_chunk = 0;  // 0: the whole prompt at once
};

// Prefills `prompt` and samples up to max_new_tokens tokens (stopping after an EOS of the
// config when stop_at_eos). Returns the new tokens.
absl::StatusOr<std::vector<int32_t>> GenerateTokens(SequenceRunner& runner,
                                                    absl::Span<const int32_t> prompt,
                                                    const GenerateOptions& options,
                                                    Sampler& sampler,
                                                    absl::Span<const int32_t> eos_ids);

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_SEQUENCE_RUNNER_H_
