#include "x1368/core/manifest.h"

#include "absl/strings/str_cat.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"
#include "x1368/core/values.h"

namespace x1368::core {
namespace {
constexpr size_t kMaxManifestBytes = 16 << 10;
constexpr int kMaxHardwareClasses = 64;
}  // namespace

v1::Manifest BuildManifest(const ManifestSpec& spec, const ImageDigests& digests) {
  v1::Manifest m;
  m.set_component(spec.component);
  m.set_version(spec.version);
  m.set_sequence_number(spec.sequence_number);
  for (const std::string& hw : spec.hardware_classes) m.add_hardware_classes(hw);
  m.set_size(digests.size);
  m.set_sha256(digests.sha256);
  m.set_chunk_size(digests.chunk_size);
  m.set_chunk_table_sha256(Sha256(digests.table));
  m.set_uri(spec.uri);
  m.set_author_id(spec.author_id);
  m.set_created_at_ms(spec.created_at_ms);
  m.set_description(spec.description);
  return m;
}

absl::Status ValidateManifest(const v1::Manifest& m) {
  // The grammar of values.h: whatever passes here is safe to store, compare, log and print.
  auto malformed = [](const absl::Status& s) {
    return Reject(v1::MANIFEST_MALFORMED, s.message());
  };
  if (absl::Status s = ValidateIdentifier(m.component(), "component"); !s.ok()) {
    return malformed(s);
  }
  if (absl::Status s = ValidateIdentifier(m.author_id(), "author id"); !s.ok()) {
    return malformed(s);
  }
  if (absl::Status s = ValidateVersion(m.version()); !s.ok()) return malformed(s);
  if (m.sequence_number() == 0)
    return Reject(v1::MANIFEST_MALFORMED, "sequence number must be positive");
  if (m.hardware_classes().empty()) return Reject(v1::MANIFEST_MALFORMED, "no hardware class");
  if (m.hardware_classes_size() > kMaxHardwareClasses) {
    return Reject(v1::MANIFEST_MALFORMED,
                  absl::StrCat("more than ", kMaxHardwareClasses, " hardware classes"));
  }
  for (const std::string& hw : m.hardware_classes()) {
    if (absl::Status s = ValidateIdentifier(hw, "hardware class"); !s.ok()) return malformed(s);
  }
  if (m.sha256().size() != 32) return Reject(v1::MANIFEST_MALFORMED, "digest is not 32 bytes");
  if (m.size() == 0) return Reject(v1::MANIFEST_MALFORMED, "image size is zero");
  if (m.uri().empty()) return Reject(v1::MANIFEST_MALFORMED, "missing URI");
  if (absl::Status s = ValidateText(m.uri(), "URI"); !s.ok()) return malformed(s);
  if (absl::Status s = ValidateText(m.description(), "description"); !s.ok()) {
    return malformed(s);
  }
  return ValidateChunking(m);
}

absl::StatusOr<v1::SignedManifest> SignManifest(const PrivateKey& author_key,
                                                const v1::DelegationCert& author_cert,
                                                const v1::Manifest& manifest) {
  X1368_RETURN_IF_ERROR(ValidateManifest(manifest));
  v1::SignedManifest out;
  manifest.SerializeToString(out.mutable_manifest());
  out.set_author_id(manifest.author_id());
  out.set_alg(author_key.alg());
  X1368_ASSIGN_OR_RETURN(*out.mutable_signature(),
                         author_key.Sign(SignedKind::kManifest, out.manifest()));
  *out.mutable_author_cert() = author_cert;
  return out;
}

absl::StatusOr<v1::Manifest> VerifyManifest(TrustStore& trust, const v1::SignedManifest& sm) {
  if (sm.manifest().size() > kMaxManifestBytes)
    return Reject(v1::MANIFEST_MALFORMED, "manifest too large");
  v1::Manifest manifest;
  if (!manifest.ParseFromString(sm.manifest()))
    return Reject(v1::MANIFEST_MALFORMED, "manifest does not parse");
  X1368_RETURN_IF_ERROR(ValidateManifest(manifest));
  if (manifest.author_id() != sm.author_id()) {
    return Reject(v1::MANIFEST_MALFORMED, "manifest author differs from its signer");
  }
  if (!sm.has_author_cert())
    return Reject(v1::AUTHOR_NOT_TRUSTED, "manifest carries no author certificate");
  auto author = trust.Resolve(sm.author_id(), &sm.author_cert());
  if (!author.ok()) return Reject(v1::AUTHOR_NOT_TRUSTED, author.status().message());
  const Identity& id = **author;
  if (id.is_root || id.role != v1::ROLE_AUTHOR) {
    return Reject(v1::AUTHOR_NOT_TRUSTED, absl::StrCat("\"", id.node_id, "\" is not an author"));
  }
  if (!ScopeCoversComponent(id.scope, manifest.component())) {
    return Reject(v1::AUTHOR_NOT_TRUSTED,
                  absl::StrCat("author \"", id.node_id, "\" may not sign component \"",
                               manifest.component(), "\""));
  }
  if (sm.alg() != id.key.alg()) return Reject(v1::UNSUPPORTED_ALG, "manifest algorithm");
  if (!id.key.Verify(SignedKind::kManifest, sm.manifest(), sm.signature())) {
    return Reject(v1::MANIFEST_BAD_SIGNATURE, "author signature does not verify");
  }
  return manifest;
}

}  // namespace x1368::core
