// Every fuzz target (fuzz_target.h explains the frame). Each returns 0, as libFuzzer wants.
#ifndef FOXSERVE_TESTS_FUZZ_FUZZ_TARGETS_H_
#define FOXSERVE_TESTS_FUZZ_FUZZ_TARGETS_H_

#include <cstddef>
#include <cstdint>

namespace foxserve {
namespace fuzz {

// Safetensors: the JSON header parser, then the same bytes as a whole file through
// SafetensorsFile::Open and every tensor view it hands out.
int FuzzSafetensors(const uint8_t* data, size_t size);
// config.json through ParseFoxConfig; a config it accepts must be self-consistent.
int FuzzModelConfig(const uint8_t* data, size_t size);
// GPT-2 byte-level BPE (a hand-made vocabulary): encode/decode round trips of arbitrary bytes,
// decode of arbitrary ids, and vocab.json + merges.txt / tokenizer.json read from the input.
int FuzzBpeTokenizer(const uint8_t* data, size_t size);
// SentencePiece (a tiny model trained with spm_train on first use): encode/decode of arbitrary
// bytes and ids.
int FuzzSentencePiece(const uint8_t* data, size_t size);
// The engine's streaming text path: incremental decoders (UTF-8 split across byte tokens, JSON
// escapes split across tokens, SentencePiece windows) feeding StopStringMatcher.
int FuzzStreamDecoder(const uint8_t* data, size_t size);
// Arbitrary bytes as a foxserve.v1.GenerateRequest through the service's validation path:
// server::ToEngineRequest, then Engine::Validate and Engine::Add on a backend-free engine.
int FuzzGenerateRequest(const uint8_t* data, size_t size);

}  // namespace fuzz
}  // namespace foxserve

#endif  // FOXSERVE_TESTS_FUZZ_FUZZ_TARGETS_H_
