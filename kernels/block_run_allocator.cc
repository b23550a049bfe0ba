#include "kernels/block_run_allocator.h"

#include <algorithm>
#include <iterator>

#include "kernels/check.h"

namespace foxserve {
namespace kernels {

int64_t BlockRunAllocator::Allocate(int64_t length) {
  FOXSERVE_CHECK_GE(length, 1);
  auto fit = std::find_if(free_.begin(), free_.end(),
                          [&](const auto& run) { return run.second >= length; });
  if (fit == free_.end()) return -1;
  const int64_t offset = fit->first, rest = fit->second - length;
  free_.erase(fit);
  if (rest > 0) free_[offset + length] = rest;
  return offset;
}

void BlockRunAllocator::Free(int64_t offset, int64_t length) {
  FOXSERVE_CHECK_GE(length, 1);
  FOXSERVE_CHECK_LE(offset + length, capacity_);
  auto next = free_.lower_bound(offset);
  FOXSERVE_CHECK(next == free_.end() || next->first >= offset + length) << "double free";
  if (next != free_.end() && next->first == offset + length) {
    length += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto before = std::prev(next);
    FOXSERVE_CHECK_LE(before->first + before->second, offset) << "double free";
    if (before->first + before->second == offset) {
      offset = before->first;
      length += before->second;
      free_.erase(before);
    }
  }
  free_[offset] = length;
}

int64_t BlockRunAllocator::FreeTail() const {
  if (free_.empty()) return 0;
  const auto last = std::prev(free_.end());
  return last->first + last->second == capacity_ ? last->second : 0;
}

int64_t BlockRunAllocator::CapacityToFit(int64_t length, int64_t minimum) const {
  return std::max({capacity_ * 2, capacity_ - FreeTail() + length, minimum});
}

void BlockRunAllocator::Grow(int64_t capacity) {
  FOXSERVE_CHECK_GE(capacity, capacity_);
  if (capacity == capacity_) return;
  const int64_t tail = FreeTail();
  if (tail > 0) {
    free_[capacity_ - tail] = capacity - (capacity_ - tail);
  } else {
    free_[capacity_] = capacity - capacity_;
  }
  capacity_ = capacity;
}

int64_t BlockRunAllocator::free_entries() const {
  int64_t n = 0;
  for (const auto& [offset, length] : free_) n += length;
  return n;
}

}  // namespace kernels
}  // namespace foxserve
