// FoX attention over the paged KV cache on the GPU: the CUDA twin of
// kernels/cpu/paged_attention.h, correctness-first (CUDA cores, fp32 math on bf16 K/V).
//
// Page layout in the device pool (bytes): K [page_size][head_dim] bf16 | V [page_size][head_dim]
// bf16 | C [page_size] fp32, C relative to the block's first token as on the CPU
// (kernels/paged_kv.h). The work is described by task lists that the host plans with the same
// ACP decisions as the CPU (acp_boundary.h): every query block starts at its first live key block.
//
//   prefill: one task = up to page_size consecutive query rows of one (sequence, head) that lie
//            in one page of positions; one thread per row, keys staged in shared memory.
//   decode:  one task = one query row and a range of its live key blocks (split-K); partial
//            softmax states go to a workspace, then MergeAttentionPartials combines them.
#ifndef FOXSERVE_KERNELS_CUDA_PAGED_ATTENTION_CUDA_H_
#define FOXSERVE_KERNELS_CUDA_PAGED_ATTENTION_CUDA_H_

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>

namespace foxserve {
namespace kernels {

// Supported head_dim and page size of these kernels.
inline constexpr int kCudaHeadDim = 64;
inline constexpr int kCudaPageSize = 64;

#ifdef __CUDACC__
#define FOXSERVE_HOST_DEVICE __host__ __device__
#else
#define FOXSERVE_HOST_DEVICE
#endif

FOXSERVE_HOST_DEVICE inline constexpr int64_t CudaPageBytes(int32_t page_size, int32_t head_dim) {
  return 4LL * page_size * head_dim + 4LL * page_size;
}

struct CudaKvPool {
  uint8_t* data = nullptr;  // [num_pages][CudaPageBytes]
  int64_t num_pages = 0;
  int32_t page_size = kCudaPageSize;
  int32_t head_dim = kCudaHeadDim;
};

// Device arrays shared by both kernels. Rows are (token, head) pairs: row = token * H + head.
struct CudaAttentionRows {
  const int32_t* token_position = nullptr;  // [tokens] absolute position of each token
  const int64_t* row_table = nullptr;       // [tokens * H] offset of the row's stream in pages/base
  const int32_t* pages = nullptr;           // concatenated block tables (-1: evicted)
  const double* block_base = nullptr;       // same indexing: absolute c of each block's first token
  const double* row_c = nullptr;            // [tokens * H] absolute c of each query
  const float* q = nullptr;                 // [tokens][H * head_dim]
  float* out = nullptr;                     // [tokens][H * head_dim]
  int32_t num_heads = 0;
  float scale = 0.125f;
  // [tokens * H] or null: an upper bound on the row's logits |q.k| scale (before the decay, which
  // only lowers them). Where present and small, the TMA prefill uses it as the softmax maximum.
  const float* row_logit_bound = nullptr;
  // Host side: a bound known to hold for every row_logit_bound (e.g. the largest of the layer's
  // weight bounds, which StepLogitBound never exceeds). When it is at most 30 the TMA prefill
  // launches a build without the online-softmax path, whose registers the bounded path then
  // does not share (three consumers spilled in their loop otherwise).
  float max_row_logit_bound = INFINITY;
};

// Prefill tasks: task i covers rows of tokens [first_token[i], first_token[i] + num_rows[i]) of
// head head[i], all in one page of positions, attending from key block start_block[i].
struct CudaPrefillTasks {
  const int32_t* first_token = nullptr;
  const int32_t* num_rows = nullptr;
  const int32_t* head = nullptr;
  const int32_t* start_block = nullptr;
  int32_t count = 0;
  // Workspace of the TMA prefill (LaunchPagedPrefillTma), or null: two counters, zero before a
  // launch and left zero by it (allocate zeroed, reuse; one launch at a time). Its CTAs take
  // their tiles from it; without it each takes a fixed share.
  int32_t* tile_counter = nullptr;
};

// Decode tasks: task i covers key blocks [block_begin[i], block_end[i]) of the row of token
// token[i], head head[i]; its partial state goes to workspace slot i. Row r's partials are
// slots [row_partials[r], row_partials[r + 1]) (a CSR over the decode rows listed in rows[]).
struct CudaDecodeTasks {
  const int32_t* token = nullptr;
  const int32_t* head = nullptr;
  const int32_t* block_begin = nullptr;
  const int32_t* block_end = nullptr;
  int32_t count = 0;
  // Merge: decode rows (token, head) and their partial ranges.
  const int32_t* row_token = nullptr;
  const int32_t* row_head = nullptr;
  const int32_t* row_partials = nullptr;  // [num_rows + 1]
  int32_t num_rows = 0;
  float* partial_m = nullptr;    // workspace [count]
  float* partial_l = nullptr;    // workspace [count]
  float* partial_acc = nullptr;  // workspace [count][head_dim]
  // The merge fused into the warp-split decode launch: per task its row (-1: a padding task of
  // no row) and per row a counter of its tasks that have finished, zero before a launch and left
  // zero by it (allocate zeroed, reuse). Either null: the merge is a second launch.
  const int32_t* task_row = nullptr;  // [count]
  int32_t* row_arrivals = nullptr;    // workspace [num_rows]
  // Of count, empty tasks past the rows' own (a graph step's padding): they end at once, so the
  // launcher leaves them out when it sizes the launch against the GPU's resident CTAs.
  int32_t padding_tasks = 0;
};

cudaError_t LaunchPagedPrefill(const CudaKvPool& pool, const CudaAttentionRows& rows,
                               const CudaPrefillTasks& tasks, cudaStream_t stream);
// The same prefill on tensor cores with the FlashAttention-2 dataflow (mma.sync m16n8k16,
// ldmatrix, cp.async double buffering of the next live page): S, P and O stay in registers. Q and
// P are rounded to bf16, so it agrees with the fp32 twin to about 1e-2 rather than 1e-6.
cudaError_t LaunchPagedPrefillMma(const CudaKvPool& pool, const CudaAttentionRows& rows,
                                  const CudaPrefillTasks& tasks, cudaStream_t stream);
// The same prefill on Hopper's warpgroup MMAs (wgmma.mma_async: Q, K and V read from swizzled
// shared memory, P from registers), two tasks a CTA sharing the pages they both read; the
// default of the CUDA model. Same bf16 rounding as the mma kernel.
cudaError_t LaunchPagedPrefillWgmma(const CudaKvPool& pool, const CudaAttentionRows& rows,
                                    const CudaPrefillTasks& tasks, cudaStream_t stream);
// The same prefill with a producer warp copying whole pages by TMA into a ring of stages and
// consumer warpgroups that take 128 keys an iteration (FlashAttention-3's structure). Where the
// rows carry logit bounds (row_logit_bound, <= 30), they are the softmax maxima: no running
// maxima or rescaling. Same bf16 rounding of P; the default of the CUDA model.
// shape: consumer warpgroups, each taking 128 keys an iteration. Two: a warp waits for its
// P V and S = Q K^T before the softmax, the other warpgroup keeping the tensor cores busy (the
// CUDA model's choice for short prompts). Three: the softmax runs while the previous P V is in
// flight (FlashAttention-3's intra-warpgroup overlap at its hdim-64 shape; the faster kernel at
// every length measured, the model's choice from 16384 positions on: see
// PrefersThreeConsumerPrefill). TensorSums: the rows' sums of P by the tensor cores (a ones
// block). rows.max_row_logit_bound <= 30 selects each shape's build without the online softmax.
enum class TmaPrefillShape {
  kTwoGroups128Keys,
  kTwoGroups128KeysTensorSums,
  kThreeGroups128KeysOverlap,
};
// The kernel is persistent: one CTA an SM (at most max_ctas when positive, to leave SMs to other
// work), each running tiles of consecutive tasks (as many as the shape has consumers) until none
// is left, taken from tasks.tile_counter when set. PrefillTmaTiles gives the tile count.
// timeline (optional; benchmarks): when set, the record of tile j (j in the order the tiles are
// taken) is the kPrefillTimelineSlots words at timeline + j * kPrefillTimelineSlots: its SM,
// then nanosecond stamps (%globaltimer) of its take, of its staging done (tasks, rows and Q), of
// each consumer's start on it (0 without a task) and of each consumer's rows written (0 without
// a task); consumers past the shape's count are 0 (bench/prefill_timeline.py sums them up).
constexpr int kPrefillTimelineSlots = 9;
int PrefillTmaTiles(const CudaPrefillTasks& tasks, TmaPrefillShape shape);
cudaError_t LaunchPagedPrefillTma(const CudaKvPool& pool, const CudaAttentionRows& rows,
                                  const CudaPrefillTasks& tasks, cudaStream_t stream,
                                  TmaPrefillShape shape = TmaPrefillShape::kTwoGroups128Keys,
                                  uint64_t* timeline = nullptr, int max_ctas = 0);
// Runs the split-K tasks and the merge. Empty tasks (block_begin >= block_end) are allowed and
// weigh nothing. The simple kernel: one key per thread, a shared-memory reduction of 64-wide
// states per task.
cudaError_t LaunchPagedDecode(const CudaKvPool& pool, const CudaAttentionRows& rows,
                              const CudaDecodeTasks& tasks, cudaStream_t stream);
// The same, warp-parallel over the head dimension (16-byte loads, 8-lane dot products), pages
// of a task spread over 4 warps; the default of the CUDA model. With task_row and row_arrivals
// set the merge runs inside this launch (a row's last task merges it; a row of one task writes
// its output directly); the simple kernel above always merges in a second launch.
//
// Its CTAs come in two builds, 3 or 4 resident an SM (145 or 128 registers a thread); kChosen
// takes the 4-CTA build when the tasks (less padding_tasks) fill the waves of resident CTAs
// clearly better with it (a part-empty last wave leaves too few loads in flight to keep the
// memory busy). One H200, bench/RESULTS.md, ninth stop, 32 blocks a task, us with 3 / 4 CTAs:
// ACP 4x16384 80.3 / 64.0 and 8x16384 126.3 / 117.0 (chosen: 4), dense 4x16384 105.7 / 117.2
// and ACP 2x32768 53.1 / 53.7 (chosen: 3).
enum class DecodeOccupancy { kChosen, kThreeCtasPerSm, kFourCtasPerSm };
cudaError_t LaunchPagedDecodeWarpSplit(const CudaKvPool& pool, const CudaAttentionRows& rows,
                                       const CudaDecodeTasks& tasks, cudaStream_t stream,
                                       DecodeOccupancy occupancy = DecodeOccupancy::kChosen);

// Writes K, V (bf16) and C of new tokens into their pages. k, v: [tokens][H * head_dim] fp32;
// page/slot/c_rel: [tokens * H].
cudaError_t LaunchAppendKv(const CudaKvPool& pool, const float* k, const float* v,
                           const int32_t* page, const int32_t* slot, const float* c_rel,
                           int32_t num_tokens, int32_t num_heads, cudaStream_t stream);

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_PAGED_ATTENTION_CUDA_H_
