#include "models/json_escape.h"

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "models/unicode_text.h"

namespace foxserve {
namespace models {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

void AppendUnicodeEscape(uint32_t code_unit, std::string* out) {
  out->append("\\u");
  for (int shift = 12; shift >= 0; shift -= 4) {
    out->push_back(kHexDigits[(code_unit >> shift) & 0xF]);
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The code unit of a `\uXXXX` escape starting at text[i] (the backslash), or -1 when there is no
// complete one there.
int32_t UnicodeEscapeAt(absl::string_view text, size_t i) {
  if (i + 6 > text.size() || text[i] != '\\' || text[i + 1] != 'u') return -1;
  int32_t value = 0;
  for (size_t k = i + 2; k < i + 6; ++k) {
    const int digit = HexValue(text[k]);
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

// The escapes json.dumps writes as backslash + letter; nullptr for other characters.
const char* TwoCharacterEscape(char32_t c) {
  switch (c) {
    case '"':
      return "\\\"";
    case '\\':
      return "\\\\";
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    case '\b':
      return "\\b";
    case '\f':
      return "\\f";
    default:
      return nullptr;
  }
}

bool IsHighSurrogate(int32_t u) { return u >= 0xD800 && u <= 0xDBFF; }
bool IsLowSurrogate(int32_t u) { return u >= 0xDC00 && u <= 0xDFFF; }

}  // namespace

absl::StatusOr<std::string> JsonEscape(absl::string_view utf8) {
  if (utf8.size() > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("text of ", utf8.size(), " bytes is too long to tokenize"));
  }
  if (const int64_t bad = FindInvalidUtf8(utf8); bad >= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "text is not valid UTF-8 at byte ", bad, " (the JSON-escape convention needs characters)"));
  }
  std::string out;
  out.reserve(utf8.size() + utf8.size() / 8);
  for (const TextUnit& unit : DecodeUtf8(utf8)) {
    const char32_t c = unit.code_point;
    if (const char* escape = TwoCharacterEscape(c); escape != nullptr) {
      out.append(escape);
    } else if (c >= 0x20 && c <= 0x7E) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x10000) {
      AppendUnicodeEscape(c, &out);
    } else {
      const uint32_t v = c - 0x10000;
      AppendUnicodeEscape(0xD800 + (v >> 10), &out);
      AppendUnicodeEscape(0xDC00 + (v & 0x3FF), &out);
    }
  }
  return out;
}

std::string JsonUnescape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c != '\\' || i + 1 >= text.size()) {
      out.push_back(c);  // includes a trailing lone backslash
      ++i;
      continue;
    }
    const char e = text[i + 1];
    const char* simple = nullptr;
    switch (e) {
      case '"':
        simple = "\"";
        break;
      case '\\':
        simple = "\\";
        break;
      case '/':
        simple = "/";
        break;
      case 'b':
        simple = "\b";
        break;
      case 'f':
        simple = "\f";
        break;
      case 'n':
        simple = "\n";
        break;
      case 'r':
        simple = "\r";
        break;
      case 't':
        simple = "\t";
        break;
      default:
        break;
    }
    if (simple != nullptr) {
      out.append(simple);
      i += 2;
      continue;
    }
    const int32_t unit = UnicodeEscapeAt(text, i);
    if (unit < 0) {
      // Invalid or incomplete: keep the backslash; what follows is copied (or decoded, if it
      // starts another escape) by the next iterations.
      out.push_back(c);
      ++i;
      continue;
    }
    if (IsHighSurrogate(unit)) {
      const int32_t low = UnicodeEscapeAt(text, i + 6);
      if (IsLowSurrogate(low)) {
        AppendUtf8(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00), &out);
        i += 12;
        continue;
      }
    }
    AppendUtf8(IsHighSurrogate(unit) || IsLowSurrogate(unit) ? 0xFFFD : unit, &out);
    i += 6;
  }
  return out;
}

}  // namespace models
}  // namespace foxserve
