// tracker-sim: runs a whole fleet on this machine with the real modules and reports how long a
// rollout takes, what it costs root, and what the faults did (simulations/sim/fleet_sim.h).
//
//   build/bin/tracker-sim --devices 10000 --tiers 2 --fanout 4 --json out.json
#include <sys/resource.h>

#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "simulations/sim/fleet_sim.h"
#include "simulations/sim/worker.h"
#include "spdlog/spdlog.h"
#include "x1368/core/chunk_table.h"
#include "x1368/core/file_util.h"

int main(int argc, char** argv) {
  x1368::sim::SimOptions o;
  std::string json_path, timeline_path, chart_path;
  double kill_at_s = 1, downtime_s = 3;
  std::string topology = "hierarchical", device_links = "mqtt", brokers = "shared";
  std::string worker_plan;
  std::string device_storage = "memory", tracker_storage = "disk";
  double timeout_s = 600, offline_delay_s = 5, report_interval_s = 60;
  bool quiet = false;

  CLI::App app{"tracker-sim: a whole X.1368 fleet on one machine (root, gateways, devices)"};
  app.add_option("--devices", o.devices, "devices (clients with stub consumers)")
      ->check(CLI::Range(1, 1'000'000));
  app.add_option("--tiers", o.tiers,
                 "levels of intermediates; 0 puts the devices directly under root")
      ->check(CLI::Range(0, 6));
  app.add_option("--fanout", o.fanout, "intermediates under each node of the tier above")
      ->check(CLI::Range(1, 1000));
  app.add_option("--image-size", o.image_size, "bytes of the released image")
      ->check(CLI::Range(uint64_t{1}, uint64_t{256} << 20));
  app.add_option("--seed", o.seed, "seed of every random choice (a run repeats with it)");
  app.add_option("--timeout", timeout_s, "seconds until the sim gives up waiting")
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", o.threads, "threads of the executor all nodes share")
      ->check(CLI::Range(1, 64));
  app.add_option("--install-fail-share", o.install_fail_share,
                 "share of devices whose install fails")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--boot-fail-share", o.boot_fail_share,
                 "share of devices whose new image does not boot (rolled back)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--power-cut-share", o.power_cut_share,
                 "share of devices that lose power at a random write during the update")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--offline-share", o.offline_share,
                 "share of devices that come online only after the campaign started")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--offline-delay", offline_delay_s,
                 "seconds after the campaign start when offline devices come online")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--topology", topology,
                 "X.1368 8.2: hierarchical (with --tiers >= 1), client-server (every device "
                 "under root), or intra-device (root and client in one device, on its local "
                 "broker: --devices 1)")
      ->check(CLI::IsMember({"hierarchical", "client-server", "intra-device"}));
  app.add_option("--device-links", device_links,
                 "mqtt: every device has its own MQTT connection, devices spread over worker "
                 "processes; in-process: devices reach their gateway through the in-memory broker "
                 "(for fleets beyond the machine's sockets)")
      ->check(CLI::IsMember({"mqtt", "in-process"}));
  app.add_option("--devices-per-worker", o.devices_per_worker,
                 "MQTT clients per worker process (Paho's cost per message grows with the clients "
                 "one process holds)")
      ->check(CLI::Range(1, 5000));
  app.add_option("--worker-threads", o.worker_threads, "executor threads of each worker process")
      ->check(CLI::Range(1, 16));
  app.add_option("--brokers", brokers,
                 "shared: one Mosquitto for the whole fleet; per-gateway: one more for each "
                 "gateway's children, the gateway bridging it to its parent's")
      ->check(CLI::IsMember({"shared", "per-gateway"}));
  app.add_option("--chunk-size", o.chunk_size,
                 "bytes per chunk in the release's manifest (its chunk table)")
      ->check(CLI::Range(x1368::core::kMinChunkBytes, x1368::core::kMaxChunkBytes))
      ->capture_default_str();
  app.add_option("--broker-queue", o.broker_queue,
                 "every broker's max_queued_messages (0: Mosquitto's default, 1000)")
      ->check(CLI::Range(0, 10'000'000));
  app.add_option("--loss", o.loss, "share of messages each device link loses, each way")
      ->check(CLI::Range(0.0, 0.5));
  app.add_option("--report-interval", report_interval_s,
                 "seconds between each device's full-state reports (its heartbeat)")
      ->check(CLI::Range(0.5, 3600.0));
  app.add_option("--device-storage", device_storage,
                 "memory: each device's files in a MemFileSystem; disk: under the temp dir")
      ->check(CLI::IsMember({"memory", "disk"}));
  app.add_option("--tracker-storage", tracker_storage,
                 "disk: root's and the gateways' files under the temp dir (fsynced); memory: in "
                 "MemFileSystems")
      ->check(CLI::IsMember({"memory", "disk"}));
  app.add_option("--json", json_path, "write the results as JSON here");
  app.add_option("--timeline", timeline_path, "write per-second counts by state as CSV here");
  app.add_option("--chart", chart_path, "draw the rollout over time as an SVG chart here");
  app.add_flag("--kill-intermediate", o.kill_intermediate,
               "one gateway of the lowest tier dies mid-campaign and restarts over its own files");
  app.add_flag("--restart-broker", o.restart_broker,
               "the broker is killed mid-campaign and restarted on the same port");
  app.add_option("--kill-at", kill_at_s,
                 "seconds after the campaign start when the gateway or broker goes down")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--downtime", downtime_s, "seconds the gateway or broker stays down")
      ->check(CLI::NonNegativeNumber);
  app.add_flag(
      "--no-limits", [&o](int64_t) { o.measure_limits = false; },
      "skip measuring the in-run limits (Ed25519 verifies, raw broker throughput)");
  app.add_flag("--quiet", quiet, "no live progress line");
  app.add_option("--worker", worker_plan, "(internal) run as a worker process with this plan")
      ->group("");
  app.add_flag("--deadlock-detection", o.deadlock_detection,
               "keep Abseil's mutex deadlock detection on (Debian's Abseil enables it; its global "
               "graph lock serializes every mutex of the process)");
  app.add_option("--log-level", o.log_level,
                 "the modules' log level (their event lines would drown the progress line; "
                 "power cuts log errors by design)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  CLI11_PARSE(app, argc, argv);

  spdlog::set_level(spdlog::level::from_str(o.log_level));
  if (!o.deadlock_detection) absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (!worker_plan.empty()) return x1368::sim::RunWorker(worker_plan);
  // One socket per device link (the workers and the brokers inherit the limit).
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  if (topology == "client-server" || topology == "intra-device") o.tiers = 0;
  if (topology == "intra-device" && o.devices != 1) {
    fprintf(stderr, "tracker-sim: --topology intra-device is one device: --devices 1\n");
    return 2;
  }
  if (topology == "hierarchical" && o.tiers == 0) {
    fprintf(stderr, "tracker-sim: --topology hierarchical needs --tiers >= 1\n");
    return 2;
  }
  o.timeout = absl::Seconds(timeout_s);
  o.offline_delay = absl::Seconds(offline_delay_s);
  o.report_interval = absl::Seconds(report_interval_s);
  o.device_storage_memory = device_storage == "memory";
  o.tracker_storage_memory = tracker_storage == "memory";
  o.kill_at = absl::Seconds(kill_at_s);
  o.downtime = absl::Seconds(downtime_s);
  o.progress = !quiet;
  o.device_links_mqtt = device_links == "mqtt";
  o.broker_per_gateway = brokers == "per-gateway";
  if (o.power_cut_share > 0 && !o.device_storage_memory) {
    fprintf(stderr, "tracker-sim: --power-cut-share needs --device-storage memory\n");
    return 2;
  }

  auto result = x1368::sim::RunSim(o);
  if (!result.ok()) {
    fprintf(stderr, "tracker-sim: %s\n", result.status().ToString().c_str());
    return 1;
  }
  std::string json = x1368::sim::ResultJson(o, *result);
  fputs(json.c_str(), stdout);
  if (!json_path.empty()) {
    if (auto s = x1368::core::WriteFileAtomic(json_path, json); !s.ok()) {
      fprintf(stderr, "tracker-sim: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  if (!timeline_path.empty()) {
    if (auto s = x1368::core::WriteFileAtomic(timeline_path, x1368::sim::TimelineCsv(*result));
        !s.ok()) {
      fprintf(stderr, "tracker-sim: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  if (!chart_path.empty()) {
    if (auto s = x1368::core::WriteFileAtomic(chart_path, x1368::sim::TimelineSvg(o, *result));
        !s.ok()) {
      fprintf(stderr, "tracker-sim: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  if (!result->all_final) {
    fprintf(stderr, "tracker-sim: not every device was final within the timeout\n");
    return 3;
  }
  return 0;
}
