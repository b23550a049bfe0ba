#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace foxserve {
namespace engine {
namespace {

std::vector<int32_t> Draw(const SamplingParams& p, const std::vector<float>& logits, int n) {
  Sampler s(p, {});
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = logits;
    out.push_back(s.Sample(absl::MakeSpan(l)));
  }
  return out;
}

// Every token with its probability relative to the most likely at `temperature`, sorted as the
// filters order them (descending probability, ascending id among ties), and the total.
std::vector<std::pair<double, int32_t>> SortedProbabilities(const std::vector<float>& logits,
                                                            double temperature, double* total) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<std::pair<double, int32_t>> order;
  *total = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    order.emplace_back(std::exp((static_cast<double>(logits[i]) - max_logit) / temperature),
                       static_cast<int32_t>(i));
    *total += order.back().first;
  }
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  return order;
}

// The smallest prefix of `order` with top_p of `total`, and its mass.
std::set<int32_t> Nucleus(const std::vector<std::pair<double, int32_t>>& order, double total,
                          double top_p, double* kept) {
  std::set<int32_t> nucleus;
  *kept = 0;
  for (const auto& [q, id] : order) {
    nucleus.insert(id);
    *kept += q;
    if (*kept >= top_p * total) break;
  }
  return nucleus;
}

TEST(SamplerTest, GreedyTakesTheFirstMaximum) {
  EXPECT_EQ(Argmax(std::vector<float>{1, 5, 5, 2}), 1);
  SamplingParams p;
  EXPECT_EQ(Draw(p, {0.1f, -3, 7, 6.9f}, 3), (std::vector<int32_t>{2, 2, 2}));
}

TEST(SamplerTest, FrequenciesFollowTheTemperedSoftmax) {
  const std::vector<float> logits = {1.0f, 0.0f, -1.0f, 0.5f};
  for (float temperature : {0.5f, 1.0f, 2.0f}) {
    SamplingParams p;
    p.temperature = temperature;
    p.seed = 11;
    const int n = 40000;
    std::map<int32_t, int> counts;
    for (int32_t t : Draw(p, logits, n)) ++counts[t];
    double z = 0;
    for (float l : logits) z += std::exp(l / temperature);
    for (int32_t t = 0; t < 4; ++t) {
      const double expected = std::exp(logits[t] / temperature) / z;
      // 5 standard deviations of a binomial proportion.
      const double sd = std::sqrt(expected * (1 - expected) / n);
      EXPECT_NEAR(counts[t] / static_cast<double>(n), expected, 5 * sd)
          << "T=" << temperature << " token " << t;
    }
  }
}

TEST(SamplerTest, TopKTopPMinPRestrictTheCandidates) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  auto support = [&](SamplingParams p) {
    p.temperature = 1.0f;
    p.seed = 3;
    std::map<int32_t, int> counts;
    for (int32_t t : Draw(p, logits, 4000)) ++counts[t];
    std::vector<int32_t> keys;
    for (auto& [t, c] : counts) keys.push_back(t);
    return keys;
  };
  SamplingParams k2;
  k2.top_k = 2;
  EXPECT_EQ(support(k2), (std::vector<int32_t>{0, 1}));
  SamplingParams p06;
  p06.top_p = 0.6f;  // 0.5 < 0.6 <= 0.8: the two most likely
  EXPECT_EQ(support(p06), (std::vector<int32_t>{0, 1}));
  SamplingParams p09;
  p09.top_p = 0.9f;
  EXPECT_EQ(support(p09), (std::vector<int32_t>{0, 1, 2}));
  SamplingParams m;
  m.min_p = 0.25f;  // keeps p >= 0.125
  EXPECT_EQ(support(m), (std::vector<int32_t>{0, 1, 2}));
  SamplingParams all;
  EXPECT_EQ(support(all), (std::vector<int32_t>{0, 1, 2, 3}));
}

// A nucleus larger than the first sorted prefix (256) over a vocabulary of 5000: 600 equally likely
// tokens and 4400 at e^-10 of them. top_p 0.9 keeps the smallest prefix of the order (ties by
// ascending id) with 90% of the mass: ids 0..540, every one of them and nothing else.
TEST(SamplerTest, TopPKeepsExactlyTheNucleusOfALargeVocabulary) {
  std::vector<float> logits(5000, -10.0f);
  for (int i = 0; i < 600; ++i) logits[i] = 0.0f;
  // The nucleus, from a full sort here.
  double total = 0, kept = 0;
  const std::vector<std::pair<double, int32_t>> order = SortedProbabilities(logits, 1.0, &total);
  const std::set<int32_t> nucleus = Nucleus(order, total, 0.9, &kept);
  ASSERT_EQ(nucleus.size(), 541u);
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  p.seed = 9;
  std::set<int32_t> seen;
  for (int32_t t : Draw(p, logits, 15000)) seen.insert(t);
  EXPECT_EQ(seen, nucleus);
}

