// The firmware data path: how fast one device downloads an image through one gateway over a real
// Mosquitto on loopback, and what the download costs its disk, each beside a limit measured in
// the same run.
//   - BM_RawRequestResponse/<chunk_kib>: the physical limit of a chunked download. Two plain Paho
//     clients (MQTT v5, as the transport) on the broker: a requester publishes ~100-byte QoS 1
//     requests, at most 8 unanswered (kWindow), and a responder answers each with a QoS 1
//     message of chunk_kib KiB, until 32 MiB came back. No envelope, no signature, no file: what
//     the broker and the sockets allow. (The data path asks for 8 chunks a request now, at its
//     default window of 16, so it sends fewer requests than this pair; the responses are the bulk
//     of the cost.) MB_per_s (1 MB = 10^6 bytes) with TCP_NODELAY set on the pair's two sockets;
//     paho_default_MB_per_s (over 4 MiB) with the sockets as Paho leaves them, as the
//     transport's are. Paho C never sets TCP_NODELAY (the test broker does, with
//     set_tcp_nodelay), and the requester's small writes then wait on the broker's delayed ACKs
//     (up to 40 ms on Linux; TCP_NODELAY on the requester's socket alone lifts the pair to the
//     limit): without it the pair runs at 100 to 700 responses a second, whatever their size,
//     below what the real data path does, so it is no limit.
//     relay_MB_per_s: the same through a third plain client in the middle that forwards each
//     request and each response as it arrives (two hops through the broker, as through a
//     gateway), at 16 in flight, the data path's window.
//   - BM_ImageThroughGateway/<image_mib>: root, gateway "gw1" and client "dev-0" (TestTree, files
//     on the disk), a random image published as 2.0.0, and the campaign timed until root sees
//     dev-0 confirm it (the benchmark's time). Beside it: campaign start until dev-0's own record
//     says DOWNLOADED (download_MB_per_s), the raw limit above at the client's chunk size on the
//     same broker in the same run (raw_MB_per_s; raw_paho_default_MB_per_s too), and their ratio;
//     the two-hop relay limit (raw_relay_MB_per_s) and the ratio to it (relay_ratio): every byte
//     crosses the one broker twice on the way through a gateway, which a one-hop pair does not
//     pay; a second device, "dev-1", that then downloads the image from the gateway's filled
//     cache (cached_MB_per_s, cached_ratio to the one-hop limit); and the client's fsyncs and
//     renames per downloaded MiB, counted by a CountingFileSystem under its files.
//
//   build/bin/data_path_bench
//   build/bin/data_path_bench --benchmark_filter='ImageThroughGateway/8/'
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <dirent.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "simulations/common/counting_file_system.h"
#include "testing/mosquitto.h"
#include "testing/pki.h"
#include "testing/tree.h"
#include "x1368/core/metrics.h"
#include "x1368/stub/stub_consumer.h"

