// fw-consumer-stub: a complete firmware consumer over two image files (A/B slots) and a
// simulated bootloader environment, with fault injection. It behaves as a device would:
// downloads into the inactive slot (resuming after interruptions), verifies, installs, boots the
// new slot in trial, and confirms; an unconfirmed trial that reboots more than `max_trial_boots`
// times is reverted by the "bootloader" (Open() is the power-on). The active slot always holds a
// complete, verified image, so no crash or fault can brick the device.
//
// Thread-safe (one mutex): the client drives it from its loop and its blocking threads.
#ifndef X1368_STUB_STUB_CONSUMER_H_
#define X1368_STUB_STUB_CONSUMER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "x1368/client/firmware_consumer.h"
#include "x1368/core/file_system.h"
#include "x1368/core/kv_store.h"
#include "x1368/v1/storage.pb.h"

namespace x1368::stub {

// Faults a test or an operator can inject (config: [consumer] faults = ["decline", ...]).
struct StubFaults {
  bool decline = false;             // "decline": refuse every offer
  int64_t fail_download_at = -1;    // "fail_download_at=N": first attempt breaks at byte N
  bool corrupt_download = false;    // "corrupt_download": flip a byte after download
  bool fail_install = false;        // "fail_install"
  bool trial_boot_fails = false;    // "trial_boot_fails": new image does not come up
  bool health_check_fails = false;  // "health_check_fails": comes up, fails its check
};

// Parses fault names as listed above.
absl::StatusOr<StubFaults> ParseFaults(const std::vector<std::string>& names);

struct StubOptions {
  std::string dir;                                 // holds slot-a.img, slot-b.img and bootenv
  core::FileSystem* fs = core::PosixFileSystem();  // where `dir` is
  std::string component;
  std::string hardware_class;
  std::string initial_version{"1.0.0"};  // factory image, written on first start
  uint64_t initial_sequence = 1;
  uint32_t max_trial_boots = 2;
  // The inactive slot is synced every this many downloaded bytes (and when the download ends):
  // what a power cut keeps, and so where the download resumes. Each sync blocks the client's
  // loop for a disk flush: at 256 KiB a 64 KiB-chunk download spent more time in fsync than in
  // everything else (0.50 of the raw MQTT rate; 0.72 to 0.92 at 4 MiB). A power cut costs at
  // most this much fetched again.
  uint64_t sync_every_bytes = 4 << 20;
  StubFaults faults;
};

class StubConsumer final : public client::FirmwareConsumer {
 public:
  // Power-on: loads (or creates) the slots and boot environment, and lets the simulated
  // bootloader count an unconfirmed trial boot and revert it past the limit.
  static absl::StatusOr<std::unique_ptr<StubConsumer>> Open(StubOptions options);

  client::ConsumerStatus Status() override;
  absl::Status Accept(const v1::Manifest& m) override;
  absl::StatusOr<uint64_t> BeginDownload(const v1::Manifest& m) override;
  absl::Status WriteChunk(const v1::Manifest& m, uint64_t offset, absl::string_view data) override;
  absl::Status FinishDownload(const v1::Manifest& m) override;
  absl::Status Verify(const v1::Manifest& m) override;
  absl::Status Install(const v1::Manifest& m) override;
  absl::Status BootTrial(const v1::Manifest& m) override;
  absl::Status Confirm(const v1::Manifest& m) override;
  absl::Status Rollback() override;
  void Discard() override;

  // For tests: the boot environment as persisted, and the path of a slot's image.
  v1::BootEnv boot_env();
  std::string SlotPath(uint32_t slot) const;
  void set_faults(const StubFaults& faults);

 private:
  StubConsumer(StubOptions options, std::unique_ptr<core::FileKvStore> store)
      : opts_(std::move(options)), store_(std::move(store)) {}
  absl::Status Persist() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint32_t inactive() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return 1 - env_.active(); }
  absl::Status CheckImage(const v1::Manifest& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const StubOptions opts_;
  std::unique_ptr<core::FileKvStore> store_;
  absl::Mutex mu_;
  v1::BootEnv env_ ABSL_GUARDED_BY(mu_);
  StubFaults faults_ ABSL_GUARDED_BY(mu_);
  bool download_fault_fired_ ABSL_GUARDED_BY(mu_) = false;
  int64_t fail_at_ ABSL_GUARDED_BY(mu_) = -1;     // of the download in progress
  uint64_t since_sync_ ABSL_GUARDED_BY(mu_) = 0;  // bytes written since the last fsync
  // The running image as it failed its self-check at power-on (its recorded digest), and why.
  std::string self_check_failed_sha_ ABSL_GUARDED_BY(mu_);
  std::string self_check_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace x1368::stub

#endif  // X1368_STUB_STUB_CONSUMER_H_
