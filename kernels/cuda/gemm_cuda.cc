#include "kernels/cuda/gemm_cuda.h"

#include "kernels/cuda/cuda_check.h"

namespace foxserve {
namespace kernels {

CublasLtGemm::CublasLtGemm(const CublasLtLibrary* lib) : lib_(lib) {
  FOXSERVE_CHECK(lib_->Create(&handle_) == CUBLAS_STATUS_SUCCESS) << "cublasLtCreate failed";
  FOXSERVE_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
}

CublasLtGemm::~CublasLtGemm() {
  for (auto& [unused, plan] : plans_) DestroyPlan(&plan);
  cudaFree(workspace_);
  lib_->Destroy(handle_);
}

cublasStatus_t CublasLtGemm::MakePlan(const Shape& shape, Plan* plan) {
  const auto [m, k, ldx, n, ldy] = shape;
  // Column-major view: Y' [n, m] = W' ^T [n, k] * X' [k, m], where W' = w as a [k, n] column-major
  // matrix (ld k), X' = x as [k, m] (ld ldx), Y' = y as [n, m] (ld ldy).
  cublasStatus_t s = lib_->MatmulDescCreate(&plan->op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
  if (s == CUBLAS_STATUS_SUCCESS) {
    s = lib_->MatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof(transa));
  }
  if (s == CUBLAS_STATUS_SUCCESS) {
    s = lib_->MatmulDescSetAttribute(plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof(transb));
  }
  if (s == CUBLAS_STATUS_SUCCESS) s = lib_->MatrixLayoutCreate(&plan->a, CUDA_R_16BF, k, n, k);
  if (s == CUBLAS_STATUS_SUCCESS) s = lib_->MatrixLayoutCreate(&plan->b, CUDA_R_16BF, k, m, ldx);
  if (s == CUBLAS_STATUS_SUCCESS) s = lib_->MatrixLayoutCreate(&plan->c, CUDA_R_32F, n, m, ldy);
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  if (s == CUBLAS_STATUS_SUCCESS) s = lib_->MatmulPreferenceCreate(&pref);
  if (s == CUBLAS_STATUS_SUCCESS) {
    s = lib_->MatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                           &workspace_bytes_, sizeof(workspace_bytes_));
  }
  if (s == CUBLAS_STATUS_SUCCESS) {
    s = lib_->MatmulAlgoGetHeuristic(handle_, plan->op, plan->a, plan->b, plan->c, plan->c, pref,
                                     1, &heuristic, &found);
    if (s == CUBLAS_STATUS_SUCCESS && found == 0) s = CUBLAS_STATUS_NOT_SUPPORTED;
  }
  if (pref) lib_->MatmulPreferenceDestroy(pref);
  plan->algo = heuristic.algo;
  return s;
}

void CublasLtGemm::DestroyPlan(Plan* plan) {
  if (plan->c) lib_->MatrixLayoutDestroy(plan->c);
  if (plan->b) lib_->MatrixLayoutDestroy(plan->b);
  if (plan->a) lib_->MatrixLayoutDestroy(plan->a);
  if (plan->op) lib_->MatmulDescDestroy(plan->op);
  *plan = Plan();
}

cublasStatus_t CublasLtGemm::Run(const __nv_bfloat16* x, int64_t m, int64_t k, int64_t ldx,
                                 const __nv_bfloat16* w, int64_t n, float* y, int64_t ldy,
                                 cudaStream_t stream) {
  if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
  const Shape shape{m, k, ldx, n, ldy};
  auto it = plans_.find(shape);
  if (it == plans_.end()) {
    // Prefill chunks come in many lengths: keep the table bounded.
    if (plans_.size() >= kMaxPlans) {
      for (auto& [unused, plan] : plans_) DestroyPlan(&plan);
      plans_.clear();
    }
    Plan plan;
    const cublasStatus_t s = MakePlan(shape, &plan);
    if (s != CUBLAS_STATUS_SUCCESS) {
      DestroyPlan(&plan);
      return s;
    }
    it = plans_.emplace(shape, plan).first;
  }
  const Plan& p = it->second;
  const float alpha = 1.0f, beta = 0.0f;
  return lib_->Matmul(handle_, p.op, &alpha, w, p.a, x, p.b, &beta, y, p.c, y, p.c, &p.algo,
                      workspace_, workspace_bytes_, stream);
}

}  // namespace kernels
}  // namespace foxserve
