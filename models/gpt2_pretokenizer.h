// GPT-2's pre-tokenizer: splits text into the "words" that byte-level BPE encodes one by one,
// exactly as the regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does under leftmost-first alternation (the semantics of Python `regex`, JavaScript and the
// Rust crates used by Hugging Face tokenizers), written out by hand so that no regex engine is
// needed. \s is the Unicode White_Space property, as in Hugging Face tokenizers; JavaScript
// differs at U+0085 (not \s there) and U+FEFF (\s there). Bytes of invalid UTF-8 are treated like
// characters outside \s, \p{L} and \p{N} (as JavaScript treats the U+FFFD they decode to).
//
// Thread-safety: a pure function; safe to call concurrently.
#ifndef FOXSERVE_MODELS_GPT2_PRETOKENIZER_H_
#define FOXSERVE_MODELS_GPT2_PRETOKENIZER_H_

#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"

namespace foxserve {
namespace models {

// Byte range [begin, end) of one pre-token in the text.
struct TextSpan {
  uint32_t begin;
  uint32_t end;
};

// The pre-tokens of `text`, in order; they tile the text exactly (every byte is in one span, and
// no span is empty).
std::vector<TextSpan> Gpt2PreTokenize(absl::string_view text);

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_GPT2_PRETOKENIZER_H_
