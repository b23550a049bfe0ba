// The engine core driven step by step on the golden CPU models: continuous batching, preemption,
// seeded sampling, stop conditions, validation, and no leaked pages.
#include "engine/engine.h"

#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/sequence_runner.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/golden_data.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {
namespace {

using engine::Engine;
using engine::EngineOptions;
using engine::FinishReason;
using engine::GenerationRequest;
using engine::RequestOutput;

// Collects what a request streams.
class CollectingSink : public engine::RequestSink {
 public:
  void OnOutput(RequestOutput output) override {
    ASSERT_FALSE(finished_) << "output after the final one";
    for (const auto& t : output.tokens) tokens.push_back(t.id);
    for (const auto& t : output.tokens) logprobs.push_back(t);
    text += output.text;
    if (output.finished()) {
      finished_ = true;
      last = output;
    }
  }
  bool finished() const { return finished_; }
  std::vector<int32_t> tokens;
  std::vector<engine::GeneratedToken> logprobs;
  std::string text;
  RequestOutput last;

 private:
  bool finished_ = false;
};

class CountingObserver : public engine::EngineObserver {
 public:
  void OnStep(const engine::StepStats& s) override {
    preempted += s.num_preempted;
    max_running = std::max(max_running, s.num_running);
    ++steps;
  }
  int64_t preempted = 0, max_running = 0, steps = 0;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    golden_ = LoadGolden("fox-pro-tiny");
    backend_ = LoadBackend(golden_.model_dir, /*acp=*/true, /*num_pages=*/4096);
  }

  std::unique_ptr<Engine> MakeEngine(int64_t max_batch_tokens = 256, int64_t max_seqs = 16,
                                     bool evict = true) {
    EngineOptions o;
    o.evict_dead_pages = evict;
    o.poison_freed_pages = true;  // any read of a freed page turns the logits into NaN
    o.scheduler.max_batch_tokens = max_batch_tokens;
    o.scheduler.max_num_seqs = max_seqs;
    o.max_model_len = max_model_len_;
    return std::make_unique<Engine>(backend_.get(), nullptr, o, &observer_);
  }

  // Tokens of a request run alone, straight through a SequenceRunner (the CLI's path).
  std::vector<int32_t> Alone(const GenerationRequest& r) {
    engine::KvBlockManager blocks(backend_->num_pages());
    blocks.set_free_hook([this](absl::Span<const int32_t> p) { backend_->PoisonPages(p); });
    engine::SequenceRunner runner(backend_.get(), &blocks,
                                  r.prompt.size() + r.max_new_tokens);
    engine::Sampler sampler(r.sampling, r.prompt);
    engine::GenerateOptions options;
    options.max_new_tokens = r.max_new_tokens;
    options.stop_at_eos = false;
    auto tokens = engine::GenerateTokens(runner, r.prompt, options, sampler, {});
    EXPECT_TRUE(tokens.ok());
    return *tokens;
  }

  void RunToCompletion(Engine& e) {
    for (int i = 0; i < 100000 && e.has_work(); ++i) ASSERT_TRUE(e.Step().ok());
    ASSERT_FALSE(e.has_work());
  }

  GenerationRequest Request(int64_t prompt_len, int64_t max_new, uint32_t seed, bool sampled) {
    std::mt19937 rng(seed);
    GenerationRequest r;
    for (int64_t i = 0; i < prompt_len; ++i) r.prompt.push_back(2 + rng() % 500);
    r.max_new_tokens = max_new;
    r.ignore_eos = true;
    if (sampled) {
      r.sampling.temperature = 0.8f;
      r.sampling.top_p = 0.95f;
      r.sampling.seed = seed;
    }
    return r;
  }

  GoldenData golden_;
  std::unique_ptr<engine::CpuBackend> backend_;
  CountingObserver observer_;
  int64_t max_model_len_ = 1024;
};

