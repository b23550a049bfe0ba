#include "server/log.h"

#include <cstdio>
#include <mutex>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace foxserve {
namespace server {
namespace {

void Write(const char* level, absl::string_view message) {
  const std::string stamp =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::fprintf(stderr, "%s %s %.*s\n", stamp.c_str(), level, static_cast<int>(message.size()),
               message.data());
  std::fflush(stderr);
}

}  // namespace

void LogInfo(absl::string_view message) { Write("I", message); }
void LogWarning(absl::string_view message) { Write("W", message); }
void LogError(absl::string_view message) { Write("E", message); }

void ProgressBar::Update(int64_t done, int64_t total) {
  const int percent = total <= 0 ? 100 : static_cast<int>(100 * done / total);
  if (percent == last_percent_) return;
  last_percent_ = percent;
  const int width = 30, filled = percent * width / 100;
  std::fprintf(stderr, "\r%.*s [%s%s] %3d%%", static_cast<int>(label_.size()), label_.data(),
               std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(), percent);
  if (percent >= 100) std::fputc('\n', stderr);
  std::fflush(stderr);
}

}  // namespace server
}  // namespace foxserve
