// Iteration-level continuous batching (STYLE.md 4.3): a pure function of the queues and the KV
// pool, in two stages. Capacity first: every running sequence gets the pages its next tokens
// need, preempting (by recompute) the newest running sequences when the pool runs dry. Then
// batch shape: decode tokens of running sequences and prefill chunks (running ones first, then
// admitted waiting ones) share a token budget.
//
// Admission: a waiting sequence enters only when the pool has pages for its whole prompt plus
// one generated token and the running set is below max_num_seqs; FIFO, so the head of the queue
// is never overtaken. No threads, I/O or device work here.
#ifndef FOXSERVE_ENGINE_SCHEDULER_H_
#define FOXSERVE_ENGINE_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "engine/kv_block_manager.h"
#include "engine/sequence.h"

namespace foxserve {
namespace engine {

struct SchedulerConfig {
  int64_t max_num_seqs = 64;
  int64_t max_batch_tokens = 2048;  // tokens per step: decode tokens plus prefill chunks
  int32_t page_size = 64;
};

struct ScheduledChunk {
  Sequence* sequence;
  int64_t num_tokens;  // tokens [num_computed, num_computed + num_tokens) run this step
};

struct ScheduleResult {
  std::vector<ScheduledChunk> chunks;   // running sequences in arrival order, then admitted ones
  std::vector<Sequence*> preempted;     // moved back to the front of the waiting queue
  std::vector<Sequence*> admitted;
  int64_t num_batched_tokens = 0;
};

class Scheduler {
 public:
  // `blocks` is borrowed.
  Scheduler(const SchedulerConfig& config, KvBlockManager* blocks);

  // Queues a sequence (status kWaiting).
  void AddWaiting(Sequence* sequence);
  // Drops a sequence wherever it is and returns its pages (finish, abort). Status becomes kFinished.
  void Remove(Sequence* sequence);

  ScheduleResult Schedule();

  const std::vector<Sequence*>& running() const { return running_; }
  const std::deque<Sequence*>& waiting() const { return waiting_; }
  const SchedulerConfig& config() const { return config_; }

 private:
  void Preempt(Sequence* sequence);

  SchedulerConfig config_;
  KvBlockManager* blocks_;
  std::vector<Sequence*> running_;  // arrival order (of admission); the back is the newest
  std::deque<Sequence*> waiting_;
};

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_SCHEDULER_H_
