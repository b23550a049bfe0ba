// Start-up and lifecycle messages on stderr, one line each, with a UTC timestamp. Request text
// never goes into the log (it may be private).
#ifndef FOXSERVE_SERVER_LOG_H_
#define FOXSERVE_SERVER_LOG_H_

#include "absl/strings/string_view.h"

namespace foxserve {
namespace server {

void LogInfo(absl::string_view message);
void LogWarning(absl::string_view message);
void LogError(absl::string_view message);

// Draws "label [#####.....]  45%" on one stderr line (carriage return), and a newline at 100%.
class ProgressBar {
 public:
  explicit ProgressBar(absl::string_view label) : label_(label) {}
  void Update(int64_t done, int64_t total);

 private:
  absl::string_view label_;
  int last_percent_ = -1;
};

}  // namespace server
}  // namespace foxserve

#endif  // FOXSERVE_SERVER_LOG_H_
