#include "models/safetensors_header.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace foxserve {
namespace models {
namespace safetensors_internal {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxQuotedBytes = 200;
// Values of unknown entry keys are skipped, whatever they hold, but not to unbounded depth: the
// format itself never nests deeper than 3.
constexpr int kMaxSkipDepth = 64;

// What the next JSON value is, given where the parser stands.
enum class Slot {
  kRoot,           // the whole header
  kTensor,         // a tensor entry (value of a top-level key)
  kMetadata,       // the value of "__metadata__"
  kMetadataValue,  // a value inside "__metadata__"
  kDtype,
  kShape,
  kOffsets,
  kIgnored,  // the value of an unknown key in a tensor entry
  kDim,      // an element of "shape"
  kOffset,   // an element of "data_offsets"
};

// The innermost open container the parser is in (skipped containers aside).
enum class Container { kNone, kRoot, kMetadata, kEntry, kShape, kOffsets, kDone };

// Bits for the known keys of a tensor entry, to detect missing and duplicated ones.
enum FieldBit : unsigned { kDtypeBit = 1, kShapeBit = 2, kOffsetsBit = 4 };

// Builds a ParsedHeader from SAX events. Every callback returns false on the first problem,
// which makes nlohmann stop parsing; the problem is kept in status_.
class HeaderSax final : public nlohmann::json_sax<Json> {
 public:
  explicit HeaderSax(absl::string_view path) : path_(path) {}

  absl::Status status() const { return status_; }
  bool done() const { return container_ == Container::kDone; }
  ParsedHeader& result() { return result_; }

  bool null() override { return Scalar("null"); }
  bool boolean(bool) override { return Scalar("a boolean"); }
  bool number_integer(number_integer_t value) override {
    // nlohmann reports every unsigned literal through number_unsigned, so this is a literal with
    // a minus sign: only "-0" is a valid dimension or offset.
    if (value == 0) return Integer(0);
    if (Skipping()) return true;
    const Slot slot = NextSlot();
    if (slot == Slot::kDim || slot == Slot::kOffset) {
      return Fail(ElementError(absl::StrCat("is negative (", value, ")")));
    }
    return Scalar("a number");
  }
  bool number_unsigned(number_unsigned_t value) override {
    if (Skipping()) return true;
    const Slot slot = NextSlot();
    if ((slot == Slot::kDim || slot == Slot::kOffset) &&
        value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      // Rejected rather than wrapped into a negative int64_t.
      return Fail(ElementError(absl::StrCat("is ", value, ", above 2^63-1")));
    }
    return Integer(static_cast<int64_t>(
        std::min<uint64_t>(value, static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))));
  }
  bool number_float(number_float_t, const string_t& text) override {
    if (Skipping()) return true;
    const Slot slot = NextSlot();
    if (slot == Slot::kDim || slot == Slot::kOffset) {
      // Also where integers too large for uint64 end up: nlohmann parses them as doubles.
      return Fail(ElementError(absl::StrCat("is not an integer: ", QuoteForError(text))));
    }
    return Scalar("a number");
  }
  bool string(string_t& value) override {
    if (Skipping()) return true;
    switch (NextSlot()) {
      case Slot::kMetadataValue:
        result_.metadata.emplace(std::move(key_), std::move(value));
        return true;
      case Slot::kDtype:
        entry_.dtype = std::move(value);
        return true;
      default:
        return Scalar("a string");
    }
  }
  bool binary(binary_t&) override { return Scalar("binary"); }  // not produced by JSON text

  bool start_object(std::size_t) override { return StartContainer(/*is_object=*/true); }
  bool start_array(std::size_t) override { return StartContainer(/*is_object=*/false); }
  bool end_object() override { return EndContainer(); }
  bool end_array() override { return EndContainer(); }

