// LoadTokenizer (tokenizer.h): picks the implementation from the files in a model folder and
// applies the Hugging Face side files (tokenizer_config.json, special_tokens_map.json).
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "models/bpe_files.h"
#include "models/bpe_tokenizer.h"
#include "models/json_escape_tokenizer.h"
#include "models/sentencepiece_adapter.h"
#include "models/status_macros.h"
#include "models/tokenizer.h"
#include "models/tokenizer_files.h"

namespace foxserve {
namespace models {
namespace {

using nlohmann::json;

constexpr char kGpt2EndOfText[] = "<|endoftext|>";

// A special-token field of tokenizer_config.json or special_tokens_map.json.
struct TokenField {
  bool present = false;              // the field exists (possibly null)
  std::optional<std::string> token;  // its content; nullopt for null
  std::string where;                 // "<file> field <name>", for messages
};

struct SideFiles {
  std::optional<bool> add_bos;  // tokenizer_config.json add_bos_token
  bool json_escape = false;     // tokenizer_class JSONGPT2Tokenizer
  std::string config_path;      // for messages
  TokenField bos;
  TokenField eos;
};

// Hugging Face writes special tokens as "<s>" or as an AddedToken object {"content": "<s>", ...}.
absl::StatusOr<TokenField> ReadTokenField(const json& root, const char* field,
                                          const std::string& path) {
  TokenField result;
  result.where = absl::StrCat(path, " field ", field);
  auto it = root.find(field);
  if (it == root.end()) return result;
  result.present = true;
  if (it->is_null()) return result;
  if (it->is_string()) {
    result.token = it->get<std::string>();
    return result;
  }
  if (it->is_object()) {
    auto content = it->find("content");
    if (content != it->end() && content->is_string()) {
      result.token = content->get<std::string>();
      return result;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat(result.where, ": expected a token string, {\"content\": string} or null, got ",
                   JsonForMessage(*it)));
}

// Later files override earlier ones field by field, as transformers lets special_tokens_map.json
// override tokenizer_config.json.
absl::Status ReadSpecialTokens(const json& root, const std::string& path, SideFiles* side) {
  FOXSERVE_ASSIGN_OR_RETURN(TokenField bos, ReadTokenField(root, "bos_token", path));
  FOXSERVE_ASSIGN_OR_RETURN(TokenField eos, ReadTokenField(root, "eos_token", path));
  if (bos.present) side->bos = std::move(bos);
  if (eos.present) side->eos = std::move(eos);
  return absl::OkStatus();
}

absl::StatusOr<SideFiles> ReadSideFiles(const std::string& dir) {
  SideFiles side;
  side.config_path = dir + "/tokenizer_config.json";
  if (IsRegularFile(side.config_path)) {
    FOXSERVE_ASSIGN_OR_RETURN(json config, ReadJsonObjectFile(side.config_path));
    if (auto it = config.find("add_bos_token"); it != config.end() && !it->is_null()) {
      if (!it->is_boolean()) {
        return absl::InvalidArgumentError(
            absl::StrCat(side.config_path, " field add_bos_token: expected true or false, got ",
                         JsonForMessage(*it)));
      }
      side.add_bos = it->get<bool>();
    }
    if (auto it = config.find("tokenizer_class"); it != config.end() && !it->is_null()) {
      if (!it->is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(side.config_path, " field tokenizer_class: expected a string, got ",
                         JsonForMessage(*it)));
      }
      side.json_escape = it->get<std::string>() == "JSONGPT2Tokenizer";
    }
    FOXSERVE_RETURN_IF_ERROR(ReadSpecialTokens(config, side.config_path, &side));
  }
  const std::string map_path = dir + "/special_tokens_map.json";
  if (IsRegularFile(map_path)) {
    FOXSERVE_ASSIGN_OR_RETURN(json map, ReadJsonObjectFile(map_path));
    FOXSERVE_RETURN_IF_ERROR(ReadSpecialTokens(map, map_path, &side));
  }
  return side;
}

// The id of a special token: the side files' choice, else GPT-2's "<|endoftext|>" (what
// GPT2Tokenizer defaults bos_token and eos_token to) when the vocabulary has it.
absl::StatusOr<std::optional<int32_t>> ResolveSpecial(const BpeTokenizer& bpe,
                                                      const TokenField& field) {
  if (!field.present) return bpe.TokenId(kGpt2EndOfText);
  if (!field.token.has_value()) return std::optional<int32_t>();
  std::optional<int32_t> id = bpe.TokenId(*field.token);
  if (!id.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field.where, ": token '", *field.token, "' is not in the vocabulary"));
  }
  return id;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadBpe(const BpeSpec& spec, const SideFiles& side) {
  FOXSERVE_ASSIGN_OR_RETURN(std::unique_ptr<BpeTokenizer> bpe, BpeTokenizer::Create(spec));
  BpeTokenizer::SpecialTokens special;
  FOXSERVE_ASSIGN_OR_RETURN(special.bos_id, ResolveSpecial(*bpe, side.bos));
  FOXSERVE_ASSIGN_OR_RETURN(special.eos_id, ResolveSpecial(*bpe, side.eos));
  special.add_bos = side.add_bos.value_or(false);  // GPT2Tokenizer's default
  if (special.add_bos && !special.bos_id.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(side.config_path, ": add_bos_token is true but ",
                                                   spec.source, " has no BOS token"));
  }
  bpe->set_special_tokens(special);
  if (side.json_escape) return std::make_unique<JsonEscapeTokenizer>(std::move(bpe));
  return std::unique_ptr<Tokenizer>(std::move(bpe));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(model_dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat(model_dir, ": no such folder (looking for a tokenizer)"));
  }
  const std::string sentencepiece_path = model_dir + "/tokenizer.model";
  const std::string hf_json_path = model_dir + "/tokenizer.json";
  const std::string vocab_path = model_dir + "/vocab.json";
  const std::string merges_path = model_dir + "/merges.txt";
  const bool has_sentencepiece = IsRegularFile(sentencepiece_path);
  const bool has_hf_json = IsRegularFile(hf_json_path);
  const bool has_vocab = IsRegularFile(vocab_path);
  const bool has_merges = IsRegularFile(merges_path);
  if (!has_sentencepiece && !has_hf_json && !(has_vocab && has_merges)) {
    if (has_vocab || has_merges) {
      return absl::NotFoundError(
          absl::StrCat(model_dir, ": has ",
                       has_vocab ? "vocab.json but no merges.txt" : "merges.txt but no vocab.json",
                       "; a GPT-2 BPE tokenizer needs both"));
    }
    return absl::NotFoundError(absl::StrCat(model_dir,
                                            ": no tokenizer found (looked for tokenizer.model, "
                                            "tokenizer.json, vocab.json + merges.txt)"));
  }

  FOXSERVE_ASSIGN_OR_RETURN(SideFiles side, ReadSideFiles(model_dir));
  if (has_sentencepiece) {
    if (side.json_escape) {
      return absl::InvalidArgumentError(absl::StrCat(
          side.config_path, ": tokenizer_class JSONGPT2Tokenizer needs a GPT-2 BPE tokenizer, but ",
          model_dir, " has a SentencePiece tokenizer.model"));
    }
    return LoadSentencePieceTokenizer(sentencepiece_path, side.add_bos);
  }
  FOXSERVE_ASSIGN_OR_RETURN(BpeSpec spec, has_hf_json
                                              ? ReadHfTokenizerJson(hf_json_path)
                                              : ReadGpt2VocabAndMerges(vocab_path, merges_path));
  return LoadBpe(spec, side);
}

}  // namespace models
}  // namespace foxserve
