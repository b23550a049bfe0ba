// The split-K decode kernels (simple and warp-parallel), the merge of their partial states and
// the append of new tokens' K/V rows to their pages.
#include <cuda_bf16.h>

#include <cfloat>

#include "kernels/cuda/attention_tasks.h"
#include "kernels/cuda/kv_page.cuh"
#include "kernels/cuda/paged_attention_cuda.h"

namespace foxserve {
namespace kernels {
namespace {

constexpr int D = kCudaHeadDim;
constexpr int PS = kCudaPageSize;
constexpr int kDecodeThreads = 128;
constexpr int64_t kPageBytes = CudaPageBytes(PS, D);

// A decode task's query row: its block table and block c bases, its position and c.
struct DecodeRow {
  int t, h;
  int64_t row;
  const int32_t* pages;
  const double* base;
  int pos;
  double c_q;
};

__device__ __forceinline__ DecodeRow LoadDecodeRow(const CudaAttentionRows& rows,
                                                   const CudaDecodeTasks& tasks, int task) {
  DecodeRow r;
  r.t = tasks.token[task];
  r.h = tasks.head[task];
  r.row = static_cast<int64_t>(r.t) * rows.num_heads + r.h;
  const int64_t table = rows.row_table[r.row];
  r.pages = rows.pages + table;
  r.base = rows.block_base + table;
  r.pos = rows.token_position[r.t];
  r.c_q = rows.row_c[r.row];
  return r;
}

// Tasks planned on the GPU may be empty (their row's live range was shorter than the host's
// bound): no key, a partial that weighs nothing in the merge. True when the task is empty.
__device__ __forceinline__ bool SkipEmptyTask(const CudaDecodeTasks& tasks, int task) {
  if (tasks.block_begin[task] < tasks.block_end[task]) return false;
  if (threadIdx.x == 0) {
    tasks.partial_l[task] = 0.0f;
    tasks.partial_m[task] = -FLT_MAX;
  }
  return true;
}

// Split-K decode: the CTA's threads share the task's keys round-robin, each with its own online
// softmax state, then reduce them in shared memory into one partial state.
__global__ void __launch_bounds__(kDecodeThreads) PagedDecodeKernel(CudaKvPool pool,
                                                                    CudaAttentionRows rows,
                                                                    CudaDecodeTasks tasks) {
  __shared__ float q_s[D];
  __shared__ float red[kDecodeThreads][D + 1];
  __shared__ float m_s[kDecodeThreads];
  __shared__ float l_s[kDecodeThreads];

  const int task = blockIdx.x;
  const int tid = threadIdx.x;
  if (SkipEmptyTask(tasks, task)) return;
  const DecodeRow r = LoadDecodeRow(rows, tasks, task);
  const int32_t* pages = r.pages;
  const double* base = r.base;
  const int pos = r.pos;
  const double c_q = r.c_q;
  if (tid < D) q_s[tid] = rows.q[r.row * D + tid];
  __syncthreads();

  float acc[D];
#pragma unroll
  for (int i = 0; i < D; ++i) acc[i] = 0.0f;
  float m = -FLT_MAX, l = 0.0f;
  const int key_begin = tasks.block_begin[task] * PS;
  const int key_end = min(tasks.block_end[task] * PS, pos + 1);
  // Two keys per iteration, both rows loaded before either is used: more bytes in flight.
  auto process = [&](const uint4 (&k_row)[D / 8], const uint4 (&v_row)[D / 8], float decay) {
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      const __nv_bfloat162* k2 = reinterpret_cast<const __nv_bfloat162*>(&k_row[i]);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 kf = __bfloat1622float2(k2[e]);
        dot = fmaf(q_s[i * 8 + 2 * e], kf.x, dot);
        dot = fmaf(q_s[i * 8 + 2 * e + 1], kf.y, dot);
      }
    }
    const float s = dot * rows.scale + decay;
    if (s > m) {
      const float rescale = expf(m - s);
      l *= rescale;
#pragma unroll
      for (int i = 0; i < D; ++i) acc[i] *= rescale;
      m = s;
    }
    const float pk = expf(s - m);
    l += pk;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      const __nv_bfloat162* v2 = reinterpret_cast<const __nv_bfloat162*>(&v_row[i]);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 vf = __bfloat1622float2(v2[e]);
        acc[i * 8 + 2 * e] = fmaf(pk, vf.x, acc[i * 8 + 2 * e]);
        acc[i * 8 + 2 * e + 1] = fmaf(pk, vf.y, acc[i * 8 + 2 * e + 1]);
      }
    }
  };
  auto load = [&](int key, uint4 (&k_row)[D / 8], uint4 (&v_row)[D / 8], float* decay) {
    const int b = key / PS, slot = key % PS;
    const int32_t page_id = pages[b];
    if (page_id < 0) __trap();
    const PagePointers p = Page(pool, page_id);
    const uint4* k_src = reinterpret_cast<const uint4*>(p.k + slot * D);
    const uint4* v_src = reinterpret_cast<const uint4*>(p.v + slot * D);
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      k_row[i] = k_src[i];
      v_row[i] = v_src[i];
    }
    *decay = static_cast<float>(c_q - base[b]) - p.c[slot];
  };
  int key = key_begin + tid;
  for (; key + kDecodeThreads < key_end; key += 2 * kDecodeThreads) {
    uint4 k0[D / 8], v0[D / 8], k1[D / 8], v1[D / 8];
    float d0, d1;
    load(key, k0, v0, &d0);
    load(key + kDecodeThreads, k1, v1, &d1);
    process(k0, v0, d0);
    process(k1, v1, d1);
  }
  if (key < key_end) {
    uint4 k0[D / 8], v0[D / 8];
    float d0;
    load(key, k0, v0, &d0);
    process(k0, v0, d0);
  }
  // - CTA reduction: common max, rescaled sums.
  m_s[tid] = m;
  __syncthreads();
  for (int stride = kDecodeThreads / 2; stride > 0; stride /= 2) {
    if (tid < stride) m_s[tid] = fmaxf(m_s[tid], m_s[tid + stride]);
    __syncthreads();
  }
  const float block_max = m_s[0];
  const float scale = l > 0.0f ? expf(m - block_max) : 0.0f;
  l_s[tid] = l * scale;
