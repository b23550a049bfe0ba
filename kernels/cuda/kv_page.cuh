// A KV page's parts (paged_attention_cuda.h: K rows, V rows, then each slot's c, relative to
// the block's base) as pointers, for the plain CUDA kernels. Included by .cu files only.
#ifndef FOXSERVE_KERNELS_CUDA_KV_PAGE_CUH_
#define FOXSERVE_KERNELS_CUDA_KV_PAGE_CUH_

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/paged_attention_cuda.h"

namespace foxserve {
namespace kernels {

struct PagePointers {
  const __nv_bfloat16* k;
  const __nv_bfloat16* v;
  const float* c;
};

__device__ __forceinline__ PagePointers Page(const CudaKvPool& pool, int32_t page) {
  constexpr int64_t kRowsBytes = 2LL * kCudaPageSize * kCudaHeadDim;
  const uint8_t* base =
      pool.data + static_cast<int64_t>(page) * CudaPageBytes(kCudaPageSize, kCudaHeadDim);
  PagePointers p;
  p.k = reinterpret_cast<const __nv_bfloat16*>(base);
  p.v = reinterpret_cast<const __nv_bfloat16*>(base + kRowsBytes);
  p.c = reinterpret_cast<const float*>(base + 2 * kRowsBytes);
  return p;
}

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_KV_PAGE_CUH_
