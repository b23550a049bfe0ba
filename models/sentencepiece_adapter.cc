#include "models/sentencepiece_adapter.h"

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "models/sentencepiece_tokenizer.h"
#include "models/tokenizer_files.h"

namespace foxserve {
namespace models {
namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(std::unique_ptr<SentencePieceModel> model, std::string path, bool add_bos)
      : model_(std::move(model)), path_(std::move(path)), add_bos_(add_bos) {}

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text) const override {
    std::vector<int> ids;
    std::string error;
    if (!model_->Encode(std::string(text), &ids, &error)) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": ", error));
    }
    return std::vector<int32_t>(ids.begin(), ids.end());
  }

  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const override {
    std::string text;
    std::string error;
    if (!model_->Decode(std::vector<int>(ids.begin(), ids.end()), &text, &error)) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": ", error));
    }
    return text;
  }

  int32_t vocab_size() const override { return model_->piece_count(); }
  std::optional<int32_t> bos_id() const override { return OptionalId(model_->bos_id()); }
  std::optional<int32_t> eos_id() const override { return OptionalId(model_->eos_id()); }
  bool add_bos() const override { return add_bos_; }
  std::string kind() const override { return "sentencepiece"; }
  std::unique_ptr<IncrementalDecoder> NewIncrementalDecoder(
      absl::Span<const int32_t> context) const override {
    // A few prompt tokens give the first generated piece its leading space.
    return NewWindowDecoder(this, context.subspan(context.size() > 4 ? context.size() - 4 : 0));
  }

 private:
  static std::optional<int32_t> OptionalId(int id) {
    return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
  }

  std::unique_ptr<SentencePieceModel> model_;
  std::string path_;
  bool add_bos_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadSentencePieceTokenizer(
    const std::string& model_path, std::optional<bool> add_bos_override) {
  if (!IsRegularFile(model_path)) {
    return absl::NotFoundError(absl::StrCat(model_path, ": no such file"));
  }
  std::string error;
  std::unique_ptr<SentencePieceModel> model = SentencePieceModel::Load(model_path, &error);
  if (model == nullptr) return absl::InvalidArgumentError(error);
  const bool has_bos = model->bos_id() >= 0;
  const bool add_bos = add_bos_override.value_or(has_bos);
  if (add_bos && !has_bos) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_path, ": add_bos_token is true but the SentencePiece model defines no BOS piece"));
  }
  return std::make_unique<SentencePieceTokenizer>(std::move(model), model_path, add_bos);
}

}  // namespace models
}  // namespace foxserve
