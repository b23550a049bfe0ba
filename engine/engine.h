// The single-threaded engine core: owns the sequences, runs the scheduler and the backend, samples,
// detokenizes, checks stop conditions and streams outputs to each request's sink.
//
// Thread-safety: none. ThreadedEngine runs it on one thread; tests may drive Step() directly.
#ifndef FOXSERVE_ENGINE_ENGINE_H_
#define FOXSERVE_ENGINE_ENGINE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/engine_observer.h"
#include "engine/host_stage_profile.h"
#include "engine/kv_block_manager.h"
#include "engine/kv_report.h"
#include "engine/model_backend.h"
#include "engine/request.h"
#include "engine/scheduler.h"
#include "engine/sequence.h"
#include "kernels/thread_pool.h"
#include "models/tokenizer.h"

namespace foxserve {
namespace engine {

struct EngineOptions {
  SchedulerConfig scheduler;
  int64_t max_model_len = 4096;  // prompt + generated tokens
  int32_t max_logprobs = 20;
  int32_t max_stop_strings = 16;
  int32_t max_stop_string_bytes = 256;
  int32_t max_stop_token_ids = 64;
  // Free the pages of blocks that ACP has proved dead for every future query (issue 6).
  bool evict_dead_pages = true;
  // Overwrite freed pages with NaN (tests): any read of a freed page shows up in the output.
  bool poison_freed_pages = false;
  // Requests sampling with top_k, top_p or min_p (no penalty, no logprobs) draw from their row's
  // top candidates, computed by the backend (on the GPU, 16 KB a row comes back instead of the
  // 200 KB row), with the same result as from the whole row; off: every sampled row comes back.
  bool sample_from_candidates = true;
  // Overlapped decode: when a decode step is certain to be followed by the same sequences' next
  // greedy tokens (every sequence plain greedy and short of max_new_tokens, no waiting request
  // admissible now, pages free), launch that next step before this one's tokens reach the host,
  // so that the device does not idle while the host turns a step around. Takes effect on backends whose
  // Launch returns before the step has run (ModelBackend::overlaps_steps). A sequence that stops
  // at a step has its speculative next token dropped.
  bool overlap_decode = true;
};

class Engine {
 public:
  // All pointers are borrowed; tokenizer and observer may be null.
  Engine(ModelBackend* backend, const models::Tokenizer* tokenizer, const EngineOptions& options,
         EngineObserver* observer);
  ~Engine();

  // Checks what depends on the model and the engine limits; InvalidArgument naming the field.
  // Thread-safe (reads immutable configuration only).
  absl::Status Validate(const GenerationRequest& request) const;

  // Validates and queues under `id` (unique, chosen by the caller).
  absl::Status Add(uint64_t id, GenerationRequest request, std::shared_ptr<RequestSink> sink);
  // Finishes the request with kCancelled and `status` if it is still in the engine.
  void Abort(uint64_t id, const absl::Status& status);
  // Finishes every request with kCancelled and `status`.
  void AbortAll(const absl::Status& status);

  bool has_work() const { return !sequences_.empty() || in_flight_ != nullptr; }
  int64_t num_sequences() const { return static_cast<int64_t>(sequences_.size()); }
  int64_t num_running() const { return scheduler_.running().size(); }
  int64_t num_waiting() const { return scheduler_.waiting().size(); }
  const KvBlockManager& blocks() const { return blocks_; }
  int64_t page_bytes() const { return backend_->page_bytes(); }
  // Pages that ACP eviction has freed from the sequences in the engine, kept as a running total:
  // ThreadedEngine publishes it twice a step, and summing every stream of 64 sequences took 0.13
  // ms a call on the H200 host (the profile's publish stage; now 0.00).
  int64_t num_evicted_pages() const { return evicted_pages_; }
  // The cache of every request in the engine whose client request_id is `request_id` (several
  // requests may share one), or of every request when it is empty.
  std::vector<RequestKvReport> InspectKv(const std::string& request_id) const;
  const EngineOptions& options() const { return options_; }
  // False once a forward pass failed: every request was failed and no new one is accepted.
  bool healthy() const { return healthy_; }

  // Steps this engine launched behind one in flight (overlapped decode).
  int64_t num_overlapped_steps() const { return overlapped_steps_; }

