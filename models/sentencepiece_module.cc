// libfoxserve_sentencepiece: the only code that includes SentencePiece headers (Debian's
// declare their own absl::string_view, and the library embeds its own protobuf; see
// sentencepiece_module_api.h). No Abseil here; only the C functions below are exported.
#include <sentencepiece_processor.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "models/sentencepiece_module_api.h"

#define FOXSERVE_SPM_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

char* Copy(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out != nullptr) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

int Fail(char** error, const std::string& message) {
  if (error != nullptr) *error = Copy(message);
  return -1;
}

}  // namespace

FOXSERVE_SPM_EXPORT int foxserve_spm_load(const char* path, void** model, char** error) {
  auto processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const sentencepiece::util::Status status = processor->Load(path);
  if (!status.ok()) {
    return Fail(error, std::string(path) + ": not a loadable SentencePiece model: " + status.ToString());
  }
  *model = processor.release();
  return 0;
}

FOXSERVE_SPM_EXPORT void foxserve_spm_release(void* model) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(model);
}

FOXSERVE_SPM_EXPORT int foxserve_spm_encode(void* model, const char* text, size_t length,
                                            int32_t** ids, size_t* count, char** error) {
  std::vector<int> out;
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(model)->Encode(
      std::string(text, length), &out);
  if (!status.ok()) return Fail(error, "SentencePiece encode failed: " + status.ToString());
  *ids = static_cast<int32_t*>(std::malloc(sizeof(int32_t) * (out.empty() ? 1 : out.size())));
  if (*ids == nullptr) return Fail(error, "out of memory");
  for (size_t i = 0; i < out.size(); ++i) (*ids)[i] = out[i];
  *count = out.size();
  return 0;
}

FOXSERVE_SPM_EXPORT int foxserve_spm_decode(void* model, const int32_t* ids, size_t count,
                                            char** text, size_t* length, char** error) {
  std::string out;
  const std::vector<int> in(ids, ids + count);
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(model)->Decode(in, &out);
  if (!status.ok()) return Fail(error, "SentencePiece decode failed: " + status.ToString());
  *text = static_cast<char*>(std::malloc(out.size() + 1));
  if (*text == nullptr) return Fail(error, "out of memory");
  std::memcpy(*text, out.data(), out.size());
  *length = out.size();
  return 0;
}

FOXSERVE_SPM_EXPORT void foxserve_spm_info(void* model, int32_t* pieces, int32_t* bos,
                                           int32_t* eos) {
  const auto* p = static_cast<sentencepiece::SentencePieceProcessor*>(model);
  *pieces = p->GetPieceSize();
  *bos = p->bos_id();
  *eos = p->eos_id();
}

FOXSERVE_SPM_EXPORT void foxserve_spm_free_buffer(void* buffer) { std::free(buffer); }
