#include "models/fox_cuda_model.h"

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fox_layer_kernels.h"
#include "models/acp_bounds.h"
#include "models/fox_cuda_model_impl.h"
#include "models/status_macros.h"

namespace foxserve {
namespace models {

using cuda_model::Check;
using cuda_model::kPageSize;
using kernels::DeviceBuffer;

namespace {

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

// A start-up A/B switch: the environment variable `name` unset leaves *value as it is; set, it
// must be `on` (true) or `off` (false).
absl::Status ReadSwitch(const char* name, const char* on, const char* off, bool* value) {
  const char* set = std::getenv(name);
  if (set == nullptr) return absl::OkStatus();
  if (std::strcmp(set, on) != 0 && std::strcmp(set, off) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be ", on, " or ", off, ", got \"", set, "\""));
  }
  *value = std::strcmp(set, on) == 0;
  return absl::OkStatus();
}

// The index in `choices` of the environment variable's value; unset leaves *index alone.
absl::Status ReadChoice(const char* name, const std::vector<const char*>& choices, int* index) {
  const char* set = std::getenv(name);
  if (set == nullptr) return absl::OkStatus();
  for (size_t i = 0; i < choices.size(); ++i) {
    if (std::strcmp(set, choices[i]) == 0) {
      *index = static_cast<int>(i);
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat(name, " must be one of ", absl::StrJoin(choices, ", "), "; got \"", set, "\""));
}

}  // namespace

bool CudaDeviceAvailable(std::string* why) {
  const char* reason = nullptr;
  if (kernels::CudaDeviceCount(&reason) > 0) return true;
  if (why != nullptr) *why = reason != nullptr ? reason : "no CUDA device";
  return false;
}


FoxCudaModel::FoxCudaModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FoxCudaModel::~FoxCudaModel() {
  if (impl_ && impl_->stream) cudaStreamSynchronize(impl_->stream);  // a step may be in flight
  if (impl_) impl_->stages.Summary(stderr);
  if (impl_) {
    for (auto& back : impl_->readbacks) {
      if (back.done != nullptr) cudaEventDestroy(back.done);
    }
    for (auto& [batch, g] : impl_->decode_graphs) {
      if (g.exec != nullptr) cudaGraphExecDestroy(g.exec);
    }
  }
  if (impl_ && impl_->stream) cudaStreamDestroy(impl_->stream);
}

const FoxConfig& FoxCudaModel::config() const { return impl_->config; }
const std::vector<double>& FoxCudaModel::logit_bounds() const { return impl_->logit_bounds; }
int32_t FoxCudaModel::page_size() const { return kPageSize; }
int64_t FoxCudaModel::page_bytes() const { return kernels::CudaPageBytes(kPageSize, kernels::kCudaHeadDim); }
int64_t FoxCudaModel::num_pages() const { return impl_->num_pages; }
int64_t FoxCudaModel::decode_graph_launches() const { return impl_->graph_launches; }

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
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const auto first = impl->logit_bounds.begin() + l * c.num_heads;
    impl->layer_max_logit_bound.push_back(
        static_cast<float>(*std::max_element(first, first + c.num_heads)));
  }
  FOXSERVE_RETURN_IF_ERROR(ReadSwitch("FOXSERVE_DECODE_KERNEL", "warp", "simple", &impl->warp_decode));
  FOXSERVE_RETURN_IF_ERROR(
      ReadChoice("FOXSERVE_PREFILL_KERNEL", {"tma", "wgmma", "mma", "tma3", "auto"},
                 &impl->prefill_kernel));
  FOXSERVE_RETURN_IF_ERROR(ReadSwitch("FOXSERVE_CUDA_GRAPHS", "on", "off", &impl->use_graphs));
  FOXSERVE_RETURN_IF_ERROR(
      ReadSwitch("FOXSERVE_DECODE_MERGE", "fused", "launch", &impl->fused_decode_merge));
  if (const char* chunk = std::getenv("FOXSERVE_DECODE_CHUNK_BLOCKS"); chunk != nullptr) {
    int32_t blocks = 0;
    if (!absl::SimpleAtoi(chunk, &blocks) || blocks < 1 || blocks > 256) {
      return absl::InvalidArgumentError(absl::StrCat(
          "FOXSERVE_DECODE_CHUNK_BLOCKS must be an integer in [1, 256], got \"", chunk, "\""));
    }
    impl->decode_chunk_blocks = blocks;
  }
  FOXSERVE_RETURN_IF_ERROR(
      ReadSwitch("FOXSERVE_ACP_PLANNER", "device", "host", &impl->device_planner));
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
  impl->host_pool = std::make_unique<kernels::ThreadPool>(kernels::ThreadPool::CappedThreads(8));
  impl->mirror = std::make_shared<kernels::DeviceKvMirror>(
      static_cast<int32_t>(c.num_hidden_layers * c.num_heads),
      static_cast<int32_t>(c.num_hidden_layers * 2 * c.hidden_size), impl->stream);
  impl->embeddings = ToBf16(w->embeddings);
  impl->lm_rows = (c.vocab_size + 63) / 64 * 64;
  {
    std::vector<float> padded(impl->lm_rows * c.hidden_size, 0.0f);
    std::copy(w->output_embeddings().begin(), w->output_embeddings().end(), padded.begin());
    impl->lm_head = ToBf16(padded);
  }
  impl->final_norm = ToDevice(w->final_norm);
  impl->num_pages = num_pages;
  impl->pool.Resize(num_pages * kernels::CudaPageBytes(kPageSize, kernels::kCudaHeadDim));
  impl->prefill_tile_counter.Upload(std::vector<int32_t>(2, 0));
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
  if (!impl_->pending.empty()) {
    return absl::FailedPreconditionError("a step is in flight: Finish it before a Forward");
  }
  FOXSERVE_RETURN_IF_ERROR(Launch(items, acp, logits));
  return Finish();
}

