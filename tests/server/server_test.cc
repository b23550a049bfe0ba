// The real server in-process on 127.0.0.1: gRPC round trips against the engine's greedy output,
// concurrency, cancellation seen through /metrics, overload, every invalid input, health and
// reflection (off unless asked for), text prompts with a SentencePiece tokenizer, and the CLI as a client.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "foxserve/v1/generation.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/fox_server.h"
#include "tests/engine/golden_data.h"
#include "tests/support/grpc_test_util.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_server_options.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {
namespace {

using server::FoxServer;
using server::ServerOptions;

struct Golden {
  std::vector<std::vector<int32_t>> input_ids;
  std::vector<std::vector<int32_t>> greedy;
};

Golden ReadGolden(const std::string& name) {
  Golden g;
  const auto json = nlohmann::json::parse(ReadFileOrDie(GoldenDir(name) + "/golden.json"));
  for (const auto& row : json["greedy_new_tokens"]) g.greedy.push_back(row.get<std::vector<int32_t>>());
  // input_ids from golden.safetensors: int64 [2, 160] right after the header.
  const std::string file = ReadFileOrDie(GoldenDir(name) + "/golden.safetensors");
  uint64_t header;
  std::memcpy(&header, file.data(), 8);
  const auto meta = nlohmann::json::parse(file.substr(8, header));
  const auto offsets = meta["input_ids"]["data_offsets"];
  const int64_t rows = meta["input_ids"]["shape"][0], cols = meta["input_ids"]["shape"][1];
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int32_t> ids;
    for (int64_t c = 0; c < cols; ++c) {
      int64_t v;
      std::memcpy(&v, file.data() + 8 + header + offsets[0].get<int64_t>() + (r * cols + c) * 8, 8);
      ids.push_back(static_cast<int32_t>(v));
    }
    g.input_ids.push_back(ids);
  }
  return g;
}

class ServerTest : public ::testing::Test {
 protected:
  static ServerOptions Options(const std::string& model_dir) {
    return TestServerOptions(model_dir);
  }

  void StartServer(const ServerOptions& options) {
    auto s = FoxServer::Start(options);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(s).value();
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Generation::NewStub(channel_);
  }

  void SetUp() override {
    golden_ = ReadGolden("fox-pro-tiny");
    StartServer(Options(GoldenDir("fox-pro-tiny")));
  }

  // A server whose requests may run to 8000 tokens: several seconds of decoding on this tiny
  // model, so a test can act on a request that is surely still running.
  void RestartForLongRequests(const std::function<void(ServerOptions*)>& edit = nullptr) {
    server_.reset();
    ServerOptions o = Options(GoldenDir("fox-pro-tiny"));
    o.max_model_len = 8192;
    o.kv_cache_bytes = 256 << 20;
    if (edit) edit(&o);
    StartServer(o);
  }
  static constexpr uint32_t kLong = 8000;

  v1::GenerateRequest Greedy(int row, uint32_t max_new) {
    v1::GenerateRequest r;
    for (int32_t id : golden_.input_ids[row]) r.mutable_token_ids()->add_ids(id);
    r.set_max_new_tokens(max_new);
    r.set_ignore_eos(true);
    return r;
  }

  std::map<std::string, double> Scrape() { return ScrapeMetrics(server_->metrics_port()); }

  bool WaitForMetric(const std::string& name, double value) {
    return WaitForMetrics(server_->metrics_port(), {{name, value}});
  }

  Golden golden_;
  std::unique_ptr<FoxServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> stub_;
};

