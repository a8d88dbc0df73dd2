// trackerctl: keys, certificates, signed manifests, and root's admin API (docs/architecture.md).
//
//   trackerctl keygen --out node.key [--pub node.pub]
//   trackerctl cert issue --root-key root.key [--root-pub root.pub] --node gw1
//                         --role intermediate --key gw1.key --scope 'dev-*' --out gw1.cert
//   trackerctl author sign --key a.key --cert a.cert --image fw.bin --component fw
//                          --version 2.0.0 --sequence 2 --hardware board-a --out fw.manifest
//   trackerctl release publish --manifest fw.manifest --image fw.bin
//   trackerctl campaign start --component fw --version 2.0.0
//   trackerctl get devices|releases|campaigns [filters] [--limit N] [--after CURSOR]
//   trackerctl describe device ID | campaign ID | release COMPONENT VERSION
//   trackerctl fleet status [...] ; fleet wait --component fw --version 2.0.0 --count 6
//   trackerctl device show ID [--live]
//   trackerctl backup --out root-backup.db
//   trackerctl config set-context NAME --admin URL --token-file F | use-context NAME | view
//   trackerctl completion bash
//
// Global flags (before or after the verb): --admin, --token, --token-file, --context, --config,
// -o/--output table|json|yaml. Where the admin URL and token come from: context.h. Exit codes:
// exit_code.h.
#include <google/protobuf/util/json_util.h>

#include <iostream>
#include <map>
#include <optional>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "trackerctl/completion.h"
#include "trackerctl/context.h"
#include "trackerctl/exit_code.h"
#include "trackerctl/output.h"
#include "x1368/core/clock.h"
#include "x1368/core/crypto.h"
#include "x1368/core/file_util.h"
#include "x1368/core/http_client.h"
#include "x1368/core/json.h"
#include "x1368/core/log.h"
#include "x1368/core/manifest.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"
#include "x1368/core/trust.h"
#include "x1368/core/values.h"
#include "x1368/core/version.h"
#include "x1368/v1/admin.pb.h"

namespace x1368::ctl {
namespace {

// A value root relayed from a device (or any other node), for a table or a message: as it is
// when it is plain printable ASCII without spaces or quotes, else quoted and escaped, so that no
// value can break a line, forge a row or send the terminal control sequences.
std::string Cell(absl::string_view value) {
  bool plain = !value.empty() && value.size() <= 64;
  for (char c : value) plain = plain && c > ' ' && c < 0x7f && c != '"' && c != '\\';
  return plain ? std::string(value) : core::Quote(value);
}

std::vector<std::string> SplitList(const std::string& csv) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(csv, ',', absl::SkipEmpty())) {
    out.emplace_back(absl::StripAsciiWhitespace(part));
  }
  return out;
}

absl::StatusOr<v1::Role> ParseRole(const std::string& role) {
  if (role == "intermediate") return v1::ROLE_INTERMEDIATE;
  if (role == "client") return v1::ROLE_CLIENT;
  if (role == "author") return v1::ROLE_AUTHOR;
  return absl::InvalidArgumentError(
      absl::StrCat("role \"", role, "\": expected intermediate, client or author"));
}

// Where keygen puts the public half of `key_path` unless told: "x.key" -> "x.pub".
std::string PubPathFor(const std::string& key_path) {
  if (absl::StrContains(key_path, ".key")) {
    return key_path.substr(0, key_path.rfind(".key")) + ".pub";
  }
  return absl::StrCat(key_path, ".pub");
}

bool Exists(const std::string& path) { return core::FileSize(path).ok(); }

std::string TimeText(int64_t ms) {
  return absl::FormatTime(absl::RFC3339_sec, absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

// --- keys and certificates ------------------------------------------------------------------

int Keygen(const std::string& out, const std::string& pub) {
  auto key = core::PrivateKey::Generate();
  if (!key.ok()) return Fail(key.status());
  if (absl::Status s = core::WriteFileAtomic(out, key->ToPem(), 0600); !s.ok()) return Fail(s);
  std::string pub_path = pub.empty() ? PubPathFor(out) : pub;
  if (absl::Status s = core::WriteFileAtomic(pub_path, key->public_key().ToPem()); !s.ok())
    return Fail(s);
  std::cout << "wrote " << out << " and " << pub_path << "\n";
  return 0;
}

struct CertArgs {
  std::string root_key, root_pub, root_id = "root", node, role, key, pubkey, scope, components, out;
  int days = 365;
};

// A certificate signed with a key that is not root's is refused by every node (BAD_CERT), but
// only once it is used: refused here instead whenever trackerctl can know root's public key,
// from --root-pub or from the root.pub keygen wrote beside the root key.
absl::Status CheckRootKey(const core::PrivateKey& root, const CertArgs& a) {
  const bool given = !a.root_pub.empty();
  const std::string pub_path = given ? a.root_pub : PubPathFor(a.root_key);
  if (!given && !Exists(pub_path)) return absl::OkStatus();
  X1368_ASSIGN_OR_RETURN(core::PublicKey pub, core::PublicKey::LoadPemFile(pub_path));
  if (pub.raw() == root.public_key().raw()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      a.root_key, " is not root's key: its public half is not the one in ", pub_path,
      given ? "" : " (found beside it; give --root-pub with root's trust anchor to use another)",
      ". Nodes would refuse the certificate (BAD_CERT)."));
}

int CertIssue(const CertArgs& a) {
  auto root = core::PrivateKey::LoadPemFile(a.root_key);
  if (!root.ok()) return Fail(root.status());
  if (absl::Status s = CheckRootKey(*root, a); !s.ok()) return Fail(s);
  auto role = ParseRole(a.role);
  if (!role.ok()) return Fail(role.status());
  absl::StatusOr<core::PublicKey> pub = absl::InvalidArgumentError("give --key or --pubkey");
  if (!a.pubkey.empty()) {
    pub = core::PublicKey::LoadPemFile(a.pubkey);
  } else if (!a.key.empty()) {
    auto k = core::PrivateKey::LoadPemFile(a.key);
    if (!k.ok()) return Fail(k.status());
    pub = k->public_key();
  }
  if (!pub.ok()) return Fail(pub.status());
  v1::CertBody body;
  body.set_node_id(a.node);
  body.set_role(*role);
  body.set_public_key(pub->raw());
  for (const std::string& s : SplitList(a.scope)) body.mutable_scope()->add_nodes(s);
  for (const std::string& c : SplitList(a.components)) body.mutable_scope()->add_components(c);
  int64_t now = absl::ToUnixMillis(absl::Now());
  body.set_not_before_ms(now - 3600 * 1000);  // tolerate clocks a little behind
  body.set_not_after_ms(now + int64_t{a.days} * 86400 * 1000);
  body.set_issuer(a.root_id);
  body.set_serial(static_cast<uint64_t>(now));
  auto cert = core::IssueCert(*root, body);
  if (!cert.ok()) return Fail(cert.status());
  if (absl::Status s = core::WriteFileAtomic(a.out, cert->SerializeAsString()); !s.ok())
    return Fail(s);
  std::cout << "issued " << a.role << " certificate for " << a.node << " -> " << a.out << "\n";
  return 0;
}

absl::StatusOr<std::pair<v1::DelegationCert, v1::CertBody>> LoadCert(const std::string& path) {
  X1368_ASSIGN_OR_RETURN(std::string raw, core::ReadFileLimited(path, 64 << 10));
  v1::DelegationCert cert;
  v1::CertBody body;
  if (!cert.ParseFromString(raw) || !body.ParseFromString(cert.body())) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a certificate"));
  }
  return std::pair{cert, body};
}

