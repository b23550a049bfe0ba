// Hopper prefill with a producer warp and pipelined consumers (LaunchPagedPrefillTma).
//
// Why: the wgmma kernel (paged_prefill_wgmma.cu) runs S = Q K^T, the softmax and O += P V of a
// block one after another in each warpgroup and couples its two warpgroups with two CTA barriers
// a block; Nsight showed it latency-bound (58% of issue slots busy) with tensor cores, exp2 and
// the other softmax instructions taking about the sum of their times. Here, as in
// FlashAttention-3:
//   - one producer warp (one thread) copies KV pages with the tensor memory accelerator (TMA:
//     two bulk copies a page, its K rows and its V | C rows, 128 bytes each, landing in the
//     128-byte swizzle that wgmma reads) into a ring of stages guarded by mbarriers; consumers
//     never compute an address or wait on a CTA barrier;
//   - each consumer warpgroup owns a 64-row task and takes 128 keys (two pages) an iteration:
//     the stage's two K tiles lie back to back, so S = Q K^T is one m64n128 product a k-step;
//   - where the rows carry logit bounds (|q.k| scale <= kFixedMaxBound; the planner has them from
//     the measured norms), the bound is every row's softmax maximum: per score one FFMA (scale
//     and the row's decay), one FFMA (the key's decay), one ex2 and one add, with no row maxima,
//     shuffles or rescaling of O, and a score's exponent can start as soon as it lands. Without
//     bounds the online softmax runs (one more FFMA and a max per score).
//   - with two consumers (the default) a warpgroup issues its previous P V and this S = Q K^T
//     and waits for both before the softmax, the other warpgroup filling the tensor cores
//     meanwhile; with three (FlashAttention-3's hdim-64 shape) each runs its softmax under its
//     previous P V, holding S, P and O at once in 160 registers (what else its loop keeps is
//     read from shared memory: see RowState, kBoundedArg and the state's placement).
// Measured on the H200 (bench/RESULTS.md, fourteenth stop), dense with bounds at 2x32768: two
// consumers 16.0 ms, three 13.2 (SDPA 14.3), the wgmma kernel 21.1; end to end the two-consumer
// shape was as fast or faster on short prompts (twelfth stop, before the fourteenth made the
// three-consumer loop 5% faster), so the CUDA model takes three from 16384 positions on
// (FOXSERVE_PREFILL_KERNEL=auto|tma|tma3|wgmma|mma).
// The kernel is persistent (one CTA an SM): a CTA runs tile after tile of kConsumers
// consecutive tasks, the KV stream flowing from one tile into the next, while three spare warps
// of the producer warpgroup stage the next tile (tasks, rows, Q); launching a CTA a tile cost
// each its start, about 5 us of 37 at 16x4096 (twelfth stop: 2.37 -> 2.18 ms, three consumers).
// In a tile, tasks of the same (sequence, head) whose key ranges join form one walk over the
// union of their ranges, sharing every page copied; the producer arrives on a stage's "empty"
// barrier for the consumers of the walk that do not need it.
//
// The last page of a walk may have unwritten slots (NaN poison or stale data). Their scores are
// masked by selection, and the producer zeroes those V rows in shared memory before it releases
// the stage: every consumer multiplies every V row of a stage (0 * NaN would poison O).
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/paged_attention_cuda.h"
#include "kernels/cuda/prefill_common.cuh"
#include "kernels/cuda/wgmma_common.cuh"

