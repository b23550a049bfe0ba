// Readers for the two file forms of a GPT-2 byte-level BPE tokenizer. They check the files'
// shape; BpeTokenizer::Create checks that the merges and ids are consistent.
//
// Thread-safety: free functions; safe to call concurrently.
#ifndef FOXSERVE_MODELS_BPE_FILES_H_
#define FOXSERVE_MODELS_BPE_FILES_H_

#include <string>

#include "absl/status/statusor.h"
#include "models/bpe_tokenizer.h"

namespace foxserve {
namespace models {

// OpenAI / Hugging Face GPT2Tokenizer files: `vocab_path` is a JSON object from token to id,
// `merges_path` has one "left right" merge per line, best first, after an optional "#version"
// line. InvalidArgument naming the file and the entry when they are malformed.
absl::StatusOr<BpeSpec> ReadGpt2VocabAndMerges(const std::string& vocab_path,
                                               const std::string& merges_path);

// A Hugging Face tokenizer.json whose model is BPE with GPT-2's byte-level pipeline: no
// normalizer, a ByteLevel pre-tokenizer without prefix space and with GPT-2's regex, and a
// ByteLevel (or no) decoder and post-processor. Merges may be "left right" strings or
// ["left", "right"] pairs. Any other kind is InvalidArgument saying what is unsupported, because
// encoding it with GPT-2's pipeline would silently give wrong ids.
absl::StatusOr<BpeSpec> ReadHfTokenizerJson(const std::string& path);

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_BPE_FILES_H_
