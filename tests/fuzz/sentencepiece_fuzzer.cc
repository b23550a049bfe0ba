// SentencePiece through the dlopen'ed module: encode and decode of arbitrary bytes and ids. The
// fixture model keeps text as it is (identity normalization, no dummy prefix, whitespace kept,
// byte fallback), so valid UTF-8 must round-trip exactly.
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "models/unicode_text.h"
#include "tests/fuzz/fuzz_fixtures.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/fuzz_targets.h"

namespace foxserve {
namespace fuzz {

int FuzzSentencePiece(const uint8_t* data, size_t size) {
  const models::Tokenizer& t = SentencePieceFixture();
  ByteReader in(data, size);
  if (in.U8() % 2 == 0) {
    const std::string text = in.Rest();
    auto ids = t.Encode(text);
    if (!ids.ok()) {
      FUZZ_CHECK(absl::IsInvalidArgument(ids.status()), ids.status().ToString());
      return 0;
    }
    for (int32_t id : *ids) FUZZ_CHECK(id >= 0 && id < t.vocab_size(), "id outside the vocabulary");
    auto back = t.Decode(*ids);
    FUZZ_CHECK(back.ok(), back.status().ToString());
    // U+2581 is SentencePiece's own spelling of a space, and NUL ends its C strings: text with
    // either may legitimately come back different.
    if (models::FindInvalidUtf8(text) < 0 && !absl::StrContains(text, "\xE2\x96\x81") &&
        text.find('\0') == std::string::npos) {
      FUZZ_CHECK(*back == text, absl::StrCat("round trip: ", Quote(text), " -> ", Quote(*back)));
    }
  } else {
    std::vector<int32_t> ids;
    while (in.remaining() >= 2) {
      const uint16_t v = in.U16();
      ids.push_back(v >= 0xFFF0 ? -static_cast<int32_t>(v & 0xF) - 1 : v % 410);
    }
    bool in_range = true;
    for (int32_t id : ids) in_range = in_range && id >= 0 && id < t.vocab_size();
    auto text = t.Decode(ids);
    if (in_range) {
      FUZZ_CHECK(text.ok(), text.status().ToString());
    } else {
      FUZZ_CHECK(absl::IsInvalidArgument(text.status()), "an id outside the vocabulary decoded");
    }
  }
  return 0;
}

}  // namespace fuzz
}  // namespace foxserve

FOXSERVE_FUZZ_TARGET(FuzzSentencePiece)
