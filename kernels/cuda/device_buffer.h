// An owning device allocation (RAII), for host code that stages arrays for the CUDA kernels.
#ifndef FOXSERVE_KERNELS_CUDA_DEVICE_BUFFER_H_
#define FOXSERVE_KERNELS_CUDA_DEVICE_BUFFER_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_check.h"

namespace foxserve {
namespace kernels {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t count) { Resize(count); }
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(DeviceBuffer&& o) noexcept { *this = std::move(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(count_, o.count_);
    std::swap(capacity_, o.capacity_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // Grows (never shrinks) the allocation; contents are not kept.
  void Resize(size_t count) {
    if (count > capacity_) {
      cudaFree(data_);
      data_ = nullptr;
      FOXSERVE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&data_), count * sizeof(T)));
      capacity_ = count;
    }
    count_ = count;
  }
  // Resizes to the vector and copies it (asynchronously on `stream`; the vector must live
  // until the copy is done, as pageable copies are staged by the driver before returning).
  void Upload(const std::vector<T>& host, cudaStream_t stream = nullptr) {
    Resize(host.size());
    if (!host.empty()) {
      FOXSERVE_CUDA_CHECK(cudaMemcpyAsync(data_, host.data(), host.size() * sizeof(T),
                                          cudaMemcpyHostToDevice, stream));
    }
  }
  std::vector<T> Download(cudaStream_t stream = nullptr) const {
    std::vector<T> host(count_);
    if (count_ > 0) {
      FOXSERVE_CUDA_CHECK(cudaMemcpyAsync(host.data(), data_, count_ * sizeof(T),
                                          cudaMemcpyDeviceToHost, stream));
      FOXSERVE_CUDA_CHECK(cudaStreamSynchronize(stream));
    }
    return host;
  }

  T* get() const { return data_; }
  size_t size() const { return count_; }

 private:
  T* data_ = nullptr;
  size_t count_ = 0;
  size_t capacity_ = 0;
};

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_DEVICE_BUFFER_H_
