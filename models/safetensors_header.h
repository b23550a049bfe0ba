// Internal to the safetensors reader (models/safetensors.cc): the JSON header parser, kept apart
// so the streaming state machine does not crowd the file-level checks.
#ifndef FOXSERVE_MODELS_SAFETENSORS_HEADER_H_
#define FOXSERVE_MODELS_SAFETENSORS_HEADER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace foxserve {
namespace models {
namespace safetensors_internal {

// One tensor entry as written in the header; only its JSON types have been checked.
struct HeaderEntry {
  std::string name;
  std::string dtype;           // not yet checked against the known dtypes
  std::vector<int64_t> shape;  // each dimension in [0, 2^63)
  int64_t begin = 0;           // data_offsets, each in [0, 2^63), order not yet checked
  int64_t end = 0;
};

struct ParsedHeader {
  std::vector<HeaderEntry> entries;  // header order
  std::map<std::string, std::string> metadata;
};

// Parses the JSON header of a safetensors file with a streaming (SAX) parser, so a hostile
// header costs memory proportional to what is kept (names, shapes), never a DOM of everything,
// and parsing stops at the first problem. Rejects: invalid JSON or UTF-8, a root that is not an
// object, duplicate tensor names (and duplicate keys inside an entry or __metadata__), entries
// that are not objects, missing or mistyped "dtype" / "shape" / "data_offsets", dimensions or
// offsets that are negative, fractional or >= 2^63, "data_offsets" without exactly two
// elements, and a "__metadata__" that is not an object of strings. Unknown keys inside an entry
// are ignored, as the reference implementation does.
//
// Errors are InvalidArgument, prefixed with `path` and naming the tensor where there is one.
// Thread-safe (no shared state).
absl::StatusOr<ParsedHeader> ParseHeader(absl::string_view json, absl::string_view path);

// `name` quoted for an error message: C-escaped (file contents may hold control characters) and
// cut to a few hundred bytes (a hostile name could be megabytes long).
std::string QuoteForError(absl::string_view name);

}  // namespace safetensors_internal
}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_SAFETENSORS_HEADER_H_
