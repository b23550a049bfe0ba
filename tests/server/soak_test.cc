// Soak (issue 9, goal G5): the foxserve binary under random concurrent load for a bounded time,
// with cancellations, deadlines, malformed and oversize requests, unparsable bytes and clients
// killed mid-stream, on a KV pool small enough to force preemption. Asserts:
//   - no crash (the process lives and stays SERVING), and every request ends with a status from
//     its scenario's allowed set (a safety deadline catches hangs);
//   - after the load: no KV block in use, nothing queued, running or in flight;
//   - RSS growth from the end of the warm-up to the end below a stated bound, and no descriptor
//     left open;
//   - the metrics' request totals consistent with what the clients saw;
//   - the log never contains prompt text.
// Prints (and writes to <build>/soak_summary.txt) the figures recorded in bench/RESULTS.md.
//
// Bounds (environment): FOXSERVE_SOAK_SECONDS (default 60), FOXSERVE_SOAK_CLIENTS (default 16),
// FOXSERVE_SOAK_RSS_BOUND_MB (default 32; not checked under sanitizers, whose allocators keep
// freed memory in quarantine). The documented long run:
//   FOXSERVE_SOAK_SECONDS=1800 FOXSERVE_SOAK_CLIENTS=64 ctest -R soak_test --timeout 2400
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "foxserve/v1/generation.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "tests/support/grpc_test_util.h"
#include "tests/support/model_fixture.h"
#include "tests/support/server_process.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kMarker[] = "SOAK-PROMPT-MARKER";
constexpr int kMaxModelLen = 512;
constexpr int kMaxReceiveBytes = 256 << 10;
constexpr int kSafetySeconds = 120;  // a call still open after this has hung

double EnvDouble(const char* name, double fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atof(v) : fallback;
}

bool SanitizerBuild() {
#if defined(FOXSERVE_SANITIZER_BUILD) || defined(__SANITIZE_ADDRESS__) || \
    defined(__SANITIZE_THREAD__)
  return true;
#else
  return false;
#endif
}

enum class Scenario {
  kStream,       // to completion
  kUnary,        // to completion
  kCancel,       // client cancels mid-stream
  kDeadline,     // short deadline
  kMalformed,    // INVALID_ARGUMENT
  kOversizeIds,  // prompt longer than max_model_len: INVALID_ARGUMENT
  kOversizeBytes,  // message beyond --max-receive-bytes: the library's RESOURCE_EXHAUSTED
  kGarbage,      // unparsable bytes: INVALID_ARGUMENT "request: ..." from the service
  kKilledClient,   // foxserve-cli SIGKILLed mid-stream
  kOther,        // Tokenize / Detokenize / GetModelInfo / Health
};

const char* ScenarioName(Scenario s) {
  switch (s) {
    case Scenario::kStream: return "stream";
    case Scenario::kUnary: return "unary";
    case Scenario::kCancel: return "cancel";
    case Scenario::kDeadline: return "deadline";
    case Scenario::kMalformed: return "malformed";
    case Scenario::kOversizeIds: return "oversize_ids";
    case Scenario::kOversizeBytes: return "oversize_bytes";
    case Scenario::kGarbage: return "garbage";
    case Scenario::kKilledClient: return "killed_client";
    case Scenario::kOther: return "other";
  }
  return "?";
}

// What the clients saw.
struct Tally {
  std::mutex mu;
  std::map<std::string, int64_t> by_scenario;          // scenario -> calls
  std::map<grpc::StatusCode, int64_t> generation_codes;  // Generate/GenerateStream reaching the service
  int64_t library_rejected = 0;  // oversize messages: refused by gRPC, never reach the service
  int64_t killed_clients = 0;
  int64_t completion_tokens_seen = 0;  // tokens in OK responses
  std::vector<std::string> violations;

  void Violation(const std::string& v) {
    std::lock_guard<std::mutex> lock(mu);
    if (violations.size() < 50) violations.push_back(v);
  }
};

class SoakClient {
 public:
  SoakClient(int index, std::shared_ptr<grpc::Channel> channel, Tally* tally,
             const std::string& corpus, int port)
      : rng_(0x5eed0000u + index),
        channel_(std::move(channel)),
        stub_(v1::Generation::NewStub(channel_)),
        tally_(tally),
        corpus_(corpus),
        port_(port) {}

