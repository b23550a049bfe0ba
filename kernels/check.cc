#include "kernels/check.h"

#include <cstdio>
#include <cstdlib>

namespace foxserve {
namespace internal {

CheckFailure::CheckFailure(const char* condition, const char* file, int line) {
  stream_ << file << ":" << line << ": FOXSERVE_CHECK failed: " << condition << ". ";
}

CheckFailure::~CheckFailure() {
  std::fprintf(stderr, "%s\n", stream_.str().c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace internal
}  // namespace foxserve
