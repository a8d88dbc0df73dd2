#include "x1368/intermediate/intermediate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "x1368/core/chunk_service.h"
#include "x1368/core/crypto.h"
#include "x1368/core/directive.h"
#include "x1368/core/file_util.h"
#include "x1368/core/log.h"
#include "x1368/core/manifest.h"
#include "x1368/core/reason.h"
#include "x1368/core/values.h"
#include "x1368/v1/envelope.pb.h"

namespace x1368::intermediate {

using core::Channel;
using core::Reject;

namespace {
constexpr size_t kMaxWaitingRequests = 100'000;
// Waiting requests sort the table's before the image's, and those by offset.
constexpr int kWaitingTable = 0;
constexpr int kWaitingData = 1;
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
      cache_(opts_.cache_dir, opts_.cache_max_images, &node->fs()) {
  core::Metrics& m = node_->metrics();
  relayed_ = m.Counter("x1368_reports_relayed_total", "Child status reports relayed upward");
  batches_ = m.Counter("x1368_batches_sent_total", "Status batches sent upward");
  chunks_served_ = m.Counter("x1368_chunks_served_total", "Firmware chunks served to children");
  upstream_chunks_ =
      m.Counter("x1368_chunks_fetched_total", "Firmware chunks fetched from upstream");
  send_failures_ =
      m.Counter("x1368_send_failures_total", "Messages that could not be sealed or published");
  desired_resent_ = m.Counter("x1368_desired_resent_total",
                              "Desired states sent again to a device that missed a campaign");
  fill_retries_ = m.Counter("x1368_cache_fill_retries_total",
                            "Cache fills from upstream that failed and were scheduled again");
  heartbeats_ = m.Counter("x1368_heartbeats_total",
                          "Children's reports that repeated their last one: liveness only, not "
                          "relayed");
  summaries_ = m.Counter("x1368_summaries_sent_total", "Subtree summaries sent upward");
  chunk_timeouts_ =
      m.Counter("x1368_chunk_timeouts_total",
                "Chunks upstream did not send in time (each asked again); many mean a broker that "
                "drops messages (max_queued_messages) or a parent that cannot keep up");
}

void Intermediate::StorageFailed(const absl::Status& status, absl::string_view event) {
  if (status.ok()) return;
  node_->metrics().CountRejection(v1::STORAGE_ERROR);
  spdlog::error("event={} error={}", event, core::Quoted(status.message()));
  ScheduleSelfReport();  // the count goes up with the next report
}

void Intermediate::SendFailed(const absl::Status& status, absl::string_view event) {
  if (status.ok()) return;
  send_failures_->Add();
  spdlog::warn("event={} error={}", event, core::Quoted(status.message()));
}

absl::Status Intermediate::Start() {
  X1368_RETURN_IF_ERROR(cache_.Open());
  X1368_RETURN_IF_ERROR(db_->Exec(
      "CREATE TABLE IF NOT EXISTS directives (campaign_id TEXT PRIMARY KEY, envelope BLOB NOT NULL,"
      " expires_at_ms INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS children (id TEXT PRIMARY KEY, online INTEGER NOT NULL,"
      " updated_at_ms INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS subtree (id TEXT PRIMARY KEY, envelope BLOB NOT NULL,"
      " path TEXT NOT NULL, device INTEGER NOT NULL, online INTEGER NOT NULL);"));
  X1368_RETURN_IF_ERROR(LoadState());
  X1368_RETURN_IF_ERROR(LoadRegistry());
  core::NodeLinks::Handlers h;
  h.from_parent = [this](const core::Topic& t, const std::string& p, core::OpenedMessage m) {
    FromParent(t, p, std::move(m));
  };
  h.from_child = [this](const core::Topic& t, const std::string& p, core::OpenedMessage m) {
    FromChild(t, p, std::move(m));
  };
  h.upstream_connected = [this] { ReportSelf(); };
  // A child that corrected its clock may have refused what it was sent before: again.
  h.resend_requested = [this](const std::string& child) { SendDesired(child); };
  h.clock_corrected = [this] { ScheduleSelfReport(); };
  // Chunks for a fill: unsigned, each checked against the chunk table before it is written.
  h.data_from_parent = [this](const v1::ChunkData& data) {
    auto fill = fills_.find(data.image_sha256());
    if (fill == fills_.end() || fill->second.fetcher == nullptr) return;
    if (absl::Status s = fill->second.fetcher->OnData(data); !s.ok()) links_.Reject(s, "chunk");
  };
  h.rejected = [this](const absl::Status& s) {
    if (core::ReasonOf(s) != v1::DUPLICATE) ScheduleSelfReport();
  };
  X1368_RETURN_IF_ERROR(links_.Start(std::move(h)));
  loop_->PostAfter(opts_.report_interval, [this] { PeriodicSelfReport(); });
  loop_->PostAfter(opts_.child_timeout / 4, [this] { SweepHeartbeats(); });
  loop_->PostAfter(opts_.summary_interval, [this] { PeriodicSummary(); });
  gauges_ = node_->metrics().AddCollector(
      core::CollectedOnLoop(loop_, [this] { return core::Metrics::Families{SubtreeGauge()}; }));
  return absl::OkStatus();
}

Intermediate::~Intermediate() { UnexposeGauges(); }

void Intermediate::UnexposeGauges() {
  // A scrape running the collector is waited for; none starts after this.
  if (gauges_ != 0) node_->metrics().RemoveCollector(gauges_);
  gauges_ = 0;
}

prometheus::MetricFamily Intermediate::SubtreeGauge() const {
  prometheus::MetricFamily f = core::Family(
      "x1368_subtree_devices",
      "Devices in this gateway's subtree, by component, running version, update state and "
      "whether online (their link)",
      prometheus::MetricType::Gauge);
  const v1::SubtreeSummary summary = index_.Summary();
  for (const v1::SummaryCount& c : summary.counts()) {
    core::AddSample(&f,
                    {{"component", c.component()},
                     {"version", c.version()},
                     {"state", v1::UpdateState_Name(c.state())},
                     {"online", c.online() ? "true" : "false"}},
                    static_cast<double>(c.devices()));
  }
  return f;
}

void Intermediate::Stop() {
  UnexposeGauges();
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
    auto opened = core::OpenEmbeddedDirective(node_->opener(), envelope);
    if (opened.ok()) AcceptDirective(envelope, *opened, /*fresh=*/false);
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
      // Unlike a device, a gateway has always skipped a root-signed non-directive here without
      // counting it; the grants are its parent's go for it, which it does not wait for.
      core::ForEachDesiredDirective(
          node_->opener(), body.desired(), core::NonDirective::kIgnore,
          [this](const std::string& envelope, const core::OpenedMessage& inner) {
            AcceptDirective(envelope, inner, /*fresh=*/true);
          },
          [this](const absl::Status& s, absl::string_view where) { links_.Reject(s, where); });
      for (const v1::Go& go : body.desired().grants()) AdoptWindow(go.chunk_window());
      return;
    case v1::Body::kGo:
      // Pacing from above arrives as go; with no pacing of our own yet, our children go at once.
      // The go says how many chunks our parent lets each child keep in flight.
      return AdoptWindow(body.go().chunk_window());
    case v1::Body::kDeviceProbe:
      return AnswerProbe(body.device_probe());
    case v1::Body::kStatusRequest:
      // The parent may have missed what we relayed (it subscribed after, or restarted). Our
      // registry holds the subtree: our summary goes up at once, and the parent asks for the
      // whole subtree (full) if its view differs. Our own report follows.
      ScheduleSelfReport();
      if (body.status_request().full()) return ResendAll();
      summary_wanted_ = true;
      batch_due_.Schedule();
      return;
    case v1::Body::kChunkResponse:
      if (topic.channel == Channel::kFw) {
        auto fill = fills_.find(body.chunk_response().image_sha256());
        if (fill != fills_.end() && fill->second.fetcher)
          fill->second.fetcher->OnResponse(body.chunk_response());
        return;
      }
      break;
    default:
      break;
  }
  links_.Reject(Reject(v1::UNKNOWN_TYPE, "not a message for an intermediate"), topic.ToString());
}

void Intermediate::AcceptDirective(const std::string& envelope, const core::OpenedMessage& m,
                                   bool fresh) {
  if (absl::Status s = core::CheckRootSigned(m); !s.ok()) return links_.Reject(s, "directive");
  const v1::UpdateDirective& d = m.body.directive();
  if (directives_.count(d.campaign_id())) return;  // idempotent
  auto manifest = core::VerifyManifest(node_->trust(), d.manifest());
  if (!manifest.ok()) return links_.Reject(manifest.status(), "directive.manifest");
  if (!node_->self().is_root &&
      !core::ScopeCoversComponent(node_->self().scope, manifest->component())) {
    return links_.Reject(Reject(v1::OUT_OF_SCOPE, "my certificate does not cover this component"),
                         "directive");
  }
  Directive dir{{d.campaign_id(), envelope, m.body_digest, m.body.expires_at_ms()},
                *manifest,
                d.selector(),
                node_->clock().NowMs()};
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
      spdlog::error("event=directive.persist_failed campaign={} error={}",
                    core::Quoted(dir.active.campaign_id), core::Quoted(s.message()));
      return;
    }
  }
  directives_[dir.active.campaign_id] = dir;
  spdlog::info("event=directive.accepted campaign={} component={} version={}",
               core::Quoted(dir.active.campaign_id), core::Quoted(manifest->component()),
               core::Quoted(manifest->version()));
  // Prefetch: fetch the image once for the whole subtree before the children ask.
  if (manifest->uri() == core::kChunkServiceUri && !cache_.Has(manifest->sha256()) &&
      manifest->size() <= kMaxCachedImageBytes)
    StartFill(*manifest);
  if (!fresh) return;
  // Down the tree: the root's bytes unchanged, then our own go for every child.
  if (absl::Status s = links_.ForwardToChildren(envelope); !s.ok()) {
    spdlog::warn("event=directive.forward_failed error={}", core::Quoted(s.message()));
  }
  v1::Body go;
  go.mutable_go()->set_campaign_id(dir.active.campaign_id);
  go.mutable_go()->set_directive_digest(dir.active.digest);
  go.mutable_go()->set_chunk_window(ChildWindow());
  SendFailed(links_.Broadcast(std::move(go)), "go.send_failed");
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
    auto stmt = db_->Prepare("DELETE FROM directives WHERE campaign_id = ?");
    StorageFailed(stmt.ok() ? (*stmt)->Bind(1, it->first).Run() : stmt.status(),
                  "directive.delete_failed");
    it = directives_.erase(it);
  }
  // A fill that no directive names any more stops (its partial file goes at the next start).
  for (auto f = fills_.begin(); f != fills_.end();) {
    bool named = false;
    for (const auto& [campaign, d] : directives_) named |= d.manifest.sha256() == f->first;
    if (named) {
      ++f;
      continue;
    }
    if (f->second.fetcher) loop_->Post([fetcher = std::move(f->second.fetcher)] {});
    waiting_requests_ -= f->second.waiting.size();
    f = fills_.erase(f);
  }
}

