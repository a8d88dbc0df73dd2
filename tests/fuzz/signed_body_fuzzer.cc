// libFuzzer target: arbitrary message bodies, properly signed, into a live tree. Envelope
// fuzzing alone stops at the signature; this target signs whatever the fuzzer makes with the key
// of a legitimate parent or child, so the bytes reach the handlers of the client, the
// intermediate and the root as an authenticated peer would send them (a compromised gateway or
// device key, docs/architecture.md §5: the receiver must still reject with a reason and never
// crash).
//
// The tree is testing::TestTree on the in-memory FakeBroker: root, intermediate "gw1", client
// "dev-1", each with its own event loop thread, plus release "2.0.0" of component "fw" (the
// image of fuzz_keys.h) published on root, so a seed can run a real update end to end. It is
// built once and rebuilt every kInputsPerTree inputs to bound what accumulates.
//
// Input layout:
//   byte 0   route: which topic the message is published on, and who signs it (kRoutes)
//   byte 1   flags (kRootSigns, kKeepHeader, kSignNested)
//   rest     a serialized v1::Body. Normally the signer's own EnvelopeSealer fills sender,
//            recipient, a fresh sequence number and the validity window, then signs; with
//            kKeepHeader the body's recipient and window are kept; bytes that do not parse as a
//            Body are signed as they are.
// After each publish the harness waits until every node's event loop has handled what was
// queued (twice round, for what a node sends on to the next), so one input is one exchange.
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_keys.h"
#include "testing/pki.h"
#include "testing/tree.h"
#include "x1368/core/clock.h"
#include "x1368/core/crypto.h"
#include "x1368/core/envelope.h"
#include "x1368/core/file_util.h"
#include "x1368/core/topics.h"
#include "x1368/v1/envelope.pb.h"

namespace x1368::fuzz {
namespace {

constexpr int kInputsPerTree = 4000;
constexpr int64_t kTtlMs = 10 * 60 * 1000;
constexpr auto kDrainTimeout = std::chrono::seconds(30);

enum class Who { kRoot, kGateway, kDevice };

struct Route {
  const char* topic;
  Who signer;
  const char* recipient;
};

// Routes 0-3 are read by dev-1 (from gw1), 4-6 by gw1 (from dev-1), 7-9 by root (from gw1) and
// 10-13 by gw1 (from root).
constexpr Route kRoutes[] = {
    {"x1368/gw1/dev-1/down/cmd", Who::kGateway, "dev-1"},
    {"x1368/gw1/_all/down/cmd", Who::kGateway, "_all"},
    {"x1368/gw1/dev-1/down/desired", Who::kGateway, "dev-1"},
    {"x1368/gw1/dev-1/down/fw", Who::kGateway, "dev-1"},
    {"x1368/gw1/dev-1/up/status", Who::kDevice, "gw1"},
    {"x1368/gw1/dev-1/up/fw", Who::kDevice, "gw1"},
    {"x1368/gw1/dev-1/up/presence", Who::kDevice, "gw1"},
    {"x1368/root/gw1/up/status", Who::kGateway, "root"},
    {"x1368/root/gw1/up/fw", Who::kGateway, "root"},
    {"x1368/root/gw1/up/presence", Who::kGateway, "root"},
    {"x1368/root/gw1/down/cmd", Who::kRoot, "gw1"},
    {"x1368/root/_all/down/cmd", Who::kRoot, "_all"},
    {"x1368/root/gw1/down/desired", Who::kRoot, "gw1"},
    {"x1368/root/gw1/down/fw", Who::kRoot, "gw1"},
};
constexpr size_t kRoutesToDevice = 4;

// On routes to dev-1, root signs instead of gw1 (a child accepts its root as well as its parent).
constexpr uint8_t kRootSigns = 1;
// Keep the body's recipient and validity window (the sequence number is still fresh).
constexpr uint8_t kKeepHeader = 2;
// Sign what is nested too: each DesiredState directive (bytes taken as a Body) by root, each
// manifest by the author, each StatusBatch report (bytes taken as a Body) by dev-1.
constexpr uint8_t kSignNested = 4;

struct Signer {
  std::string id;
  core::EnvelopeSealer* sealer;  // the node's own, so its sequence numbers stay one stream
  core::PrivateKey key;
  std::optional<v1::DelegationCert> cert;
};

v1::DelegationCert LoadCert(const std::string& path) {
  std::string raw = FuzzMust(core::ReadFile(path), "read certificate");
  v1::DelegationCert cert;
  if (!cert.ParseFromString(raw)) {
    fprintf(stderr, "signed_body: %s is not a certificate\n", path.c_str());
    abort();
  }
  return cert;
}

class Fixture {
 public:
  Fixture() {
    tree_ = std::make_unique<testing::TestTree>(nullptr);
    root_ = tree_->AddRoot();
    gateway_ = tree_->AddIntermediate("gw1", "root", {"dev-*"});
    device_ = tree_->AddClient("dev-1", "gw1");
    FuzzMust(
        tree_->Publish(testing::TestPki::MakeImage(kFuzzImageSize, kFuzzImageSeed), "2.0.0", 2),
        "publish release 2.0.0");
    const std::string& dir = tree_->dir();
    root_signer_.emplace(
        Signer{root_->id, &root_->node->sealer(), tree_->pki().root_key(), std::nullopt});
    gateway_signer_.emplace(
        Signer{gateway_->id, &gateway_->node->sealer(),
               FuzzMust(core::PrivateKey::LoadPemFile(dir + "/gw1.key"), "gw1 key"),
               LoadCert(dir + "/gw1.cert")});
    device_signer_.emplace(
        Signer{device_->id, &device_->node->sealer(),
               FuzzMust(core::PrivateKey::LoadPemFile(dir + "/dev-1.key"), "dev-1 key"),
               LoadCert(dir + "/dev-1.cert")});
  }