int CertShow(const std::string& path, const std::string& output) {
  auto cert = LoadCert(path);
  if (!cert.ok()) return Fail(cert.status());
  const v1::CertBody& b = cert->second;
  if (WantsData(output)) {
    PrintMessage(b, output);
    return 0;
  }
  std::printf("node:        %s\n", Cell(b.node_id()).c_str());
  std::printf("role:        %s\n", v1::Role_Name(b.role()).c_str());
  std::printf("issuer:      %s (serial %llu)\n", Cell(b.issuer()).c_str(),
              static_cast<unsigned long long>(b.serial()));
  std::printf("valid:       %s to %s\n", TimeText(b.not_before_ms()).c_str(),
              TimeText(b.not_after_ms()).c_str());
  std::printf("nodes:       %s\n",
              b.scope().nodes().empty() ? "-" : absl::StrJoin(b.scope().nodes(), ",").c_str());
  std::printf("components:  %s\n", b.scope().components().empty()
                                       ? "(any)"
                                       : absl::StrJoin(b.scope().components(), ",").c_str());
  std::printf("public key:  %s\n", core::HexEncode(b.public_key()).c_str());
  return 0;
}

// --- author ---------------------------------------------------------------------------------

struct SignArgs {
  std::string key, cert, image, component, version, hardware, uri{core::kChunkServiceUri}, out,
      description, root_pub;
  uint64_t sequence = 0;
  uint32_t chunk_size = core::kDefaultChunkBytes;
};

// What every node checks of the author's certificate (VerifyManifest: AUTHOR_NOT_TRUSTED,
// BAD_CERT), checked before anything is signed: the key is the one certified, the certificate is
// an author's, covers the component, and is valid now. Certificates scope node ids and components
// only (certificate.proto), so hardware classes have nothing to be checked against. With
// --root-pub, the certificate's signature by root too.
absl::Status CheckAuthor(const SignArgs& a, const core::PrivateKey& key,
                         const v1::DelegationCert& cert, const v1::CertBody& body) {
  if (body.public_key() != key.public_key().raw()) {
    return absl::InvalidArgumentError(absl::StrCat(a.cert, " does not certify ", a.key, " (it is ",
                                                   Cell(body.node_id()), "'s certificate)"));
  }
  if (body.role() != v1::ROLE_AUTHOR) {
    return core::Reject(v1::AUTHOR_NOT_TRUSTED,
                        absl::StrCat(a.cert, " is ", v1::Role_Name(body.role()),
                                     "'s certificate, not an author's (cert issue --role author)"));
  }
  if (!core::ScopeCoversComponent(body.scope(), a.component)) {
    return core::Reject(
        v1::AUTHOR_NOT_TRUSTED,
        absl::StrCat(a.cert, " lets ", Cell(body.node_id()), " sign for ",
                     absl::StrJoin(body.scope().components(), ","), " only, not ",
                     core::Quote(a.component), " (devices would refuse the manifest)"));
  }
  const int64_t now = absl::ToUnixMillis(absl::Now());
  if (now > body.not_after_ms()) {
    return core::Reject(v1::BAD_CERT,
                        absl::StrCat(a.cert, " expired on ", TimeText(body.not_after_ms()),
                                     "; root issues a new one (cert issue)"));
  }
  if (now < body.not_before_ms()) {
    return core::Reject(v1::BAD_CERT, absl::StrCat(a.cert, " is not valid before ",
                                                   TimeText(body.not_before_ms())));
  }
  if (a.root_pub.empty()) return absl::OkStatus();
  X1368_ASSIGN_OR_RETURN(core::PublicKey root, core::PublicKey::LoadPemFile(a.root_pub));
  core::TrustStore trust(body.issuer(), root, core::RealClock::Get());
  return trust.VerifyCert(cert).status();
}

int AuthorSign(const SignArgs& a) {
  // The grammar every receiver enforces (values.h), checked before the image is read: nothing a
  // device or root would refuse is ever signed.
  for (const absl::Status& s :
       {core::ValidateIdentifier(a.component, "--component"),
        core::ValidateVersion(a.version, "--version"),
        core::ValidateText(a.description, "--description"), core::ValidateText(a.uri, "--uri")}) {
    if (!s.ok()) return Fail(core::Reject(v1::MANIFEST_MALFORMED, s.message()));
  }
  for (const std::string& hw : SplitList(a.hardware)) {
    if (absl::Status s = core::ValidateIdentifier(hw, "--hardware class"); !s.ok()) {
      return Fail(core::Reject(v1::MANIFEST_MALFORMED, s.message()));
    }
  }
  auto key = core::PrivateKey::LoadPemFile(a.key);
  if (!key.ok()) return Fail(key.status());
  auto cert = LoadCert(a.cert);
  if (!cert.ok()) return Fail(cert.status());
  const v1::CertBody& body = cert->second;
  if (absl::Status s = CheckAuthor(a, *key, cert->first, body); !s.ok()) return Fail(s);
  auto digests = core::DigestImageFile(*core::PosixFileSystem(), a.image, a.chunk_size);
  if (!digests.ok()) return Fail(digests.status());
  core::ManifestSpec spec;
  spec.component = a.component;
  spec.version = a.version;
  spec.sequence_number = a.sequence;
  spec.hardware_classes = SplitList(a.hardware);
  spec.uri = a.uri;
  spec.author_id = body.node_id();
  spec.created_at_ms = absl::ToUnixMillis(absl::Now());
  spec.description = a.description;
  auto signed_manifest = core::SignManifest(*key, cert->first, core::BuildManifest(spec, *digests));
  if (!signed_manifest.ok()) return Fail(signed_manifest.status());
  if (!a.root_pub.empty()) {
    // The whole check a node makes, on the result.
    auto root = core::PublicKey::LoadPemFile(a.root_pub);
    if (!root.ok()) return Fail(root.status());
    core::TrustStore trust(body.issuer(), *root, core::RealClock::Get());
    if (auto m = core::VerifyManifest(trust, *signed_manifest); !m.ok()) return Fail(m.status());
  }
  if (absl::Status s = core::WriteFileAtomic(a.out, signed_manifest->SerializeAsString()); !s.ok())
    return Fail(s);
  std::cout << "signed " << a.component << " " << a.version << " (sequence " << a.sequence << ", "
            << digests->size << " bytes in " << core::ChunkCount(digests->size, a.chunk_size)
            << " chunks, sha256 " << core::HexEncode(digests->sha256).substr(0, 16) << "...) -> "
            << a.out << "\n";
  return 0;
}

