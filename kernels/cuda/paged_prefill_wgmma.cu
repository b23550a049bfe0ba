// Hopper prefill (LaunchPagedPrefillWgmma): the mma kernel's dataflow on warpgroup MMAs.
//
// Why: the mma.sync kernel (paged_prefill_mma.cu) is issue-bound. Per 64-key block each warp
// spends as many issue slots on its 64 mma.sync and 32 ldmatrix as on the decayed softmax. Here
// one warpgroup (128 threads) owns a task's 64 query rows and each product is four
// `wgmma.mma_async` m64n64k16 instructions, reading Q and K (S = Q K^T) and V (O += P V) straight
// from shared memory and P from registers. The issue slots go to the softmax, and the tensor
// cores of one warpgroup run while another does its softmax: four warpgroups an SM (two CTAs at
// 128 registers a thread). Forms with fewer warpgroups and deeper pipelines per warpgroup
// (warp-specialized producer, P V overlapping the next softmax, ping-pong, an mbarrier ring)
// measured slower or within 2% (bench/RESULTS.md, fifth stop).
//
// A CTA runs two consecutive tasks, which are usually the neighbouring query blocks of one
// (sequence, head) (the planner lists tasks by sequence, head, query block). They then share
// every K/V page the CTA copies, which halves the L2 traffic. A pair that does not share (two
// heads or two sequences) walks the two key ranges one after the other. Pairs run in reverse
// list order, so the longest (last) query blocks start first.
//
// Shared memory tiles are 64 rows of 128 bytes in the 128-byte swizzle that wgmma's descriptors
// describe: the 16-byte chunk c of row r sits at chunk c ^ (r % 8). K and V have the same layout;
// K is read K-major (keys are B's rows) and V MN-major (transposed).
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/paged_attention_cuda.h"
#include "kernels/cuda/prefill_common.cuh"
#include "kernels/cuda/wgmma_common.cuh"

namespace foxserve {
namespace kernels {
namespace prefill {
namespace {

constexpr int kGroups = 2;  // warpgroups per CTA, one task each
constexpr int kThreads = 128 * kGroups;
constexpr int kTileBytes = PS * D * 2;  // 64 rows x 128 bytes

static_assert(D * 2 == 128, "one tile row must be one 128-byte swizzle row");

struct SharedTiles {  // placed at a 1024-byte boundary (the swizzle pattern repeats every 1 KB)
  uint8_t q[kGroups][kTileBytes];
  uint8_t k[2][kTileBytes];
  uint8_t v[2][kTileBytes];
  float c[2][PS];
};
constexpr int kSharedBytes = static_cast<int>(sizeof(SharedTiles)) + 1024;

// Issues the copies of one page into stage `s`; rows at or past `written_rows` become zeros
// (unwritten slots may hold NaN, and 0 * NaN would poison P V).
__device__ __forceinline__ void StagePage(SharedTiles& sm, int s, const uint8_t* page,
                                          int written_rows, int tid) {
  constexpr int kChunks = PS * D * 2 / 16;  // per matrix
#pragma unroll
  for (int i = 0; i < kChunks / kThreads; ++i) {
    const int chunk = tid + i * kThreads;
    const int row = chunk / 8, col = chunk % 8;
    const int bytes = row < written_rows ? 16 : 0;
    const uint8_t* src = page + row * 128 + col * 16;
    CopyAsync16(sm.k[s] + SwizzledOffset(row, col), src, bytes);
    CopyAsync16(sm.v[s] + SwizzledOffset(row, col), src + 2LL * PS * D, bytes);
  }
  if (tid < PS * 4 / 16) CopyAsync16(&sm.c[s][tid * 4], page + 4LL * PS * D + tid * 16, 16);
}

// The decayed online-softmax step of one block for this thread's two rows: turns the scores s
// (wgmma accumulator layout: s[4n + 2i + e] is row i, key 8n + 2t + e) into probabilities in
// place, and returns the factor that rescales the rows' previous output and sums. Keys at or past
// num_keys[i] are masked when kMasked (the diagonal block).
template <bool kMasked>
__device__ __forceinline__ void SoftmaxStep(float (&s)[32], const float* c, const float (&bias)[2],
                                            const int (&num_keys)[2], float scale_log2, int t,
                                            float (&m)[2], float (&l)[2], float (&rescale)[2]) {
  float c2[16];
#pragma unroll
  for (int n = 0; n < PS / 8; ++n) {
    const float2 pair = *reinterpret_cast<const float2*>(c + n * 8 + 2 * t);
    c2[2 * n] = pair.x * kLog2e;
    c2[2 * n + 1] = pair.y * kLog2e;
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float row_max = -INFINITY;
#pragma unroll
    for (int n = 0; n < PS / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float& x = s[4 * n + 2 * i + e];
        x = fmaf(x, scale_log2, bias[i]) - c2[2 * n + e];
        if (kMasked && 8 * n + 2 * t + e >= num_keys[i]) x = -INFINITY;
        row_max = fmaxf(row_max, x);
      }
    }
    row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 1));
    row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 2));
    const float new_max = fmaxf(m[i], row_max);  // finite: every consumed block has a key
    rescale[i] = FastExp2(m[i] - new_max);
    m[i] = new_max;
    float sum = 0.0f;
#pragma unroll
    for (int n = 0; n < PS / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float& x = s[4 * n + 2 * i + e];
        x = FastExp2(x - new_max);
        sum += x;
      }
    }
    l[i] = l[i] * rescale[i] + sum;  // the thread's partial row sum; reduced at the end
  }
}

