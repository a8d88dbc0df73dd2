// The status tracker client module on a device (X.1368 §8.2, §11.2): it receives directives
// from the root (through any number of intermediates) and go signals from its parent, verifies
// each (DESIGN.md §5), and drives the firmware consumer through the update state machine
// (update_state.h), persisting each state before acting in it and reporting every transition.
//
// Threads: MQTT handlers post to the event loop, which owns message handling; a worker thread
// drives the consumer, whose calls block (downloads, flashing). The update record is shared
// between the two under `mu_`. Create, Start and Stop are called from the owner's thread.
#ifndef X1368_CLIENT_CLIENT_H_
#define X1368_CLIENT_CLIENT_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "x1368/client/chunk_fetcher.h"
#include "x1368/client/firmware_consumer.h"
#include "x1368/client/update_state.h"
#include "x1368/core/event_loop.h"
#include "x1368/core/links.h"
#include "x1368/core/node.h"
#include "x1368/core/transport.h"
#include "x1368/v1/envelope.pb.h"
#include "x1368/v1/storage.pb.h"

namespace x1368::client {

struct ClientOptions {
  std::string parent_id;
  uint32_t chunk_size = 32 * 1024;
  ChunkFetcherOptions fetch;
  int max_attempts = 3;                                // per state, then FAILED
  absl::Duration retry_delay = absl::Seconds(2);       // between attempts
  absl::Duration report_interval = absl::Seconds(60);  // full-state report (heartbeat)
};

// Test hooks that simulate a power cut: when one returns true the worker stops without doing
// anything more. `crash_after_persist(state)`: right after `state` reached disk.
// `crash_after_trial_boot()`: right after the consumer booted the trial image.
struct ClientHooks {
  std::function<bool(State)> crash_after_persist;
  std::function<bool()> crash_after_trial_boot;
};

class Client {
 public:
  // None of the pointers is owned; all must outlive the Client.
  Client(ClientOptions options, core::NodeContext* node, FirmwareConsumer* consumer,
         core::Transport* upstream, core::EventLoop* loop, ClientHooks hooks = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Loads the persisted update record (resuming an update cut short), subscribes and connects.
  absl::Status Start();
  // Stops the worker and disconnects cleanly. Nothing persisted is lost.
  void Stop();

  // The persisted update record (a copy).
  v1::UpdateRecord record() const;
  // True once the worker stopped because a crash was simulated.
  bool crashed() const;

 private:
  // Event loop side.
  void OnMessage(const core::Topic& topic, const std::string& payload,
                 const core::OpenedMessage& opened);
  void HandleDirective(const std::string& envelope, const core::OpenedMessage& opened);
  void HandleGo(const v1::Go& go);
  void Reject(const absl::Status& status, absl::string_view where);
  void ScheduleReport();
  void PeriodicReport();

  // Worker side.
  void WorkerLoop();
  void Drive();
  // Persists `to` (and the rest of `rec`) as the new record; false when the worker must stop
  // (storage failed or a crash is being simulated).
  // `generation` is the record generation `rec` was read at: a record replaced meanwhile (a newer
  // directive) is not overwritten, and the worker starts over from the new one.
  // `manifest`, when given, becomes the record's manifest in the same step.
  bool Transition(v1::UpdateRecord rec, uint64_t generation, Event event,
                  v1::Reason reason = v1::REASON_UNSPECIFIED, absl::string_view detail = "",
                  const v1::Manifest* manifest = nullptr);
  bool Persist(const v1::UpdateRecord& rec, uint64_t generation,
               const v1::Manifest* manifest = nullptr);
  // Counts an attempt; FAILED after max_attempts. False when the worker must stop.
  bool Retry(v1::UpdateRecord rec, uint64_t generation, const absl::Status& status);
  void Kick();
  void Offer(const std::string& envelope, const core::OpenedMessage& opened,
             const v1::Manifest& manifest);

  // Either side.
  void Report();
  absl::StatusOr<v1::Manifest> ManifestOf(const std::string& directive_envelope);

  const ClientOptions opts_;
  core::NodeContext* node_;
  FirmwareConsumer* consumer_;
  core::EventLoop* loop_;
  core::NodeLinks links_;
  const ClientHooks hooks_;
  ChunkFetcher fetcher_;

  // Event loop only.
  bool report_scheduled_ = false;
  std::map<std::string, std::string> pending_go_;  // campaign -> directive digest

  mutable absl::Mutex mu_;
  v1::UpdateRecord record_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::Manifest> manifest_ ABSL_GUARDED_BY(mu_);         // of record_'s directive
  std::optional<std::string> queued_directive_ ABSL_GUARDED_BY(mu_);  // arrived mid-install
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // bumped on every persisted record
  bool kicked_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool crashed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_progress_report_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread worker_;
};

}  // namespace x1368::client

#endif  // X1368_CLIENT_CLIENT_H_
