// A Tokenizer that applies the LongCrawl64 JSON-escape convention (json_escape.h) around another
// one: Encode escapes the text first, Decode unescapes the decoded text. kind() is the inner
// kind + "+json-escape".
//
// Decode(a) + Decode(b) == Decode(a ++ b) does not hold across an escape that the split cuts
// (`\u00` | `e9`); NewIncrementalDecoder holds back text after an unfinished escape.
//
// Thread-safety: as the inner tokenizer (all methods const).
#ifndef FOXSERVE_MODELS_JSON_ESCAPE_TOKENIZER_H_
#define FOXSERVE_MODELS_JSON_ESCAPE_TOKENIZER_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "models/tokenizer.h"

namespace foxserve {
namespace models {

class JsonEscapeTokenizer : public Tokenizer {
 public:
  explicit JsonEscapeTokenizer(std::unique_ptr<Tokenizer> inner);

  // InvalidArgument for text that is not valid UTF-8.
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return inner_->vocab_size(); }
  std::optional<int32_t> bos_id() const override { return inner_->bos_id(); }
  std::optional<int32_t> eos_id() const override { return inner_->eos_id(); }
  bool add_bos() const override { return inner_->add_bos(); }
  std::string kind() const override { return inner_->kind() + "+json-escape"; }
  std::unique_ptr<IncrementalDecoder> NewIncrementalDecoder(
      absl::Span<const int32_t> context) const override {
    return NewJsonUnescapingDecoder(inner_->NewIncrementalDecoder(context));
  }

 private:
  std::unique_ptr<Tokenizer> inner_;
};

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_JSON_ESCAPE_TOKENIZER_H_