  // Stops every node (joins its threads) before the tree's directory goes away.
  ~Fixture() = default;

  void Run(const uint8_t* data, size_t size) {
    const size_t route_index = data[0] % std::size(kRoutes);
    const Route& route = kRoutes[route_index];
    const uint8_t flags = data[1];
    Signer* signer = SignerFor(route.signer);
    if (route_index < kRoutesToDevice && (flags & kRootSigns)) signer = &*root_signer_;
    std::string body_bytes(reinterpret_cast<const char*>(data + 2), size - 2);

    std::string envelope;
    v1::Body body;
    if (!body.ParseFromString(body_bytes)) {
      envelope = SignRaw(*signer, body_bytes);  // reaches "body does not parse" behind a signature
    } else {
      if (flags & kSignNested) SignNested(&body);
      envelope = Seal(*signer, route.recipient, body, (flags & kKeepHeader) != 0);
    }
    tree_->fake_broker()->Inject({route.topic, envelope});
    Drain();
  }

 private:
  Signer* SignerFor(Who who) {
    switch (who) {
      case Who::kRoot:
        return &*root_signer_;
      case Who::kGateway:
        return &*gateway_signer_;
      case Who::kDevice:
        return &*device_signer_;
    }
    return &*root_signer_;
  }

  static std::string SignRaw(const Signer& signer, const std::string& body_bytes) {
    v1::Envelope env;
    env.set_signer_id(signer.id);
    env.set_alg(v1::ED25519);
    env.set_body(body_bytes);
    env.set_signature(
        FuzzMust(signer.key.Sign(core::SignedKind::kEnvelopeBody, body_bytes), "sign raw body"));
    if (signer.cert) *env.mutable_signer_cert() = *signer.cert;
    return env.SerializeAsString();
  }

  // Sealed by the signer's own sealer; with `keep_header`, re-signed with the body's recipient
  // and validity window but the sealer's sender and sequence number.
  static std::string Seal(const Signer& signer, absl::string_view recipient, const v1::Body& body,
                          bool keep_header) {
    std::string sealed = FuzzMust(signer.sealer->Seal(recipient, body, kTtlMs), "seal");
    if (!keep_header) return sealed;
    v1::Envelope env;
    v1::Body fresh;
    if (!env.ParseFromString(sealed) || !fresh.ParseFromString(env.body())) abort();
    v1::Body kept = body;
    kept.set_sender(fresh.sender());
    kept.set_seq(fresh.seq());
    env.set_body(kept.SerializeAsString());
    env.set_signature(
        FuzzMust(signer.key.Sign(core::SignedKind::kEnvelopeBody, env.body()), "sign body"));
    return env.SerializeAsString();
  }

  void SignManifest(v1::SignedManifest* signed_manifest) const {
    v1::Manifest manifest;
    if (!manifest.ParseFromString(signed_manifest->manifest())) return;
    const testing::TestNode& author = tree_->author();
    if (manifest.author_id().empty()) manifest.set_author_id(author.id);
    signed_manifest->set_manifest(manifest.SerializeAsString());
    signed_manifest->set_author_id(manifest.author_id());
    signed_manifest->set_alg(v1::ED25519);
    signed_manifest->set_signature(
        FuzzMust(author.key.Sign(core::SignedKind::kManifest, signed_manifest->manifest()),
                 "sign manifest"));
    *signed_manifest->mutable_author_cert() = author.cert;
  }

