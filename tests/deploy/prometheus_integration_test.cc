// A real Prometheus server (Debian's prometheus) on 127.0.0.1 scrapes a real foxserve serving the
// shipped model, with the alert rules of deploy/k8s/base/prometheusrule.yaml loaded. After a few
// requests the test reads Prometheus's HTTP API: the request, token, latency, KV and ACP series
// are there with the values the requests imply; every alert rule evaluates without error and none
// fires; the Prometheus Adapter's queries answer one value per pod; and every query of the Grafana
// dashboard runs and returns data.
//
// The target carries namespace and pod labels, as the PodMonitor gives in a cluster, so the
// alerts, adapter rules and dashboard run unchanged. extract_monitoring.mjs (the CTest fixture
// deploy_extract_monitoring) writes rules.yaml and queries.json into $FOXSERVE_DEPLOY_GENERATED.
#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "foxserve/v1/generation.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/fox_server.h"
#include "tests/deploy/prometheus_client.h"
#include "tests/support/grpc_test_util.h"
#include "tests/support/subprocess.h"
#include "tests/support/test_server_options.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {
namespace {

using nlohmann::json;

constexpr char kNamespace[] = "foxserve-test";
constexpr char kPod[] = "foxserve-test-0";
constexpr int kLayers = 6;  // models/fox-pro-shakespeare
constexpr int kRequests = 3;
constexpr int kPromptTokens = 768;  // long enough for ACP to skip tiles on this model
constexpr int kNewTokens = 16;

// Everything the tests share: one foxserve, one Prometheus, one round of traffic.
struct Stack {
  std::unique_ptr<ScratchDir> dir;
  std::unique_ptr<server::FoxServer> server;
  std::unique_ptr<ChildProcess> prometheus;
  std::unique_ptr<PrometheusClient> client;
  json queries;
  double traffic_start = 0;  // unix seconds
  std::string error;         // set when the setup failed
};
Stack* stack = nullptr;

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string Which(const std::string& tool) {
  const CommandResult r = RunCommand("command -v " + tool);
  if (r.exit_code != 0) return "";
  std::string path = r.output;
  while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.pop_back();
  return path;
}

v1::GenerateRequest LongPrompt(int seed) {
  v1::GenerateRequest r;
  uint32_t x = 12345u + static_cast<uint32_t>(seed);
  for (int i = 0; i < kPromptTokens; ++i) {
    x = x * 1664525u + 1013904223u;
    r.mutable_token_ids()->add_ids(static_cast<int32_t>(3 + (x >> 8) % 2000));  // vocab 2048
  }
  r.set_max_new_tokens(kNewTokens);
  r.set_ignore_eos(true);
  return r;
}

std::string SetUpStack(Stack* s) {
  const char* generated = std::getenv("FOXSERVE_DEPLOY_GENERATED");
  if (generated == nullptr) return "FOXSERVE_DEPLOY_GENERATED is not set (CTest sets it)";
  const std::string prometheus = Which("prometheus");
  if (prometheus.empty()) {
    return "prometheus not found: install it with scripts/install_deps.sh "
           "(Debian: apt-get install prometheus)";
  }
  s->queries = json::parse(ReadFileOrDie(std::string(generated) + "/queries.json"));
  s->dir = std::make_unique<ScratchDir>();

  server::ServerOptions o = TestServerOptions(SourceDir() + "/models/fox-pro-shakespeare");
  o.max_num_seqs = 8;
  // The server's defaults, not the test pool's limits: the dashboard's queries see real batches.
  const server::ServerOptions defaults;
  o.max_batch_tokens = defaults.max_batch_tokens;
  o.max_model_len = defaults.max_model_len;
  auto started = server::FoxServer::Start(o);
  if (!started.ok()) return "foxserve: " + started.status().ToString();
  s->server = std::move(started).value();

  const int prometheus_port = PickFreePort();
  // Scrape and evaluate every second, so a test of a few seconds sees several points.
  constexpr char kConfig[] = R"(global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - GENERATED/rules.yaml
scrape_configs:
  - job_name: foxserve
    static_configs:
      - targets: ['127.0.0.1:METRICS_PORT']
        labels:
          namespace: NAMESPACE
          pod: POD
)";
  WriteFileOrDie(
      s->dir->File("prometheus.yml"),
      absl::StrReplaceAll(kConfig, {{"GENERATED", generated},
                                    {"METRICS_PORT", absl::StrCat(s->server->metrics_port())},
                                    {"NAMESPACE", kNamespace},
                                    {"POD", kPod}}));
  mkdir(s->dir->File("tsdb").c_str(), 0755);
  s->prometheus = std::make_unique<ChildProcess>(
      std::vector<std::string>{prometheus, "--config.file=" + s->dir->File("prometheus.yml"),
                               "--storage.tsdb.path=" + s->dir->File("tsdb"),
                               absl::StrCat("--web.listen-address=127.0.0.1:", prometheus_port)},
      s->dir->File("prometheus.log"));
  if (!s->prometheus->started()) return "cannot start " + prometheus;
  s->client = std::make_unique<PrometheusClient>(prometheus_port);
  auto log = [&] { return "\nprometheus.log:\n" + ReadFileOrDie(s->dir->File("prometheus.log")); };
  if (!s->client->WaitReady(30)) return "Prometheus did not become ready" + log();
  // A first scrape before any traffic, so rates over the test window see the counters rise.
  if (!s->client->WaitForValue("up{job=\"foxserve\"}", 1, 30)) {
    return "Prometheus does not scrape foxserve" + log();
  }

