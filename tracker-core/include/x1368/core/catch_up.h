// A parent's answer to a child that missed a campaign. QoS 1 ends at the broker: a directive or
// a go can still be lost on the last mile (a session that expired, a broker that dropped its
// queue, a device that lost power between receipt and persistence). The child then goes on
// reporting as if nothing were under way. The parent sees that in the child's own reports (its
// campaign is none of the active ones, or it still waits for its go) and sends it its desired
// state again: every active directive with its go.
//
// A single such report proves nothing: under load it may have been sent before the directive
// reached the child. So the child must go on reporting behind for `grace` (its next heartbeat)
// before anything is sent. Then at most `max_resends` times per child and newest directive,
// backing off from `first_backoff`, because a device that no campaign targets reports the same
// way; a report that is caught up clears the child's state.
#ifndef X1368_CORE_CATCH_UP_H_
#define X1368_CORE_CATCH_UP_H_

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace x1368::core {

class CatchUp {
 public:
  struct Options {
    absl::Duration grace = absl::Seconds(5);
    absl::Duration first_backoff = absl::Seconds(10);
    int max_resends = 4;  // 10 + 20 + 40 s: past a minute of bad luck, the heartbeat's business
  };
  CatchUp() = default;
  explicit CatchUp(Options options) : options_(options) {}

  // Called for every report of `child`. `behind`: the report shows it missed an active campaign.
  // `newest_directive_ms`: when the newest active directive reached this node (a new one starts
  // every child's count again). True when the child's desired state should be sent again now.
  bool OnReport(const std::string& child, bool behind, int64_t now_ms, int64_t newest_directive_ms);
  // Resends so far, over every child.
  uint64_t resends() const { return resends_; }
  // Children being watched now (reporting behind).
  size_t watched() const { return children_.size(); }

 private:
  struct Child {
    int64_t directive_ms = 0;  // the newest directive its state is for
    int64_t behind_since_ms = 0;
    int attempts = 0;
    int64_t next_ms = 0;
  };
  Options options_;
  absl::flat_hash_map<std::string, Child> children_;
  uint64_t resends_ = 0;
};

}  // namespace x1368::core

#endif  // X1368_CORE_CATCH_UP_H_
