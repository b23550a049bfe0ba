// Linked into every executable of an ASan or TSan build (cmake/FoxserveSanitizers.cmake), nowhere
// else.
//
// The SentencePiece module must be loaded with RTLD_DEEPBIND (models/sentencepiece_module_api.h:
// Debian's libsentencepiece carries its own protobuf). The sanitizer runtimes' dlopen interceptor
// aborts on that flag (google/sanitizers#611), because a deep-bound library may resolve malloc and
// free to glibc's rather than the sanitizer's, and memory crossing between the two heaps would be
// reported or corrupted. The module's C interface never lets memory cross: every buffer it hands
// out is freed through its own foxserve_spm_free_buffer. So this definition of dlopen, which takes
// precedence over the runtime's weak interceptor, passes deep-bound loads straight to glibc and
// every other load to the interceptor as before.
#include <dlfcn.h>

extern "C" {

// The sanitizer runtime's interceptor (weak: absent in a plain build, where this file is not
// linked anyway).
void* __interceptor_dlopen(const char* file, int flags) __attribute__((weak));

void* dlopen(const char* file, int flags) {
  using DlopenFn = void* (*)(const char*, int);
  if ((flags & RTLD_DEEPBIND) == 0 && __interceptor_dlopen != nullptr) {
    return __interceptor_dlopen(file, flags);
  }
  // glibc's own dlopen (libc.so.6 since 2.34, libdl.so.2 before).
  static DlopenFn real = [] {
    void* f = dlvsym(RTLD_NEXT, "dlopen", "GLIBC_2.34");
    if (f == nullptr) f = dlvsym(RTLD_NEXT, "dlopen", "GLIBC_2.2.5");
    return reinterpret_cast<DlopenFn>(f);
  }();
  return real != nullptr ? real(file, flags) : nullptr;
}

}  // extern "C"
