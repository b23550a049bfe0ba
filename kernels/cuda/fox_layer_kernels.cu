#include "kernels/cuda/fox_layer_kernels.h"

#include <cmath>

namespace foxserve {
namespace kernels {
namespace {

constexpr int kHeadDim = 64;
constexpr int kWarpsPerBlock = 8;

__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float Sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void EmbeddingGatherKernel(const int32_t* ids, const __nv_bfloat16* table, int64_t n,
                                      int64_t d, float* x) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n * d;
       i += int64_t{gridDim.x} * blockDim.x) {
    x[i] = __bfloat162float(table[static_cast<int64_t>(ids[i / d]) * d + i % d]);
  }
}

// With a residual, x's row gets it added first and written back: the same float adds as a
// separate pass, so the result is bitwise that of add-then-norm.
__global__ void RmsNormKernel(float* x, const float* residual, const int32_t* rows, const float* w,
                              int64_t d, float eps, __nv_bfloat16* out) {
  const int64_t r = blockIdx.x;
  const int64_t src = (rows != nullptr ? rows[r] : r) * d;
  float* in = x + src;
  float sum = 0.0f;
  if (residual != nullptr) {
    const float* add = residual + src;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const float v = in[i] + add[i];
      in[i] = v;
      sum += v * v;
    }
  } else {
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) sum += in[i] * in[i];
  }
  __shared__ float partial[32];
  sum = WarpSum(sum);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x < 32) {
    sum = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.0f;
    sum = WarpSum(sum);
    if (threadIdx.x == 0) partial[0] = sum;
  }
  __syncthreads();
  const float inv = rsqrtf(partial[0] / static_cast<float>(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    out[r * d + i] = __float2bfloat16(in[i] * inv * w[i]);
  }
}

// One warp per (token, head); lane holds dims lane and lane + 32.
__global__ void AttentionPrepKernel(AttentionPrepParams p) {
  const int64_t row = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32;
  if (row >= int64_t{p.num_tokens} * p.num_heads) return;
  const int lane = threadIdx.x % 32;
  const int t = static_cast<int>(row / p.num_heads), h = static_cast<int>(row % p.num_heads);
  const int item = p.token_item[t];
  const bool first = t == p.item_first_token[item];
  const float* cur = p.proj + static_cast<int64_t>(t) * p.proj_stride;
  const float* before = p.proj + static_cast<int64_t>(t - 1) * p.proj_stride;
  const float* state =
      p.prev_shift + (p.prev_shift_rows != nullptr
                          ? static_cast<int64_t>(p.prev_shift_rows[item]) * p.prev_shift_stride
                          : static_cast<int64_t>(item) * 2 * p.hidden);
  float qv[2], kv[2], vv[2];
  for (int j = 0; j < 2; ++j) {
    const int e = h * kHeadDim + lane + 32 * j;
    qv[j] = cur[p.q_offset + e];
    kv[j] = cur[p.k_offset + e];
    vv[j] = cur[p.v_offset + e];
    if (p.k_shift_offset >= 0) {
      const float alpha = Sigmoid(cur[p.k_shift_offset + h]);
      const float prev = first ? state[e] : before[p.k_offset + e];
      kv[j] = alpha * prev + (1.0f - alpha) * kv[j];
    }
    if (p.v_shift_offset >= 0) {
      const float alpha = Sigmoid(cur[p.v_shift_offset + h]);
      const float prev = first ? state[p.hidden + e] : before[p.v_offset + e];
      vv[j] = alpha * prev + (1.0f - alpha) * vv[j];
    }
  }
  if (p.q_norm != nullptr) {
    const float q_inv = rsqrtf(WarpSum(qv[0] * qv[0] + qv[1] * qv[1]) / kHeadDim + 1e-5f);
    const float k_inv = rsqrtf(WarpSum(kv[0] * kv[0] + kv[1] * kv[1]) / kHeadDim + 1e-5f);
    for (int j = 0; j < 2; ++j) {
      const int wi = (p.qk_norm_shared ? 0 : h * kHeadDim) + lane + 32 * j;
      qv[j] *= q_inv * p.q_norm[wi];
      kv[j] *= k_inv * p.k_norm[wi];
    }
  }
  const float q_norm = sqrtf(WarpSum(qv[0] * qv[0] + qv[1] * qv[1]));
  const float k_norm = sqrtf(WarpSum(kv[0] * kv[0] + kv[1] * kv[1]));
  for (int j = 0; j < 2; ++j) {
    const int64_t out = static_cast<int64_t>(t) * p.hidden + h * kHeadDim + lane + 32 * j;
    p.q[out] = qv[j];
    p.k[out] = kv[j];
    p.v[out] = vv[j];
  }
  if (lane == 0) {
    p.q_norms[row] = q_norm;
    p.k_norms[row] = k_norm;
  }
}

