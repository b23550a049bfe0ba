#include "engine/engine.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace foxserve {
namespace engine {
namespace {

// Tokens a request samples from whole rows after its filters reached past its candidates.
constexpr int64_t kRowsAfterCandidateMiss = 16;

double SecondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// The log softmax of `chosen` under `logits`, and the `top` most likely tokens.
void FillLogprobs(absl::Span<const float> logits, int32_t chosen, int32_t top,
                  GeneratedToken* token) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max_logit);
  const double log_z = max_logit + std::log(sum);
  auto logprob = [&](int32_t id) { return static_cast<float>(logits[id] - log_z); };
  token->has_logprobs = true;
  token->chosen = {chosen, logprob(chosen)};
  if (top <= 0) return;
  std::vector<int32_t> order(logits.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  const size_t k = std::min<size_t>(top, order.size());
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (size_t i = 0; i < k; ++i) token->top.push_back({order[i], logprob(order[i])});
}

}  // namespace

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "none";
    case FinishReason::kLength: return "length";
    case FinishReason::kStop: return "stop";
    case FinishReason::kEos: return "eos";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "unknown";
}

Engine::Engine(ModelBackend* backend, const models::Tokenizer* tokenizer,
               const EngineOptions& options, EngineObserver* observer)
    : backend_(backend),
      tokenizer_(tokenizer),
      options_(options),
      observer_(observer),
      blocks_(backend->num_pages()),
      scheduler_(
          [&] {
            SchedulerConfig c = options.scheduler;
            c.page_size = backend->page_size();
            return c;
          }(),
          &blocks_),
      profile_(std::getenv("FOXSERVE_PROFILE_STAGES") != nullptr),
      sampling_pool_(std::make_unique<kernels::ThreadPool>(kernels::ThreadPool::CappedThreads(8))) {
  if (options_.poison_freed_pages) {
    blocks_.set_free_hook([backend](absl::Span<const int32_t> pages) { backend->PoisonPages(pages); });
  }
}

Engine::~Engine() {
  Drain();
  AbortAll(absl::CancelledError("engine destroyed"));
  profile_.Summary(stderr);
}

std::vector<RequestKvReport> Engine::InspectKv(const std::string& request_id) const {
  std::vector<RequestKvReport> reports;
  for (const auto& [id, seq] : sequences_) {
    if (!request_id.empty() && seq->request.request_id != request_id) continue;
    const models::SequenceKvState& kv = *seq->kv;
    RequestKvReport r;
    r.engine_id = id;
    r.request_id = seq->request.request_id;
    r.running = seq->status == SequenceStatus::kRunning;
    r.num_tokens = seq->num_tokens();
    r.num_cached = kv.num_tokens;
    r.max_total_tokens = kv.max_total_tokens;
    for (int64_t layer = 0; layer < kv.num_layers; ++layer) {
      for (int64_t head = 0; head < kv.num_heads; ++head) {
        const models::KvStream& s = kv.stream(layer, head);
        StreamKvReport sr;
        sr.layer = static_cast<int32_t>(layer);
        sr.head = static_cast<int32_t>(head);
        sr.blocks = static_cast<int64_t>(s.pages.size());
        sr.evicted = s.num_evicted;
        // The pointer may run ahead of the table only on an empty stream.
        const int64_t dead = std::min<int64_t>(s.first_live_block, sr.blocks);
        sr.dead_resident = dead - s.num_evicted;
        sr.live = sr.blocks - dead;
        r.pages_held += sr.blocks - sr.evicted;
        r.streams.push_back(sr);
      }
    }
    reports.push_back(std::move(r));
  }
  return reports;
}

