#include "kernels/cpu/gemm.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace foxserve {
namespace kernels {
namespace {

std::vector<float> Random(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// y = x w^T in double, the independent reference.
std::vector<double> Reference(const std::vector<float>& x, const std::vector<float>& w, int64_t m,
                              int64_t n, int64_t k) {
  std::vector<double> y(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t l = 0; l < k; ++l) s += static_cast<double>(x[i * k + l]) * w[j * k + l];
      y[i * n + j] = s;
    }
  return y;
}

TEST(GemmTest, MatchesDoubleReferenceOverShapes) {
  std::mt19937 rng(1);
  ThreadPool pool(3);
  // Shapes around the 4x3 register tile, the 8-lane k step and the column panels.
  for (int64_t m : {1, 2, 3, 4, 5, 7, 64, 65, 130}) {
    for (int64_t n : {1, 2, 3, 4, 17, 100}) {
      for (int64_t k : {1, 7, 8, 9, 64, 129}) {
        auto x = Random(m * k, rng), w = Random(n * k, rng);
        std::vector<float> y(m * n, std::nanf(""));
        MatMulTransposedB({x.data(), m, k, k}, {w.data(), n, k, k}, {y.data(), m, n, n}, &pool);
        const auto ref = Reference(x, w, m, n, k);
        for (int64_t i = 0; i < m * n; ++i) {
          ASSERT_NEAR(y[i], ref[i], 1e-5 * std::sqrt(static_cast<double>(k)) * 4)
              << "m=" << m << " n=" << n << " k=" << k << " i=" << i;
        }
      }
    }
  }
}

TEST(GemmTest, StridedViews) {
  std::mt19937 rng(2);
  const int64_t m = 9, n = 11, k = 40, ldx = 50, ldw = 45, ldy = 13;
  auto x = Random(m * ldx, rng), w = Random(n * ldw, rng);
  std::vector<float> y(m * ldy, -7.0f);
  MatMulTransposedB({x.data(), m, k, ldx}, {w.data(), n, k, ldw}, {y.data(), m, n, ldy}, nullptr);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t l = 0; l < k; ++l) s += static_cast<double>(x[i * ldx + l]) * w[j * ldw + l];
      EXPECT_NEAR(y[i * ldy + j], s, 1e-4);
    }
    for (int64_t j = n; j < ldy; ++j) EXPECT_EQ(y[i * ldy + j], -7.0f) << "wrote outside the view";
  }
}

// The property the engine relies on: a row's result does not depend on the other rows, the row
// count, the thread count or the tiling.
TEST(GemmTest, RowsAreBitwiseBatchInvariant) {
  std::mt19937 rng(3);
  const int64_t n = 37, k = 203;
  auto w = Random(n * k, rng);
  auto x = Random(67 * k, rng);
  std::vector<float> batched(67 * n);
  ThreadPool pool(2);
  MatMulTransposedB({x.data(), 67, k, k}, {w.data(), n, k, k}, {batched.data(), 67, n, n}, &pool);
  for (int64_t row : {0, 3, 4, 33, 66}) {
    std::vector<float> alone(n);
    MatMulTransposedB({x.data() + row * k, 1, k, k}, {w.data(), n, k, k}, {alone.data(), 1, n, n},
                      nullptr);
    for (int64_t j = 0; j < n; ++j) {
      ASSERT_EQ(alone[j], batched[row * n + j]) << "row " << row << " col " << j;
      ASSERT_EQ(Dot(x.data() + row * k, w.data() + j * k, k), alone[j]);
    }
  }
}

}  // namespace
}  // namespace kernels
}  // namespace foxserve
