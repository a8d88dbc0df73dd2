// Typed reasons carried inside absl::Status.
//
// Every rejection and every update failure has one x1368::v1::Reason (proto/x1368/v1/common.proto),
// the same number on the wire, in metrics and in logs. A Status made by Reject() carries it as a
// payload, so callers and counters switch on ReasonOf(status) and never match message text.
// Thread-safe: free functions without state.
#ifndef X1368_CORE_REASON_H_
#define X1368_CORE_REASON_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "x1368/v1/common.pb.h"

namespace x1368::core {

using v1::Reason;

// A non-OK status carrying `reason`. The status code follows the reason's family (malformed
// input, authentication, staleness, ...), the message says what was wrong.
absl::Status Reject(Reason reason, absl::string_view message);

// The reason carried by `status`, or REASON_UNSPECIFIED if it carries none (or is OK).
Reason ReasonOf(const absl::Status& status);

// "BAD_SIGNATURE" for v1::BAD_SIGNATURE; "REASON_<n>" for a number this build does not know.
std::string ReasonName(Reason reason);

// `status` with "while <context>: " prepended to its message; payloads (the reason) are kept.
absl::Status WithContext(const absl::Status& status, absl::string_view context);

}  // namespace x1368::core

// Returns early from the enclosing function when `expr` (an absl::Status) is not OK.
#define X1368_RETURN_IF_ERROR(expr)             \
  do {                                          \
    if (absl::Status _st = (expr); !_st.ok()) { \
      return _st;                               \
    }                                           \
  } while (0)

#define X1368_CONCAT_INNER_(a, b) a##b
#define X1368_CONCAT_(a, b) X1368_CONCAT_INNER_(a, b)

// `lhs = value of (expr)` (an absl::StatusOr), or returns its status from the enclosing function.
#define X1368_ASSIGN_OR_RETURN(lhs, expr) \
  X1368_ASSIGN_OR_RETURN_IMPL_(X1368_CONCAT_(_statusor_, __LINE__), lhs, expr)
#define X1368_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(*tmp)

#endif  // X1368_CORE_REASON_H_
