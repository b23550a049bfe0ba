#include "models/gpt2_pretokenizer.h"

#include "models/unicode_text.h"

namespace foxserve {
namespace models {
namespace {

bool IsAscii(const TextUnit& unit, char c) {
  return unit.valid && unit.code_point == static_cast<char32_t>(c);
}

// Length in units of the contraction ('s 't 're 've 'm 'll 'd, lowercase only) at `i`, or 0.
size_t ContractionLength(const std::vector<TextUnit>& units, size_t i) {
  const size_t n = units.size();
  if (!IsAscii(units[i], '\'') || i + 1 >= n) return 0;
  const TextUnit& c1 = units[i + 1];
  if (IsAscii(c1, 's') || IsAscii(c1, 't') || IsAscii(c1, 'm') || IsAscii(c1, 'd')) return 2;
  if (i + 2 >= n) return 0;
  const TextUnit& c2 = units[i + 2];
  if ((IsAscii(c1, 'r') && IsAscii(c2, 'e')) || (IsAscii(c1, 'v') && IsAscii(c2, 'e')) ||
      (IsAscii(c1, 'l') && IsAscii(c2, 'l'))) {
    return 3;
  }
  return 0;
}

// End (exclusive) of the run of units of class `c` starting at `i`.
size_t RunEnd(const std::vector<TextUnit>& units, size_t i, CharClass c) {
  while (i < units.size() && units[i].char_class == c) ++i;
  return i;
}

// End (exclusive, in units) of the regex match that starts at unit `i`.
size_t MatchEnd(const std::vector<TextUnit>& units, size_t i) {
  const size_t n = units.size();
  if (size_t length = ContractionLength(units, i); length > 0) return i + length;

  // ` ?\p{L}+`, ` ?\p{N}+` and ` ?[^\s\p{L}\p{N}]+`, in this order. Only U+0020 is the optional
  // space; when no run follows it, each alternative fails (backtracking to "no space" cannot help
  // because the space itself is none of the three classes).
  const size_t j = IsAscii(units[i], ' ') ? i + 1 : i;
  if (j < n) {
    const CharClass c = units[j].char_class;
    if (c == CharClass::kLetter || c == CharClass::kNumber || c == CharClass::kOther) {
      return RunEnd(units, j, c);
    }
  }

  // Here units[i] is whitespace: a non-space unit of another class would have matched above, and
  // a space is whitespace. `\s+(?!\S)` takes the whole run when it reaches the end of the text;
  // otherwise a non-space follows, so it backtracks one unit (the lookahead then sees the run's
  // last unit, which is whitespace), which needs a run of at least two. A single whitespace unit
  // before a non-space falls through to `\s+`.
  const size_t run_end = RunEnd(units, i, CharClass::kWhitespace);
  if (run_end == n) return run_end;
  if (run_end - i >= 2) return run_end - 1;
  return run_end;
}

}  // namespace

std::vector<TextSpan> Gpt2PreTokenize(absl::string_view text) {
  const std::vector<TextUnit> units = DecodeUtf8(text);
  std::vector<TextSpan> spans;
  size_t i = 0;
  while (i < units.size()) {
    const size_t end = MatchEnd(units, i);
    const uint32_t begin_byte = units[i].offset;
    const uint32_t end_byte = units[end - 1].offset + units[end - 1].length;
    spans.push_back({begin_byte, end_byte});
    i = end;
  }
  return spans;
}

}  // namespace models
}  // namespace foxserve