#pragma unroll
  for (int i = 0; i < D; ++i) red[tid][i] = acc[i] * scale;
  __syncthreads();
  if (tid < D) {
    float sum = 0.0f;
    for (int r = 0; r < kDecodeThreads; ++r) sum += red[r][tid];
    tasks.partial_acc[static_cast<int64_t>(task) * D + tid] = sum;
  } else if (tid == D) {
    float sum = 0.0f;
    for (int r = 0; r < kDecodeThreads; ++r) sum += l_s[r];
    tasks.partial_l[task] = sum;
    tasks.partial_m[task] = block_max;
  }
}

// Split-K decode, warp-parallel over the head dimension: lane = (key group, dim group); a lane
// loads 16 bytes (8 dims) of a key row, so a warp reads 4 consecutive rows (512 bytes) per load
// and an 8-lane shuffle finishes each dot product. Each warp takes whole pages of the task's
// range in turn and issues a page's 16 K loads per lane before using any (then its 16 V loads):
// registers stay small and many bytes are in flight. Partial states combine in registers within
// the warp and through a few hundred bytes of shared memory across warps.
constexpr int kSplitWarps = 4;
constexpr int kKeysPerGroup = PS / 4;  // a page's keys per lane group

// A lane's 16 bytes (dims dg*8 .. dg*8+7) of the page rows of its key group (slots kg, kg+4, ...),
// all issued before any is used.
__device__ __forceinline__ void LoadGroupRows(const __nv_bfloat16* page_rows, int kg, int dg,
                                              uint4 (&out)[kKeysPerGroup]) {
#pragma unroll
  for (int j = 0; j < kKeysPerGroup; ++j) {
    out[j] = *reinterpret_cast<const uint4*>(page_rows + (kg + 4 * j) * D + dg * 8);
  }
}

