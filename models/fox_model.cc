#include "models/fox_model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/acp_boundary.h"
#include "kernels/check.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/paged_attention.h"
#include "models/acp_bounds.h"
#include "models/acp_stream_plan.h"

namespace foxserve {
namespace models {

using kernels::ConstMatrixView;
using kernels::MatrixView;

namespace {

// The reference normalizes q and k with eps 1e-5 whatever norm_eps says (FOX.md section 2).
constexpr float kQkNormEps = 1e-5f;
// Rows per task of the row-wise kernels.
constexpr int64_t kRowGrain = 16;

ConstMatrixView Weight(const std::vector<float>& w, int64_t rows, int64_t cols) {
  return ConstMatrixView{w.data(), rows, cols, cols};
}

}  // namespace

absl::Status ValidateForwardItems(absl::Span<const ForwardItem> items, const FoxConfig& c,
                                  int32_t page_size, int64_t num_pages,
                                  std::vector<int64_t>* row_offsets, int64_t* logit_rows) {
  const int64_t V = c.vocab_size;
  row_offsets->assign(items.size() + 1, 0);
  *logit_rows = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const ForwardItem& item = items[i];
    if (item.state == nullptr) return absl::InvalidArgumentError("forward item without state");
    const SequenceKvState& s = *item.state;
    if (s.num_layers != c.num_hidden_layers || s.num_heads != c.num_heads) {
      return absl::InvalidArgumentError("sequence state shaped for another model");
    }
    const int64_t n = static_cast<int64_t>(item.tokens.size());
    if (n == 0) return absl::InvalidArgumentError(absl::StrCat("forward item ", i, " has no tokens"));
    for (int32_t t : item.tokens) {
      if (t < 0 || t >= V) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", t, " is outside the vocabulary [0, ", V, ")"));
      }
    }
    const int64_t total = s.num_tokens + n;
    if (total > s.max_total_tokens) {
      return absl::OutOfRangeError(absl::StrCat("sequence would reach ", total,
                                                " tokens, above its limit ", s.max_total_tokens));
    }
    const int64_t blocks_needed = (total + page_size - 1) / page_size;
    for (const KvStream& stream : s.streams) {
      if (static_cast<int64_t>(stream.pages.size()) < blocks_needed) {
        return absl::FailedPreconditionError(absl::StrCat(
            "sequence has ", stream.pages.size(), " pages per stream, needs ", blocks_needed));
      }
      for (int64_t b = s.num_tokens / page_size; b < blocks_needed; ++b) {
        if (stream.pages[b] < 0 || stream.pages[b] >= num_pages) {
          return absl::FailedPreconditionError(
              absl::StrCat("block ", b, " has no valid page (", stream.pages[b], ")"));
        }
      }
    }
    if (item.token_from_step_in_flight && (n != 1 || item.greedy_token == nullptr)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "forward item ", i, ": a token from the step in flight must be its only token, greedy"));
    }
    if (item.greedy_token != nullptr && item.all_logits) {
      return absl::InvalidArgumentError("a greedy-token item cannot ask for all its logits");
    }
    if (item.candidates != nullptr && (item.all_logits || item.greedy_token != nullptr)) {
      return absl::InvalidArgumentError(
          "a candidates item can ask neither for all its logits nor for a greedy token");
    }
    (*row_offsets)[i + 1] = (*row_offsets)[i] + n;
    *logit_rows += item.all_logits ? n : 1;
  }
  return absl::OkStatus();
}

absl::Status CheckContinuesStep(absl::Span<const ForwardItem> in_flight,
                                absl::Span<const ForwardItem> next) {
  if (in_flight.size() != next.size()) {
    return absl::FailedPreconditionError(absl::StrCat("a continued step has ", next.size(),
                                                      " items, the step in flight ",
                                                      in_flight.size()));
  }
  for (size_t i = 0; i < next.size(); ++i) {
    if (!next[i].token_from_step_in_flight || next[i].tokens.size() != 1 ||
        next[i].state != in_flight[i].state || in_flight[i].greedy_token == nullptr ||
        next[i].greedy_token == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "continued item ", i, ": not the in-flight step's greedy item of the same sequence"));
    }
  }
  return absl::OkStatus();
}

