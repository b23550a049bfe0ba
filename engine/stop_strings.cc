#include "engine/stop_strings.h"

#include <algorithm>

namespace foxserve {
namespace engine {
namespace {

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
  for (const std::string& s : stops_) hold_ = std::max(hold_, s.size() - 1);
}

std::string StopStringMatcher::Add(absl::string_view text, bool* stopped) {
  *stopped = false;
  if (stopped_) return "";
  const size_t old_size = pending_.size();
  pending_.append(text.data(), text.size());
  // A new match ends in the new text, so it starts at most (longest - 1) bytes before it: all of
  // that is still pending. Take the earliest match.
  size_t cut = std::string::npos;
  const size_t search_from = old_size > hold_ ? old_size - hold_ : 0;
  for (const std::string& s : stops_) {
    const size_t at = pending_.find(s, search_from);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    stopped_ = true;
    *stopped = true;
    std::string out = pending_.substr(0, cut);
    pending_.clear();
    return out;
  }
  if (pending_.size() <= hold_) return "";
  size_t send = pending_.size() - hold_;
  while (send > 0 && send < pending_.size() && IsContinuationByte(pending_[send])) --send;
  std::string out = pending_.substr(0, send);
  pending_.erase(0, send);
  return out;
}

std::string StopStringMatcher::Flush() {
  if (stopped_) return "";
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace engine
}  // namespace foxserve