// --- admin API ------------------------------------------------------------------------------

// Root's admin API, where the flags, the environment and the config file say it is. Every call
// answers the body of a 2xx reply, or an error that carries trackerctl's exit code: 4 when root
// cannot be reached, 5 when it answered with an error.
class Api {
 public:
  explicit Api(AdminFlags flags) : flags_(std::move(flags)) {}

  absl::StatusOr<std::string> Get(const std::string& path) {
    X1368_ASSIGN_OR_RETURN(core::HttpClient * client, Client());
    return Check(client->Get(path));
  }
  absl::StatusOr<std::string> Post(const std::string& path, const std::string& body) {
    X1368_ASSIGN_OR_RETURN(core::HttpClient * client, Client());
    return Check(client->Post(path, body, "application/json"));
  }
  absl::StatusOr<std::string> PostForm(const std::string& path,
                                       const std::vector<core::HttpFormField>& fields) {
    X1368_ASSIGN_OR_RETURN(core::HttpClient * client, Client());
    return Check(client->PostForm(path, fields));
  }
  // GET `path`, parsed as `M` (fields root adds later are ignored).
  template <typename M>
  absl::StatusOr<M> GetMessage(const std::string& path) {
    X1368_ASSIGN_OR_RETURN(std::string body, Get(path));
    return Parse<M>(body);
  }
  template <typename M>
  static absl::StatusOr<M> Parse(const std::string& body) {
    M m;
    google::protobuf::util::JsonParseOptions o;
    o.ignore_unknown_fields = true;
    if (!google::protobuf::util::JsonStringToMessage(body, &m, o).ok()) {
      return absl::DataLossError(absl::StrCat("root's answer is not a ", M::descriptor()->name()));
    }
    return m;
  }

 private:
  absl::StatusOr<core::HttpClient*> Client() {
    if (!client_) {
      X1368_ASSIGN_OR_RETURN(target_, ResolveAdmin(flags_));
      client_.emplace(target_.url, target_.token);
    }
    return &*client_;
  }

  absl::StatusOr<std::string> Check(absl::StatusOr<core::HttpReply> r) const {
    if (!r.ok()) {
      return WithExit(absl::UnavailableError(absl::StrCat(
                          "cannot reach root's admin API at ",
                          absl::StripPrefix(r.status().message(), "cannot reach "),
                          "; is tracker-root running there? (the URL is ",
                          target_.url_from == "default" ? "the default"
                                                        : absl::StrCat("from ", target_.url_from),
                          "; set --admin, X1368_ADMIN_URL or a context)")),
                      kExitUnreachable);
    }
    if (r->status >= 200 && r->status < 300) return std::move(r->body);
    return WithExit(ReplyError(*r), kExitRefused);
  }

  // Root's ErrorReply {code, message, details}, or whatever else answered.
  static absl::Status ReplyError(const core::HttpReply& r) {
    v1::ErrorReply e;
    google::protobuf::util::JsonParseOptions o;
    o.ignore_unknown_fields = true;
    if (google::protobuf::util::JsonStringToMessage(r.body, &e, o).ok() && !e.code().empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("root refused (HTTP ", r.status, " ", e.code(), "): ", e.message()));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("root answered HTTP ", r.status, ": ", Cell(r.body.substr(0, 200))));
  }

  AdminFlags flags_;
  AdminTarget target_;
  std::optional<core::HttpClient> client_;
};