TEST_F(EngineTest, GreedyMatchesTheReference) {
  auto e = MakeEngine();
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int64_t b = 0; b < golden_.batch; ++b) {
    GenerationRequest r;
    r.prompt = golden_.input_ids[b];
    r.max_new_tokens = static_cast<int64_t>(golden_.greedy_tokens[b].size());
    r.ignore_eos = true;
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(e->Add(b + 1, r, sinks.back()).ok());
  }
  RunToCompletion(*e);
  for (int64_t b = 0; b < golden_.batch; ++b) {
    EXPECT_EQ(sinks[b]->tokens, golden_.greedy_tokens[b]);
    EXPECT_EQ(sinks[b]->last.finish_reason, FinishReason::kLength);
    EXPECT_EQ(sinks[b]->last.prompt_tokens, golden_.tokens);
    EXPECT_EQ(sinks[b]->last.completion_tokens, 16);
    EXPECT_GT(sinks[b]->last.acp_blocks_computed, 0u);
  }
}

// Same seed, same tokens: alone versus inside a batch of 12 mixed requests, greedy and sampled,
// with prompts long enough that prefills are chunked by the token budget.
TEST_F(EngineTest, BatchedRequestsEqualTheirSoloRuns) {
  auto e = MakeEngine(/*max_batch_tokens=*/96, /*max_seqs=*/8);
  std::vector<GenerationRequest> requests;
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 12; ++i) {
    requests.push_back(Request(5 + 37 * i % 150, 6 + i % 9, 100 + i, /*sampled=*/i % 3 != 0));
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(e->Add(i + 1, requests.back(), sinks.back()).ok());
  }
  RunToCompletion(*e);
  EXPECT_GT(observer_.max_running, 4);
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(sinks[i]->finished());
    EXPECT_EQ(sinks[i]->tokens, Alone(requests[i])) << "request " << i;
  }
  EXPECT_EQ(e->blocks().num_pages_free(), e->blocks().num_pages_total());
}

// Sampled requests draw from their rows' top candidates (ForwardItem::candidates) with the same
// seeded tokens as from whole rows, including requests whose filters reach past the candidates
// (top_k 600 over a 512-token vocabulary: every token goes back to the whole row).
TEST_F(EngineTest, CandidatesDrawTheSameTokensAsWholeRows) {
  struct Filter {
    float temperature, top_p, min_p;
    int32_t top_k;
  };
  const std::vector<Filter> filters = {{0.8f, 0.95f, 0.0f, 0}, {1.3f, 1.0f, 0.0f, 20},
                                       {0.5f, 0.7f, 0.0f, 50}, {1.0f, 1.0f, 0.1f, 0},
                                       {1.0f, 0.9f, 0.0f, 600}, {2.0f, 1.0f, 0.0f, 600}};
  std::vector<std::vector<int32_t>> outputs[2];
  for (bool candidates : {true, false}) {
    EngineOptions o;
    o.scheduler.max_batch_tokens = 128;
    o.max_model_len = max_model_len_;
    o.sample_from_candidates = candidates;
    Engine e(backend_.get(), nullptr, o, nullptr);
    std::vector<std::shared_ptr<CollectingSink>> sinks;
    for (size_t i = 0; i < filters.size(); ++i) {
      GenerationRequest r = Request(20 + 9 * i, 12, 300 + i, /*sampled=*/true);
      r.sampling.temperature = filters[i].temperature;
      r.sampling.top_p = filters[i].top_p;
      r.sampling.min_p = filters[i].min_p;
      r.sampling.top_k = filters[i].top_k;
      sinks.push_back(std::make_shared<CollectingSink>());
      ASSERT_TRUE(e.Add(i + 1, r, sinks.back()).ok());
    }
    RunToCompletion(e);
    for (const auto& sink : sinks) {
      ASSERT_TRUE(sink->finished());
      EXPECT_EQ(sink->last.finish_reason, FinishReason::kLength) << sink->last.status;
      outputs[candidates ? 0 : 1].push_back(sink->tokens);
    }
  }
  for (size_t i = 0; i < filters.size(); ++i) {
    EXPECT_EQ(outputs[0][i], outputs[1][i]) << "request " << i;
    EXPECT_EQ(outputs[0][i].size(), 12u);
  }
}

