// Author-signed manifests (X.1368 §3.2.4, §10 a.ii-a.iii, §11.4 a; docs/architecture.md §5 "author
// keys are separate from tracker keys"). A device installs only what an author named by root for
// that component signed: a compromised tracker alone cannot make a device install anything.
// Thread-safe: pure functions over a thread-safe TrustStore.
#ifndef X1368_CORE_MANIFEST_H_
#define X1368_CORE_MANIFEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "x1368/core/chunk_table.h"
#include "x1368/core/crypto.h"
#include "x1368/core/trust.h"
#include "x1368/v1/manifest.pb.h"

namespace x1368::core {

inline constexpr absl::string_view kChunkServiceUri = "x1368:chunks";

// What an author states about an image: every Manifest field but those taken from the image
// itself (its SHA-256, size and chunk table).
struct ManifestSpec {
  std::string component;
  std::string version;
  uint64_t sequence_number = 0;
  std::vector<std::string> hardware_classes;
  std::string uri = std::string(kChunkServiceUri);
  std::string author_id;
  int64_t created_at_ms = 0;
  std::string description;
};

// The manifest of the image `digests` describe (DigestImage, DigestImageFile). Not checked:
// SignManifest validates what it signs (and tests build invalid manifests on purpose).
v1::Manifest BuildManifest(const ManifestSpec& spec, const ImageDigests& digests);

// Checks every field against the grammar of values.h (issue #14: values from the wire are data):
// component, author id and hardware classes (1-64 of them) are identifiers, the version is
// SemVer 2.0, the URI and description are control-free text of at most 1024 bytes; and a
// positive sequence number, a 32-byte digest, a size and the chunking (ValidateChunking).
// MANIFEST_MALFORMED. SignManifest (trackerctl author sign), root's release publish and every
// receiver (VerifyManifest) apply it.
absl::Status ValidateManifest(const v1::Manifest& manifest);

// Signs `manifest` with the author's key; `author_cert` is embedded for devices to check.
absl::StatusOr<v1::SignedManifest> SignManifest(const PrivateKey& author_key,
                                                const v1::DelegationCert& author_cert,
                                                const v1::Manifest& manifest);

// Verifies the author certificate (root-issued, role AUTHOR, scope covering the component) and
// the signature, and returns the manifest. Rejections: MANIFEST_MALFORMED, AUTHOR_NOT_TRUSTED,
// MANIFEST_BAD_SIGNATURE.
absl::StatusOr<v1::Manifest> VerifyManifest(TrustStore& trust,
                                            const v1::SignedManifest& signed_manifest);

}  // namespace x1368::core

#endif  // X1368_CORE_MANIFEST_H_
