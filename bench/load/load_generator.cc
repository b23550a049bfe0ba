// fox_load: a gRPC load generator for foxserve (streaming GenerateStream requests).
//
//   fox_load --server HOST:PORT [--mode closed|open] [--concurrency N] [--rate R]
//            [--requests N | --duration S] [--prompt-tokens A[:B]] [--new-tokens A[:B]]
//            [--seed S] [--csv FILE] [--json FILE] [--timeout S]
//            [--temperature T [--top-k K] [--top-p P]]
//
// closed: N clients, each sends its next request when the previous one ends.
// open:   requests arrive as a Poisson process of rate R per second, whatever is in flight.
// Prompts are random token ids (lengths uniform in [A, B]); generation ignores EOS, so every
// request produces exactly its new-token count unless it fails. Prints a progress bar, then
// throughput in generated tokens/s, time to first token and inter-token latency percentiles,
// and error counts by gRPC code; --csv writes one row per request (with its seed and a hash of
// its generated ids, to compare greedy outputs between runs), --json the summary. Greedy by
// default; with --temperature each request samples, seeded with its own seed.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "foxserve/v1/generation.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace foxserve {
namespace {

using Clock = std::chrono::steady_clock;

struct Range {
  int64_t lo = 0, hi = 0;
};

bool ParseRange(const std::string& text, Range* r) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  if (parts.empty() || parts.size() > 2 || !absl::SimpleAtoi(parts[0], &r->lo)) return false;
  r->hi = r->lo;
  return parts.size() == 1 || (absl::SimpleAtoi(parts[1], &r->hi) && r->hi >= r->lo);
}

struct Options {
  std::string server = "127.0.0.1:50051";
  std::string mode = "closed";
  int concurrency = 8;
  double rate = 4.0;
  int64_t requests = 64;
  double duration = 0;
  Range prompt{128, 128};
  Range new_tokens{64, 64};
  uint64_t seed = 1;
  double timeout = 600;
  std::string csv, json;
  double temperature = 0;  // 0: greedy
  int32_t top_k = 0;
  double top_p = 1.0;
};

struct Record {
  double start = 0;     // seconds since the run began
  double ttft = -1;     // seconds, -1 when no token arrived
  std::vector<double> itl;
  int64_t prompt_tokens = 0;
  int64_t tokens = 0;
  std::string code = "OK";
  double end = 0;
  uint64_t seed = 0;               // the request's prompt and lengths follow from it
  uint64_t tokens_fnv1a = 14695981039346656037ull;  // hash of the generated ids, in order
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const double idx = p / 100.0 * (v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(idx)), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - lo);
}

const char* CodeName(grpc::StatusCode c) {
  static const char* names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                                "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                                "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int i = static_cast<int>(c);
  return i >= 0 && i < 17 ? names[i] : "UNKNOWN";
}

class Runner {
 public:
  Runner(const Options& o, int32_t vocab)
      : o_(o), vocab_(vocab), start_(Clock::now()),
        channel_(grpc::CreateChannel(o.server, grpc::InsecureChannelCredentials())),
        stub_(v1::Generation::NewStub(channel_)) {}

  void Send(uint64_t seed) {
    std::mt19937_64 rng(seed);
    Record r;
    r.seed = seed;
    r.start = Now();
    const int64_t prompt = Uniform(o_.prompt, rng), new_tokens = Uniform(o_.new_tokens, rng);
    v1::GenerateRequest req;
    for (int64_t i = 0; i < prompt; ++i) {
      req.mutable_token_ids()->add_ids(static_cast<int32_t>(1 + rng() % (vocab_ - 1)));
    }
    req.set_max_new_tokens(static_cast<uint32_t>(new_tokens));
    req.set_ignore_eos(true);
    if (o_.temperature > 0) {
      v1::SamplingParameters* s = req.mutable_sampling();
      s->set_temperature(static_cast<float>(o_.temperature));
      s->set_top_k(o_.top_k);
      if (o_.top_p < 1.0) s->set_top_p(static_cast<float>(o_.top_p));
      s->set_seed(seed);
    }
    r.prompt_tokens = prompt;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(o_.timeout * 1000)));
    auto reader = stub_->GenerateStream(&ctx, req);
    v1::GenerateStreamResponse m;
    double last = r.start;
    while (reader->Read(&m)) {
      const double now = Now();
      if (m.token_ids_size() > 0) {
        if (r.ttft < 0) {
          r.ttft = now - r.start;
        } else {
          // A merged message carries several tokens: spread the gap over them.
          for (int i = 0; i < m.token_ids_size(); ++i) r.itl.push_back((now - last) / m.token_ids_size());
        }
        last = now;
        r.tokens += m.token_ids_size();
        // Greedy runs with the same seed must produce the same ids (ACP on against off).
        for (int32_t id : m.token_ids()) {
          for (int b = 0; b < 4; ++b) {
            r.tokens_fnv1a = (r.tokens_fnv1a ^ ((static_cast<uint32_t>(id) >> (8 * b)) & 0xff)) *
                             1099511628211ull;
          }
        }
      }
    }
    r.code = CodeName(reader->Finish().error_code());
    r.end = Now();
    std::lock_guard<std::mutex> lock(mu_);
    records_.push_back(std::move(r));
  }

  double Now() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  size_t done() {
    std::lock_guard<std::mutex> lock(mu_);
    return records_.size();
  }
  std::vector<Record> records() {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }

 private:
  static int64_t Uniform(const Range& r, std::mt19937_64& rng) {
    return r.lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(r.hi - r.lo + 1));
  }
  const Options& o_;
  int32_t vocab_;
  Clock::time_point start_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> stub_;
  std::mutex mu_;
  std::vector<Record> records_;
};

