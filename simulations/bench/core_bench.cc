// The core operations one message, one manifest, one batch of device records or one chunk costs,
// each beside the physical limit under it, measured in the same run (issue #12). Real keys,
// certificates, files and SQLite databases in a temporary directory; no fakes.
//
// Every benchmark reports the same counters:
//   per_s           operations per second (wall clock, the timed loop only)
//   limit_per_s     the same unit of work done by the raw primitive alone, measured by a
//                   time-bounded loop run half before and half after the timed loop (so a machine
//                   that gets busier in between shifts both alike)
//   ratio_to_limit  per_s / limit_per_s: 1 is the limit; the ideal ratio is in each comment
//   limit_drift     |before - after| / mean of the two limit halves: how steady the machine was
// Chunk serving adds MB_per_s and limit_MB_per_s.
//
//   build/bin/core_bench                       # about 10 s
//   build/bin/core_bench --benchmark_format=json
#include <benchmark/benchmark.h>
#include <sqlite3.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "testing/pki.h"
#include "testing/tree.h"
#include "x1368/core/chunk_service.h"
#include "x1368/core/clock.h"
#include "x1368/core/crypto.h"
#include "x1368/core/envelope.h"
#include "x1368/core/file_system.h"
#include "x1368/core/manifest.h"
#include "x1368/core/sequence.h"
#include "x1368/core/sqlite_db.h"
#include "x1368/core/topics.h"
#include "x1368/core/trust.h"
#include "x1368/intermediate/firmware_cache.h"
#include "x1368/root/fleet_query.h"
#include "x1368/root/registry.h"

namespace x1368::testing {
namespace {

// Seconds of each limit loop, split between before and after the timed loop.
constexpr double kLimitSeconds = 0.5;

// Setup that cannot fail on a working machine: a failure ends the run with the reason.
template <typename T>
T Must(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    fprintf(stderr, "core_bench: %s: %s\n", what, v.status().ToString().c_str());
    std::abort();
  }
  return *std::move(v);
}
void Must(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    fprintf(stderr, "core_bench: %s: %s\n", what, s.ToString().c_str());
    std::abort();
  }
}

// `op` back to back for at least `seconds`.
struct Timed {
  double ops = 0;
  double seconds = 0;
  double rate() const { return seconds > 0 ? ops / seconds : 0; }
};
template <typename Op>
Timed RunFor(double seconds, Op&& op) {
  Timed t;
  const absl::Time start = absl::Now();
  const absl::Duration min = absl::Seconds(seconds);
  absl::Duration elapsed;
  do {
    op();
    t.ops += 1;
    elapsed = absl::Now() - start;
  } while (elapsed < min);
  t.seconds = absl::ToDoubleSeconds(elapsed);
  return t;
}

// The limit, measured around the timed loop: Before() ahead of it, After() behind it.
template <typename Op>
class Limit {
 public:
  explicit Limit(Op op) : op_(std::move(op)) {}
  void Before() { before_ = RunFor(kLimitSeconds / 2, op_); }
  void After() { after_ = RunFor(kLimitSeconds / 2, op_); }
  // Operations of the limit per second, both halves together.
  double rate() const { return (before_.ops + after_.ops) / (before_.seconds + after_.seconds); }
  double drift() const {
    double mean = (before_.rate() + after_.rate()) / 2;
    return mean > 0 ? std::fabs(before_.rate() - after_.rate()) / mean : 0;
  }

 private:
  Op op_;
  Timed before_, after_;
};

// Sets the common counters. `units` is how many units (signatures, records, chunks) one timed
// iteration did, `limit_units` how many one limit operation did.
// Returns per_s and limit_per_s.
template <typename Op>
std::pair<double, double> Report(benchmark::State& state, double seconds, double units,
                                 const Limit<Op>& limit, double limit_units) {
  const double per_s = static_cast<double>(state.iterations()) * units / seconds;
  const double limit_per_s = limit.rate() * limit_units;
  state.counters["per_s"] = per_s;
  state.counters["limit_per_s"] = limit_per_s;
  state.counters["ratio_to_limit"] = limit_per_s > 0 ? per_s / limit_per_s : 0;
  state.counters["limit_drift"] = limit.drift();
  return {per_s, limit_per_s};
}

