// Accounting of the KV page pool: which physical pages are free. Pages are per (sequence, layer,
// head) stream (kernels/paged_kv.h), so a sequence holding B blocks per stream owns
// B * layers * heads pages, and ACP eviction can return single pages.
//
// Thread-safety: none; owned and used by the scheduler loop (or one test thread).
#ifndef FOXSERVE_ENGINE_KV_BLOCK_MANAGER_H_
#define FOXSERVE_ENGINE_KV_BLOCK_MANAGER_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "models/kv_state.h"

namespace foxserve {
namespace engine {

class KvBlockManager {
 public:
  explicit KvBlockManager(int64_t num_pages);

  int64_t num_pages_total() const { return num_pages_total_; }
  int64_t num_pages_free() const { return static_cast<int64_t>(free_.size()); }
  int64_t num_pages_used() const { return num_pages_total_ - num_pages_free(); }

  // Takes `count` pages, or none (ResourceExhausted) when fewer are free.
  absl::Status Allocate(int64_t count, std::vector<int32_t>* pages);
  // Returns pages to the pool. Freeing a page twice or one never handed out is a programming
  // error (checked).
  void Free(absl::Span<const int32_t> pages);

  // Called with every batch of freed pages, before they can be handed out again (the backend
  // poisons them in tests, so that a read of a freed page shows up as NaN).
  void set_free_hook(std::function<void(absl::Span<const int32_t>)> hook) { free_hook_ = std::move(hook); }

 private:
  int64_t num_pages_total_;
  std::vector<int32_t> free_;     // a stack: recently freed pages are reused first (warm caches)
  std::vector<bool> allocated_;  // [num_pages_total]
  std::function<void(absl::Span<const int32_t>)> free_hook_;
};

// Pages a sequence needs beyond those it holds to cover `total_tokens` tokens.
int64_t PagesNeeded(const models::SequenceKvState& state, int64_t total_tokens, int32_t page_size);

// Gives every stream of `state` pages up to `total_tokens` tokens; all or nothing.
absl::Status ReservePages(KvBlockManager& manager, models::SequenceKvState& state,
                          int64_t total_tokens, int32_t page_size);

// Returns every page `state` holds and empties its block tables.
void ReleasePages(KvBlockManager& manager, models::SequenceKvState& state);

// ACP eviction: frees the pages of blocks that every stream's pointer (first_live_block) has
// passed, i.e. blocks no future query of the request can attend to with more than eps total
// weight (FOX.md section 3). Per stream, so one head's dead pages go while others keep theirs.
// Returns the number of pages freed.
int64_t EvictDeadPages(KvBlockManager& manager, models::SequenceKvState& state);

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_KV_BLOCK_MANAGER_H_
