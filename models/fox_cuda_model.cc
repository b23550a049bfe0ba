#include "models/fox_cuda_model.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cuda/acp_plan_cuda.h"
#include "kernels/cuda/attention_tasks.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/device_kv_mirror.h"
#include "kernels/cuda/fox_layer_kernels.h"
#include "kernels/cuda/gemm_cuda.h"
#include "kernels/cuda/paged_attention_cuda.h"
#include "kernels/cuda/stage_timer.h"
#include "kernels/cuda/staging_arena.h"
#include "models/acp_bounds.h"
#include "models/acp_stream_plan.h"
#include "models/status_macros.h"

namespace foxserve {
namespace models {

using kernels::DeviceBuffer;

namespace {

constexpr int32_t kPageSize = kernels::kCudaPageSize;
constexpr int32_t kDecodeChunkBlocks = 8;

absl::Status Check(cudaError_t e, absl::string_view what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}
absl::Status Check(cublasStatus_t s, absl::string_view what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": cuBLASLt status ", static_cast<int>(s)));
}

DeviceBuffer<__nv_bfloat16> ToBf16(const std::vector<float>& v) {
  std::vector<__nv_bfloat16> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = __float2bfloat16(v[i]);
  DeviceBuffer<__nv_bfloat16> d;
  d.Upload(h);
  return d;
}

DeviceBuffer<float> ToDevice(const std::vector<float>& v) {
  DeviceBuffer<float> d;
  d.Upload(v);
  return d;
}

}  // namespace

bool CudaDeviceAvailable(std::string* why) {
  const char* reason = nullptr;
  if (kernels::CudaDeviceCount(&reason) > 0) return true;
  if (why != nullptr) *why = reason != nullptr ? reason : "no CUDA device";
  return false;
}

namespace {

// A sequence's region in the device mirror; freed with the sequence (or its Reset).
class MirroredSequence : public BackendSequenceState {
 public:
  MirroredSequence(std::shared_ptr<kernels::DeviceKvMirror> mirror, kernels::DeviceKvRegion region)
      : mirror_(std::move(mirror)), region_(region) {}
  ~MirroredSequence() override { mirror_->Free(region_); }
  const kernels::DeviceKvMirror* mirror() const { return mirror_.get(); }
  const kernels::DeviceKvRegion& region() const { return region_; }
  int64_t uploaded_blocks = 0;  // block-table entries (per stream) the device has

 private:
  std::shared_ptr<kernels::DeviceKvMirror> mirror_;
  kernels::DeviceKvRegion region_;
};

}  // namespace

struct FoxCudaModel::Impl {
  struct Layer {
    DeviceBuffer<float> attn_norm, q_norm, k_norm, output_norm, mlp_norm;
    DeviceBuffer<__nv_bfloat16> in_proj, o_proj, gate_up, down;
    std::vector<float> fgate_bias;  // host: the forget gate is finished on the host
  };

  FoxConfig config;
  InProjLayout ip;
  std::vector<double> logit_bounds;
  std::vector<Layer> layers;
  DeviceBuffer<__nv_bfloat16> embeddings, lm_head;
  DeviceBuffer<float> final_norm;
  DeviceBuffer<uint8_t> pool;
  int64_t num_pages = 0;
  cudaStream_t stream = nullptr;
  std::unique_ptr<kernels::CublasLtGemm> gemm;
  // Which tensor-core prefill runs: the WMMA kernel or the register-resident mma.sync one
  // (FOXSERVE_PREFILL_KERNEL=wmma|mma, read once at load: an A/B switch for benchmarks).
  bool mma_prefill = true;
  // Where ACP is planned: on the GPU, from the device mirror of the block tables (default), or
  // on the host with one round trip a layer (FOXSERVE_ACP_PLANNER=host|device, read once at
  // load: the A/B pair, and the reference the device planner is tested against).
  bool device_planner = true;
  // Which split-K decode kernel runs (FOXSERVE_DECODE_KERNEL=warp|simple, the A/B pair).
  bool warp_decode = true;
  std::shared_ptr<kernels::DeviceKvMirror> mirror;
  DeviceBuffer<float> fgate_bias;     // [layers][heads]
  DeviceBuffer<double> weight_bounds;  // [layers][heads] U from the weights

  // Scratch, grown as needed.
  DeviceBuffer<int32_t> ids, token_item, item_first, item_last, positions, rows_sel;
  DeviceBuffer<float> x, proj, q, k, v, q_norms, k_norms, attn, delta, gate_up, shift_in,
      shift_out, logits;
  DeviceBuffer<__nv_bfloat16> a, o, mid;
  DeviceBuffer<float> pm, pl, pacc;
  // The per-layer plan goes up in one copy, the values it is made from come back with one
  // synchronization (kernels/cuda/staging_arena.h says why).
  kernels::UploadArena plan_upload;
  kernels::PinnedBytes readback;
  // Device-planned steps: per-row plan outputs, task ranges, what comes back after the step.
  DeviceBuffer<double> row_c;
  DeviceBuffer<float> row_c_rel;
  DeviceBuffer<int32_t> row_page, row_slot, prefill_start, decode_begin, decode_end;
  DeviceBuffer<int64_t> row_table;
  DeviceBuffer<kernels::AcpStreamReadback> stream_back;
  DeviceBuffer<double> block_back;
  kernels::PinnedBytes step_readback;
  DeviceBuffer<int32_t> greedy;
  kernels::PinnedBytes greedy_readback;
  // FOXSERVE_PROFILE_STAGES=1: GPU time per stage, printed when the model is destroyed.
  kernels::StageTimer stages{std::getenv("FOXSERVE_PROFILE_STAGES") != nullptr};

  absl::Status Gemm(const __nv_bfloat16* x_in, int64_t m, int64_t k_dim,
                    const DeviceBuffer<__nv_bfloat16>& w, int64_t n, float* y) {
    return Check(gemm->Run(x_in, m, k_dim, k_dim, w.get(), n, y, n, stream), "matrix product");
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
    size_t at_pf = 0, at_pn = 0, at_ph = 0, at_dt = 0, at_dh = 0, at_rt = 0, at_rh = 0, at_rp = 0;
    int32_t prefill_tasks = 0, decode_tasks = 0, decode_rows = 0;
    std::vector<int64_t> touched_base;  // per item: first touched-block entry of the readback
    int64_t touched_entries = 0;
  };

