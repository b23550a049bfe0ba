// ACP planned on the GPU (the CUDA model's default): the step's setup, each layer's plan kernel
// and what comes back to the host after the step.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/paged_attention.h"
#include "kernels/cuda/attention_tasks.h"
#include "models/fox_cuda_model_impl.h"
#include "models/status_macros.h"

namespace foxserve {
namespace models {

using cuda_model::Check;
using cuda_model::kGraphDecodeTaskBucket;
using cuda_model::kPageSize;
using cuda_model::MirroredSequence;
using kernels::DeviceBuffer;

absl::Status FoxCudaModel::Impl::PrepareDeviceStep(absl::Span<const ForwardItem> items,
                                                   const std::vector<int64_t>& row_offsets,
                                                   bool pad_decode, DeviceStep* step) {
  const FoxConfig& c = config;
  const int64_t L = c.num_hidden_layers, H = c.num_heads;
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
      // Only the mirror knows a sequence's token-shift state and c past the host's last
      // readback, so a state can start one only empty (new, or Reset by preemption).
      if (s.num_tokens != 0) {
        return absl::FailedPreconditionError(
            "a sequence state with tokens but no device mirror (written by another backend?)");
      }
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

  // - What goes up: new block-table entries, the step's items and task shapes; new sequences'
  //   state is zeroed. Copies into the mirror run device-to-device after the one upload.
  struct Zeroed {
    void* to;
    size_t bytes;
  };
  // [streams] rows of `blocks` page ids into rows of the region's capacity.
  struct PageRows {
    size_t from;
    int32_t* to;
    int64_t blocks, capacity;
  };
  std::vector<Zeroed> zeroed;
  std::vector<PageRows> page_rows;
  std::vector<std::vector<int32_t>> new_pages;  // page_rows' entries, added to the upload last
  kernels::UploadArena& up = plan_upload;
  up.Reset();
  std::vector<kernels::AcpPlanItem> plan_items(num_items);
  std::vector<int32_t> slots(num_items);
  std::vector<kernels::AttentionItem> att_items(num_items);
  step->touched_entries = 0;
  step->readback_block_base.clear();
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
      new_pages.push_back(std::move(pages));
      page_rows.push_back({0, mirror->pages() + table0 + seq.uploaded_blocks, nb, cap});
      seq.uploaded_blocks = have;
    }
    if (fresh[i]) {
      // An empty sequence: c, key norms, pointers and shift state all start at zero (block c
      // entries are written before they are read).
      const int64_t slot = region.slot;
      zeroed.push_back({mirror->c_now() + slot * streams, streams * sizeof(double)});
      zeroed.push_back({mirror->max_key_norm() + slot * streams, streams * sizeof(float)});
      zeroed.push_back({mirror->first_live_block() + slot * streams, streams * sizeof(int32_t)});
      zeroed.push_back({mirror->shift() + slot * mirror->shift_floats(),
                        mirror->shift_floats() * sizeof(float)});
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
    step->readback_block_base.push_back(pi.readback_block_base);
    step->touched_entries += streams * kernels::NumQueryBlocks(pos0, n, kPageSize);
    slots[i] = region.slot;
    kernels::AttentionItem& att = att_items[i];
    att.first_token = static_cast<int32_t>(r0);
    att.num_tokens = static_cast<int32_t>(n);
    att.first_position = pos0;
    if (n == 1) {
      // The row's tasks start from the host's pointer (a step old, never ahead of this step's
      // start), the lowest over the layers.
      if (static_cast<int64_t>(seq.head_pointer.size()) == H) {
        att.starts = seq.head_pointer;
      } else {
        att.starts.assign(H, 0);
      }
    }
  }
  kernels::HostAttentionTasks tasks;
  std::vector<int32_t> prefill_base, decode_base;
  step->decode_chunk_blocks = DecodeChunkBlocks(att_items);
  kernels::BuildAttentionTaskShapes(att_items, static_cast<int32_t>(H), kPageSize,
                                    step->decode_chunk_blocks, &tasks, &prefill_base, &decode_base);
  for (int64_t i = 0; i < num_items; ++i) {
    plan_items[i].prefill_task_base = prefill_base[i];
    plan_items[i].decode_row_base = decode_base[i];
  }
  step->padded_decode = pad_decode;
  step->decode_padding = 0;
  if (pad_decode) {
    // Empty tasks (token 0, head 0; their ranges are zeroed each step) past the rows' own.
    const size_t real = tasks.decode_token.size();
    const size_t padded = (real + kGraphDecodeTaskBucket - 1) / kGraphDecodeTaskBucket *
                          kGraphDecodeTaskBucket;
    tasks.decode_token.resize(std::max<size_t>(padded, kGraphDecodeTaskBucket), 0);
    tasks.decode_head.resize(tasks.decode_token.size(), 0);
    tasks.decode_row.resize(tasks.decode_token.size(), -1);  // merged into no row
    step->decode_padding = static_cast<int32_t>(tasks.decode_token.size() - real);
  }
  step->at_items = up.Add(plan_items);
  step->at_slots = up.Add(slots);
  step->at_pf = up.Add(tasks.prefill_first_token);
  step->at_pn = up.Add(tasks.prefill_num_rows);
  step->at_ph = up.Add(tasks.prefill_head);
  step->at_dt = up.Add(tasks.decode_token);
  step->at_dh = up.Add(tasks.decode_head);
  step->at_dr = up.Add(tasks.decode_row);
  step->at_rt = up.Add(tasks.row_token);
  step->at_rh = up.Add(tasks.row_head);
  step->at_rp = up.Add(tasks.row_partials);
  step->prefill_tasks = static_cast<int32_t>(tasks.prefill_first_token.size());
  step->decode_tasks = static_cast<int32_t>(tasks.decode_token.size());
  step->decode_rows = static_cast<int32_t>(tasks.row_token.size());
  // Last, so that everything above has the same offset in every step of one shape (a decode
  // graph reads it there).
  for (size_t r = 0; r < page_rows.size(); ++r) page_rows[r].from = up.Add(new_pages[r]);
  up.Flush(stream);
  for (const PageRows& r : page_rows) {
    const size_t row_bytes = r.blocks * sizeof(int32_t);
    FOXSERVE_RETURN_IF_ERROR(Check(
        cudaMemcpy2DAsync(r.to, r.capacity * sizeof(int32_t), up.At<char>(r.from), row_bytes,
                          row_bytes, streams, cudaMemcpyDeviceToDevice, stream),
        "block table upload"));
  }
  for (const Zeroed& z : zeroed) {
    FOXSERVE_RETURN_IF_ERROR(Check(cudaMemsetAsync(z.to, 0, z.bytes, stream), "new sequence state"));
  }

