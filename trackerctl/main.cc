// trackerctl: keys, certificates, signed manifests, and root's admin API (DESIGN.md §10).
//
//   trackerctl keygen --out node.key [--pub node.pub]
//   trackerctl cert issue --root-key root.key --node gw1 --role intermediate --key gw1.key
//                         --scope 'dev-*' --out gw1.cert
//   trackerctl author sign --key a.key --cert a.cert --image fw.bin --component fw
//                          --version 2.0.0 --sequence 2 --hardware board-a --out fw.manifest
//   trackerctl release publish --manifest fw.manifest --image fw.bin
//   trackerctl campaign start --component fw --version 2.0.0
//   trackerctl fleet status [--component C] [--subtree ID]
//                           [--up-to-date|--obsolete|--failed|--offline|--updating|
//                            --needs-update|--ahead]
//                           [--limit N] [--after CURSOR] [--json]
//   trackerctl device show ID [--json]
//   trackerctl fleet wait --component fw --version 2.0.0 --count 6
//   trackerctl backup --out root-backup.db
#include <google/protobuf/util/json_util.h>

#include <iostream>
#include <map>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "x1368/core/crypto.h"
#include "x1368/core/file_util.h"
#include "x1368/core/http_client.h"
#include "x1368/core/log.h"
#include "x1368/core/manifest.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"
#include "x1368/core/trust.h"
#include "x1368/core/values.h"
#include "x1368/v1/admin.pb.h"

namespace x1368::ctl {
namespace {

int Fail(const absl::Status& s) {
  std::cerr << "trackerctl: " << s.message() << "\n";
  return 1;
}

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

// --- keys and certificates ------------------------------------------------------------------

int Keygen(const std::string& out, const std::string& pub) {
  auto key = core::PrivateKey::Generate();
  if (!key.ok()) return Fail(key.status());
  if (absl::Status s = core::WriteFileAtomic(out, key->ToPem(), 0600); !s.ok()) return Fail(s);
  std::string pub_path = pub.empty() ? absl::StrCat(out, ".pub") : pub;
  if (absl::StrContains(out, ".key") && pub.empty()) {
    pub_path = out.substr(0, out.rfind(".key")) + ".pub";
  }
  if (absl::Status s = core::WriteFileAtomic(pub_path, key->public_key().ToPem()); !s.ok())
    return Fail(s);
  std::cout << "wrote " << out << " and " << pub_path << "\n";
  return 0;
}

struct CertArgs {
  std::string root_key, root_id = "root", node, role, key, pubkey, scope, components, out;
  int days = 365;
};

int CertIssue(const CertArgs& a) {
  auto root = core::PrivateKey::LoadPemFile(a.root_key);
  if (!root.ok()) return Fail(root.status());
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

int CertShow(const std::string& path) {
  auto raw = core::ReadFileLimited(path, 64 << 10);
  if (!raw.ok()) return Fail(raw.status());
  v1::DelegationCert cert;
  v1::CertBody body;
  if (!cert.ParseFromString(*raw) || !body.ParseFromString(cert.body())) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(path, " is not a certificate")));
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions o;
  o.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(body, &json, o);
  std::cout << json;
  return 0;
}

// --- author ---------------------------------------------------------------------------------

struct SignArgs {
  std::string key, cert, image, component, version, hardware, uri{core::kChunkServiceUri}, out,
      description;
  uint64_t sequence = 0;
  uint32_t chunk_size = core::kDefaultChunkBytes;
};

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
  auto raw_cert = core::ReadFileLimited(a.cert, 64 << 10);
  if (!raw_cert.ok()) return Fail(raw_cert.status());
  v1::DelegationCert cert;
  v1::CertBody body;
  if (!cert.ParseFromString(*raw_cert) || !body.ParseFromString(cert.body())) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(a.cert, " is not a certificate")));
  }
  if (body.public_key() != key->public_key().raw()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(a.cert, " does not certify ", a.key)));
  }
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
  auto signed_manifest = core::SignManifest(*key, cert, core::BuildManifest(spec, *digests));
  if (!signed_manifest.ok()) return Fail(signed_manifest.status());
  if (absl::Status s = core::WriteFileAtomic(a.out, signed_manifest->SerializeAsString()); !s.ok())
    return Fail(s);
  std::cout << "signed " << a.component << " " << a.version << " (sequence " << a.sequence << ", "
            << digests->size << " bytes in " << core::ChunkCount(digests->size, a.chunk_size)
            << " chunks, sha256 " << core::HexEncode(digests->sha256).substr(0, 16) << "...) -> "
            << a.out << "\n";
  return 0;
}