  absl::Status RunLayer(int64_t l, absl::Span<const ForwardItem> items,
                        const std::vector<int64_t>& row_offsets, const AcpOptions& acp,
                        const DeviceStep* step);
  // Host planner: reads the layer's gates and norms back, plans, uploads (one sync a layer).
  absl::Status PlanLayerOnHost(int64_t l, absl::Span<const ForwardItem> items,
                               const std::vector<int64_t>& row_offsets, const AcpOptions& acp,
                               LayerPlan* plan);
  // Device planner.
  absl::Status PrepareDeviceStep(absl::Span<const ForwardItem> items,
                                 const std::vector<int64_t>& row_offsets, DeviceStep* step);
  absl::Status PlanLayerOnDevice(int64_t l, int64_t num_items, const AcpOptions& acp,
                                 const DeviceStep& step, LayerPlan* plan);
  void ApplyDeviceStep(absl::Span<const ForwardItem> items, const DeviceStep& step,
                       const char* readback_bytes);
};

FoxCudaModel::FoxCudaModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FoxCudaModel::~FoxCudaModel() {
  if (impl_) impl_->stages.Summary(stderr);
  if (impl_ && impl_->stream) cudaStreamDestroy(impl_->stream);
}

const FoxConfig& FoxCudaModel::config() const { return impl_->config; }
const std::vector<double>& FoxCudaModel::logit_bounds() const { return impl_->logit_bounds; }
int32_t FoxCudaModel::page_size() const { return kPageSize; }
int64_t FoxCudaModel::page_bytes() const { return kernels::CudaPageBytes(kPageSize, kernels::kCudaHeadDim); }
int64_t FoxCudaModel::num_pages() const { return impl_->num_pages; }

int64_t FoxCudaModel::PagesForBytes(const FoxConfig& config, int64_t bytes) {
  return bytes / kernels::CudaPageBytes(kPageSize, static_cast<int32_t>(config.head_dim));
}

absl::StatusOr<std::unique_ptr<FoxCudaModel>> FoxCudaModel::Create(
    std::unique_ptr<FoxWeights> w, int64_t num_pages) {
  std::string why;
  if (!CudaDeviceAvailable(&why)) return absl::FailedPreconditionError(absl::StrCat("no GPU: ", why));
  const FoxConfig& c = w->config;
  if (c.head_dim != kernels::kCudaHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the CUDA backend needs head_dim ", kernels::kCudaHeadDim, "; this model has ", c.head_dim));
  }
  if (num_pages < 1 || num_pages > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("KV pool of ", num_pages, " pages"));
  }
  auto impl = std::make_unique<Impl>();
  impl->config = c;
  impl->ip = w->in_proj;
  impl->logit_bounds = ComputeLogitBounds(*w);
  if (const char* kernel = std::getenv("FOXSERVE_PREFILL_KERNEL"); kernel != nullptr) {
    if (std::strcmp(kernel, "wmma") != 0 && std::strcmp(kernel, "mma") != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("FOXSERVE_PREFILL_KERNEL must be mma or wmma, got \"", kernel, "\""));
    }
    impl->mma_prefill = std::strcmp(kernel, "mma") == 0;
  }
  if (const char* decode = std::getenv("FOXSERVE_DECODE_KERNEL"); decode != nullptr) {
    if (std::strcmp(decode, "warp") != 0 && std::strcmp(decode, "simple") != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("FOXSERVE_DECODE_KERNEL must be warp or simple, got \"", decode, "\""));
    }
    impl->warp_decode = std::strcmp(decode, "warp") == 0;
  }
  if (const char* planner = std::getenv("FOXSERVE_ACP_PLANNER"); planner != nullptr) {
    if (std::strcmp(planner, "host") != 0 && std::strcmp(planner, "device") != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("FOXSERVE_ACP_PLANNER must be host or device, got \"", planner, "\""));
    }
    impl->device_planner = std::strcmp(planner, "device") == 0;
  }
  FOXSERVE_RETURN_IF_ERROR(Check(cudaStreamCreate(&impl->stream), "cudaStreamCreate"));
  const kernels::CublasLtLibrary* cublaslt = kernels::OpenCublasLt(&why);
  if (cublaslt == nullptr) return absl::FailedPreconditionError(why);
  impl->gemm = std::make_unique<kernels::CublasLtGemm>(cublaslt);
  for (FoxLayerWeights& lw : w->layers) {
    Impl::Layer layer;
    layer.attn_norm = ToDevice(lw.attn_norm);
    layer.in_proj = ToBf16(lw.in_proj);
    layer.fgate_bias = lw.fgate_bias;
    if (c.qk_norm) {
      layer.q_norm = ToDevice(lw.q_norm);
      layer.k_norm = ToDevice(lw.k_norm);
    }
    if (c.use_output_norm) layer.output_norm = ToDevice(lw.output_norm);
    layer.o_proj = ToBf16(lw.o_proj);
    layer.mlp_norm = ToDevice(lw.mlp_norm);
    layer.gate_up = ToBf16(lw.gate_up_proj);
    layer.down = ToBf16(lw.down_proj);
    impl->layers.push_back(std::move(layer));
    // Free the host copy as soon as it is on the device.
    lw = FoxLayerWeights();
  }
  {
    std::vector<float> bias;
    for (const Impl::Layer& layer : impl->layers) {
      bias.insert(bias.end(), layer.fgate_bias.begin(), layer.fgate_bias.end());
    }
    bias.resize(c.num_hidden_layers * c.num_heads, 0.0f);
    impl->fgate_bias = ToDevice(bias);
    impl->weight_bounds.Upload(impl->logit_bounds);
  }
  impl->mirror = std::make_shared<kernels::DeviceKvMirror>(
      static_cast<int32_t>(c.num_hidden_layers * c.num_heads),
      static_cast<int32_t>(c.num_hidden_layers * 2 * c.hidden_size), impl->stream);
  impl->embeddings = ToBf16(w->embeddings);
  impl->lm_head = ToBf16(w->output_embeddings());
  impl->final_norm = ToDevice(w->final_norm);
  impl->num_pages = num_pages;
  impl->pool.Resize(num_pages * kernels::CudaPageBytes(kPageSize, kernels::kCudaHeadDim));
  FOXSERVE_RETURN_IF_ERROR(Check(cudaDeviceSynchronize(), "uploading the weights"));
  return std::unique_ptr<FoxCudaModel>(new FoxCudaModel(std::move(impl)));
}

void FoxCudaModel::PoisonPages(absl::Span<const int32_t> pages) {
  const int64_t floats = page_bytes() / 4;
  for (int32_t p : pages) {
    FOXSERVE_CUDA_CHECK(kernels::LaunchFillNan(
        reinterpret_cast<float*>(impl_->pool.get() + p * page_bytes()), floats, impl_->stream));
  }
}

