#include "models/unicode_text.h"

#include <unicode/uchar.h>

#include <array>
#include <limits>

#include "kernels/check.h"

namespace foxserve {
namespace models {
namespace {

CharClass ClassifyWithIcu(char32_t code_point) {
  const UChar32 c = static_cast<UChar32>(code_point);
  // White_Space first: no White_Space character is a letter or number, so the order only
  // matters for speed.
  if (u_isUWhiteSpace(c)) return CharClass::kWhitespace;
  switch (u_charType(c)) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return CharClass::kLetter;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return CharClass::kNumber;
    default:
      return CharClass::kOther;
  }
}

// ASCII is most of most texts; a table avoids two ICU calls per character.
const std::array<CharClass, 128>& AsciiClasses() {
  static const std::array<CharClass, 128> table = [] {
    std::array<CharClass, 128> t{};
    for (char32_t c = 0; c < 128; ++c) t[c] = ClassifyWithIcu(c);
    return t;
  }();
  return table;
}

bool IsContinuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// Length of the well-formed UTF-8 sequence at the start of `s` (Unicode Table 3-7), or 0 when
// the first byte does not start one. Sets `*code_point` on success.
int WellFormedSequence(const unsigned char* s, size_t available, char32_t* code_point) {
  const unsigned char b0 = s[0];
  if (b0 < 0x80) {
    *code_point = b0;
    return 1;
  }
  int length;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  char32_t value;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
    value = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    value = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
    if (b0 == 0xED) hi = 0x9F;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    value = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;  // no overlong forms
    if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (available < static_cast<size_t>(length)) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  value = (value << 6) | (s[1] & 0x3F);
  for (int i = 2; i < length; ++i) {
    if (!IsContinuation(s[i])) return 0;
    value = (value << 6) | (s[i] & 0x3F);
  }
  *code_point = value;
  return length;
}

}  // namespace

CharClass ClassifyCodePoint(char32_t code_point) {
  if (code_point < 128) return AsciiClasses()[code_point];
  return ClassifyWithIcu(code_point);
}

std::vector<TextUnit> DecodeUtf8(absl::string_view text) {
  FOXSERVE_CHECK_LE(text.size(), std::numeric_limits<uint32_t>::max());
  const auto& ascii = AsciiClasses();
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  std::vector<TextUnit> units;
  units.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char b = bytes[i];
    if (b < 0x80) {
      units.push_back({b, static_cast<uint32_t>(i), 1, true, ascii[b]});
      ++i;
      continue;
    }
    char32_t code_point = 0;
    const int length = WellFormedSequence(bytes + i, text.size() - i, &code_point);
    if (length == 0) {
      units.push_back({b, static_cast<uint32_t>(i), 1, false, CharClass::kOther});
      ++i;
    } else {
      units.push_back({code_point, static_cast<uint32_t>(i), static_cast<uint8_t>(length), true,
                       ClassifyWithIcu(code_point)});
      i += length;
    }
  }
  return units;
}

int64_t FindInvalidUtf8(absl::string_view text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    if (bytes[i] < 0x80) {
      ++i;
      continue;
    }
    char32_t code_point;
    const int length = WellFormedSequence(bytes + i, text.size() - i, &code_point);
    if (length == 0) return static_cast<int64_t>(i);
    i += length;
  }
  return -1;
}

void AppendUtf8(char32_t c, std::string* out) {
  FOXSERVE_CHECK(c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF))
      << "code point " << static_cast<uint32_t>(c);
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

}  // namespace models
}  // namespace foxserve
