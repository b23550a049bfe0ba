// Token sampling on the CPU: greedy, or temperature with top-k, top-p, min-p and the repetition,
// presence and frequency penalties. One Sampler per request holds its random state, so a seeded
// request draws the same tokens whether it runs alone or in a batch.
#ifndef FOXSERVE_ENGINE_SAMPLER_H_
#define FOXSERVE_ENGINE_SAMPLER_H_

#include <cstdint>
#include <optional>
#include <random>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/cpu/top_candidates.h"

namespace foxserve {
namespace engine {

struct SamplingParams {
  float temperature = 0.0f;         // 0: greedy; else in (0, 100]
  int32_t top_k = 0;                // 0: off
  float top_p = 1.0f;               // (0, 1]
  float min_p = 0.0f;               // [0, 1]
  float repetition_penalty = 1.0f;  // (0, 10]; 1: off. Divides positive logits of seen tokens.
  float presence_penalty = 0.0f;    // [-2, 2], subtracted once per generated token kind
  float frequency_penalty = 0.0f;   // [-2, 2], subtracted per generated occurrence
  std::optional<uint64_t> seed;     // unset: drawn from the system

  bool greedy() const { return temperature == 0.0f; }
};

// InvalidArgument naming the offending field ("temperature", "top_p", ...).
absl::Status ValidateSamplingParams(const SamplingParams& params);

class Sampler {
 public:
  // `prompt` feeds the repetition penalty.
  Sampler(const SamplingParams& params, absl::Span<const int32_t> prompt);

  // Picks the next token from `logits` [vocab] (modified in place by the penalties) and records
  // it as generated. Filters apply in this order: penalties, temperature, top-k, top-p, min-p.
  int32_t Sample(absl::Span<float> logits);

  // Picks the next token from a row's top candidates (kernels::TopCandidates, computed at this
  // request's temperature) exactly as Sample would from the whole row, or nullopt, drawing no
  // random number, when the filters reach past the candidates (the caller then calls Sample
  // with the row). The candidates must be complete and finite.
  std::optional<int32_t> SampleCandidates(const kernels::TokenCandidates& candidates);
  // Whether SampleCandidates can serve this request: sampling with a filter (top_k, top_p or
  // min_p) and no penalty (penalties change logits the candidates were chosen by).
  bool candidates_eligible() const {
    return !params_.greedy() && params_.repetition_penalty == 1.0f &&
           params_.presence_penalty == 0.0f && params_.frequency_penalty == 0.0f &&
           (params_.top_k > 0 || params_.top_p < 1.0f || params_.min_p > 0.0f);
  }

  const SamplingParams& params() const { return params_; }
  // Greedy with no penalty: the next token is the argmax of the raw logits, which a backend can
  // find without sending the logits to the host (ForwardItem::greedy_token).
  bool plain_greedy() const {
    return params_.greedy() && params_.repetition_penalty == 1.0f &&
           params_.presence_penalty == 0.0f && params_.frequency_penalty == 0.0f;
  }
  // Records a token chosen outside Sample (the backend's greedy token) as generated.
  void RecordGenerated(int32_t token) { ++generated_counts_[token]; }

 private:
  void ApplyPenalties(absl::Span<float> logits) const;
  // Applies the filters to candidates_ and draws. `whole`: candidates_ holds every token of
  // positive probability, in id order; else the first of them in the order, and row_total is
  // the whole row's probability mass. nullopt (nothing drawn) when the kept prefix may reach past
  // the candidates.
  std::optional<int32_t> FilterAndDraw(bool whole, double row_total);
  double Uniform();  // [0, 1), 53 random bits

  SamplingParams params_;
  std::mt19937_64 rng_;  // fully specified by the standard: the same stream on every platform
  std::unordered_map<int32_t, int32_t> generated_counts_;
  std::vector<int32_t> prompt_tokens_;  // sorted, unique
  // Sorts candidates_ so that its first `count` entries are the most likely, in order (the
  // first sorted_prefix_ already are). For short prefixes (top_k).
  void SortPrefix(size_t count);

  std::vector<std::pair<double, int32_t>> candidates_;  // scratch
  size_t sorted_prefix_ = 0;
};

// Index of the largest logit; the lowest index among ties.
int32_t Argmax(absl::Span<const float> logits);

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_SAMPLER_H_