absl::Status FoxCudaModel::Forward(absl::Span<const ForwardItem> items, const AcpOptions& acp,
                                   std::vector<float>* logits) {
  Impl& m = *impl_;
  const FoxConfig& c = m.config;
  const int64_t D = c.hidden_size, V = c.vocab_size;
  std::vector<int64_t> row_offsets;
  int64_t logit_rows = 0;
  FOXSERVE_RETURN_IF_ERROR(
      ValidateForwardItems(items, c, kPageSize, m.num_pages, &row_offsets, &logit_rows));
  const int64_t N = row_offsets.back();

  m.stages.Mark("step upload", m.stream);
  // - Token bookkeeping and the embeddings.
  std::vector<int32_t> ids, token_item, item_first, item_last, positions;
  for (size_t i = 0; i < items.size(); ++i) {
    item_first.push_back(static_cast<int32_t>(row_offsets[i]));
    item_last.push_back(static_cast<int32_t>(row_offsets[i + 1] - 1));
    for (size_t t = 0; t < items[i].tokens.size(); ++t) {
      ids.push_back(items[i].tokens[t]);
      token_item.push_back(static_cast<int32_t>(i));
      positions.push_back(static_cast<int32_t>(items[i].state->num_tokens + t));
    }
  }
  m.ids.Upload(ids, m.stream);
  m.token_item.Upload(token_item, m.stream);
  m.item_first.Upload(item_first, m.stream);
  m.item_last.Upload(item_last, m.stream);
  m.positions.Upload(positions, m.stream);
  Impl::DeviceStep step;
  if (m.device_planner) FOXSERVE_RETURN_IF_ERROR(m.PrepareDeviceStep(items, row_offsets, &step));
  m.x.Resize(N * D);
  m.stages.Mark("embeddings", m.stream);
  FOXSERVE_RETURN_IF_ERROR(Check(
      kernels::LaunchEmbeddingGather(m.ids.get(), m.embeddings.get(), N, D, m.x.get(), m.stream),
      "embeddings"));

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    FOXSERVE_RETURN_IF_ERROR(
        m.RunLayer(l, items, row_offsets, acp, m.device_planner ? &step : nullptr));
  }

  // - Final norm and the output projection of the requested rows; greedy items get their token
  //   on the device and only the other rows come back.
  int64_t returned_rows = 0;
  std::vector<int32_t> rows;
  for (int64_t r : LogitRows(items, row_offsets, &returned_rows)) {
    rows.push_back(static_cast<int32_t>(r));
  }
  m.stages.Mark("final norm + lm head", m.stream);
  m.rows_sel.Upload(rows, m.stream);
  m.a.Resize(std::max<int64_t>(N, logit_rows) * D);
  FOXSERVE_RETURN_IF_ERROR(Check(
      kernels::LaunchRmsNormToBf16(m.x.get(), m.rows_sel.get(), m.final_norm.get(), logit_rows, D,
                                   static_cast<float>(c.norm_eps), m.a.get(), m.stream),
      "final norm"));
  m.logits.Resize(logit_rows * V);
  FOXSERVE_RETURN_IF_ERROR(m.Gemm(m.a.get(), logit_rows, D, m.lm_head, V, m.logits.get()));
  const int64_t greedy_rows = logit_rows - returned_rows;
  m.greedy.Resize(std::max<int64_t>(1, greedy_rows));
  FOXSERVE_RETURN_IF_ERROR(Check(
      kernels::LaunchGreedyTokens(m.logits.get() + returned_rows * V,
                                  static_cast<int32_t>(greedy_rows), V, m.greedy.get(), m.stream),
      "greedy tokens"));
  m.stages.Mark("readback", m.stream);
  if (greedy_rows > 0) {
    m.greedy_readback.Reserve(greedy_rows * sizeof(int32_t), 0);
    FOXSERVE_RETURN_IF_ERROR(Check(cudaMemcpyAsync(m.greedy_readback.data(), m.greedy.get(),
                                                   greedy_rows * sizeof(int32_t),
                                                   cudaMemcpyDeviceToHost, m.stream),
                                   "greedy token readback"));
  }
  if (m.device_planner) {
    // The plan's results come back with the logits: one synchronization for the whole step.
    const size_t stream_bytes = m.stream_back.size() * sizeof(kernels::AcpStreamReadback);
    const size_t block_bytes = m.block_back.size() * sizeof(double);
    m.step_readback.Reserve(stream_bytes + block_bytes, 0);
    FOXSERVE_RETURN_IF_ERROR(Check(cudaMemcpyAsync(m.step_readback.data(), m.stream_back.get(),
                                                   stream_bytes, cudaMemcpyDeviceToHost, m.stream),
                                   "plan readback"));
    FOXSERVE_RETURN_IF_ERROR(Check(
        cudaMemcpyAsync(m.step_readback.data() + stream_bytes, m.block_back.get(), block_bytes,
                        cudaMemcpyDeviceToHost, m.stream),
        "block readback"));
  }
  // Into the caller's vector, which keeps its capacity from step to step (a fresh 13 MB
  // allocation a step cost page faults).
  logits->resize(returned_rows * V);
  if (returned_rows > 0) {
    FOXSERVE_RETURN_IF_ERROR(Check(cudaMemcpyAsync(logits->data(), m.logits.get(),
                                                   returned_rows * V * sizeof(float),
                                                   cudaMemcpyDeviceToHost, m.stream),
                                   "logits readback"));
  }
  m.stages.Mark("end", m.stream);
  FOXSERVE_RETURN_IF_ERROR(Check(cudaStreamSynchronize(m.stream), "forward step"));
  {
    const auto* tokens = reinterpret_cast<const int32_t*>(m.greedy_readback.data());
    int64_t g = 0;
    for (const ForwardItem& item : items) {
      if (item.greedy_token != nullptr) *item.greedy_token = tokens[g++];
    }
  }
  m.stages.Collect(N == static_cast<int64_t>(items.size()) ? "decode" : "prefill");
  if (m.device_planner) m.ApplyDeviceStep(items, step, m.step_readback.data());
  for (const ForwardItem& item : items) item.state->num_tokens += item.tokens.size();
  return absl::OkStatus();
}