void Progress(size_t done, size_t total, double seconds) {
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * done / total) : 0;
  std::fprintf(stderr, "\r[%s%s] %zu/%zu requests %.1f s", std::string(filled, '#').c_str(),
               std::string(width - filled, '.').c_str(), done, total, seconds);
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i], v = argv[i + 1];
    bool ok = true;
    if (f == "--server") o.server = v;
    else if (f == "--mode") o.mode = v;
    else if (f == "--concurrency") ok = absl::SimpleAtoi(v, &o.concurrency);
    else if (f == "--rate") ok = absl::SimpleAtod(v, &o.rate);
    else if (f == "--requests") ok = absl::SimpleAtoi(v, &o.requests);
    else if (f == "--duration") ok = absl::SimpleAtod(v, &o.duration);
    else if (f == "--prompt-tokens") ok = ParseRange(v, &o.prompt);
    else if (f == "--new-tokens") ok = ParseRange(v, &o.new_tokens);
    else if (f == "--seed") ok = absl::SimpleAtoi(v, &o.seed);
    else if (f == "--timeout") ok = absl::SimpleAtod(v, &o.timeout);
    else if (f == "--csv") o.csv = v;
    else if (f == "--temperature") ok = absl::SimpleAtod(v, &o.temperature) && o.temperature >= 0;
    else if (f == "--top-k") ok = absl::SimpleAtoi(v, &o.top_k) && o.top_k >= 0;
    else if (f == "--top-p") ok = absl::SimpleAtod(v, &o.top_p) && o.top_p > 0 && o.top_p <= 1;
    else if (f == "--json") o.json = v;
    else ok = false;
    if (!ok) {
      std::fprintf(stderr, "fox_load: bad flag %s %s\n", f.c_str(), v.c_str());
      return 2;
    }
  }
  // The vocabulary bounds the random prompts.
  int32_t vocab = 0;
  {
    auto stub = v1::Generation::NewStub(grpc::CreateChannel(o.server, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ModelInfo info;
    const grpc::Status s = stub->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info);
    if (!s.ok()) {
      std::fprintf(stderr, "fox_load: GetModelInfo: %s: %s\n", CodeName(s.error_code()),
                   s.error_message().c_str());
      return 1;
    }
    vocab = static_cast<int32_t>(info.vocab_size());
  }
  Runner runner(o, vocab);
  std::vector<std::thread> threads;
  std::atomic<uint64_t> next{0};
  const uint64_t total = o.duration > 0 ? UINT64_MAX : static_cast<uint64_t>(o.requests);
  auto more = [&](uint64_t i) { return i < total && (o.duration <= 0 || runner.Now() < o.duration); };
  if (o.mode == "closed") {
    for (int c = 0; c < o.concurrency; ++c) {
      threads.emplace_back([&] {
        for (uint64_t i = next++; more(i); i = next++) runner.Send(o.seed * 1000003 + i);
      });
    }
  } else if (o.mode == "open") {
    threads.emplace_back([&] {
      std::mt19937_64 rng(o.seed);
      std::exponential_distribution<double> gap(o.rate);
      std::vector<std::thread> inflight;
      double at = 0;
      for (uint64_t i = 0; more(i); ++i) {
        at += gap(rng);
        std::this_thread::sleep_until(Clock::now() + std::chrono::duration<double>(at - runner.Now()));
        inflight.emplace_back([&runner, &o, i] { runner.Send(o.seed * 1000003 + i); });
      }
      for (auto& t : inflight) t.join();
    });
  } else {
    std::fprintf(stderr, "fox_load: --mode must be closed or open\n");
    return 2;
  }
  std::atomic<bool> finished{false};
  std::thread progress([&] {
    while (!finished) {
      Progress(runner.done(), o.duration > 0 ? runner.done() : total, runner.Now());
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  });
  for (auto& t : threads) t.join();
  // Before joining the progress thread, which may sleep up to half a second more: the wall time
  // is the workload's, not the progress bar's (it quantized every run to 0.5 s).
  const double wall = runner.Now();
  finished = true;
  progress.join();
  Progress(runner.done(), runner.done(), wall);
  std::fprintf(stderr, "\n");

  const std::vector<Record> records = runner.records();
  std::vector<double> ttft, itl;
  std::map<std::string, int> codes;
  int64_t tokens = 0, prompt_tokens = 0;
  for (const Record& r : records) {
    ++codes[r.code];
    tokens += r.tokens;
    prompt_tokens += r.prompt_tokens;
    if (r.ttft >= 0) ttft.push_back(r.ttft);
    itl.insert(itl.end(), r.itl.begin(), r.itl.end());
  }
  const double tps = tokens / wall;
  std::printf("requests %zu in %.2f s (%s%s)\n", records.size(), wall, o.mode.c_str(),
              o.mode == "closed" ? absl::StrFormat(", concurrency %d", o.concurrency).c_str()
                                 : absl::StrFormat(", rate %.2f/s", o.rate).c_str());
  std::printf("generated tokens/s %.1f  prompt tokens/s %.1f\n", tps, prompt_tokens / wall);
  std::printf("TTFT ms  p50 %.1f  p90 %.1f  p99 %.1f\n", 1e3 * Percentile(ttft, 50),
              1e3 * Percentile(ttft, 90), 1e3 * Percentile(ttft, 99));
  std::printf("ITL ms   p50 %.2f  p90 %.2f  p99 %.2f\n", 1e3 * Percentile(itl, 50),
              1e3 * Percentile(itl, 90), 1e3 * Percentile(itl, 99));
  std::printf("status");
  for (const auto& [code, n] : codes) std::printf("  %s %d", code.c_str(), n);
  std::printf("\n");
  if (!o.csv.empty()) {
    std::ofstream csv(o.csv);
    csv << "seed,start_s,end_s,prompt_tokens,generated_tokens,ttft_s,mean_itl_s,code,tokens_fnv1a\n";
    for (const Record& r : records) {
      double mean = 0;
      for (double x : r.itl) mean += x;
      csv << r.seed << "," << r.start << "," << r.end << "," << r.prompt_tokens << "," << r.tokens << "," << r.ttft
          << "," << (r.itl.empty() ? 0.0 : mean / r.itl.size()) << "," << r.code << "," << absl::StrFormat("%016x", r.tokens_fnv1a) << "\n";
    }
  }
  if (!o.json.empty()) {
    std::ofstream json(o.json);
    json << absl::StrFormat(
        "{\"mode\": \"%s\", \"concurrency\": %d, \"rate\": %g, \"requests\": %d, \"seconds\": %.3f, "
        "\"generated_tokens_per_s\": %.2f, \"ttft_ms\": {\"p50\": %.2f, \"p90\": %.2f, \"p99\": %.2f}, "
        "\"itl_ms\": {\"p50\": %.3f, \"p90\": %.3f, \"p99\": %.3f}, \"errors\": %d}\n",
        o.mode, o.concurrency, o.rate, static_cast<int>(records.size()), wall, tps,
        1e3 * Percentile(ttft, 50), 1e3 * Percentile(ttft, 90), 1e3 * Percentile(ttft, 99),
        1e3 * Percentile(itl, 50), 1e3 * Percentile(itl, 90), 1e3 * Percentile(itl, 99),
        static_cast<int>(records.size()) - codes["OK"]);
  }
  return codes["OK"] == static_cast<int>(records.size()) ? 0 : 1;
}

}  // namespace
}  // namespace foxserve

int main(int argc, char** argv) { return foxserve::Main(argc, argv); }
