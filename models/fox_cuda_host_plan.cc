// ACP planned on the host (FOXSERVE_ACP_PLANNER=host): the first planner, kept as the A/B pair and
// the reference the device planner is tested against. One synchronization a layer.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/acp_boundary.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/paged_attention.h"
#include "kernels/cuda/attention_tasks.h"
#include "models/acp_stream_plan.h"
#include "models/fox_cuda_model_impl.h"
#include "models/status_macros.h"

namespace foxserve {
namespace models {

using cuda_model::Check;
using cuda_model::kPageSize;

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
  std::vector<float> c_rel_host(N * H), bound_host(N * H);
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
        const float logit = c.fgate_type == FgateType::kFull ? fgate[(r0 + t) * H + h] : 0.0f;
        const float bias = c.fgate_type == FgateType::kNone ? 0.0f : w.fgate_bias[h];
        const double log_f = LogForget(c.fgate_type, logit, bias);
        prev += log_f;
        c_new[t] = prev;
        max_q = std::max(max_q, qn[(r0 + t) * H + h]);
        max_k = std::max(max_k, kn[(r0 + t) * H + h]);
      }
      c_rel_stream.resize(n);
      RecordNewTokens(stream_state, pos0, n, c_new.data(), max_k, kPageSize, c_rel_stream.data());
      const double step_bound = kernels::StepLogitBound(logit_bounds[l * H + h], max_q,
                                                        stream_state.max_key_norm, d);
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
        bound_host[row] = static_cast<float>(step_bound);
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
  kernels::BuildAttentionTasks(att_items, static_cast<int32_t>(H), kPageSize,
                               DecodeChunkBlocks(att_items), &tasks);

  // - The plan, in one copy.
  kernels::UploadArena& up = plan_upload;
  up.Reset();
  const size_t at_page = up.Add(page), at_slot = up.Add(slot), at_c_rel = up.Add(c_rel_host);
  const size_t at_pages = up.Add(pages_host), at_base = up.Add(base_host);
  const size_t at_table = up.Add(table), at_c = up.Add(c_host), at_bound = up.Add(bound_host);
  const size_t at_pf = up.Add(tasks.prefill_first_token), at_pn = up.Add(tasks.prefill_num_rows);
  const size_t at_ph = up.Add(tasks.prefill_head), at_pst = up.Add(tasks.prefill_start);
  const size_t at_dt = up.Add(tasks.decode_token), at_dh = up.Add(tasks.decode_head);
  const size_t at_db = up.Add(tasks.decode_begin), at_de = up.Add(tasks.decode_end);
  const size_t at_rt = up.Add(tasks.row_token), at_rh = up.Add(tasks.row_head);
  const size_t at_rp = up.Add(tasks.row_partials), at_dr = up.Add(tasks.decode_row);
  up.Flush(stream);

  plan->page = up.At<int32_t>(at_page);
  plan->slot = up.At<int32_t>(at_slot);
  plan->c_rel = up.At<float>(at_c_rel);
  plan->rows = kernels::CudaAttentionRows{positions.get(), up.At<int64_t>(at_table),
                                          up.At<int32_t>(at_pages), up.At<double>(at_base),
                                          up.At<double>(at_c), nullptr, nullptr,
                                          static_cast<int32_t>(H),
                                          1.0f / std::sqrt(static_cast<float>(d)),
                                          up.At<float>(at_bound)};
  plan->rows.max_row_logit_bound = layer_max_logit_bound[l];
  plan->prefill = kernels::CudaPrefillTasks{up.At<int32_t>(at_pf), up.At<int32_t>(at_pn),
                                            up.At<int32_t>(at_ph), up.At<int32_t>(at_pst),
                                            static_cast<int32_t>(tasks.prefill_first_token.size())};
  const int64_t decode_tasks = static_cast<int64_t>(tasks.decode_token.size());
  if (decode_tasks > 0) {
    pm.Resize(decode_tasks);
    pl.Resize(decode_tasks);
    pacc.Resize(decode_tasks * d);
    FOXSERVE_RETURN_IF_ERROR(ReserveRowArrivals(static_cast<int64_t>(tasks.row_token.size())));
  }
  plan->decode = kernels::CudaDecodeTasks{up.At<int32_t>(at_dt), up.At<int32_t>(at_dh),
                                          up.At<int32_t>(at_db), up.At<int32_t>(at_de),
                                          static_cast<int32_t>(decode_tasks),
                                          up.At<int32_t>(at_rt), up.At<int32_t>(at_rh),
                                          up.At<int32_t>(at_rp),
                                          static_cast<int32_t>(tasks.row_token.size()), pm.get(),
                                          pl.get(), pacc.get(), up.At<int32_t>(at_dr),
                                          row_arrivals.get()};
  return absl::OkStatus();
}

}  // namespace models
}  // namespace foxserve
