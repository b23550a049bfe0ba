#include "models/acp_bounds.h"

#include <algorithm>
#include <cmath>

namespace foxserve {
namespace models {
namespace {

float MaxAbs(const float* x, int64_t n) {
  float m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

}  // namespace

double SpectralNormUpperBound(const float* w, int64_t rows, int64_t cols, int iterations) {
  // G = W W^T [rows, rows] is symmetric PSD with eigenvalues sigma_i^2. For A_m = G^(2^m),
  // sigma_max^(2^(m+1)) <= trace(A_m). Squarings are renormalized to unit trace, tracking the
  // scale in log space: A_i = exp(log_scale) * B_i with trace(B_i) = 1.
  const int64_t n = rows;
  std::vector<double> b(n * n, 0.0), sq(n * n);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < cols; ++k) s += static_cast<double>(w[i * cols + k]) * w[j * cols + k];
      b[i * n + j] = b[j * n + i] = s;
    }
  }
  double trace = 0;
  for (int64_t i = 0; i < n; ++i) trace += b[i * n + i];
  if (trace <= 0) return 0.0;
  for (double& v : b) v /= trace;
  double log_scale = std::log(trace);
  for (int it = 0; it < iterations; ++it) {
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t k = 0; k < n; ++k) s += b[i * n + k] * b[k * n + j];
        sq[i * n + j] = s;
      }
    }
    double t = 0;
    for (int64_t i = 0; i < n; ++i) t += sq[i * n + i];
    for (int64_t i = 0; i < n * n; ++i) b[i] = sq[i] / t;
    log_scale = 2 * log_scale + std::log(t);
  }
  // trace(A_m) = exp(log_scale); lambda_max(G) <= exp(log_scale / 2^m). A relative margin
  // covers the double rounding of the squarings.
  const double lambda_max = std::exp(log_scale / std::ldexp(1.0, iterations));
  return std::sqrt(lambda_max) * (1.0 + 1e-9);
}

std::vector<double> ComputeLogitBounds(const FoxWeights& weights) {
  const FoxConfig& c = weights.config;
  const int64_t D = c.hidden_size, H = c.num_heads, d = c.head_dim;
  std::vector<double> bounds(c.num_hidden_layers * H);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const FoxLayerWeights& lw = weights.layers[l];
    for (int64_t h = 0; h < H; ++h) {
      double q_norm_max, k_norm_max;
      if (c.qk_norm) {
        const int64_t off = c.qk_norm_share_param_across_head ? 0 : h * d;
        q_norm_max = MaxAbs(lw.q_norm.data() + off, d) * std::sqrt(static_cast<double>(d));
        k_norm_max = MaxAbs(lw.k_norm.data() + off, d) * std::sqrt(static_cast<double>(d));
      } else {
        const double a_norm = std::sqrt(static_cast<double>(D)) * MaxAbs(lw.attn_norm.data(), D);
        const float* wq = lw.in_proj.data() + (weights.in_proj.q + h * d) * D;
        const float* wk = lw.in_proj.data() + (weights.in_proj.k + h * d) * D;
        q_norm_max = a_norm * SpectralNormUpperBound(wq, d, D);
        k_norm_max = a_norm * SpectralNormUpperBound(wk, d, D);
      }
      bounds[l * H + h] = q_norm_max * k_norm_max / std::sqrt(static_cast<double>(d));
    }
  }
  return bounds;
}

}  // namespace models
}  // namespace foxserve
