// The CPU engine against the authors' reference implementation (tests/data/golden): logits,
// greedy continuations, and the equivalences the paged engine promises (decode = prefill,
// chunked = one-shot, batched = alone).
#include <cstdio>
#include <string>
#include <tuple>
#include <vector>

#include "engine/kv_block_manager.h"
#include "engine/sampler.h"
#include "engine/sequence_runner.h"
#include "gtest/gtest.h"
#include "tests/engine/golden_data.h"

namespace foxserve {
namespace testing {
namespace {

// (model name, ACP on)
class GoldenTest : public ::testing::TestWithParam<std::tuple<std::string, bool>> {
 protected:
  void SetUp() override {
    golden_ = LoadGolden(std::get<0>(GetParam()));
    ASSERT_EQ(golden_.batch, 2);
    backend_ = LoadBackend(golden_.model_dir, acp());
    ASSERT_NE(backend_, nullptr);
    blocks_ = std::make_unique<engine::KvBlockManager>(backend_->num_pages());
  }
  void TearDown() override {
    // Every runner returned its pages.
    if (blocks_) {
      EXPECT_EQ(blocks_->num_pages_free(), blocks_->num_pages_total());
    }
  }
  bool acp() const { return std::get<1>(GetParam()); }
  // ACP may drop weight below eps = e^-10 per attention row; 1e-3 is the bound on logits.
  double tolerance() const { return acp() ? 1e-3 : 1e-4; }

  std::vector<float> Prefill(int64_t row, int64_t chunk = 0) {
    engine::SequenceRunner runner(backend_.get(), blocks_.get(), golden_.tokens + 32);
    auto logits = runner.Feed(golden_.input_ids[row], /*all_logits=*/true, chunk);
    EXPECT_TRUE(logits.ok()) << logits.status();
    return logits.ok() ? *logits : std::vector<float>();
  }