// The task's partial state (m, l, acc) into the workspace, or, when the task is its row's only
// one, the row's output itself (acc / l: nothing to merge).
__device__ __forceinline__ void WarpSplitPartial(const CudaKvPool& pool,
                                                 const CudaAttentionRows& rows,
                                                 const CudaDecodeTasks& tasks, int task,
                                                 bool whole_row) {
  __shared__ float m_s[kSplitWarps], l_s[kSplitWarps];
  __shared__ float acc_s[kSplitWarps][D];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int block_begin = tasks.block_begin[task], block_end = tasks.block_end[task];
  const DecodeRow r = LoadDecodeRow(rows, tasks, task);
  const int32_t* pages = r.pages;
  const double* base = r.base;
  const int pos = r.pos;
  const double c_q = r.c_q;
  const int dg = lane % 8, kg = lane / 8;
  float q[8];
  {
    const float4* q4 = reinterpret_cast<const float4*>(rows.q + r.row * D + dg * 8);
    const float4 a = q4[0], b = q4[1];
    q[0] = a.x, q[1] = a.y, q[2] = a.z, q[3] = a.w, q[4] = b.x, q[5] = b.y, q[6] = b.z, q[7] = b.w;
  }
  float m = -FLT_MAX, l = 0.0f, acc[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) acc[e] = 0.0f;
  const int key_end = min(block_end * PS, pos + 1);
  for (int b = block_begin + warp; b < block_end; b += kSplitWarps) {
    const int32_t page_id = pages[b];
    if (page_id < 0) __trap();
    const PagePointers p = Page(pool, page_id);
    const float decay_base = static_cast<float>(c_q - base[b]);
    float s[kKeysPerGroup];
    {
      uint4 kr[kKeysPerGroup];
      LoadGroupRows(p.k, kg, dg, kr);
#pragma unroll
      for (int j = 0; j < kKeysPerGroup; ++j) {
        const __nv_bfloat162* k2 = reinterpret_cast<const __nv_bfloat162*>(&kr[j]);
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 kf = __bfloat1622float2(k2[e]);
          dot = fmaf(q[2 * e], kf.x, dot);
          dot = fmaf(q[2 * e + 1], kf.y, dot);
        }
        dot += __shfl_xor_sync(0xffffffffu, dot, 1);
        dot += __shfl_xor_sync(0xffffffffu, dot, 2);
        dot += __shfl_xor_sync(0xffffffffu, dot, 4);
        const int slot = kg + 4 * j;
        s[j] = b * PS + slot < key_end ? dot * rows.scale + decay_base - p.c[slot] : -INFINITY;
      }
    }
    float page_max = s[0];
#pragma unroll
    for (int j = 1; j < kKeysPerGroup; ++j) page_max = fmaxf(page_max, s[j]);
    const float m_new = fmaxf(m, page_max);
    const float rescale = expf(m - m_new);
    l *= rescale;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] *= rescale;
    m = m_new;
    uint4 vr[kKeysPerGroup];
    LoadGroupRows(p.v, kg, dg, vr);
#pragma unroll
    for (int j = 0; j < kKeysPerGroup; ++j) {
      // Slots past the query are skipped outright, not weighted by 0: they may hold anything
      // (a reused page, NaN poison), and 0 * NaN is NaN.
      if (b * PS + kg + 4 * j >= key_end) continue;
      const float pk = expf(s[j] - m);
      l += pk;
      const __nv_bfloat162* v2 = reinterpret_cast<const __nv_bfloat162*>(&vr[j]);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 vf = __bfloat1622float2(v2[e]);
        acc[2 * e] = fmaf(pk, vf.x, acc[2 * e]);
        acc[2 * e + 1] = fmaf(pk, vf.y, acc[2 * e + 1]);
      }
    }
  }
  // - Combine the 4 key groups of the warp (lanes with the same dims: xor 8, 16).
  for (int offset = 8; offset < 32; offset *= 2) {
    const float m_o = __shfl_xor_sync(0xffffffffu, m, offset);
    const float l_o = __shfl_xor_sync(0xffffffffu, l, offset);
    const float mm = fmaxf(m, m_o);
    const float sa = expf(m - mm), sb = expf(m_o - mm);
    l = l * sa + l_o * sb;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float a_o = __shfl_xor_sync(0xffffffffu, acc[e], offset);
      acc[e] = acc[e] * sa + a_o * sb;
    }
    m = mm;
  }
  if (kg == 0) {
#pragma unroll
    for (int e = 0; e < 8; ++e) acc_s[warp][dg * 8 + e] = acc[e];
    if (lane == 0) {
      m_s[warp] = m;
      l_s[warp] = l;
    }
  }
  __syncthreads();
  // - Combine the warps: one thread per dim.
  if (tid < D) {
    float mm = -FLT_MAX;
    for (int w = 0; w < kSplitWarps; ++w) {
      if (l_s[w] > 0.0f) mm = fmaxf(mm, m_s[w]);
    }
    float sum = 0.0f, l_sum = 0.0f;
    for (int w = 0; w < kSplitWarps; ++w) {
      if (l_s[w] <= 0.0f) continue;
      const float scale = expf(m_s[w] - mm);
      sum += acc_s[w][tid] * scale;
      l_sum += l_s[w] * scale;
    }
    if (whole_row) {
      rows.out[static_cast<int64_t>(r.t) * rows.num_heads * D + r.h * D + tid] = sum / l_sum;
      return;
    }
    tasks.partial_acc[static_cast<int64_t>(task) * D + tid] = sum;
    if (tid == 0) {
      tasks.partial_l[task] = l_sum;
      tasks.partial_m[task] = mm;
    }
  }
}

