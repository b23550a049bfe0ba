#include "engine/kv_block_manager.h"

#include <algorithm>
#include <random>
#include <set>

#include "gtest/gtest.h"

namespace foxserve {
namespace engine {
namespace {

TEST(KvBlockManagerTest, AllocatesDistinctPagesAndRefusesBeyondCapacity) {
  KvBlockManager m(10);
  std::vector<int32_t> a, b;
  ASSERT_TRUE(m.Allocate(6, &a).ok());
  EXPECT_EQ(m.num_pages_free(), 4);
  auto status = m.Allocate(5, &b);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(b.empty()) << "a refused allocation takes nothing";
  EXPECT_EQ(m.num_pages_free(), 4);
  ASSERT_TRUE(m.Allocate(4, &b).ok());
  std::set<int32_t> all(a.begin(), a.end());
  all.insert(b.begin(), b.end());
  EXPECT_EQ(all.size(), 10u);
  EXPECT_EQ(*all.begin(), 0);
  EXPECT_EQ(*all.rbegin(), 9);
  m.Free(a);
  m.Free(b);
  EXPECT_EQ(m.num_pages_free(), 10);
}

TEST(KvBlockManagerDeathTest, DoubleFreeIsAProgrammingError) {
  KvBlockManager m(4);
  std::vector<int32_t> a;
  ASSERT_TRUE(m.Allocate(1, &a).ok());
  m.Free(a);
  EXPECT_DEATH(m.Free(a), "not allocated");
}

TEST(KvBlockManagerTest, ReservesPerStreamPagesAllOrNothing) {
  // 2 layers x 3 heads = 6 streams; page size 4.
  KvBlockManager m(40);
  models::SequenceKvState s(2, 3, 12, 100);
  EXPECT_EQ(PagesNeeded(s, 1, 4), 6);
  EXPECT_EQ(PagesNeeded(s, 9, 4), 18);  // 3 blocks per stream
  ASSERT_TRUE(ReservePages(m, s, 9, 4).ok());
  for (const auto& stream : s.streams) EXPECT_EQ(stream.pages.size(), 3u);
  EXPECT_EQ(m.num_pages_free(), 22);
  EXPECT_EQ(PagesNeeded(s, 12, 4), 0);
  // 5 more blocks per stream = 30 pages > 22 free: refused, nothing taken.
  EXPECT_EQ(ReservePages(m, s, 32, 4).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(m.num_pages_free(), 22);
  for (const auto& stream : s.streams) EXPECT_EQ(stream.pages.size(), 3u);
  ReleasePages(m, s);
  EXPECT_EQ(m.num_pages_free(), 40);
}

TEST(KvBlockManagerTest, RandomWorkloadNeverLeaks) {
  std::mt19937 rng(7);
  KvBlockManager m(500);
  std::vector<std::unique_ptr<models::SequenceKvState>> live;
  for (int step = 0; step < 2000; ++step) {
    const int action = rng() % 3;
    if (action == 0 || live.empty()) {
      auto s = std::make_unique<models::SequenceKvState>(2, 2, 8, 1000);
      if (ReservePages(m, *s, 1 + rng() % 200, 16).ok()) live.push_back(std::move(s));
    } else if (action == 1) {
      auto& s = *live[rng() % live.size()];
      (void)ReservePages(m, s, s.num_blocks() * 16 + 1 + rng() % 40, 16);
    } else {
      const size_t i = rng() % live.size();
      ReleasePages(m, *live[i]);
      live.erase(live.begin() + i);
    }
    int64_t held = 0;
    for (const auto& s : live)
      for (const auto& st : s->streams) held += st.pages.size();
    ASSERT_EQ(held + m.num_pages_free(), m.num_pages_total()) << "step " << step;
  }
  for (auto& s : live) ReleasePages(m, *s);
  EXPECT_EQ(m.num_pages_free(), 500);
}

}  // namespace
}  // namespace engine
}  // namespace foxserve