TEST_F(ServerTest, UnaryGreedyEqualsTheReference) {
  for (int row = 0; row < 2; ++row) {
    grpc::ClientContext ctx;
    v1::GenerateRequest r = Greedy(row, 16);
    r.set_request_id(absl::StrCat("req-", row));
    v1::GenerateResponse response;
    const grpc::Status s = stub_->Generate(&ctx, r, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(std::vector<int32_t>(response.token_ids().begin(), response.token_ids().end()),
              golden_.greedy[row]);
    EXPECT_EQ(response.request_id(), absl::StrCat("req-", row));
    EXPECT_EQ(response.finish_reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(response.usage().prompt_tokens(), 160u);
    EXPECT_EQ(response.usage().completion_tokens(), 16u);
    EXPECT_GT(response.acp().blocks_computed(), 0u);
  }
}

TEST_F(ServerTest, StreamingDeliversTokensAsTheyComeAndAFinalMessage) {
  grpc::ClientContext ctx;
  auto reader = stub_->GenerateStream(&ctx, Greedy(1, 16));
  v1::GenerateStreamResponse m;
  std::vector<int32_t> ids;
  int messages = 0;
  v1::GenerateStreamResponse last;
  while (reader->Read(&m)) {
    ++messages;
    ids.insert(ids.end(), m.token_ids().begin(), m.token_ids().end());
    last = m;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(ids, golden_.greedy[1]);
  // One message per token while the client keeps up; a backlog is merged into one message.
  EXPECT_GT(messages, 1);
  EXPECT_LE(messages, 16);
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(last.usage().completion_tokens(), 16u);
}

TEST_F(ServerTest, ThirtyTwoConcurrentStreamsOfMixedLengths) {
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 32; ++i) {
    clients.emplace_back([&, i] {
      const int row = i % 2;
      const uint32_t n = 1 + (i * 7) % 16;
      grpc::ClientContext ctx;
      auto reader = stub_->GenerateStream(&ctx, Greedy(row, n));
      v1::GenerateStreamResponse m;
      std::vector<int32_t> ids;
      while (reader->Read(&m)) ids.insert(ids.end(), m.token_ids().begin(), m.token_ids().end());
      const grpc::Status s = reader->Finish();
      EXPECT_TRUE(s.ok()) << s.error_message();
      const std::vector<int32_t> expected(golden_.greedy[row].begin(), golden_.greedy[row].begin() + n);
      EXPECT_EQ(ids, expected) << "client " << i;
      if (s.ok() && ids == expected) ++ok;
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(ok.load(), 32);
  EXPECT_TRUE(WaitForMetric("foxserve_kv_blocks_used", 0));
  const std::string ok_total = "foxserve_requests_total{code=\"OK\",reason=\"length\"}";
  EXPECT_TRUE(WaitForMetric(ok_total, 32)) << Scrape()[ok_total];
}

// Sampled requests: top_k 5 is drawn from the rows' top candidates, top_k 600 over this model's
// 512-token vocabulary always reaches past them; both finish, and the scrape counts each kind.
TEST_F(ServerTest, SampledTokensCountedByCandidatesServedOrMissed) {
  for (int32_t top_k : {5, 600}) {
    grpc::ClientContext ctx;
    v1::GenerateRequest r = Greedy(0, 8);
    r.mutable_sampling()->set_temperature(0.9f);
    r.mutable_sampling()->set_top_k(top_k);
    r.mutable_sampling()->set_seed(17);
    v1::GenerateResponse response;
    const grpc::Status s = stub_->Generate(&ctx, r, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(response.token_ids_size(), 8);
  }
  // 8 tokens each; after a miss a request takes whole rows for a while, so at least one missed.
  EXPECT_TRUE(WaitForMetrics(server_->metrics_port(),
                             {{"foxserve_sampling_candidates_total{result=\"served\"}", 8}}));
  const auto metrics = Scrape();
  EXPECT_GE(metrics.at("foxserve_sampling_candidates_total{result=\"missed\"}"), 1);
  EXPECT_LE(metrics.at("foxserve_sampling_candidates_total{result=\"missed\"}"), 8);
}

TEST_F(ServerTest, CancellingMidStreamFreesTheBlocks) {
  RestartForLongRequests();
  grpc::ClientContext ctx;
  auto reader = stub_->GenerateStream(&ctx, Greedy(0, kLong));
  v1::GenerateStreamResponse m;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(reader->Read(&m));
  EXPECT_GT(Scrape()["foxserve_kv_blocks_used"], 0);
  ctx.TryCancel();
  while (reader->Read(&m)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitForMetric("foxserve_kv_blocks_used", 0));
  EXPECT_TRUE(WaitForMetric("foxserve_requests_in_flight", 0));
}

TEST_F(ServerTest, DeadlineAbortsTheRequest) {
  RestartForLongRequests();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  v1::GenerateResponse response;
  const grpc::Status s = stub_->Generate(&ctx, Greedy(0, kLong), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(WaitForMetric("foxserve_kv_blocks_used", 0));
}

TEST_F(ServerTest, OverloadAnswersResourceExhausted) {
  RestartForLongRequests([](ServerOptions* o) {
    o->max_num_seqs = 1;
    o->max_queued = 2;
  });
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>>> readers;
  auto open = [&] {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(stub_->GenerateStream(contexts.back().get(), Greedy(0, kLong)));
  };
  // One runs, two wait in the queue.
  open();
  v1::GenerateStreamResponse m;
  ASSERT_TRUE(readers[0]->Read(&m));
  open();
  open();
  ASSERT_TRUE(WaitForMetric("foxserve_queue_length", 2));
  // The queue is full: refused at once, streaming or not.
  open();
  EXPECT_FALSE(readers[3]->Read(&m));
  const grpc::Status refused = readers[3]->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
  grpc::ClientContext ctx;
  v1::GenerateResponse response;
  const grpc::Status s = stub_->Generate(&ctx, Greedy(0, 4), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("queue is full"), std::string::npos) << s.error_message();
  for (int i = 0; i < 3; ++i) {
    contexts[i]->TryCancel();
    while (readers[i]->Read(&m)) {
    }
    EXPECT_EQ(readers[i]->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_TRUE(WaitForMetric("foxserve_kv_blocks_used", 0));
  EXPECT_TRUE(WaitForMetric("foxserve_queue_length", 0));
  const std::string refused_total =
      "foxserve_requests_total{code=\"RESOURCE_EXHAUSTED\",reason=\"rejected\"}";
  EXPECT_TRUE(WaitForMetric(refused_total, 2)) << Scrape()[refused_total];
}

TEST_F(ServerTest, InvalidInputsNameTheField) {
  struct Case {
    std::string name;
    std::function<void(v1::GenerateRequest*)> edit;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"negative temperature", [](auto* r) { r->mutable_sampling()->set_temperature(-0.5f); }, "temperature"},
      {"NaN temperature", [](auto* r) { r->mutable_sampling()->set_temperature(NAN); }, "temperature"},
      {"top_p 0", [](auto* r) { r->mutable_sampling()->set_top_p(0.0f); }, "top_p"},
      {"top_p above 1", [](auto* r) { r->mutable_sampling()->set_top_p(1.01f); }, "top_p"},
      {"top_k negative", [](auto* r) { r->mutable_sampling()->set_top_k(-1); }, "top_k"},
      {"min_p above 1", [](auto* r) { r->mutable_sampling()->set_min_p(1.5f); }, "min_p"},
      {"repetition penalty 0", [](auto* r) { r->mutable_sampling()->set_repetition_penalty(0); }, "repetition_penalty"},
      {"presence penalty", [](auto* r) { r->mutable_sampling()->set_presence_penalty(2.5f); }, "presence_penalty"},
      {"frequency penalty", [](auto* r) { r->mutable_sampling()->set_frequency_penalty(-3); }, "frequency_penalty"},
      {"no prompt", [](auto* r) { r->clear_prompt(); }, "prompt"},
      {"empty token ids", [](auto* r) { r->mutable_token_ids()->clear_ids(); }, "prompt"},
      {"empty text", [](auto* r) { r->set_text(""); }, "prompt"},
      {"text without tokenizer", [](auto* r) { r->set_text("hello"); }, "prompt"},
      {"prompt too long", [](auto* r) { for (int i = 0; i < 900; ++i) r->mutable_token_ids()->add_ids(5); }, "prompt"},
      {"token id outside vocab", [](auto* r) { r->mutable_token_ids()->set_ids(3, 512); }, "prompt"},
      {"negative token id", [](auto* r) { r->mutable_token_ids()->set_ids(3, -7); }, "prompt"},
      {"max_new_tokens 0", [](auto* r) { r->set_max_new_tokens(0); }, "max_new_tokens"},
      {"max_new_tokens above limit", [](auto* r) { r->set_max_new_tokens(865); }, "max_new_tokens"},
      {"too many stops", [](auto* r) { for (int i = 0; i < 17; ++i) r->add_stop("x"); }, "stop"},
      {"stop without tokenizer", [](auto* r) { r->add_stop("x"); }, "stop"},
      {"too many stop ids", [](auto* r) { for (int i = 0; i < 65; ++i) r->add_stop_token_ids(2); }, "stop_token_ids"},
      {"stop id outside vocab", [](auto* r) { r->add_stop_token_ids(9999); }, "stop_token_ids"},
      {"logprobs too many", [](auto* r) { r->set_logprobs(21); }, "logprobs"},
      {"request id too long", [](auto* r) { r->set_request_id(std::string(200, 'a')); }, "request_id"},
      {"request id not printable", [](auto* r) { r->set_request_id("a\nb"); }, "request_id"},
  };
  for (const Case& c : cases) {
    for (bool stream : {false, true}) {
      v1::GenerateRequest r = Greedy(0, 4);
      c.edit(&r);
      grpc::ClientContext ctx;
      grpc::Status s;
      if (stream) {
        auto reader = stub_->GenerateStream(&ctx, r);
        v1::GenerateStreamResponse m;
        EXPECT_FALSE(reader->Read(&m)) << c.name;
        s = reader->Finish();
      } else {
        v1::GenerateResponse response;
        s = stub_->Generate(&ctx, r, &response);
      }
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name << ": " << s.error_message();
      EXPECT_EQ(s.error_message().substr(0, c.field.size()), c.field) << c.name << ": " << s.error_message();
    }
  }
  // Nothing leaked and the server still serves.
  grpc::ClientContext ctx;
  v1::GenerateResponse response;
  EXPECT_TRUE(stub_->Generate(&ctx, Greedy(0, 2), &response).ok());
  const std::string invalid_total =
      "foxserve_requests_total{code=\"INVALID_ARGUMENT\",reason=\"rejected\"}";
  EXPECT_TRUE(WaitForMetric(invalid_total, 2 * cases.size())) << Scrape()[invalid_total];
}

TEST_F(ServerTest, HealthReflectionAndModelInfo) {
  EXPECT_EQ(*HealthCheck(channel_), 1);
  // Reflection is off unless asked for (it exposes the whole schema).
  auto none = ReflectionListServices(channel_);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnimplemented) << none.status();
  server_.reset();
  ServerOptions with_reflection = Options(GoldenDir("fox-pro-tiny"));
  with_reflection.reflection = true;
  StartServer(with_reflection);
  auto services = ReflectionListServices(channel_);
  ASSERT_TRUE(services.ok()) << services.status();
  EXPECT_NE(services->find("foxserve.v1.Generation"), std::string::npos);
  EXPECT_NE(services->find("grpc.health.v1.Health"), std::string::npos);
  grpc::ClientContext ctx;
  v1::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(&ctx, v1::GetModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.num_layers(), 2u);
  EXPECT_EQ(info.vocab_size(), 512u);
  EXPECT_EQ(info.max_model_len(), 1024u);
  EXPECT_EQ(info.tokenizer(), "none");
  EXPECT_TRUE(info.acp_enabled());
  grpc::ClientContext tctx;
  v1::TokenizeRequest treq;
  treq.set_text("hi");
  v1::TokenizeResponse tresp;
  EXPECT_EQ(stub_->Tokenize(&tctx, treq, &tresp).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(ServerTest, MetricsCarryTheAcpSeries) {
  grpc::ClientContext ctx;
  v1::GenerateResponse response;
  ASSERT_TRUE(stub_->Generate(&ctx, Greedy(0, 8), &response).ok());
  auto m = Scrape();
  for (const char* phase : {"prefill", "decode"}) {
    for (int layer = 0; layer < 2; ++layer) {
      const std::string labels = absl::StrCat("{layer=\"", layer, "\",phase=\"", phase, "\"}");
      ASSERT_TRUE(m.count("foxserve_acp_blocks_computed_total" + labels)) << labels;
      ASSERT_TRUE(m.count("foxserve_acp_blocks_skipped_total" + labels)) << labels;
      EXPECT_GT(m["foxserve_acp_blocks_computed_total" + labels], 0) << labels;
    }
  }
  const double ratio = m["foxserve_acp_pruned_block_ratio_overall"];
  EXPECT_GE(ratio, 0.0);
  EXPECT_LE(ratio, 1.0);
  EXPECT_EQ(m["foxserve_generated_tokens_total"], 8);
  EXPECT_EQ(m["foxserve_prompt_tokens_total"], 160);
  EXPECT_EQ(m["foxserve_time_to_first_token_seconds_count"], 1);
  EXPECT_EQ(m["foxserve_inter_token_latency_seconds_count"], 7);
  EXPECT_GT(m["foxserve_kv_blocks_capacity"], 0);
  EXPECT_EQ(m["foxserve_engine_healthy"], 1);
}

// A model folder with a tokenizer: the golden weights plus a SentencePiece model trained here
// with the golden vocabulary size, so text prompts, text streaming and stop strings run for real.
TEST_F(ServerTest, TextPromptsStreamTextAndStopStrings) {
  ScratchDir dir;
  WriteFileOrDie(dir.File("config.json"), ReadFileOrDie(GoldenDir("fox-pro-tiny") + "/config.json"));
  WriteFileOrDie(dir.File("model.safetensors"),
                 ReadFileOrDie(GoldenDir("fox-pro-tiny") + "/model.safetensors"));
  WriteFileOrDie(dir.File("corpus.txt"),
                 ReadFileOrDie(SourceDir() + "/models/corpus/tinyshakespeare.txt").substr(0, 100000));
  const auto train = RunCommand("spm_train --input=" + dir.File("corpus.txt") + " --model_prefix=" +
                                dir.File("tokenizer") + " --vocab_size=512 --model_type=bpe " +
                                "--byte_fallback=true --minloglevel=2 > /dev/null 2>&1");
  ASSERT_EQ(train.exit_code, 0) << "spm_train (Debian package sentencepiece) is needed";
  server_.reset();
  StartServer(Options(dir.path()));

  v1::GenerateRequest r;
  r.set_text("ROMEO:\nWhat light");
  r.set_max_new_tokens(40);
  r.set_ignore_eos(true);
  grpc::ClientContext ctx;
  v1::GenerateResponse whole;
  ASSERT_TRUE(stub_->Generate(&ctx, r, &whole).ok());
  ASSERT_EQ(whole.token_ids_size(), 40);
  // The streamed text is the same text, and equals the Detokenize of the ids.
  grpc::ClientContext sctx;
  auto reader = stub_->GenerateStream(&sctx, r);
  v1::GenerateStreamResponse m;
  std::string streamed;
  while (reader->Read(&m)) streamed += m.text();
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(streamed, whole.text());
  grpc::ClientContext dctx;
  v1::DetokenizeRequest dreq;
  for (int32_t id : whole.token_ids()) dreq.add_token_ids(id);
  v1::DetokenizeResponse dresp;
  ASSERT_TRUE(stub_->Detokenize(&dctx, dreq, &dresp).ok());
  // Detokenize of the continuation alone drops SentencePiece's leading space; compare modulo it.
  EXPECT_EQ(dresp.text(), whole.text().substr(whole.text().size() - dresp.text().size()));

  // A stop string taken from the middle of that text ends generation before it.
  ASSERT_GT(whole.text().size(), 12u);
  const std::string stop = whole.text().substr(whole.text().size() / 2, 3);
  v1::GenerateRequest with_stop = r;
  with_stop.add_stop(stop);
  grpc::ClientContext stop_ctx;
  v1::GenerateResponse stopped;
  ASSERT_TRUE(stub_->Generate(&stop_ctx, with_stop, &stopped).ok());
  EXPECT_EQ(stopped.finish_reason(), v1::FINISH_REASON_STOP);
  EXPECT_EQ(stopped.text(), whole.text().substr(0, whole.text().find(stop)));

  // Tokenize agrees with the prompt tokens the server counted.
  grpc::ClientContext tctx;
  v1::TokenizeRequest treq;
  treq.set_text(r.text());
  treq.set_add_bos(true);
  v1::TokenizeResponse tresp;
  ASSERT_TRUE(stub_->Tokenize(&tctx, treq, &tresp).ok());
  EXPECT_EQ(static_cast<uint32_t>(tresp.token_ids_size()), whole.usage().prompt_tokens());
}

TEST_F(ServerTest, CliTalksToTheServer) {
  std::string csv;
  for (int32_t id : golden_.input_ids[0]) csv += (csv.empty() ? "" : ",") + std::to_string(id);
  const std::string base = std::string(FOXSERVE_CLI_PATH) + " generate --server 127.0.0.1:" +
                           std::to_string(server_->port());
  std::string expected;
  for (int32_t id : golden_.greedy[0]) expected += (expected.empty() ? "" : " ") + std::to_string(id);
  for (const char* mode : {"", " --stream"}) {
    const auto r = RunCommand(base + mode + " --input-ids " + csv +
                              " --max-new-tokens 16 --ignore-eos --print-ids");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(expected), std::string::npos) << r.output;
  }
  const auto bad = RunCommand(base + " --input-ids 1,2 --top-p 2", /*merge_stderr=*/true);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("INVALID_ARGUMENT: top_p"), std::string::npos) << bad.output;
}

TEST_F(ServerTest, ShutdownDrainsAndRefusesNewWork) {
  // A long stream is in flight when the drain starts; it is cancelled with UNAVAILABLE at the
  // drain timeout (1 s); a new request during the drain gets UNAVAILABLE; health turns NOT_SERVING.
  RestartForLongRequests([](ServerOptions* o) { o->drain_timeout_seconds = 1; });
  grpc::ClientContext ctx;
  auto reader = stub_->GenerateStream(&ctx, Greedy(0, kLong));
  v1::GenerateStreamResponse m;
  ASSERT_TRUE(reader->Read(&m));
  std::thread stopper([&] { EXPECT_FALSE(server_->Shutdown()); });
  for (int i = 0; i < 200 && server_->engine().accepting(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(*HealthCheck(channel_), 2);
  grpc::ClientContext late;
  v1::GenerateResponse response;
  EXPECT_EQ(stub_->Generate(&late, Greedy(0, 2), &response).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  v1::GenerateStreamResponse last;
  while (reader->Read(&m)) last = m;
  const grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_EQ(last.finish_reason(), v1::FINISH_REASON_CANCELLED);
  stopper.join();
}

// InspectKvCache on a model whose head 0 forgets fast and head 1 slowly: while a 1000-token
// request runs, head 0's front blocks are dead (evicted when eviction is on, resident when off)
// and head 1's are all live; the counts agree with each other, with ModelInfo and with /metrics.
TEST_F(ServerTest, InspectKvCacheShowsDeadBlocksPerHead) {
  ScratchDir dir;
  WriteFastForgettingModel("fox-pro-tiny", dir.path());
  for (bool eviction : {false, true}) {
    SCOPED_TRACE(eviction ? "eviction on" : "eviction off");
    server_.reset();
    ServerOptions o = Options(dir.path());
    o.max_model_len = 8192;
    o.kv_cache_bytes = 256 << 20;
    o.kv_eviction = eviction;
    StartServer(o);

    grpc::ClientContext info_ctx;
    v1::ModelInfo info;
    ASSERT_TRUE(stub_->GetModelInfo(&info_ctx, v1::GetModelInfoRequest(), &info).ok());
    EXPECT_EQ(info.acp_eviction(), eviction);
    EXPECT_EQ(info.acp_bound(), "qk_norm");  // FoX (Pro) has qk-norm

    v1::GenerateRequest r;
    for (int i = 0; i < 1000; ++i) {
      r.mutable_token_ids()->add_ids(golden_.input_ids[0][i % golden_.input_ids[0].size()]);
    }
    r.set_max_new_tokens(kLong - 1000);
    r.set_ignore_eos(true);
    r.set_request_id("probe");
    grpc::ClientContext ctx;
    auto reader = stub_->GenerateStream(&ctx, r);
    v1::GenerateStreamResponse m;
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(reader->Read(&m));

    grpc::ClientContext none_ctx;
    v1::InspectKvCacheRequest none;
    none.set_request_id("nobody");
    v1::InspectKvCacheResponse empty;
    ASSERT_TRUE(stub_->InspectKvCache(&none_ctx, none, &empty).ok());
    EXPECT_EQ(empty.requests_size(), 0);

    grpc::ClientContext inspect_ctx;
    v1::InspectKvCacheRequest q;
    q.set_request_id("probe");
    v1::InspectKvCacheResponse kv;
    const grpc::Status s = stub_->InspectKvCache(&inspect_ctx, q, &kv);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(kv.requests_size(), 1);
    const v1::RequestKvCache& c = kv.requests(0);
    EXPECT_EQ(c.request_id(), "probe");
    EXPECT_TRUE(c.running());
    EXPECT_GE(c.num_cached_tokens(), 1000u);
    EXPECT_EQ(c.max_total_tokens(), kLong);
    EXPECT_EQ(c.kv_page_size(), info.kv_page_size());
    ASSERT_EQ(c.streams_size(), static_cast<int>(info.num_layers() * info.num_heads()));
    const uint32_t min_blocks = (c.num_cached_tokens() + c.kv_page_size() - 1) / c.kv_page_size();
    uint64_t evicted = 0, resident = 0;
    for (const v1::KvStreamBlocks& b : c.streams()) {
      SCOPED_TRACE(::testing::Message() << "layer " << b.layer() << " head " << b.head());
      EXPECT_GE(b.blocks(), min_blocks);
      EXPECT_EQ(b.live() + b.dead_resident() + b.evicted(), b.blocks());
      if (b.head() == 0) {
        EXPECT_GE(b.dead_resident() + b.evicted(), b.blocks() - 2);
        EXPECT_EQ(b.evicted() > 0, eviction);
        if (eviction) {
          EXPECT_EQ(b.dead_resident(), 0u);
        }
      } else {
        EXPECT_EQ(b.live(), b.blocks());
      }
      evicted += b.evicted();
      resident += b.blocks() - b.evicted();
    }
    EXPECT_EQ(c.pages_evicted(), evicted);
    EXPECT_EQ(c.pages_held(), resident);
    ctx.TryCancel();
    while (reader->Read(&m)) {
    }
    EXPECT_TRUE(WaitForMetric("foxserve_kv_blocks_used", 0));
    auto metrics = Scrape();
    if (eviction) {
      EXPECT_GE(metrics["foxserve_acp_evicted_blocks_total"], static_cast<double>(evicted));
      EXPECT_GT(evicted, 0u);
    } else {
      EXPECT_EQ(metrics["foxserve_acp_evicted_blocks_total"], 0);
    }
  }
  server_.reset();  // before `dir` goes
}

TEST_F(ServerTest, InspectKvCacheRejectsAnOverlongRequestId) {
  grpc::ClientContext ctx;
  v1::InspectKvCacheRequest q;
  q.set_request_id(std::string(200, 'x'));
  v1::InspectKvCacheResponse kv;
  const grpc::Status s = stub_->InspectKvCache(&ctx, q, &kv);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("request_id:", 0), 0u) << s.error_message();
}

}  // namespace
}  // namespace testing
}  // namespace foxserve
