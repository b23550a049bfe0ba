// Host sampling cost per token over a GPT-2-sized vocabulary (50257 logits), for the filters a
// request can ask for: engine::Sampler (which sorts only the prefix of the order its filters
// keep) against the algorithm it replaced (a sort of every candidate for top_p), measured in the
// same process; and the host's part when a backend returns the row's top candidates instead
// of the row (Sampler::SampleCandidates on kernels::TopCandidates, 1024 of them): "miss" when the
// filters reach past them (the row is then sampled as in the Sampler column).
//
//   sampler_bench [--vocab 50257] [--tokens 200] [--logit-sd 3]
// (--logit-sd 0.3: the nearly flat rows of a model with random weights, where top_p keeps most
// of the vocabulary.)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/sampler.h"
#include "kernels/cpu/top_candidates.h"

namespace {

using foxserve::engine::Sampler;
using foxserve::engine::SamplingParams;

// The previous algorithm: no sort without filters, a partial sort for top_k alone, and a sort
// of every candidate for top_p without top_k.
int32_t PreviousSample(const SamplingParams& p, const std::vector<float>& logits, double u,
                       std::vector<std::pair<double, int32_t>>& c) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  c.clear();  // reused, as the Sampler reuses its own
  const double inv_t = 1.0 / p.temperature;
  for (size_t i = 0; i < logits.size(); ++i) {
    const double q = std::exp((static_cast<double>(logits[i]) - max_logit) * inv_t);
    if (q > 0.0) c.emplace_back(q, static_cast<int32_t>(i));
  }
  auto by_prob = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (p.top_k > 0 || p.top_p < 1.0f) {
    size_t keep = c.size();
    if (p.top_k > 0 && static_cast<size_t>(p.top_k) < keep) {
      keep = p.top_k;
      std::partial_sort(c.begin(), c.begin() + keep, c.end(), by_prob);
    } else {
      std::sort(c.begin(), c.end(), by_prob);
    }
    c.resize(keep);
    if (p.top_p < 1.0f) {
      double total = 0.0, cumulative = 0.0;
      for (const auto& x : c) total += x.first;
      size_t n = 0;
      while (n < c.size()) {
        cumulative += c[n++].first;
        if (cumulative >= p.top_p * total) break;
      }
      c.resize(n);
    }
  }
  double total = 0.0, cumulative = 0.0;
  for (const auto& x : c) total += x.first;
  for (const auto& x : c) {
    cumulative += x.first;
    if (u * total < cumulative) return x.second;
  }
  return c.back().second;
}

// The better of three runs of `tokens` calls, in milliseconds a call.
double MsPerToken(int tokens, const std::function<void()>& one) {
  double best = 1e30;
  for (int run = 0; run < 3; ++run) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < tokens; ++i) one();
    const std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - t0;
    best = std::min(best, took.count() / tokens);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int vocab = 50257, tokens = 200;
  float logit_sd = 3.0f;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--vocab") == 0) vocab = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--tokens") == 0) tokens = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--logit-sd") == 0) logit_sd = std::strtof(argv[i + 1], nullptr);
  }
  // Logits with the spread of a trained LM's by default: normal, sd 3.
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, logit_sd);
  std::vector<float> logits(vocab);
  for (float& x : logits) x = normal(rng);
  struct Case {
    const char* name;
    float top_p;
    int top_k;
  };
  std::printf("%-28s %14s %14s %8s %16s\n", "filters (temperature 0.8)", "previous ms",
              "Sampler ms", "ratio", "candidates ms");
  for (const Case& c : {Case{"none", 1.0f, 0}, Case{"top_p 0.9", 0.9f, 0},
                        Case{"top_p 0.95", 0.95f, 0}, Case{"top_k 50", 1.0f, 50},
                        Case{"top_k 50, top_p 0.9", 0.9f, 50}}) {
    SamplingParams p;
    p.temperature = 0.8f;
    p.top_p = c.top_p;
    p.top_k = c.top_k;
    p.seed = 7;
    Sampler sampler(p, {});
    std::vector<float> scratch;
    int64_t sink = 0;
    const double sampler_ms = MsPerToken(tokens, [&] {
      scratch = logits;
      sink += sampler.Sample(absl::MakeSpan(scratch));
    });
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    std::vector<std::pair<double, int32_t>> candidates;
    const double previous_ms = MsPerToken(tokens, [&] {
      scratch = logits;  // as the Sampler's run copies its input
      sink += PreviousSample(p, scratch, uniform(rng), candidates);
    });
    foxserve::kernels::TokenCandidates top;
    foxserve::kernels::TopCandidates(logits.data(), vocab, 1024, 1.0 / p.temperature, 2048, &top);
    bool missed = false;
    const double candidates_ms = MsPerToken(tokens, [&] {
      const std::optional<int32_t> t = sampler.SampleCandidates(top);
      missed = missed || !t;
      sink += t.value_or(0);
    });
    char candidates_text[32];
    std::snprintf(candidates_text, sizeof(candidates_text), missed ? "miss" : "%.4f", candidates_ms);
    std::printf("%-28s %14.3f %14.3f %7.1fx %16s%s\n", c.name, previous_ms, sampler_ms,
                previous_ms / sampler_ms, candidates_text, sink < 0 ? "!" : "");
  }
  return 0;
}
