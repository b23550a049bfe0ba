// Prefill and decode throughput of the engine on a backend, ACP on and off, as a table.
//
//   engine_bench [--device cpu|cuda] [--model DIR,...] [--prompt-tokens N] [--decode-tokens N]
//                [--batch B] [--threads T] [--repeats R]
//
// Prefill: one sequence of N random tokens, one chunk. Decode: B sequences advanced together,
// one token each per step, after a prompt of N tokens. Times are the median of R repeats.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/backend_factory.h"
#include "engine/kv_block_manager.h"
#include "engine/sequence_runner.h"
#include "models/status_macros.h"
#include "server/command_line.h"

namespace foxserve {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Result {
  double prefill_tokens_per_s = 0;
  double decode_tokens_per_s = 0;
  double skipped_ratio = 0;
};

absl::StatusOr<Result> Measure(const std::string& device, const std::string& model_dir, bool acp,
                               int64_t prompt, int64_t decode, int64_t batch, int threads,
                               int repeats) {
  engine::BackendOptions options;
  options.device = device;
  options.num_threads = threads;
  options.acp.enabled = acp;
  FOXSERVE_ASSIGN_OR_RETURN(models::FoxConfig config, models::LoadFoxConfig(model_dir));
  const int64_t total = prompt + decode;
  options.num_pages = batch * config.num_hidden_layers * config.num_heads * (total / 64 + 2);
  FOXSERVE_ASSIGN_OR_RETURN(auto backend, engine::LoadBackend(model_dir, options));
  engine::KvBlockManager blocks(backend->num_pages());
  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(config.vocab_size - 1));
  std::vector<int32_t> ids(prompt);
  for (int32_t& t : ids) t = token(rng);

  Result result;
  std::vector<double> prefill_times, decode_times;
  for (int r = 0; r < repeats; ++r) {
    {
      engine::SequenceRunner runner(backend.get(), &blocks, total);
      const auto t0 = Clock::now();
      FOXSERVE_RETURN_IF_ERROR(runner.Feed(ids, false).status());
      prefill_times.push_back(Seconds(t0, Clock::now()));
      const auto& c = runner.acp_counters();
      result.skipped_ratio = static_cast<double>(c.total_skipped()) /
                             std::max<uint64_t>(1, c.total_computed() + c.total_skipped());
    }
    std::vector<std::unique_ptr<models::SequenceKvState>> states;
    for (int64_t b = 0; b < batch; ++b) {
      states.push_back(backend->NewSequenceState(total));
      FOXSERVE_RETURN_IF_ERROR(engine::ReservePages(blocks, *states.back(), total, backend->page_size()));
      std::vector<float> logits;
      FOXSERVE_RETURN_IF_ERROR(backend->Forward({{states.back().get(), ids, false, nullptr}}, &logits));
    }
    std::vector<int32_t> next(batch);
    std::vector<float> logits;
    const auto t0 = Clock::now();
    for (int64_t step = 0; step < decode; ++step) {
      std::vector<models::ForwardItem> items;
      for (int64_t b = 0; b < batch; ++b) {
        next[b] = token(rng);
        items.push_back({states[b].get(), absl::MakeConstSpan(&next[b], 1), false, nullptr});
      }
      FOXSERVE_RETURN_IF_ERROR(backend->Forward(items, &logits));
    }
    decode_times.push_back(Seconds(t0, Clock::now()));
    for (auto& s : states) engine::ReleasePages(blocks, *s);
  }
  result.prefill_tokens_per_s = prompt / Median(prefill_times);
  result.decode_tokens_per_s = decode * batch / Median(decode_times);
  return result;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto cl = server::CommandLine::Parse(
      args, {"device", "model", "prompt-tokens", "decode-tokens", "batch", "threads", "repeats"});
  if (!cl.ok()) {
    std::fprintf(stderr, "%s\n", cl.status().ToString().c_str());
    return 2;
  }
  std::vector<std::string> models = {"tests/data/golden/fox-pro-tiny",
                                     "tests/data/golden/fox-llama-tiny"};
  if (cl->Has("model")) models = absl::StrSplit(*cl->Get("model"), ',');
  const int64_t prompt = cl->Int("prompt-tokens", 2048, 1, 1 << 20).value_or(2048);
  const int64_t decode = cl->Int("decode-tokens", 64, 1, 1 << 20).value_or(64);
  const int64_t batch = cl->Int("batch", 8, 1, 4096).value_or(8);
  const int threads = static_cast<int>(cl->Int("threads", 0, 0, 1024).value_or(0));
  const int repeats = static_cast<int>(cl->Int("repeats", 3, 1, 100).value_or(3));
  const std::string device = cl->GetOr("device", "cpu");
  std::printf("device %s\n", device.c_str());
  std::printf("%-34s %-4s %10s %14s %14s %12s\n", "model", "acp", "prompt", "prefill tok/s",
              "decode tok/s", "skipped");
  for (const std::string& model : models) {
    double dense_prefill = 0, dense_decode = 0;
    for (bool acp : {false, true}) {
      auto r = Measure(device, model, acp, prompt, decode, batch, threads, repeats);
      if (!r.ok()) {
        std::fprintf(stderr, "%s: %s\n", model.c_str(), r.status().ToString().c_str());
        return 1;
      }
      std::printf("%-34s %-4s %10lld %14.0f %14.1f %11.1f%%\n", model.c_str(), acp ? "on" : "off",
                  static_cast<long long>(prompt), r->prefill_tokens_per_s, r->decode_tokens_per_s,
                  100 * r->skipped_ratio);
      if (!acp) {
        dense_prefill = r->prefill_tokens_per_s;
        dense_decode = r->decode_tokens_per_s;
      } else {
        std::printf("%-34s %-4s %10s %13.2fx %13.2fx\n", "", "on/off", "",
                    r->prefill_tokens_per_s / dense_prefill, r->decode_tokens_per_s / dense_decode);
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace foxserve

int main(int argc, char** argv) { return foxserve::Main(argc, argv); }
