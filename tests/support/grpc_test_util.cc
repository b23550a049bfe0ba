#include "tests/support/grpc_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <regex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"

namespace foxserve {
namespace testing {
namespace {

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

grpc::ByteBuffer Bytes(const std::string& s) {
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

std::string ToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  (void)buffer.Dump(&slices);
  std::string out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

bool Next(grpc::CompletionQueue& cq) {
  void* tag;
  bool ok = false;
  return cq.Next(&tag, &ok) && ok;
}

}  // namespace

absl::StatusOr<int> HealthCheck(const std::shared_ptr<grpc::Channel>& channel,
                                const std::string& service) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  // HealthCheckRequest { string service = 1; }
  std::string request;
  if (!service.empty()) request = std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
  auto call = stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", Bytes(request), &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, nullptr);
  void* tag;
  bool ok;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  if (!status.ok()) return FromGrpc(status);
  // HealthCheckResponse { ServingStatus status = 1; }: "\x08" + varint, or empty for UNKNOWN.
  const std::string bytes = ToString(response);
  if (bytes.empty()) return 0;
  if (bytes.size() != 2 || bytes[0] != '\x08') return absl::DataLossError("unexpected health answer");
  return static_cast<int>(bytes[1]);
}

absl::StatusOr<std::string> ReflectionListServices(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&context,
                               "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  call->StartCall(nullptr);
  bool got = false;
  grpc::ByteBuffer response;
  if (Next(cq)) {
    // ServerReflectionRequest { string list_services = 7; }
    call->Write(Bytes(std::string("\x3a\x00", 2)), nullptr);
    if (Next(cq)) {
      call->Read(&response, nullptr);
      got = Next(cq);
      call->WritesDone(nullptr);
      Next(cq);
    }
  }
  // Without the service (reflection off) the write or the read fails; the status says why.
  grpc::Status status;
  call->Finish(&status, nullptr);
  Next(cq);
  if (!got) {
    if (status.ok()) return absl::UnavailableError("reflection gave no answer");
    return FromGrpc(status);
  }
  return ToString(response);
}

absl::StatusOr<HttpAnswer> HttpGetAnswer(int port, const std::string& path) {
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

absl::StatusOr<std::string> HttpGet(int port, const std::string& path) {
  absl::StatusOr<HttpAnswer> answer = HttpGetAnswer(port, path);
  if (!answer.ok()) return answer.status();
  if (answer->status != 200) {
    return absl::UnavailableError(absl::StrCat("HTTP ", answer->status, " for ", path));
  }
  return std::move(answer->body);
}

absl::StatusOr<std::map<std::string, double>> ParsePrometheusText(const std::string& text) {
  static const std::regex kSample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*,?)?\})? ([^ ]+)( [0-9]+)?$)");
  static const std::regex kComment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*$)");
  std::map<std::string, double> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty()) continue;
    const std::string l(line);
    if (l[0] == '#') {
      if (!std::regex_match(l, kComment)) return absl::DataLossError("bad comment line: " + l);
      continue;
    }
    std::smatch m;
    if (!std::regex_match(l, m, kSample)) return absl::DataLossError("bad sample line: " + l);
    double value;
    const std::string v = m[7].str();
    if (v == "+Inf") {
      value = INFINITY;
    } else if (v == "-Inf") {
      value = -INFINITY;
    } else if (v == "NaN") {
      value = NAN;
    } else if (!absl::SimpleAtod(v, &value)) {
      return absl::DataLossError("bad value in: " + l);
    }
    samples[m[1].str() + m[2].str()] = value;
  }
  return samples;
}

int PickFreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::map<std::string, double> ScrapeMetrics(int metrics_port) {
  auto body = HttpGet(metrics_port, "/metrics");
  EXPECT_TRUE(body.ok()) << body.status();
  if (!body.ok()) return {};
  auto samples = ParsePrometheusText(*body);
  EXPECT_TRUE(samples.ok()) << samples.status();
  return samples.ok() ? *samples : std::map<std::string, double>();
}

bool WaitForMetrics(int metrics_port, const std::map<std::string, double>& want) {
  for (int i = 0; i < 500; ++i) {
    const std::map<std::string, double> m = ScrapeMetrics(metrics_port);
    bool all = true;
    for (const auto& [name, value] : want) {
      const auto it = m.find(name);
      all = all && it != m.end() && it->second == value;
    }
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace testing
}  // namespace foxserve