void Intermediate::SendDesired(const std::string& child) {
  PruneExpired();
  std::vector<core::ActiveDirective> active;
  for (const auto& [campaign, d] : directives_) active.push_back(d.active);
  absl::Status s = links_.SendDesiredState(child, active, ChildWindow());
  Log(child, false, "desired state", s.ok() ? v1::REASON_UNSPECIFIED : v1::STORAGE_ERROR);
  if (!s.ok()) {
    spdlog::warn("event=desired.send_failed child={} error={}", core::Quoted(child),
                 core::Quoted(s.message()));
  }
}

void Intermediate::Log(const std::string& child, bool from_child, absl::string_view what,
                       v1::Reason outcome) {
  // Direct children only, and only those this node knows (its registry or its children table).
  if (!children_.count(child) && !known_.count(child)) return;
  std::deque<v1::CommEntry>& log = comm_[child];
  const int64_t now = node_->clock().NowMs();
  if (!log.empty() && log.back().from_child() == from_child && log.back().what() == what &&
      log.back().outcome() == outcome) {
    log.back().set_count(log.back().count() + 1);
    log.back().set_at_ms(now);
    return;
  }
  v1::CommEntry e;
  e.set_at_ms(now);
  e.set_from_child(from_child);
  e.set_what(std::string(what));
  e.set_outcome(outcome);
  e.set_count(1);
  log.push_back(std::move(e));
  if (log.size() > kCommLogSize) log.pop_front();
}

