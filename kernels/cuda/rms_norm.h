// RMSNorm on the GPU, float32: the first CUDA kernel, twin of kernels/cpu/elementwise.h RmsNorm.
#ifndef FOXSERVE_KERNELS_CUDA_RMS_NORM_H_
#define FOXSERVE_KERNELS_CUDA_RMS_NORM_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace foxserve {
namespace kernels {

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight for each of `rows` rows of length n
// (device pointers, row-major, contiguous). One block per row.
cudaError_t LaunchRmsNorm(const float* x, const float* weight, int64_t rows, int64_t n, float eps,
                          float* out, cudaStream_t stream);

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_RMS_NORM_H_
