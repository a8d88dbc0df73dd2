#include "x1368/core/links.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "x1368/core/log.h"
#include "x1368/core/reason.h"

namespace x1368::core {

NodeLinks::NodeLinks(NodeContext* node, EventLoop* loop, Transport* upstream, std::string parent_id,
                     Transport* downstream)
    : node_(node),
      loop_(loop),
      upstream_(upstream),
      parent_id_(std::move(parent_id)),
      downstream_(downstream) {}

absl::Status NodeLinks::Start(Handlers handlers) {
  handlers_ = std::move(handlers);
  auto post = [this](MqttMessage m) { loop_->Post([this, m = std::move(m)] { OnMessage(m); }); };
  if (upstream_ != nullptr) {
    upstream_->SetMessageHandler(post);
    upstream_->SetWillProvider([this] { return node_->NextPresenceWill(parent_id_); });
    upstream_->SetConnectHandler([this] {
      loop_->Post([this] {
        CountTakeovers(upstream_);
        if (auto online = node_->OnlinePresence()) (void)upstream_->Publish(*online);
        RequestTime(/*force=*/true);
        if (handlers_.upstream_connected) handlers_.upstream_connected();
        if (downstream_ == upstream_) DownstreamConnected();
      });
    });
    upstream_->AddSubscription(ChildDownFilter(node_->prefix(), parent_id_, node_->id()));
    upstream_->AddSubscription(BroadcastDownFilter(node_->prefix(), parent_id_));
  }
  if (downstream_ != nullptr) {
    if (downstream_ != upstream_) {
      downstream_->SetMessageHandler(post);
      downstream_->SetConnectHandler([this] {
        loop_->Post([this] {
          CountTakeovers(downstream_);
          DownstreamConnected();
        });
      });
    }
    downstream_->AddSubscription(ParentUpFilter(node_->prefix(), node_->id()));
  }
  if (upstream_ != nullptr) {
    loop_->PostAfter(absl::Milliseconds(kTimeResyncIntervalMs), [this] { PeriodicTimeRequest(); });
    X1368_RETURN_IF_ERROR(upstream_->Start());
  }
  if (downstream_ != nullptr && downstream_ != upstream_)
    X1368_RETURN_IF_ERROR(downstream_->Start());
  return absl::OkStatus();
}

void NodeLinks::CountTakeovers(Transport* link) {
  // Counted like rejections, so the next report carries them up to root: the alarm that another
  // connection used our client id, or that the link keeps dropping as soon as it is up (how a
  // takeover looks on a broker that does not say so). The transport logged each one.
  const TransportStats now = link->stats();
  LinkAlarms& seen = link == upstream_ ? upstream_alarms_ : downstream_alarms_;
  for (; seen.taken_over < now.taken_over; ++seen.taken_over) {
    node_->metrics().CountRejection(v1::SESSION_TAKEN_OVER);
  }
  for (; seen.quick_losses < now.quick_losses; ++seen.quick_losses) {
    node_->metrics().CountRejection(v1::LINK_FLAPPING);
  }
}

void NodeLinks::DownstreamConnected() {
  // Reports are neither retained nor queued for a subscriber the broker has never seen: a child
  // that reported before this link subscribed (it started first, or this node restarted on a
  // broker that kept no session) would otherwise stay unknown until its periodic report. The
  // request goes out after the subscriptions are in place, so every child hears it or reports
  // after it anyway (its own connect report).
  if (absl::Status s = RequestStatus(); !s.ok()) {
    spdlog::warn("event=status_request.send_failed error={}", Quoted(s.message()));
  }
}

void NodeLinks::Stop() {
  // A clean stop is an outage all the same: said at once, as the Will would have (the broker
  // discards it on our DISCONNECT). Queued before the stop, which lets the queue go out.
  if (upstream_ != nullptr && upstream_->connected()) {
    if (auto offline = node_->OfflinePresence()) (void)upstream_->Publish(*offline);
  }
  if (upstream_ != nullptr) upstream_->Stop();
  if (downstream_ != nullptr && downstream_ != upstream_) downstream_->Stop();
  if (absl::Status s = node_->replay().Flush(); !s.ok()) {
    spdlog::error("event=replay.flush_failed error={}", Quoted(s.message()));
  }
}

void NodeLinks::Reject(const absl::Status& status, absl::string_view where, bool from_parent) {
  node_->CountRejection(status, where, from_parent);
  if (from_parent) ResyncAfter(status);
  if (handlers_.rejected) handlers_.rejected(status);
}

void NodeLinks::ResyncAfter(const absl::Status& status) {
  Reason reason = ReasonOf(status);
  if (reason != v1::EXPIRED && reason != v1::ISSUED_IN_FUTURE && reason != v1::BAD_CERT) return;
  RequestTime();
}

void NodeLinks::RequestTime(bool force, bool resend) {
  if (upstream_ == nullptr) return;  // the root: its clock is the reference
  const int64_t now = loop_->clock().MonotonicMs();
  const bool recent =
      last_time_request_mono_ms_ && now - *last_time_request_mono_ms_ < kTimeRequestIntervalMs;
  // At most one request an interval, but no trigger is lost: one that comes sooner (an answer
  // may still be on its way, or the request went nowhere: the parent was not subscribed yet) is
  // followed at the end of the interval. A forced one (a new connection) goes at once unless
  // a request is still unanswered; a resend always does.
  if (recent && !resend && !(force && !pending_time_)) {
    if (!time_request_deferred_) {
      time_request_deferred_ = true;
      loop_->PostAfter(
          absl::Milliseconds(*last_time_request_mono_ms_ + kTimeRequestIntervalMs - now), [this] {
            time_request_deferred_ = false;
            RequestTime();
          });
    }
    return;
  }
  v1::Body body;
  v1::TimeRequest* req = body.mutable_time_request();
  req->set_nonce(RandomBytes(16));
  req->set_resend(resend);
  pending_time_ = PendingTime{req->nonce(), now, resend};
  last_time_request_mono_ms_ = now;
  if (absl::Status s = SendUp(Channel::kStatus, std::move(body)); !s.ok()) {
    spdlog::warn("event=time.request_failed error={}", Quoted(s.message()));
  }
}

void NodeLinks::PeriodicTimeRequest() {
  RequestTime();
  loop_->PostAfter(absl::Milliseconds(kTimeResyncIntervalMs), [this] { PeriodicTimeRequest(); });
}

void NodeLinks::AnswerTime(const Topic& topic, const OpenedMessage& m) {
  constexpr size_t kMaxNonceBytes = 64;
  const v1::TimeRequest& req = m.body.time_request();
  if (topic.channel != Channel::kStatus || req.nonce().empty() ||
      req.nonce().size() > kMaxNonceBytes) {
    return Reject(core::Reject(v1::MALFORMED,
                               "a time request needs a nonce of 1 to 64 bytes on "
                               "the status channel"),
                  topic.ToString());
  }
  // A bucket per child: kTimeAnswerBurst answers, one more every kTimeAnswerRefillMs.
  const int64_t now = loop_->clock().MonotonicMs();
  auto [it, first] = time_answers_.try_emplace(topic.child, TimeAnswers{kTimeAnswerBurst, now});
  TimeAnswers& bucket = it->second;
  const int64_t refilled = (now - bucket.at_ms) / kTimeAnswerRefillMs;
  if (refilled > 0) {
    bucket.left = static_cast<int>(std::min<int64_t>(kTimeAnswerBurst, bucket.left + refilled));
    bucket.at_ms += refilled * kTimeAnswerRefillMs;
  }
  if (bucket.left == kTimeAnswerBurst) bucket.at_ms = now;
  if (bucket.left == 0) {
    return Reject(core::Reject(v1::TOO_FREQUENT,
                               absl::StrCat("more than ", kTimeAnswerBurst, " time requests in ",
                                            kTimeAnswerBurst * kTimeAnswerRefillMs / 1000, " s")),
                  topic.ToString());
  }
  --bucket.left;
  v1::Body body;
  body.mutable_time_response()->set_nonce(req.nonce());
  body.mutable_time_response()->set_time_ms(node_->clock().NowMs());
  if (absl::Status s = SendDown(topic.child, Channel::kCmd, std::move(body)); !s.ok()) {
    spdlog::warn("event=time.answer_failed child={} error={}", Quoted(topic.child),
                 Quoted(s.message()));
  }
  if (req.resend() && handlers_.resend_requested) handlers_.resend_requested(topic.child);
}

void NodeLinks::OnTimeResponse(const Topic& topic, const OpenedMessage& m) {
  // Year 1970 to 9999: anything else is no time at all (and bounds the sums below).
  constexpr int64_t kMaxTimeMs = 253'402'300'799'999;
  const v1::TimeResponse& r = m.body.time_response();
  const int64_t now = loop_->clock().MonotonicMs();
  if (topic.broadcast() || m.signer == nullptr || m.signer->node_id != parent_id_) {
    return Reject(core::Reject(v1::OUT_OF_SCOPE,
                               "a time response must come from my parent, "
                               "for me"),
                  topic.ToString(), /*from_parent=*/true);
  }
  if (!pending_time_ || r.nonce() != pending_time_->nonce) {
    // An old answer replayed, or one to a request this node never made (or gave up on).
    node_->CountRejection(core::Reject(v1::REPLAY, "a time response for no request outstanding"),
                          topic.ToString(), /*from_parent=*/false);
    if (handlers_.rejected) handlers_.rejected(core::Reject(v1::REPLAY, ""));
    return;
  }
  const PendingTime pending = *pending_time_;
  pending_time_.reset();
  const int64_t rtt = now - pending.sent_mono_ms;
  if (rtt > kTimeResponseTimeoutMs) {
    return Reject(core::Reject(v1::EXPIRED, absl::StrCat("time answered after ", rtt, " ms")),
                  topic.ToString());
  }
  if (r.time_ms() <= 0 || r.time_ms() > kMaxTimeMs) {
    return Reject(core::Reject(v1::MALFORMED, "time out of range"), topic.ToString());
  }
  const int64_t offset = r.time_ms() + rtt / 2 - node_->trusted_clock().SystemNowMs();
  const int64_t moved = offset - node_->trusted_clock().offset_ms();
  if (moved >= -kTimeAdoptThresholdMs && moved <= kTimeAdoptThresholdMs) {
    spdlog::debug("event=time.checked offset_ms={} rtt_ms={} from={}", offset, rtt,
                  Quoted(parent_id_));
    return;
  }
  node_->AdoptClockOffset(offset, parent_id_);
  // Judged again by the corrected time: a warning that remains means a certificate to renew.
  node_->WarnIfOwnCertOutOfValidity();
  // The "online" presence sent before went with the wrong time: again, with the right one.
  if (auto online = node_->ResealOnlinePresence()) (void)upstream_->Publish(*online);
  if (handlers_.clock_corrected) handlers_.clock_corrected();
  // Confirms the time, and has the parent send again what was refused meanwhile.
  if (!pending.resend) RequestTime(/*force=*/true, /*resend=*/true);
}

void NodeLinks::ForEachRelayedReport(
    const OpenedMessage& batch,
    const std::function<void(const std::string& envelope, const OpenedMessage& report,
                             const std::string& path)>& fn,
    const std::function<bool(const v1::Body&)>& verify_relayed) {
  const v1::StatusBatch& b = batch.body.status_batch();
  if (b.paths_size() != 0 && b.paths_size() != b.reports_size()) {
    return Reject(
        core::Reject(v1::MALFORMED, absl::StrCat("a batch of ", b.reports_size(), " reports with ",
                                                 b.paths_size(), " paths")),
        "batch");
  }
  for (const std::string& path : b.paths()) {
    if (absl::Status s = ValidatePath(path); !s.ok()) {
      return Reject(core::Reject(v1::MALFORMED, s.message()), "batch");
    }
  }
  static const std::string kNoPath;
  const OpenContext ctx{Origin::kRelayed, {}, batch.signer.get()};
  RelayPolicy policy;
  policy.verify_if = verify_relayed;
  policy.accept_duplicate = true;
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < b.reports_size(); ++i) {
    const std::string& inner = b.reports(i);
    const std::string& path = b.paths_size() == 0 ? kNoPath : b.paths(i);
    auto r = node_->opener().Open(inner, ctx, policy);
    if (r.ok() && !seen.insert(r->body.sender()).second) {
      // State, not events: a batch carries one report per device. What follows is not taken.
      return Reject(core::Reject(v1::MALFORMED,
                                 absl::StrCat("a batch names \"", r->body.sender(), "\" twice")),
                    "batch");
    }
    if (!r.ok()) {
      Reject(r.status(), "batch.report");
    } else if (!r->body.has_status() || r->body.status().device_id() != r->body.sender()) {
      Reject(core::Reject(v1::SENDER_MISMATCH, "batched report names another device"),
             "batch.report");
    } else {
      fn(inner, *r, path);
    }
  }
}