absl::Status Engine::Validate(const GenerationRequest& r) const {
  const models::FoxConfig& config = backend_->config();
  const int64_t vocab = config.vocab_size;
  const int64_t prompt = static_cast<int64_t>(r.prompt.size());
  if (prompt == 0) return absl::InvalidArgumentError("prompt: empty");
  if (prompt >= options_.max_model_len) {
    return absl::InvalidArgumentError(absl::StrCat("prompt: ", prompt,
                                                   " tokens reach the model limit of ",
                                                   options_.max_model_len, " (max_model_len)"));
  }
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("prompt: token id ", r.prompt[i],
                                                     " at position ", i,
                                                     " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  const int64_t room = options_.max_model_len - prompt;
  if (r.max_new_tokens < 1 || r.max_new_tokens > room) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens: must be in [1, ", room,
                                                   "] for this prompt, got ", r.max_new_tokens));
  }
  if (absl::Status s = ValidateSamplingParams(r.sampling); !s.ok()) return s;
  if (static_cast<int64_t>(r.stop.size()) > options_.max_stop_strings) {
    return absl::InvalidArgumentError(absl::StrCat("stop: at most ", options_.max_stop_strings,
                                                   " stop strings, got ", r.stop.size()));
  }
  for (const std::string& s : r.stop) {
    if (s.empty() || static_cast<int64_t>(s.size()) > options_.max_stop_string_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("stop: each stop string must have 1 to ",
                                                     options_.max_stop_string_bytes, " bytes"));
    }
  }
  if (!r.stop.empty() && tokenizer_ == nullptr) {
    return absl::InvalidArgumentError("stop: the model has no tokenizer; use stop_token_ids");
  }
  if (static_cast<int64_t>(r.stop_token_ids.size()) > options_.max_stop_token_ids) {
    return absl::InvalidArgumentError(absl::StrCat("stop_token_ids: at most ",
                                                   options_.max_stop_token_ids, " ids, got ",
                                                   r.stop_token_ids.size()));
  }
  for (int32_t id : r.stop_token_ids) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("stop_token_ids: ", id,
                                                     " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  if (r.logprobs > options_.max_logprobs) {
    return absl::InvalidArgumentError(absl::StrCat("logprobs: at most ", options_.max_logprobs,
                                                   ", got ", r.logprobs));
  }
  const int64_t streams = config.num_hidden_layers * config.num_heads;
  const int64_t blocks = (prompt + r.max_new_tokens + backend_->page_size() - 1) / backend_->page_size();
  if (blocks * streams > blocks_.num_pages_total()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_new_tokens: prompt + max_new_tokens = ", prompt + r.max_new_tokens,
        " tokens need ", blocks * streams, " KV pages, more than the pool's ",
        blocks_.num_pages_total()));
  }
  return absl::OkStatus();
}

absl::Status Engine::Add(uint64_t id, GenerationRequest request, std::shared_ptr<RequestSink> sink) {
  if (!healthy_) return absl::UnavailableError("engine failed; not accepting requests");
  if (absl::Status s = Validate(request); !s.ok()) return s;
  FOXSERVE_CHECK(sequences_.count(id) == 0) << "duplicate request id " << id;
  const models::FoxConfig& c = backend_->config();
  auto kv = backend_->NewSequenceState(static_cast<int64_t>(request.prompt.size()) +
                                       request.max_new_tokens);
  std::unique_ptr<models::IncrementalDecoder> decoder;
  if (tokenizer_ != nullptr) decoder = tokenizer_->NewIncrementalDecoder(request.prompt);
  auto seq = std::make_unique<Sequence>(id, std::move(request), std::move(sink), std::move(kv),
                                        std::move(decoder), c.num_hidden_layers, c.num_heads);
  scheduler_.AddWaiting(seq.get());
  sequences_.emplace(id, std::move(seq));
  return absl::OkStatus();
}

void Engine::Abort(uint64_t id, const absl::Status& status) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return;
  Finish(it->second.get(), FinishReason::kCancelled, status, RequestOutput());
}

void Engine::AbortAll(const absl::Status& status) {
  while (!sequences_.empty()) {
    Finish(sequences_.begin()->second.get(), FinishReason::kCancelled, status, RequestOutput());
  }
}

