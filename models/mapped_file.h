// A read-only memory mapping of a whole file, for weights that are read in place rather than
// copied (safetensors checkpoints can be tens of GiB).
#ifndef FOXSERVE_MODELS_MAPPED_FILE_H_
#define FOXSERVE_MODELS_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace foxserve {
namespace models {

// Owns a PROT_READ, MAP_PRIVATE mapping of a regular file; unmaps it on destruction. The file
// descriptor is closed as soon as the mapping exists. An empty file is valid and yields an empty
// span (mmap cannot map zero bytes).
//
// The mapping reflects the file as it is on disk: if another process truncates the file while
// it is mapped, touching the lost pages raises SIGBUS. Model files are treated as immutable while
// served, so this is accepted rather than defended against (copying would double memory use).
//
// Thread-safety: immutable after Open; all const methods are safe to call concurrently.
class MappedFile {
 public:
  // Errors name `path` and the failing call with its errno text: NotFound / PermissionDenied /
  // ... from open(2), InvalidArgument when `path` is not a regular file (e.g. a directory).
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  size_t size() const { return size_; }
  // The whole file; valid while this object lives. Data has the page alignment of the mapping,
  // but callers must not rely on sub-ranges being aligned.
  absl::Span<const uint8_t> bytes() const { return absl::Span<const uint8_t>(data_, size_); }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_ = nullptr;  // nullptr for an empty file
  size_t size_ = 0;
};

}  // namespace models
}  // namespace foxserve

#endif  // FOXSERVE_MODELS_MAPPED_FILE_H_