// A pool too small for all requests at once: the scheduler preempts, recomputes, and every
// request still gets exactly the tokens it gets alone.
TEST_F(EngineTest, PreemptedRequestsProduceTheSameTokens) {
  backend_ = LoadBackend(golden_.model_dir, true, /*num_pages=*/4 * 5);  // 5 blocks per stream
  auto e = MakeEngine(/*max_batch_tokens=*/128, /*max_seqs=*/8);
  std::vector<GenerationRequest> requests;
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 6; ++i) {
    requests.push_back(Request(40 + 10 * i, 60, 7 + i, i % 2 == 1));
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(e->Add(i + 1, requests.back(), sinks.back()).ok());
  }
  RunToCompletion(*e);
  EXPECT_GT(observer_.preempted, 0);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(sinks[i]->tokens, Alone(requests[i])) << "request " << i;
  }
  EXPECT_EQ(e->blocks().num_pages_free(), e->blocks().num_pages_total());
}

TEST_F(EngineTest, StopTokenIdsEosAndLength) {
  auto e = MakeEngine();
  // Greedy row 0 produces golden_.greedy_tokens[0]; stop at its 5th token.
  GenerationRequest stop;
  stop.prompt = golden_.input_ids[0];
  stop.max_new_tokens = 16;
  stop.ignore_eos = true;
  stop.stop_token_ids = {golden_.greedy_tokens[0][4]};
  auto stop_sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Add(1, stop, stop_sink).ok());
  // The same prompt with max_new_tokens 3 finishes by length.
  GenerationRequest length = stop;
  length.stop_token_ids.clear();
  length.max_new_tokens = 3;
  length.ignore_eos = false;
  auto length_sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Add(2, length, length_sink).ok());
  RunToCompletion(*e);
  const auto& g = golden_.greedy_tokens[0];
  const size_t first_stop = std::find(g.begin(), g.end(), g[4]) - g.begin();
  EXPECT_EQ(stop_sink->tokens, std::vector<int32_t>(g.begin(), g.begin() + first_stop + 1));
  EXPECT_EQ(stop_sink->last.finish_reason, FinishReason::kStop);
  EXPECT_EQ(length_sink->tokens, std::vector<int32_t>(g.begin(), g.begin() + 3));
  EXPECT_EQ(length_sink->last.finish_reason, FinishReason::kLength);
}

TEST_F(EngineTest, EosFinishesUnlessIgnored) {
  // The same model with its EOS set to the first token greedy decoding produces for row 0.
  ScratchDir dir;
  auto config = nlohmann::json::parse(ReadFileOrDie(golden_.model_dir + "/config.json"));
  config["eos_token_id"] = golden_.greedy_tokens[0][0];
  WriteFileOrDie(dir.File("config.json"), config.dump());
  WriteFileOrDie(dir.File("model.safetensors"), ReadFileOrDie(golden_.model_dir + "/model.safetensors"));
  backend_ = LoadBackend(dir.path(), true);
  auto e = MakeEngine();
  GenerationRequest r;
  r.prompt = golden_.input_ids[0];
  r.max_new_tokens = 16;
  auto stops = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Add(1, r, stops).ok());
  r.ignore_eos = true;
  auto ignores = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Add(2, r, ignores).ok());
  RunToCompletion(*e);
  EXPECT_EQ(stops->tokens, std::vector<int32_t>{golden_.greedy_tokens[0][0]});
  EXPECT_EQ(stops->last.finish_reason, FinishReason::kEos);
  EXPECT_EQ(ignores->tokens, golden_.greedy_tokens[0]);
  EXPECT_EQ(ignores->last.finish_reason, FinishReason::kLength);
}

TEST_F(EngineTest, LogprobsAreTheModelsLogSoftmax) {
  auto e = MakeEngine();
  GenerationRequest r;
  r.prompt = golden_.input_ids[0];
  r.max_new_tokens = 1;
  r.logprobs = 3;
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(e->Add(1, r, sink).ok());
  RunToCompletion(*e);
  ASSERT_EQ(sink->logprobs.size(), 1u);
  // Independent: the golden logits of the last prompt position.
  const float* row = golden_.logits[0].data() + (golden_.tokens - 1) * golden_.vocab;
  double z = 0;
  double max_logit = *std::max_element(row, row + golden_.vocab);
  for (int64_t v = 0; v < golden_.vocab; ++v) z += std::exp(row[v] - max_logit);
  const auto& t = sink->logprobs[0];
  EXPECT_EQ(t.id, golden_.greedy_tokens[0][0]);
  EXPECT_NEAR(t.chosen.logprob, row[t.id] - max_logit - std::log(z), 1e-4);
  ASSERT_EQ(t.top.size(), 3u);
  EXPECT_EQ(t.top[0].token, t.id);  // greedy picks the most likely
  EXPECT_GE(t.top[0].logprob, t.top[1].logprob);
  EXPECT_GE(t.top[1].logprob, t.top[2].logprob);
}