  // One iteration: schedule, forward, sample, stream. With overlapped decode an iteration may
  // launch the next decode step before it finishes the one in flight. Returns the backend's
  // error, if any, after failing every request with UNAVAILABLE. `before_outputs`, when set,
  // runs once the batch has been scheduled and computed and before any output reaches a sink
  // (ThreadedEngine refreshes its snapshots there, so a client that sees a token also sees the
  // queue that produced it).
  absl::Status Step(const std::function<void()>& before_outputs = nullptr);

 private:
  void Finish(Sequence* seq, FinishReason reason, absl::Status status, RequestOutput output);
  struct TokenChoice {
    bool finite = false;  // false: the logits were not all finite; the request fails
    // The filters reach past the candidates: choose again from the whole row (CandidateRow).
    bool needs_row = false;
    absl::Status error;  // not ok: the whole row could not be read; the request fails with it
    GeneratedToken token;
  };
  // The next token of a sequence whose prefill is complete: sampled from its logits, from its
  // candidates (when not null), or the one the backend chose (greedy_token, when not null).
  // Touches only the sequence's sampler, so the sequences of a step choose in parallel.
  static TokenChoice ChooseToken(Sequence* seq, absl::Span<float> logits,
                                 const int32_t* greedy_token,
                                 const kernels::TokenCandidates* candidates = nullptr);
  // Appends the chosen token, checks the stop conditions and streams the output.
  void Advance(Sequence* seq, TokenChoice choice);

  // A step's batch: what was launched, and what its outputs need once it is finished. Batches
  // are reused (two alternate under overlapped decode), so their vectors keep their capacity.
  struct StepBatch {
    ScheduleResult plan;
    std::vector<models::ForwardItem> items;
    std::vector<AcpPhase> phases;
    std::vector<models::AcpCounters> counters;
    std::vector<int32_t> greedy_tokens;  // per chunk, for the greedy fast path
    std::vector<kernels::TokenCandidates> candidates;  // per chunk, for the candidates path
    std::vector<int64_t> logits_row, candidates_row;  // per chunk; -1: none
    std::vector<int32_t> placeholders;  // tokens of a continued step (token_from_step_in_flight)
    int64_t returned_rows = 0, candidate_rows = 0;
    StepStats stats;
    bool launched = false;
    // Sizes the per-chunk outputs for n chunks and zeroes the ACP counters ([layer][head]).
    void Size(size_t n, int64_t layers, int64_t heads);
  };
  std::unique_ptr<StepBatch> TakeBatch();
  // Schedules the next step into `batch` and builds its items.
  void BuildBatch(StepBatch* batch);
  // Launches `batch` on the backend (nothing when it is empty).
  absl::Status LaunchBatch(StepBatch* batch);
  // The next decode step of `current` (in flight), launched now, or null when it is not certain.
  std::unique_ptr<StepBatch> LaunchContinuation(const StepBatch& current, absl::Status* status);
  // After the backend finished `batch` (with `status`): counters, stats, tokens, streaming.
  void CompleteBatch(StepBatch* batch, const absl::Status& status, Clock::time_point start,
                     const std::function<void()>& before_outputs);
  // Waits for every launched step (their results are dropped) and releases retired sequences.
  void Drain();

  ModelBackend* backend_;
  const models::Tokenizer* tokenizer_;
  EngineOptions options_;
  EngineObserver* observer_;
  KvBlockManager blocks_;
  Scheduler scheduler_;
  std::map<uint64_t, std::unique_ptr<Sequence>> sequences_;
  bool healthy_ = true;
  int64_t evicted_pages_ = 0;  // the sum of the sequences' evicted_pages
  std::vector<float> logits_;
  std::unique_ptr<StepBatch> in_flight_;  // launched, not yet finished
  std::unique_ptr<StepBatch> spare_;      // finished, kept for reuse
  // Sequences that finished while a step holding them was in flight: kept (pages already
  // returned) until that step has finished, since the backend still writes into their state.
  std::vector<std::unique_ptr<Sequence>> retired_;
  int64_t overlapped_steps_ = 0;
  // Whole rows fetched for candidates that did not suffice (capacity kept from step to step).
  std::vector<std::vector<float>> missed_rows_;
  HostStageProfile profile_;
  // Host sampling of a step's sequences (top-p over a 50k vocabulary is about a millisecond a
  // token); idle between steps.
  std::unique_ptr<kernels::ThreadPool> sampling_pool_;
};

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_ENGINE_H_