// --- admin API ------------------------------------------------------------------------------

struct Admin {
  std::string url = "http://127.0.0.1:8368";
  std::string token;
  std::string token_file;

  absl::StatusOr<core::HttpClient> Client() const {
    std::string t = token;
    if (t.empty() && !token_file.empty()) {
      X1368_ASSIGN_OR_RETURN(std::string raw, core::ReadFileLimited(token_file, 4096));
      t = std::string(absl::StripAsciiWhitespace(raw));
    }
    if (t.empty()) {
      if (const char* env = std::getenv("X1368_ADMIN_TOKEN")) t = env;
    }
    if (t.empty())
      return absl::InvalidArgumentError(
          "no admin token: --token, --token-file or X1368_ADMIN_TOKEN");
    return core::HttpClient(url, t);
  }
};

absl::Status ReplyError(const core::HttpReply& r) {
  v1::ErrorReply e;
  if (google::protobuf::util::JsonStringToMessage(r.body, &e).ok() && !e.error().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("root refused (HTTP ", r.status, "): ", e.error()));
  }
  return absl::FailedPreconditionError(absl::StrCat("root answered HTTP ", r.status, ": ", r.body));
}

int ReleasePublish(const Admin& admin, const std::string& manifest_path,
                   const std::string& image_path) {
  auto client = admin.Client();
  if (!client.ok()) return Fail(client.status());
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
  auto r = client->PostForm("/v1/releases",
                            {{"manifest", *std::move(manifest), ""}, {"image", "", image_path}});
  if (!r.ok()) return Fail(r.status());
  if (r->status != 201) return Fail(ReplyError(*r));
  v1::ReleaseInfo info;
  (void)google::protobuf::util::JsonStringToMessage(r->body, &info);
  std::cout << "published " << info.component() << " " << info.version() << " (sequence "
            << info.sequence_number() << ", " << info.size() << " bytes)\n";
  return 0;
}

int CampaignStart(const Admin& admin, const std::string& component, const std::string& version,
                  const std::string& devices, int64_t deadline_s) {
  auto client = admin.Client();
  if (!client.ok()) return Fail(client.status());
  v1::CampaignStartRequest req;
  req.set_component(component);
  req.set_version(version);
  for (const std::string& d : SplitList(devices)) req.add_devices(d);
  req.set_deadline_s(deadline_s);
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(req, &json);
  auto r = client->Post("/v1/campaigns", json, "application/json");
  if (!r.ok()) return Fail(r.status());
  if (r->status != 201) return Fail(ReplyError(*r));
  v1::CampaignInfo info;
  (void)google::protobuf::util::JsonStringToMessage(r->body, &info);
  std::cout << "campaign " << info.campaign_id() << " started: " << component << " -> " << version
            << "\n";
  return 0;
}

// An online backup of root's database (GET /v1/backup: SQLite's backup API on the running
// root), written to `out` (mode 0600) only once complete.
int Backup(const Admin& admin, const std::string& out) {
  auto client = admin.Client();
  if (!client.ok()) return Fail(client.status());
  auto r = client->Get("/v1/backup");
  if (!r.ok()) return Fail(r.status());
  if (r->status != 200) return Fail(ReplyError(*r));
  if (absl::Status s = core::WriteFileAtomic(out, r->body, 0600); !s.ok()) return Fail(s);
  std::cout << "backed up root's database (" << r->body.size() << " bytes) to " << out
            << "; restore it with tracker-root --config FILE --restore " << out
            << " (see README: keep release.images_dir and the admin token too)\n";
  return 0;
}

