#include "kernels/cpu/top_candidates.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "kernels/cpu/elementwise.h"

namespace foxserve {
namespace kernels {

void TopCandidates(const float* row, int64_t vocab, int32_t count, double inv_temperature,
                   int32_t capacity, TokenCandidates* out) {
  out->ids.clear();
  out->logits.clear();
  out->complete = false;
  out->finite = std::all_of(row, row + vocab, [](float x) { return std::isfinite(x); });
  if (!out->finite || vocab <= 0 || count <= 0) return;
  out->max_logit = row[Argmax(row, vocab)];
  double total = 0.0;
  for (int64_t i = 0; i < vocab; ++i) {
    total += std::exp((static_cast<double>(row[i]) - out->max_logit) * inv_temperature);
  }
  out->total = total;
  // The count-th largest value: the threshold every candidate reaches.
  std::vector<float> values(row, row + vocab);
  const int64_t k = std::min<int64_t>(count, vocab);
  std::nth_element(values.begin(), values.begin() + (k - 1), values.end(), std::greater<float>());
  const float threshold = values[k - 1];
  for (int64_t i = 0; i < vocab; ++i) {
    if (row[i] >= threshold) {
      if (static_cast<int64_t>(out->ids.size()) == capacity) {
        out->ids.clear();
        out->logits.clear();
        return;
      }
      out->ids.push_back(static_cast<int32_t>(i));
      out->logits.push_back(row[i]);
    }
  }
  out->complete = true;
}

}  // namespace kernels
}  // namespace foxserve
