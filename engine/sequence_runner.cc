#include "engine/sequence_runner.h"

#include <algorithm>

#include "models/status_macros.h"

namespace foxserve {
namespace engine {

SequenceRunner::SequenceRunner(ModelBackend* backend, KvBlockManager* blocks,
                               int64_t max_total_tokens)
    : backend_(backend),
      blocks_(blocks),
      state_(backend->NewSequenceState(max_total_tokens)),
      acp_counters_(backend->config().num_hidden_layers, backend->config().num_heads) {}

SequenceRunner::~SequenceRunner() { ReleasePages(*blocks_, *state_); }

absl::StatusOr<std::vector<float>> SequenceRunner::Feed(absl::Span<const int32_t> tokens,
                                                        bool all_logits, int64_t chunk_size) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (chunk_size <= 0) chunk_size = std::max<int64_t>(n, 1);
  std::vector<float> out;
  std::vector<float> chunk_logits;
  for (int64_t begin = 0; begin < n; begin += chunk_size) {
    const int64_t end = std::min(n, begin + chunk_size);
    FOXSERVE_RETURN_IF_ERROR(ReservePages(*blocks_, *state_, state_->num_tokens + (end - begin),
                                          backend_->page_size()));
    models::ForwardItem item;
    item.state = state_.get();
    item.tokens = tokens.subspan(begin, end - begin);
    item.all_logits = all_logits;
    item.acp_counters = &acp_counters_;
    FOXSERVE_RETURN_IF_ERROR(backend_->Forward({item}, &chunk_logits));
    if (evict_dead_pages_) EvictDeadPages(*blocks_, *state_);
    if (all_logits || end == n) out.insert(out.end(), chunk_logits.begin(), chunk_logits.end());
  }
  return out;
}

absl::StatusOr<std::vector<int32_t>> GenerateTokens(SequenceRunner& runner,
                                                    absl::Span<const int32_t> prompt,
                                                    const GenerateOptions& options,
                                                    Sampler& sampler,
                                                    absl::Span<const int32_t> eos_ids) {
  std::vector<int32_t> generated;
  if (options.max_new_tokens <= 0) return generated;
  FOXSERVE_ASSIGN_OR_RETURN(std::vector<float> logits,
                            runner.Feed(prompt, /*all_logits=*/false, options.prefill_chunk));
  for (;;) {
    const int32_t token = sampler.Sample(absl::MakeSpan(logits));
    generated.push_back(token);
    const bool eos = std::find(eos_ids.begin(), eos_ids.end(), token) != eos_ids.end();
    if ((options.stop_at_eos && eos) ||
        static_cast<int64_t>(generated.size()) >= options.max_new_tokens) {
      break;
    }
    FOXSERVE_ASSIGN_OR_RETURN(logits, runner.Feed({token}, /*all_logits=*/false));
  }
  return generated;
}

}  // namespace engine
}  // namespace foxserve