bool FoxCudaModel::overlaps_steps() const {
  return impl_->device_planner && !impl_->stages.enabled();
}

absl::Status FoxCudaModel::Launch(absl::Span<const ForwardItem> items, const AcpOptions& acp,
                                  std::vector<float>* logits) {
  Impl& m = *impl_;
  const FoxConfig& c = m.config;
  const int64_t V = c.vocab_size;
  std::vector<int64_t> row_offsets;
  int64_t logit_rows = 0;
  FOXSERVE_RETURN_IF_ERROR(
      ValidateForwardItems(items, c, kPageSize, m.num_pages, &row_offsets, &logit_rows));
  const int64_t N = row_offsets.back();
  // - A step behind one in flight must continue it exactly: its token ids are that step's greedy
  //   tokens, copied on the device in item order.
  const int64_t continued = std::count_if(items.begin(), items.end(), [](const ForwardItem& item) {
    return item.token_from_step_in_flight;
  });
  if (!m.pending.empty() || continued > 0) {
    if (continued != static_cast<int64_t>(items.size()) || m.pending.size() != 1 ||
        !overlaps_steps()) {
      return absl::FailedPreconditionError(
          "only a decode step continuing the one in flight may be launched behind it");
    }
    FOXSERVE_RETURN_IF_ERROR(CheckContinuesStep(m.pending.front().items, items));
  }
  using HostClock = std::chrono::steady_clock;
  const bool timed = m.stages.enabled();
  HostClock::time_point part_start = timed ? HostClock::now() : HostClock::time_point();
  auto host_part = [&](const char* part) {
    if (!timed) return;
    m.stages.AddHost(part, part_start);
    part_start = HostClock::now();
  };
  // A decode step (one token per item) may run as a CUDA graph (FOXSERVE_CUDA_GRAPHS=on): the
  // setup below is the same, and the kernels of LaunchStepKernels become one graph launch.
  const bool graph = m.use_graphs && m.device_planner &&
                     N == static_cast<int64_t>(items.size());

  m.stages.Mark("step upload", m.stream);
  // - Everything that goes up or is sized before the kernels (nothing in LaunchStepKernels
  //   allocates or copies from the host, so it can be captured).
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
  if (continued > 0) {
    // The in-flight step's greedy tokens, one per item in item order (every item was greedy).
    FOXSERVE_RETURN_IF_ERROR(Check(kernels::LaunchFeedGreedyTokens(m.greedy.get(),
                                                                   static_cast<int32_t>(N),
                                                                   m.ids.get(), m.stream),
                                   "tokens from the step in flight"));
  }
  m.token_item.Upload(token_item, m.stream);
  m.item_first.Upload(item_first, m.stream);
  m.item_last.Upload(item_last, m.stream);
  m.positions.Upload(positions, m.stream);
  Impl::PendingStep pending;
  Impl::DeviceStep& step = pending.step;
  if (m.device_planner) {
    FOXSERVE_RETURN_IF_ERROR(m.PrepareDeviceStep(items, row_offsets, graph, &step));
  }
  Impl::OutputRows& out = pending.out;
  out.all = logit_rows;
  std::vector<int32_t> rows;
  for (int64_t r : LogitRows(items, row_offsets, &out.returned, &out.candidates)) {
    rows.push_back(static_cast<int32_t>(r));
  }
  m.rows_sel.Upload(rows, m.stream);
  const int64_t greedy_rows = out.greedy();
  pending.readback = m.next_readback;
  m.next_readback ^= 1;
  Impl::Readback& back = m.readbacks[pending.readback];
  back.greedy.Reserve(std::max<int64_t>(1, greedy_rows) * sizeof(int32_t), 0);
  // Candidates: sized here (the kernels allocate nothing), read back after the step. A step
  // without candidate rows touches none of this.
  const int64_t cap = kCandidateCapacity;
  if (out.candidates > 0) {
    std::vector<double> inv_t;
    for (const ForwardItem& item : items) {
      if (item.candidates != nullptr) inv_t.push_back(item.candidates_inv_temperature);
    }
    m.candidate_inv_t.Upload(inv_t, m.stream);
    m.candidate_ids.Resize(out.candidates * cap);
    m.candidate_values.Resize(out.candidates * cap);
    m.candidate_meta.Resize(out.candidates);
    m.candidate_readback.Reserve(
        out.candidates *
            (sizeof(kernels::CandidateRowMeta) + cap * (sizeof(int32_t) + sizeof(float))),
        0);
  }
  m.first_candidate_row = out.returned;
  m.candidate_rows = out.candidates;
  host_part("setup");

  // - The kernels: launched one by one, or as this batch size's graph.
  if (graph) {
    FOXSERVE_RETURN_IF_ERROR(m.LaunchDecodeGraph(items, row_offsets, acp, step, out));
  } else {
    FOXSERVE_RETURN_IF_ERROR(m.LaunchStepKernels(items, row_offsets, acp,
                                                 m.device_planner ? &step : nullptr, out));
  }

  // - What comes back: greedy tokens, the plan's results, the other rows' logits.
  m.stages.Mark("readback", m.stream);
  if (greedy_rows > 0) {
    FOXSERVE_RETURN_IF_ERROR(Check(cudaMemcpyAsync(back.greedy.data(), m.greedy.get(),
                                                   greedy_rows * sizeof(int32_t),
                                                   cudaMemcpyDeviceToHost, m.stream),
                                   "greedy token readback"));
  }
  if (m.device_planner) {
    // The plan's results come back with the logits: one synchronization for the whole step.
    const size_t stream_bytes = m.stream_back.size() * sizeof(kernels::AcpStreamReadback);
    const size_t block_bytes = m.block_back.size() * sizeof(double);
    back.step.Reserve(stream_bytes + block_bytes, 0);
    FOXSERVE_RETURN_IF_ERROR(Check(cudaMemcpyAsync(back.step.data(), m.stream_back.get(),
                                                   stream_bytes, cudaMemcpyDeviceToHost, m.stream),
                                   "plan readback"));
    FOXSERVE_RETURN_IF_ERROR(Check(
        cudaMemcpyAsync(back.step.data() + stream_bytes, m.block_back.get(), block_bytes,
                        cudaMemcpyDeviceToHost, m.stream),
        "block readback"));
  }
  if (out.candidates > 0) {
    char* to = m.candidate_readback.data();
    const size_t meta_bytes = out.candidates * sizeof(kernels::CandidateRowMeta);
    const size_t ids_bytes = out.candidates * cap * sizeof(int32_t);
    FOXSERVE_RETURN_IF_ERROR(Check(
        cudaMemcpyAsync(to, m.candidate_meta.get(), meta_bytes, cudaMemcpyDeviceToHost, m.stream),
        "candidates readback"));
    FOXSERVE_RETURN_IF_ERROR(Check(cudaMemcpyAsync(to + meta_bytes, m.candidate_ids.get(),
                                                   ids_bytes, cudaMemcpyDeviceToHost, m.stream),
                                   "candidates readback"));
    FOXSERVE_RETURN_IF_ERROR(Check(
        cudaMemcpyAsync(to + meta_bytes + ids_bytes, m.candidate_values.get(),
                        out.candidates * cap * sizeof(float), cudaMemcpyDeviceToHost, m.stream),
        "candidates readback"));
  }
  // Into the caller's vector, which keeps its capacity from step to step (a fresh 13 MB
  // allocation a step cost page faults).
  logits->resize(out.returned * V);
  if (out.returned > 0) {
    FOXSERVE_RETURN_IF_ERROR(Check(
        cudaMemcpy2DAsync(logits->data(), V * sizeof(float), m.logits.get(),
                          m.lm_rows * sizeof(float), V * sizeof(float), out.returned,
                          cudaMemcpyDeviceToHost, m.stream),
        "logits readback"));
  }
  m.stages.Mark("end", m.stream);
  if (back.done == nullptr) {
    FOXSERVE_RETURN_IF_ERROR(
        Check(cudaEventCreateWithFlags(&back.done, cudaEventDisableTiming), "step event"));
  }
  FOXSERVE_RETURN_IF_ERROR(Check(cudaEventRecord(back.done, m.stream), "step event"));
  host_part("launches");
  pending.items.assign(items.begin(), items.end());
  for (const ForwardItem& item : items) {
    pending.first_position.push_back(item.state->num_tokens);
    item.state->num_tokens += item.tokens.size();
  }
  m.pending.push_back(std::move(pending));
  return absl::OkStatus();
}