absl::StatusOr<v1::FleetStatus> GetFleet(core::HttpClient& client) {
  X1368_ASSIGN_OR_RETURN(core::HttpReply r, client.Get("/v1/fleet"));
  if (r.status != 200) return ReplyError(r);
  v1::FleetStatus fleet;
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(r.body, &fleet, o).ok()) {
    return absl::DataLossError("root's fleet status does not parse");
  }
  return fleet;
}

std::string Rejections(const google::protobuf::RepeatedPtrField<v1::ReasonCount>& list) {
  std::vector<std::string> parts;
  for (const v1::ReasonCount& rc : list)
    parts.push_back(absl::StrCat(core::ReasonName(rc.reason()), "=", rc.count()));
  return parts.empty() ? "-" : absl::StrJoin(parts, ",");
}

int FleetStatus(const Admin& admin, bool json) {
  auto client = admin.Client();
  if (!client.ok()) return Fail(client.status());
  auto fleet = GetFleet(*client);
  if (!fleet.ok()) return Fail(fleet.status());
  if (json) {
    std::string out;
    google::protobuf::util::JsonPrintOptions o;
    o.preserve_proto_field_names = true;
    o.add_whitespace = true;
    (void)google::protobuf::util::MessageToJsonString(*fleet, &out, o);
    std::cout << out;
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
  std::string component, subtree, after;
  std::string list = "all";
  uint32_t limit = 0;
  bool asked() const {
    return !component.empty() || !subtree.empty() || !after.empty() || list != "all" || limit > 0;
  }
};

int FleetList(const Admin& admin, const ListArgs& a, bool json) {
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
  if (!a.after.empty()) absl::StrAppend(&path, "&after=", a.after);
  if (a.limit > 0) absl::StrAppend(&path, "&limit=", a.limit);
  auto client = admin.Client();
  if (!client.ok()) return Fail(client.status());
  auto r = client->Get(path);
  if (!r.ok()) return Fail(r.status());
  if (r->status != 200) return Fail(ReplyError(*r));
  if (json) {
    std::cout << r->body << "\n";
    return 0;
  }
  v1::DevicePage page;
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(r->body, &page, o).ok()) {
    return Fail(absl::DataLossError("root's device list does not parse"));
  }
  std::printf("%-20s %-24s %-10s %-10s %-10s %-12s %-20s %s\n", "DEVICE", "PATH", "COMPONENT",
              "VERSION", "LATEST", "STATE", "REASON", "ONLINE");
  for (const v1::DeviceRecord& d : page.devices()) {
    std::printf("%-20s %-24s %-10s %-10s %-10s %-12s %-20s %s\n", Cell(d.device_id()).c_str(),
                d.path().empty() ? "-" : Cell(d.path()).c_str(), Cell(d.component()).c_str(),
                Cell(d.version()).c_str(),
                d.latest_version().empty() ? "-" : Cell(d.latest_version()).c_str(),
                v1::UpdateState_Name(d.state()).c_str(),
                d.reason() == v1::REASON_UNSPECIFIED ? "-" : core::ReasonName(d.reason()).c_str(),
                d.online() ? "yes" : "no");
  }
  if (!page.next_after().empty()) std::printf("more: --after %s\n", page.next_after().c_str());
  return 0;
}

