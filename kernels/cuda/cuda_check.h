// Checked CUDA calls. Launchers return cudaError_t (STYLE.md 4.7); FOXSERVE_CUDA_CHECK is for
// calls whose failure leaves the process unable to continue (device lost, out of memory during
// start-up): it prints the statement, the device and the place, then aborts.
#ifndef FOXSERVE_KERNELS_CUDA_CUDA_CHECK_H_
#define FOXSERVE_KERNELS_CUDA_CUDA_CHECK_H_

#include <cuda_runtime_api.h>

#include "kernels/check.h"

namespace foxserve {
namespace kernels {

[[noreturn]] void CudaCheckFailed(cudaError_t error, const char* statement, const char* file,
                                  int line);

// Number of CUDA devices, 0 when there is none or no driver; `why` receives the reason then.
int CudaDeviceCount(const char** why);

}  // namespace kernels
}  // namespace foxserve

#define FOXSERVE_CUDA_CHECK(statement)                                                   \
  do {                                                                                   \
    const cudaError_t foxserve_cuda_error_ = (statement);                                \
    if (foxserve_cuda_error_ != cudaSuccess)                                             \
      ::foxserve::kernels::CudaCheckFailed(foxserve_cuda_error_, #statement, __FILE__, __LINE__); \
  } while (0)

#endif  // FOXSERVE_KERNELS_CUDA_CUDA_CHECK_H_
