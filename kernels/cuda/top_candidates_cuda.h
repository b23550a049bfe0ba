// kernels::TopCandidates on the GPU, one CTA a row: the row's max and total mass at the row's
// temperature, the count-th largest logit by a 4-pass radix select over order-preserving keys,
// then every token at or above it. Only these (a few KB a row) go to the host.
#ifndef FOXSERVE_KERNELS_CUDA_TOP_CANDIDATES_CUDA_H_
#define FOXSERVE_KERNELS_CUDA_TOP_CANDIDATES_CUDA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

namespace foxserve {
namespace kernels {

struct CandidateRowMeta {
  double total = 0.0;   // as TokenCandidates::total (summed in reduction order)
  float max_logit = 0.0f;
  int32_t count = 0;    // candidates written; -1: ties overflowed the capacity; -2: not finite
};

struct TopCandidatesParams {
  const float* logits = nullptr;  // rows of `vocab` values, `row_stride` floats apart
  int64_t row_stride = 0;
  int32_t vocab = 0;
  int32_t rows = 0;
  const double* inv_temperature = nullptr;  // [rows]
  int32_t count = 0;                        // the count-th largest sets the threshold
  int32_t capacity = 0;                     // output slots a row
  int32_t* ids = nullptr;                   // [rows][capacity], in no particular order
  float* values = nullptr;                  // [rows][capacity]
  CandidateRowMeta* meta = nullptr;         // [rows]
};

cudaError_t LaunchTopCandidates(const TopCandidatesParams& p, cudaStream_t stream);

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CUDA_TOP_CANDIDATES_CUDA_H_
