#include "tests/deploy/prometheus_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace foxserve {
namespace testing {
namespace {

struct HttpAnswer {
  int status = 0;
  std::string body;
};

absl::StatusOr<HttpAnswer> HttpGetRaw(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot connect to 127.0.0.1:", port));
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("write failed");
  }
  std::string answer;
  char buffer[65536];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) answer.append(buffer, n);
  close(fd);
  HttpAnswer out;
  const size_t body = answer.find("\r\n\r\n");
  if (body == std::string::npos || std::sscanf(answer.c_str(), "HTTP/1.%*d %d", &out.status) != 1) {
    return absl::DataLossError("not an HTTP answer");
  }
  out.body = answer.substr(body + 4);
  return out;
}

}  // namespace

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
  auto answer = HttpGetRaw(port_, path_and_query);
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
    auto answer = HttpGetRaw(port_, "/-/ready");
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
