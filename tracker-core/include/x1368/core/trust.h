// The trust model of docs/architecture.md §5: one root anchor, and root-signed delegation
// certificates that bind a node id to a key, a role and a scope.
//
// TrustStore answers "who signed this, and what may they act for": the root anchor for the root
// id, otherwise a certificate carried with the message, verified against the anchor and the
// clock. Verified certificates are cached by digest so a busy tracker pays one signature check
// per message, not two. Thread-safe.
#ifndef X1368_CORE_TRUST_H_
#define X1368_CORE_TRUST_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "x1368/core/clock.h"
#include "x1368/core/crypto.h"
#include "x1368/v1/certificate.pb.h"

namespace x1368::core {

// A verified signer.
struct Identity {
  std::string node_id;
  v1::Role role = v1::ROLE_UNSPECIFIED;
  v1::Scope scope;
  PublicKey key;
  int64_t not_before_ms = 0;
  int64_t not_after_ms = 0;
  bool is_root = false;
};

// True when `holder`, with `scope`, may act for `node`: the root and the holder itself always;
// otherwise an entry equal to `node`, a prefix entry ("dev-*") matching it, or "*".
bool ScopeCoversNode(const Identity& holder, absl::string_view node);
// True when `scope` lists no components (any) or lists `component`.
bool ScopeCoversComponent(const v1::Scope& scope, absl::string_view component);
// Checks the scope's entries are node ids or "prefix*" patterns.
absl::Status ValidateScope(const v1::Scope& scope);

class TrustStore {
 public:
  TrustStore(std::string root_id, PublicKey root_key, const Clock* clock);

  const std::string& root_id() const { return root_->node_id; }
  std::shared_ptr<const Identity> root() const { return root_; }

  // The identity behind a signature by `signer_id`: the root anchor when signer_id is the root
  // id (any certificate is ignored), otherwise `cert`, which must be root-signed, currently
  // valid and issued to `signer_id`. Rejections: UNKNOWN_SIGNER, BAD_CERT. Without
  // `check_validity` the certificate's window is left to the caller (CheckValidity): a signed
  // time is judged at the time it asserts, not at the local clock's.
  absl::StatusOr<std::shared_ptr<const Identity>> Resolve(absl::string_view signer_id,
                                                          const v1::DelegationCert* cert,
                                                          bool check_validity = true);

  // Verifies a certificate on its own (signature, fields, and validity now unless told not to).
  absl::StatusOr<std::shared_ptr<const Identity>> VerifyCert(const v1::DelegationCert& cert,
                                                             bool check_validity = true);

  // BAD_CERT unless `id` is valid at `at_ms` (the clock's now when absent).
  absl::Status CheckValidity(const Identity& id, std::optional<int64_t> at_ms = std::nullopt) const;

 private:
  std::shared_ptr<const Identity> root_;
  const Clock* clock_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const Identity>> cache_ ABSL_GUARDED_BY(mu_);
};

// Root's side: signs `body` into a certificate (fills alg; checks ids and scope).
absl::StatusOr<v1::DelegationCert> IssueCert(const PrivateKey& root_key, const v1::CertBody& body);

}  // namespace x1368::core

#endif  // X1368_CORE_TRUST_H_