namespace foxserve {
namespace kernels {
namespace prefill {
namespace tma {
namespace {

// A kernel shape: consumer warpgroups (one task each), each taking two pages (128 keys) an
// iteration. Registers are split per SM sub-partition (16 K each, warps dealt round-robin); the
// producer warpgroup gives most of its share to the consumers with setmaxnreg, as
// FlashAttention-3 does. With three consumers (kOverlap) the softmax runs while the previous
// iteration's P V is on the tensor cores (P, S and O live at once); with two a warp waits for
// both products before its softmax and relies on the other warpgroup to keep the tensor cores
// busy (measured faster for two, and three without the overlap spill and were slower).
// kTensorSumsArg: the rows' sums of P come from the tensor cores: each V slot carries a block of
// bf16 ones that O += P V reads as 8 more columns of V (m64n72), so that no thread adds up P.
// kTimelineArg: the CTAs stamp a timeline (LaunchPagedPrefillTma's `timeline`); a build of its
// own, so that the kernels that serve run without its stores and branches (a runtime check
// measured 0.5-0.9% slower for two consumers).
// kBoundedArg: every task's logit bound is known to be at most kFixedMaxBound (the host's
// CudaAttentionRows::max_row_logit_bound), so the build has no online-softmax path. With it
// ptxas allocated the bounded loop's registers around both paths' live values: three consumers
// moved 41 GB through local memory at 2x32768, 33 GB once the rows' state was in shared memory
// and 29 GB in this build (Nsight Compute; bench/RESULTS.md, eleventh stop).
template <int kConsumersArg, bool kTensorSumsArg = false, bool kTimelineArg = false,
          bool kBoundedArg = false>
struct Shape {
  static constexpr int kConsumers = kConsumersArg;
  static constexpr bool kTimeline = kTimelineArg;
  static constexpr bool kBounded = kBoundedArg;
  static constexpr int kPages = 2;
  static constexpr bool kOverlap = kConsumers == 3;
  static constexpr bool kTensorSums = kTensorSumsArg;
  // A page's V | C, rounded up to the 1 KB swizzle period; then the ones block.
  static constexpr int kVcBytes = (kTensorSums ? 17 : 9) * 1024;
  static constexpr int kStages = 4;
  // Tiles staged at once: the one the consumers run and the next (the tensor-sums build's larger
  // V slots leave shared memory for one).
  static constexpr int kTileSlots = kTensorSums ? 1 : 2;
  static constexpr int kThreads = 128 * (kConsumers + 1);
  // Two consumers: 3 warps a sub-partition; three: 4 at 160 (FlashAttention-3's split for
  // hdim 64, which leaves the producer 32; both spill some there, 440 bytes a thread).
  static constexpr int kProducerRegisters = kConsumers == 3 ? 32 : 56;
  static constexpr int kConsumerRegisters = kConsumers == 3 ? 160 : 224;
  static_assert(kProducerRegisters * 128 + kConsumerRegisters * 128 * kConsumers <= 65536,
                "the register file of an SM");
};
constexpr int kPageRows = static_cast<int>(kPageBytes / 128);  // 130: K 64 | V 64 | C 2
constexpr int kOnesOffset = 9 * 1024;  // in a V slot: the ones block (kTensorSums)
constexpr int kTileBytes = PS * D * 2;
// The largest logit bound used as every row's softmax maximum: with 2 * 30 below fp32's 87 of
// exponent range, probabilities that flush to zero weigh less than e^-27 of their row's largest.
constexpr float kFixedMaxBound = 30.0f;

static_assert(kPageBytes == kPageRows * 128, "a page is a whole number of 128-byte rows");
static_assert(D * 2 == 128, "one tile row must be one 128-byte swizzle row");

// What a consumer's loop needs of a query row only once an iteration (its c, for the rows'
// decay to a stage's pages), only in masked iterations (its position) or after the loop (its
// token): read from shared memory when needed rather than held in registers. With three
// consumers each thread has 160 registers, and S, P and O alone take 128 of them; what else
// stayed live across the loop was spilled to local memory and reloaded every iteration.
struct RowState {
  double c;
  int position, token;
};

// A tile's walks: consecutive tasks of one (sequence, head) whose key ranges join share one.
template <int kConsumers>
struct Walks {
  int count = 0;
  int first[kConsumers + 1];  // walk w covers tasks first[w] .. first[w + 1] - 1
  int lo[kConsumers], hi[kConsumers], hi_written[kConsumers];
};

template <typename S>
struct SharedState {  // placed at a 1024-byte boundary
  static constexpr int kStages = S::kStages, kSlots = S::kTileSlots;
  // A stage's pages: their K tiles back to back (one 128-key operand of S = Q K^T), and each
  // page's V and C.
  uint8_t k[kStages][S::kPages][kTileBytes];
  uint8_t vc[kStages][S::kPages][S::kVcBytes];
  // A staged tile (StageTile): its Q, its index (-1: none was left), its tasks (consumer g's is
  // task g), its rows' state and the largest logit bound of each half (32 rows) of a task.
  uint8_t q[kSlots][S::kConsumers][kTileBytes];
  int tile[kSlots];
  TaskSpan task[kSlots][S::kConsumers];
  Walks<S::kConsumers> walks[kSlots];
  RowState row_state[kSlots][S::kConsumers][64];
  float bound[kSlots][S::kConsumers][2];
  double base[kStages][S::kPages];  // block_base of the stage's pages
  uint64_t full[kStages], empty[kStages];
  uint64_t staged[kSlots], consumed[kSlots];  // a slot's tile staged; its consumers done with it
  // The producer is kTakeAhead iterations from the end of its tile: time to take the next.
  uint64_t take_next;
  uint64_t landed;  // a partly written page's copy, before the producer zeroes its tail
  // The iteration whose copy into the stage was issued last. A consumer that skipped other
  // walks' iterations (or the start of its own) can be phases ahead of a stage's barrier, and
  // a parity wait cannot tell phase p from p - 2: it first waits until its iteration is issued.
  int issued[kStages];
};
template <typename S>
constexpr int kSharedBytes = static_cast<int>(sizeof(SharedState<S>));

// - mbarriers.
__device__ __forceinline__ void BarrierInit(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(SharedAddress(bar)), "r"(count));
}
__device__ __forceinline__ void BarrierWait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n}\n" ::"r"(SharedAddress(bar)),
      "r"(parity)
      : "memory");
}
__device__ __forceinline__ void BarrierArrive(uint64_t* bar, int count) {
  asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0], %1;\n" ::"r"(
                   SharedAddress(bar)),
               "r"(count)
               : "memory");
}
__device__ __forceinline__ void BarrierExpectBytes(uint64_t* bar, int bytes) {
  asm volatile("mbarrier.arrive.expect_tx.release.cta.shared::cta.b64 _, [%0], %1;\n" ::"r"(
                   SharedAddress(bar)),
               "r"(bytes)
               : "memory");
}
// A box of rows (the map's box) of the pool viewed as [pages * kPageRows][128 bytes], from row
// `row`, into `dst`.
__device__ __forceinline__ void CopyRows(void* dst, const CUtensorMap* map, int32_t row,
                                         uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(SharedAddress(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(0), "r"(row), "r"(SharedAddress(bar))
      : "memory");
}
// The global nanosecond timer (the timeline's stamps).
__device__ __forceinline__ uint64_t GlobalNanoseconds() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Valid tasks are a prefix of a tile's (only the tile taken first has fewer than kConsumers).
template <int kConsumers>
__device__ __forceinline__ Walks<kConsumers> PlanWalks(const TaskSpan (&t)[kConsumers]) {
  Walks<kConsumers> w;
  int valid = 0;
  for (; valid < kConsumers && t[valid].valid; ++valid) {
    const int i = valid, k = w.count - 1;
    const bool joins = i > 0 && t[i].head == t[i - 1].head && t[i].table == t[i - 1].table &&
                       t[i].start <= w.hi[k] + 1 && w.lo[k] <= t[i].last_block + 1;
    if (!joins) {
      w.first[w.count] = i;
      w.lo[w.count] = t[i].start;
      w.hi[w.count] = t[i].last_block;
      w.hi_written[w.count] = t[i].last_written;
      ++w.count;
    } else {
      w.lo[k] = min(w.lo[k], t[i].start);
      if (t[i].last_block > w.hi[k]) {
        w.hi[k] = t[i].last_block;
        w.hi_written[k] = t[i].last_written;
      } else if (t[i].last_block == w.hi[k]) {
        w.hi_written[k] = max(w.hi_written[k], t[i].last_written);
      }
    }
  }
  w.first[w.count] = valid;
  return w;
}

__device__ __forceinline__ bool Overlaps(const TaskSpan& t, int b0, int b1) {
  return t.start <= b1 && b0 <= t.last_block;
}

// The decays (c relative to the page's base) of keys 8 n + 2 t4 and 8 n + 2 t4 + 1 of the page
// whose V | C slot is `vc`: C row key / 32 = n / 4 after V, its 16-byte chunk (key % 32) / 4
// swizzled by the row, i.e. float 8 (n % 4) + (2 t4, or 2 t4 ^ 4 in the odd row) of it. Written
// so that the only run-time parts are those two per-thread offsets: with n unrolled the compiler
// otherwise keeps eight swizzled offsets live across the loop (tma3 spilled them, reloading
// them every iteration).
__device__ __forceinline__ float2 KeyDecays(const uint8_t* vc, int n, int t4) {
  const float* c = reinterpret_cast<const float*>(vc + kTileBytes);
  const int crow = n / 4, offset = crow == 0 ? 2 * t4 : (2 * t4) ^ 4;
  return *reinterpret_cast<const float2*>(c + crow * 32 + 8 * (n % 4) + offset);
}

// Calls f with std::true_type when `flag`, else std::false_type: one compiled path for each
// value of a runtime condition (whether an iteration masks scores; whether a task's logit bound
// serves as its softmax maximum).
template <typename F>
__device__ __forceinline__ void Dispatch(bool flag, F&& f) {
  if (flag) {
    f(std::true_type());
  } else {
    f(std::false_type());
  }
}

// The index (in the order taken) of this CTA's t-th tile, or -1 when none is left. With
// tasks.tile_counter the CTAs take tiles from a counter they share, so that an SM takes the next
// as soon as it has room for one, whatever the lengths of the tiles before; without one, every
// gridDim.x-th. A take that finds none left also counts its CTA out, and the last CTA out zeroes
// the counters for the next launch.
__device__ __forceinline__ int TakeTile(const CudaPrefillTasks& tasks, int num_tiles, int t) {
  if (tasks.tile_counter == nullptr) {
    const int tile = blockIdx.x + t * gridDim.x;
    return tile < num_tiles ? tile : -1;
  }
  const int tile = atomicAdd(&tasks.tile_counter[0], 1);
  if (tile < num_tiles) return tile;
  __threadfence();  // this CTA's last take, before it counts itself out
  if (atomicAdd(&tasks.tile_counter[1], 1) == static_cast<int>(gridDim.x) - 1) {
    atomicExch(&tasks.tile_counter[0], 0);  // every CTA has taken its last
    atomicExch(&tasks.tile_counter[1], 0);
  }
  return -1;
}

// Stages the CTA's t-th tile in slot t % kTileSlots: takes its index, reads its tasks (tile j in
// the order taken runs tasks from (num_tiles - 1 - j) kConsumers on: the list's end first, where
// a (sequence, head)'s longest query blocks are), its rows' state and logit bounds, and its Q
// (rounded to bf16, swizzled). Run by kThreads threads (this one: `pt`) that `sync` joins: the
// whole CTA for its first tile, which everything waits for; after that three warps of the
// producer warpgroup, a tile ahead of the consumers, so that the memory round trips a tile's
// start costs (index, task, rows and Q) are off their path. Returns whether a tile was left.
template <typename S, int kThreads, typename Sync, typename Stamp>
__device__ __forceinline__ bool StageTile(SharedState<S>& sm, const CudaAttentionRows& rows,
                                          const CudaPrefillTasks& tasks, int num_tiles, int t,
                                          int pt, Sync&& sync, Stamp&& stamp) {
  constexpr int kConsumers = S::kConsumers;
  const int slot = t % S::kTileSlots;
  if (pt == 0) {
    const int tile = TakeTile(tasks, num_tiles, t);
    sm.tile[slot] = tile;
    if (S::kTimeline && tile >= 0) {
      uint32_t sm_id;
      asm volatile("mov.u32 %0, %%smid;" : "=r"(sm_id));
      stamp(tile, 0, sm_id);
      stamp(tile, 1, GlobalNanoseconds());
      for (int i = 3; i < kPrefillTimelineSlots; ++i) stamp(tile, i, 0);  // no task: stays 0
    }
  }
  sync();
  const int tile = sm.tile[slot];
  if (tile < 0) return false;
  if (pt < kConsumers) {
    sm.task[slot][pt] = ReadTask(rows, tasks, (num_tiles - 1 - tile) * kConsumers + pt);
  }
  sync();
  if (pt == 0) sm.walks[slot] = PlanWalks(sm.task[slot]);
  if constexpr (kThreads != S::kThreads) {
    // Q's rows (two 128-byte lines each) towards L2 first: the stagers' 32 registers hold two
    // chunks a thread at a time, so the passes below are a chain of round trips, which then
    // wait for L2 rather than memory.
    for (int i = pt; i < 128 * kConsumers; i += kThreads) {
      const int g = i / 128, r = i % 128 / 2;
      const TaskSpan& task = sm.task[slot][g];
      const int token = task.t0 + (r < task.num_rows ? r : 0);
      const float* src = rows.q + static_cast<int64_t>(token) * rows.num_heads * D +
                         task.head * D + (i % 2) * 32;
      asm volatile("prefetch.global.L2 [%0];\n" ::"l"(src));
    }
  }
  // Each row's state and bound, a warp taking 32 rows (half a task) at a time. Rows past a
  // task's num_rows repeat its row 0 (computed, not written out).
  for (int half = pt / 32; half < 2 * kConsumers; half += kThreads / 32) {
    const int g = half / 2, row = 32 * (half % 2) + pt % 32;
    const TaskSpan& task = sm.task[slot][g];
    const int token = task.t0 + (row < task.num_rows ? row : 0);
    const int64_t r = static_cast<int64_t>(token) * rows.num_heads + task.head;
    float b = rows.row_logit_bound != nullptr ? rows.row_logit_bound[r] : 0.0f;
    sm.row_state[slot][g][row] = RowState{rows.row_c[r], rows.token_position[token], token};
#pragma unroll
    for (int d = 1; d < 32; d *= 2) b = fmaxf(b, __shfl_xor_sync(0xffffffffu, b, d));
    if (pt % 32 == 0) sm.bound[slot][g][half % 2] = b;
  }
  // Q: 512 chunks of 8 dims a task. The whole CTA loads all of its chunks before storing any
  // (four round trips in a row would delay its first product); three warps with 32 registers a
  // thread two at a time.
  constexpr int kChunks = 512 * kConsumers;
  constexpr int kPerThread = (kChunks + kThreads - 1) / kThreads;
  constexpr int kBatch = kThreads == S::kThreads ? kPerThread : 2;
  for (int first = 0; first < kPerThread; first += kBatch) {
    QueryChunk c[kBatch];
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int chunk = min(pt + (first + i) * kThreads, kChunks - 1);
      c[i] = LoadQueryChunk(rows, sm.task[slot][chunk / 512], chunk % 512 / 8, chunk % 8);
    }
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int chunk = pt + (first + i) * kThreads;
      if (first + i >= kPerThread || chunk >= kChunks) continue;
      StoreQueryChunk(sm.q[slot][chunk / 512], chunk % 512 / 8, chunk % 8, c[i]);
    }
  }
  FenceProxyAsync();  // Q, before the consumers' wgmma read it
  if (S::kTimeline && pt == 0) stamp(tile, 2, GlobalNanoseconds());
  return true;
}

