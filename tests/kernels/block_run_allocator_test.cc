// BlockRunAllocator against a model of the range (one flag per entry) under random allocations,
// frees and growth: runs never overlap, stay inside the capacity, freed space coalesces (a run as
// long as all free space fits once everything is freed), and growth keeps what is allocated.
#include "kernels/block_run_allocator.h"

#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace foxserve {
namespace kernels {
namespace {

TEST(BlockRunAllocatorTest, RandomAllocationsFreesAndGrowth) {
  std::mt19937 rng(3);
  BlockRunAllocator runs;
  std::vector<bool> used;  // the model
  std::vector<std::pair<int64_t, int64_t>> live;
  int grew = 0;
  for (int op = 0; op < 20000; ++op) {
    if (live.empty() || rng() % 3 != 0) {
      const int64_t length = 1 + static_cast<int64_t>(rng() % 300);
      int64_t offset = runs.Allocate(length);
      if (offset < 0) {
        const int64_t capacity = runs.CapacityToFit(length, 1024);
        ASSERT_GE(capacity, runs.capacity() * 2);
        runs.Grow(capacity);
        used.resize(capacity, false);
        ++grew;
        offset = runs.Allocate(length);
        ASSERT_GE(offset, 0) << "growth to " << capacity << " did not fit " << length;
      }
      ASSERT_LE(offset + length, runs.capacity());
      for (int64_t i = offset; i < offset + length; ++i) {
        ASSERT_FALSE(used[i]) << "entry " << i << " handed out twice";
        used[i] = true;
      }
      live.emplace_back(offset, length);
    } else {
      const size_t pick = rng() % live.size();
      const auto [offset, length] = live[pick];
      live.erase(live.begin() + pick);
      runs.Free(offset, length);
      for (int64_t i = offset; i < offset + length; ++i) used[i] = false;
    }
    if (op % 100 == 0) {
      int64_t free_model = 0;
      for (bool u : used) free_model += u ? 0 : 1;
      ASSERT_EQ(runs.free_entries(), free_model) << "op " << op;
    }
  }
  EXPECT_GT(grew, 3);
  for (const auto& [offset, length] : live) runs.Free(offset, length);
  EXPECT_EQ(runs.free_runs(), 1) << "freed space did not coalesce";
  EXPECT_EQ(runs.Allocate(runs.capacity()), 0);
}

TEST(BlockRunAllocatorTest, GrowthExtendsAFreeTail) {
  BlockRunAllocator runs;
  runs.Grow(100);
  ASSERT_EQ(runs.Allocate(60), 0);
  // 40 free at the end: fitting 70 needs 30 more, but growth at least doubles.
  EXPECT_EQ(runs.CapacityToFit(70, 0), 200);
  EXPECT_EQ(runs.CapacityToFit(500, 0), 560);
  runs.Grow(560);
  EXPECT_EQ(runs.free_runs(), 1);
  EXPECT_EQ(runs.Allocate(500), 60);
}

}  // namespace
}  // namespace kernels
}  // namespace foxserve
