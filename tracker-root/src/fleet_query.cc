#include "x1368/root/fleet_query.h"

#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"

namespace x1368::root {
namespace {

bool InProgress(v1::UpdateState s) { return s >= v1::OFFERED && s <= v1::TRIAL_BOOT; }
bool Failed(v1::UpdateState s) { return s == v1::FAILED || s == v1::ROLLED_BACK; }

// At or below `subtree`: the device itself, or a node on its path.
bool InSubtree(const v1::DeviceRecord& d, const std::string& subtree) {
  if (d.device_id() == subtree || d.via() == subtree) return true;
  for (absl::string_view node : absl::StrSplit(d.path(), '/')) {
    if (node == subtree) return true;
  }
  return false;
}

// What the lists compute for a device, without copying its record (a query may read a million).
struct Computed {
  bool online = false;
  const v1::Manifest* newest = nullptr;
  bool obsolete = false;
  bool ahead = false;  // runs a sequence number above the newest release
};

class Annotator {
 public:
  Annotator(const Registry& registry, const Liveness& liveness)
      : registry_(registry), latest_(registry.Releases()), liveness_(liveness) {}

  Computed Compute(const v1::DeviceRecord& d) {
    Computed c;
    c.online = Online(d);
    // Devices come in id order, and neighbours mostly share component and hardware class.
    if (!cached_ || d.component() != component_ || d.hardware_class() != hardware_class_) {
      component_ = d.component();
      hardware_class_ = d.hardware_class();
      newest_ = latest_.For(component_, hardware_class_);
      cached_ = true;
    }
    c.newest = newest_;
    c.obsolete = newest_ != nullptr && d.sequence_number() < newest_->sequence_number();
    c.ahead = newest_ != nullptr && d.sequence_number() > newest_->sequence_number();
    return c;
  }

  // DeviceOnline, with each node's answer kept for the query (a few hundred nodes, a million
  // devices).
  bool Online(const v1::DeviceRecord& d) {
    if (d.via() == d.device_id()) return DeviceOnline(registry_, d, liveness_);
    if (d.link_down()) return false;
    const std::string& key = d.path().empty() ? d.via() : d.path();
    auto it = paths_.find(key);
    if (it == paths_.end()) it = paths_.emplace(key, DeviceOnline(registry_, d, liveness_)).first;
    return it->second;
  }

  static void Fill(const Computed& c, v1::DeviceRecord* d) {
    d->set_online(c.online);
    d->set_latest_version(c.newest != nullptr ? c.newest->version() : "");
    d->set_obsolete(c.obsolete);
    d->set_ahead_of_root(c.ahead);
  }