absl::Status FoxCudaModel::Finish() {
  Impl& m = *impl_;
  if (m.pending.empty()) return absl::FailedPreconditionError("no step in flight");
  using HostClock = std::chrono::steady_clock;
  const bool timed = m.stages.enabled();
  HostClock::time_point part_start = timed ? HostClock::now() : HostClock::time_point();
  const Impl::PendingStep& p = m.pending.front();
  const Impl::Readback& back = m.readbacks[p.readback];
  const absl::Status done = Check(cudaEventSynchronize(back.done), "forward step");
  if (!done.ok()) {
    m.pending.pop_front();
    return done;
  }
  if (timed) {
    m.stages.AddHost("wait for the GPU", part_start);
    part_start = HostClock::now();
  }
  {
    const auto* tokens = reinterpret_cast<const int32_t*>(back.greedy.data());
    int64_t g = 0;
    for (const ForwardItem& item : p.items) {
      if (item.greedy_token != nullptr) *item.greedy_token = tokens[g++];
    }
  }
  if (p.out.candidates > 0) m.UnpackCandidates(p.items);
  if (m.device_planner) m.ApplyDeviceStep(p.items, p.first_position, p.step, back.step.data());
  if (timed) m.stages.AddHost("state back", part_start);
  const bool decode = std::all_of(p.items.begin(), p.items.end(),
                                  [](const ForwardItem& item) { return item.tokens.size() == 1; });
  m.stages.Collect(decode ? "decode" : "prefill");
  m.pending.pop_front();
  return absl::OkStatus();
}

