// One process hosting a whole tree on the in-memory broker: root, two gateways and N clients,
// every node a strand on one shared Executor. Reports what a hosted client costs (RSS beyond the
// process before the clients, threads in the process) and how long all of them take to download,
// verify, install, trial-boot and confirm a 256 KiB update. Limit beside it: raw SHA-256 of the
// same bytes N times, the work no implementation can skip (each device checks its image).
//
//   build/bin/in_process_fleet_bench --benchmark_filter=Fleet/1000
#include <benchmark/benchmark.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "testing/pki.h"
#include "testing/tree.h"
#include "x1368/core/crypto.h"

namespace x1368::testing {
namespace {

// A field of /proc/self/status ("VmRSS", "Threads"), in its own unit (kB for sizes).
int64_t ProcStatus(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::string v = line.substr(key.size() + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    v = v.substr(0, v.find_first_of(" \t"));
    int64_t n = 0;
    if (absl::SimpleAtoi(v, &n)) return n;
  }
  return -1;
}

void BM_Fleet(benchmark::State& state) {
  const int devices = static_cast<int>(state.range(0));
  const std::string image = TestPki::MakeImage(256 * 1024, 7);
  for (auto _ : state) {
    state.PauseTiming();
    auto tree = std::make_unique<TestTree>(nullptr);
    tree->fake_broker()->KeepLog(false);
    tree->AddRoot();
    tree->AddIntermediate("gw1", "root", {"dev-*"});
    tree->AddIntermediate("gw2", "root", {"dev-*"});
    int64_t rss_before = ProcStatus("VmRSS");
    std::vector<std::string> ids;
    for (int i = 0; i < devices; ++i) {
      ids.push_back(absl::StrCat("dev-", i));
      tree->AddClient(ids.back(), i % 2 == 0 ? "gw1" : "gw2");
    }
    bool seen = tree->WaitForDevices(
        ids, [](const v1::DeviceRecord& d) { return d.version() == "1.0.0"; }, absl::Seconds(120));
    int64_t rss_clients = ProcStatus("VmRSS");
    int64_t threads = ProcStatus("Threads");
    if (!seen || !tree->Publish(image, "2.0.0", 2).ok()) {
      state.SkipWithError("the fleet did not come up");
      return;
    }
    state.ResumeTiming();
    absl::Time start = absl::Now();
    if (!tree->StartCampaign("2.0.0").ok() ||
        !tree->WaitForVersion(ids, "2.0.0", absl::Seconds(600))) {
      state.SkipWithError("not every device confirmed 2.0.0");
      return;
    }
    double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    state.PauseTiming();
    // The limit: every device hashes the whole image once; nothing can do less.
    absl::Time h0 = absl::Now();
    for (int i = 0; i < devices; ++i) benchmark::DoNotOptimize(core::Sha256(image));
    double hash_seconds = absl::ToDoubleSeconds(absl::Now() - h0);
    state.counters["devices"] = devices;
    state.counters["seconds_to_all_confirmed"] = seconds;
    state.counters["rss_kb_per_client"] = static_cast<double>(rss_clients - rss_before) / devices;
    state.counters["threads_in_process"] = static_cast<double>(threads);
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

BENCHMARK_MAIN();
