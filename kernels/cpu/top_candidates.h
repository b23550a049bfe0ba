// The most likely tokens of a logits row, so that top-k / top-p / min-p sampling can run on the
// host without the row: a 50257-float row is 200 KB to copy and a millisecond to scan for top-p,
// its candidates a few KB. The GPU computes them before anything leaves the device
// (kernels/cuda/top_candidates_cuda.h); this is the CPU twin, the reference it is tested against.
#ifndef FOXSERVE_KERNELS_CPU_TOP_CANDIDATES_H_
#define FOXSERVE_KERNELS_CPU_TOP_CANDIDATES_H_

#include <cstdint>
#include <vector>

namespace foxserve {
namespace kernels {

struct TokenCandidates {
  // Every token whose logit is at least the `count`-th largest (all of those tied with it too),
  // by ascending id: a prefix of the row in descending logit. Empty when ties at that value
  // would exceed the capacity (complete is then false).
  std::vector<int32_t> ids;
  std::vector<float> logits;  // of ids
  float max_logit = 0.0f;
  // The sum over the whole row of exp((logit - max_logit) * inv_temperature) in double; on the
  // CPU in index order (as engine::Sampler sums it), on the GPU in the order of a reduction.
  double total = 0.0;
  bool complete = false;
  bool finite = true;  // false when the row holds a value that is not finite (nothing else set)
};

// The candidates of row [vocab]: the `count` largest by value, and every token tied with the
// smallest of them, unless that makes more than `capacity`.
void TopCandidates(const float* row, int64_t vocab, int32_t count, double inv_temperature,
                   int32_t capacity, TokenCandidates* out);

}  // namespace kernels
}  // namespace foxserve

#endif  // FOXSERVE_KERNELS_CPU_TOP_CANDIDATES_H_
