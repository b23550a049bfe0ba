// GPT-2 byte-level BPE (Radford et al. 2019; OpenAI's encoder.py): text is split by the GPT-2
// pre-tokenizer (gpt2_pretokenizer.h), each pre-token's UTF-8 bytes start as single-byte tokens,
// and merges are applied in rank order. The files spell tokens in GPT-2's printable byte alphabet
// ("bytes_to_unicode": a space is "Ġ"); this class converts every token to its raw bytes at load
// and works in byte space, with merge ranks keyed by pairs of token ids.
//
// Merge semantics are those of OpenAI's encoder.py (also gpt-3-encoder and Hugging Face's slow
// GPT2Tokenizer): repeatedly take the lowest-ranked adjacent pair present and merge all of its
// non-overlapping occurrences left to right, before looking at the pairs this created. For the
// merge lists that BPE training produces this is identical to the priority-queue merging of Hugging
// Face tokenizers; the two can differ only for hand-made lists in which a merge uses a token
// before the merge that creates it.
//
// Thread-safety: after set_special_tokens() (if used) every method is const and safe to call
// concurrently.
#ifndef FOXSERVE_MODELS_BPE_TOKENIZER_H_
#define FOXSERVE_MODELS_BPE_TOKENIZER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "models/tokenizer.h"

namespace foxserve {
namespace models {

// A vocabulary and merge list as spelled in the files (GPT-2 byte alphabet).
struct BpeSpec {
  std::string source;  // the file(s) it came from, for error messages
  std::vector<std::pair<std::string, int32_t>> vocab;
  struct Merge {
    std::string left;
    std::string right;
    std::string location;  // e.g. "merges.txt line 7", for error messages
  };
  std::vector<Merge> merges;  // in rank order; for a repeated pair the last rank counts
  // Tokens outside the merge vocabulary ("<|endoftext|>" in tokenizer.json's added_tokens). They
  // are decodable and resolvable by name, but Encode never produces them.
  std::vector<std::pair<std::string, int32_t>> added_tokens;
};

// Ids must lie below this bound (vocabularies have at most a few hundred thousand tokens); it
// keeps a malformed file from making us allocate gigabytes.
inline constexpr int32_t kMaxBpeTokenId = (1 << 24) - 1;

class BpeTokenizer : public Tokenizer {
 public:
  // Checks and indexes `spec`. InvalidArgument (naming spec.source and the entry) for duplicate
  // or out-of-range ids, a missing single-byte token, a merge naming an unknown token or whose
  // concatenation is not in the vocabulary.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> Create(const BpeSpec& spec);

  struct SpecialTokens {
    std::optional<int32_t> bos_id;
    std::optional<int32_t> eos_id;
    bool add_bos = false;
  };
  // Not thread-safe: call before the tokenizer is shared. Ids must be < vocab_size().
  void set_special_tokens(const SpecialTokens& special);

  // The id of a token spelled as in the files (vocab or added token), if any.
  std::optional<int32_t> TokenId(absl::string_view token) const;

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const override;
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_bytes_.size()); }
  std::optional<int32_t> bos_id() const override { return special_.bos_id; }
  std::optional<int32_t> eos_id() const override { return special_.eos_id; }
  bool add_bos() const override { return special_.add_bos; }
  std::string kind() const override { return "gpt2-bpe"; }
  std::unique_ptr<IncrementalDecoder> NewIncrementalDecoder(
      absl::Span<const int32_t> context) const override {
    return NewConcatenatingDecoder(this);
  }

 private:
  struct MergeResult {
    int32_t rank;
    int32_t merged_id;
  };
  struct Scratch;  // per-call buffers of the merge loop

  BpeTokenizer() = default;
  // Appends the ids of one pre-token (at least one byte) to `out`.
  void EncodeWord(absl::string_view bytes, Scratch* scratch, std::vector<int32_t>* out) const;
  const MergeResult* FindMerge(int32_t left, int32_t right) const;

  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  std::string source_;
  std::vector<std::optional<std::string>> id_to_bytes_;  // nullopt: id not assigned
  std::unordered_map<std::string, int32_t> token_ids_;   // spelling in the files -> id
  std::array<int32_t, 256> byte_ids_{};
  std::unordered_map<uint64_t, MergeResult> merges_;  // PairKey(left, right) -> result
  SpecialTokens special_;
};

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_BPE_TOKENIZER_H_
