// One process hosting a whole tree: root, gateways and N clients, every node a strand on one
// shared Executor. Reports what a hosted client costs (RSS beyond the process before the clients,
// threads in the process) and how long all of them take to download, verify, install, trial-boot
// and confirm a 256 KiB update, each beside a limit measured in the same run.
//   - BM_Fleet: on the in-memory broker. Limit: raw SHA-256 of the same bytes N times, the work no
//     implementation can skip (each device checks its image).
//   - BM_MosquittoFleet: over a real Mosquitto on loopback, one MQTT connection per node (the
//     transports own no thread: all of them run on the tree's executor and Paho's two threads).
//     Limit: the broker's QoS 1 publish->receive rate for a chunk-sized message with a plain Paho
//     client pair (at most Receive Maximum - 1 in flight, as the transport keeps), and the time
//     the N x 8 chunk messages of the update would take at that rate.
//
//   build/bin/in_process_fleet_bench --benchmark_filter=Fleet/1000
//   build/bin/in_process_fleet_bench --benchmark_filter=MosquittoFleet/1000
#include <benchmark/benchmark.h>
#include <mqtt/async_client.h>
#include <sys/resource.h>

#include <atomic>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "simulations/common/proc_status.h"
#include "testing/mosquitto.h"
#include "testing/pki.h"
#include "testing/tree.h"
#include "x1368/core/crypto.h"

namespace x1368::testing {
namespace {

// What both fleet benchmarks measure on `tree`: root and two gateways are built, N clients are
// added under the gateways, the fleet comes up, a 256 KiB release goes out, and the campaign is
// timed (the benchmark's timer runs only for the campaign).
struct FleetRun {
  bool ok = false;
  const char* error = "";
  double seconds = 0;       // campaign start to every device confirmed
  int64_t rss_before = 0;   // kB, before the clients
  int64_t rss_clients = 0;  // kB, with the clients up
  int64_t threads_before = 0;
  int64_t threads = 0;  // with the clients up
};

FleetRun RunFleetUpdate(benchmark::State& state, TestTree& tree, int devices,
                        const std::string& image, absl::Duration come_up, absl::Duration finish) {
  FleetRun run;
  tree.AddRoot();
  tree.AddIntermediate("gw1", "root", {"dev-*"});
  tree.AddIntermediate("gw2", "root", {"dev-*"});
  run.rss_before = sim::ProcStatus("VmRSS");
  run.threads_before = sim::ProcStatus("Threads");
  std::vector<std::string> ids;
  for (int i = 0; i < devices; ++i) {
    ids.push_back(absl::StrCat("dev-", i));
    ClientSpec spec;
    spec.module_retries = true;  // the tests' 2 s chunk timeout gives up under this load
    tree.AddClient(ids.back(), i % 2 == 0 ? "gw1" : "gw2", spec);
  }
  bool seen = tree.WaitForDevices(
      ids, [](const v1::DeviceRecord& d) { return d.version() == "1.0.0"; }, come_up);
  run.rss_clients = sim::ProcStatus("VmRSS");
  run.threads = sim::ProcStatus("Threads");
  if (!seen || !tree.Publish(image, "2.0.0", 2).ok()) {
    run.error = "the fleet did not come up";
    return run;
  }
  state.ResumeTiming();
  absl::Time start = absl::Now();
  bool done = tree.StartCampaign("2.0.0").ok() && tree.WaitForVersion(ids, "2.0.0", finish);
  run.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  state.PauseTiming();
  if (!done) {
    // Which devices, and what root last heard from them: the benchmark's error says it.
    static std::string error;
    error = "not every device confirmed 2.0.0:";
    int n = 0;
    const v1::FleetStatus fleet = tree.Fleet();
    for (const v1::DeviceRecord& d : fleet.devices()) {
      if (d.version() == "2.0.0" || ++n > 5) continue;
      absl::StrAppend(&error, " ", d.device_id(), " ", v1::UpdateState_Name(d.state()), " ",
                      d.version(), " (", v1::Reason_Name(d.reason()), ")");
    }
    absl::StrAppend(&error, n > 5 ? absl::StrCat(" and ", n - 5, " more") : "");
    run.error = error.c_str();
    return run;
  }
  run.ok = true;
  return run;
}

void BM_Fleet(benchmark::State& state) {
  const int devices = static_cast<int>(state.range(0));
  const std::string image = TestPki::MakeImage(256 * 1024, 7);
  for (auto _ : state) {
    state.PauseTiming();
    auto tree = std::make_unique<TestTree>(nullptr);
    tree->fake_broker()->KeepLog(false);
    FleetRun run =
        RunFleetUpdate(state, *tree, devices, image, absl::Seconds(120), absl::Seconds(600));
    if (!run.ok) {
      state.SkipWithError(run.error);
      return;
    }
    double seconds = run.seconds;
    // The limit: every device hashes the whole image once; nothing can do less.
    absl::Time h0 = absl::Now();
    for (int i = 0; i < devices; ++i) benchmark::DoNotOptimize(core::Sha256(image));
    double hash_seconds = absl::ToDoubleSeconds(absl::Now() - h0);
    state.counters["devices"] = devices;
    state.counters["seconds_to_all_confirmed"] = seconds;
    state.counters["rss_kb_per_client"] =
        static_cast<double>(run.rss_clients - run.rss_before) / devices;
    state.counters["threads_in_process"] = static_cast<double>(run.threads);
    state.counters["sha256_only_seconds"] = hash_seconds;
    state.counters["ratio_limit_over_actual"] = hash_seconds / seconds;
    tree.reset();
    state.ResumeTiming();
  }
}
BENCHMARK(BM_Fleet)
    ->Arg(100)
    ->Arg(250)
    ->Arg(500)
    ->Arg(1000)
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

}  // namespace
}  // namespace x1368::testing

