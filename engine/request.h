// What a client asks the engine for, and what the engine streams back.
#ifndef FOXSERVE_ENGINE_REQUEST_H_
#define FOXSERVE_ENGINE_REQUEST_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/sampler.h"

namespace foxserve {
namespace engine {

using Clock = std::chrono::steady_clock;

struct GenerationRequest {
  std::string request_id;       // the client's, or one the server made up
  std::vector<int32_t> prompt;  // token ids, BOS included when the tokenizer wants it
  int64_t max_new_tokens = 16;
  SamplingParams sampling;
  std::vector<std::string> stop;         // stop strings; the matched text is not returned
  std::vector<int32_t> stop_token_ids;   // the token is returned as an id, its text is not
  bool ignore_eos = false;
  int32_t logprobs = -1;  // -1: none; n >= 0: the chosen token's log probability and the top n
  Clock::time_point arrival = Clock::now();
};

enum class FinishReason { kNone, kLength, kStop, kEos, kCancelled, kError };

const char* FinishReasonName(FinishReason reason);  // "length", "stop", ...

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
};

struct GeneratedToken {
  int32_t id = 0;
  bool has_logprobs = false;
  // Set when the request asked for log probabilities: the chosen token's under the model's raw
  // distribution (before penalties and temperature), then the `logprobs` most likely ones.
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;
};

// A piece of a request's output. Outputs arrive in order; the last has finished() true.
struct RequestOutput {
  std::vector<GeneratedToken> tokens;  // tokens produced since the previous output
  std::string text;                    // text made stable since the previous output (UTF-8)
  FinishReason finish_reason = FinishReason::kNone;
  absl::Status status;  // not OK only with kError (or kCancelled when the server shuts down)
  // Totals, valid on the last output.
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  uint64_t acp_blocks_computed = 0;
  uint64_t acp_blocks_skipped = 0;

  bool finished() const { return finish_reason != FinishReason::kNone; }
};

// Receives a request's outputs. The Engine calls it on its own thread; behind a ThreadedEngine it
// runs on the output dispatcher's thread, one call at a time, in order. Implementations must not
// block (the gRPC reactor queues the output and returns).
class RequestSink {
 public:
  virtual ~RequestSink() = default;
  virtual void OnOutput(RequestOutput output) = 0;
};

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_REQUEST_H_