absl::Status FoxCudaModel::Impl::PrepareDeviceStep(absl::Span<const ForwardItem> items,
                                                   const std::vector<int64_t>& row_offsets,
                                                   DeviceStep* step) {
  const FoxConfig& c = config;
  const int64_t L = c.num_hidden_layers, H = c.num_heads, D = c.hidden_size;
  const int64_t streams = L * H;
  const int64_t num_items = static_cast<int64_t>(items.size());

  // - Regions in the mirror: new sequences get one (which may move the mirror's arrays, so
  //   every address is read after this loop).
  std::vector<MirroredSequence*> seqs(num_items);
  std::vector<bool> fresh(num_items, false);
  for (int64_t i = 0; i < num_items; ++i) {
    SequenceKvState& s = *items[i].state;
    auto* seq = dynamic_cast<MirroredSequence*>(s.backend_state.get());
    if (s.backend_state != nullptr && (seq == nullptr || seq->mirror() != mirror.get())) {
      return absl::InvalidArgumentError("sequence state belongs to another backend");
    }
    if (seq == nullptr) {
      const int64_t capacity =
          std::max<int64_t>((s.max_total_tokens + kPageSize - 1) / kPageSize + 1, s.num_blocks());
      if (capacity > INT32_MAX / streams) {
        return absl::OutOfRangeError(absl::StrCat("sequence of ", s.max_total_tokens, " tokens"));
      }
      kernels::DeviceKvRegion region;
      FOXSERVE_RETURN_IF_ERROR(
          Check(mirror->Allocate(static_cast<int32_t>(capacity), &region), "KV mirror"));
      auto owned = std::make_unique<MirroredSequence>(mirror, region);
      seq = owned.get();
      s.backend_state = std::move(owned);
      fresh[i] = true;
    }
    seqs[i] = seq;
  }

  // - What goes up: new block-table entries, the state of new sequences, the step's items and
  //   task shapes. Copies into the mirror run device-to-device after the one upload.
  struct Placement {
    size_t from;
    void* to;
    size_t bytes;
  };
  // [streams] rows of `blocks` entries into rows of the region's capacity.
  struct BlockRows {
    size_t from;
    void* to;
    int64_t blocks, capacity;
    size_t entry_bytes;
  };
  std::vector<Placement> placements;
  std::vector<BlockRows> block_rows;
  kernels::UploadArena& up = plan_upload;
  up.Reset();
  std::vector<kernels::AcpPlanItem> plan_items(num_items);
  std::vector<int32_t> slots(num_items);
  std::vector<kernels::AttentionItem> att_items(num_items);
  step->touched_base.assign(num_items, 0);
  step->touched_entries = 0;
  for (int64_t i = 0; i < num_items; ++i) {
    SequenceKvState& s = *items[i].state;
    MirroredSequence& seq = *seqs[i];
    const kernels::DeviceKvRegion& region = seq.region();
    const int64_t cap = region.capacity;
    const int64_t table0 = region.block_offset;
    const int64_t have = std::min<int64_t>(s.num_blocks(), cap);
    if (have > seq.uploaded_blocks) {
      // Pages only get appended; entries the engine has since evicted are below every pointer.
      const int64_t nb = have - seq.uploaded_blocks;
      std::vector<int32_t> pages(streams * nb);
      for (int64_t st = 0; st < streams; ++st) {
        std::copy(s.streams[st].pages.begin() + seq.uploaded_blocks,
                  s.streams[st].pages.begin() + have, pages.begin() + st * nb);
      }
      block_rows.push_back({up.Add(pages), mirror->pages() + table0 + seq.uploaded_blocks, nb, cap,
                            sizeof(int32_t)});
      seq.uploaded_blocks = have;
    }
    if (fresh[i]) {
      // The host's state (empty for a new sequence, else the state it has kept).
      const int64_t written = static_cast<int64_t>(s.streams[0].block_c_first.size());
      if (written > 0) {
        std::vector<double> first(streams * written), last(streams * written);
        for (int64_t st = 0; st < streams; ++st) {
          const KvStream& ks = s.streams[st];
          std::copy(ks.block_c_first.begin(), ks.block_c_first.begin() + written,
                    first.begin() + st * written);
          std::copy(ks.block_c_last.begin(), ks.block_c_last.begin() + written,
                    last.begin() + st * written);
        }
        block_rows.push_back(
            {up.Add(first), mirror->c_first() + table0, written, cap, sizeof(double)});
        block_rows.push_back(
            {up.Add(last), mirror->c_last() + table0, written, cap, sizeof(double)});
      }
      std::vector<double> c_now(streams);
      std::vector<float> key_norm(streams), shift(L * 2 * D);
      std::vector<int32_t> pointer(streams);
      for (int64_t st = 0; st < streams; ++st) {
        c_now[st] = s.streams[st].c_now;
        key_norm[st] = s.streams[st].max_key_norm;
        pointer[st] = static_cast<int32_t>(s.streams[st].first_live_block);
      }
      for (int64_t l = 0; l < L; ++l) {
        std::copy(s.k_shift_prev.begin() + l * D, s.k_shift_prev.begin() + (l + 1) * D,
                  shift.begin() + l * 2 * D);
        std::copy(s.v_shift_prev.begin() + l * D, s.v_shift_prev.begin() + (l + 1) * D,
                  shift.begin() + l * 2 * D + D);
      }
      const int64_t slot = region.slot;
      placements.push_back({up.Add(c_now), mirror->c_now() + slot * streams, streams * sizeof(double)});
      placements.push_back(
          {up.Add(key_norm), mirror->max_key_norm() + slot * streams, streams * sizeof(float)});
      placements.push_back(
          {up.Add(pointer), mirror->first_live_block() + slot * streams, streams * sizeof(int32_t)});
      placements.push_back({up.Add(shift), mirror->shift() + slot * mirror->shift_floats(),
                            shift.size() * sizeof(float)});
    }

    const int64_t r0 = row_offsets[i], n = row_offsets[i + 1] - r0, pos0 = s.num_tokens;
    kernels::AcpPlanItem& pi = plan_items[i];
    pi.first_position = pos0;
    pi.max_total_tokens = s.max_total_tokens;
    pi.block_offset = table0;
    pi.block_capacity = static_cast<int32_t>(cap);
    pi.slot = region.slot;
    pi.first_row = static_cast<int32_t>(r0);
    pi.num_tokens = static_cast<int32_t>(n);
    pi.readback_block_base = step->touched_entries;
    step->touched_base[i] = step->touched_entries;
    step->touched_entries += streams * kernels::NumQueryBlocks(pos0, n, kPageSize);
    slots[i] = region.slot;
    kernels::AttentionItem& att = att_items[i];
    att.first_token = static_cast<int32_t>(r0);
    att.num_tokens = static_cast<int32_t>(n);
    att.first_position = pos0;
    if (n == 1) {
      // The row's tasks start from the host's pointer (a step old, never ahead of this step's
      // start), the lowest over the layers.
      att.starts.assign(H, INT32_MAX);
      for (int64_t l = 0; l < L; ++l) {
        for (int64_t h = 0; h < H; ++h) {
          att.starts[h] = std::min<int32_t>(
              att.starts[h], static_cast<int32_t>(s.stream(l, h).first_live_block));
        }
      }
    }
  }
  kernels::HostAttentionTasks tasks;
  std::vector<int32_t> prefill_base, decode_base;
  kernels::BuildAttentionTaskShapes(att_items, static_cast<int32_t>(H), kPageSize,
                                    kDecodeChunkBlocks, &tasks, &prefill_base, &decode_base);
  for (int64_t i = 0; i < num_items; ++i) {
    plan_items[i].prefill_task_base = prefill_base[i];
    plan_items[i].decode_row_base = decode_base[i];
  }
  step->at_items = up.Add(plan_items);
  step->at_slots = up.Add(slots);
  step->at_pf = up.Add(tasks.prefill_first_token);
  step->at_pn = up.Add(tasks.prefill_num_rows);
  step->at_ph = up.Add(tasks.prefill_head);
  step->at_dt = up.Add(tasks.decode_token);
  step->at_dh = up.Add(tasks.decode_head);
  step->at_rt = up.Add(tasks.row_token);
  step->at_rh = up.Add(tasks.row_head);
  step->at_rp = up.Add(tasks.row_partials);
  step->prefill_tasks = static_cast<int32_t>(tasks.prefill_first_token.size());
  step->decode_tasks = static_cast<int32_t>(tasks.decode_token.size());
  step->decode_rows = static_cast<int32_t>(tasks.row_token.size());
  up.Flush(stream);
  for (const BlockRows& r : block_rows) {
    const size_t row_bytes = r.blocks * r.entry_bytes;
    FOXSERVE_RETURN_IF_ERROR(Check(
        cudaMemcpy2DAsync(r.to, r.capacity * r.entry_bytes, up.At<char>(r.from), row_bytes,
                          row_bytes, streams, cudaMemcpyDeviceToDevice, stream),
        "block table upload"));
  }
  for (const Placement& p : placements) {
    FOXSERVE_RETURN_IF_ERROR(Check(
        cudaMemcpyAsync(p.to, up.At<char>(p.from), p.bytes, cudaMemcpyDeviceToDevice, stream),
        "sequence state upload"));
  }

  // - Per-step scratch.
  const int64_t rows = row_offsets.back() * H;
  row_c.Resize(rows);
  row_c_rel.Resize(rows);
  row_page.Resize(rows);
  row_slot.Resize(rows);
  row_table.Resize(rows);
  prefill_start.Resize(std::max<int64_t>(1, step->prefill_tasks));
  decode_begin.Resize(std::max<int64_t>(1, step->decode_tasks));
  decode_end.Resize(std::max<int64_t>(1, step->decode_tasks));
  pm.Resize(std::max<int64_t>(1, step->decode_tasks));
  pl.Resize(std::max<int64_t>(1, step->decode_tasks));
  pacc.Resize(std::max<int64_t>(1, step->decode_tasks) * c.head_dim);
  stream_back.Resize(num_items * streams);
  block_back.Resize(2 * step->touched_entries);
  return absl::OkStatus();
}