  // - Per-step scratch.
  const int64_t rows = row_offsets.back() * H;
  row_c.Resize(rows);
  log_f.Resize(rows);
  row_c_rel.Resize(rows);
  row_logit_bound.Resize(rows);
  row_page.Resize(rows);
  row_slot.Resize(rows);
  row_table.Resize(rows);
  prefill_start.Resize(std::max<int64_t>(1, step->prefill_tasks));
  decode_begin.Resize(std::max<int64_t>(1, step->decode_tasks));
  decode_end.Resize(std::max<int64_t>(1, step->decode_tasks));
  pm.Resize(std::max<int64_t>(1, step->decode_tasks));
  pl.Resize(std::max<int64_t>(1, step->decode_tasks));
  pacc.Resize(std::max<int64_t>(1, step->decode_tasks) * c.head_dim);
  FOXSERVE_RETURN_IF_ERROR(ReserveRowArrivals(step->decode_rows));
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
  p.num_tokens = static_cast<int32_t>(log_f.size() / H);
  p.log_f_scratch = log_f.get();
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
  p.row_logit_bound = row_logit_bound.get();
  p.prefill_start = prefill_start.get();
  p.decode_row_partials = up.At<int32_t>(step.at_rp);
  p.decode_begin = decode_begin.get();
  p.decode_end = decode_end.get();
  p.decode_chunk_blocks = step.decode_chunk_blocks;
  p.streams = stream_back.get();
  p.touched_blocks = block_back.get();
  FOXSERVE_RETURN_IF_ERROR(Check(kernels::LaunchAcpPlan(p, stream), "ACP plan"));

  plan->page = row_page.get();
  plan->slot = row_slot.get();
  plan->c_rel = row_c_rel.get();
  plan->rows = kernels::CudaAttentionRows{positions.get(), row_table.get(), mirror->pages(),
                                          mirror->c_first(), row_c.get(), nullptr, nullptr,
                                          static_cast<int32_t>(H),
                                          1.0f / std::sqrt(static_cast<float>(c.head_dim)),
                                          row_logit_bound.get()};
  plan->rows.max_row_logit_bound = layer_max_logit_bound[l];
  plan->prefill = kernels::CudaPrefillTasks{up.At<int32_t>(step.at_pf), up.At<int32_t>(step.at_pn),
                                            up.At<int32_t>(step.at_ph), prefill_start.get(),
                                            step.prefill_tasks};
  plan->decode = kernels::CudaDecodeTasks{up.At<int32_t>(step.at_dt), up.At<int32_t>(step.at_dh),
                                          decode_begin.get(), decode_end.get(), step.decode_tasks,
                                          up.At<int32_t>(step.at_rt), up.At<int32_t>(step.at_rh),
                                          up.At<int32_t>(step.at_rp), step.decode_rows, pm.get(),
                                          pl.get(), pacc.get(), up.At<int32_t>(step.at_dr),
                                          row_arrivals.get(), step.decode_padding};
  return absl::OkStatus();
}

void FoxCudaModel::Impl::ApplyDeviceStep(absl::Span<const ForwardItem> items,
                                         const std::vector<int64_t>& first_position,
                                         const DeviceStep& step, const char* readback_bytes) {
  const int64_t L = config.num_hidden_layers, H = config.num_heads;
  const int64_t num_items = static_cast<int64_t>(items.size());
  const auto* back = reinterpret_cast<const kernels::AcpStreamReadback*>(readback_bytes);
  // Touched blocks: item i's from step.readback_block_base[i], [stream][block] (PrepareDeviceStep).
  const double* touched = reinterpret_cast<const double*>(
      readback_bytes + num_items * L * H * sizeof(kernels::AcpStreamReadback));
  // Items own disjoint states, so they are written back in parallel.
  host_pool->ParallelFor(num_items, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      SequenceKvState& s = *items[i].state;
      auto& seq = static_cast<MirroredSequence&>(*s.backend_state);
      const int64_t pos0 = first_position[i], n = static_cast<int64_t>(items[i].tokens.size());
      const int64_t first_block = pos0 / kPageSize;
      const int64_t nqb = kernels::NumQueryBlocks(pos0, n, kPageSize);
      seq.head_pointer.assign(H, INT32_MAX);
      for (int64_t st = 0; st < L * H; ++st) {
        const kernels::AcpStreamReadback& b = back[i * L * H + st];
        KvStream& ks = s.streams[st];
        ks.c_now = b.c_now;
        ks.max_key_norm = b.max_key_norm;
        ks.first_live_block = b.first_live_block;
        int32_t& head_min = seq.head_pointer[st % H];
        head_min = std::min(head_min, b.first_live_block);
        const double* tb = touched + 2 * (step.readback_block_base[i] + st * nqb);
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
  });
}

}  // namespace models
}  // namespace foxserve