void FoxCudaModel::Impl::UnpackCandidates(absl::Span<const ForwardItem> items) const {
  const int64_t rows = candidate_rows, cap = kCandidateCapacity;
  const char* from = candidate_readback.data();
  const auto* meta = reinterpret_cast<const kernels::CandidateRowMeta*>(from);
  const auto* ids = reinterpret_cast<const int32_t*>(from + rows * sizeof(kernels::CandidateRowMeta));
  const auto* values = reinterpret_cast<const float*>(from + rows * sizeof(kernels::CandidateRowMeta) +
                                                      rows * cap * sizeof(int32_t));
  int64_t r = 0;
  std::vector<std::pair<int32_t, float>> sorted;
  for (const ForwardItem& item : items) {
    if (item.candidates == nullptr) continue;
    kernels::TokenCandidates& c = *item.candidates;
    const kernels::CandidateRowMeta& m = meta[r];
    c.ids.clear();
    c.logits.clear();
    c.finite = m.count != -2;
    c.complete = m.count >= 0;
    c.max_logit = m.max_logit;
    c.total = m.total;
    // The kernel writes them in no particular order; TokenCandidates lists them by id.
    sorted.clear();
    for (int32_t j = 0; j < m.count; ++j) sorted.emplace_back(ids[r * cap + j], values[r * cap + j]);
    std::sort(sorted.begin(), sorted.end());
    for (const auto& [id, value] : sorted) {
      c.ids.push_back(id);
      c.logits.push_back(value);
    }
    ++r;
  }
}

