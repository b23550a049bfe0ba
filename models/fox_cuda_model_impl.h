// The private parts of models/fox_cuda_model.cc shared with the files that implement it: the
// model's device state (FoxCudaModel::Impl), a sequence's region in the device mirror, and status
// conversion. fox_cuda_model.cc runs a step and its layers; fox_cuda_device_plan.cc plans ACP on
// the GPU (the default), fox_cuda_host_plan.cc on the host (FOXSERVE_ACP_PLANNER=host).
// Include only from those files.
#ifndef FOXSERVE_MODELS_FOX_CUDA_MODEL_IMPL_H_
#define FOXSERVE_MODELS_FOX_CUDA_MODEL_IMPL_H_

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "kernels/cuda/acp_plan_cuda.h"
#include "kernels/cuda/attention_tasks.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/device_kv_mirror.h"
#include "kernels/cuda/gemm_cuda.h"
#include "kernels/cuda/top_candidates_cuda.h"
#include "kernels/cuda/paged_attention_cuda.h"
#include "kernels/cuda/stage_timer.h"
#include "kernels/cuda/staging_arena.h"
#include "kernels/thread_pool.h"
#include "models/fox_cuda_model.h"
#include "models/kv_state.h"

namespace foxserve {
namespace models {
namespace cuda_model {

inline constexpr int32_t kPageSize = kernels::kCudaPageSize;
// A decode step that runs as a CUDA graph has its split-K task count rounded up to a multiple of
// this (the extra tasks are empty), so the graph survives sequences growing by a block.
inline constexpr int32_t kGraphDecodeTaskBucket = 1024;

inline absl::Status Check(cudaError_t e, absl::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}
inline absl::Status Check(cublasStatus_t s, absl::string_view what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": cuBLASLt status ", static_cast<int>(s)));
}

// A sequence's region in the device mirror; freed with the sequence (or its Reset).
class MirroredSequence : public BackendSequenceState {
 public:
  MirroredSequence(std::shared_ptr<kernels::DeviceKvMirror> mirror, kernels::DeviceKvRegion region)
      : mirror_(std::move(mirror)), region_(region) {}
  ~MirroredSequence() override { mirror_->Free(region_); }
  const kernels::DeviceKvMirror* mirror() const { return mirror_.get(); }
  const kernels::DeviceKvRegion& region() const { return region_; }
  int64_t uploaded_blocks = 0;  // block-table entries (per stream) the device has
  // Per head, the lowest ACP pointer over the layers as of the last step: where a decode row's
  // split-K tasks start (kept here by ApplyDeviceStep so that the next step's setup does not walk
  // every (layer, head) stream again). Empty: all zero.
  std::vector<int32_t> head_pointer;

 private:
  std::shared_ptr<kernels::DeviceKvMirror> mirror_;
  kernels::DeviceKvRegion region_;
};

}  // namespace cuda_model

struct FoxCudaModel::Impl {
  struct Layer {
    kernels::DeviceBuffer<float> attn_norm, q_norm, k_norm, output_norm, mlp_norm;
    kernels::DeviceBuffer<__nv_bfloat16> in_proj, o_proj, gate_up, down;
    std::vector<float> fgate_bias;  // host: the forget gate is finished on the host
  };

