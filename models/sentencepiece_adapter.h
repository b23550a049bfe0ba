// SentencePiece models (tokenizer.model) as a Tokenizer, on top of the Abseil-free
// SentencePieceModel (sentencepiece_tokenizer.h).
//
// Thread-safety: the returned tokenizer's methods are const and safe to call concurrently.
#ifndef FOXSERVE_MODELS_SENTENCEPIECE_ADAPTER_H_
#define FOXSERVE_MODELS_SENTENCEPIECE_ADAPTER_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "models/tokenizer.h"

namespace foxserve {
namespace models {

// Loads `model_path`. add_bos() is `add_bos_override` when given (tokenizer_config.json's
// add_bos_token), else whether the model defines BOS. kind() is "sentencepiece".
// InvalidArgument naming the file when it is not a SentencePiece model, or when BOS is requested
// but the model has none; NotFound when it does not exist.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(
    const std::string& model_path, std::optional<bool> add_bos_override);

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_SENTENCEPIECE_ADAPTER_H_
