#include "models/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/check.h"
#include "models/mapped_file.h"
#include "models/safetensors_header.h"
#include "models/status_macros.h"
#include "nlohmann/json.hpp"

// Tensor bytes are little-endian on disk and TensorView hands them out as they are, so the host
// must be little-endian too (every target foxserve runs on is).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

namespace foxserve {
namespace models {
namespace {

using safetensors_internal::HeaderEntry;
using safetensors_internal::ParsedHeader;
using safetensors_internal::QuoteForError;

// The reference implementation's limit too: real headers are kilobytes (about 100 bytes per
// tensor), so a larger length means a corrupt or foreign file, not a big model.
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;
// model.safetensors.index.json is likewise small (one line per tensor) and parsed into a DOM.
constexpr size_t kMaxIndexBytes = size_t{100} << 20;
// The index nests 2 levels deep; the DOM parser needs memory per level, so deeper input is
// rejected before parsing.
constexpr int kMaxIndexDepth = 32;

constexpr const char* kIndexFileName = "model.safetensors.index.json";
constexpr const char* kSingleFileName = "model.safetensors";

constexpr DType kAllDTypes[] = {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kI64,
                                DType::kI32, DType::kI16, DType::kI8,  DType::kU8,   DType::kBool};

std::optional<DType> ParseDType(absl::string_view name) {
  for (const DType dtype : kAllDTypes) {
    if (DTypeName(dtype) == name) return dtype;
  }
  return std::nullopt;
}

// numel(shape) * DTypeSize(dtype), or nullopt when a dimension is negative or a partial product
// overflows int64 (then numel() itself would overflow, so such shapes are rejected even when a
// later dimension is 0).
std::optional<int64_t> CheckedByteSize(absl::Span<const int64_t> shape, DType dtype) {
  int64_t numel = 1;
  for (const int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(numel, dim, &numel)) return std::nullopt;
  }
  int64_t bytes;
  if (__builtin_mul_overflow(numel, static_cast<int64_t>(DTypeSize(dtype)), &bytes)) {
    return std::nullopt;
  }
  return bytes;
}

std::string ShapeString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

uint64_t LoadLittleEndian64(const uint8_t* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

// IEEE 754 binary16 -> binary32. Every half value is exactly representable as a float.
float HalfToFloat(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  const uint32_t mantissa = half & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa != 0) {
      // Subnormal: mantissa * 2^-24; both factors and the product are exact floats.
      const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
      return sign != 0 ? -magnitude : magnitude;
    }
    bits = sign;  // +-0
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);  // inf, or NaN keeping its payload
  } else {
    bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  }
  float result;
  std::memcpy(&result, &bits, sizeof(result));
  return result;
}

// bfloat16 is the upper half of a float32.
float BFloat16ToFloat(uint16_t bf16) {
  const uint32_t bits = static_cast<uint32_t>(bf16) << 16;
  float result;
  std::memcpy(&result, &bits, sizeof(result));
  return result;
}

// C++ leaves double -> float undefined for finite values beyond float's range, so those are
// mapped explicitly to what IEEE round-to-nearest gives: +-inf from FLT_MAX + half an ulp.
float DoubleToFloat(double value) {
  constexpr double kOverflow = 0x1.ffffffp127;  // 2^128 - 2^103
  if (value >= kOverflow) return std::numeric_limits<float>::infinity();
  if (value <= -kOverflow) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(value);  // NaN and infinities convert as themselves
}

template <typename T>
T LoadUnaligned(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

// Prefixes `status`'s message with `context`, keeping its code.
absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

absl::StatusOr<TensorView> MakeView(const HeaderEntry& entry, absl::Span<const uint8_t> data,
                                    const std::string& path) {
  const std::string where = absl::StrCat(path, ": tensor ", QuoteForError(entry.name), ": ");
  const std::optional<DType> dtype = ParseDType(entry.dtype);
  if (!dtype.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "unknown dtype ", QuoteForError(entry.dtype),
                     " (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)"));
  }
  const std::optional<int64_t> byte_size = CheckedByteSize(entry.shape, *dtype);
  if (!byte_size.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(where, "shape ", ShapeString(entry.shape),
                                                   " of ", DTypeName(*dtype),
                                                   " overflows int64 bytes"));
  }
  const std::string offsets = absl::StrCat("data_offsets [", entry.begin, ", ", entry.end, "]");
  if (entry.begin > entry.end) {
    return absl::InvalidArgumentError(absl::StrCat(where, offsets, " end before begin"));
  }
  // Offsets are below 2^63 (checked by the parser), so they compare with size_t safely.
  if (static_cast<uint64_t>(entry.end) > data.size()) {
    return absl::DataLossError(absl::StrCat(where, offsets, " run past the ", data.size(),
                                            " data bytes of the file (truncated?)"));
  }
  if (entry.end - entry.begin != *byte_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, offsets, " span ", entry.end - entry.begin, " bytes but shape ",
                     ShapeString(entry.shape), " of ", DTypeName(*dtype), " needs ", *byte_size));
  }
  TensorView view;
  view.name = entry.name;
  view.dtype = *dtype;
  view.shape = entry.shape;
  view.bytes = data.subspan(static_cast<size_t>(entry.begin), static_cast<size_t>(*byte_size));
  return view;
}