// As many CTAs as SMs (or tiles), each running tiles until none is left (TakeTile); why, in
// this file's opening comment.
template <typename S>
__global__ void __launch_bounds__(S::kThreads, 1)
    PagedPrefillTmaKernel(const __grid_constant__ CUtensorMap k_map,
                          const __grid_constant__ CUtensorMap vc_map, int32_t oob_page,
                          CudaAttentionRows rows, CudaPrefillTasks tasks, int num_tiles,
                          uint64_t* timeline) {
  constexpr int kConsumers = S::kConsumers, kPages = S::kPages, kStages = S::kStages;
  constexpr int kSlots = S::kTileSlots;
  constexpr int kStagers = 96;  // the threads that stage the tiles after the first
  // The next tile is taken when the producer is this many iterations (of 128 keys) from the end
  // of its current one, so that it is staged when the consumers finish (timelines: staging
  // 7-12 us, a CTA's iteration about 2 us at 16x4096 and 1.7 at 2x32768 dense, the producer up
  // to 4 ahead of the consumers), and not sooner: a CTA holding a taken tile through
  // a whole long one left other SMs idle at the end of the launch.
  constexpr int kTakeAhead = 6;
  // The state at the start of dynamic shared memory, which sits on a 1024-byte boundary (the
  // 128-byte swizzle's period; checked below): every address in it is then a constant or a
  // constant plus the consumer's offset. Aligning a run-time base instead kept the base and the
  // tiles' descriptors in registers, which three consumers spilled (1-1.5% slower).
  extern __shared__ __align__(1024) uint8_t raw[];
  SharedState<S>& sm = *reinterpret_cast<SharedState<S>*>(raw);
  const int tid = threadIdx.x, warp_all = tid / 32, lane = tid % 32;
  // A tile's timeline record (see LaunchPagedPrefillTma), addressed afresh at each stamp so that
  // no register holds it across the main loop.
  auto stamp = [&](int tile, int slot, uint64_t value) {
    if constexpr (S::kTimeline) {
      timeline[int64_t{tile} * kPrefillTimelineSlots + slot] = value;
    }
  };
  if (tid == 0) {
    if (SharedAddress(raw) % 1024 != 0) __trap();
    for (int s = 0; s < kStages; ++s) {
      BarrierInit(&sm.full[s], 1);
      BarrierInit(&sm.empty[s], 4 * kConsumers);  // one arrival per consumer warp
    }
    for (int s = 0; s < kSlots; ++s) {
      BarrierInit(&sm.staged[s], kStagers);
      BarrierInit(&sm.consumed[s], 4 * kConsumers);
    }
    BarrierInit(&sm.landed, 1);
    BarrierInit(&sm.take_next, 1);
    for (int s = 0; s < kStages; ++s) sm.issued[s] = -1;
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  if constexpr (S::kTensorSums) {
    constexpr int kChunks = kTileBytes / 16;  // 16-byte chunks of a ones block
    for (int i = tid; i < kStages * kPages * kChunks; i += S::kThreads) {
      uint8_t* ones = sm.vc[i / (kPages * kChunks)][i / kChunks % kPages] + kOnesOffset;
      reinterpret_cast<uint4*>(ones)[i % kChunks] =
          make_uint4(0x3F803F80u, 0x3F803F80u, 0x3F803F80u, 0x3F803F80u);  // bf16 1.0
    }
    FenceProxyAsync();
  }
  const bool any = StageTile<S, S::kThreads>(
      sm, rows, tasks, num_tiles, 0, tid, [] { __syncthreads(); }, stamp);
  __syncthreads();
  if (!any) return;  // the other CTAs took every tile

  if (warp_all >= 4 * kConsumers) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(S::kProducerRegisters));
    if (warp_all == 4 * kConsumers) {
      // - Producer: its first warp walks the stages of tile after tile; lane 0 issues the TMA
      // copies.
      int g = 0, landed_uses = 0;
      for (int t = 0;; ++t) {
        const int slot = t % kSlots;
        BarrierWait(&sm.staged[slot], (t / kSlots) & 1);
        if (sm.tile[slot] < 0) return;
        const Walks<kConsumers>& walks = sm.walks[slot];
        const TaskSpan(&task)[kConsumers] = sm.task[slot];
        int left = 0;  // iterations of the tile left to issue
        for (int w = 0; w < walks.count; ++w) {
          left += (walks.hi[w] - walks.lo[w] + kPages) / kPages;
        }
        if (left <= kTakeAhead && lane == 0) BarrierArrive(&sm.take_next, 1);
        for (int w = 0; w < walks.count; ++w) {
          const TaskSpan& lead = task[walks.first[w]];
          const int32_t* pages = rows.pages + lead.table;
          const double* base = rows.block_base + lead.table;
          const int hi = walks.hi[w], hi_written = walks.hi_written[w];
          for (int b0 = walks.lo[w]; b0 <= hi; b0 += kPages, ++g) {
            const int stage = g % kStages;
            if (--left == kTakeAhead && lane == 0) BarrierArrive(&sm.take_next, 1);
            if (g >= kStages) BarrierWait(&sm.empty[stage], ((g / kStages) + 1) & 1);
            const int last = min(b0 + kPages - 1, hi);  // the stage's last page in the walk
            int users = 0;
            for (int i = walks.first[w]; i < walks.first[w + 1]; ++i) {
              users += Overlaps(task[i], b0, last) ? 1 : 0;
            }
            int32_t id[kPages];
            double page_base[kPages];  // loaded before any store (see StageQueryTile)
#pragma unroll
            for (int h = 0; h < kPages; ++h) {
              id[h] = b0 + h <= hi ? pages[b0 + h] : 0;
              page_base[h] = base[min(b0 + h, hi)];
            }
#pragma unroll
            for (int h = 0; h < kPages; ++h) {
              if (id[h] < 0) __trap();  // an evicted block was planned as live
            }
            // The walk's last page, when partly written, lands on the `landed` barrier first: the
            // warp zeroes its unwritten V rows (NaN poison or stale data; the consumers' P V
            // multiplies every V row, and 0 * NaN is NaN), then releases the stage.
            const int partial = hi_written < PS && last == hi ? hi - b0 : -1;
            uint64_t* copied = partial >= 0 ? &sm.landed : &sm.full[stage];
            if (lane == 0) {
              *static_cast<volatile int*>(&sm.issued[stage]) = g;
              if (users < kConsumers) BarrierArrive(&sm.empty[stage], 4 * (kConsumers - users));
              BarrierExpectBytes(copied, static_cast<int>(kPages * kPageBytes));
#pragma unroll
              for (int h = 0; h < kPages; ++h) {
                // A page past the walk's end is copied from past the end of the pool: TMA fills
                // zeros.
                sm.base[stage][h] = page_base[h];
                const int32_t row = (b0 + h <= hi ? id[h] : oob_page) * kPageRows;
                CopyRows(sm.k[stage][h], &k_map, row, copied);
                CopyRows(sm.vc[stage][h], &vc_map, row + PS, copied);
              }
            }
            if (partial >= 0) {
              BarrierWait(&sm.landed, landed_uses++ & 1);
              uint8_t* v = sm.vc[stage][partial] + hi_written * 128;
              for (int i = lane; i < (PS - hi_written) * 8; i += 32) {
                reinterpret_cast<uint4*>(v)[i] = make_uint4(0, 0, 0, 0);
              }
              FenceProxyAsync();  // the zeros, before the consumers' wgmma reads them
              __syncwarp();
              if (lane == 0) BarrierArrive(&sm.full[stage], 1);
            }
            __syncwarp();
          }
        }
      }
    }
    // - The other three warps stage the tiles after the first, each once its slot's previous
    // tile is consumed and the producer nears the end of the tile before. The first tile's
    // arrival (staged above) makes every tile's phase of its slot's barrier t / kSlots.
    const int pt = tid - 128 * kConsumers - 32;
    BarrierArrive(&sm.staged[0], 1);
    for (int t = 1;; ++t) {
      const int slot = t % kSlots;
      if (t >= kSlots) BarrierWait(&sm.consumed[slot], (t / kSlots - 1) & 1);
      BarrierWait(&sm.take_next, (t - 1) & 1);
      const bool more = StageTile<S, kStagers>(
          sm, rows, tasks, num_tiles, t, pt,
          [] {
            asm volatile("bar.sync %0, %1;\n" ::"n"(S::kConsumers + 1), "n"(kStagers) : "memory");
          },
          stamp);
      BarrierArrive(&sm.staged[slot], 1);
      if (!more) return;
    }
  }

  // - Consumers.
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(S::kConsumerRegisters));
  const int group = warp_all / 4, warp = warp_all % 4;
  const int g8 = lane / 4, t4 = lane % 4;  // accumulator fragment coordinates
  // The running tile, set at its start: its slot, this consumer's task, its first iteration
  // (global: stage g % kStages) and the first block of its walk, its rows and its Q.
  int slot = 0, g = 0, lo = 0;
  // This consumer's task in the running tile. Two consumers hold a copy of it; three hold only
  // its last block and read the rest from shared memory where needed (fewer values live across
  // their loop, which spills: 2.10 -> 2.03 ms dense at 16x4096, 13.8 -> 13.2 at 2x32768; two
  // consumers, which do not spill, were 1-3% slower that way).
  TaskSpan mine;
  int last_block = 0;
  auto running_task = [&]() -> const TaskSpan& {
    return S::kOverlap ? sm.task[slot][group] : mine;
  };
  const RowState* state = nullptr;  // row i of this thread: state[8 i]
  uint32_t q_desc = 0;
  // The largest logit bound of the task's rows. Used as every row's softmax maximum, it spares
  // the row maxima and the rescaling of O, and each exponent can start as soon as its score
  // lands. Safe while 2 bound stays well inside fp32's exponent range: a row's own key scores
  // at least -bound (its decay is 0), so its largest probability is at least e^(-2 bound).
  // Read from shared memory where needed (also once an iteration of the bounded loop) rather
  // than held across the loop.
  auto group_bound = [&]() {
    const float2 w = *reinterpret_cast<const float2*>(sm.bound[slot][group]);
    return fmaxf(w.x, w.y);
  };

  const float scale = rows.scale;
  const uint32_t k0_desc = TileDescriptorLow(sm.k[0][0]);    // stage s: + s P tiles
  const uint32_t vc0_desc = TileDescriptorLow(sm.vc[0][0]);  // stage s page h: + (s P + h) slots
  auto consume = [&](auto fixed_max) {
    constexpr bool kFixedMax = decltype(fixed_max)::value;
    float o[32], s[kPages][32];
    // kTensorSums: the sums of rows g, g, g + 8, g + 8.
    [[maybe_unused]] float row_sums[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    uint32_t p[kPages][16];
    // O (and the row sums) against the compiler moving their accesses across a wgmma's issue
    // and wait.
    auto pin_accumulators = [&]() {
      PinRegisters(o);
      if constexpr (S::kTensorSums) PinRegisters(row_sums);
    };
#pragma unroll
    for (int i = 0; i < 32; ++i) o[i] = 0.0f;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
#pragma unroll
      for (int h = 0; h < kPages; ++h) p[h][i] = 0;
    }
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // m: natural-log units
    // Every wgmma is issued unconditionally (ptxas serializes wgmma on divergent paths): a half
    // the task does not see has P = 0 against finite V (live pages, zero-filled tails and zero
    // pages), and the first iteration's "previous" P V is P = 0 against its own stage.
    const int first_pair = lo + (max(running_task().start, lo) - lo) / kPages * kPages;
    g += (first_pair - lo) / kPages;
    // The previous iteration's stage; -1 in the first (nothing to release, and its "previous"
    // P V reads its own stage with P = 0).
    int prev_stage = -1;

    // O += P V of the previous iteration's stage.
    auto issue_pv = [&](int pv_stage) {
#pragma unroll
      for (int h = 0; h < kPages; ++h) {
        const uint32_t v_desc = vc0_desc + (pv_stage * kPages + h) * S::kVcBytes / 16;
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
          if constexpr (S::kTensorSums) {
            // The leading byte offset (bits 16-29) reaches the ones block from V.
            constexpr uint32_t kOnesLeading = (kOnesOffset / 16) << 16;
            const uint32_t desc = (v_desc & 0xFFFFu) + kk * (16 * 128 / 16);
            WgmmaRegisterShared72(o, row_sums, p[h][4 * kk], p[h][4 * kk + 1], p[h][4 * kk + 2],
                                  p[h][4 * kk + 3], Descriptor(desc | kOnesLeading));
          } else {
            WgmmaRegisterShared(o, p[h][4 * kk], p[h][4 * kk + 1], p[h][4 * kk + 2],
                                p[h][4 * kk + 3], Descriptor(v_desc + kk * (16 * 128 / 16)));
          }
        }
      }
    };

    for (int b0 = first_pair; b0 <= last_block; b0 += kPages, ++g) {
      const int stage = g % kStages;
      const int start = sm.task[slot][group].start;  // read again rather than held across the loop
      bool half[kPages];
      bool masked = b0 + kPages - 1 >= last_block;
#pragma unroll
      for (int h = 0; h < kPages; ++h) {
        const int blk = b0 + h;
        half[h] = blk >= start && blk <= last_block;
        masked = masked || !half[h];
      }
      while (*static_cast<volatile int*>(&sm.issued[stage]) != g) __nanosleep(64);
      BarrierWait(&sm.full[stage], (g / kStages) & 1);

      // - The row's decay to each page of the stage (natural-log units); the keys' own, relative
      // to their page's base, come from the page's C rows as the scores are taken.
      float bias[kPages][2];
#pragma unroll
      for (int h = 0; h < kPages; ++h) {
        const double page_base = sm.base[stage][h];
#pragma unroll
        for (int i = 0; i < 2; ++i) bias[h][i] = static_cast<float>(state[8 * i].c - page_base);
      }

      // - S = Q K^T for the stage's pages (with three consumers, the previous iteration's P V
      // behind it). (Scoring each page as soon as its own S lands measured 2-3% slower.) S is only
      // written here: the last iteration's scores are dead.
      WgmmaFence();
      const uint32_t k_desc = k0_desc + stage * kPages * kTileBytes / 16;
      WgmmaSharedShared128First(s[0], s[1], Descriptor(q_desc), Descriptor(k_desc));
#pragma unroll
      for (int kk = 1; kk < D / 16; ++kk) {
        WgmmaSharedShared128(s[0], s[1], Descriptor(q_desc + 2 * kk), Descriptor(k_desc + 2 * kk));
      }
      WgmmaCommit();
      if constexpr (S::kOverlap) {
        issue_pv(prev_stage < 0 ? stage : prev_stage);
        WgmmaCommit();
        WgmmaWait<1>();
      } else {
        WgmmaWait<0>();  // this S, and the previous iteration's P V
        pin_accumulators();
      }
#pragma unroll
      for (int h = 0; h < kPages; ++h) PinRegisters(s[h]);

      // Calls f(x, c_key, i, j, beyond) for each score x of page h this thread holds: c_key the
      // key's decay relative to the page's base, i its row (g or g + 8), j = (n % 2) * 2 + e its
      // place among four partial chains, beyond whether the key lies past what row i may see
      // (only in a masked iteration).
      auto for_each_score = [&](int h, auto masked, auto&& f) {
        int limit[2] = {PS, PS};  // keys of the page that each row may see (masked only)
        if constexpr (decltype(masked)::value) {
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            limit[i] = !half[h] ? 0
                                : (b0 + h == last_block ? state[8 * i].position % PS + 1 : PS);
          }
        }
#pragma unroll
        for (int n = 0; n < PS / 8; ++n) {
          const int key = 8 * n + 2 * t4;
          const float2 cc = KeyDecays(sm.vc[stage][h], n, t4);
          const float c_key[2] = {cc.x, cc.y};
#pragma unroll
          for (int i = 0; i < 2; ++i) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const bool beyond = decltype(masked)::value && key + e >= limit[i];
              f(s[h][4 * n + 2 * i + e], c_key[e], i, (n % 2) * 2 + e, beyond);
            }
          }
        }
      };

      float rescale[2] = {1.0f, 1.0f};
      if constexpr (kFixedMax) {
        // p = 2^((s scale + bias - bound) log2(e) - c_key log2(e)): two FFMA a score.
        const float scale_log2 = scale * kLog2e;
        const float max_logit = group_bound();  // `bound`, read again
        float row_k[kPages][2];
#pragma unroll
        for (int h = 0; h < kPages; ++h) {
#pragma unroll
          for (int i = 0; i < 2; ++i) row_k[h][i] = (bias[h][i] - max_logit) * kLog2e;
        }
        // The rows' sums straight into l, one chain a row (the exponents' MUFU issue is
        // slower than the adds): four partial chains a row held eight more values across the
        // softmax, which three consumers spilled (2.14 -> 2.10 ms dense at 16x4096 without them;
        // two consumers 2.29 -> 2.28, 16.2 -> 16.0 at 2x32768).
        auto expo = [&](auto masked) {
#pragma unroll
          for (int h = 0; h < kPages; ++h) {
            for_each_score(h, masked, [&](float& x, float c_key, int i, int, bool beyond) {
              float t = fmaf(c_key, -kLog2e, fmaf(x, scale_log2, row_k[h][i]));
              if (beyond) t = -INFINITY;
              x = FastExp2(t);
              if constexpr (!S::kTensorSums) l[i] += x;
            });
          }
        };
        Dispatch(masked, expo);
      } else {
        // Online maxima: x = s scale - c_key in place (one FFMA), p = 2^(x log2(e) - shift)
        // below (one FFMA); the row maxima over four partial chains each (a chain of 32
        // dependent max operations would stall this warp, and few warps share a scheduler).
        float row_max[2] = {-INFINITY, -INFINITY};
        auto score = [&](auto masked, auto page) {
          float chain[2][4];
#pragma unroll
          for (int i = 0; i < 2; ++i) {
#pragma unroll
            for (int j = 0; j < 4; ++j) chain[i][j] = -INFINITY;
          }
          constexpr int h = decltype(page)::value;
          for_each_score(h, masked, [&](float& x, float c_key, int i, int j, bool beyond) {
            x = fmaf(x, scale, -c_key);
            if (beyond) x = -INFINITY;
            chain[i][j] = fmaxf(chain[i][j], x);  // the page's bias is added to its maximum below
          });
#pragma unroll
          for (int i = 0; i < 2; ++i) {  // the page's maxima, with its bias
            const float page_max =
                fmaxf(fmaxf(chain[i][0], chain[i][1]), fmaxf(chain[i][2], chain[i][3]));
            row_max[i] = fmaxf(row_max[i], page_max + bias[h][i]);
          }
        };
        auto score_pages = [&](auto masked) {
          score(masked, std::integral_constant<int, 0>());
          if constexpr (kPages == 2) score(masked, std::integral_constant<int, 1>());
        };
        Dispatch(masked, score_pages);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          row_max[i] = fmaxf(row_max[i], __shfl_xor_sync(0xffffffffu, row_max[i], 1));
          row_max[i] = fmaxf(row_max[i], __shfl_xor_sync(0xffffffffu, row_max[i], 2));
          const float new_max = fmaxf(m[i], row_max[i]);  // finite: each row sees a key here
          rescale[i] = FastExp2((m[i] - new_max) * kLog2e);
          m[i] = new_max;
        }
        [[maybe_unused]] float sum[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
        for (int h = 0; h < kPages; ++h) {
          const float shift[2] = {(m[0] - bias[h][0]) * kLog2e, (m[1] - bias[h][1]) * kLog2e};
#pragma unroll
          for (int n = 0; n < PS / 8; ++n) {
#pragma unroll
            for (int i = 0; i < 2; ++i) {
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                float& x = s[h][4 * n + 2 * i + e];
                x = FastExp2(fmaf(x, kLog2e, -shift[i]));
                if constexpr (!S::kTensorSums) sum[i][(n % 2) * 2 + e] += x;
              }
            }
          }
        }
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          if constexpr (!S::kTensorSums) {
            l[i] = l[i] * rescale[i] + ((sum[i][0] + sum[i][1]) + (sum[i][2] + sum[i][3]));
          }
        }
      }  // online maxima

      // - The previous P V is done: release its stage (none before the first), rescale O.
      if constexpr (S::kOverlap) {
        WgmmaWait<0>();
        pin_accumulators();
#pragma unroll
        for (int h = 0; h < kPages; ++h) PinRegisters(p[h]);
      }
      __syncwarp();
      if (prev_stage >= 0 && lane == 0) BarrierArrive(&sm.empty[prev_stage], 1);
      if constexpr (!kFixedMax) {
        RescaleRows(o, rescale);
        if constexpr (S::kTensorSums) {
#pragma unroll
          for (int j = 0; j < 4; ++j) row_sums[j] *= rescale[j / 2];
        }
      }
