#include "kernels/cuda/paged_attention_cuda.h"

#include <cuda_bf16.h>

#include <cfloat>

#include "kernels/cuda/kv_page.cuh"

namespace foxserve {
namespace kernels {
namespace {

constexpr int D = kCudaHeadDim;
constexpr int PS = kCudaPageSize;
// One thread per query row of a page-aligned query block; K/V pages staged in shared memory.
// Online softmax block by block, as the CPU's AttendRow.
__global__ void __launch_bounds__(PS) PagedPrefillKernel(CudaKvPool pool, CudaAttentionRows rows,
                                                         CudaPrefillTasks tasks) {
  __shared__ float q_s[PS][D + 1];  // padded: rows read column-wise without bank conflicts
  __shared__ __align__(16) __nv_bfloat16 k_s[PS][D];
  __shared__ __align__(16) __nv_bfloat16 v_s[PS][D];
  __shared__ float c_s[PS];

  const int task = blockIdx.x;
  const int t0 = tasks.first_token[task];
  const int num_rows = tasks.num_rows[task];
  const int h = tasks.head[task];
  const int start = tasks.start_block[task];
  const int H = rows.num_heads;
  const int tid = threadIdx.x;
  const bool active = tid < num_rows;
  const int t = t0 + (active ? tid : 0);
  const int64_t row = static_cast<int64_t>(t) * H + h;
  const int64_t table = rows.row_table[static_cast<int64_t>(t0) * H + h];
  const int32_t* pages = rows.pages + table;
  const double* base = rows.block_base + table;
  const int pos = rows.token_position[t];
  const int last_block = rows.token_position[t0 + num_rows - 1] / PS;
  const double c_q = rows.row_c[row];

  const float* q_row = rows.q + static_cast<int64_t>(t) * H * D + h * D;
  for (int i = 0; i < D; ++i) q_s[tid][i] = active ? q_row[i] : 0.0f;

  float acc[D];
#pragma unroll
  for (int i = 0; i < D; ++i) acc[i] = 0.0f;
  float m = -FLT_MAX, l = 0.0f;

  for (int b = start; b <= last_block; ++b) {
    const int32_t page_id = pages[b];
    if (page_id < 0) __trap();  // an evicted or unset page was about to be read
    const PagePointers p = Page(pool, page_id);
    // Each thread stages one key row and one value row (128 bytes each).
    const uint4* k_src = reinterpret_cast<const uint4*>(p.k + tid * D);
    const uint4* v_src = reinterpret_cast<const uint4*>(p.v + tid * D);
    uint4* k_dst = reinterpret_cast<uint4*>(&k_s[tid][0]);
    uint4* v_dst = reinterpret_cast<uint4*>(&v_s[tid][0]);
#pragma unroll
    for (int i = 0; i < D * 2 / 16; ++i) {
      k_dst[i] = k_src[i];
      v_dst[i] = v_src[i];
    }
    c_s[tid] = p.c[tid];
    __syncthreads();
    if (active) {
      const int num_keys = b == pos / PS ? pos % PS + 1 : PS;
      const float decay_base = static_cast<float>(c_q - base[b]);
      // The key loops stay rolled (s in local memory): unrolled, ptxas took two minutes on this
      // reference kernel alone.
      float s[PS];
      float block_max = -FLT_MAX;
#pragma unroll 1
      for (int j = 0; j < PS; ++j) {
        if (j < num_keys) {
          float dot = 0.0f;
#pragma unroll
          for (int i = 0; i < D; i += 2) {
            const float2 kf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&k_s[j][i]));
            dot = fmaf(q_s[tid][i], kf.x, dot);
            dot = fmaf(q_s[tid][i + 1], kf.y, dot);
          }
          s[j] = dot * rows.scale + (decay_base - c_s[j]);
          block_max = fmaxf(block_max, s[j]);
        }
      }
      const float new_max = fmaxf(m, block_max);
      const float rescale = expf(m - new_max);
      l *= rescale;
#pragma unroll
      for (int i = 0; i < D; ++i) acc[i] *= rescale;
#pragma unroll 1
      for (int j = 0; j < PS; ++j) {
        if (j < num_keys) {
          const float pj = expf(s[j] - new_max);
          l += pj;
#pragma unroll
          for (int i = 0; i < D; i += 2) {
            const float2 vf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v_s[j][i]));
            acc[i] = fmaf(pj, vf.x, acc[i]);
            acc[i + 1] = fmaf(pj, vf.y, acc[i + 1]);
          }
        }
      }
      m = new_max;
    }
    __syncthreads();
  }
  if (active) {
    float* out = rows.out + static_cast<int64_t>(t) * H * D + h * D;
    const float inv = 1.0f / l;
#pragma unroll
    for (int i = 0; i < D; ++i) out[i] = acc[i] * inv;
  }
}

}  // namespace

cudaError_t LaunchPagedPrefill(const CudaKvPool& pool, const CudaAttentionRows& rows,
                               const CudaPrefillTasks& tasks, cudaStream_t stream) {
  if (pool.page_size != PS || pool.head_dim != D) return cudaErrorInvalidValue;
  if (tasks.count == 0) return cudaSuccess;
  PagedPrefillKernel<<<tasks.count, PS, 0, stream>>>(pool, rows, tasks);
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace foxserve
