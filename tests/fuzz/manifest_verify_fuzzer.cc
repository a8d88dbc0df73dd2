// libFuzzer target: bytes as a v1::SignedManifest into core::VerifyManifest (X.1368 §11.4 a,
// docs/architecture.md §5). Manifests arrive inside directives and release submissions; the author
// certificate inside is checked against the fixed root anchor of fuzz_keys.h, so the seeds'
// manifests (signed by the fixed author key) verify and their mutations reach every check.
// Beyond "never crashes": a rejection carries a reason, and an accepted manifest passes
// ValidateManifest, names its signer and is for a component the author may sign.
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "fuzz_keys.h"
#include "x1368/core/clock.h"
#include "x1368/core/manifest.h"
#include "x1368/core/reason.h"
#include "x1368/core/trust.h"
#include "x1368/v1/manifest.pb.h"

namespace x1368::fuzz {
namespace {

struct Harness {
  core::FakeClock clock{kFuzzNowMs};
  core::TrustStore trust{std::string(kRootId), FuzzPki().root.key.public_key(), &clock};
};

void Fail(const char* what) {
  fprintf(stderr, "manifest_verify: %s\n", what);
  abort();
}

}  // namespace
}  // namespace x1368::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace x1368;
  static fuzz::Harness* h = new fuzz::Harness();
  v1::SignedManifest signed_manifest;
  if (!signed_manifest.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto manifest = core::VerifyManifest(h->trust, signed_manifest);
  if (!manifest.ok()) {
    if (core::ReasonOf(manifest.status()) == v1::REASON_UNSPECIFIED) {
      fuzz::Fail("rejection without a reason");
    }
    return 0;
  }
  if (!core::ValidateManifest(*manifest).ok()) fuzz::Fail("accepted a malformed manifest");
  if (manifest->author_id() != signed_manifest.author_id()) fuzz::Fail("author is not the signer");
  auto author = h->trust.VerifyCert(signed_manifest.author_cert());
  if (!author.ok()) fuzz::Fail("accepted with an author certificate that does not verify");
  if ((*author)->role != v1::ROLE_AUTHOR) fuzz::Fail("accepted a manifest signed by a non-author");
  if (!core::ScopeCoversComponent((*author)->scope, manifest->component())) {
    fuzz::Fail("accepted a manifest for a component outside the author's scope");
  }
  return 0;
}