// True when `text` nests arrays and objects at most `max_depth` deep. Brackets inside strings do
// not count; unbalanced brackets are left for the JSON parser to reject.
bool NestingWithin(absl::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

// A shard must be a plain file name in the model directory: the index is untrusted and must not
// point the server at arbitrary paths.
absl::Status CheckShardName(const std::string& shard, const std::string& tensor,
                            const std::string& index_path) {
  if (shard.empty() || shard == "." || shard == ".." ||
      shard.find_first_of(std::string("/\0", 2)) != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        index_path, ": tensor ", QuoteForError(tensor), " maps to shard ", QuoteForError(shard),
        ", which is not a plain file name in the model directory"));
  }
  return absl::OkStatus();
}

// The "weight_map" of a model.safetensors.index.json: tensor name -> shard file name, sorted.
absl::StatusOr<std::map<std::string, std::string>> ReadWeightMap(const std::string& index_path) {
  FOXSERVE_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(index_path));
  if (file->size() > kMaxIndexBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": ", file->size(), " bytes is too large for an index file"));
  }
  const absl::string_view text(reinterpret_cast<const char*>(file->bytes().data()), file->size());
  // NUL would end nlohmann's input early (see ParseHeader); JSON text never holds a raw NUL.
  if (text.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": not valid JSON (NUL byte)"));
  }
  if (!NestingWithin(text, kMaxIndexDepth)) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": JSON nests deeper than ", kMaxIndexDepth, " levels"));
  }
  // Non-throwing parse; every access below checks the type first, so nothing can throw.
  const nlohmann::json index =
      nlohmann::json::parse(text.data(), text.data() + text.size(), nullptr, false);
  if (index.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": not valid JSON"));
  }
  if (!index.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": not a JSON object"));
  }
  const auto weight_map = index.find("weight_map");
  if (weight_map == index.end()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": no \"weight_map\""));
  }
  if (!weight_map->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": \"weight_map\" is not a JSON object"));
  }
  std::map<std::string, std::string> result;
  for (const auto& [tensor, shard] : weight_map->items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path,
                                                     ": \"weight_map\" value for tensor ",
                                                     QuoteForError(tensor), " is not a string"));
    }
    const std::string& shard_name = shard.get_ref<const std::string&>();
    FOXSERVE_RETURN_IF_ERROR(CheckShardName(shard_name, tensor, index_path));
    result.emplace(tensor, shard_name);
  }
  return result;
}

// Writes all of `data` to `fd`, retrying short writes and EINTR.
absl::Status WriteAll(int fd, absl::Span<const uint8_t> data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat("write ", path));
    }
    data.remove_prefix(static_cast<size_t>(written));
  }
  return absl::OkStatus();
}

// Strict UTF-8 (RFC 3629: no overlong forms, surrogates or code points above U+10FFFF), which is
// what the JSON parser on the reading side accepts.
bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    int continuation;
    unsigned char low = 0x80, high = 0xbf;  // allowed range of the first continuation byte
    if (lead < 0x80) {
      continuation = 0;
    } else if (lead >= 0xc2 && lead <= 0xdf) {
      continuation = 1;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      continuation = 2;
      if (lead == 0xe0) low = 0xa0;   // overlong
      if (lead == 0xed) high = 0x9f;  // UTF-16 surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      continuation = 3;
      if (lead == 0xf0) low = 0x90;   // overlong
      if (lead == 0xf4) high = 0x8f;  // above U+10FFFF
    } else {
      return false;
    }
    if (text.size() - i - 1 < static_cast<size_t>(continuation)) return false;
    for (int k = 1; k <= continuation; ++k) {
      const auto byte = static_cast<unsigned char>(text[i + k]);
      if (byte < (k == 1 ? low : 0x80) || byte > (k == 1 ? high : 0xbf)) return false;
    }
    i += 1 + continuation;
  }
  return true;
}

