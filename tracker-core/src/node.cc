#include "x1368/core/node.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "spdlog/spdlog.h"
#include "x1368/core/file_util.h"
#include "x1368/core/log.h"
#include "x1368/core/reason.h"
#include "x1368/core/store_identity.h"
#include "x1368/core/topics.h"

namespace x1368::core {

namespace {

constexpr uint64_t kMaxCredentialBytes = 64 << 10;
constexpr char kClockOffsetKey[] = "clock_offset_ms";
constexpr int64_t kPresenceTtlMs = 30LL * 86400 * 1000;

// "cannot read <path>: <why>", the way an operator reads it.
absl::StatusOr<std::string> ReadCredentialFile(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("no file named");
  auto raw = ReadFileLimited(path, kMaxCredentialBytes);
  if (raw.ok()) return raw;
  absl::string_view m = raw.status().message();
  if (absl::ConsumePrefix(&m, "open ") || absl::ConsumePrefix(&m, "read ")) {
    return absl::Status(raw.status().code(), absl::StrCat("cannot read ", m));
  }
  return absl::Status(raw.status().code(), absl::StrCat("cannot read ", path, ": ", m));
}

}  // namespace

absl::StatusOr<Credentials> LoadCredentials(const NodeConfig& config, const Clock* clock,
                                            std::vector<CredentialProblem>* problems) {
  std::vector<CredentialProblem> found;
  auto problem = [&](const char* key, absl::string_view message) {
    found.push_back({key, std::string(message)});
  };
  // Each file on its own first, so that every broken one is named.
  std::optional<PrivateKey> key;
  if (!config.key_pem.empty()) {
    auto k = PrivateKey::FromPem(config.key_pem);
    if (k.ok()) {
      key = *k;
    } else {
      problem("key", absl::StrCat("inline key: ", k.status().message()));
    }
  } else if (auto pem = ReadCredentialFile(config.key_file); !pem.ok()) {
    problem("key", pem.status().message());
  } else if (auto k = PrivateKey::FromPem(*pem); !k.ok()) {
    problem("key", absl::StrCat(config.key_file, ": ", k.status().message()));
  } else {
    key = *k;
  }
  std::optional<PublicKey> root_key;
  if (auto pem = ReadCredentialFile(config.root_public_key_file); !pem.ok()) {
    problem("root.public_key", pem.status().message());
  } else if (auto k = PublicKey::FromPem(*pem); !k.ok()) {
    problem("root.public_key",
            absl::StrCat(config.root_public_key_file, ": ", k.status().message()));
  } else {
    root_key = *k;
  }
  const bool is_root = config.node_id == config.root_id;
  std::optional<v1::DelegationCert> cert;
  const std::string cert_name = config.cert_bytes.empty() ? config.cert_file : "inline certificate";
  if (!is_root) {
    absl::StatusOr<std::string> raw = config.cert_bytes;
    if (config.cert_bytes.empty()) raw = ReadCredentialFile(config.cert_file);
    v1::DelegationCert c;
    if (!raw.ok()) {
      problem("cert", raw.status().message());
    } else if (!c.ParseFromString(*raw) || c.body().empty()) {
      problem("cert", absl::StrCat(cert_name, ": not a certificate (trackerctl cert issue)"));
    } else {
      cert = std::move(c);
    }
  }
  // Then against each other.
  std::shared_ptr<const Identity> self;
  if (root_key) {
    TrustStore trust(config.root_id, *root_key, clock);
    if (is_root) {
      if (key && key->public_key().raw() != root_key->raw()) {
        problem("key", absl::StrCat(config.key_pem.empty() ? config.key_file : "inline key",
                                    ": this node is the root, but its key is not the root "
                                    "anchor's (",
                                    config.root_public_key_file, ")"));
      }
      self = trust.root();
    } else if (cert) {
      auto id = trust.VerifyCert(*cert, /*check_validity=*/false);
      if (!id.ok()) {
        problem("cert", absl::StrCat(cert_name, ": ", id.status().message()));
      } else if ((*id)->node_id != config.node_id) {
        problem("cert", absl::StrCat(cert_name, " is issued to ", Quote((*id)->node_id), ", not ",
                                     Quote(config.node_id)));
      } else if (key && (*id)->key.raw() != key->public_key().raw()) {
        problem("cert", absl::StrCat(cert_name, " does not certify the key in ",
                                     config.key_pem.empty() ? config.key_file : "inline key"));
      } else {
        self = *id;
      }
    }
  }
  if (!found.empty()) {
    absl::Status first = absl::InvalidArgumentError(found.front().message);
    if (problems != nullptr) *problems = std::move(found);
    return first;
  }
  return Credentials{*std::move(key), *std::move(root_key), std::move(cert), std::move(self)};
}

absl::StatusOr<std::unique_ptr<NodeContext>> NodeContext::Create(const NodeConfig& config,
                                                                 KvStore* store, const Clock* clock,
                                                                 FileSystem* fs) {
  X1368_ASSIGN_OR_RETURN(Credentials credentials, LoadCredentials(config, clock));
  return Create(config, std::move(credentials), store, clock, fs);
}

absl::StatusOr<std::unique_ptr<NodeContext>> NodeContext::Create(const NodeConfig& config,
                                                                 Credentials credentials,
                                                                 KvStore* store, const Clock* clock,
                                                                 FileSystem* fs) {
  std::unique_ptr<NodeContext> ctx(new NodeContext());
  ctx->config_ = config;
  // Trusted time starts from the offset the last run learned (a restart keeps it); the node
  // asks its parent again at each connect anyway.
  int64_t offset = 0;
  X1368_ASSIGN_OR_RETURN(std::optional<std::string> stored, store->Get(kClockOffsetKey));
  if (stored && !absl::SimpleAtoi(*stored, &offset)) {
    spdlog::warn("event=time.offset_corrupt value={} hint={}", Quoted(*stored),
                 Quoted("ignored: the node asks its parent for the time"));
    offset = 0;
  }
  ctx->clock_ = std::make_unique<TrustedClock>(clock, offset);
  clock = ctx->clock_.get();
  ctx->clock_offset_ = ctx->metrics_.Gauge(
      "x1368_clock_offset_ms",
      "What this node adds to its system clock to get its parent's signed time (0: none)");
  ctx->clock_offset_->Set(offset);
  ctx->clock_corrections_ = ctx->metrics_.Counter(
      "x1368_clock_corrections_total", "Times this node adopted a new offset from its parent");
  ctx->fs_ = fs;
  ctx->store_ = store;
  ctx->trust_ = std::make_unique<TrustStore>(config.root_id, credentials.root_key, clock);
  // The root's identity is its trust store's anchor itself.
  ctx->self_ = config.node_id == config.root_id ? ctx->trust_->root() : credentials.self;
  const PrivateKey& key = credentials.key;
  const std::optional<v1::DelegationCert>& cert = credentials.cert;
  X1368_ASSIGN_OR_RETURN(ctx->seq_, SeqCounter::Open(store, kOwnSeqKey));
  X1368_ASSIGN_OR_RETURN(ctx->presence_epoch_, SeqCounter::Open(store, kPresenceEpochKey, 1));
  ctx->replay_ = std::make_unique<ReplayGuard>(store);
  ctx->sealer_ =
      std::make_unique<EnvelopeSealer>(config.node_id, key, cert, ctx->seq_.get(), clock);
  ctx->opener_ = std::make_unique<EnvelopeOpener>(ctx->self_, ctx->trust_.get(), ctx->replay_.get(),
                                                  clock, config.limits);
  ctx->duplicates_ = ctx->metrics_.Counter("x1368_duplicates_total", "QoS 1 redeliveries dropped");
  ctx->WarnIfOwnCertOutOfValidity();
  return ctx;
}

bool NodeContext::WarnIfOwnCertOutOfValidity() {
  if (self_ == nullptr || self_->is_root) return false;
  absl::Status valid = trust_->CheckValidity(*self_);
  if (valid.ok()) return false;
  metrics_.CountRejection(v1::CLOCK_SKEW);
  auto iso = [](int64_t ms) {
    return absl::FormatTime(absl::RFC3339_sec, absl::FromUnixMillis(ms), absl::UTCTimeZone());
  };
  spdlog::warn(
      "event=cert.out_of_validity node={} not_before={} not_after={} now={} offset_ms={} hint={}",
      Quoted(id()), iso(self_->not_before_ms), iso(self_->not_after_ms), iso(clock_->NowMs()),
      clock_->offset_ms(),
      Quoted("this node's certificate is out of validity by its clock: either the clock is wrong "
             "(it asks its parent for the time and judges again) or the certificate must be "
             "renewed (trackerctl cert issue)"));
  return true;
}

void NodeContext::AdoptClockOffset(int64_t offset_ms, absl::string_view from) {
  const int64_t before = clock_->offset_ms();
  clock_->set_offset_ms(offset_ms);
  clock_offset_->Set(offset_ms);
  clock_corrections_->Add();
  // Saturating: both are bounded by what int64 holds, their difference may not be.
  const uint64_t moved = offset_ms >= before
                             ? static_cast<uint64_t>(offset_ms) - static_cast<uint64_t>(before)
                             : static_cast<uint64_t>(before) - static_cast<uint64_t>(offset_ms);
  if (moved > static_cast<uint64_t>(config_.limits.max_clock_skew_ms)) {
    metrics_.CountRejection(v1::CLOCK_SKEW);
  }
  spdlog::warn("event=time.corrected offset_ms={} previous_offset_ms={} from={}", offset_ms, before,
               Quoted(from));
  if (absl::Status s = store_->Put(kClockOffsetKey, absl::StrCat(offset_ms)); !s.ok()) {
    // Not fatal: the next start asks again.
    spdlog::error("event=time.persist_failed error={}", Quoted(s.message()));
  }
}

absl::StatusOr<std::string> NodeContext::Seal(absl::string_view recipient, v1::Body body) {
  return sealer_->Seal(recipient, std::move(body), config_.message_ttl_ms);
}

void NodeContext::CountRejection(const absl::Status& status, absl::string_view where,
                                 bool from_parent) {
  Reason reason = ReasonOf(status);
  if (reason == v1::DUPLICATE) {
    duplicates_->Add();
    return;
  }
  if (reason == v1::REASON_UNSPECIFIED) reason = v1::MALFORMED;
  metrics_.CountRejection(reason, from_parent);
  if (from_parent && reason == v1::REPLAY) {
    // Not an attack as a rule: the parent lost its store (or got an old copy back) and numbers
    // its messages again from below. Nothing it sends gets through until it is fixed, so the
    // operator must hear of it here and at root (StatusReport.parent_rejections).
    spdlog::warn(
        "event=parent.replay_refused where={} count={} detail={} hint={}", Quoted(where),
        metrics_.ParentRejections(v1::REPLAY), Quoted(status.message()),
        Quoted("the parent's sequence numbers went back: its store was lost or restored from a "
               "copy. Its messages are dropped until its numbers pass what this node has seen: "
               "restore it with tracker-root --restore (root) or start it with --init"));
    return;
  }
  // A refused message is a misconfiguration (a wrong certificate or scope, a clock off), a broken
  // peer or an attack: the operator must hear of it, but a flood of them must not flood the log.
  LogThrottle* throttle;
  {
    absl::MutexLock lock(&rejection_log_mu_);
    throttle =
        &rejection_log_.try_emplace(static_cast<int>(reason), absl::Minutes(1)).first->second;
  }
  uint64_t skipped = 0;
  if (throttle->Allow(&skipped)) {
    spdlog::warn("event=rejected where={} reason={} detail={} suppressed={}", Quoted(where),
                 ReasonName(reason), Quoted(status.message()), skipped);
  } else {
    spdlog::debug("event=rejected where={} reason={} detail={}", Quoted(where), ReasonName(reason),
                  Quoted(status.message()));
  }
}

std::optional<MqttMessage> NodeContext::NextPresenceWill(const std::string& parent_id) {
  auto epoch = presence_epoch_->Next();
  if (!epoch.ok()) {
    spdlog::error("event=presence.epoch_failed error={}", Quoted(epoch.status().message()));
    return std::nullopt;
  }
  std::string topic = UpTopic(prefix(), parent_id, id(), Channel::kPresence);
  auto make = [&](bool online) -> std::optional<MqttMessage> {
    v1::Body body;
    body.mutable_presence()->set_online(online);
    body.mutable_presence()->set_epoch(*epoch);
    auto sealed =
        sealer_->SealWithSeq(parent_id, body, kPresenceTtlMs, *epoch * 2 + (online ? 0 : 1));
    if (!sealed.ok()) return std::nullopt;
    return MqttMessage{topic, *sealed, /*retained=*/true};
  };
  absl::MutexLock lock(&presence_mu_);
  online_ = make(true);
  presence_parent_ = parent_id;
  presence_epoch_value_ = *epoch;
  return make(false);
}

std::optional<std::string> NodeContext::SealPresenceAgain(bool online) {
  if (!online_ || presence_epoch_value_ == 0) return std::nullopt;
  v1::Body body;
  body.mutable_presence()->set_online(online);
  body.mutable_presence()->set_epoch(presence_epoch_value_);
  auto sealed = sealer_->SealWithSeq(presence_parent_, body, kPresenceTtlMs,
                                     presence_epoch_value_ * 2 + (online ? 0 : 1));
  if (!sealed.ok()) return std::nullopt;
  return *std::move(sealed);
}

std::optional<MqttMessage> NodeContext::ResealOnlinePresence() {
  absl::MutexLock lock(&presence_mu_);
  // The same sequence number: the parent refused the first one (its time was wrong), so its
  // window did not move; if it did accept it, this one is a harmless duplicate.
  std::optional<std::string> sealed = SealPresenceAgain(/*online=*/true);
  if (!sealed) return std::nullopt;
  online_->payload = *std::move(sealed);
  return online_;
}

std::optional<MqttMessage> NodeContext::OnlinePresence() {
  absl::MutexLock lock(&presence_mu_);
  return online_;
}

std::optional<MqttMessage> NodeContext::OfflinePresence() {
  absl::MutexLock lock(&presence_mu_);
  // Sealed now, by the trusted time, with the Will's own sequence number (the Will is discarded).
  std::optional<std::string> sealed = SealPresenceAgain(/*online=*/false);
  if (!sealed) return std::nullopt;
  return MqttMessage{online_->topic, *std::move(sealed), /*retained=*/true};
}

}  // namespace x1368::core
