#include "testing/pki.h"

#include <stdlib.h>

#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "x1368/core/file_util.h"
#include "x1368/core/manifest.h"
#include "x1368/core/trust.h"

namespace x1368::testing {
namespace {
template <typename T>
T Must(absl::StatusOr<T> v) {
  if (!v.ok()) {
    fprintf(stderr, "test setup failed: %s\n", v.status().ToString().c_str());
    abort();
  }
  return *std::move(v);
}
void Must(const absl::Status& s) {
  if (!s.ok()) {
    fprintf(stderr, "test setup failed: %s\n", s.ToString().c_str());
    abort();
  }
}
}  // namespace

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp", "/x1368-test-XXXXXX");
  char* made = mkdtemp(tmpl.data());
  if (made == nullptr) abort();
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

TestPki::TestPki(std::string dir, std::string root_id)
    : dir_(std::move(dir)),
      root_id_(std::move(root_id)),
      root_key_(Must(core::PrivateKey::Generate())) {
  Must(core::WriteFileAtomic(root_key_path(), root_key_.ToPem(), 0600));
  Must(core::WriteFileAtomic(root_pub_path(), root_key_.public_key().ToPem()));
}

absl::StatusOr<TestPki> TestPki::Open(std::string dir, std::string root_id) {
  auto key = core::PrivateKey::LoadPemFile(dir + "/" + root_id + ".key");
  if (!key.ok()) return key.status();
  return TestPki(std::move(dir), std::move(root_id), *std::move(key));
}

TestNode TestPki::Make(const std::string& id, v1::Role role, std::vector<std::string> scope_nodes,
                       std::vector<std::string> components, int64_t valid_from_ms,
                       int64_t valid_until_ms) {
  TestNode n{id, Must(core::PrivateKey::Generate()), {}, "", ""};
  v1::CertBody body;
  body.set_node_id(id);
  body.set_role(role);
  body.set_public_key(n.key.public_key().raw());
  for (auto& s : scope_nodes) body.mutable_scope()->add_nodes(s);
  for (auto& c : components) body.mutable_scope()->add_components(c);
  body.set_not_before_ms(valid_from_ms);
  body.set_not_after_ms(valid_until_ms);
  body.set_issuer(root_id_);
  body.set_serial(1);
  n.cert = Must(core::IssueCert(root_key_, body));
  return n;
}

TestNode TestPki::Issue(const std::string& id, v1::Role role, std::vector<std::string> scope_nodes,
                        std::vector<std::string> components, int64_t valid_from_ms,
                        int64_t valid_until_ms) {
  TestNode n =
      Make(id, role, std::move(scope_nodes), std::move(components), valid_from_ms, valid_until_ms);
  n.key_path = dir_ + "/" + id + ".key";
  n.cert_path = dir_ + "/" + id + ".cert";
  Must(core::WriteFileAtomic(n.key_path, n.key.ToPem(), 0600));
  Must(core::WriteFileAtomic(n.cert_path, n.cert.SerializeAsString()));
  return n;
}

v1::Manifest TestPki::ManifestFor(const std::string& image, const std::string& component,
                                  const std::string& version, uint64_t sequence,
                                  std::vector<std::string> hardware_classes,
                                  const std::string& author_id, uint32_t chunk_size) {
  core::ManifestSpec spec;
  spec.component = component;
  spec.version = version;
  spec.sequence_number = sequence;
  spec.hardware_classes = std::move(hardware_classes);
  spec.author_id = author_id;
  spec.created_at_ms = 1'700'000'000'000;
  return core::BuildManifest(spec, core::DigestImage(image, chunk_size));
}

v1::SignedManifest TestPki::Sign(const TestNode& author, const v1::Manifest& manifest) {
  return Must(core::SignManifest(author.key, author.cert, manifest));
}

std::string TestPki::MakeImage(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(rng() & 0xff);
  return out;
}

}  // namespace x1368::testing
