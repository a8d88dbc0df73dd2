// Ed25519 keys, signatures and SHA-256, on OpenSSL 3 EVP.
//
// Every signature is made over a domain-separation label followed by the signed bytes, so a
// signature made for one kind of structure (an envelope body, a certificate, a manifest) can
// never be replayed as another. Keys are immutable after construction; PublicKey and PrivateKey
// are cheap to copy (shared EVP_PKEY) and safe to use from several threads at once.
#ifndef X1368_CORE_CRYPTO_H_
#define X1368_CORE_CRYPTO_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "x1368/v1/common.pb.h"

typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace x1368::core {

// What a signature is for; part of the signed bytes.
enum class SignedKind { kEnvelopeBody, kCertificate, kManifest };

class PublicKey {
 public:
  // From the raw key bytes (32 for Ed25519).
  static absl::StatusOr<PublicKey> FromRaw(v1::SignatureAlgorithm alg, absl::string_view raw);
  static absl::StatusOr<PublicKey> FromPem(absl::string_view pem);
  static absl::StatusOr<PublicKey> LoadPemFile(const std::string& path);

  v1::SignatureAlgorithm alg() const { return v1::ED25519; }
  const std::string& raw() const { return raw_; }
  std::string ToPem() const;

  // True when `signature` is this key's signature of `data` for `kind`.
  bool Verify(SignedKind kind, absl::string_view data, absl::string_view signature) const;

 private:
  PublicKey(std::shared_ptr<EVP_PKEY> pkey, std::string raw)
      : pkey_(std::move(pkey)), raw_(std::move(raw)) {}
  std::shared_ptr<EVP_PKEY> pkey_;
  std::string raw_;
};

class PrivateKey {
 public:
  static absl::StatusOr<PrivateKey> Generate();
  static absl::StatusOr<PrivateKey> FromPem(absl::string_view pem);
  static absl::StatusOr<PrivateKey> LoadPemFile(const std::string& path);

  std::string ToPem() const;  // PKCS#8 PEM, unencrypted
  const PublicKey& public_key() const { return public_key_; }
  v1::SignatureAlgorithm alg() const { return v1::ED25519; }

  absl::StatusOr<std::string> Sign(SignedKind kind, absl::string_view data) const;

 private:
  PrivateKey(std::shared_ptr<EVP_PKEY> pkey, PublicKey pub)
      : pkey_(std::move(pkey)), public_key_(std::move(pub)) {}
  std::shared_ptr<EVP_PKEY> pkey_;
  PublicKey public_key_;
};

// SHA-256 of `data`, 32 raw bytes.
std::string Sha256(absl::string_view data);
// `n` bytes from the system's CSPRNG (OpenSSL RAND_bytes); aborts if it has none.
std::string RandomBytes(size_t n);
// Whether two secrets (tokens) are equal, in time that depends on their length only
// (OpenSSL CRYPTO_memcmp): a wrong guess must not learn how much of it was right.
bool SameSecret(absl::string_view a, absl::string_view b);

// Incremental SHA-256 for images too large to hold at once.
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void Update(absl::string_view data);
  std::string Final();  // 32 raw bytes; the stream must not be used afterwards

 private:
  EVP_MD_CTX* ctx_;
};

// SHA-256 of a whole file, streamed.
absl::StatusOr<std::string> Sha256File(const std::string& path);

// TLS material for the MQTT links, checked when a configuration is read so that a broken file is
// named with its key, not found by the first connection attempt: at least one PEM X.509
// certificate (a CA file or a client certificate), or one PEM private key of any algorithm.
absl::Status CheckPemCertificates(absl::string_view pem);
absl::Status CheckPemPrivateKey(absl::string_view pem);

// Lower-case hex (absl::BytesToHexString), and back: HexDecode refuses what is not hex, which
// absl::HexStringToBytes does not check.
std::string HexEncode(absl::string_view bytes);
absl::StatusOr<std::string> HexDecode(absl::string_view hex);

}  // namespace x1368::core

#endif  // X1368_CORE_CRYPTO_H_