absl::Status FoxCudaModel::Impl::PlanLayerOnDevice(int64_t l, int64_t num_items,
                                                   const AcpOptions& acp, const DeviceStep& step,
                                                   LayerPlan* plan) {
  const FoxConfig& c = config;
  const int64_t H = c.num_heads;
  const kernels::UploadArena& up = plan_upload;
  kernels::AcpPlanParams p;
  p.items = up.At<kernels::AcpPlanItem>(step.at_items);
  p.num_items = static_cast<int32_t>(num_items);
  p.layer = static_cast<int32_t>(l);
  p.num_layers = static_cast<int32_t>(c.num_hidden_layers);
  p.num_heads = static_cast<int32_t>(H);
  p.head_dim = static_cast<int32_t>(c.head_dim);
  p.page_size = kPageSize;
  switch (c.fgate_type) {
    case FgateType::kFull:
      p.gate_mode = kernels::AcpGateMode::kFull;
      break;
    case FgateType::kBiasOnly:
    case FgateType::kFixed:
      p.gate_mode = kernels::AcpGateMode::kBiasOnly;
      break;
    case FgateType::kNone:
      p.gate_mode = kernels::AcpGateMode::kNone;
      break;
  }
  p.fgate_logits = proj.get() + ip.fgate;
  p.fgate_stride = ip.rows;
  p.fgate_bias = fgate_bias.get() + l * H;
  p.logit_bounds = weight_bounds.get() + l * H;
  p.q_norms = q_norms.get();
  p.k_norms = k_norms.get();
  p.acp_enabled = acp.enabled;
  p.log_eps = acp.log_eps;
  p.pages = mirror->pages();
  p.c_first = mirror->c_first();
  p.c_last = mirror->c_last();
  p.c_now = mirror->c_now();
  p.max_key_norm = mirror->max_key_norm();
  p.first_live_block = mirror->first_live_block();
  p.row_c = row_c.get();
  p.row_c_rel = row_c_rel.get();
  p.row_page = row_page.get();
  p.row_slot = row_slot.get();
  p.row_table = row_table.get();
  p.prefill_start = prefill_start.get();
  p.decode_row_partials = up.At<int32_t>(step.at_rp);
  p.decode_begin = decode_begin.get();
  p.decode_end = decode_end.get();
  p.decode_chunk_blocks = kDecodeChunkBlocks;
  p.streams = stream_back.get();
  p.touched_blocks = block_back.get();
  FOXSERVE_RETURN_IF_ERROR(Check(kernels::LaunchAcpPlan(p, stream), "ACP plan"));

  plan->page = row_page.get();
  plan->slot = row_slot.get();
  plan->c_rel = row_c_rel.get();
  plan->rows = kernels::CudaAttentionRows{positions.get(), row_table.get(), mirror->pages(),
                                          mirror->c_first(), row_c.get(), nullptr, nullptr,
                                          static_cast<int32_t>(H),
                                          1.0f / std::sqrt(static_cast<float>(c.head_dim))};
  plan->prefill = kernels::CudaPrefillTasks{up.At<int32_t>(step.at_pf), up.At<int32_t>(step.at_pn),
                                            up.At<int32_t>(step.at_ph), prefill_start.get(),
                                            step.prefill_tasks};
  plan->decode = kernels::CudaDecodeTasks{up.At<int32_t>(step.at_dt), up.At<int32_t>(step.at_dh),
                                          decode_begin.get(), decode_end.get(), step.decode_tasks,
                                          up.At<int32_t>(step.at_rt), up.At<int32_t>(step.at_rh),
                                          up.At<int32_t>(step.at_rp), step.decode_rows, pm.get(),
                                          pl.get(), pacc.get()};
  return absl::OkStatus();
}

