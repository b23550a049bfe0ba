#include "engine/output_dispatcher.h"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace foxserve {
namespace engine {
namespace {

// Records the token ids it receives and the threads it was called on; optionally holds its
// first call until released.
class RecordingSink : public RequestSink {
 public:
  explicit RecordingSink(bool hold_first = false) : hold_(hold_first) {}
  void OnOutput(RequestOutput output) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++calls_in_progress_;
    entered_.notify_all();
    released_.wait(lock, [&] { return !hold_; });
    ids_.push_back(output.tokens.at(0).id);
    threads_.push_back(std::this_thread::get_id());
    --calls_in_progress_;
  }
  void WaitUntilEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    ASSERT_TRUE(entered_.wait_for(lock, std::chrono::seconds(10), [&] { return calls_in_progress_ > 0; }));
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = false;
    released_.notify_all();
  }
  std::vector<int32_t> ids() {
    std::lock_guard<std::mutex> lock(mu_);
    return ids_;
  }
  std::vector<std::thread::id> threads() {
    std::lock_guard<std::mutex> lock(mu_);
    return threads_;
  }

 private:
  std::mutex mu_;
  std::condition_variable entered_, released_;
  bool hold_;
  int calls_in_progress_ = 0;
  std::vector<int32_t> ids_;
  std::vector<std::thread::id> threads_;
};

RequestOutput Token(int32_t id) {
  RequestOutput output;
  output.tokens.push_back(GeneratedToken{});
  output.tokens.back().id = id;
  return output;
}

TEST(OutputDispatcherTest, EachSinkGetsItsOutputsInOrderOnTheDispatcherThread) {
  OutputDispatcher dispatcher;
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  std::vector<std::shared_ptr<RequestSink>> wrapped;
  for (int s = 0; s < 3; ++s) {
    sinks.push_back(std::make_shared<RecordingSink>());
    wrapped.push_back(dispatcher.Wrap(sinks.back()));
  }
  // Interleaved, as a decode step posts one output per sequence.
  for (int32_t i = 0; i < 3000; ++i) wrapped[i % 3]->OnOutput(Token(i));
  dispatcher.Flush();
  for (int s = 0; s < 3; ++s) {
    const std::vector<int32_t> ids = sinks[s]->ids();
    ASSERT_EQ(ids.size(), 1000u) << "sink " << s;
    for (size_t j = 0; j < ids.size(); ++j) EXPECT_EQ(ids[j], static_cast<int32_t>(3 * j + s));
    for (std::thread::id t : sinks[s]->threads()) {
      EXPECT_NE(t, std::this_thread::get_id()) << "a sink ran on the posting thread";
      EXPECT_EQ(t, sinks[0]->threads().front()) << "sinks must be called from one thread";
    }
  }
}

TEST(OutputDispatcherTest, ASlowSinkDoesNotHoldUpThePoster) {
  OutputDispatcher dispatcher;
  auto slow = std::make_shared<RecordingSink>(/*hold_first=*/true);
  auto fast = std::make_shared<RecordingSink>();
  auto slow_in = dispatcher.Wrap(slow), fast_in = dispatcher.Wrap(fast);
  slow_in->OnOutput(Token(1));
  slow->WaitUntilEntered();  // the dispatcher is now blocked inside the slow sink
  // Posting still returns: the engine thread never waits for a sink.
  for (int32_t i = 0; i < 100; ++i) fast_in->OnOutput(Token(i));
  slow_in->OnOutput(Token(2));
  EXPECT_TRUE(fast->ids().empty()) << "delivered past a sink that has not returned";
  slow->Release();
  dispatcher.Flush();
  EXPECT_EQ(slow->ids(), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(fast->ids().size(), 100u);
}

TEST(OutputDispatcherTest, DestructionDeliversWhatWasPosted) {
  auto sink = std::make_shared<RecordingSink>(/*hold_first=*/true);
  std::thread releaser;
  {
    OutputDispatcher dispatcher;
    auto in = dispatcher.Wrap(sink);
    for (int32_t i = 0; i < 50; ++i) in->OnOutput(Token(i));
    sink->WaitUntilEntered();
    releaser = std::thread([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      sink->Release();
    });
  }  // destroyed while 49 outputs wait behind a held sink
  releaser.join();
  EXPECT_EQ(sink->ids().size(), 50u);
}

}  // namespace
}  // namespace engine
}  // namespace foxserve
