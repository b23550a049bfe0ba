// Pinned host staging for the many small arrays the CUDA model sends to the GPU and brings back.
//
// Why: the model sends many small arrays a step (the step's items and task shapes, new page ids;
// with the host planner, about 16 arrays a layer). Copies from pageable std::vectors are staged
// by the driver one by one, and each readback waited for the stream on its own; at 24 layers a
// decode step paid hundreds of such round trips. An arena packs the uploads into one pinned buffer sent with
// one copy, and collects readbacks for one stream synchronization.
//
// Not thread-safe; one arena per stream. The host side is rewritten only after the stream has
// passed the previous Flush: Reset waits for it (with overlapped decode steps the host prepares
// the next step while the stream may not yet have reached this one's copy).
#ifndef FOXSERVE_KERNELS_CUDA_STAGING_ARENA_H_
#define FOXSERVE_KERNELS_CUDA_STAGING_ARENA_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "kernels/cuda/cuda_check.h"

namespace foxserve {
namespace kernels {

// A growable pinned host allocation.
class PinnedBytes {
 public:
  PinnedBytes() = default;
  ~PinnedBytes() { cudaFreeHost(data_); }
  PinnedBytes(const PinnedBytes&) = delete;
  PinnedBytes& operator=(const PinnedBytes&) = delete;

  // Grows to at least `bytes`, keeping the first `keep` bytes.
  void Reserve(size_t bytes, size_t keep) {
    if (bytes <= capacity_) return;
    size_t capacity = capacity_ == 0 ? (size_t{1} << 20) : capacity_;
    while (capacity < bytes) capacity *= 2;
    char* data = nullptr;
    FOXSERVE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&data), capacity));
    if (keep > 0) std::memcpy(data, data_, keep);
    cudaFreeHost(data_);  // synchronizes with the device: no copy from it is in flight after
    data_ = data;
    capacity_ = capacity;
  }
  char* data() const { return data_; }

 private:
  char* data_ = nullptr;
  size_t capacity_ = 0;
};

class UploadArena {
 public:
  UploadArena() = default;
  ~UploadArena() {
    cudaFree(device_);
    if (flushed_ != nullptr) cudaEventDestroy(flushed_);
  }
  UploadArena(const UploadArena&) = delete;
  UploadArena& operator=(const UploadArena&) = delete;

  void Reset() {
    if (flushed_ != nullptr) FOXSERVE_CUDA_CHECK(cudaEventSynchronize(flushed_));
    used_ = 0;
  }
  // Appends the vector's bytes; returns their offset for At after Flush.
  template <typename T>
  size_t Add(const std::vector<T>& v) {
    const size_t offset = (used_ + kAlign - 1) / kAlign * kAlign;
    const size_t bytes = v.size() * sizeof(T);
    host_.Reserve(offset + bytes, used_);
    if (bytes > 0) std::memcpy(host_.data() + offset, v.data(), bytes);
    used_ = offset + bytes;
    return offset;
  }
  // Sends everything added since Reset with one asynchronous copy.
  void Flush(cudaStream_t stream) {
    if (used_ > device_capacity_) {
      cudaFree(device_);
      device_ = nullptr;
      device_capacity_ = used_ * 2;
      FOXSERVE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&device_), device_capacity_));
    }
    if (used_ > 0) {
      FOXSERVE_CUDA_CHECK(
          cudaMemcpyAsync(device_, host_.data(), used_, cudaMemcpyHostToDevice, stream));
      if (flushed_ == nullptr) {
        FOXSERVE_CUDA_CHECK(cudaEventCreateWithFlags(&flushed_, cudaEventDisableTiming));
      }
      FOXSERVE_CUDA_CHECK(cudaEventRecord(flushed_, stream));
    }
  }
  // The device address of what Add returned `offset` for; valid after Flush.
  template <typename T>
  T* At(size_t offset) const {
    return reinterpret_cast<T*>(device_ + offset);
  }

 private:
  static constexpr size_t kAlign = 256;
  PinnedBytes host_;
  size_t used_ = 0;
  char* device_ = nullptr;
  size_t device_capacity_ = 0;
  cudaEvent_t flushed_ = nullptr;  // recorded after the last copy
};

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_STAGING_ARENA_H_