// Appends `text` (valid UTF-8) as a JSON string literal.
void AppendJsonString(absl::string_view text, std::string* out) {
  out->push_back('"');
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

absl::Status CheckUtf8(absl::string_view text, absl::string_view what, const std::string& path) {
  if (IsValidUtf8(text)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": ", what, " ", QuoteForError(text), " is not valid UTF-8"));
}

}  // namespace

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF64:
      return "F64";
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI64:
      return "I64";
    case DType::kI32:
      return "I32";
    case DType::kI16:
      return "I16";
    case DType::kI8:
      return "I8";
    case DType::kU8:
      return "U8";
    case DType::kBool:
      return "BOOL";
  }
  FOXSERVE_CHECK(false) << "invalid DType " << static_cast<int>(dtype);
  return "";
}

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF64:
    case DType::kI64:
      return 8;
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kI16:
      return 2;
    case DType::kI8:
    case DType::kU8:
    case DType::kBool:
      return 1;
  }
  FOXSERVE_CHECK(false) << "invalid DType " << static_cast<int>(dtype);
  return 0;
}

int64_t TensorView::numel() const {
  int64_t result = 1;
  for (const int64_t dim : shape) {
    // Views from SafetensorsFile always pass; a hand-built view with a bad shape is a bug.
    FOXSERVE_CHECK(dim >= 0 && !__builtin_mul_overflow(result, dim, &result))
        << "tensor " << name << " has an invalid shape " << ShapeString(shape);
  }
  return result;
}

absl::StatusOr<std::vector<float>> TensorToFloat32(const TensorView& tensor) {
  const std::string where = absl::StrCat("tensor ", QuoteForError(tensor.name));
  const std::optional<int64_t> byte_size = CheckedByteSize(tensor.shape, tensor.dtype);
  if (!byte_size.has_value() || static_cast<uint64_t>(*byte_size) != tensor.bytes.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", tensor.bytes.size(), " bytes do not match shape ",
                     ShapeString(tensor.shape), " of ", DTypeName(tensor.dtype)));
  }
  const size_t numel = tensor.bytes.size() / DTypeSize(tensor.dtype);
  const uint8_t* src = tensor.bytes.data();
  std::vector<float> out(numel);
  // Element loads go through memcpy: offsets in a safetensors file carry no alignment guarantee.
  switch (tensor.dtype) {
    case DType::kF32:
      if (numel > 0) std::memcpy(out.data(), src, numel * sizeof(float));
      break;
    case DType::kF64:
      for (size_t i = 0; i < numel; ++i) out[i] = DoubleToFloat(LoadUnaligned<double>(src + 8 * i));
      break;
    case DType::kF16:
      for (size_t i = 0; i < numel; ++i) out[i] = HalfToFloat(LoadUnaligned<uint16_t>(src + 2 * i));
      break;
    case DType::kBF16:
      for (size_t i = 0; i < numel; ++i) {
        out[i] = BFloat16ToFloat(LoadUnaligned<uint16_t>(src + 2 * i));
      }
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(where, " has dtype ", DTypeName(tensor.dtype),
                                                     ", not a floating-point type"));
  }
  return out;
}

// --- SafetensorsFile --------------------------------------------------------------------------

SafetensorsFile::~SafetensorsFile() = default;

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  FOXSERVE_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  const absl::Span<const uint8_t> bytes = mapped->bytes();
  if (bytes.size() < 8) {
    return absl::DataLossError(absl::StrCat(path, ": file is ", bytes.size(),
                                            " bytes, too short for a safetensors header length"));
  }
  const uint64_t header_size = LoadLittleEndian64(bytes.data());
  if (header_size > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": header length ", header_size,
                                                   " exceeds the limit of ", kMaxHeaderBytes,
                                                   " bytes (corrupt, or not a safetensors file)"));
  }
  if (header_size > bytes.size() - 8) {
    return absl::DataLossError(absl::StrCat(path, ": header length ", header_size,
                                            " runs past the end of the file (", bytes.size() - 8,
                                            " bytes follow the length field)"));
  }
  const absl::string_view header_json(reinterpret_cast<const char*>(bytes.data() + 8),
                                      static_cast<size_t>(header_size));
  FOXSERVE_ASSIGN_OR_RETURN(ParsedHeader header,
                            safetensors_internal::ParseHeader(header_json, path));
  // Data may have gaps or trailing bytes; each tensor's own range is what is checked.
  const absl::Span<const uint8_t> data = bytes.subspan(8 + static_cast<size_t>(header_size));

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->names_.reserve(header.entries.size());
  for (const HeaderEntry& entry : header.entries) {
    FOXSERVE_ASSIGN_OR_RETURN(TensorView view, MakeView(entry, data, path));
    file->names_.push_back(entry.name);
    // Names are unique: the header parser rejects duplicates.
    file->tensors_.emplace(entry.name, std::move(view));
  }
  file->metadata_ = std::move(header.metadata);
  file->file_ = std::move(mapped);
  return file;
}