#pragma unroll
      for (int h = 0; h < kPages; ++h) PackProbabilities(s[h], p[h]);
      prev_stage = stage;
      if constexpr (!S::kOverlap) {
        pin_accumulators();
        WgmmaFence();
        issue_pv(stage);
        WgmmaCommit();
      }
    }
    pin_accumulators();
    if constexpr (S::kOverlap) {
      WgmmaFence();
      issue_pv(prev_stage);
      WgmmaCommit();
    }
    WgmmaWait<0>();
    pin_accumulators();
    __syncwarp();
    if (lane == 0) BarrierArrive(&sm.empty[prev_stage], 1);

    // - Normalise and write this thread's two rows.
    if constexpr (S::kTensorSums) {
      // Each of the row's four threads holds its whole sum; WriteTaskRows adds the four up, which
      // a quarter each makes exact.
      PinRegisters(row_sums);
      l[0] = row_sums[0] * 0.25f;
      l[1] = row_sums[2] * 0.25f;
    }
    TaskRows written;
#pragma unroll
    for (int i = 0; i < 2; ++i) written.token[i] = state[8 * i].token;
    WriteTaskRows(rows, sm.task[slot][group], written, o, l, warp, g8, t4);
  };
  int tile_g = 0;  // the global iteration of the running tile's first stage
  for (int t = 0;; ++t) {
    slot = t % kSlots;
    BarrierWait(&sm.staged[slot], (t / kSlots) & 1);
    const int tile = sm.tile[slot];
    if (tile < 0) return;
    const Walks<kConsumers>& walks = sm.walks[slot];
    if constexpr (!S::kOverlap) mine = sm.task[slot][group];
    last_block = running_task().last_block;
    // This consumer's first stage skips the earlier walks'; the next tile's, all of them.
    g = tile_g;
    for (int w = 0; w < walks.count; ++w) {
      const int n = (walks.hi[w] - walks.lo[w] + kPages) / kPages;
      if (walks.first[w + 1] <= group) g += n;
      if (walks.first[w] <= group && group < walks.first[w + 1]) lo = walks.lo[w];
      tile_g += n;
    }
    // An invalid task: the producer accounts for this consumer's stages.
    if (running_task().valid) {
      if (S::kTimeline && warp == 0 && lane == 0) stamp(tile, 3 + group, GlobalNanoseconds());
      state = sm.row_state[slot][group] + warp * 16 + g8;
      q_desc = TileDescriptorLow(sm.q[slot][group]);
      const float bound = rows.row_logit_bound == nullptr ? INFINITY : group_bound();
      if constexpr (S::kBounded) {
        if (!(bound <= kFixedMaxBound)) __trap();  // the launcher was promised bounds this small
        consume(std::true_type());
      } else {
        Dispatch(bound <= kFixedMaxBound, consume);
      }
      if (S::kTimeline && warp == 0 && lane == 0) stamp(tile, 6 + group, GlobalNanoseconds());
    }
    __syncwarp();
    if (lane == 0) BarrierArrive(&sm.consumed[slot], 1);
  }
}