void Intermediate::AnswerProbe(const v1::DeviceProbe& q) {
  if (!core::IsValidNodeId(q.device_id()) || q.nonce().empty() || q.nonce().size() > 64) {
    return links_.Reject(Reject(v1::MALFORMED, "a device probe without a valid id or nonce"),
                         "device_probe");
  }
  v1::Body body;
  v1::DeviceDetail* d = body.mutable_device_detail();
  d->set_device_id(q.device_id());
  d->set_nonce(q.nonce());
  auto it = known_.find(q.device_id());
  if (it == known_.end() || !it->second.device) {
    d->set_error(v1::OUT_OF_SCOPE);
  } else if (!it->second.path.empty()) {
    // Further down: the child gateway on its path answers.
    const std::string hop = it->second.path.substr(0, it->second.path.find('/'));
    const int64_t now = node_->clock().MonotonicMs();
    for (auto q_it = queries_.begin(); q_it != queries_.end();) {
      q_it = q_it->second.second < now ? queries_.erase(q_it) : std::next(q_it);
    }
    constexpr size_t kMaxQueries = 1000;
    if (queries_.size() >= kMaxQueries) return;  // the asker times out and may ask again
    queries_[q.nonce()] = {hop, now + 30'000};
    v1::Body forward;
    *forward.mutable_device_probe() = q;
    return SendFailed(links_.SendDown(hop, Channel::kCmd, std::move(forward)),
                      "device_probe.send_failed");
  } else {
    const Known& k = it->second;
    d->set_report(k.envelope);
    d->set_online(k.online);
    d->set_gateway(node_->id());
    // last_seen is kept on the monotonic clock: said in trusted time.
    if (k.last_seen_ms > 0) {
      d->set_last_seen_ms(node_->clock().NowMs() - (node_->clock().MonotonicMs() - k.last_seen_ms));
    }
    auto log = comm_.find(q.device_id());
    if (log != comm_.end()) {
      for (const v1::CommEntry& e : log->second) *d->add_log() = e;
    }
  }
  SendFailed(links_.SendUp(Channel::kStatus, std::move(body)), "device_detail.send_failed");
}

void Intermediate::RelayDeviceDetail(const std::string& child, const v1::DeviceDetail& detail) {
  auto it = queries_.find(detail.nonce());
  if (it == queries_.end() || it->second.first != child) {
    return links_.Reject(Reject(v1::UNKNOWN_TYPE, "an answer to no query of ours"),
                         "device_detail");
  }
  queries_.erase(it);
  v1::Body body;
  *body.mutable_device_detail() = detail;
  SendFailed(links_.SendUp(Channel::kStatus, std::move(body)), "device_detail.send_failed");
}

bool Intermediate::Targets(const Directive& d, const std::string& device,
                           const v1::StatusReport& report) {
  auto has = [](const auto& list, const std::string& v) {
    return std::find(list.begin(), list.end(), v) != list.end();
  };
  const v1::TargetSelector& sel = d.selector;
  return d.manifest.component() == report.component() &&
         has(d.manifest.hardware_classes(), report.hardware_class()) &&
         (sel.hardware_classes().empty() || has(sel.hardware_classes(), report.hardware_class())) &&
         (sel.devices().empty() || has(sel.devices(), device));
}

void Intermediate::CatchUpChild(const std::string& child, const v1::StatusReport& report) {
  // Only campaigns that are for this device: one the device would refuse (another component,
  // hardware class or device list) is not something it missed.
  int64_t newest = 0;
  for (const auto& [campaign, d] : directives_) {
    if (Targets(d, child, report)) newest = std::max(newest, d.accepted_ms);
  }
  if (newest == 0) return;
  // Behind: working on none of the active campaigns (the directive never arrived), or holding
  // the directive without its go.
  bool behind = !directives_.count(report.campaign_id()) || report.state() == v1::OFFERED;
  if (!catch_up_.OnReport(child, behind, node_->clock().NowMs(), newest)) return;
  spdlog::info("event=desired.resent child={} campaign={} state={}", core::Quoted(child),
               core::Quoted(report.campaign_id()), v1::UpdateState_Name(report.state()));
  desired_resent_->Add();
  SendDesired(child);
}

// ---------------------------------------------------------------------------------------------
// From the children

void Intermediate::SetChildOnline(const std::string& child, bool online) {
  auto it = children_.find(child);
  if (it != children_.end() && it->second == online) return;
  children_[child] = online;
  auto stmt = db_->Prepare("INSERT OR REPLACE INTO children VALUES (?, ?, ?)");
  StorageFailed(
      stmt.ok()
          ? (*stmt)->Bind(1, child).Bind(2, online ? 1 : 0).Bind(3, node_->clock().NowMs()).Run()
          : stmt.status(),
      "child.persist_failed");
}

void Intermediate::FromChild(const core::Topic& topic, const std::string& payload,
                             core::OpenedMessage m) {
  const std::string& child = topic.child;
  const v1::Body& body = m.body;
  if (!body.has_presence() || body.presence().online()) Heard(child);
  switch (body.message_case()) {
    case v1::Body::kPresence:
      if (topic.channel != Channel::kPresence) break;
      if (auto it = children_.find(child);
          body.presence().online() && (it == children_.end() || !it->second)) {
        ask_after_wave_.Schedule();
      }
      SetChildOnline(child, body.presence().online());
      SetLiveness(child, body.presence().online());
      Log(child, true, body.presence().online() ? "presence online" : "presence offline");
      if (body.presence().online()) SendDesired(child);
      return;
    case v1::Body::kStatus:
      if (topic.channel != Channel::kStatus) break;
      if (body.status().device_id() != child) {
        return links_.Reject(Reject(v1::SENDER_MISMATCH, "report names another device"),
                             topic.ToString());
      }
      if (!children_.count(child)) SetChildOnline(child, true);
      Observe(child, payload, body.status(), "",
              m.signer != nullptr && m.signer->role == v1::ROLE_CLIENT);
      if (m.signer != nullptr && m.signer->role == v1::ROLE_CLIENT) {
        CatchUpChild(child, body.status());
      }
      return;
    case v1::Body::kStatusBatch:
      if (topic.channel != Channel::kStatus) break;
      return FromChildBatch(child, m);
    case v1::Body::kChunkRequest:
      if (topic.channel != Channel::kFw) break;
      Log(child, true, "chunk request");
      return ServeChunk(child, body.chunk_request());
    case v1::Body::kDeviceDetail:
      if (topic.channel != Channel::kStatus) break;
      return RelayDeviceDetail(child, body.device_detail());
    default:
      break;
  }
  links_.Reject(Reject(v1::UNKNOWN_TYPE, "unexpected message from a child"), topic.ToString());
}

// ---------------------------------------------------------------------------------------------
// Firmware: serve from the cache, fill it once from upstream

void Intermediate::ServeChunk(const std::string& child, const v1::FirmwareChunkRequest& req) {
  // A batch is served a chunk at a time, each as if it had been asked for alone: from the cache,
  // cut through from the fill, or waiting for the fill, chunk by chunk.
  absl::StatusOr<uint64_t> size = ServedSize(req);
  absl::StatusOr<std::vector<v1::FirmwareChunkRequest>> parts =
      size.ok() ? core::SplitChunkRequest(req, *size) : size.status();
  if (!parts.ok()) return Answer(child, req, parts.status());
  for (const v1::FirmwareChunkRequest& part : *parts) ServeOne(child, part);
}

absl::StatusOr<uint64_t> Intermediate::ServedSize(const v1::FirmwareChunkRequest& req) {
  const std::string& sha = req.image_sha256();
  if (cache_.Has(sha)) {
    auto size = node_->fs().Size(req.table() ? cache_.TablePathOf(sha) : cache_.PathOf(sha));
    if (!size.ok()) return Reject(v1::IMAGE_UNAVAILABLE, "cached image is gone");
    return *size;
  }
  for (const auto& [campaign, d] : directives_) {
    const v1::Manifest& m = d.manifest;
    if (m.sha256() != sha || m.size() > kMaxCachedImageBytes) continue;
    return req.table() ? core::ChunkTableBytes(m.size(), m.chunk_size()) : m.size();
  }
  return Reject(v1::IMAGE_UNAVAILABLE, "no directive names this image");
}

void Intermediate::ServeOne(const std::string& child, const v1::FirmwareChunkRequest& req) {
  const std::string& sha = req.image_sha256();
  if (cache_.Has(sha)) {
    cache_.Touch(sha);
    std::string path = req.table() ? cache_.TablePathOf(sha) : cache_.PathOf(sha);
    auto size = node_->fs().Size(path);
    absl::StatusOr<v1::ChunkData> data =
        size.ok() ? core::ReadChunk(node_->fs(), path, *size, req)
                  : core::Reject(v1::IMAGE_UNAVAILABLE, "cached image is gone");
    return Answer(child, req, std::move(data));
  }
  // Only images named by a verified directive are fetched: a child cannot make the gateway
  // download arbitrary things.
  const v1::Manifest* manifest = nullptr;
  for (const auto& [campaign, d] : directives_) {
    if (d.manifest.sha256() == sha) manifest = &d.manifest;
  }
  if (manifest == nullptr || manifest->size() > kMaxCachedImageBytes) {
    return Answer(child, req, Reject(v1::IMAGE_UNAVAILABLE, "no directive names this image"));
  }
  Fill& fill = StartFill(*manifest);
  if (fill.refusal && !(req.table() && fill.table) &&
      (req.table() || req.offset() >= fill.verified)) {
    return Answer(child, req, *fill.refusal);
  }
  // Cut-through: what the fill already holds, checked, is served at once.
  if (req.table() && fill.table) {
    auto length = core::ChunkLength(req, fill.table->bytes().size());
    if (!length.ok()) return Answer(child, req, length.status());
    return Answer(child, req,
                  core::ChunkReply(req, fill.table->bytes().substr(req.offset(), *length)));
  }
  if (!req.table()) {
    auto length = core::ChunkLength(req, manifest->size());
    if (!length.ok()) return Answer(child, req, length.status());
    if (req.offset() + *length <= fill.verified) {
      return Answer(child, req,
                    core::ReadChunk(node_->fs(), cache_.PartPath(sha), manifest->size(), req));
    }
  }
  // Not here yet: answered when the fill gets there. A child that asks again replaces its
  // older request; past the bound, requests are dropped and the child asks again later.
  if (waiting_requests_ >= kMaxWaitingRequests) return;
  auto [it, added] = fill.waiting.try_emplace(
      {req.table() ? kWaitingTable : kWaitingData, req.offset(), child}, req);
  if (added) {
    ++waiting_requests_;
  } else {
    it->second = req;
  }
}

void Intermediate::Answer(const std::string& child, const v1::FirmwareChunkRequest& req,
                          absl::StatusOr<v1::ChunkData> data) {
  if (data.ok()) {
    chunks_served_->Add();
    return SendFailed(links_.SendData(child, *data), "chunk.send_failed");
  }
  v1::Body body;
  *body.mutable_chunk_response() = core::ChunkError(req, core::ReasonOf(data.status()));
  SendFailed(links_.SendDown(child, Channel::kFw, std::move(body)), "chunk.send_failed");
}

void Intermediate::AnswerWaiting(Fill& fill) {
  if (!fill.table) return;
  for (auto it = fill.waiting.begin(); it != fill.waiting.end();) {
    const auto& [kind, offset, child] = it->first;
    if (kind == kWaitingData) {
      if (offset >= fill.verified) break;  // sorted by offset: the rest is further on
      auto length = core::ChunkLength(it->second, fill.manifest.size());
      if (length.ok() && offset + *length > fill.verified) {
        ++it;
        continue;
      }
    }
    ServeOne(child, it->second);  // served from the fill now
    it = fill.waiting.erase(it);
    --waiting_requests_;
  }
}

Intermediate::Fill& Intermediate::StartFill(const v1::Manifest& manifest) {
  const std::string sha = manifest.sha256();
  auto [it, fresh] = fills_.try_emplace(sha);
  Fill& fill = it->second;
  if (fresh) fill.manifest = manifest;
  if (fill.fetcher != nullptr || fill.retry_pending) return fill;  // filling, or waiting to
  if (absl::Status s = cache_.Begin(sha, manifest.size()); !s.ok()) {
    StorageFailed(s, "cache.begin_failed");
    FillFailed(sha, s);
    return fill;
  }
  core::ChunkFetcherOptions fetch;
  fetch.window = std::min(opts_.fetch_window, upstream_window_);
  fetch.timeout = opts_.fetch_timeout;
  fetch.max_tries = opts_.fetch_max_tries;
  fill.fetcher = std::make_shared<core::ChunkFetcher>(
      loop_,
      [this](const v1::FirmwareChunkRequest& req) {
        v1::Body body;
        *body.mutable_chunk_request() = req;
        return links_.SendUp(Channel::kFw, std::move(body));
      },
      fetch);
  spdlog::info("event=cache.fill_started image={} size={} from={}",
               core::HexEncode(sha).substr(0, 16), manifest.size(), fill.verified);
  if (!fill.table) {
    auto bytes = std::make_shared<std::string>();
    fill.fetcher->Start(
        {sha, /*table=*/true, core::ChunkTableBytes(manifest.size(), manifest.chunk_size()), 0,
         core::kMaxChunkBytes, nullptr},
        [bytes](uint64_t, const std::string& data) {
          bytes->append(data);
          return absl::OkStatus();
        },
        [this, sha, bytes](const absl::Status& fetched) {
          auto f = fills_.find(sha);
          if (f == fills_.end()) return;
          if (!fetched.ok()) return FillFailed(sha, fetched);
          auto table = core::ChunkTable::Make(f->second.manifest, *bytes);
          if (!table.ok()) {
            // counted: a tampered table upstream is an attack
            links_.Reject(table.status(), "cache.fill");
            return FillFailed(sha, table.status());
          }
          f->second.table = *std::move(table);
          f->second.refusal.reset();
          AnswerWaiting(f->second);
          FetchImage(sha);
        });
  } else {
    FetchImage(sha);
  }
  return fill;
}

void Intermediate::FetchImage(const std::string& sha) {
  Fill& fill = fills_.at(sha);
  const core::ChunkTable* table = &*fill.table;
  fill.fetcher->Start(
      {sha, /*table=*/false, fill.manifest.size(), fill.verified, table->chunk_size(),
       [table](uint64_t offset, absl::string_view data) { return table->Verify(offset, data); }},
      [this, sha](uint64_t offset, const std::string& data) -> absl::Status {
        if (absl::Status s = cache_.Write(sha, offset, data); !s.ok()) {
          return core::Reject(v1::STORAGE_ERROR, s.message());
        }
        upstream_chunks_->Add();
        Fill& f = fills_.at(sha);
        f.verified = offset + data.size();
        f.refusal.reset();
        AnswerWaiting(f);
        return absl::OkStatus();
      },
      [this, sha](const absl::Status& fetched) {
        if (!fetched.ok()) {
          if (core::ReasonOf(fetched) == v1::STORAGE_ERROR)
            StorageFailed(fetched, "cache.write_failed");
          return FillFailed(sha, fetched);
        }
        Fill& f = fills_.at(sha);
        CountTimeouts(f);
        if (absl::Status s = cache_.Complete(sha, f.manifest.size(), f.table->bytes()); !s.ok()) {
          StorageFailed(s, "cache.complete_failed");
          return FillFailed(sha, s);
        }
        spdlog::info("event=cache.filled image={}", core::HexEncode(sha).substr(0, 16));
        auto waiting = std::move(f.waiting);
        // The fetcher is the one calling us: destroyed later, on the loop.
        loop_->Post([fetcher = std::move(f.fetcher)] {});
        fills_.erase(sha);
        waiting_requests_ -= waiting.size();
        for (const auto& [key, req] : waiting) ServeOne(std::get<2>(key), req);
      });
}

void Intermediate::CountTimeouts(Fill& fill) {
  if (fill.fetcher == nullptr || fill.fetcher->timeouts() <= fill.timeouts_counted) return;
  uint64_t n = fill.fetcher->timeouts() - fill.timeouts_counted;
  fill.timeouts_counted = fill.fetcher->timeouts();
  chunk_timeouts_->Add(n);
  spdlog::warn(
      "event=cache.chunks_timed_out count={} parent={} hint=\"the broker may be dropping messages "
      "(its max_queued_messages below what the parent's configuration states) or the parent is "
      "overloaded\"",
      n, core::Quoted(opts_.parent_id));
}

void Intermediate::FillFailed(const std::string& sha, const absl::Status& status) {
  auto it = fills_.find(sha);
  if (it == fills_.end()) return;
  Fill& fill = it->second;
  CountTimeouts(fill);
  if (fill.fetcher) loop_->Post([fetcher = std::move(fill.fetcher)] {});
  fill.fetcher = nullptr;
  fill.timeouts_counted = 0;
  // Transient or not, the image is still wanted: tried again with capped exponential backoff,
  // resuming after the chunks already held. The children's requests wait (they ask again when
  // theirs time out); a fill nobody names any more is dropped by PruneExpired. Except when the
  // parent serves bytes that fail the signed table: the children are told (a final failure for
  // them), as the fill keeps trying in case the parent's copy is mended.
  if (core::ReasonOf(status) == v1::DIGEST_MISMATCH) {
    fill.refusal = core::Reject(v1::DIGEST_MISMATCH,
                                absl::StrCat("the parent serves an image that fails its signed "
                                             "chunk table: ",
                                             status.message()));
    auto waiting = std::move(fill.waiting);
    fill.waiting.clear();
    waiting_requests_ -= waiting.size();
    for (const auto& [key, req] : waiting) Answer(std::get<2>(key), req, *fill.refusal);
  }
  ++fill.failures;
  absl::Duration backoff =
      std::min(opts_.fill_retry_min * (1 << std::min(fill.failures - 1, 10)), opts_.fill_retry_max);
  fill_retries_->Add();
  spdlog::warn("event=cache.fill_failed image={} reason={} error={} held={} retry_in_ms={}",
               core::HexEncode(sha).substr(0, 16), core::ReasonName(core::ReasonOf(status)),
               core::Quoted(status.message()), fill.verified, absl::ToInt64Milliseconds(backoff));
  fill.retry_pending = true;
  loop_->PostAfter(backoff, [this, sha] {
    auto f = fills_.find(sha);
    if (f == fills_.end() || stopped_) return;
    f->second.retry_pending = false;
    StartFill(f->second.manifest);
  });
}

void Intermediate::AdoptWindow(uint32_t window) {
  if (window == 0) return;  // a parent that states none
  upstream_window_ = window;
  for (auto& [sha, fill] : fills_) {
    if (fill.fetcher) fill.fetcher->set_window(std::min(opts_.fetch_window, window));
  }
}

uint32_t Intermediate::ChildWindow() const {
  return core::ChunkWindowFor(children_.size(), opts_.downstream_queue, opts_.fetch_window);
}

// ---------------------------------------------------------------------------------------------
// Status upward

void Intermediate::FromChildBatch(const std::string& child, const core::OpenedMessage& m) {
  // A cascaded intermediate's batch: its reports (each under its device's certificate, scope
  // and sequence numbers; its signature as NeedsDeviceSignature says) go into our registry and
  // on in our batch, flattened, each path grown by the child that relayed it.
  links_.ForEachRelayedReport(
      m,
      [this, &child](const std::string& envelope, const core::OpenedMessage& r,
                     const std::string& path) {
        Observe(r.body.sender(), envelope, r.body.status(), core::JoinPath(child, path),
                r.signer->role == v1::ROLE_CLIENT);
      },
      [this, &child](const v1::Body& body) { return NeedsDeviceSignature(body, child); });
  const v1::StatusBatch& b = m.body.status_batch();
  for (const v1::ChildLiveness& l : b.liveness()) {
    auto it = known_.find(l.node_id());
    // Only what this child's subtree holds: a child cannot speak for another's devices.
    if (it == known_.end() || core::JoinPath(child, l.path()) != it->second.path) {
      links_.Reject(Reject(v1::OUT_OF_SCOPE, "liveness of a node outside the child's subtree"),
                    "batch.liveness");
      continue;
    }
    SetLiveness(l.node_id(), l.online());
  }
  if (!b.has_summary()) return;
  const bool same = core::SubtreeIndex::Same(index_.SummaryOf(child), b.summary());
  if (!resync_.Compared(child, same, node_->clock().MonotonicMs())) return;
  node_->metrics().CountRejection(v1::SUMMARY_MISMATCH);
  spdlog::warn("event=subtree.mismatch child={} its_devices={} my_devices={} hint={}",
               core::Quoted(child), b.summary().devices(), index_.SummaryOf(child).devices(),
               core::Quoted("its whole subtree is asked again"));
  v1::Body body;
  body.mutable_status_request()->set_full(true);
  SendFailed(links_.SendDown(child, Channel::kCmd, std::move(body)), "status_request.send_failed");
}

bool Intermediate::NeedsDeviceSignature(const v1::Body& body, const std::string& child) const {
  if (opts_.verify_relayed_all || !body.has_status()) return true;
  const v1::StatusReport& r = body.status();
  if (core::IsEvidence(r)) return true;
  auto it = known_.find(r.device_id());
  return it == known_.end() || !it->second.device ||
         it->second.path.substr(0, it->second.path.find('/')) != child;
}

void Intermediate::Observe(const std::string& id, const std::string& envelope,
                           const v1::StatusReport& report, const std::string& path, bool device) {
  // Refused here, at the first tracker that sees it: never stored, never relayed.
  if (absl::Status s = core::ValidateReport(report, device); !s.ok()) {
    if (path.empty()) Log(id, true, "report", v1::MALFORMED);
    return links_.Reject(Reject(v1::MALFORMED, s.message()), "report");
  }
  std::string digest = core::ReportDigest(report);
  auto [it, added] = known_.try_emplace(id);
  Known& k = it->second;
  const bool was_online = added || k.online;
  k.online = true;
  if (path.empty()) k.last_seen_ms = node_->clock().MonotonicMs();
  if (path.empty()) Log(id, true, !added && k.digest == digest ? "heartbeat" : "report");
  if (!added && k.digest == digest && k.path == path) {
    // A heartbeat: the parent knows this already.
    heartbeats_->Add();
    if (!was_online) SetLiveness(id, true);
    return;
  }
  k.envelope = envelope;
  k.digest = std::move(digest);
  k.path = path;
  k.device = device;
  if (device) {
    index_.Put(id, {path.empty() ? id : path.substr(0, path.find('/')), report.component(),
                    report.version(), report.state(), true, k.digest});
  }
  // The report says it is up: a pending "down" would contradict it.
  liveness_out_.erase(id);
  unsaved_.insert(id);
  Relay(id, envelope, path);
}

void Intermediate::Heard(const std::string& child) {
  auto it = known_.find(child);
  if (it == known_.end() || !it->second.path.empty()) return;
  it->second.last_seen_ms = node_->clock().MonotonicMs();
  if (!it->second.online) {
    SetChildOnline(child, true);
    SetLiveness(child, true);
  }
}

void Intermediate::SetLiveness(const std::string& id, bool online) {
  auto it = known_.find(id);
  if (it == known_.end() || it->second.online == online) return;
  it->second.online = online;
  if (it->second.device) index_.SetOnline(id, online);
  liveness_out_[id] = {online, it->second.path};
  unsaved_.insert(id);
  batch_due_.Schedule();
}

void Intermediate::SweepHeartbeats() {
  if (stopped_) return;
  const int64_t now = node_->clock().MonotonicMs();
  const int64_t timeout = absl::ToInt64Milliseconds(opts_.child_timeout);
  for (auto& [id, k] : known_) {
    if (!k.path.empty() || !k.online || now - k.last_seen_ms < timeout) continue;
    spdlog::warn("event=child.heartbeats_missed child={} silent_s={}", core::Quoted(id),
                 (now - k.last_seen_ms) / 1000);
    Log(id, true, "heartbeats missed: down");
    SetChildOnline(id, false);
    SetLiveness(id, false);
  }
  loop_->PostAfter(opts_.child_timeout / 4, [this] { SweepHeartbeats(); });
}

void Intermediate::ResendAll() {
  FlushBatch();
  resending_ = true;
  for (const auto& [id, k] : known_) {
    Relay(id, k.envelope, k.path);
    if (!k.online) liveness_out_[id] = {false, k.path};
  }
  resending_ = false;
  summary_wanted_ = true;
  FlushBatch();
}

void Intermediate::PeriodicSummary() {
  if (stopped_) return;
  const int64_t now = node_->clock().MonotonicMs();
  if (now - last_summary_ms_ >= absl::ToInt64Milliseconds(opts_.summary_interval) / 2) {
    summary_wanted_ = true;
    FlushBatch();
  }
  loop_->PostAfter(opts_.summary_interval, [this] { PeriodicSummary(); });
}

absl::Status Intermediate::LoadRegistry() {
  X1368_ASSIGN_OR_RETURN(auto stmt,
                         db_->Prepare("SELECT id, envelope, path, device, online FROM subtree"));
  const int64_t now = node_->clock().MonotonicMs();
  while (true) {
    X1368_ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) break;
    // Our own store, written from reports verified when they came.
    v1::Envelope env;
    v1::Body body;
    Known k;
    k.envelope = stmt->ColumnText(1);
    if (!env.ParseFromString(k.envelope) || !body.ParseFromString(env.body()) ||
        !body.has_status()) {
      continue;
    }
    const std::string id = stmt->ColumnText(0);
    k.path = stmt->ColumnText(2);
    k.device = stmt->ColumnInt(3) != 0;
    k.online = stmt->ColumnInt(4) != 0;
    k.digest = core::ReportDigest(body.status());
    k.last_seen_ms = now;  // a restart is not their silence
    if (k.device) {
      const v1::StatusReport& r = body.status();
      index_.Put(id, {k.path.empty() ? id : k.path.substr(0, k.path.find('/')), r.component(),
                      r.version(), r.state(), k.online, k.digest});
    }
    known_[id] = std::move(k);
  }
  return absl::OkStatus();
}

