#include "kernels/cuda/cublaslt_library.h"

#include <dlfcn.h>

#include <memory>

namespace foxserve {
namespace kernels {
namespace {

struct Opened {
  std::unique_ptr<CublasLtLibrary> library;  // null on failure
  std::string error;
};

template <typename Fn>
bool Resolve(void* handle, const char* name, Fn* fn, std::string* error) {
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (*fn == nullptr) *error = std::string("libcublasLt has no ") + name;
  return *fn != nullptr;
}

Opened Open() {
  Opened o;
  const std::string soname = "libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR);
  // Never closed: the handles it creates live as long as the process.
  void* handle = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* e = dlerror();
    o.error = "cannot open " + soname + ": " + (e != nullptr ? e : "unknown error");
    return o;
  }
  auto lib = std::make_unique<CublasLtLibrary>();
  std::string& e = o.error;
  const bool ok =
      Resolve(handle, "cublasLtCreate", &lib->Create, &e) &&
      Resolve(handle, "cublasLtDestroy", &lib->Destroy, &e) &&
      Resolve(handle, "cublasLtMatmul", &lib->Matmul, &e) &&
      Resolve(handle, "cublasLtMatmulAlgoGetHeuristic", &lib->MatmulAlgoGetHeuristic, &e) &&
      Resolve(handle, "cublasLtMatmulDescCreate", &lib->MatmulDescCreate, &e) &&
      Resolve(handle, "cublasLtMatmulDescDestroy", &lib->MatmulDescDestroy, &e) &&
      Resolve(handle, "cublasLtMatmulDescSetAttribute", &lib->MatmulDescSetAttribute, &e) &&
      Resolve(handle, "cublasLtMatmulPreferenceCreate", &lib->MatmulPreferenceCreate, &e) &&
      Resolve(handle, "cublasLtMatmulPreferenceDestroy", &lib->MatmulPreferenceDestroy, &e) &&
      Resolve(handle, "cublasLtMatmulPreferenceSetAttribute",
              &lib->MatmulPreferenceSetAttribute, &e) &&
      Resolve(handle, "cublasLtMatrixLayoutCreate", &lib->MatrixLayoutCreate, &e) &&
      Resolve(handle, "cublasLtMatrixLayoutDestroy", &lib->MatrixLayoutDestroy, &e);
  if (ok) o.library = std::move(lib);
  return o;
}

}  // namespace

const CublasLtLibrary* OpenCublasLt(std::string* why) {
  static const Opened* const opened = new Opened(Open());
  if (opened->library == nullptr && why != nullptr) *why = opened->error;
  return opened->library.get();
}

}  // namespace kernels
}  // namespace foxserve