__global__ void GatherShiftStateKernel(const float* proj, int64_t stride, int32_t k_offset,
                                       int32_t v_offset, const int32_t* last, int32_t hidden,
                                       float* out, const int32_t* out_rows, int64_t out_stride) {
  const int item = blockIdx.x;
  const float* row = proj + static_cast<int64_t>(last[item]) * stride;
  float* dst = out + (out_rows != nullptr ? static_cast<int64_t>(out_rows[item]) * out_stride
                                          : static_cast<int64_t>(item) * 2 * hidden);
  for (int e = threadIdx.x; e < hidden; e += blockDim.x) {
    dst[e] = row[k_offset + e];
    dst[hidden + e] = row[v_offset + e];
  }
}

__global__ void OutputNormGateKernel(OutputGateParams p) {
  const int64_t row = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32;
  if (row >= int64_t{p.num_tokens} * p.num_heads) return;
  const int lane = threadIdx.x % 32;
  const int t = static_cast<int>(row / p.num_heads), h = static_cast<int>(row % p.num_heads);
  float o[2];
  for (int j = 0; j < 2; ++j) o[j] = p.attn[static_cast<int64_t>(t) * p.hidden + h * kHeadDim + lane + 32 * j];
  if (p.output_norm != nullptr) {
    const float inv = rsqrtf(WarpSum(o[0] * o[0] + o[1] * o[1]) / kHeadDim + p.norm_eps);
    for (int j = 0; j < 2; ++j) o[j] *= inv * p.output_norm[h * kHeadDim + lane + 32 * j];
  }
  for (int j = 0; j < 2; ++j) {
    const int e = h * kHeadDim + lane + 32 * j;
    if (p.ogate_offset >= 0) {
      const float g = p.proj[static_cast<int64_t>(t) * p.proj_stride + p.ogate_offset + e];
      o[j] *= p.ogate_silu ? g * Sigmoid(g) : Sigmoid(g);
    }
    p.out[static_cast<int64_t>(t) * p.hidden + e] = __float2bfloat16(o[j]);
  }
}

__global__ void GatedActivationKernel(const float* gate_up, int64_t n, int64_t inter, bool silu,
                                      __nv_bfloat16* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n * inter;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / inter, e = i % inter;
    const float g = gate_up[r * 2 * inter + e], u = gate_up[r * 2 * inter + inter + e];
    const float a = silu ? g * Sigmoid(g) : Sigmoid(g);
    out[i] = __float2bfloat16(a * u);
  }
}

__global__ void FillNanKernel(float* data, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    data[i] = __int_as_float(0x7fc00000);
  }
}

unsigned GridFor(int64_t count, int threads) {
  const int64_t blocks = (count + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}


constexpr int kGreedyThreads = 1024;

// Whether (v, i) comes before (bv, bi): larger value, then lower index.
__device__ __forceinline__ bool Better(float v, int64_t i, float bv, int64_t bi) {
  return v > bv || (v == bv && i < bi);
}

__global__ void __launch_bounds__(kGreedyThreads) GreedyTokensKernel(const float* logits,
                                                                     int64_t vocab,
                                                                     int64_t row_stride,
                                                                     int32_t* out) {
  __shared__ float best_v[kGreedyThreads / 32];
  __shared__ int64_t best_i[kGreedyThreads / 32];
  __shared__ int bad_s;
  const float* row = logits + blockIdx.x * row_stride;
  if (threadIdx.x == 0) bad_s = 0;
  __syncthreads();
  float bv = -INFINITY;
  int64_t bi = vocab;
  bool bad = false;
  for (int64_t i = threadIdx.x; i < vocab; i += kGreedyThreads) {
    const float v = row[i];
    if (!isfinite(v)) bad = true;
    if (Better(v, i, bv, bi)) {
      bv = v;
      bi = i;
    }
  }
  if (bad) bad_s = 1;
  for (int offset = 16; offset > 0; offset /= 2) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, offset);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, offset);
    if (Better(ov, oi, bv, bi)) {
      bv = ov;
      bi = oi;
    }
  }
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) {
    best_v[warp] = bv;
    best_i[warp] = bi;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kGreedyThreads / 32; ++w) {
      if (Better(best_v[w], best_i[w], bv, bi)) {
        bv = best_v[w];
        bi = best_i[w];
      }
    }
    out[blockIdx.x] = bad_s ? -1 : static_cast<int32_t>(bi);
  }
}