namespace x1368::testing {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
// Bytes the raw limit moves, whatever the chunk size; the pair without TCP_NODELAY moves fewer
// (it runs at a few hundred responses a second, whatever their size).
constexpr uint64_t kRawTotalBytes = 32 * kMiB;
constexpr uint64_t kPahoDefaultTotalBytes = 4 * kMiB;
// Requests in flight, one response each. The ChunkFetcher keeps 16 chunks in flight now, asked
// for 8 a request (core::ChunkFetcherOptions::window); the pair measured the same at 16 as at 8
// (what limits it is the broker's cost per message, not the round trip), so the limit stays
// comparable with the figures taken before requests were batched.
constexpr int kWindow = 8;
// Small, as a chunk request is.
constexpr size_t kRequestBytes = 100;

// SkipWithError keeps the pointer in older Google Benchmark releases: the text must stay.
void Fail(benchmark::State& state, const std::string& why) {
  static std::string error;
  error = why;
  state.SkipWithError(error.c_str());
}

// This process's TCP sockets connected to 127.0.0.1:`port`.
std::set<int> SocketsTo(int port) {
  std::set<int> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  while (dirent* e = ::readdir(dir)) {
    int fd = -1;
    sockaddr_storage peer{};
    socklen_t len = sizeof(peer);
    if (!absl::SimpleAtoi(e->d_name, &fd) ||
        ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0 ||
        peer.ss_family != AF_INET) {
      continue;
    }
    if (ntohs(reinterpret_cast<const sockaddr_in*>(&peer)->sin_port) == port) fds.insert(fd);
  }
  ::closedir(dir);
  return fds;
}

struct RawResult {
  double seconds = 0;  // first request to last response
  double mb_per_s = 0;
  std::string error;  // empty when every response came back in time
};

// The limit of a chunked download through `broker`: ceil(total / chunk) request and response
// pairs between two plain Paho clients, at most `window` requests unanswered. `nodelay`: with
// TCP_NODELAY on their sockets (found as the sockets to the broker that their connects added;
// the caller's other clients must not connect meanwhile). `relay`: a third plain client in the
// middle, as a gateway is, that passes each request on to the responder and each response back
// (two hops through the broker, each message forwarded as it arrives): the limit of a path
// through one gateway on one broker.
RawResult RawRequestResponse(MosquittoBroker& broker, size_t chunk, uint64_t total, int window,
                             bool nodelay, absl::Duration timeout, bool relay = false) {
  const std::string uri = broker.uri();
  struct Arrivals {
    absl::Mutex mu;
    int count ABSL_GUARDED_BY(mu) = 0;
  };
  static std::atomic<int> runs{0};
  const int run = runs.fetch_add(1);
  const std::string request_topic = absl::StrCat("raw/", run, "/request");
  const std::string response_topic = absl::StrCat("raw/", run, "/response");
  // What the responder hears and answers on: through the relay, its own pair of topics.
  const std::string upstream_request = relay ? absl::StrCat("raw/", run, "/up/request") : "";
  const std::string upstream_response = relay ? absl::StrCat("raw/", run, "/up/response") : "";
  const std::string& answer_on = relay ? upstream_response : response_topic;
  const int count = static_cast<int>((total + chunk - 1) / chunk);
  const std::string response(chunk, 'c');
  Arrivals arrivals;
  RawResult result;
  try {
    // Declared after what their callbacks use: they go first.
    auto create = mqtt::create_options_builder().mqtt_version(MQTTVERSION_5).finalize();
    mqtt::async_client requester(uri, absl::StrCat("raw-requester-", run), create);
    mqtt::async_client responder(uri, absl::StrCat("raw-responder-", run), create);
    mqtt::async_client relayer(uri, absl::StrCat("raw-relay-", run), create);
    std::vector<mqtt::async_client*> clients = {&responder, &requester};
    if (relay) clients.push_back(&relayer);
    absl::Cleanup disconnect = [&] {
      for (mqtt::async_client* c : clients) {
        try {
          if (c->is_connected()) c->disconnect()->wait_for(std::chrono::seconds(5));
        } catch (const mqtt::exception&) {
        }
      }
    };
    responder.set_message_callback([&](mqtt::const_message_ptr) {
      try {
        responder.publish(mqtt::make_message(answer_on, response, 1, false));
      } catch (const mqtt::exception&) {
        // Not answered: the requester times out and says so.
      }
    });
    relayer.set_message_callback([&](mqtt::const_message_ptr m) {
      const bool is_request = m->get_topic() == request_topic;
      try {
        relayer.publish(mqtt::make_message(is_request ? upstream_request : response_topic,
                                           m->get_payload_ref(), 1, false));
      } catch (const mqtt::exception&) {
      }
    });
    requester.set_message_callback([&](mqtt::const_message_ptr m) {
      if (m->get_payload().size() != chunk) return;
      absl::MutexLock lock(&arrivals.mu);
      ++arrivals.count;
    });
    auto connect =
        mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).clean_start(true).finalize();
    constexpr auto kSetup = std::chrono::seconds(10);
    const std::set<int> before = SocketsTo(broker.port());
    for (mqtt::async_client* c : clients) {
      if (!c->connect(connect)->wait_for(kSetup)) {
        result.error = "raw clients did not connect";
        return result;
      }
    }
    if (nodelay) {
      size_t set = 0;
      for (int fd : SocketsTo(broker.port())) {
        const int one = 1;
        if (before.count(fd) == 0 &&
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0) {
          ++set;
        }
      }
      if (set != clients.size()) {
        result.error =
            absl::StrCat("raw: TCP_NODELAY set on ", set, " sockets, not ", clients.size());
        return result;
      }
    }
    bool subscribed =
        responder.subscribe(relay ? upstream_request : request_topic, 1)->wait_for(kSetup) &&
        requester.subscribe(response_topic, 1)->wait_for(kSetup);
    if (relay) {
      subscribed = subscribed && relayer.subscribe(request_topic, 1)->wait_for(kSetup) &&
                   relayer.subscribe(upstream_response, 1)->wait_for(kSetup);
    }
    if (!subscribed) {
      result.error = "raw clients did not subscribe";
      return result;
    }
    const std::string req(kRequestBytes, 'r');
    absl::Time start = absl::Now();
    absl::Time deadline = start + timeout;
    for (int sent = 0; sent < count; ++sent) {
      {
        absl::MutexLock lock(&arrivals.mu);
        auto room = [&]() ABSL_SHARED_LOCKS_REQUIRED(arrivals.mu) {
          return sent - arrivals.count < window;
        };
        if (!arrivals.mu.AwaitWithDeadline(absl::Condition(&room), deadline)) {
          result.error = absl::StrCat("raw: ", arrivals.count, " of ", count, " responses within ",
                                      absl::FormatDuration(timeout));
          return result;
        }
      }
      requester.publish(mqtt::make_message(request_topic, req, 1, false));
    }
    {
      absl::MutexLock lock(&arrivals.mu);
      auto all = [&]() ABSL_SHARED_LOCKS_REQUIRED(arrivals.mu) { return arrivals.count >= count; };
      if (!arrivals.mu.AwaitWithDeadline(absl::Condition(&all), deadline)) {
        result.error = absl::StrCat("raw: ", arrivals.count, " of ", count, " responses within ",
                                    absl::FormatDuration(timeout));
        return result;
      }
    }
    result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    result.mb_per_s =
        static_cast<double>(count) * static_cast<double>(chunk) / 1e6 / result.seconds;
  } catch (const mqtt::exception& e) {
    result.error = absl::StrCat("raw: ", e.what());
  }
  return result;
}