absl::Status FoxCudaModel::CandidateRow(int64_t k, std::vector<float>* row) {
  Impl& m = *impl_;
  const int64_t V = m.config.vocab_size;
  if (k < 0 || k >= m.candidate_rows) {
    return absl::OutOfRangeError(absl::StrCat("no candidates item ", k, " in the last step"));
  }
  row->resize(V);
  return Check(cudaMemcpy(row->data(), m.logits.get() + (m.first_candidate_row + k) * m.lm_rows,
                          V * sizeof(float), cudaMemcpyDeviceToHost),
               "candidate row");
}

int FoxCudaModel::Impl::StepPrefillKernel(absl::Span<const ForwardItem> items) const {
  if (prefill_kernel != kPrefillAuto) return prefill_kernel;
  for (const ForwardItem& item : items) {
    // num_tokens: the item's first position (advanced once the step is launched).
    if (kernels::PrefersThreeConsumerPrefill(item.state->num_tokens,
                                             static_cast<int64_t>(item.tokens.size()))) {
      return kPrefillTma3;
    }
  }
  return kPrefillTma;
}

absl::Status FoxCudaModel::Impl::ReserveRowArrivals(int64_t rows) {
  if (rows <= row_arrivals_zeroed) return absl::OkStatus();
  row_arrivals.Resize(rows);
  row_arrivals_zeroed = rows;
  return Check(cudaMemsetAsync(row_arrivals.get(), 0, rows * sizeof(int32_t), stream),
               "decode merge counters");
}