void FoxCudaModel::Impl::ApplyDeviceStep(absl::Span<const ForwardItem> items,
                                         const DeviceStep& step, const char* readback_bytes) {
  const int64_t L = config.num_hidden_layers, H = config.num_heads;
  const auto* back = reinterpret_cast<const kernels::AcpStreamReadback*>(readback_bytes);
  const auto* touched = reinterpret_cast<const double*>(
      readback_bytes + stream_back.size() * sizeof(kernels::AcpStreamReadback));
  for (size_t i = 0; i < items.size(); ++i) {
    SequenceKvState& s = *items[i].state;
    const int64_t pos0 = s.num_tokens, n = static_cast<int64_t>(items[i].tokens.size());
    const int64_t first_block = pos0 / kPageSize;
    const int64_t nqb = kernels::NumQueryBlocks(pos0, n, kPageSize);
    for (int64_t st = 0; st < L * H; ++st) {
      const kernels::AcpStreamReadback& b = back[i * L * H + st];
      KvStream& ks = s.streams[st];
      ks.c_now = b.c_now;
      ks.max_key_norm = b.max_key_norm;
      ks.first_live_block = b.first_live_block;
      const double* tb = touched + 2 * (step.touched_base[i] + st * nqb);
      ks.block_c_first.resize(std::max<size_t>(ks.block_c_first.size(), first_block + nqb));
      ks.block_c_last.resize(ks.block_c_first.size());
      for (int64_t j = 0; j < nqb; ++j) {
        ks.block_c_first[first_block + j] = tb[2 * j];
        ks.block_c_last[first_block + j] = tb[2 * j + 1];
      }
      if (AcpCounters* counters = items[i].acp_counters; counters != nullptr) {
        counters->computed[st] += b.tiles_computed;
        counters->skipped[st] += b.tiles_skipped;
      }
    }
  }
}

