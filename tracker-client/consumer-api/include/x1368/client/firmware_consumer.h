// The firmware consumer (X.1368 §3.2.2, §11.1): the device-side component that downloads,
// verifies and installs an image, boots it in trial and confirms or rolls back.
//
// The client drives it through these calls, one state at a time, after persisting the state it
// is about to act in; each call must be idempotent, because after a crash or power cut the
// client calls it again (see update_state.h, ActionFor). A consumer must never leave the
// device without a bootable image. Calls that may block run on the executor's blocking threads,
// one at a time; Status() also comes from the client's event loop, so it must be thread-safe.
#ifndef X1368_CLIENT_FIRMWARE_CONSUMER_H_
#define X1368_CLIENT_FIRMWARE_CONSUMER_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "x1368/v1/manifest.pb.h"

namespace x1368::client {

// What the consumer runs now, shared with its status tracker (X.1368 §11.1 a.i, a.ii).
struct ConsumerStatus {
  std::string component;
  std::string version;
  uint64_t sequence_number = 0;
  std::string hardware_class;
  std::string image_sha256;  // digest of the running image
  bool in_trial = false;     // running a trial image not yet confirmed
  // The image whose last trial was reverted (by the bootloader, or by Rollback()); empty if none.
  // This is how the client tells a trial that failed from one that never started because the
  // power went before BootTrial() switched slots: only the first is a rollback.
  std::string failed_trial_sha256;
  // Not empty: the consumer asks for an update and says why (X.1368 §11.1 a.iv), e.g. its running
  // image fails a self-check. Reported upward; root lists such devices.
  std::string needs_update;
};

// A source that can be read with blocking calls (a file, an http(s) URL), for DownloadFrom().
// The client itself never blocks: it fetches from its parent with a ChunkFetcher on its loop.
class ImageSource {
 public:
  virtual ~ImageSource() = default;
  // Up to `length` bytes at `offset`; fewer only at the end of the image.
  virtual absl::StatusOr<std::string> Read(uint64_t offset, uint32_t length) = 0;
};

class FirmwareConsumer {
 public:
  using Progress = std::function<void(uint64_t bytes_done)>;
  virtual ~FirmwareConsumer() = default;

  virtual ConsumerStatus Status() = 0;

  // May decline an offered update (CONSUMER_DECLINED), e.g. low battery or policy.
  virtual absl::Status Accept(const v1::Manifest& manifest) = 0;

  // The download, driven by the client one chunk at a time as chunks arrive. These three calls
  // are short (no network; at most a periodic sync), so the client makes them on its loop.
  //
  // Prepares the inactive slot for the image and returns how many bytes of it the slot already
  // holds: a download cut short (link lost, power cut) resumes there.
  virtual absl::StatusOr<uint64_t> BeginDownload(const v1::Manifest& manifest) = 0;
  // Writes `data`, which starts at `offset`: where the slot's content ends.
  virtual absl::Status WriteChunk(const v1::Manifest& manifest, uint64_t offset,
                                  absl::string_view data) = 0;
  // Every byte is written: makes the image durable. Verify() judges it next.
  virtual absl::Status FinishDownload(const v1::Manifest& manifest) = 0;

  // Checks the downloaded image: size, digest, sequence number, hardware class.
  virtual absl::Status Verify(const v1::Manifest& manifest) = 0;
  // Makes the inactive slot bootable as a trial (the active slot stays the fallback).
  virtual absl::Status Install(const v1::Manifest& manifest) = 0;
  // Reboots into the trial slot. An error means the trial image did not come up and the
  // bootloader went back to the previous slot.
  virtual absl::Status BootTrial(const v1::Manifest& manifest) = 0;
  // Health-checks the running trial image and makes it permanent.
  virtual absl::Status Confirm(const v1::Manifest& manifest) = 0;
  // Returns to the previous slot (after a failed health check).
  virtual absl::Status Rollback() = 0;
  // Forgets a partial or rejected download.
  virtual void Discard() = 0;
};

// The whole download from a blocking source: BeginDownload, then chunks of `chunk` bytes read from
// `source` and written in order, then FinishDownload. `progress` gets the bytes held after each.
absl::Status DownloadFrom(FirmwareConsumer& consumer, const v1::Manifest& manifest,
                          ImageSource* source, uint32_t chunk,
                          const FirmwareConsumer::Progress& progress = nullptr);

}  // namespace x1368::client

#endif  // X1368_CLIENT_FIRMWARE_CONSUMER_H_
