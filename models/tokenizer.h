// Text <-> token ids. Implementations: SentencePiece (`tokenizer.model`) and GPT-2 byte-level BPE
// (`vocab.json` + `merges.txt`, or `tokenizer.json`); LoadTokenizer picks one from a model folder.
//
// Thread-safety: every method is const and safe to call concurrently.
#ifndef FOXSERVE_MODELS_TOKENIZER_H_
#define FOXSERVE_MODELS_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "models/incremental_decoder.h"

namespace foxserve {
namespace models {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids of `text`, without BOS (callers prepend bos_id() when add_bos() is true).
  // Text that names a special token ("<|endoftext|>") is encoded as plain text, never as the
  // special id: clients pass special ids as ids.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const = 0;
  // The text of `ids`. Ids outside [0, vocab_size()) are InvalidArgument. Decode of a prefix may
  // end inside a multi-byte character: such bytes are kept as they are, so that
  // Decode(a) + Decode(b) == Decode(a ++ b) holds at the byte level for byte-level BPE.
  virtual absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  // Whether prompts start with BOS (tokenizer_config.json "add_bos_token"; SentencePiece: true
  // when the model defines BOS).
  virtual bool add_bos() const = 0;
  // "sentencepiece", "gpt2-bpe" or "gpt2-bpe+json-escape".
  virtual std::string kind() const = 0;
  // A streaming decoder for the tokens that follow `context` (the end of the prompt, which some
  // tokenizers need to place the first word's leading space). It borrows this tokenizer.
  virtual std::unique_ptr<IncrementalDecoder> NewIncrementalDecoder(
      absl::Span<const int32_t> context) const = 0;
};

// Picks the tokenizer from the files in `model_dir`:
//   tokenizer.model                 -> SentencePiece
//   tokenizer.json                  -> byte-level BPE read from it
//   vocab.json + merges.txt         -> byte-level BPE
// tokenizer_config.json, when present, sets add_bos_token and, for "tokenizer_class":
// "JSONGPT2Tokenizer" (the released FoX LongCrawl64 checkpoints), the JSON-escape convention.
// NotFound when the folder has none of these.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir);

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_TOKENIZER_H_
