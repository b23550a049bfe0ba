// What the Hopper prefill kernels (paged_prefill_wgmma.cu, paged_prefill_tma.cu) share: the
// 128-byte swizzle of their shared-memory tiles, wgmma descriptors and instructions, and the
// prefill task as they read it. Included by .cu files only.
#ifndef FOXSERVE_KERNELS_CUDA_WGMMA_COMMON_CUH_
#define FOXSERVE_KERNELS_CUDA_WGMMA_COMMON_CUH_

#include <cstdint>

#include "kernels/cuda/paged_attention_cuda.h"
#include "kernels/cuda/prefill_common.cuh"

namespace foxserve {
namespace kernels {
namespace prefill {

// Shared memory tiles are rows of 128 bytes in the swizzle wgmma's descriptors describe: the
// 16-byte chunk c of row r sits at chunk c ^ (r % 8) (from a 1024-byte boundary).
__device__ __forceinline__ int SwizzledOffset(int row, int chunk) {
  return row * 128 + ((chunk ^ (row & 7)) << 4);
}

// Shared-memory writes by ordinary stores and cp.async become visible to wgmma (the async proxy)
// only after this fence (and a barrier between the writers and the warpgroup).
__device__ __forceinline__ void FenceProxyAsync() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Matrix descriptor of a 64 x 64 bf16 tile in the 128-byte swizzle: start address, both byte
// offsets 1024 (eight 128-byte rows; for the MN-major V the leading one strides 64-wide column
// blocks, which a 64-wide tile does not have, and the stride one the k groups), layout type 1 =
// 128-byte swizzle. Built in two halves: the low word holds the start address and the leading
// byte offset, the high word is the same for every tile. Stepping a descriptor by 32-bit adds
// to its low word spares the 64-bit adds and moves the compiler otherwise emits before each
// wgmma (the address field cannot carry: shared addresses are below 256 KB); adding n moves the
// start by 16 n bytes.
constexpr uint32_t kTileDescriptorHigh = (1024 >> 4) | (1u << 30);
__device__ __forceinline__ uint32_t TileDescriptorLow(const void* tile) {
  return ((SharedAddress(tile) & 0x3FFFF) >> 4) | ((1024 >> 4) << 16);
}
__device__ __forceinline__ uint64_t Descriptor(uint32_t low) {
  return (static_cast<uint64_t>(kTileDescriptorHigh) << 32) | low;
}
__device__ __forceinline__ uint64_t TileDescriptor(const void* tile) {
  return Descriptor(TileDescriptorLow(tile));
}

__device__ __forceinline__ void WgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
// Waits until at most kPending of this warpgroup's committed wgmma groups are in flight.
template <int kPending>
__device__ __forceinline__ void WgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Keeps the compiler from moving accesses of registers that an in-flight wgmma reads or writes
// across its issue and wait.
template <int N>
__device__ __forceinline__ void PinRegisters(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void PinRegisters(uint32_t (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

#define FOXSERVE_WGMMA_D32                                                                       \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
// The 32 accumulator registers as asm operands: c is "+f" (read and written) or "=f" (written).
#define FOXSERVE_WGMMA_D32_REGS(c, d)                                                         \
  c(d[0]), c(d[1]), c(d[2]), c(d[3]), c(d[4]), c(d[5]), c(d[6]), c(d[7]), c(d[8]), c(d[9]),   \
      c(d[10]), c(d[11]), c(d[12]), c(d[13]), c(d[14]), c(d[15]), c(d[16]), c(d[17]),         \
      c(d[18]), c(d[19]), c(d[20]), c(d[21]), c(d[22]), c(d[23]), c(d[24]), c(d[25]),         \
      c(d[26]), c(d[27]), c(d[28]), c(d[29]), c(d[30]), c(d[31])
#define FOXSERVE_WGMMA_D32_OPERANDS(d) FOXSERVE_WGMMA_D32_REGS("+f", d)
#define FOXSERVE_WGMMA_D32_OUTPUTS(d) FOXSERVE_WGMMA_D32_REGS("=f", d)

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
// d0 | d1 (+)= A B for m64n128k16, A and B (K-major, 128 rows) in shared memory: d0 holds the
// first 64 columns of the accumulator, d1 the last 64. `First` (a product's first k-step) only
// writes them, so the compiler need not keep their previous values alive across a loop.
#define FOXSERVE_WGMMA_D64                                                                      \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "  \
  "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
  "%56, %57, %58, %59, %60, %61, %62, %63}"
__device__ __forceinline__ void WgmmaSharedShared128First(float (&d0)[32], float (&d1)[32],
                                                          uint64_t a, uint64_t b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " FOXSERVE_WGMMA_D64
      ", %64, %65, p, 1, 1, 0, 0;\n}\n"
      : FOXSERVE_WGMMA_D32_OUTPUTS(d0), FOXSERVE_WGMMA_D32_OUTPUTS(d1)
      : "l"(a), "l"(b), "r"(0));
}
__device__ __forceinline__ void WgmmaSharedShared128(float (&d0)[32], float (&d1)[32], uint64_t a,
                                                     uint64_t b) {
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " FOXSERVE_WGMMA_D64
      ", %64, %65, 1, 1, 1, 0, 0;\n"
      : FOXSERVE_WGMMA_D32_OPERANDS(d0), FOXSERVE_WGMMA_D32_OPERANDS(d1)
      : "l"(a), "l"(b));
}
#undef FOXSERVE_WGMMA_D64
// d += A B for m64n64k16, A in registers (a0..a3: the m16n8k16 A layout per warp), B MN-major
// in shared memory.
__device__ __forceinline__ void WgmmaRegisterShared(float (&d)[32], uint32_t a0, uint32_t a1,
                                                    uint32_t a2, uint32_t a3, uint64_t b) {
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " FOXSERVE_WGMMA_D32
      ", {%32, %33, %34, %35}, %36, 1, 1, 1, 1;\n"
      : FOXSERVE_WGMMA_D32_OPERANDS(d)
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(b));
}
// d, e += A B for m64n72k16 (A in registers as above, B MN-major in shared memory): d the first
// 64 columns, e the last 8 (the descriptor's leading byte offset reaches their 64-wide block).
__device__ __forceinline__ void WgmmaRegisterShared72(float (&d)[32], float (&e)[4], uint32_t a0,
                                                      uint32_t a1, uint32_t a2, uint32_t a3,
                                                      uint64_t b) {
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n72k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "
      "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35}, "
      "{%36, %37, %38, %39}, %40, 1, 1, 1, 1;\n"
      : FOXSERVE_WGMMA_D32_OPERANDS(d), "+f"(e[0]), "+f"(e[1]), "+f"(e[2]), "+f"(e[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(b));
}
#undef FOXSERVE_WGMMA_D32
#undef FOXSERVE_WGMMA_D32_OPERANDS
#undef FOXSERVE_WGMMA_D32_OUTPUTS
#undef FOXSERVE_WGMMA_D32_REGS

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

// A task past the end (of the wgmma kernel's last CTA, the TMA kernel's partial tile) reads the
// last task's fields and is marked invalid: with no branch around its loads, the tasks of a CTA
// or tile can be read together (their round trips are time the consumers may wait).
__device__ __forceinline__ TaskSpan ReadTask(const CudaAttentionRows& rows,
                                             const CudaPrefillTasks& tasks, int i) {
  TaskSpan s;
  s.valid = i < tasks.count;
  i = min(i, tasks.count - 1);  // count > 0: the launchers return before empty launches
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

// A warpgroup's view of its task's 64 query rows, in the m64nNk16 accumulator layout: thread
// (warp, g = lane / 4, t = lane % 4) holds rows warp * 16 + g + 8 i (i = 0, 1) and, of each
// 8-wide column group n, columns 8 n + 2 t and 8 n + 2 t + 1. Rows past num_rows repeat row 0
// (they are computed and not written out).
struct TaskRows {
  int token[2];     // the rows' tokens (batch indices)
  int position[2];  // their absolute positions
  double c[2];      // their absolute c (the query side of the decay)
};

__device__ __forceinline__ TaskRows ReadTaskRows(const CudaAttentionRows& rows,
                                                 const TaskSpan& task, int warp, int g) {
  TaskRows r;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int row = warp * 16 + g + 8 * i;
    r.token[i] = task.t0 + (row < task.num_rows ? row : 0);
    r.position[i] = rows.token_position[r.token[i]];
    r.c[i] = rows.row_c[static_cast<int64_t>(r.token[i]) * rows.num_heads + task.head];
  }
  return r;
}

// The chunk of 8 dims of a task's Q at row r (past num_rows: row 0's), dims 8 col on: loaded as
// fp32, stored rounded to bf16 into a swizzled 64 x 64 tile. Loaded past L1 (each is read
// once): in the persistent TMA kernel a tile's 48 KB of Q otherwise pushed the consumers'
// spilled registers out of the 60 KB of L1 its shared memory leaves (thirteenth stop: 2.17 ->
// 2.15 ms at 16x4096, three consumers).
struct QueryChunk {
  float4 lo, hi;
};
__device__ __forceinline__ QueryChunk LoadQueryChunk(const CudaAttentionRows& rows,
                                                     const TaskSpan& task, int r, int col) {
  const int token = task.t0 + (r < task.num_rows ? r : 0);
  const float* src =
      rows.q + static_cast<int64_t>(token) * rows.num_heads * D + task.head * D + col * 8;
  return QueryChunk{__ldcg(reinterpret_cast<const float4*>(src)),
                    __ldcg(reinterpret_cast<const float4*>(src + 4))};
}
__device__ __forceinline__ void StoreQueryChunk(uint8_t* tile, int r, int col,
                                                const QueryChunk& c) {
  *reinterpret_cast<uint4*>(tile + SwizzledOffset(r, col)) =
      make_uint4(PackBf16(c.lo.x, c.lo.y), PackBf16(c.lo.z, c.lo.w), PackBf16(c.hi.x, c.hi.y),
                 PackBf16(c.hi.z, c.hi.w));
}

// Q of the task's rows into its tile: 512 chunks, four a thread of the warpgroup (ctid: the
// thread's index in it). All loads come before the first store: the compiler cannot move a load
// above a store it cannot tell apart from it, and four round trips in a row would delay the
// CTA's first product.
__device__ __forceinline__ void StageQueryTile(uint8_t* tile, const CudaAttentionRows& rows,
                                               const TaskSpan& task, int ctid) {
  QueryChunk c[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int chunk = ctid + i * 128;
    c[i] = LoadQueryChunk(rows, task, chunk / 8, chunk % 8);
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int chunk = ctid + i * 128;
    StoreQueryChunk(tile, chunk / 8, chunk % 8, c[i]);
  }
}

// The probabilities of 64 keys (an m64n64 accumulator) as the A fragments of O += P V: k-step
// kk's four registers are p[4 kk .. 4 kk + 3].
__device__ __forceinline__ void PackProbabilities(const float (&s)[32], uint32_t (&p)[16]) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    p[4 * kk] = PackBf16(s[8 * kk], s[8 * kk + 1]);
    p[4 * kk + 1] = PackBf16(s[8 * kk + 2], s[8 * kk + 3]);
    p[4 * kk + 2] = PackBf16(s[8 * kk + 4], s[8 * kk + 5]);
    p[4 * kk + 3] = PackBf16(s[8 * kk + 6], s[8 * kk + 7]);
  }
}

// Rescales this thread's two rows of O (their online-softmax maxima moved).
__device__ __forceinline__ void RescaleRows(float (&o)[32], const float (&rescale)[2]) {
#pragma unroll
  for (int n = 0; n < D / 8; ++n) {
    o[4 * n] *= rescale[0];
    o[4 * n + 1] *= rescale[0];
    o[4 * n + 2] *= rescale[1];
    o[4 * n + 3] *= rescale[1];
  }
}

// Normalises this thread's two rows of O by their sums (l: the thread's partial sums, reduced
// over the row's four threads here) and writes the task's real rows.
__device__ __forceinline__ void WriteTaskRows(const CudaAttentionRows& rows, const TaskSpan& task,
                                              const TaskRows& r, const float (&o)[32],
                                              float (&l)[2], int warp, int g, int t) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    if (warp * 16 + g + 8 * i >= task.num_rows) continue;
    const float inv = 1.0f / l[i];
    float* out = rows.out + static_cast<int64_t>(r.token[i]) * rows.num_heads * D + task.head * D;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      *reinterpret_cast<float2*>(out + n * 8 + 2 * t) =
          make_float2(o[4 * n + 2 * i] * inv, o[4 * n + 2 * i + 1] * inv);
    }
  }
}

}  // namespace prefill
}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_WGMMA_COMMON_CUH_
