#include "x1368/core/node.h"

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "x1368/core/file_util.h"
#include "x1368/core/log.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"

namespace x1368::core {

absl::StatusOr<std::unique_ptr<NodeContext>> NodeContext::Create(const NodeConfig& config,
                                                                 KvStore* store, const Clock* clock,
                                                                 FileSystem* fs) {
  std::unique_ptr<NodeContext> ctx(new NodeContext());
  ctx->config_ = config;
  ctx->clock_ = clock;
  ctx->fs_ = fs;
  ctx->store_ = store;
  X1368_ASSIGN_OR_RETURN(PrivateKey key, config.key_pem.empty()
                                             ? PrivateKey::LoadPemFile(config.key_file)
                                             : PrivateKey::FromPem(config.key_pem));
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
    std::string raw = config.cert_bytes;
    if (raw.empty()) {
      X1368_ASSIGN_OR_RETURN(raw, ReadFileLimited(config.cert_file, 64 << 10));
    }
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
