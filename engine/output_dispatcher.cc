#include "engine/output_dispatcher.h"

namespace foxserve {
namespace engine {
namespace {

class DispatchedSink : public RequestSink {
 public:
  DispatchedSink(OutputDispatcher* dispatcher, std::shared_ptr<RequestSink> sink)
      : dispatcher_(dispatcher), sink_(std::move(sink)) {}
  void OnOutput(RequestOutput output) override { dispatcher_->Post(sink_, std::move(output)); }

 private:
  OutputDispatcher* const dispatcher_;
  const std::shared_ptr<RequestSink> sink_;
};

}  // namespace

OutputDispatcher::OutputDispatcher() : thread_([this] { Loop(); }) {}

OutputDispatcher::~OutputDispatcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  posted_.notify_one();
  thread_.join();
}

void OutputDispatcher::Post(std::shared_ptr<RequestSink> sink, RequestOutput output) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // The worker only sleeps on an empty queue: a batch of posts wakes it once.
    wake = queue_.empty() && !busy_;
    queue_.emplace_back(std::move(sink), std::move(output));
  }
  if (wake) posted_.notify_one();
}

std::shared_ptr<RequestSink> OutputDispatcher::Wrap(std::shared_ptr<RequestSink> sink) {
  return std::make_shared<DispatchedSink>(this, std::move(sink));
}

void OutputDispatcher::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  delivered_.wait(lock, [&] { return queue_.empty() && !busy_; });
}

void OutputDispatcher::Loop() {
  std::deque<std::pair<std::shared_ptr<RequestSink>, RequestOutput>> batch;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    posted_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_, and everything delivered
    batch.swap(queue_);
    busy_ = true;
    lock.unlock();
    for (auto& [sink, output] : batch) sink->OnOutput(std::move(output));
    batch.clear();  // the sinks' last references may go here, outside the lock
    lock.lock();
    busy_ = false;
    if (queue_.empty()) delivered_.notify_all();
  }
}

}  // namespace engine
}  // namespace foxserve
