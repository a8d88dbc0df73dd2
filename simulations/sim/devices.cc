#include "simulations/sim/devices.h"

#include <cstdio>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "simulations/sim/sim_link.h"

namespace x1368::sim {

struct DeviceGroup::Device {
  DevicePlan plan;
  bool built = false;
  std::string factory_sha256;  // of the image it shipped with, read at its first power-on
  std::unique_ptr<core::MemFileSystem> memfs;  // before `node`: it outlives it
  core::Env env;
  nodes::ClientSpec spec;
  nodes::ClientNode node;
};

std::string PlanLine(const DevicePlan& p) {
  return absl::StrCat(p.id, " ", p.parent_id, " ", p.broker_uri, " ", static_cast<int>(p.fault),
                      " ", p.cut_after);
}

absl::Status ParsePlanLine(const std::string& line, DevicePlan* p) {
  std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
  int fault = 0;
  if (f.size() != 5 || !absl::SimpleAtoi(f[3], &fault) || fault < 0 ||
      fault > static_cast<int>(Fault::kOffline) || !absl::SimpleAtoi(f[4], &p->cut_after)) {
    return absl::InvalidArgumentError(absl::StrCat("bad device plan line: '", line, "'"));
  }
  p->id = f[0];
  p->parent_id = f[1];
  p->broker_uri = f[2];
  p->fault = static_cast<Fault>(fault);
  return absl::OkStatus();
}

DeviceGroup::DeviceGroup(core::Executor* executor, core::TransportFactory links,
                         testing::TestPki* pki, DeviceGroupOptions options)
    : executor_(executor), links_(std::move(links)), pki_(pki), options_(std::move(options)) {}

DeviceGroup::~DeviceGroup() { Stop(); }

absl::Status DeviceGroup::Add(const DevicePlan& plan) {
  auto d = std::make_unique<Device>();
  d->plan = plan;
  testing::TestNode cert = pki_->Make(plan.id, v1::ROLE_CLIENT);
  d->env.executor = executor_;
  d->env.transports = links_;
  std::string data_dir;
  if (options_.storage_memory) {
    d->memfs = std::make_unique<core::MemFileSystem>();
    d->env.fs = d->memfs.get();
    data_dir = "/data";
  } else {
    data_dir = absl::StrCat(options_.data_dir, "/", plan.id);
  }
  nodes::ClientSpec& s = d->spec;
  s.node.node_id = cert.id;
  s.node.key_pem = cert.key.ToPem();
  s.node.cert_bytes = cert.cert.SerializeAsString();
  s.node.root_id = pki_->root_id();
  s.node.root_public_key_file = pki_->root_pub_path();
  s.node.data_dir = data_dir;
  s.node.init = true;  // a simulated device always starts new
  s.options.parent_id = plan.parent_id;
  s.options.report_interval = options_.report_interval;
  s.consumer.dir = data_dir + "/slots";
  s.consumer.component = kComponent;
  s.consumer.hardware_class = kHardware;
  s.consumer.initial_version = kOldVersion;
  s.consumer.initial_sequence = 1;
  s.consumer.faults.fail_install = plan.fault == Fault::kInstall;
  s.consumer.faults.trial_boot_fails = plan.fault == Fault::kBoot;
  s.upstream.broker_uri = plan.broker_uri;
  s.upstream.client_id = plan.id;
  Device* device = d.get();
  devices_.push_back(std::move(d));
  if (plan.fault == Fault::kOffline) return absl::OkStatus();  // powered on by StartOffline()
  return PowerOn(device);
}

int DeviceGroup::online() const {
  int n = 0;
  for (const auto& d : devices_) n += d->built ? 1 : 0;
  return n;
}

absl::Status DeviceGroup::PowerOn(Device* d) {
  d->built = true;
  if (absl::Status s = nodes::Build(d->env, d->spec, &d->node); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(d->plan.id, ": ", s.message()));
  }
  if (d->factory_sha256.empty()) {
    v1::BootEnv env = d->node.consumer->boot_env();
    if (env.slots_size() > 0) d->factory_sha256 = env.slots(0).sha256();
  }
  return d->node.Start();
}

void DeviceGroup::ArmPowerCuts() {
  for (auto& d : devices_) {
    if (d->plan.fault != Fault::kPowerCut || d->memfs == nullptr) continue;
    Device* dev = d.get();
    d->memfs->CutPowerAfter(d->plan.cut_after, [this, dev] {
      // From the cut on the device neither persists nor says anything; on the in-process broker
      // its Will goes out as the broker would send it when the connection dies. The reboot
      // happens off this thread (the file system's lock is held here).
      if (auto* link = dynamic_cast<SimLink*>(dev->node.transport.get())) link->Cut();
      absl::MutexLock lock(&cut_mu_);
      cut_.push_back(dev);
    });
  }
}

absl::Status DeviceGroup::StartOffline() {
  for (auto& d : devices_) {
    if (d->built) continue;
    if (absl::Status s = PowerOn(d.get()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

int DeviceGroup::RebootCutDevices(absl::Duration slice) {
  const absl::Time until = absl::Now() + slice;
  std::vector<Device*> cut;
  {
    absl::MutexLock lock(&cut_mu_);
    cut.swap(cut_);
  }
  size_t done = 0;
  for (; done < cut.size() && absl::Now() < until; ++done) {
    Device* d = cut[done];
    // As tests/unit/client_scenario_test.cc PowerCutTest: the node goes, unsynced writes go,
    // and the device boots again over what was left.
    d->node.Reset();
    d->memfs->PowerCut();
    if (absl::Status s = PowerOn(d); !s.ok()) {
      fprintf(stderr, "tracker-sim: %s did not come back after its power cut: %s\n",
              d->plan.id.c_str(), s.ToString().c_str());
    }
  }
  if (done < cut.size()) {
    absl::MutexLock lock(&cut_mu_);
    cut_.insert(cut_.begin(), cut.begin() + static_cast<ptrdiff_t>(done), cut.end());
  }
  return static_cast<int>(done);
}

void DeviceGroup::Stop() {
  for (auto& d : devices_) d->node.Stop();
}

int DeviceGroup::Bricked(const std::string& new_sha256) const {
  int bricked = 0;
  for (const auto& d : devices_) {
    if (d->node.consumer == nullptr) continue;  // never powered on: still its factory image
    v1::BootEnv env = d->node.consumer->boot_env();
    if (env.slots_size() != 2 || env.active() > 1) {
      ++bricked;
      continue;
    }
    const v1::SlotInfo& slot = env.slots(static_cast<int>(env.active()));
    auto on_disk = core::Sha256Of(*d->env.fs, d->node.consumer->SlotPath(env.active()));
    bool ok = slot.installed() && on_disk.ok() && *on_disk == slot.sha256() &&
              (slot.sha256() == d->factory_sha256 || slot.sha256() == new_sha256);
    if (!ok) ++bricked;
  }
  return bricked;
}

}  // namespace x1368::sim
