// Safetensors input: the header parser on the raw bytes, then the bytes as a whole file.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "models/safetensors.h"
#include "models/safetensors_header.h"
#include "tests/fuzz/fuzz_fixtures.h"
#include "tests/fuzz/fuzz_target.h"
#include "tests/fuzz/fuzz_targets.h"

namespace foxserve {
namespace fuzz {

int FuzzSafetensors(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  // - The JSON header alone (the seeds are whole files: skip their 8-byte length when present).
  absl::string_view json = bytes;
  if (size >= 8) {
    uint64_t n;
    std::memcpy(&n, data, 8);
    if (n <= size - 8) json = bytes.substr(8, n);
  }
  auto header = models::safetensors_internal::ParseHeader(json, "fuzz.safetensors");
  if (header.ok()) {
    for (const auto& e : header->entries) {
      FUZZ_CHECK(e.begin >= 0 && e.end >= 0, "negative data offsets accepted");
      for (int64_t d : e.shape) FUZZ_CHECK(d >= 0, "negative dimension accepted");
    }
  } else {
    FUZZ_CHECK(absl::IsInvalidArgument(header.status()), header.status().ToString());
  }

  // - The whole file: every view it hands out lies inside the file and matches its shape.
  auto file = models::SafetensorsFile::Open(MemoryFile(0, bytes));
  if (!file.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(file.status()) || absl::IsDataLoss(file.status()),
               file.status().ToString());
    return 0;
  }
  const uint8_t* begin = data;  // not the mapping: compare sizes only
  (void)begin;
  for (const std::string& name : (*file)->names()) {
    auto view = (*file)->Get(name);
    FUZZ_CHECK(view.ok(), absl::StrCat("listed tensor not found: ", view.status().ToString()));
    const int64_t numel = view->numel();
    FUZZ_CHECK(numel >= 0, "negative numel");
    FUZZ_CHECK(view->bytes.size() == static_cast<size_t>(numel) * models::DTypeSize(view->dtype),
               absl::StrCat("tensor ", Quote(name), ": ", view->bytes.size(), " bytes for ",
                            numel, " elements"));
    FUZZ_CHECK(view->bytes.size() <= size, "a view larger than the file");
    if (numel <= (1 << 16)) {
      auto floats = models::TensorToFloat32(*view);
      if (floats.ok()) FUZZ_CHECK(floats->size() == static_cast<size_t>(numel), "conversion size");
    }
  }
  FUZZ_CHECK(!(*file)->Get("\x01 not a tensor name").ok(), "a tensor that is not there");
  return 0;
}

}  // namespace fuzz
}  // namespace foxserve

FOXSERVE_FUZZ_TARGET(FuzzSafetensors)
