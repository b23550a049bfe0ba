// The element-wise and row-wise kernels of the FoX block on the GPU (FOX.md section 2), twins of
// the CPU code in models/fox_model.cc. Activations are fp32 except the inputs of matrix products
// (bf16). Per-head kernels run one warp per (token, head) and need head_dim == 64.
#ifndef FOXSERVE_KERNELS_CUDA_FOX_LAYER_KERNELS_H_
#define FOXSERVE_KERNELS_CUDA_FOX_LAYER_KERNELS_H_

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace foxserve {
namespace kernels {

// x [n][d] fp32 = table[ids[t]] (bf16 [vocab][d]).
cudaError_t LaunchEmbeddingGather(const int32_t* ids, const __nv_bfloat16* table, int64_t n,
                                  int64_t d, float* x, cudaStream_t stream);

// out [n][d] bf16 = RMSNorm(x [n][d] fp32; weight [d], eps). x may be a strided row set:
// rows[r] selects the input row of output row r when rows is not null.
cudaError_t LaunchRmsNormToBf16(const float* x, const int32_t* rows, const float* weight,
                                int64_t n, int64_t d, float eps, __nv_bfloat16* out,
                                cudaStream_t stream);
// The same after x's rows (those selected, when rows is not null) += residual's: the residual
// add fused into the norm that reads its result, one launch and one pass over x fewer.
cudaError_t LaunchAddRmsNormToBf16(float* x, const float* residual, const int32_t* rows,
                                   const float* weight, int64_t n, int64_t d, float eps,
                                   __nv_bfloat16* out, cudaStream_t stream);

struct AttentionPrepParams {
  const float* proj = nullptr;  // [n][proj_stride] fused projection (InProjLayout)
  int64_t proj_stride = 0;
  int32_t q_offset = 0, k_offset = 0, v_offset = 0;
  int32_t k_shift_offset = -1, v_shift_offset = -1;  // -1: no token shift
  const float* q_norm = nullptr;  // [hidden], or [head_dim] when shared; null: no qk-norm
  const float* k_norm = nullptr;
  bool qk_norm_shared = false;
  const int32_t* token_item = nullptr;        // [n]
  const int32_t* item_first_token = nullptr;  // [items]
  // Pre-shift k~ then v~ (2 * hidden floats) of the token before each item's first new token:
  // item i's at prev_shift + prev_shift_rows[i] * prev_shift_stride, or at prev_shift + i * 2 *
  // hidden when prev_shift_rows is null.
  const float* prev_shift = nullptr;
  const int32_t* prev_shift_rows = nullptr;
  int64_t prev_shift_stride = 0;
  int32_t num_tokens = 0, num_heads = 0, hidden = 0;
  float* q = nullptr;  // [n][hidden] outputs
  float* k = nullptr;
  float* v = nullptr;
  float* q_norms = nullptr;  // [n][heads] Euclidean norms of the final q and k rows
  float* k_norms = nullptr;
};

// Token shift of k and v, qk-norm (eps 1e-5), and the norms ACP's per-step bound needs.
cudaError_t LaunchAttentionPrep(const AttentionPrepParams& p, cudaStream_t stream);

// The pre-shift k~ and v~ of each item's last token (the next chunk's shift state), 2 * hidden
// floats at out + out_rows[i] * out_stride for item i (out + i * 2 * hidden when out_rows is
// null). Launched after LaunchAttentionPrep, it may overwrite the state that one read.
cudaError_t LaunchGatherShiftState(const float* proj, int64_t proj_stride, int32_t k_offset,
                                   int32_t v_offset, const int32_t* item_last_token,
                                   int32_t num_items, int32_t hidden, float* out,
                                   const int32_t* out_rows, int64_t out_stride,
                                   cudaStream_t stream);

struct OutputGateParams {
  const float* attn = nullptr;          // [n][hidden]
  const float* proj = nullptr;          // gate logits at proj[t][ogate_offset + e]
  int64_t proj_stride = 0;
  int32_t ogate_offset = -1;            // -1: no output gate
  bool ogate_silu = false;              // else sigmoid
  const float* output_norm = nullptr;   // [hidden]; null: no output norm
  float norm_eps = 1e-6f;
  int32_t num_tokens = 0, num_heads = 0, hidden = 0;
  __nv_bfloat16* out = nullptr;         // [n][hidden]
};
cudaError_t LaunchOutputNormGate(const OutputGateParams& p, cudaStream_t stream);

// out [n][inter] bf16 = act(gate) * up with gate_up [n][2 * inter] fp32; act silu or sigmoid.
cudaError_t LaunchGatedActivation(const float* gate_up, int64_t n, int64_t inter, bool silu,
                                  __nv_bfloat16* out, cudaStream_t stream);

// Greedy sampling on the device: out[r] = the index of the largest of the first `vocab` logits of
// row r of [rows][row_stride] (the lowest index among ties), or -1 when one of them is not
// finite; as models::GreedyToken on the host.
cudaError_t LaunchGreedyTokens(const float* logits, int32_t rows, int64_t vocab,
                               int64_t row_stride, int32_t* out, cudaStream_t stream);

// Overlapped decode: the next step's token ids from this step's greedy tokens, to[i] = from[i],
// with -1 (a row that was not finite, whose request fails) read as token 0 so that the next
// step's embedding gather stays inside the table.
cudaError_t LaunchFeedGreedyTokens(const int32_t* from, int32_t count, int32_t* to,
                                   cudaStream_t stream);

// Fills `count` floats with NaN (poisoning freed KV pages in tests).
cudaError_t LaunchFillNan(float* data, int64_t count, cudaStream_t stream);

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_FOX_LAYER_KERNELS_H_