// Merges decode row r's partial states into its output row; a partial with l == 0 (no key)
// weighs nothing. kGroups groups of D threads (one a dimension; threads tid < kGroups * D) take
// every kGroups-th partial and meet in shared memory: with 4, a long row's 16-32 partials are
// read four at a time instead of one after another. The partials are read through L2 (__ldcg):
// in the fused decode other CTAs of the same launch wrote them, and this SM's L1 may hold
// older copies of their lines.
template <int kGroups>
__device__ __forceinline__ void MergeRow(const CudaAttentionRows& rows,
                                         const CudaDecodeTasks& tasks, int r) {
  __shared__ float max_s[kGroups * D / 32];
  __shared__ float acc_s[kGroups][D];
  __shared__ float l_s[kGroups];
  const int tid = threadIdx.x, i = tid % D, group = tid / D;
  const int p0 = tasks.row_partials[r], p1 = tasks.row_partials[r + 1];
  float m = -FLT_MAX;
  for (int p = p0 + tid; p < p1; p += kGroups * D) {
    if (__ldcg(tasks.partial_l + p) > 0.0f) m = fmaxf(m, __ldcg(tasks.partial_m + p));
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
  }
  if (tid % 32 == 0) max_s[tid / 32] = m;
  __syncthreads();
  m = max_s[0];
#pragma unroll
  for (int w = 1; w < kGroups * D / 32; ++w) m = fmaxf(m, max_s[w]);
  float l = 0.0f, acc = 0.0f;
  for (int p = p0 + group; p < p1; p += kGroups) {
    const float lp = __ldcg(tasks.partial_l + p);
    if (lp <= 0.0f) continue;
    const float w = expf(__ldcg(tasks.partial_m + p) - m);
    l += lp * w;
    acc += __ldcg(tasks.partial_acc + static_cast<int64_t>(p) * D + i) * w;
  }
  if (kGroups > 1) {
    acc_s[group][i] = acc;
    if (i == 0) l_s[group] = l;
    __syncthreads();
  }
  if (group != 0) return;
  for (int g = 1; g < kGroups; ++g) {
    acc += acc_s[g][i];
    l += l_s[g];
  }
  const int t = tasks.row_token[r], h = tasks.row_head[r];
  rows.out[static_cast<int64_t>(t) * rows.num_heads * D + h * D + i] = acc / l;
}

// The merge as its own launch, one CTA a row (the decode launches without the fused merge).
template <int kMergeGroups>
__global__ void __launch_bounds__(kMergeGroups * D) MergePartialsKernel(CudaAttentionRows rows,
                                                                       CudaDecodeTasks tasks) {
  MergeRow<kMergeGroups>(rows, tasks, blockIdx.x);
}

// Whether the warp-split launch merges its rows itself (CudaDecodeTasks::task_row and
// row_arrivals set) rather than leaving the merge to a second launch.
__host__ __device__ __forceinline__ bool MergesInLaunch(const CudaDecodeTasks& tasks) {
  return tasks.row_arrivals != nullptr && tasks.task_row != nullptr;
}

// The decode row a task's partial state goes to when the merge is fused into the decode
// launch: row -1 when it is not, or for a padding task.
struct MergeTarget {
  int row = -1;
  int partials = 0;  // the row's task count
  __device__ bool WholeRow() const { return row >= 0 && partials == 1; }
};

