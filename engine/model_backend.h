// What the engine needs from a device: run a batch of sequence chunks over the paged KV cache.
// Implementations: CpuBackend (float32 reference) and, under FOXSERVE_CUDA, the CUDA backend.
// The engine never sees device types: page ids and host-side sequence state cross this interface.
//
// Thread-safety: Forward is called by one thread at a time (the scheduler loop).
#ifndef FOXSERVE_ENGINE_MODEL_BACKEND_H_
#define FOXSERVE_ENGINE_MODEL_BACKEND_H_

#include <cstdint>
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
  // The logits row of the k-th item of the last Forward that asked for candidates
  // (ForwardItem::candidates), until the next Forward: for a request whose filters reach past its
  // candidates.
  virtual absl::Status CandidateRow(int64_t k, std::vector<float>* row) = 0;
};

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_MODEL_BACKEND_H_
