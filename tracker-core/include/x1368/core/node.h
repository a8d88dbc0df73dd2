// What every status-tracker module shares: its configuration keys, its identity (key,
// certificate, root anchor), the sealer/opener pair with their sequence state, presence, and
// metrics. Root, intermediate and client each build one NodeContext and add their own logic.
// Not thread-safe except where noted: the context belongs to the node's event loop.
#ifndef X1368_CORE_NODE_H_
#define X1368_CORE_NODE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "x1368/core/clock.h"
#include "x1368/core/envelope.h"
#include "x1368/core/file_system.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/log.h"
#include "x1368/core/metrics.h"
#include "x1368/core/sequence.h"
#include "x1368/core/transport.h"
#include "x1368/core/trust.h"

namespace x1368::core {

struct NodeConfig {
  std::string node_id;
  std::string topic_prefix{"x1368"};
  std::string key_file;
  std::string cert_file;  // absent for the root
  // The same credentials given inline (PEM key, serialized certificate), used instead of the
  // files when set: a process hosting many nodes (the fleet simulator) keeps no two files per
  // node, and writing them (two fsyncs each) would dominate building a large fleet.
  std::string key_pem;
  std::string cert_bytes;
  std::string root_id{"root"};
  std::string root_public_key_file;
  std::string data_dir;
  EnvelopeLimits limits;
  int64_t message_ttl_ms = 10 * 60 * 1000;  // validity of ordinary messages
  std::string log_level{"warn"};
  std::string log_format{"logfmt"};  // logfmt or json (log.h)
  std::string metrics_listen;        // "host:port"; empty: no endpoint
  // A missing or empty store is initialised as a new node's (the daemons' --init); without it
  // such a store is refused (core/store_identity.h). Harmless on an initialised store.
  bool init = false;
};

// A node's credentials: its key, the root anchor and, for every node but the root, its
// root-issued certificate, each checked against the others and against the node id.
struct Credentials {
  PrivateKey key;
  PublicKey root_key;
  std::optional<v1::DelegationCert> cert;  // absent for the root
  std::shared_ptr<const Identity> self;    // verified: the certificate's, or the root anchor
};

// Something wrong with one credential file, against the configuration key that names it ("key",
// "cert" or "root.public_key"); `message` names the file.
struct CredentialProblem {
  std::string key;
  std::string message;
};

// Loads the key, the root public key and the certificate `config` names (or gives inline) and
// checks them: each file readable and parsed, the certificate root-signed and issued to node_id
// for the key (its validity window is not judged here: a node whose clock is wrong must still
// start and ask its parent for the time; NodeContext::Create warns about it); the root's key the
// root anchor. When `problems` is not null it receives every problem found, each against its
// configuration key (a configuration check lists them all at once); the status is the first of
// them.
absl::StatusOr<Credentials> LoadCredentials(const NodeConfig& config, const Clock* clock,
                                            std::vector<CredentialProblem>* problems = nullptr);

class NodeContext {
 public:
  // Loads the key, certificate and root anchor named by `config` (configuration: always from the
  // disk, unless the key and certificate are given inline); `store` keeps the sequence state and
  // must outlive the context. The node's own files (images, cache, slots) live on `fs`.
  static absl::StatusOr<std::unique_ptr<NodeContext>> Create(const NodeConfig& config,
                                                             KvStore* store, const Clock* clock,
                                                             FileSystem* fs = PosixFileSystem());
  // The same with credentials already loaded (LoadCredentials).
  static absl::StatusOr<std::unique_ptr<NodeContext>> Create(const NodeConfig& config,
                                                             Credentials credentials,
                                                             KvStore* store, const Clock* clock,
                                                             FileSystem* fs = PosixFileSystem());

