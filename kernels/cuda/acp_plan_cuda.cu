#include "kernels/cuda/acp_plan_cuda.h"

#include "kernels/acp_boundary.h"

namespace foxserve {
namespace kernels {
namespace {

constexpr int kPlanThreads = 128;

// As kernels::LogSigmoid on the CPU (kernels/cpu/elementwise.h), in double.
__device__ double LogSigmoidD(double x) { return fmin(x, 0.0) - log1p(exp(-fabs(x))); }

__device__ double LogForget(const AcpPlanParams& p, int64_t token, int h) {
  switch (p.gate_mode) {
    case AcpGateMode::kFull:
      return LogSigmoidD(static_cast<double>(p.fgate_logits[token * p.fgate_stride + h]) +
                         p.fgate_bias[h]);
    case AcpGateMode::kBiasOnly:
      return LogSigmoidD(p.fgate_bias[h]);
    case AcpGateMode::kNone:
      break;
  }
  return 0.0;
}

// One CTA per (item, head): log f and the norms of the chunk's tokens in parallel, their running
// sum in token order on warp 0, then each query block's start searched independently, one per
// thread (the dead blocks form a prefix, so this equals the CPU's monotone scan).
__global__ void __launch_bounds__(kPlanThreads) AcpPlanKernel(AcpPlanParams p) {
  __shared__ float max_q_s[kPlanThreads / 32], max_k_s[kPlanThreads / 32];
  __shared__ uint32_t computed_s, skipped_s;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int i = blockIdx.x / p.num_heads, h = blockIdx.x % p.num_heads;
  const AcpPlanItem item = p.items[i];
  const int H = p.num_heads, PS = p.page_size;
  const int n = item.num_tokens;
  const int64_t pos0 = item.first_position;
  const int s = p.layer * H + h;  // stream within the sequence
  const int64_t table = item.block_offset + int64_t{s} * item.block_capacity;
  const int64_t scalar = int64_t{item.slot} * p.num_layers * H + s;
  double* c_first = p.c_first + table;
  double* c_last = p.c_last + table;
  if (tid == 0) {
    computed_s = 0;
    skipped_s = 0;
  }

  // - c of the new tokens. log f of every token in parallel (into this head's contiguous run of
  //   the scratch), then warp 0 adds them up in token order: c_t = c_{t-1} + log f_t with the
  //   same rounding as the CPU's loop, so c does not depend on how a prompt was chunked or
  //   batched (a parallel scan rounds differently for every partition). Per 32 tokens each lane
  //   folds the broadcast values left to right up to its own, which is the sequential sum, and
  //   the loads and stores stay coalesced.
  double* const log_f = p.log_f_scratch + int64_t{h} * p.num_tokens + item.first_row;
  float max_q = 0.0f, max_k = 0.0f;
  for (int t = tid; t < n; t += kPlanThreads) {
    const int64_t token = item.first_row + t;
    const int64_t row = token * H + h;
    log_f[t] = LogForget(p, token, h);
    max_q = fmaxf(max_q, p.q_norms[row]);
    max_k = fmaxf(max_k, p.k_norms[row]);
  }
  __syncthreads();
  if (warp == 0) {
    double carry = p.c_now[scalar];
    for (int t0 = 0; t0 < n; t0 += 32) {
      const int t = t0 + lane;
      const double mine = t < n ? log_f[t] : 0.0;
      double sum = carry;
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        const double x = __shfl_sync(0xffffffffu, mine, j);
        if (j <= lane) sum += x;
      }
      carry = __shfl_sync(0xffffffffu, sum, min(31, n - 1 - t0));
      if (t < n) {
        const int64_t row = (item.first_row + int64_t{t}) * H + h;
        const int64_t pos = pos0 + t, block = pos / PS;
        p.row_c[row] = sum;
        if (pos % PS == 0) c_first[block] = sum;
        if (pos % PS == PS - 1 || t == n - 1) c_last[block] = sum;
      }
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    max_q = fmaxf(max_q, __shfl_xor_sync(0xffffffffu, max_q, offset));
    max_k = fmaxf(max_k, __shfl_xor_sync(0xffffffffu, max_k, offset));
  }
  if (lane == 0) {
    max_q_s[warp] = max_q;
    max_k_s[warp] = max_k;
  }
  __syncthreads();  // also publishes the block c and row c written above
  for (int w = 0; w < kPlanThreads / 32; ++w) {
    max_q = fmaxf(max_q, max_q_s[w]);
    max_k = fmaxf(max_k, max_k_s[w]);
  }
  const double c_now = p.row_c[(item.first_row + int64_t{n} - 1) * H + h];

  // - Per row: C entry, page and slot for the append, the block-table offset for attention, the
  //   bound on its logits (the prefill may use it as the softmax maximum).
  const float key_norm = fmaxf(p.max_key_norm[scalar], max_k);
  const double u_weight = p.logit_bounds[h];
  const double step_bound = StepLogitBound(u_weight, max_q, key_norm, p.head_dim);
  for (int t = tid; t < n; t += kPlanThreads) {
    const int64_t row = (item.first_row + int64_t{t}) * H + h;
    const int64_t pos = pos0 + t, block = pos / PS;
    p.row_c_rel[row] = static_cast<float>(p.row_c[row] - c_first[block]);
    p.row_page[row] = p.pages[table + block];
    p.row_slot[row] = static_cast<int32_t>(pos % PS);
    p.row_table[row] = table;
    if (p.row_logit_bound != nullptr) p.row_logit_bound[row] = static_cast<float>(step_bound);
  }

  // - This step's start of each query block and the tile counts (PlanStarts, CountTiles).
  const int64_t pointer = p.first_live_block[scalar];
  const int64_t first_block = pos0 / PS, last_block = (pos0 + n - 1) / PS;
  const int64_t num_qblocks = last_block - first_block + 1;
  double delta = 0.0;
  if (p.acp_enabled) delta = AcpThreshold(step_bound, static_cast<double>(pos0 + n), p.log_eps);
  uint32_t computed = 0, skipped = 0;
  for (int64_t qb = tid; qb < num_qblocks; qb += kPlanThreads) {
    int32_t start = 0;
    if (p.acp_enabled) {
      const int64_t first_row = qb == 0 ? 0 : (first_block + qb) * PS - pos0;
      start = static_cast<int32_t>(FirstLiveBlock(c_last, pointer, first_block + qb,
                                                  p.row_c[(item.first_row + first_row) * H + h],
                                                  delta));
    }
    skipped += start;
    computed += static_cast<uint32_t>(first_block + qb + 1 - start);
    if (n == 1) {
      // Decode: the row's split-K tasks cover [start, last_block] from the start on; the host
      // sized them from an older (never larger) pointer, so they suffice, and the rest are empty.
      const int r = item.decode_row_base + h;
      const int p0 = p.decode_row_partials[r], p1 = p.decode_row_partials[r + 1];
      const int64_t end = last_block + 1;
      if (start + int64_t{p1 - p0} * p.decode_chunk_blocks < end) __trap();
      for (int task = p0; task < p1; ++task) {
        const int64_t b = start + int64_t{task - p0} * p.decode_chunk_blocks;
        p.decode_begin[task] = static_cast<int32_t>(b < end ? b : end);
        p.decode_end[task] = static_cast<int32_t>(b + p.decode_chunk_blocks < end
                                                      ? b + p.decode_chunk_blocks
                                                      : end);
      }
    } else {
      p.prefill_start[item.prefill_task_base + h * num_qblocks + qb] = start;
    }
  }
  double* touched = p.touched_blocks + 2 * (item.readback_block_base + s * num_qblocks);
  for (int64_t j = tid; j < num_qblocks; j += kPlanThreads) {
    touched[2 * j] = c_first[first_block + j];
    touched[2 * j + 1] = c_last[first_block + j];
  }
  if (computed > 0) atomicAdd(&computed_s, computed);
  if (skipped > 0) atomicAdd(&skipped_s, skipped);
  __syncthreads();
  if (tid != 0) return;

  // - The per-request pointer (AdvancePointer) and what the host takes back.
  int64_t advanced = pointer;
  if (p.acp_enabled) {
    const double request_delta =
        AcpThreshold(u_weight, static_cast<double>(item.max_total_tokens), p.log_eps);
    advanced = FirstLiveBlock(c_last, pointer, last_block, c_now, request_delta);
  }
  p.c_now[scalar] = c_now;
  p.max_key_norm[scalar] = key_norm;
  p.first_live_block[scalar] = static_cast<int32_t>(advanced);
  AcpStreamReadback back;
  back.c_now = c_now;
  back.max_key_norm = key_norm;
  back.first_live_block = static_cast<int32_t>(advanced);
  back.tiles_computed = computed_s;
  back.tiles_skipped = skipped_s;
  p.streams[(int64_t{i} * p.num_layers + p.layer) * H + h] = back;
}

}  // namespace

cudaError_t LaunchAcpPlan(const AcpPlanParams& p, cudaStream_t stream) {
  const int64_t ctas = int64_t{p.num_items} * p.num_heads;
  if (ctas == 0) return cudaSuccess;
  AcpPlanKernel<<<static_cast<unsigned>(ctas), kPlanThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace foxserve