void NodeLinks::ScheduleFlush() { flush_.Schedule(); }

void NodeLinks::FlushReplay() {
  if (absl::Status s = node_->replay().Flush(); !s.ok()) {
    node_->metrics().CountRejection(v1::STORAGE_ERROR);
    spdlog::error("event=replay.flush_failed error={}", Quoted(s.message()));
  }
}

void NodeLinks::OnMessage(const MqttMessage& m) {
  auto topic = ParseTopic(m.topic, node_->prefix());
  if (!topic.ok()) return Reject(topic.status(), m.topic);
  if (m.payload.empty()) return;  // a retained message being cleared
  const std::string& self = node_->id();
  if (topic->direction == Direction::kDown) {
    if (upstream_ == nullptr || topic->parent != parent_id_ ||
        (topic->child != self && !topic->broadcast())) {
      return Reject(core::Reject(v1::BAD_TOPIC, "a down topic that is not my parent's for me"),
                    m.topic);
    }
    if (topic->channel == Channel::kData) return OnData(*topic, m);
    auto opened = node_->opener().Open(m.payload, {Origin::kFromParent, parent_id_});
    if (!opened.ok()) return Reject(opened.status(), m.topic, /*from_parent=*/true);
    if (opened->body.has_time_response()) return OnTimeResponse(*topic, *opened);
    ScheduleFlush();
    if (handlers_.from_parent) handlers_.from_parent(*topic, m.payload, *std::move(opened));
    return;
  }
  if (downstream_ == nullptr || topic->parent != self) {
    return Reject(core::Reject(v1::BAD_TOPIC, "an up topic that is not mine"), m.topic);
  }
  auto opened = node_->opener().Open(m.payload, {Origin::kFromChild, topic->child});
  if (!opened.ok()) return Reject(opened.status(), m.topic);
  if (opened->body.has_time_request()) return AnswerTime(*topic, *opened);
  ScheduleFlush();
  if (handlers_.from_child) handlers_.from_child(*topic, m.payload, *std::move(opened));
}

