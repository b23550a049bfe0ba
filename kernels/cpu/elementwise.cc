#include "kernels/cpu/elementwise.h"

#include <algorithm>

namespace foxserve {
namespace kernels {

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double sum_sq = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
  const float inv_rms = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv_rms * weight[i];
}

int32_t Argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

float MaxRowNorm(const float* x, int64_t rows, int64_t n, int64_t stride) {
  double best = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    double sum_sq = 0.0;
    for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(x[r * stride + i]) * x[r * stride + i];
    best = std::max(best, sum_sq);
  }
  return static_cast<float>(std::sqrt(best));
}

}  // namespace kernels
}  // namespace foxserve