void Intermediate::PersistRegistry() {
  if (unsaved_.empty()) return;
  auto stmt = db_->Prepare("INSERT OR REPLACE INTO subtree VALUES (?, ?, ?, ?, ?)");
  absl::Status s = stmt.status();
  if (s.ok()) s = db_->Begin();
  for (auto it = unsaved_.begin(); s.ok() && it != unsaved_.end(); ++it) {
    const Known& k = known_.at(*it);
    s = (*stmt)
            ->Bind(1, *it)
            .BindBlob(2, k.envelope)
            .Bind(3, k.path)
            .Bind(4, k.device ? 1 : 0)
            .Bind(5, k.online ? 1 : 0)
            .Run();
  }
  if (s.ok()) {
    s = db_->Commit();
  } else if (stmt.ok()) {
    db_->Rollback();
  }
  // Lost rows come back from the children: each is asked at our next downstream connect.
  StorageFailed(s, "registry.persist_failed");
  unsaved_.clear();
}

void Intermediate::Relay(const std::string& device, const std::string& envelope,
                         const std::string& path) {
  relayed_->Add();
  auto it = batch_.find(device);
  if (it != batch_.end()) {
    batch_bytes_ -= it->second.envelope.size() + it->second.path.size();
    // State, not events: the newest report replaces the older one.
    it->second = Relayed{envelope, path};
  } else {
    batch_[device] = Relayed{envelope, path};
  }
  batch_bytes_ += envelope.size() + path.size();
  if (batch_.size() >= opts_.batch_max_reports ||
      batch_bytes_ + kBatchOverhead >= node_->config().limits.max_message_bytes / 2) {
    return FlushBatch();
  }
  batch_due_.Schedule();
}