// The pool as a 2-D tensor of 128-byte rows, read in boxes of `box_rows` rows (a page's K, or
// its V and C) in the 128-byte swizzle.
cudaError_t EncodePoolMap(const CudaKvPool& pool, uint32_t box_rows, CUtensorMap* map) {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      fn = nullptr;
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  if (encode == nullptr) return cudaErrorNotSupported;
  const cuuint64_t dims[2] = {64, static_cast<cuuint64_t>(pool.num_pages) * kPageRows};
  const cuuint64_t strides[1] = {128};
  const cuuint32_t box[2] = {64, box_rows};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, pool.data, dims, strides, box,
                            element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace
}  // namespace tma
}  // namespace prefill

namespace prefill::tma {
namespace {

template <typename S>
cudaError_t Launch(const CudaKvPool& pool, const CudaAttentionRows& rows,
                   const CudaPrefillTasks& tasks, int tiles, cudaStream_t stream,
                   uint64_t* timeline, int max_ctas) {
  CUtensorMap k_map, vc_map;
  if (cudaError_t e = EncodePoolMap(pool, PS, &k_map); e != cudaSuccess) return e;
  if (cudaError_t e = EncodePoolMap(pool, kPageRows - PS, &vc_map); e != cudaSuccess) return e;
  if (cudaError_t e = cudaFuncSetAttribute(PagedPrefillTmaKernel<S>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           kSharedBytes<S>);
      e != cudaSuccess) {
    return e;
  }
  int device = 0, sms = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
  if (cudaError_t e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
      e != cudaSuccess) {
    return e;
  }
  int ctas = tiles < sms ? tiles : sms;  // one CTA an SM (its shared memory)
  if (max_ctas > 0 && max_ctas < ctas) ctas = max_ctas;
  PagedPrefillTmaKernel<S><<<ctas, S::kThreads, kSharedBytes<S>, stream>>>(
      k_map, vc_map, static_cast<int32_t>(pool.num_pages), rows, tasks, tiles, timeline);
  return cudaGetLastError();
}

// The build of a shape: with or without the timeline, bounded or not.
template <int kConsumers, bool kTensorSums, bool kTimeline>
cudaError_t LaunchBuild(const CudaKvPool& pool, const CudaAttentionRows& rows,
                        const CudaPrefillTasks& tasks, int tiles, cudaStream_t stream,
                        uint64_t* timeline, int max_ctas) {
  const bool bounded =
      rows.row_logit_bound != nullptr && rows.max_row_logit_bound <= kFixedMaxBound;
  using Bounded = Shape<kConsumers, kTensorSums, kTimeline, true>;
  using Online = Shape<kConsumers, kTensorSums, kTimeline, false>;
  return bounded ? Launch<Bounded>(pool, rows, tasks, tiles, stream, timeline, max_ctas)
                 : Launch<Online>(pool, rows, tasks, tiles, stream, timeline, max_ctas);
}
template <int kConsumers, bool kTensorSums>
cudaError_t LaunchShape(const CudaKvPool& pool, const CudaAttentionRows& rows,
                        const CudaPrefillTasks& tasks, int tiles, cudaStream_t stream,
                        uint64_t* timeline, int max_ctas) {
  return timeline != nullptr
             ? LaunchBuild<kConsumers, kTensorSums, true>(pool, rows, tasks, tiles, stream,
                                                          timeline, max_ctas)
             : LaunchBuild<kConsumers, kTensorSums, false>(pool, rows, tasks, tiles, stream,
                                                           nullptr, max_ctas);
}

}  // namespace
}  // namespace prefill::tma