void Engine::Finish(Sequence* seq, FinishReason reason, absl::Status status, RequestOutput output) {
  output.finish_reason = reason;
  output.status = std::move(status);
  output.prompt_tokens = seq->num_prompt_tokens;
  output.completion_tokens = seq->num_generated();
  output.acp_blocks_computed = seq->acp.total_computed();
  output.acp_blocks_skipped = seq->acp.total_skipped();
  // Observer first: a client that sees its request end must find it in the metrics.
  if (observer_ != nullptr) {
    FinishedRequestStats stats;
    stats.reason = reason;
    stats.prompt_tokens = seq->num_prompt_tokens;
    stats.generated_tokens = seq->num_generated();
    stats.seconds = SecondsBetween(seq->request.arrival, Clock::now());
    observer_->OnRequestFinished(stats);
  }
  if (seq->sink != nullptr) seq->sink->OnOutput(std::move(output));
  evicted_pages_ -= seq->evicted_pages;
  scheduler_.Remove(seq);
  auto it = sequences_.find(seq->id);
  if (seq->steps_in_flight > 0) retired_.push_back(std::move(it->second));
  sequences_.erase(it);
}

void Engine::Drain() {
  if (in_flight_ == nullptr) return;
  if (in_flight_->launched) {
    (void)backend_->Finish();
    for (const ScheduledChunk& chunk : in_flight_->plan.chunks) --chunk.sequence->steps_in_flight;
  }
  spare_ = std::move(in_flight_);
  retired_.clear();
}

Engine::TokenChoice Engine::ChooseToken(Sequence* seq, absl::Span<float> logits,
                                        const int32_t* greedy_token,
                                        const kernels::TokenCandidates* candidates) {
  TokenChoice choice;
  if (candidates != nullptr) {
    choice.finite = candidates->finite;
    if (!choice.finite) return choice;
    std::optional<int32_t> id;
    if (candidates->complete) id = seq->sampler.SampleCandidates(*candidates);
    if (id) {
      choice.token.id = *id;
    } else {
      choice.needs_row = true;
    }
    return choice;
  }
  choice.finite =
      greedy_token != nullptr
          ? *greedy_token >= 0
          : std::all_of(logits.begin(), logits.end(), [](float l) { return std::isfinite(l); });
  if (!choice.finite) return choice;
  // Log probabilities come from the raw logits: the sampler applies penalties in place. (The
  // greedy path is only taken without logprobs.)
  std::vector<float> raw;
  if (seq->request.logprobs >= 0) raw.assign(logits.begin(), logits.end());
  int32_t id;
  if (greedy_token != nullptr) {
    id = *greedy_token;
    seq->sampler.RecordGenerated(id);
  } else {
    id = seq->sampler.Sample(logits);
  }
  choice.token.id = id;
  if (seq->request.logprobs >= 0) FillLogprobs(raw, id, seq->request.logprobs, &choice.token);
  return choice;
}

