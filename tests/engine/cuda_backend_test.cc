// The CUDA backend against the golden data and the CPU engine (bf16 weights and KV, so within
// 2e-2 relative where the CPU test asks 1e-4). Skips, printing why, without a GPU.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine/cuda_backend.h"
#include "engine/kv_block_manager.h"
#include "engine/sampler.h"
#include "engine/sequence_runner.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/golden_data.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {
namespace {

std::unique_ptr<engine::CudaBackend> LoadCuda(const std::string& dir, bool acp,
                                              int64_t pages = 4096) {
  engine::CudaBackendOptions o;
  o.num_pages = pages;
  o.acp.enabled = acp;
  auto b = engine::CudaBackend::Load(dir, o);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? std::move(b).value() : nullptr;
}

class CudaBackendTest : public ::testing::TestWithParam<std::tuple<std::string, bool>> {
 protected:
  void SetUp() override {
    std::string why;
    if (!engine::CudaBackendAvailable(&why)) GTEST_SKIP() << "no GPU: " << why;
    golden_ = LoadGolden(std::get<0>(GetParam()));
    backend_ = LoadCuda(golden_.model_dir, std::get<1>(GetParam()));
    ASSERT_NE(backend_, nullptr);
    blocks_ = std::make_unique<engine::KvBlockManager>(backend_->num_pages());
    blocks_->set_free_hook([this](absl::Span<const int32_t> p) { backend_->PoisonPages(p); });
  }
  std::vector<float> Prefill(int64_t row, int64_t chunk = 0) {
    engine::SequenceRunner runner(backend_.get(), blocks_.get(), golden_.tokens + 32);
    runner.set_evict_dead_pages(true);
    auto logits = runner.Feed(golden_.input_ids[row], true, chunk);
    EXPECT_TRUE(logits.ok()) << logits.status();
    return logits.ok() ? *logits : std::vector<float>();
  }
  void TearDown() override {
    if (blocks_) {
      EXPECT_EQ(blocks_->num_pages_free(), blocks_->num_pages_total());
    }
  }

  // The CPU engine's greedy tokens up to the first step whose top-2 logit margin is under 0.05
  // (bf16 weights move single logits by about 0.02 on these models: measured error 0.57%).
  std::vector<int32_t> CpuDecisivePrefix(const std::vector<int32_t>& prompt, int64_t row) {
    auto cpu = LoadBackend(golden_.model_dir, std::get<1>(GetParam()));
    engine::KvBlockManager blocks(cpu->num_pages());
    engine::SequenceRunner runner(cpu.get(), &blocks, prompt.size() + 16);
    auto logits = runner.Feed(prompt, false);
    std::vector<int32_t> out;
    for (int step = 0; step < 16 && logits.ok(); ++step) {
      std::vector<float> l = *logits;
      const int32_t best = engine::Argmax(l);
      float second = -1e30f;
      for (size_t v = 0; v < l.size(); ++v) {
        if (static_cast<int32_t>(v) != best) second = std::max(second, l[v]);
      }
      if (l[best] - second < 0.05f) break;
      EXPECT_EQ(best, golden_.greedy_tokens[row][step]);
      out.push_back(best);
      logits = runner.Feed({best}, false);
    }
    return out;
  }

