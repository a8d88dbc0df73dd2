#include "x1368/core/catch_up.h"

namespace x1368::core {

bool CatchUp::OnReport(const std::string& child, bool behind, int64_t now_ms,
                       int64_t newest_directive_ms) {
  if (!behind) {
    children_.erase(child);
    return false;
  }
  Child& c = children_[child];
  if (c.directive_ms != newest_directive_ms) c = Child{newest_directive_ms, now_ms, 0, 0};
  if (now_ms - c.behind_since_ms < absl::ToInt64Milliseconds(options_.grace)) return false;
  if (c.attempts >= options_.max_resends || now_ms < c.next_ms) return false;
  c.next_ms = now_ms + (absl::ToInt64Milliseconds(options_.first_backoff) << c.attempts);
  ++c.attempts;
  ++resends_;
  return true;
}

}  // namespace x1368::core
