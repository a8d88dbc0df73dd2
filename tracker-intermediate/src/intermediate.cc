#include "x1368/intermediate/intermediate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "x1368/core/chunk_service.h"
#include "x1368/core/crypto.h"
#include "x1368/core/file_util.h"
#include "x1368/core/log.h"
#include "x1368/core/manifest.h"
#include "x1368/core/reason.h"

namespace x1368::intermediate {

using core::Channel;
using core::Reject;

namespace {
constexpr size_t kMaxWaitingRequests = 100'000;
constexpr absl::Duration kFillTick = absl::Milliseconds(250);
// Room left in a batch for the envelope around it.
constexpr size_t kBatchOverhead = 4096;
// The largest image the cache fills: root never publishes more (release.max_image_bytes is at
// most 4 GiB), and a signed manifest that claims more must not size the fill's per-chunk
// bookkeeping (or the sparse .part file) after its claim.
constexpr uint64_t kMaxCachedImageBytes = uint64_t{4} << 30;
}  // namespace

Intermediate::Intermediate(IntermediateOptions options, core::NodeContext* node, core::SqliteDb* db,
                           core::Transport* upstream, core::Transport* downstream,
                           core::EventLoop* loop)
    : opts_(std::move(options)),
      node_(node),
      db_(db),
      loop_(loop),
      links_(node, loop, upstream, opts_.parent_id, downstream),
      cache_(opts_.cache_dir, opts_.cache_max_images) {
  core::Metrics& m = node_->metrics();
  relayed_ = m.Counter("x1368_reports_relayed_total", "Child status reports relayed upward");
  batches_ = m.Counter("x1368_batches_sent_total", "Status batches sent upward");
  chunks_served_ = m.Counter("x1368_chunks_served_total", "Firmware chunks served to children");
  upstream_chunks_ =
      m.Counter("x1368_chunks_fetched_total", "Firmware chunks fetched from upstream");
}

absl::Status Intermediate::Start() {
  X1368_RETURN_IF_ERROR(cache_.Open());
  X1368_RETURN_IF_ERROR(db_->Exec(
      "CREATE TABLE IF NOT EXISTS directives (campaign_id TEXT PRIMARY KEY, envelope BLOB NOT NULL,"
      " expires_at_ms INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS children (id TEXT PRIMARY KEY, online INTEGER NOT NULL,"
      " updated_at_ms INTEGER NOT NULL);"));
  X1368_RETURN_IF_ERROR(LoadState());
  core::NodeLinks::Handlers h;
  h.from_parent = [this](const core::Topic& t, const std::string& p, core::OpenedMessage m) {
    FromParent(t, p, std::move(m));
  };
  h.from_child = [this](const core::Topic& t, const std::string& p, core::OpenedMessage m) {
    FromChild(t, p, std::move(m));
  };
  h.upstream_connected = [this] { ReportSelf(); };
  h.rejected = [this](const absl::Status& s) {
    if (core::ReasonOf(s) != v1::DUPLICATE) ScheduleSelfReport();
  };
  X1368_RETURN_IF_ERROR(links_.Start(std::move(h)));
  loop_->PostAfter(opts_.report_interval, [this] { PeriodicSelfReport(); });
  return absl::OkStatus();
}

void Intermediate::Stop() {
  if (stopped_) return;
  stopped_ = true;
  FlushBatch();
  links_.Stop();
}

absl::Status Intermediate::LoadState() {
  X1368_ASSIGN_OR_RETURN(auto stmt, db_->Prepare("SELECT envelope FROM directives"));
  while (true) {
    X1368_ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) break;
    std::string envelope = stmt->ColumnText(0);
    // Re-verified on load: a directive is only as good as its root signature.
    auto opened = node_->opener().Open(envelope, {core::Origin::kEmbedded, {}});
    if (opened.ok() && opened->body.has_directive())
      AcceptDirective(envelope, *opened, /*fresh=*/false);
  }
  X1368_ASSIGN_OR_RETURN(auto children, db_->Prepare("SELECT id, online FROM children"));
  while (true) {
    X1368_ASSIGN_OR_RETURN(bool row, children->Step());
    if (!row) break;
    children_[children->ColumnText(0)] = children->ColumnInt(1) != 0;
  }
  PruneExpired();
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// From the parent

void Intermediate::FromParent(const core::Topic& topic, const std::string& payload,
                              core::OpenedMessage m) {
  const v1::Body& body = m.body;
  switch (body.message_case()) {
    case v1::Body::kDirective:
      return AcceptDirective(payload, m, /*fresh=*/true);
    case v1::Body::kDesired:
      for (const std::string& d : body.desired().directives()) {
        auto inner = node_->opener().Open(d, {core::Origin::kEmbedded, {}});
        if (!inner.ok()) {
          links_.Reject(inner.status(), "desired.directive");
        } else if (inner->body.has_directive()) {
          AcceptDirective(d, *inner, /*fresh=*/true);
        }
      }
      return;
    case v1::Body::kGo:
      // Pacing from above arrives as go; with no pacing of our own yet, our children go at once.
      return;
    case v1::Body::kChunkResponse:
      if (topic.channel == Channel::kFw) return OnUpstreamChunk(body.chunk_response());
      break;
    default:
      break;
  }
  links_.Reject(Reject(v1::UNKNOWN_TYPE, "not a message for an intermediate"), topic.ToString());
}

void Intermediate::AcceptDirective(const std::string& envelope, const core::OpenedMessage& m,
                                   bool fresh) {
  if (!m.signer->is_root) {
    return links_.Reject(Reject(v1::OUT_OF_SCOPE, "directives must be root-signed"), "directive");
  }
  const v1::UpdateDirective& d = m.body.directive();
  if (directives_.count(d.campaign_id())) return;  // idempotent
  auto manifest = core::VerifyManifest(node_->trust(), d.manifest());
  if (!manifest.ok()) return links_.Reject(manifest.status(), "directive.manifest");
  if (!node_->self().is_root &&
      !core::ScopeCoversComponent(node_->self().scope, manifest->component())) {
    return links_.Reject(Reject(v1::OUT_OF_SCOPE, "my certificate does not cover this component"),
                         "directive");
  }
  Directive dir{{d.campaign_id(), envelope, m.body_digest, m.body.expires_at_ms()}, *manifest};
  if (fresh) {
    auto stmt = db_->Prepare("INSERT OR REPLACE INTO directives VALUES (?, ?, ?)");
    absl::Status s = stmt.ok() ? (*stmt)
                                     ->Bind(1, dir.active.campaign_id)
                                     .BindBlob(2, envelope)
                                     .Bind(3, dir.active.expires_at_ms)
                                     .Run()
                               : stmt.status();
    if (!s.ok()) {
      // Not persisted means not acknowledged: the parent's desired state brings it again.
      node_->metrics().CountRejection(v1::STORAGE_ERROR);
      spdlog::error("event=directive.persist_failed campaign={} error=\"{}\"",
                    dir.active.campaign_id, s.message());
      return;
    }
  }
  directives_[dir.active.campaign_id] = dir;
  spdlog::info("event=directive.accepted campaign={} component={} version={}",
               dir.active.campaign_id, manifest->component(), manifest->version());
  // Prefetch: fetch the image once for the whole subtree before the children ask.
  if (manifest->uri() == core::kChunkServiceUri && !cache_.Has(manifest->sha256()))
    StartFill(*manifest);
  if (!fresh) return;
  // Down the tree: the root's bytes unchanged, then our own go for every child.
  if (absl::Status s = links_.ForwardToChildren(envelope); !s.ok()) {
    spdlog::warn("event=directive.forward_failed error=\"{}\"", s.message());
  }
  v1::Body go;
  go.mutable_go()->set_campaign_id(dir.active.campaign_id);
  go.mutable_go()->set_directive_digest(dir.active.digest);
  (void)links_.Broadcast(std::move(go));
  // Children that are away find it in their retained desired state when they come back.
  for (const auto& [child, online] : children_) {
    if (!online) SendDesired(child);
  }
}

void Intermediate::PruneExpired() {
  int64_t now = node_->clock().NowMs();
  for (auto it = directives_.begin(); it != directives_.end();) {
    if (it->second.active.expires_at_ms > now) {
      ++it;
      continue;
    }
    if (auto stmt = db_->Prepare("DELETE FROM directives WHERE campaign_id = ?"); stmt.ok()) {
      (void)(*stmt)->Bind(1, it->first).Run();
    }
    it = directives_.erase(it);
  }
}

void Intermediate::SendDesired(const std::string& child) {
  PruneExpired();
  std::vector<core::ActiveDirective> active;
  for (const auto& [campaign, d] : directives_) active.push_back(d.active);
  if (absl::Status s = links_.SendDesiredState(child, active); !s.ok()) {
    spdlog::warn("event=desired.send_failed child={} error=\"{}\"", child, s.message());
  }
}

// ---------------------------------------------------------------------------------------------
// From the children

void Intermediate::SetChildOnline(const std::string& child, bool online) {
  auto it = children_.find(child);
  if (it != children_.end() && it->second == online) return;
  children_[child] = online;
  if (auto stmt = db_->Prepare("INSERT OR REPLACE INTO children VALUES (?, ?, ?)"); stmt.ok()) {
    (void)(*stmt)->Bind(1, child).Bind(2, online ? 1 : 0).Bind(3, node_->clock().NowMs()).Run();
  }
}

void Intermediate::FromChild(const core::Topic& topic, const std::string& payload,
                             core::OpenedMessage m) {
  const std::string& child = topic.child;
  const v1::Body& body = m.body;
  switch (body.message_case()) {
    case v1::Body::kPresence:
      if (topic.channel != Channel::kPresence) break;
      SetChildOnline(child, body.presence().online());
      if (body.presence().online()) SendDesired(child);
      return;
    case v1::Body::kStatus:
      if (topic.channel != Channel::kStatus) break;
      if (body.status().device_id() != child) {
        return links_.Reject(Reject(v1::SENDER_MISMATCH, "report names another device"),
                             topic.ToString());
      }
      if (!children_.count(child)) SetChildOnline(child, true);
      return Relay(child, payload);
    case v1::Body::kStatusBatch:
      // A cascaded intermediate's batch: check every device's own signature, then pass the
      // reports on in our batch (flattened, so the root sees each device's envelope once).
      if (topic.channel != Channel::kStatus) break;
      links_.ForEachRelayedReport(
          m, [this](const std::string& envelope, const core::OpenedMessage& r) {
            Relay(r.body.sender(), envelope);
          });
      return;
    case v1::Body::kChunkRequest:
      if (topic.channel != Channel::kFw) break;
      return ServeChunk(child, body.chunk_request());
    default:
      break;
  }
  links_.Reject(Reject(v1::UNKNOWN_TYPE, "unexpected message from a child"), topic.ToString());
}

// ---------------------------------------------------------------------------------------------
// Firmware: serve from the cache, fill it once from upstream

void Intermediate::ServeChunk(const std::string& child, const v1::FirmwareChunkRequest& req) {
  const std::string& sha = req.image_sha256();
  if (cache_.Has(sha)) {
    cache_.Touch(sha);
    auto size = core::FileSize(cache_.PathOf(sha));
    v1::Body body;
    *body.mutable_chunk_response() = size.ok() ? core::ServeChunk(cache_.PathOf(sha), *size, req)
                                               : core::ChunkError(req, v1::IMAGE_UNAVAILABLE);
    chunks_served_->Add();
    (void)links_.SendDown(child, Channel::kFw, std::move(body));
    return;
  }
  // Only images named by a verified directive are fetched: a child cannot make the gateway
  // download arbitrary things.
  const v1::Manifest* manifest = nullptr;
  for (const auto& [campaign, d] : directives_) {
    if (d.manifest.sha256() == sha) manifest = &d.manifest;
  }
  size_t waiting = 0;
  for (const auto& [s, list] : waiting_) waiting += list.size();
  if (manifest == nullptr || waiting >= kMaxWaitingRequests) {
    v1::Body body;
    *body.mutable_chunk_response() = core::ChunkError(req, v1::IMAGE_UNAVAILABLE);
    (void)links_.SendDown(child, Channel::kFw, std::move(body));
    return;
  }
  waiting_[sha].emplace_back(child, req);  // coalesced: one upstream fetch serves them all
  if (!fills_.count(sha)) StartFill(*manifest);
}

void Intermediate::StartFill(const v1::Manifest& manifest) {
  const std::string& sha = manifest.sha256();
  if (fills_.count(sha)) return;
  if (manifest.size() > kMaxCachedImageBytes) return FinishFill(sha, v1::IMAGE_UNAVAILABLE);
  if (absl::Status s = cache_.Begin(sha, manifest.size()); !s.ok()) {
    spdlog::error("event=cache.begin_failed error=\"{}\"", s.message());
    return FinishFill(sha, v1::STORAGE_ERROR);
  }
  Fill& f = fills_[sha];
  f.size = manifest.size();
  f.done.assign((manifest.size() + opts_.fetch_chunk_size - 1) / opts_.fetch_chunk_size, false);
  spdlog::info("event=cache.fill_started image={} size={}", core::HexEncode(sha).substr(0, 16),
               f.size);
  PumpFill(sha);
  if (!fill_timer_) {
    fill_timer_ = true;
    loop_->PostAfter(kFillTick, [this] { FillTick(); });
  }
}

void Intermediate::PumpFill(const std::string& sha) {
  auto it = fills_.find(sha);
  if (it == fills_.end()) return;
  Fill& f = it->second;
  while (f.in_flight.size() < opts_.fetch_window && f.next < f.done.size()) {
    size_t idx = f.next++;
    if (f.done[idx]) continue;
    uint64_t offset = uint64_t{idx} * opts_.fetch_chunk_size;
    v1::Body body;
    v1::FirmwareChunkRequest* req = body.mutable_chunk_request();
    req->set_image_sha256(sha);
    req->set_offset(offset);
    req->set_length(
        static_cast<uint32_t>(std::min<uint64_t>(opts_.fetch_chunk_size, f.size - offset)));
    req->set_request_id(next_request_id_++);
    f.in_flight[offset] = {req->request_id(), loop_->clock().MonotonicMs()};
    (void)links_.SendUp(Channel::kFw, std::move(body));
  }
}

void Intermediate::OnUpstreamChunk(const v1::FirmwareChunkResponse& r) {
  auto it = fills_.find(r.image_sha256());
  if (it == fills_.end()) return;
  Fill& f = it->second;
  auto pending = f.in_flight.find(r.offset());
  if (pending == f.in_flight.end() || pending->second.first != r.request_id()) return;
  f.in_flight.erase(pending);
  size_t idx = r.offset() / opts_.fetch_chunk_size;
  uint64_t expected = std::min<uint64_t>(opts_.fetch_chunk_size, f.size - r.offset());
  if (r.error() != v1::REASON_UNSPECIFIED || r.data().size() != expected) {
    if (++f.tries[r.offset()] >= opts_.fetch_max_tries) {
      return FinishFill(r.image_sha256(),
                        r.error() != v1::REASON_UNSPECIFIED ? r.error() : v1::SIZE_MISMATCH);
    }
    f.next = std::min(f.next, idx);  // ask again
    return PumpFill(r.image_sha256());
  }
  if (absl::Status s = cache_.Write(r.image_sha256(), r.offset(), r.data()); !s.ok()) {
    return FinishFill(r.image_sha256(), v1::STORAGE_ERROR);
  }
  upstream_chunks_->Add();
  f.done[idx] = true;
  if (std::all_of(f.done.begin(), f.done.end(), [](bool b) { return b; })) {
    absl::Status s = cache_.Complete(r.image_sha256(), f.size);
    if (!s.ok()) {
      links_.Reject(s, "cache.fill");  // counted: a tampered image upstream is an attack
      return FinishFill(r.image_sha256(), core::ReasonOf(s));
    }
    return FinishFill(r.image_sha256(), v1::REASON_UNSPECIFIED);
  }
  PumpFill(r.image_sha256());
}

void Intermediate::FillTick() {
  fill_timer_ = false;
  if (fills_.empty() || stopped_) return;
  int64_t now = loop_->clock().MonotonicMs();
  const int64_t timeout_ms = absl::ToInt64Milliseconds(opts_.fetch_timeout);
  std::vector<std::pair<std::string, v1::Reason>> failed;
  for (auto& [sha, f] : fills_) {
    for (auto it = f.in_flight.begin(); it != f.in_flight.end();) {
      if (now - it->second.second < timeout_ms) {
        ++it;
        continue;
      }
      if (++f.tries[it->first] >= opts_.fetch_max_tries) {
        failed.emplace_back(sha, v1::DOWNLOAD_FAILED);
        break;
      }
      f.next = std::min<size_t>(f.next, it->first / opts_.fetch_chunk_size);
      it = f.in_flight.erase(it);
    }
  }
  for (const auto& [sha, reason] : failed) FinishFill(sha, reason);
  for (auto& [sha, f] : fills_) PumpFill(sha);
  if (!fills_.empty()) {
    fill_timer_ = true;
    loop_->PostAfter(kFillTick, [this] { FillTick(); });
  }
}

void Intermediate::FinishFill(const std::string& sha, v1::Reason failure) {
  fills_.erase(sha);
  auto waiting = std::move(waiting_[sha]);
  waiting_.erase(sha);
  if (failure == v1::REASON_UNSPECIFIED) {
    spdlog::info("event=cache.filled image={}", core::HexEncode(sha).substr(0, 16));
  } else {
    spdlog::warn("event=cache.fill_failed image={} reason={}", core::HexEncode(sha).substr(0, 16),
                 core::ReasonName(failure));
  }
  for (const auto& [child, req] : waiting) {
    if (failure == v1::REASON_UNSPECIFIED) {
      ServeChunk(child, req);
    } else {
      v1::Body body;
      *body.mutable_chunk_response() = core::ChunkError(req, v1::IMAGE_UNAVAILABLE);
      (void)links_.SendDown(child, Channel::kFw, std::move(body));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Status upward

void Intermediate::Relay(const std::string& device, const std::string& envelope) {
  relayed_->Add();
  auto it = batch_.find(device);
  if (it != batch_.end()) {
    batch_bytes_ -= it->second.size();
    it->second = envelope;  // state, not events: the newest report replaces the older one
  } else {
    batch_[device] = envelope;
  }
  batch_bytes_ += envelope.size();
  if (batch_.size() >= opts_.batch_max_reports ||
      batch_bytes_ + kBatchOverhead >= node_->config().limits.max_message_bytes / 2) {
    return FlushBatch();
  }
  if (!batch_timer_) {
    batch_timer_ = true;
    loop_->PostAfter(opts_.batch_delay, [this] {
      batch_timer_ = false;
      FlushBatch();
    });
  }
}

void Intermediate::FlushBatch() {
  if (batch_.empty()) return;
  v1::Body body;
  for (auto& [device, envelope] : batch_)
    body.mutable_status_batch()->add_reports(std::move(envelope));
  batch_.clear();
  batch_bytes_ = 0;
  batches_->Add();
  if (absl::Status s = links_.SendUp(Channel::kStatus, std::move(body)); !s.ok()) {
    spdlog::warn("event=batch.send_failed error=\"{}\"", s.message());
  }
}

void Intermediate::ScheduleSelfReport() {
  if (self_report_scheduled_) return;
  self_report_scheduled_ = true;
  loop_->PostAfter(absl::Milliseconds(200), [this] {
    self_report_scheduled_ = false;
    ReportSelf();
  });
}

void Intermediate::PeriodicSelfReport() {
  if (stopped_) return;
  ReportSelf();
  loop_->PostAfter(opts_.report_interval, [this] { PeriodicSelfReport(); });
}

void Intermediate::ReportSelf() {
  if (stopped_) return;
  v1::Body body;
  v1::StatusReport* r = body.mutable_status();
  r->set_device_id(node_->id());
  r->set_state(v1::IDLE);
  for (const v1::ReasonCount& rc : node_->metrics().RejectionCounts()) *r->add_rejections() = rc;
  (void)links_.SendUp(Channel::kStatus, std::move(body));
}

}  // namespace x1368::intermediate