__global__ void __launch_bounds__(kThreads, 2) PagedPrefillWgmmaKernel(CudaKvPool pool,
                                                                       CudaAttentionRows rows,
                                                                       CudaPrefillTasks tasks) {
  extern __shared__ uint8_t raw[];
  SharedTiles& sm =
      *reinterpret_cast<SharedTiles*>(raw + ((1024 - SharedAddress(raw) % 1024) % 1024));
  const int tid = threadIdx.x, group = tid / 128;
  const int warp = (tid % 128) / 32, lane = tid % 32;
  const int g = lane / 4, t = lane % 4;  // accumulator fragment coordinates
  const int pair = gridDim.x - 1 - blockIdx.x;
  const TaskSpan a = ReadTask(rows, tasks, 2 * pair), b = ReadTask(rows, tasks, 2 * pair + 1);
  const TaskSpan mine = group == 0 ? a : b;
  // One walk over the union of the two key ranges when both tasks read the same pages and the
  // union has no gap; otherwise two walks.
  const bool together = !b.valid || (a.head == b.head && a.table == b.table &&
                                     b.start <= a.last_block + 1 && a.start <= b.last_block + 1);

  // This thread's two rows; Q, rounded to bf16, into this group's swizzled tile.
  TaskRows my_rows{};
  if (mine.valid) {
    my_rows = ReadTaskRows(rows, mine, warp, g);
    StageQueryTile(sm.q[group], rows, mine, tid % 128);
  }
  FenceProxyAsync();  // the first block's barrier orders these stores before any wgmma

  float o[32], s[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) o[i] = s[i] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // in log2 units
  const float scale_log2 = rows.scale * kLog2e;
  const uint64_t q_desc = TileDescriptor(sm.q[group]);

  for (int walk = 0; walk < (together ? 1 : 2); ++walk) {
    const TaskSpan lead = walk == 0 ? a : b;
    int lo = lead.start, hi = lead.last_block, hi_written = lead.last_written;
    if (together && b.valid) {
      lo = min(a.start, b.start);
      hi = max(a.last_block, b.last_block);
      hi_written = max(a.last_block == hi ? a.last_written : 0, b.last_block == hi ? b.last_written : 0);
    }
    const bool consumes = mine.valid && (together || group == walk);
    const int32_t* pages = rows.pages + lead.table;
    const double* base = rows.block_base + lead.table;
    auto page_of = [&](int blk) {
      const int32_t id = pages[blk];
      if (id < 0) __trap();  // an evicted block was planned as live: a planning bug
      return pool.data + static_cast<int64_t>(id) * kPageBytes;
    };
    StagePage(sm, 0, page_of(lo), lo == hi ? hi_written : PS, tid);
    CommitCopies();
    for (int blk = lo, st = 0; blk <= hi; ++blk, st ^= 1) {
      if (blk < hi) {
        StagePage(sm, st ^ 1, page_of(blk + 1), blk + 1 == hi ? hi_written : PS, tid);
        CommitCopies();
        WaitCopies<1>();
      } else {
        WaitCopies<0>();
      }
      FenceProxyAsync();
      __syncthreads();
      if (consumes && blk >= mine.start && blk <= mine.last_block) {
        // - S = Q K^T.
        const uint64_t k_desc = TileDescriptor(sm.k[st]);
        PinRegisters(s);
        WgmmaFence();
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) WgmmaSharedShared(s, q_desc + 2 * kk, k_desc + 2 * kk, kk);
        WgmmaCommit();
        WgmmaWait<0>();
        PinRegisters(s);

        // - Decay, causal mask (only in the rows' own block), online softmax.
        const double block_base = base[blk];
        float bias[2];
        int num_keys[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          bias[i] = static_cast<float>(my_rows.c[i] - block_base) * kLog2e;
          num_keys[i] = blk == my_rows.position[i] / PS ? my_rows.position[i] % PS + 1 : PS;
        }
        float rescale[2];
        if (blk == mine.last_block) {
          SoftmaxStep<true>(s, sm.c[st], bias, num_keys, scale_log2, t, m, l, rescale);
        } else {
          SoftmaxStep<false>(s, sm.c[st], bias, num_keys, scale_log2, t, m, l, rescale);
        }
        RescaleRows(o, rescale);

        // - O += P V: P's A fragments straight from the S accumulators.
        uint32_t p[16];
        PackProbabilities(s, p);
        const uint64_t v_desc = TileDescriptor(sm.v[st]);
        PinRegisters(o);
        WgmmaFence();
#pragma unroll
        for (int kk = 0; kk < PS / 16; ++kk) {
          WgmmaRegisterShared(o, p[4 * kk], p[4 * kk + 1], p[4 * kk + 2], p[4 * kk + 3],
                              v_desc + kk * (16 * 128 >> 4));
        }
        WgmmaCommit();
        WgmmaWait<0>();
        PinRegisters(o);
      }
      __syncthreads();  // stage st is refilled by the next iteration's prefetch
    }
  }
  if (!mine.valid) return;

  // - Normalise and write this thread's two rows.
  WriteTaskRows(rows, mine, my_rows, o, l, warp, g, t);
}

}  // namespace
}  // namespace prefill

cudaError_t LaunchPagedPrefillWgmma(const CudaKvPool& pool, const CudaAttentionRows& rows,
                                    const CudaPrefillTasks& tasks, cudaStream_t stream) {
  if (pool.page_size != prefill::PS || pool.head_dim != prefill::D) return cudaErrorInvalidValue;
  if (tasks.count == 0) return cudaSuccess;
  if (cudaError_t e = cudaFuncSetAttribute(prefill::PagedPrefillWgmmaKernel,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           prefill::kSharedBytes);
      e != cudaSuccess) {
    return e;
  }
  prefill::PagedPrefillWgmmaKernel<<<(tasks.count + 1) / 2, prefill::kThreads,
                                     prefill::kSharedBytes, stream>>>(pool, rows, tasks);
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace foxserve
