// Upper bounds U on |q_h||k_h| / sqrt(head_dim) that hold for every possible input, per
// (layer, head): ACP's threshold needs them for a boundary fixed per request (FOX.md section 3).
//   qk-norm:    |q_h| <= max|q_norm[h]| sqrt(d), same for k, so U = max|q_norm| max|k_norm| sqrt(d).
//   no qk-norm: the normed hidden state has norm <= sqrt(D) max|attn_norm|, so
//               |q_h| <= sqrt(D) max|attn_norm| sigma_max(Wq_h); a token-shifted k is a convex
//               mix of two projections and obeys the same bound with Wk_h.
// sigma_max comes from an upper bound on the top eigenvalue of W W^T (trace of its 2^m-th power),
// never from an estimate that could fall short.
#ifndef FOXSERVE_MODELS_ACP_BOUNDS_H_
#define FOXSERVE_MODELS_ACP_BOUNDS_H_

#include <vector>

#include "models/fox_weights.h"

namespace foxserve {
namespace models {

// [layer][head] bound U.
std::vector<double> ComputeLogitBounds(const FoxWeights& weights);

// An upper bound on the largest singular value of the [rows, cols] row-major matrix, within a
// factor rows^(1/2^(iterations+1)) of the true value.
double SpectralNormUpperBound(const float* matrix, int64_t rows, int64_t cols, int iterations = 10);

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_ACP_BOUNDS_H_