std::vector<int64_t> LogitRows(absl::Span<const ForwardItem> items,
                               const std::vector<int64_t>& row_offsets, int64_t* returned_rows,
                               int64_t* candidate_rows) {
  std::vector<int64_t> rows;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].greedy_token != nullptr || items[i].candidates != nullptr) continue;
    if (items[i].all_logits) {
      for (int64_t r = row_offsets[i]; r < row_offsets[i + 1]; ++r) rows.push_back(r);
    } else {
      rows.push_back(row_offsets[i + 1] - 1);
    }
  }
  *returned_rows = static_cast<int64_t>(rows.size());
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].candidates != nullptr) rows.push_back(row_offsets[i + 1] - 1);
  }
  if (candidate_rows != nullptr) *candidate_rows = static_cast<int64_t>(rows.size()) - *returned_rows;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].greedy_token != nullptr) rows.push_back(row_offsets[i + 1] - 1);
  }
  return rows;
}

int32_t GreedyToken(absl::Span<const float> row) {
  for (float x : row) {
    if (!std::isfinite(x)) return -1;
  }
  return kernels::Argmax(row.data(), static_cast<int64_t>(row.size()));
}

struct FoxModel::Scratch {
  std::vector<float> x;       // [N, D] residual stream
  std::vector<float> normed;  // [N, D]
  std::vector<float> proj;    // [N, P] fused input projection (q normed in place)
  std::vector<float> keys;    // [N, D] shifted (and normed) keys
  std::vector<float> values;  // [N, D] shifted values
  std::vector<double> c;      // [H, N] absolute c of each new token (head-major: rows of a
                              // stream are contiguous for the attention kernel)
  std::vector<float> attn;    // [N, D] attention output
  std::vector<float> mlp_in;  // [N, 2I]
  std::vector<float> mlp_mid; // [N, I]
  std::vector<float> delta;   // [N, D] sublayer output before the residual add
  std::vector<int32_t> starts;  // ACP start block per (item, head, query block)
  std::vector<int64_t> start_offsets;  // [items * H + 1] into starts
};

FoxModel::FoxModel(std::unique_ptr<FoxWeights> weights, kernels::ThreadPool* pool)
    : weights_(std::move(weights)), pool_(pool), scratch_(std::make_unique<Scratch>()) {
  logit_bounds_ = ComputeLogitBounds(*weights_);
}

FoxModel::~FoxModel() = default;

kernels::KvPageLayout FoxModel::PageLayout(int32_t page_size) const {
  kernels::KvPageLayout layout;
  layout.page_size = page_size;
  layout.head_dim = static_cast<int32_t>(config().head_dim);
  return layout;
}

absl::Status FoxModel::Forward(absl::Span<const ForwardItem> items, const AcpOptions& acp,
                               const kernels::KvPoolView& kv_pool, std::vector<float>* logits) {
  const FoxConfig& c = config();
  const int64_t D = c.hidden_size, V = c.vocab_size;
  const int32_t page_size = kv_pool.layout.page_size;
  if (kv_pool.layout.head_dim != c.head_dim) {
    return absl::FailedPreconditionError("KV pool head_dim does not match the model");
  }
  // - Validate everything before mutating anything.
  std::vector<int64_t> row_offsets;
  int64_t logit_rows = 0;
  if (absl::Status st = ValidateForwardItems(items, c, page_size, kv_pool.num_pages, &row_offsets,
                                             &logit_rows);
      !st.ok()) {
    return st;
  }
  for (const ForwardItem& item : items) {
    if (item.token_from_step_in_flight) {
      return absl::FailedPreconditionError(
          "a token from a step in flight: the CPU forward runs steps whole (ModelBackend::Launch)");
    }
  }
  const int64_t N = row_offsets.back();

  // - Embeddings.
  Scratch& sc = *scratch_;
  sc.x.resize(N * D);
  for (size_t i = 0; i < items.size(); ++i) {
    for (size_t t = 0; t < items[i].tokens.size(); ++t) {
      const float* e = weights_->embeddings.data() + int64_t{items[i].tokens[t]} * D;
      std::copy(e, e + D, sc.x.data() + (row_offsets[i] + t) * D);
    }
  }

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) RunLayer(l, items, row_offsets, acp, kv_pool);

  // - Final norm and the output projection for the requested rows.
  int64_t returned_rows = 0, candidate_rows = 0;
  const std::vector<int64_t> rows = LogitRows(items, row_offsets, &returned_rows, &candidate_rows);
  sc.normed.resize(logit_rows * D);
  for (int64_t r = 0; r < logit_rows; ++r) {
    kernels::RmsNorm(sc.x.data() + rows[r] * D, weights_->final_norm.data(), D,
                     static_cast<float>(c.norm_eps), sc.normed.data() + r * D);
  }
  logits->resize(logit_rows * V);
  kernels::MatMulTransposedB(ConstMatrixView{sc.normed.data(), logit_rows, D, D},
                             Weight(weights_->output_embeddings(), V, D),
                             MatrixView{logits->data(), logit_rows, V, V}, pool_);
  // Candidates items keep their rows here (CandidateRow) and get the candidates.
  candidate_rows_.assign(logits->begin() + returned_rows * V,
                         logits->begin() + (returned_rows + candidate_rows) * V);
  int64_t candidate_row = 0;
  for (const ForwardItem& item : items) {
    if (item.candidates == nullptr) continue;
    kernels::TopCandidates(candidate_rows_.data() + candidate_row++ * V, V, kCandidateCount,
                           item.candidates_inv_temperature, kCandidateCapacity, item.candidates);
  }
  int64_t greedy_row = returned_rows + candidate_rows;
  for (const ForwardItem& item : items) {
    if (item.greedy_token == nullptr) continue;
    *item.greedy_token = GreedyToken(absl::MakeConstSpan(*logits).subspan(greedy_row++ * V, V));
  }
  logits->resize(returned_rows * V);
  for (const ForwardItem& item : items) item.state->num_tokens += item.tokens.size();
  return absl::OkStatus();
}

