#include "engine/model_backend.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace foxserve {
namespace engine {

absl::Status ModelBackend::Launch(absl::Span<const models::ForwardItem> items,
                                  std::vector<float>* logits) {
  // Runs the step now. A continued step reads the tokens the previous step chose (a row that was
  // not finite, -1, reads as token 0: its request fails when that step is finished).
  std::vector<models::ForwardItem> resolved(items.begin(), items.end());
  std::vector<int32_t> tokens(items.size());
  const bool continued = std::any_of(items.begin(), items.end(), [](const models::ForwardItem& i) {
    return i.token_from_step_in_flight;
  });
  if (continued) {
    if (run_ahead_.size() != 1 || last_greedy_.size() != items.size()) {
      return absl::FailedPreconditionError(
          "only a decode step continuing the one in flight may be launched behind it");
    }
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].token_from_step_in_flight || items[i].tokens.size() != 1 ||
          items[i].state != last_states_[i] || last_greedy_[i] == kNoGreedyToken ||
          items[i].greedy_token == nullptr) {
        return absl::FailedPreconditionError(absl::StrCat(
            "continued item ", i, ": not the in-flight step's greedy item of the same sequence"));
      }
      tokens[i] = std::max(last_greedy_[i], 0);
      resolved[i].tokens = absl::MakeConstSpan(&tokens[i], 1);
      resolved[i].token_from_step_in_flight = false;
    }
  } else if (!run_ahead_.empty()) {
    return absl::FailedPreconditionError(
        "only a decode step continuing the one in flight may be launched behind it");
  }
  absl::Status status = Forward(resolved, logits);
  last_greedy_.assign(items.size(), kNoGreedyToken);
  last_states_.assign(items.size(), nullptr);
  for (size_t i = 0; i < items.size(); ++i) {
    last_states_[i] = items[i].state;
    if (status.ok() && items[i].greedy_token != nullptr) last_greedy_[i] = *items[i].greedy_token;
  }
  run_ahead_.push_back(std::move(status));
  return absl::OkStatus();
}

absl::Status ModelBackend::Finish() {
  if (run_ahead_.empty()) return absl::FailedPreconditionError("no step in flight");
  absl::Status status = std::move(run_ahead_.front());
  run_ahead_.pop_front();
  return status;
}

}  // namespace engine
}  // namespace foxserve