  FoxConfig config;
  InProjLayout ip;
  std::vector<double> logit_bounds;
  // [layer] the largest of the layer's logit_bounds: every row's StepLogitBound is at most this,
  // which lets the TMA prefill launch its bounded build (CudaAttentionRows::max_row_logit_bound).
  std::vector<float> layer_max_logit_bound;
  std::vector<Layer> layers;
  kernels::DeviceBuffer<__nv_bfloat16> embeddings;
  // The output projection with zero rows up to lm_rows (a multiple of 64): cuBLASLt streams an
  // odd vocabulary's weight (50257 rows) at a quarter of the rate it streams the padded one at
  // 16-128 rows (bench/gemm_bench). Logit rows are lm_rows floats apart on the device.
  kernels::DeviceBuffer<__nv_bfloat16> lm_head;
  int64_t lm_rows = 0;
  kernels::DeviceBuffer<float> final_norm;
  kernels::DeviceBuffer<uint8_t> pool;
  int64_t num_pages = 0;
  cudaStream_t stream = nullptr;
  std::unique_ptr<kernels::CublasLtGemm> gemm;
  // Where ACP is planned: on the GPU, from the device mirror of the block tables (default), or
  // on the host with one round trip a layer (FOXSERVE_ACP_PLANNER=host|device, read once at
  // load: the A/B pair, and the reference the device planner is tested against).
  bool device_planner = true;
  // Which split-K decode kernel runs (FOXSERVE_DECODE_KERNEL=warp|simple, the A/B pair).
  bool warp_decode = true;
  // The warp-split decode merges its rows' partials in its own launch (FOXSERVE_DECODE_MERGE=
  // fused|launch; launch: a second kernel, the earlier path, kept as the A/B pair).
  bool fused_decode_merge = true;
  // Which tensor-core prefill kernel runs (FOXSERVE_PREFILL_KERNEL=tma|wgmma|mma: the default,
  // the producer/consumer TMA kernel with the rows' logit bounds as softmax maxima; the wgmma
  // kernel it replaced; the mma.sync kernel before that).
  // tma3: the TMA kernel with three consumer warpgroups. auto (the default): tma3 for steps
  // with a long prefill item, else tma (kernels::PrefersThreeConsumerPrefill).
  static constexpr int kPrefillTma = 0, kPrefillWgmma = 1, kPrefillMma = 2, kPrefillTma3 = 3,
                       kPrefillAuto = 4;
  int prefill_kernel = kPrefillAuto;
  // The kernel of a step's prefill: prefill_kernel, with auto resolved from the items.
  int StepPrefillKernel(absl::Span<const ForwardItem> items) const;
  // Key blocks per split-K decode task: fixed by FOXSERVE_DECODE_CHUNK_BLOCKS (benchmarks), else
  // 0: chosen per step by kernels::ChooseDecodeChunkBlocks (16 or 32).
  int32_t decode_chunk_blocks = 0;
  int32_t DecodeChunkBlocks(const std::vector<kernels::AttentionItem>& items) const {
    if (decode_chunk_blocks > 0) return decode_chunk_blocks;
    return kernels::ChooseDecodeChunkBlocks(items, static_cast<int32_t>(config.num_heads),
                                            cuda_model::kPageSize);
  }
  // Decode steps (one token per item, device planner) as one CUDA graph launch per step (on by
  // default; FOXSERVE_CUDA_GRAPHS=on|off, read once at load). A batch size's graph is captured
  // the second time in a row a step has the same signature (so every buffer has its size and
  // address) and relaunched while the signature holds: the batch size, task counts, readback
  // sizes, ACP options and the address of every buffer and upload the kernels read.
  bool use_graphs = true;
  struct DecodeGraph {
    cudaGraphExec_t exec = nullptr;
    std::vector<uintptr_t> signature;   // of the captured step
    std::vector<uintptr_t> last_plain;  // of the last step of this size launched without it
    kernels::StageTimer::GraphMarks marks;  // FOXSERVE_PROFILE_STAGES: the graph's stage marks
  };
  std::map<int64_t, DecodeGraph> decode_graphs;  // by batch size
  int64_t graph_launches = 0;
  std::shared_ptr<kernels::DeviceKvMirror> mirror;
  // Host threads for writing a step's results back into the sequences' host state (about 37k
  // (layer, head) streams at batch 64, each a few cache lines).
  std::unique_ptr<kernels::ThreadPool> host_pool;
  kernels::DeviceBuffer<float> fgate_bias;     // [layers][heads]
  kernels::DeviceBuffer<double> weight_bounds;  // [layers][heads] U from the weights