 private:
  const Registry& registry_;
  const LatestReleases latest_;
  const Liveness liveness_;
  bool cached_ = false;
  std::string component_, hardware_class_;
  const v1::Manifest* newest_ = nullptr;
  absl::flat_hash_map<std::string, bool> paths_;  // path -> every node on it up
};

bool Selected(const v1::DeviceRecord& d, const Computed& c, v1::DeviceList list) {
  switch (list) {
    case v1::LIST_UP_TO_DATE:
      return !c.obsolete;
    case v1::LIST_OBSOLETE:
      return c.obsolete;
    case v1::LIST_FAILED:
      return Failed(d.state());
    case v1::LIST_OFFLINE:
      return !c.online;
    case v1::LIST_UPDATING:
      return InProgress(d.state());
    case v1::LIST_NEEDS_UPDATE:
      return !d.needs_update().empty();
    case v1::LIST_AHEAD:
      return c.ahead;
    default:
      return true;
  }
}

}  // namespace

bool NodeReachable(const Registry& registry, absl::string_view id, bool direct, const Liveness& l) {
  const v1::NodeRecord* n = registry.FindNode(std::string(id));
  // A gateway root never heard of itself (only its devices' reports): nothing says it is down.
  if (n == nullptr) return true;
  if (!n->online()) return false;
  // Root's own child reports itself every interval: stale is down, whatever its presence says
  // (a Will lost with the broker). Below it, its parent's liveness entries speak for it.
  return !direct || l.now_ms - n->updated_at_ms() < l.stale_after_ms;
}

bool DeviceOnline(const Registry& registry, const v1::DeviceRecord& d, const Liveness& l) {
  // X.1368 §11.2 b.i. A device directly under root: while its reports are fresh, and offline as
  // soon as its Last Will (presence "offline") arrives.
  if (d.via() == d.device_id()) {
    std::optional<v1::NodeRecord> link = registry.Node(d.device_id());
    if (link && !link->online()) return false;
    return l.now_ms - d.updated_at_ms() < l.stale_after_ms;
  }
  // Under gateways: its gateway says it is up (heartbeats, Will; unchanged reports are not
  // relayed, so their age says nothing), and every node on its path is up.
  if (d.link_down()) return false;
  bool first = true;
  for (absl::string_view node : absl::StrSplit(d.path().empty() ? d.via() : d.path(), '/')) {
    if (!NodeReachable(registry, node, first, l)) return false;
    first = false;
  }
  return true;
}

LatestReleases::LatestReleases(const std::vector<Release>& releases) {
  auto keep_newest = [](v1::Manifest* slot, const v1::Manifest& m) {
    if (slot->component().empty() || m.sequence_number() > slot->sequence_number()) *slot = m;
  };
  for (const Release& r : releases) {
    const v1::Manifest& m = r.manifest;
    for (const std::string& hw : m.hardware_classes()) {
      keep_newest(&by_class_[{m.component(), hw}], m);
    }
  }
}

const v1::Manifest* LatestReleases::For(const std::string& component,
                                        const std::string& hardware_class) const {
  auto it = by_class_.find({component, hardware_class});
  return it == by_class_.end() ? nullptr : &it->second;
}

absl::StatusOr<v1::DevicePage> ListDevices(const Registry& registry, const v1::DeviceQuery& q,
                                           const Liveness& liveness) {
  if (!q.component().empty())
    X1368_RETURN_IF_ERROR(core::ValidateNodeId(q.component(), "component"));
  if (!q.subtree().empty()) X1368_RETURN_IF_ERROR(core::ValidateNodeId(q.subtree(), "subtree"));
  if (!q.after().empty()) X1368_RETURN_IF_ERROR(core::ValidateNodeId(q.after(), "after"));
  if (!v1::DeviceList_IsValid(q.list())) {
    return absl::InvalidArgumentError(absl::StrCat("no list ", q.list()));
  }
  if (q.limit() > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit ", q.limit(), " is more than ", kMaxPageSize));
  }
  const uint32_t limit = q.limit() == 0 ? kDefaultPageSize : q.limit();
  Annotator annotator(registry, liveness);
  v1::DevicePage page;
  bool more = false;
  registry.ScanDevices(q.after(), [&](const v1::DeviceRecord& d) {
    if (!q.component().empty() && d.component() != q.component()) return true;
    if (!q.subtree().empty() && !InSubtree(d, q.subtree())) return true;
    const Computed c = annotator.Compute(d);
    if (!Selected(d, c, q.list())) return true;
    if (static_cast<uint32_t>(page.devices_size()) == limit) {
      more = true;  // one more matches: there is a next page
      return false;
    }
    v1::DeviceRecord* out = page.add_devices();
    *out = d;
    Annotator::Fill(c, out);
    return true;
  });
  if (more) page.set_next_after(page.devices(page.devices_size() - 1).device_id());
  return page;
}

std::optional<v1::DeviceRecord> ShowDevice(const Registry& registry, const std::string& device_id,
                                           const Liveness& liveness) {
  std::optional<v1::DeviceRecord> d = registry.Device(device_id);
  if (!d) return std::nullopt;
  Annotator annotator(registry, liveness);
  Annotator::Fill(annotator.Compute(*d), &*d);
  return d;
}

v1::FleetSummary Summarize(const Registry& registry, const Liveness& liveness) {
  Annotator annotator(registry, liveness);
  std::map<std::string, v1::ComponentSummary> by_component;
  std::map<std::pair<std::string, std::string>, v1::VersionCount> versions;
  registry.ScanDevices("", [&](const v1::DeviceRecord& d) {
    const Computed computed = annotator.Compute(d);
    v1::ComponentSummary& c = by_component[d.component()];
    c.set_devices(c.devices() + 1);
    if (computed.obsolete) {
      c.set_obsolete(c.obsolete() + 1);
    } else {
      c.set_up_to_date(c.up_to_date() + 1);
    }
    if (Failed(d.state())) c.set_failed(c.failed() + 1);
    if (!computed.online) c.set_offline(c.offline() + 1);
    if (InProgress(d.state())) c.set_updating(c.updating() + 1);
    v1::VersionCount& v = versions[{d.component(), d.version()}];
    v.set_devices(v.devices() + 1);
    if (computed.online) v.set_online(v.online() + 1);
    return true;
  });
  v1::FleetSummary summary;
  summary.set_at_ms(liveness.now_ms);
  for (auto& [component, c] : by_component) {
    c.set_component(component);
    for (auto it = versions.lower_bound({component, ""});
         it != versions.end() && it->first.first == component; ++it) {
      v1::VersionCount* v = c.add_versions();
      *v = it->second;
      v->set_version(it->first.second);
    }
    *summary.add_components() = std::move(c);
  }
  return summary;
}

}  // namespace x1368::root
