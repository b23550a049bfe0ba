// Streaming detokenization: text made of whole characters as tokens arrive, never taking back
// what it has returned. Each tokenizer knows where its text can still change: a UTF-8 character
// split across byte-level tokens, a JSON escape split across tokens, SentencePiece's leading
// space and byte pieces.
#ifndef FOXSERVE_MODELS_INCREMENTAL_DECODER_H_
#define FOXSERVE_MODELS_INCREMENTAL_DECODER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/types/span.h"

namespace foxserve {
namespace models {

class Tokenizer;

class IncrementalDecoder {
 public:
  virtual ~IncrementalDecoder() = default;
  // Adds a token; returns the text that became final (valid UTF-8, possibly empty). Ids outside
  // the vocabulary contribute nothing (the engine never produces them).
  virtual std::string Push(int32_t id) = 0;
  // The text still held back, decoded best effort (invalid bytes as U+FFFD); call once at the end.
  virtual std::string Flush() = 0;
};

// Moves the longest prefix of whole, valid UTF-8 characters out of `pending`. Bytes that cannot
// become valid become U+FFFD; an incomplete character at the end stays in `pending` unless
// `flush`, when it becomes U+FFFD too.
std::string TakeCompleteUtf8(std::string* pending, bool flush);

// For tokenizers whose Decode concatenates per-token bytes (byte-level BPE).
std::unique_ptr<IncrementalDecoder> NewConcatenatingDecoder(const Tokenizer* tokenizer);
// For tokenizers whose Decode depends on neighbours (SentencePiece): decodes a sliding window
// that starts with `context` (the end of the prompt) and returns what the newest token added.
std::unique_ptr<IncrementalDecoder> NewWindowDecoder(const Tokenizer* tokenizer,
                                                     absl::Span<const int32_t> context);
// Unescapes the JSON-escaped text of `inner`, holding back an escape until it is complete.
std::unique_ptr<IncrementalDecoder> NewJsonUnescapingDecoder(
    std::unique_ptr<IncrementalDecoder> inner);

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_INCREMENTAL_DECODER_H_
