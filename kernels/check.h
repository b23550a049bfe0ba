// FOXSERVE_CHECK: invariants that only a programming error can break. Failing one prints the
// condition, the place and the streamed message, then aborts. User input and files never reach
// a CHECK: they get an absl::Status (see models/status_macros.h).
#ifndef FOXSERVE_KERNELS_CHECK_H_
#define FOXSERVE_KERNELS_CHECK_H_

#include <sstream>

namespace foxserve {
namespace internal {

class CheckFailure {
 public:
  CheckFailure(const char* condition, const char* file, int line);
  [[noreturn]] ~CheckFailure();
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

// Lets `FOXSERVE_CHECK(c) << x` compile as a void expression in both ternary branches.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace internal
}  // namespace foxserve

#define FOXSERVE_CHECK(condition)                  \
  (condition) ? (void)0                            \
              : ::foxserve::internal::Voidify() &  \
                    ::foxserve::internal::CheckFailure(#condition, __FILE__, __LINE__).stream()

#define FOXSERVE_CHECK_EQ(a, b) FOXSERVE_CHECK((a) == (b)) << #a " = " << (a) << ", " #b " = " << (b) << ". "
#define FOXSERVE_CHECK_LE(a, b) FOXSERVE_CHECK((a) <= (b)) << #a " = " << (a) << ", " #b " = " << (b) << ". "
#define FOXSERVE_CHECK_LT(a, b) FOXSERVE_CHECK((a) < (b)) << #a " = " << (a) << ", " #b " = " << (b) << ". "
#define FOXSERVE_CHECK_GE(a, b) FOXSERVE_CHECK((a) >= (b)) << #a " = " << (a) << ", " #b " = " << (b) << ". "

#endif  // FOXSERVE_KERNELS_CHECK_H_
