#include "x1368/root/registry.h"

#include "absl/strings/str_cat.h"
#include "x1368/core/reason.h"

namespace x1368::root {

absl::StatusOr<std::unique_ptr<Registry>> Registry::Open(core::SqliteDb* db) {
  X1368_RETURN_IF_ERROR(db->Exec(
      "CREATE TABLE IF NOT EXISTS releases (component TEXT NOT NULL, version TEXT NOT NULL,"
      " sequence INTEGER NOT NULL, sha256 BLOB NOT NULL, signed_manifest BLOB NOT NULL,"
      " image_path TEXT NOT NULL, PRIMARY KEY (component, version));"
      "CREATE TABLE IF NOT EXISTS campaigns (campaign_id TEXT PRIMARY KEY, info BLOB NOT NULL,"
      " directive BLOB NOT NULL, digest BLOB NOT NULL, expires_at_ms INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS devices (device_id TEXT PRIMARY KEY, record BLOB NOT NULL);"
      "CREATE TABLE IF NOT EXISTS nodes (node_id TEXT PRIMARY KEY, record BLOB NOT NULL);"));
  std::unique_ptr<Registry> r(new Registry(db));
  X1368_RETURN_IF_ERROR(r->Load());
  return r;
}

absl::Status Registry::Load() {
  X1368_ASSIGN_OR_RETURN(auto rel,
                         db_->Prepare("SELECT signed_manifest, image_path FROM releases"));
  while (true) {
    X1368_ASSIGN_OR_RETURN(bool row, rel->Step());
    if (!row) break;
    Release r;
    if (!r.signed_manifest.ParseFromString(rel->ColumnText(0)) ||
        !r.manifest.ParseFromString(r.signed_manifest.manifest())) {
      return db_->Corrupt("a stored release does not parse");
    }
    r.image_path = rel->ColumnText(1);
    releases_.push_back(std::move(r));
  }
  X1368_ASSIGN_OR_RETURN(
      auto camp, db_->Prepare("SELECT info, directive, digest, expires_at_ms FROM campaigns"));
  while (true) {
    X1368_ASSIGN_OR_RETURN(bool row, camp->Step());
    if (!row) break;
    Campaign c;
    if (!c.info.ParseFromString(camp->ColumnText(0)))
      return db_->Corrupt("a stored campaign does not parse");
    c.directive_envelope = camp->ColumnText(1);
    c.directive_digest = camp->ColumnText(2);
    c.expires_at_ms = camp->ColumnInt(3);
    campaigns_[c.info.campaign_id()] = std::move(c);
  }
  X1368_ASSIGN_OR_RETURN(auto dev, db_->Prepare("SELECT record FROM devices"));
  while (true) {
    X1368_ASSIGN_OR_RETURN(bool row, dev->Step());
    if (!row) break;
    v1::DeviceRecord d;
    if (!d.ParseFromString(dev->ColumnText(0)))
      return db_->Corrupt("a device record does not parse");
    if (d.via() == d.device_id()) direct_children_.insert(d.device_id());
    devices_[d.device_id()] = std::move(d);
  }
  X1368_ASSIGN_OR_RETURN(auto node, db_->Prepare("SELECT record FROM nodes"));
  while (true) {
    X1368_ASSIGN_OR_RETURN(bool row, node->Step());
    if (!row) break;
    v1::NodeRecord n;
    if (!n.ParseFromString(node->ColumnText(0)))
      return db_->Corrupt("a node record does not parse");
    if (n.via() == n.node_id()) direct_children_.insert(n.node_id());
    nodes_[n.node_id()] = std::move(n);
  }
  return absl::OkStatus();
}

absl::Status Registry::AddRelease(const Release& r) {
  X1368_ASSIGN_OR_RETURN(auto stmt, db_->Prepare("INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?)"));
  X1368_RETURN_IF_ERROR(stmt->Bind(1, r.manifest.component())
                            .Bind(2, r.manifest.version())
                            .Bind(3, static_cast<int64_t>(r.manifest.sequence_number()))
                            .BindBlob(4, r.manifest.sha256())
                            .BindBlob(5, r.signed_manifest.SerializeAsString())
                            .Bind(6, r.image_path)
                            .Run());
  releases_.push_back(r);
  return absl::OkStatus();
}

std::optional<Release> Registry::FindRelease(const std::string& component,
                                             const std::string& version) const {
  for (const Release& r : releases_) {
    if (r.manifest.component() == component && r.manifest.version() == version) return r;
  }
  return std::nullopt;
}

std::optional<Release> Registry::FindReleaseByDigest(const std::string& sha256) const {
  for (const Release& r : releases_) {
    if (r.manifest.sha256() == sha256) return r;
  }
  return std::nullopt;
}

std::vector<Release> Registry::Releases() const { return releases_; }

absl::Status Registry::AddCampaign(const Campaign& c) {
  X1368_ASSIGN_OR_RETURN(auto stmt, db_->Prepare("INSERT INTO campaigns VALUES (?, ?, ?, ?, ?)"));
  X1368_RETURN_IF_ERROR(stmt->Bind(1, c.info.campaign_id())
                            .BindBlob(2, c.info.SerializeAsString())
                            .BindBlob(3, c.directive_envelope)
                            .BindBlob(4, c.directive_digest)
                            .Bind(5, c.expires_at_ms)
                            .Run());
  campaigns_[c.info.campaign_id()] = c;
  return absl::OkStatus();
}

std::vector<Campaign> Registry::ActiveCampaigns(int64_t now_ms) const {
  std::vector<Campaign> out;
  for (const auto& [id, c] : campaigns_) {
    if (c.expires_at_ms > now_ms) out.push_back(c);
  }
  return out;
}

std::vector<v1::CampaignInfo> Registry::Campaigns() const {
  std::vector<v1::CampaignInfo> out;
  for (const auto& [id, c] : campaigns_) out.push_back(c.info);
  return out;
}

void Registry::StageDevice(const v1::DeviceRecord& record) {
  if (record.via() == record.device_id()) {
    direct_children_.insert(record.device_id());
  } else {
    direct_children_.erase(record.device_id());  // moved under a gateway
  }
  devices_[record.device_id()] = record;
  staged_devices_.insert(record.device_id());
}

void Registry::StageNode(const v1::NodeRecord& record) {
  if (record.via() == record.node_id()) {
    direct_children_.insert(record.node_id());
  } else {
    direct_children_.erase(record.node_id());  // moved under a gateway
  }
  nodes_[record.node_id()] = record;
  staged_nodes_.insert(record.node_id());
}

absl::Status Registry::Commit() {
  if (!dirty()) return absl::OkStatus();
  X1368_ASSIGN_OR_RETURN(auto dev, db_->Prepare("INSERT OR REPLACE INTO devices VALUES (?, ?)"));
  X1368_ASSIGN_OR_RETURN(auto node, db_->Prepare("INSERT OR REPLACE INTO nodes VALUES (?, ?)"));
  X1368_RETURN_IF_ERROR(db_->Begin());
  std::string bytes;
  for (const std::string& id : staged_devices_) {
    devices_.at(id).SerializeToString(&bytes);
    if (absl::Status s = dev->Bind(1, id).BindBlob(2, bytes).Run(); !s.ok()) {
      db_->Rollback();
      return s;
    }
  }
  for (const std::string& id : staged_nodes_) {
    nodes_.at(id).SerializeToString(&bytes);
    if (absl::Status s = node->Bind(1, id).BindBlob(2, bytes).Run(); !s.ok()) {
      db_->Rollback();
      return s;
    }
  }
  X1368_RETURN_IF_ERROR(db_->Commit());
  staged_devices_.clear();
  staged_nodes_.clear();
  return absl::OkStatus();
}

std::vector<v1::DeviceRecord> Registry::Devices() const {
  std::vector<v1::DeviceRecord> out;
  out.reserve(devices_.size());
  for (const auto& [id, d] : devices_) out.push_back(d);
  return out;
}

const v1::DeviceRecord* Registry::FindDevice(const std::string& id) const {
  auto it = devices_.find(id);
  return it == devices_.end() ? nullptr : &it->second;
}

const v1::NodeRecord* Registry::FindNode(const std::string& id) const {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second;
}

std::optional<v1::DeviceRecord> Registry::Device(const std::string& id) const {
  auto it = devices_.find(id);
  if (it == devices_.end()) return std::nullopt;
  return it->second;
}

void Registry::ScanDevices(const std::string& after,
                           const std::function<bool(const v1::DeviceRecord&)>& fn) const {
  for (auto it = after.empty() ? devices_.begin() : devices_.upper_bound(after);
       it != devices_.end(); ++it) {
    if (!fn(it->second)) return;
  }
}

std::vector<v1::NodeRecord> Registry::Nodes() const {
  std::vector<v1::NodeRecord> out;
  for (const auto& [id, n] : nodes_) out.push_back(n);
  return out;
}

std::optional<v1::NodeRecord> Registry::Node(const std::string& id) const {
  auto it = nodes_.find(id);
  if (it == nodes_.end()) return std::nullopt;
  return it->second;
}

}  // namespace x1368::root