  GoldenData golden_;
  std::unique_ptr<engine::CpuBackend> backend_;
  std::unique_ptr<engine::KvBlockManager> blocks_;
};

TEST_P(GoldenTest, LogitsMatchReference) {
  for (int64_t b = 0; b < golden_.batch; ++b) {
    const auto logits = Prefill(b);
    ASSERT_EQ(logits.size(), golden_.logits[b].size());
    const double err = RelativeError(logits.data(), golden_.logits[b].data(), logits.size());
    std::printf("[ measured ] %s acp=%d row %lld: relative error %.3g\n",
                std::get<0>(GetParam()).c_str(), acp(), static_cast<long long>(b), err);
    EXPECT_LT(err, tolerance()) << "row " << b;
  }
}

TEST_P(GoldenTest, GreedyTokenItemsReturnTheArgmaxAndNoLogits) {
  const auto& ids = golden_.input_ids;
  ExpectGreedyTokensMatchTheLogits(
      backend_.get(), {ids[0], ids[1], std::vector<int32_t>(ids[1].begin(), ids[1].begin() + 5)});
}

TEST_P(GoldenTest, CandidatesItemsGetTheTopOfTheirRows) {
  const auto& ids = golden_.input_ids;
  ExpectCandidatesMatchTheRows(
      backend_.get(), {ids[0], ids[1], std::vector<int32_t>(ids[1].begin(), ids[1].begin() + 5)},
      1e-6, 0.0);
}

TEST_P(GoldenTest, GreedyContinuationMatchesReference) {
  for (int64_t b = 0; b < golden_.batch; ++b) {
    const int64_t n = static_cast<int64_t>(golden_.greedy_tokens[b].size());
    engine::SequenceRunner runner(backend_.get(), blocks_.get(), golden_.tokens + n);
    engine::Sampler greedy(engine::SamplingParams{}, golden_.input_ids[b]);
    engine::GenerateOptions options;
    options.max_new_tokens = n;
    options.stop_at_eos = false;
    auto tokens = engine::GenerateTokens(runner, golden_.input_ids[b], options, greedy, {});
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    EXPECT_EQ(*tokens, golden_.greedy_tokens[b]) << "row " << b;
  }
}

TEST_P(GoldenTest, DecodeReproducesPrefillAtEveryPosition) {
  const int64_t V = golden_.vocab, T = golden_.tokens;
  const auto prefill = Prefill(0);
  engine::SequenceRunner runner(backend_.get(), blocks_.get(), T);
  for (int64_t t = 0; t < T; ++t) {
    auto logits = runner.Feed({golden_.input_ids[0][t]}, /*all_logits=*/false);
    ASSERT_TRUE(logits.ok()) << logits.status();
    const float* expected = prefill.data() + t * V;
    if (!acp()) {
      // Without pruning both paths run the same operations per row: bitwise equal.
      for (int64_t v = 0; v < V; ++v) ASSERT_EQ((*logits)[v], expected[v]) << "t=" << t << " v=" << v;
    } else {
      // Pruning decisions differ between a 64-query block and a single query, within the bound.
      ASSERT_LT(RelativeError(logits->data(), golden_.logits[0].data() + t * V, V), tolerance())
          << "t=" << t;
    }
  }
}

TEST_P(GoldenTest, ChunkedPrefillEqualsOneShot) {
  const int64_t V = golden_.vocab, T = golden_.tokens;
  const auto one_shot = Prefill(1);
  for (int64_t chunk : {1, 7, 64}) {
    const auto chunked = Prefill(1, chunk);
    ASSERT_EQ(chunked.size(), one_shot.size());
    if (!acp()) {
      for (size_t i = 0; i < chunked.size(); ++i) {
        ASSERT_EQ(chunked[i], one_shot[i]) << "chunk " << chunk << " index " << i;
      }
    } else {
      for (int64_t t = 0; t < T; ++t) {
        ASSERT_LT(RelativeError(chunked.data() + t * V, golden_.logits[1].data() + t * V, V),
                  tolerance())
            << "chunk " << chunk << " t=" << t;
      }
    }
  }
}

// Two sequences in one Forward call, one prefilling and one decoding, give exactly what each
// gives alone.
TEST_P(GoldenTest, BatchedEqualsAlone) {
  const int64_t V = golden_.vocab;
  const auto& a = golden_.input_ids[0];
  const auto& b = golden_.input_ids[1];
  auto state_a = backend_->NewSequenceState(200), state_b = backend_->NewSequenceState(200);
  ASSERT_TRUE(engine::ReservePages(*blocks_, *state_b, 80, backend_->page_size()).ok());
  std::vector<float> logits;
  models::ForwardItem warm{state_b.get(), absl::MakeConstSpan(b).subspan(0, 80), false, nullptr};
  ASSERT_TRUE(backend_->Forward({warm}, &logits).ok());
  ASSERT_TRUE(engine::ReservePages(*blocks_, *state_a, 100, backend_->page_size()).ok());
  ASSERT_TRUE(engine::ReservePages(*blocks_, *state_b, 81, backend_->page_size()).ok());
  models::ForwardItem item_a{state_a.get(), absl::MakeConstSpan(a).subspan(0, 100), true, nullptr};
  models::ForwardItem item_b{state_b.get(), absl::MakeConstSpan(b).subspan(80, 1), false, nullptr};
  ASSERT_TRUE(backend_->Forward({item_a, item_b}, &logits).ok());
  ASSERT_EQ(logits.size(), static_cast<size_t>(101 * V));
  const auto alone_a = Prefill(0);
  engine::SequenceRunner runner_b(backend_.get(), blocks_.get(), 200);
  auto alone_b = runner_b.Feed(absl::MakeConstSpan(b).subspan(0, 81), false);
  ASSERT_TRUE(alone_b.ok());
  for (int64_t i = 0; i < 100 * V; ++i) ASSERT_EQ(logits[i], alone_a[i]) << "a index " << i;
  for (int64_t v = 0; v < V; ++v) ASSERT_EQ(logits[100 * V + v], (*alone_b)[v]) << "b vocab " << v;
  engine::ReleasePages(*blocks_, *state_a);
  engine::ReleasePages(*blocks_, *state_b);
}

TEST_P(GoldenTest, RejectsBadInputWithoutChangingState) {
  engine::SequenceRunner runner(backend_.get(), blocks_.get(), 10);
  auto bad_id = runner.Feed({1, 2, static_cast<int32_t>(golden_.vocab)}, false);
  EXPECT_EQ(bad_id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_id.status().message().find("outside the vocabulary"), std::string::npos);
  EXPECT_EQ(runner.state().num_tokens, 0);
  auto too_long = runner.Feed(std::vector<int32_t>(11, 3), false);
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(runner.state().num_tokens, 0);
  auto ok = runner.Feed({1, 2, 3}, false);
  EXPECT_TRUE(ok.ok()) << ok.status();
}

INSTANTIATE_TEST_SUITE_P(
    Models, GoldenTest,
    ::testing::Combine(::testing::Values("fox-pro-tiny", "fox-llama-tiny"), ::testing::Bool()),
    [](const ::testing::TestParamInfo<GoldenTest::ParamType>& info) {
      std::string name = std::get<0>(info.param) + (std::get<1>(info.param) ? "_acp" : "_dense");
      for (char& ch : name) {
        if (ch == '-') ch = '_';
      }
      return name;
    });

}  // namespace
}  // namespace testing
}  // namespace foxserve
