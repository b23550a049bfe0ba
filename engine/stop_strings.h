// Stop strings over streamed text: holds back just enough text that no part of a stop string is
// ever sent, and cuts the output where the first stop string begins.
#ifndef FOXSERVE_ENGINE_STOP_STRINGS_H_
#define FOXSERVE_ENGINE_STOP_STRINGS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace foxserve {
namespace engine {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);

  // Appends `text` (whole UTF-8 characters) and returns what is safe to send. When a stop string
  // completes, returns the text before it, sets *stopped and ignores later input.
  std::string Add(absl::string_view text, bool* stopped);
  // The held-back text, once generation ended without a stop string.
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  size_t hold_ = 0;     // longest stop string - 1
  std::string pending_;  // not yet sent
  bool stopped_ = false;
};

}  // namespace engine
}  // namespace foxserve

#endif  // FOXSERVE_ENGINE_STOP_STRINGS_H_
