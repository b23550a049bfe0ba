#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <map>
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
  std::vector<std::pair<double, int32_t>> order;
  double total = 0;
  for (int32_t i = 0; i < 5000; ++i) {
    order.emplace_back(std::exp(static_cast<double>(logits[i])), i);
    total += order.back().first;
  }
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  std::set<int32_t> nucleus;
  double cumulative = 0;
  for (const auto& [p, id] : order) {
    nucleus.insert(id);
    cumulative += p;
    if (cumulative >= 0.9 * total) break;
  }
  ASSERT_EQ(nucleus.size(), 541u);
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  p.seed = 9;
  std::set<int32_t> seen;
  for (int32_t t : Draw(p, logits, 15000)) seen.insert(t);
  EXPECT_EQ(seen, nucleus);
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