bool SafetensorsFile::Contains(absl::string_view name) const {
  return tensors_.find(name) != tensors_.end();
}

absl::StatusOr<TensorView> SafetensorsFile::Get(absl::string_view name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor named ", QuoteForError(name)));
  }
  return it->second;
}

// --- SafetensorsCheckpoint --------------------------------------------------------------------

SafetensorsCheckpoint::~SafetensorsCheckpoint() = default;

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& model_dir) {
  const std::string index_path = absl::StrCat(model_dir, "/", kIndexFileName);
  const std::string single_path = absl::StrCat(model_dir, "/", kSingleFileName);
  std::unique_ptr<SafetensorsCheckpoint> checkpoint(new SafetensorsCheckpoint());

  struct stat st;
  if (::stat(index_path.c_str(), &st) != 0) {
    if (errno != ENOENT && errno != ENOTDIR) {
      return absl::ErrnoToStatus(errno, absl::StrCat("stat ", index_path));
    }
    if (::stat(single_path.c_str(), &st) != 0) {
      if (errno != ENOENT && errno != ENOTDIR) {
        return absl::ErrnoToStatus(errno, absl::StrCat("stat ", single_path));
      }
      return absl::NotFoundError(absl::StrCat("no safetensors checkpoint in ", model_dir,
                                              ": neither ", index_path, " nor ", single_path,
                                              " exists"));
    }
    FOXSERVE_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                              SafetensorsFile::Open(single_path));
    for (const std::string& name : file->names()) checkpoint->owner_.emplace(name, file.get());
    checkpoint->shards_.push_back(std::move(file));
    return checkpoint;
  }

  FOXSERVE_ASSIGN_OR_RETURN(const auto weight_map, ReadWeightMap(index_path));
  // Each distinct shard is opened (mapped) once, however many tensors it holds.
  std::map<std::string, const SafetensorsFile*> shard_by_name;
  for (const auto& [tensor, shard_name] : weight_map) {
    auto it = shard_by_name.find(shard_name);
    if (it == shard_by_name.end()) {
      auto shard = SafetensorsFile::Open(absl::StrCat(model_dir, "/", shard_name));
      if (!shard.ok()) {
        return WithContext(shard.status(),
                           absl::StrCat(index_path, ": shard ", QuoteForError(shard_name),
                                        " (listed for tensor ", QuoteForError(tensor), ")"));
      }
      it = shard_by_name.emplace(shard_name, shard->get()).first;
      checkpoint->shards_.push_back(*std::move(shard));
    }
    const SafetensorsFile* shard = it->second;
    if (!shard->Contains(tensor)) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": tensor ", QuoteForError(tensor), " is listed in shard ",
                       QuoteForError(shard_name), ", but ", shard->path(), " does not hold it"));
    }
    checkpoint->owner_.emplace(tensor, shard);
  }
  // The converse: a tensor the index does not place in this shard would be silently ignored (or
  // be a conflicting second copy), which hides a broken checkpoint.
  for (const auto& [shard_name, shard] : shard_by_name) {
    for (const std::string& tensor : shard->names()) {
      const auto listed = weight_map.find(tensor);
      if (listed == weight_map.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(shard->path(), ": tensor ", QuoteForError(tensor),
                         " is not listed in the weight_map of ", index_path));
      }
      if (listed->second != shard_name) {
        return absl::InvalidArgumentError(absl::StrCat(
            shard->path(), ": tensor ", QuoteForError(tensor), " is also stored here, but ",
            index_path, " places it in shard ", QuoteForError(listed->second)));
      }
    }
  }
  return checkpoint;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> result;
  result.reserve(owner_.size());
  for (const auto& entry : owner_) result.push_back(entry.first);
  return result;
}

bool SafetensorsCheckpoint::Contains(absl::string_view name) const {
  return owner_.find(name) != owner_.end();
}