  bool key(string_t& key) override {
    if (Skipping()) return true;
    switch (container_) {
      case Container::kRoot:
        if (!seen_names_.insert(key).second) {
          if (key == "__metadata__") {
            return Fail(absl::InvalidArgumentError(
                absl::StrCat(path_, ": \"__metadata__\" appears twice in the header")));
          }
          return Fail(absl::InvalidArgumentError(absl::StrCat(
              path_, ": duplicate tensor name ", QuoteForError(key), " in the header")));
        }
        break;
      case Container::kMetadata:
        if (result_.metadata.count(key) != 0) {
          return Fail(absl::InvalidArgumentError(
              absl::StrCat(path_, ": duplicate key ", QuoteForError(key), " in \"__metadata__\"")));
        }
        break;
      case Container::kEntry: {
        unsigned bit = 0;
        if (key == "dtype") bit = kDtypeBit;
        if (key == "shape") bit = kShapeBit;
        if (key == "data_offsets") bit = kOffsetsBit;
        if ((fields_ & bit) != 0) {
          return Fail(EntryError(absl::StrCat("duplicate key ", QuoteForError(key))));
        }
        fields_ |= bit;
        break;
      }
      default:
        break;  // keys only occur inside objects, which are the cases above
    }
    key_ = std::move(key);
    return true;
  }

  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& error) override {
    // nlohmann's message gives line, column and the offending token, which may hold raw bytes of
    // the file (and be an entire unterminated string), so it is escaped and cut.
    absl::string_view what = error.what();
    std::string printable;
    for (const char c : what.substr(0, 2 * kMaxQuotedBytes)) {
      const auto byte = static_cast<unsigned char>(c);
      if (byte >= 0x20 && byte < 0x7f) {
        printable.push_back(c);
      } else {
        absl::StrAppend(&printable, "\\x", absl::Hex(byte, absl::kZeroPad2));
      }
    }
    if (what.size() > 2 * kMaxQuotedBytes) printable += "...";
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        path_, ": header is not valid JSON (at header byte ", position, "): ", printable)));
  }

 private:
  bool Skipping() const { return skip_depth_ > 0; }

  Slot NextSlot() const {
    switch (container_) {
      case Container::kNone:
        return Slot::kRoot;
      case Container::kRoot:
        return key_ == "__metadata__" ? Slot::kMetadata : Slot::kTensor;
      case Container::kMetadata:
        return Slot::kMetadataValue;
      case Container::kEntry:
        if (key_ == "dtype") return Slot::kDtype;
        if (key_ == "shape") return Slot::kShape;
        if (key_ == "data_offsets") return Slot::kOffsets;
        return Slot::kIgnored;
      case Container::kShape:
        return Slot::kDim;
      case Container::kOffsets:
        return Slot::kOffset;
      case Container::kDone:
        break;  // unreachable: nlohmann reports anything after the root value as a syntax error
    }
    return Slot::kRoot;
  }

  // A non-container value that is not a string or an acceptable integer; `what` describes it.
  bool Scalar(absl::string_view what) {
    if (Skipping()) return true;
    return WrongType(NextSlot(), what);
  }

  bool WrongType(Slot slot, absl::string_view what) {
    switch (slot) {
      case Slot::kRoot:
        return Fail(absl::InvalidArgumentError(
            absl::StrCat(path_, ": header is ", what, ", not a JSON object")));
      case Slot::kTensor:  // the entry has not started: its name is still the current key
        return Fail(absl::InvalidArgumentError(absl::StrCat(
            path_, ": tensor ", QuoteForError(key_), ": entry is ", what, ", not a JSON object")));
      case Slot::kMetadata:
        return Fail(absl::InvalidArgumentError(
            absl::StrCat(path_, ": \"__metadata__\" is ", what, ", not a JSON object")));
      case Slot::kMetadataValue:
        return Fail(absl::InvalidArgumentError(
            absl::StrCat(path_, ": \"__metadata__\" value for key ", QuoteForError(key_), " is ",
                         what, ", not a string")));
      case Slot::kDtype:
        return Fail(EntryError(absl::StrCat("\"dtype\" is ", what, ", not a string")));
      case Slot::kShape:
        return Fail(EntryError(absl::StrCat("\"shape\" is ", what, ", not an array")));
      case Slot::kOffsets:
        return Fail(EntryError(absl::StrCat("\"data_offsets\" is ", what, ", not an array")));
      case Slot::kIgnored:
        return true;
      case Slot::kDim:
      case Slot::kOffset:
        return Fail(ElementError(absl::StrCat("is ", what, ", not an integer")));
    }
    return true;
  }

  // A non-negative integer literal below 2^63.
  bool Integer(int64_t value) {
    if (Skipping()) return true;
    const Slot slot = NextSlot();
    if (slot == Slot::kDim) {
      entry_.shape.push_back(value);
      return true;
    }
    if (slot == Slot::kOffset) {
      if (offsets_seen_ >= 2) {
        return Fail(EntryError("\"data_offsets\" has more than 2 elements"));
      }
      (offsets_seen_ == 0 ? entry_.begin : entry_.end) = value;
      ++offsets_seen_;
      return true;
    }
    return Scalar("a number");
  }

  bool StartContainer(bool is_object) {
    if (Skipping()) {
      if (++skip_depth_ > kMaxSkipDepth) {
        return Fail(EntryError(absl::StrCat("value of key ", QuoteForError(key_),
                                            " nests deeper than ", kMaxSkipDepth, " levels")));
      }
      return true;
    }
    const Slot slot = NextSlot();
    const char* what = is_object ? "an object" : "an array";
    switch (slot) {
      case Slot::kRoot:
        if (!is_object) return WrongType(slot, what);
        container_ = Container::kRoot;
        return true;
      case Slot::kTensor:
        if (!is_object) return WrongType(slot, what);
        entry_ = HeaderEntry();
        entry_.name = std::move(key_);
        fields_ = 0;
        container_ = Container::kEntry;
        return true;
      case Slot::kMetadata:
        if (!is_object) return WrongType(slot, what);
        container_ = Container::kMetadata;
        return true;
      case Slot::kShape:
        if (is_object) return WrongType(slot, what);
        container_ = Container::kShape;
        return true;
      case Slot::kOffsets:
        if (is_object) return WrongType(slot, what);
        offsets_seen_ = 0;
        container_ = Container::kOffsets;
        return true;
      case Slot::kIgnored:
        skip_depth_ = 1;
        return true;
      default:
        return WrongType(slot, what);
    }
  }

  bool EndContainer() {
    if (Skipping()) {
      --skip_depth_;
      return true;
    }
    switch (container_) {
      case Container::kRoot:
        container_ = Container::kDone;
        return true;
      case Container::kMetadata:
        container_ = Container::kRoot;
        return true;
      case Container::kEntry:
        for (const auto& [bit, field] : {std::pair<unsigned, const char*>{kDtypeBit, "dtype"},
                                         {kShapeBit, "shape"},
                                         {kOffsetsBit, "data_offsets"}}) {
          if ((fields_ & bit) == 0) {
            return Fail(EntryError(absl::StrCat("missing \"", field, "\"")));
          }
        }
        result_.entries.push_back(std::move(entry_));
        container_ = Container::kRoot;
        return true;
      case Container::kShape:
        container_ = Container::kEntry;
        return true;
      case Container::kOffsets:
        if (offsets_seen_ != 2) {
          return Fail(EntryError(absl::StrCat("\"data_offsets\" has ", offsets_seen_,
                                              " elements, expected 2 [begin, end]")));
        }
        container_ = Container::kEntry;
        return true;
      default:
        return true;  // unreachable: nlohmann balances containers
    }
  }

  absl::Status EntryError(absl::string_view message) const {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": tensor ", QuoteForError(entry_.name), ": ", message));
  }
  absl::Status ElementError(absl::string_view message) const {
    if (container_ == Container::kShape) {
      return EntryError(absl::StrCat("\"shape\"[", entry_.shape.size(), "] ", message));
    }
    return EntryError(absl::StrCat("\"data_offsets\"[", offsets_seen_, "] ", message));
  }

  bool Fail(absl::Status status) {
    if (status_.ok()) status_ = std::move(status);
    return false;
  }

  const absl::string_view path_;
  absl::Status status_;
  ParsedHeader result_;
  Container container_ = Container::kNone;
  std::string key_;  // the last key read at the current level
  std::set<std::string> seen_names_;
  HeaderEntry entry_;  // the entry being read
  unsigned fields_ = 0;
  int offsets_seen_ = 0;
  int skip_depth_ = 0;
};

}  // namespace

