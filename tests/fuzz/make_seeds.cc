// Writes the seed corpora of the fuzz targets: tests/fuzz/corpus/<target>/<seed>.
//
//   x1368_fuzz_make_seeds <corpus-dir>
//
// Built with the tests, run by hand when a target's input format changes. Seeds are small,
// meaningful inputs: real envelopes, manifests and certificates signed with the fixed keys of
// fuzz_keys.h at the fuzzers' clock time (Ed25519 is deterministic, so the output is the same
// every run), bodies for signed_body laid out as that target expects, real configuration files
// and store snapshots. Each seed says in its name what it is.
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fuzz_keys.h"
#include "testing/pki.h"
#include "x1368/core/chunk_table.h"
#include "x1368/core/clock.h"
#include "x1368/core/crypto.h"
#include "x1368/core/envelope.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/manifest.h"
#include "x1368/core/sequence.h"
#include "x1368/core/trust.h"
#include "x1368/v1/envelope.pb.h"
#include "x1368/v1/storage.pb.h"

namespace x1368::fuzz {
namespace {

constexpr int64_t kTtlMs = 24LL * 3600 * 1000;
constexpr size_t kMaxSeedBytes = 8 << 10;

std::string g_out_dir;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  if (bytes.size() >= kMaxSeedBytes) {
    fprintf(stderr, "seed %s/%s is %zu bytes, over the limit\n", target.c_str(), name.c_str(),
            bytes.size());
    exit(1);
  }
  std::string dir = absl::StrCat(g_out_dir, "/", target);
  std::filesystem::create_directories(dir);
  std::ofstream out(absl::StrCat(dir, "/", name), std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    fprintf(stderr, "cannot write %s/%s\n", dir.c_str(), name.c_str());
    exit(1);
  }
}

// Map fields serialize in hash order unless asked otherwise: seeds must not change between runs.
std::string Deterministic(const google::protobuf::MessageLite& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

std::string Prefixed(uint8_t first, const std::string& rest) {
  return std::string(1, static_cast<char>(first)) + rest;
}
std::string Prefixed(uint8_t first, uint8_t second, const std::string& rest) {
  return std::string{static_cast<char>(first), static_cast<char>(second)} + rest;
}

// Sealed with the fixed keys at kFuzzNowMs.
std::string Seal(const FuzzIdentity& signer, absl::string_view recipient, const v1::Body& body,
                 uint64_t seq, int64_t ttl_ms = kTtlMs) {
  core::FakeClock clock(kFuzzNowMs);
  core::MemKvStore store;
  auto counter = FuzzMust(core::SeqCounter::Open(&store, "seq"), "counter");
  std::optional<v1::DelegationCert> cert;
  if (signer.id != kRootId) cert = signer.cert;
  core::EnvelopeSealer sealer(signer.id, signer.key, cert, counter.get(), &clock);
  return FuzzMust(sealer.SealWithSeq(recipient, body, ttl_ms, seq), "seal");
}

// `body` exactly as given (sender, recipient, seq and times included), signed by `signer`.
std::string SignBody(const FuzzIdentity& signer, const v1::Body& body) {
  v1::Envelope env;
  env.set_signer_id(signer.id);
  env.set_alg(v1::ED25519);
  env.set_body(body.SerializeAsString());
  env.set_signature(
      FuzzMust(signer.key.Sign(core::SignedKind::kEnvelopeBody, env.body()), "sign body"));
  if (signer.id != kRootId) *env.mutable_signer_cert() = signer.cert;
  return env.SerializeAsString();
}

const std::string& Image() {
  static const std::string* image =
      new std::string(testing::TestPki::MakeImage(kFuzzImageSize, kFuzzImageSeed));
  return *image;
}

v1::Manifest ImageManifest() {
  return testing::TestPki::ManifestFor(Image(), "fw", "2.0.0", 2, {"board-a"},
                                       std::string(kAuthorId));
}

v1::SignedManifest SignedImageManifest() {
  return FuzzMust(core::SignManifest(FuzzPki().author.key, FuzzPki().author.cert, ImageManifest()),
                  "sign manifest");
}

v1::Body DirectiveBody(const std::string& campaign, const v1::SignedManifest& manifest) {
  v1::Body body;
  v1::UpdateDirective* d = body.mutable_directive();
  d->set_campaign_id(campaign);
  *d->mutable_manifest() = manifest;
  d->mutable_selector()->set_component("fw");
  return body;
}

v1::Body StatusBody(v1::UpdateState state) {
  v1::Body body;
  v1::StatusReport* r = body.mutable_status();
  r->set_device_id(std::string(kDeviceId));
  r->set_component("fw");
  r->set_version("1.0.0");
  r->set_sequence_number(1);
  r->set_hardware_class("board-a");
  r->set_state(state);
  v1::ReasonCount* rc = r->add_rejections();
  rc->set_reason(v1::BAD_SIGNATURE);
  rc->set_count(2);
  return body;
}

// `count` > 1: a batch of that many chunks of `length` bytes.
v1::Body ChunkRequestBody(uint64_t offset, uint32_t length, uint64_t id, uint32_t count = 0) {
  v1::Body body;
  v1::FirmwareChunkRequest* req = body.mutable_chunk_request();
  req->set_image_sha256(core::Sha256(Image()));
  req->set_offset(offset);
  req->set_length(length);
  req->set_request_id(id);
  req->set_count(count);
  return body;
}

v1::Body ChunkResponseBody() {
  v1::Body body;
  v1::FirmwareChunkResponse* r = body.mutable_chunk_response();
  r->set_image_sha256(core::Sha256(Image()));
  r->set_offset(0);
  r->set_error(v1::IMAGE_UNAVAILABLE);
  r->set_request_id(1);
  return body;
}

void EnvelopeOpenSeeds() {
  const FuzzKeys& k = FuzzPki();
  const std::string t = "envelope_open";
  enum : uint8_t { kParent = 0, kChild = 1, kRelayed = 2, kEmbedded = 3 };
  v1::Body go;
  go.mutable_go()->set_campaign_id("c-1");
  go.mutable_go()->set_directive_digest(std::string(32, '\xab'));
  Write(t, "parent_go", Prefixed(kParent, Seal(k.gateway, kDeviceId, go, 5)));
  // Signed times are the signer's choice: extremes must be rejected, not overflow.
  v1::Body extreme = go;
  extreme.set_sender(std::string(kGatewayId));
  extreme.set_recipient(std::string(kDeviceId));
  extreme.set_seq(8);
  extreme.set_issued_at_ms(INT64_MIN);
  extreme.set_expires_at_ms(INT64_MIN);
  Write(t, "parent_go_expired_at_int64_min", Prefixed(kParent, SignBody(k.gateway, extreme)));
  extreme.set_issued_at_ms(INT64_MAX);
  extreme.set_expires_at_ms(INT64_MAX);
  Write(t, "parent_go_issued_at_int64_max", Prefixed(kParent, SignBody(k.gateway, extreme)));
  std::string directive = Seal(k.root, "_all", DirectiveBody("c-1", SignedImageManifest()), 9);
  Write(t, "parent_root_directive", Prefixed(kParent, directive));
  Write(t, "embedded_directive", Prefixed(kEmbedded, directive));
  v1::Body desired;
  desired.mutable_desired()->add_directives(directive);
  v1::Go* grant = desired.mutable_desired()->add_grants();
  grant->set_campaign_id("c-1");
  v1::Envelope env;
  env.ParseFromString(directive);
  grant->set_directive_digest(core::Sha256(env.body()));
  Write(t, "parent_desired", Prefixed(kParent, Seal(k.gateway, kDeviceId, desired, 7)));
  Write(t, "child_status", Prefixed(kChild, Seal(k.device, kGatewayId, StatusBody(v1::IDLE), 3)));
  Write(t, "child_chunk_request",
        Prefixed(kChild, Seal(k.device, kGatewayId, ChunkRequestBody(16384, 16384, 4), 4)));
  Write(t, "child_chunk_request_batch",
        Prefixed(kChild, Seal(k.device, kGatewayId, ChunkRequestBody(0, 16384, 5, 16), 5)));
  v1::Body presence;
  presence.mutable_presence()->set_online(true);
  presence.mutable_presence()->set_epoch(3);
  Write(t, "child_presence", Prefixed(kChild, Seal(k.device, kGatewayId, presence, 6)));
  Write(t, "relayed_status",
        Prefixed(kRelayed, Seal(k.device, kGatewayId, StatusBody(v1::DOWNLOADING), 11)));
  // Time (issue #14): read outside the validity and replay windows, the response's certificate
  // judged at the time it asserts; extremes must be refused, not overflow.
  v1::Body time_request;
  time_request.mutable_time_request()->set_nonce(std::string(16, '\x5a'));
  Write(t, "child_time_request", Prefixed(kChild, Seal(k.device, kGatewayId, time_request, 12)));
  v1::Body time_response;
  time_response.mutable_time_response()->set_nonce(std::string(16, '\x5a'));
  time_response.mutable_time_response()->set_time_ms(INT64_MAX);
  Write(t, "parent_time_response_at_int64_max",
        Prefixed(kParent, Seal(k.gateway, kDeviceId, time_response, 13)));
}

// signed_body: route byte, flags byte, then Body bytes the harness signs (see its header).
void SignedBodySeeds() {
  const std::string t = "signed_body";
  enum : uint8_t {
    kDeviceCmd = 0,
    kDeviceDesired = 2,
    kDeviceFw = 3,
    kGatewayStatus = 4,
    kGatewayFw = 5,
    kRootStatus = 7,
    kRootFw = 8,
    kGatewayBroadcast = 11,
    kGatewayDesired = 12,
  };
  enum : uint8_t { kRootSigns = 1, kKeepHeader = 2, kSignNested = 4 };
  // Manifests go unsigned: the harness signs them with the tree's author key (kSignNested).
  v1::SignedManifest unsigned_manifest;
  unsigned_manifest.set_manifest(ImageManifest().SerializeAsString());

  v1::Body go;
  go.mutable_go()->set_campaign_id("c-fuzz");
  go.mutable_go()->set_directive_digest(std::string(32, '\xab'));
  // With kKeepHeader the window is the input's: one that ended at INT64_MIN must be EXPIRED.
  v1::Body expired = go;
  expired.set_recipient(std::string(kDeviceId));
  expired.set_expires_at_ms(INT64_MIN);
  Write(t, "device_go_expired_at_int64_min",
        Prefixed(kDeviceCmd, kKeepHeader, expired.SerializeAsString()));
  v1::Body time_response;
  time_response.mutable_time_response()->set_nonce(std::string(16, '\x5a'));
  time_response.mutable_time_response()->set_time_ms(INT64_MIN);
  Write(t, "device_time_response_at_int64_min",
        Prefixed(kDeviceCmd, 0, time_response.SerializeAsString()));
  v1::Body time_request;
  time_request.mutable_time_request()->set_nonce(std::string(65, '\x5a'));  // over 64 bytes
  Write(t, "gateway_time_request_long_nonce",
        Prefixed(kGatewayStatus, 0, time_request.SerializeAsString()));
  // Fleet status (issue #13): a gateway's batch with liveness and a summary that disagrees, a
  // request for the whole subtree, "show me device X" for the device and for a stranger, and
  // an answer nobody asked for.
  v1::Body fleet_batch;
  v1::ChildLiveness* l = fleet_batch.mutable_status_batch()->add_liveness();
  l->set_node_id(std::string(kDeviceId));
  l->set_online(false);
  l->set_since_ms(INT64_MIN);
  fleet_batch.mutable_status_batch()->add_liveness()->set_node_id("dev-stranger");
  fleet_batch.mutable_status_batch()->mutable_summary()->set_devices(UINT64_MAX);
  fleet_batch.mutable_status_batch()->mutable_summary()->set_digest(std::string(31, '\x01'));
  v1::SummaryCount* count = fleet_batch.mutable_status_batch()->mutable_summary()->add_counts();
  count->set_component("fw");
  count->set_devices(7);
  Write(t, "root_batch_liveness_and_summary",
        Prefixed(kRootStatus, 0, fleet_batch.SerializeAsString()));
  v1::Body full;
  full.mutable_status_request()->set_full(true);
  Write(t, "gateway_full_status_request", Prefixed(kGatewayBroadcast, 0, full.SerializeAsString()));
  v1::Body probe;
  probe.mutable_device_probe()->set_device_id(std::string(kDeviceId));
  probe.mutable_device_probe()->set_nonce(std::string(16, '\x42'));
  Write(t, "gateway_device_probe", Prefixed(kGatewayBroadcast, 0, probe.SerializeAsString()));
  probe.mutable_device_probe()->set_device_id("dev-stranger");
  probe.mutable_device_probe()->set_nonce(std::string(65, '\x42'));
  Write(t, "gateway_device_probe_stranger_long_nonce",
        Prefixed(kGatewayBroadcast, 0, probe.SerializeAsString()));
  v1::Body detail;
  detail.mutable_device_detail()->set_device_id(std::string(kDeviceId));
  detail.mutable_device_detail()->set_nonce(std::string(16, '\x42'));
  detail.mutable_device_detail()->set_report("not an envelope");
  Write(t, "root_device_detail_unasked", Prefixed(kRootStatus, 0, detail.SerializeAsString()));
  Write(t, "device_directive_from_root",
        Prefixed(kDeviceCmd, kRootSigns | kSignNested,
                 DirectiveBody("c-direct", unsigned_manifest).SerializeAsString()));
  v1::Body desired;
  desired.mutable_desired()->add_directives(
      DirectiveBody("c-desired", unsigned_manifest).SerializeAsString());
  desired.mutable_desired()->add_grants()->set_campaign_id("c-desired");
  Write(t, "device_desired", Prefixed(kDeviceDesired, kSignNested, desired.SerializeAsString()));
  Write(t, "device_chunk_response",
        Prefixed(kDeviceFw, 0, ChunkResponseBody().SerializeAsString()));
  v1::Body status = StatusBody(v1::DOWNLOADING);
  status.mutable_status()->set_bytes_done(UINT64_MAX);
  Write(t, "gateway_status", Prefixed(kGatewayStatus, 0, status.SerializeAsString()));
  Write(t, "gateway_chunk_request_huge",
        Prefixed(kGatewayFw, 0,
                 ChunkRequestBody(uint64_t{1} << 63, UINT32_MAX, 7).SerializeAsString()));
  // A batch of every chunk there could be: refused, never served in part.
  Write(t, "gateway_chunk_request_batch_huge_count",
        Prefixed(kGatewayFw, 0, ChunkRequestBody(0, 16384, 8, UINT32_MAX).SerializeAsString()));
  v1::Body batch;
  batch.mutable_status_batch()->add_reports(StatusBody(v1::CONFIRMED).SerializeAsString());
  v1::ReasonCount* rc = batch.mutable_status_batch()->add_rejections();
  rc->set_reason(v1::REPLAY);
  rc->set_count(4);
  Write(t, "root_batch", Prefixed(kRootStatus, kSignNested, batch.SerializeAsString()));
  Write(t, "root_chunk_request",
        Prefixed(kRootFw, 0, ChunkRequestBody(39000, 131072, 1).SerializeAsString()));
  // Four chunks from the second on, of an image of three: cut at the end.
  Write(t, "root_chunk_request_batch",
        Prefixed(kRootFw, 0, ChunkRequestBody(16384, 16384, 2, 4).SerializeAsString()));
  // gw1 accepts the directive, prefetches the image from root, forwards it and its go to dev-1:
  // the whole update runs.
  Write(t, "gateway_directive_broadcast",
        Prefixed(kGatewayBroadcast, kSignNested,
                 DirectiveBody("c-gateway", unsigned_manifest).SerializeAsString()));
  v1::Body kept = desired;
  // A second directive whose image claims 4 EiB: gw1 must refuse to fill its cache with it
  // rather than size its bookkeeping after the claim.
  v1::Manifest huge = ImageManifest();
  huge.set_version("3.0.0");
  huge.set_sequence_number(3);
  huge.set_size(uint64_t{1} << 62);
  huge.set_sha256(core::Sha256("an image too large to cache"));
  v1::SignedManifest unsigned_huge;
  unsigned_huge.set_manifest(huge.SerializeAsString());
  kept.mutable_desired()->add_directives(
      DirectiveBody("c-huge", unsigned_huge).SerializeAsString());
  kept.set_recipient(std::string(kGatewayId));
  kept.set_issued_at_ms(0);
  kept.set_expires_at_ms(INT64_MAX);
  Write(t, "gateway_desired_kept_header",
        Prefixed(kGatewayDesired, kSignNested | kKeepHeader, kept.SerializeAsString()));
}

void ManifestVerifySeeds() {
  const FuzzKeys& k = FuzzPki();
  const std::string t = "manifest_verify";
  v1::SignedManifest valid = SignedImageManifest();
  Write(t, "valid", valid.SerializeAsString());
  v1::Manifest https = ImageManifest();
  https.set_uri("https://updates.example.com/fw/2.0.0.bin");
  https.add_hardware_classes("board-b");
  https.set_description("second board, http download");
  Write(
      t, "valid_https_two_boards",
      FuzzMust(core::SignManifest(k.author.key, k.author.cert, https), "sign").SerializeAsString());
  v1::Manifest other = ImageManifest();
  other.set_component("bootloader");
  Write(
      t, "component_outside_scope",
      FuzzMust(core::SignManifest(k.author.key, k.author.cert, other), "sign").SerializeAsString());
  v1::SignedManifest no_cert = valid;
  no_cert.clear_author_cert();
  Write(t, "no_author_cert", no_cert.SerializeAsString());
  v1::SignedManifest bad_sig = valid;
  (*bad_sig.mutable_signature())[5] ^= 0x20;
  Write(t, "bad_signature", bad_sig.SerializeAsString());
  v1::Manifest by_gateway = ImageManifest();
  by_gateway.set_author_id(std::string(kGatewayId));
  Write(t, "signed_by_gateway",
        FuzzMust(core::SignManifest(k.gateway.key, k.gateway.cert, by_gateway), "sign")
            .SerializeAsString());
}

// cert_verify: flags byte (bit 0: the harness signs the body with the root key), certificate.
void CertVerifySeeds() {
  const FuzzKeys& k = FuzzPki();
  const std::string t = "cert_verify";
  Write(t, "gateway", Prefixed(0, k.gateway.cert.SerializeAsString()));
  Write(t, "device", Prefixed(0, k.device.cert.SerializeAsString()));
  Write(t, "author", Prefixed(0, k.author.cert.SerializeAsString()));
  auto unsigned_cert = [&](const v1::CertBody& body) {
    v1::DelegationCert cert;
    cert.set_body(body.SerializeAsString());
    cert.set_alg(v1::ED25519);
    return Prefixed(1, cert.SerializeAsString());
  };
  v1::CertBody body;
  body.set_node_id("gw9");
  body.set_role(v1::ROLE_INTERMEDIATE);
  body.set_alg(v1::ED25519);
  body.set_public_key(k.gateway.key.public_key().raw());
  body.mutable_scope()->add_nodes("*");
  body.mutable_scope()->add_nodes("dev-*");
  body.mutable_scope()->add_nodes("sensor-7");
  body.mutable_scope()->add_components("fw");
  body.set_not_before_ms(kFuzzNowMs - 1000);
  body.set_not_after_ms(kFuzzNowMs + 1000);
  body.set_issuer(std::string(kRootId));
  body.set_serial(42);
  Write(t, "resigned_wide_scope", unsigned_cert(body));
  v1::CertBody expired = body;
  expired.set_not_after_ms(1000);
  Write(t, "resigned_expired", unsigned_cert(expired));
  v1::CertBody short_key = body;
  short_key.set_public_key(short_key.public_key().substr(0, 31));
  short_key.set_role(v1::ROLE_ROOT);
  Write(t, "resigned_short_key_root_role", unsigned_cert(short_key));
}

void ConfigParseSeeds() {
  const std::string t = "config_parse";
  const std::string common =
      "node_id = \"gw1\"\n"
      "topic_prefix = \"x1368\"\n"
      "key = \"keys/gw1.key\"\n"
      "data_dir = \"/var/lib/x1368/gw1\"\n";
  Write(t, "root",
        "node_id = \"root\"\n"
        "key = \"root.key\"\n"
        "data_dir = \"data\"\n"
        "[root]\nid = \"root\"\npublic_key = \"root.pub\"\n"
        "[downstream]\nbroker = \"tcp://127.0.0.1:1883\"\nkeepalive_s = 30\n"
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n"
        "[limits]\nmax_message_bytes = 262144\nclock_skew_s = 300\nmessage_ttl_s = 600\n"
        "[log]\nlevel = \"warn\"\n");
  Write(t, "intermediate_tls",
        common +
            "cert = \"keys/gw1.cert\"\n"
            "parent_id = \"root\"\n"
            "[root]\nid = \"root\"\npublic_key = \"/etc/x1368/root.pub\"\n"
            "[upstream]\nbroker = \"ssl://broker.example:8883\"\n"
            "tls.ca = \"ca.pem\"\ntls.cert = \"gw1.pem\"\ntls.key = \"gw1-tls.key\"\n"
            "session_expiry_s = 3600\nmax_buffered = 10000\n"
            "[downstream]\nbroker = \"tcp://127.0.0.1:1884\"\n"
            "[fetch]\nwindow = 8\n"
            "[metrics]\nlisten = \"127.0.0.1:9368\"\n");
  Write(t, "client",
        "node_id = \"dev-1\"\nkey = \"dev-1.key\"\ncert = \"dev-1.cert\"\ndata_dir = \"d\"\n"
        "[root]\npublic_key = \"root.pub\"\n"
        "[upstream]\nbroker = \"mqtt://localhost:1883\"\n"
        "[consumer]\nfail_install = false\ncomponents = [\"fw\", \"boot\"]\n");
  Write(t, "errors",
        "node_id = \"_all\"\ntopic_prefix = \"a/b\"\nkey = 7\ndata_dir = \"d\"\n"
        "[root]\nid = \"r#1\"\npublic_key = \"root.pub\"\n"
        "[upstream]\nbroker = \"http://x\"\ntls.ca = \"ca.pem\"\nkeepalive_s = 0\n"
        "[limits]\nmax_message_bytes = 12\n"
        "[consumer]\ncomponents = [1, \"x\"]\nfail_install = \"yes\"\n"
        "uplink = \"typo\"\nfail = true\n");
  Write(t, "syntax_error", "node_id = \"gw1\"\n[upstream\nbroker = \"tcp://x:1\"\n");
  Write(t, "nested_tables",
        "node_id = 'n'\nkey = 'k'\ndata_dir = 'd'\n[root]\npublic_key = 'p'\n"
        "[a.b.c]\nd = { e = [1, 2.5, 1979-05-27T07:32:00Z, \"\"\"multi\nline\"\"\"] }\n"
        "[[f]]\ng = 0x7fffffffffffffff\n[[f]]\ng = -9223372036854775808\n");
}

// kv_snapshot: flags byte (bit 0: the harness prefixes the checksum; bit 1: also write and
// re-open), then the file (or, with bit 0, the snapshot only).
void KvSnapshotSeeds() {
  const std::string t = "kv_snapshot";
  v1::KvSnapshot snapshot;
  auto& e = *snapshot.mutable_entries();
  e["own_seq"] = "2048";
  e["presence_epoch"] = "3";
  uint64_t highest = 77, seen = 0xffff;
  std::string window(16, '\0');
  memcpy(window.data(), &highest, 8);
  memcpy(window.data() + 8, &seen, 8);
  e["seen/main/gw1"] = window;
  v1::UpdateRecord record;
  record.set_state(v1::DOWNLOADING);
  record.set_campaign_id("c-1");
  record.set_bytes_done(16384);
  record.add_finished_campaigns("c-0");
  e["update_record"] = record.SerializeAsString();
  std::string payload = Deterministic(snapshot);
  Write(t, "file_valid", Prefixed(0, core::Sha256(payload) + payload));
  Write(t, "checksummed", Prefixed(1, payload));
  Write(t, "checksummed_write_reopen", Prefixed(3, payload));
  Write(t, "checksummed_empty", Prefixed(1, ""));
  std::string corrupt = core::Sha256(payload) + payload;
  corrupt[40] ^= 1;
  Write(t, "file_bad_checksum", Prefixed(0, corrupt));
}

void TopicParseSeeds() {
  const std::string t = "topic_parse";
  Write(t, "down_cmd", "x1368/gw1/dev-1/down/cmd");
  Write(t, "down_all_cmd", "x1368/gw1/_all/down/cmd");
  Write(t, "down_desired", "x1368/root/gw1/down/desired");
  Write(t, "up_status", "x1368/root/gw1/up/status");
  Write(t, "up_presence_other_prefix", "site.a/gw-2/dev_3/up/presence");
  Write(t, "wildcards", "x1368/gw1/+/up/#");
  Write(t, "all_on_up", "x1368/gw1/_all/up/fw");
}

// ChunkData answers to the chunk_data harness's request (id 1: one batch for the 5 chunks at
// offsets 0, 1024, ...): the first byte selects the image (0) or its chunk table (1).
void ChunkDataSeeds() {
  const std::string t = "chunk_data";
  std::string image;
  for (size_t i = 0; i < 4 * 1024 + 100; ++i) image.push_back(static_cast<char>(i * 131 + 7));
  core::ImageDigests d = core::DigestImage(image, 1024);
  auto seed = [&](const std::string& name, bool table, uint64_t offset, uint64_t id,
                  std::string bytes) {
    v1::ChunkData c;
    c.set_image_sha256(d.sha256);
    c.set_offset(offset);
    c.set_request_id(id);
    c.set_table(table);
    c.set_data(std::move(bytes));
    Write(t, name, std::string(1, table ? '\x01' : '\x00') + c.SerializeAsString());
  };
  seed("first_chunk", false, 0, 1, image.substr(0, 1024));
  seed("last_chunk", false, 4096, 1, image.substr(4096));
  std::string bad = image.substr(1024, 1024);
  bad[0] ^= 1;
  seed("tampered_chunk", false, 1024, 1, bad);
  seed("short_chunk", false, 2048, 1, image.substr(2048, 10));
  seed("unasked_id", false, 3072, 2, image.substr(3072, 1024));
  seed("table", true, 0, 1, d.table);
}

}  // namespace
}  // namespace x1368::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <corpus-dir>   (tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  x1368::fuzz::g_out_dir = argv[1];
  x1368::fuzz::EnvelopeOpenSeeds();
  x1368::fuzz::SignedBodySeeds();
  x1368::fuzz::ManifestVerifySeeds();
  x1368::fuzz::CertVerifySeeds();
  x1368::fuzz::ConfigParseSeeds();
  x1368::fuzz::KvSnapshotSeeds();
  x1368::fuzz::TopicParseSeeds();
  x1368::fuzz::ChunkDataSeeds();
  printf("seeds written to %s\n", argv[1]);
  return 0;
}