void Engine::Advance(Sequence* seq, TokenChoice choice) {
  if (!choice.error.ok()) {
    Finish(seq, FinishReason::kError, choice.error, RequestOutput());
    return;
  }
  if (!choice.finite) {
    Finish(seq, FinishReason::kError,
           absl::InternalError("the model produced non-finite logits for this request"),
           RequestOutput());
    return;
  }
  const int32_t id = choice.token.id;
  GeneratedToken token = std::move(choice.token);
  const auto t_output = profile_.Start();
  const Clock::time_point now = Clock::now();
  if (observer_ != nullptr) {
    if (!seq->first_token_time) {
      observer_->OnFirstToken(SecondsBetween(seq->request.arrival, now));
    } else {
      observer_->OnInterTokenLatency(SecondsBetween(seq->last_token_time, now));
    }
  }
  if (!seq->first_token_time) seq->first_token_time = now;
  seq->last_token_time = now;
  seq->tokens.push_back(id);

  const models::FoxConfig& config = backend_->config();
  FinishReason reason = FinishReason::kNone;
  const auto& eos = config.eos_token_ids;
  if (!seq->request.ignore_eos && std::find(eos.begin(), eos.end(), id) != eos.end()) {
    reason = FinishReason::kEos;
  } else if (std::find(seq->request.stop_token_ids.begin(), seq->request.stop_token_ids.end(),
                       id) != seq->request.stop_token_ids.end()) {
    reason = FinishReason::kStop;
  }
  RequestOutput output;
  output.tokens.push_back(std::move(token));
  if (seq->decoder != nullptr) {
    bool stopped = false;
    // The text of an EOS or stop token is not returned.
    if (reason == FinishReason::kNone) output.text = seq->stop_strings.Add(seq->decoder->Push(id), &stopped);
    if (stopped) reason = FinishReason::kStop;
    if (reason == FinishReason::kNone && seq->num_generated() >= seq->request.max_new_tokens) {
      reason = FinishReason::kLength;
    }
    if (reason != FinishReason::kNone && !stopped) {
      output.text += seq->stop_strings.Add(seq->decoder->Flush(), &stopped);
      if (stopped) {
        reason = FinishReason::kStop;
      } else {
        output.text += seq->stop_strings.Flush();
      }
    }
  } else if (reason == FinishReason::kNone && seq->num_generated() >= seq->request.max_new_tokens) {
    reason = FinishReason::kLength;
  }
  profile_.Add("detokenize", t_output);
  const auto t_deliver = profile_.Start();
  if (reason != FinishReason::kNone) {
    Finish(seq, reason, absl::OkStatus(), std::move(output));
  } else if (seq->sink != nullptr) {
    seq->sink->OnOutput(std::move(output));
  }
  profile_.Add("deliver", t_deliver);
}

void Engine::StepBatch::Size(size_t n, int64_t layers, int64_t heads) {
  stats.num_layers = layers;
  stats.num_heads = heads;
  // Zeroed in place: a fresh pair of [layer][head] vectors per sequence per step was 2 x 64
  // allocations of a batch-64 decode step.
  counters.resize(n);
  for (models::AcpCounters& c : counters) {
    c.num_heads = heads;
    c.computed.assign(layers * heads, 0);
    c.skipped.assign(layers * heads, 0);
  }
  greedy_tokens.assign(n, -1);
  if (candidates.size() < n) candidates.resize(n);
  logits_row.assign(n, -1);
  candidates_row.assign(n, -1);
}

std::unique_ptr<Engine::StepBatch> Engine::TakeBatch() {
  std::unique_ptr<StepBatch> batch =
      spare_ != nullptr ? std::move(spare_) : std::make_unique<StepBatch>();
  batch->plan = ScheduleResult();
  batch->items.clear();
  batch->phases.clear();
  batch->returned_rows = batch->candidate_rows = 0;
  batch->stats = StepStats();
  batch->launched = false;
  return batch;
}

