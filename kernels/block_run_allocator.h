// First-fit allocation of runs of consecutive entries in a range [0, capacity) that can grow,
// freed runs coalescing with their neighbours. The bookkeeping of the CUDA model's device mirror
// of the block tables (kernels/cuda/device_kv_mirror.h), kept free of CUDA so it is tested on any
// machine.
//
// Not thread-safe; the mirror serializes calls.
#ifndef FOXSERVE_KERNELS_BLOCK_RUN_ALLOCATOR_H_
#define FOXSERVE_KERNELS_BLOCK_RUN_ALLOCATOR_H_

#include <cstdint>
#include <map>

namespace foxserve {
namespace kernels {

class BlockRunAllocator {
 public:
  // The offset of a free run of `length` (>= 1) now taken, or -1 when no free run is that long.
  int64_t Allocate(int64_t length);
  // Returns a run that Allocate gave.
  void Free(int64_t offset, int64_t length);
  // The capacity to grow to so that `length` fits: at least double, at least `minimum`, counting
  // a free run at the end, which the new space extends.
  int64_t CapacityToFit(int64_t length, int64_t minimum) const;
  // The entries [capacity(), capacity) become free.
  void Grow(int64_t capacity);

  int64_t capacity() const { return capacity_; }
  int64_t free_entries() const;
  int64_t free_runs() const { return static_cast<int64_t>(free_.size()); }

 private:
  int64_t FreeTail() const;  // length of the free run that ends at capacity_, or 0

  int64_t capacity_ = 0;
  std::map<int64_t, int64_t> free_;  // offset -> length, no two adjacent
};

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_BLOCK_RUN_ALLOCATOR_H_
