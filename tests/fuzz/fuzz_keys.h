// Fixed key material shared by the fuzz targets and tests/fuzz/make_seeds.cc, so the seed corpora
// hold real signatures the fuzzers accept: the same root anchor, the same delegation
// certificates (Ed25519 is deterministic, so IssueCert over the same body gives the same bytes
// every run) and the same clock.
//
// These keys were made once with `openssl genpkey -algorithm ed25519` for fuzzing only; they
// protect nothing. Thread-safe: FuzzPki() is built once and immutable afterwards.
#ifndef X1368_TESTS_FUZZ_FUZZ_KEYS_H_
#define X1368_TESTS_FUZZ_FUZZ_KEYS_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "x1368/core/crypto.h"
#include "x1368/core/trust.h"
#include "x1368/v1/certificate.pb.h"

namespace x1368::fuzz {

// The time every fuzz target's FakeClock shows (FakeClock's default), and the seeds' issue time.
inline constexpr int64_t kFuzzNowMs = 1'700'000'000'000;
inline constexpr int64_t kFuzzCertNotAfterMs = 4'000'000'000'000;

inline constexpr absl::string_view kRootId = "root";
inline constexpr absl::string_view kGatewayId = "gw1";
inline constexpr absl::string_view kDeviceId = "dev-1";
inline constexpr absl::string_view kAuthorId = "author-1";

inline constexpr absl::string_view kRootKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIFQJRps36TU/VMfJu1UJ3df424WxhNUnWkGAKwSvu/Nc\n"
    "-----END PRIVATE KEY-----\n";
inline constexpr absl::string_view kGatewayKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIHuDoBA6LOgab9KeDMctU4x3p8pupsKWp9XHR14Q4DrA\n"
    "-----END PRIVATE KEY-----\n";
inline constexpr absl::string_view kDeviceKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIOtrq/wpVGLFQO38l3A5Yjme2gnld60LgRYV5+Wf9uVl\n"
    "-----END PRIVATE KEY-----\n";
inline constexpr absl::string_view kAuthorKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJO0CbLdIXkWs6Jr5I9RYl/MFPKDe/pUHafwXsnKRu8l\n"
    "-----END PRIVATE KEY-----\n";

// The firmware image signed_body's tree publishes as release "2.0.0" of component "fw", so seeds
// can name its digest (testing::TestPki::MakeImage(kFuzzImageSize, kFuzzImageSeed)).
inline constexpr size_t kFuzzImageSize = 40'000;
inline constexpr uint32_t kFuzzImageSeed = 1368;

template <typename T>
T FuzzMust(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    fprintf(stderr, "fuzz setup failed (%s): %s\n", what, v.status().ToString().c_str());
    abort();
  }
  return *std::move(v);
}

struct FuzzIdentity {
  std::string id;
  core::PrivateKey key;
  v1::DelegationCert cert;  // empty for the root
};

struct FuzzKeys {
  FuzzIdentity root;
  FuzzIdentity gateway;  // "gw1": intermediate, scope "dev-*"
  FuzzIdentity device;   // "dev-1": client
  FuzzIdentity author;   // "author-1": author of component "fw"
};

inline v1::DelegationCert FuzzCert(const core::PrivateKey& root_key, absl::string_view id,
                                   v1::Role role, const core::PrivateKey& key,
                                   std::vector<std::string> nodes,
                                   std::vector<std::string> components) {
  v1::CertBody body;
  body.set_node_id(std::string(id));
  body.set_role(role);
  body.set_public_key(key.public_key().raw());
  for (auto& n : nodes) body.mutable_scope()->add_nodes(n);
  for (auto& c : components) body.mutable_scope()->add_components(c);
  body.set_not_before_ms(0);
  body.set_not_after_ms(kFuzzCertNotAfterMs);
  body.set_issuer(std::string(kRootId));
  body.set_serial(1);
  return FuzzMust(core::IssueCert(root_key, body), "issue certificate");
}

inline const FuzzKeys& FuzzPki() {
  static const FuzzKeys* keys = [] {
    core::PrivateKey root = FuzzMust(core::PrivateKey::FromPem(kRootKeyPem), "root key");
    core::PrivateKey gw = FuzzMust(core::PrivateKey::FromPem(kGatewayKeyPem), "gateway key");
    core::PrivateKey dev = FuzzMust(core::PrivateKey::FromPem(kDeviceKeyPem), "device key");
    core::PrivateKey author = FuzzMust(core::PrivateKey::FromPem(kAuthorKeyPem), "author key");
    return new FuzzKeys{
        {std::string(kRootId), root, {}},
        {std::string(kGatewayId), gw,
         FuzzCert(root, kGatewayId, v1::ROLE_INTERMEDIATE, gw, {"dev-*"}, {})},
        {std::string(kDeviceId), dev, FuzzCert(root, kDeviceId, v1::ROLE_CLIENT, dev, {}, {})},
        {std::string(kAuthorId), author,
         FuzzCert(root, kAuthorId, v1::ROLE_AUTHOR, author, {}, {"fw"})},
    };
  }();
  return *keys;
}

}  // namespace x1368::fuzz

#endif  // X1368_TESTS_FUZZ_FUZZ_KEYS_H_
