// The text convention of the released FoX LongCrawl64 checkpoints (JSONGPT2Tokenizer in
// zhixuan-lin/forgetting-transformer, src/forgetting_transformer/tokenizer.py): the model was
// trained on the body of Python's json.dumps(text), so text is escaped before BPE and unescaped
// after decoding.
//
// Thread-safety: pure functions; safe to call concurrently.
#ifndef FOXSERVE_MODELS_JSON_ESCAPE_H_
#define FOXSERVE_MODELS_JSON_ESCAPE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace foxserve {
namespace models {

// Python's json.dumps(text)[1:-1] with ensure_ascii=True: `"` -> `\"`, `\` -> `\\`, \n \r \t \b
// \f as two-character escapes, every other character outside 0x20..0x7e as `\uXXXX` (lowercase
// hex; characters above U+FFFF as a UTF-16 surrogate pair). The result is ASCII.
// InvalidArgument, naming the byte offset, when `utf8` is not well-formed UTF-8 (Python strings
// hold characters, so there is nothing to escape such bytes to).
absl::StatusOr<std::string> JsonEscape(absl::string_view utf8);

// Python's json.loads('"' + text + '"') where that succeeds. Where it would fail, the best effort
// the model's output still deserves: every valid escape is decoded, an invalid or incomplete one
// (`\x`, `\u12`, a trailing `\`) is kept as written, a surrogate escape that is not part of a
// high+low pair becomes U+FFFD, and everything else (raw quotes, control characters, non-ASCII
// bytes, even invalid UTF-8) is copied unchanged. Never fails.
std::string JsonUnescape(absl::string_view text);

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_JSON_ESCAPE_H_