absl::Status FoxCudaModel::Impl::LaunchStepKernels(absl::Span<const ForwardItem> items,
                                                   const std::vector<int64_t>& row_offsets,
                                                   const AcpOptions& acp, const DeviceStep* step,
                                                   const OutputRows& out) {
  const FoxConfig& c = config;
  const int64_t logit_rows = out.all;
  const int64_t D = c.hidden_size, V = c.vocab_size;
  const int64_t N = row_offsets.back();
  x.Resize(N * D);
  if (step != nullptr && step->padded_decode) {
    // Padding tasks past the rows' own stay empty; the plan kernel writes the others a layer.
    FOXSERVE_RETURN_IF_ERROR(Check(
        cudaMemsetAsync(decode_begin.get(), 0, step->decode_tasks * sizeof(int32_t), stream),
        "decode tasks"));
    FOXSERVE_RETURN_IF_ERROR(Check(
        cudaMemsetAsync(decode_end.get(), 0, step->decode_tasks * sizeof(int32_t), stream),
        "decode tasks"));
  }
  stages.Mark("embeddings", stream);
  FOXSERVE_RETURN_IF_ERROR(Check(
      kernels::LaunchEmbeddingGather(ids.get(), embeddings.get(), N, D, x.get(), stream),
      "embeddings"));

  const int prefill = StepPrefillKernel(items);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    FOXSERVE_RETURN_IF_ERROR(RunLayer(l, items, row_offsets, acp, step, prefill));
  }

  // - Final norm and the output projection of the requested rows; greedy items get their token
  //   on the device and only the other rows come back.
  stages.Mark("final norm + lm head", stream);
  a.Resize(std::max<int64_t>(N, logit_rows) * D);
  // The last layer's MLP output is still in delta (RunLayer): added to the selected rows here.
  FOXSERVE_RETURN_IF_ERROR(Check(
      c.num_hidden_layers > 0
          ? kernels::LaunchAddRmsNormToBf16(x.get(), delta.get(), rows_sel.get(), final_norm.get(),
                                            logit_rows, D, static_cast<float>(c.norm_eps), a.get(),
                                            stream)
          : kernels::LaunchRmsNormToBf16(x.get(), rows_sel.get(), final_norm.get(), logit_rows, D,
                                         static_cast<float>(c.norm_eps), a.get(), stream),
      "final norm"));
  logits.Resize(logit_rows * lm_rows);
  FOXSERVE_RETURN_IF_ERROR(Gemm(a.get(), logit_rows, D, lm_head, lm_rows, logits.get()));
  if (out.candidates > 0) {
    kernels::TopCandidatesParams tc;
    tc.logits = logits.get() + out.returned * lm_rows;
    tc.row_stride = lm_rows;
    tc.vocab = static_cast<int32_t>(V);
    tc.rows = static_cast<int32_t>(out.candidates);
    tc.inv_temperature = candidate_inv_t.get();
    tc.count = kCandidateCount;
    tc.capacity = kCandidateCapacity;
    tc.ids = candidate_ids.get();
    tc.values = candidate_values.get();
    tc.meta = candidate_meta.get();
    FOXSERVE_RETURN_IF_ERROR(Check(kernels::LaunchTopCandidates(tc, stream), "top candidates"));
  }
  greedy.Resize(std::max<int64_t>(1, out.greedy()));
  return Check(kernels::LaunchGreedyTokens(logits.get() + (out.returned + out.candidates) * lm_rows,
                                           static_cast<int32_t>(out.greedy()), V, lm_rows,
                                           greedy.get(), stream),
               "greedy tokens");
}

std::vector<uintptr_t> FoxCudaModel::Impl::DecodeGraphSignature(int64_t num_items,
                                                                const AcpOptions& acp,
                                                                const DeviceStep& step,
                                                                const OutputRows& out) const {
  auto u = [](const void* p) { return reinterpret_cast<uintptr_t>(p); };
  uint64_t eps_bits = 0;
  static_assert(sizeof(eps_bits) == sizeof(acp.log_eps), "double is 64 bits");
  std::memcpy(&eps_bits, &acp.log_eps, sizeof(eps_bits));
  return {
      // Shape: what every launch's grid and every buffer's size follow from.
      static_cast<uintptr_t>(num_items), static_cast<uintptr_t>(out.all),
      static_cast<uintptr_t>(out.returned), static_cast<uintptr_t>(out.candidates),
      static_cast<uintptr_t>(step.decode_tasks), static_cast<uintptr_t>(step.decode_chunk_blocks),
      static_cast<uintptr_t>(step.decode_rows), static_cast<uintptr_t>(step.prefill_tasks),
      static_cast<uintptr_t>(step.touched_entries), acp.enabled ? 1u : 0u,
      static_cast<uintptr_t>(eps_bits),
      // The step's upload and where its parts lie.
      u(plan_upload.At<char>(0)), step.at_items, step.at_slots, step.at_pf, step.at_pn, step.at_ph,
      step.at_dt, step.at_dh, step.at_dr, step.at_rt, step.at_rh, step.at_rp,
      // Every buffer a kernel of the step reads or writes.
      u(ids.get()), u(token_item.get()), u(item_first.get()), u(item_last.get()),
      u(positions.get()), u(rows_sel.get()), u(x.get()), u(proj.get()), u(q.get()), u(k.get()),
      u(v.get()), u(q_norms.get()), u(k_norms.get()), u(attn.get()), u(delta.get()),
      u(gate_up.get()), u(logits.get()), u(a.get()),
      u(o.get()), u(mid.get()), u(pm.get()), u(pl.get()), u(pacc.get()), u(row_arrivals.get()),
      u(row_c.get()),
      u(log_f.get()), u(row_c_rel.get()), u(row_logit_bound.get()), u(row_page.get()),
      u(row_slot.get()),
      u(prefill_start.get()), u(decode_begin.get()), u(decode_end.get()), u(row_table.get()),
      u(stream_back.get()), u(block_back.get()), u(greedy.get()), u(candidate_inv_t.get()),
      u(candidate_ids.get()), u(candidate_values.get()), u(candidate_meta.get()),
      // The mirror's arrays move when it grows.
      u(mirror->pages()), u(mirror->c_first()), u(mirror->c_last()), u(mirror->c_now()),
      u(mirror->max_key_norm()), u(mirror->first_live_block()), u(mirror->shift())};
}