  void RunUntil(Clock::time_point end) {
    while (Clock::now() < end) RunOne();
  }

 private:
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  Scenario Pick() {
    const int r = Uniform(0, 999);
    if (r < 280) return Scenario::kStream;
    if (r < 430) return Scenario::kUnary;
    if (r < 540) return Scenario::kCancel;
    if (r < 620) return Scenario::kDeadline;
    if (r < 760) return Scenario::kMalformed;
    if (r < 800) return Scenario::kOversizeIds;
    if (r < 830) return Scenario::kOversizeBytes;
    if (r < 870) return Scenario::kGarbage;
    if (r < 885) return Scenario::kKilledClient;
    return Scenario::kOther;
  }

  // A valid request: a text prompt (with the marker) or token ids, random sampling.
  v1::GenerateRequest Valid() {
    v1::GenerateRequest r;
    if (Chance(0.5)) {
      const int begin = Uniform(0, static_cast<int>(corpus_.size()) - 400);
      r.set_text(absl::StrCat(corpus_.substr(begin, Uniform(5, 300)), " ", kMarker));
    } else {
      for (int i = Uniform(1, 200); i > 0; --i) r.mutable_token_ids()->add_ids(Uniform(3, 511));
    }
    r.set_max_new_tokens(Uniform(1, 64));
    r.set_ignore_eos(Chance(0.7));
    if (Chance(0.5)) {
      auto* s = r.mutable_sampling();
      s->set_temperature(std::uniform_real_distribution<float>(0.1f, 1.5f)(rng_));
      if (Chance(0.5)) s->set_top_p(std::uniform_real_distribution<float>(0.5f, 1.0f)(rng_));
      if (Chance(0.5)) s->set_top_k(Uniform(0, 50));
      if (Chance(0.3)) s->set_min_p(0.05f);
      if (Chance(0.3)) s->set_repetition_penalty(1.2f);
      if (Chance(0.5)) s->set_seed(rng_());
    }
    if (Chance(0.2)) r.add_stop(Chance(0.5) ? "\n" : "the");
    if (Chance(0.2)) r.set_logprobs(Uniform(0, 5));
    if (Chance(0.3)) r.set_request_id(absl::StrCat("soak-", rng_()));
    return r;
  }

  // An invalid request and the field its message must start with.
  std::pair<v1::GenerateRequest, std::string> Malformed() {
    v1::GenerateRequest r = Valid();
    switch (Uniform(0, 13)) {
      case 0: r.mutable_sampling()->set_temperature(-1); return {r, "temperature"};
      case 1: r.mutable_sampling()->set_top_p(NAN); return {r, "top_p"};
      case 2: r.mutable_sampling()->set_top_k(-5); return {r, "top_k"};
      case 3: r.set_max_new_tokens(0); return {r, "max_new_tokens"};
      case 4: r.clear_prompt(); return {r, "prompt"};
      case 5: r.mutable_token_ids()->add_ids(99999); return {r, "prompt"};
      case 6: r.add_stop(""); return {r, "stop"};
      case 7: r.set_logprobs(50); return {r, "logprobs"};
      case 8: r.set_request_id("bad\nid"); return {r, "request_id"};
      case 9:
        for (int i = 0; i < 17; ++i) r.add_stop(absl::StrCat("s", i));
        return {r, "stop"};
      case 10: r.add_stop_token_ids(100000); return {r, "stop_token_ids"};
      case 11: r.set_max_new_tokens(100000); return {r, "max_new_tokens"};
      case 12: r.mutable_sampling()->set_frequency_penalty(INFINITY); return {r, "frequency_penalty"};
      default: r.set_text(""); return {r, "prompt"};
    }
  }

  void CountGeneration(const grpc::Status& s) {
    std::lock_guard<std::mutex> lock(tally_->mu);
    ++tally_->generation_codes[s.error_code()];
  }