__device__ __forceinline__ MergeTarget LoadMergeTarget(const CudaDecodeTasks& tasks, int task) {
  MergeTarget target;
  if (!MergesInLaunch(tasks)) return target;
  target.row = tasks.task_row[task];
  if (target.row >= 0) {
    target.partials = tasks.row_partials[target.row + 1] - tasks.row_partials[target.row];
  }
  return target;
}

// The fused merge: each task counts its arrival at its row once its partial is written; the
// row's last task to arrive merges the row (the threadFenceReduction pattern of the CUDA
// samples) and zeroes the counter for the next launch. No merge kernel: the merge runs under
// other rows' tasks instead of after the whole decode, one launch and its gap fewer a layer.
template <int kGroups>
__device__ __forceinline__ void ArriveAndMergeLast(const CudaAttentionRows& rows,
                                                   const CudaDecodeTasks& tasks,
                                                   const MergeTarget& target) {
  __shared__ bool last_s;
  __threadfence();  // this thread's partial writes before the arrival
  __syncthreads();
  if (threadIdx.x == 0) {
    const int arrived_before = atomicAdd(tasks.row_arrivals + target.row, 1);
    last_s = arrived_before == target.partials - 1;
    if (last_s) tasks.row_arrivals[target.row] = 0;  // every task of the row has arrived
  }
  __syncthreads();
  if (!last_s) return;
  __threadfence();  // the other tasks' partials, made visible before their arrivals
  MergeRow<kGroups>(rows, tasks, target.row);
}

__device__ __forceinline__ void DecodeWarpSplitTask(const CudaKvPool& pool,
                                                    const CudaAttentionRows& rows,
                                                    const CudaDecodeTasks& tasks) {
  const int task = blockIdx.x;
  const MergeTarget merge = LoadMergeTarget(tasks, task);
  if (!SkipEmptyTask(tasks, task)) {
    WarpSplitPartial(pool, rows, tasks, task, merge.WholeRow());
  }
  if (merge.row >= 0 && !merge.WholeRow()) {
    ArriveAndMergeLast<kSplitWarps * 32 / D>(rows, tasks, merge);
  }
}

// Two builds of the same task: as ptxas likes it (145 registers, 3 CTAs an SM), and held to 128
// registers (4 CTAs an SM, a 4-byte spill). A warp has one half-page of loads in flight, so the
// resident CTAs bound the bytes in flight; LaunchPagedDecodeWarpSplit says when each is used.
__global__ void __launch_bounds__(32 * kSplitWarps) PagedDecodeWarpSplitKernel(
    CudaKvPool pool, CudaAttentionRows rows, CudaDecodeTasks tasks) {
  DecodeWarpSplitTask(pool, rows, tasks);
}
__global__ void __launch_bounds__(32 * kSplitWarps, 4) PagedDecodeWarpSplitFourCtasKernel(
    CudaKvPool pool, CudaAttentionRows rows, CudaDecodeTasks tasks) {
  DecodeWarpSplitTask(pool, rows, tasks);
}

// How many CTAs of each build the GPU holds at once (the device's SMs times its occupancy),
// computed once: launches happen per layer and step.
struct DecodeSlots {
  int three_ctas = 0, four_ctas = 0;
};
const DecodeSlots& ResidentDecodeSlots() {
  static const DecodeSlots slots = [] {
    DecodeSlots s;
    int device = 0, sms = 0, per_sm = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
      return s;
    }
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, PagedDecodeWarpSplitKernel,
                                                      32 * kSplitWarps, 0) == cudaSuccess) {
      s.three_ctas = sms * per_sm;
    }
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, PagedDecodeWarpSplitFourCtasKernel,
                                                      32 * kSplitWarps, 0) == cudaSuccess) {
      s.four_ctas = sms * per_sm;
    }
    return s;
  }();
  return slots;
}

// One warp per (token, head) row, two dimensions a lane: 8-byte loads and 4-byte stores. (A CTA
// of 64 threads a row, one element each, ran at about a quarter of the copy bandwidth.)
constexpr int kAppendWarps = 8;
static_assert(D == 64, "a lane appends dimensions 2 * lane and 2 * lane + 1");

