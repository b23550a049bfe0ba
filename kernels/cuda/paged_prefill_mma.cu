// Register-resident tensor-core prefill (LaunchPagedPrefillMma): the FlashAttention-2 dataflow on
// FoX's paged cache. Per task (64 query rows of one head, one page of positions) four warps own 16
// rows each; S = Q K^T, the decayed online softmax and O += P V stay in registers (the m16n8k16
// accumulator layout of S is the A-operand layout of P, so P never touches shared memory), and the
// K/V/C of the next live page are copied with cp.async while the current one is used.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/paged_attention_cuda.h"
#include "kernels/cuda/prefill_common.cuh"

namespace foxserve {
namespace kernels {
namespace prefill {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kLd = D + 8;  // bf16 row stride in shared memory: 144 bytes, conflict-free ldmatrix

struct Stage {
  __nv_bfloat16 k[PS][kLd];
  __nv_bfloat16 v[PS][kLd];
  float c[PS];
};

__device__ __forceinline__ void LoadMatrixX4(uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                             uint32_t& r3, const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(SharedAddress(row)));
}
__device__ __forceinline__ void LoadMatrixX4Trans(uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                                  uint32_t& r3, const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(SharedAddress(row)));
}

// d += a b for one m16n8k16 tile (bf16 in, fp32 accumulate).
__device__ __forceinline__ void Mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}


// Issues the copies of page `page_id` into `stage`; rows at or past `written_rows` are zero-filled
// (slots not written yet may hold anything, NaN included, and 0 * NaN would poison P V).
__device__ __forceinline__ void StagePage(Stage& stage, const uint8_t* page, int written_rows,
                                          int tid) {
  // K and V: 64 rows x 128 bytes each = 512 chunks of 16 bytes per matrix.
#pragma unroll
  for (int i = 0; i < (PS * D * 2 / 16) / kThreads; ++i) {
    const int chunk = tid + i * kThreads;
    const int row = chunk / (D * 2 / 16), col = (chunk % (D * 2 / 16)) * 8;
    const int bytes = row < written_rows ? 16 : 0;
    CopyAsync16(&stage.k[row][col], page + (static_cast<int64_t>(row) * D + col) * 2, bytes);
    CopyAsync16(&stage.v[row][col], page + 2LL * PS * D + (static_cast<int64_t>(row) * D + col) * 2,
                bytes);
  }
  if (tid < PS * 4 / 16) CopyAsync16(&stage.c[tid * 4], page + 4LL * PS * D + tid * 16, 16);
}

__global__ void __launch_bounds__(kThreads) PagedPrefillMmaKernel(CudaKvPool pool,
                                                                  CudaAttentionRows rows,
                                                                  CudaPrefillTasks tasks) {
  extern __shared__ __align__(128) uint8_t raw[];
  Stage* stages = reinterpret_cast<Stage*>(raw);
  const int task = blockIdx.x;
  const int t0 = tasks.first_token[task];
  const int num_rows = tasks.num_rows[task];
  const int h = tasks.head[task];
  const int start = tasks.start_block[task];
  const int H = rows.num_heads;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;  // mma fragment coordinates
  const int64_t table = rows.row_table[static_cast<int64_t>(t0) * H + h];
  const int32_t* pages = rows.pages + table;
  const double* base = rows.block_base + table;
  const int last_pos = rows.token_position[t0 + num_rows - 1];
  const int last_block = last_pos / PS;
  const int last_written = last_pos % PS + 1;  // written slots of the last block

  auto page_of = [&](int b) {
    const int32_t id = pages[b];
    if (id < 0) __trap();  // an evicted block was planned as live: a planning bug
    return pool.data + static_cast<int64_t>(id) * kPageBytes;
  };
  StagePage(stages[0], page_of(start), start == last_block ? last_written : PS, tid);
  CommitCopies();

  // This thread's two rows (g and g + 8 of its warp's 16); rows past num_rows repeat row 0 and
  // are not written out.
  int row_t[2], row_pos[2];
  float row_decay[2];  // c of the row relative to block `start`'s base, updated per block
  double row_c[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = warp * 16 + g + 8 * i;
    row_t[i] = t0 + (r < num_rows ? r : 0);
    row_pos[i] = rows.token_position[row_t[i]];
    row_c[i] = rows.row_c[static_cast<int64_t>(row_t[i]) * H + h];
    row_decay[i] = 0.0f;
  }

  // Q as A fragments, rounded to bf16, for the four 16-wide slices of head_dim.
  uint32_t qa[D / 16][4];
  {
    const float* q0 = rows.q + static_cast<int64_t>(row_t[0]) * H * D + h * D;
    const float* q1 = rows.q + static_cast<int64_t>(row_t[1]) * H * D + h * D;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const int c0 = kk * 16 + 2 * t;
      const float2 a = *reinterpret_cast<const float2*>(q0 + c0);
      const float2 b = *reinterpret_cast<const float2*>(q1 + c0);
      const float2 c = *reinterpret_cast<const float2*>(q0 + c0 + 8);
      const float2 d = *reinterpret_cast<const float2*>(q1 + c0 + 8);
      qa[kk][0] = PackBf16(a.x, a.y);
      qa[kk][1] = PackBf16(b.x, b.y);
      qa[kk][2] = PackBf16(c.x, c.y);
      qa[kk][3] = PackBf16(d.x, d.y);
    }
  }

  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // in log2 units

  for (int b = start, s = 0; b <= last_block; ++b, s ^= 1) {
    if (b < last_block) {
      StagePage(stages[s ^ 1], page_of(b + 1), b + 1 == last_block ? last_written : PS, tid);
      CommitCopies();
      WaitCopies<1>();
    } else {
      WaitCopies<0>();
    }
    __syncthreads();
    const Stage& st = stages[s];

    // - S = Q K^T: 16 rows x 64 keys per warp, eight n-tiles of 8 keys.
    float sc[PS / 8][4];
#pragma unroll
    for (int n = 0; n < PS / 8; ++n) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
#pragma unroll
    for (int n2 = 0; n2 < PS / 16; ++n2) {  // two n-tiles per ldmatrix.x4 and k-slice pair
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        // Matrices: keys n2*16 + [0,8) and + [8,16), dims kk*16 + [0,8) and + [8,16).
        const int mat = lane / 8, r = lane % 8;
        const int key = n2 * 16 + (mat / 2) * 8 + r, dim = kk * 16 + (mat % 2) * 8;
        uint32_t b0, b1, b2, b3;
        LoadMatrixX4(b0, b1, b2, b3, &st.k[key][dim]);
        Mma(sc[2 * n2], qa[kk], b0, b1);
        Mma(sc[2 * n2 + 1], qa[kk], b2, b3);
      }
    }

    // - Decay, causal mask, online softmax (two rows per thread, four threads per row).
    const double block_base = base[b];
    float p_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      row_decay[i] = static_cast<float>(row_c[i] - block_base);
      const int num_keys = b == row_pos[i] / PS ? row_pos[i] % PS + 1 : PS;