// Percent-encodes a query value (a release cursor holds a '/').
std::string Escape(absl::string_view value) {
  std::string out;
  for (unsigned char c : value) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

int ReleasePublish(Api& api, const std::string& manifest_path, const std::string& image_path) {
  // Root takes at most 64 KiB of manifest; a signed manifest is a few KiB.
  auto manifest = core::ReadFileLimited(manifest_path, 64 << 10);
  if (!manifest.ok()) return Fail(manifest.status());
  v1::SignedManifest signed_manifest;
  if (!signed_manifest.ParseFromString(*manifest)) {
    return Fail(
        absl::InvalidArgumentError(absl::StrCat(manifest_path, " is not a signed manifest")));
  }
  // Fails here, with the file's name, rather than half-way through the upload.
  if (auto size = core::FileSize(image_path); !size.ok()) return Fail(size.status());
  // The image is streamed from disk as it is sent (the form curl -F sends): memory stays small
  // whatever its size.
  auto body = api.PostForm("/v1/releases",
                           {{"manifest", *std::move(manifest), ""}, {"image", "", image_path}});
  if (!body.ok()) return Fail(body.status());
  v1::ReleaseInfo info = Api::Parse<v1::ReleaseInfo>(*body).value_or(v1::ReleaseInfo());
  std::cout << "published " << info.component() << " " << info.version() << " (sequence "
            << info.sequence_number() << ", " << info.size() << " bytes)\n";
  return 0;
}

int CampaignStart(Api& api, const std::string& component, const std::string& version,
                  const std::string& devices, int64_t deadline_s) {
  v1::CampaignStartRequest req;
  req.set_component(component);
  req.set_version(version);
  for (const std::string& d : SplitList(devices)) req.add_devices(d);
  req.set_deadline_s(deadline_s);
  auto body = api.Post("/v1/campaigns", core::MessageToJsonText(req));
  if (!body.ok()) return Fail(body.status());
  v1::CampaignInfo info = Api::Parse<v1::CampaignInfo>(*body).value_or(v1::CampaignInfo());
  std::cout << "campaign " << info.campaign_id() << " started: " << component << " -> " << version
            << "\n";
  return 0;
}

// An online backup of root's database (GET /v1/backup: SQLite's backup API on the running
// root), written to `out` (mode 0600) only once complete.
int Backup(Api& api, const std::string& out) {
  auto body = api.Get("/v1/backup");
  if (!body.ok()) return Fail(body.status());
  if (absl::Status s = core::WriteFileAtomic(out, *body, 0600); !s.ok()) return Fail(s);
  std::cout << "backed up root's database (" << body->size() << " bytes) to " << out
            << "; restore it with tracker-root --config FILE --restore " << out
            << " (see README: keep release.images_dir and the admin token too)\n";
  return 0;
}

std::string Rejections(const google::protobuf::RepeatedPtrField<v1::ReasonCount>& list) {
  std::vector<std::string> parts;
  for (const v1::ReasonCount& rc : list)
    parts.push_back(absl::StrCat(core::ReasonName(rc.reason()), "=", rc.count()));
  return parts.empty() ? "-" : absl::StrJoin(parts, ",");
}

int FleetStatus(Api& api, const std::string& output) {
  auto fleet = api.GetMessage<v1::FleetStatus>("/v1/fleet");
  if (!fleet.ok()) return Fail(fleet.status());
  if (WantsData(output)) {
    PrintMessage(*fleet, output);
    return 0;
  }
  std::printf("%-20s %-14s %-10s %-10s %-12s %-20s %-7s %s\n", "DEVICE", "VIA", "COMPONENT",
              "VERSION", "STATE", "REASON", "ONLINE", "REJECTIONS");
  for (const v1::DeviceRecord& d : fleet->devices()) {
    std::printf("%-20s %-14s %-10s %-10s %-12s %-20s %-7s %s\n", Cell(d.device_id()).c_str(),
                Cell(d.via()).c_str(), Cell(d.component()).c_str(), Cell(d.version()).c_str(),
                v1::UpdateState_Name(d.state()).c_str(),
                d.reason() == v1::REASON_UNSPECIFIED ? "-" : core::ReasonName(d.reason()).c_str(),
                d.online() ? "yes" : "no", Rejections(d.rejections()).c_str());
  }
  for (const v1::NodeRecord& n : fleet->nodes()) {
    std::printf("node %-15s online=%-3s rejections=%s parent_rejections=%s\n",
                Cell(n.node_id()).c_str(), n.online() ? "yes" : "no",
                Rejections(n.rejections()).c_str(), Rejections(n.parent_rejections()).c_str());
  }
  std::printf("root rejections=%s\n", Rejections(fleet->rejections()).c_str());
  // A node that drops its parent's messages as replays is cut off from updates until its parent
  // is fixed: said apart, not only counted (issue #14).
  auto warn = [](const std::string& id, const std::string& via,
                 const google::protobuf::RepeatedPtrField<v1::ReasonCount>& parent) {
    for (const v1::ReasonCount& rc : parent) {
      if (rc.reason() != v1::REPLAY) continue;
      std::printf(
          "warning: %s (via %s) refused %llu messages of its parent as replays: the parent's "
          "sequence numbers went back (its store was lost or put back from a copy)\n",
          Cell(id).c_str(), Cell(via).c_str(), static_cast<unsigned long long>(rc.count()));
    }
  };
  for (const v1::NodeRecord& n : fleet->nodes()) warn(n.node_id(), n.via(), n.parent_rejections());
  for (const v1::DeviceRecord& d : fleet->devices()) {
    warn(d.device_id(), d.via(), d.parent_rejections());
  }
  return 0;
}

// X.1368 §11.2 a: one page of a list (GET /v1/devices).
struct ListArgs {
  std::string component, subtree, after, state;
  std::string list = "all";
  uint32_t limit = 0;
  bool asked() const {
    return !component.empty() || !subtree.empty() || !after.empty() || list != "all" || limit > 0;
  }
};

// "--limit N --after C": the query's paging part.
std::string Paging(const ListArgs& a) {
  std::string out;
  if (!a.after.empty()) absl::StrAppend(&out, "&after=", Escape(a.after));
  if (a.limit > 0) absl::StrAppend(&out, "&limit=", a.limit);
  return out;
}

// In a table, where the next page starts (on stderr: the rows stay a clean table).
void PrintMore(const std::string& next_after) {
  if (!next_after.empty()) std::cerr << "more: --after " << Cell(next_after) << "\n";
}

int ListDevices(Api& api, const ListArgs& a, const std::string& output) {
  // Ids only (checked here, and again by root): nothing in the query string needs escaping.
  for (const auto& [value, what] :
       {std::pair{a.component, "--component"}, std::pair{a.subtree, "--subtree"},
        std::pair{a.after, "--after"}}) {
    if (value.empty()) continue;
    if (absl::Status s = core::ValidateNodeId(value, what); !s.ok()) return Fail(s);
  }
  std::string path = absl::StrCat("/v1/devices?list=", a.list);
  if (!a.component.empty()) absl::StrAppend(&path, "&component=", a.component);
  if (!a.subtree.empty()) absl::StrAppend(&path, "&subtree=", a.subtree);
  absl::StrAppend(&path, Paging(a));
  auto page = api.GetMessage<v1::DevicePage>(path);
  if (!page.ok()) return Fail(page.status());
  if (WantsData(output)) {
    PrintMessage(*page, output);
    return 0;
  }
  std::printf("%-20s %-24s %-10s %-10s %-10s %-12s %-20s %s\n", "DEVICE", "PATH", "COMPONENT",
              "VERSION", "LATEST", "STATE", "REASON", "ONLINE");
  for (const v1::DeviceRecord& d : page->devices()) {
    std::printf("%-20s %-24s %-10s %-10s %-10s %-12s %-20s %s\n", Cell(d.device_id()).c_str(),
                d.path().empty() ? "-" : Cell(d.path()).c_str(), Cell(d.component()).c_str(),
                Cell(d.version()).c_str(),
                d.latest_version().empty() ? "-" : Cell(d.latest_version()).c_str(),
                v1::UpdateState_Name(d.state()).c_str(),
                d.reason() == v1::REASON_UNSPECIFIED ? "-" : core::ReasonName(d.reason()).c_str(),
                d.online() ? "yes" : "no");
  }
  PrintMore(page->next_after());
  return 0;
}

int ListReleases(Api& api, const ListArgs& a, const std::string& output) {
  std::string path = "/v1/releases?";
  if (!a.component.empty()) absl::StrAppend(&path, "component=", Escape(a.component));
  absl::StrAppend(&path, Paging(a));
  auto page = api.GetMessage<v1::ReleasePage>(path);
  if (!page.ok()) return Fail(page.status());
  if (WantsData(output)) {
    PrintMessage(*page, output);
    return 0;
  }
  std::printf("%-12s %-12s %-9s %-10s %-18s %-14s %s\n", "COMPONENT", "VERSION", "SEQUENCE", "SIZE",
              "SHA256", "AUTHOR", "HARDWARE");
  for (const v1::ReleaseInfo& r : page->releases()) {
    std::printf("%-12s %-12s %-9llu %-10llu %-18s %-14s %s\n", Cell(r.component()).c_str(),
                Cell(r.version()).c_str(), static_cast<unsigned long long>(r.sequence_number()),
                static_cast<unsigned long long>(r.size()), r.sha256_hex().substr(0, 16).c_str(),
                Cell(r.author_id()).c_str(),
                Cell(absl::StrJoin(r.hardware_classes(), ",")).c_str());
  }
  PrintMore(page->next_after());
  return 0;
}

int ListCampaigns(Api& api, const ListArgs& a, const std::string& output) {
  std::string path = "/v1/campaigns?";
  if (!a.component.empty()) absl::StrAppend(&path, "component=", Escape(a.component));
  if (!a.state.empty()) absl::StrAppend(&path, "&state=", Escape(a.state));
  absl::StrAppend(&path, Paging(a));
  auto page = api.GetMessage<v1::CampaignPage>(path);
  if (!page.ok()) return Fail(page.status());
  if (WantsData(output)) {
    PrintMessage(*page, output);
    return 0;
  }
  std::printf("%-24s %-12s %-12s %-8s %-20s %s\n", "CAMPAIGN", "COMPONENT", "VERSION", "STATE",
              "STARTED", "DEVICES");
  for (const v1::CampaignInfo& c : page->campaigns()) {
    std::printf("%-24s %-12s %-12s %-8s %-20s %s\n", Cell(c.campaign_id()).c_str(),
                Cell(c.component()).c_str(), Cell(c.version()).c_str(), Cell(c.state()).c_str(),
                TimeText(c.started_at_ms()).c_str(),
                c.devices().empty() ? "(all)" : Cell(absl::StrJoin(c.devices(), ",")).c_str());
  }
  PrintMore(page->next_after());
  return 0;
}

int DescribeRelease(Api& api, const std::string& component, const std::string& version,
                    const std::string& output) {
  for (const absl::Status& s : {core::ValidateIdentifier(component, "component"),
                                core::ValidateVersion(version, "version")}) {
    if (!s.ok()) return Fail(s);
  }
  auto r = api.GetMessage<v1::ReleaseInfo>(absl::StrCat("/v1/releases/", component, "/", version));
  if (!r.ok()) return Fail(r.status());
  if (WantsData(output)) {
    PrintMessage(*r, output);
    return 0;
  }
  std::printf("component:  %s\n", Cell(r->component()).c_str());
  std::printf("version:    %s (sequence %llu)\n", Cell(r->version()).c_str(),
              static_cast<unsigned long long>(r->sequence_number()));
  std::printf("size:       %llu bytes\n", static_cast<unsigned long long>(r->size()));
  std::printf("sha256:     %s\n", r->sha256_hex().c_str());
  std::printf("author:     %s\n", Cell(r->author_id()).c_str());
  std::printf("hardware:   %s\n", Cell(absl::StrJoin(r->hardware_classes(), ",")).c_str());
  return 0;
}

int DescribeCampaign(Api& api, const std::string& id, const std::string& output) {
  if (absl::Status s = core::ValidateText(id, "campaign id");
      !s.ok() || id.empty() || absl::StrContains(id, "/")) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("campaign id ", core::Quote(id), " is not one (trackerctl get campaigns)")));
  }
  auto c = api.GetMessage<v1::CampaignInfo>(absl::StrCat("/v1/campaigns/", Escape(id)));
  if (!c.ok()) return Fail(c.status());
  if (WantsData(output)) {
    PrintMessage(*c, output);
    return 0;
  }
  std::printf("campaign:   %s\n", Cell(c->campaign_id()).c_str());
  std::printf("release:    %s %s\n", Cell(c->component()).c_str(), Cell(c->version()).c_str());
  std::printf("state:      %s\n", Cell(c->state()).c_str());
  std::printf("started:    %s\n", TimeText(c->started_at_ms()).c_str());
  std::printf("deadline:   %s\n",
              c->expires_at_ms() > 0 ? TimeText(c->expires_at_ms()).c_str() : "-");
  std::vector<std::string> progress;
  for (const v1::StateCount& n : c->progress()) {
    progress.push_back(absl::StrCat(v1::UpdateState_Name(n.state()), "=", n.devices()));
  }
  std::printf("progress:   %s\n", progress.empty() ? "no device has taken it yet"
                                                   : absl::StrJoin(progress, " ").c_str());
  std::printf("devices:    %s\n", c->devices().empty()
                                      ? "every device of the component"
                                      : Cell(absl::StrJoin(c->devices(), ",")).c_str());
  return 0;
}

