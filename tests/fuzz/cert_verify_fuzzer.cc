// libFuzzer target: bytes as a v1::DelegationCert into TrustStore::VerifyCert (docs/architecture.md
// §5). Every envelope from a non-root signer carries one. The first input byte holds flags; with
// bit 0 set the harness signs the certificate body with the fixed root key of fuzz_keys.h
// before verifying, so fuzzing reaches the body parsing and field checks behind the signature
// (a forged-root scenario: what the root signs must still be checked). Beyond "never crashes":
// a rejection carries a reason; an accepted certificate names a valid node id with a delegable
// role and a well-formed scope, is valid now, is served from the cache the second time, and
// resolves for its own id only.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "fuzz_keys.h"
#include "x1368/core/clock.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"
#include "x1368/core/trust.h"
#include "x1368/v1/certificate.pb.h"

namespace x1368::fuzz {
namespace {

struct Harness {
  core::FakeClock clock{kFuzzNowMs};
  core::TrustStore trust{std::string(kRootId), FuzzPki().root.key.public_key(), &clock};
};

void Fail(const char* what) {
  fprintf(stderr, "cert_verify: %s\n", what);
  abort();
}

}  // namespace
}  // namespace x1368::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace x1368;
  static fuzz::Harness* h = new fuzz::Harness();
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  v1::DelegationCert cert;
  if (!cert.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
  if (flags & 1) {
    *cert.mutable_signature() = fuzz::FuzzMust(
        fuzz::FuzzPki().root.key.Sign(core::SignedKind::kCertificate, cert.body()), "sign cert");
  }
  auto id = h->trust.VerifyCert(cert);
  if (!id.ok()) {
    if (core::ReasonOf(id.status()) == v1::REASON_UNSPECIFIED)
      fuzz::Fail("rejection without a reason");
    return 0;
  }
  const core::Identity& identity = **id;
  if (!core::IsValidNodeId(identity.node_id)) fuzz::Fail("accepted an invalid node id");
  if (identity.is_root) fuzz::Fail("a certificate made a root identity");
  if (identity.role != v1::ROLE_INTERMEDIATE && identity.role != v1::ROLE_CLIENT &&
      identity.role != v1::ROLE_AUTHOR) {
    fuzz::Fail("accepted a role that is not delegable");
  }
  if (!core::ValidateScope(identity.scope).ok()) fuzz::Fail("accepted a malformed scope");
  const int64_t now = h->clock.NowMs();
  if (now < identity.not_before_ms || now > identity.not_after_ms)
    fuzz::Fail("accepted out of validity");
  if (identity.key.raw().size() != 32) fuzz::Fail("accepted a key that is not 32 bytes");
  auto cached = h->trust.VerifyCert(cert);
  if (!cached.ok() || cached->get() != id->get()) fuzz::Fail("second verification differs");
  auto resolved = h->trust.Resolve(identity.node_id, &cert);
  if (!resolved.ok() || (*resolved)->node_id != identity.node_id) fuzz::Fail("does not resolve");
  auto as_root = h->trust.Resolve(fuzz::kRootId, &cert);
  if (!as_root.ok() || !(*as_root)->is_root)
    fuzz::Fail("the root id did not resolve to the anchor");
  if (identity.node_id != "other-node" && h->trust.Resolve("other-node", &cert).ok()) {
    fuzz::Fail("a certificate resolved for another id");
  }
  return 0;
}