#pragma unroll
      for (int n = 0; n < PS / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int j = n * 8 + 2 * t + e;
          float& x = sc[n][2 * i + e];
          x = j < num_keys ? (x * rows.scale + (row_decay[i] - st.c[j])) * kLog2e : -INFINITY;
          p_max[i] = fmaxf(p_max[i], x);
        }
      }
      p_max[i] = fmaxf(p_max[i], __shfl_xor_sync(0xffffffffu, p_max[i], 1));
      p_max[i] = fmaxf(p_max[i], __shfl_xor_sync(0xffffffffu, p_max[i], 2));
    }
    float rescale[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const float new_max = fmaxf(m[i], p_max[i]);  // finite: every block has a key for the row
      rescale[i] = exp2f(m[i] - new_max);
      m[i] = new_max;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < PS / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = sc[n][2 * i + e];
          x = exp2f(x - new_max);
          sum += x;
        }
      }
      l[i] = l[i] * rescale[i] + sum;  // the thread's partial row sum; reduced at the end
    }
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      o[n][0] *= rescale[0];
      o[n][1] *= rescale[0];
      o[n][2] *= rescale[1];
      o[n][3] *= rescale[1];
    }

    // - O += P V: P's A fragments straight from the S accumulators.
#pragma unroll
    for (int kk = 0; kk < PS / 16; ++kk) {
      uint32_t pa[4];
      pa[0] = PackBf16(sc[2 * kk][0], sc[2 * kk][1]);
      pa[1] = PackBf16(sc[2 * kk][2], sc[2 * kk][3]);
      pa[2] = PackBf16(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
      pa[3] = PackBf16(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
#pragma unroll
      for (int n2 = 0; n2 < D / 16; ++n2) {
        // Matrices (transposed): keys kk*16 + [0,8) and + [8,16) of dims n2*16 + [0,8), then
        // the same keys of dims n2*16 + [8,16).
        const int mat = lane / 8, r = lane % 8;
        const int key = kk * 16 + (mat % 2) * 8 + r, dim = n2 * 16 + (mat / 2) * 8;
        uint32_t b0, b1, b2, b3;
        LoadMatrixX4Trans(b0, b1, b2, b3, &st.v[key][dim]);
        Mma(o[2 * n2], pa, b0, b1);
        Mma(o[2 * n2 + 1], pa, b2, b3);
      }
    }
    __syncthreads();  // stage s is refilled by the next iteration's prefetch
  }

  // - Normalise and write this thread's two rows.
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    const int r = warp * 16 + g + 8 * i;
    if (r >= num_rows) continue;
    const float inv = 1.0f / l[i];
    float* out = rows.out + static_cast<int64_t>(row_t[i]) * H * D + h * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      *reinterpret_cast<float2*>(out + n * 8 + 2 * t) =
          make_float2(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
    }
  }
}

}  // namespace
}  // namespace prefill

cudaError_t LaunchPagedPrefillMma(const CudaKvPool& pool, const CudaAttentionRows& rows,
                                  const CudaPrefillTasks& tasks, cudaStream_t stream) {
  if (pool.page_size != prefill::PS || pool.head_dim != prefill::D) return cudaErrorInvalidValue;
  if (tasks.count == 0) return cudaSuccess;
  const int smem = static_cast<int>(2 * sizeof(prefill::Stage));
  if (cudaError_t e = cudaFuncSetAttribute(prefill::PagedPrefillMmaKernel,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
      e != cudaSuccess) {
    return e;
  }
  prefill::PagedPrefillMmaKernel<<<tasks.count, prefill::kThreads, smem, stream>>>(pool, rows,
                                                                                  tasks);
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace foxserve