// A status report as a device sends it mid-download: every field a real one carries, the
// detail sized so the signed body (sender, recipient, sequence and times included) is ~300
// bytes.
constexpr size_t kBodyBytes = 300;
v1::Body StatusBody(const std::string& device) {
  v1::Body body;
  v1::StatusReport* s = body.mutable_status();
  s->set_device_id(device);
  s->set_component("main-firmware");
  s->set_version("2.4.1");
  s->set_sequence_number(41);
  s->set_hardware_class("board-rev-c");
  s->set_campaign_id("c-20240611-eu-west-2.5.0");
  s->set_state(v1::DOWNLOADING);
  s->set_bytes_done(11 * 16384);
  s->set_bytes_total(1 << 20);
  s->set_target_version("2.5.0");
  for (v1::Reason r : {v1::DUPLICATE, v1::EXPIRED}) {
    v1::ReasonCount* c = s->add_rejections();
    c->set_reason(r);
    c->set_count(3);
  }
  // Probe with the fields Seal() fills, at their usual sizes.
  v1::Body probe = body;
  probe.set_sender(device);
  probe.set_recipient("gw-1");
  probe.set_seq(100'000);
  probe.set_issued_at_ms(1'700'000'000'000);
  probe.set_expires_at_ms(1'700'000'060'000);
  size_t size = probe.ByteSizeLong();
  std::string detail = "chunk 11 of 64 from gw-1; link rssi -71 dBm; retries 0";
  if (size + detail.size() + 2 < kBodyBytes) detail.resize(kBodyBytes - size - 2, '.');
  s->set_detail(detail);
  return body;
}

// What sealing and opening need: a root, a gateway "gw-1" covering dev-*, and "dev-00042".
struct EnvelopeWorld {
  EnvelopeWorld()
      : pki(dir.path()),
        trust(pki.root_id(), pki.root_key().public_key(), core::RealClock::Get()),
        gw(pki.Make("gw-1", v1::ROLE_INTERMEDIATE, {"dev-*"})),
        dev(pki.Make("dev-00042", v1::ROLE_CLIENT)) {
    // Both ends keep their sequence state in a tracker's SQLite store on disk, as nodes do.
    db = Must(core::SqliteDb::Open(dir.File("node.db")), "open node.db");
    kv = Must(core::SqliteKvStore::Open(db.get()), "open kv");
    seq = Must(core::SeqCounter::Open(kv.get(), "own_seq"), "open seq counter");
  }
  TempDir dir;
  TestPki pki;
  core::TrustStore trust;
  TestNode gw, dev;
  std::unique_ptr<core::SqliteDb> db;
  std::unique_ptr<core::SqliteKvStore> kv;
  std::unique_ptr<core::SeqCounter> seq;
};

constexpr int64_t kTtlMs = 10 * 60 * 1000;

// The body bytes Seal() signs and their signature, from one sealed envelope.
v1::Envelope ParsedEnvelope(const std::string& bytes) {
  v1::Envelope env;
  if (!env.ParseFromString(bytes)) std::abort();
  return env;
}

// Seal: serialize the body, sign it, wrap it with the certificate. Limit: one raw Ed25519
// signature of the same body bytes. Ideal ratio: 1 (the signature is the only real work; the
// sequence lease is persisted, with an fsync, once every 1024 messages).
void BM_EnvelopeSeal(benchmark::State& state) {
  EnvelopeWorld w;
  core::EnvelopeSealer sealer(w.dev.id, w.dev.key, w.dev.cert, w.seq.get(), core::RealClock::Get());
  const v1::Body body = StatusBody(w.dev.id);
  const std::string signed_body =
      ParsedEnvelope(Must(sealer.Seal("gw-1", body, kTtlMs), "seal")).body();
  auto sign = [&] {
    benchmark::DoNotOptimize(w.dev.key.Sign(core::SignedKind::kEnvelopeBody, signed_body));
  };
  Limit limit(sign);
  limit.Before();
  const absl::Time start = absl::Now();
  for (auto _ : state) {
    auto sealed = sealer.Seal("gw-1", body, kTtlMs);
    if (!sealed.ok()) {
      state.SkipWithError("seal failed");
      break;
    }
    benchmark::DoNotOptimize(*sealed);
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  limit.After();
  Report(state, seconds, 1, limit, 1);
  state.counters["body_bytes"] = static_cast<double>(signed_body.size());
}
BENCHMARK(BM_EnvelopeSeal)->Iterations(20'000)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Open at the gateway, a status report from its child: size, parse, the signer's certificate
// (verified once, then found in the trust store's cache), the signature, the body's times, the
// origin rules, the replay window, the body digest. Every message carries a fresh sequence
// number (sealed beforehand), since the replay guard refuses anything seen. Limit: one raw
// Ed25519 verify of the same body bytes. Ideal ratio: 1 (one verify per message once the
// certificate is cached).
void BM_EnvelopeOpen(benchmark::State& state) {
  EnvelopeWorld w;
  core::EnvelopeSealer sealer(w.dev.id, w.dev.key, w.dev.cert, w.seq.get(), core::RealClock::Get());
  const v1::Body body = StatusBody(w.dev.id);
  std::vector<std::string> sealed;
  sealed.reserve(static_cast<size_t>(state.max_iterations));
  for (benchmark::IterationCount i = 0; i < state.max_iterations; ++i) {
    sealed.push_back(Must(sealer.Seal("gw-1", body, kTtlMs), "seal"));
  }
  auto gw_db = Must(core::SqliteDb::Open(w.dir.File("gw.db")), "open gw.db");
  auto gw_kv = Must(core::SqliteKvStore::Open(gw_db.get()), "open gw kv");
  core::ReplayGuard replay(gw_kv.get());
  auto gw_self = Must(w.trust.VerifyCert(w.gw.cert), "gateway certificate");
  core::EnvelopeOpener opener(gw_self, &w.trust, &replay, core::RealClock::Get(),
                              core::EnvelopeLimits{});
  const core::OpenContext from_child{core::Origin::kFromChild, w.dev.id, nullptr};

  const v1::Envelope first = ParsedEnvelope(sealed.front());
  const core::PublicKey pub = w.dev.key.public_key();
  auto verify = [&] {
    if (!pub.Verify(core::SignedKind::kEnvelopeBody, first.body(), first.signature())) {
      std::abort();
    }
  };
  Limit limit(verify);
  limit.Before();
  size_t next = 0;
  const absl::Time start = absl::Now();
  for (auto _ : state) {
    auto opened = opener.Open(sealed[next++], from_child);
    if (!opened.ok()) {
      state.SkipWithError(opened.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(*opened);
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  limit.After();
  Report(state, seconds, 1, limit, 1);
  state.counters["body_bytes"] = static_cast<double>(first.body().size());
  state.counters["envelope_bytes"] = static_cast<double>(sealed.front().size());
}
BENCHMARK(BM_EnvelopeOpen)->Iterations(10'000)->Unit(benchmark::kMicrosecond)->UseRealTime();

// VerifyManifest as a device runs it on a directive's manifest: parse, validate, the author's
// certificate against the root, role and scope, then the author's signature. Limit: one raw
// Ed25519 verify of the manifest bytes.
//   cached_cert:0  a fresh trust store per manifest (a device meeting this author for the first
//                  time): two verifies, the certificate's and the manifest's. Ideal ratio: 0.5.
//   cached_cert:1  the author's certificate already in the trust store's cache (a gateway or
//                  root checking many manifests of one author): one verify. Ideal ratio: 1.
void BM_ManifestVerify(benchmark::State& state) {
  const bool cached = state.range(0) != 0;
  TempDir dir;
  TestPki pki(dir.path());
  TestNode author = pki.Make("author-1", v1::ROLE_AUTHOR, {}, {"main-firmware"});
  const std::string image = TestPki::MakeImage(4096, 1);
  const v1::SignedManifest sm = TestPki::Sign(
      author,
      TestPki::ManifestFor(image, "main-firmware", "2.5.0", 42, {"board-rev-c"}, author.id));
  const core::PublicKey root_pub = pki.root_key().public_key();
  core::TrustStore warm(pki.root_id(), root_pub, core::RealClock::Get());
  Must(core::VerifyManifest(warm, sm), "manifest");

  const core::PublicKey pub = author.key.public_key();
  auto verify = [&] {
    if (!pub.Verify(core::SignedKind::kManifest, sm.manifest(), sm.signature())) std::abort();
  };
  Limit limit(verify);
  limit.Before();
  const absl::Time start = absl::Now();
  for (auto _ : state) {
    std::optional<core::TrustStore> cold;
    if (!cached) cold.emplace(pki.root_id(), root_pub, core::RealClock::Get());
    auto m = core::VerifyManifest(cached ? warm : *cold, sm);
    if (!m.ok()) {
      state.SkipWithError("manifest verify failed");
      break;
    }
    benchmark::DoNotOptimize(*m);
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  limit.After();
  Report(state, seconds, 1, limit, 1);
  state.counters["manifest_bytes"] = static_cast<double>(sm.ByteSizeLong());
}
BENCHMARK(BM_ManifestVerify)
    ->ArgName("cached_cert")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(5'000)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Root's registry upserting a batch of device records, as it does with the reports of a
// relayed StatusBatch: StageDevice for each, then one Commit (one SQLite transaction, WAL,
// synchronous=FULL) into a database on disk that already holds a fleet of 10,000 devices; the
// batches walk the fleet. Limit: the same bytes (the records serialized beforehand) written by
// raw sqlite3 with one prepared INSERT OR REPLACE in one transaction, into a second database on
// the same disk with the same table, pragmas and fleet. Both pay one WAL commit (fsync) per
// batch; the registry adds its bookkeeping: each record copied into its in-memory maps,
// serialized at Commit, bound as a copy, the statements prepared once per Commit. Ideal ratio: 1.
// Counted in records per second.
constexpr int kFleet = 10'000;

v1::DeviceRecord DeviceRecordOf(int i, int64_t now_ms) {
  v1::DeviceRecord d;
  d.set_device_id(absl::StrFormat("dev-%05d", i));
  d.set_via(absl::StrFormat("gw-%d", i % 100));
  d.set_component("main-firmware");
  d.set_version("2.4.1");
  d.set_sequence_number(41);
  d.set_hardware_class("board-rev-c");
  d.set_campaign_id("c-20240611-eu-west-2.5.0");
  d.set_state(v1::DOWNLOADING);
  d.set_detail("chunk 11 of 64");
  d.set_updated_at_ms(now_ms);
  d.set_online(true);
  return d;
}

// A bare SQLite database with the registry's devices table, opened as SqliteDb opens one.
class RawDevicesDb {
 public:
  explicit RawDevicesDb(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      Fail("open");
    }
    Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
    Exec("CREATE TABLE devices (device_id TEXT PRIMARY KEY, record BLOB NOT NULL)");
    const char* sql = "INSERT OR REPLACE INTO devices VALUES (?, ?)";
    if (sqlite3_prepare_v2(db_, sql, -1, &upsert_, nullptr) != SQLITE_OK) Fail("prepare");
  }
  ~RawDevicesDb() {
    sqlite3_finalize(upsert_);
    sqlite3_close(db_);
  }
  RawDevicesDb(const RawDevicesDb&) = delete;
  RawDevicesDb& operator=(const RawDevicesDb&) = delete;

  // One transaction of rows [begin, begin + n) of `ids` / `records`.
  void Upsert(const std::vector<std::string>& ids, const std::vector<std::string>& records,
              size_t begin, size_t n) {
    Exec("BEGIN IMMEDIATE");
    for (size_t i = begin; i < begin + n; ++i) {
      const std::string& id = ids[i % ids.size()];
      const std::string& rec = records[i % records.size()];
      sqlite3_bind_text(upsert_, 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
      sqlite3_bind_blob(upsert_, 2, rec.data(), static_cast<int>(rec.size()), SQLITE_STATIC);
      if (sqlite3_step(upsert_) != SQLITE_DONE) Fail("insert");
      sqlite3_reset(upsert_);
    }
    Exec("COMMIT");
  }

 private:
  void Exec(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) Fail(sql);
  }
  [[noreturn]] void Fail(const char* what) {
    fprintf(stderr, "core_bench: raw sqlite %s: %s\n", what, sqlite3_errmsg(db_));
    std::abort();
  }
  sqlite3* db_ = nullptr;
  sqlite3_stmt* upsert_ = nullptr;
};

void BM_RegistryUpsert(benchmark::State& state) {
  const size_t batch = static_cast<size_t>(state.range(0));
  TempDir dir;
  const int64_t now = core::RealClock::Get()->NowMs();
  std::vector<v1::DeviceRecord> records;
  std::vector<std::string> ids, bytes;
  for (int i = 0; i < kFleet; ++i) {
    records.push_back(DeviceRecordOf(i, now));
    ids.push_back(records.back().device_id());
    bytes.push_back(records.back().SerializeAsString());
  }
  auto db = Must(core::SqliteDb::Open(dir.File("root.db")), "open root.db");
  auto registry = Must(root::Registry::Open(db.get()), "open registry");
  for (const v1::DeviceRecord& r : records) registry->StageDevice(r);
  Must(registry->Commit(), "fill the registry");
  RawDevicesDb raw(dir.File("raw.db"));
  raw.Upsert(ids, bytes, 0, ids.size());

  size_t raw_next = 0;
  auto raw_batch = [&] {
    raw.Upsert(ids, bytes, raw_next, batch);
    raw_next += batch;
  };
  Limit limit(raw_batch);
  limit.Before();
  size_t next = 0;
  const absl::Time start = absl::Now();
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) registry->StageDevice(records[(next + i) % records.size()]);
    next += batch;
    if (!registry->Commit().ok()) {
      state.SkipWithError("commit failed");
      break;
    }
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  limit.After();
  Report(state, seconds, static_cast<double>(batch), limit, static_cast<double>(batch));
  state.counters["record_bytes"] = static_cast<double>(bytes.front().size());
  state.counters["batches_per_s"] = static_cast<double>(state.iterations()) / seconds;
}
BENCHMARK(BM_RegistryUpsert)
    ->ArgName("batch")
    ->Arg(100)
    ->Iterations(500)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_RegistryUpsert)
    ->ArgName("batch")
    ->Arg(1000)
    ->Iterations(200)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Root's lists over a registry of 1,000,000 devices (issue #13: a page of `fleet status
// --obsolete` in under 200 ms), in memory as root holds them: 2% on the old release, spread
// evenly; 10 failed ones. state.range(0): 0 the first page of the obsolete list (dense: the page
// fills after ~5,000 rows), 1 the failed list (sparse: every row is read), 2 the summary (every
// row, counted by list and version). Limit: one pass over the same records in a plain std::map,
// reading the one field the obsolete test needs; the ideal ratio for the sparse list and the
// summary is 1 (they must read every row), and far above 1 for a dense page.
void BM_FleetQuery(benchmark::State& state) {
  constexpr int kDevices = 1'000'000;
  const int which = static_cast<int>(state.range(0));
  TempDir dir;
  TestPki pki(dir.path());
  TestNode author = pki.Issue("author-1", v1::ROLE_AUTHOR, {}, {"main-firmware"});
  auto db = Must(core::SqliteDb::Open(dir.File("root.db")), "open root.db");
  auto registry = Must(root::Registry::Open(db.get()), "open registry");
  for (uint64_t seq : {41, 42}) {
    const std::string image = TestPki::MakeImage(1000, static_cast<uint32_t>(seq));
    v1::Manifest m = TestPki::ManifestFor(image, "main-firmware", absl::StrCat("2.4.", seq - 40),
                                          seq, {"board-rev-c"}, author.id);
    Must(registry->AddRelease(root::Release{TestPki::Sign(author, m), m, dir.File("img")}),
         "add release");
  }
  const int64_t now = core::RealClock::Get()->NowMs();
  std::map<std::string, v1::DeviceRecord> plain;
  for (int i = 0; i < kDevices; ++i) {
    v1::DeviceRecord d = DeviceRecordOf(i, now);
    d.set_device_id(absl::StrFormat("dev-%07d", i));
    d.set_path(d.via());
    const bool old = i % 50 == 0;
    d.set_version(old ? "2.4.1" : "2.4.2");
    d.set_sequence_number(old ? 41 : 42);
    d.set_state(i % 100'000 == 7 ? v1::FAILED : v1::IDLE);
    registry->StageDevice(d);
    plain.emplace(d.device_id(), std::move(d));
  }
  auto scan = [&] {
    uint64_t older = 0;
    for (const auto& [id, d] : plain) older += d.sequence_number() < 42;
    benchmark::DoNotOptimize(older);
  };
  Limit limit(scan);
  limit.Before();
  const root::Liveness liveness{now, 3'600'000};
  v1::DeviceQuery q;
  q.set_list(which == 0 ? v1::LIST_OBSOLETE : v1::LIST_FAILED);
  size_t found = 0;
  const absl::Time start = absl::Now();
  for (auto _ : state) {
    if (which == 2) {
      v1::FleetSummary summary = root::Summarize(*registry, liveness);
      found = summary.components(0).obsolete();
    } else {
      found = static_cast<size_t>(
          Must(root::ListDevices(*registry, q, liveness), "list").devices_size());
    }
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  limit.After();
  Report(state, seconds, 1, limit, 1);
  state.counters["devices"] = kDevices;
  state.counters["found"] = static_cast<double>(found);
  state.counters["ms_per_query"] = seconds * 1000 / static_cast<double>(state.iterations());
}
BENCHMARK(BM_FleetQuery)
    ->ArgName("obsolete0_failed1_summary2")
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Iterations(5)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Root ingesting device state changes through gateways' batches, persisted (issue #13: target
// 50,000 changes/s): the whole path of a real Root on its event loop, from the in-memory
// broker's delivery of a signed StatusBatch of 200 device-signed reports to the registry's
// commit. 5,000 devices that root already knows go through a campaign: 7 changes each (offered,
// two progress reports, verified, installing, trial boot, confirmed). state.range(0): 0 with
// status.verify_relayed = evidence (root verifies each device's signature on its outcome only,
// and the gateway's on each batch), 1 with "all" (every device signature). Limit: one raw
// Ed25519 verification, as changes/s: "all" cannot exceed about ratio 1; "evidence" is what
// lets root's cost grow with gateways and outcomes, not with progress.
void BM_RootIngest(benchmark::State& state) {
  const bool verify_all = state.range(0) == 1;
  constexpr int kIngestDevices = 5000;
  constexpr int kBatch = 200;
  const v1::UpdateState kSteps[] = {v1::OFFERED,    v1::DOWNLOADING, v1::DOWNLOADING, v1::VERIFIED,
                                    v1::INSTALLING, v1::TRIAL_BOOT,  v1::CONFIRMED};
  TestTree tree(/*broker=*/nullptr);
  RootNode* root =
      tree.AddRoot([&](nodes::RootSpec& spec) { spec.options.verify_relayed_all = verify_all; });
  const core::Clock* clock = core::RealClock::Get();
  TestNode gw = tree.pki().Make("gw-1", v1::ROLE_INTERMEDIATE, {"dev-*"});
  core::EnvelopeSealer gw_sealer(gw.id, gw.key, gw.cert, nullptr, clock);
  uint64_t gw_seq = 1;
  std::vector<TestNode> devices;
  for (int i = 0; i < kIngestDevices; ++i) {
    devices.push_back(tree.pki().Make(absl::StrFormat("dev-%05d", i), v1::ROLE_CLIENT));
  }
  // Round 0: every device's first report (root verifies first contact); then the campaign.
  auto batches_of_round = [&](int round) {
    std::vector<std::string> out;
    v1::Body batch;
    for (int i = 0; i < kIngestDevices; ++i) {
      const TestNode& d = devices[static_cast<size_t>(i)];
      v1::Body body = StatusBody(d.id);
      v1::StatusReport* r = body.mutable_status();
      r->set_component("fw");
      r->set_hardware_class("board-a");
      r->set_campaign_id(round == 0 ? "" : "c-1");
      r->set_state(round == 0 ? v1::IDLE : kSteps[round - 1]);
      r->set_bytes_done(static_cast<uint64_t>(round) * 1000);
      r->set_sequence_number(round >= 6 ? 2 : 1);
      r->set_version(round >= 6 ? "2.0.0" : "1.0.0");
      core::EnvelopeSealer sealer(d.id, d.key, d.cert, nullptr, clock);
      batch.mutable_status_batch()->add_reports(
          Must(sealer.SealWithSeq("gw-1", body, kTtlMs, static_cast<uint64_t>(round) + 1),
               "seal report"));
      batch.mutable_status_batch()->add_paths("");
      if (batch.status_batch().reports_size() == kBatch || i + 1 == kIngestDevices) {
        out.push_back(Must(gw_sealer.SealWithSeq(tree.pki().root_id(), batch, kTtlMs, gw_seq++),
                           "seal batch"));
        batch.Clear();
      }
    }
    return out;
  };
  auto gateway = tree.RawTransport("gw-1");
  Must(gateway->Start(), "gateway link");
  const std::string topic =
      core::UpTopic("x1368", tree.pki().root_id(), "gw-1", core::Channel::kStatus);
  auto recorded = [&] {
    return OnLoop(*root->loop, [&] { return root->root->Fleet().devices_size(); });
  };
  auto reports = [&] {
    const std::string name = "\nx1368_device_reports_total ";
    std::string text = root->node->metrics().RenderPrometheus();
    size_t pos = text.find(name);
    return pos == std::string::npos ? 0 : std::stoull(text.substr(pos + name.size()));
  };
  for (const std::string& b : batches_of_round(0)) Must(gateway->Publish({topic, b}), "publish");
  for (int wait = 0; recorded() < kIngestDevices; ++wait) {
    if (wait == 500) {
      fprintf(stderr, "core_bench: root recorded %d of %d devices; its rejections:\n%s\n",
              recorded(), kIngestDevices, root->node->metrics().RenderPrometheus().c_str());
      std::abort();
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  std::vector<std::vector<std::string>> rounds;
  for (int round = 1; round <= 7; ++round) rounds.push_back(batches_of_round(round));

  const v1::Envelope probe = ParsedEnvelope(
      core::EnvelopeSealer(devices[0].id, devices[0].key, devices[0].cert, nullptr, clock)
          .SealWithSeq("gw-1", StatusBody(devices[0].id), kTtlMs, 1)
          .value());
  const core::PublicKey pub = devices[0].key.public_key();
  auto verify = [&] {
    if (!pub.Verify(core::SignedKind::kEnvelopeBody, probe.body(), probe.signature())) std::abort();
  };
  Limit limit(verify);
  limit.Before();
  const uint64_t before = reports();
  const uint64_t changes = 7ULL * kIngestDevices;
  const absl::Time start = absl::Now();
  for (auto _ : state) {
    for (const auto& round : rounds) {
      for (const std::string& b : round) Must(gateway->Publish({topic, b}), "publish");
    }
    for (int wait = 0; reports() < before + changes; ++wait) {
      if (wait == 100'000) {  // 20 s
        fprintf(stderr, "core_bench: root recorded %llu of %llu changes:\n%s\n",
                static_cast<unsigned long long>(reports() - before),
                static_cast<unsigned long long>(changes),
                root->node->metrics().RenderPrometheus().c_str());
        std::abort();
      }
      absl::SleepFor(absl::Microseconds(200));
    }
    // Runs after the commit the last report scheduled: what was counted is on disk.
    OnLoop(*root->loop, [] { return 0; });
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  limit.After();
  Report(state, seconds, static_cast<double>(changes), limit, 1);
  state.counters["batches"] = static_cast<double>(7 * rounds.front().size());
  std::string text = root->node->metrics().RenderPrometheus();
  auto counter = [&](const std::string& name) {
    size_t pos = text.find("\n" + name + " ");
    return pos == std::string::npos ? 0.0 : std::stod(text.substr(pos + name.size() + 2));
  };
  state.counters["device_signatures_verified"] = counter("x1368_relayed_reports_verified_total");
  state.counters["vouched_by_gateway"] = counter("x1368_relayed_reports_vouched_total");
  gateway->Stop();
}
BENCHMARK(BM_RootIngest)
    ->ArgName("verify_all")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// A device's heartbeat on the wire (issue #13): its periodic report at rest, sealed with its
// certificate as a device sends it (after a campaign: running 2.0.0, CONFIRMED), in an MQTT 3.1.1
// / 5 QoS 1 PUBLISH on its up/status topic (fixed header, topic, packet id, payload; MQTT 5's
// empty property length) plus the broker's PUBACK, every report.interval_s (60 s). Timed: sealing
// one. Limit: MQTT's own keepalive (PINGREQ + PINGRESP, 4 bytes per 60 s): the least a connected
// device costs. bytes_per_device_hour and the ratio to the keepalive's are what to read.
void BM_Heartbeat(benchmark::State& state) {
  EnvelopeWorld w;
  core::EnvelopeSealer sealer(w.dev.id, w.dev.key, w.dev.cert, w.seq.get(), core::RealClock::Get());
  v1::Body body;
  v1::StatusReport* r = body.mutable_status();
  r->set_device_id(w.dev.id);
  r->set_component("fw");
  r->set_version("2.0.0");
  r->set_sequence_number(2);
  r->set_hardware_class("board-a");
  r->set_campaign_id("fw-2.0.0-1");
  r->set_state(v1::CONFIRMED);
  std::string envelope;
  for (auto _ : state) {
    envelope = Must(sealer.Seal("gw-1", body, kTtlMs), "seal");
    benchmark::DoNotOptimize(envelope);
  }
  const std::string topic = core::UpTopic("x1368", "gw-1", w.dev.id, core::Channel::kStatus);
  const double remaining = 2 + topic.size() + 2 + 1 + envelope.size();  // + MQTT 5 properties
  const double publish = 1 + (remaining < 128 ? 1 : remaining < 16384 ? 2 : 3) + remaining;
  const double puback = 4;
  const double per_hour = (publish + puback) * 60;  // every 60 s
  const double keepalive_per_hour = 4 * 60;
  state.counters["envelope_bytes"] = static_cast<double>(envelope.size());
  state.counters["wire_bytes_per_heartbeat"] = publish + puback;
  state.counters["bytes_per_device_hour"] = per_hour;
  state.counters["limit_bytes_per_device_hour"] = keepalive_per_hour;
  state.counters["ratio_to_limit"] = keepalive_per_hour / per_hour;
}
BENCHMARK(BM_Heartbeat)->Iterations(1000)->Unit(benchmark::kMicrosecond)->UseRealTime();

// A gateway answering a chunk request from its cache, as Intermediate::ServeChunk does on a
// hit: Has, Touch, the file's size, then core::ReadChunk (open, pread, the response) from a
// verified 64 MiB image in a FirmwareCache on disk (in the page cache after the fill); requests
// walk the image, larger than the CPU's caches. Limit: SHA-256 of the same number of bytes, the
// least every device does with each chunk it receives. Serving is copying, hashing is computing: a
// ratio above 1 means the gateway serves a chunk faster than one device can check it.
void BM_ChunkServe(benchmark::State& state) {
  const uint32_t chunk = static_cast<uint32_t>(state.range(0));
  constexpr size_t kImageBytes = 64 << 20;
  TempDir dir;
  const std::string image = TestPki::MakeImage(kImageBytes, 3);
  const std::string sha = core::Sha256(image);
  intermediate::FirmwareCache cache(dir.File("cache"), 4);
  Must(cache.Open(), "open cache");
  Must(cache.Begin(sha, image.size()), "begin fill");
  for (size_t off = 0; off < image.size(); off += 64 * 1024) {
    Must(cache.Write(sha, off, image.substr(off, 64 * 1024)), "fill");
  }
  Must(cache.Complete(sha, image.size(), "table"), "complete fill");
  core::FileSystem& fs = *core::PosixFileSystem();
  const size_t chunks = kImageBytes / chunk;

  size_t hashed = 0;
  auto hash = [&] {
    const absl::string_view piece(image.data() + (hashed++ % chunks) * chunk, chunk);
    benchmark::DoNotOptimize(core::Sha256(piece));
  };
  Limit limit(hash);
  limit.Before();
  v1::FirmwareChunkRequest req;
  req.set_image_sha256(sha);
  req.set_length(chunk);
  uint64_t served = 0;
  const absl::Time start = absl::Now();
  for (auto _ : state) {
    req.set_offset((served % chunks) * chunk);
    req.set_request_id(++served);
    if (!cache.Has(sha)) {
      state.SkipWithError("image not in the cache");
      break;
    }
    cache.Touch(sha);
    const std::string path = cache.PathOf(sha);
    auto size = fs.Size(path);
    if (!size.ok()) {
      state.SkipWithError("no size");
      break;
    }
    absl::StatusOr<v1::ChunkData> r = core::ReadChunk(fs, path, *size, req);
    if (!r.ok() || r->data().size() != chunk) {
      state.SkipWithError("short chunk");
      break;
    }
    benchmark::DoNotOptimize(r);
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  limit.After();
  auto [per_s, limit_per_s] = Report(state, seconds, 1, limit, 1);
  state.counters["MB_per_s"] = per_s * chunk / 1e6;
  state.counters["limit_MB_per_s"] = limit_per_s * chunk / 1e6;
  state.SetBytesProcessed(state.iterations() * chunk);
}
BENCHMARK(BM_ChunkServe)
    ->ArgName("chunk")
    ->Arg(16 * 1024)
    ->Arg(64 * 1024)
    ->Iterations(50'000)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace x1368::testing

BENCHMARK_MAIN();
