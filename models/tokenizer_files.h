// Reading the small text and JSON files of a tokenizer folder, with errors that name the file.
// Internal to foxserve_models (it exposes nlohmann::json, a private dependency).
//
// Thread-safety: free functions; safe to call concurrently.
#ifndef FOXSERVE_MODELS_TOKENIZER_FILES_H_
#define FOXSERVE_MODELS_TOKENIZER_FILES_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace foxserve {
namespace models {

// Whether `path` names an existing regular file (or a link to one).
bool IsRegularFile(const std::string& path);

// The whole file. NotFound when it does not exist, InvalidArgument when it cannot be read.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// The file parsed as JSON; InvalidArgument naming the file when it is not valid JSON or its top
// level is not an object. Never throws.
absl::StatusOr<nlohmann::json> ReadJsonObjectFile(const std::string& path);

// A JSON value as text for error messages, cut to at most 80 characters.
std::string JsonForMessage(const nlohmann::json& value);

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_TOKENIZER_FILES_H_
