#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/elementwise.h"

namespace foxserve {
namespace engine {
namespace {

using Candidate = std::pair<double, int32_t>;  // (probability relative to the max, token id)

// The order every filter keeps a prefix of: descending probability, ascending id among ties (a
// total order, so no result depends on how the candidates happen to be arranged).
// (A function object rather than a function, so that the standard algorithms inline it.)
struct InOrder {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  }
};
constexpr InOrder Before;

// Probability masses as integers: each candidate weighs floor(p * 2^62) (p <= 1), sums are exact
// in 128 bits. Exact sums do not depend on the order they are taken in, so the filters can select
// instead of sort and still cut and draw exactly where a walk of the sorted order would.
__extension__ typedef unsigned __int128 Mass;
uint64_t Weight(const Candidate& c) { return static_cast<uint64_t>(c.first * 0x1.0p62); }
Mass ToMass(double x) { return x <= 0.0 ? 0 : static_cast<Mass>(x); }

Mass MassOf(const std::vector<Candidate>& c, size_t begin, size_t end) {
  Mass total = 0;
  for (size_t i = begin; i < end; ++i) total += Weight(c[i]);
  return total;
}

// Rearranges c[0, count) and returns the index of the candidate at which the cumulative mass, in
// the order, first exceeds `below` (below < the mass of c[0, count)); every candidate before it in
// the order ends up in front of it. Expected linear time: a quickselect that descends by mass.
size_t SelectByMass(std::vector<Candidate>& c, size_t count, Mass below) {
  size_t lo = 0, hi = count;
  while (hi - lo > 32) {
    // Median of three (in the order) as the pivot; one pass puts what comes before it in front
    // and sums that part's mass.
    Candidate x = c[lo], y = c[lo + (hi - lo) / 2], z = c[hi - 1];
    if (Before(y, x)) std::swap(x, y);
    if (Before(z, y)) std::swap(y, z);
    if (Before(y, x)) std::swap(x, y);
    const Candidate pivot = y;
    size_t store = lo, pivot_at = lo;
    Mass front = 0;
    for (size_t i = lo; i < hi; ++i) {
      if (Before(c[i], pivot)) {
        front += Weight(c[i]);
        if (pivot_at == store) pivot_at = i;  // the pivot moves out of the way of the swap
        std::swap(c[i], c[store++]);
      } else if (c[i].second == pivot.second) {
        pivot_at = i;
      }
    }
    std::swap(c[pivot_at], c[store]);  // the pivot right after everything before it
    if (below < front) {
      hi = store;
    } else if (below < front + Weight(c[store])) {
      return store;
    } else {
      below -= front + Weight(c[store]);
      lo = store + 1;
    }
  }
  std::sort(c.begin() + lo, c.begin() + hi, Before);
  for (size_t i = lo; i < hi; ++i) {
    if (below < Weight(c[i])) return i;
    below -= Weight(c[i]);
  }
  return hi - 1;  // not reached while below < the mass
}

}  // namespace

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
  if (count <= sorted_prefix_) return;
  // A heap of the next `count - sorted_prefix_`: most candidates fail one comparison against its
  // top (nth_element then sort was slower for 50 of 50257 in sampler_bench).
  std::partial_sort(candidates_.begin() + sorted_prefix_, candidates_.begin() + count,
                    candidates_.end(), Before);
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
  if (!filtered) {
    // No filter: walk the row in id order.
    double total = 0.0;
    for (const auto& c : candidates_) total += c.first;
    const double target = Uniform() * total;
    double cumulative = 0.0;
    for (const auto& c : candidates_) {
      cumulative += c.first;
      if (target < cumulative) return c.second;
    }
    return candidates_.back().second;
  }
  // Each filter keeps a prefix of the order. The kept prefix is held as a set, candidates_[0,
  // keep), never sorted as a whole: sorting 50k candidates (top_p over the nearly flat rows of an
  // untrained model, or at a high temperature) took 5-11 ms a token (bench/sampler_bench
  // --logit-sd 0.3). `known`: the kept prefix ends within candidates_ (always so for the whole
  // row).
  const size_t listed = candidates_.size();
  size_t keep = listed;
  bool known = whole;
  sorted_prefix_ = 0;
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) <= listed) {
    keep = params_.top_k;
    known = true;
    if (keep * 16 < listed) {
      SortPrefix(keep);
    } else if (keep < listed) {
      std::nth_element(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), Before);
    }
  }
  if (params_.top_p < 1.0f) {
    if (!known && params_.top_k > 0) {
      return std::nullopt;  // the mass of a top_k prefix longer than the candidates
    }
    const Mass listed_mass = MassOf(candidates_, 0, keep);
    const Mass total = known ? listed_mass : ToMass(row_total * 0x1.0p62);
    // The smallest prefix whose mass reaches top_p of the total.
    const Mass target = std::min(total, ToMass(params_.top_p * static_cast<double>(total)));
    if (listed_mass < target) {
      if (!known) return std::nullopt;  // the prefix reaches past the candidates
    } else {
      keep = SelectByMass(candidates_, keep, target == 0 ? 0 : target - 1) + 1;
      sorted_prefix_ = 0;
    }
    known = true;
  }
  if (params_.min_p > 0.0f) {
    // Probabilities are relative to the most likely token's, which is exactly 1 (and first in
    // the order), so min_p's floor is min_p: the kept candidates at or above it, at least one.
    const auto floor_end =
        std::partition(candidates_.begin(), candidates_.begin() + keep,
                       [&](const Candidate& c) { return c.first >= params_.min_p; });
    const size_t above = static_cast<size_t>(floor_end - candidates_.begin());
    sorted_prefix_ = 0;
    if (!known && above == listed) return std::nullopt;  // the floor lies past the candidates
    keep = std::max<size_t>(1, std::min(keep, above));
    known = true;
  }
  if (!known) return std::nullopt;
  const Mass kept = MassOf(candidates_, 0, keep);
  Mass target = ToMass(Uniform() * static_cast<double>(kept));
  if (target >= kept) target = kept - 1;
  if (sorted_prefix_ < keep) return candidates_[SelectByMass(candidates_, keep, target)].second;
  for (size_t i = 0; i < keep; ++i) {  // top_k alone: the kept prefix is sorted already
    if (target < Weight(candidates_[i])) return candidates_[i].second;
    target -= Weight(candidates_[i]);
  }
  return candidates_[keep - 1].second;
}

}  // namespace engine
}  // namespace foxserve
