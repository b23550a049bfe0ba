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

__device__ __forceinline__ int SwizzledOffset(int row, int chunk) {
  return row * 128 + ((chunk ^ (row & 7)) << 4);
}

// Shared-memory writes by ordinary stores and cp.async become visible to wgmma (the async proxy)
// only after this fence (and a barrier between the writers and the warpgroup).
__device__ __forceinline__ void FenceProxyAsync() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Matrix descriptor of a 64 x 64 bf16 tile in the 128-byte swizzle: start address, both byte
// offsets 1024 (eight 128-byte rows; for the MN-major V one of them strides the k groups and the
// other would stride a second 64-wide column block, which a 64-wide tile does not have), layout
// type 1 = 128-byte swizzle. Adding n to the descriptor moves the start by 16 n bytes.
__device__ __forceinline__ uint64_t TileDescriptor(const void* tile) {
  const uint32_t address = SharedAddress(tile);
  return static_cast<uint64_t>((address & 0x3FFFF) >> 4) | (uint64_t{1024 >> 4} << 16) |
         (uint64_t{1024 >> 4} << 32) | (uint64_t{1} << 62);
}

__device__ __forceinline__ void WgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgmmaWaitAll() {
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
// Keeps the compiler from moving accesses of accumulator registers across wgmma issue / wait.
__device__ __forceinline__ void PinRegisters(float (&r)[32]) {
#pragma unroll
  for (int i = 0; i < 32; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

#define FOXSERVE_WGMMA_D32                                                                       \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define FOXSERVE_WGMMA_D32_OPERANDS(d)                                                           \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),          \
      "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), \
      "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),           \
      "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]),           \
      "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])

