// libFuzzer target: raw network bytes into EnvelopeOpener::Open (docs/architecture.md §6), the
// first thing every node does with a payload. The first input byte picks the origin (kFromParent,
// kFromChild, kRelayed, kEmbedded) and a small size limit; the rest is the envelope.
//
// The trust store holds the fixed root anchor of fuzz_keys.h, so the real sealed envelopes of
// the seed corpus (tests/fuzz/make_seeds.cc) open, and mutations of them walk every rule after
// the signature as well as before it. Each input gets a fresh replay window (MemKvStore), so a
// crash reproduces from its input alone. Checked beyond "never crashes":
//   - every rejection carries a v1::Reason (docs/architecture.md §6: "a counted reason");
//   - an accepted message names its signer as sender and has a message type;
//   - the same bytes opened again are a DUPLICATE (except kEmbedded, which has no window, and
//     chunk requests and time messages, which take no part in it and open again: a chunk request
//     is idempotent, a time answer is bound to its request by a nonce);
//   - an accepted message has not expired (except time messages: their clock may be the wrong
//     one, the nonce makes them fresh).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "absl/strings/string_view.h"
#include "fuzz_keys.h"
#include "x1368/core/clock.h"
#include "x1368/core/envelope.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/reason.h"
#include "x1368/core/sequence.h"
#include "x1368/core/trust.h"

namespace x1368::fuzz {
namespace {

struct Harness {
  core::FakeClock clock{kFuzzNowMs};
  core::TrustStore trust{std::string(kRootId), FuzzPki().root.key.public_key(), &clock};
  std::shared_ptr<const core::Identity> gateway =
      FuzzMust(trust.VerifyCert(FuzzPki().gateway.cert), "gateway identity");
  std::shared_ptr<const core::Identity> device =
      FuzzMust(trust.VerifyCert(FuzzPki().device.cert), "device identity");
};

Harness& GetHarness() {
  static Harness* h = new Harness();
  return *h;
}

void Fail(const char* what) {
  fprintf(stderr, "envelope_open: %s\n", what);
  abort();
}

}  // namespace
}  // namespace x1368::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace x1368;
  using core::Origin;
  if (size < 1) return 0;
  fuzz::Harness& h = fuzz::GetHarness();
  const Origin origin = static_cast<Origin>(data[0] % 4);
  absl::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);

  // Who is opening, and what it expects, for each origin: dev-1 reading its parent gw1 (or
  // root), gw1 reading its child dev-1, root reading a report relayed by gw1, and dev-1 reading
  // a root directive embedded in a desired state.
  std::shared_ptr<const core::Identity> self;
  core::OpenContext ctx;
  ctx.origin = origin;
  switch (origin) {
    case Origin::kFromParent:
      self = h.device;
      ctx.expected_signer = fuzz::kGatewayId;
      break;
    case Origin::kFromChild:
      self = h.gateway;
      ctx.expected_signer = fuzz::kDeviceId;
      break;
    case Origin::kRelayed:
      self = h.trust.root();
      ctx.via = h.gateway.get();
      break;
    case Origin::kEmbedded:
      self = h.device;
      break;
  }
  core::EnvelopeLimits limits;
  if (data[0] & 0x80) limits.max_message_bytes = 512;  // reach OVERSIZE with small inputs too

  core::MemKvStore store;
  core::ReplayGuard replay(&store);
  core::EnvelopeOpener opener(self, &h.trust, &replay, &h.clock, limits);
  auto opened = opener.Open(bytes, ctx);
  if (!opened.ok()) {
    if (core::ReasonOf(opened.status()) == v1::REASON_UNSPECIFIED) {
      fprintf(stderr, "%s\n", opened.status().ToString().c_str());
      fuzz::Fail("rejection without a reason");
    }
    return 0;
  }
  if (opened->signer == nullptr) fuzz::Fail("accepted without a signer");
  if (opened->body.sender() != opened->signer->node_id) fuzz::Fail("sender is not the signer");
  if (opened->body.message_case() == v1::Body::MESSAGE_NOT_SET) fuzz::Fail("accepted no message");
  if (opened->body_digest.size() != 32) fuzz::Fail("body digest is not a SHA-256");
  // Time requests and answers are judged by their nonce, not by the clock they may correct.
  const bool time_message = opened->body.has_time_request() || opened->body.has_time_response();
  if (!time_message && opened->body.expires_at_ms() <= h.clock.NowMs()) {
    fuzz::Fail("accepted an expired message");
  }
  if (origin == Origin::kEmbedded) {
    if (!opened->signer->is_root) fuzz::Fail("embedded message not signed by root");
    return 0;
  }
  auto again = opener.Open(bytes, ctx);
  if (opened->body.has_chunk_request() || time_message) {
    if (!again.ok()) fuzz::Fail("a chunk request or time message does not open again");
    return 0;
  }
  if (again.ok() || core::ReasonOf(again.status()) != v1::DUPLICATE) {
    fuzz::Fail("the same envelope opened twice is not a DUPLICATE");
  }
  if (!replay.Flush().ok()) fuzz::Fail("replay window does not persist");
  return 0;
}