absl::Status FoxCudaModel::Impl::RunLayer(int64_t l, absl::Span<const ForwardItem> items,
                                          const std::vector<int64_t>& row_offsets,
                                          const AcpOptions& acp, const DeviceStep* step) {
  const FoxConfig& c = config;
  const Layer& w = layers[l];
  const int64_t D = c.hidden_size, H = c.num_heads, d = c.head_dim, I = c.intermediate_size;
  const int64_t P = ip.rows, N = row_offsets.back();
  const int64_t num_items = static_cast<int64_t>(items.size());
  const float eps = static_cast<float>(c.norm_eps);

  // - Input norm, fused projection, token shift, qk-norm.
  stages.Mark("norm + in_proj", stream);
  a.Resize(N * D);
  FOXSERVE_RETURN_IF_ERROR(Check(kernels::LaunchRmsNormToBf16(x.get(), nullptr, w.attn_norm.get(),
                                                              N, D, eps, a.get(), stream),
                                 "attention norm"));
  proj.Resize(N * P);
  FOXSERVE_RETURN_IF_ERROR(Gemm(a.get(), N, D, w.in_proj, P, proj.get()));
  stages.Mark("shift + prep", stream);
  shift_in.Resize(num_items * 2 * D);
  shift_out.Resize(num_items * 2 * D);
  // The token-shift state of each item: from its mirror slot (row slot * layers + l of width
  // 2D), or from the host.
  float* const mirror_shift = step != nullptr ? mirror->shift() + l * 2 * D : nullptr;
  const int32_t* const item_slots =
      step != nullptr ? plan_upload.At<int32_t>(step->at_slots) : nullptr;
  const int64_t slot_stride = c.num_hidden_layers * 2 * D;
  if (step != nullptr) {
    FOXSERVE_RETURN_IF_ERROR(Check(
        kernels::LaunchCopyRows(mirror_shift, item_slots, slot_stride, shift_in.get(), nullptr,
                                2 * D, static_cast<int32_t>(num_items),
                                static_cast<int32_t>(2 * D), stream),
        "shift state"));
  } else {
    std::vector<float> shift_host(num_items * 2 * D, 0.0f);
    for (int64_t i = 0; i < num_items; ++i) {
      const SequenceKvState& s = *items[i].state;
      std::copy(s.k_shift_prev.begin() + l * D, s.k_shift_prev.begin() + (l + 1) * D,
                shift_host.begin() + i * 2 * D);
      std::copy(s.v_shift_prev.begin() + l * D, s.v_shift_prev.begin() + (l + 1) * D,
                shift_host.begin() + i * 2 * D + D);
    }
    shift_in.Upload(shift_host, stream);
  }
  q.Resize(N * D);
  k.Resize(N * D);
  v.Resize(N * D);
  q_norms.Resize(N * H);
  k_norms.Resize(N * H);
  kernels::AttentionPrepParams prep;
  prep.proj = proj.get();
  prep.proj_stride = P;
  prep.q_offset = static_cast<int32_t>(ip.q);
  prep.k_offset = static_cast<int32_t>(ip.k);
  prep.v_offset = static_cast<int32_t>(ip.v);
  prep.k_shift_offset = static_cast<int32_t>(ip.k_shift);
  prep.v_shift_offset = static_cast<int32_t>(ip.v_shift);
  prep.q_norm = c.qk_norm ? w.q_norm.get() : nullptr;
  prep.k_norm = c.qk_norm ? w.k_norm.get() : nullptr;
  prep.qk_norm_shared = c.qk_norm_share_param_across_head;
  prep.token_item = token_item.get();
  prep.item_first_token = item_first.get();
  prep.prev_shift = shift_in.get();
  prep.num_tokens = static_cast<int32_t>(N);
  prep.num_heads = static_cast<int32_t>(H);
  prep.hidden = static_cast<int32_t>(D);
  prep.q = q.get();
  prep.k = k.get();
  prep.v = v.get();
  prep.q_norms = q_norms.get();
  prep.k_norms = k_norms.get();
  FOXSERVE_RETURN_IF_ERROR(Check(kernels::LaunchAttentionPrep(prep, stream), "attention prep"));
  FOXSERVE_RETURN_IF_ERROR(Check(
      kernels::LaunchGatherShiftState(proj.get(), P, static_cast<int32_t>(ip.k),
                                      static_cast<int32_t>(ip.v), item_last.get(),
                                      static_cast<int32_t>(num_items), static_cast<int32_t>(D),
                                      shift_out.get(), stream),
      "shift state"));

  // - The plan: c, block metadata, ACP starts, attention tasks.
  stages.Mark("plan", stream);
  LayerPlan plan;
  if (step != nullptr) {
    FOXSERVE_RETURN_IF_ERROR(Check(
        kernels::LaunchCopyRows(shift_out.get(), nullptr, 2 * D, mirror_shift, item_slots,
                                slot_stride, static_cast<int32_t>(num_items),
                                static_cast<int32_t>(2 * D), stream),
        "shift state"));
    FOXSERVE_RETURN_IF_ERROR(PlanLayerOnDevice(l, num_items, acp, *step, &plan));
  } else {
    FOXSERVE_RETURN_IF_ERROR(PlanLayerOnHost(l, items, row_offsets, acp, &plan));
  }

  // - Append K/V/C, attention.
  stages.Mark("append", stream);
  kernels::CudaKvPool kv{pool.get(), num_pages, kPageSize, static_cast<int32_t>(d)};
  FOXSERVE_RETURN_IF_ERROR(Check(kernels::LaunchAppendKv(kv, k.get(), v.get(), plan.page, plan.slot,
                                                         plan.c_rel, static_cast<int32_t>(N),
                                                         static_cast<int32_t>(H), stream),
                                 "KV append"));
  stages.Mark("prefill attention", stream);
  attn.Resize(N * D);
  plan.rows.q = q.get();
  plan.rows.out = attn.get();
  FOXSERVE_RETURN_IF_ERROR(
      Check(mma_prefill ? kernels::LaunchPagedPrefillMma(kv, plan.rows, plan.prefill, stream)
                        : kernels::LaunchPagedPrefillTensorCore(kv, plan.rows, plan.prefill, stream),
            "prefill attention"));
  stages.Mark("decode attention", stream);
  if (plan.decode.count > 0) {
    FOXSERVE_RETURN_IF_ERROR(
        Check(warp_decode ? kernels::LaunchPagedDecodeWarpSplit(kv, plan.rows, plan.decode, stream)
                          : kernels::LaunchPagedDecode(kv, plan.rows, plan.decode, stream),
              "decode attention"));
  }

  // - Output norm and gate, output projection, residual; MLP.
  stages.Mark("gate + o_proj", stream);
  o.Resize(N * D);
  kernels::OutputGateParams gate;
  gate.attn = attn.get();
  gate.proj = proj.get();
  gate.proj_stride = P;
  gate.ogate_offset = static_cast<int32_t>(ip.ogate);
  gate.ogate_silu = c.ogate_act == OgateActivation::kSilu;
  gate.output_norm = c.use_output_norm ? w.output_norm.get() : nullptr;
  gate.norm_eps = eps;
  gate.num_tokens = static_cast<int32_t>(N);
  gate.num_heads = static_cast<int32_t>(H);
  gate.hidden = static_cast<int32_t>(D);
  gate.out = o.get();
  FOXSERVE_RETURN_IF_ERROR(Check(kernels::LaunchOutputNormGate(gate, stream), "output gate"));
  delta.Resize(N * D);
  FOXSERVE_RETURN_IF_ERROR(Gemm(o.get(), N, D, w.o_proj, D, delta.get()));
  FOXSERVE_RETURN_IF_ERROR(Check(kernels::LaunchAdd(x.get(), delta.get(), N * D, stream), "residual"));
  stages.Mark("mlp", stream);
  FOXSERVE_RETURN_IF_ERROR(Check(kernels::LaunchRmsNormToBf16(x.get(), nullptr, w.mlp_norm.get(), N,
                                                              D, eps, a.get(), stream),
                                 "MLP norm"));
  gate_up.Resize(N * 2 * I);
  FOXSERVE_RETURN_IF_ERROR(Gemm(a.get(), N, D, w.gate_up, 2 * I, gate_up.get()));
  mid.Resize(N * I);
  FOXSERVE_RETURN_IF_ERROR(Check(
      kernels::LaunchGatedActivation(gate_up.get(), N, I, c.hidden_act == MlpActivation::kSwish,
                                     mid.get(), stream),
      "MLP activation"));
  FOXSERVE_RETURN_IF_ERROR(Gemm(mid.get(), N, I, w.down, D, delta.get()));
  return Check(kernels::LaunchAdd(x.get(), delta.get(), N * D, stream), "residual");
}

