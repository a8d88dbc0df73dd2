// What a tracker node knows of the devices in its subtree, kept so that two nodes can compare
// their views cheaply (issue #13, X.1368 §10 e.ii, §11.2 a-b). Each device has an entry: the
// hop it is reached through (root: its `via`; an intermediate: its direct child on the path),
// what it runs and its state, whether it is online, and the SHA-256 of its latest StatusReport.
//
// For every hop the index keeps, incrementally, the number of devices, their counts by
// component x version x state x online, and a digest: the XOR of each device's
// EntryDigest(id, report digest, online). XOR makes it independent of order and O(1) to update
// when one device changes, so a parent checks a child's SubtreeSummary against its own view of
// that child's subtree at the cost of a lookup, for any fleet size. The digest finds loss and
// divergence; it is not a security measure (the summary's envelope signature is).
//
// Not thread-safe: owned by one event loop.
#ifndef X1368_CORE_SUBTREE_INDEX_H_
#define X1368_CORE_SUBTREE_INDEX_H_

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "x1368/v1/messages.pb.h"

namespace x1368::core {

struct IndexedDevice {
  std::string hop;
  std::string component;
  std::string version;
  v1::UpdateState state = v1::UPDATE_STATE_UNSPECIFIED;
  bool online = true;
  std::string report_digest;  // ReportDigest of its latest report
};

// What a relayed report is evidence of, and so never taken on a gateway's word
// (status.verify_relayed = evidence): an outcome (CONFIRMED, FAILED, ROLLED_BACK, DECLINED) or
// a request for an update. Progress is not.
bool IsEvidence(const v1::StatusReport& report);

// SHA-256 of the report's deterministic serialisation: equal for equal content whatever
// envelope carried it.
std::string ReportDigest(const v1::StatusReport& report);

class SubtreeIndex {
 public:
  // Adds or replaces the device's entry.
  void Put(const std::string& device, IndexedDevice entry);
  // Sets an existing device's liveness; false when the device is unknown.
  bool SetOnline(const std::string& device, bool online);
  void Remove(const std::string& device);
  const IndexedDevice* Find(const std::string& device) const;
  size_t size() const { return devices_.size(); }

  // Everything the index holds, or only what is reached through `hop`.
  v1::SubtreeSummary Summary() const;
  v1::SubtreeSummary SummaryOf(const std::string& hop) const;
  // The hops it has devices through, in order.
  std::vector<std::string> Hops() const;

  // True when `a` and `b` describe the same devices (count and digest).
  static bool Same(const v1::SubtreeSummary& a, const v1::SubtreeSummary& b);

 private:
  using CountKey = std::tuple<std::string, std::string, int, bool>;
  struct Hop {
    uint64_t devices = 0;
    std::string digest = std::string(32, '\0');
    std::map<CountKey, uint64_t> counts;
  };
  struct Stored {
    IndexedDevice e;
    std::string entry_digest;  // what it XORs into its hop's digest
  };
  void Apply(const std::string& device, Stored& stored, int sign);
  static void AddTo(v1::SubtreeSummary* out, const Hop& hop);

  absl::flat_hash_map<std::string, Stored> devices_;
  std::map<std::string, Hop> hops_;
};

// When to ask a child for its whole subtree again (StatusRequest.full) after its summary
// disagreed: at once the first time, then not before `backoff`, doubling while they keep
// disagreeing (a subtree that cannot agree, e.g. a device that moved, must not be resent every
// few seconds), back to the start once they agree.
class ResyncPacer {
 public:
  explicit ResyncPacer(int64_t first_backoff_ms) : first_backoff_ms_(first_backoff_ms) {}
  // The outcome of comparing `child`'s summary at `now_ms`; true: ask it now.
  bool Compared(const std::string& child, bool same, int64_t now_ms);

 private:
  static constexpr int64_t kMaxBackoffMs = 3'600'000;
  struct State {
    int64_t next_allowed_ms = 0;
    int64_t backoff_ms = 0;
  };
  const int64_t first_backoff_ms_;
  std::map<std::string, State> children_;
};

}  // namespace x1368::core

#endif  // X1368_CORE_SUBTREE_INDEX_H_