absl::StatusOr<TensorView> SafetensorsCheckpoint::Get(absl::string_view name) const {
  const auto it = owner_.find(name);
  if (it == owner_.end()) {
    // The model directory is not kept; every shard lives in it, so any shard's path names it.
    if (shards_.empty()) {
      return absl::NotFoundError(
          absl::StrCat("no tensor named ", QuoteForError(name), ": the checkpoint is empty"));
    }
    const std::string& shard_path = shards_.front()->path();
    return absl::NotFoundError(absl::StrCat("no tensor named ", QuoteForError(name),
                                            " in the checkpoint in ",
                                            shard_path.substr(0, shard_path.rfind('/'))));
  }
  return it->second->Get(name);
}

// --- WriteSafetensors -------------------------------------------------------------------------

absl::Status WriteSafetensors(const std::string& path, absl::Span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata) {
  // Validate everything and build the header before creating any file.
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : metadata) {
      FOXSERVE_RETURN_IF_ERROR(CheckUtf8(key, "metadata key", path));
      FOXSERVE_RETURN_IF_ERROR(CheckUtf8(value, "metadata value", path));
      if (!first) header += ",";
      first = false;
      AppendJsonString(key, &header);
      header += ":";
      AppendJsonString(value, &header);
    }
    header += "}";
  }
  std::set<absl::string_view> names;
  int64_t offset = 0;
  for (const TensorToWrite& tensor : tensors) {
    const std::string where = absl::StrCat(path, ": tensor ", QuoteForError(tensor.name));
    if (tensor.name == "__metadata__") {
      return absl::InvalidArgumentError(absl::StrCat(where, ": the name is reserved"));
    }
    FOXSERVE_RETURN_IF_ERROR(CheckUtf8(tensor.name, "tensor name", path));
    if (!names.insert(tensor.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate name"));
    }
    const std::optional<int64_t> byte_size = CheckedByteSize(tensor.shape, tensor.dtype);
    if (!byte_size.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": invalid shape ", ShapeString(tensor.shape), " (negative or overflowing)"));
    }
    if (static_cast<uint64_t>(*byte_size) != tensor.bytes.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": ", tensor.bytes.size(), " bytes given, but shape ", ShapeString(tensor.shape),
          " of ", DTypeName(tensor.dtype), " needs ", *byte_size));
    }
    int64_t end;
    if (__builtin_add_overflow(offset, *byte_size, &end)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": total size overflows int64"));
    }
    if (header.size() > 1) header += ",";
    AppendJsonString(tensor.name, &header);
    absl::StrAppend(&header, ":{\"dtype\":\"", DTypeName(tensor.dtype), "\",\"shape\":[",
                    absl::StrJoin(tensor.shape, ","), "],\"data_offsets\":[", offset, ",", end,
                    "]}");
    offset = end;
  }
  header += "}";
  // Spaces are JSON whitespace, so padding keeps the header valid while aligning the data
  // section to 8 bytes (the length field is 8 bytes too).
  header.append((8 - header.size() % 8) % 8, ' ');

  uint8_t length_field[8];
  for (int i = 0; i < 8; ++i) length_field[i] = static_cast<uint8_t>(header.size() >> (8 * i));

  // A unique name in the target's directory (rename is only atomic within a file system); created
  // with O_EXCL and mode 0666 so the umask applies as for any new file.
  static std::atomic<uint64_t> counter{0};
  std::string temp_path;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    temp_path = absl::StrCat(path, ".tmp.", ::getpid(), ".", counter.fetch_add(1));
    fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && (errno != EEXIST || attempt >= 100)) {
      return absl::ErrnoToStatus(errno, absl::StrCat("create ", temp_path));
    }
  }
  absl::Status status = WriteAll(fd, absl::MakeConstSpan(length_field), temp_path);
  if (status.ok()) {
    status = WriteAll(
        fd, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(header.data()), header.size()),
        temp_path);
  }
  for (const TensorToWrite& tensor : tensors) {
    if (!status.ok()) break;
    status = WriteAll(fd, tensor.bytes, temp_path);
  }
  // fsync before rename, so that after a crash `path` is the old or the new file, never a
  // renamed but still empty one.
  if (status.ok() && ::fsync(fd) != 0) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("fsync ", temp_path));
  }
  if (::close(fd) != 0 && status.ok()) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("close ", temp_path));
  }
  if (status.ok() && ::rename(temp_path.c_str(), path.c_str()) != 0) {
    status = absl::ErrnoToStatus(errno, absl::StrCat("rename ", temp_path, " to ", path));
  }
  if (!status.ok()) ::unlink(temp_path.c_str());
  return status;
}

}  // namespace models
}  // namespace foxserve
