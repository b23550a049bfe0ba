// The engine's streaming text path (Engine::Advance): an incremental decoder turns each new token
// into final text, which goes through the request's StopStringMatcher. Properties:
//   - every piece is valid UTF-8, and nothing is ever taken back;
//   - byte-level BPE: the pieces concatenate to the whole decode (invalid bytes as U+FFFD);
//     with the JSON-escape convention, to its unescaping, however the escapes are split;
//   - with stop strings: the output is a prefix of the unstopped text, contains no stop string,
//     and when it stopped, a stop string follows it in the unstopped text.
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/stop_strings.h"
#include "models/incremental_decoder.h"
#include "models/json_escape.h"
#include "models/unicode_text.h"
#include "tests/fuzz/fuzz_fixtures.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/fuzz_targets.h"

namespace foxserve {
namespace fuzz {
namespace {

// Runs the tokens through a fresh decoder; returns the concatenated pieces (flush included).
std::string StreamAll(const models::Tokenizer& t, const std::vector<int32_t>& context,
                      const std::vector<int32_t>& tokens) {
  std::unique_ptr<models::IncrementalDecoder> decoder = t.NewIncrementalDecoder(context);
  std::string all;
  for (int32_t id : tokens) {
    const std::string piece = decoder->Push(id);
    FUZZ_CHECK(models::FindInvalidUtf8(piece) < 0,
               absl::StrCat(t.kind(), ": piece is not UTF-8: ", Quote(piece)));
    all += piece;
  }
  const std::string tail = decoder->Flush();
  FUZZ_CHECK(models::FindInvalidUtf8(tail) < 0,
             absl::StrCat(t.kind(), ": flushed text is not UTF-8: ", Quote(tail)));
  return all + tail;
}

}  // namespace

int FuzzStreamDecoder(const uint8_t* data, size_t size) {
  ByteReader in(data, size);
  const int mode = in.U8() % 3;
  const models::Tokenizer& t =
      mode == 0 ? BpeFixture() : mode == 1 ? JsonBpeFixture() : SentencePieceFixture();
  std::vector<std::string> stops;
  for (int n = in.U8() % 4; n > 0; --n) {
    std::string s = in.Bytes(8);
    if (!s.empty()) stops.push_back(s);
  }
  std::vector<int32_t> context;
  for (int n = in.U8() % 6; n > 0; --n) context.push_back(in.U16() % t.vocab_size());
  std::vector<int32_t> tokens;
  while (in.remaining() >= 2) {
    const uint16_t v = in.U16();
    // Mostly real ids; now and then one outside the vocabulary (which must add nothing).
    tokens.push_back(v >= 0xFFF8 ? t.vocab_size() + (v & 7) : v % t.vocab_size());
  }

  // - The whole text, without stop strings.
  const std::string full = StreamAll(t, context, tokens);
  std::vector<int32_t> valid;
  for (int32_t id : tokens) {
    if (id < t.vocab_size()) valid.push_back(id);
  }
  if (mode < 2) {
    // Byte-level BPE decodes by concatenation; the stream cleans the bytes into UTF-8 and (JSON
    // convention) unescapes the cleaned text, wherever the token boundaries fall.
    auto raw = BpeFixture().Decode(valid);
    FUZZ_CHECK(raw.ok(), raw.status().ToString());
    std::string bytes = *raw;
    std::string expected = models::TakeCompleteUtf8(&bytes, /*flush=*/true);
    if (mode == 1) expected = models::JsonUnescape(expected);
    FUZZ_CHECK(full == expected, absl::StrCat(t.kind(), ": streamed ", Quote(full),
                                              " but the whole decode is ", Quote(expected)));
  }

  // - The same stream through the stop-string matcher, as Engine::Advance does.
  if (stops.empty()) return 0;
  std::unique_ptr<models::IncrementalDecoder> decoder = t.NewIncrementalDecoder(context);
  engine::StopStringMatcher matcher(stops);
  std::string out;
  bool stopped = false;
  for (int32_t id : tokens) {
    out += matcher.Add(decoder->Push(id), &stopped);
    if (stopped) break;
  }
  if (!stopped) {
    out += matcher.Add(decoder->Flush(), &stopped);
    if (!stopped) out += matcher.Flush();
  }
  const std::string where = absl::StrCat(t.kind(), ": full ", Quote(full), ", out ", Quote(out));
  FUZZ_CHECK(absl::StartsWith(full, out), where + ": output is not a prefix of the text");
  for (const std::string& s : stops) {
    FUZZ_CHECK(!absl::StrContains(out, s), where + ": output contains stop " + Quote(s));
  }
  if (stopped) {
    bool follows = false;
    for (const std::string& s : stops) {
      follows = follows || absl::StartsWith(absl::string_view(full).substr(out.size()), s);
    }
    FUZZ_CHECK(follows, where + ": stopped, but no stop string follows the output");
  } else {
    FUZZ_CHECK(out == full, where + ": not stopped, yet text was lost");
  }
  return 0;
}

}  // namespace fuzz
}  // namespace foxserve

FOXSERVE_FUZZ_TARGET(FuzzStreamDecoder)
