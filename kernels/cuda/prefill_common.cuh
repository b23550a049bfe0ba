// What the tensor-core prefill kernels (paged_prefill_mma.cu, paged_prefill_wgmma.cu) share:
// the page geometry they are built for, shared-memory addresses, cp.async copies from global to
// shared memory, and bf16 packing. Included by .cu files only.
#ifndef FOXSERVE_KERNELS_CUDA_PREFILL_COMMON_CUH_
#define FOXSERVE_KERNELS_CUDA_PREFILL_COMMON_CUH_

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/paged_attention_cuda.h"

namespace foxserve {
namespace kernels {
namespace prefill {

constexpr int D = kCudaHeadDim;
constexpr int PS = kCudaPageSize;
constexpr int64_t kPageBytes = CudaPageBytes(PS, D);
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared; src_bytes = 0 writes zeros instead of reading.
__device__ __forceinline__ void CopyAsync16(void* dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SharedAddress(dst)),
               "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void CommitCopies() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most kPending of this thread's committed copy groups are in flight.
template <int kPending>
__device__ __forceinline__ void WaitCopies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

}  // namespace prefill
}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_PREFILL_COMMON_CUH_
