#include "engine/threaded_engine.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/engine/golden_data.h"

namespace foxserve {
namespace testing {
namespace {

using engine::FinishReason;
using engine::GenerationRequest;
using engine::RequestOutput;

class WaitingSink : public engine::RequestSink {
 public:
  void OnOutput(RequestOutput output) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& t : output.tokens) tokens_.push_back(t.id);
    ++outputs_;
    if (output.finished()) {
      ++finals_;
      last_ = output;
      done_.notify_all();
    }
  }
  RequestOutput Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    EXPECT_TRUE(done_.wait_for(lock, std::chrono::seconds(60), [&] { return finals_ > 0; }));
    return last_;
  }
  std::vector<int32_t> tokens() {
    std::lock_guard<std::mutex> lock(mu_);
    return tokens_;
  }
  int outputs() {
    std::lock_guard<std::mutex> lock(mu_);
    return outputs_;
  }
  int finals() {
    std::lock_guard<std::mutex> lock(mu_);
    return finals_;
  }

 private:
  std::mutex mu_;
  std::condition_variable done_;
  std::vector<int32_t> tokens_;
  int outputs_ = 0;
  int finals_ = 0;
  RequestOutput last_;
};

class ThreadedEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    golden_ = LoadGolden("fox-llama-tiny");
    backend_ = LoadBackend(golden_.model_dir, true, 4 * 160);  // 10240 tokens
  }
  std::unique_ptr<engine::ThreadedEngine> Make(int64_t max_queued, int64_t max_seqs = 8) {
    engine::EngineOptions o;
    o.scheduler.max_num_seqs = max_seqs;
    o.scheduler.max_batch_tokens = 128;
    o.max_model_len = 10240;
    return std::make_unique<engine::ThreadedEngine>(
        std::make_unique<engine::Engine>(backend_.get(), nullptr, o, nullptr), max_queued);
  }
  GenerationRequest Greedy(int row, int64_t max_new) {
    GenerationRequest r;
    r.prompt = golden_.input_ids[row];
    r.max_new_tokens = max_new;
    r.ignore_eos = true;
    return r;
  }
  GoldenData golden_;
  std::unique_ptr<engine::CpuBackend> backend_;
};

TEST_F(ThreadedEngineTest, ConcurrentSubmittersGetTheReferenceTokens) {
  auto e = Make(/*max_queued=*/100);
  std::vector<std::shared_ptr<WaitingSink>> sinks(24);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < 24; i += 4) {
        sinks[i] = std::make_shared<WaitingSink>();
        ASSERT_TRUE(e->Submit(Greedy(i % 2, 16), sinks[i]).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 24; ++i) {
    const RequestOutput last = sinks[i]->Wait();
    EXPECT_EQ(last.finish_reason, FinishReason::kLength);
    EXPECT_EQ(sinks[i]->tokens(), golden_.greedy_tokens[i % 2]) << i;
    EXPECT_EQ(sinks[i]->finals(), 1);
  }
  EXPECT_TRUE(e->Drain(engine::Clock::now() + std::chrono::seconds(5)));
  EXPECT_EQ(e->kv_pages_used(), 0);
}

TEST_F(ThreadedEngineTest, FullQueueAnswersResourceExhausted) {
  auto e = Make(/*max_queued=*/3, /*max_seqs=*/1);
  std::vector<std::shared_ptr<WaitingSink>> accepted;
  int exhausted = 0;
  for (int i = 0; i < 20; ++i) {
    auto sink = std::make_shared<WaitingSink>();
    auto id = e->Submit(Greedy(0, 200), sink);
    if (id.ok()) {
      accepted.push_back(sink);
    } else {
      EXPECT_EQ(id.status().code(), absl::StatusCode::kResourceExhausted);
      EXPECT_NE(id.status().message().find("queue is full"), std::string::npos);
      ++exhausted;
    }
  }
  EXPECT_GT(exhausted, 10);
  EXPECT_GE(accepted.size(), 3u);
  e->Drain(engine::Clock::now());  // cancel the rest at once
  for (auto& s : accepted) EXPECT_EQ(s->finals(), 1);
  EXPECT_EQ(e->kv_pages_used(), 0);
}

