// Status propagation helpers. Debian 12's Abseil (20220623) predates absl's own
// RETURN_IF_ERROR / ASSIGN_OR_RETURN, so foxserve defines these two, and nothing else.
#ifndef FOXSERVE_MODELS_STATUS_MACROS_H_
#define FOXSERVE_MODELS_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FOXSERVE_STATUS_CONCAT_INNER_(a, b) a##b
#define FOXSERVE_STATUS_CONCAT_(a, b) FOXSERVE_STATUS_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the enclosing function when it is not OK.
#define FOXSERVE_RETURN_IF_ERROR(expr)                 \
  do {                                                 \
    ::absl::Status foxserve_status_ = (expr);          \
    if (!foxserve_status_.ok()) return foxserve_status_; \
  } while (0)

// `FOXSERVE_ASSIGN_OR_RETURN(auto x, MakeX());` declares or assigns `x` from an OK StatusOr and
// returns the error from the enclosing function otherwise.
#define FOXSERVE_ASSIGN_OR_RETURN(lhs, expr)                                          \
  FOXSERVE_ASSIGN_OR_RETURN_IMPL_(FOXSERVE_STATUS_CONCAT_(foxserve_statusor_, __LINE__), \
                                  lhs, expr)
#define FOXSERVE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                    \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = std::move(statusor).value()

#endif  // FOXSERVE_MODELS_STATUS_MACROS_H_
