// The device copy of every live sequence's block tables and ACP metadata, so that a forward step
// plans ACP on the GPU (kernels/cuda/acp_plan_cuda.h) instead of sending each layer's forget
// gates to the host and the plan back (24 round trips a step on a 24-layer model).
//
// Per sequence, a region of `streams` (layers x heads) block arrays of a fixed capacity:
//   pages[block_offset + s * capacity + b]    physical page of block b of stream s
//   c_first[...], c_last[...]                  absolute c of the block's first and last token
// and a slot of per-stream scalars (c_now, max_key_norm, first_live_block: [slot * streams + s])
// and of the token-shift state ([slot][shift_floats]).
//
// The host stays the owner of the block tables: the engine appends pages, the CUDA model sends
// the new ones before the step and brings the c metadata and pointers back after it. Pages are
// only appended (eviction overwrites entries below the ACP pointer, which no kernel reads), so
// the device copy never needs more than the new entries.
//
// Thread-safety: Allocate/Free may be called from any thread (a sequence can be destroyed off the
// scheduler loop); the arrays are used only on the owner's stream, and Allocate may move them
// (grow), so their addresses must be read after the step's allocations.
#ifndef FOXSERVE_KERNELS_CUDA_DEVICE_KV_MIRROR_H_
#define FOXSERVE_KERNELS_CUDA_DEVICE_KV_MIRROR_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "kernels/block_run_allocator.h"

namespace foxserve {
namespace kernels {

struct DeviceKvRegion {
  int64_t block_offset = -1;
  int32_t capacity = 0;  // blocks per stream
  int32_t slot = -1;
};

class DeviceKvMirror {
 public:
  DeviceKvMirror(int32_t streams, int32_t shift_floats, cudaStream_t stream);
  ~DeviceKvMirror();
  DeviceKvMirror(const DeviceKvMirror&) = delete;
  DeviceKvMirror& operator=(const DeviceKvMirror&) = delete;

  // A region for a sequence of up to `capacity` blocks per stream, contents undefined. Grows
  // the arrays (keeping every live region) when full; fails only when the device is out of
  // memory.
  cudaError_t Allocate(int32_t capacity, DeviceKvRegion* region);
  void Free(const DeviceKvRegion& region);

  int32_t streams() const { return streams_; }
  int32_t shift_floats() const { return shift_floats_; }
  int32_t* pages() const { return pages_; }
  double* c_first() const { return c_first_; }
  double* c_last() const { return c_last_; }
  double* c_now() const { return c_now_; }
  float* max_key_norm() const { return max_key_norm_; }
  int32_t* first_live_block() const { return first_live_block_; }
  float* shift() const { return shift_; }
  int64_t block_capacity() const;  // blocks over all regions
  int64_t blocks_in_use() const;

 private:
  cudaError_t GrowBlocks(int64_t capacity);
  cudaError_t GrowSlots();

  const int32_t streams_, shift_floats_;
  const cudaStream_t stream_;
  mutable std::mutex mu_;
  // Block arrays, in units of one block entry; runs_ knows which entries are taken.
  int32_t* pages_ = nullptr;
  double* c_first_ = nullptr;
  double* c_last_ = nullptr;
  BlockRunAllocator runs_;
  // Slots.
  double* c_now_ = nullptr;
  float* max_key_norm_ = nullptr;
  int32_t* first_live_block_ = nullptr;
  float* shift_ = nullptr;
  int32_t slot_capacity_ = 0;
  std::vector<int32_t> free_slots_;
};

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_DEVICE_KV_MIRROR_H_
