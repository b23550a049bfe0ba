// The scheduler as an iteration table (STYLE.md 4.4): no model, "computing" a chunk just advances
// the sequence's cache length, and a finished prefill or decode appends a token.
#include "engine/scheduler.h"

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace foxserve {
namespace engine {
namespace {

constexpr int32_t kPageSize = 4;

class SchedulerTest : public ::testing::Test {
 protected:
  // One layer, one head: a sequence of n tokens holds ceil(n / 4) pages.
  Sequence* Add(int64_t prompt_tokens, int64_t max_new_tokens) {
    GenerationRequest r;
    r.prompt.assign(prompt_tokens, 1);
    r.max_new_tokens = max_new_tokens;
    auto kv = std::make_unique<models::SequenceKvState>(1, 1, 8, prompt_tokens + max_new_tokens);
    sequences_.push_back(std::make_unique<Sequence>(next_id_++, r, nullptr, std::move(kv), nullptr, 1, 1));
    scheduler_->AddWaiting(sequences_.back().get());
    return sequences_.back().get();
  }

  void Init(int64_t pages, int64_t max_seqs, int64_t budget) {
    blocks_ = std::make_unique<KvBlockManager>(pages);
    SchedulerConfig c;
    c.max_num_seqs = max_seqs;
    c.max_batch_tokens = budget;
    c.page_size = kPageSize;
    scheduler_ = std::make_unique<Scheduler>(c, blocks_.get());
  }

  // Runs one step: returns "id:tokens" for each chunk, "!id" for each preemption.
  std::string Step() {
    ScheduleResult r = scheduler_->Schedule();
    std::string out;
    for (Sequence* s : r.preempted) out += "!" + std::to_string(s->id) + " ";
    for (const ScheduledChunk& c : r.chunks) {
      out += std::to_string(c.sequence->id) + ":" + std::to_string(c.num_tokens) + " ";
      c.sequence->kv->num_tokens += c.num_tokens;  // "compute"
      if (c.sequence->num_to_compute() == 0) c.sequence->tokens.push_back(7);  // "sample"
    }
    for (const ScheduledChunk& c : r.chunks) {
      Sequence* s = c.sequence;
      if (s->num_generated() >= s->request.max_new_tokens && s->status != SequenceStatus::kFinished) {
        scheduler_->Remove(s);
      }
    }
    if (!out.empty()) out.pop_back();
    return out;
  }

  std::unique_ptr<KvBlockManager> blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<std::unique_ptr<Sequence>> sequences_;
  uint64_t next_id_ = 1;
};

TEST_F(SchedulerTest, ChunkedPrefillThenDecodeUnderTheTokenBudget) {
  Init(/*pages=*/100, /*max_seqs=*/8, /*budget=*/6);
  Add(10, 3);  // id 1
  Add(3, 2);   // id 2
  EXPECT_EQ(Step(), "1:6");      // 6 of seq 1's 10 prompt tokens fill the budget
  EXPECT_EQ(Step(), "1:4 2:2");  // seq 1 completes its prompt (token 1); 2 tokens left for seq 2
  EXPECT_EQ(Step(), "1:1 2:1");  // seq 1 decodes (token 2), seq 2 completes its prompt (token 1)
  EXPECT_EQ(Step(), "1:1 2:1");  // both reach max_new_tokens and finish
  EXPECT_EQ(Step(), "");
  EXPECT_EQ(blocks_->num_pages_free(), 100);
}

TEST_F(SchedulerTest, AdmissionNeedsPagesForTheWholePromptAndIsFifo) {
  Init(/*pages=*/3, /*max_seqs=*/8, /*budget=*/100);
  Sequence* big = Add(12, 1);  // 13 tokens need 4 pages: more than the pool has free
  Add(1, 1);                   // fits, but FIFO keeps it behind the head of the queue
  EXPECT_EQ(Step(), "");
  EXPECT_EQ(Step(), "");
  scheduler_->Remove(big);
  EXPECT_EQ(Step(), "2:1");
  EXPECT_EQ(Step(), "");
  EXPECT_EQ(blocks_->num_pages_free(), 3);
}

TEST_F(SchedulerTest, RespectsMaxNumSeqs) {
  Init(100, /*max_seqs=*/2, 100);
  Add(2, 3);
  Add(2, 3);
  Add(2, 3);
  EXPECT_EQ(Step(), "1:2 2:2");
  EXPECT_EQ(Step(), "1:1 2:1");
  EXPECT_EQ(Step(), "1:1 2:1");  // both finish (3 tokens)
  EXPECT_EQ(Step(), "3:2");
}

TEST_F(SchedulerTest, PreemptsTheNewestWhenThePoolRunsDryAndRecomputesLater) {
  // 3 pages of 4 tokens.
  Init(/*pages=*/3, /*max_seqs=*/8, /*budget=*/100);
  Add(4, 6);  // id 1
  Add(3, 6);  // id 2
  EXPECT_EQ(Step(), "1:4 2:3");  // 1 page each; both sample a token
  EXPECT_EQ(Step(), "1:1 2:1");  // seq 1's 5th token takes the last page
  // Seq 2's 5th token needs a second page; none is free and seq 2 is the newest: it is
  // preempted, its page returns, and it goes back to the front of the queue.
  EXPECT_EQ(Step(), "!2 1:1");
  EXPECT_EQ(sequences_[1]->num_preemptions, 1);
  EXPECT_EQ(sequences_[1]->num_computed(), 0);
  EXPECT_EQ(sequences_[1]->num_tokens(), 5);  // prompt + 2 generated, kept for the recompute
  EXPECT_EQ(Step(), "1:1");  // seq 2 needs 2 pages for its 5 tokens + 1; 1 is free
  EXPECT_EQ(Step(), "1:1");
  EXPECT_EQ(Step(), "1:1");  // seq 1 takes a third page, generates its 6th token and finishes
  EXPECT_EQ(Step(), "2:5");  // seq 2 recomputes prompt and generated tokens in one chunk
  EXPECT_EQ(sequences_[1]->num_generated(), 3);
}

TEST_F(SchedulerTest, RandomWorkloadReturnsEveryPage) {
  std::mt19937 rng(3);
  Init(/*pages=*/40, /*max_seqs=*/6, /*budget=*/16);
  int64_t preemptions = 0;
  for (int step = 0; step < 3000; ++step) {
    if (rng() % 3 == 0 && sequences_.size() < 400) Add(1 + rng() % 30, 1 + rng() % 20);
    const std::string s = Step();
    preemptions += std::count(s.begin(), s.end(), '!');
    // Random aborts.
    if (rng() % 7 == 0 && !scheduler_->running().empty()) {
      Sequence* victim = scheduler_->running()[rng() % scheduler_->running().size()];
      scheduler_->Remove(victim);
    }
    int64_t held = 0;
    for (const auto& seq : sequences_) {
      for (const auto& st : seq->kv->streams) held += st.pages.size();
    }
    ASSERT_EQ(held + blocks_->num_pages_free(), 40) << "step " << step;
  }
  for (const auto& seq : sequences_) {
    if (seq->status != SequenceStatus::kFinished) scheduler_->Remove(seq.get());
  }
  EXPECT_EQ(blocks_->num_pages_free(), 40);
  EXPECT_GT(preemptions, 0);
}

}  // namespace
}  // namespace engine
}  // namespace foxserve