std::string QuoteForError(absl::string_view name) {
  if (name.size() <= kMaxQuotedBytes) return absl::StrCat("\"", absl::CHexEscape(name), "\"");
  return absl::StrCat("\"", absl::CHexEscape(name.substr(0, kMaxQuotedBytes)), "\"... (",
                      name.size(), " bytes)");
}

absl::StatusOr<ParsedHeader> ParseHeader(absl::string_view json, absl::string_view path) {
  // nlohmann's lexer takes a NUL byte for the end of input, which would silently accept
  // anything after it ("{}\0garbage"); NUL is never valid in JSON text outside strings (where it
  // must be escaped), so it is rejected up front.
  const size_t nul = json.find('\0');
  if (nul != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": header is not valid JSON (NUL byte at header byte ", nul, ")"));
  }
  HeaderSax sax(path);
  // The SAX entry point never throws for JSON input: syntax errors arrive in parse_error and are
  // stored in the handler like every other problem.
  const bool ok = Json::sax_parse(json.data(), json.data() + json.size(), &sax);
  if (!sax.status().ok()) return sax.status();
  if (!ok || !sax.done()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header is not valid JSON"));
  }
  return std::move(sax.result());
}

}  // namespace safetensors_internal
}  // namespace models
}  // namespace foxserve