  // Scratch, grown as needed.
  kernels::DeviceBuffer<int32_t> ids, token_item, item_first, item_last, positions, rows_sel;
  kernels::DeviceBuffer<float> x, proj, q, k, v, q_norms, k_norms, attn, delta, gate_up, shift_in,
      shift_out, logits;
  kernels::DeviceBuffer<__nv_bfloat16> a, o, mid;
  kernels::DeviceBuffer<float> pm, pl, pacc;
  // The fused decode merge's per-row counters (CudaDecodeTasks::row_arrivals): zeroed when they
  // grow, and every decode launch leaves them zero.
  kernels::DeviceBuffer<int32_t> row_arrivals;
  int64_t row_arrivals_zeroed = 0;
  // The TMA prefill's tile counter (CudaPrefillTasks::tile_counter): zeroed at creation, and
  // every launch leaves it zero.
  kernels::DeviceBuffer<int32_t> prefill_tile_counter;
  // The per-layer plan goes up in one copy, the values it is made from come back with one
  // synchronization (kernels/cuda/staging_arena.h says why).
  kernels::UploadArena plan_upload;
  kernels::PinnedBytes readback;
  // Device-planned steps: per-row plan outputs, task ranges, what comes back after the step.
  kernels::DeviceBuffer<double> row_c, log_f;
  kernels::DeviceBuffer<float> row_c_rel, row_logit_bound;
  kernels::DeviceBuffer<int32_t> row_page, row_slot, prefill_start, decode_begin, decode_end;
  kernels::DeviceBuffer<int64_t> row_table;
  kernels::DeviceBuffer<kernels::AcpStreamReadback> stream_back;
  kernels::DeviceBuffer<double> block_back;
  kernels::DeviceBuffer<int32_t> greedy;
  // What a step brings back lands in the readback set of its parity, so that a decode step
  // launched while the previous one is in flight (overlapped decode) does not overwrite what the
  // host has yet to read.
  struct Readback {
    kernels::PinnedBytes step;    // the plan's results (device planner)
    kernels::PinnedBytes greedy;  // greedy tokens
    cudaEvent_t done = nullptr;   // recorded after the step's last copy back
  };
  Readback readbacks[2];
  int next_readback = 0;
  // Top-candidates rows (ForwardItem::candidates): per row its inverse temperature, the
  // candidates and their summary, read back together; the rows stay in `logits` for
  // CandidateRow until the next step (first_candidate_row is where they start).
  kernels::DeviceBuffer<double> candidate_inv_t;
  kernels::DeviceBuffer<int32_t> candidate_ids;
  kernels::DeviceBuffer<float> candidate_values;
  kernels::DeviceBuffer<kernels::CandidateRowMeta> candidate_meta;
  kernels::PinnedBytes candidate_readback;
  int64_t first_candidate_row = 0, candidate_rows = 0;
  // FOXSERVE_PROFILE_STAGES=1: GPU time per stage, printed when the model is destroyed.
  kernels::StageTimer stages{std::getenv("FOXSERVE_PROFILE_STAGES")};

  absl::Status Gemm(const __nv_bfloat16* x_in, int64_t m, int64_t k_dim,
                    const kernels::DeviceBuffer<__nv_bfloat16>& w, int64_t n, float* y) {
    return cuda_model::Check(gemm->Run(x_in, m, k_dim, k_dim, w.get(), n, y, n, stream), "matrix product");
  }

