#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/elementwise.h"

namespace foxserve {
namespace engine {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  auto bad = [](absl::string_view field, absl::string_view rule, double got) {
    return absl::InvalidArgumentError(absl::StrCat(field, " must be ", rule, ", got ", got));
  };
  if (!(p.temperature >= 0.0f && p.temperature <= 100.0f)) {
    return bad("temperature", "in [0, 100] (0 is greedy)", p.temperature);
  }
  if (p.top_k < 0) return bad("top_k", ">= 0 (0 disables it)", p.top_k);
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return bad("top_p", "in (0, 1]", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) return bad("min_p", "in [0, 1]", p.min_p);
  if (!(p.repetition_penalty > 0.0f && p.repetition_penalty <= 10.0f)) {
    return bad("repetition_penalty", "in (0, 10] (1 disables it)", p.repetition_penalty);
  }
  if (!(p.presence_penalty >= -2.0f && p.presence_penalty <= 2.0f)) {
    return bad("presence_penalty", "in [-2, 2]", p.presence_penalty);
  }
  if (!(p.frequency_penalty >= -2.0f && p.frequency_penalty <= 2.0f)) {
    return bad("frequency_penalty", "in [-2, 2]", p.frequency_penalty);
  }
  return absl::OkStatus();
}

int32_t Argmax(absl::Span<const float> logits) {
  return kernels::Argmax(logits.data(), static_cast<int64_t>(logits.size()));
}

Sampler::Sampler(const SamplingParams& params, absl::Span<const int32_t> prompt)
    : params_(params),
      rng_(params.seed ? *params.seed : std::random_device{}()),
      prompt_tokens_(prompt.begin(), prompt.end()) {
  std::sort(prompt_tokens_.begin(), prompt_tokens_.end());
  prompt_tokens_.erase(std::unique(prompt_tokens_.begin(), prompt_tokens_.end()),
                       prompt_tokens_.end());
}

double Sampler::Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

void Sampler::ApplyPenalties(absl::Span<float> logits) const {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  if (params_.repetition_penalty != 1.0f) {
    auto penalize = [&](int32_t t) {
      if (t < 0 || t >= vocab) return;
      float& l = logits[t];
      l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
    };
    for (int32_t t : prompt_tokens_) penalize(t);
    for (const auto& [t, count] : generated_counts_) {
      if (!std::binary_search(prompt_tokens_.begin(), prompt_tokens_.end(), t)) penalize(t);
    }
  }
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    for (const auto& [t, count] : generated_counts_) {
      if (t < 0 || t >= vocab) continue;
      logits[t] -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(count);
    }
  }
}

void Sampler::SortPrefix(size_t count) {
  auto by_prob = [](const std::pair<double, int32_t>& a, const std::pair<double, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (count <= sorted_prefix_) return;
  // A heap of the next `count - sorted_prefix_`: most candidates fail one comparison against its
  // top (nth_element then sort was slower for 50 of 50257 in sampler_bench).
  std::partial_sort(candidates_.begin() + sorted_prefix_, candidates_.begin() + count,
                    candidates_.end(), by_prob);
  sorted_prefix_ = count;
}

int32_t Sampler::Sample(absl::Span<float> logits) {
  ApplyPenalties(logits);
  int32_t token;
  if (params_.greedy()) {
    token = Argmax(logits);
  } else {
    // Probabilities in double, relative to the max, at the given temperature.
    const float max_logit = logits[Argmax(logits)];
    const double inv_t = 1.0 / params_.temperature;
    candidates_.clear();
    candidates_.reserve(logits.size());
    sorted_prefix_ = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      const double p = std::exp((static_cast<double>(logits[i]) - max_logit) * inv_t);
      if (p > 0.0) candidates_.emplace_back(p, static_cast<int32_t>(i));
    }
    token = *FilterAndDraw(/*whole=*/true, 0.0);
  }
  ++generated_counts_[token];
  return token;
}

