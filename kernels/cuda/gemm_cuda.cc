#include "kernels/cuda/gemm_cuda.h"

#include "kernels/cuda/cuda_check.h"

namespace foxserve {
namespace kernels {

CublasLtGemm::CublasLtGemm(const CublasLtLibrary* lib) : lib_(lib) {
  FOXSERVE_CHECK(lib_->Create(&handle_) == CUBLAS_STATUS_SUCCESS) << "cublasLtCreate failed";
  FOXSERVE_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
}

CublasLtGemm::~CublasLtGemm() {
  cudaFree(workspace_);
  lib_->Destroy(handle_);
}

cublasStatus_t CublasLtGemm::Run(const __nv_bfloat16* x, int64_t m, int64_t k, int64_t ldx,
                                 const __nv_bfloat16* w, int64_t n, float* y, int64_t ldy,
                                 cudaStream_t stream) {
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  // Column-major view: Y' [n, m] = W' ^T [n, k] * X' [k, m], where W' = w as a [k, n] column-major
  // matrix (ld k), X' = x as [k, m] (ld ldx), Y' = y as [n, m] (ld ldy).
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasStatus_t s = lib_->MatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  if (s == CUBLAS_STATUS_SUCCESS) {
    s = lib_->MatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof(transa));
  }
  if (s == CUBLAS_STATUS_SUCCESS) {
    s = lib_->MatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof(transb));
  }
  if (s == CUBLAS_STATUS_SUCCESS) s = lib_->MatrixLayoutCreate(&a, CUDA_R_16BF, k, n, k);
  if (s == CUBLAS_STATUS_SUCCESS) s = lib_->MatrixLayoutCreate(&b, CUDA_R_16BF, k, m, ldx);
  if (s == CUBLAS_STATUS_SUCCESS) s = lib_->MatrixLayoutCreate(&c, CUDA_R_32F, n, m, ldy);
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  if (s == CUBLAS_STATUS_SUCCESS) s = lib_->MatmulPreferenceCreate(&pref);
  if (s == CUBLAS_STATUS_SUCCESS) {
    s = lib_->MatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &workspace_bytes_, sizeof(workspace_bytes_));
  }
  if (s == CUBLAS_STATUS_SUCCESS) {
    s = lib_->MatmulAlgoGetHeuristic(handle_, op, a, b, c, c, pref, 1, &heuristic, &found);
    if (s == CUBLAS_STATUS_SUCCESS && found == 0) s = CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (s == CUBLAS_STATUS_SUCCESS) {
    const float alpha = 1.0f, beta = 0.0f;
    s = lib_->Matmul(handle_, op, &alpha, w, a, x, b, &beta, y, c, y, c, &heuristic.algo,
                       workspace_, workspace_bytes_, stream);
  }
  if (pref) lib_->MatmulPreferenceDestroy(pref);
  if (c) lib_->MatrixLayoutDestroy(c);
  if (b) lib_->MatrixLayoutDestroy(b);
  if (a) lib_->MatrixLayoutDestroy(a);
  if (op) lib_->MatmulDescDestroy(op);
  return s;
}

}  // namespace kernels
}  // namespace foxserve
