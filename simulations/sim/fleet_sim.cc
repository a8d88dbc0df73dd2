#include "simulations/sim/fleet_sim.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <memory>
#include <random>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "simulations/common/proc_status.h"
#include "simulations/sim/devices.h"
#include "simulations/sim/sim_link.h"
#include "testing/mosquitto.h"
#include "testing/pki.h"
#include "x1368/core/crypto.h"
#include "x1368/core/env.h"
#include "x1368/core/executor.h"
#include "x1368/core/fake_transport.h"
#include "x1368/core/file_system.h"
#include "x1368/core/file_util.h"
#include "x1368/core/mqtt_transport.h"
#include "x1368/nodes/nodes.h"

extern char** environ;

namespace x1368::sim {
namespace {

using testing::MosquittoBroker;
using testing::TempDir;
using testing::TestNode;
using testing::TestPki;

// A power cut lands at a device's k-th write from the campaign's start, k uniform in [1, this]:
// an update ending confirmed makes a few dozen writes (client_scenario_test measures them), so
// most cuts land inside the update and some after it (a cut then still reboots the device).
constexpr int64_t kMaxCutWrite = 40;

// The one place the sim makes MQTT links: on the fleet's executor, like every other node task.
core::TransportFactory MqttLinks(core::Executor* executor) {
  return core::MqttTransports(executor);
}

// Limit: Ed25519 verifications one thread does per second (every report root reads, every
// directive and manifest a device checks costs at least one).
double MeasureEd25519VerifiesPerSecond() {
  auto key = core::PrivateKey::Generate();
  if (!key.ok()) return 0;
  const std::string data(200, 'x');  // about a report's body
  auto sig = key->Sign(core::SignedKind::kEnvelopeBody, data);
  if (!sig.ok()) return 0;
  const core::PublicKey pub = key->public_key();
  int64_t n = 0;
  absl::Time start = absl::Now();
  absl::Duration elapsed;
  do {
    for (int i = 0; i < 100; ++i) {
      if (pub.Verify(core::SignedKind::kEnvelopeBody, data, *sig)) ++n;
    }
    elapsed = absl::Now() - start;
  } while (elapsed < absl::Milliseconds(500) && n < 10'000'000);
  return static_cast<double>(n) / absl::ToDoubleSeconds(elapsed);
}

// Limit: QoS 1 messages per second from one publisher through the sim's Mosquitto to one
// subscriber, with at most `kWindow` unacknowledged end to end (the transport's outbox is bounded
// and drops its oldest beyond that, so an open loop would measure the drops). About one second.
double MeasureBrokerMessagesPerSecond(const core::TransportFactory& mqtt, MosquittoBroker* broker) {
  constexpr int64_t kWindow = 1000;
  core::TransportOptions po = broker->ClientOptions("sim-raw-pub");
  core::TransportOptions so = broker->ClientOptions("sim-raw-sub");
  po.session_expiry_s = so.session_expiry_s = 0;
  std::unique_ptr<core::Transport> pub = mqtt(po);
  std::unique_ptr<core::Transport> sub = mqtt(so);
  std::atomic<int64_t> received{0};
  std::atomic<bool> subscribed{false};
  sub->SetMessageHandler([&](core::MqttMessage) { received.fetch_add(1); });
  sub->SetConnectHandler([&] { subscribed = true; });
  sub->AddSubscription("sim-raw/#");
  if (!sub->Start().ok() || !pub->Start().ok()) return 0;
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while ((!subscribed || !pub->connected()) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  double rate = 0;
  if (subscribed && pub->connected()) {
    const core::MqttMessage m{"sim-raw/t", std::string(200, 'x'), false};
    int64_t sent = 0;
    absl::Time start = absl::Now();
    absl::Time stop_sending = start + absl::Seconds(1);
    absl::Time hard_stop = start + absl::Seconds(5);
    while (absl::Now() < stop_sending) {
      if (sent - received.load() < kWindow) {
        if (pub->Publish(m).ok()) ++sent;
      } else {
        absl::SleepFor(absl::Microseconds(100));
      }
    }
    while (received.load() < sent && absl::Now() < hard_stop) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    rate = static_cast<double>(received.load()) / absl::ToDoubleSeconds(absl::Now() - start);
  }
  pub->Stop();
  sub->Stop();
  return rate;
}

LinkTotals Totals(const LinkCounters& c) {
  return {c.messages.load(), c.image_bytes.load(), c.control_bytes.load(), c.lost.load()};
}

// A worker process hosting a share of the devices (--device-links mqtt; simulations/sim/worker.h).
struct Worker {
  pid_t pid = -1;
  int to = -1;    // its stdin
  int from = -1;  // its stdout
  std::string input;
  int online = 0;
};

class Fleet {
 public:
  explicit Fleet(const SimOptions& o) : o_(o), pki_(dir_.path()) {}
  ~Fleet();

  absl::StatusOr<SimResult> Run();

 private:
  struct Gateway {
    std::string id;
    std::string path;                            // "2-1": the second of tier 1, its first child
    std::unique_ptr<MosquittoBroker> broker;     // --brokers per-gateway: where its children are
    std::unique_ptr<core::MemFileSystem> memfs;  // --tracker-storage memory
    core::Env env;
    nodes::IntermediateSpec spec;
    nodes::IntermediateNode node;
  };

  absl::Status StartBroker();
  absl::Status BuildRoot();
  absl::Status BuildGateways();
  void PlanDevices();
  absl::Status StartDevices();
  absl::Status SpawnWorkers();
  // The next line from worker `w`, waiting until `deadline`.
  absl::StatusOr<std::string> ReadWorkerLine(Worker& w, absl::Time deadline);
  absl::Status TellWorkers(const std::string& line);
  // Stops the devices and gathers what the workers measured into `r`.
  absl::Status StopDevices(SimResult* r);
  core::NodeConfig ConfigFor(const TestNode& n, const std::string& data_dir) const;
  core::TransportOptions MemoryLink(const std::string& id) const;
  Counts Count();
  // What root and the nodes it knows refused, by reason ("none" if nothing).
  std::string RootRejections();
  // The devices root does not see final, and what it last heard from them.
  std::string NotFinal();
  // --kill-intermediate: the gateway dies (its strand stops mid-work, its links go dead, and with
  // tracker storage in memory its unsynced writes are lost); Revive() restarts it.
  void KillGateway(Gateway* g);
  absl::Status ReviveGateway(Gateway* g);

  const SimOptions o_;
  // Every node runs on these threads (declared first: destroyed last).
  core::Executor executor_{core::RealClock::Get(), o_.threads, o_.blocking_threads};
  core::FakeBroker fake_;
  FleetCounters counters_;
  TempDir dir_;
  std::unique_ptr<MosquittoBroker> broker_;  // root's (and with --brokers shared, everyone's)
  core::TransportFactory transports_;
  TestPki pki_;
  std::string image_sha256_;
  std::string campaign_id_;
  std::unique_ptr<core::MemFileSystem> root_memfs_;  // --tracker-storage memory
  core::Env root_env_;
  nodes::RootNode root_;
  std::vector<std::unique_ptr<Gateway>> gateways_;
  std::vector<Gateway*> lowest_;  // the gateways devices hang under
  std::vector<DevicePlan> plans_;
  std::unique_ptr<DeviceGroup> local_;  // --device-links in-process
  std::vector<Worker> workers_;         // --device-links mqtt

  std::vector<std::pair<double, std::string>> fault_marks_;  // seconds, what happened
  // Every broker's drop episodes so far (their logs), root's broker first.
  std::vector<std::string> DropEpisodes() const;
  size_t setup_drop_episodes_ = 0;  // of them, those before the campaign
};

Fleet::~Fleet() {
  // Every strand first, so none acts on a node that is already gone.
  if (local_) local_->Stop();
  for (Worker& w : workers_) {
    if (w.to >= 0) close(w.to);  // a worker whose stdin closes exits
    if (w.from >= 0) close(w.from);
    if (w.pid > 0) {
      kill(w.pid, SIGKILL);
      waitpid(w.pid, nullptr, 0);
    }
  }
  for (auto it = gateways_.rbegin(); it != gateways_.rend(); ++it) (*it)->node.Stop();
  root_.Stop();
}

core::NodeConfig Fleet::ConfigFor(const TestNode& n, const std::string& data_dir) const {
  core::NodeConfig c;
  c.node_id = n.id;
  c.key_pem = n.key.ToPem();
  c.cert_bytes = n.cert.SerializeAsString();
  c.root_id = pki_.root_id();
  c.root_public_key_file = pki_.root_pub_path();
  c.data_dir = data_dir;
  c.init = true;  // a simulated fleet always starts new
  return c;
}

core::TransportOptions Fleet::MemoryLink(const std::string& id) const {
  core::TransportOptions t;
  t.broker_uri = core::kMemoryScheme;
  t.client_id = id;
  return t;
}

absl::StatusOr<std::unique_ptr<MosquittoBroker>> StartMosquitto(const std::string& dir,
                                                                int max_queued_messages) {
  if (absl::Status s = core::PosixFileSystem()->MakeDirs(dir); !s.ok()) return s;
  testing::MosquittoOptions options;
  options.max_queued_messages = max_queued_messages;
  return MosquittoBroker::Start(dir, options);
}

absl::Status Fleet::StartBroker() {
  auto b = StartMosquitto(dir_.File("mosquitto"), o_.broker_queue);
  if (!b.ok()) return b.status();
  broker_ = *std::move(b);
  fake_.KeepLog(false);  // it would hold every message of the run
  transports_ = CountedLinks(fake_.TransportsOr(MqttLinks(&executor_)), &counters_, pki_.root_id(),
                             o_.loss, o_.seed);
  return absl::OkStatus();
}

absl::Status Fleet::BuildRoot() {
  root_env_.executor = &executor_;
  root_env_.transports = transports_;
  if (o_.tracker_storage_memory) {
    root_memfs_ = std::make_unique<core::MemFileSystem>();
    root_env_.fs = root_memfs_.get();
  }
  nodes::RootSpec spec;
  spec.node.node_id = pki_.root_id();
  spec.node.key_file = pki_.root_key_path();
  spec.node.root_id = pki_.root_id();
  spec.node.root_public_key_file = pki_.root_pub_path();
  spec.node.data_dir = dir_.File("root");
  spec.node.init = true;  // a simulated fleet always starts new
  spec.options.images_dir = dir_.File("root/images");
  // Client-server with in-process device links: the devices are root's children on the
  // in-process broker.
  spec.downstream = o_.tiers == 0 && !o_.device_links_mqtt ? MemoryLink(pki_.root_id())
                                                           : broker_->ClientOptions(pki_.root_id());
  if (absl::Status s = nodes::Build(root_env_, spec, &root_); !s.ok()) return s;
  return root_.Start();
}

absl::Status Fleet::BuildGateways() {
  struct Parent {
    std::string id, path;
    MosquittoBroker* broker;  // where its children connect
  };
  std::vector<Parent> tier = {{pki_.root_id(), "", broker_.get()}};
  for (int t = 1; t <= o_.tiers; ++t) {
    std::vector<Parent> next;
    const bool lowest = t == o_.tiers;
    for (const Parent& parent : tier) {
      for (int i = 1; i <= o_.fanout; ++i) {
        auto g = std::make_unique<Gateway>();
        g->path = parent.path.empty() ? absl::StrCat(i) : absl::StrCat(parent.path, "-", i);
        g->id = absl::StrCat("gw-", g->path);
        // Its certificate covers exactly its subtree: the gateways and devices named under it.
        TestNode cert =
            pki_.Make(g->id, v1::ROLE_INTERMEDIATE,
                      {absl::StrCat("gw-", g->path, "-*"), absl::StrCat("dev-", g->path, "-*")});
        g->env.executor = &executor_;
        g->env.transports = transports_;
        if (o_.tracker_storage_memory) {
          g->memfs = std::make_unique<core::MemFileSystem>();
          g->env.fs = g->memfs.get();
        }
        // Its children's broker: its own with --brokers per-gateway (the gateway is the bridge
        // between the two), else its parent's.
        MosquittoBroker* down = parent.broker;
        if (o_.broker_per_gateway && !(lowest && !o_.device_links_mqtt)) {
          auto b = StartMosquitto(dir_.File("mosquitto-" + g->id), o_.broker_queue);
          if (!b.ok()) return b.status();
          g->broker = *std::move(b);
          down = g->broker.get();
        }
        nodes::IntermediateSpec& spec = g->spec;
        spec.node = ConfigFor(cert, dir_.File(g->id));
        spec.options.parent_id = parent.id;
        spec.options.cache_dir = dir_.File(g->id + "/cache");
        spec.upstream = parent.broker->ClientOptions(g->id);
        // One link serves both sides when its children share its parent's broker.
        if (lowest && !o_.device_links_mqtt) {
          spec.downstream = MemoryLink(g->id);
        } else if (down != parent.broker) {
          spec.downstream = down->ClientOptions(g->id);
        }
        if (absl::Status s = nodes::Build(g->env, spec, &g->node); !s.ok()) return s;
        if (absl::Status s = g->node.Start(); !s.ok()) return s;
        next.push_back({g->id, g->path, down});
        if (lowest) lowest_.push_back(g.get());
        gateways_.push_back(std::move(g));
      }
    }
    tier = std::move(next);
  }
  return absl::OkStatus();
}

void Fleet::PlanDevices() {
  const int n = o_.devices;
  plans_.resize(n);
  for (int i = 0; i < n; ++i) {
    DevicePlan& p = plans_[i];
    if (lowest_.empty()) {
      p.id = absl::StrCat("dev-", i);
      p.parent_id = pki_.root_id();
      p.broker_uri = o_.device_links_mqtt ? broker_->uri() : core::kMemoryScheme;
    } else {
      Gateway* g = lowest_[i % lowest_.size()];
      p.id = absl::StrCat("dev-", g->path, "-", i);
      p.parent_id = g->id;
      p.broker_uri = !o_.device_links_mqtt ? core::kMemoryScheme
                     : g->broker           ? g->broker->uri()
                                           : g->spec.upstream.broker_uri;
    }
  }
  // Disjoint shares, drawn from one seeded shuffle: the outcome of each device is known in
  // advance, so the counts at the end can be checked exactly.
  std::vector<int> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(o_.seed);
  std::shuffle(order.begin(), order.end(), rng);
  size_t next = 0;
  auto take = [&](double share, Fault f) {
    size_t k = static_cast<size_t>(share * n + 0.5);
    for (size_t i = 0; i < k && next < order.size(); ++i) plans_[order[next++]].fault = f;
  };
  take(o_.install_fail_share, Fault::kInstall);
  take(o_.boot_fail_share, Fault::kBoot);
  take(o_.power_cut_share, Fault::kPowerCut);
  take(o_.offline_share, Fault::kOffline);
  std::uniform_int_distribution<int64_t> cut(1, kMaxCutWrite);
  for (DevicePlan& p : plans_) {
    if (p.fault == Fault::kPowerCut) p.cut_after = cut(rng);
  }
}

absl::Status Fleet::StartDevices() {
  if (o_.device_links_mqtt) return SpawnWorkers();
  DeviceGroupOptions go;
  go.storage_memory = o_.device_storage_memory;
  go.data_dir = dir_.File("devices");
  go.report_interval = o_.report_interval;
  local_ = std::make_unique<DeviceGroup>(&executor_, transports_, &pki_, go);
  for (const DevicePlan& p : plans_) {
    if (absl::Status s = local_->Add(p); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Fleet::SpawnWorkers() {
  const int per = std::max(1, o_.devices_per_worker);
  const int count = (o_.devices + per - 1) / per;
  workers_.resize(count);
  for (int w = 0; w < count; ++w) {
    std::string plan = absl::StrCat(
        "pki_dir ", dir_.path(), "\nroot_id ", pki_.root_id(), "\nstorage ",
        o_.device_storage_memory ? "memory" : "disk", "\ndata_dir ", dir_.File("devices"),
        "\nloss ", o_.loss, "\nseed ", o_.seed + static_cast<uint64_t>(w), "\nthreads ",
        o_.worker_threads, "\noffline_delay_ms ", absl::ToInt64Milliseconds(o_.offline_delay),
        "\nreport_interval_ms ", absl::ToInt64Milliseconds(o_.report_interval), "\n");
    for (int i = w * per; i < std::min(o_.devices, (w + 1) * per); ++i) {
      absl::StrAppend(&plan, "device ", PlanLine(plans_[i]), "\n");
    }
    std::string plan_path = dir_.File(absl::StrCat("worker-", w, ".plan"));
    if (absl::Status s = core::WriteFileAtomic(plan_path, plan); !s.ok()) return s;

    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC) != 0 || pipe2(from, O_CLOEXEC) != 0) {
      return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, from[1], STDOUT_FILENO);
    std::vector<std::string> args = {"tracker-sim", "--worker", plan_path, "--log-level",
                                     o_.log_level};
    if (o_.deadlock_detection) args.push_back("--deadlock-detection");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(to[0]);
    close(from[1]);
    workers_[w].to = to[1];
    workers_[w].from = from[0];
    if (rc != 0) return absl::InternalError(absl::StrCat("posix_spawn: ", strerror(rc)));
    workers_[w].pid = pid;
  }
  // Every worker has built and started its devices (their certificates are made there, so the
  // workers do that work side by side).
  const absl::Time deadline = absl::Now() + o_.timeout;
  for (size_t w = 0; w < workers_.size(); ++w) {
    auto line = ReadWorkerLine(workers_[w], deadline);
    if (!line.ok()) return line.status();
    absl::string_view rest = *line;
    if (!absl::ConsumePrefix(&rest, "ready ") || !absl::SimpleAtoi(rest, &workers_[w].online)) {
      return absl::InternalError(absl::StrCat("worker ", w, " said '", *line, "'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Fleet::ReadWorkerLine(Worker& w, absl::Time deadline) {
  while (true) {
    size_t eol = w.input.find('\n');
    if (eol != std::string::npos) {
      std::string line = w.input.substr(0, eol);
      w.input.erase(0, eol + 1);
      return line;
    }
    int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (ms <= 0) return absl::DeadlineExceededError(absl::StrCat("worker ", w.pid, " is silent"));
    pollfd p{w.from, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1000))) <= 0) continue;
    char buf[512];
    ssize_t n = read(w.from, buf, sizeof buf);
    if (n <= 0) {
      return absl::InternalError(absl::StrCat("worker ", w.pid, " died (see its messages above)"));
    }
    w.input.append(buf, static_cast<size_t>(n));
  }
}

absl::Status Fleet::TellWorkers(const std::string& line) {
  const std::string out = line + "\n";
  for (Worker& w : workers_) {
    if (write(w.to, out.data(), out.size()) != static_cast<ssize_t>(out.size())) {
      return absl::InternalError(absl::StrCat("worker ", w.pid, " is gone"));
    }
  }
  return absl::OkStatus();
}

absl::Status Fleet::StopDevices(SimResult* r) {
  if (local_) {
    local_->Stop();
    r->bricked = local_->Bricked(image_sha256_);
    r->device_rss_kb = sim::ProcStatus("VmHWM") - r->rss_before_devices_kb;
    r->device_links = Totals(counters_.devices);
    return absl::OkStatus();
  }
  if (absl::Status s = TellWorkers("stop " + absl::BytesToHexString(image_sha256_)); !s.ok())
    return s;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  for (Worker& w : workers_) {
    auto line = ReadWorkerLine(w, deadline);
    if (!line.ok()) return line.status();
    absl::string_view rest = *line;
    if (!absl::ConsumePrefix(&rest, "result ")) {
      return absl::InternalError(absl::StrCat("worker ", w.pid, " said '", *line, "'"));
    }
    for (absl::string_view field : absl::StrSplit(rest, ' ', absl::SkipEmpty())) {
      std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(field, '=');
      int64_t v = 0;
      if (!absl::SimpleAtoi(kv.second, &v)) continue;
      if (kv.first == "bricked") r->bricked += static_cast<int>(v);
      if (kv.first == "power_cuts") r->power_cuts_fired += static_cast<int>(v);
      if (kv.first == "rss_kb") r->device_rss_kb += v;
      if (kv.first == "messages") r->device_links.messages += v;
      if (kv.first == "image_bytes") r->device_links.image_bytes += v;
      if (kv.first == "control_bytes") r->device_links.control_bytes += v;
      if (kv.first == "lost") r->device_links.lost += v;
    }
    waitpid(w.pid, nullptr, 0);
    w.pid = -1;
  }
  return absl::OkStatus();
}

Counts Fleet::Count() {
  v1::FleetStatus fleet = core::CallOnLoop(*root_.loop, [this] { return root_.root->Fleet(); });
  absl::flat_hash_map<absl::string_view, const v1::DeviceRecord*> by_id;
  by_id.reserve(fleet.devices_size());
  for (const v1::DeviceRecord& r : fleet.devices()) by_id[r.device_id()] = &r;
  Counts c;
  for (const DevicePlan& p : plans_) {
    auto it = by_id.find(p.id);
    if (it == by_id.end()) {
      ++c.offline;
      continue;
    }
    const v1::DeviceRecord& r = *it->second;
    ++c.seen;
    if (!r.online()) ++c.offline;
    bool ours = !campaign_id_.empty() && r.campaign_id() == campaign_id_;
    switch (r.state()) {
      case v1::OFFERED:
      case v1::DOWNLOADING:
      case v1::DOWNLOADED:
      case v1::VERIFIED:
      case v1::INSTALLING:
      case v1::TRIAL_BOOT:
        ++c.downloading;
        break;
      case v1::CONFIRMED:
        if (r.version() == kNewVersion) ++c.confirmed;
        break;
      case v1::FAILED:
      case v1::DECLINED:
        if (ours) ++c.failed;
        break;
      case v1::ROLLED_BACK:
        if (ours) ++c.rolled_back;
        break;
      default:
        break;
    }
    bool past_idle = r.state() != v1::IDLE && r.state() != v1::UPDATE_STATE_UNSPECIFIED;
    if (ours || (past_idle && r.version() == kNewVersion)) ++c.commanded;
  }
  return c;
}

std::string Fleet::NotFinal() {
  v1::FleetStatus fleet = core::CallOnLoop(*root_.loop, [this] { return root_.root->Fleet(); });
  absl::flat_hash_map<absl::string_view, const v1::DeviceRecord*> by_id;
  for (const v1::DeviceRecord& r : fleet.devices()) by_id[r.device_id()] = &r;
  std::string out;
  int n = 0;
  for (const DevicePlan& p : plans_) {
    auto it = by_id.find(p.id);
    std::string what;
    if (it == by_id.end()) {
      what = "never seen";
    } else {
      const v1::DeviceRecord& d = *it->second;
      bool final =
          (d.state() == v1::CONFIRMED && d.version() == kNewVersion) ||
          (d.campaign_id() == campaign_id_ &&
           (d.state() == v1::FAILED || d.state() == v1::DECLINED || d.state() == v1::ROLLED_BACK));
      if (final) continue;
      what = absl::StrCat(v1::UpdateState_Name(d.state()), " ", d.version(),
                          d.online() ? " online" : " offline", ", last report ",
                          (root_env_.clock()->NowMs() - d.updated_at_ms()) / 1000, " s ago");
    }
    if (++n <= 10) absl::StrAppend(&out, "\n  ", p.id, ": ", what);
  }
  return absl::StrCat(n, " devices not final at root", out, n > 10 ? "\n  ..." : "");
}

std::string Fleet::RootRejections() {
  v1::FleetStatus fleet = core::CallOnLoop(*root_.loop, [this] { return root_.root->Fleet(); });
  std::string out;
  for (const v1::ReasonCount& rc : fleet.rejections()) {
    absl::StrAppend(&out, out.empty() ? "" : " ", "root:", v1::Reason_Name(rc.reason()), "=",
                    rc.count());
  }
  for (const v1::NodeRecord& n : fleet.nodes()) {
    for (const v1::ReasonCount& rc : n.rejections()) {
      absl::StrAppend(&out, out.empty() ? "" : " ", n.node_id(), ":", v1::Reason_Name(rc.reason()),
                      "=", rc.count());
    }
  }
  return out.empty() ? "no rejections" : "rejections: " + out;
}

absl::StatusOr<SimResult> Fleet::Run() {
  SimResult r;
  r.devices = o_.devices;
  absl::Time t0 = absl::Now();
  if (absl::Status s = StartBroker(); !s.ok()) return s;
  if (o_.measure_limits) {
    r.ed25519_verify_per_second = MeasureEd25519VerifiesPerSecond();
    r.broker_raw_messages_per_second =
        MeasureBrokerMessagesPerSecond(MqttLinks(&executor_), broker_.get());
  }
  r.rss_before_fleet_kb = sim::ProcStatus("VmRSS");
  if (absl::Status s = BuildRoot(); !s.ok()) return s;
  if (absl::Status s = BuildGateways(); !s.ok()) return s;
  r.rss_before_devices_kb = sim::ProcStatus("VmRSS");
  PlanDevices();
  if (absl::Status s = StartDevices(); !s.ok()) return s;
  int expected_up = local_ ? local_->online() : 0;
  for (const Worker& w : workers_) expected_up += w.online;
  const absl::Time deadline = t0 + o_.timeout;
  // The campaign starts once root has heard from every device that is online.
  absl::Time next_note = absl::Now() + absl::Seconds(5);
  while (true) {
    Counts c = Count();
    if (c.seen >= expected_up) break;
    if (o_.progress && absl::Now() > next_note) {
      next_note += absl::Seconds(5);
      fprintf(stderr, "tracker-sim: root has heard from %d of %d devices; %s\n", c.seen,
              expected_up, RootRejections().c_str());
    }
    if (absl::Now() > deadline) {
      // Whose queue overflowed, if any, and what root and the gateways refused: what a failed
      // setup needs to say.
      std::vector<std::string> drops = broker_->DropEpisodes();
      std::string gateways;
      for (const auto& g : gateways_) {
        absl::StrAppend(
            &gateways, " ", g->id, ": ",
            core::CallOnLoop(*g->node.loop, [&] { return g->node.intermediate->Summary(); })
                .devices(),
            " devices;");
      }
      return absl::DeadlineExceededError(
          absl::StrCat("root heard from only ", c.seen, " of ", expected_up, " devices; ",
                       RootRejections(), "; gateways' registries:", gateways,
                       " broker drops: ", drops.empty() ? "none" : absl::StrJoin(drops, " | ")));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  r.setup_seconds = absl::ToDoubleSeconds(absl::Now() - t0);
  // Drops while the fleet connects (hundreds of presences and first reports at once) lose first
  // reports that the gateways' second ask repairs; the rollout is judged apart from them.
  setup_drop_episodes_ = DropEpisodes().size();

  const std::string image = TestPki::MakeImage(o_.image_size, static_cast<uint32_t>(o_.seed));
  image_sha256_ = core::Sha256(image);
  TestNode author = pki_.Make("author-1", v1::ROLE_AUTHOR, {}, {kComponent});
  v1::ReleaseSubmission sub;
  *sub.mutable_manifest() =
      TestPki::Sign(author, TestPki::ManifestFor(image, kComponent, kNewVersion, 2, {kHardware},
                                                 author.id, o_.chunk_size));
  sub.set_image(image);
  auto release = core::CallOnLoop(*root_.loop, [&] { return root_.root->PublishRelease(sub); });
  if (!release.ok()) return release.status();
  v1::CampaignStartRequest req;
  req.set_component(kComponent);
  req.set_version(kNewVersion);
  auto campaign = core::CallOnLoop(*root_.loop, [&] { return root_.root->StartCampaign(req); });
  if (!campaign.ok()) return campaign.status();
  campaign_id_ = campaign->campaign_id();
  const absl::Time start = absl::Now();
  // Power cuts are armed now so that they land in the update, not in the boot before it.
  if (local_) local_->ArmPowerCuts();
  if (absl::Status s = TellWorkers("campaign"); !s.ok()) return s;

  bool offline_started = expected_up == o_.devices;
  // The faults on the infrastructure: one gateway and/or the broker go down and come back.
  Gateway* victim = nullptr;
  if (o_.kill_intermediate && !lowest_.empty()) {
    std::mt19937_64 pick(o_.seed ^ 0x6b696c6cULL);
    victim = lowest_[pick() % lowest_.size()];
  }
  enum class Outage {
    kPlanned,
    kDown,
    kOver
  } outage = victim != nullptr || o_.restart_broker ? Outage::kPlanned : Outage::kOver;
  absl::Time next_sample = start;
  while (true) {
    absl::Time now = absl::Now();
    // Outages first: rebooting cut devices below can take a while at scale, and must not move
    // when the gateway or broker goes down.
    if (outage == Outage::kPlanned && now - start >= o_.kill_at) {
      outage = Outage::kDown;
      if (victim != nullptr) {
        KillGateway(victim);
        ++r.intermediate_kills;
      }
      if (o_.restart_broker) {
        broker_->Kill();
        ++r.broker_restarts;
      }
      fault_marks_.push_back({absl::ToDoubleSeconds(now - start), "down"});
    }
    if (outage == Outage::kDown && now - start >= o_.kill_at + o_.downtime) {
      outage = Outage::kOver;
      if (o_.restart_broker) {
        if (absl::Status s = broker_->Restart(); !s.ok()) return s;
      }
      if (victim != nullptr) {
        if (absl::Status s = ReviveGateway(victim); !s.ok()) return s;
      }
      fault_marks_.push_back({absl::ToDoubleSeconds(now - start), "back"});
    }
    if (local_) r.power_cuts_fired += local_->RebootCutDevices(absl::Milliseconds(200));
    if (!offline_started && now - start >= o_.offline_delay) {
      offline_started = true;  // the workers start theirs on their own clock
      if (local_) {
        if (absl::Status s = local_->StartOffline(); !s.ok()) return s;
      }
    }
    if (now >= next_sample) {
      next_sample += absl::Seconds(1);
      double t = absl::ToDoubleSeconds(now - start);
      Counts c = Count();
      r.timeline.push_back({t, c});
      if (r.seconds_to_all_commanded < 0 && c.commanded >= o_.devices) {
        r.seconds_to_all_commanded = t;
      }
      if (o_.progress) {
        fprintf(stderr,
                "\r%6.0fs  commanded %d  downloading %d  confirmed %d  failed %d  "
                "rolled back %d  offline %d  / %d   ",
                t, c.commanded, c.downloading, c.confirmed, c.failed, c.rolled_back, c.offline,
                o_.devices);
        fflush(stderr);
      }
      if (c.final() >= o_.devices && offline_started) {
        r.all_final = true;
        r.seconds_to_all_final = t;
        r.end = c;
        break;
      }
      if (now > deadline) {
        r.end = c;
        break;
      }
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  if (o_.progress) fprintf(stderr, "\n");
  if (!r.all_final) fprintf(stderr, "tracker-sim: %s\n", NotFinal().c_str());
  // A final count at the exact moment everything became final is the sampled one; the
  // commanded time is at most that.
  if (r.all_final && r.seconds_to_all_commanded < 0) {
    r.seconds_to_all_commanded = r.seconds_to_all_final;
  }
  core::TransportStats root_stats = root_.transport->stats();
  r.root_messages_in = root_stats.received;
  r.root_messages_out = root_stats.published;
  r.root_messages_per_device =
      static_cast<double>(r.root_messages_in + r.root_messages_out) / std::max(1, o_.devices);
  for (Gateway* g : lowest_) {
    std::string text = g->node.node->metrics().RenderPrometheus();
    const std::string name = "\nx1368_reports_relayed_total ";
    size_t pos = text.find(name);
    if (pos != std::string::npos)
      r.device_state_changes += std::stoull(text.substr(pos + name.size()));
  }
  if (r.device_state_changes > 0) {
    const double changes = static_cast<double>(r.device_state_changes);
    r.root_messages_in_per_change = static_cast<double>(r.root_messages_in) / changes;
    r.root_messages_per_change =
        static_cast<double>(r.root_messages_in + r.root_messages_out) / changes;
  }
  r.peak_rss_root_kb = sim::ProcStatus("VmHWM");
  if (absl::Status s = StopDevices(&r); !s.ok()) return s;
  r.root_links = Totals(counters_.root);
  r.gateway_links = Totals(counters_.gateways);
  r.upstream_image_bytes = counters_.root_image_out.load();
  r.fault_marks = fault_marks_;
  r.workers = static_cast<int>(workers_.size());
  r.brokers = 1;
  for (const auto& g : gateways_) r.brokers += g->broker ? 1 : 0;
  std::vector<std::string> drops = DropEpisodes();
  const size_t setup_drops = std::min(setup_drop_episodes_, drops.size());
  r.broker_drop_episodes_setup = static_cast<int>(setup_drops);
  r.broker_drop_episodes = static_cast<int>(drops.size() - setup_drops);
  // Whose queue overflowed is what a failed run needs to say.
  for (const std::string& line : drops) fprintf(stderr, "tracker-sim: broker: %s\n", line.c_str());
  return r;
}

std::vector<std::string> Fleet::DropEpisodes() const {
  std::vector<std::string> drops = broker_->DropEpisodes();
  for (const auto& g : gateways_) {
    if (!g->broker) continue;
    for (std::string& line : g->broker->DropEpisodes()) drops.push_back(std::move(line));
  }
  return drops;
}

void Fleet::KillGateway(Gateway* g) {
  // Both links go dead first (on the in-process broker its children see its Will), then the
  // node goes, as after a kill -9.
  if (auto* down = dynamic_cast<SimLink*>(g->node.downstream.get())) down->Cut();
  if (auto* up = dynamic_cast<SimLink*>(g->node.transport.get())) up->Cut();
  g->node.Reset();
  if (g->memfs) g->memfs->PowerCut();
}

absl::Status Fleet::ReviveGateway(Gateway* g) {
  if (absl::Status s = nodes::Build(g->env, g->spec, &g->node); !s.ok()) return s;
  return g->node.Start();
}

}  // namespace

absl::StatusOr<SimResult> RunSim(const SimOptions& options) {
  if (options.devices < 1) return absl::InvalidArgumentError("--devices must be at least 1");
  if (options.tiers < 0 || options.fanout < 1) {
    return absl::InvalidArgumentError("--tiers must be >= 0 and --fanout >= 1");
  }
  Fleet fleet(options);
  return fleet.Run();
}

std::string ResultJson(const SimOptions& o, const SimResult& r) {
  std::string out = "{\n";
  auto num = [&out](const char* key, double v, bool last = false) {
    absl::StrAppendFormat(&out, "  \"%s\": %.6g%s\n", key, v, last ? "" : ",");
  };
  auto integer = [&out](const char* key, int64_t v) {
    absl::StrAppendFormat(&out, "  \"%s\": %d,\n", key, v);
  };
  integer("devices", r.devices);
  integer("tiers", o.tiers);
  integer("fanout", o.fanout);
  integer("image_size", static_cast<int64_t>(o.image_size));
  integer("seed", static_cast<int64_t>(o.seed));
  absl::StrAppend(&out, "  \"device_links\": \"", o.device_links_mqtt ? "mqtt" : "in-process",
                  "\",\n  \"brokers_layout\": \"", o.broker_per_gateway ? "per-gateway" : "shared",
                  "\",\n");
  num("loss", o.loss);
  absl::StrAppend(&out, "  \"all_final\": ", r.all_final ? "true" : "false", ",\n");
  integer("confirmed", r.end.confirmed);
  integer("failed", r.end.failed);
  integer("rolled_back", r.end.rolled_back);
  integer("bricked", r.bricked);
  integer("intermediate_kills", r.intermediate_kills);
  integer("broker_restarts", r.broker_restarts);
  integer("offline_at_end", r.end.offline);
  integer("power_cuts_fired", r.power_cuts_fired);
  num("setup_seconds", r.setup_seconds);
  num("seconds_to_all_commanded", r.seconds_to_all_commanded);
  num("seconds_to_all_final", r.seconds_to_all_final);
  integer("root_messages_in", static_cast<int64_t>(r.root_messages_in));
  integer("root_messages_out", static_cast<int64_t>(r.root_messages_out));
  num("root_messages_per_device", r.root_messages_per_device);
  integer("device_state_changes", static_cast<int64_t>(r.device_state_changes));
  num("root_messages_in_per_change", r.root_messages_in_per_change);
  num("root_messages_per_change", r.root_messages_per_change);
  const double n = std::max(1, r.devices);
  num("control_bytes_per_device", static_cast<double>(r.device_links.control_bytes) / n);
  num("image_bytes_per_device", static_cast<double>(r.device_links.image_bytes) / n);
  integer("upstream_image_bytes", static_cast<int64_t>(r.upstream_image_bytes));
  integer("gateway_link_messages", static_cast<int64_t>(r.gateway_links.messages));
  integer("device_link_messages", static_cast<int64_t>(r.device_links.messages));
  integer("messages_lost", static_cast<int64_t>(r.device_links.lost));
  integer("rss_before_fleet_kb", r.rss_before_fleet_kb);
  integer("peak_rss_root_kb", r.peak_rss_root_kb);
  num("peak_rss_per_device_kb", static_cast<double>(r.device_rss_kb) / n);
  integer("workers", r.workers);
  integer("brokers", r.brokers);
  integer("broker_drop_episodes", r.broker_drop_episodes);
  integer("broker_drop_episodes_setup", r.broker_drop_episodes_setup);
  integer("broker_queue", o.broker_queue);
  integer("chunk_size", o.chunk_size);
  num("ed25519_verify_per_second", r.ed25519_verify_per_second);
  num("broker_raw_messages_per_second", r.broker_raw_messages_per_second, /*last=*/true);
  out += "}\n";
  return out;
}

std::string TimelineCsv(const SimResult& r) {
  std::string out = "t,seen,commanded,downloading,confirmed,failed,rolled_back,offline\n";
  for (const TimelineRow& row : r.timeline) {
    const Counts& c = row.counts;
    absl::StrAppendFormat(&out, "%.1f,%d,%d,%d,%d,%d,%d,%d\n", row.t, c.seen, c.commanded,
                          c.downloading, c.confirmed, c.failed, c.rolled_back, c.offline);
  }
  return out;
}

std::string TimelineSvg(const SimOptions& o, const SimResult& r) {
  // A plain chart a person can read at a glance: one line per state, time across, devices up.
  constexpr double kWidth = 900, kHeight = 460, kLeft = 70, kRight = 170, kTop = 50, kBottom = 60;
  const double plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  double t_max = 1;
  for (const TimelineRow& row : r.timeline) t_max = std::max(t_max, row.t);
  const double n_max = std::max(1, r.devices);
  auto x = [&](double t) { return kLeft + plot_w * t / t_max; };
  auto y = [&](double n) { return kTop + plot_h * (1 - n / n_max); };
  std::string out = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "font-family=\"sans-serif\" font-size=\"13\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      kWidth, kHeight);
  absl::StrAppendFormat(&out,
                        "<text x=\"%.0f\" y=\"28\" font-size=\"16\" font-weight=\"bold\">"
                        "Rollout of %d devices (%d tiers x %d, %s image)</text>\n",
                        kLeft, r.devices, o.tiers, o.fanout,
                        o.image_size >= 1024 * 1024
                            ? absl::StrCat(o.image_size / (1024 * 1024), " MiB")
                            : absl::StrCat(o.image_size / 1024, " KiB"));
  // Grid and axes: quarters of the fleet, and about eight ticks of time.
  for (int q = 0; q <= 4; ++q) {
    double n = n_max * q / 4;
    absl::StrAppendFormat(&out,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                          "stroke=\"#ddd\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
                          "text-anchor=\"end\">%.0f</text>\n",
                          kLeft, y(n), kLeft + plot_w, y(n), kLeft - 8, y(n) + 4, n);
  }
  double step = std::max(1.0, std::ceil(t_max / 8));
  for (double t = 0; t <= t_max + 1e-9; t += step) {
    absl::StrAppendFormat(&out,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                          "stroke=\"#eee\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
                          "text-anchor=\"middle\">%.0f</text>\n",
                          x(t), kTop, x(t), kTop + plot_h, x(t), kTop + plot_h + 18, t);
  }
  absl::StrAppendFormat(&out,
                        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">seconds since "
                        "the campaign started</text>\n<text x=\"18\" y=\"%.1f\" "
                        "transform=\"rotate(-90 18 %.1f)\" text-anchor=\"middle\">devices"
                        "</text>\n",
                        kLeft + plot_w / 2, kHeight - 15, kTop + plot_h / 2, kTop + plot_h / 2);
  // Outages: a shaded band from "down" to "back".
  for (size_t i = 0; i < r.fault_marks.size(); ++i) {
    if (r.fault_marks[i].second != "down") continue;
    double end = i + 1 < r.fault_marks.size() ? r.fault_marks[i + 1].first : t_max;
    absl::StrAppendFormat(&out,
                          "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                          "fill=\"#f4cccc\" opacity=\"0.6\"/>\n<text x=\"%.1f\" y=\"%.1f\" "
                          "fill=\"#a33\">outage</text>\n",
                          x(r.fault_marks[i].first), kTop,
                          std::max(1.0, x(end) - x(r.fault_marks[i].first)), plot_h,
                          x(r.fault_marks[i].first) + 3, kTop + 14);
  }
  struct Series {
    const char* name;
    const char* color;
    int Counts::*field;
  };
  const Series series[] = {{"commanded", "#7f7f7f", &Counts::commanded},
                           {"downloading", "#1f77b4", &Counts::downloading},
                           {"confirmed", "#2ca02c", &Counts::confirmed},
                           {"failed", "#d62728", &Counts::failed},
                           {"rolled back", "#ff7f0e", &Counts::rolled_back},
                           {"offline", "#9467bd", &Counts::offline}};
  double legend_y = kTop + 10;
  for (const Series& s : series) {
    std::string points;
    for (const TimelineRow& row : r.timeline) {
      absl::StrAppendFormat(&points, "%.1f,%.1f ", x(row.t), y(row.counts.*(s.field)));
    }
    absl::StrAppendFormat(&out,
                          "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\" "
                          "points=\"%s\"/>\n",
                          s.color, points);
    int last = r.timeline.empty() ? 0 : r.timeline.back().counts.*(s.field);
    absl::StrAppendFormat(&out,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                          "stroke=\"%s\" stroke-width=\"3\"/>\n<text x=\"%.1f\" "
                          "y=\"%.1f\">%s (%d)</text>\n",
                          kLeft + plot_w + 15, legend_y, kLeft + plot_w + 35, legend_y, s.color,
                          kLeft + plot_w + 40, legend_y + 4, s.name, last);
    legend_y += 22;
  }
  absl::StrAppendFormat(&out,
                        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                        "fill=\"none\" stroke=\"#333\"/>\n</svg>\n",
                        kLeft, kTop, plot_w, plot_h);
  return out;
}

}  // namespace x1368::sim
