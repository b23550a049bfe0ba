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

// A copy of a golden checkpoint whose forget-gate biases make head 0 of every layer forget fast
// (sigmoid(-2): about 2 nats per token) and head 1 slowly (sigmoid(5): about 0.007 per token).
void WriteFastForgettingModel(const std::string& golden, const std::string& dir) {
  WriteFileOrDie(dir + "/config.json", ReadFileOrDie(GoldenDir(golden) + "/config.json"));
  auto ckpt = models::SafetensorsCheckpoint::Open(GoldenDir(golden));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  std::vector<std::vector<uint8_t>> storage;
  std::vector<models::TensorToWrite> tensors;
  for (const std::string& name : (*ckpt)->names()) {
    auto t = (*ckpt)->Get(name);
    ASSERT_TRUE(t.ok());
    storage.emplace_back(t->bytes.begin(), t->bytes.end());
    if (name.find("fgate_proj.bias") != std::string::npos) {
      ASSERT_EQ(t->dtype, models::DType::kF32);
      const float bias[2] = {-2.0f, 5.0f};
      std::memcpy(storage.back().data(), bias, sizeof(bias));
    }
  }
  size_t i = 0;
  for (const std::string& name : (*ckpt)->names()) {
    auto t = (*ckpt)->Get(name);
    tensors.push_back({name, t->dtype, t->shape, storage[i++]});
  }
  ASSERT_TRUE(models::WriteSafetensors(dir + "/model.safetensors", tensors).ok());
}

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
  engine::KvBlockManager dense_blocks(pages), acp_blocks(pages);
  engine::SequenceRunner dense(dense_backend.get(), &dense_blocks, total);
  engine::SequenceRunner pruned(acp_backend.get(), &acp_blocks, total);

  // - Prefill in two chunks (the second attends to cached keys), all logits.
  const int64_t V = 512;
  auto dense_logits = dense.Feed(prompt, true, 3000);
  auto acp_logits = pruned.Feed(prompt, true, 3000);
  ASSERT_TRUE(dense_logits.ok() && acp_logits.ok());
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

  // - Decode: the same tokens into both; skipping goes on, logits stay within the bound.
  const uint64_t skipped_before = pruned.acp_counters().total_skipped();
  for (int64_t step = 0; step < kDecodeTokens; ++step) {
    const int32_t next = token(rng);
    auto d = dense.Feed({next}, false);
    auto p = pruned.Feed({next}, false);
    ASSERT_TRUE(d.ok() && p.ok());
    EXPECT_LT(RelativeError(p->data(), d->data(), V), 1e-3) << "step " << step;
  }
  EXPECT_GT(pruned.acp_counters().total_skipped(), skipped_before + kDecodeTokens * 2 * 50);
}

INSTANTIATE_TEST_SUITE_P(Models, AcpLongSequenceTest,
                         ::testing::Values("fox-pro-tiny", "fox-llama-tiny"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param == "fox-pro-tiny" ? "pro" : "llama";
                         });

}  // namespace
}  // namespace testing
}  // namespace foxserve