TEST_F(ThreadedEngineTest, AbortFreesPagesAndEndsTheStream) {
  auto e = Make(100);
  auto sink = std::make_shared<WaitingSink>();
  auto id = e->Submit(Greedy(0, 800), sink);
  ASSERT_TRUE(id.ok());
  for (int i = 0; i < 2000 && sink->outputs() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GE(sink->outputs(), 3);
  EXPECT_GT(e->kv_pages_used(), 0);
  e->Abort(*id);
  const RequestOutput last = sink->Wait();
  EXPECT_EQ(last.finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(last.status.code(), absl::StatusCode::kCancelled);
  for (int i = 0; i < 1000 && e->kv_pages_used() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(e->kv_pages_used(), 0);
  e->Abort(*id);  // idempotent
  e->Abort(99999);
}

// InspectKv answers from the engine thread while a request streams; an unknown request_id gets
// an empty answer, not none.
TEST_F(ThreadedEngineTest, InspectKvAnswersWhileARequestRuns) {
  auto e = Make(100);
  auto sink = std::make_shared<WaitingSink>();
  GenerationRequest r = Greedy(0, 800);
  r.request_id = "watched";
  auto id = e->Submit(r, sink);
  ASSERT_TRUE(id.ok());
  for (int i = 0; i < 2000 && sink->outputs() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::vector<engine::RequestKvReport>> answers;
  auto collect = [&](std::vector<engine::RequestKvReport> reports) {
    std::lock_guard<std::mutex> lock(mu);
    answers.push_back(std::move(reports));
    cv.notify_all();
  };
  e->InspectKv("watched", collect);
  e->InspectKv("someone else", collect);
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return answers.size() == 2; }));
  }
  ASSERT_EQ(answers[0].size(), 1u);
  const engine::RequestKvReport& report = answers[0][0];
  EXPECT_EQ(report.engine_id, *id);
  EXPECT_TRUE(report.running);
  EXPECT_GE(report.num_tokens, static_cast<int64_t>(r.prompt.size()) + 3);
  const models::FoxConfig& config = backend_->config();
  EXPECT_EQ(report.streams.size(), static_cast<size_t>(config.num_hidden_layers * config.num_heads));
  EXPECT_GT(report.pages_held, 0);
  EXPECT_TRUE(answers[1].empty());
  e->Abort(*id);
  sink->Wait();
}

TEST_F(ThreadedEngineTest, DrainRefusesNewWorkAndCancelsAtTheDeadline) {
  auto e = Make(100);
  auto short_sink = std::make_shared<WaitingSink>();
  auto long_sink = std::make_shared<WaitingSink>();
  ASSERT_TRUE(e->Submit(Greedy(0, 4), short_sink).ok());
  ASSERT_TRUE(e->Submit(Greedy(1, 10000), long_sink).ok());  // seconds of decoding
  std::thread drainer([&] {
    EXPECT_FALSE(e->Drain(engine::Clock::now() + std::chrono::milliseconds(300)));
  });
  for (int i = 0; i < 1000 && e->accepting(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto refused = e->Submit(Greedy(0, 4), std::make_shared<WaitingSink>());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  drainer.join();
  EXPECT_EQ(short_sink->Wait().finish_reason, FinishReason::kLength);
  const RequestOutput last = long_sink->Wait();
  EXPECT_EQ(last.finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(last.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(e->num_in_flight(), 0);
  EXPECT_EQ(e->kv_pages_used(), 0);
}

TEST_F(ThreadedEngineTest, InvalidRequestsAreRefusedSynchronously) {
  auto e = Make(100);
  GenerationRequest r = Greedy(0, 4);
  r.prompt.push_back(100000);
  auto s = e->Submit(r, std::make_shared<WaitingSink>());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->num_in_flight(), 0);
}

}  // namespace
}  // namespace testing
}  // namespace foxserve