  s->traffic_start = UnixNow();
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", s->server->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::Generation::NewStub(channel);
  std::vector<std::thread> clients;
  std::vector<grpc::Status> statuses(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    clients.emplace_back([&, i] {
      grpc::ClientContext ctx;
      v1::GenerateResponse response;
      statuses[i] = stub->Generate(&ctx, LongPrompt(i), &response);
    });
  }
  for (auto& t : clients) t.join();
  for (const auto& st : statuses) {
    if (!st.ok()) return "Generate failed: " + st.error_message();
  }
  {  // One request the server refuses (no prompt), so the code label has a second value.
    grpc::ClientContext ctx;
    v1::GenerateRequest empty;
    empty.set_max_new_tokens(4);
    v1::GenerateResponse response;
    if (stub->Generate(&ctx, empty, &response).error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
      return "an empty prompt was not refused with INVALID_ARGUMENT";
    }
  }
  // Wait for a scrape that saw all of it, then a few more so rate windows end after the traffic.
  if (!s->client->WaitForValue("foxserve_generated_tokens_total", kRequests * kNewTokens, 30)) {
    return "Prometheus never saw the generated tokens" + log();
  }
  std::this_thread::sleep_for(std::chrono::seconds(3));
  return "";
}

class PrometheusIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack = new Stack;
    stack->error = SetUpStack(stack);
  }
  static void TearDownTestSuite() {
    if (stack->prometheus) {
      stack->prometheus->Signal(SIGTERM);
      stack->prometheus->Wait(10);
    }
    delete stack;
    stack = nullptr;
  }
  void SetUp() override { ASSERT_EQ(stack->error, "") << "setup failed"; }

  // The value of a query that must answer exactly one sample.
  static double Scalar(const std::string& query) {
    auto r = stack->client->Query(query);
    EXPECT_TRUE(r.ok()) << query << ": " << r.status();
    if (!r.ok()) return NAN;
    EXPECT_EQ(r->size(), 1u) << query << " answered " << json(*r).dump();
    if (r->size() != 1) return NAN;
    return std::stod((*r)[0]["value"][1].get<std::string>());
  }
};