void Engine::BuildBatch(StepBatch* batch) {
  const models::FoxConfig& config = backend_->config();
  const auto t_schedule = profile_.Start();
  batch->plan = scheduler_.Schedule();
  profile_.Add("schedule", t_schedule);
  const ScheduleResult& plan = batch->plan;
  StepStats& stats = batch->stats;
  stats.num_preempted = static_cast<int64_t>(plan.preempted.size());
  for (Sequence* seq : plan.preempted) {  // their pages, evicted ones included, were released
    evicted_pages_ -= seq->evicted_pages;
    seq->evicted_pages = 0;
  }
  stats.num_batched_tokens = plan.num_batched_tokens;

  const size_t n = plan.chunks.size();
  batch->Size(n, config.num_hidden_layers, config.num_heads);
  for (size_t i = 0; i < n; ++i) {
    const ScheduledChunk& chunk = plan.chunks[i];
    Sequence* seq = chunk.sequence;
    models::AcpCounters& counters = batch->counters[i];
    const bool decode = chunk.num_tokens == 1 && seq->num_computed() == seq->num_tokens() - 1 &&
                        seq->num_generated() > 0;
    batch->phases.push_back(decode ? AcpPhase::kDecode : AcpPhase::kPrefill);
    (decode ? stats.num_decode_tokens : stats.num_prefill_tokens) += chunk.num_tokens;
    models::ForwardItem item;
    item.state = seq->kv.get();
    item.tokens = absl::MakeConstSpan(seq->tokens).subspan(seq->num_computed(), chunk.num_tokens);
    item.all_logits = false;
    item.acp_counters = &counters;
    // Logits come to the host only when the sampler needs them: a chunk that leaves prompt to
    // compute needs none, a plain greedy request without logprobs only their argmax.
    const bool samples = chunk.num_tokens == seq->num_to_compute();
    bool candidates = samples && options_.sample_from_candidates &&
                      seq->sampler.candidates_eligible() && seq->request.logprobs < 0;
    if (candidates && seq->rows_before_candidates > 0) {
      --seq->rows_before_candidates;
      candidates = false;
    }
    if (!samples || (seq->sampler.plain_greedy() && seq->request.logprobs < 0)) {
      item.greedy_token = &batch->greedy_tokens[i];
    } else if (candidates) {
      // Only the row's most likely tokens come back (a few KB instead of the row).
      item.candidates = &batch->candidates[i];
      item.candidates_inv_temperature = 1.0 / seq->request.sampling.temperature;
      batch->candidates_row[i] = batch->candidate_rows++;
    } else {
      batch->logits_row[i] = batch->returned_rows++;
    }
    batch->items.push_back(item);
  }
}

absl::Status Engine::LaunchBatch(StepBatch* batch) {
  if (batch->items.empty()) return absl::OkStatus();
  const auto t_launch = profile_.Start();
  const absl::Status status = backend_->Launch(batch->items, &logits_);
  profile_.Add("launch", t_launch);
  if (!status.ok()) return status;
  batch->launched = true;
  for (const ScheduledChunk& chunk : batch->plan.chunks) ++chunk.sequence->steps_in_flight;
  return absl::OkStatus();
}

std::unique_ptr<Engine::StepBatch> Engine::LaunchContinuation(const StepBatch& current,
                                                             absl::Status* status) {
  if (!options_.overlap_decode || !backend_->overlaps_steps() || !current.launched) return nullptr;
  // Certain only when the next step would be exactly these sequences, one greedy token more:
  // every running sequence is in this step, each is a plain greedy decode held by this step
  // alone that stays short of max_new_tokens, the pool has the pages, and no waiting request
  // could be admitted now (the running set is full, or the head of the queue does not fit in
  // what the pool keeps free). A request that becomes admissible when this step's outputs
  // finish a sequence waits one step longer.
  const std::vector<ScheduledChunk>& chunks = current.plan.chunks;
  if (scheduler_.running().size() != chunks.size()) return nullptr;
  const int32_t page_size = backend_->page_size();
  int64_t pages = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const Sequence* seq = chunks[i].sequence;
    if (seq->status != SequenceStatus::kRunning || seq->steps_in_flight != 1 ||
        current.phases[i] != AcpPhase::kDecode || current.items[i].greedy_token == nullptr ||
        seq->num_generated() + 2 > seq->request.max_new_tokens) {
      return nullptr;
    }
    pages += PagesNeeded(*seq->kv, seq->kv->num_tokens + 1, page_size);
  }
  if (pages > blocks_.num_pages_free()) return nullptr;
  if (!scheduler_.waiting().empty() &&
      static_cast<int64_t>(chunks.size()) < scheduler_.config().max_num_seqs) {
    const Sequence* head = scheduler_.waiting().front();
    if (PagesNeeded(*head->kv, head->num_tokens() + 1, page_size) <=
        blocks_.num_pages_free() - pages) {
      return nullptr;  // Schedule would admit it
    }
  }

  std::unique_ptr<StepBatch> next = TakeBatch();
  const models::FoxConfig& config = backend_->config();
  const size_t n = chunks.size();
  next->Size(n, config.num_hidden_layers, config.num_heads);
  next->stats.num_batched_tokens = static_cast<int64_t>(n);
  next->stats.num_decode_tokens = static_cast<int64_t>(n);
  next->stats.launched_ahead = true;
  next->placeholders.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    Sequence* seq = chunks[i].sequence;
    const absl::Status reserved =
        ReservePages(blocks_, *seq->kv, seq->kv->num_tokens + 1, page_size);
    FOXSERVE_CHECK(reserved.ok()) << reserved;  // counted above
    next->plan.chunks.push_back({seq, 1});
    next->phases.push_back(AcpPhase::kDecode);
    models::ForwardItem item;
    item.state = seq->kv.get();
    item.tokens = absl::MakeConstSpan(&next->placeholders[i], 1);
    item.acp_counters = &next->counters[i];
    item.greedy_token = &next->greedy_tokens[i];
    item.token_from_step_in_flight = true;
    next->items.push_back(item);
  }
  next->plan.num_batched_tokens = static_cast<int64_t>(n);
  *status = LaunchBatch(next.get());
  if (!status->ok()) return nullptr;
  ++overlapped_steps_;
  return next;
}