void BM_RawRequestResponse(benchmark::State& state) {
  const size_t chunk = static_cast<size_t>(state.range(0)) * 1024;
  TempDir broker_dir;
  auto broker = MosquittoBroker::Start(broker_dir.path());
  if (!broker.ok()) return Fail(state, "mosquitto did not start");
  for (auto _ : state) {
    RawResult raw = RawRequestResponse(**broker, chunk, kRawTotalBytes, kWindow,
                                       /*nodelay=*/true, absl::Seconds(120));
    if (!raw.error.empty()) return Fail(state, raw.error);
    RawResult paho = RawRequestResponse(**broker, chunk, kPahoDefaultTotalBytes, kWindow,
                                        /*nodelay=*/false, absl::Seconds(120));
    if (!paho.error.empty()) return Fail(state, paho.error);
    RawResult relayed = RawRequestResponse(**broker, chunk, kRawTotalBytes, 2 * kWindow,
                                           /*nodelay=*/true, absl::Seconds(120), /*relay=*/true);
    if (!relayed.error.empty()) return Fail(state, relayed.error);
    state.SetIterationTime(raw.seconds);
    state.counters["chunk_bytes"] = static_cast<double>(chunk);
    state.counters["MB_per_s"] = raw.mb_per_s;
    state.counters["relay_MB_per_s"] = relayed.mb_per_s;
    state.counters["paho_default_MB_per_s"] = paho.mb_per_s;
  }
}
BENCHMARK(BM_RawRequestResponse)
    ->Arg(4)
    ->Arg(16)
    ->Arg(32)
    ->Arg(64)
    ->Arg(128)
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseManualTime();

bool DownloadedOrBeyond(v1::UpdateState s) {
  return s == v1::DOWNLOADED || s == v1::VERIFIED || s == v1::INSTALLING || s == v1::TRIAL_BOOT ||
         s == v1::CONFIRMED;
}
bool Ended(v1::UpdateState s) {
  return s == v1::FAILED || s == v1::DECLINED || s == v1::ROLLED_BACK;
}

ClientSpec spec_without_fs(ClientSpec spec) {
  spec.fs = nullptr;  // the tree's own storage: only dev-0's disk is counted
  return spec;
}

