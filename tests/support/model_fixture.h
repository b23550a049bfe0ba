// Model folders for server tests: the golden tiny FoX (Pro) weights, optionally with a
// SentencePiece tokenizer trained here, so that text prompts, stop strings and streamed text run
// for real. Needs spm_train (Debian package sentencepiece).
#ifndef FOXSERVE_TESTS_SUPPORT_MODEL_FIXTURE_H_
#define FOXSERVE_TESTS_SUPPORT_MODEL_FIXTURE_H_

#include <string>

namespace foxserve {
namespace testing {

// Fills `dir` with config.json and model.safetensors of tests/data/golden/fox-pro-tiny and a
// tokenizer.model of 512 pieces trained on Tiny Shakespeare. Returns false (with a test failure)
// when spm_train fails.
bool MakeTinyModelWithTokenizer(const std::string& dir);

// The test CA and certificates made with openssl in `dir` (EC P-256, valid two days):
//   ca.crt/ca.key, server.crt/server.key (localhost, 127.0.0.1), client.crt/client.key (signed
//   by ca), rogue_ca.crt, rogue_client.crt/rogue_client.key (signed by another CA).
// Returns false (with a test failure) when openssl fails.
bool MakeTestCertificates(const std::string& dir);

}  // namespace testing
}  // namespace foxserve

#endif  // FOXSERVE_TESTS_SUPPORT_MODEL_FIXTURE_H_
