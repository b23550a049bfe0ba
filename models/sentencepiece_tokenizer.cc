#include "models/sentencepiece_tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "models/sentencepiece_module_api.h"

namespace foxserve {
namespace models {

// The loaded module and its entry points. dlopen counts references, so each model holding its
// own handle needs no process-wide state.
class SentencePieceModule {
 public:
  static std::shared_ptr<const SentencePieceModule> Open(std::string* error) {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("FOXSERVE_SENTENCEPIECE_MODULE")) candidates.push_back(env);
#ifdef FOXSERVE_SENTENCEPIECE_MODULE_PATH
    candidates.push_back(FOXSERVE_SENTENCEPIECE_MODULE_PATH);
#endif
    const std::string name = "libfoxserve_sentencepiece.so";
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
      std::string dir(exe, n);
      dir = dir.substr(0, dir.rfind('/'));
      candidates.push_back(dir + "/" + name);
      candidates.push_back(dir + "/../lib/foxserve/" + name);
    }
    candidates.push_back(name);
    std::string tried;
    for (const std::string& path : candidates) {
      if (path.find('/') != std::string::npos && access(path.c_str(), R_OK) != 0) continue;
      void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (handle == nullptr) {
        tried += std::string(" ") + dlerror() + ";";
        continue;
      }
      auto module = std::shared_ptr<SentencePieceModule>(new SentencePieceModule(handle));
      if (module->Resolve()) return module;
      tried += " " + path + " lacks the foxserve_spm_* functions;";
    }
    *error = "cannot load the SentencePiece module " + name +
             " (set FOXSERVE_SENTENCEPIECE_MODULE to its path):" + tried;
    return nullptr;
  }

  ~SentencePieceModule() { dlclose(handle_); }

  FoxserveSpmLoad load = nullptr;
  FoxserveSpmRelease release = nullptr;
  FoxserveSpmEncode encode = nullptr;
  FoxserveSpmDecode decode = nullptr;
  FoxserveSpmInfo info = nullptr;
  FoxserveSpmFreeBuffer free_buffer = nullptr;

 private:
  explicit SentencePieceModule(void* handle) : handle_(handle) {}
  bool Resolve() {
    load = reinterpret_cast<FoxserveSpmLoad>(dlsym(handle_, FOXSERVE_SPM_LOAD));
    release = reinterpret_cast<FoxserveSpmRelease>(dlsym(handle_, FOXSERVE_SPM_RELEASE));
    encode = reinterpret_cast<FoxserveSpmEncode>(dlsym(handle_, FOXSERVE_SPM_ENCODE));
    decode = reinterpret_cast<FoxserveSpmDecode>(dlsym(handle_, FOXSERVE_SPM_DECODE));
    info = reinterpret_cast<FoxserveSpmInfo>(dlsym(handle_, FOXSERVE_SPM_INFO));
    free_buffer = reinterpret_cast<FoxserveSpmFreeBuffer>(dlsym(handle_, FOXSERVE_SPM_FREE_BUFFER));
    return load && release && encode && decode && info && free_buffer;
  }
  void* handle_;
};

namespace {

// Moves a module-allocated message into `error`.
void TakeError(const SentencePieceModule& m, char* message, std::string* error) {
  *error = message != nullptr ? message : "unknown SentencePiece error";
  m.free_buffer(message);
}

}  // namespace

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(const std::string& model_path,
                                                             std::string* error) {
  std::unique_ptr<SentencePieceModel> model(new SentencePieceModel);
  model->module_ = SentencePieceModule::Open(error);
  if (model->module_ == nullptr) return nullptr;
  char* message = nullptr;
  if (model->module_->load(model_path.c_str(), &model->handle_, &message) != 0) {
    TakeError(*model->module_, message, error);
    return nullptr;
  }
  model->module_->info(model->handle_, &model->pieces_, &model->bos_, &model->eos_);
  return model;
}

SentencePieceModel::~SentencePieceModel() {
  if (handle_ != nullptr) module_->release(handle_);
}

bool SentencePieceModel::Encode(const std::string& text, std::vector<int>* ids,
                                std::string* error) const {
  int32_t* out = nullptr;
  size_t count = 0;
  char* message = nullptr;
  if (module_->encode(handle_, text.data(), text.size(), &out, &count, &message) != 0) {
    TakeError(*module_, message, error);
    return false;
  }
  ids->assign(out, out + count);
  module_->free_buffer(out);
  return true;
}

bool SentencePieceModel::Decode(const std::vector<int>& ids, std::string* text,
                                std::string* error) const {
  // Checked here: not every SentencePiece version range-checks ids before indexing.
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= pieces_) {
      *error = "token id " + std::to_string(ids[i]) + " (position " + std::to_string(i) +
               ") is outside [0, " + std::to_string(pieces_) + ")";
      return false;
    }
  }
  const std::vector<int32_t> in(ids.begin(), ids.end());
  char* out = nullptr;
  size_t length = 0;
  char* message = nullptr;
  if (module_->decode(handle_, in.data(), in.size(), &out, &length, &message) != 0) {
    TakeError(*module_, message, error);
    return false;
  }
  text->assign(out, length);
  module_->free_buffer(out);
  return true;
}

}  // namespace models
}  // namespace foxserve
