// What the engine needs from a device: run a batch of sequence chunks over the paged KV cache.
// Implementations: CpuBackend (float32 reference) and, under FOXSERVE_CUDA, the CUDA backend.
// The engine never sees device types: page ids and host-side sequence state cross this interface.
//
// Thread-safety: Forward is called by one thread at a time (the scheduler loop).
#ifndef FOXSERVE_ENGINE_MODEL_BACKEND_H_
#define FOXSERVE_ENGINE_MODEL_BACKEND_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "models/fox_model.h"
#include "models/kv_state.h"
#include "models/model_config.h"

namespace foxserve {
namespace engine {

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;

  virtual const models::FoxConfig& config() const = 0;
  virtual std::string name() const = 0;  // "cpu", "cuda"
  virtual int32_t page_size() const = 0;
  virtual int64_t num_pages() const = 0;
  virtual int64_t page_bytes() const = 0;  // device memory of one page
  virtual const models::AcpOptions& acp() const = 0;
  // [layer][head] bound U used by ACP (models/acp_bounds.h).
  virtual const std::vector<double>& logit_bounds() const = 0;

  // Decode state for a new sequence that may grow to max_total_tokens tokens.
  std::unique_ptr<models::SequenceKvState> NewSequenceState(int64_t max_total_tokens) const {
    const models::FoxConfig& c = config();
    return std::make_unique<models::SequenceKvState>(c.num_hidden_layers, c.num_heads,
                                                     c.hidden_size, max_total_tokens);
  }

  // Debug aid: overwrites the pages with NaN, so that a later read of a freed page poisons the
  // output instead of passing unnoticed.
  virtual void PoisonPages(absl::Span<const int32_t> pages) = 0;

  // Runs the items; logits as in models::FoxModel::Forward.
  virtual absl::Status Forward(absl::Span<const models::ForwardItem> items,
                               std::vector<float>* logits) = 0;
  // Forward in two halves, so that the host can prepare and launch the next decode step while the
  // device runs this one (the engine's overlapped decode). Launch queues a step; Finish waits
  // for the oldest queued step and completes it as Forward does (logits, greedy tokens,
  // candidates, counters, state). A step may be queued behind one in flight only when it
  // continues it: the same states in the same order, one token each taken from the step in
  // flight (ForwardItem::token_from_step_in_flight), every item of both steps greedy. Items,
  // states and outputs must outlive the step; each state's num_tokens advances at Launch. No
  // Forward while a step is in flight.
  //
  // The default runs the whole step at Launch (a continued step's tokens are the previous
  // step's greedy tokens, which are known by then) and Finish returns its status.
  virtual absl::Status Launch(absl::Span<const models::ForwardItem> items,
                              std::vector<float>* logits);
  virtual absl::Status Finish();
  // Whether Launch returns before the step has run, so that overlapping steps gains time.
  virtual bool overlaps_steps() const { return false; }

  // The logits row of the k-th item of the last Forward that asked for candidates
  // (ForwardItem::candidates), until the next Forward: for a request whose filters reach past its
  // candidates.
  virtual absl::Status CandidateRow(int64_t k, std::vector<float>* row) = 0;

 private:
  // The default Launch and Finish: statuses of the steps run and not yet finished, and the last
  // step's items (whose outputs hold its greedy tokens until it is finished).
  std::deque<absl::Status> run_ahead_;
  std::vector<models::ForwardItem> last_items_;
};

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_MODEL_BACKEND_H_