void NodeLinks::OnData(const Topic& topic, const MqttMessage& m) {
  if (topic.broadcast()) {
    return Reject(core::Reject(v1::BAD_TOPIC, "chunk data is never broadcast"), m.topic);
  }
  if (m.payload.size() > node_->opener().limits().max_message_bytes) {
    return Reject(
        core::Reject(v1::OVERSIZE, absl::StrCat(m.payload.size(), " bytes of chunk data")),
        m.topic);
  }
  v1::ChunkData data;
  if (!data.ParseFromString(m.payload)) {
    return Reject(core::Reject(v1::MALFORMED, "chunk data does not parse"), m.topic);
  }
  if (handlers_.data_from_parent) handlers_.data_from_parent(data);
}

absl::Status NodeLinks::SendData(const std::string& child, const v1::ChunkData& data) {
  if (downstream_ == nullptr) return absl::FailedPreconditionError("no downstream link");
  return downstream_->Publish(
      {DownTopic(node_->prefix(), node_->id(), child, Channel::kData), data.SerializeAsString()});
}

absl::Status NodeLinks::SendUp(Channel channel, v1::Body body) {
  if (upstream_ == nullptr) return absl::FailedPreconditionError("no upstream link");
  X1368_ASSIGN_OR_RETURN(std::string sealed, node_->Seal(parent_id_, std::move(body)));
  return upstream_->Publish({UpTopic(node_->prefix(), parent_id_, node_->id(), channel), sealed});
}