void PrintDevice(const v1::DeviceRecord& d);

// `live`: also what the device's gateway holds now (GET /v1/devices/{id}/live, issue #13).
int DeviceShow(Api& api, const std::string& id, const std::string& output, bool live) {
  if (absl::Status s = core::ValidateNodeId(id, "device id"); !s.ok()) return Fail(s);
  const std::string path = absl::StrCat("/v1/devices/", id, live ? "/live" : "");
  if (!live) {
    auto d = api.GetMessage<v1::DeviceRecord>(path);
    if (!d.ok()) return Fail(d.status());
    if (WantsData(output)) {
      PrintMessage(*d, output);
    } else {
      PrintDevice(*d);
    }
    return 0;
  }
  auto v = api.GetMessage<v1::DeviceLiveView>(path);
  if (!v.ok()) return Fail(v.status());
  if (WantsData(output)) {
    PrintMessage(*v, output);
    return 0;
  }
  PrintDevice(v->record());
  const v1::DeviceDetail& g = v->detail();
  if (g.error() != v1::REASON_UNSPECIFIED) {
    std::printf("gateway:    no gateway on its path knows it (%s)\n",
                core::ReasonName(g.error()).c_str());
    return 1;
  }
  std::printf("gateway:    %s says %s, last heard %s\n", Cell(g.gateway()).c_str(),
              g.online() ? "online" : "offline",
              g.last_seen_ms() > 0 ? TimeText(g.last_seen_ms()).c_str() : "not since its start");
  std::printf("report:     %s; %s\n",
              v->report_verified()
                  ? "its own signature verified by root"
                  : absl::StrCat("NOT verified: ", core::Quote(v->report_error())).c_str(),
              v->matches_root() ? "the one root's record holds"
                                : "differs from root's record (root learns it with the "
                                  "gateway's next batch or summary)");
  std::printf("exchanges with %s, oldest first:\n", Cell(g.gateway()).c_str());
  for (const v1::CommEntry& e : g.log()) {
    std::printf(
        "  %s  %-9s %-24s %s%s\n", TimeText(e.at_ms()).c_str(),
        e.from_child() ? "from it" : "to it", Cell(e.what()).c_str(),
        e.outcome() == v1::REASON_UNSPECIFIED ? "ok" : core::ReasonName(e.outcome()).c_str(),
        e.count() > 1 ? absl::StrCat(" (x", e.count(), ")").c_str() : "");
  }
  return 0;
}

