#include "models/acp_bounds.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace foxserve {
namespace models {
namespace {

TEST(AcpBoundsTest, SpectralBoundOfKnownMatrix) {
  // Rows scaled unit vectors along distinct axes: singular values 5, 3, 1.
  const int64_t cols = 10;
  std::vector<float> w(3 * cols, 0.0f);
  w[0 * cols + 2] = 5;
  w[1 * cols + 7] = -3;
  w[2 * cols + 4] = 1;
  const double bound = SpectralNormUpperBound(w.data(), 3, cols);
  EXPECT_GE(bound, 5.0);
  EXPECT_LE(bound, 5.0 * 1.001);
}

TEST(AcpBoundsTest, SpectralBoundNeverBelowPowerIteration) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal;
  for (int trial = 0; trial < 5; ++trial) {
    const int64_t rows = 64, cols = 96;
    std::vector<float> w(rows * cols);
    for (float& x : w) x = normal(rng);
    // Independent estimate: power iteration on W^T W from a random start (a lower bound).
    std::vector<double> v(cols), u(rows);
    for (double& x : v) x = normal(rng);
    double sigma = 0;
    for (int it = 0; it < 500; ++it) {
      for (int64_t i = 0; i < rows; ++i) {
        u[i] = 0;
        for (int64_t j = 0; j < cols; ++j) u[i] += w[i * cols + j] * v[j];
      }
      double norm_v = 0;
      for (int64_t j = 0; j < cols; ++j) {
        v[j] = 0;
        for (int64_t i = 0; i < rows; ++i) v[j] += w[i * cols + j] * u[i];
        norm_v += v[j] * v[j];
      }
      norm_v = std::sqrt(norm_v);
      for (double& x : v) x /= norm_v;
      sigma = std::sqrt(norm_v);
    }
    const double bound = SpectralNormUpperBound(w.data(), rows, cols);
    EXPECT_GE(bound, sigma * (1 - 1e-9));
    EXPECT_LE(bound, sigma * 1.01);
  }
}

}  // namespace
}  // namespace models
}  // namespace foxserve