absl::Status Engine::Step(const std::function<void()>& before_outputs) {
  const Clock::time_point start = Clock::now();
  profile_.CountStep();
  absl::Status status = absl::OkStatus();
  if (in_flight_ == nullptr) {
    in_flight_ = TakeBatch();
    BuildBatch(in_flight_.get());
    status = LaunchBatch(in_flight_.get());
  }
  std::unique_ptr<StepBatch> current = std::move(in_flight_);
  // Overlapped decode: the next step goes to the device before this one's tokens come back.
  if (status.ok()) in_flight_ = LaunchContinuation(*current, &status);
  if (current->launched) {
    const auto t_forward = profile_.Start();
    const absl::Status finished = backend_->Finish();
    profile_.Add("forward", t_forward);
    if (status.ok()) status = finished;
    for (const ScheduledChunk& chunk : current->plan.chunks) --chunk.sequence->steps_in_flight;
  }
  if (!status.ok()) {
    healthy_ = false;
    Drain();  // a continuation launched before the failure
    AbortAll(absl::UnavailableError(
        absl::StrCat("engine failure; the server cannot serve: ", status.message())));
  }
  CompleteBatch(current.get(), status, start, before_outputs);
  retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                [](const std::unique_ptr<Sequence>& seq) {
                                  return seq->steps_in_flight == 0;
                                }),
                 retired_.end());
  spare_ = std::move(current);
  return status;
}

