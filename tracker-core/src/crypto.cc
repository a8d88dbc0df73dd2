#include "x1368/core/crypto.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "x1368/core/file_util.h"
#include "x1368/core/reason.h"

namespace x1368::core {
namespace {

constexpr size_t kEd25519KeyBytes = 32;
constexpr size_t kEd25519SigBytes = 64;

std::shared_ptr<EVP_PKEY> Own(EVP_PKEY* pkey) { return {pkey, EVP_PKEY_free}; }

absl::string_view Label(SignedKind kind) {
  // The trailing NUL keeps one label from being a prefix of another label plus data.
  switch (kind) {
    case SignedKind::kEnvelopeBody:
      return absl::string_view("x1368/v1/envelope-body\0", 23);
    case SignedKind::kCertificate:
      return absl::string_view("x1368/v1/certificate\0", 21);
    case SignedKind::kManifest:
      return absl::string_view("x1368/v1/manifest\0", 18);
  }
  return {};
}

std::string Labelled(SignedKind kind, absl::string_view data) {
  return absl::StrCat(Label(kind), data);
}

absl::StatusOr<std::string> RawPublic(EVP_PKEY* pkey) {
  size_t len = kEd25519KeyBytes;
  std::string raw(len, '\0');
  if (EVP_PKEY_get_raw_public_key(pkey, reinterpret_cast<unsigned char*>(raw.data()), &len) != 1 ||
      len != kEd25519KeyBytes) {
    return absl::InvalidArgumentError("cannot extract the raw Ed25519 public key");
  }
  return raw;
}

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace

absl::StatusOr<PublicKey> PublicKey::FromRaw(v1::SignatureAlgorithm alg, absl::string_view raw) {
  if (alg != v1::ED25519) {
    return Reject(v1::UNSUPPORTED_ALG, absl::StrCat("algorithm ", static_cast<int>(alg)));
  }
  if (raw.size() != kEd25519KeyBytes) {
    return Reject(v1::BAD_CERT, absl::StrCat("Ed25519 public key of ", raw.size(), " bytes"));
  }
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
  if (pkey == nullptr) return Reject(v1::BAD_CERT, "invalid Ed25519 public key");
  return PublicKey(Own(pkey), std::string(raw));
}

absl::StatusOr<PublicKey> PublicKey::FromPem(absl::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* pkey = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (pkey == nullptr) return absl::InvalidArgumentError("not a PEM public key");
  auto owned = Own(pkey);
  if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError("PEM public key is not Ed25519");
  }
  X1368_ASSIGN_OR_RETURN(std::string raw, RawPublic(pkey));
  return PublicKey(std::move(owned), std::move(raw));
}

absl::StatusOr<PublicKey> PublicKey::LoadPemFile(const std::string& path) {
  X1368_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  auto key = FromPem(pem);
  if (!key.ok()) return WithContext(key.status(), absl::StrCat("reading ", path));
  return key;
}

std::string PublicKey::ToPem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, pkey_.get());
  std::string out = BioToString(bio);
  BIO_free(bio);
  return out;
}

bool PublicKey::Verify(SignedKind kind, absl::string_view data, absl::string_view signature) const {
  if (signature.size() != kEd25519SigBytes || pkey_ == nullptr) return false;
  std::string msg = Labelled(kind, data);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, pkey_.get()) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                             signature.size(), reinterpret_cast<const unsigned char*>(msg.data()),
                             msg.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

absl::StatusOr<PrivateKey> PrivateKey::Generate() {
  EVP_PKEY* pkey = nullptr;
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
  bool ok = ctx != nullptr && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_keygen(ctx, &pkey) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return absl::InternalError("Ed25519 key generation failed");
  auto owned = Own(pkey);
  X1368_ASSIGN_OR_RETURN(std::string raw, RawPublic(pkey));
  X1368_ASSIGN_OR_RETURN(PublicKey pub, PublicKey::FromRaw(v1::ED25519, raw));
  return PrivateKey(std::move(owned), std::move(pub));
}

absl::StatusOr<PrivateKey> PrivateKey::FromPem(absl::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (pkey == nullptr) return absl::InvalidArgumentError("not a PEM private key");
  auto owned = Own(pkey);
  if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError("PEM private key is not Ed25519");
  }
  X1368_ASSIGN_OR_RETURN(std::string raw, RawPublic(pkey));
  X1368_ASSIGN_OR_RETURN(PublicKey pub, PublicKey::FromRaw(v1::ED25519, raw));
  return PrivateKey(std::move(owned), std::move(pub));
}

absl::StatusOr<PrivateKey> PrivateKey::LoadPemFile(const std::string& path) {
  X1368_ASSIGN_OR_RETURN(std::string pem, ReadFile(path));
  auto key = FromPem(pem);
  if (!key.ok()) return WithContext(key.status(), absl::StrCat("reading ", path));
  return key;
}

std::string PrivateKey::ToPem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, pkey_.get(), nullptr, nullptr, 0, nullptr, nullptr);
  std::string out = BioToString(bio);
  BIO_free(bio);
  return out;
}

absl::StatusOr<std::string> PrivateKey::Sign(SignedKind kind, absl::string_view data) const {
  std::string msg = Labelled(kind, data);
  std::string sig(kEd25519SigBytes, '\0');
  size_t len = sig.size();
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, pkey_.get()) == 1 &&
            EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                           reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok || len != kEd25519SigBytes) return absl::InternalError("Ed25519 signing failed");
  return sig;
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    std::abort();  // no randomness: nothing this node signs could be trusted either
  }
  return out;
}

bool SameSecret(absl::string_view a, absl::string_view b) {
  // The length is no secret (tokens are of one length); the content is.
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Sha256(absl::string_view data) {
  Sha256Stream s;
  s.Update(data);
  return s.Final();
}

Sha256Stream::Sha256Stream() : ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
}

Sha256Stream::~Sha256Stream() { EVP_MD_CTX_free(ctx_); }

void Sha256Stream::Update(absl::string_view data) {
  EVP_DigestUpdate(ctx_, data.data(), data.size());
}

std::string Sha256Stream::Final() {
  std::string out(32, '\0');
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_, reinterpret_cast<unsigned char*>(out.data()), &len);
  return out;
}

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  Sha256Stream s;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    s.Update(absl::string_view(buf.data(), static_cast<size_t>(in.gcount())));
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("read error on ", path));
  return s.Final();
}

absl::Status CheckPemCertificates(absl::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  int count = 0;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    X509_free(cert);
    ++count;
  }
  BIO_free(bio);
  ERR_clear_error();  // the read past the last certificate leaves an error behind
  if (count == 0) return absl::InvalidArgumentError("holds no PEM X.509 certificate");
  return absl::OkStatus();
}

absl::Status CheckPemPrivateKey(absl::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (pkey == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("holds no PEM private key (unencrypted)");
  }
  EVP_PKEY_free(pkey);
  return absl::OkStatus();
}

std::string HexEncode(absl::string_view bytes) { return absl::BytesToHexString(bytes); }

absl::StatusOr<std::string> HexDecode(absl::string_view hex) {
  if (hex.size() % 2 != 0) return absl::InvalidArgumentError("odd-length hex string");
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError("not a hex string");
    }
  }
  return absl::HexStringToBytes(hex);
}

}  // namespace x1368::core