// d (+)= A B for m64n64k16, A and B (K-major) in shared memory; accumulate when `accumulate`.
__device__ __forceinline__ void WgmmaSharedShared(float (&d)[32], uint64_t a, uint64_t b,
                                                  int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " FOXSERVE_WGMMA_D32
      ", %32, %33, p, 1, 1, 0, 0;\n}\n"
      : FOXSERVE_WGMMA_D32_OPERANDS(d)
      : "l"(a), "l"(b), "r"(accumulate));
}
// d += A B for m64n64k16, A in registers (the m16n8k16 A layout per warp), B MN-major in shared.
__device__ __forceinline__ void WgmmaRegisterShared(float (&d)[32], const uint32_t (&a)[4],
                                                    uint64_t b) {
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " FOXSERVE_WGMMA_D32
      ", {%32, %33, %34, %35}, %36, 1, 1, 1, 1;\n"
      : FOXSERVE_WGMMA_D32_OPERANDS(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
}
#undef FOXSERVE_WGMMA_D32
#undef FOXSERVE_WGMMA_D32_OPERANDS

__device__ __forceinline__ float FastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// One prefill task as the kernel needs it.
struct TaskSpan {
  bool valid = false;
  int t0 = 0, num_rows = 0, head = 0, start = 0;
  int last_block = 0, last_written = 0;  // the block of the task's rows; its written slots
  int64_t table = 0;
};

__device__ __forceinline__ TaskSpan ReadTask(const CudaAttentionRows& rows,
                                             const CudaPrefillTasks& tasks, int i) {
  TaskSpan s;
  if (i >= tasks.count) return s;
  s.valid = true;
  s.t0 = tasks.first_token[i];
  s.num_rows = tasks.num_rows[i];
  s.head = tasks.head[i];
  s.start = tasks.start_block[i];
  s.table = rows.row_table[static_cast<int64_t>(s.t0) * rows.num_heads + s.head];
  const int last_pos = rows.token_position[s.t0 + s.num_rows - 1];
  s.last_block = last_pos / PS;
  s.last_written = last_pos % PS + 1;
  return s;
}

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
  const int H = rows.num_heads;
  const int pair = gridDim.x - 1 - blockIdx.x;
  const TaskSpan a = ReadTask(rows, tasks, 2 * pair), b = ReadTask(rows, tasks, 2 * pair + 1);
  const TaskSpan mine = group == 0 ? a : b;
  // One walk over the union of the two key ranges when both tasks read the same pages and the
  // union has no gap; otherwise two walks.
  const bool together = !b.valid || (a.head == b.head && a.table == b.table &&
                                     b.start <= a.last_block + 1 && a.start <= b.last_block + 1);

  // This thread's two rows (g and g + 8 of its warp's 16); rows past num_rows repeat row 0 and
  // are not written out.
  int row_t[2] = {0, 0}, row_pos[2] = {0, 0};
  double row_c[2] = {0, 0};
  if (mine.valid) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int r = warp * 16 + g + 8 * i;
      row_t[i] = mine.t0 + (r < mine.num_rows ? r : 0);
      row_pos[i] = rows.token_position[row_t[i]];
      row_c[i] = rows.row_c[static_cast<int64_t>(row_t[i]) * H + mine.head];
    }
    // Q, rounded to bf16, into this group's swizzled tile: 512 chunks of 8 dims.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int chunk = tid % 128 + i * 128, r = chunk / 8, col = chunk % 8;
      const int token = mine.t0 + (r < mine.num_rows ? r : 0);
      const float* src = rows.q + static_cast<int64_t>(token) * H * D + mine.head * D + col * 8;
      const float4 x = *reinterpret_cast<const float4*>(src);
      const float4 y = *reinterpret_cast<const float4*>(src + 4);
      *reinterpret_cast<uint4*>(sm.q[group] + SwizzledOffset(r, col)) =
          make_uint4(PackBf16(x.x, x.y), PackBf16(x.z, x.w), PackBf16(y.x, y.y), PackBf16(y.z, y.w));
    }
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
        WgmmaWaitAll();
        PinRegisters(s);

        // - Decay, causal mask (only in the rows' own block), online softmax.
        const double block_base = base[blk];
        float bias[2];
        int num_keys[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          bias[i] = static_cast<float>(row_c[i] - block_base) * kLog2e;
          num_keys[i] = blk == row_pos[i] / PS ? row_pos[i] % PS + 1 : PS;
        }
        float rescale[2];
        if (blk == mine.last_block) {
          SoftmaxStep<true>(s, sm.c[st], bias, num_keys, scale_log2, t, m, l, rescale);
        } else {
          SoftmaxStep<false>(s, sm.c[st], bias, num_keys, scale_log2, t, m, l, rescale);
        }
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
          o[4 * n] *= rescale[0];
          o[4 * n + 1] *= rescale[0];
          o[4 * n + 2] *= rescale[1];
          o[4 * n + 3] *= rescale[1];
        }

        // - O += P V: P's A fragments straight from the S accumulators.
        uint32_t p[PS / 16][4];
#pragma unroll
        for (int kk = 0; kk < PS / 16; ++kk) {
          p[kk][0] = PackBf16(s[8 * kk], s[8 * kk + 1]);
          p[kk][1] = PackBf16(s[8 * kk + 2], s[8 * kk + 3]);
          p[kk][2] = PackBf16(s[8 * kk + 4], s[8 * kk + 5]);
          p[kk][3] = PackBf16(s[8 * kk + 6], s[8 * kk + 7]);
        }
        const uint64_t v_desc = TileDescriptor(sm.v[st]);
        PinRegisters(o);
        WgmmaFence();
#pragma unroll
        for (int kk = 0; kk < PS / 16; ++kk) {
          WgmmaRegisterShared(o, p[kk], v_desc + kk * (16 * 128 >> 4));
        }
        WgmmaCommit();
        WgmmaWaitAll();
        PinRegisters(o);
      }
      __syncthreads();  // stage st is refilled by the next iteration's prefetch
    }
  }
  if (!mine.valid) return;

  // - Normalise and write this thread's two rows.
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    const int r = warp * 16 + g + 8 * i;
    if (r >= mine.num_rows) continue;
    const float inv = 1.0f / l[i];
    float* out = rows.out + static_cast<int64_t>(row_t[i]) * H * D + mine.head * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      *reinterpret_cast<float2*>(out + n * 8 + 2 * t) =
          make_float2(o[4 * n + 2 * i] * inv, o[4 * n + 2 * i + 1] * inv);
    }
  }
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
