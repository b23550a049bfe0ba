#include "kernels/cuda/top_candidates_cuda.h"

#include <cfloat>

namespace foxserve {
namespace kernels {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

__device__ uint32_t OrderedKey(float x) {
  const uint32_t bits = __float_as_uint(x);
  return (bits & 0x80000000u) != 0 ? ~bits : bits | 0x80000000u;
}

__device__ float KeyValue(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) != 0 ? key & 0x7fffffffu : ~key);
}

// Block-wide reductions through shared memory; every thread gets the result.
template <typename T, typename Op>
__device__ T BlockReduce(T v, T* scratch, Op op) {
  for (int offset = 16; offset > 0; offset /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read from the previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = scratch[0];
  for (int w = 1; w < kWarps; ++w) v = op(v, scratch[w]);
  return v;
}

__global__ void __launch_bounds__(kThreads) TopCandidatesKernel(TopCandidatesParams p) {
  __shared__ float max_s[kWarps];
  __shared__ double total_s[kWarps];
  __shared__ int bad_s[kWarps];
  __shared__ uint32_t hist[256];
  __shared__ uint32_t prefix_s, remaining_s;
  __shared__ int written_s;
  const int r = blockIdx.x;
  const float* row = p.logits + r * p.row_stride;
  const int V = p.vocab;

  // - Max and finiteness.
  float m = -FLT_MAX;
  int bad = 0;
  for (int i = threadIdx.x; i < V; i += kThreads) {
    const float x = row[i];
    if (!isfinite(x)) bad = 1;
    m = fmaxf(m, x);
  }
  bad = BlockReduce(bad, bad_s, [](int a, int b) { return a | b; });
  if (bad) {
    if (threadIdx.x == 0) p.meta[r] = CandidateRowMeta{0.0, 0.0f, -2};
    return;
  }
  m = BlockReduce(m, max_s, [](float a, float b) { return fmaxf(a, b); });

  // - Total mass at the row's temperature (as the host: (double(x) - max) * inv_t).
  const double inv_t = p.inv_temperature[r];
  double total = 0.0;
  for (int i = threadIdx.x; i < V; i += kThreads) {
    total += exp((static_cast<double>(row[i]) - static_cast<double>(m)) * inv_t);
  }
  total = BlockReduce(total, total_s, [](double a, double b) { return a + b; });

  // - The count-th largest key, a byte at a time from the top.
  if (threadIdx.x == 0) {
    prefix_s = 0;
    remaining_s = static_cast<uint32_t>(min(p.count, V));
  }
  uint32_t mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) hist[b] = 0;
    __syncthreads();
    const uint32_t prefix = prefix_s;
    for (int i = threadIdx.x; i < V; i += kThreads) {
      const uint32_t key = OrderedKey(row[i]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      uint32_t above = 0, remaining = remaining_s;
      for (int d = 255; d >= 0; --d) {
        if (above + hist[d] >= remaining) {
          prefix_s = prefix | (static_cast<uint32_t>(d) << shift);
          remaining_s = remaining - above;
          break;
        }
        above += hist[d];
      }
    }
    mask |= 255u << shift;
    __syncthreads();
  }
  const float threshold = KeyValue(prefix_s);

  // - Every token at or above it (compared as floats, as on the CPU).
  if (threadIdx.x == 0) written_s = 0;
  __syncthreads();
  int32_t* ids = p.ids + static_cast<int64_t>(r) * p.capacity;
  float* values = p.values + static_cast<int64_t>(r) * p.capacity;
  for (int i = threadIdx.x; i < V; i += kThreads) {
    const float x = row[i];
    if (x >= threshold) {
      const int slot = atomicAdd(&written_s, 1);
      if (slot < p.capacity) {
        ids[slot] = i;
        values[slot] = x;
      }
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    p.meta[r] = CandidateRowMeta{total, m, written_s > p.capacity ? -1 : written_s};
  }
}

}  // namespace

cudaError_t LaunchTopCandidates(const TopCandidatesParams& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  if (p.vocab <= 0 || p.count <= 0 || p.capacity <= 0) return cudaErrorInvalidValue;
  TopCandidatesKernel<<<p.rows, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace foxserve