  template <typename Fn>
  void WithContext(Fn fn, int deadline_ms = 0) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     (deadline_ms > 0 ? std::chrono::milliseconds(deadline_ms)
                                      : std::chrono::milliseconds(kSafetySeconds * 1000)));
    fn(&ctx);
  }

  // Runs a stream; returns its status, the tokens it got and the last message.
  grpc::Status Stream(grpc::ClientContext* ctx, const v1::GenerateRequest& r, int cancel_after,
                      int64_t* tokens, v1::GenerateStreamResponse* last) {
    auto reader = stub_->GenerateStream(ctx, r);
    v1::GenerateStreamResponse m;
    int messages = 0;
    *tokens = 0;
    while (reader->Read(&m)) {
      *tokens += m.token_ids_size();
      *last = m;
      if (++messages == cancel_after) ctx->TryCancel();
    }
    return reader->Finish();
  }

  // Sends `r` to one of the two generation methods, chosen at random, and counts the outcome;
  // for scenarios that only look at the status.
  grpc::Status GenerateEitherWay(grpc::ClientContext* ctx, const v1::GenerateRequest& r) {
    grpc::Status s;
    if (Chance(0.5)) {
      v1::GenerateResponse response;
      s = stub_->Generate(ctx, r, &response);
    } else {
      int64_t tokens;
      v1::GenerateStreamResponse last;
      s = Stream(ctx, r, -1, &tokens, &last);
    }
    CountGeneration(s);
    return s;
  }

  void CheckComplete(const std::string& what, const grpc::Status& s, int64_t tokens,
                     v1::FinishReason reason, const v1::Usage& usage, uint32_t max_new) {
    if (s.ok()) {
      if (reason != v1::FINISH_REASON_LENGTH && reason != v1::FINISH_REASON_STOP &&
          reason != v1::FINISH_REASON_EOS) {
        tally_->Violation(absl::StrCat(what, ": OK without a finish reason"));
      }
      if (tokens != usage.completion_tokens() || tokens > max_new) {
        tally_->Violation(absl::StrCat(what, ": ", tokens, " tokens, usage says ",
                                       usage.completion_tokens(), ", max ", max_new));
      }
      std::lock_guard<std::mutex> lock(tally_->mu);
      tally_->completion_tokens_seen += tokens;
    } else if (s.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) {
      tally_->Violation(absl::StrCat(what, ": ", s.error_code(), " ", s.error_message()));
    }
  }

  void RunOne() {
    const Scenario scenario = Pick();
    {
      std::lock_guard<std::mutex> lock(tally_->mu);
      ++tally_->by_scenario[ScenarioName(scenario)];
    }
    switch (scenario) {
      case Scenario::kStream:
        WithContext([&](grpc::ClientContext* ctx) {
          const v1::GenerateRequest r = Valid();
          int64_t tokens;
          v1::GenerateStreamResponse last;
          const grpc::Status s = Stream(ctx, r, -1, &tokens, &last);
          CountGeneration(s);
          CheckComplete("stream", s, tokens, last.finish_reason(), last.usage(), r.max_new_tokens());
        });
        break;
      case Scenario::kUnary:
        WithContext([&](grpc::ClientContext* ctx) {
          const v1::GenerateRequest r = Valid();
          v1::GenerateResponse response;
          const grpc::Status s = stub_->Generate(ctx, r, &response);
          CountGeneration(s);
          CheckComplete("unary", s, response.token_ids_size(), response.finish_reason(),
                        response.usage(), r.max_new_tokens());
        });
        break;
      case Scenario::kCancel:
        WithContext([&](grpc::ClientContext* ctx) {
          v1::GenerateRequest r = Valid();
          r.set_max_new_tokens(Uniform(16, 200));
          int64_t tokens;
          v1::GenerateStreamResponse last;
          const grpc::Status s = Stream(ctx, r, Uniform(1, 4), &tokens, &last);
          CountGeneration(s);
          const auto c = s.error_code();
          if (c != grpc::StatusCode::CANCELLED && c != grpc::StatusCode::OK &&
              c != grpc::StatusCode::RESOURCE_EXHAUSTED && c != grpc::StatusCode::INVALID_ARGUMENT) {
            tally_->Violation(absl::StrCat("cancel: ", c, " ", s.error_message()));
          }
        });
        break;
      case Scenario::kDeadline:
        WithContext(
            [&](grpc::ClientContext* ctx) {
              v1::GenerateRequest r = Valid();
              r.set_max_new_tokens(Uniform(32, 300));
              const grpc::Status s = GenerateEitherWay(ctx, r);
              const auto c = s.error_code();
              if (c != grpc::StatusCode::DEADLINE_EXCEEDED && c != grpc::StatusCode::OK &&
                  c != grpc::StatusCode::RESOURCE_EXHAUSTED &&
                  c != grpc::StatusCode::INVALID_ARGUMENT) {
                tally_->Violation(absl::StrCat("deadline: ", c, " ", s.error_message()));
              }
            },
            Uniform(10, 300));
        break;
      case Scenario::kMalformed:
        WithContext([&](grpc::ClientContext* ctx) {
          auto [r, field] = Malformed();
          const grpc::Status s = GenerateEitherWay(ctx, r);
          if (s.error_code() != grpc::StatusCode::INVALID_ARGUMENT ||
              !absl::StartsWith(s.error_message(), field)) {
            tally_->Violation(absl::StrCat("malformed (", field, "): ", s.error_code(), " ",
                                           s.error_message()));
          }
          if (absl::StrContains(s.error_message(), kMarker)) {
            tally_->Violation("an error message echoes prompt text: " + s.error_message());
          }
        });
        break;
      case Scenario::kOversizeIds:
        WithContext([&](grpc::ClientContext* ctx) {
          v1::GenerateRequest r = Valid();
          r.clear_prompt();
          for (int i = 0; i < kMaxModelLen + Uniform(0, 2000); ++i) {
            r.mutable_token_ids()->add_ids(Uniform(3, 511));
          }
          v1::GenerateResponse response;
          const grpc::Status s = stub_->Generate(ctx, r, &response);
          CountGeneration(s);
          if (s.error_code() != grpc::StatusCode::INVALID_ARGUMENT ||
              !absl::StartsWith(s.error_message(), "prompt")) {
            tally_->Violation(absl::StrCat("oversize ids: ", s.error_code(), " ", s.error_message()));
          }
        });
        break;
      case Scenario::kOversizeBytes:
        WithContext([&](grpc::ClientContext* ctx) {
          v1::GenerateRequest r = Valid();
          r.set_text(std::string(kMaxReceiveBytes + Uniform(1, 100000), 'x') + kMarker);
          v1::GenerateResponse response;
          const grpc::Status s = stub_->Generate(ctx, r, &response);
          std::lock_guard<std::mutex> lock(tally_->mu);
          ++tally_->library_rejected;
          if (s.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED ||
              absl::StrContains(s.error_message(), kMarker)) {
            tally_->violations.push_back(
                absl::StrCat("oversize bytes: ", s.error_code(), " ", s.error_message()));
          }
        });
        break;
      case Scenario::kGarbage:
        WithContext([&](grpc::ClientContext* ctx) {
          // Ten 0xff bytes are a varint too long to be a field tag: never a valid message. Or a
          // well-formed message whose text is not UTF-8 (protobuf refuses it, and logs it).
          std::string bytes;
          if (Chance(0.5)) {
            bytes.assign(10, '\xff');
            for (int i = Uniform(0, 200); i > 0; --i) bytes += static_cast<char>(Uniform(0, 255));
          } else {
            bytes = std::string("\x0a\x05a\xff\xfe") + "b" + "c" + "\x18\x04";
          }
          grpc::GenericStub generic(channel_);
          grpc::CompletionQueue cq;
          grpc::Slice slice(bytes);
          grpc::ByteBuffer request(&slice, 1);
          const char* method = Chance(0.5) ? "/foxserve.v1.Generation/Generate"
                                           : "/foxserve.v1.Generation/GenerateStream";
          grpc::Status s;
          grpc::ByteBuffer response;
          if (absl::EndsWith(method, "/Generate")) {
            auto call = generic.PrepareUnaryCall(ctx, method, request, &cq);
            call->StartCall();
            call->Finish(&response, &s, nullptr);
            void* tag;
            bool ok;
            cq.Next(&tag, &ok);
          } else {
            auto call = generic.PrepareCall(ctx, method, &cq);
            void* tag;
            bool ok;
            call->StartCall(nullptr);
            cq.Next(&tag, &ok);
            call->WriteLast(request, grpc::WriteOptions(), nullptr);
            cq.Next(&tag, &ok);
            call->Read(&response, nullptr);
            cq.Next(&tag, &ok);
            call->Finish(&s, nullptr);
            cq.Next(&tag, &ok);
          }
          cq.Shutdown();
          void* tag;
          bool ok;
          while (cq.Next(&tag, &ok)) {
          }
          CountGeneration(s);
          if (s.error_code() != grpc::StatusCode::INVALID_ARGUMENT ||
              !absl::StartsWith(s.error_message(), "request: ")) {
            tally_->Violation(
                absl::StrCat("garbage to ", method, ": ", s.error_code(), " ", s.error_message()));
          }
        });
        break;
      case Scenario::kKilledClient: {
        ScratchDir dir;
        ChildProcess cli({FOXSERVE_CLI_PATH, "generate", "--server",
                          absl::StrCat("127.0.0.1:", port_), "--stream", "--input-ids",
                          "5,6,7,8,9,10", "--max-new-tokens", "400", "--ignore-eos"},
                         dir.File("cli.log"));
        std::this_thread::sleep_for(std::chrono::milliseconds(Uniform(50, 600)));
        cli.Signal(SIGKILL);
        cli.Wait(10);
        std::lock_guard<std::mutex> lock(tally_->mu);
        ++tally_->killed_clients;
        break;
      }
      case Scenario::kOther:
        WithContext([&](grpc::ClientContext* ctx) {
          grpc::Status s;
          switch (Uniform(0, 2)) {
            case 0: {
              v1::TokenizeRequest req;
              req.set_text(corpus_.substr(Uniform(0, 1000), Uniform(0, 200)));
              v1::TokenizeResponse resp;
              s = stub_->Tokenize(ctx, req, &resp);
              break;
            }
            case 1: {
              v1::DetokenizeRequest req;
              for (int i = Uniform(0, 50); i > 0; --i) req.add_token_ids(Uniform(-5, 600));
              v1::DetokenizeResponse resp;
              s = stub_->Detokenize(ctx, req, &resp);
              if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) s = grpc::Status::OK;
              break;
            }
            default: {
              v1::ModelInfo info;
              s = stub_->GetModelInfo(ctx, v1::GetModelInfoRequest(), &info);
            }
          }
          if (!s.ok()) tally_->Violation(absl::StrCat("other: ", s.error_code(), " ", s.error_message()));
        });
        break;
    }
  }

  std::mt19937_64 rng_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> stub_;
  Tally* tally_;
  const std::string& corpus_;
  int port_;
};

