// Per-stream bookkeeping of a forward step that the CPU and CUDA forwards share, so that both
// make the same ACP decisions from the same numbers:
//   1. RecordNewTokens: the c of the new tokens into the block metadata, and their C entries;
//   2. PlanStarts: this step's first live key block of every query block;
//   3. CountTiles and AdvancePointer after attention.
#ifndef FOXSERVE_MODELS_ACP_STREAM_PLAN_H_
#define FOXSERVE_MODELS_ACP_STREAM_PLAN_H_

#include <cstdint>

#include "models/fox_model.h"
#include "models/kv_state.h"

namespace foxserve {
namespace models {

// log f of one token's forget gate (FOX.md section 2), in double as c accumulates it:
// logsigmoid(logit + bias) for a full gate, logsigmoid(bias) for a bias-only or fixed one (the
// logit is ignored), 0 without a gate.
double LogForget(FgateType type, float logit, float bias);

// Records n new tokens at positions [pos0, pos0 + n) with absolute c values c_new[0, n) and
// their largest key norm. c_rel[i] receives token i's C entry (c relative to its block's first
// token), the value its page stores.
void RecordNewTokens(KvStream& stream, int64_t pos0, int64_t n, const double* c_new,
                     float max_key_norm, int32_t page_size, float* c_rel);

// The first live key block of each query block of the chunk (kernels::PlanQueryBlockStarts) with
// this step's threshold: the tightest U that holds for these queries (u_weight, valid for every
// input, or max_query_norm * the stream's largest key norm / sqrt(head_dim)) and L = the keys
// present now; all zeros with ACP off.
void PlanStarts(const KvStream& stream, int64_t pos0, int64_t n, const double* c_new,
                int32_t page_size, int64_t head_dim, const AcpOptions& acp, double u_weight,
                float max_query_norm, int32_t* starts);

// Adds a chunk's computed and skipped tiles to `counters` for (layer, head).
void CountTiles(const int32_t* starts, int64_t pos0, int64_t n, int32_t page_size, int64_t layer,
                int64_t head, AcpCounters* counters);

// Moves the per-request pointer (threshold fixed by u_weight and L = max_total_tokens) with the
// newest c, which bounds every future query's c.
void AdvancePointer(KvStream& stream, int64_t last_position, int32_t page_size,
                    const AcpOptions& acp, double u_weight, int64_t max_total_tokens);

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_ACP_STREAM_PLAN_H_
