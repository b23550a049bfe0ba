// Dense float32 matrix products for the CPU backend.
//
// Batch invariance: every output element y[m][n] is reduced in one fixed order (eight lanes over
// k, k = lane mod 8, a fixed pairwise lane sum, then the k tail), whatever M, N, the tiling or the
// thread count. So a sequence's logits are bitwise the same whether it runs alone or inside a
// batch, which makes seeded sampling reproducible across batch compositions and lets decode
// reproduce prefill exactly. This is why we do not call a BLAS: none promises it.
#ifndef FOXSERVE_KERNELS_CPU_GEMM_H_
#define FOXSERVE_KERNELS_CPU_GEMM_H_

#include <cstdint>

#include "kernels/thread_pool.h"

namespace foxserve {
namespace kernels {

// A row-major matrix view: element (r, c) at data[r * stride + c].
struct ConstMatrixView {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;
};
struct MatrixView {
  float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;
};

// y = x w^T: x [M, K], w [N, K] (the checkpoint's [out_features, in_features] layout), y [M, N].
// `pool` may be null (single thread).
void MatMulTransposedB(const ConstMatrixView& x, const ConstMatrixView& w, const MatrixView& y,
                       ThreadPool* pool);

// Dot product of two length-k float vectors in the same fixed order as MatMulTransposedB.
float Dot(const float* a, const float* b, int64_t k);

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CPU_GEMM_H_
