// UTF-8 decoding into code points with byte offsets, and the character classes that the GPT-2
// pre-tokenizer distinguishes (\p{L}, \p{N}, \s, everything else), taken from ICU.
//
// Tokenizers must accept any bytes (a client may send a prefix that ends inside a character), so
// decoding never fails: a byte that does not start a well-formed UTF-8 sequence (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF) becomes a unit of its own, of class
// kOther, so that it is kept and can round-trip through byte-level BPE.
//
// Thread-safety: free functions on values; safe to call concurrently.
#ifndef FOXSERVE_MODELS_UNICODE_TEXT_H_
#define FOXSERVE_MODELS_UNICODE_TEXT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace foxserve {
namespace models {

enum class CharClass : uint8_t {
  kLetter,      // \p{L}: general categories Lu, Ll, Lt, Lm, Lo
  kNumber,      // \p{N}: Nd, Nl, No
  kWhitespace,  // \s: the Unicode White_Space property (includes U+0085, excludes U+FEFF)
  kOther,       // anything else, including bytes of invalid UTF-8
};

// One code point of the text, or one byte of invalid UTF-8 (`valid` false).
struct TextUnit {
  char32_t code_point;  // for an invalid byte: the byte's value
  uint32_t offset;      // byte offset in the text
  uint8_t length;       // bytes: 1..4
  bool valid;
  CharClass char_class;
};

// Classifies a valid code point.
CharClass ClassifyCodePoint(char32_t code_point);

// The units of `text`, in order; their byte ranges tile the text exactly. Texts longer than
// UINT32_MAX bytes are a programming error (callers bound request sizes far below that).
std::vector<TextUnit> DecodeUtf8(absl::string_view text);

// Byte offset of the first byte that is not part of well-formed UTF-8, or -1 when `text` is
// entirely well-formed.
int64_t FindInvalidUtf8(absl::string_view text);

// Appends the UTF-8 encoding of `code_point` (which must be a Unicode scalar value: <= U+10FFFF
// and not a surrogate; anything else is a programming error).
void AppendUtf8(char32_t code_point, std::string* out);

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_UNICODE_TEXT_H_
