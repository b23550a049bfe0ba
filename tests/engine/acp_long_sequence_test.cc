// ACP on a long sequence with a fast-forgetting head: blocks really are skipped, in prefill and in
// decode, the per-request pointer moves, and the logits stay within the bound of dense attention.
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/kv_block_manager.h"
#include "engine/sequence_runner.h"
#include "gtest/gtest.h"
#include "models/safetensors.h"
#include "tests/engine/golden_data.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {
namespace {

constexpr int64_t kPromptTokens = 4096;
constexpr int64_t kDecodeTokens = 24;

class AcpLongSequenceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(AcpLongSequenceTest, SkipsBlocksWithinTheBound) {
  ScratchDir dir;
  WriteFastForgettingModel(GetParam(), dir.path());
  std::mt19937 rng(42);
  std::uniform_int_distribution<int32_t> token(0, 511);
  std::vector<int32_t> prompt(kPromptTokens);
  for (int32_t& t : prompt) t = token(rng);
  const int64_t total = kPromptTokens + kDecodeTokens;
  const int64_t pages = 2 * 2 * (total / 64 + 1);

  auto dense_backend = LoadBackend(dir.path(), /*acp=*/false, pages);
  auto acp_backend = LoadBackend(dir.path(), /*acp=*/true, pages);
  ASSERT_NE(dense_backend, nullptr);
  ASSERT_NE(acp_backend, nullptr);
  auto evict_backend = LoadBackend(dir.path(), /*acp=*/true, pages);
  ASSERT_NE(evict_backend, nullptr);
  engine::KvBlockManager dense_blocks(pages), acp_blocks(pages), evict_blocks(pages);
  // Freed pages are poisoned with NaN: a read of an evicted page would poison the logits.
  evict_blocks.set_free_hook(
      [&](absl::Span<const int32_t> freed) { evict_backend->PoisonPages(freed); });
  engine::SequenceRunner dense(dense_backend.get(), &dense_blocks, total);
  engine::SequenceRunner pruned(acp_backend.get(), &acp_blocks, total);
  engine::SequenceRunner evicting(evict_backend.get(), &evict_blocks, total);
  evicting.set_evict_dead_pages(true);

  // - Prefill in two chunks (the second attends to cached keys), all logits.
  const int64_t V = 512;
  auto dense_logits = dense.Feed(prompt, true, 3000);
  auto acp_logits = pruned.Feed(prompt, true, 3000);
  auto evict_logits = evicting.Feed(prompt, true, 3000);
  ASSERT_TRUE(dense_logits.ok() && acp_logits.ok() && evict_logits.ok());
  // Eviction frees only what skipping already left out: bitwise the same logits.
  ASSERT_EQ(*evict_logits, *acp_logits);
  double worst = 0;
  for (int64_t t = 0; t < kPromptTokens; ++t) {
    worst = std::max(worst, RelativeError(acp_logits->data() + t * V, dense_logits->data() + t * V, V));
  }
  const models::AcpCounters& prefill = pruned.acp_counters();
  std::printf("[ measured ] %s prefill %lld tokens: worst row relative error %.3g\n",
              GetParam().c_str(), static_cast<long long>(kPromptTokens), worst);
  for (int64_t l = 0; l < 2; ++l) {
    for (int64_t h = 0; h < 2; ++h) {
      const uint64_t c = prefill.computed[l * 2 + h], s = prefill.skipped[l * 2 + h];
      std::printf("[ measured ]   layer %lld head %lld: blocks computed %llu skipped %llu (%.1f%%)\n",
                  static_cast<long long>(l), static_cast<long long>(h),
                  static_cast<unsigned long long>(c), static_cast<unsigned long long>(s),
                  100.0 * s / (c + s));
    }
    // The fast head prunes nearly everything but the diagonal.
    EXPECT_GT(prefill.skipped[l * 2 + 0], prefill.computed[l * 2 + 0]) << "layer " << l;
  }
  EXPECT_LT(worst, 1e-3);
  EXPECT_EQ(dense.acp_counters().total_skipped(), 0u);

  // - The per-request pointer (fixed threshold, L = total) moved for the fast head.
  for (int64_t l = 0; l < 2; ++l) {
    EXPECT_GT(pruned.state().stream(l, 0).first_live_block, 10) << "layer " << l;
    EXPECT_EQ(dense.state().stream(l, 0).first_live_block, 0);
  }

  // - Eviction freed the fast heads' dead pages: they no longer count against the pool.
  const int64_t evicted_after_prefill = evicting.num_evicted_pages();
  std::printf("[ measured ] %s: %lld of %lld pages evicted after the prefill\n", GetParam().c_str(),
              static_cast<long long>(evicted_after_prefill),
              static_cast<long long>(acp_blocks.num_pages_used()));
  EXPECT_GT(evicted_after_prefill, 0);
  EXPECT_EQ(evict_blocks.num_pages_used() + evicted_after_prefill, acp_blocks.num_pages_used());

  // - Decode: the same tokens into all; skipping goes on, logits stay within the bound, and
  //   eviction (with freed pages poisoned and reused) changes nothing.
  const uint64_t skipped_before = pruned.acp_counters().total_skipped();
  for (int64_t step = 0; step < kDecodeTokens; ++step) {
    const int32_t next = token(rng);
    auto d = dense.Feed({next}, false);
    auto p = pruned.Feed({next}, false);
    auto e = evicting.Feed({next}, false);
    ASSERT_TRUE(d.ok() && p.ok() && e.ok());
    EXPECT_LT(RelativeError(p->data(), d->data(), V), 1e-3) << "step " << step;
    ASSERT_EQ(*e, *p) << "step " << step;
  }
  EXPECT_GT(pruned.acp_counters().total_skipped(), skipped_before + kDecodeTokens * 2 * 50);
  EXPECT_GE(evicting.num_evicted_pages(), evicted_after_prefill);
}

INSTANTIATE_TEST_SUITE_P(Models, AcpLongSequenceTest,
                         ::testing::Values("fox-pro-tiny", "fox-llama-tiny"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "fox-pro-tiny" ? "pro" : "llama";
                         });

}  // namespace
}  // namespace testing
}  // namespace foxserve