// A nucleus of most of a nearly flat row (as an untrained model's, where the filters select
// rather than sort): 4000 tokens, top_p 0.95 at temperature 0.8. The support must be exactly the
// nucleus of a full sort, and the ten most likely tokens drawn in proportion to their renormalised
// probabilities.
TEST(SamplerTest, TopPOverAFlatRowDrawsInProportion) {
  std::mt19937 rng(4);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  std::vector<float> logits(4000);
  for (float& x : logits) x = normal(rng);
  double total = 0, kept = 0;
  const std::vector<std::pair<double, int32_t>> order = SortedProbabilities(logits, 0.8, &total);
  const std::set<int32_t> nucleus = Nucleus(order, total, 0.95, &kept);
  ASSERT_GT(nucleus.size(), 3000u);
  SamplingParams p;
  p.temperature = 0.8f;
  p.top_p = 0.95f;
  p.seed = 12;
  const int n = 40000;
  std::map<int32_t, int> counts;
  for (int32_t t : Draw(p, logits, n)) ++counts[t];
  std::set<int32_t> seen;
  for (const auto& [t, c] : counts) seen.insert(t);
  EXPECT_TRUE(std::includes(nucleus.begin(), nucleus.end(), seen.begin(), seen.end()))
      << "a token outside the nucleus was drawn";
  EXPECT_GT(seen.size(), nucleus.size() * 9 / 10);
  for (int r = 0; r < 10; ++r) {
    const double expected = order[r].first / kept;
    const double sd = std::sqrt(expected * (1 - expected) / n);
    EXPECT_NEAR(counts[order[r].second] / static_cast<double>(n), expected, 5 * sd) << "rank " << r;
  }
}

// top_k with min_p: min_p's floor counts the top_k most likely, not the first top_k by id. Ids
// 0-2 are unlikely (p 0.01 relative to the best) and listed first; 3-5 are likely. top_k 3 keeps
// 3-5; min_p 0.5 keeps all three of those.
TEST(SamplerTest, MinPCountsTheTopKMostLikely) {
  const std::vector<float> logits = {std::log(0.01f), std::log(0.01f), std::log(0.01f), 0.0f,
                                     std::log(0.9f), std::log(0.8f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 3;
  p.min_p = 0.5f;
  p.seed = 5;
  std::set<int32_t> seen;
  for (int32_t t : Draw(p, logits, 3000)) seen.insert(t);
  EXPECT_EQ(seen, (std::set<int32_t>{3, 4, 5}));
}

// The candidates path (the top of a row, as a GPU computes it) draws exactly the tokens the whole
// row gives, seed for seed, and hands back (drawing nothing) when the filters reach past the
// candidates: then the row itself decides, and the two random streams stay in step.
TEST(SamplerTest, CandidatesDrawWhatTheWholeRowDraws) {
  std::mt19937 rng(21);
  std::normal_distribution<float> normal;
  const int64_t vocab = 3000;
  int served = 0, handed_back = 0;
  for (int trial = 0; trial < 60; ++trial) {
    SamplingParams p;
    p.temperature = std::vector<float>{0.3f, 0.7f, 1.0f, 1.5f}[trial % 4];
    p.top_k = std::vector<int32_t>{0, 5, 40, 300, 2000}[trial % 5];
    p.top_p = std::vector<float>{1.0f, 0.5f, 0.9f, 0.95f}[(trial / 2) % 4];
    p.min_p = trial % 7 == 0 ? 0.05f : 0.0f;
    if (p.top_k == 0 && p.top_p == 1.0f && p.min_p == 0.0f) p.top_p = 0.8f;
    p.seed = 100 + trial;
    // Peaked rows (scale 4) keep a nucleus inside 256 candidates; flat ones (scale 0.3) do not.
    const float scale = trial % 3 == 0 ? 0.3f : 4.0f;
    std::vector<float> row(vocab);
    for (float& x : row) x = scale * normal(rng);
    row[trial % vocab] = row[(trial + 1) % vocab];  // a tie
    Sampler whole(p, {}), listed(p, {});
    ASSERT_TRUE(listed.candidates_eligible());
    for (int draw = 0; draw < 20; ++draw) {
      std::vector<float> a = row, b = row;
      const int32_t expected = whole.Sample(absl::MakeSpan(a));
      kernels::TokenCandidates c;
      kernels::TopCandidates(row.data(), vocab, 256, 1.0 / p.temperature, 4096, &c);
      ASSERT_TRUE(c.complete);
      std::optional<int32_t> got = listed.SampleCandidates(c);
      if (got) {
        ++served;
      } else {
        ++handed_back;
        got = listed.Sample(absl::MakeSpan(b));
      }
      ASSERT_EQ(*got, expected) << "trial " << trial << " draw " << draw;
    }
  }
  // Both paths ran: most peaked rows are served from the candidates, flat ones handed back.
  EXPECT_GT(served, 300);
  EXPECT_GT(handed_back, 100);
}

TEST(SamplerTest, TopCandidatesAreThePrefixOfTheRow) {
  std::vector<float> row = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 1.0f, 1.0f, 3.0f};
  kernels::TokenCandidates c;
  kernels::TopCandidates(row.data(), 8, 3, 1.0, 16, &c);
  ASSERT_TRUE(c.complete);
  EXPECT_EQ(c.ids, (std::vector<int32_t>{1, 3, 7}));  // 3.0, 2.0, 2.0
  kernels::TopCandidates(row.data(), 8, 4, 1.0, 16, &c);
  EXPECT_EQ(c.ids, (std::vector<int32_t>{1, 3, 4, 5, 6, 7}));  // the 1.0 ties all come
  EXPECT_EQ(c.max_logit, 3.0f);
  double total = 0;
  for (float x : row) total += std::exp(static_cast<double>(x) - 3.0);
  EXPECT_EQ(c.total, total);
  kernels::TopCandidates(row.data(), 8, 4, 1.0, 5, &c);  // six do not fit in five
  EXPECT_FALSE(c.complete);
  EXPECT_TRUE(c.ids.empty());
  row[2] = std::nanf("");
  kernels::TopCandidates(row.data(), 8, 4, 1.0, 16, &c);
  EXPECT_FALSE(c.finite);
  EXPECT_FALSE(c.complete);
}

TEST(SamplerTest, SeedsReproduce) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 1234;
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = std::sin(i * 1.7f);
  EXPECT_EQ(Draw(p, logits, 100), Draw(p, logits, 100));
  SamplingParams q = p;
  q.seed = 1235;
  EXPECT_NE(Draw(p, logits, 100), Draw(q, logits, 100));
}