void PrintDevice(const v1::DeviceRecord& d) {
  std::printf("device:     %s\n", Cell(d.device_id()).c_str());
  std::printf("path:       %s\n",
              d.path().empty() ? "(directly under root)" : Cell(d.path()).c_str());
  std::printf("component:  %s\n", Cell(d.component()).c_str());
  std::printf("hardware:   %s\n", Cell(d.hardware_class()).c_str());
  std::printf("version:    %s (sequence %llu)\n", Cell(d.version()).c_str(),
              static_cast<unsigned long long>(d.sequence_number()));
  std::printf("latest:     %s%s\n",
              d.latest_version().empty() ? "-" : Cell(d.latest_version()).c_str(),
              d.obsolete()        ? " (obsolete)"
              : d.ahead_of_root() ? " (it runs a newer one)"
                                  : "");
  if (!d.needs_update().empty()) {
    std::printf("asks:       an update: %s\n", core::Quote(d.needs_update()).c_str());
  }
  std::printf("state:      %s%s%s\n", v1::UpdateState_Name(d.state()).c_str(),
              d.reason() == v1::REASON_UNSPECIFIED
                  ? ""
                  : absl::StrCat(" ", core::ReasonName(d.reason())).c_str(),
              d.detail().empty() ? "" : absl::StrCat(": ", core::Quote(d.detail())).c_str());
  std::printf("campaign:   %s\n", d.campaign_id().empty() ? "-" : Cell(d.campaign_id()).c_str());
  std::printf("online:     %s\n", d.online() ? "yes" : "no");
  // Under a gateway, unchanged reports stay there: this is when its state last changed.
  std::printf("changed:    %s\n", TimeText(d.updated_at_ms()).c_str());
  std::printf("evidence:   %s\n",
              d.vouched_by().empty()
                  ? "its own signature, verified by root"
                  : absl::StrCat("progress on the word of ", Cell(d.vouched_by()),
                                 " (outcomes are always verified; --live fetches its own)")
                        .c_str());
  std::printf("rejections: %s\n", Rejections(d.rejections()).c_str());
  // Signed time from its parent (issue #14): what it adds to its own clock.
  std::printf(
      "clock:      %s\n",
      d.clock_offset_ms() == 0
          ? "in step with its parent"
          : absl::StrCat("offset ", d.clock_offset_ms(), " ms from its parent's time").c_str());
}

void ReportNotUpdated(const v1::FleetStatus& fleet, const std::string& component,
                      const std::string& version) {
  for (const v1::DeviceRecord& d : fleet.devices()) {
    if (d.component() == component && d.version() != version) {
      std::cerr << "not updated: " << Cell(d.device_id()) << " runs " << Cell(d.version())
                << ", state " << v1::UpdateState_Name(d.state()) << ", reason "
                << core::ReasonName(d.reason())
                << (d.detail().empty() ? "" : ": " + core::Quote(d.detail())) << "\n";
    }
  }
}

// Exit 0 once `count` devices run `version`; 1 when too many finished badly for that to happen;
// 3 (timeout) at the deadline, 4 when root was never reached.
int FleetWait(Api& api, const std::string& component, const std::string& version, int count,
              int timeout_s) {
  absl::Time deadline = absl::Now() + absl::Seconds(timeout_s);
  std::string last;
  v1::FleetStatus fleet;
  absl::Status last_error = absl::OkStatus();
  bool heard = false;
  while (true) {
    auto f = api.GetMessage<v1::FleetStatus>("/v1/fleet");
    if (f.ok()) {
      heard = true;
      fleet = *std::move(f);
      std::map<std::string, int> states;
      int updated = 0, finished_badly = 0, total = 0;
      for (const v1::DeviceRecord& d : fleet.devices()) {
        if (d.component() != component) continue;
        ++total;
        if (d.version() == version && !(d.state() >= v1::OFFERED && d.state() <= v1::TRIAL_BOOT)) {
          ++updated;
        } else if (d.state() == v1::FAILED || d.state() == v1::ROLLED_BACK ||
                   d.state() == v1::DECLINED) {
          ++finished_badly;
        }
        ++states[v1::UpdateState_Name(d.state())];
      }
      std::vector<std::string> parts;
      for (const auto& [s, n] : states) parts.push_back(absl::StrCat(s, "=", n));
      std::string line = absl::StrCat("progress: ", updated, "/", count, " on ", version, " (",
                                      total, " reporting: ", absl::StrJoin(parts, " "), ")");
      if (line != last) {
        std::cout << line << std::endl;
        last = line;
      }
      if (updated >= count) return 0;
      if (updated + finished_badly >= count && finished_badly > 0) break;
    } else {
      last_error = f.status();
      // A refusal (a wrong token) will not go away by waiting.
      if (ExitOf(last_error) == kExitRefused) return Fail(last_error);
    }
    if (absl::Now() > deadline) {
      if (!heard) return Fail(last_error);
      std::cerr << "trackerctl: timed out after " << timeout_s << " s waiting for " << count
                << " devices of " << component << " on " << version << "\n";
      ReportNotUpdated(fleet, component, version);
      return kExitTimeout;
    }
    absl::SleepFor(absl::Milliseconds(300));
  }
  ReportNotUpdated(fleet, component, version);
  return kExitFailed;
}

// --- config ---------------------------------------------------------------------------------

int SetContext(const std::string& path, const std::string& name, const Context& given) {
  if (absl::Status s = core::ValidateIdentifier(name, "context name"); !s.ok()) return Fail(s);
  auto config = LoadConfig(path);
  if (!config.ok()) return Fail(config.status());
  Context& c = config->contexts[name];
  // Only what is given changes: set-context lab --token-file F keeps lab's URL.
  if (!given.admin_url.empty()) c.admin_url = given.admin_url;
  if (!given.token_file.empty()) c.token_file = given.token_file;
  if (!given.token.empty()) c.token = given.token;
  if (config->current_context.empty()) config->current_context = name;
  if (absl::Status s = SaveConfig(path, *config); !s.ok()) return Fail(s);
  std::cout << "context " << name << " set in " << path
            << (config->current_context == name ? " (current)" : "") << "\n";
  return 0;
}

int UseContext(const std::string& path, const std::string& name) {
  auto config = LoadConfig(path);
  if (!config.ok()) return Fail(config.status());
  if (!config->contexts.count(name)) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("no context \"", name, "\" in ", path, " (trackerctl config set-context)")));
  }
  config->current_context = name;
  if (absl::Status s = SaveConfig(path, *config); !s.ok()) return Fail(s);
  std::cout << "current context: " << name << "\n";
  return 0;
}

// The file's contexts; a token kept in the file is said to be there, never shown.
int ViewConfig(const std::string& path, const std::string& output) {
  auto config = LoadConfig(path);
  if (!config.ok()) return Fail(config.status());
  nlohmann::json data = {{"config", path},
                         {"current_context", config->current_context},
                         {"contexts", nlohmann::json::array()}};
  for (const auto& [name, c] : config->contexts) {
    data["contexts"].push_back({{"name", name},
                                {"admin_url", c.admin_url},
                                {"token_file", c.token_file},
                                {"token", c.token.empty() ? "" : "(set)"}});
  }
  if (WantsData(output)) {
    PrintData(data, output);
    return 0;
  }
  std::printf("config: %s\n", path.c_str());
  std::printf("%-8s %-16s %-32s %s\n", "CURRENT", "NAME", "ADMIN URL", "TOKEN");
  for (const auto& [name, c] : config->contexts) {
    std::printf("%-8s %-16s %-32s %s\n", name == config->current_context ? "*" : "",
                Cell(name).c_str(), c.admin_url.empty() ? "-" : Cell(c.admin_url).c_str(),
                !c.token.empty()       ? "(in the file)"
                : c.token_file.empty() ? "-"
                                       : Cell(c.token_file).c_str());
  }
  return 0;
}

}  // namespace
}  // namespace x1368::ctl

