// The shared frame of foxserve's fuzz targets (issue 9).
//
// Each target is a function `int FuzzX(const uint8_t* data, size_t size)` in foxserve::fuzz,
// listed in fuzz_targets.h. It feeds the bytes to one input parser and checks properties that
// must hold for every input; a broken property calls FUZZ_CHECK, which aborts, so libFuzzer keeps
// the input as a crash. Two builds use the same sources:
//   - clang with FOXSERVE_FUZZ: one libFuzzer binary per target (FOXSERVE_FUZZ_MAIN defined, so
//     FOXSERVE_FUZZ_TARGET emits LLVMFuzzerTestOneInput);
//   - every build: fuzz_corpus_test (GoogleTest) runs each target over its committed seed corpus
//     and its regressions, so a crash found once stays fixed in the plain gcc build too.
#ifndef FOXSERVE_TESTS_FUZZ_FUZZ_TARGET_H_
#define FOXSERVE_TESTS_FUZZ_FUZZ_TARGET_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"

namespace foxserve {
namespace fuzz {

// Prints what broke and aborts (a crash for libFuzzer, a death for the corpus test).
[[noreturn]] inline void FailProperty(const char* condition, const char* file, int line,
                                      const std::string& message) {
  std::fprintf(stderr, "FUZZ PROPERTY FAILED at %s:%d: %s\n  %s\n", file, line, condition,
               message.c_str());
  std::fflush(stderr);
  std::abort();
}

#define FUZZ_CHECK(condition, message)                                                     \
  do {                                                                                     \
    if (!(condition)) ::foxserve::fuzz::FailProperty(#condition, __FILE__, __LINE__, (message)); \
  } while (0)

// Takes typed values off the front of the input; past the end it yields zeros / empty strings.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t remaining() const { return size_ - pos_; }
  uint8_t U8() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t U16() { return static_cast<uint16_t>(U8() | (U8() << 8)); }
  // Up to `max` bytes, the length taken from the input.
  std::string Bytes(size_t max) {
    const size_t n = std::min<size_t>(U8() % (max + 1), remaining());
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }
  std::string Rest() {
    std::string s(reinterpret_cast<const char*>(data_ + pos_), remaining());
    pos_ = size_;
    return s;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// A printable, cut-down form of bytes for FUZZ_CHECK messages.
std::string Quote(absl::string_view bytes);

}  // namespace fuzz
}  // namespace foxserve

#ifdef FOXSERVE_FUZZ_MAIN
#define FOXSERVE_FUZZ_TARGET(function)                                         \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {    \
    return ::foxserve::fuzz::function(data, size);                             \
  }
#else
#define FOXSERVE_FUZZ_TARGET(function)
#endif

#endif  // FOXSERVE_TESTS_FUZZ_FUZZ_TARGET_H_