  void SignNested(v1::Body* body) {
    if (body->has_directive()) SignManifest(body->mutable_directive()->mutable_manifest());
    if (body->has_desired()) {
      v1::DesiredState* desired = body->mutable_desired();
      for (std::string& directive : *desired->mutable_directives()) {
        v1::Body inner;
        if (!inner.ParseFromString(directive)) continue;
        if (inner.has_directive()) SignManifest(inner.mutable_directive()->mutable_manifest());
        std::string recipient = inner.recipient().empty() ? "_all" : inner.recipient();
        directive = Seal(*root_signer_, recipient, inner, /*keep_header=*/false);
        // A grant for this campaign without a digest gets the digest of the signed directive.
        v1::Envelope env;
        if (!env.ParseFromString(directive)) abort();
        for (v1::Go& grant : *desired->mutable_grants()) {
          if (grant.directive_digest().empty() && inner.has_directive() &&
              grant.campaign_id() == inner.directive().campaign_id()) {
            grant.set_directive_digest(core::Sha256(env.body()));
          }
        }
      }
    }
    if (body->has_status_batch()) {
      for (std::string& report : *body->mutable_status_batch()->mutable_reports()) {
        v1::Body inner;
        if (!inner.ParseFromString(report)) continue;
        std::string recipient = inner.recipient().empty() ? "gw1" : inner.recipient();
        report = Seal(*device_signer_, recipient, inner, /*keep_header=*/false);
      }
    }
  }

  // Waits until each loop has run everything queued before now; twice round the tree, so what
  // dev-1 sends to gw1 and gw1 to root is handled too (timers that fire later are not waited
  // for). A loop that does not get there in kDrainTimeout is a hang: abort, so libFuzzer keeps
  // the input.
  void Drain() {
    std::array<std::pair<core::EventLoop*, const std::string*>, 3> loops = {
        std::pair{device_->loop.get(), &device_->id},
        std::pair{gateway_->loop.get(), &gateway_->id}, std::pair{root_->loop.get(), &root_->id}};
    for (int round = 0; round < 2; ++round) {
      for (auto [loop, id] : loops) {
        auto done = std::make_shared<std::promise<void>>();
        std::future<void> f = done->get_future();
        loop->Post([done] { done->set_value(); });
        if (f.wait_for(kDrainTimeout) != std::future_status::ready) {
          fprintf(stderr, "signed_body: the event loop of %s did not drain\n", id->c_str());
          abort();
        }
      }
    }
  }

  std::unique_ptr<testing::TestTree> tree_;
  testing::RootNode* root_ = nullptr;
  testing::IntermediateNode* gateway_ = nullptr;
  testing::ClientNode* device_ = nullptr;
  // Set in the constructor (a PrivateKey has no empty state).
  std::optional<Signer> root_signer_;
  std::optional<Signer> gateway_signer_;
  std::optional<Signer> device_signer_;
};

std::unique_ptr<Fixture>& Current() {
  static auto* fixture = new std::unique_ptr<Fixture>();
  return *fixture;
}

// Builds the first tree. The nodes' threads must stop before anything they use is destroyed at
// exit, so the tree is torn down by an atexit handler registered after the tree is built:
// handlers and static destructors run in reverse order, so it runs before the destructors of
// the statics the tree brought up (RealClock::Get()'s clock is one).
void Setup() {
  // Every node fsyncs its stores and databases: keep the tree on tmpfs when there is one.
  if (access("/dev/shm", W_OK) == 0) setenv("TMPDIR", "/dev/shm", 1);
  core::RealClock::Get();
  Current() = std::make_unique<Fixture>();
  atexit([] { Current().reset(); });
}

}  // namespace
}  // namespace x1368::fuzz

// Per-input leak checking cannot work on a live tree: the nodes' threads allocate and free in the
// background and the tree keeps state across inputs, so nearly every input ends with more
// mallocs than frees, and libFuzzer would run it a second time and scan the heap after each one
// (ten times slower, for nothing). It is turned off here, before libFuzzer parses its flags (an
// explicit -detect_leaks=1 later on the command line still wins). Leaks are still caught:
// the tree is torn down at exit, before LeakSanitizer's final check.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  static std::vector<char*>* args = new std::vector<char*>(*argv, *argv + *argc);
  static char no_leak_checks[] = "-detect_leaks=0";
  args->insert(args->begin() + 1, no_leak_checks);
  *argc = static_cast<int>(args->size());
  args->push_back(nullptr);
  *argv = args->data();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace x1368::fuzz;
  static int inputs = [] {
    Setup();
    return 0;
  }();
  if (size < 2) return 0;
  std::unique_ptr<Fixture>& fixture = Current();
  if (++inputs % kInputsPerTree == 0) {
    fixture.reset();
    fixture = std::make_unique<Fixture>();
  }
  fixture->Run(data, size);
  return 0;
}
