#include "models/bpe_files.h"

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "models/status_macros.h"
#include "models/tokenizer_files.h"

namespace foxserve {
namespace models {
namespace {

using nlohmann::json;

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

absl::StatusOr<int32_t> TokenIdFromJson(const json& value, absl::string_view where) {
  if (!value.is_number_integer()) {
    return Invalid(where, absl::StrCat("expected an integer id, got ", JsonForMessage(value)));
  }
  // Read as int64 first: a huge unsigned value must not wrap into range.
  if (value.is_number_unsigned()
          ? value.get<uint64_t>() > kMaxBpeTokenId
          : (value.get<int64_t>() < 0 || value.get<int64_t>() > kMaxBpeTokenId)) {
    return Invalid(
        where, absl::StrCat("id ", JsonForMessage(value), " is outside [0, ", kMaxBpeTokenId, "]"));
  }
  return static_cast<int32_t>(value.get<int64_t>());
}

// `object` maps token spellings to ids; `where` prefixes messages ("vocab.json").
absl::Status ReadVocabObject(const json& object, const std::string& where, BpeSpec* spec) {
  if (!object.is_object()) {
    return Invalid(where,
                   absl::StrCat("expected an object from token to id, got ", object.type_name()));
  }
  spec->vocab.reserve(object.size());
  for (const auto& [token, value] : object.items()) {
    FOXSERVE_ASSIGN_OR_RETURN(int32_t id,
                              TokenIdFromJson(value, absl::StrCat(where, " token '", token, "'")));
    spec->vocab.emplace_back(token, id);
  }
  return absl::OkStatus();
}

// "left right" (one separator, as in merges.txt; encoder.py splits on any whitespace, which is
// the same for GPT-2's byte alphabet, since it contains no whitespace characters).
absl::Status ParseMergeLine(absl::string_view line, const std::string& location, BpeSpec* spec) {
  std::vector<absl::string_view> parts =
      absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (parts.size() != 2) {
    return Invalid(location,
                   absl::StrCat("expected two tokens separated by a space, got '", line, "'"));
  }
  spec->merges.push_back({std::string(parts[0]), std::string(parts[1]), location});
  return absl::OkStatus();
}

absl::Status CheckNullOrType(const json& parent, const char* field, const char* allowed_type,
                             const std::string& path) {
  auto it = parent.find(field);
  if (it == parent.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) {
    return Invalid(path, absl::StrCat("'", field, "' must be an object or null"));
  }
  auto type = it->find("type");
  const std::string type_name =
      (type != it->end() && type->is_string()) ? type->get<std::string>() : "(no type)";
  if (allowed_type != nullptr && type_name == allowed_type) return absl::OkStatus();
  return Invalid(path, absl::StrCat("unsupported ", field, " of type '", type_name,
                                    "': only GPT-2 byte-level BPE is supported (", field, " ",
                                    allowed_type == nullptr ? "null" : allowed_type, ")"));
}

absl::Status CheckPipeline(const json& root, const std::string& path) {
  FOXSERVE_RETURN_IF_ERROR(CheckNullOrType(root, "normalizer", nullptr, path));
  FOXSERVE_RETURN_IF_ERROR(CheckNullOrType(root, "decoder", "ByteLevel", path));
  FOXSERVE_RETURN_IF_ERROR(CheckNullOrType(root, "post_processor", "ByteLevel", path));

  auto pre = root.find("pre_tokenizer");
  if (pre == root.end() || pre->is_null()) {
    return Invalid(path, "pre_tokenizer is missing; GPT-2 byte-level BPE needs ByteLevel");
  }
  FOXSERVE_RETURN_IF_ERROR(CheckNullOrType(root, "pre_tokenizer", "ByteLevel", path));
  // Hugging Face's ByteLevel defaults to add_prefix_space = true, which GPT-2 does not do.
  auto prefix = pre->find("add_prefix_space");
  if (prefix == pre->end() || !prefix->is_boolean() || prefix->get<bool>()) {
    return Invalid(path,
                   "pre_tokenizer ByteLevel must have \"add_prefix_space\": false (GPT-2 adds no "
                   "prefix space)");
  }
  auto use_regex = pre->find("use_regex");
  if (use_regex != pre->end() && !(use_regex->is_boolean() && use_regex->get<bool>())) {
    return Invalid(path, "pre_tokenizer ByteLevel must use GPT-2's regex (\"use_regex\": true)");
  }
  return absl::OkStatus();
}

absl::Status CheckModelOptions(const json& model, const std::string& path) {
  auto null_or = [&](const char* field, auto accept) -> absl::Status {
    auto it = model.find(field);
    if (it == model.end() || it->is_null() || accept(*it)) return absl::OkStatus();
    return Invalid(path, absl::StrCat("model.", field, " = ", JsonForMessage(*it),
                                      " is not supported by GPT-2 byte-level BPE"));
  };
  auto is_zero = [](const json& v) { return v.is_number() && v.get<double>() == 0.0; };
  auto is_empty_string = [](const json& v) {
    return v.is_string() && v.get<std::string>().empty();
  };
  auto is_false = [](const json& v) { return v.is_boolean() && !v.get<bool>(); };
  FOXSERVE_RETURN_IF_ERROR(null_or("dropout", is_zero));
  FOXSERVE_RETURN_IF_ERROR(null_or("continuing_subword_prefix", is_empty_string));
  FOXSERVE_RETURN_IF_ERROR(null_or("end_of_word_suffix", is_empty_string));
  FOXSERVE_RETURN_IF_ERROR(null_or("byte_fallback", is_false));
  // ignore_merges (Llama 3) looks whole words up before merging, which changes the ids.
  FOXSERVE_RETURN_IF_ERROR(null_or("ignore_merges", is_false));
  return absl::OkStatus();
}

absl::Status ReadHfMerges(const json& merges, const std::string& path, BpeSpec* spec) {
  if (!merges.is_array()) {
    return Invalid(path, absl::StrCat("model.merges must be an array, got ", merges.type_name()));
  }
  spec->merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    const std::string location = absl::StrCat(path, " model.merges[", i, "]");
    if (m.is_string()) {
      FOXSERVE_RETURN_IF_ERROR(ParseMergeLine(m.get<std::string>(), location, spec));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec->merges.push_back({m[0].get<std::string>(), m[1].get<std::string>(), location});
    } else {
      return Invalid(location,
                     absl::StrCat("expected \"left right\" or [\"left\", \"right\"], got ",
                                  JsonForMessage(m)));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadAddedTokens(const json& root, const std::string& path, BpeSpec* spec) {
  auto added = root.find("added_tokens");
  if (added == root.end() || added->is_null()) return absl::OkStatus();
  if (!added->is_array()) return Invalid(path, "added_tokens must be an array");
  for (size_t i = 0; i < added->size(); ++i) {
    const json& token = (*added)[i];
    const std::string where = absl::StrCat(path, " added_tokens[", i, "]");
    if (!token.is_object()) return Invalid(where, "expected an object");
    auto content = token.find("content");
    auto id = token.find("id");
    if (content == token.end() || !content->is_string() || id == token.end()) {
      return Invalid(where, "expected a string \"content\" and an integer \"id\"");
    }
    FOXSERVE_ASSIGN_OR_RETURN(int32_t token_id, TokenIdFromJson(*id, where));
    spec->added_tokens.emplace_back(content->get<std::string>(), token_id);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BpeSpec> ReadGpt2VocabAndMerges(const std::string& vocab_path,
                                               const std::string& merges_path) {
  BpeSpec spec;
  spec.source = absl::StrCat(vocab_path, " + ", merges_path);
  FOXSERVE_ASSIGN_OR_RETURN(json vocab, ReadJsonObjectFile(vocab_path));
  FOXSERVE_RETURN_IF_ERROR(ReadVocabObject(vocab, vocab_path, &spec));

  FOXSERVE_ASSIGN_OR_RETURN(std::string merges, ReadFileToString(merges_path));
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(merges, '\n')) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_number == 1 && absl::StartsWith(line, "#version")) continue;
    if (line.empty()) continue;  // the final newline, or blank lines
    FOXSERVE_RETURN_IF_ERROR(
        ParseMergeLine(line, absl::StrCat(merges_path, " line ", line_number), &spec));
  }
  return spec;
}

absl::StatusOr<BpeSpec> ReadHfTokenizerJson(const std::string& path) {
  FOXSERVE_ASSIGN_OR_RETURN(json root, ReadJsonObjectFile(path));
  auto model = root.find("model");
  if (model == root.end() || !model->is_object()) {
    return Invalid(path, "expected an object \"model\"");
  }
  // Old tokenizers versions wrote no model.type; a merges list then means BPE.
  auto type = model->find("type");
  if (type != model->end()) {
    if (!type->is_string() || type->get<std::string>() != "BPE") {
      return Invalid(path, absl::StrCat("model.type ", JsonForMessage(*type),
                                        " is not supported; only \"BPE\" (GPT-2 byte-level) is"));
    }
  } else if (model->find("merges") == model->end()) {
    return Invalid(path, "model has no \"type\" and no \"merges\"; only BPE is supported");
  }
  FOXSERVE_RETURN_IF_ERROR(CheckModelOptions(*model, path));
  FOXSERVE_RETURN_IF_ERROR(CheckPipeline(root, path));

  BpeSpec spec;
  spec.source = path;
  auto vocab = model->find("vocab");
  auto merges = model->find("merges");
  if (vocab == model->end() || merges == model->end()) {
    return Invalid(path, "model needs \"vocab\" and \"merges\"");
  }
  FOXSERVE_RETURN_IF_ERROR(ReadVocabObject(*vocab, absl::StrCat(path, " model.vocab"), &spec));
  FOXSERVE_RETURN_IF_ERROR(ReadHfMerges(*merges, path, &spec));
  FOXSERVE_RETURN_IF_ERROR(ReadAddedTokens(root, path, &spec));
  return spec;
}

}  // namespace models
}  // namespace foxserve
