// The devices of a simulated fleet: real clients with stub consumers, each with its files in a
// MemFileSystem of its own (or on disk), built from a plan that fixes its id, its parent, its
// link and the fault it will suffer. The sim's main process hosts one DeviceGroup when devices
// reach their gateway in-process; with MQTT device links each worker process hosts one
// (simulations/sim/worker.cc).
#ifndef X1368_SIM_DEVICES_H_
#define X1368_SIM_DEVICES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "testing/pki.h"
#include "x1368/core/env.h"
#include "x1368/core/executor.h"
#include "x1368/core/file_system.h"
#include "x1368/nodes/nodes.h"

namespace x1368::sim {

inline constexpr char kComponent[] = "fw";
inline constexpr char kHardware[] = "board-a";
inline constexpr char kOldVersion[] = "1.0.0";
inline constexpr char kNewVersion[] = "2.0.0";

enum class Fault { kNone, kInstall, kBoot, kPowerCut, kOffline };

struct DevicePlan {
  std::string id;
  std::string parent_id;
  std::string broker_uri;  // its parent's broker, or core::kMemoryScheme
  Fault fault = Fault::kNone;
  int64_t cut_after = 0;  // kPowerCut: the k-th write after the campaign starts never lands
};

// One line of text per plan, for a worker's plan file.
std::string PlanLine(const DevicePlan& p);
absl::Status ParsePlanLine(const std::string& line, DevicePlan* p);

struct DeviceGroupOptions {
  bool storage_memory = true;
  std::string data_dir;  // with storage on disk: each device under <data_dir>/<id>
  absl::Duration report_interval = absl::Seconds(60);  // each device's full-state heartbeat
};

class DeviceGroup {
 public:
  // Nodes run on `executor`; links come from `links`; certificates from `pki` (root-issued).
  DeviceGroup(core::Executor* executor, core::TransportFactory links, testing::TestPki* pki,
              DeviceGroupOptions options);
  ~DeviceGroup();

  // Builds the device and powers it on, except an offline one (StartOffline() does).
  absl::Status Add(const DevicePlan& plan);
  int size() const { return static_cast<int>(devices_.size()); }
  int online() const;

  // The campaign started: power cuts are armed now, so that they land in the update.
  void ArmPowerCuts();
  // Powers on the devices that were offline.
  absl::Status StartOffline();
  // Reboots devices whose power was cut, for at most `slice` (a reboot costs tens of
  // milliseconds; the caller's loop must keep its pace); returns how many.
  int RebootCutDevices(absl::Duration slice);
  // Stops every device.
  void Stop();
  // Devices whose active slot does not hold an installed, intact, expected image (their factory
  // image or `new_sha256`). Call after Stop().
  int Bricked(const std::string& new_sha256) const;

 private:
  struct Device;
  absl::Status PowerOn(Device* d);

  core::Executor* executor_;
  core::TransportFactory links_;
  testing::TestPki* pki_;
  const DeviceGroupOptions options_;
  std::vector<std::unique_ptr<Device>> devices_;
  absl::Mutex cut_mu_;
  std::vector<Device*> cut_ ABSL_GUARDED_BY(cut_mu_);
};

}  // namespace x1368::sim

#endif  // X1368_SIM_DEVICES_H_