  const NodeConfig& config() const { return config_; }
  const std::string& id() const { return config_.node_id; }
  const std::string& prefix() const { return config_.topic_prefix; }
  // The node's trusted time: the system clock plus the offset learned from its parent's signed
  // time (links.h). What validity, expiry, skew and the node's own messages are judged by.
  const Clock& clock() const { return *clock_; }
  TrustedClock& trusted_clock() { return *clock_; }
  FileSystem& fs() const { return *fs_; }
  TrustStore& trust() { return *trust_; }
  EnvelopeSealer& sealer() { return *sealer_; }
  EnvelopeOpener& opener() { return *opener_; }
  ReplayGuard& replay() { return *replay_; }
  Metrics& metrics() { return metrics_; }
  KvStore& store() { return *store_; }
  const Identity& self() const { return *self_; }

  // Seals `body` for `recipient` with the default TTL.
  absl::StatusOr<std::string> Seal(absl::string_view recipient, v1::Body body);

  // Counts a rejected message by reason and logs it; DUPLICATE is counted as a duplicate only.
  // `from_parent`: it came down from this node's parent; a REPLAY of the parent's is logged as a
  // warning (the parent's sequence numbers went back: its store was lost or put back).
  void CountRejection(const absl::Status& status, absl::string_view where,
                      bool from_parent = false);

  // Adopts `offset_ms` (signed time from `from` minus the system clock) as this node's clock
  // offset: kept in the store (a restart starts from it), logged at warn, and counted as
  // CLOCK_SKEW when the trusted time moves by more than limits.max_clock_skew_ms.
  void AdoptClockOffset(int64_t offset_ms, absl::string_view from);
  // Warns (and counts CLOCK_SKEW) when this node's own certificate is out of validity by its
  // trusted time; true when it is. Never fatal: the node starts and asks for the time.
  bool WarnIfOwnCertOutOfValidity();

  // Presence for the upstream link (thread-safe: called from the transport's connect thread).
  // Each call starts a new epoch; returns the Will ("offline") for the coming connection and
  // remembers the "online" message to publish once connected.
  std::optional<MqttMessage> NextPresenceWill(const std::string& parent_id);
  std::optional<MqttMessage> OnlinePresence();
  // The offline presence of the current connection (its Will), which a node that stops cleanly
  // publishes itself: a clean DISCONNECT makes the broker discard the Will.
  std::optional<MqttMessage> OfflinePresence();
  // The "online" presence of the current epoch sealed again (by the trusted time, which just
  // changed), and remembered as OnlinePresence(); nullopt before the first connect.
  std::optional<MqttMessage> ResealOnlinePresence();

 private:
  NodeContext() = default;

  NodeConfig config_;
  std::unique_ptr<TrustedClock> clock_;
  Metric* clock_offset_ = nullptr;
  Metric* clock_corrections_ = nullptr;
  FileSystem* fs_ = nullptr;
  KvStore* store_ = nullptr;
  std::shared_ptr<const Identity> self_;
  std::unique_ptr<TrustStore> trust_;
  std::unique_ptr<SeqCounter> seq_;
  std::unique_ptr<SeqCounter> presence_epoch_;
  std::unique_ptr<ReplayGuard> replay_;
  std::unique_ptr<EnvelopeSealer> sealer_;
  std::unique_ptr<EnvelopeOpener> opener_;
  Metrics metrics_;
  Metric* duplicates_ = nullptr;
  // Rejections are warnings, at most one a minute per reason (each counted in the metrics).
  absl::Mutex rejection_log_mu_;
  std::map<int, LogThrottle> rejection_log_ ABSL_GUARDED_BY(rejection_log_mu_);

  absl::Mutex presence_mu_;
  // The current epoch's presence, `online` or not, sealed now; nullopt before the first connect.
  std::optional<std::string> SealPresenceAgain(bool online)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(presence_mu_);
  std::optional<MqttMessage> online_ ABSL_GUARDED_BY(presence_mu_);
  std::string presence_parent_ ABSL_GUARDED_BY(presence_mu_);
  uint64_t presence_epoch_value_ ABSL_GUARDED_BY(presence_mu_) = 0;
};

}  // namespace x1368::core

#endif  // X1368_CORE_NODE_H_
