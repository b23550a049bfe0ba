#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <cmath>

#include "kernels/check.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FOXSERVE_GEMM_AVX2 1
#endif

namespace foxserve {
namespace kernels {
namespace {

// Eight float lanes; the AVX2 and portable versions perform the same roundings in the same order.
#ifdef FOXSERVE_GEMM_AVX2
using Lanes = __m256;
inline Lanes Zero() { return _mm256_setzero_ps(); }
inline Lanes Load(const float* p) { return _mm256_loadu_ps(p); }
inline Lanes Fma(Lanes a, Lanes b, Lanes acc) { return _mm256_fmadd_ps(a, b, acc); }
inline float LaneSum(Lanes v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));  // i + (i+4)
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                       // 0+2, 1+3
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));                                   // (0+2)+(1+3)
  return _mm_cvtss_f32(s);
}
#else
struct Lanes {
  float v[8];
};
inline Lanes Zero() { return Lanes{}; }
inline Lanes Load(const float* p) {
  Lanes l;
  std::copy(p, p + 8, l.v);
  return l;
}
inline Lanes Fma(Lanes a, Lanes b, Lanes acc) {
  for (int i = 0; i < 8; ++i) acc.v[i] = std::fma(a.v[i], b.v[i], acc.v[i]);
  return acc;
}
inline float LaneSum(Lanes l) {
  const float* v = l.v;
  const float s0 = v[0] + v[4], s1 = v[1] + v[5], s2 = v[2] + v[6], s3 = v[3] + v[7];
  return (s0 + s2) + (s1 + s3);
}
#endif

// MR rows of x against NR rows of w over the full k range.
template <int MR, int NR>
inline void MicroKernel(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t k,
                        float* y, int64_t ldy) {
  Lanes acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = Zero();
  const int64_t k8 = k & ~int64_t{7};
  for (int64_t kk = 0; kk < k8; kk += 8) {
    Lanes wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = Load(w + j * ldw + kk);
    for (int i = 0; i < MR; ++i) {
      const Lanes xv = Load(x + i * ldx + kk);
      for (int j = 0; j < NR; ++j) acc[i][j] = Fma(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      float r = LaneSum(acc[i][j]);
      for (int64_t kk = k8; kk < k; ++kk) r = std::fma(x[i * ldx + kk], w[j * ldw + kk], r);
      y[i * ldy + j] = r;
    }
  }
}

constexpr int kRowTile = 4;
constexpr int kColTile = 3;
constexpr int64_t kRowsPerTask = 64;

// Rows [m0, m1) x columns [n0, n1).
void GemmBlock(const ConstMatrixView& x, const ConstMatrixView& w, const MatrixView& y, int64_t m0,
               int64_t m1, int64_t n0, int64_t n1) {
  const int64_t k = x.cols;
  int64_t m = m0;
  for (; m + kRowTile <= m1; m += kRowTile) {
    int64_t n = n0;
    for (; n + kColTile <= n1; n += kColTile)
      MicroKernel<kRowTile, kColTile>(x.data + m * x.stride, x.stride, w.data + n * w.stride,
                                      w.stride, k, y.data + m * y.stride + n, y.stride);
    for (; n < n1; ++n)
      MicroKernel<kRowTile, 1>(x.data + m * x.stride, x.stride, w.data + n * w.stride, w.stride, k,
                               y.data + m * y.stride + n, y.stride);
  }
  for (; m < m1; ++m) {
    int64_t n = n0;
    for (; n + kColTile <= n1; n += kColTile)
      MicroKernel<1, kColTile>(x.data + m * x.stride, x.stride, w.data + n * w.stride, w.stride, k,
                               y.data + m * y.stride + n, y.stride);
    for (; n < n1; ++n)
      MicroKernel<1, 1>(x.data + m * x.stride, x.stride, w.data + n * w.stride, w.stride, k,
                        y.data + m * y.stride + n, y.stride);
  }
}

}  // namespace

void MatMulTransposedB(const ConstMatrixView& x, const ConstMatrixView& w, const MatrixView& y,
                       ThreadPool* pool) {
  FOXSERVE_CHECK_EQ(x.cols, w.cols);
  FOXSERVE_CHECK_EQ(y.rows, x.rows);
  FOXSERVE_CHECK_EQ(y.cols, w.rows);
  const int64_t m = x.rows, n = w.rows, k = x.cols;
  if (m == 0 || n == 0) return;
  // Column panels small enough to stay in L2 while every row block streams past them.
  const int64_t panel_floats = 64 * 1024;
  int64_t panel = std::max<int64_t>(kColTile, panel_floats / std::max<int64_t>(k, 1));
  panel = panel / kColTile * kColTile;
  // Enough tasks to keep every thread busy for small m (decode).
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  const int64_t row_tasks = (m + kRowsPerTask - 1) / kRowsPerTask;
  while (panel > kColTile && row_tasks * ((n + panel - 1) / panel) < 4 * threads) {
    panel = std::max<int64_t>(kColTile, panel / 2 / kColTile * kColTile);
  }
  const int64_t col_tasks = (n + panel - 1) / panel;
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n0 = (t % col_tasks) * panel;
      const int64_t m0 = (t / col_tasks) * kRowsPerTask;
      GemmBlock(x, w, y, m0, std::min(m, m0 + kRowsPerTask), n0, std::min(n, n0 + panel));
    }
  };
  if (pool == nullptr) {
    run(0, row_tasks * col_tasks);
  } else {
    pool->ParallelFor(row_tasks * col_tasks, 1, run);
  }
}

float Dot(const float* a, const float* b, int64_t k) {
  float r;
  MicroKernel<1, 1>(a, 0, b, 0, k, &r, 0);
  return r;
}

}  // namespace kernels
}  // namespace foxserve
