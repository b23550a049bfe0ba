// ACP planning of one layer on the GPU: the device twin of the per-stream host bookkeeping in
// models/acp_stream_plan.h (RecordNewTokens, PlanStarts, CountTiles, AdvancePointer), on the
// block tables of kernels/cuda/device_kv_mirror.h. It makes the same decisions with the same
// functions (kernels/acp_boundary.h), from c accumulated in double as on the CPU.
//
// One CTA per (item, head): log f of the item's new tokens in parallel, their running sum in
// token order (as the CPU, so c is the same however a prompt is chunked or batched), then a
// search of the block metadata for each query block's first live key block, one query block per
// thread. It writes what the attention kernels of the layer read (per row: c, C
// entry, page, slot, block-table offset; the prefill tasks' start blocks; the decode tasks' key
// ranges, re-chunked from the live start) and what the host takes back after the step (per
// stream: c_now, key norm, pointer, tile counts; the c of the blocks the step touched).
#ifndef FOXSERVE_KERNELS_CUDA_ACP_PLAN_CUDA_H_
#define FOXSERVE_KERNELS_CUDA_ACP_PLAN_CUDA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace foxserve {
namespace kernels {

// One sequence chunk of the step (host-filled, uploaded once per step).
struct AcpPlanItem {
  int64_t first_position = 0;    // absolute position of the first new token
  int64_t max_total_tokens = 0;  // L of the per-request pointer threshold
  int64_t block_offset = 0;      // mirror region: block b of stream s at + s * capacity + b
  int32_t block_capacity = 0;
  int32_t slot = 0;              // mirror slot of the per-stream scalars
  int32_t first_row = 0;         // the item's first token in the batch
  int32_t num_tokens = 0;
  int32_t prefill_task_base = -1;  // prefill items: task of (head h, query block qb) = + h * nqb + qb
  int32_t decode_row_base = -1;    // decode items (one token): decode row of head h = + h
  int64_t readback_block_base = 0;  // touched block j of stream s at + s * touched + j
};

// What comes back to the host per (item, layer, head).
struct AcpStreamReadback {
  double c_now;
  float max_key_norm;
  int32_t first_live_block;
  uint32_t tiles_computed;
  uint32_t tiles_skipped;
};

enum class AcpGateMode : int32_t { kNone = 0, kBiasOnly = 1, kFull = 2 };

struct AcpPlanParams {
  const AcpPlanItem* items = nullptr;
  int32_t num_items = 0;
  int32_t layer = 0, num_layers = 0, num_heads = 0, head_dim = 0, page_size = 0;
  // log f = logsigmoid(logit + bias); logits at fgate_logits[token * fgate_stride + head].
  AcpGateMode gate_mode = AcpGateMode::kFull;
  const float* fgate_logits = nullptr;
  int64_t fgate_stride = 0;
  const float* fgate_bias = nullptr;     // [heads] of this layer
  const double* logit_bounds = nullptr;  // [heads] of this layer: U from the weights
  const float* q_norms = nullptr;        // [tokens * heads]
  const float* k_norms = nullptr;
  int32_t num_tokens = 0;                // tokens in the batch
  double* log_f_scratch = nullptr;       // [heads][num_tokens]
  bool acp_enabled = true;
  double log_eps = -10.0;
  // The mirror (device_kv_mirror.h).
  const int32_t* pages = nullptr;
  double* c_first = nullptr;
  double* c_last = nullptr;
  double* c_now = nullptr;
  float* max_key_norm = nullptr;
  int32_t* first_live_block = nullptr;
  // Per row (token * heads + head).
  double* row_c = nullptr;
  float* row_c_rel = nullptr;
  int32_t* row_page = nullptr;
  int32_t* row_slot = nullptr;
  int64_t* row_table = nullptr;
  float* row_logit_bound = nullptr;  // optional: StepLogitBound of the row's stream
  // Attention tasks.
  int32_t* prefill_start = nullptr;
  const int32_t* decode_row_partials = nullptr;  // CSR of the decode rows' tasks
  int32_t* decode_begin = nullptr;
  int32_t* decode_end = nullptr;
  int32_t decode_chunk_blocks = 8;
  // Readback.
  AcpStreamReadback* streams = nullptr;  // [items][layers][heads]
  double* touched_blocks = nullptr;      // pairs (c_first, c_last)
};

cudaError_t LaunchAcpPlan(const AcpPlanParams& p, cudaStream_t stream);

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_ACP_PLAN_CUDA_H_
