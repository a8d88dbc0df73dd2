// Sealing and opening the signed Envelope around every message (docs/architecture.md §6).
//
// EnvelopeOpener::Open applies every rule, in an order that never acts on unauthenticated bytes:
// size before parsing, signature before reading the body, and the sequence window last so a
// rejected message never moves it. Chunk requests are the exception to the window: idempotent,
// they are checked for everything but their sequence number. Each failure carries its own
// v1::Reason (see reason.h); DUPLICATE marks an idempotent QoS 1 redelivery that callers drop
// silently.
//
// Where a message came from (OpenContext) decides who may have signed it and for whom it may be:
//   kFromParent  down topics of my parent: signed by my parent (whose certificate covers me) or
//                by the root; addressed to me or to "_all".
//   kFromChild   up topics of a child: signed by exactly the child the topic names, which my own
//                scope covers; addressed to me.
//   kRelayed     a child's report inside a batch relayed by `via`: signed by a node in via's
//                scope, addressed to via or to a node in its scope.
//   kEmbedded    a root-signed directive inside a parent's DesiredState: root only; its
//                sequence number is not checked (the outer envelope's is), so a directive
//                delivered late by an offline catch-up is not mistaken for a replay.
//
// EnvelopeSealer is thread-safe. EnvelopeOpener is not: it belongs to one event loop.
#ifndef X1368_CORE_ENVELOPE_H_
#define X1368_CORE_ENVELOPE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "x1368/core/clock.h"
#include "x1368/core/crypto.h"
#include "x1368/core/sequence.h"
#include "x1368/core/trust.h"
#include "x1368/v1/envelope.pb.h"

namespace x1368::core {

struct EnvelopeLimits {
  size_t max_message_bytes = 256 * 1024;  // hard limit, checked before parsing
  int64_t max_clock_skew_ms = 5 * 60 * 1000;
};

enum class Origin { kFromParent, kFromChild, kRelayed, kEmbedded };

struct OpenContext {
  Origin origin = Origin::kFromParent;
  // kFromParent: my parent's id (the root is accepted too). kFromChild: the child the topic
  // names. Unused otherwise.
  absl::string_view expected_signer;
  // kRelayed: the identity of the node that relayed the message.
  const Identity* via = nullptr;
};

// How a relayed report (Origin::kRelayed) is opened.
struct RelayPolicy {
  // When set, the report's body (covered by the relaying node's verified signature) is read
  // first, and the report's own signature is verified only when this returns true; otherwise
  // the relaying node vouches for it (OpenedMessage::verified false). Every other check
  // (signer's certificate and scope, validity window, sequence numbers) still applies.
  std::function<bool(const v1::Body&)> verify_if;
  // A report whose sequence number was already seen is handed back with `duplicate` set
  // instead of refused: a state resent on request (StatusRequest.full) is idempotent.
  bool accept_duplicate = false;
};

struct OpenedMessage {
  v1::Body body;
  std::shared_ptr<const Identity> signer;
  std::string body_digest;  // SHA-256 of the body bytes: how a Go names a directive
  bool verified = true;     // false: vouched for by the relaying node (verify_relayed)
  bool duplicate = false;   // accept_duplicate: its sequence number was seen already
};

class EnvelopeSealer {
 public:
  // `cert` is this node's root-issued certificate (absent for the root itself).
  EnvelopeSealer(std::string self_id, PrivateKey key, std::optional<v1::DelegationCert> cert,
                 SeqCounter* seq, const Clock* clock);

  // Fills sender, recipient, the next sequence number and the validity window, then signs.
  absl::StatusOr<std::string> Seal(absl::string_view recipient, v1::Body body, int64_t ttl_ms);
  // The same with a caller-chosen sequence number (presence stream).
  absl::StatusOr<std::string> SealWithSeq(absl::string_view recipient, v1::Body body,
                                          int64_t ttl_ms, uint64_t seq);

  const std::string& self_id() const { return self_id_; }

 private:
  const std::string self_id_;
  const PrivateKey key_;
  const std::optional<v1::DelegationCert> cert_;
  SeqCounter* seq_;
  const Clock* clock_;
};

class EnvelopeOpener {
 public:
  // `self` is this node's identity (its verified certificate, or the root anchor): its scope is
  // what children may report from.
  EnvelopeOpener(std::shared_ptr<const Identity> self, TrustStore* trust, ReplayGuard* replay,
                 const Clock* clock, EnvelopeLimits limits);

  absl::StatusOr<OpenedMessage> Open(absl::string_view bytes, const OpenContext& context,
                                     const RelayPolicy& relay = {});

  const EnvelopeLimits& limits() const { return limits_; }
  const Identity& self() const { return *self_; }

 private:
  absl::Status CheckOrigin(const v1::Body& body, const Identity& signer,
                           const OpenContext& context) const;

  std::shared_ptr<const Identity> self_;
  TrustStore* trust_;
  ReplayGuard* replay_;
  const Clock* clock_;
  const EnvelopeLimits limits_;
};

// The sequence stream a body belongs to.
SeqStream StreamOf(const v1::Body& body);

}  // namespace x1368::core

#endif  // X1368_CORE_ENVELOPE_H_
