#include "engine/scheduler.h"

#include <algorithm>

#include "kernels/check.h"

namespace foxserve {
namespace engine {

Scheduler::Scheduler(const SchedulerConfig& config, KvBlockManager* blocks)
    : config_(config), blocks_(blocks) {
  FOXSERVE_CHECK_GE(config.max_num_seqs, 1);
  FOXSERVE_CHECK_GE(config.max_batch_tokens, 1);
}

void Scheduler::AddWaiting(Sequence* sequence) {
  sequence->status = SequenceStatus::kWaiting;
  waiting_.push_back(sequence);
}

void Scheduler::Remove(Sequence* sequence) {
  running_.erase(std::remove(running_.begin(), running_.end(), sequence), running_.end());
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), sequence), waiting_.end());
  ReleasePages(*blocks_, *sequence->kv);
  sequence->status = SequenceStatus::kFinished;
}

void Scheduler::Preempt(Sequence* sequence) {
  // Recompute: forget the cache; prompt and generated tokens are prefilled again on re-admission,
  // which rebuilds exactly the same state (the CPU forward is batch-invariant).
  ReleasePages(*blocks_, *sequence->kv);
  sequence->kv->Reset();
  ++sequence->num_preemptions;
  sequence->status = SequenceStatus::kWaiting;
  waiting_.push_front(sequence);
}

ScheduleResult Scheduler::Schedule() {
  ScheduleResult result;
  int64_t budget = config_.max_batch_tokens;
  const int32_t page_size = config_.page_size;

  // - Running sequences, oldest first: decode tokens and unfinished prefill chunks.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Sequence* seq = running_[i];
    const int64_t n = std::min(seq->num_to_compute(), budget);
    FOXSERVE_CHECK_GE(n, 1) << "running sequence " << seq->id << " has nothing to compute";
    bool self_preempted = false;
    while (PagesNeeded(*seq->kv, seq->num_computed() + n, page_size) > blocks_->num_pages_free()) {
      Sequence* victim = running_.back();
      running_.pop_back();
      Preempt(victim);
      result.preempted.push_back(victim);
      if (victim == seq) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;  // seq was the newest: nothing after it remains
    const absl::Status reserved = ReservePages(*blocks_, *seq->kv, seq->num_computed() + n, page_size);
    FOXSERVE_CHECK(reserved.ok()) << reserved;
    result.chunks.push_back({seq, n});
    budget -= n;
    ++i;
  }

  // - Admission, FIFO, unless this step had to preempt (the pool is under pressure).
  if (result.preempted.empty()) {
    while (!waiting_.empty() && budget > 0 &&
           static_cast<int64_t>(running_.size()) < config_.max_num_seqs) {
      Sequence* seq = waiting_.front();
      if (PagesNeeded(*seq->kv, seq->num_tokens() + 1, page_size) > blocks_->num_pages_free()) break;
      const int64_t n = std::min(seq->num_to_compute(), budget);
      const absl::Status reserved =
          ReservePages(*blocks_, *seq->kv, seq->num_computed() + n, page_size);
      FOXSERVE_CHECK(reserved.ok()) << reserved;
      waiting_.pop_front();
      seq->status = SequenceStatus::kRunning;
      running_.push_back(seq);
      result.admitted.push_back(seq);
      result.chunks.push_back({seq, n});
      budget -= n;
    }
  }
  result.num_batched_tokens = config_.max_batch_tokens - budget;
  return result;
}

}  // namespace engine
}  // namespace foxserve
