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
#include "kernels/cuda/attention_tasks.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/fox_layer_kernels.h"
#include "kernels/cuda/gemm_cuda.h"
#include "kernels/cuda/paged_attention_cuda.h"
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

  absl::Status Gemm(const __nv_bfloat16* x_in, int64_t m, int64_t k_dim,
                    const DeviceBuffer<__nv_bfloat16>& w, int64_t n, float* y) {
    return Check(gemm->Run(x_in, m, k_dim, k_dim, w.get(), n, y, n, stream), "matrix product");
  }

  absl::Status RunLayer(int64_t l, absl::Span<const ForwardItem> items,
                        const std::vector<int64_t>& row_offsets, const AcpOptions& acp);
};

FoxCudaModel::FoxCudaModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FoxCudaModel::~FoxCudaModel() {
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
  m.x.Resize(N * D);
  FOXSERVE_RETURN_IF_ERROR(Check(
      kernels::LaunchEmbeddingGather(m.ids.get(), m.embeddings.get(), N, D, m.x.get(), m.stream),
      "embeddings"));

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    FOXSERVE_RETURN_IF_ERROR(m.RunLayer(l, items, row_offsets, acp));
  }

  // - Final norm and the output projection of the requested rows.
  std::vector<int32_t> rows;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].all_logits) {
      for (int64_t r = row_offsets[i]; r < row_offsets[i + 1]; ++r) rows.push_back(static_cast<int32_t>(r));
    } else {
      rows.push_back(static_cast<int32_t>(row_offsets[i + 1] - 1));
    }
  }
  m.rows_sel.Upload(rows, m.stream);
  m.a.Resize(std::max<int64_t>(N, logit_rows) * D);
  FOXSERVE_RETURN_IF_ERROR(Check(
      kernels::LaunchRmsNormToBf16(m.x.get(), m.rows_sel.get(), m.final_norm.get(), logit_rows, D,
                                   static_cast<float>(c.norm_eps), m.a.get(), m.stream),
      "final norm"));
  m.logits.Resize(logit_rows * V);
  FOXSERVE_RETURN_IF_ERROR(m.Gemm(m.a.get(), logit_rows, D, m.lm_head, V, m.logits.get()));
  *logits = m.logits.Download(m.stream);
  for (const ForwardItem& item : items) item.state->num_tokens += item.tokens.size();
  return absl::OkStatus();
}

absl::Status FoxCudaModel::Impl::RunLayer(int64_t l, absl::Span<const ForwardItem> items,
                                          const std::vector<int64_t>& row_offsets,
                                          const AcpOptions& acp) {
  const FoxConfig& c = config;
  const Layer& w = layers[l];
  const int64_t D = c.hidden_size, H = c.num_heads, d = c.head_dim, I = c.intermediate_size;
  const int64_t P = ip.rows, N = row_offsets.back();
  const int64_t num_items = static_cast<int64_t>(items.size());
  const float eps = static_cast<float>(c.norm_eps);

  // - Input norm, fused projection, token shift, qk-norm.
  a.Resize(N * D);
  FOXSERVE_RETURN_IF_ERROR(Check(kernels::LaunchRmsNormToBf16(x.get(), nullptr, w.attn_norm.get(),
                                                              N, D, eps, a.get(), stream),
                                 "attention norm"));
  proj.Resize(N * P);
  FOXSERVE_RETURN_IF_ERROR(Gemm(a.get(), N, D, w.in_proj, P, proj.get()));
  std::vector<float> shift_host(num_items * 2 * D, 0.0f);
  for (int64_t i = 0; i < num_items; ++i) {
    const SequenceKvState& s = *items[i].state;
    std::copy(s.k_shift_prev.begin() + l * D, s.k_shift_prev.begin() + (l + 1) * D,
              shift_host.begin() + i * 2 * D);
    std::copy(s.v_shift_prev.begin() + l * D, s.v_shift_prev.begin() + (l + 1) * D,
              shift_host.begin() + i * 2 * D + D);
  }
  shift_in.Upload(shift_host, stream);
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
  shift_out.Resize(num_items * 2 * D);
  FOXSERVE_RETURN_IF_ERROR(Check(
      kernels::LaunchGatherShiftState(proj.get(), P, static_cast<int32_t>(ip.k),
                                      static_cast<int32_t>(ip.v), item_last.get(),
                                      static_cast<int32_t>(num_items), static_cast<int32_t>(D),
                                      shift_out.get(), stream),
      "shift state"));

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

  // - Append K/V/C, attention.
  kernels::CudaKvPool kv{pool.get(), num_pages, kPageSize, static_cast<int32_t>(d)};
  FOXSERVE_RETURN_IF_ERROR(Check(
      kernels::LaunchAppendKv(kv, k.get(), v.get(), up.At<int32_t>(at_page),
                              up.At<int32_t>(at_slot), up.At<float>(at_c_rel),
                              static_cast<int32_t>(N), static_cast<int32_t>(H), stream),
      "KV append"));
  attn.Resize(N * D);
  kernels::CudaAttentionRows rows{positions.get(), up.At<int64_t>(at_table),
                                  up.At<int32_t>(at_pages), up.At<double>(at_base),
                                  up.At<double>(at_c), q.get(), attn.get(),
                                  static_cast<int32_t>(H),
                                  1.0f / std::sqrt(static_cast<float>(d))};
  kernels::CudaPrefillTasks prefill{up.At<int32_t>(at_pf), up.At<int32_t>(at_pn),
                                    up.At<int32_t>(at_ph), up.At<int32_t>(at_pst),
                                    static_cast<int32_t>(tasks.prefill_first_token.size())};
  FOXSERVE_RETURN_IF_ERROR(
      Check(mma_prefill ? kernels::LaunchPagedPrefillMma(kv, rows, prefill, stream)
                        : kernels::LaunchPagedPrefillTensorCore(kv, rows, prefill, stream),
            "prefill attention"));
  if (!tasks.decode_token.empty()) {
    pm.Resize(tasks.decode_token.size());
    pl.Resize(tasks.decode_token.size());
    pacc.Resize(tasks.decode_token.size() * d);
    kernels::CudaDecodeTasks decode{up.At<int32_t>(at_dt), up.At<int32_t>(at_dh),
                                    up.At<int32_t>(at_db), up.At<int32_t>(at_de),
                                    static_cast<int32_t>(tasks.decode_token.size()),
                                    up.At<int32_t>(at_rt), up.At<int32_t>(at_rh),
                                    up.At<int32_t>(at_rp),
                                    static_cast<int32_t>(tasks.row_token.size()), pm.get(), pl.get(),
                                    pacc.get()};
    FOXSERVE_RETURN_IF_ERROR(Check(kernels::LaunchPagedDecode(kv, rows, decode, stream), "decode attention"));
  }

  // - Output norm and gate, output projection, residual; MLP.
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

}  // namespace models
}  // namespace foxserve