TEST(SamplerTest, PenaltiesChangeTheChoice) {
  // Repetition penalty on a prompt token: 2.0 / 1.5 = 1.33 < 1.9.
  SamplingParams rep;
  rep.repetition_penalty = 1.5f;
  std::vector<int32_t> prompt = {0};
  Sampler s(rep, prompt);
  std::vector<float> l = {2.0f, 1.9f};
  EXPECT_EQ(s.Sample(absl::MakeSpan(l)), 1);
  // Frequency penalty: token 0 wins once, then loses 0.3 per occurrence.
  SamplingParams freq;
  freq.frequency_penalty = 0.3f;
  Sampler f(freq, {});
  std::vector<int32_t> picks;
  for (int i = 0; i < 3; ++i) {
    std::vector<float> x = {1.0f, 0.8f};
    picks.push_back(f.Sample(absl::MakeSpan(x)));
  }
  EXPECT_EQ(picks, (std::vector<int32_t>{0, 1, 0}));  // 0.7 < 0.8, then 0.7 > 0.8 - 0.3
  // Presence penalty subtracts once per seen token.
  SamplingParams pres;
  pres.presence_penalty = 0.15f;
  Sampler g(pres, {});
  picks.clear();
  for (int i = 0; i < 3; ++i) {
    std::vector<float> x = {1.0f, 0.9f};
    picks.push_back(g.Sample(absl::MakeSpan(x)));
  }
  EXPECT_EQ(picks, (std::vector<int32_t>{0, 1, 0}));  // 0.85<0.9; 0.85>0.75; 0.85>0.75
}

TEST(SamplerTest, ValidationNamesTheField) {
  auto check = [](SamplingParams p, const char* field) {
    const absl::Status s = ValidateSamplingParams(p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(s.message().find(field), absl::string_view::npos) << s.message();
  };
  SamplingParams p;
  EXPECT_TRUE(ValidateSamplingParams(p).ok());
  p.temperature = -0.1f;
  check(p, "temperature");
  p = {};
  p.temperature = std::nanf("");
  check(p, "temperature");
  p = {};
  p.top_p = 0.0f;
  check(p, "top_p");
  p = {};
  p.top_p = 1.5f;
  check(p, "top_p");
  p = {};
  p.top_k = -1;
  check(p, "top_k");
  p = {};
  p.min_p = 2.0f;
  check(p, "min_p");
  p = {};
  p.repetition_penalty = 0.0f;
  check(p, "repetition_penalty");
  p = {};
  p.presence_penalty = 3.0f;
  check(p, "presence_penalty");
  p = {};
  p.frequency_penalty = -2.5f;
  check(p, "frequency_penalty");
}

}  // namespace
}  // namespace engine
}  // namespace foxserve
