// Tensor-core prefill: the A/B partner of PagedPrefillKernel (paged_attention_cuda.cu).
#include <cuda_bf16.h>
#include <mma.h>

#include <cfloat>

#include "kernels/cuda/paged_attention_cuda.h"

namespace foxserve {
namespace kernels {
namespace {

using namespace nvcuda;

constexpr int D = kCudaHeadDim;
constexpr int PS = kCudaPageSize;
constexpr int kWarps = 4;  // 16 query rows each
constexpr int kThreads = 32 * kWarps;
constexpr int kLdh = D + 8;   // bf16 tiles: row stride (elements), multiple of 8
constexpr int kLdf = PS + 4;  // fp32 tiles: row stride, multiple of 4
constexpr int64_t kPageBytes = 4LL * PS * D + 4LL * PS;

struct Smem {
  __nv_bfloat16 q[PS][kLdh];
  __nv_bfloat16 k[PS][kLdh];
  __nv_bfloat16 v[PS][kLdh];
  __nv_bfloat16 p[PS][kLdh];
  float s[PS][kLdf];
  float o[PS][kLdf];
  float c[PS];
  float m[PS];
  float l[PS];
};

__global__ void __launch_bounds__(kThreads) PagedPrefillTcKernel(CudaKvPool pool,
                                                                 CudaAttentionRows rows,
                                                                 CudaPrefillTasks tasks) {
  extern __shared__ __align__(128) uint8_t raw[];
  Smem& sm = *reinterpret_cast<Smem*>(raw);
  const int task = blockIdx.x;
  const int t0 = tasks.first_token[task];
  const int num_rows = tasks.num_rows[task];
  const int h = tasks.head[task];
  const int start = tasks.start_block[task];
  const int H = rows.num_heads;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t table = rows.row_table[static_cast<int64_t>(t0) * H + h];
  const int32_t* pages = rows.pages + table;
  const double* base = rows.block_base + table;
  const int last_pos = rows.token_position[t0 + num_rows - 1];
  const int last_block = last_pos / PS;

  // - Q (rounded to bf16), O = 0, running max and sum. Two threads per row, 32 columns each.
  {
    const int r = tid / 2, half = tid % 2;
    const int t = t0 + (r < num_rows ? r : 0);
    const float* q_row = rows.q + static_cast<int64_t>(t) * H * D + h * D + half * 32;
    for (int i = 0; i < 32; ++i) {
      sm.q[r][half * 32 + i] = __float2bfloat16(r < num_rows ? q_row[i] : 0.0f);
      sm.o[r][half * 32 + i] = 0.0f;
    }
    if (half == 0) {
      sm.m[r] = -FLT_MAX;
      sm.l[r] = 0.0f;
    }
  }
  // The softmax lanes: two per row of this warp's 16 rows.
  const int my_row = warp * 16 + lane / 2, my_half = lane % 2;
  const bool row_active = my_row < num_rows;
  const int my_t = t0 + (row_active ? my_row : 0);
  const int my_pos = rows.token_position[my_t];
  const double my_c = rows.row_c[static_cast<int64_t>(my_t) * H + h];

  for (int b = start; b <= last_block; ++b) {
    __syncthreads();  // previous block's K/V/P reads are done
    const int32_t page_id = pages[b];
    if (page_id < 0) __trap();
    const uint8_t* page = pool.data + static_cast<int64_t>(page_id) * kPageBytes;
    {
      const int r = tid / 2, half = tid % 2;
      const uint4* k_src = reinterpret_cast<const uint4*>(page) + (r * D + half * 32) / 8;
      const uint4* v_src = reinterpret_cast<const uint4*>(page + 2LL * PS * D) + (r * D + half * 32) / 8;
      uint4* k_dst = reinterpret_cast<uint4*>(&sm.k[r][half * 32]);
      uint4* v_dst = reinterpret_cast<uint4*>(&sm.v[r][half * 32]);
      // Slots past the last query's position hold no key yet (possibly NaN from a freed page):
      // stage zeros, since 0 * NaN in P V would poison the row even with p = 0.
      const bool written = b < last_block || r <= last_pos % PS;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        k_dst[i] = written ? k_src[i] : make_uint4(0, 0, 0, 0);
        v_dst[i] = written ? v_src[i] : make_uint4(0, 0, 0, 0);
      }
      if (tid < PS) sm.c[tid] = reinterpret_cast<const float*>(page + 4LL * PS * D)[tid];
    }
    __syncthreads();

    // - S = Q K^T for this warp's 16 rows.
    {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> qa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kb;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
#pragma unroll
      for (int n = 0; n < PS / 16; ++n) {
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
          wmma::load_matrix_sync(qa, &sm.q[warp * 16][kk * 16], kLdh);
          wmma::load_matrix_sync(kb, &sm.k[n * 16][kk * 16], kLdh);
          wmma::mma_sync(acc, qa, kb, acc);
        }
        wmma::store_matrix_sync(&sm.s[warp * 16][n * 16], acc, kLdf, wmma::mem_row_major);
      }
    }
    __syncwarp();