absl::Status FoxCudaModel::Impl::LaunchDecodeGraph(absl::Span<const ForwardItem> items,
                                                   const std::vector<int64_t>& row_offsets,
                                                   const AcpOptions& acp, const DeviceStep& step,
                                                   const OutputRows& out) {
  const int64_t batch = static_cast<int64_t>(items.size());
  std::vector<uintptr_t> signature = DecodeGraphSignature(batch, acp, step, out);
  DecodeGraph& g = decode_graphs[batch];
  if (g.exec != nullptr && g.signature == signature) {
    ++graph_launches;
    stages.Replay(g.marks);
    return Check(cudaGraphLaunch(g.exec, stream), "decode graph");
  }
  if (g.last_plain != signature) {
    // A new shape, or a buffer moved: this step runs plainly and sizes every buffer, so that the
    // next step with this signature allocates nothing while it is captured.
    g.last_plain = std::move(signature);
    return LaunchStepKernels(items, row_offsets, acp, &step, out);
  }
  cudaGraph_t graph = nullptr;
  FOXSERVE_RETURN_IF_ERROR(
      Check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "graph capture"));
  stages.BeginCapture(&g.marks);
  const absl::Status launched =
      LaunchStepKernels(items, row_offsets, acp, &step, out);
  stages.EndCapture();
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  if (g.exec != nullptr) cudaGraphExecDestroy(g.exec);
  g.exec = nullptr;
  const cudaError_t made = launched.ok() && ended == cudaSuccess
                               ? cudaGraphInstantiate(&g.exec, graph, 0)
                               : cudaErrorStreamCaptureInvalidated;
  if (graph != nullptr) cudaGraphDestroy(graph);
  if (made != cudaSuccess) {
    // Nothing of the step ran: it runs plainly, and so does every later step (a kernel or
    // library call that cannot be captured would fail the same way each time).
    (void)cudaGetLastError();
    std::fprintf(stderr, "CUDA graphs off: capturing a decode step failed (%s; %s)\n",
                 launched.ToString().c_str(), cudaGetErrorString(ended != cudaSuccess ? ended : made));
    use_graphs = false;
    for (auto& [size, other] : decode_graphs) {
      if (other.exec != nullptr) cudaGraphExecDestroy(other.exec);
    }
    decode_graphs.clear();
    return LaunchStepKernels(items, row_offsets, acp, &step, out);
  }
  g.signature = g.last_plain;
  ++graph_launches;
  stages.Replay(g.marks);
  return Check(cudaGraphLaunch(g.exec, stream), "decode graph");
}