TEST(SoakTest, RandomLoadLeavesNothingBehind) {
  const double seconds = EnvDouble("FOXSERVE_SOAK_SECONDS", 60);
  const int clients = static_cast<int>(EnvDouble("FOXSERVE_SOAK_CLIENTS", 16));
  const double rss_bound_mb = EnvDouble("FOXSERVE_SOAK_RSS_BOUND_MB", 32);

  ScratchDir dir;
  ASSERT_TRUE(MakeTinyModelWithTokenizer(dir.path()));
  // 2 MiB of KV: 63 pages of 64 tokens for 4 (layer, head) streams, i.e. room for a few
  // sequences at a time, while 16 clients ask for many more: sequences are preempted, and a queue
  // of 10 overflows now and then (RESOURCE_EXHAUSTED).
  ServerProcess server(FOXSERVE_SERVER_PATH,
                       {"--model", dir.path(), "--threads", "2", "--max-num-seqs", "8",
                        "--max-batch-tokens", "256", "--max-queued", "10", "--kv-cache-bytes",
                        "2097152", "--max-model-len", std::to_string(kMaxModelLen),
                        "--max-receive-bytes", std::to_string(kMaxReceiveBytes),
                        "--drain-timeout", "5"},
                       dir.File("server.log"));
  ASSERT_TRUE(server.Ready()) << server.Log();
  const int fds_baseline = server.FdCount();
  const double blocks_total = server.Scrape()["foxserve_kv_blocks_capacity"];
  ASSERT_GT(blocks_total, 0);

  const std::string corpus =
      ReadFileOrDie(SourceDir() + "/models/corpus/tinyshakespeare.txt").substr(0, 200000);
  Tally tally;
  const auto start = Clock::now();
  const auto end = start + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  {
    // A few clients share a channel (one HTTP/2 connection), as real frontends do.
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    for (int i = 0; i < (clients + 3) / 4; ++i) channels.push_back(server.Channel());
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; ++i) {
      threads.emplace_back([&, i] {
        SoakClient client(i, channels[i % channels.size()], &tally, corpus, server.port());
        client.RunUntil(end);
      });
    }
    // RSS once warm (a quarter of the way), then its peak while loaded.
    std::this_thread::sleep_until(start + (end - start) / 4);
    const int64_t rss_warm = server.RssBytes();
    int64_t rss_peak = rss_warm;
    while (Clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      rss_peak = std::max(rss_peak, server.RssBytes());
      ASSERT_LT(server.child().Wait(0), 0) << "the server died:\n" << server.Log();
    }
    for (auto& t : threads) t.join();
    const double duration = std::chrono::duration<double>(Clock::now() - start).count();

    // - Nothing left behind once idle.
    std::map<std::string, double> m;
    bool idle = false;
    for (int i = 0; i < 500 && !idle; ++i) {
      m = server.Scrape();
      idle = m["foxserve_kv_blocks_used"] == 0 && m["foxserve_requests_in_flight"] == 0 &&
             m["foxserve_queue_length"] == 0 && m["foxserve_running_sequences"] == 0;
      if (!idle) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const double leaked_blocks = m["foxserve_kv_blocks_used"];
    EXPECT_EQ(leaked_blocks, 0) << "KV blocks still in use after the load";
    EXPECT_EQ(m["foxserve_requests_in_flight"], 0);
    EXPECT_EQ(m["foxserve_queue_length"], 0);
    EXPECT_EQ(m["foxserve_running_sequences"], 0);
    EXPECT_EQ(m["foxserve_engine_healthy"], 1);
    EXPECT_EQ(*HealthCheck(server.Channel()), 1);
    const int64_t rss_end = server.RssBytes();

    // - Every call ended with a status its scenario allows.
    for (const std::string& v : tally.violations) ADD_FAILURE() << v;

    // - Metrics agree with the clients. Every generation call that reached the service is counted
    //   once, when it ends (a killed client's call may or may not have reached it).
    auto code = [&](grpc::StatusCode c) {
      auto it = tally.generation_codes.find(c);
      return it == tally.generation_codes.end() ? int64_t{0} : it->second;
    };
    int64_t reached = 0;
    for (const auto& [code, n] : tally.generation_codes) reached += n;
    const double counted = SumFamily(m, "foxserve_requests_total");
    // A call whose deadline passed before it was sent never reached the service.
    EXPECT_GE(counted, reached - code(grpc::StatusCode::DEADLINE_EXCEEDED));
    EXPECT_LE(counted, reached + tally.killed_clients);
    auto server_count = [&](const std::string& c) {
      double n = 0;
      for (const auto& [key, value] : m) {
        if (key.rfind("foxserve_requests_total{", 0) == 0 &&
            absl::StrContains(key, absl::StrCat("code=\"", c, "\""))) {
          n += value;
        }
      }
      return n;
    };
    EXPECT_GE(server_count("INVALID_ARGUMENT"), code(grpc::StatusCode::INVALID_ARGUMENT));
    EXPECT_LE(server_count("INVALID_ARGUMENT"), code(grpc::StatusCode::INVALID_ARGUMENT) +
                                                    code(grpc::StatusCode::DEADLINE_EXCEEDED));
    const int64_t late = code(grpc::StatusCode::DEADLINE_EXCEEDED) +
                         code(grpc::StatusCode::CANCELLED) + tally.killed_clients;
    EXPECT_GE(server_count("OK"), code(grpc::StatusCode::OK));
    EXPECT_LE(server_count("OK"), code(grpc::StatusCode::OK) + late);
    EXPECT_GE(server_count("RESOURCE_EXHAUSTED"), code(grpc::StatusCode::RESOURCE_EXHAUSTED));
    EXPECT_LE(server_count("RESOURCE_EXHAUSTED"), code(grpc::StatusCode::RESOURCE_EXHAUSTED) +
                                                      code(grpc::StatusCode::DEADLINE_EXCEEDED) +
                                                      tally.killed_clients);
    for (const char* never : {"UNKNOWN", "INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED"}) {
      EXPECT_EQ(server_count(never), 0) << never;
    }
    EXPECT_GE(m["foxserve_generated_tokens_total"], tally.completion_tokens_seen);
    EXPECT_GT(m["foxserve_preemptions_total"], 0) << "the KV pool was meant to run dry";

    // - Memory and descriptors.
    const double rss_delta_mb = (rss_end - rss_warm) / 1048576.0;
    if (SanitizerBuild()) {
      std::printf("soak: RSS bound not checked under sanitizers\n");
    } else {
      EXPECT_LT(rss_delta_mb, rss_bound_mb) << "RSS grew from " << rss_warm << " to " << rss_end;
    }
    channels.clear();
    int fds_end = server.FdCount();
    for (int i = 0; i < 300 && fds_end > fds_baseline + 2; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      fds_end = server.FdCount();
    }
    EXPECT_LE(fds_end, fds_baseline + 2) << "descriptors left open";

    // - The exposition passes Prometheus' own linter (G12), when promtool is installed.
    if (RunCommand("command -v promtool > /dev/null").exit_code == 0) {
      auto body = HttpGet(server.metrics_port(), "/metrics");
      ASSERT_TRUE(body.ok()) << body.status();
      WriteFileOrDie(dir.File("metrics.txt"), *body);
      const auto lint = RunCommand("promtool check metrics < " + ShellQuote(dir.File("metrics.txt")),
                                   /*merge_stderr=*/true);
      EXPECT_EQ(lint.exit_code, 0) << "promtool check metrics:\n" << lint.output;
      std::printf("soak: /metrics is %zu bytes, %zu series; promtool check metrics: %s\n",
                  body->size(), m.size(), lint.exit_code == 0 ? "clean" : "problems");
    } else {
      std::printf("soak: promtool not installed, /metrics not linted\n");
    }

    // - The log never holds prompt text.
    const std::string log = server.Log();
    EXPECT_EQ(log.find(kMarker), std::string::npos) << "prompt text in the server log";
    // Refused messages cannot flood it either (protobuf's per-message lines are rate-limited).
    size_t protobuf_lines = 0;
    for (size_t at = log.find("protobuf: "); at != std::string::npos;
         at = log.find("protobuf: ", at + 1)) {
      ++protobuf_lines;
    }
    EXPECT_LE(protobuf_lines, static_cast<size_t>(duration / 10) + 2) << "log flooded";

    int64_t calls = 0;
    for (const auto& [name, n] : tally.by_scenario) calls += n;
    auto scen = [&](const char* n) { return tally.by_scenario[n]; };
    const std::string summary = absl::StrFormat(
        "soak: clients=%d duration_s=%.1f requests=%d ok=%d cancelled=%d deadline_exceeded=%d "
        "malformed=%d oversize=%d garbage=%d killed_clients=%d queue_full=%d "
        "leaked_blocks=%.0f kv_blocks_total=%.0f preemptions=%.0f generated_tokens=%.0f "
        "rss_warm_mb=%.1f rss_peak_mb=%.1f rss_end_mb=%.1f rss_delta_mb=%.1f fds_baseline=%d "
        "fds_end=%d requests_total_metric=%.0f",
        clients, duration, calls, code(grpc::StatusCode::OK), code(grpc::StatusCode::CANCELLED),
        code(grpc::StatusCode::DEADLINE_EXCEEDED), scen("malformed"),
        scen("oversize_ids") + scen("oversize_bytes"), scen("garbage"), tally.killed_clients,
        code(grpc::StatusCode::RESOURCE_EXHAUSTED), leaked_blocks, blocks_total,
        m["foxserve_preemptions_total"], m["foxserve_generated_tokens_total"],
        rss_warm / 1048576.0, rss_peak / 1048576.0, rss_end / 1048576.0, rss_delta_mb,
        fds_baseline, fds_end, counted);
    std::printf("%s\n", summary.c_str());
    std::ofstream(BinaryDir() + "/soak_summary.txt") << summary << "\n";
    ::testing::Test::RecordProperty("requests", static_cast<int>(calls));
    ::testing::Test::RecordProperty("rss_delta_kb",
                                    static_cast<int>((rss_end - rss_warm) / 1024));
  }

  // - And it still drains and exits cleanly.
  server.child().Signal(SIGTERM);
  EXPECT_EQ(server.child().Wait(20), 0) << server.Log();
}

}  // namespace
}  // namespace testing
}  // namespace foxserve