int PrefillTmaTiles(const CudaPrefillTasks& tasks, TmaPrefillShape shape) {
  const int consumers = shape == TmaPrefillShape::kThreeGroups128KeysOverlap ? 3 : 2;
  return (tasks.count + consumers - 1) / consumers;
}

cudaError_t LaunchPagedPrefillTma(const CudaKvPool& pool, const CudaAttentionRows& rows,
                                  const CudaPrefillTasks& tasks, cudaStream_t stream,
                                  TmaPrefillShape shape, uint64_t* timeline, int max_ctas) {
  using namespace prefill::tma;
  if (pool.page_size != prefill::PS || pool.head_dim != prefill::D) return cudaErrorInvalidValue;
  if (tasks.count == 0) return cudaSuccess;
  // One count of tiles for the launch and for the timeline's size.
  const int tiles = PrefillTmaTiles(tasks, shape);
  switch (shape) {
    case TmaPrefillShape::kTwoGroups128KeysTensorSums:
      return LaunchShape<2, true>(pool, rows, tasks, tiles, stream, timeline, max_ctas);
    case TmaPrefillShape::kThreeGroups128KeysOverlap:
      return LaunchShape<3, false>(pool, rows, tasks, tiles, stream, timeline, max_ctas);
    case TmaPrefillShape::kTwoGroups128Keys:
      break;
  }
  return LaunchShape<2, false>(pool, rows, tasks, tiles, stream, timeline, max_ctas);
}

}  // namespace kernels
}  // namespace foxserve
