#include "x1368/core/node.h"

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "x1368/core/file_util.h"
#include "x1368/core/log.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"

namespace x1368::core {

NodeConfig ReadNodeConfig(ConfigFile& file, bool needs_cert) {
  NodeConfig c;
  c.node_id = file.String("node_id");
  if (absl::Status s = ValidateNodeId(c.node_id, "node_id"); !s.ok() && !c.node_id.empty()) {
    file.Fail("node_id", s.message());
  }
  c.topic_prefix = file.String("topic_prefix", std::string(kDefaultTopicPrefix));
  if (!IsValidNodeId(c.topic_prefix))
    file.Fail("topic_prefix", "must be 1-64 characters of [A-Za-z0-9._-]");
  c.key_file = file.Path("key");
  if (needs_cert) c.cert_file = file.Path("cert");
  c.data_dir = file.Path("data_dir");
  c.root_id = file.String("root.id", "root");
  if (!IsValidNodeId(c.root_id)) file.Fail("root.id", "not a valid node id");
  c.root_public_key_file = file.Path("root.public_key");
  c.limits.max_message_bytes =
      static_cast<size_t>(file.Int("limits.max_message_bytes", 256 * 1024, 1024, 64 << 20));
  c.limits.max_clock_skew_ms = file.Int("limits.clock_skew_s", 300, 0, 86400) * 1000;
  c.message_ttl_ms = file.Int("limits.message_ttl_s", 600, 1, 30 * 86400) * 1000;
  c.log_level = file.String("log.level", "warn");
  if (!IsValidLogLevel(c.log_level))
    file.Fail("log.level", "expected trace, debug, info, warn, error or off");
  c.metrics_listen = file.String("metrics.listen", "");
  return c;
}

TransportOptions ReadLinkConfig(ConfigFile& file, absl::string_view section,
                                absl::string_view client_id) {
  TransportOptions t;
  auto key = [&](absl::string_view k) { return absl::StrCat(section, ".", k); };
  t.client_id = std::string(client_id);
  t.broker_uri = file.String(key("broker"));
  bool tls_uri = t.broker_uri.rfind("ssl://", 0) == 0 || t.broker_uri.rfind("mqtts://", 0) == 0;
  if (!t.broker_uri.empty() && !tls_uri && t.broker_uri.rfind("tcp://", 0) != 0 &&
      t.broker_uri.rfind("mqtt://", 0) != 0) {
    file.Fail(key("broker"), "expected tcp://host:port or ssl://host:port");
  }
  t.tls.ca_file = file.Path(key("tls.ca"), "");
  t.tls.cert_file = file.Path(key("tls.cert"), "");
  t.tls.key_file = file.Path(key("tls.key"), "");
  if (tls_uri && !t.tls.enabled()) file.Fail(key("broker"), "an ssl:// broker needs tls.ca");
  if (t.tls.enabled() && !tls_uri) file.Fail(key("tls.ca"), "TLS settings need an ssl:// broker");
  t.keepalive_s = static_cast<int>(file.Int(key("keepalive_s"), 30, 1, 3600));
  t.session_expiry_s = static_cast<int>(file.Int(key("session_expiry_s"), 3600, 0, 30 * 86400));
  t.max_buffered = static_cast<int>(file.Int(key("max_buffered"), 10000, 1, 1'000'000));
  return t;
}

absl::StatusOr<std::unique_ptr<NodeContext>> NodeContext::Create(const NodeConfig& config,
                                                                 KvStore* store, const Clock* clock,
                                                                 FileSystem* fs) {
  std::unique_ptr<NodeContext> ctx(new NodeContext());
  ctx->config_ = config;
  ctx->clock_ = clock;
  ctx->fs_ = fs;
  ctx->store_ = store;
  X1368_ASSIGN_OR_RETURN(PrivateKey key, PrivateKey::LoadPemFile(config.key_file));
  X1368_ASSIGN_OR_RETURN(PublicKey root_key, PublicKey::LoadPemFile(config.root_public_key_file));
  ctx->trust_ = std::make_unique<TrustStore>(config.root_id, root_key, clock);
  std::optional<v1::DelegationCert> cert;
  if (config.node_id == config.root_id) {
    if (key.public_key().raw() != root_key.raw()) {
      return absl::InvalidArgumentError(
          "this node is the root, but its key is not the root anchor's");
    }
    ctx->self_ = ctx->trust_->root();
  } else {
    X1368_ASSIGN_OR_RETURN(std::string raw, ReadFileLimited(config.cert_file, 64 << 10));
    v1::DelegationCert c;
    if (!c.ParseFromString(raw)) {
      return absl::InvalidArgumentError(absl::StrCat(config.cert_file, " is not a certificate"));
    }
    auto id = ctx->trust_->VerifyCert(c);
    if (!id.ok()) return WithContext(id.status(), absl::StrCat("checking ", config.cert_file));
    if ((*id)->node_id != config.node_id) {
      return absl::InvalidArgumentError(absl::StrCat(config.cert_file, " is issued to \"",
                                                     (*id)->node_id, "\", not \"", config.node_id,
                                                     "\""));
    }
    if ((*id)->key.raw() != key.public_key().raw()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config.cert_file, " does not certify ", config.key_file));
    }
    ctx->self_ = *id;
    cert = c;
  }
  X1368_ASSIGN_OR_RETURN(ctx->seq_, SeqCounter::Open(store, "own_seq"));
  X1368_ASSIGN_OR_RETURN(ctx->presence_epoch_, SeqCounter::Open(store, "presence_epoch", 1));
  ctx->replay_ = std::make_unique<ReplayGuard>(store);
  ctx->sealer_ =
      std::make_unique<EnvelopeSealer>(config.node_id, key, cert, ctx->seq_.get(), clock);
  ctx->opener_ = std::make_unique<EnvelopeOpener>(ctx->self_, ctx->trust_.get(), ctx->replay_.get(),
                                                  clock, config.limits);
  ctx->duplicates_ = ctx->metrics_.Counter("x1368_duplicates_total", "QoS 1 redeliveries dropped");
  return ctx;
}

absl::StatusOr<std::string> NodeContext::Seal(absl::string_view recipient, v1::Body body) {
  return sealer_->Seal(recipient, std::move(body), config_.message_ttl_ms);
}

void NodeContext::CountRejection(const absl::Status& status, absl::string_view where) {
  Reason reason = ReasonOf(status);
  if (reason == v1::DUPLICATE) {
    duplicates_->Add();
    return;
  }
  if (reason == v1::REASON_UNSPECIFIED) reason = v1::MALFORMED;
  metrics_.CountRejection(reason);
  spdlog::info("event=rejected where={} reason={} detail=\"{}\"", where, ReasonName(reason),
               status.message());
}

std::optional<MqttMessage> NodeContext::NextPresenceWill(const std::string& parent_id) {
  constexpr int64_t kPresenceTtlMs = 30LL * 86400 * 1000;
  auto epoch = presence_epoch_->Next();
  if (!epoch.ok()) {
    spdlog::error("event=presence.epoch_failed error=\"{}\"", epoch.status().message());
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
  return make(false);
}

std::optional<MqttMessage> NodeContext::OnlinePresence() {
  absl::MutexLock lock(&presence_mu_);
  return online_;
}

}  // namespace x1368::core
