#include "kernels/cuda/device_kv_mirror.h"

#include <algorithm>

#include "kernels/check.h"

namespace foxserve {
namespace kernels {

namespace {

// Moves a device array to a larger allocation, keeping the first `keep` elements.
template <typename T>
cudaError_t GrowArray(T** data, int64_t keep, int64_t count, cudaStream_t stream) {
  T* grown = nullptr;
  if (cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&grown), count * sizeof(T));
      e != cudaSuccess) {
    return e;
  }
  if (keep > 0) {
    if (cudaError_t e = cudaMemcpyAsync(grown, *data, keep * sizeof(T), cudaMemcpyDeviceToDevice,
                                        stream);
        e != cudaSuccess) {
      cudaFree(grown);
      return e;
    }
  }
  cudaFree(*data);  // waits for the device, so the copy above is done
  *data = grown;
  return cudaSuccess;
}

}  // namespace

DeviceKvMirror::DeviceKvMirror(int32_t streams, int32_t shift_floats, cudaStream_t stream)
    : streams_(streams), shift_floats_(shift_floats), stream_(stream) {
  FOXSERVE_CHECK_GE(streams, 1);
}

DeviceKvMirror::~DeviceKvMirror() {
  cudaFree(pages_);
  cudaFree(c_first_);
  cudaFree(c_last_);
  cudaFree(c_now_);
  cudaFree(max_key_norm_);
  cudaFree(first_live_block_);
  cudaFree(shift_);
}

int64_t DeviceKvMirror::block_capacity() const {
  std::lock_guard<std::mutex> lock(mu_);
  return runs_.capacity();
}

int64_t DeviceKvMirror::blocks_in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return runs_.capacity() - runs_.free_entries();
}

cudaError_t DeviceKvMirror::GrowBlocks(int64_t capacity) {
  const int64_t old = runs_.capacity();
  for (cudaError_t e : {GrowArray(&pages_, old, capacity, stream_),
                        GrowArray(&c_first_, old, capacity, stream_),
                        GrowArray(&c_last_, old, capacity, stream_)}) {
    if (e != cudaSuccess) return e;
  }
  runs_.Grow(capacity);
  return cudaSuccess;
}

cudaError_t DeviceKvMirror::GrowSlots() {
  const int32_t old = slot_capacity_;
  const int32_t grown = std::max(old * 2, 64);
  const int64_t s = streams_;
  for (cudaError_t e : {GrowArray(&c_now_, old * s, grown * s, stream_),
                        GrowArray(&max_key_norm_, old * s, grown * s, stream_),
                        GrowArray(&first_live_block_, old * s, grown * s, stream_),
                        GrowArray(&shift_, int64_t{old} * shift_floats_,
                                  int64_t{grown} * shift_floats_, stream_)}) {
    if (e != cudaSuccess) return e;
  }
  for (int32_t slot = grown - 1; slot >= old; --slot) free_slots_.push_back(slot);
  slot_capacity_ = grown;
  return cudaSuccess;
}

cudaError_t DeviceKvMirror::Allocate(int32_t capacity, DeviceKvRegion* region) {
  FOXSERVE_CHECK_GE(capacity, 1);
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t length = int64_t{capacity} * streams_;
  int64_t offset = runs_.Allocate(length);
  if (offset < 0) {
    if (cudaError_t e = GrowBlocks(runs_.CapacityToFit(length, int64_t{1} << 16));
        e != cudaSuccess) {
      return e;
    }
    offset = runs_.Allocate(length);
    FOXSERVE_CHECK_GE(offset, 0);
  }
  if (free_slots_.empty()) {
    if (cudaError_t e = GrowSlots(); e != cudaSuccess) {
      runs_.Free(offset, length);
      return e;
    }
  }
  region->block_offset = offset;
  region->capacity = capacity;
  region->slot = free_slots_.back();
  free_slots_.pop_back();
  return cudaSuccess;
}

void DeviceKvMirror::Free(const DeviceKvRegion& region) {
  if (region.slot < 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  runs_.Free(region.block_offset, int64_t{region.capacity} * streams_);
  free_slots_.push_back(region.slot);
}

}  // namespace kernels
}  // namespace foxserve