__global__ void __launch_bounds__(32 * kAppendWarps)
    AppendKvKernel(CudaKvPool pool, const float* k, const float* v, const int32_t* page,
                   const int32_t* slot, const float* c_rel, int32_t num_rows, int32_t num_heads) {
  const int row = blockIdx.x * kAppendWarps + threadIdx.x / 32;  // token * H + head
  if (row >= num_rows) return;
  const int lane = threadIdx.x % 32;
  const int t = row / num_heads, h = row % num_heads;
  uint8_t* base = pool.data + static_cast<int64_t>(page[row]) * kPageBytes;
  const int s = slot[row];
  auto* k_dst = reinterpret_cast<__nv_bfloat162*>(base) + (s * D) / 2 + lane;
  auto* v_dst = reinterpret_cast<__nv_bfloat162*>(base + 2LL * PS * D) + (s * D) / 2 + lane;
  const int64_t src = static_cast<int64_t>(t) * num_heads * D + h * D + 2 * lane;
  const float2 kk = *reinterpret_cast<const float2*>(k + src);
  const float2 vv = *reinterpret_cast<const float2*>(v + src);
  *k_dst = __floats2bfloat162_rn(kk.x, kk.y);
  *v_dst = __floats2bfloat162_rn(vv.x, vv.y);
  if (lane == 0) reinterpret_cast<float*>(base + 4LL * PS * D)[s] = c_rel[row];
}

cudaError_t LaunchMerge(const CudaAttentionRows& rows, const CudaDecodeTasks& tasks,
                        cudaStream_t stream) {
  if (tasks.count >= 8 * tasks.num_rows) {
    MergePartialsKernel<4><<<tasks.num_rows, 4 * D, 0, stream>>>(rows, tasks);
  } else {
    MergePartialsKernel<1><<<tasks.num_rows, D, 0, stream>>>(rows, tasks);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPagedDecodeWarpSplit(const CudaKvPool& pool, const CudaAttentionRows& rows,
                                       const CudaDecodeTasks& tasks, cudaStream_t stream,
                                       DecodeOccupancy occupancy) {
  if (pool.page_size != PS || pool.head_dim != D) return cudaErrorInvalidValue;
  if (tasks.count == 0) return cudaSuccess;
  const DecodeSlots& slots = ResidentDecodeSlots();
  const bool four_ctas =
      occupancy == DecodeOccupancy::kFourCtasPerSm ||
      (occupancy == DecodeOccupancy::kChosen &&
       FourCtasFillWavesBetter(tasks.count - tasks.padding_tasks, slots.three_ctas,
                               slots.four_ctas));
  if (four_ctas) {
    PagedDecodeWarpSplitFourCtasKernel<<<tasks.count, 32 * kSplitWarps, 0, stream>>>(pool, rows,
                                                                                    tasks);
  } else {
    PagedDecodeWarpSplitKernel<<<tasks.count, 32 * kSplitWarps, 0, stream>>>(pool, rows, tasks);
  }
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  if (MergesInLaunch(tasks)) return cudaSuccess;
  return LaunchMerge(rows, tasks, stream);
}

cudaError_t LaunchPagedDecode(const CudaKvPool& pool, const CudaAttentionRows& rows,
                              const CudaDecodeTasks& tasks, cudaStream_t stream) {
  if (pool.page_size != PS || pool.head_dim != D) return cudaErrorInvalidValue;
  if (tasks.count == 0) return cudaSuccess;
  PagedDecodeKernel<<<tasks.count, kDecodeThreads, 0, stream>>>(pool, rows, tasks);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  return LaunchMerge(rows, tasks, stream);
}

cudaError_t LaunchAppendKv(const CudaKvPool& pool, const float* k, const float* v,
                           const int32_t* page, const int32_t* slot, const float* c_rel,
                           int32_t num_tokens, int32_t num_heads, cudaStream_t stream) {
  if (pool.page_size != PS || pool.head_dim != D) return cudaErrorInvalidValue;
  if (num_tokens == 0) return cudaSuccess;
  const int32_t rows = num_tokens * num_heads;
  AppendKvKernel<<<(rows + kAppendWarps - 1) / kAppendWarps, 32 * kAppendWarps, 0, stream>>>(
      pool, k, v, page, slot, c_rel, rows, num_heads);
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace foxserve
