#include "engine/kv_block_manager.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace foxserve {
namespace engine {

KvBlockManager::KvBlockManager(int64_t num_pages)
    : num_pages_total_(num_pages), allocated_(num_pages, false) {
  FOXSERVE_CHECK_GE(num_pages, 0);
  free_.reserve(num_pages);
  // Pop order hands out page 0 first.
  for (int64_t p = num_pages - 1; p >= 0; --p) free_.push_back(static_cast<int32_t>(p));
}

absl::Status KvBlockManager::Allocate(int64_t count, std::vector<int32_t>* pages) {
  FOXSERVE_CHECK_GE(count, 0);
  if (count > num_pages_free()) {
    return absl::ResourceExhaustedError(absl::StrCat("KV pool has ", num_pages_free(),
                                                     " free pages, ", count, " needed"));
  }
  pages->reserve(pages->size() + count);
  for (int64_t i = 0; i < count; ++i) {
    const int32_t p = free_.back();
    free_.pop_back();
    allocated_[p] = true;
    pages->push_back(p);
  }
  return absl::OkStatus();
}

void KvBlockManager::Free(absl::Span<const int32_t> pages) {
  if (free_hook_ && !pages.empty()) free_hook_(pages);
  for (int32_t p : pages) {
    FOXSERVE_CHECK(p >= 0 && p < num_pages_total_ && allocated_[p])
        << "freeing page " << p << " that is not allocated";
    allocated_[p] = false;
    free_.push_back(p);
  }
}

int64_t PagesNeeded(const models::SequenceKvState& state, int64_t total_tokens,
                    int32_t page_size) {
  const int64_t blocks = (total_tokens + page_size - 1) / page_size;
  const int64_t missing = std::max<int64_t>(0, blocks - state.num_blocks());
  return missing * static_cast<int64_t>(state.streams.size());
}

absl::Status ReservePages(KvBlockManager& manager, models::SequenceKvState& state,
                          int64_t total_tokens, int32_t page_size) {
  const int64_t count = PagesNeeded(state, total_tokens, page_size);
  if (count == 0) return absl::OkStatus();
  std::vector<int32_t> pages;
  if (absl::Status s = manager.Allocate(count, &pages); !s.ok()) return s;
  const int64_t per_stream = count / static_cast<int64_t>(state.streams.size());
  int64_t next = 0;
  for (models::KvStream& stream : state.streams) {
    for (int64_t b = 0; b < per_stream; ++b) stream.pages.push_back(pages[next++]);
  }
  return absl::OkStatus();
}

void ReleasePages(KvBlockManager& manager, models::SequenceKvState& state) {
  std::vector<int32_t> held;
  for (models::KvStream& stream : state.streams) {
    for (int32_t p : stream.pages) {
      if (p != kernels::kEvictedPage) held.push_back(p);
    }
    stream.pages.clear();
    stream.num_evicted = 0;
  }
  manager.Free(held);
}

int64_t EvictDeadPages(KvBlockManager& manager, models::SequenceKvState& state) {
  std::vector<int32_t> dead;
  for (models::KvStream& stream : state.streams) {
    const int64_t upto = std::min<int64_t>(stream.first_live_block, stream.pages.size());
    for (int64_t b = stream.num_evicted; b < upto; ++b) {
      if (stream.pages[b] != kernels::kEvictedPage) dead.push_back(stream.pages[b]);
      stream.pages[b] = kernels::kEvictedPage;
    }
    stream.num_evicted = std::max(stream.num_evicted, upto);
  }
  manager.Free(dead);
  return static_cast<int64_t>(dead.size());
}

}  // namespace engine
}  // namespace foxserve
