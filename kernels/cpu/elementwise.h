// Row-wise and element-wise float32 kernels of the FoX block (FOX.md section 2).
#ifndef FOXSERVE_KERNELS_CPU_ELEMENTWISE_H_
#define FOXSERVE_KERNELS_CPU_ELEMENTWISE_H_

#include <cmath>
#include <cstdint>

namespace foxserve {
namespace kernels {

// out = x / sqrt(mean(x^2) + eps) * weight over `n` elements. The mean is accumulated in double
// (the reference accumulates in float32 with a pairwise sum; double is closer to both).
// `out` may alias `x`.
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float Silu(float x) { return x / (1.0f + std::exp(-x)); }
// log(sigmoid(x)) without overflow: min(x, 0) - log1p(exp(-|x|)), in double because it feeds the
// cumulative forget sum c.
inline double LogSigmoid(double x) { return std::fmin(x, 0.0) - std::log1p(std::exp(-std::fabs(x))); }

// Index of the largest of x[0, n) (n >= 1), the lowest index among ties: greedy sampling, the
// engine's and the models' (engine::Argmax, models::GreedyToken).
int32_t Argmax(const float* x, int64_t n);

// Largest Euclidean norm among `rows` vectors of length n (row stride `stride`).
float MaxRowNorm(const float* x, int64_t rows, int64_t n, int64_t stride);

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CPU_ELEMENTWISE_H_
