// The golden data of the authors' reference implementation (tests/data/golden, FOX.md section 4).
#ifndef FOXSERVE_TESTS_ENGINE_GOLDEN_DATA_H_
#define FOXSERVE_TESTS_ENGINE_GOLDEN_DATA_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/model_backend.h"

namespace foxserve {
namespace testing {

struct GoldenData {
  std::string model_dir;
  int64_t batch = 0, tokens = 0, vocab = 0;
  std::vector<std::vector<int32_t>> input_ids;      // [batch][tokens]
  std::vector<std::vector<float>> logits;           // [batch][tokens * vocab]
  std::vector<std::vector<int32_t>> greedy_tokens;  // [batch][16]
};

GoldenData LoadGolden(const std::string& name);

std::unique_ptr<engine::CpuBackend> LoadBackend(const std::string& model_dir, bool acp,
                                                int64_t num_pages = 4096, int threads = 2);

// A copy of a golden checkpoint in `dir` whose forget-gate biases make head 0 of every layer
// forget fast (about 2 nats per token) and head 1 slowly (about 0.007 per token).
void WriteFastForgettingModel(const std::string& golden, const std::string& dir);

// Runs one batch of three prompt chunks twice on fresh sequences, once asking every item for its
// logits and once asking items 0 and 2 for their greedy token only (ForwardItem::greedy_token),
// and checks that the second returns only item 1's row, equal to the first run's, and tokens
// that are the argmax of the first run's rows 0 and 2. Also: greedy with all_logits is refused.
void ExpectGreedyTokensMatchTheLogits(engine::ModelBackend* backend,
                                      const std::vector<std::vector<int32_t>>& prompts);

// One step with two candidates items (inverse temperatures 1 and 0.5) around a returned row:
// each item's candidates are kernels::TopCandidates of its row (CandidateRow), which is the row
// a plain step returns (within `row_tolerance`); the total mass within `total_tolerance`
// (relative; 0 on the CPU, whose twin sums in the same order).
void ExpectCandidatesMatchTheRows(engine::ModelBackend* backend,
                                  const std::vector<std::vector<int32_t>>& prompts,
                                  double row_tolerance, double total_tolerance);

// Overlapped decode (EngineOptions::overlap_decode) against step-by-step decoding: a mix of
// requests over a vocabulary of `vocab` (greedy ones long and short, one that stops on a token of
// its own output, a sampled one, one with logprobs, arrivals mid-run and an abort) runs through
// an Engine on `backend` with overlap on and with it off. Every request streams the same tokens
// and finishes the same way either way (the aborted one: what it got is a prefix of its tokens
// when not aborted), overlap did launch steps ahead, and every page comes back. Then five greedy
// requests for two seats: overlap runs while requests wait, with the same outputs.
void ExpectOverlappedDecodeMatchesStepByStep(engine::ModelBackend* backend, int64_t vocab);

// ||a - b|| / ||b|| over n values.
double RelativeError(const float* a, const float* b, int64_t n);

}  // namespace testing
}  // namespace foxserve

#endif  // FOXSERVE_TESTS_ENGINE_GOLDEN_DATA_H_
