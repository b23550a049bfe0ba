// A minimal client of Prometheus's HTTP API on 127.0.0.1 for the deploy tests: GET with the
// error body kept (Prometheus explains a bad query in it), instant and range queries, series.
#ifndef FOXSERVE_TESTS_DEPLOY_PROMETHEUS_CLIENT_H_
#define FOXSERVE_TESTS_DEPLOY_PROMETHEUS_CLIENT_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace foxserve {
namespace testing {

class PrometheusClient {
 public:
  explicit PrometheusClient(int port) : port_(port) {}

  // The JSON answer of GET `path_and_query`; an error carries the HTTP status and Prometheus's
  // "error" text.
  absl::StatusOr<nlohmann::json> Get(const std::string& path_and_query) const;
  // data.result of /api/v1/query (a vector: [{metric, value: [t, "v"]}]).
  absl::StatusOr<nlohmann::json> Query(const std::string& promql) const;
  // data.result of /api/v1/query_range (a matrix: [{metric, values}]).
  absl::StatusOr<nlohmann::json> QueryRange(const std::string& promql, double start, double end,
                                            double step) const;
  // data of /api/v1/series?match[]=selector (label sets).
  absl::StatusOr<nlohmann::json> Series(const std::string& selector) const;

  // Polls /-/ready, then `query` until it answers one sample equal to `value`.
  bool WaitReady(double timeout_seconds) const;
  bool WaitForValue(const std::string& query, double value, double timeout_seconds) const;

  static std::string UrlEncode(const std::string& s);

 private:
  int port_;
};

}  // namespace testing
}  // namespace foxserve

#endif  // FOXSERVE_TESTS_DEPLOY_PROMETHEUS_CLIENT_H_
