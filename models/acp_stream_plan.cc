#include "models/acp_stream_plan.h"

#include <algorithm>
#include <cmath>

#include "kernels/acp_boundary.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/paged_attention.h"

namespace foxserve {
namespace models {

double LogForget(FgateType type, float logit, float bias) {
  switch (type) {
    case FgateType::kFull:
      return kernels::LogSigmoid(static_cast<double>(logit) + bias);
    case FgateType::kBiasOnly:
    case FgateType::kFixed:
      return kernels::LogSigmoid(bias);
    case FgateType::kNone:
      break;
  }
  return 0.0;
}

void RecordNewTokens(KvStream& stream, int64_t pos0, int64_t n, const double* c_new,
                     float max_key_norm, int32_t page_size, float* c_rel) {
  for (int64_t t = 0; t < n; ++t) {
    const int64_t pos = pos0 + t, block = pos / page_size;
    if (pos % page_size == 0) {
      stream.block_c_first.resize(block + 1, c_new[t]);
      stream.block_c_first[block] = c_new[t];
      stream.block_c_last.resize(block + 1);
    }
    stream.block_c_last[block] = c_new[t];
    c_rel[t] = static_cast<float>(c_new[t] - stream.block_c_first[block]);
  }
  stream.c_now = c_new[n - 1];
  stream.max_key_norm = std::max(stream.max_key_norm, max_key_norm);
}

void PlanStarts(const KvStream& stream, int64_t pos0, int64_t n, const double* c_new,
                int32_t page_size, int64_t head_dim, const AcpOptions& acp, double u_weight,
                float max_query_norm, int32_t* starts) {
  if (!acp.enabled) {
    std::fill(starts, starts + kernels::NumQueryBlocks(pos0, n, page_size), 0);
    return;
  }
  // The stored pointer obeys a looser, fixed threshold, so it is a valid starting point for the
  // scan.
  const double u =
      kernels::StepLogitBound(u_weight, max_query_norm, stream.max_key_norm, head_dim);
  const double delta = kernels::AcpThreshold(u, static_cast<double>(pos0 + n), acp.log_eps);
  kernels::PlanQueryBlockStarts(stream.block_c_last.data(), stream.first_live_block, pos0, n,
                                c_new, page_size, delta, starts);
}

void CountTiles(const int32_t* starts, int64_t pos0, int64_t n, int32_t page_size, int64_t layer,
                int64_t head, AcpCounters* counters) {
  if (counters == nullptr) return;
  const int64_t first_block = pos0 / page_size;
  const int64_t slot = layer * counters->num_heads + head;
  for (int64_t qb = 0; qb < kernels::NumQueryBlocks(pos0, n, page_size); ++qb) {
    counters->skipped[slot] += starts[qb];
    counters->computed[slot] += first_block + qb + 1 - starts[qb];
  }
}

void AdvancePointer(KvStream& stream, int64_t last_position, int32_t page_size,
                    const AcpOptions& acp, double u_weight, int64_t max_total_tokens) {
  if (!acp.enabled) return;
  const double delta =
      kernels::AcpThreshold(u_weight, static_cast<double>(max_total_tokens), acp.log_eps);
  stream.first_live_block = kernels::FirstLiveBlock(
      stream.block_c_last.data(), stream.first_live_block, last_position / page_size,
      stream.c_now, delta);
}

}  // namespace models
}  // namespace foxserve
