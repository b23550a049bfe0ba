// Helpers for tests that talk to a real server over gRPC and HTTP on 127.0.0.1.
#ifndef FOXSERVE_TESTS_SUPPORT_GRPC_TEST_UTIL_H_
#define FOXSERVE_TESTS_SUPPORT_GRPC_TEST_UTIL_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace foxserve {
namespace testing {

// grpc.health.v1.Health/Check for `service` ("" = the whole server): the ServingStatus number
// (1 SERVING, 2 NOT_SERVING), or the RPC's error. Encodes the tiny messages by hand, so no
// generated health stubs are needed.
absl::StatusOr<int> HealthCheck(const std::shared_ptr<grpc::Channel>& channel,
                                const std::string& service = "");

// The raw bytes of the server reflection's answer to list_services.
absl::StatusOr<std::string> ReflectionListServices(const std::shared_ptr<grpc::Channel>& channel);

// GET http://127.0.0.1:port/path (HTTP/1.0): the status code and body of any answer.
struct HttpAnswer {
  int status = 0;
  std::string body;
};
absl::StatusOr<HttpAnswer> HttpGetAnswer(int port, const std::string& path);

// GET http://127.0.0.1:port/path; returns the body of a 200 answer.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

// Prometheus text exposition: sample "name{labels}" -> value. Fails on any line that is not a
// comment, blank, or `name[{label="value",...}] number`.
absl::StatusOr<std::map<std::string, double>> ParsePrometheusText(const std::string& text);

// GET /metrics on the port, parsed; a failed scrape or parse is a test failure (and an empty map).
std::map<std::string, double> ScrapeMetrics(int metrics_port);

// Scrapes every 10 ms, up to 5 s, until every named sample equals its value: metrics may lag the
// client (the engine publishes after each loop iteration; a call is counted in its reactor's
// OnDone, which gRPC may run after the client already has the status). True when they all did.
bool WaitForMetrics(int metrics_port, const std::map<std::string, double>& want);

// A port that was free a moment ago.
int PickFreePort();

}  // namespace testing
}  // namespace foxserve

#endif  // FOXSERVE_TESTS_SUPPORT_GRPC_TEST_UTIL_H_