namespace x1368::testing {
namespace {

// 1,000 connections and the files of 1,000 nodes need more descriptors than the usual soft limit
// of 1024; the broker, started after this, inherits it too.
void RaiseDescriptorLimit() {
  rlimit l;
  if (::getrlimit(RLIMIT_NOFILE, &l) == 0 && l.rlim_cur < l.rlim_max) {
    l.rlim_cur = l.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &l);
  }
}

// QoS 1 messages of `size` bytes from one plain Paho client to another through the broker, at
// most `window` unacknowledged: messages per second, or 0 if they did not all arrive in time.
double RawQos1Rate(const std::string& uri, size_t size, int count, int window) {
  class Counter : public mqtt::iaction_listener {
   public:
    void on_success(const mqtt::token&) override { Done(); }
    void on_failure(const mqtt::token&) override { Done(); }
    void Done() {
      absl::MutexLock lock(&mu);
      --inflight;
    }
    absl::Mutex mu;
    int inflight ABSL_GUARDED_BY(mu) = 0;
  };
  try {
    auto connect =
        mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).clean_start(true).finalize();
    auto create = mqtt::create_options_builder().mqtt_version(MQTTVERSION_5).finalize();
    mqtt::async_client sub(uri, "limit-sub", create), pub(uri, "limit-pub", create);
    std::atomic<int> received{0};
    sub.set_message_callback([&](mqtt::const_message_ptr) { received.fetch_add(1); });
    if (!sub.connect(connect)->wait_for(std::chrono::seconds(10))) return 0;
    if (!sub.subscribe("limit/x", 1)->wait_for(std::chrono::seconds(10))) return 0;
    if (!pub.connect(connect)->wait_for(std::chrono::seconds(10))) return 0;
    const std::string payload(size, 'x');
    Counter counter;
    absl::Time start = absl::Now();
    absl::Time deadline = start + absl::Seconds(120);
    for (int i = 0; i < count; ++i) {
      {
        absl::MutexLock lock(&counter.mu);
        auto room = [&]() ABSL_SHARED_LOCKS_REQUIRED(counter.mu) {
          return counter.inflight < window;
        };
        if (!counter.mu.AwaitWithDeadline(absl::Condition(&room), deadline)) return 0;
        ++counter.inflight;
      }
      pub.publish(mqtt::make_message("limit/x", payload, 1, false), nullptr, counter);
    }
    while (received.load() < count) {
      if (absl::Now() > deadline) return 0;
      absl::SleepFor(absl::Microseconds(200));
    }
    double rate = count / absl::ToDoubleSeconds(absl::Now() - start);
    pub.disconnect()->wait_for(std::chrono::seconds(5));
    sub.disconnect()->wait_for(std::chrono::seconds(5));
    return rate;
  } catch (const mqtt::exception& e) {
    fprintf(stderr, "limit: %s\n", e.what());
    return 0;
  }
}

void BM_MosquittoFleet(benchmark::State& state) {
  const int devices = static_cast<int>(state.range(0));
  constexpr size_t kImageBytes = 256 * 1024;
  const std::string image = TestPki::MakeImage(kImageBytes, 7);
  RaiseDescriptorLimit();
  TempDir broker_dir;
  auto broker = MosquittoBroker::Start(broker_dir.path());
  if (!broker.ok()) {
    state.SkipWithError("mosquitto did not start");
    return;
  }
  for (auto _ : state) {
    state.PauseTiming();
    // The limit first, on the idle broker: one chunk-sized message per request of the fetcher.
    // The chunk size of the tests' manifests (TestPki::ManifestFor).
    const size_t chunk = 16 * 1024;
    double rate = RawQos1Rate((*broker)->uri(), chunk, 4000, /*window=*/19);
    auto tree = std::make_unique<TestTree>(broker->get());
    FleetRun run =
        RunFleetUpdate(state, *tree, devices, image, absl::Seconds(300), absl::Seconds(900));
    if (!run.ok) {
      state.SkipWithError(run.error);
      return;
    }
    double seconds = run.seconds;
    // Every device receives the image in chunk-sized messages through the broker at least once.
    double chunks = static_cast<double>(devices) * ((kImageBytes + chunk - 1) / chunk);
    double limit_seconds = rate > 0 ? chunks / rate : 0;
    state.counters["devices"] = devices;
    state.counters["seconds_to_all_confirmed"] = seconds;
    state.counters["rss_kb_per_client"] =
        static_cast<double>(run.rss_clients - run.rss_before) / devices;
    state.counters["threads_in_process"] = static_cast<double>(run.threads);
    state.counters["threads_added_by_clients"] =
        static_cast<double>(run.threads - run.threads_before);
    state.counters["raw_qos1_msgs_per_s"] = rate;
    state.counters["raw_limit_seconds"] = limit_seconds;
    state.counters["ratio_limit_over_actual"] = limit_seconds / seconds;
    tree.reset();
    state.ResumeTiming();
  }
}
BENCHMARK(BM_MosquittoFleet)
    ->Arg(100)
    ->Arg(1000)
    ->Iterations(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime();

}  // namespace
}  // namespace x1368::testing

BENCHMARK_MAIN();
