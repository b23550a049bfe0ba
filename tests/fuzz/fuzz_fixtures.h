// What the fuzz targets share: tokenizers built once per process from small files, a memory-only
// file path for parsers that take paths, and a backend-free engine for request validation.
#ifndef FOXSERVE_TESTS_FUZZ_FUZZ_FIXTURES_H_
#define FOXSERVE_TESTS_FUZZ_FUZZ_FIXTURES_H_

#include <string>

#include "absl/strings/string_view.h"
#include "engine/engine.h"
#include "models/tokenizer.h"

namespace foxserve {
namespace fuzz {

// GPT-2 byte-level BPE over tests/fuzz/data/bpe (256 byte tokens, 240 merges learned from Tiny
// Shakespeare, "<|endoftext|>" as EOS). Dies when the files are unreadable.
const models::Tokenizer& BpeFixture();
// The same vocabulary with the LongCrawl64 JSON-escape convention around it.
const models::Tokenizer& JsonBpeFixture();
// A SentencePiece BPE model of 400 pieces (byte fallback, identity normalization, no dummy
// prefix, whitespace kept), trained with spm_train on the first call into
// <build>/fuzz_data/sentencepiece and reused afterwards. Dies when spm_train is missing.
const models::Tokenizer& SentencePieceFixture();

// A path naming an in-memory file (memfd) that holds `contents`; valid until the next call with
// the same `slot` (0..3).
std::string MemoryFile(int slot, absl::string_view contents);

// An Engine over a backend that has the configuration of tests/data/golden/fox-pro-tiny (vocab
// 512, 2 layers of 2 heads), 64-token pages and a pool of `kPoolPages` pages, but never computes:
// Validate and Add work, Step must not be called. max_model_len 1024.
inline constexpr int64_t kPoolPages = 256;
engine::Engine& ValidationEngine(const models::Tokenizer* tokenizer);

}  // namespace fuzz
}  // namespace foxserve

#endif  // FOXSERVE_TESTS_FUZZ_FUZZ_FIXTURES_H_