void Intermediate::FlushBatch() {
  const int64_t now = node_->clock().MonotonicMs();
  const bool summary_due =
      !resending_ && (summary_wanted_ ||
                      now - last_summary_ms_ >= absl::ToInt64Milliseconds(opts_.summary_interval));
  if (batch_.empty() && liveness_out_.empty() && !(summary_due && summary_wanted_)) return;
  // What goes up is in the registry first: after a crash we resend it, not lose it.
  PersistRegistry();
  v1::Body body;
  v1::StatusBatch* batch = body.mutable_status_batch();
  for (auto& [device, relayed] : batch_) {
    batch->add_reports(std::move(relayed.envelope));
    batch->add_paths(std::move(relayed.path));
  }
  batch_.clear();
  batch_bytes_ = 0;
  // Liveness entries are small; a burst (a broker outage) goes in slices.
  constexpr size_t kMaxLivenessPerBatch = 2000;
  for (auto it = liveness_out_.begin();
       it != liveness_out_.end() && batch->liveness_size() < int{kMaxLivenessPerBatch};) {
    v1::ChildLiveness* l = batch->add_liveness();
    l->set_node_id(it->first);
    l->set_online(it->second.first);
    l->set_path(it->second.second);
    l->set_since_ms(node_->clock().NowMs());
    it = liveness_out_.erase(it);
  }
  if (!liveness_out_.empty()) batch_due_.Schedule();
  if (summary_due && liveness_out_.empty()) {
    *batch->mutable_summary() = index_.Summary();
    summary_wanted_ = false;
    last_summary_ms_ = now;
    summaries_->Add();
  }
  batches_->Add();
  if (absl::Status s = links_.SendUp(Channel::kStatus, std::move(body)); !s.ok()) {
    spdlog::warn("event=batch.send_failed error={}", core::Quoted(s.message()));
  }
}

void Intermediate::AskChildren() {
  if (stopped_) return;
  SendFailed(links_.RequestStatus(), "status_request.send_failed");
}

void Intermediate::ScheduleSelfReport() { self_report_soon_.Schedule(); }

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
  for (const v1::ReasonCount& rc : node_->metrics().ParentRejectionCounts()) {
    *r->add_parent_rejections() = rc;
  }
  r->set_clock_offset_ms(node_->trusted_clock().offset_ms());
  SendFailed(links_.SendUp(Channel::kStatus, std::move(body)), "report.send_failed");
}

}  // namespace x1368::intermediate
