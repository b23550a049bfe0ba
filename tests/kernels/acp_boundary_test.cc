#include "kernels/acp_boundary.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace foxserve {
namespace kernels {
namespace {

TEST(AcpBoundaryTest, ThresholdFollowsTheBound) {
  // delta = -(2U + log L) + log eps, FOX.md section 3.
  EXPECT_DOUBLE_EQ(AcpThreshold(8.0, 32768.0, -10.0), -(16.0 + std::log(32768.0)) - 10.0);
  EXPECT_DOUBLE_EQ(AcpThreshold(0.0, 1.0, -10.0), -10.0);
  // More keys or a larger U lower the threshold (prune less).
  EXPECT_LT(AcpThreshold(8.0, 2000.0, -10.0), AcpThreshold(8.0, 1000.0, -10.0));
  EXPECT_LT(AcpThreshold(9.0, 1000.0, -10.0), AcpThreshold(8.0, 1000.0, -10.0));
}

TEST(AcpBoundaryTest, FirstLiveBlockEdges) {
  // c of each block's last key: decreasing by 10 per block.
  std::vector<double> c_last;
  for (int b = 0; b < 100; ++b) c_last.push_back(-10.0 * (b + 1));
  const double c_query = -1000.0;  // the query sits in block 99
  // Dead while c_query - c_last[b] < delta, i.e. -1000 + 10 (b+1) < delta.
  EXPECT_EQ(FirstLiveBlock(c_last.data(), 0, 99, c_query, -1e9), 0);      // nothing dead
  EXPECT_EQ(FirstLiveBlock(c_last.data(), 0, 99, c_query, -500.0), 49);  // b+1 >= 50
  EXPECT_EQ(FirstLiveBlock(c_last.data(), 0, 99, c_query, -495.0), 50);
  EXPECT_EQ(FirstLiveBlock(c_last.data(), 0, 99, c_query, 1e9), 99);     // clamped at the limit
  EXPECT_EQ(FirstLiveBlock(c_last.data(), 60, 99, c_query, -500.0), 60);  // never moves back
  EXPECT_EQ(FirstLiveBlock(c_last.data(), 99, 99, c_query, 1e9), 99);
  for (int begin = 0; begin < 99; begin += 7) {
    for (double delta = -1100; delta < 100; delta += 13.7) {
      int64_t expected = begin;
      while (expected < 99 && c_query - c_last[expected] < delta) ++expected;
      ASSERT_EQ(FirstLiveBlock(c_last.data(), begin, 99, c_query, delta), expected)
          << "begin " << begin << " delta " << delta;
    }
  }
}

}  // namespace
}  // namespace kernels
}  // namespace foxserve
