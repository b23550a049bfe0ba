// A plain-C++ face of the SentencePiece library. Debian's sentencepiece_processor.h declares its
// own absl::string_view, so a translation unit cannot include it together with Abseil: only
// sentencepiece_tokenizer.cc includes it, and this header uses no Abseil type. Errors come back
// as false plus a message. sentencepiece_adapter.h turns this into a Tokenizer.
//
// Thread-safety: after Load, every method is const and safe to call concurrently (the
// SentencePiece processor is immutable once loaded).
#ifndef FOXSERVE_MODELS_SENTENCEPIECE_TOKENIZER_H_
#define FOXSERVE_MODELS_SENTENCEPIECE_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}  // namespace sentencepiece

namespace foxserve {
namespace models {

class SentencePieceModel {
 public:
  // nullptr, with `*error` naming the file, when `model_path` cannot be loaded.
  static std::unique_ptr<SentencePieceModel> Load(const std::string& model_path,
                                                  std::string* error);
  ~SentencePieceModel();
  SentencePieceModel(const SentencePieceModel&) = delete;
  SentencePieceModel& operator=(const SentencePieceModel&) = delete;

  // The ids of `text`, without BOS/EOS. False with `*error` set on failure.
  bool Encode(const std::string& text, std::vector<int>* ids, std::string* error) const;
  // Ids must lie in [0, piece_count()); false with `*error` set otherwise.
  bool Decode(const std::vector<int>& ids, std::string* text, std::string* error) const;

  int piece_count() const;
  // -1 when the model defines none.
  int bos_id() const;
  int eos_id() const;

 private:
  SentencePieceModel();
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_SENTENCEPIECE_TOKENIZER_H_
