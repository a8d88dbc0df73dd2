// Waiting in tests without sleeping blindly (docs/style.md): poll a condition until a deadline and
// say what was seen when it never came true.
#ifndef X1368_TESTING_WAIT_H_
#define X1368_TESTING_WAIT_H_

#include <functional>
#include <string>

#include "absl/time/time.h"

namespace x1368::testing {

// True as soon as `condition` holds; false after `timeout`.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(20),
             absl::Duration poll = absl::Milliseconds(10));

}  // namespace x1368::testing

#endif  // X1368_TESTING_WAIT_H_
