// How many long sequences fit a fixed KV budget, with ACP eviction off and on (issue 6), and the
// decode throughput they reach. Runs the engine (scheduler, paged cache, eviction) directly.
//
//   capacity_bench --model DIR [--device cpu|cuda|auto] [--prompt-tokens 16384] [--new-tokens 64]
//                  [--requests 16] [--kv-bytes BYTES] [--max-batch-tokens 16384]
//
// All requests are submitted at once; the scheduler admits what the pool holds (a request needs
// pages for its whole prompt) and preempts when growth runs dry. Reported per mode: the most
// sequences running at once, the mean while decoding, decode tokens/s, preemptions, evicted pages.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "engine/backend_factory.h"
#include "engine/engine.h"

namespace foxserve {
namespace {

using Clock = std::chrono::steady_clock;

class Observer : public engine::EngineObserver {
 public:
  void OnStep(const engine::StepStats& s) override {
    max_running = std::max(max_running, s.num_running);
    preempted += s.num_preempted;
    evicted += s.num_evicted;
    if (s.num_decode_tokens > 0 && s.num_prefill_tokens == 0) {
      decode_steps += 1;
      decode_tokens += s.num_decode_tokens;
      decode_seconds += s.seconds;
      running_sum += s.num_running;
    }
  }
  int64_t max_running = 0, preempted = 0, evicted = 0, decode_steps = 0, decode_tokens = 0;
  int64_t running_sum = 0;
  double decode_seconds = 0;
};

class NullSink : public engine::RequestSink {
 public:
  void OnOutput(engine::RequestOutput) override {}
};

int Main(int argc, char** argv) {
  std::string model, device = "auto";
  int64_t prompt = 16384, new_tokens = 64, requests = 16, kv_bytes = int64_t{20} << 30;
  int64_t max_batch_tokens = 16384;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i], v = argv[i + 1];
    if (f == "--model") model = v;
    else if (f == "--device") device = v;
    else if (f == "--prompt-tokens") absl::SimpleAtoi(v, &prompt);
    else if (f == "--new-tokens") absl::SimpleAtoi(v, &new_tokens);
    else if (f == "--requests") absl::SimpleAtoi(v, &requests);
    else if (f == "--kv-bytes") absl::SimpleAtoi(v, &kv_bytes);
    else if (f == "--max-batch-tokens") absl::SimpleAtoi(v, &max_batch_tokens);
  }
  std::printf("%-6s %10s %12s %12s %14s %12s %12s\n", "evict", "max seqs", "mean decode",
              "decode tok/s", "preemptions", "evicted", "seconds");
  for (bool evict : {false, true}) {
    engine::BackendOptions bo;
    bo.device = device;
    bo.kv_cache_bytes = kv_bytes;
    auto backend = engine::LoadBackend(model, bo);
    if (!backend.ok()) {
      std::fprintf(stderr, "%s\n", backend.status().ToString().c_str());
      return 1;
    }
    Observer observer;
    engine::EngineOptions eo;
    eo.scheduler.max_num_seqs = 256;
    eo.scheduler.max_batch_tokens = max_batch_tokens;
    eo.max_model_len = prompt + new_tokens;
    eo.evict_dead_pages = evict;
    engine::Engine e(backend->get(), nullptr, eo, &observer);
    std::mt19937 rng(5);
    const int32_t vocab = static_cast<int32_t>((*backend)->config().vocab_size);
    for (int64_t r = 0; r < requests; ++r) {
      engine::GenerationRequest req;
      for (int64_t t = 0; t < prompt; ++t) req.prompt.push_back(1 + rng() % (vocab - 1));
      req.max_new_tokens = new_tokens;
      req.ignore_eos = true;
      if (absl::Status s = e.Add(r + 1, std::move(req), std::make_shared<NullSink>()); !s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        return 1;
      }
    }
    const auto t0 = Clock::now();
    while (e.has_work()) {
      if (absl::Status s = e.Step(); !s.ok()) {
        std::fprintf(stderr, "%s\n", s.ToString().c_str());
        return 1;
      }
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("%-6s %10lld %12.1f %12.1f %14lld %12lld %12.1f\n", evict ? "on" : "off",
                static_cast<long long>(observer.max_running),
                observer.decode_steps ? static_cast<double>(observer.running_sum) / observer.decode_steps : 0.0,
                observer.decode_seconds > 0 ? observer.decode_tokens / observer.decode_seconds : 0.0,
                static_cast<long long>(observer.preempted), static_cast<long long>(observer.evicted),
                seconds);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace foxserve

int main(int argc, char** argv) { return foxserve::Main(argc, argv); }
