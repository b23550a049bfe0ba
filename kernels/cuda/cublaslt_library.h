// cuBLASLt, opened with dlopen on first use instead of being linked.
//
// Why: libcublasLt.so carries about 92 KiB of thread-local storage. A library linked at start-up
// puts its TLS in every thread's static TLS block, which glibc carves out of the thread's stack,
// and pthread_create fails (EINVAL, no system call) for threads whose stack is smaller than that.
// Civetweb (under prometheus-cpp's /metrics endpoint) starts its threads with 100 KiB stacks, so
// a linked cuBLASLt made every foxserve with the CUDA backend fail to serve metrics, on CPU-only
// machines too. A library opened with dlopen gets dynamic TLS and leaves thread stacks alone.
#ifndef FOXSERVE_KERNELS_CUDA_CUBLASLT_LIBRARY_H_
#define FOXSERVE_KERNELS_CUDA_CUBLASLT_LIBRARY_H_

#include <cublasLt.h>

#include <string>

namespace foxserve {
namespace kernels {

// The entry points foxserve uses.
struct CublasLtLibrary {
  decltype(&::cublasLtCreate) Create = nullptr;
  decltype(&::cublasLtDestroy) Destroy = nullptr;
  decltype(&::cublasLtMatmul) Matmul = nullptr;
  decltype(&::cublasLtMatmulAlgoGetHeuristic) MatmulAlgoGetHeuristic = nullptr;
  decltype(&::cublasLtMatmulDescCreate) MatmulDescCreate = nullptr;
  decltype(&::cublasLtMatmulDescDestroy) MatmulDescDestroy = nullptr;
  decltype(&::cublasLtMatmulDescSetAttribute) MatmulDescSetAttribute = nullptr;
  decltype(&::cublasLtMatmulPreferenceCreate) MatmulPreferenceCreate = nullptr;
  decltype(&::cublasLtMatmulPreferenceDestroy) MatmulPreferenceDestroy = nullptr;
  decltype(&::cublasLtMatmulPreferenceSetAttribute) MatmulPreferenceSetAttribute = nullptr;
  decltype(&::cublasLtMatrixLayoutCreate) MatrixLayoutCreate = nullptr;
  decltype(&::cublasLtMatrixLayoutDestroy) MatrixLayoutDestroy = nullptr;
};

// The library of this CUDA major version, opened once per process (thread-safe). Null, with the
// reason in *why, when it cannot be opened or lacks an entry point.
const CublasLtLibrary* OpenCublasLt(std::string* why);

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_CUBLASLT_LIBRARY_H_