TEST_F(PrometheusIntegrationTest, ScrapesTheRequestSeries) {
  EXPECT_EQ(Scalar("sum(foxserve_requests_total{code=\"OK\"})"), kRequests);
  EXPECT_EQ(Scalar("sum(foxserve_requests_total{code=\"INVALID_ARGUMENT\"})"), 1);
  EXPECT_EQ(Scalar("foxserve_generated_tokens_total"), kRequests * kNewTokens);
  EXPECT_EQ(Scalar("foxserve_prompt_tokens_total"), kRequests * kPromptTokens);
  EXPECT_EQ(Scalar("foxserve_time_to_first_token_seconds_count"), kRequests);
  EXPECT_EQ(Scalar("foxserve_inter_token_latency_seconds_count"), kRequests * (kNewTokens - 1));
  EXPECT_EQ(Scalar("foxserve_request_duration_seconds_count"), kRequests);
  const double ttft_p50 = Scalar(
      "histogram_quantile(0.5, sum by (le) "
      "(rate(foxserve_time_to_first_token_seconds_bucket[30s])))");
  EXPECT_GT(ttft_p50, 0);
  EXPECT_LT(ttft_p50, 30);
  // After the requests: nothing queued or running, every KV page back in the pool.
  EXPECT_EQ(Scalar("foxserve_queue_length"), 0);
  EXPECT_EQ(Scalar("foxserve_running_sequences"), 0);
  EXPECT_EQ(Scalar("foxserve_kv_blocks_used"), 0);
  EXPECT_EQ(Scalar("foxserve_kv_usage_ratio"), 0);
  EXPECT_GT(Scalar("foxserve_kv_blocks_capacity"), 0);
  EXPECT_EQ(Scalar("foxserve_engine_healthy"), 1);
  EXPECT_EQ(Scalar("foxserve_preemptions_total"), 0);
  std::printf("[ measured ] Prometheus holds %.0f foxserve series of %.0f metric names\n",
              Scalar("count({job=\"foxserve\"})"),
              Scalar("count(count by (__name__) ({job=\"foxserve\"}))"));
  // Every series carries the target labels the alerts and the adapter group by.
  EXPECT_EQ(Scalar(absl::StrCat("count(foxserve_engine_healthy{namespace=\"", kNamespace,
                                "\", pod=\"", kPod, "\", job=\"foxserve\"})")),
            1);
}

TEST_F(PrometheusIntegrationTest, ScrapesTheAcpSeries) {
  EXPECT_EQ(Scalar("count(foxserve_acp_blocks_computed_total)"), kLayers * 2);  // x 2 phases
  EXPECT_EQ(Scalar("count(foxserve_acp_blocks_skipped_total)"), kLayers * 2);
  // Every layer computed tiles in both phases.
  EXPECT_EQ(Scalar("count(foxserve_acp_blocks_computed_total > 0)"), kLayers * 2);
  const double skipped = Scalar("sum(foxserve_acp_blocks_skipped_total)");
  const double computed = Scalar("sum(foxserve_acp_blocks_computed_total)");
  EXPECT_GT(skipped, 0) << "ACP skipped nothing on 768-token prompts of the shipped model";
  EXPECT_EQ(Scalar("count(foxserve_acp_pruned_block_ratio)"), kLayers);
  EXPECT_EQ(Scalar("count(foxserve_acp_pruned_block_ratio >= 0 <= 1)"), kLayers);
  const double ratio = Scalar("foxserve_acp_pruned_block_ratio_overall");
  EXPECT_GT(ratio, 0);
  EXPECT_LT(ratio, 1);
  // The server's ratio is the one its counters imply.
  EXPECT_NEAR(ratio, skipped / (skipped + computed), 1e-9);
  std::printf("[ measured ] ACP: %.0f tiles skipped, %.0f computed, pruned ratio %.4f\n", skipped,
              computed, ratio);
}

