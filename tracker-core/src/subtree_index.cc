#include "x1368/core/subtree_index.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "x1368/core/crypto.h"

namespace x1368::core {

namespace {

std::string EntryDigest(const std::string& device, const IndexedDevice& e) {
  return Sha256(absl::StrCat(device, std::string(1, '\0'), e.report_digest, e.online ? "1" : "0"));
}

void XorInto(std::string* acc, const std::string& d) {
  for (size_t i = 0; i < acc->size() && i < d.size(); ++i) (*acc)[i] ^= d[i];
}

}  // namespace

bool IsEvidence(const v1::StatusReport& r) {
  switch (r.state()) {
    case v1::CONFIRMED:
    case v1::FAILED:
    case v1::ROLLED_BACK:
    case v1::DECLINED:
      return true;
    default:
      return !r.needs_update().empty();
  }
}

std::string ReportDigest(const v1::StatusReport& report) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    report.SerializeToCodedStream(&coded);
  }
  return Sha256(bytes);
}

void SubtreeIndex::Apply(const std::string& device, Stored& stored, int sign) {
  const IndexedDevice& e = stored.e;
  Hop& hop = hops_[e.hop];
  if (sign > 0) stored.entry_digest = EntryDigest(device, e);
  XorInto(&hop.digest, stored.entry_digest);
  CountKey key{e.component, e.version, static_cast<int>(e.state), e.online};
  if (sign > 0) {
    ++hop.devices;
    ++hop.counts[key];
    return;
  }
  --hop.devices;
  auto it = hop.counts.find(key);
  if (it != hop.counts.end() && --it->second == 0) hop.counts.erase(it);
  if (hop.devices == 0) hops_.erase(e.hop);
}

void SubtreeIndex::Put(const std::string& device, IndexedDevice entry) {
  auto [it, added] = devices_.try_emplace(device);
  if (!added) Apply(device, it->second, -1);
  it->second.e = std::move(entry);
  Apply(device, it->second, +1);
}

bool SubtreeIndex::SetOnline(const std::string& device, bool online) {
  auto it = devices_.find(device);
  if (it == devices_.end()) return false;
  if (it->second.e.online == online) return true;
  Apply(device, it->second, -1);
  it->second.e.online = online;
  Apply(device, it->second, +1);
  return true;
}

void SubtreeIndex::Remove(const std::string& device) {
  auto it = devices_.find(device);
  if (it == devices_.end()) return;
  Apply(device, it->second, -1);
  devices_.erase(it);
}

const IndexedDevice* SubtreeIndex::Find(const std::string& device) const {
  auto it = devices_.find(device);
  return it == devices_.end() ? nullptr : &it->second.e;
}

void SubtreeIndex::AddTo(v1::SubtreeSummary* out, const Hop& hop) {
  out->set_devices(out->devices() + hop.devices);
  std::string digest = out->digest().empty() ? std::string(32, '\0') : out->digest();
  XorInto(&digest, hop.digest);
  out->set_digest(digest);
  for (const auto& [key, n] : hop.counts) {
    v1::SummaryCount* c = out->add_counts();
    c->set_component(std::get<0>(key));
    c->set_version(std::get<1>(key));
    c->set_state(static_cast<v1::UpdateState>(std::get<2>(key)));
    c->set_online(std::get<3>(key));
    c->set_devices(n);
  }
}

v1::SubtreeSummary SubtreeIndex::Summary() const {
  v1::SubtreeSummary out;
  out.set_digest(std::string(32, '\0'));
  for (const auto& [name, hop] : hops_) AddTo(&out, hop);
  // Rows of different hops with the same key are merged.
  std::map<CountKey, uint64_t> merged;
  for (const v1::SummaryCount& c : out.counts()) {
    merged[{c.component(), c.version(), static_cast<int>(c.state()), c.online()}] += c.devices();
  }
  out.clear_counts();
  for (const auto& [key, n] : merged) {
    v1::SummaryCount* c = out.add_counts();
    c->set_component(std::get<0>(key));
    c->set_version(std::get<1>(key));
    c->set_state(static_cast<v1::UpdateState>(std::get<2>(key)));
    c->set_online(std::get<3>(key));
    c->set_devices(n);
  }
  return out;
}

v1::SubtreeSummary SubtreeIndex::SummaryOf(const std::string& hop) const {
  v1::SubtreeSummary out;
  out.set_digest(std::string(32, '\0'));
  auto it = hops_.find(hop);
  if (it != hops_.end()) AddTo(&out, it->second);
  return out;
}

std::vector<std::string> SubtreeIndex::Hops() const {
  std::vector<std::string> out;
  out.reserve(hops_.size());
  for (const auto& [name, hop] : hops_) {
    if (hop.devices > 0) out.push_back(name);
  }
  return out;
}

bool SubtreeIndex::Same(const v1::SubtreeSummary& a, const v1::SubtreeSummary& b) {
  auto digest = [](const v1::SubtreeSummary& s) {
    return s.digest().empty() ? std::string(32, '\0') : s.digest();
  };
  return a.devices() == b.devices() && digest(a) == digest(b);
}

bool ResyncPacer::Compared(const std::string& child, bool same, int64_t now_ms) {
  if (same) {
    children_.erase(child);
    return false;
  }
  State& st = children_[child];
  if (now_ms < st.next_allowed_ms) return false;  // the resend asked for is on its way
  st.backoff_ms =
      st.backoff_ms == 0 ? first_backoff_ms_ : std::min(st.backoff_ms * 2, kMaxBackoffMs);
  st.next_allowed_ms = now_ms + st.backoff_ms;
  return true;
}

}  // namespace x1368::core
