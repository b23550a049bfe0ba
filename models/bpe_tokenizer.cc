#include "models/bpe_tokenizer.h"

#include <algorithm>
#include <functional>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/check.h"
#include "models/gpt2_pretokenizer.h"
#include "models/unicode_text.h"

namespace foxserve {
namespace models {
namespace {

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves; the other 68 bytes,
// in increasing order, map to U+0100, U+0101, ...
bool IsSelfMappedByte(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct ByteAlphabet {
  std::array<char32_t, 256> code_point_of_byte;
  std::unordered_map<char32_t, uint8_t> byte_of_code_point;
};

const ByteAlphabet& Alphabet() {
  static const ByteAlphabet* alphabet = [] {
    auto* a = new ByteAlphabet;
    char32_t next_shifted = 0x100;
    for (int b = 0; b < 256; ++b) {
      a->code_point_of_byte[b] = IsSelfMappedByte(b) ? static_cast<char32_t>(b) : next_shifted++;
      a->byte_of_code_point[a->code_point_of_byte[b]] = static_cast<uint8_t>(b);
    }
    return a;
  }();
  return *alphabet;
}

// The raw bytes of a token spelled in the byte alphabet. A spelling with a character outside the
// alphabet (an added token such as "<|im_start|>" is inside it, but "€" is not) stands for its own
// UTF-8 bytes, as Hugging Face decodes such added tokens.
std::string TokenBytes(absl::string_view spelling) {
  const ByteAlphabet& alphabet = Alphabet();
  std::string bytes;
  for (const TextUnit& unit : DecodeUtf8(spelling)) {
    auto it = unit.valid ? alphabet.byte_of_code_point.find(unit.code_point)
                         : alphabet.byte_of_code_point.end();
    if (it == alphabet.byte_of_code_point.end()) return std::string(spelling);
    bytes.push_back(static_cast<char>(it->second));
  }
  return bytes;
}

std::string ByteTokenSpelling(int b) {
  std::string s;
  AppendUtf8(Alphabet().code_point_of_byte[b], &s);
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Create(const BpeSpec& spec) {
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer);
  t->source_ = spec.source;

  // Ids -> spellings, checking that no id is used twice.
  std::vector<const std::string*> spelling_of_id;
  auto assign = [&](const std::string& spelling, int32_t id, const char* what) -> absl::Status {
    if (id < 0 || id > kMaxBpeTokenId) {
      return absl::InvalidArgumentError(absl::StrCat(spec.source, ": ", what, " '", spelling,
                                                     "' has id ", id, ", outside [0, ",
                                                     kMaxBpeTokenId, "]"));
    }
    if (static_cast<size_t>(id) >= spelling_of_id.size()) spelling_of_id.resize(id + 1, nullptr);
    if (spelling_of_id[id] != nullptr) {
      if (*spelling_of_id[id] == spelling) return absl::OkStatus();  // added token restated
      return absl::InvalidArgumentError(absl::StrCat(spec.source, ": id ", id,
                                                     " is given to both '", *spelling_of_id[id],
                                                     "' and '", spelling, "'"));
    }
    spelling_of_id[id] = &spelling;
    auto [it, inserted] = t->token_ids_.emplace(spelling, id);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(spec.source, ": ", what, " '", spelling,
                                                     "' has id ", id, " but is already token ",
                                                     it->second));
    }
    return absl::OkStatus();
  };
  for (const auto& [spelling, id] : spec.vocab) {
    if (absl::Status s = assign(spelling, id, "token"); !s.ok()) return s;
  }
  // Merges may only use the merge vocabulary: keep it apart from the added tokens.
  std::unordered_map<std::string, int32_t> vocab_ids = t->token_ids_;
  for (const auto& [content, id] : spec.added_tokens) {
    if (absl::Status s = assign(content, id, "added token"); !s.ok()) return s;
  }
  t->id_to_bytes_.resize(spelling_of_id.size());
  for (size_t id = 0; id < spelling_of_id.size(); ++id) {
    if (spelling_of_id[id] != nullptr) t->id_to_bytes_[id] = TokenBytes(*spelling_of_id[id]);
  }

  for (int b = 0; b < 256; ++b) {
    const std::string spelling = ByteTokenSpelling(b);
    auto it = vocab_ids.find(spelling);
    if (it == vocab_ids.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec.source, ": the vocabulary lacks the single-byte token '", spelling, "' (byte 0x",
          absl::Hex(b, absl::kZeroPad2), "); byte-level BPE needs all 256"));
    }
    t->byte_ids_[b] = it->second;
  }

  t->merges_.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const BpeSpec::Merge& m = spec.merges[rank];
    auto left = vocab_ids.find(m.left);
    auto right = vocab_ids.find(m.right);
    for (const auto* part : {&left, &right}) {
      if (*part == vocab_ids.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(m.location, ": merge '", m.left, " ", m.right, "' names '",
                         part == &left ? m.left : m.right, "', which is not in the vocabulary"));
      }
    }
    auto merged = vocab_ids.find(m.left + m.right);
    if (merged == vocab_ids.end()) {
      return absl::InvalidArgumentError(absl::StrCat(m.location, ": merge '", m.left, " ", m.right,
                                                     "' makes '", m.left, m.right,
                                                     "', which is not in the vocabulary"));
    }
    // Later duplicates win, as in encoder.py's dict(zip(merges, range(len(merges)))).
    t->merges_[PairKey(left->second, right->second)] =
        MergeResult{static_cast<int32_t>(rank), merged->second};
  }
  return t;
}