absl::Status FoxCudaModel::Impl::PlanLayerOnHost(int64_t l, absl::Span<const ForwardItem> items,
                                                 const std::vector<int64_t>& row_offsets,
                                                 const AcpOptions& acp, LayerPlan* plan) {
  const FoxConfig& c = config;
  const Layer& w = layers[l];
  const int64_t D = c.hidden_size, H = c.num_heads, d = c.head_dim;
  const int64_t P = ip.rows, N = row_offsets.back();
  const int64_t num_items = static_cast<int64_t>(items.size());

  // - Bring back what the host plans with: forget-gate logits, q/k norms, shift states.
  readback.Reserve((3 * N * H + num_items * 2 * D) * sizeof(float), 0);
  float* const fgate = reinterpret_cast<float*>(readback.data());
  float* const qn = fgate + N * H;
  float* const kn = qn + N * H;
  float* const shift_new = kn + N * H;
  if (c.fgate_type == FgateType::kFull) {
    FOXSERVE_RETURN_IF_ERROR(Check(
        cudaMemcpy2DAsync(fgate, H * sizeof(float), proj.get() + ip.fgate,
                          P * sizeof(float), H * sizeof(float), N, cudaMemcpyDeviceToHost, stream),
        "forget gate download"));
  }
  FOXSERVE_RETURN_IF_ERROR(Check(cudaMemcpyAsync(qn, q_norms.get(), N * H * sizeof(float),
                                                 cudaMemcpyDeviceToHost, stream),
                                 "q norm download"));
  FOXSERVE_RETURN_IF_ERROR(Check(cudaMemcpyAsync(kn, k_norms.get(), N * H * sizeof(float),
                                                 cudaMemcpyDeviceToHost, stream),
                                 "k norm download"));
  FOXSERVE_RETURN_IF_ERROR(Check(cudaMemcpyAsync(shift_new, shift_out.get(),
                                                 num_items * 2 * D * sizeof(float),
                                                 cudaMemcpyDeviceToHost, stream),
                                 "shift state download"));
  FOXSERVE_RETURN_IF_ERROR(Check(cudaStreamSynchronize(stream), "layer readback"));

  // - Host: c, block metadata, ACP plan, pointers; then the arrays the kernels read.
  std::vector<int32_t> page(N * H), slot(N * H), pages_host;
  std::vector<float> c_rel_host(N * H);
  std::vector<int64_t> table(N * H);
  std::vector<double> base_host, c_host(N * H);
  std::vector<kernels::AttentionItem> att_items(num_items);
  std::vector<double> c_new;
  std::vector<float> c_rel_stream;
  for (int64_t i = 0; i < num_items; ++i) {
    SequenceKvState& s = *items[i].state;
    const int64_t r0 = row_offsets[i], n = row_offsets[i + 1] - r0, pos0 = s.num_tokens;
    const int64_t nqb = kernels::NumQueryBlocks(pos0, n, kPageSize);
    kernels::AttentionItem& item = att_items[i];
    item.first_token = static_cast<int32_t>(r0);
    item.num_tokens = static_cast<int32_t>(n);
    item.first_position = pos0;
    item.starts.assign(H * nqb, 0);
    for (int64_t h = 0; h < H; ++h) {
      KvStream& stream_state = s.stream(l, h);
      c_new.resize(n);
      double prev = stream_state.c_now;
      float max_q = 0, max_k = 0;
      for (int64_t t = 0; t < n; ++t) {
        double log_f = 0.0;
        switch (c.fgate_type) {
          case FgateType::kFull:
            log_f = kernels::LogSigmoid(static_cast<double>(fgate[(r0 + t) * H + h]) + w.fgate_bias[h]);
            break;
          case FgateType::kBiasOnly:
          case FgateType::kFixed:
            log_f = kernels::LogSigmoid(w.fgate_bias[h]);
            break;
          case FgateType::kNone:
            break;
        }
        prev += log_f;
        c_new[t] = prev;
        max_q = std::max(max_q, qn[(r0 + t) * H + h]);
        max_k = std::max(max_k, kn[(r0 + t) * H + h]);
      }
      c_rel_stream.resize(n);
      RecordNewTokens(stream_state, pos0, n, c_new.data(), max_k, kPageSize, c_rel_stream.data());
      PlanStarts(stream_state, pos0, n, c_new.data(), kPageSize, d, acp,
                 logit_bounds[l * H + h], max_q, item.starts.data() + h * nqb);
      CountTiles(item.starts.data() + h * nqb, pos0, n, kPageSize, l, h, items[i].acp_counters);
      const int64_t offset = static_cast<int64_t>(pages_host.size());
      pages_host.insert(pages_host.end(), stream_state.pages.begin(), stream_state.pages.end());
      base_host.insert(base_host.end(), stream_state.block_c_first.begin(),
                       stream_state.block_c_first.end());
      // block_c_first covers the written blocks; pages may hold one spare block beyond them.
      base_host.resize(pages_host.size(), 0.0);
      for (int64_t t = 0; t < n; ++t) {
        const int64_t row = (r0 + t) * H + h, pos = pos0 + t;
        page[row] = stream_state.pages[pos / kPageSize];
        slot[row] = static_cast<int32_t>(pos % kPageSize);
        c_rel_host[row] = c_rel_stream[t];
        table[row] = offset;
        c_host[row] = c_new[t];
      }
      AdvancePointer(stream_state, pos0 + n - 1, kPageSize, acp, logit_bounds[l * H + h],
                     s.max_total_tokens);
    }
    std::copy(shift_new + i * 2 * D, shift_new + i * 2 * D + D, s.k_shift_prev.begin() + l * D);
    std::copy(shift_new + i * 2 * D + D, shift_new + (i + 1) * 2 * D,
              s.v_shift_prev.begin() + l * D);
  }
  kernels::HostAttentionTasks tasks;
  kernels::BuildAttentionTasks(att_items, static_cast<int32_t>(H), kPageSize, kDecodeChunkBlocks,
                               &tasks);

  // - The plan, in one copy.
  kernels::UploadArena& up = plan_upload;
  up.Reset();
  const size_t at_page = up.Add(page), at_slot = up.Add(slot), at_c_rel = up.Add(c_rel_host);
  const size_t at_pages = up.Add(pages_host), at_base = up.Add(base_host);
  const size_t at_table = up.Add(table), at_c = up.Add(c_host);
  const size_t at_pf = up.Add(tasks.prefill_first_token), at_pn = up.Add(tasks.prefill_num_rows);
  const size_t at_ph = up.Add(tasks.prefill_head), at_pst = up.Add(tasks.prefill_start);
  const size_t at_dt = up.Add(tasks.decode_token), at_dh = up.Add(tasks.decode_head);
  const size_t at_db = up.Add(tasks.decode_begin), at_de = up.Add(tasks.decode_end);
  const size_t at_rt = up.Add(tasks.row_token), at_rh = up.Add(tasks.row_head);
  const size_t at_rp = up.Add(tasks.row_partials);
  up.Flush(stream);

  plan->page = up.At<int32_t>(at_page);
  plan->slot = up.At<int32_t>(at_slot);
  plan->c_rel = up.At<float>(at_c_rel);
  plan->rows = kernels::CudaAttentionRows{positions.get(), up.At<int64_t>(at_table),
                                          up.At<int32_t>(at_pages), up.At<double>(at_base),
                                          up.At<double>(at_c), nullptr, nullptr,
                                          static_cast<int32_t>(H),
                                          1.0f / std::sqrt(static_cast<float>(d))};
  plan->prefill = kernels::CudaPrefillTasks{up.At<int32_t>(at_pf), up.At<int32_t>(at_pn),
                                            up.At<int32_t>(at_ph), up.At<int32_t>(at_pst),
                                            static_cast<int32_t>(tasks.prefill_first_token.size())};
  const int64_t decode_tasks = static_cast<int64_t>(tasks.decode_token.size());
  if (decode_tasks > 0) {
    pm.Resize(decode_tasks);
    pl.Resize(decode_tasks);
    pacc.Resize(decode_tasks * d);
  }
  plan->decode = kernels::CudaDecodeTasks{up.At<int32_t>(at_dt), up.At<int32_t>(at_dh),
                                          up.At<int32_t>(at_db), up.At<int32_t>(at_de),
                                          static_cast<int32_t>(decode_tasks),
                                          up.At<int32_t>(at_rt), up.At<int32_t>(at_rh),
                                          up.At<int32_t>(at_rp),
                                          static_cast<int32_t>(tasks.row_token.size()), pm.get(),
                                          pl.get(), pacc.get()};
  return absl::OkStatus();
}

}  // namespace models
}  // namespace foxserve