  // What the attention of one layer reads: planned on the host or on the device.
  struct LayerPlan {
    const int32_t* page = nullptr;  // [rows] for the KV append
    const int32_t* slot = nullptr;
    const float* c_rel = nullptr;
    kernels::CudaAttentionRows rows;  // q and out filled in by RunLayer
    kernels::CudaPrefillTasks prefill;
    kernels::CudaDecodeTasks decode;  // count 0: no decode rows
  };
  // A step planned on the device: what every layer shares, uploaded once (offsets into
  // plan_upload).
  struct DeviceStep {
    size_t at_items = 0, at_slots = 0;
    size_t at_pf = 0, at_pn = 0, at_ph = 0, at_dt = 0, at_dh = 0, at_dr = 0, at_rt = 0, at_rh = 0;
    size_t at_rp = 0;
    int32_t prefill_tasks = 0, decode_tasks = 0, decode_rows = 0;
    int32_t decode_chunk_blocks = 0;  // key blocks per split-K decode task this step
    bool padded_decode = false;  // decode_tasks rounded up with empty tasks (graph steps)
    // How many: the decode launcher sizes its CTAs by the rest. Not in the graph signature (a
    // graph keeps the choice made when it was captured; only speed can differ).
    int32_t decode_padding = 0;
    int64_t touched_entries = 0;  // blocks of the readback, over all items and streams
    std::vector<int64_t> readback_block_base;  // per item: where its touched blocks start
  };

  // The step's logit rows (LogitRows order): returned to the host, reduced to candidates, then
  // reduced to greedy tokens.
  struct OutputRows {
    int64_t all = 0, returned = 0, candidates = 0;
    int64_t greedy() const { return all - returned - candidates; }
  };

  // A step launched and not yet finished (FoxCudaModel::Launch / Finish); at most two, oldest
  // first, the second only a greedy decode continuing the first.
  struct PendingStep {
    std::vector<ForwardItem> items;
    std::vector<int64_t> first_position;  // per item: its state's num_tokens before the step
    DeviceStep step;
    OutputRows out;
    int readback = 0;  // which of `readbacks`
  };
  std::deque<PendingStep> pending;

  // Every kernel of a step, from the embeddings to the greedy tokens: no allocation (after a first
  // step of the same shape) and no host copy, so a decode step can be captured as a graph.
  absl::Status LaunchStepKernels(absl::Span<const ForwardItem> items,
                                 const std::vector<int64_t>& row_offsets, const AcpOptions& acp,
                                 const DeviceStep* step, const OutputRows& out);
  absl::Status LaunchDecodeGraph(absl::Span<const ForwardItem> items,
                                 const std::vector<int64_t>& row_offsets, const AcpOptions& acp,
                                 const DeviceStep& step, const OutputRows& out);
  std::vector<uintptr_t> DecodeGraphSignature(int64_t num_items, const AcpOptions& acp,
                                              const DeviceStep& step,
                                              const OutputRows& out) const;
  // prefill: the step's prefill kernel (StepPrefillKernel).
  absl::Status RunLayer(int64_t l, absl::Span<const ForwardItem> items,
                        const std::vector<int64_t>& row_offsets, const AcpOptions& acp,
                        const DeviceStep* step, int prefill);
  // row_arrivals with room for `rows` counters, all zero (on `stream`).
  absl::Status ReserveRowArrivals(int64_t rows);
  // Host planner: reads the layer's gates and norms back, plans, uploads (one sync a layer).
  absl::Status PlanLayerOnHost(int64_t l, absl::Span<const ForwardItem> items,
                               const std::vector<int64_t>& row_offsets, const AcpOptions& acp,
                               LayerPlan* plan);
  // Device planner.
  // pad_decode: round the decode task count up to kGraphDecodeTaskBucket (graph steps).
  absl::Status PrepareDeviceStep(absl::Span<const ForwardItem> items,
                                 const std::vector<int64_t>& row_offsets, bool pad_decode,
                                 DeviceStep* step);
  absl::Status PlanLayerOnDevice(int64_t l, int64_t num_items, const AcpOptions& acp,
                                 const DeviceStep& step, LayerPlan* plan);
  void ApplyDeviceStep(absl::Span<const ForwardItem> items,
                       const std::vector<int64_t>& first_position, const DeviceStep& step,
                       const char* readback_bytes);
  // After the step's synchronization: candidate_readback into the items' candidates.
  void UnpackCandidates(absl::Span<const ForwardItem> items) const;
};

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_FOX_CUDA_MODEL_IMPL_H_