void BM_ImageThroughGateway(benchmark::State& state) {
  const uint64_t image_bytes = static_cast<uint64_t>(state.range(0)) * kMiB;
  // state.range(1): the manifest's chunk size in KiB.
  const double image_mib = static_cast<double>(image_bytes) / static_cast<double>(kMiB);
  const std::string image = TestPki::MakeImage(image_bytes, 7);
  TempDir broker_dir;
  auto broker = MosquittoBroker::Start(broker_dir.path());
  if (!broker.ok()) return Fail(state, "mosquitto did not start");
  // state.range(2) == 2: the gateway runs a broker of its own for its children (the fleet's
  // layout, and the simulator's --brokers per-gateway), so each hop crosses its own broker once.
  const bool own_broker = state.range(2) == 2;
  TempDir gw_broker_dir;
  absl::StatusOr<std::unique_ptr<MosquittoBroker>> gw_broker;
  if (own_broker) {
    gw_broker = MosquittoBroker::Start(gw_broker_dir.path());
    if (!gw_broker.ok()) return Fail(state, "the gateway's mosquitto did not start");
  }
  const absl::Duration kFinish = absl::Seconds(300);
  for (auto _ : state) {
    // Setup, untimed (the time is set by hand): the tree, the release, and the raw limit.
    sim::CountingFileSystem fs(core::PosixFileSystem());
    auto tree = std::make_unique<TestTree>(broker->get());
    tree->AddRoot();
    IntermediateNode* gw =
        tree->AddIntermediate("gw1", "root", {"dev-*"}, own_broker ? gw_broker->get() : nullptr);
    // The gateway stores and forwards: it serves dev-0's first chunk once its cache is filled.
    const core::Metric* served = gw->metrics()->Counter("x1368_chunks_served_total", "");
    ClientSpec spec;
    spec.module_retries = true;
    spec.fs = &fs;
    spec.sync_every_bytes = stub::StubOptions{}.sync_every_bytes;  // as a device syncs by default
    ClientNode* dev = tree->AddClient("dev-0", "gw1", spec);
    // The chunk size the author chose: the manifest's, which every node fetches in.
    const size_t chunk = static_cast<size_t>(state.range(1)) * 1024;
    tree->publish_chunk_size = static_cast<uint32_t>(chunk);
    const std::vector<std::string> ids = {"dev-0"};
    if (!tree->WaitForDevices(
            ids, [](const v1::DeviceRecord& d) { return d.version() == "1.0.0"; },
            absl::Seconds(60))) {
      return Fail(state, "dev-0 was not seen by root");
    }
    if (absl::Status s = tree->Publish(image, "2.0.0", 2).status(); !s.ok()) {
      return Fail(state, absl::StrCat("publish: ", s.ToString()));
    }
    // On the same broker as the download, the tree connected and idle.
    RawResult raw = RawRequestResponse(**broker, chunk, kRawTotalBytes, kWindow,
                                       /*nodelay=*/true, absl::Seconds(120));
    if (!raw.error.empty()) return Fail(state, raw.error);
    RawResult paho = RawRequestResponse(**broker, chunk, kPahoDefaultTotalBytes, kWindow,
                                        /*nodelay=*/false, absl::Seconds(120));
    if (!paho.error.empty()) return Fail(state, paho.error);
    RawResult relayed = RawRequestResponse(**broker, chunk, kRawTotalBytes, 2 * kWindow,
                                           /*nodelay=*/true, absl::Seconds(120), /*relay=*/true);
    if (!relayed.error.empty()) return Fail(state, relayed.error);

    // The campaign. The client's record() is a thread-safe copy of what it last persisted.
    const sim::CountingFileSystem::Counts before = fs.counts();
    const absl::Time start = absl::Now();
    absl::StatusOr<v1::CampaignInfo> campaign = tree->StartCampaign("2.0.0");
    if (!campaign.ok())
      return Fail(state, absl::StrCat("campaign: ", campaign.status().ToString()));
    std::optional<absl::Time> first_served_at, downloaded_at;
    sim::CountingFileSystem::Counts download;
    while (absl::Now() < start + kFinish) {
      if (!first_served_at && served->value() > 0) first_served_at = absl::Now();
      v1::UpdateRecord r = dev->client->record();
      if (r.campaign_id() == campaign->campaign_id()) {
        if (Ended(r.state())) {
          return Fail(state, absl::StrCat("dev-0 ended in ", v1::UpdateState_Name(r.state()), ": ",
                                          r.detail()));
        }
        if (DownloadedOrBeyond(r.state())) {
          downloaded_at = absl::Now();
          download = fs.counts() - before;
          break;
        }
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
    if (!downloaded_at) return Fail(state, "dev-0 did not download the image in time");
    const bool confirmed = tree->WaitForVersion(ids, "2.0.0", start + kFinish - absl::Now());
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    const sim::CountingFileSystem::Counts update = fs.counts() - before;
    if (!confirmed) {
      std::optional<v1::DeviceRecord> d = tree->Device("dev-0");
      return Fail(state, absl::StrCat("dev-0 did not confirm 2.0.0: root has ",
                                      d ? v1::UpdateState_Name(d->state()) : "nothing", " ",
                                      d ? d->version() : ""));
    }

    // The hop alone: a second device joins and downloads the same image, which the gateway now
    // serves from its cache. Timed from its campaign's start to its DOWNLOADED, as dev-0's.
    ClientNode* late = tree->AddClient("dev-1", "gw1", spec_without_fs(spec));
    if (!tree->WaitForDevices(
            {"dev-1"}, [](const v1::DeviceRecord& d) { return d.version() == "1.0.0"; },
            absl::Seconds(60))) {
      return Fail(state, "dev-1 was not seen by root");
    }
    v1::CampaignStartRequest only_late;
    only_late.set_component("fw");
    only_late.set_version("2.0.0");
    only_late.add_devices("dev-1");
    const absl::Time cached_start = absl::Now();
    absl::StatusOr<v1::CampaignInfo> second =
        OnLoop(*tree->root()->loop, [&] { return tree->root()->root->StartCampaign(only_late); });
    if (!second.ok()) return Fail(state, absl::StrCat("campaign: ", second.status().ToString()));
    std::optional<absl::Time> cached_at;
    while (absl::Now() < cached_start + kFinish) {
      v1::UpdateRecord r = late->client->record();
      if (r.campaign_id() == second->campaign_id() && DownloadedOrBeyond(r.state())) {
        cached_at = absl::Now();
        break;
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
    if (!cached_at) return Fail(state, "dev-1 did not download the cached image in time");
    tree.reset();

    const double download_seconds = absl::ToDoubleSeconds(*downloaded_at - start);
    const double download_mb_per_s = static_cast<double>(image_bytes) / 1e6 / download_seconds;
    const double fill_seconds = absl::ToDoubleSeconds(first_served_at.value_or(start) - start);
    const double serve_seconds = download_seconds - fill_seconds;
    state.SetIterationTime(seconds);
    state.counters["image_MiB"] = image_mib;
    state.counters["chunk_bytes"] = static_cast<double>(chunk);
    state.counters["seconds_to_confirmed"] = seconds;
    state.counters["download_seconds"] = download_seconds;
    state.counters["download_MB_per_s"] = download_mb_per_s;
    state.counters["raw_MB_per_s"] = raw.mb_per_s;
    state.counters["ratio"] = download_mb_per_s / raw.mb_per_s;
    state.counters["raw_paho_default_MB_per_s"] = paho.mb_per_s;
    // Through a gateway every byte crosses the broker twice: beside the same two hops with plain
    // clients (a relay in the middle), which is the limit of any path through one gateway on one
    // broker.
    state.counters["raw_relay_MB_per_s"] = relayed.mb_per_s;
    state.counters["relay_ratio"] = download_mb_per_s / relayed.mb_per_s;
    // dev-1 from the gateway's cache: one hop, beside the one-hop raw limit.
    const double cached_mb_per_s =
        static_cast<double>(image_bytes) / 1e6 / absl::ToDoubleSeconds(*cached_at - cached_start);
    state.counters["cached_MB_per_s"] = cached_mb_per_s;
    state.counters["cached_ratio"] = cached_mb_per_s / raw.mb_per_s;
    // The two hops: campaign start to the gateway's first chunk served to dev-0 (directive, then
    // its cache filled from root in its own chunks), and from there to DOWNLOADED (dev-0's
    // chunks, at the raw limit's size).
    state.counters["gateway_fill_seconds"] = fill_seconds;
    state.counters["serve_MB_per_s"] = static_cast<double>(image_bytes) / 1e6 / serve_seconds;
    state.counters["serve_ratio"] =
        static_cast<double>(image_bytes) / 1e6 / serve_seconds / raw.mb_per_s;
    // The client's disk while it downloaded (campaign start to DOWNLOADED), per image MiB.
    state.counters["fsyncs_per_MiB"] = static_cast<double>(download.fsyncs()) / image_mib;
    state.counters["renames_per_MiB"] = static_cast<double>(download.rename_syscalls()) / image_mib;
    state.counters["sync_calls"] = static_cast<double>(download.syncs);
    state.counters["write_atomic_calls"] = static_cast<double>(download.write_atomics);
    state.counters["rename_calls"] = static_cast<double>(download.renames);
    // The whole update (campaign start to confirmed): verify, install, trial boot and confirm too.
    state.counters["fsyncs_to_confirmed"] = static_cast<double>(update.fsyncs());
  }
}
// Image MiB x the manifest's chunk KiB x brokers: 32 MiB at each chunk size a manifest may name,
// which is how the default chunk size (core::kDefaultChunkBytes) was chosen, on one broker; and
// at the default chunk size with the gateway's own broker for its children.
BENCHMARK(BM_ImageThroughGateway)
    ->ArgNames({"image_mib", "chunk_kib", "brokers"})
    ->Args({8, 64, 1})
    ->Args({32, 16, 1})
    ->Args({32, 32, 1})
    ->Args({32, 64, 1})
    ->Args({32, 128, 1})
    ->Args({32, 64, 2})
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseManualTime();

}  // namespace
}  // namespace x1368::testing

BENCHMARK_MAIN();
