#include "kernels/cuda/cuda_check.h"

#include <cstdio>
#include <cstdlib>

namespace foxserve {
namespace kernels {

void CudaCheckFailed(cudaError_t error, const char* statement, const char* file, int line) {
  int device = -1;
  cudaGetDevice(&device);
  std::fprintf(stderr, "%s:%d: CUDA error %s (%s) on device %d in: %s\n", file, line,
               cudaGetErrorName(error), cudaGetErrorString(error), device, statement);
  std::fflush(stderr);
  std::abort();
}

int CudaDeviceCount(const char** why) {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    if (why != nullptr) *why = cudaGetErrorString(error);
    cudaGetLastError();  // clear the sticky error
    return 0;
  }
  if (count == 0 && why != nullptr) *why = "no CUDA device is visible";
  return count;
}

}  // namespace kernels
}  // namespace foxserve
