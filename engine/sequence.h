// One request inside the engine: its tokens, KV state, sampler and output processing.
// Owned by the Engine and touched only by the engine thread.
#ifndef FOXSERVE_ENGINE_SEQUENCE_H_
#define FOXSERVE_ENGINE_SEQUENCE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "engine/request.h"
#include "engine/sampler.h"
#include "engine/stop_strings.h"
#include "models/incremental_decoder.h"
#include "models/kv_state.h"

namespace foxserve {
namespace engine {

enum class SequenceStatus { kWaiting, kRunning, kFinished };

struct Sequence {
  Sequence(uint64_t id, GenerationRequest request, std::shared_ptr<RequestSink> sink,
           std::unique_ptr<models::SequenceKvState> kv,
           std::unique_ptr<models::IncrementalDecoder> decoder, int64_t num_layers,
           int64_t num_heads);

  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
  int64_t num_computed() const { return kv->num_tokens; }
  // Tokens whose K/V are not in the cache yet: the prompt (or, after a preemption, prompt and
  // generated tokens) during prefill, then the last sampled token.
  int64_t num_to_compute() const { return num_tokens() - num_computed(); }
  int64_t num_generated() const { return num_tokens() - num_prompt_tokens; }

  const uint64_t id;  // engine-wide, in arrival order
  GenerationRequest request;
  std::shared_ptr<RequestSink> sink;
  std::vector<int32_t> tokens;  // prompt, then generated
  const int64_t num_prompt_tokens;
  std::unique_ptr<models::SequenceKvState> kv;
  Sampler sampler;
  std::unique_ptr<models::IncrementalDecoder> decoder;  // null without a tokenizer
  StopStringMatcher stop_strings;
  SequenceStatus status = SequenceStatus::kWaiting;
  models::AcpCounters acp;  // this request's ACP blocks
  int64_t evicted_pages = 0;  // pages of kv freed by ACP eviction (0 again after preemption)
  // Tokens to sample from whole rows before trying top candidates again: set when a request's
  // filters reached past its candidates (a flat distribution stays flat for a while, and a miss
  // costs a second copy of the row).
  int64_t rows_before_candidates = 0;
  int64_t num_preemptions = 0;
  // Launched steps holding this sequence that have not finished (two under overlapped decode).
  int32_t steps_in_flight = 0;
  std::optional<Clock::time_point> first_token_time;
  Clock::time_point last_token_time;
};

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_SEQUENCE_H_
