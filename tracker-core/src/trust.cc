#include "x1368/core/trust.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"

namespace x1368::core {
namespace {
constexpr size_t kMaxCachedCerts = 200'000;
constexpr size_t kMaxCertBytes = 16 << 10;
}  // namespace

bool ScopeCoversNode(const Identity& holder, absl::string_view node) {
  if (holder.is_root || holder.node_id == node) return true;
  for (const std::string& entry : holder.scope.nodes()) {
    if (entry == "*" || entry == node) return true;
    if (entry.size() > 1 && entry.back() == '*' &&
        absl::StartsWith(node, absl::string_view(entry).substr(0, entry.size() - 1))) {
      return true;
    }
  }
  return false;
}

bool ScopeCoversComponent(const v1::Scope& scope, absl::string_view component) {
  if (scope.components().empty()) return true;
  for (const std::string& c : scope.components()) {
    if (c == component) return true;
  }
  return false;
}

absl::Status ValidateScope(const v1::Scope& scope) {
  for (const std::string& entry : scope.nodes()) {
    if (entry == "*") continue;
    absl::string_view id = entry;
    if (!id.empty() && id.back() == '*') id.remove_suffix(1);
    if (!IsValidNodeId(id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("scope entry \"", entry, "\" is not a node id or prefix*"));
    }
  }
  for (const std::string& c : scope.components()) {
    if (!IsValidNodeId(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("scope component \"", c, "\" is not a valid name"));
    }
  }
  return absl::OkStatus();
}

TrustStore::TrustStore(std::string root_id, PublicKey root_key, const Clock* clock)
    : clock_(clock) {
  auto root = std::make_shared<Identity>(
      Identity{std::move(root_id), v1::ROLE_ROOT, {}, std::move(root_key), 0, INT64_MAX, true});
  root_ = std::move(root);
}

absl::Status TrustStore::CheckValidity(const Identity& id, std::optional<int64_t> at_ms) const {
  int64_t now = at_ms ? *at_ms : clock_->NowMs();
  if (now < id.not_before_ms)
    return Reject(v1::BAD_CERT, absl::StrCat("certificate of ", id.node_id, " not yet valid"));
  if (now > id.not_after_ms)
    return Reject(v1::BAD_CERT, absl::StrCat("certificate of ", id.node_id, " expired"));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Identity>> TrustStore::VerifyCert(
    const v1::DelegationCert& cert, bool check_validity) {
  if (cert.body().size() > kMaxCertBytes) return Reject(v1::BAD_CERT, "certificate too large");
  std::string cache_key = absl::StrCat(Sha256(cert.body()), cert.signature());
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(cache_key);
    if (it != cache_.end()) {
      if (check_validity) X1368_RETURN_IF_ERROR(CheckValidity(*it->second));
      return it->second;
    }
  }
  if (cert.alg() != v1::ED25519) return Reject(v1::UNSUPPORTED_ALG, "certificate algorithm");
  if (!root_->key.Verify(SignedKind::kCertificate, cert.body(), cert.signature())) {
    return Reject(v1::BAD_CERT, "certificate is not signed by the root");
  }
  v1::CertBody body;
  if (!body.ParseFromString(cert.body()))
    return Reject(v1::BAD_CERT, "certificate body does not parse");
  if (!IsValidNodeId(body.node_id()))
    return Reject(v1::BAD_CERT, "certificate names an invalid node id");
  if (body.issuer() != root_->node_id)
    return Reject(v1::BAD_CERT, "certificate issuer is not this root");
  if (body.role() == v1::ROLE_UNSPECIFIED || body.role() == v1::ROLE_ROOT ||
      !v1::Role_IsValid(body.role())) {
    return Reject(v1::BAD_CERT, "certificate role is not delegable");
  }
  if (!ValidateScope(body.scope()).ok())
    return Reject(v1::BAD_CERT, "certificate scope is malformed");
  auto key = PublicKey::FromRaw(body.alg(), body.public_key());
  if (!key.ok()) return Reject(v1::BAD_CERT, key.status().message());
  auto id = std::make_shared<Identity>(Identity{body.node_id(), body.role(), body.scope(), *key,
                                                body.not_before_ms(), body.not_after_ms(), false});
  // Cached whatever its window: validity is judged at each use, against the time of that use.
  if (check_validity) X1368_RETURN_IF_ERROR(CheckValidity(*id));
  absl::MutexLock lock(&mu_);
  if (cache_.size() >= kMaxCachedCerts) cache_.clear();
  cache_.emplace(std::move(cache_key), id);
  return std::shared_ptr<const Identity>(std::move(id));
}

absl::StatusOr<std::shared_ptr<const Identity>> TrustStore::Resolve(absl::string_view signer_id,
                                                                    const v1::DelegationCert* cert,
                                                                    bool check_validity) {
  if (signer_id == root_->node_id) return root_;
  if (cert == nullptr) {
    return Reject(v1::UNKNOWN_SIGNER,
                  absl::StrCat("\"", signer_id, "\" is not the root and carries no certificate"));
  }
  X1368_ASSIGN_OR_RETURN(std::shared_ptr<const Identity> id, VerifyCert(*cert, check_validity));
  if (id->node_id != signer_id) {
    return Reject(v1::BAD_CERT,
                  absl::StrCat("certificate is for \"", id->node_id, "\", not the signer"));
  }
  return id;
}

absl::StatusOr<v1::DelegationCert> IssueCert(const PrivateKey& root_key,
                                             const v1::CertBody& body_in) {
  v1::CertBody body = body_in;
  X1368_RETURN_IF_ERROR(ValidateNodeId(body.node_id(), "certificate node id"));
  X1368_RETURN_IF_ERROR(ValidateNodeId(body.issuer(), "certificate issuer"));
  X1368_RETURN_IF_ERROR(ValidateScope(body.scope()));
  if (body.role() == v1::ROLE_UNSPECIFIED || body.role() == v1::ROLE_ROOT) {
    return absl::InvalidArgumentError("a certificate needs a role: intermediate, client or author");
  }
  if (body.not_after_ms() <= body.not_before_ms()) {
    return absl::InvalidArgumentError("certificate not_after must be after not_before");
  }
  body.set_alg(v1::ED25519);
  v1::DelegationCert cert;
  body.SerializeToString(cert.mutable_body());
  cert.set_alg(root_key.alg());
  X1368_ASSIGN_OR_RETURN(*cert.mutable_signature(),
                         root_key.Sign(SignedKind::kCertificate, cert.body()));
  return cert;
}

}  // namespace x1368::core
