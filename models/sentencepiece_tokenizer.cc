// The only file that includes SentencePiece headers (see the header comment): no Abseil here.
#include "models/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

namespace foxserve {
namespace models {

SentencePieceModel::SentencePieceModel()
    : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}

SentencePieceModel::~SentencePieceModel() = default;

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(const std::string& model_path,
                                                             std::string* error) {
  std::unique_ptr<SentencePieceModel> model(new SentencePieceModel);
  const sentencepiece::util::Status status = model->processor_->Load(model_path);
  if (!status.ok()) {
    *error = model_path + ": not a loadable SentencePiece model: " + status.ToString();
    return nullptr;
  }
  return model;
}

bool SentencePieceModel::Encode(const std::string& text, std::vector<int>* ids,
                                std::string* error) const {
  const sentencepiece::util::Status status = processor_->Encode(text, ids);
  if (!status.ok()) {
    *error = "SentencePiece encode failed: " + status.ToString();
    return false;
  }
  return true;
}

bool SentencePieceModel::Decode(const std::vector<int>& ids, std::string* text,
                                std::string* error) const {
  // Checked here: not every SentencePiece version range-checks ids before indexing.
  const int count = piece_count();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= count) {
      *error = "token id " + std::to_string(ids[i]) + " (position " + std::to_string(i) +
               ") is outside [0, " + std::to_string(count) + ")";
      return false;
    }
  }
  const sentencepiece::util::Status status = processor_->Decode(ids, text);
  if (!status.ok()) {
    *error = "SentencePiece decode failed: " + status.ToString();
    return false;
  }
  return true;
}

int SentencePieceModel::piece_count() const { return processor_->GetPieceSize(); }
int SentencePieceModel::bos_id() const { return processor_->bos_id(); }
int SentencePieceModel::eos_id() const { return processor_->eos_id(); }

}  // namespace models
}  // namespace foxserve
