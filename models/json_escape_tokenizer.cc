#include "models/json_escape_tokenizer.h"

#include <utility>

#include "kernels/check.h"
#include "models/json_escape.h"
#include "models/status_macros.h"

namespace foxserve {
namespace models {

JsonEscapeTokenizer::JsonEscapeTokenizer(std::unique_ptr<Tokenizer> inner)
    : inner_(std::move(inner)) {
  FOXSERVE_CHECK(inner_ != nullptr);
}

absl::StatusOr<std::vector<int32_t>> JsonEscapeTokenizer::Encode(absl::string_view text) const {
  FOXSERVE_ASSIGN_OR_RETURN(std::string escaped, JsonEscape(text));
  return inner_->Encode(escaped);
}

absl::StatusOr<std::string> JsonEscapeTokenizer::Decode(absl::Span<const int32_t> ids) const {
  FOXSERVE_ASSIGN_OR_RETURN(std::string escaped, inner_->Decode(ids));
  return JsonUnescape(escaped);
}

}  // namespace models
}  // namespace foxserve
