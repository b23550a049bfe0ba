#include "engine/model_backend.h"

#include <algorithm>

#include "models/status_macros.h"

namespace foxserve {
namespace engine {

absl::Status ModelBackend::Launch(absl::Span<const models::ForwardItem> items,
                                  std::vector<float>* logits) {
  // Runs the step now. A continued step reads the tokens the previous step chose, which its
  // items' outputs hold by now (a row that was not finite, -1, reads as token 0: its request
  // fails when that step is finished).
  const bool continued = std::any_of(items.begin(), items.end(), [](const models::ForwardItem& i) {
    return i.token_from_step_in_flight;
  });
  if (!continued && run_ahead_.empty()) {
    run_ahead_.push_back(Forward(items, logits));
  } else {
    if (run_ahead_.size() != 1 || !run_ahead_.front().ok()) {
      return absl::FailedPreconditionError(
          "only a decode step continuing the one in flight may be launched behind it");
    }
    FOXSERVE_RETURN_IF_ERROR(models::CheckContinuesStep(last_items_, items));
    std::vector<models::ForwardItem> resolved(items.begin(), items.end());
    std::vector<int32_t> tokens(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      tokens[i] = std::max(*last_items_[i].greedy_token, 0);
      resolved[i].tokens = absl::MakeConstSpan(&tokens[i], 1);
      resolved[i].token_from_step_in_flight = false;
    }
    run_ahead_.push_back(Forward(resolved, logits));
  }
  last_items_.assign(items.begin(), items.end());
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
