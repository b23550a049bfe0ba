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

int64_t DeviceKvMirror::blocks_in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t free = 0;
  for (const auto& [offset, length] : free_runs_) free += length;
  return block_capacity_ - free;
}

cudaError_t DeviceKvMirror::GrowBlocks(int64_t min_free_run) {
  const int64_t old = block_capacity_;
  // The run at the end (if any) merges with the new space.
  int64_t tail = 0;
  if (!free_runs_.empty()) {
    const auto last = std::prev(free_runs_.end());
    if (last->first + last->second == old) tail = last->second;
  }
  const int64_t grown = std::max({old * 2, old - tail + min_free_run, int64_t{1} << 16});
  for (cudaError_t e : {GrowArray(&pages_, old, grown, stream_),
                        GrowArray(&c_first_, old, grown, stream_),
                        GrowArray(&c_last_, old, grown, stream_)}) {
    if (e != cudaSuccess) return e;
  }
  block_capacity_ = grown;
  if (tail > 0) {
    free_runs_[old - tail] = grown - (old - tail);
  } else {
    free_runs_[old] = grown - old;
  }
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
  auto fit = std::find_if(free_runs_.begin(), free_runs_.end(),
                          [&](const auto& run) { return run.second >= length; });
  if (fit == free_runs_.end()) {
    if (cudaError_t e = GrowBlocks(length); e != cudaSuccess) return e;
    fit = std::find_if(free_runs_.begin(), free_runs_.end(),
                       [&](const auto& run) { return run.second >= length; });
    FOXSERVE_CHECK(fit != free_runs_.end());
  }
  if (free_slots_.empty()) {
    if (cudaError_t e = GrowSlots(); e != cudaSuccess) return e;
  }
  region->block_offset = fit->first;
  region->capacity = capacity;
  region->slot = free_slots_.back();
  free_slots_.pop_back();
  const int64_t rest = fit->second - length;
  const int64_t rest_offset = fit->first + length;
  free_runs_.erase(fit);
  if (rest > 0) free_runs_[rest_offset] = rest;
  return cudaSuccess;
}

void DeviceKvMirror::Free(const DeviceKvRegion& region) {
  if (region.slot < 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  int64_t offset = region.block_offset, length = int64_t{region.capacity} * streams_;
  auto next = free_runs_.lower_bound(offset);
  if (next != free_runs_.end() && offset + length == next->first) {
    length += next->second;
    next = free_runs_.erase(next);
  }
  if (next != free_runs_.begin()) {
    auto before = std::prev(next);
    if (before->first + before->second == offset) {
      offset = before->first;
      length += before->second;
      free_runs_.erase(before);
    }
  }
  free_runs_[offset] = length;
  free_slots_.push_back(region.slot);
}

}  // namespace kernels
}  // namespace foxserve
