#include "tests/engine/golden_data.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>

#include "engine/engine.h"
#include "engine/kv_block_manager.h"
#include "gtest/gtest.h"
#include "models/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {

GoldenData LoadGolden(const std::string& name) {
  GoldenData g;
  g.model_dir = GoldenDir(name);
  auto file = models::SafetensorsFile::Open(g.model_dir + "/golden.safetensors");
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return g;
  auto ids = (*file)->Get("input_ids");
  auto logits = (*file)->Get("logits");
  EXPECT_TRUE(ids.ok() && logits.ok());
  if (!ids.ok() || !logits.ok()) return g;
  EXPECT_EQ(ids->dtype, models::DType::kI64);
  g.batch = ids->shape[0];
  g.tokens = ids->shape[1];
  g.vocab = logits->shape[2];
  auto values = models::TensorToFloat32(*logits);
  EXPECT_TRUE(values.ok());
  for (int64_t b = 0; b < g.batch; ++b) {
    std::vector<int32_t> row(g.tokens);
    for (int64_t t = 0; t < g.tokens; ++t) {
      int64_t v;
      std::memcpy(&v, ids->bytes.data() + (b * g.tokens + t) * 8, 8);
      row[t] = static_cast<int32_t>(v);
    }
    g.input_ids.push_back(row);
    g.logits.emplace_back(values->begin() + b * g.tokens * g.vocab,
                          values->begin() + (b + 1) * g.tokens * g.vocab);
  }
  const auto json = nlohmann::json::parse(ReadFileOrDie(g.model_dir + "/golden.json"));
  for (const auto& row : json.at("greedy_new_tokens")) {
    g.greedy_tokens.push_back(row.get<std::vector<int32_t>>());
  }
  return g;
}