namespace {

using x1368::ctl::ListArgs;

constexpr char kFooter[] =
    "Root's admin API: --admin URL, else X1368_ADMIN_URL, else the current context's admin_url, "
    "else http://127.0.0.1:8368. Its token: --token or --token-file, else X1368_ADMIN_TOKEN, "
    "else the context's token or token_file. Contexts live in --config, else X1368_CONFIG, else "
    "$XDG_CONFIG_HOME/x1368/trackerctl.toml or ~/.config/x1368/trackerctl.toml (trackerctl "
    "config --help). Global flags go before or after the verb.\n";

// The device filters of `fleet status` and `get devices`.
void AddDeviceFilters(CLI::App* cmd, ListArgs& args) {
  cmd->add_option("--component", args.component, "only this component's devices");
  cmd->add_option("--subtree", args.subtree, "only the devices at or below this node");
  auto* lists = cmd->add_option_group("list", "one of the lists");
  for (const auto& [flag, name] :
       {std::pair{"--up-to-date", "up_to_date"}, std::pair{"--obsolete", "obsolete"},
        std::pair{"--failed", "failed"}, std::pair{"--offline", "offline"},
        std::pair{"--updating", "updating"}, std::pair{"--needs-update", "needs_update"},
        std::pair{"--ahead", "ahead"}}) {
    lists->add_flag_callback(flag, [&args, name = std::string(name)] { args.list = name; });
  }
  lists->require_option(0, 1);
}

void AddPaging(CLI::App* cmd, ListArgs& args, const char* what) {
  cmd->add_option("--limit", args.limit,
                  absl::StrCat(what, " per page (root's default 100, at most 1000)"));
  cmd->add_option("--after", args.after, "the cursor a previous page printed (its next_after)");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace x1368::ctl;
  CLI::App app{
      "trackerctl: keys, certificates and signed manifests for an x1368 tracker tree, "
      "and the root's admin API (releases, campaigns, devices)."};
  app.require_subcommand(1);
  // Global flags are parsed after any verb too (every subcommand inherits this).
  app.fallthrough();
  app.footer(absl::StrCat(kFooter, kExitCodesHelp));
  app.set_version_flag("--version", absl::StrCat("trackerctl ", x1368::core::kVersion, " (",
                                                 x1368::core::kGitRevision, ")"));
  AdminFlags flags;
  std::string output = "table";
  auto* global = app.add_option_group("Global", "flags of every verb, before or after it");
  global->add_option(
      "--admin", flags.url,
      absl::StrCat("root's admin API URL (env X1368_ADMIN_URL; default ", kDefaultAdminUrl, ")"));
  global->add_option("--token", flags.token, "admin bearer token (env X1368_ADMIN_TOKEN)");
  global->add_option("--token-file", flags.token_file,
                     "file holding the admin token (root writes <data_dir>/admin.token)");
  global->add_option("--context", flags.context, "a context of the config file, not its current");
  global->add_option("--config", flags.config,
                     "config file with contexts (env X1368_CONFIG; default "
                     "~/.config/x1368/trackerctl.toml)");
  global->add_option("-o,--output", output, kOutputHelp)
      ->check(CLI::IsMember({"table", "json", "yaml"}))
      ->capture_default_str();

  std::string out, pub;
  auto* keygen = app.add_subcommand("keygen", "make an Ed25519 key pair (PEM)");
  keygen->add_option("--out", out, "private key file")->required();
  keygen->add_option("--pub", pub, "public key file (default: <out without .key>.pub)");

  auto* cert = app.add_subcommand("cert", "delegation certificates");
  cert->require_subcommand(1);
  CertArgs ca;
  auto* issue = cert->add_subcommand("issue", "root signs a node's delegation certificate");
  issue->add_option("--root-key", ca.root_key, "root's private key")->required();
  issue->add_option("--root-pub", ca.root_pub,
                    "root's public key (its trust anchor): the root key must match it (default: "
                    "the .pub beside --root-key, when there is one)");
  issue->add_option("--root-id", ca.root_id, "root's node id")->capture_default_str();
  issue->add_option("--node", ca.node, "node id the certificate is for")->required();
  issue->add_option("--role", ca.role, "intermediate, client or author")->required();
  issue->add_option("--key", ca.key, "the node's private key (its public half is certified)");
  issue->add_option("--pubkey", ca.pubkey, "or the node's public key");
  issue->add_option("--scope", ca.scope,
                    "node ids or prefix* patterns it may act for, comma separated");
  issue->add_option("--components", ca.components, "components it may act for (empty: any)");
  issue->add_option("--days", ca.days, "validity in days")->capture_default_str();
  issue->add_option("--out", ca.out, "certificate file")->required();
  std::string show_path;
  auto* show = cert->add_subcommand("show", "print a certificate");
  show->add_option("file", show_path)->required();

  auto* author = app.add_subcommand("author", "firmware author tools");
  author->require_subcommand(1);
  SignArgs sa;
  auto* sign = author->add_subcommand(
      "sign",
      "build and sign a manifest for an image; refused when the certificate does not certify "
      "the key, is not an author's, does not cover the component or is not valid now");
  sign->add_option("--key", sa.key, "author's private key")->required();
  sign->add_option("--cert", sa.cert, "author's certificate")->required();
  sign->add_option("--image", sa.image, "image file")->required();
  sign->add_option("--component", sa.component)->required();
  sign->add_option("--version", sa.version)->required();
  sign->add_option("--sequence", sa.sequence, "monotonic sequence number (anti-rollback)")
      ->required();
  sign->add_option("--hardware", sa.hardware, "hardware classes, comma separated")->required();
  sign->add_option("--uri", sa.uri, "where devices fetch it")->capture_default_str();
  sign->add_option("--description", sa.description);
  sign->add_option("--chunk-size", sa.chunk_size,
                   "bytes per chunk; each chunk's SHA-256 goes into the signed chunk table")
      ->check(CLI::Range(x1368::core::kMinChunkBytes, x1368::core::kMaxChunkBytes))
      ->capture_default_str();
  sign->add_option("--root-pub", sa.root_pub,
                   "root's public key: also verify the certificate and the signed manifest as a "
                   "device would");
  sign->add_option("--out", sa.out, "signed manifest file")->required();

  auto* release = app.add_subcommand("release", "releases on root's firmware server");
  release->require_subcommand(1);
  std::string manifest_path, image_path;
  auto* publish =
      release->add_subcommand("publish", "submit a signed manifest and its image to root");
  publish->add_option("--manifest", manifest_path)->required();
  publish->add_option("--image", image_path)->required();

  auto* campaign = app.add_subcommand("campaign", "update campaigns");
  campaign->require_subcommand(1);
  std::string component, version, devices;
  int64_t deadline_s = 0;
  auto* start = campaign->add_subcommand("start", "move all devices of a component to a release");
  start->add_option("--component", component)->required();
  start->add_option("--version", version)->required();
  start->add_option("--devices", devices, "only these devices, comma separated");
  start->add_option("--deadline-s", deadline_s, "campaign deadline in seconds (default: root's)");

  auto* fleet = app.add_subcommand("fleet", "fleet state as root knows it");
  fleet->require_subcommand(1);
  auto json_flag = [&output](CLI::App* cmd) {
    cmd->add_flag_callback(
        "--json", [&output] { output = "json"; }, "same as -o json");
  };
  auto* status = fleet->add_subcommand(
      "status",
      "every device's version and state; with a list or a filter, one page of the matching "
      "devices (X.1368 §11.2 a)");
  json_flag(status);
  ListArgs list_args;
  AddDeviceFilters(status, list_args);
  AddPaging(status, list_args, "devices");
  auto* device = app.add_subcommand("device", "one device as root knows it");
  device->require_subcommand(1);
  std::string device_id;
  bool live = false;
  auto* device_show = device->add_subcommand("show", "state, path, release and liveness");
  device_show->add_option("ID", device_id, "the device id")->required();
  json_flag(device_show);
  const char* live_help =
      "also ask the device's gateway: its signed report (verified by root) and the log of its "
      "last exchanges";
  device_show->add_flag("--live", live, live_help);
  int count = 0, timeout_s = 120;
  auto* wait = fleet->add_subcommand(
      "wait", "wait until COUNT devices of COMPONENT run VERSION (exit 3 at the timeout)");
  wait->add_option("--component", component)->required();
  wait->add_option("--version", version)->required();
  wait->add_option("--count", count)->required();
  wait->add_option("--timeout-s", timeout_s)->capture_default_str();

  // kubectl-style reads; `list` is `get`.
  auto* get = app.add_subcommand("get", "list devices, releases or campaigns (alias: list)");
  get->alias("list");
  get->require_subcommand(1);
  ListArgs get_args;
  auto* get_devices = get->add_subcommand("devices", "a page of devices, in device id order");
  get_devices->alias("device");
  AddDeviceFilters(get_devices, get_args);
  AddPaging(get_devices, get_args, "devices");
  auto* get_releases = get->add_subcommand("releases", "releases, by component and sequence");
  get_releases->alias("release");
  get_releases->add_option("--component", get_args.component, "only this component's");
  AddPaging(get_releases, get_args, "releases");
  auto* get_campaigns = get->add_subcommand("campaigns", "campaigns, oldest first");
  get_campaigns->alias("campaign");
  get_campaigns->add_option("--component", get_args.component, "only this component's");
  get_campaigns->add_option("--state", get_args.state, "active or expired")
      ->check(CLI::IsMember({"active", "expired"}));
  AddPaging(get_campaigns, get_args, "campaigns");

  auto* describe = app.add_subcommand("describe", "one device, campaign or release in full");
  describe->require_subcommand(1);
  std::string what_id, what_version;
  auto* describe_device = describe->add_subcommand("device", "one device (as device show)");
  describe_device->add_option("ID", what_id, "the device id")->required();
  describe_device->add_flag("--live", live, live_help);
  auto* describe_campaign = describe->add_subcommand("campaign", "one campaign");
  describe_campaign->add_option("ID", what_id, "the campaign id")->required();
  auto* describe_release = describe->add_subcommand("release", "one release");
  describe_release->add_option("COMPONENT", what_id)->required();
  describe_release->add_option("VERSION", what_version)->required();

  std::string backup_out;
  auto* backup = app.add_subcommand(
      "backup", "an online backup of root's database (restore: tracker-root --restore FILE)");
  backup->add_option("--out", backup_out, "backup file (written when complete, mode 0600)")
      ->required();

  auto* config = app.add_subcommand(
      "config", "named contexts (admin URL and token) in trackerctl's config file");
  config->require_subcommand(1);
  std::string context_name;
  Context context;
  auto* set_context = config->add_subcommand(
      "set-context", "create or change a context (the first one becomes current)");
  set_context->add_option("NAME", context_name)->required();
  set_context->add_option("--admin", context.admin_url, "root's admin API URL");
  set_context->add_option("--token-file", context.token_file, "file holding the admin token");
  set_context->add_option("--token", context.token,
                          "the token itself, kept in the file (mode 0600); prefer --token-file");
  auto* use_context = config->add_subcommand("use-context", "make a context the current one");
  use_context->add_option("NAME", context_name)->required();
  auto* view = config->add_subcommand("view", "the contexts (never a token's value)");

  auto* completion = app.add_subcommand(
      "completion", "a shell completion script: source <(trackerctl completion bash)");
  std::string shell;
  completion->add_option("SHELL", shell, "bash")->required()->check(CLI::IsMember({"bash"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; anything else that does not parse is a usage error.
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  Api api(flags);
  if (*keygen) return Keygen(out, pub);
  if (*issue) return CertIssue(ca);
  if (*show) return CertShow(show_path, output);
  if (*sign) return AuthorSign(sa);
  if (*publish) return ReleasePublish(api, manifest_path, image_path);
  if (*start) return CampaignStart(api, component, version, devices, deadline_s);
  if (*status) {
    return list_args.asked() ? ListDevices(api, list_args, output) : FleetStatus(api, output);
  }
  if (*device_show) return DeviceShow(api, device_id, output, live);
  if (*wait) return FleetWait(api, component, version, count, timeout_s);
  if (*get_devices) return ListDevices(api, get_args, output);
  if (*get_releases) return ListReleases(api, get_args, output);
  if (*get_campaigns) return ListCampaigns(api, get_args, output);
  if (*describe_device) return DeviceShow(api, what_id, output, live);
  if (*describe_campaign) return DescribeCampaign(api, what_id, output);
  if (*describe_release) return DescribeRelease(api, what_id, what_version, output);
  if (*backup) return Backup(api, backup_out);
  const std::string config_path = ConfigPath(flags.config);
  if (*set_context) return SetContext(config_path, context_name, context);
  if (*use_context) return UseContext(config_path, context_name);
  if (*view) return ViewConfig(config_path, output);
  if (*completion) {
    std::cout << BashCompletion(app);
    return kExitOk;
  }
  return kExitFailed;
}
