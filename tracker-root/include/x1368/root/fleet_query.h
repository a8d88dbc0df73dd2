// Root's lists of firmware consumers (X.1368 §11.2 a) over its registry: which devices run the
// newest release that applies to their hardware class, which run an older one, which failed,
// which are offline or updating; a page at a time in device id order, and counted per component.
// Pure functions of the registry, the releases and the time: no I/O, run on root's loop.
#ifndef X1368_ROOT_FLEET_QUERY_H_
#define X1368_ROOT_FLEET_QUERY_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "x1368/root/registry.h"
#include "x1368/v1/admin.pb.h"

namespace x1368::root {

// What decides whether a device counts as online: its last report's age, and the Last Will of a
// device directly under root.
struct Liveness {
  int64_t now_ms = 0;
  int64_t stale_after_ms = 0;
};
bool DeviceOnline(const Registry& registry, const v1::DeviceRecord& device, const Liveness& l);

// The newest release (highest sequence number) of each component for each hardware class it
// names (a manifest names at least one).
class LatestReleases {
 public:
  explicit LatestReleases(const std::vector<Release>& releases);
  // Null when no release of `component` applies to `hardware_class`.
  const v1::Manifest* For(const std::string& component, const std::string& hardware_class) const;

 private:
  std::map<std::pair<std::string, std::string>, v1::Manifest> by_class_;
};

// Page sizes of ListDevices.
inline constexpr uint32_t kDefaultPageSize = 100;
inline constexpr uint32_t kMaxPageSize = 1000;

// One page of the devices `query` selects, in device id order after query.after, each with
// online, latest_version and obsolete filled in. InvalidArgument for a malformed query.
absl::StatusOr<v1::DevicePage> ListDevices(const Registry& registry, const v1::DeviceQuery& query,
                                           const Liveness& liveness);

// One device as the lists show it; nullopt when root has never heard of it.
std::optional<v1::DeviceRecord> ShowDevice(const Registry& registry, const std::string& device_id,
                                           const Liveness& liveness);

// Every component's devices counted by list and by version.
v1::FleetSummary Summarize(const Registry& registry, const Liveness& liveness);

}  // namespace x1368::root

#endif  // X1368_ROOT_FLEET_QUERY_H_
