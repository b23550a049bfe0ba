#include "engine/threaded_engine.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace foxserve {
namespace engine {

ThreadedEngine::ThreadedEngine(std::unique_ptr<Engine> engine, int64_t max_queued)
    : engine_(std::move(engine)),
      max_queued_(max_queued),
      kv_pages_total_(engine_->blocks().num_pages_total()),
      kv_page_bytes_(engine_->page_bytes()) {
  thread_ = std::thread([this] { Loop(); });
}

ThreadedEngine::~ThreadedEngine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

absl::StatusOr<uint64_t> ThreadedEngine::Submit(GenerationRequest request,
                                                std::shared_ptr<RequestSink> sink) {
  if (!healthy_.load()) return absl::UnavailableError("the engine failed; not serving");
  if (!accepting_.load()) return absl::UnavailableError("the server is shutting down");
  if (absl::Status s = engine_->Validate(request); !s.ok()) return s;
  const uint64_t id = next_id_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t queued = waiting_.load() + static_cast<int64_t>(incoming_.size());
    if (queued >= max_queued_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "request queue is full (", queued, " requests waiting); retry later"));
    }
    incoming_.push_back(
        {id, std::move(request), sink != nullptr ? dispatcher_.Wrap(std::move(sink)) : nullptr});
    in_flight_.fetch_add(1);
  }
  wake_.notify_one();
  return id;
}

void ThreadedEngine::Abort(uint64_t id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborts_.push_back(id);
  }
  wake_.notify_one();
}

void ThreadedEngine::InspectKv(std::string request_id, KvReportCallback done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_) {
      inspections_.emplace_back(std::move(request_id), std::move(done));
      done = nullptr;
    }
  }
  if (done) {
    done({});
    return;
  }
  wake_.notify_one();
}

void ThreadedEngine::StopAccepting() { accepting_.store(false); }

bool ThreadedEngine::Drain(Clock::time_point deadline) {
  StopAccepting();
  std::unique_lock<std::mutex> lock(mu_);
  const bool drained = changed_.wait_until(lock, deadline, [&] { return in_flight_.load() == 0; });
  if (!drained) {
    cancel_all_ = absl::UnavailableError("the server is shutting down");
    wake_.notify_one();
    changed_.wait(lock, [&] { return in_flight_.load() == 0; });
  }
  lock.unlock();
  dispatcher_.Flush();
  return drained;
}

void ThreadedEngine::Publish() {
  waiting_.store(engine_->num_waiting());
  running_.store(engine_->num_running());
  kv_pages_used_.store(engine_->blocks().num_pages_used());
  kv_pages_evicted_.store(engine_->num_evicted_pages());
  healthy_.store(engine_->healthy());
}

void ThreadedEngine::Loop() {
  for (;;) {
    std::vector<Submission> incoming;
    std::vector<uint64_t> aborts;
    std::vector<std::pair<std::string, KvReportCallback>> inspections;
    absl::Status cancel_all;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] {
        return stop_ || !incoming_.empty() || !aborts_.empty() || !inspections_.empty() ||
               !cancel_all_.ok() || engine_->has_work();
      });
      if (stop_) break;
      // Until the next Publish these wait in the scheduler: keep them in the queue count that
      // Submit checks, so the bound holds while a step runs.
      waiting_.fetch_add(static_cast<int64_t>(incoming_.size()));
      incoming.swap(incoming_);
      aborts.swap(aborts_);
      inspections.swap(inspections_);
      cancel_all = std::exchange(cancel_all_, absl::OkStatus());
    }
    for (Submission& s : incoming) {
      std::shared_ptr<RequestSink> sink = s.sink;
      if (absl::Status status = engine_->Add(s.id, std::move(s.request), std::move(s.sink));
          !status.ok() && sink != nullptr) {
        RequestOutput output;
        output.finish_reason = FinishReason::kError;
        output.status = status;
        sink->OnOutput(std::move(output));
      }
    }
    for (uint64_t id : aborts) engine_->Abort(id, absl::CancelledError("cancelled by the client"));
    // Before the step: a request that is running now is still in the engine to be seen.
    for (auto& [request_id, done] : inspections) done(engine_->InspectKv(request_id));
    if (!cancel_all.ok()) engine_->AbortAll(cancel_all);
    if (engine_->has_work()) (void)engine_->Step([this] { Publish(); });
    Publish();
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_flight_.store(engine_->num_sequences() + static_cast<int64_t>(incoming_.size()));
    }
    changed_.notify_all();
  }
  engine_->AbortAll(absl::UnavailableError("the server is shutting down"));
  std::vector<std::pair<std::string, KvReportCallback>> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(inspections_);
  }
  for (auto& [request_id, done] : left) done({});
  in_flight_.store(0);
  changed_.notify_all();
}

}  // namespace engine
}  // namespace foxserve