void BpeTokenizer::set_special_tokens(const SpecialTokens& special) {
  for (const auto& id : {special.bos_id, special.eos_id}) {
    FOXSERVE_CHECK(!id.has_value() || (*id >= 0 && *id < vocab_size())) << "special id " << *id;
  }
  special_ = special;
}

std::optional<int32_t> BpeTokenizer::TokenId(absl::string_view token) const {
  auto it = token_ids_.find(std::string(token));
  if (it == token_ids_.end()) return std::nullopt;
  return it->second;
}

const BpeTokenizer::MergeResult* BpeTokenizer::FindMerge(int32_t left, int32_t right) const {
  auto it = merges_.find(PairKey(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

// The word is a linked list of symbols (merged symbols leave dead entries behind); candidate
// merges sit in a min-heap ordered by (rank, position) and are checked when popped, since later
// merges may have consumed their symbols.
struct BpeTokenizer::Scratch {
  struct Symbol {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t prev;
    int32_t next;  // -1 at the end
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;  // index of the left symbol
    int32_t left_id;
    int32_t right_id;
    int32_t merged_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;     // std::push_heap / pop_heap with std::greater
  std::vector<Candidate> pending;  // made during a round, enter the heap after it
};

void BpeTokenizer::EncodeWord(absl::string_view bytes, Scratch* s,
                              std::vector<int32_t>* out) const {
  const int32_t n = static_cast<int32_t>(bytes.size());
  if (n == 1) {
    out->push_back(byte_ids_[static_cast<unsigned char>(bytes[0])]);
    return;
  }
  auto& symbols = s->symbols;
  auto& heap = s->heap;
  symbols.clear();
  heap.clear();
  s->pending.clear();
  for (int32_t i = 0; i < n; ++i) {
    symbols.push_back(
        {byte_ids_[static_cast<unsigned char>(bytes[i])], i - 1, i + 1 < n ? i + 1 : -1});
  }
  auto consider = [&](int32_t pos, std::vector<Scratch::Candidate>* into) {
    if (pos < 0) return;
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    if (const MergeResult* m = FindMerge(symbols[pos].id, symbols[next].id)) {
      into->push_back({m->rank, pos, symbols[pos].id, symbols[next].id, m->merged_id});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, &heap);
  const std::greater<Scratch::Candidate> cmp;
  std::make_heap(heap.begin(), heap.end(), cmp);
  auto still_valid = [&](const Scratch::Candidate& c) {
    const Scratch::Symbol& left = symbols[c.pos];
    return left.id == c.left_id && left.next >= 0 && symbols[left.next].id == c.right_id;
  };

  // One round per iteration: the lowest rank present is merged everywhere, left to right (heap
  // order), before the pairs that these merges create are considered, exactly as encoder.py does.
  while (!heap.empty()) {
    const int32_t rank = heap.front().rank;
    while (!heap.empty() && heap.front().rank == rank) {
      std::pop_heap(heap.begin(), heap.end(), cmp);
      const Scratch::Candidate c = heap.back();
      heap.pop_back();
      if (!still_valid(c)) continue;
      Scratch::Symbol& left = symbols[c.pos];
      Scratch::Symbol& right = symbols[left.next];
      left.id = c.merged_id;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = c.pos;
      right.id = -1;
      consider(left.prev, &s->pending);
      consider(c.pos, &s->pending);
    }
    // A stale entry may have opened the round; then nothing merged, and the next round starts at
    // the next rank present, which is what encoder.py's minimum over the live pairs gives too.
    for (const Scratch::Candidate& c : s->pending) {
      heap.push_back(c);
      std::push_heap(heap.begin(), heap.end(), cmp);
    }
    s->pending.clear();
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out->push_back(symbols[i].id);
}

absl::StatusOr<std::vector<int32_t>> BpeTokenizer::Encode(absl::string_view text) const {
  if (text.size() > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("text of ", text.size(), " bytes is too long to tokenize"));
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  Scratch scratch;
  for (const TextSpan& span : Gpt2PreTokenize(text)) {
    EncodeWord(text.substr(span.begin, span.end - span.begin), &scratch, &ids);
  }
  return ids;
}

absl::StatusOr<std::string> BpeTokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string text;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", id, " (position ", i, ") is outside [0, ", vocab_size(), ") of ", source_));
    }
    const std::optional<std::string>& bytes = id_to_bytes_[id];
    if (!bytes.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", id, " (position ", i, ") is not assigned to any token in ", source_));
    }
    text += *bytes;
  }
  return text;
}

}  // namespace models
}  // namespace foxserve