TEST_F(PrometheusIntegrationTest, AlertRulesEvaluateAndStayQuiet) {
  const size_t expected = stack->queries["alerts"].size();
  ASSERT_GT(expected, 0u);
  json rules;
  // Rules report health "unknown" until their first evaluation.
  for (int attempt = 0; attempt < 50; ++attempt) {
    auto r = stack->client->Get("/api/v1/rules");
    ASSERT_TRUE(r.ok()) << r.status();
    rules = json::array();
    for (const auto& g : (*r)["data"]["groups"]) {
      for (const auto& rule : g["rules"]) rules.push_back(rule);
    }
    bool all_evaluated = true;
    for (const auto& rule : rules) all_evaluated = all_evaluated && rule["health"] != "unknown";
    if (all_evaluated) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_EQ(rules.size(), expected) << rules.dump(2);
  for (const auto& rule : rules) {
    EXPECT_EQ(rule["health"], "ok") << rule["name"] << ": " << rule.value("lastError", "");
    EXPECT_EQ(rule["state"], "inactive") << rule["name"] << " is not quiet under normal traffic";
  }
  auto firing = stack->client->Query("ALERTS");
  ASSERT_TRUE(firing.ok()) << firing.status();
  EXPECT_TRUE(firing->empty()) << json(*firing).dump(2);
}

TEST_F(PrometheusIntegrationTest, AdapterQueriesAnswerOneValuePerPod) {
  ASSERT_GT(stack->queries["adapter"].size(), 0u);
  for (const auto& rule : stack->queries["adapter"]) {
    const std::string name = rule["name"];
    auto series = stack->client->Series(rule["seriesQuery"]);
    ASSERT_TRUE(series.ok()) << name << ": " << series.status();
    ASSERT_EQ(series->size(), 1u) << name << ": " << json(*series).dump();
    EXPECT_EQ((*series)[0]["pod"], kPod);
    // What the adapter sends for GET .../namespaces/foxserve-test/pods/*/<name>.
    const std::string query = absl::StrReplaceAll(
        rule["metricsQuery"].get<std::string>(),
        {{"<<.Series>>", name},
         {"<<.LabelMatchers>>", absl::StrCat("namespace=\"", kNamespace, "\",pod=~\"", kPod, "\"")},
         {"<<.GroupBy>>", "pod"}});
    auto r = stack->client->Query(query);
    ASSERT_TRUE(r.ok()) << query << ": " << r.status();
    ASSERT_EQ(r->size(), 1u) << query << ": " << json(*r).dump();
    EXPECT_EQ((*r)[0]["metric"]["pod"], kPod);
    EXPECT_GE(std::stod((*r)[0]["value"][1].get<std::string>()), 0) << query;
  }
}

TEST_F(PrometheusIntegrationTest, DashboardQueriesRunAndReturnData) {
  const auto& queries = stack->queries["dashboard"];
  ASSERT_GT(queries.size(), 0u);
  const double end = UnixNow();
  for (const auto& q : queries) {
    // Grafana's variables as a user viewing this pod would have them.
    const std::string expr = absl::StrReplaceAll(
        q["expr"].get<std::string>(),
        {{"$namespace", kNamespace}, {"$pod", ".*"}, {"$__rate_interval", "20s"}});
    const std::string what =
        absl::StrCat(q["panel"].get<std::string>(), " ", q["refId"].get<std::string>());
    auto r = stack->client->QueryRange(expr, stack->traffic_start - 5, end, 1);
    ASSERT_TRUE(r.ok()) << what << ": " << expr << ": " << r.status();
    EXPECT_FALSE(r->empty()) << what << " returned no data: " << expr;
    if (expr.find("by (layer)") != std::string::npos) {
      EXPECT_EQ(r->size(), static_cast<size_t>(kLayers)) << what << ": one series per layer";
    }
    std::printf("[ measured ] dashboard %-40s %zu series\n", what.c_str(), r->size());
  }
}

}  // namespace
}  // namespace testing
}  // namespace foxserve
