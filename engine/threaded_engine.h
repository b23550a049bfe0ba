// Runs an Engine on its own thread (STYLE.md 4.5): the only thread that touches sequences and
// the batch. Other threads (gRPC handlers) submit, abort and read snapshots; outputs reach them
// through their RequestSink, called in order on the output dispatcher's thread
// (engine/output_dispatcher.h), so that writing them does not hold up the next step.
//
// Thread-safety: every public method is thread-safe.
#ifndef FOXSERVE_ENGINE_THREADED_ENGINE_H_
#define FOXSERVE_ENGINE_THREADED_ENGINE_H_

#include <atomic>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/output_dispatcher.h"

namespace foxserve {
namespace engine {

class ThreadedEngine {
 public:
  // max_queued: requests waiting for admission (queued here or in the scheduler) beyond which
  // Submit answers RESOURCE_EXHAUSTED.
  ThreadedEngine(std::unique_ptr<Engine> engine, int64_t max_queued);
  ~ThreadedEngine();  // cancels what is left and joins the thread

  // Validates and queues. InvalidArgument naming the field; ResourceExhausted when the queue is
  // full; Unavailable when draining or after an engine failure. On success the sink will receive
  // outputs ending with exactly one finished() output.
  absl::StatusOr<uint64_t> Submit(GenerationRequest request, std::shared_ptr<RequestSink> sink);
  // Cancels a request (idempotent; unknown or finished ids are ignored). Its pages are freed
  // before the next step runs.
  void Abort(uint64_t id);
  // Calls `done` on the engine thread, between two steps, with Engine::InspectKv(request_id); with
  // an empty list if the engine stops first. `done` must not block.
  using KvReportCallback = std::function<void(std::vector<RequestKvReport>)>;
  void InspectKv(std::string request_id, KvReportCallback done);
  // New submissions get Unavailable from now on.
  void StopAccepting();
  // Waits until no request is in flight or `deadline` passes, then cancels what is left with
  // Unavailable; returns once every output has reached its sink. Returns whether everything
  // finished on its own.
  bool Drain(Clock::time_point deadline);

  bool accepting() const { return accepting_.load(); }
  bool healthy() const { return healthy_.load(); }
  int64_t num_in_flight() const { return in_flight_.load(); }
  int64_t num_waiting() const { return waiting_.load(); }
  int64_t num_running() const { return running_.load(); }
  int64_t kv_pages_used() const { return kv_pages_used_.load(); }
  int64_t kv_pages_total() const { return kv_pages_total_; }
  // Pages that ACP eviction has freed from the requests in flight.
  int64_t kv_pages_evicted() const { return kv_pages_evicted_.load(); }
  int64_t kv_page_bytes() const { return kv_page_bytes_; }
  // Immutable after construction; safe from any thread.
  const Engine& engine() const { return *engine_; }

 private:
  struct Submission {
    uint64_t id;
    GenerationRequest request;
    std::shared_ptr<RequestSink> sink;
  };
  void Loop();
  void Publish();  // refreshes the snapshots (engine thread)

  std::unique_ptr<Engine> engine_;
  const int64_t max_queued_;
  const int64_t kv_pages_total_;
  const int64_t kv_page_bytes_;

  std::mutex mu_;
  std::condition_variable wake_;     // engine thread: work arrived
  std::condition_variable changed_;  // drainers: in-flight count changed
  std::vector<Submission> incoming_;
  std::vector<uint64_t> aborts_;
  std::vector<std::pair<std::string, KvReportCallback>> inspections_;
  bool stop_ = false;
  absl::Status cancel_all_;  // set by Drain: cancel everything with this status

  std::atomic<uint64_t> next_id_{1};
  std::atomic<bool> accepting_{true};
  std::atomic<bool> healthy_{true};
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> waiting_{0};
  std::atomic<int64_t> running_{0};
  std::atomic<int64_t> kv_pages_used_{0};
  std::atomic<int64_t> kv_pages_evicted_{0};
  // Outlives the engine thread (joined first in the destructor), so the last outputs go out.
  OutputDispatcher dispatcher_;
  std::thread thread_;
};

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_THREADED_ENGINE_H_
