// Root's persistent state in SQLite (docs/architecture.md §9): releases and their images, campaigns
// with the exact directive envelopes they sent, every device's last reported state, and every
// tracker node's liveness and rejection counters. Device reports are written in batches: Stage*
// collects them, Commit() writes all staged rows in one transaction.
// Not thread-safe: owned by root's event loop.
#ifndef X1368_ROOT_REGISTRY_H_
#define X1368_ROOT_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "x1368/core/sqlite_db.h"
#include "x1368/v1/admin.pb.h"
#include "x1368/v1/manifest.pb.h"

namespace x1368::root {

struct Release {
  v1::SignedManifest signed_manifest;
  v1::Manifest manifest;
  std::string image_path;
};

struct Campaign {
  v1::CampaignInfo info;
  std::string directive_envelope;
  std::string directive_digest;
  int64_t expires_at_ms = 0;
};

class Registry {
 public:
  // Creates the schema if needed. `db` must outlive the registry.
  static absl::StatusOr<std::unique_ptr<Registry>> Open(core::SqliteDb* db);

  absl::Status AddRelease(const Release& release);
  std::optional<Release> FindRelease(const std::string& component,
                                     const std::string& version) const;
  std::optional<Release> FindReleaseByDigest(const std::string& sha256) const;
  std::vector<Release> Releases() const;

  absl::Status AddCampaign(const Campaign& campaign);
  std::vector<Campaign> ActiveCampaigns(int64_t now_ms) const;
  std::vector<v1::CampaignInfo> Campaigns() const;
  size_t campaign_count() const { return campaigns_.size(); }

  // Device and node state: staged in memory, written by Commit().
  void StageDevice(const v1::DeviceRecord& record);
  void StageNode(const v1::NodeRecord& record);
  absl::Status Commit();
  bool dirty() const { return !staged_devices_.empty() || !staged_nodes_.empty(); }

  std::vector<v1::DeviceRecord> Devices() const;
  std::optional<v1::DeviceRecord> Device(const std::string& id) const;
  // The record itself (null: unknown), valid until the next Stage*.
  const v1::DeviceRecord* FindDevice(const std::string& id) const;
  const v1::NodeRecord* FindNode(const std::string& id) const;
  size_t device_count() const { return devices_.size(); }
  // Calls `fn` on each device whose id sorts after `after` ("" for all), in id order, until it
  // returns false. No copies: what a query over the whole fleet reads.
  void ScanDevices(const std::string& after,
                   const std::function<bool(const v1::DeviceRecord&)>& fn) const;
  std::vector<v1::NodeRecord> Nodes() const;
  // Root's direct children: the gateways and devices whose `via` is themselves. Every other node
  // and device reports through one of them, and only these fetch chunks from root.
  size_t direct_child_count() const { return direct_children_.size(); }
  std::optional<v1::NodeRecord> Node(const std::string& id) const;

 private:
  explicit Registry(core::SqliteDb* db) : db_(db) {}
  absl::Status Load();

  core::SqliteDb* db_;
  // Everything is also kept in memory: the registry answers queries without touching disk.
  std::vector<Release> releases_;
  std::map<std::string, Campaign> campaigns_;
  std::map<std::string, v1::DeviceRecord> devices_;
  std::map<std::string, v1::NodeRecord> nodes_;
  // Ids whose record Commit() writes (from devices_ / nodes_).
  std::set<std::string> staged_devices_;
  std::set<std::string> staged_nodes_;
  absl::flat_hash_set<std::string> direct_children_;
};

}  // namespace x1368::root

#endif  // X1368_ROOT_REGISTRY_H_