std::unique_ptr<engine::CpuBackend> LoadBackend(const std::string& model_dir, bool acp,
                                                int64_t num_pages, int threads) {
  engine::CpuBackendOptions options;
  options.num_threads = threads;
  options.num_pages = num_pages;
  options.acp.enabled = acp;
  auto backend = engine::CpuBackend::Load(model_dir, options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(backend).value() : nullptr;
}

// A copy of a golden checkpoint whose forget-gate biases make head 0 of every layer forget fast
// (sigmoid(-2): about 2 nats per token) and head 1 slowly (sigmoid(5): about 0.007 per token).
void WriteFastForgettingModel(const std::string& golden, const std::string& dir) {
  WriteFileOrDie(dir + "/config.json", ReadFileOrDie(GoldenDir(golden) + "/config.json"));
  auto ckpt = models::SafetensorsCheckpoint::Open(GoldenDir(golden));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  std::vector<std::vector<uint8_t>> storage;
  std::vector<models::TensorToWrite> tensors;
  for (const std::string& name : (*ckpt)->names()) {
    auto t = (*ckpt)->Get(name);
    ASSERT_TRUE(t.ok());
    storage.emplace_back(t->bytes.begin(), t->bytes.end());
    if (name.find("fgate_proj.bias") != std::string::npos) {
      ASSERT_EQ(t->dtype, models::DType::kF32);
      const float bias[2] = {-2.0f, 5.0f};
      std::memcpy(storage.back().data(), bias, sizeof(bias));
    }
  }
  size_t i = 0;
  for (const std::string& name : (*ckpt)->names()) {
    auto t = (*ckpt)->Get(name);
    tensors.push_back({name, t->dtype, t->shape, storage[i++]});
  }
  ASSERT_TRUE(models::WriteSafetensors(dir + "/model.safetensors", tensors).ok());
}

double RelativeError(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

namespace {

// One Forward of the three prompts as fresh sequences (pages reserved and released around it);
// `shape` sets an item's output fields.
void ForwardThreePrompts(engine::ModelBackend* backend, engine::KvBlockManager& blocks,
                         const std::vector<std::vector<int32_t>>& prompts,
                         const std::function<void(size_t, models::ForwardItem*)>& shape,
                         std::vector<float>* logits) {
  std::vector<std::unique_ptr<models::SequenceKvState>> states;
  std::vector<models::ForwardItem> items;
  for (size_t i = 0; i < 3; ++i) {
    states.push_back(backend->NewSequenceState(static_cast<int64_t>(prompts[i].size())));
    ASSERT_TRUE(engine::ReservePages(blocks, *states.back(),
                                     static_cast<int64_t>(prompts[i].size()), backend->page_size())
                    .ok());
    models::ForwardItem item;
    item.state = states.back().get();
    item.tokens = prompts[i];
    shape(i, &item);
    items.push_back(item);
  }
  const absl::Status st = backend->Forward(items, logits);
  for (auto& s : states) engine::ReleasePages(blocks, *s);
  ASSERT_TRUE(st.ok()) << st;
}

// One item over `prompt` on a fresh sequence, its output fields set by `shape`, must be refused
// with INVALID_ARGUMENT before the sequence's state changes.
void ExpectItemRefusedUntouched(engine::ModelBackend* backend, engine::KvBlockManager& blocks,
                                const std::vector<int32_t>& prompt,
                                const std::function<void(models::ForwardItem*)>& shape) {
  auto state = backend->NewSequenceState(static_cast<int64_t>(prompt.size()));
  ASSERT_TRUE(engine::ReservePages(blocks, *state, static_cast<int64_t>(prompt.size()),
                                   backend->page_size())
                  .ok());
  models::ForwardItem bad;
  bad.state = state.get();
  bad.tokens = prompt;
  shape(&bad);
  std::vector<float> logits;
  const absl::Status st = backend->Forward({bad}, &logits);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_EQ(state->num_tokens, 0);
  engine::ReleasePages(blocks, *state);
}

}  // namespace

void ExpectCandidatesMatchTheRows(engine::ModelBackend* backend,
                                  const std::vector<std::vector<int32_t>>& prompts,
                                  double row_tolerance, double total_tolerance) {
  ASSERT_EQ(prompts.size(), 3u);
  const int64_t V = backend->config().vocab_size;
  engine::KvBlockManager blocks(backend->num_pages());
  std::vector<kernels::TokenCandidates> got(3);
  auto run = [&](bool candidates, std::vector<float>* logits) {
    ForwardThreePrompts(backend, blocks, prompts, [&](size_t i, models::ForwardItem* item) {
      if (candidates && i != 1) {
        item->candidates = &got[i];
        item->candidates_inv_temperature = i == 0 ? 1.0 : 0.5;
      }
    }, logits);
  };
  std::vector<float> all, some;
  run(false, &all);
  run(true, &some);
  ASSERT_EQ(some.size(), static_cast<size_t>(V)) << "only item 1's row comes back";
  std::vector<float> row;
  for (size_t i : {0, 2}) {
    const int64_t k = i == 0 ? 0 : 1;
    ASSERT_TRUE(backend->CandidateRow(k, &row).ok());
    ASSERT_EQ(row.size(), static_cast<size_t>(V));
    EXPECT_LT(RelativeError(row.data(), all.data() + i * V, V), row_tolerance) << "item " << i;
    kernels::TokenCandidates expected;
    kernels::TopCandidates(row.data(), V, models::kCandidateCount, i == 0 ? 1.0 : 0.5,
                           models::kCandidateCapacity, &expected);
    const kernels::TokenCandidates& c = got[i];
    ASSERT_TRUE(c.finite && c.complete) << "item " << i;
    EXPECT_EQ(c.ids, expected.ids) << "item " << i;
    EXPECT_EQ(c.logits, expected.logits) << "item " << i;
    EXPECT_EQ(c.max_logit, expected.max_logit) << "item " << i;
    EXPECT_LE(std::fabs(c.total - expected.total), total_tolerance * expected.total) << "item " << i;
  }
  EXPECT_FALSE(backend->CandidateRow(2, &row).ok()) << "two candidates items, not three";

  // An item asking for both candidates and a greedy token is refused before anything runs.
  int32_t token = 0;
  kernels::TokenCandidates candidates;
  ExpectItemRefusedUntouched(backend, blocks, prompts[0], [&](models::ForwardItem* bad) {
    bad->greedy_token = &token;
    bad->candidates = &candidates;
  });
}

void ExpectGreedyTokensMatchTheLogits(engine::ModelBackend* backend,
                                      const std::vector<std::vector<int32_t>>& prompts) {
  ASSERT_EQ(prompts.size(), 3u);
  const int64_t V = backend->config().vocab_size;
  engine::KvBlockManager blocks(backend->num_pages());
  auto run = [&](bool greedy, std::vector<float>* logits, std::vector<int32_t>* tokens) {
    tokens->assign(3, -7);
    ForwardThreePrompts(backend, blocks, prompts, [&](size_t i, models::ForwardItem* item) {
      if (greedy && i != 1) item->greedy_token = &(*tokens)[i];
    }, logits);
  };
  std::vector<float> all, some;
  std::vector<int32_t> unused, tokens;
  run(false, &all, &unused);
  run(true, &some, &tokens);
  ASSERT_EQ(all.size(), static_cast<size_t>(3 * V));
  ASSERT_EQ(some.size(), static_cast<size_t>(V)) << "only item 1's row comes back";
  EXPECT_LT(RelativeError(some.data(), all.data() + V, V), 1e-5);
  for (size_t i : {0, 2}) {
    const float* row = all.data() + i * V;
    const int32_t best = static_cast<int32_t>(std::max_element(row, row + V) - row);
    EXPECT_EQ(tokens[i], best) << "item " << i;
  }

  // Refused before touching anything.
  int32_t token = 0;
  ExpectItemRefusedUntouched(backend, blocks, prompts[0], [&](models::ForwardItem* bad) {
    bad->all_logits = true;
    bad->greedy_token = &token;
  });
}

namespace {

// What one request streamed through an Engine.
class TokenSink : public engine::RequestSink {
 public:
  void OnOutput(engine::RequestOutput output) override {
    EXPECT_EQ(reason, engine::FinishReason::kNone) << "output after the final one";
    for (const auto& t : output.tokens) tokens.push_back(t.id);
    if (output.finished()) reason = output.finish_reason;
  }
  std::vector<int32_t> tokens;
  engine::FinishReason reason = engine::FinishReason::kNone;
};

// Counts the steps reported as launched ahead (StepStats::launched_ahead).
class AheadCounter : public engine::EngineObserver {
 public:
  void OnStep(const engine::StepStats& s) override {
    steps += s.launched_ahead;
    steps_while_waiting += s.launched_ahead && s.num_waiting > 0;
  }
  int64_t steps = 0, steps_while_waiting = 0;
};

struct TimedRequest {
  engine::GenerationRequest request;
  int add_at_step = 0;
  int abort_at_step = -1;  // -1: never
};

// Runs the requests to completion; returns what each streamed and, in *ahead, how many steps
// the engine launched behind one in flight (*ahead_waiting: of them, while requests waited).
std::vector<TokenSink> RunTimed(engine::ModelBackend* backend, const std::vector<TimedRequest>& rs,
                                bool overlap, int64_t* ahead, int64_t max_num_seqs = 8,
                                int64_t* ahead_waiting = nullptr) {
  engine::EngineOptions o;
  o.scheduler.max_batch_tokens = 96;
  o.scheduler.max_num_seqs = max_num_seqs;
  o.max_model_len = 512;
  o.poison_freed_pages = true;  // a read of a page freed under a step in flight shows as NaN
  o.overlap_decode = overlap;
  AheadCounter observer;
  engine::Engine e(backend, nullptr, o, &observer);
  std::vector<std::shared_ptr<TokenSink>> sinks;
  for (size_t i = 0; i < rs.size(); ++i) sinks.push_back(std::make_shared<TokenSink>());
  for (int step = 0; step < 10000; ++step) {
    bool pending = false;
    for (size_t i = 0; i < rs.size(); ++i) {
      if (rs[i].add_at_step == step) {
        EXPECT_TRUE(e.Add(i + 1, rs[i].request, sinks[i]).ok());
      }
      if (rs[i].abort_at_step == step) e.Abort(i + 1, absl::CancelledError("test abort"));
      pending = pending || rs[i].add_at_step > step;
    }
    if (!pending && !e.has_work()) break;
    if (e.has_work()) {
      EXPECT_TRUE(e.Step().ok());
    }
  }
  EXPECT_FALSE(e.has_work());
  EXPECT_EQ(e.blocks().num_pages_free(), e.blocks().num_pages_total());
  *ahead = e.num_overlapped_steps();
  EXPECT_EQ(observer.steps, *ahead) << "steps launched ahead, as the observer saw them";
  if (ahead_waiting != nullptr) *ahead_waiting = observer.steps_while_waiting;
  std::vector<TokenSink> out;
  for (const auto& s : sinks) out.push_back(*s);
  return out;
}

}  // namespace

void ExpectOverlappedDecodeMatchesStepByStep(engine::ModelBackend* backend, int64_t vocab) {
  std::mt19937 rng(23);
  auto request = [&](int64_t prompt, int64_t max_new) {
    engine::GenerationRequest r;
    for (int64_t i = 0; i < prompt; ++i) {
      r.prompt.push_back(static_cast<int32_t>(2 + rng() % (vocab - 2)));
    }
    r.max_new_tokens = max_new;
    r.ignore_eos = true;
    return r;
  };
  std::vector<TimedRequest> rs;
  rs.push_back({request(20, 70), 0});   // crosses page boundaries while overlapped
  rs.push_back({request(70, 2), 0});    // too short to overlap
  rs.push_back({request(5, 40), 0});    // gets a stop token below
  rs.push_back({request(33, 20), 0});   // sampled: no overlap while it runs
  rs[3].request.sampling.temperature = 0.8f;
  rs[3].request.sampling.top_p = 0.95f;
  rs[3].request.sampling.seed = 9;
  rs.push_back({request(40, 40), 30});  // arrives mid-run
  rs.push_back({request(12, 10), 60});  // logprobs: not plain greedy
  rs[5].request.logprobs = 2;
  rs.push_back({request(50, 60), 0});   // aborted at step 45
  const std::vector<TokenSink> free_running = [&] {
    int64_t ahead = 0;
    return RunTimed(backend, rs, /*overlap=*/false, &ahead);
  }();
  ASSERT_GE(free_running[2].tokens.size(), 12u);
  // Request 2 stops at the first occurrence of its 12th token, a step that has a continuation
  // in flight.
  rs[2].request.stop_token_ids = {free_running[2].tokens[11]};
  rs[6].abort_at_step = 45;
  int64_t ahead_off = 0, ahead_on = 0;
  const std::vector<TokenSink> off = RunTimed(backend, rs, false, &ahead_off);
  const std::vector<TokenSink> on = RunTimed(backend, rs, true, &ahead_on);
  EXPECT_EQ(ahead_off, 0);
  EXPECT_GT(ahead_on, 20) << "overlap never launched a step ahead";
  std::printf("[ measured ] %lld steps launched ahead of the one in flight\n",
              static_cast<long long>(ahead_on));
  for (size_t i = 0; i < rs.size(); ++i) {
    if (i == 6) continue;
    EXPECT_EQ(on[i].tokens, off[i].tokens) << "request " << i;
    EXPECT_EQ(on[i].reason, off[i].reason) << "request " << i;
  }
  EXPECT_EQ(off[2].reason, engine::FinishReason::kStop);
  EXPECT_LE(off[2].tokens.size(), 12u);
  EXPECT_EQ(off[0].tokens.size(), 70u);
  for (const std::vector<TokenSink>* run : {&off, &on}) {
    const TokenSink& aborted = (*run)[6];
    EXPECT_EQ(aborted.reason, engine::FinishReason::kCancelled);
    ASSERT_LT(aborted.tokens.size(), free_running[6].tokens.size());
    EXPECT_TRUE(std::equal(aborted.tokens.begin(), aborted.tokens.end(),
                           free_running[6].tokens.begin()));
  }

  // Five greedy requests for two seats: three wait most of the run, and overlap goes on while
  // none of them could be admitted (the running set is full).
  std::vector<TimedRequest> queued;
  for (int i = 0; i < 5; ++i) queued.push_back({request(10 + 13 * i, 20 + 7 * i), 0});
  int64_t waiting_ahead = 0;
  const std::vector<TokenSink> off2 = RunTimed(backend, queued, false, &ahead_off, 2);
  const std::vector<TokenSink> on2 = RunTimed(backend, queued, true, &ahead_on, 2, &waiting_ahead);
  EXPECT_EQ(ahead_off, 0);
  EXPECT_GT(waiting_ahead, 20) << "no step launched ahead while requests waited";
  std::printf("[ measured ] 2 seats: %lld steps launched ahead, %lld of them while requests "
              "waited\n",
              static_cast<long long>(ahead_on), static_cast<long long>(waiting_ahead));
  for (size_t i = 0; i < queued.size(); ++i) {
    EXPECT_EQ(on2[i].tokens, off2[i].tokens) << "2 seats, request " << i;
    EXPECT_EQ(on2[i].reason, engine::FinishReason::kLength) << "2 seats, request " << i;
  }
}

}  // namespace testing
}  // namespace foxserve