TEST_F(EngineTest, ValidationNamesTheField) {
  auto e = MakeEngine();
  auto check = [&](GenerationRequest r, const std::string& field) {
    const absl::Status s = e->Validate(r);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_EQ(s.message().substr(0, field.size()), field) << s.message();
  };
  GenerationRequest ok = Request(10, 5, 1, false);
  EXPECT_TRUE(e->Validate(ok).ok());
  GenerationRequest r = ok;
  r.prompt.clear();
  check(r, "prompt");
  r = ok;
  r.prompt.assign(1024, 3);
  check(r, "prompt");
  r = ok;
  r.prompt[3] = 512;
  check(r, "prompt");
  r = ok;
  r.prompt[3] = -1;
  check(r, "prompt");
  r = ok;
  r.max_new_tokens = 0;
  check(r, "max_new_tokens");
  r = ok;
  r.max_new_tokens = 1015;  // 10 + 1015 > 1024
  check(r, "max_new_tokens");
  r = ok;
  r.sampling.temperature = -1;
  check(r, "temperature");
  r = ok;
  r.sampling.top_p = 0;
  check(r, "top_p");
  r = ok;
  r.sampling.top_k = -3;
  check(r, "top_k");
  r = ok;
  r.stop.assign(17, "x");
  check(r, "stop");
  r = ok;
  r.stop = {""};
  check(r, "stop");
  r = ok;
  r.stop_token_ids = {600};
  check(r, "stop_token_ids");
  r = ok;
  r.stop_token_ids.assign(65, 2);
  check(r, "stop_token_ids");
  r = ok;
  r.logprobs = 21;
  check(r, "logprobs");
}

TEST_F(EngineTest, RequestsThatCanNeverFitTheKvPoolAreRefused) {
  backend_ = LoadBackend(golden_.model_dir, true, /*num_pages=*/4 * 3);  // 3 blocks per stream
  auto e = MakeEngine();
  EXPECT_TRUE(e->Validate(Request(100, 92, 1, false)).ok());  // 192 tokens = 3 blocks
  const absl::Status s = e->Validate(Request(100, 93, 1, false));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("KV pages"), std::string::npos) << s.message();
}

// ACP eviction on a model with a fast-forgetting head in every layer: with the same KV pool,
// more long sequences run at once, the tokens are those of eviction off, and nothing leaks.
TEST_F(EngineTest, EvictionFitsMoreSequencesInTheSamePool) {
  ScratchDir dir;
  WriteFastForgettingModel("fox-pro-tiny", dir.path());
  // 4 streams x 40 pages: one 1500-token sequence needs 4 x 24 = 96 pages without eviction.
  backend_ = LoadBackend(dir.path(), true, /*num_pages=*/4 * 40);
  max_model_len_ = 2048;
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 6; ++i) requests.push_back(Request(900, 600, 50 + i, i % 2 == 0));
  std::map<bool, std::vector<std::vector<int32_t>>> tokens;
  std::map<bool, int64_t> max_running;
  for (bool evict : {false, true}) {
    observer_ = CountingObserver();
    auto e = MakeEngine(/*max_batch_tokens=*/512, /*max_seqs=*/6, evict);
    std::vector<std::shared_ptr<CollectingSink>> sinks;
    for (size_t i = 0; i < requests.size(); ++i) {
      sinks.push_back(std::make_shared<CollectingSink>());
      ASSERT_TRUE(e->Add(i + 1, requests[i], sinks.back()).ok());
    }
    RunToCompletion(*e);
    for (auto& s : sinks) {
      ASSERT_EQ(s->last.finish_reason, FinishReason::kLength);
      tokens[evict].push_back(s->tokens);
    }
    max_running[evict] = observer_.max_running;
    EXPECT_EQ(e->blocks().num_pages_free(), e->blocks().num_pages_total());
  }
  std::printf("[ measured ] 1500-token sequences running at once in 160 pages: %lld without "
              "eviction, %lld with\n",
              static_cast<long long>(max_running[false]), static_cast<long long>(max_running[true]));
  EXPECT_GE(max_running[true], 2 * max_running[false]);
  EXPECT_EQ(tokens[true], tokens[false]);
}

