#include "x1368/core/envelope.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"

namespace x1368::core {

SeqStream StreamOf(const v1::Body& body) {
  return body.message_case() == v1::Body::kPresence ? SeqStream::kPresence : SeqStream::kMain;
}

EnvelopeSealer::EnvelopeSealer(std::string self_id, PrivateKey key,
                               std::optional<v1::DelegationCert> cert, SeqCounter* seq,
                               const Clock* clock)
    : self_id_(std::move(self_id)),
      key_(std::move(key)),
      cert_(std::move(cert)),
      seq_(seq),
      clock_(clock) {}

absl::StatusOr<std::string> EnvelopeSealer::Seal(absl::string_view recipient, v1::Body body,
                                                 int64_t ttl_ms) {
  X1368_ASSIGN_OR_RETURN(uint64_t seq, seq_->Next());
  return SealWithSeq(recipient, std::move(body), ttl_ms, seq);
}

absl::StatusOr<std::string> EnvelopeSealer::SealWithSeq(absl::string_view recipient, v1::Body body,
                                                        int64_t ttl_ms, uint64_t seq) {
  int64_t now = clock_->NowMs();
  body.set_sender(self_id_);
  body.set_recipient(std::string(recipient));
  body.set_seq(seq);
  body.set_issued_at_ms(now);
  // Saturating: a TTL derived from a signed expiry must never overflow the sum.
  body.set_expires_at_ms(ttl_ms > INT64_MAX - now ? INT64_MAX : now + std::max<int64_t>(ttl_ms, 0));
  v1::Envelope env;
  env.set_signer_id(self_id_);
  env.set_alg(key_.alg());
  body.SerializeToString(env.mutable_body());
  X1368_ASSIGN_OR_RETURN(*env.mutable_signature(),
                         key_.Sign(SignedKind::kEnvelopeBody, env.body()));
  if (cert_) *env.mutable_signer_cert() = *cert_;
  return env.SerializeAsString();
}

EnvelopeOpener::EnvelopeOpener(std::shared_ptr<const Identity> self, TrustStore* trust,
                               ReplayGuard* replay, const Clock* clock, EnvelopeLimits limits)
    : self_(std::move(self)), trust_(trust), replay_(replay), clock_(clock), limits_(limits) {}

absl::Status EnvelopeOpener::CheckOrigin(const v1::Body& body, const Identity& signer,
                                         const OpenContext& ctx) const {
  const bool tracker_role = signer.role == v1::ROLE_INTERMEDIATE || signer.role == v1::ROLE_CLIENT;
  switch (ctx.origin) {
    case Origin::kFromParent:
      if (!signer.is_root && signer.node_id != ctx.expected_signer) {
        return Reject(v1::OUT_OF_SCOPE, absl::StrCat("\"", signer.node_id, "\" is not my parent"));
      }
      if (!signer.is_root &&
          (signer.role != v1::ROLE_INTERMEDIATE || !ScopeCoversNode(signer, self_->node_id))) {
        return Reject(v1::OUT_OF_SCOPE,
                      absl::StrCat("certificate of \"", signer.node_id, "\" does not cover me"));
      }
      if (body.recipient() != self_->node_id && body.recipient() != kAllChildren) {
        return Reject(v1::WRONG_RECIPIENT, absl::StrCat("addressed to \"", body.recipient(), "\""));
      }
      return absl::OkStatus();
    case Origin::kFromChild:
      if (signer.node_id != ctx.expected_signer) {
        return Reject(v1::SENDER_MISMATCH,
                      absl::StrCat("signed by \"", signer.node_id, "\" on the topic of \"",
                                   ctx.expected_signer, "\""));
      }
      if (!tracker_role || !ScopeCoversNode(*self_, signer.node_id)) {
        return Reject(v1::OUT_OF_SCOPE,
                      absl::StrCat("\"", signer.node_id, "\" is not in my subtree"));
      }
      if (body.recipient() != self_->node_id) {
        return Reject(v1::WRONG_RECIPIENT, absl::StrCat("addressed to \"", body.recipient(), "\""));
      }
      return absl::OkStatus();
    case Origin::kRelayed:
      if (ctx.via == nullptr || !tracker_role || !ScopeCoversNode(*ctx.via, signer.node_id) ||
          !ScopeCoversNode(*self_, signer.node_id)) {
        return Reject(v1::OUT_OF_SCOPE, absl::StrCat("\"", signer.node_id,
                                                     "\" is not in the relaying node's subtree"));
      }
      if (!ScopeCoversNode(*ctx.via, body.recipient())) {
        return Reject(v1::WRONG_RECIPIENT,
                      absl::StrCat("relayed report addressed to \"", body.recipient(), "\""));
      }
      return absl::OkStatus();
    case Origin::kEmbedded:
      if (!signer.is_root)
        return Reject(v1::OUT_OF_SCOPE, "embedded directives must be root-signed");
      if (body.recipient() != self_->node_id && body.recipient() != kAllChildren) {
        return Reject(v1::WRONG_RECIPIENT, absl::StrCat("addressed to \"", body.recipient(), "\""));
      }
      return absl::OkStatus();
  }
  return Reject(v1::OUT_OF_SCOPE, "unknown origin");
}

absl::StatusOr<OpenedMessage> EnvelopeOpener::Open(absl::string_view bytes, const OpenContext& ctx,
                                                   const RelayPolicy& relay) {
  if (bytes.size() > limits_.max_message_bytes) {
    return Reject(v1::OVERSIZE,
                  absl::StrCat(bytes.size(), " bytes, limit ", limits_.max_message_bytes));
  }
  v1::Envelope env;
  if (!env.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Reject(v1::MALFORMED, "envelope does not parse");
  }
  if (env.alg() != v1::ED25519) {
    return Reject(v1::UNSUPPORTED_ALG, absl::StrCat("algorithm ", static_cast<int>(env.alg())));
  }
  if (!IsValidNodeId(env.signer_id())) return Reject(v1::UNKNOWN_SIGNER, "invalid signer id");
  // The certificate's window is judged once the body is read (below): a signed time is judged
  // at the time it asserts.
  X1368_ASSIGN_OR_RETURN(
      std::shared_ptr<const Identity> signer,
      trust_->Resolve(env.signer_id(), env.has_signer_cert() ? &env.signer_cert() : nullptr,
                      /*check_validity=*/false));
  OpenedMessage out;
  // A relayed report may be vouched for by the node that relayed it: its bytes are already
  // covered by that node's verified signature, so its body is read to decide.
  const bool may_vouch = ctx.origin == Origin::kRelayed && relay.verify_if != nullptr;
  if (may_vouch && !out.body.ParseFromString(env.body())) {
    return Reject(v1::MALFORMED, "body does not parse");
  }
  out.verified = !may_vouch || relay.verify_if(out.body);
  if (out.verified && !signer->key.Verify(SignedKind::kEnvelopeBody, env.body(), env.signature())) {
    return Reject(v1::BAD_SIGNATURE,
                  absl::StrCat("signature of \"", env.signer_id(), "\" does not verify"));
  }
  if (!may_vouch && !out.body.ParseFromString(env.body())) {
    return Reject(v1::MALFORMED, "body does not parse");
  }
  if (out.body.sender() != env.signer_id()) {
    return Reject(v1::SENDER_MISMATCH,
                  absl::StrCat("body sender \"", out.body.sender(), "\" is not the signer"));
  }
  if (out.body.message_case() == v1::Body::MESSAGE_NOT_SET) {
    return Reject(v1::UNKNOWN_TYPE, "no known message in the body");
  }
  // Time messages (X.1368 §10 freshness; issue #14) are exempt from the validity window: they
  // are how a node with a wrong clock learns the right time. A child's request is judged without
  // it (the child's clock is the one in doubt; answering is harmless); the parent's answer is
  // fresh by its nonce (checked by NodeLinks), and its signer's certificate must be valid at the
  // time it asserts, not at ours.
  const bool time_request =
      ctx.origin == Origin::kFromChild && out.body.message_case() == v1::Body::kTimeRequest;
  const bool time_response =
      ctx.origin == Origin::kFromParent && out.body.message_case() == v1::Body::kTimeResponse;
  X1368_RETURN_IF_ERROR(trust_->CheckValidity(
      *signer,
      time_response ? std::optional<int64_t>(out.body.time_response().time_ms()) : std::nullopt));
  int64_t now = clock_->NowMs();
  if (time_request || time_response) {
    X1368_RETURN_IF_ERROR(CheckOrigin(out.body, *signer, ctx));
    out.body_digest = Sha256(env.body());
    out.signer = std::move(signer);
    return out;  // nor in the replay window: idempotent (request) or fresh by nonce (response)
  }
  // The times are whatever the signer wrote (INT64_MIN included): the differences reported are
  // taken in uint64_t, where they are exact (never negative here) and cannot overflow.
  if (out.body.expires_at_ms() <= now) {
    uint64_t ago = static_cast<uint64_t>(now) - static_cast<uint64_t>(out.body.expires_at_ms());
    return Reject(v1::EXPIRED, absl::StrCat("expired ", ago, " ms ago"));
  }
  if (out.body.issued_at_ms() > now + limits_.max_clock_skew_ms) {
    uint64_t ahead = static_cast<uint64_t>(out.body.issued_at_ms()) - static_cast<uint64_t>(now);
    return Reject(v1::ISSUED_IN_FUTURE, absl::StrCat("issued ", ahead, " ms in the future"));
  }
  X1368_RETURN_IF_ERROR(CheckOrigin(out.body, *signer, ctx));
  // Chunk requests are idempotent (a replay only sends verified bytes again), so they take no
  // part in the replay window: a download moves no replay state and costs no disk write.
  if (ctx.origin != Origin::kEmbedded && out.body.message_case() != v1::Body::kChunkRequest) {
    SeqStream stream = StreamOf(out.body);
    X1368_ASSIGN_OR_RETURN(SeqVerdict verdict,
                           replay_->Check(signer->node_id, stream, out.body.seq()));
    if (verdict == SeqVerdict::kDuplicate && ctx.origin == Origin::kRelayed &&
        relay.accept_duplicate) {
      out.duplicate = true;
    } else if (verdict == SeqVerdict::kDuplicate) {
      return Reject(v1::DUPLICATE, absl::StrCat("seq ", out.body.seq(), " already seen"));
    }
    if (verdict == SeqVerdict::kReplay) {
      return Reject(v1::REPLAY, absl::StrCat("seq ", out.body.seq(), " from \"", signer->node_id,
                                             "\" is too old"));
    }
    replay_->Accept(signer->node_id, stream, out.body.seq());
  }
  out.body_digest = Sha256(env.body());
  out.signer = std::move(signer);
  return out;
}

}  // namespace x1368::core
