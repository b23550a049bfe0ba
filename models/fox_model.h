// The FoX forward pass on the CPU in float32 (FOX.md section 2) over the paged KV cache, with
// ACP skipping of dead (query block, key block) tiles (FOX.md section 3).
//
// One Forward call runs a batch of sequences, each with a chunk of new tokens: a whole prompt, a
// prefill chunk or one decode token. All new tokens go through the matrix products together;
// attention runs per (sequence, head, query block). Results for a sequence do not depend on what
// else is in the batch (see kernels/cpu/gemm.h).
//
// Thread-safety: Forward uses internal scratch buffers; call it from one thread at a time (the
// scheduler loop). The kernels fan out on the thread pool.
#ifndef FOXSERVE_MODELS_FOX_MODEL_H_
#define FOXSERVE_MODELS_FOX_MODEL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/cpu/top_candidates.h"
#include "kernels/paged_kv.h"
#include "kernels/thread_pool.h"
#include "models/fox_weights.h"
#include "models/kv_state.h"

namespace foxserve {
namespace models {

struct AcpOptions {
  bool enabled = true;
  double log_eps = -10.0;  // log of the tolerance eps
};

struct ForwardItem {
  SequenceKvState* state = nullptr;  // advanced by tokens.size(); pages must already cover it
  absl::Span<const int32_t> tokens;  // the new tokens
  bool all_logits = false;           // logits for every new token, else for the last one only
  AcpCounters* acp_counters = nullptr;  // optional per-request counters, added to
  // Greedy fast path (all_logits must be false): the backend stores the most likely next token
  // here (the lowest id among ties; -1 when a logit of the row is not finite) and returns no
  // logits row for the item. On the GPU the row then never leaves the device.
  int32_t* greedy_token = nullptr;
  // Top-candidates path (all_logits false, greedy_token null): the backend fills *candidates
  // with kernels::TopCandidates of the item's last row (kCandidateCount, at
  // candidates_inv_temperature) and returns no logits row for the item; the row stays readable
  // through CandidateRow until the next Forward (for requests whose filters reach past them).
  kernels::TokenCandidates* candidates = nullptr;
  double candidates_inv_temperature = 1.0;
  // Overlapped decode (ModelBackend::Launch): the item's one token (tokens holds a placeholder)
  // is the greedy token that the step in flight computes for its item at the same index. The
  // step is then launched before that token has reached the host.
  bool token_from_step_in_flight = false;
};

// How many of a row's most likely tokens the top-candidates path returns, and room for ties.
inline constexpr int32_t kCandidateCount = 1024;
inline constexpr int32_t kCandidateCapacity = 2048;

// Checks a batch before a forward pass touches any state: token ids in the vocabulary, lengths
// within each sequence's limit, pages present for every block the new tokens reach. Fills the
// first row of each item in the batch ([items + 1]) and the number of logit rows.
absl::Status ValidateForwardItems(absl::Span<const ForwardItem> items, const FoxConfig& config,
                                  int32_t page_size, int64_t num_pages,
                                  std::vector<int64_t>* row_offsets, int64_t* logit_rows);

// Whether `next` may be queued behind the step in flight whose items are `in_flight`
// (overlapped decode, engine/model_backend.h): every item of `next` takes its one token from
// that step (token_from_step_in_flight), the items are the same states in the same order, and
// every item of both steps is greedy. FailedPrecondition naming the first item that is not.
absl::Status CheckContinuesStep(absl::Span<const ForwardItem> in_flight,
                                absl::Span<const ForwardItem> next);

// The rows whose logits a forward pass computes, in output order: first the rows returned (all
// rows of all_logits items, else each item's last), item by item, then the last row of each
// candidates item, then of each greedy_token item (computed, reduced, not returned).
// *returned_rows: how many come first; *candidate_rows (optional): how many follow them.
std::vector<int64_t> LogitRows(absl::Span<const ForwardItem> items,
                               const std::vector<int64_t>& row_offsets, int64_t* returned_rows,
                               int64_t* candidate_rows = nullptr);

// The greedy token of a logits row (as ForwardItem::greedy_token).
int32_t GreedyToken(absl::Span<const float> row);

class FoxModel {
 public:
  // `pool` is borrowed and must outlive the model; null runs single-threaded.
  FoxModel(std::unique_ptr<FoxWeights> weights, kernels::ThreadPool* pool);
  ~FoxModel();

  const FoxConfig& config() const { return weights_->config; }
  const FoxWeights& weights() const { return *weights_; }
  // [layer][head] bound U on |q||k|/sqrt(d) valid for every input (acp_bounds.h).
  const std::vector<double>& logit_bounds() const { return logit_bounds_; }
  kernels::KvPageLayout PageLayout(int32_t page_size) const;

  // Runs the items and writes their logits, [rows, vocab] row-major, rows in item order (all new
  // tokens of an item when all_logits, else its last; none for greedy_token and candidates
  // items, which get their token or candidates). Validates token ids, lengths and page
  // coverage before touching any state: on error nothing has changed.
  absl::Status Forward(absl::Span<const ForwardItem> items, const AcpOptions& acp,
                       const kernels::KvPoolView& kv_pool, std::vector<float>* logits);
  // The logits row of the k-th candidates item of the last Forward (ForwardItem::candidates).
  absl::Status CandidateRow(int64_t k, std::vector<float>* row) const;

 private:
  struct Scratch;
  void RunLayer(int64_t layer, absl::Span<const ForwardItem> items,
                const std::vector<int64_t>& row_offsets, const AcpOptions& acp,
                const kernels::KvPoolView& kv_pool);

  std::unique_ptr<FoxWeights> weights_;
  kernels::ThreadPool* pool_;
  std::vector<double> logit_bounds_;
  std::unique_ptr<Scratch> scratch_;
  std::vector<float> candidate_rows_;  // [candidates items of the last Forward][vocab]
};

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_FOX_MODEL_H_