absl::Status FoxModel::CandidateRow(int64_t k, std::vector<float>* row) const {
  const int64_t V = config().vocab_size;
  if (k < 0 || (k + 1) * V > static_cast<int64_t>(candidate_rows_.size())) {
    return absl::OutOfRangeError(absl::StrCat("no candidates item ", k, " in the last step"));
  }
  row->assign(candidate_rows_.begin() + k * V, candidate_rows_.begin() + (k + 1) * V);
  return absl::OkStatus();
}

void FoxModel::RunLayer(int64_t layer, absl::Span<const ForwardItem> items,
                        const std::vector<int64_t>& row_offsets, const AcpOptions& acp,
                        const kernels::KvPoolView& kv_pool) {
  const FoxConfig& c = config();
  const FoxLayerWeights& w = weights_->layers[layer];
  const InProjLayout& ip = weights_->in_proj;
  const int64_t D = c.hidden_size, H = c.num_heads, d = c.head_dim, I = c.intermediate_size;
  const int64_t P = ip.rows;
  const int64_t N = row_offsets.back();
  const int32_t page_size = kv_pool.layout.page_size;
  const float norm_eps = static_cast<float>(c.norm_eps);
  Scratch& sc = *scratch_;
  auto parallel_rows = [&](const std::function<void(int64_t, int64_t)>& fn) {
    if (pool_ != nullptr) {
      pool_->ParallelFor(N, kRowGrain, fn);
    } else {
      fn(0, N);
    }
  };
  auto parallel_items = [&](int64_t count, const std::function<void(int64_t, int64_t)>& fn) {
    if (pool_ != nullptr) {
      pool_->ParallelFor(count, 1, fn);
    } else {
      fn(0, count);
    }
  };

  // - Attention input: normed hidden state and the fused projection.
  sc.normed.resize(N * D);
  parallel_rows([&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      kernels::RmsNorm(sc.x.data() + r * D, w.attn_norm.data(), D, norm_eps, sc.normed.data() + r * D);
    }
  });
  sc.proj.resize(N * P);
  kernels::MatMulTransposedB(ConstMatrixView{sc.normed.data(), N, D, D}, Weight(w.in_proj, P, D),
                             MatrixView{sc.proj.data(), N, P, P}, pool_);

  // - Per sequence: token shift (sequential in the token), qk-norm, forget gates and c.
  sc.keys.resize(N * D);
  sc.values.resize(N * D);
  sc.c.resize(N * H);
  parallel_items(static_cast<int64_t>(items.size()), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      SequenceKvState& s = *items[i].state;
      const int64_t r0 = row_offsets[i], n = row_offsets[i + 1] - r0;
      auto shift = [&](int64_t src_off, int64_t gate_off, bool enabled, std::vector<float>* prev_state,
                       std::vector<float>* out) {
        float* prev = prev_state->data() + layer * D;
        for (int64_t t = 0; t < n; ++t) {
          const float* cur = sc.proj.data() + (r0 + t) * P + src_off;
          float* dst = out->data() + (r0 + t) * D;
          if (!enabled) {
            std::copy(cur, cur + D, dst);
            continue;
          }
          const float* before = t == 0 ? prev : sc.proj.data() + (r0 + t - 1) * P + src_off;
          for (int64_t h = 0; h < H; ++h) {
            const float alpha = kernels::Sigmoid(sc.proj[(r0 + t) * P + gate_off + h]);
            for (int64_t e = h * d; e < (h + 1) * d; ++e) {
              dst[e] = alpha * before[e] + (1.0f - alpha) * cur[e];
            }
          }
        }
        if (enabled) {
          const float* last = sc.proj.data() + (r0 + n - 1) * P + src_off;
          std::copy(last, last + D, prev);
        }
      };
      shift(ip.k, ip.k_shift, c.use_k_shift, &s.k_shift_prev, &sc.keys);
      shift(ip.v, ip.v_shift, c.use_v_shift, &s.v_shift_prev, &sc.values);

      for (int64_t t = 0; t < n; ++t) {
        const int64_t r = r0 + t;
        if (c.qk_norm) {
          for (int64_t h = 0; h < H; ++h) {
            const int64_t woff = c.qk_norm_share_param_across_head ? 0 : h * d;
            float* q = sc.proj.data() + r * P + ip.q + h * d;
            float* k = sc.keys.data() + r * D + h * d;
            kernels::RmsNorm(q, w.q_norm.data() + woff, d, kQkNormEps, q);
            kernels::RmsNorm(k, w.k_norm.data() + woff, d, kQkNormEps, k);
          }
        }
        for (int64_t h = 0; h < H; ++h) {
          const float logit = c.fgate_type == FgateType::kFull ? sc.proj[r * P + ip.fgate + h] : 0.0f;
          const float bias = c.fgate_type == FgateType::kNone ? 0.0f : w.fgate_bias[h];
          const double log_f = LogForget(c.fgate_type, logit, bias);
          const double prev_c = t == 0 ? s.stream(layer, h).c_now : sc.c[h * N + r - 1];
          sc.c[h * N + r] = prev_c + log_f;
        }
      }
    }
  });

  // - Append K, V, C to the pages and plan the ACP start block of every query block.
  sc.start_offsets.assign(items.size() * H + 1, 0);
  for (size_t i = 0; i < items.size(); ++i) {
    const int64_t pos0 = items[i].state->num_tokens, n = row_offsets[i + 1] - row_offsets[i];
    for (int64_t h = 0; h < H; ++h) {
      sc.start_offsets[i * H + h + 1] =
          sc.start_offsets[i * H + h] + kernels::NumQueryBlocks(pos0, n, page_size);
    }
  }
  sc.starts.resize(sc.start_offsets.back());
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  parallel_items(static_cast<int64_t>(items.size()) * H, [&](int64_t s0, int64_t s1) {
    for (int64_t sh = s0; sh < s1; ++sh) {
      const int64_t i = sh / H, h = sh % H;
      SequenceKvState& s = *items[i].state;
      KvStream& stream = s.stream(layer, h);
      const int64_t r0 = row_offsets[i], n = row_offsets[i + 1] - r0, pos0 = s.num_tokens;
      const kernels::KvPageLayout& lay = kv_pool.layout;
      std::vector<float> c_rel(n);
      RecordNewTokens(stream, pos0, n, sc.c.data() + h * N + r0,
                      kernels::MaxRowNorm(sc.keys.data() + r0 * D + h * d, n, d, D), page_size,
                      c_rel.data());
      for (int64_t t = 0; t < n; ++t) {
        const int64_t pos = pos0 + t, slot = pos % page_size;
        float* page = kv_pool.page(stream.pages[pos / page_size]);
        const float* k = sc.keys.data() + (r0 + t) * D + h * d;
        const float* v = sc.values.data() + (r0 + t) * D + h * d;
        std::copy(k, k + d, page + lay.k_offset() + slot * d);
        std::copy(v, v + d, page + lay.v_offset() + slot * d);
        page[lay.c_offset() + slot] = c_rel[t];
      }
      PlanStarts(stream, pos0, n, sc.c.data() + h * N + r0, page_size, d, acp,
                 logit_bounds_[layer * H + h],
                 kernels::MaxRowNorm(sc.proj.data() + r0 * P + ip.q + h * d, n, d, P),
                 sc.starts.data() + sc.start_offsets[i * H + h]);
    }
  });

  // - Attention, per (sequence, head, query block).
  sc.attn.resize(N * D);
  {
    struct Task {
      int64_t item, head, row_begin, row_end;
    };
    std::vector<Task> tasks;
    for (size_t i = 0; i < items.size(); ++i) {
      const int64_t pos0 = items[i].state->num_tokens, n = row_offsets[i + 1] - row_offsets[i];
      for (int64_t h = 0; h < H; ++h) {
        int64_t row = 0;
        while (row < n) {
          const int64_t end = std::min(n, (pos0 + row) / page_size * page_size + page_size - pos0);
          tasks.push_back({static_cast<int64_t>(i), h, row, end});
          row = end;
        }
      }
    }
    parallel_items(static_cast<int64_t>(tasks.size()), [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const Task& task = tasks[t];
        const SequenceKvState& s = *items[task.item].state;
        const int64_t r0 = row_offsets[task.item], n = row_offsets[task.item + 1] - r0;
        const KvStream& stream = s.stream(layer, task.head);
        kernels::StreamQueries queries;
        queries.q = sc.proj.data() + r0 * P + ip.q + task.head * d;
        queries.q_stride = P;
        queries.c = sc.c.data() + task.head * N + r0;
        queries.first_position = s.num_tokens;
        queries.n = n;
        kernels::PagedAttentionRows(kv_pool, stream.View(s.num_tokens + n), queries,
                                    sc.starts.data() + sc.start_offsets[task.item * H + task.head],
                                    scale, task.row_begin, task.row_end,
                                    sc.attn.data() + r0 * D + task.head * d, D);
      }
    });
  }

  // - ACP bookkeeping: counters, and the per-request pointer (fixed threshold with
  //   L = max_total_tokens) advanced with the newest c, which bounds every future query's c.
  for (size_t i = 0; i < items.size(); ++i) {
    SequenceKvState& s = *items[i].state;
    const int64_t n = row_offsets[i + 1] - row_offsets[i], pos0 = s.num_tokens;
    for (int64_t h = 0; h < H; ++h) {
      CountTiles(sc.starts.data() + sc.start_offsets[i * H + h], pos0, n, page_size, layer, h,
                 items[i].acp_counters);
      AdvancePointer(s.stream(layer, h), pos0 + n - 1, page_size, acp,
                     logit_bounds_[layer * H + h], s.max_total_tokens);
    }
  }

  // - Output norm and gate, output projection, residual.
  parallel_rows([&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* o = sc.attn.data() + r * D;
      if (c.use_output_norm) {
        for (int64_t h = 0; h < H; ++h) {
          kernels::RmsNorm(o + h * d, w.output_norm.data() + h * d, d, norm_eps, o + h * d);
        }
      }
      if (c.use_output_gate) {
        const float* g = sc.proj.data() + r * P + ip.ogate;
        for (int64_t e = 0; e < D; ++e) {
          o[e] *= c.ogate_act == OgateActivation::kSigmoid ? kernels::Sigmoid(g[e])
                                                           : kernels::Silu(g[e]);
        }
      }
    }
  });
  sc.delta.resize(N * D);
  kernels::MatMulTransposedB(ConstMatrixView{sc.attn.data(), N, D, D}, Weight(w.o_proj, D, D),
                             MatrixView{sc.delta.data(), N, D, D}, pool_);
  for (int64_t e = 0; e < N * D; ++e) sc.x[e] += sc.delta[e];

  // - MLP.
  parallel_rows([&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      kernels::RmsNorm(sc.x.data() + r * D, w.mlp_norm.data(), D, norm_eps, sc.normed.data() + r * D);
    }
  });
  sc.mlp_in.resize(N * 2 * I);
  kernels::MatMulTransposedB(ConstMatrixView{sc.normed.data(), N, D, D},
                             Weight(w.gate_up_proj, 2 * I, D),
                             MatrixView{sc.mlp_in.data(), N, 2 * I, 2 * I}, pool_);
  sc.mlp_mid.resize(N * I);
  parallel_rows([&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* gate = sc.mlp_in.data() + r * 2 * I;
      const float* up = gate + I;
      float* out = sc.mlp_mid.data() + r * I;
      for (int64_t e = 0; e < I; ++e) {
        const float a = c.hidden_act == MlpActivation::kSwish ? kernels::Silu(gate[e])
                                                              : kernels::Sigmoid(gate[e]);
        out[e] = a * up[e];
      }
    }
  });
  kernels::MatMulTransposedB(ConstMatrixView{sc.mlp_mid.data(), N, I, I}, Weight(w.down_proj, D, I),
                             MatrixView{sc.delta.data(), N, D, D}, pool_);
  for (int64_t e = 0; e < N * D; ++e) sc.x[e] += sc.delta[e];
}

}  // namespace models
}  // namespace foxserve