// The per-(layer, head) cache report of a running request: on the model whose head 0 forgets
// about 2 nats per token and head 1 about 0.007, head 0 of every layer has most of its blocks
// dead after 1000 tokens and head 1 none (its decay over 1000 tokens is e^-7, far above the
// threshold); with eviction the dead blocks are gone from the pool, without it they stay.
TEST_F(EngineTest, KvReportShowsDeadAndEvictedBlocksPerHead) {
  ScratchDir dir;
  WriteFastForgettingModel("fox-pro-tiny", dir.path());
  backend_ = LoadBackend(dir.path(), true, /*num_pages=*/4 * 40);
  max_model_len_ = 2048;
  for (bool evict : {false, true}) {
    auto e = MakeEngine(/*max_batch_tokens=*/512, /*max_seqs=*/4, evict);
    GenerationRequest probe = Request(1000, 200, 3, false);
    probe.request_id = "probe";
    GenerationRequest other = Request(100, 200, 4, false);
    other.request_id = "other";
    auto sink = std::make_shared<CollectingSink>();
    ASSERT_TRUE(e->Add(1, probe, sink).ok());
    ASSERT_TRUE(e->Add(2, other, std::make_shared<CollectingSink>()).ok());
    while (sink->tokens.size() < 20) ASSERT_TRUE(e->Step().ok());

    EXPECT_TRUE(e->InspectKv("nobody").empty());
    EXPECT_EQ(e->InspectKv("").size(), 2u);
    const std::vector<engine::RequestKvReport> reports = e->InspectKv("probe");
    ASSERT_EQ(reports.size(), 1u);
    const engine::RequestKvReport& r = reports[0];
    EXPECT_EQ(r.engine_id, 1u);
    EXPECT_TRUE(r.running);
    EXPECT_EQ(r.num_tokens, 1000 + static_cast<int64_t>(sink->tokens.size()));
    EXPECT_EQ(r.max_total_tokens, 1200);
    ASSERT_EQ(r.streams.size(), 4u);  // 2 layers x 2 heads
    int64_t evicted = 0;
    for (const engine::StreamKvReport& s : r.streams) {
      SCOPED_TRACE(::testing::Message() << "layer " << s.layer << " head " << s.head);
      EXPECT_GE(s.blocks, (r.num_cached + backend_->page_size() - 1) / backend_->page_size());
      EXPECT_EQ(s.live + s.dead_resident + s.evicted, s.blocks);
      if (s.head == 0) {
        EXPECT_GE(s.dead_resident + s.evicted, s.blocks - 2);  // a block or two at the front
        EXPECT_EQ(s.evicted > 0, evict);
        if (evict) {
          EXPECT_EQ(s.dead_resident, 0);
        }
      } else {
        EXPECT_EQ(s.live, s.blocks);
      }
      evicted += s.evicted;
    }
    // With the other request's, these are the pool's used pages and the engine's evicted ones.
    const engine::RequestKvReport o = e->InspectKv("other")[0];
    for (const engine::StreamKvReport& s : o.streams) evicted += s.evicted;
    EXPECT_EQ(evicted, e->num_evicted_pages());
    EXPECT_EQ(r.pages_held + o.pages_held, e->blocks().num_pages_used());
    e->AbortAll(absl::CancelledError("test"));
    EXPECT_EQ(e->blocks().num_pages_free(), e->blocks().num_pages_total());
  }
}