absl::Status NodeLinks::SendDown(const std::string& child, Channel channel, v1::Body body,
                                 bool retained, int64_t ttl_ms) {
  if (downstream_ == nullptr) return absl::FailedPreconditionError("no downstream link");
  if (ttl_ms <= 0) ttl_ms = node_->config().message_ttl_ms;
  X1368_ASSIGN_OR_RETURN(std::string sealed, node_->sealer().Seal(child, std::move(body), ttl_ms));
  return downstream_->Publish(
      {DownTopic(node_->prefix(), node_->id(), child, channel), sealed, retained});
}

absl::Status NodeLinks::Broadcast(v1::Body body) {
  if (downstream_ == nullptr) return absl::FailedPreconditionError("no downstream link");
  X1368_ASSIGN_OR_RETURN(std::string sealed, node_->Seal(kAllChildren, std::move(body)));
  return ForwardToChildren(sealed);
}

absl::Status NodeLinks::SendDesiredState(const std::string& child,
                                         const std::vector<ActiveDirective>& directives,
                                         uint32_t chunk_window) {
  constexpr int64_t kMinTtlMs = 1000;
  constexpr int64_t kMaxTtlMs = 400LL * 86400 * 1000;
  if (directives.empty()) return absl::OkStatus();
  v1::Body body;
  int64_t expires = 0;
  for (const ActiveDirective& d : directives) {
    body.mutable_desired()->add_directives(d.envelope);
    v1::Go* go = body.mutable_desired()->add_grants();
    go->set_campaign_id(d.campaign_id);
    go->set_directive_digest(d.digest);
    go->set_chunk_window(chunk_window);
    expires = std::max(expires, d.expires_at_ms);
  }
  // Clamped: the expiry is whatever the root signed, and must not overflow a time sum.
  int64_t now = node_->clock().NowMs();
  int64_t ttl = expires > now ? std::clamp(expires - now, kMinTtlMs, kMaxTtlMs) : kMinTtlMs;
  return SendDown(child, Channel::kDesired, std::move(body), /*retained=*/true, ttl);
}

absl::Status NodeLinks::RequestStatus() {
  v1::Body body;
  body.mutable_status_request();
  return Broadcast(std::move(body));
}

absl::Status NodeLinks::ForwardToChildren(const std::string& envelope) {
  if (downstream_ == nullptr) return absl::FailedPreconditionError("no downstream link");
  return downstream_->Publish(
      {DownTopic(node_->prefix(), node_->id(), std::string(kAllChildren), Channel::kCmd),
       envelope});
}

}  // namespace x1368::core
