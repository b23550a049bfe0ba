// Adaptive Computation Pruning decisions (FOX.md section 3), shared by the CPU and CUDA paths so
// both skip exactly the same tiles.
//
// For query t the weight of key j is at most exp(2U + c_t - c_j), U bounding |q||k|/sqrt(d). With
//   delta = -(2U + log L) + log eps
// all keys with c_t - c_j < delta together weigh less than eps (L keys at most). A (query block,
// key block) tile is dead when c(first query of the block) - c(last key of the block) < delta.
// c never increases, so the dead key blocks of a query form a prefix and, for a fixed delta, the
// prefix only grows as queries advance.
#ifndef FOXSERVE_KERNELS_ACP_BOUNDARY_H_
#define FOXSERVE_KERNELS_ACP_BOUNDARY_H_

#include <math.h>

#include <cstdint>

// The CUDA planner (kernels/cuda/acp_plan_cuda.cu) calls these same functions on the device, so
// that the GPU and the CPU make identical decisions from identical numbers.
#ifdef __CUDACC__
#define FOXSERVE_ACP_HOST_DEVICE __host__ __device__
#else
#define FOXSERVE_ACP_HOST_DEVICE
#endif

namespace foxserve {
namespace kernels {

// U for one step of a stream: the weights' bound, or |q||k|/sqrt(d) from the largest norms
// measured (this step's queries, every key of the stream) when smaller. A relative margin covers
// the float rounding of the measured norms.
FOXSERVE_ACP_HOST_DEVICE inline double StepLogitBound(double u_weight, float max_query_norm,
                                                      float max_key_norm, int64_t head_dim) {
  const double actual = static_cast<double>(max_query_norm) * max_key_norm /
                        sqrt(static_cast<double>(head_dim)) * (1.0 + 1e-5);
  return fmin(u_weight, actual);
}

FOXSERVE_ACP_HOST_DEVICE inline double AcpThreshold(double logit_bound, double num_keys, double log_eps) {
  return -(2.0 * logit_bound + log(num_keys)) + log_eps;
}

// The first live block in [begin, limit] for queries whose largest c is `c_query`:
// blocks b < result satisfy c_query - block_c_last[b] < delta. `limit` (the block holding the
// first query) is never skipped, whatever delta. Gallops, then bisects: O(log jump).
FOXSERVE_ACP_HOST_DEVICE inline int64_t FirstLiveBlock(const double* block_c_last, int64_t begin, int64_t limit,
                              double c_query, double delta) {
  auto dead = [&](int64_t b) { return c_query - block_c_last[b] < delta; };
  if (begin >= limit || !dead(begin)) return begin;
  // Invariant: `lo` is dead; find hi > lo that is live (or limit).
  int64_t lo = begin, step = 1, hi = begin + 1;
  while (hi < limit && dead(hi)) {
    lo = hi;
    step *= 2;
    hi = lo + step;
  }
  if (hi > limit) hi = limit;
  // Now lo dead, hi live or hi == limit; bisect on (lo, hi].
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (dead(mid)) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return hi;
}

// The first live key block of every query block of a chunk of n queries at positions
// [first_position, first_position + n), query blocks following page boundaries (query block k
// holds the positions of page first_position / page_size + k). c_rows[i]: c of query i. The scan
// starts at `begin` (a block known dead for all these queries, such as the stream's pointer) and
// never moves back: c falls along the chunk and delta is fixed. starts: [number of query blocks].
FOXSERVE_ACP_HOST_DEVICE inline void PlanQueryBlockStarts(const double* block_c_last, int64_t begin, int64_t first_position,
                                 int64_t n, const double* c_rows, int32_t page_size, double delta,
                                 int32_t* starts) {
  if (n == 0) return;
  const int64_t first_block = first_position / page_size;
  const int64_t num_qblocks = (first_position + n - 1) / page_size - first_block + 1;
  for (int64_t qb = 0; qb < num_qblocks; ++qb) {
    const int64_t first_row = qb == 0 ? 0 : (first_block + qb) * page_size - first_position;
    begin = FirstLiveBlock(block_c_last, begin, first_block + qb, c_rows[first_row], delta);
    starts[qb] = static_cast<int32_t>(begin);
  }
}

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_ACP_BOUNDARY_H_