absl::Status FoxCudaModel::Impl::RunLayer(int64_t l, absl::Span<const ForwardItem> items,
                                          const std::vector<int64_t>& row_offsets,
                                          const AcpOptions& acp, const DeviceStep* step,
                                          int prefill) {
  const FoxConfig& c = config;
  const Layer& w = layers[l];
  const int64_t D = c.hidden_size, H = c.num_heads, d = c.head_dim, I = c.intermediate_size;
  const int64_t P = ip.rows, N = row_offsets.back();
  const int64_t num_items = static_cast<int64_t>(items.size());
  const float eps = static_cast<float>(c.norm_eps);

  // - Input norm (after the previous layer's MLP residual, which it left in delta), fused
  //   projection, token shift, qk-norm.
  stages.Mark("norm + in_proj", stream);
  a.Resize(N * D);
  FOXSERVE_RETURN_IF_ERROR(Check(
      l > 0 ? kernels::LaunchAddRmsNormToBf16(x.get(), delta.get(), nullptr, w.attn_norm.get(), N,
                                              D, eps, a.get(), stream)
            : kernels::LaunchRmsNormToBf16(x.get(), nullptr, w.attn_norm.get(), N, D, eps, a.get(),
                                           stream),
      "attention norm"));
  proj.Resize(N * P);
  FOXSERVE_RETURN_IF_ERROR(Gemm(a.get(), N, D, w.in_proj, P, proj.get()));
  stages.Mark("shift + prep", stream);
  // The token-shift state of each item: read from and written back to its mirror slot (row
  // slot * layers + l of width 2D) by the kernels, or from the host through shift_in/shift_out.
  float* const mirror_shift = step != nullptr ? mirror->shift() + l * 2 * D : nullptr;
  const int32_t* const item_slots =
      step != nullptr ? plan_upload.At<int32_t>(step->at_slots) : nullptr;
  const int64_t slot_stride = c.num_hidden_layers * 2 * D;
  if (step == nullptr) {
    shift_in.Resize(num_items * 2 * D);
    shift_out.Resize(num_items * 2 * D);
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
  prep.prev_shift = step != nullptr ? mirror_shift : shift_in.get();
  prep.prev_shift_rows = item_slots;
  prep.prev_shift_stride = slot_stride;
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
                                      step != nullptr ? mirror_shift : shift_out.get(),
                                      item_slots, slot_stride, stream),
      "shift state"));

  // - The plan: c, block metadata, ACP starts, attention tasks.
  stages.Mark("plan", stream);
  LayerPlan plan;
  if (step != nullptr) {
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
  plan.prefill.tile_counter = prefill_tile_counter.get();
  FOXSERVE_RETURN_IF_ERROR(
      Check(prefill == kPrefillWgmma
                ? kernels::LaunchPagedPrefillWgmma(kv, plan.rows, plan.prefill, stream)
            : prefill == kPrefillMma
                ? kernels::LaunchPagedPrefillMma(kv, plan.rows, plan.prefill, stream)
                : kernels::LaunchPagedPrefillTma(
                      kv, plan.rows, plan.prefill, stream,
                      prefill == kPrefillTma3
                          ? kernels::TmaPrefillShape::kThreeGroups128KeysOverlap
                          : kernels::TmaPrefillShape::kTwoGroups128Keys),
            "prefill attention"));
  stages.Mark("decode attention", stream);
  if (plan.decode.count > 0) {
    kernels::CudaDecodeTasks decode = plan.decode;
    if (!fused_decode_merge) decode.row_arrivals = nullptr;
    FOXSERVE_RETURN_IF_ERROR(
        Check(warp_decode ? kernels::LaunchPagedDecodeWarpSplit(kv, plan.rows, decode, stream)
                          : kernels::LaunchPagedDecode(kv, plan.rows, decode, stream),
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
  stages.Mark("mlp", stream);
  FOXSERVE_RETURN_IF_ERROR(Check(kernels::LaunchAddRmsNormToBf16(x.get(), delta.get(), nullptr,
                                                                 w.mlp_norm.get(), N, D, eps,
                                                                 a.get(), stream),
                                 "MLP norm"));
  gate_up.Resize(N * 2 * I);
  FOXSERVE_RETURN_IF_ERROR(Gemm(a.get(), N, D, w.gate_up, 2 * I, gate_up.get()));
  mid.Resize(N * I);
  FOXSERVE_RETURN_IF_ERROR(Check(
      kernels::LaunchGatedActivation(gate_up.get(), N, I, c.hidden_act == MlpActivation::kSwish,
                                     mid.get(), stream),
      "MLP activation"));
  // The MLP's residual stays in delta: the next layer's input norm (or the final norm) adds it.
  return Gemm(mid.get(), N, I, w.down, D, delta.get());
}

}  // namespace models
}  // namespace foxserve
