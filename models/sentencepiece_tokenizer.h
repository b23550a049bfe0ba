// A plain-C++ face of SentencePiece, reached through the libfoxserve_sentencepiece module
// (sentencepiece_module_api.h explains why it is a module loaded with deep binding). Errors come
// back as false plus a message. sentencepiece_adapter.h turns this into a Tokenizer.
//
// The module is looked for in this order: $FOXSERVE_SENTENCEPIECE_MODULE; the build tree's copy;
// next to the running executable; ../lib/foxserve/ from it; the dynamic loader's search path.
//
// Thread-safety: after Load, every method is const and safe to call concurrently (the
// SentencePiece processor is immutable once loaded).
#ifndef FOXSERVE_MODELS_SENTENCEPIECE_TOKENIZER_H_
#define FOXSERVE_MODELS_SENTENCEPIECE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace foxserve {
namespace models {

class SentencePieceModule;

class SentencePieceModel {
 public:
  // nullptr, with `*error` naming the file (or the missing module), when it cannot be loaded.
  static std::unique_ptr<SentencePieceModel> Load(const std::string& model_path,
                                                  std::string* error);
  ~SentencePieceModel();
  SentencePieceModel(const SentencePieceModel&) = delete;
  SentencePieceModel& operator=(const SentencePieceModel&) = delete;

  // The ids of `text`, without BOS/EOS. False with `*error` set on failure.
  bool Encode(const std::string& text, std::vector<int>* ids, std::string* error) const;
  // Ids must lie in [0, piece_count()); false with `*error` set otherwise.
  bool Decode(const std::vector<int>& ids, std::string* text, std::string* error) const;

  int piece_count() const { return pieces_; }
  // -1 when the model defines none.
  int bos_id() const { return bos_; }
  int eos_id() const { return eos_; }

 private:
  SentencePieceModel() = default;
  std::shared_ptr<const SentencePieceModule> module_;
  void* handle_ = nullptr;
  int32_t pieces_ = 0, bos_ = -1, eos_ = -1;
};

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_SENTENCEPIECE_TOKENIZER_H_