__global__ void FeedGreedyTokensKernel(const int32_t* from, int32_t count, int32_t* to) {
  const int32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) to[i] = max(from[i], 0);
}

}  // namespace

cudaError_t LaunchEmbeddingGather(const int32_t* ids, const __nv_bfloat16* table, int64_t n,
                                  int64_t d, float* x, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  EmbeddingGatherKernel<<<GridFor(n * d, 256), 256, 0, stream>>>(ids, table, n, d, x);
  return cudaGetLastError();
}

cudaError_t LaunchRmsNormToBf16(const float* x, const int32_t* rows, const float* weight,
                                int64_t n, int64_t d, float eps, __nv_bfloat16* out,
                                cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  // The kernel writes x only when given a residual.
  RmsNormKernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(const_cast<float*>(x), nullptr, rows,
                                                              weight, d, eps, out);
  return cudaGetLastError();
}

cudaError_t LaunchAddRmsNormToBf16(float* x, const float* residual, const int32_t* rows,
                                   const float* weight, int64_t n, int64_t d, float eps,
                                   __nv_bfloat16* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  RmsNormKernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(x, residual, rows, weight, d, eps,
                                                              out);
  return cudaGetLastError();
}

cudaError_t LaunchAttentionPrep(const AttentionPrepParams& p, cudaStream_t stream) {
  const int64_t rows = int64_t{p.num_tokens} * p.num_heads;
  if (rows == 0) return cudaSuccess;
  if (p.hidden != p.num_heads * kHeadDim) return cudaErrorInvalidValue;
  AttentionPrepKernel<<<static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock),
                        32 * kWarpsPerBlock, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchGatherShiftState(const float* proj, int64_t proj_stride, int32_t k_offset,
                                   int32_t v_offset, const int32_t* item_last_token,
                                   int32_t num_items, int32_t hidden, float* out,
                                   const int32_t* out_rows, int64_t out_stride,
                                   cudaStream_t stream) {
  if (num_items == 0) return cudaSuccess;
  GatherShiftStateKernel<<<num_items, 256, 0, stream>>>(proj, proj_stride, k_offset, v_offset,
                                                         item_last_token, hidden, out, out_rows,
                                                         out_stride);
  return cudaGetLastError();
}

cudaError_t LaunchOutputNormGate(const OutputGateParams& p, cudaStream_t stream) {
  const int64_t rows = int64_t{p.num_tokens} * p.num_heads;
  if (rows == 0) return cudaSuccess;
  if (p.hidden != p.num_heads * kHeadDim) return cudaErrorInvalidValue;
  OutputNormGateKernel<<<static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock),
                         32 * kWarpsPerBlock, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t LaunchGatedActivation(const float* gate_up, int64_t n, int64_t inter, bool silu,
                                  __nv_bfloat16* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  GatedActivationKernel<<<GridFor(n * inter, 256), 256, 0, stream>>>(gate_up, n, inter, silu, out);
  return cudaGetLastError();
}

cudaError_t LaunchGreedyTokens(const float* logits, int32_t rows, int64_t vocab,
                               int64_t row_stride, int32_t* out, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  GreedyTokensKernel<<<rows, kGreedyThreads, 0, stream>>>(logits, vocab, row_stride, out);
  return cudaGetLastError();
}

cudaError_t LaunchFeedGreedyTokens(const int32_t* from, int32_t count, int32_t* to,
                                   cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  FeedGreedyTokensKernel<<<(count + 255) / 256, 256, 0, stream>>>(from, count, to);
  return cudaGetLastError();
}

cudaError_t LaunchFillNan(float* data, int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  FillNanKernel<<<GridFor(count, 256), 256, 0, stream>>>(data, count);
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace foxserve
