// Matrix products on the GPU through cuBLASLt: y = x w^T with x [M, K] and w [N, K] row-major
// bf16 (the checkpoint's [out, in] layout), fp32 accumulation, fp32 output.
#ifndef FOXSERVE_KERNELS_CUDA_GEMM_CUDA_H_
#define FOXSERVE_KERNELS_CUDA_GEMM_CUDA_H_

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "kernels/cuda/cublaslt_library.h"

namespace foxserve {
namespace kernels {

class CublasLtGemm {
 public:
  // `lib` from OpenCublasLt, not null.
  explicit CublasLtGemm(const CublasLtLibrary* lib);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // y [m, n] (row stride ldy) = x [m, k] (row stride ldx) * w[n, k]^T.
  cublasStatus_t Run(const __nv_bfloat16* x, int64_t m, int64_t k, int64_t ldx,
                     const __nv_bfloat16* w, int64_t n, float* y, int64_t ldy, cudaStream_t stream);

 private:
  // A shape's descriptors and the algorithm the heuristic picked, made once: the heuristic query
  // costs tens of microseconds of host time, and a decode step runs 7 products per layer.
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  using Shape = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;  // m, k, ldx, n, ldy
  static constexpr size_t kMaxPlans = 512;
  cublasStatus_t MakePlan(const Shape& shape, Plan* plan);
  void DestroyPlan(Plan* plan);

  const CublasLtLibrary* lib_;
  std::map<Shape, Plan> plans_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 32 << 20;
};

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_GEMM_CUDA_H_
