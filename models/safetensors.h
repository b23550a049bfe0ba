// Reading and writing safetensors files (https://github.com/huggingface/safetensors format):
// an 8-byte little-endian header length N, N bytes of JSON describing each tensor (dtype, shape,
// data_offsets relative to the end of the header), then the raw little-endian data.
//
// Files are memory-mapped; TensorView points into the mapping and stays valid while the owning
// SafetensorsFile / SafetensorsCheckpoint lives. Every malformed input (truncated file, bad JSON,
// unknown dtype, offsets outside the data, sizes that overflow or disagree with the shape)
// returns an InvalidArgument / DataLoss status naming the file and the tensor; nothing crashes.
// Thread-safety: const methods are safe to call concurrently.
#ifndef FOXSERVE_MODELS_SAFETENSORS_H_
#define FOXSERVE_MODELS_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace foxserve {
namespace models {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32", "BF16", ... as written in safetensors headers.
absl::string_view DTypeName(DType dtype);
size_t DTypeSize(DType dtype);

struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  absl::Span<const uint8_t> bytes;  // numel * DTypeSize(dtype) bytes, little-endian

  int64_t numel() const;
};

// Converts a floating-point tensor (F32, F16, BF16, F64) to float32. Other dtypes: InvalidArgument
// naming the tensor.
absl::StatusOr<std::vector<float>> TensorToFloat32(const TensorView& tensor);

class MappedFile;

// One .safetensors file.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  // Tensor names in header order.
  const std::vector<std::string>& names() const { return names_; }
  bool Contains(absl::string_view name) const;
  // NotFound naming the tensor and the file when absent.
  absl::StatusOr<TensorView> Get(absl::string_view name) const;
  // The optional "__metadata__" string map.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::unique_ptr<MappedFile> file_;
  std::vector<std::string> names_;
  std::map<std::string, TensorView, std::less<>> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A model directory's weights: `model.safetensors`, or `model.safetensors.index.json` (its
// "weight_map" maps tensor names to shard files in the same directory) plus the shards.
class SafetensorsCheckpoint {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& model_dir);
  ~SafetensorsCheckpoint();

  // Every tensor name, sorted.
  std::vector<std::string> names() const;
  bool Contains(absl::string_view name) const;
  absl::StatusOr<TensorView> Get(absl::string_view name) const;

 private:
  SafetensorsCheckpoint() = default;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, const SafetensorsFile*, std::less<>> owner_;
};

// A tensor to write: `bytes` must hold numel(shape) * DTypeSize(dtype) bytes.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  absl::Span<const uint8_t> bytes;
};

// Writes a safetensors file (header padded to 8 bytes, tensors in the given order), atomically
// (a temporary file renamed over `path`).
absl::Status WriteSafetensors(const std::string& path, absl::Span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_SAFETENSORS_H_
