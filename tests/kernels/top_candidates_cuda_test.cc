// GPU test: skips, printing why, when no CUDA device is present (CI); run on the device machine.
// The GPU's top candidates of logits rows against the CPU twin (kernels::TopCandidates): the same
// tokens and values, the same max, the total mass to rounding; ties at the threshold all kept,
// overflow and non-finite rows flagged.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/top_candidates.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/top_candidates_cuda.h"

namespace foxserve {
namespace kernels {
namespace {

// Runs the kernel on `rows` rows of `vocab` (stride `stride`) and returns each row's candidates
// as TokenCandidates (ids sorted), comparable with the twin's.
std::vector<TokenCandidates> RunOnGpu(const std::vector<float>& logits, int32_t rows,
                                      int32_t vocab, int64_t stride,
                                      const std::vector<double>& inv_t, int32_t count,
                                      int32_t capacity) {
  DeviceBuffer<float> d_logits;
  d_logits.Upload(logits);
  DeviceBuffer<double> d_inv_t;
  d_inv_t.Upload(inv_t);
  DeviceBuffer<int32_t> ids(static_cast<size_t>(rows) * capacity);
  DeviceBuffer<float> values(static_cast<size_t>(rows) * capacity);
  DeviceBuffer<CandidateRowMeta> meta(rows);
  TopCandidatesParams p;
  p.logits = d_logits.get();
  p.row_stride = stride;
  p.vocab = vocab;
  p.rows = rows;
  p.inv_temperature = d_inv_t.get();
  p.count = count;
  p.capacity = capacity;
  p.ids = ids.get();
  p.values = values.get();
  p.meta = meta.get();
  FOXSERVE_CUDA_CHECK(LaunchTopCandidates(p, nullptr));
  FOXSERVE_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<int32_t> h_ids = ids.Download();
  const std::vector<float> h_values = values.Download();
  const std::vector<CandidateRowMeta> h_meta = meta.Download();
  std::vector<TokenCandidates> out(rows);
  for (int32_t r = 0; r < rows; ++r) {
    const CandidateRowMeta& m = h_meta[r];
    out[r].finite = m.count != -2;
    out[r].complete = m.count >= 0;
    out[r].max_logit = m.max_logit;
    out[r].total = m.total;
    std::vector<std::pair<int32_t, float>> c;
    for (int32_t j = 0; j < m.count; ++j) {
      c.emplace_back(h_ids[r * capacity + j], h_values[r * capacity + j]);
    }
    std::sort(c.begin(), c.end());
    for (const auto& [id, v] : c) {
      out[r].ids.push_back(id);
      out[r].logits.push_back(v);
    }
  }
  return out;
}

TEST(TopCandidatesCudaTest, MatchesTheCpuTwin) {
  const char* why = nullptr;
  if (CudaDeviceCount(&why) == 0) GTEST_SKIP() << "no GPU: " << why;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  const int32_t vocab = 50257, rows = 6, count = 1024, capacity = 2048;
  const int64_t stride = 50304;
  std::vector<float> logits(rows * stride, 0.0f);
  std::vector<double> inv_t = {1.0, 0.5, 2.0, 1.0 / 0.7, 1.0, 1.0};
  for (int32_t r = 0; r < rows; ++r) {
    for (int32_t i = 0; i < vocab; ++i) logits[r * stride + i] = (r + 1) * normal(rng);
  }
  // Row 3: values rounded to a coarse grid, so many ties sit at the threshold (all kept).
  for (int32_t i = 0; i < vocab; ++i) {
    logits[3 * stride + i] = std::round(logits[3 * stride + i] * 2.0f) / 2.0f;
  }
  // Row 4: a plateau larger than the capacity at the top (overflow).
  for (int32_t i = 0; i < 3000; ++i) logits[4 * stride + 7 * i] = 50.0f;
  // Row 5: not finite.
  logits[5 * stride + 123] = std::nanf("");
  const std::vector<TokenCandidates> gpu = RunOnGpu(logits, rows, vocab, stride, inv_t, count, capacity);
  for (int32_t r = 0; r < rows; ++r) {
    SCOPED_TRACE(testing::Message() << "row " << r);
    TokenCandidates cpu;
    TopCandidates(logits.data() + r * stride, vocab, count, inv_t[r], capacity, &cpu);
    ASSERT_EQ(gpu[r].finite, cpu.finite);
    ASSERT_EQ(gpu[r].complete, cpu.complete);
    if (!cpu.finite || !cpu.complete) continue;
    EXPECT_EQ(gpu[r].ids, cpu.ids);
    EXPECT_EQ(gpu[r].logits, cpu.logits);
    EXPECT_EQ(gpu[r].max_logit, cpu.max_logit);
    EXPECT_NEAR(gpu[r].total, cpu.total, 1e-12 * cpu.total);
    EXPECT_GE(cpu.ids.size(), static_cast<size_t>(count));
  }
  EXPECT_GT(gpu[3].ids.size(), static_cast<size_t>(count)) << "the ties at the threshold";
  EXPECT_FALSE(gpu[4].complete);
  EXPECT_FALSE(gpu[5].finite);
}

// Fewer tokens than asked for: every token is a candidate.
TEST(TopCandidatesCudaTest, ASmallVocabularyIsAllCandidates) {
  const char* why = nullptr;
  if (CudaDeviceCount(&why) == 0) GTEST_SKIP() << "no GPU: " << why;
  std::vector<float> logits = {0.5f, -2.0f, 3.0f, 3.0f, -0.0f, 0.0f, 1.0f};
  const std::vector<TokenCandidates> gpu =
      RunOnGpu(logits, 1, 7, 7, {1.0}, 1024, 2048);
  ASSERT_TRUE(gpu[0].complete);
  EXPECT_EQ(gpu[0].ids, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(gpu[0].max_logit, 3.0f);
  // Two candidates: the tied 3.0s.
  const std::vector<TokenCandidates> two = RunOnGpu(logits, 1, 7, 7, {1.0}, 2, 16);
  EXPECT_EQ(two[0].ids, (std::vector<int32_t>{2, 3}));
  // Three: the 1.0 joins.
  const std::vector<TokenCandidates> three = RunOnGpu(logits, 1, 7, 7, {1.0}, 3, 16);
  EXPECT_EQ(three[0].ids, (std::vector<int32_t>{2, 3, 6}));
}

}  // namespace
}  // namespace kernels
}  // namespace foxserve
