#include "models/incremental_decoder.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "models/json_escape.h"
#include "models/tokenizer.h"
#include "models/unicode_text.h"

namespace foxserve {
namespace models {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

bool IsContinuation(unsigned char b) { return (b & 0xC0) == 0x80; }

// Bytes a well-formed sequence starting with `lead` needs; 0 when it cannot start one.
int SequenceLength(unsigned char lead) {
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

class ConcatenatingDecoder : public IncrementalDecoder {
 public:
  explicit ConcatenatingDecoder(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}
  std::string Push(int32_t id) override {
    auto bytes = tokenizer_->Decode({id});
    if (bytes.ok()) pending_ += *bytes;
    return TakeCompleteUtf8(&pending_, false);
  }
  std::string Flush() override { return TakeCompleteUtf8(&pending_, true); }

 private:
  const Tokenizer* tokenizer_;
  std::string pending_;
};

// The offsets scheme of Hugging Face's and vLLM's streaming detokenizers: decode
// ids[prefix, end) and ids[prefix, read); the difference is the new text, unless it ends in an
// incomplete character (U+FFFD from byte pieces), in which case wait for more tokens.
class WindowDecoder : public IncrementalDecoder {
 public:
  WindowDecoder(const Tokenizer* tokenizer, absl::Span<const int32_t> context)
      : tokenizer_(tokenizer), ids_(context.begin(), context.end()), read_(ids_.size()) {}

  std::string Push(int32_t id) override {
    if (id < 0 || id >= tokenizer_->vocab_size()) return "";
    ids_.push_back(id);
    return Advance(false);
  }
  std::string Flush() override { return Advance(true); }

 private:
  std::string Advance(bool flush) {
    auto span = absl::MakeConstSpan(ids_);
    auto before = tokenizer_->Decode(span.subspan(prefix_, read_ - prefix_));
    auto after = tokenizer_->Decode(span.subspan(prefix_));
    if (!before.ok() || !after.ok()) return "";
    if (after->size() < before->size() || !absl::StartsWith(*after, *before)) return "";
    std::string fresh = after->substr(before->size());
    if (!flush && absl::EndsWith(fresh, kReplacement)) return "";
    prefix_ = read_;
    read_ = ids_.size();
    // Keep the window short: the ids before prefix_ no longer matter.
    if (prefix_ > 64) {
      ids_.erase(ids_.begin(), ids_.begin() + prefix_);
      read_ -= prefix_;
      prefix_ = 0;
    }
    return TakeCompleteUtf8(&fresh, true);
  }

  const Tokenizer* tokenizer_;
  std::vector<int32_t> ids_;
  size_t prefix_ = 0;
  size_t read_;
};

bool IsHex(char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); }

unsigned HexValue(absl::string_view four_hex) {
  unsigned v = 0;
  for (char c : four_hex) v = v * 16 + (absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10);
  return v;
}

// Whether `s` (at most six characters) is "\u" followed by hex digits, or a prefix of that.
bool IsUnicodeEscapePrefix(absl::string_view s) {
  if (!s.empty() && s[0] != '\\') return false;
  if (s.size() >= 2 && s[1] != 'u') return false;
  for (size_t k = 2; k < s.size(); ++k) {
    if (!IsHex(s[k])) return false;
  }
  return true;
}

class JsonUnescapingDecoder : public IncrementalDecoder {
 public:
  explicit JsonUnescapingDecoder(std::unique_ptr<IncrementalDecoder> inner)
      : inner_(std::move(inner)) {}

  std::string Push(int32_t id) override {
    raw_ += inner_->Push(id);
    const size_t cut = StablePrefix();
    std::string out = JsonUnescape(absl::string_view(raw_).substr(0, cut));
    raw_.erase(0, cut);
    return out;
  }
  std::string Flush() override {
    raw_ += inner_->Flush();
    std::string out = JsonUnescape(raw_);
    raw_.clear();
    return out;
  }

 private:
  // Length of the longest prefix of raw_ that ends outside any escape that could still change
  // meaning with more text: a trailing `\`, `\u` with fewer than four hex digits, or a high
  // surrogate escape that a low one may follow.
  size_t StablePrefix() const {
    const size_t n = raw_.size();
    size_t i = 0;
    while (i < n) {
      if (raw_[i] != '\\') {
        ++i;
        continue;
      }
      if (i + 1 >= n) return i;
      if (raw_[i + 1] != 'u') {
        i += 2;
        continue;
      }
      size_t hex = 0;
      while (hex < 4 && i + 2 + hex < n && IsHex(raw_[i + 2 + hex])) ++hex;
      if (hex < 4) {
        if (i + 2 + hex >= n) return i;  // digits may still come
        i += 2;                          // not an escape: kept literally
        continue;
      }
      const unsigned value = HexValue(absl::string_view(raw_).substr(i + 2, 4));
      if (value >= 0xD800 && value <= 0xDBFF) {
        // A high surrogate pairs with a following "\uDC00".."\uDFFF": wait while that may come.
        const absl::string_view rest = absl::string_view(raw_).substr(i + 6);
        if (rest.size() < 6 && IsUnicodeEscapePrefix(rest)) return i;
        if (rest.size() >= 6 && IsUnicodeEscapePrefix(rest.substr(0, 6))) {
          const unsigned low = HexValue(rest.substr(2, 4));
          if (low >= 0xDC00 && low <= 0xDFFF) {
            i += 12;
            continue;
          }
        }
      }
      i += 6;
    }
    return n;
  }

  std::unique_ptr<IncrementalDecoder> inner_;
  std::string raw_;
};

}  // namespace

std::string TakeCompleteUtf8(std::string* pending, bool flush) {
  std::string out;
  const std::string& s = *pending;
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char lead = static_cast<unsigned char>(s[i]);
    if (lead < 0x80) {
      out += s[i++];
      continue;
    }
    const int need = SequenceLength(lead);
    if (need == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    size_t have = 1;
    while (have < static_cast<size_t>(need) && i + have < s.size() &&
           IsContinuation(static_cast<unsigned char>(s[i + have]))) {
      ++have;
    }
    if (have == static_cast<size_t>(need)) {
      const absl::string_view seq(s.data() + i, need);
      if (FindInvalidUtf8(seq) < 0) {
        out.append(seq.data(), seq.size());
      } else {
        out += kReplacement;  // overlong, surrogate or above U+10FFFF
      }
      i += need;
    } else if (i + have == s.size() && !flush) {
      break;  // incomplete at the end: wait
    } else {
      out += kReplacement;
      i += have;
    }
  }
  pending->erase(0, i);
  return out;
}

std::unique_ptr<IncrementalDecoder> NewConcatenatingDecoder(const Tokenizer* tokenizer) {
  return std::make_unique<ConcatenatingDecoder>(tokenizer);
}

std::unique_ptr<IncrementalDecoder> NewWindowDecoder(const Tokenizer* tokenizer,
                                                     absl::Span<const int32_t> context) {
  return std::make_unique<WindowDecoder>(tokenizer, context);
}

std::unique_ptr<IncrementalDecoder> NewJsonUnescapingDecoder(
    std::unique_ptr<IncrementalDecoder> inner) {
  return std::make_unique<JsonUnescapingDecoder>(std::move(inner));
}

}  // namespace models
}  // namespace foxserve
