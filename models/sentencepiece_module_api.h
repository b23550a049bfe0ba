// The C interface of libfoxserve_sentencepiece, the module that wraps Debian's libsentencepiece.
//
// Why a module loaded with dlopen(RTLD_LOCAL | RTLD_DEEPBIND): Debian's libsentencepiece embeds
// protobuf-lite 3.14 and exports it, while gRPC needs the system's libprotobuf 3.21. Linked into
// one process normally, whichever loads first captures the other's symbols and the process dies
// before main() (either in libprotobuf's initializers or in SentencePiece's version check).
// Loaded locally with deep binding, SentencePiece uses its own protobuf and nobody else sees it.
// A C interface keeps the boundary free of C++ ABI and allocator questions.
#ifndef FOXSERVE_MODELS_SENTENCEPIECE_MODULE_API_H_
#define FOXSERVE_MODELS_SENTENCEPIECE_MODULE_API_H_

#include <stddef.h>
#include <stdint.h>

extern "C" {

// Every function returns 0 on success. On failure it returns -1 and, when `error` is not null,
// stores a message allocated with malloc that the caller frees with foxserve_spm_free_buffer.
// Buffers returned through `ids` and `text` are freed the same way.
typedef int (*FoxserveSpmLoad)(const char* path, void** model, char** error);
typedef void (*FoxserveSpmRelease)(void* model);
typedef int (*FoxserveSpmEncode)(void* model, const char* text, size_t length, int32_t** ids,
                                 size_t* count, char** error);
typedef int (*FoxserveSpmDecode)(void* model, const int32_t* ids, size_t count, char** text,
                                 size_t* length, char** error);
// piece count, bos id, eos id (-1 when undefined).
typedef void (*FoxserveSpmInfo)(void* model, int32_t* pieces, int32_t* bos, int32_t* eos);
typedef void (*FoxserveSpmFreeBuffer)(void* buffer);

}  // extern "C"

#define FOXSERVE_SPM_LOAD "foxserve_spm_load"
#define FOXSERVE_SPM_RELEASE "foxserve_spm_release"
#define FOXSERVE_SPM_ENCODE "foxserve_spm_encode"
#define FOXSERVE_SPM_DECODE "foxserve_spm_decode"
#define FOXSERVE_SPM_INFO "foxserve_spm_info"
#define FOXSERVE_SPM_FREE_BUFFER "foxserve_spm_free_buffer"

#endif  // FOXSERVE_MODELS_SENTENCEPIECE_MODULE_API_H_
