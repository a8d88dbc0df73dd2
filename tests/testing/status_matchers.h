// Shared test matchers: EXPECT_OK / ASSERT_OK / ASSERT_OK_AND_ASSIGN for absl::Status and
// StatusOr, IsOkAndHolds, and HasReason for the typed x1368::v1::Reason carried by a Status.
#ifndef X1368_TESTING_STATUS_MATCHERS_H_
#define X1368_TESTING_STATUS_MATCHERS_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "x1368/core/reason.h"

namespace x1368::testing {

inline const absl::Status& ToStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& ToStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER_P(HasReason, reason, "carries reason " + x1368::core::ReasonName(reason)) {
  const absl::Status& s = ::x1368::testing::ToStatus(arg);
  *result_listener << "status is " << s.ToString();
  return x1368::core::ReasonOf(s) == reason;
}

// A StatusOr that is OK and whose value matches `matcher`.
MATCHER_P(IsOkAndHolds, matcher, "is OK and holds a matching value") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status().ToString();
    return false;
  }
  return ::testing::ExplainMatchResult(matcher, *arg, result_listener);
}

}  // namespace x1368::testing

#define EXPECT_OK(expr) \
  EXPECT_TRUE(::x1368::testing::ToStatus(expr).ok()) << ::x1368::testing::ToStatus(expr).ToString()
#define ASSERT_OK(expr) \
  ASSERT_TRUE(::x1368::testing::ToStatus(expr).ok()) << ::x1368::testing::ToStatus(expr).ToString()

#define X1368_TESTING_CONCAT_INNER_(a, b) a##b
#define X1368_TESTING_CONCAT_(a, b) X1368_TESTING_CONCAT_INNER_(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(X1368_TESTING_CONCAT_(status_or_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  ASSERT_OK(tmp);                                  \
  lhs = std::move(*tmp)

#endif  // X1368_TESTING_STATUS_MATCHERS_H_