  GoldenData golden_;
  std::unique_ptr<engine::CudaBackend> backend_;
  std::unique_ptr<engine::KvBlockManager> blocks_;
  size_t compared_ = 0;
};

TEST_P(CudaBackendTest, GreedyTokenItemsReturnTheArgmaxAndNoLogits) {
  const auto& ids = golden_.input_ids;
  ExpectGreedyTokensMatchTheLogits(
      backend_.get(), {ids[0], ids[1], std::vector<int32_t>(ids[1].begin(), ids[1].begin() + 5)});
}

TEST_P(CudaBackendTest, CandidatesItemsGetTheTopOfTheirRows) {
  const auto& ids = golden_.input_ids;
  // The GPU sums the mass in a reduction's order, and its products see other row counts.
  ExpectCandidatesMatchTheRows(
      backend_.get(), {ids[0], ids[1], std::vector<int32_t>(ids[1].begin(), ids[1].begin() + 5)},
      1e-2, 1e-12);
}

TEST_P(CudaBackendTest, LogitsGreedyDecodeAndChunks) {
  const int64_t V = golden_.vocab, T = golden_.tokens;
  for (int64_t b = 0; b < golden_.batch; ++b) {
    const auto logits = Prefill(b);
    ASSERT_EQ(logits.size(), golden_.logits[b].size());
    const double err = RelativeError(logits.data(), golden_.logits[b].data(), logits.size());
    std::printf("[ measured ] %s acp=%d row %lld: relative error %.3g\n",
                std::get<0>(GetParam()).c_str(), std::get<1>(GetParam()),
                static_cast<long long>(b), err);
    EXPECT_LT(err, 2e-2);
    // Greedy continuation: the CPU engine's tokens (the reference's), as long as the CPU's
    // choice is not within bf16 noise (a top-2 logit margin under 0.05, where bf16 rounding of
    // the weights may legitimately flip the argmax and the continuations part ways).
    engine::SequenceRunner runner(backend_.get(), blocks_.get(), T + 16);
    engine::Sampler greedy(engine::SamplingParams{}, golden_.input_ids[b]);
    engine::GenerateOptions options;
    options.max_new_tokens = 16;
    options.stop_at_eos = false;
    auto tokens = engine::GenerateTokens(runner, golden_.input_ids[b], options, greedy, {});
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    const std::vector<int32_t> decisive = CpuDecisivePrefix(golden_.input_ids[b], b);
    std::printf("[ measured ] %zu of 16 greedy tokens are decisive on the CPU\n", decisive.size());
    compared_ += decisive.size();
    EXPECT_EQ(std::vector<int32_t>(tokens->begin(), tokens->begin() + decisive.size()), decisive)
        << "row " << b;
  }
  EXPECT_GE(compared_, 2u) << "too few decisive tokens for the comparison to mean anything";
  {
  }
  // Token-by-token decode and chunked prefill reproduce the one-shot prefill.
  const auto one_shot = Prefill(0);
  engine::SequenceRunner runner(backend_.get(), blocks_.get(), T);
  double worst = 0;
  for (int64_t t = 0; t < T; ++t) {
    auto logits = runner.Feed({golden_.input_ids[0][t]}, false);
    ASSERT_TRUE(logits.ok());
    worst = std::max(worst, RelativeError(logits->data(), one_shot.data() + t * V, V));
  }
  std::printf("[ measured ] decode vs prefill: worst row %.3g\n", worst);
  EXPECT_LT(worst, 2e-2);
  for (int64_t chunk : {7, 64}) {
    const auto chunked = Prefill(0, chunk);
    EXPECT_LT(RelativeError(chunked.data(), one_shot.data(), one_shot.size()), 2e-2) << chunk;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Models, CudaBackendTest,
    ::testing::Combine(::testing::Values("fox-pro-tiny", "fox-llama-tiny"), ::testing::Bool()),
    [](const ::testing::TestParamInfo<CudaBackendTest::ParamType>& info) {
      std::string name = std::get<0>(info.param) + (std::get<1>(info.param) ? "_acp" : "_dense");
      for (char& ch : name) {
        if (ch == '-') ch = '_';
      }
      return name;
    });

// A long sequence with fast-forgetting heads: ACP skips and evicts on the GPU, stays within
// bf16 noise of dense attention, and eviction (freed pages poisoned) changes nothing.
TEST(CudaBackendLongTest, AcpAndEvictionOnALongSequence) {
  std::string why;
  if (!engine::CudaBackendAvailable(&why)) GTEST_SKIP() << "no GPU: " << why;
  ScratchDir dir;
  WriteFastForgettingModel("fox-pro-tiny", dir.path());
  std::mt19937 rng(42);
  std::vector<int32_t> prompt(4096);
  for (int32_t& t : prompt) t = static_cast<int32_t>(rng() % 512);
  const int64_t pages = 4 * 70;
  auto dense = LoadCuda(dir.path(), false, pages), pruned = LoadCuda(dir.path(), true, pages),
       evicting = LoadCuda(dir.path(), true, pages);
  engine::KvBlockManager bd(pages), bp(pages), be(pages);
  be.set_free_hook([&](absl::Span<const int32_t> p) { evicting->PoisonPages(p); });
  engine::SequenceRunner rd(dense.get(), &bd, 4200), rp(pruned.get(), &bp, 4200),
      re(evicting.get(), &be, 4200);
  re.set_evict_dead_pages(true);
  auto ld = rd.Feed(prompt, true, 3000), lp = rp.Feed(prompt, true, 3000), le = re.Feed(prompt, true, 3000);
  ASSERT_TRUE(ld.ok() && lp.ok() && le.ok());
  const double err = RelativeError(lp->data(), ld->data(), ld->size());
  std::printf("[ measured ] 4096 tokens: ACP vs dense %.3g, skipped %llu of %llu tiles, %lld pages evicted\n",
              err, static_cast<unsigned long long>(rp.acp_counters().total_skipped()),
              static_cast<unsigned long long>(rp.acp_counters().total_skipped() +
                                              rp.acp_counters().total_computed()),
              static_cast<long long>(re.num_evicted_pages()));
  EXPECT_LT(err, 2e-2);
  // The same pruning decisions as the CPU engine, up to bf16 noise in the gates and norms.
  auto cpu = LoadBackend(dir.path(), true, pages);
  engine::KvBlockManager bc(pages);
  engine::SequenceRunner rc(cpu.get(), &bc, 4200);
  ASSERT_TRUE(rc.Feed(prompt, false, 3000).ok());
  const double gpu_skipped = static_cast<double>(rp.acp_counters().total_skipped());
  const double cpu_skipped = static_cast<double>(rc.acp_counters().total_skipped());
  std::printf("[ measured ] skipped tiles: GPU %.0f, CPU %.0f\n", gpu_skipped, cpu_skipped);
  EXPECT_GT(gpu_skipped, 0);
  EXPECT_LT(std::fabs(gpu_skipped - cpu_skipped), 0.01 * cpu_skipped);
  EXPECT_GT(re.num_evicted_pages(), 0);
  EXPECT_EQ(*le, *lp);
  for (int step = 0; step < 16; ++step) {
    const int32_t next = static_cast<int32_t>(rng() % 512);
    auto a = rp.Feed({next}, false), b = re.Feed({next}, false);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(*a, *b) << "step " << step;
    for (float x : *b) ASSERT_TRUE(std::isfinite(x));
  }
}

// The device planner (ACP planned on the GPU from the mirrored block tables) against the host
// planner, on one batched schedule: prefill chunks that start and end mid-page, a one-token
// prefill, decode rows next to prefill chunks, eviction, a preempted sequence that starts over, a
// finished one whose mirror region is reused, and a sequence long enough to grow the mirror. Both
// run the same attention kernels, so logits agree to rounding, and the host state the engine
// reads after each step (c, block metadata, pointers, tile counts) must agree.
class PlannerRun {
 public:
  PlannerRun(const std::string& dir, const char* planner, int64_t pages,
             const char* graphs = "off")
      : blocks_(pages) {
    setenv("FOXSERVE_ACP_PLANNER", planner, 1);
    setenv("FOXSERVE_CUDA_GRAPHS", graphs, 1);
    backend_ = LoadCuda(dir, true, pages);
    unsetenv("FOXSERVE_ACP_PLANNER");
    unsetenv("FOXSERVE_CUDA_GRAPHS");
  }
  const engine::CudaBackend& backend() const { return *backend_; }
  ~PlannerRun() {
    for (auto& s : states_) {
      if (s) engine::ReleasePages(blocks_, *s);
    }
  }
  bool ok() const { return backend_ != nullptr; }
  void Start(size_t seq, int64_t max_tokens) {
    if (states_.size() <= seq) {
      states_.resize(seq + 1);
      counters_.resize(seq + 1);
    }
    if (states_[seq]) engine::ReleasePages(blocks_, *states_[seq]);
    states_[seq] = backend_->NewSequenceState(max_tokens);
    counters_[seq] = models::AcpCounters(backend_->config().num_hidden_layers,
                                         backend_->config().num_heads);
  }
  void Preempt(size_t seq) {
    engine::ReleasePages(blocks_, *states_[seq]);
    states_[seq]->Reset();
  }
  void Finish(size_t seq) {
    engine::ReleasePages(blocks_, *states_[seq]);
    states_[seq].reset();
  }
  absl::StatusOr<std::vector<float>> Step(
      const std::vector<std::pair<size_t, std::vector<int32_t>>>& work) {
    std::vector<models::ForwardItem> items;
    for (const auto& [seq, tokens] : work) {
      models::SequenceKvState& s = *states_[seq];
      if (auto st = engine::ReservePages(blocks_, s, s.num_tokens + tokens.size(),
                                         backend_->page_size());
          !st.ok()) {
        return st;
      }
      models::ForwardItem item;
      item.state = &s;
      item.tokens = tokens;
      item.acp_counters = &counters_[seq];
      items.push_back(item);
    }
    std::vector<float> logits;
    if (auto st = backend_->Forward(items, &logits); !st.ok()) return st;
    for (const auto& [seq, tokens] : work) engine::EvictDeadPages(blocks_, *states_[seq]);
    return logits;
  }
  const models::SequenceKvState& state(size_t seq) const { return *states_[seq]; }
  const models::AcpCounters& counters(size_t seq) const { return counters_[seq]; }

 private:
  std::unique_ptr<engine::CudaBackend> backend_;
  engine::KvBlockManager blocks_;
  std::vector<std::unique_ptr<models::SequenceKvState>> states_;
  std::vector<models::AcpCounters> counters_;
};

void ExpectSameHostState(const models::SequenceKvState& host, const models::SequenceKvState& dev,
                         const std::string& where) {
  ASSERT_EQ(host.num_tokens, dev.num_tokens) << where;
  for (size_t st = 0; st < host.streams.size(); ++st) {
    const models::KvStream& a = host.streams[st];
    const models::KvStream& b = dev.streams[st];
    const std::string at = where + ", stream " + std::to_string(st);
    EXPECT_NEAR(a.c_now, b.c_now, 1e-9 * (1 + std::fabs(a.c_now))) << at;
    EXPECT_EQ(a.max_key_norm, b.max_key_norm) << at;
    EXPECT_EQ(a.first_live_block, b.first_live_block) << at;
    EXPECT_EQ(a.num_evicted, b.num_evicted) << at;
    ASSERT_EQ(a.block_c_first.size(), b.block_c_first.size()) << at;
    ASSERT_EQ(a.block_c_last.size(), b.block_c_last.size()) << at;
    for (size_t j = 0; j < a.block_c_first.size(); ++j) {
      EXPECT_NEAR(a.block_c_first[j], b.block_c_first[j], 1e-9 * (1 + std::fabs(a.block_c_first[j])))
          << at << ", block " << j;
      EXPECT_NEAR(a.block_c_last[j], b.block_c_last[j], 1e-9 * (1 + std::fabs(a.block_c_last[j])))
          << at << ", block " << j;
    }
  }
}

// The host state and tile counts of the sequences a step ran, in two runs of one schedule.
void ExpectSameSequences(const PlannerRun& a, const PlannerRun& b,
                         const std::vector<std::pair<size_t, std::vector<int32_t>>>& step_items,
                         size_t step) {
  for (const auto& [seq, t] : step_items) {
    const std::string where = "step " + std::to_string(step) + ", sequence " + std::to_string(seq);
    ExpectSameHostState(a.state(seq), b.state(seq), where);
    EXPECT_EQ(a.counters(seq).computed, b.counters(seq).computed) << where;
    EXPECT_EQ(a.counters(seq).skipped, b.counters(seq).skipped) << where;
  }
}

TEST(CudaBackendPlannerTest, DevicePlannerMatchesTheHostPlanner) {
  std::string why;
  if (!engine::CudaBackendAvailable(&why)) GTEST_SKIP() << "no GPU: " << why;
  ScratchDir dir;
  WriteFastForgettingModel("fox-pro-tiny", dir.path());
  const int64_t pages = 4096;
  PlannerRun host(dir.path(), "host", pages), device(dir.path(), "device", pages);
  ASSERT_TRUE(host.ok() && device.ok());
  std::mt19937 rng(7);
  auto tokens = [&](int n) {
    std::vector<int32_t> t(n);
    for (int32_t& x : t) x = static_cast<int32_t>(rng() % 512);
    return t;
  };
  // (sequence, its maximum length); sequence 3 is long enough to make the mirror grow.
  const std::vector<std::pair<size_t, int64_t>> starts = {{0, 3000}, {1, 3000}, {2, 3000},
                                                          {3, 1 << 20}};
  for (auto [seq, max_tokens] : starts) {
    host.Start(seq, max_tokens);
    device.Start(seq, max_tokens);
  }
  std::vector<std::vector<std::pair<size_t, std::vector<int32_t>>>> schedule;
  schedule.push_back({{0, tokens(700)}, {1, tokens(64)}, {2, tokens(1)}});
  schedule.push_back({{0, tokens(1)}, {1, tokens(130)}, {2, tokens(1)}, {3, tokens(333)}});
  schedule.push_back({{0, tokens(1)}, {1, tokens(1)}, {2, tokens(200)}, {3, tokens(1)}});
  for (int i = 0; i < 40; ++i) {
    schedule.push_back({{0, tokens(1)}, {1, tokens(1)}, {2, tokens(1)}, {3, tokens(1)}});
  }
  schedule.push_back({{0, tokens(1)}, {1, tokens(1)}, {3, tokens(1500)}});
  for (int i = 0; i < 8; ++i) schedule.push_back({{0, tokens(1)}, {1, tokens(1)}, {3, tokens(1)}});
  for (size_t step = 0; step < schedule.size(); ++step) {
    if (step == 5) {  // preemption by recompute: sequence 2 starts over
      host.Preempt(2);
      device.Preempt(2);
      for (auto& [seq, t] : schedule[step]) {
        if (seq == 2) t = tokens(300);
      }
    }
    if (step == 45) {  // sequence 1 is done; sequence 4 takes its place (and its mirror region)
      host.Finish(1);
      device.Finish(1);
      host.Start(4, 3000);
      device.Start(4, 3000);
      for (auto& [seq, t] : schedule[step]) {
        if (seq == 1) seq = 4;
      }
      for (size_t later = step + 1; later < schedule.size(); ++later) {
        for (auto& [seq, t] : schedule[later]) {
          if (seq == 1) seq = 4;
        }
      }
    }
    auto a = host.Step(schedule[step]), b = device.Step(schedule[step]);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_EQ(a->size(), b->size());
    EXPECT_LT(RelativeError(b->data(), a->data(), a->size()), 1e-4) << "step " << step;
    ExpectSameSequences(host, device, schedule[step], step);
    if (::testing::Test::HasFailure()) break;
  }
  uint64_t skipped = 0;
  for (size_t seq : {0, 2, 3}) skipped += device.counters(seq).total_skipped();
  std::printf("[ measured ] device planner: %llu tiles skipped over the schedule\n",
              static_cast<unsigned long long>(skipped));
  EXPECT_GT(skipped, 0u);
}

// Decode steps as CUDA graphs run the same kernels on the same inputs as launching them one by one:
// logits, host state and tile counts must be identical, through batch-size changes, sequences
// crossing block boundaries (new block-table entries), the mirror growing, and a sequence
// replaced in the batch.
TEST(CudaBackendGraphTest, DecodeGraphsMatchPlainLaunches) {
  std::string why;
  if (!engine::CudaBackendAvailable(&why)) GTEST_SKIP() << "no GPU: " << why;
  ScratchDir dir;
  WriteFastForgettingModel("fox-pro-tiny", dir.path());
  const int64_t pages = 4096;
  PlannerRun plain(dir.path(), "device", pages, "off"), graphs(dir.path(), "device", pages, "on");
  ASSERT_TRUE(plain.ok() && graphs.ok());
  std::mt19937 rng(11);
  auto tokens = [&](int n) {
    std::vector<int32_t> t(n);
    for (int32_t& x : t) x = static_cast<int32_t>(rng() % 512);
    return t;
  };
  for (size_t seq : {0, 1, 2}) {
    plain.Start(seq, 3000);
    graphs.Start(seq, 3000);
  }
  std::vector<std::vector<std::pair<size_t, std::vector<int32_t>>>> schedule;
  schedule.push_back({{0, tokens(60)}, {1, tokens(120)}, {2, tokens(5)}});
  // 3 decoding: sequence 0 crosses a 64-token block after 4 steps, sequence 2 after 59.
  for (int i = 0; i < 70; ++i) schedule.push_back({{0, tokens(1)}, {1, tokens(1)}, {2, tokens(1)}});
  // 2 decoding (another batch size), then 3 again with a new, long sequence (the mirror grows).
  for (int i = 0; i < 10; ++i) schedule.push_back({{0, tokens(1)}, {1, tokens(1)}});
  schedule.push_back({{0, tokens(1)}, {1, tokens(1)}, {3, tokens(1)}});
  for (int i = 0; i < 20; ++i) schedule.push_back({{0, tokens(1)}, {1, tokens(1)}, {3, tokens(1)}});
  for (size_t step = 0; step < schedule.size(); ++step) {
    if (step == 81) {
      plain.Start(3, 1 << 20);
      graphs.Start(3, 1 << 20);
    }
    auto a = plain.Step(schedule[step]), b = graphs.Step(schedule[step]);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_EQ(*a, *b) << "step " << step << ": logits differ";
    ExpectSameSequences(plain, graphs, schedule[step], step);
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_EQ(plain.backend().decode_graph_launches(), 0);
  // Each new shape runs plainly once, is captured the second time, then replayed.
  std::printf("[ measured ] %lld of %zu steps ran as a graph\n",
              static_cast<long long>(graphs.backend().decode_graph_launches()), schedule.size());
  EXPECT_GT(graphs.backend().decode_graph_launches(), 80);
}

// Overlapped decode on the GPU: decode step N+1 launched from step N's device-side greedy
// tokens before they reach the host; the same outputs as step by step (both with decode graphs),
// no freed page read (poisoned with NaN), no page lost.
TEST(CudaBackendOverlapTest, OverlappedDecodeMatchesStepByStep) {
  std::string why;
  if (!engine::CudaBackendAvailable(&why)) GTEST_SKIP() << "no GPU: " << why;
  ScratchDir dir;
  WriteFastForgettingModel("fox-pro-tiny", dir.path());
  auto backend = LoadCuda(dir.path(), /*acp=*/true);
  ASSERT_NE(backend, nullptr);
  ASSERT_TRUE(backend->overlaps_steps());
  ExpectOverlappedDecodeMatchesStepByStep(backend.get(), backend->config().vocab_size);
}

TEST(CudaBackendShippedModelTest, ValidationLossCloseToTheTrainer) {
  std::string why;
  if (!engine::CudaBackendAvailable(&why)) GTEST_SKIP() << "no GPU: " << why;
  const std::string model = SourceDir() + "/models/fox-pro-shakespeare";
  const auto slice = nlohmann::json::parse(ReadFileOrDie(model + "/eval_slice.json"));
  const auto ids = slice["input_ids"].get<std::vector<int32_t>>();
  auto backend = LoadCuda(model, true, 6 * 4 * 16);
  engine::KvBlockManager blocks(backend->num_pages());
  engine::SequenceRunner runner(backend.get(), &blocks, ids.size());
  auto logits = runner.Feed(ids, true);
  ASSERT_TRUE(logits.ok());
  const int64_t V = backend->config().vocab_size;
  double total = 0;
  for (size_t t = 0; t + 1 < ids.size(); ++t) {
    const float* row = logits->data() + t * V;
    double mx = row[0];
    for (int64_t v = 1; v < V; ++v) mx = std::max<double>(mx, row[v]);
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(row[v] - mx);
    total += mx + std::log(z) - row[ids[t + 1]];
  }
  const double loss = total / (ids.size() - 1), recorded = slice["loss"].get<double>();
  std::printf("[ measured ] shipped model on the GPU: loss %.5f, trainer %.5f (%.3g%%)\n", loss,
              recorded, 100 * std::fabs(loss - recorded) / recorded);
  EXPECT_LT(std::fabs(loss - recorded) / recorded, 0.02);
}

}  // namespace
}  // namespace testing
}  // namespace foxserve