// Overlapped decode on the CPU backend, which runs each step at Launch (report_overlapped_steps
// makes the engine take the overlapped path anyway): the same outputs as step by step.
TEST_F(EngineTest, OverlappedDecodeMatchesStepByStep) {
  engine::CpuBackendOptions options;
  options.num_threads = 2;
  options.num_pages = 4096;
  options.acp.enabled = true;
  options.report_overlapped_steps = true;
  auto backend = engine::CpuBackend::Load(golden_.model_dir, options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  ExpectOverlappedDecodeMatchesStepByStep(backend->get(), golden_.vocab);
}

// The backend refuses a step queued behind another unless it continues it, before any state
// changes; a continuation computes what a plain step on the chosen token computes.
TEST_F(EngineTest, LaunchRefusesAStepThatDoesNotContinueTheOneInFlight) {
  engine::KvBlockManager blocks(backend_->num_pages());
  auto a = backend_->NewSequenceState(64), b = backend_->NewSequenceState(64);
  const std::vector<int32_t> prompt = {5, 17, 3, 99, 42};
  for (auto* s : {a.get(), b.get()}) {
    ASSERT_TRUE(engine::ReservePages(blocks, *s, 8, backend_->page_size()).ok());
  }
  std::vector<float> logits;
  int32_t first = -1, second = -1, placeholder = 0;
  models::ForwardItem continued;
  continued.state = a.get();
  continued.tokens = absl::MakeConstSpan(&placeholder, 1);
  continued.greedy_token = &second;
  continued.token_from_step_in_flight = true;
  // Nothing in flight to continue.
  EXPECT_EQ(backend_->Launch({continued}, &logits).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(a->num_tokens, 0);

  models::ForwardItem prefill;
  prefill.state = a.get();
  prefill.tokens = prompt;
  prefill.greedy_token = &first;
  ASSERT_TRUE(backend_->Launch({prefill}, &logits).ok());
  // Another sequence's state, and a plain step, are not continuations of it.
  models::ForwardItem other = continued;
  other.state = b.get();
  EXPECT_EQ(backend_->Launch({other}, &logits).code(), absl::StatusCode::kFailedPrecondition);
  models::ForwardItem plain = prefill;
  plain.state = b.get();
  EXPECT_EQ(backend_->Launch({plain}, &logits).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(b->num_tokens, 0);
  ASSERT_TRUE(backend_->Launch({continued}, &logits).ok());
  EXPECT_TRUE(backend_->Finish().ok());
  EXPECT_TRUE(backend_->Finish().ok());
  EXPECT_EQ(backend_->Finish().code(), absl::StatusCode::kFailedPrecondition) << "none left";
  EXPECT_EQ(a->num_tokens, 6);

  // The same two steps on b, one at a time with the token on the host.
  int32_t first_b = -1, second_b = -1;
  prefill.state = b.get();
  prefill.greedy_token = &first_b;
  ASSERT_TRUE(backend_->Forward({prefill}, &logits).ok());
  models::ForwardItem next;
  next.state = b.get();
  next.tokens = absl::MakeConstSpan(&first_b, 1);
  next.greedy_token = &second_b;
  ASSERT_TRUE(backend_->Forward({next}, &logits).ok());
  EXPECT_EQ(first, first_b);
  EXPECT_EQ(second, second_b);
  engine::ReleasePages(blocks, *a);
  engine::ReleasePages(blocks, *b);
}

// Hundreds of random requests with random aborts: every page comes back.
TEST_F(EngineTest, RandomRequestsWithAbortsLeakNothing) {
  backend_ = LoadBackend(golden_.model_dir, true, /*num_pages=*/4 * 6);  // 384 tokens
  auto e = MakeEngine(/*max_batch_tokens=*/64, /*max_seqs=*/6);
  std::mt19937 rng(5);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  uint64_t next = 1;
  int aborted = 0;
  for (int step = 0; step < 1500; ++step) {
    if (next <= 300 && rng() % 2 == 0) {
      auto sink = std::make_shared<CollectingSink>();
      ASSERT_TRUE(e->Add(next++, Request(1 + rng() % 60, 1 + rng() % 20, rng(), rng() % 2), sink).ok());
      sinks.push_back(sink);
    }
    if (rng() % 5 == 0 && next > 1) {
      // Mostly recent requests, which are still queued or running.
      const uint64_t back = std::min<uint64_t>(next - 1, 1 + rng() % 8);
      e->Abort(next - back, absl::CancelledError("test"));
      ++aborted;
    }
    ASSERT_TRUE(e->Step().ok());
  }
  RunToCompletion(*e);
  EXPECT_GT(next, 250u);
  for (const auto& s : sinks) EXPECT_TRUE(s->finished());
  int cancelled = 0;
  for (const auto& s : sinks) cancelled += s->last.finish_reason == FinishReason::kCancelled;
  EXPECT_GT(cancelled, 10);
  EXPECT_EQ(e->blocks().num_pages_free(), e->blocks().num_pages_total());
  EXPECT_GT(observer_.preempted, 0);
}

}  // namespace
}  // namespace testing
}  // namespace foxserve
