#include "tests/deploy/prometheus_client.h"

#include <cctype>
#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tests/support/grpc_test_util.h"

namespace foxserve {
namespace testing {

std::string PrometheusClient::UrlEncode(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

absl::StatusOr<nlohmann::json> PrometheusClient::Get(const std::string& path_and_query) const {
  auto answer = HttpGetAnswer(port_, path_and_query);
  if (!answer.ok()) return answer.status();
  nlohmann::json j = nlohmann::json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
  if (answer->status != 200 || j.is_discarded() || j.value("status", "") != "success") {
    const std::string why = j.is_object() ? j.value("error", answer->body) : answer->body;
    return absl::InvalidArgumentError(absl::StrCat("HTTP ", answer->status, ": ", why));
  }
  return j;
}

absl::StatusOr<nlohmann::json> PrometheusClient::Query(const std::string& promql) const {
  auto j = Get("/api/v1/query?query=" + UrlEncode(promql));
  if (!j.ok()) return j.status();
  return (*j)["data"]["result"];
}

absl::StatusOr<nlohmann::json> PrometheusClient::QueryRange(const std::string& promql, double start,
                                                            double end, double step) const {
  auto j = Get(absl::StrFormat("/api/v1/query_range?query=%s&start=%.3f&end=%.3f&step=%.3f",
                               UrlEncode(promql), start, end, step));
  if (!j.ok()) return j.status();
  return (*j)["data"]["result"];
}

absl::StatusOr<nlohmann::json> PrometheusClient::Series(const std::string& selector) const {
  auto j = Get("/api/v1/series?" + UrlEncode("match[]") + "=" + UrlEncode(selector));
  if (!j.ok()) return j.status();
  return (*j)["data"];
}

bool PrometheusClient::WaitReady(double timeout_seconds) const {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    auto answer = HttpGetAnswer(port_, "/-/ready");
    if (answer.ok() && answer->status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

bool PrometheusClient::WaitForValue(const std::string& query, double value,
                                    double timeout_seconds) const {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = Query(query);
    if (r.ok() && r->size() == 1 && std::stod((*r)[0]["value"][1].get<std::string>()) == value) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

}  // namespace testing
}  // namespace foxserve