std::string TimeText(int64_t ms) {
  return absl::FormatTime(absl::RFC3339_sec, absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

void PrintDevice(const v1::DeviceRecord& d);

// `live`: also what the device's gateway holds now (GET /v1/devices/{id}/live, issue #13).
int DeviceShow(const Admin& admin, const std::string& id, bool json, bool live) {
  if (absl::Status s = core::ValidateNodeId(id, "device id"); !s.ok()) return Fail(s);
  auto client = admin.Client();
  if (!client.ok()) return Fail(client.status());
  auto r = client->Get(absl::StrCat("/v1/devices/", id, live ? "/live" : ""));
  if (!r.ok()) return Fail(r.status());
  if (r->status != 200) return Fail(ReplyError(*r));
  if (json) {
    std::cout << r->body << "\n";
    return 0;
  }
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  if (!live) {
    v1::DeviceRecord d;
    if (!google::protobuf::util::JsonStringToMessage(r->body, &d, o).ok()) {
      return Fail(absl::DataLossError("root's device record does not parse"));
    }
    PrintDevice(d);
    return 0;
  }
  v1::DeviceLiveView v;
  if (!google::protobuf::util::JsonStringToMessage(r->body, &v, o).ok()) {
    return Fail(absl::DataLossError("root's answer does not parse"));
  }
  PrintDevice(v.record());
  const v1::DeviceDetail& g = v.detail();
  if (g.error() != v1::REASON_UNSPECIFIED) {
    std::printf("gateway:    no gateway on its path knows it (%s)\n",
                core::ReasonName(g.error()).c_str());
    return 1;
  }
  std::printf("gateway:    %s says %s, last heard %s\n", Cell(g.gateway()).c_str(),
              g.online() ? "online" : "offline",
              g.last_seen_ms() > 0 ? TimeText(g.last_seen_ms()).c_str() : "not since its start");
  std::printf("report:     %s; %s\n",
              v.report_verified()
                  ? "its own signature verified by root"
                  : absl::StrCat("NOT verified: ", core::Quote(v.report_error())).c_str(),
              v.matches_root() ? "the one root's record holds"
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

int FleetWait(const Admin& admin, const std::string& component, const std::string& version,
              int count, int timeout_s) {
  auto client = admin.Client();
  if (!client.ok()) return Fail(client.status());
  absl::Time deadline = absl::Now() + absl::Seconds(timeout_s);
  std::string last;
  v1::FleetStatus fleet;
  while (true) {
    auto f = GetFleet(*client);
    if (f.ok()) {
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
    }
    if (absl::Now() > deadline) break;
    absl::SleepFor(absl::Milliseconds(300));
  }
  for (const v1::DeviceRecord& d : fleet.devices()) {
    if (d.component() == component && d.version() != version) {
      std::cerr << "not updated: " << Cell(d.device_id()) << " runs " << Cell(d.version())
                << ", state " << v1::UpdateState_Name(d.state()) << ", reason "
                << core::ReasonName(d.reason())
                << (d.detail().empty() ? "" : ": " + core::Quote(d.detail())) << "\n";
    }
  }
  return 1;
}

}  // namespace
}  // namespace x1368::ctl

int main(int argc, char** argv) {
  using namespace x1368::ctl;
  CLI::App app{
      "trackerctl: keys, certificates and signed manifests for an x1368 tracker tree, "
      "and the root's admin API (releases, campaigns, fleet status)."};
  app.require_subcommand(1);
  Admin admin;
  auto add_admin = [&admin](CLI::App* cmd) {
    cmd->add_option("--admin", admin.url, "root's admin API")->capture_default_str();
    cmd->add_option("--token", admin.token, "admin bearer token");
    cmd->add_option("--token-file", admin.token_file, "file holding the admin token");
  };

  std::string out, pub;
  auto* keygen = app.add_subcommand("keygen", "make an Ed25519 key pair (PEM)");
  keygen->add_option("--out", out, "private key file")->required();
  keygen->add_option("--pub", pub, "public key file (default: <out without .key>.pub)");

  auto* cert = app.add_subcommand("cert", "delegation certificates");
  cert->require_subcommand(1);
  CertArgs ca;
  auto* issue = cert->add_subcommand("issue", "root signs a node's delegation certificate");
  issue->add_option("--root-key", ca.root_key, "root's private key")->required();
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
  auto* sign = author->add_subcommand("sign", "build and sign a manifest for an image");
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
  sign->add_option("--out", sa.out, "signed manifest file")->required();

  auto* release = app.add_subcommand("release", "releases on root's firmware server");
  release->require_subcommand(1);
  std::string manifest_path, image_path;
  auto* publish =
      release->add_subcommand("publish", "submit a signed manifest and its image to root");
  publish->add_option("--manifest", manifest_path)->required();
  publish->add_option("--image", image_path)->required();
  add_admin(publish);

  auto* campaign = app.add_subcommand("campaign", "update campaigns");
  campaign->require_subcommand(1);
  std::string component, version, devices;
  int64_t deadline_s = 0;
  auto* start = campaign->add_subcommand("start", "move all devices of a component to a release");
  start->add_option("--component", component)->required();
  start->add_option("--version", version)->required();
  start->add_option("--devices", devices, "only these devices, comma separated");
  start->add_option("--deadline-s", deadline_s, "campaign deadline in seconds (default: root's)");
  add_admin(start);

  auto* fleet = app.add_subcommand("fleet", "fleet state as root knows it");
  fleet->require_subcommand(1);
  bool json = false;
  auto* status = fleet->add_subcommand(
      "status",
      "every device's version and state; with a list or a filter, one page of the matching "
      "devices (X.1368 §11.2 a)");
  status->add_flag("--json", json, "machine-readable output");
  ListArgs list_args;
  status->add_option("--component", list_args.component, "only this component's devices");
  status->add_option("--subtree", list_args.subtree, "only the devices at or below this node");
  auto* lists = status->add_option_group("list", "one of the lists");
  for (const auto& [flag, name] :
       {std::pair{"--up-to-date", "up_to_date"}, std::pair{"--obsolete", "obsolete"},
        std::pair{"--failed", "failed"}, std::pair{"--offline", "offline"},
        std::pair{"--updating", "updating"}, std::pair{"--needs-update", "needs_update"},
        std::pair{"--ahead", "ahead"}}) {
    lists->add_flag_callback(flag,
                             [&list_args, name = std::string(name)] { list_args.list = name; });
  }
  lists->require_option(0, 1);
  status->add_option("--limit", list_args.limit,
                     "devices per page (root's default 100, at most 1000)");
  status->add_option("--after", list_args.after, "the cursor a previous page printed");
  add_admin(status);
  auto* device = app.add_subcommand("device", "one device as root knows it");
  device->require_subcommand(1);
  std::string device_id;
  auto* device_show = device->add_subcommand("show", "state, path, release and liveness");
  device_show->add_option("ID", device_id, "the device id")->required();
  device_show->add_flag("--json", json, "machine-readable output");
  bool live = false;
  device_show->add_flag("--live", live,
                        "also ask the device's gateway: its signed report (verified by root) "
                        "and the log of its last exchanges");
  add_admin(device_show);
  int count = 0, timeout_s = 120;
  auto* wait = fleet->add_subcommand("wait", "wait until COUNT devices of COMPONENT run VERSION");
  wait->add_option("--component", component)->required();
  wait->add_option("--version", version)->required();
  wait->add_option("--count", count)->required();
  wait->add_option("--timeout-s", timeout_s)->capture_default_str();
  add_admin(wait);

  std::string backup_out;
  auto* backup = app.add_subcommand(
      "backup", "an online backup of root's database (restore: tracker-root --restore FILE)");
  backup->add_option("--out", backup_out, "backup file (written when complete, mode 0600)")
      ->required();
  add_admin(backup);

  CLI11_PARSE(app, argc, argv);
  if (*keygen) return Keygen(out, pub);
  if (*issue) return CertIssue(ca);
  if (*show) return CertShow(show_path);
  if (*sign) return AuthorSign(sa);
  if (*publish) return ReleasePublish(admin, manifest_path, image_path);
  if (*start) return CampaignStart(admin, component, version, devices, deadline_s);
  if (*status)
    return list_args.asked() ? FleetList(admin, list_args, json) : FleetStatus(admin, json);
  if (*device_show) return DeviceShow(admin, device_id, json, live);
  if (*wait) return FleetWait(admin, component, version, count, timeout_s);
  if (*backup) return Backup(admin, backup_out);
  return 1;
}
