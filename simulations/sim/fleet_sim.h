// tracker-sim: a whole fleet on one machine, every node the real module built by tracker-nodes.
//
// Root and the intermediates (`tiers` levels of `fanout` each) talk over a real Mosquitto that the
// sim starts on a free loopback port (or, with `broker_per_gateway`, over one Mosquitto per
// gateway: its children's, with the gateway itself the bridge to its parent's, as a real fleet is
// laid out). The devices, spread evenly over the lowest tier, each have their files in a
// MemFileSystem of their own and reach their gateway either
//   - over MQTT, every device its own connection, spread over worker processes of
//     `devices_per_worker` clients each (simulations/sim/worker.h), or
//   - over the in-process broker (FakeBroker), so a fleet of 100,000 needs neither sockets nor
//     disk.
// Root and the gateways are strands on one shared Executor in the sim's process. The sim
// publishes a signed release, starts a campaign, injects the faults it was asked for (seeded, so
// a run repeats) and waits until every device is final.
#ifndef X1368_SIM_FLEET_SIM_H_
#define X1368_SIM_FLEET_SIM_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "x1368/core/chunk_table.h"

namespace x1368::sim {

struct SimOptions {
  int devices = 100;
  int tiers = 1;   // levels of intermediates; 0: devices directly under root (client-server)
  int fanout = 2;  // intermediates under each node of the tier above
  uint64_t image_size = 256 * 1024;
  uint32_t chunk_size = core::kDefaultChunkBytes;  // the manifest's, as trackerctl signs it
  uint64_t seed = 1;
  absl::Duration timeout = absl::Seconds(600);
  int threads = 3;           // of the shared executor
  int blocking_threads = 2;  // its threads for blocking consumer calls
  bool device_storage_memory = true;
  // Root's and the gateways' files (SQLite databases, images, caches) in MemFileSystems instead
  // of the temp dir: shows what their fsyncs cost, all of them sharing one disk here.
  bool tracker_storage_memory = false;
  bool device_links_mqtt = false;
  int devices_per_worker = 100;  // Paho clients per worker process (device_links_mqtt)
  int worker_threads = 1;        // each worker's executor threads
  bool broker_per_gateway = false;
  // Every broker's max_queued_messages; 0: Mosquitto's default (1000), what users run.
  int broker_queue = 0;

  // Faults, each on a disjoint random share of the devices (so outcomes can be counted exactly).
  double install_fail_share = 0;
  double boot_fail_share = 0;
  double power_cut_share = 0;
  double offline_share = 0;
  absl::Duration offline_delay = absl::Seconds(5);  // after the campaign starts
  // One gateway of the lowest tier (seeded) dies `kill_at` after the campaign starts and comes
  // back `downtime` later over its own files, as after a kill -9 and a restart by its supervisor.
  bool kill_intermediate = false;
  // The shared broker is killed (SIGKILL) `kill_at` after the campaign starts and restarted on
  // the same port `downtime` later.
  bool restart_broker = false;
  absl::Duration kill_at = absl::Seconds(1);
  absl::Duration downtime = absl::Seconds(3);
  // The share of messages a device's link loses, each way.
  double loss = 0;
  // Each device's full-state report (its heartbeat): what brings a lost report back.
  absl::Duration report_interval = absl::Seconds(60);

  // Measure the in-run limits (Ed25519 verifies, raw broker throughput).
  bool measure_limits = true;
  bool progress = true;                // a live line on stderr each second
  std::string log_level = "critical";  // the modules' (workers get the same)
  bool deadlock_detection = false;     // Abseil's (workers get the same)
};

// Counts by state, as root sees them.
struct Counts {
  int seen = 0;       // devices root has a record of
  int commanded = 0;  // reached by the campaign (any state past idle, or its campaign id)
  int downloading = 0;
  int confirmed = 0;  // running the new version
  int failed = 0;     // FAILED or DECLINED
  int rolled_back = 0;
  int offline = 0;  // not seen yet, or shown offline
  int final() const { return confirmed + failed + rolled_back; }
};

struct TimelineRow {
  double t = 0;  // seconds since the campaign started
  Counts counts;
};

// What crossed one kind of link (root's, the gateways', the devices').
struct LinkTotals {
  uint64_t messages = 0;       // published + received
  uint64_t image_bytes = 0;    // chunk response payloads
  uint64_t control_bytes = 0;  // every other payload
  uint64_t lost = 0;           // dropped by --loss
};

struct SimResult {
  int devices = 0;
  Counts end;
  int bricked = 0;  // active slot not holding an installed, intact, expected image
  int power_cuts_fired = 0;
  int intermediate_kills = 0;
  int broker_restarts = 0;
  bool all_final = false;
  double setup_seconds = 0;  // building the PKI and the fleet until root heard every device
  double seconds_to_all_commanded = -1;
  double seconds_to_all_final = -1;
  uint64_t root_messages_in = 0;
  uint64_t root_messages_out = 0;
  double root_messages_per_device = 0;
  // Device reports that changed something, as the gateways they report to counted them (each
  // relayed upward once): the fleet's state changes. Root's messages per change is what the
  // hierarchy's aggregation is judged by (issue #13: at most 0.01).
  uint64_t device_state_changes = 0;
  double root_messages_in_per_change = 0;
  double root_messages_per_change = 0;  // in and out
  int64_t rss_before_fleet_kb = 0;
  int64_t rss_before_devices_kb = 0;
  // Peak RSS of the sim's own process, which hosts root and the gateways (and the devices when
  // their links are in-process): with --tiers 0 and MQTT device links, root's alone.
  int64_t peak_rss_root_kb = 0;
  // The devices' memory: with in-process links the process's growth once they were added
  // (gateway caches included); with MQTT links the sum of the workers' peak RSS (their Paho and
  // process overhead included).
  int64_t device_rss_kb = 0;
  int workers = 0;
  int brokers = 0;
  // Times a broker began dropping messages for a client whose queue was full (its log), over
  // every broker, from the campaign's start: 0 when flow control kept every node within the
  // queue. Those while the fleet connected (before the campaign) are counted apart.
  int broker_drop_episodes = 0;
  int broker_drop_episodes_setup = 0;
  uint64_t upstream_image_bytes = 0;  // image bytes root's link carried for the whole fleet
  LinkTotals root_links, gateway_links, device_links;
  double ed25519_verify_per_second = 0;
  double broker_raw_messages_per_second = 0;
  std::vector<TimelineRow> timeline;
  std::vector<std::pair<double, std::string>> fault_marks;  // when the outages began and ended
};

absl::StatusOr<SimResult> RunSim(const SimOptions& options);

// Writes `r` as one JSON object (the fields of SimResult, except the timeline).
std::string ResultJson(const SimOptions& o, const SimResult& r);
// The timeline as CSV, one row per second.
std::string TimelineCsv(const SimResult& r);
// The timeline as an SVG chart: devices by state over time, with the faults marked.
std::string TimelineSvg(const SimOptions& o, const SimResult& r);

}  // namespace x1368::sim

#endif  // X1368_SIM_FLEET_SIM_H_
