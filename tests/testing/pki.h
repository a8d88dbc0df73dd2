// Real keys, certificates and signed releases for tests, made with throwaway keys in a
// temporary directory (docs/style.md: real cryptography in tests, no mocked verification).
#ifndef X1368_TESTING_PKI_H_
#define X1368_TESTING_PKI_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "x1368/core/crypto.h"
#include "x1368/v1/certificate.pb.h"
#include "x1368/v1/manifest.pb.h"

namespace x1368::testing {

// A fresh directory under $TMPDIR (or /tmp), removed when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct TestNode {
  std::string id;
  core::PrivateKey key;
  v1::DelegationCert cert;
  std::string key_path;
  std::string cert_path;
};

class TestPki {
 public:
  // Makes the root key (id "root") and writes root.key / root.pub into `dir`.
  explicit TestPki(std::string dir, std::string root_id = "root");
  // The PKI another TestPki made in `dir` (its root key read back): a second process issues
  // certificates under the same root.
  static absl::StatusOr<TestPki> Open(std::string dir, std::string root_id = "root");

  const std::string& root_id() const { return root_id_; }
  const core::PrivateKey& root_key() const { return root_key_; }
  std::string root_key_path() const { return dir_ + "/" + root_id_ + ".key"; }
  std::string root_pub_path() const { return dir_ + "/" + root_id_ + ".pub"; }

  // A node key and a root-issued certificate, kept in memory only (key_path and cert_path
  // empty): for fleets too large to write two files per node.
  TestNode Make(const std::string& id, v1::Role role, std::vector<std::string> scope_nodes = {},
                std::vector<std::string> components = {}, int64_t valid_from_ms = 0,
                int64_t valid_until_ms = 4'000'000'000'000);
  // Make(), with both written to `dir` as <id>.key / <id>.cert.
  TestNode Issue(const std::string& id, v1::Role role, std::vector<std::string> scope_nodes = {},
                 std::vector<std::string> components = {}, int64_t valid_from_ms = 0,
                 int64_t valid_until_ms = 4'000'000'000'000);

  // A manifest for `image` in chunks of `chunk_size` (small, so the tests' small images have
  // several).
  static v1::Manifest ManifestFor(const std::string& image, const std::string& component,
                                  const std::string& version, uint64_t sequence,
                                  std::vector<std::string> hardware_classes,
                                  const std::string& author_id, uint32_t chunk_size = 16 * 1024);
  static v1::SignedManifest Sign(const TestNode& author, const v1::Manifest& manifest);
  // Deterministic pseudo-random image bytes.
  static std::string MakeImage(size_t size, uint32_t seed);

 private:
  TestPki(std::string dir, std::string root_id, core::PrivateKey root_key)
      : dir_(std::move(dir)), root_id_(std::move(root_id)), root_key_(std::move(root_key)) {}

  std::string dir_;
  std::string root_id_;
  core::PrivateKey root_key_;
};

}  // namespace x1368::testing

#endif  // X1368_TESTING_PKI_H_