std::optional<int32_t> Sampler::SampleCandidates(const kernels::TokenCandidates& c) {
  const double inv_t = 1.0 / params_.temperature;
  candidates_.clear();
  sorted_prefix_ = 0;
  bool whole = false;
  for (size_t i = 0; i < c.ids.size(); ++i) {
    const double p = std::exp((static_cast<double>(c.logits[i]) - c.max_logit) * inv_t);
    if (p > 0.0) {
      candidates_.emplace_back(p, c.ids[i]);
    } else {
      // Probabilities fall with the logit: no token past the candidates has any either, so
      // these are all of them.
      whole = true;
    }
  }
  if (candidates_.empty()) return std::nullopt;
  const std::optional<int32_t> token = FilterAndDraw(whole, c.total);
  if (token) ++generated_counts_[*token];
  return token;
}

std::optional<int32_t> Sampler::FilterAndDraw(bool whole, double row_total) {
  const bool filtered = params_.top_k > 0 || params_.top_p < 1.0f || params_.min_p > 0.0f;
  if (!filtered && !whole) return std::nullopt;
  if (filtered) {
    // Each filter keeps a prefix of the candidates in descending probability (ascending id
    // among ties: a total order, so the result does not depend on the sort implementation).
    // Only that prefix is ever sorted: a full sort of a 50k vocabulary for top_p took about
    // 5 ms a token on the engine thread (bench/sampler_bench). `known`: the kept prefix ends
    // within candidates_ (always so for the whole row).
    const size_t listed = candidates_.size();
    size_t keep = listed;
    bool known = whole;
    if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) <= listed) {
      keep = params_.top_k;
      known = true;
    }
    if (params_.top_p < 1.0f) {
      double total = 0.0;
      if (known && (keep < listed || !whole)) {
        SortPrefix(keep);
        for (size_t n = 0; n < keep; ++n) total += candidates_[n].first;
      } else if (whole) {
        for (const auto& c : candidates_) total += c.first;
      } else if (params_.top_k > 0) {
        return std::nullopt;  // the mass of a top_k prefix longer than the candidates
      } else {
        total = row_total;
      }
      // The smallest prefix whose mass reaches top_p of the total: sort 256 candidates, and
      // four times as many each time the mass is not reached.
      const double target = params_.top_p * total;
      size_t sorted = 0, n = 0;
      double cumulative = 0.0;
      bool reached = false;
      while (n < keep) {
        if (n == sorted) {
          sorted = std::min(keep, std::max<size_t>(256, 4 * sorted));
          SortPrefix(sorted);
        }
        cumulative += candidates_[n].first;
        ++n;
        if (cumulative >= target) {
          reached = true;
          break;
        }
      }
      if (!reached && !known) return std::nullopt;
      keep = n;
      known = true;
    }
    if (params_.min_p > 0.0f) {
      // Probabilities are relative to the most likely token's, which is exactly 1 (and first
      // in the order), so min_p's floor is min_p: the candidates at or above it, at least one.
      // Counted over the kept prefix, which must be the sorted one (after top_k alone the first
      // `keep` entries were still in id order).
      if (keep < listed) SortPrefix(keep);
      size_t above = 0;
      for (size_t n = 0; n < keep; ++n) above += candidates_[n].first >= params_.min_p ? 1 : 0;
      if (!known && above == listed) return std::nullopt;  // the floor lies past the candidates
      keep = std::max<size_t>(1, std::min(keep, above));
      known = true;
    }
    if (!known) return std::nullopt;
    SortPrefix(keep);
    candidates_.resize(keep);
  }
  double total = 0.0;
  for (const auto& c : candidates_) total += c.first;
  const double target = Uniform() * total;
  double cumulative = 0.0;
  int32_t token = candidates_.back().second;
  for (const auto& c : candidates_) {
    cumulative += c.first;
    if (target < cumulative) {
      token = c.second;
      break;
    }
  }
  return token;
}

}  // namespace engine
}  // namespace foxserve