    // - Online softmax on the row: decay, causal mask, block max, P, rescale O.
    {
      const int num_keys = b == my_pos / PS ? my_pos % PS + 1 : PS;
      const float decay_base = static_cast<float>(my_c - base[b]);
      float block_max = -FLT_MAX;
      for (int j = my_half * 32; j < my_half * 32 + 32; ++j) {
        const float s = j < num_keys ? sm.s[my_row][j] * rows.scale + (decay_base - sm.c[j])
                                     : -FLT_MAX;
        sm.s[my_row][j] = s;
        block_max = fmaxf(block_max, s);
      }
      block_max = fmaxf(block_max, __shfl_xor_sync(0xffffffffu, block_max, 1));
      const float old_max = sm.m[my_row];
      const float new_max = fmaxf(old_max, block_max);
      const float rescale = expf(old_max - new_max);
      float sum = 0.0f;
      for (int j = my_half * 32; j < my_half * 32 + 32; ++j) {
        const float pj = j < num_keys ? expf(sm.s[my_row][j] - new_max) : 0.0f;
        sum += pj;
        sm.p[my_row][j] = __float2bfloat16(pj);
        sm.o[my_row][j] *= rescale;
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      __syncwarp();
      if (my_half == 0) {
        sm.l[my_row] = sm.l[my_row] * rescale + sum;
        sm.m[my_row] = new_max;
      }
    }
    __syncwarp();

    // - O += P V.
    {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vb;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
#pragma unroll
      for (int n = 0; n < D / 16; ++n) {
        wmma::load_matrix_sync(acc, &sm.o[warp * 16][n * 16], kLdf, wmma::mem_row_major);
#pragma unroll
        for (int kk = 0; kk < PS / 16; ++kk) {
          wmma::load_matrix_sync(pa, &sm.p[warp * 16][kk * 16], kLdh);
          wmma::load_matrix_sync(vb, &sm.v[kk * 16][n * 16], kLdh);
          wmma::mma_sync(acc, pa, vb, acc);
        }
        wmma::store_matrix_sync(&sm.o[warp * 16][n * 16], acc, kLdf, wmma::mem_row_major);
      }
    }
  }
  __syncwarp();
  if (row_active) {
    float* out = rows.out + static_cast<int64_t>(my_t) * H * D + h * D;
    const float inv = 1.0f / sm.l[my_row];
    for (int i = my_half * 32; i < my_half * 32 + 32; ++i) out[i] = sm.o[my_row][i] * inv;
  }
}

}  // namespace

cudaError_t LaunchPagedPrefillTensorCore(const CudaKvPool& pool, const CudaAttentionRows& rows,
                                         const CudaPrefillTasks& tasks, cudaStream_t stream) {
  if (pool.page_size != PS || pool.head_dim != D) return cudaErrorInvalidValue;
  if (tasks.count == 0) return cudaSuccess;
  const int smem = static_cast<int>(sizeof(Smem));
  if (cudaError_t e = cudaFuncSetAttribute(PagedPrefillTcKernel,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
      e != cudaSuccess) {
    return e;
  }
  PagedPrefillTcKernel<<<tasks.count, kThreads, smem, stream>>>(pool, rows, tasks);
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace foxserve