void Engine::CompleteBatch(StepBatch* batch, const absl::Status& status, Clock::time_point start,
                           const std::function<void()>& before_outputs) {
  const models::FoxConfig& config = backend_->config();
  const int64_t L = config.num_hidden_layers, H = config.num_heads;
  const ScheduleResult& plan = batch->plan;
  StepStats& stats = batch->stats;
  // A sequence that finished (or was aborted) while this step was in flight gets nothing more.
  auto live = [&](size_t i) {
    return plan.chunks[i].sequence->status == SequenceStatus::kRunning;
  };
  if (status.ok() && batch->launched) {
    stats.acp_computed.assign(2 * L * H, 0);
    stats.acp_skipped.assign(2 * L * H, 0);
    for (size_t i = 0; i < plan.chunks.size(); ++i) {
      if (!live(i)) continue;
      const models::AcpCounters& c = batch->counters[i];
      Sequence* seq = plan.chunks[i].sequence;
      seq->acp.Add(c);
      if (options_.evict_dead_pages) {
        const int64_t freed = EvictDeadPages(blocks_, *seq->kv);
        seq->evicted_pages += freed;
        evicted_pages_ += freed;
        stats.num_evicted += freed;
      }
      const size_t base = static_cast<size_t>(batch->phases[i]) * L * H;
      for (int64_t j = 0; j < L * H; ++j) {
        stats.acp_computed[base + j] += c.computed[j];
        stats.acp_skipped[base + j] += c.skipped[j];
      }
    }
  }
  // Reported before outputs go out, so that a client that got its tokens finds them counted.
  stats.num_running = num_running();
  stats.num_waiting = num_waiting();
  stats.kv_pages_used = blocks_.num_pages_used();
  stats.kv_pages_total = blocks_.num_pages_total();
  stats.seconds = SecondsBetween(start, Clock::now());
  if (observer_ != nullptr) observer_->OnStep(stats);
  const auto t_publish = profile_.Start();
  if (before_outputs) before_outputs();
  profile_.Add("publish", t_publish);
  if (!status.ok()) return;
  const int64_t V = config.vocab_size;
  // Every sequence whose prefill is complete gets its token: chosen in parallel (each touches
  // only its own sampler and logits row), then appended and streamed in batch order. A
  // continued step's sequences have their previous token by now.
  const auto t_sample = profile_.Start();
  std::vector<size_t> ready;
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    Sequence* seq = plan.chunks[i].sequence;
    // A prefill that goes on has tokens left to compute; a step's sequence is ready at 0, or at
    // -1 when its next step was launched already (that step's input is this step's token).
    if (live(i) && seq->num_to_compute() <= 0) ready.push_back(i);
  }
  std::vector<TokenChoice> choices(ready.size());
  auto choose = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const size_t i = ready[r];
      Sequence* seq = plan.chunks[i].sequence;
      if (batch->candidates_row[i] >= 0) {
        choices[r] = ChooseToken(seq, absl::Span<float>(), nullptr, &batch->candidates[i]);
      } else if (batch->logits_row[i] < 0) {
        choices[r] = ChooseToken(seq, absl::Span<float>(), &batch->greedy_tokens[i]);
      } else {
        choices[r] = ChooseToken(
            seq, absl::MakeSpan(logits_).subspan(batch->logits_row[i] * V, V), nullptr);
      }
    }
  };
  if (batch->returned_rows + batch->candidate_rows > 1) {
    sampling_pool_->ParallelFor(static_cast<int64_t>(ready.size()), 1, choose);
  } else {
    choose(0, static_cast<int64_t>(ready.size()));
  }
  // Requests whose filters reached past their candidates choose from the whole row, which the
  // backend still holds: fetched one at a time (the backend is not thread-safe), then chosen
  // in parallel like returned rows.
  std::vector<size_t> again;
  int64_t served = 0;  // tokens drawn from their candidates (not rows that were not finite)
  for (size_t r = 0; r < ready.size(); ++r) {
    if (!choices[r].needs_row) {
      if (batch->candidates_row[ready[r]] >= 0 && choices[r].finite) ++served;
      continue;
    }
    const size_t i = ready[r];
    plan.chunks[i].sequence->rows_before_candidates = kRowsAfterCandidateMiss;
    if (missed_rows_.size() <= again.size()) missed_rows_.resize(again.size() + 1);
    const absl::Status fetched =
        backend_->CandidateRow(batch->candidates_row[i], &missed_rows_[again.size()]);
    if (!fetched.ok()) {
      choices[r] = TokenChoice();
      choices[r].error = fetched;
      continue;
    }
    again.push_back(r);
  }
  // (ParallelFor runs a single item on this thread.)
  sampling_pool_->ParallelFor(
      static_cast<int64_t>(again.size()), 1, [&](int64_t begin, int64_t end) {
        for (int64_t j = begin; j < end; ++j) {
          const size_t r = again[j];
          choices[r] = ChooseToken(plan.chunks[ready[r]].sequence,
                                   absl::MakeSpan(missed_rows_[j]), nullptr);
        }
      });
  profile_.Add("sample", t_sample);
  if (observer_ != nullptr && batch->candidate_rows > 0) {
    observer_->OnCandidateSampling(served, static_cast<int64_t>(again.size()));
  }
  for (size_t r = 0; r < ready.size(); ++r) {
    Advance(plan.chunks[ready[r]].sequence, std::move(choices[r]));
  }
}

}  // namespace engine
}  // namespace foxserve
