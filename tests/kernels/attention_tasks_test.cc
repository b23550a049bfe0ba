// The task shapes the GPU planner fills in (BuildAttentionTaskShapes) against the host-planned
// task lists (BuildAttentionTasks) on random batches: the same prefill tasks at the indices the
// plan kernel writes, the same decode rows, and enough split-K tasks for every start the device
// can choose. Plain C++: runs without a GPU.
#include <algorithm>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/attention_tasks.h"

namespace foxserve {
namespace kernels {
namespace {

constexpr int32_t kPage = 64;

TEST(AttentionTaskShapesTest, MatchTheHostTaskListsAndCoverEveryDeviceStart) {
  std::mt19937 rng(5);
  for (int batch = 0; batch < 200; ++batch) {
    const int32_t H = 1 + static_cast<int32_t>(rng() % 4);
    const int32_t chunk = 1 + static_cast<int32_t>(rng() % 9);
    std::vector<AttentionItem> planned, shapes;
    std::vector<std::vector<int32_t>> device_starts;  // decode items: [head] the device's start
    int32_t token = 0;
    const int items = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < items; ++i) {
      AttentionItem item;
      item.first_token = token;
      item.num_tokens = rng() % 2 == 0 ? 1 : 1 + static_cast<int32_t>(rng() % 300);
      item.first_position = static_cast<int64_t>(rng() % 2000);
      token += item.num_tokens;
      const int64_t first_block = item.first_position / kPage;
      const int64_t last_block = (item.first_position + item.num_tokens - 1) / kPage;
      const int64_t nqb = last_block - first_block + 1;
      AttentionItem shape = item;
      std::vector<int32_t> starts_now;
      if (item.num_tokens == 1) {
        // The host's pointer (a step old) is at most the device's start.
        for (int32_t h = 0; h < H; ++h) {
          const int32_t lower = static_cast<int32_t>(rng() % (last_block + 1));
          const int32_t start =
              lower + static_cast<int32_t>(rng() % (last_block + 1 - lower));
          shape.starts.push_back(lower);
          item.starts.push_back(start);
          starts_now.push_back(start);
        }
      } else {
        for (int32_t h = 0; h < H; ++h) {
          int32_t start = 0;
          for (int64_t qb = 0; qb < nqb; ++qb) {
            start += static_cast<int32_t>(rng() % (first_block + qb + 1 - start + 1));
            start = std::min<int32_t>(start, static_cast<int32_t>(first_block + qb));
            item.starts.push_back(start);
          }
        }
      }
      planned.push_back(item);
      shapes.push_back(shape);
      device_starts.push_back(starts_now);
    }
    HostAttentionTasks host, dev;
    std::vector<int32_t> prefill_base, decode_base;
    BuildAttentionTasks(planned, H, kPage, chunk, &host);
    BuildAttentionTaskShapes(shapes, H, kPage, chunk, &dev, &prefill_base, &decode_base);

    ASSERT_EQ(dev.prefill_first_token, host.prefill_first_token);
    ASSERT_EQ(dev.prefill_num_rows, host.prefill_num_rows);
    ASSERT_EQ(dev.prefill_head, host.prefill_head);
    ASSERT_EQ(dev.prefill_start.size(), host.prefill_start.size());
    ASSERT_EQ(dev.row_token, host.row_token);
    ASSERT_EQ(dev.row_head, host.row_head);
    ASSERT_EQ(dev.decode_begin.size(), dev.decode_token.size());
    ASSERT_EQ(dev.decode_end.size(), dev.decode_token.size());
    ASSERT_EQ(dev.decode_row.size(), dev.decode_token.size());
    ASSERT_EQ(host.decode_row.size(), host.decode_token.size());
    for (size_t i = 0; i < planned.size(); ++i) {
      const AttentionItem& item = planned[i];
      const int64_t first_block = item.first_position / kPage;
      const int64_t last_block = (item.first_position + item.num_tokens - 1) / kPage;
      const int64_t nqb = last_block - first_block + 1;
      if (item.num_tokens > 1) {
        ASSERT_GE(prefill_base[i], 0);
        EXPECT_EQ(decode_base[i], -1);
        // Where the plan kernel writes (head h, query block qb) is where the host put its start.
        for (int32_t h = 0; h < H; ++h) {
          for (int64_t qb = 0; qb < nqb; ++qb) {
            EXPECT_EQ(host.prefill_start[prefill_base[i] + h * nqb + qb], item.starts[h * nqb + qb])
                << "batch " << batch << " item " << i;
          }
        }
        continue;
      }
      ASSERT_GE(decode_base[i], 0);
      EXPECT_EQ(prefill_base[i], -1);
      for (int32_t h = 0; h < H; ++h) {
        const int32_t r = decode_base[i] + h;
        ASSERT_EQ(dev.row_token[r], item.first_token);
        ASSERT_EQ(dev.row_head[r], h);
        const int32_t p0 = dev.row_partials[r], p1 = dev.row_partials[r + 1];
        for (int32_t p = p0; p < p1; ++p) {
          EXPECT_EQ(dev.decode_token[p], item.first_token);
          EXPECT_EQ(dev.decode_head[p], h);
          EXPECT_EQ(dev.decode_row[p], r);  // the fused merge counts task p's arrival at row r
        }
        for (int32_t p = host.row_partials[r]; p < host.row_partials[r + 1]; ++p) {
          EXPECT_EQ(host.decode_row[p], r);
        }
        // Re-chunked from the device's start, the row's tasks reach its last block.
        EXPECT_GE(device_starts[i][h] + int64_t{p1 - p0} * chunk, last_block + 1)
            << "batch " << batch << " item " << i << " head " << h;
      }
    }
  }
}

// Three prefill consumers from kThreeConsumerPrefillTokens positions on, for prefill items only
// (a decode row's one token never asks for them).
TEST(PrefersThreeConsumerPrefillTest, FromTheThresholdOnForPrefillItems) {
  EXPECT_FALSE(PrefersThreeConsumerPrefill(0, 2048));
  EXPECT_FALSE(PrefersThreeConsumerPrefill(0, kThreeConsumerPrefillTokens - 1));
  EXPECT_TRUE(PrefersThreeConsumerPrefill(0, kThreeConsumerPrefillTokens));
  EXPECT_TRUE(PrefersThreeConsumerPrefill(kThreeConsumerPrefillTokens, 2))
      << "a chunk of a long prompt";
  EXPECT_FALSE(PrefersThreeConsumerPrefill(32768, 1)) << "a decode row";
}

// The split-K chunk follows the decode rows' longest live range: 32 blocks a task once a row
// has more than 128 live blocks, 16 up to that; prefill items do not count.
TEST(ChooseDecodeChunkBlocksTest, FollowsTheLongestLiveRangeOfTheDecodeRows) {
  auto decode = [](int64_t position, std::vector<int32_t> starts) {
    AttentionItem item;
    item.num_tokens = 1;
    item.first_position = position;
    item.starts = std::move(starts);
    return item;
  };
  EXPECT_EQ(ChooseDecodeChunkBlocks({}, 2, kPage), 16) << "no decode rows";
  // Position 64 * 128: blocks 0..128, 129 live blocks from start 0, 128 from start 1.
  EXPECT_EQ(ChooseDecodeChunkBlocks({decode(64 * 128, {1, 1})}, 2, kPage), 16);
  EXPECT_EQ(ChooseDecodeChunkBlocks({decode(64 * 128, {1, 0})}, 2, kPage), 32);
  // One long row among short ones decides.
  EXPECT_EQ(ChooseDecodeChunkBlocks({decode(640, {0, 0}), decode(64 * 300, {200, 3})}, 2, kPage),
            32);
  // A start past the row's last block (a stale bound) counts as one live block.
  EXPECT_EQ(ChooseDecodeChunkBlocks({decode(64 * 300, {400, 400})}, 2, kPage), 16);
  // A long prefill chunk next to a short decode row changes nothing.
  AttentionItem prefill;
  prefill.num_tokens = 32768;
  prefill.first_position = 0;
  prefill.starts.assign(2 * 512, 0);
  EXPECT_EQ(ChooseDecodeChunkBlocks({prefill, decode(640, {0, 0})}, 2, kPage), 16);
}

// The 4-CTA decode build when its waves are clearly fuller: on an H200 (132 SMs: 396 or 528
// CTAs at once) 4x16384 with ACP at 32 blocks a task is about 490 tasks, one wave of 4 (93%
// full) against two of 3 (62%); dense 4x16384 is 768 tasks, 97% against 73%.
TEST(FourCtasFillWavesBetterTest, TakesFourCtasOnlyForClearlyFullerWaves) {
  EXPECT_TRUE(FourCtasFillWavesBetter(490, 396, 528));
  EXPECT_FALSE(FourCtasFillWavesBetter(768, 396, 528));
  EXPECT_FALSE(FourCtasFillWavesBetter(373, 396, 528)) << "one wave either way: 3 is as full";
  EXPECT_FALSE(FourCtasFillWavesBetter(3168, 396, 528)) << "8 and 6 full waves: a tie";
  EXPECT_TRUE(FourCtasFillWavesBetter(950, 396, 528)) << "80% against 90%";
  EXPECT_FALSE(FourCtasFillWavesBetter(0, 396, 528));
  EXPECT_FALSE(FourCtasFillWavesBetter(490, 0, 0)) << "occupancy unknown";
}

}  // namespace
}  // namespace kernels
}  // namespace foxserve
