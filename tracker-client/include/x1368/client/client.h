// The status tracker client module on a device (X.1368 §8.2, §11.2): it receives directives
// from the root (through any number of intermediates) and go signals from its parent, verifies
// each, and drives the firmware consumer through the update state machine (update_state.h),
// persisting each state before acting in it and reporting every transition.
//
// Threads: everything runs on the node's event loop (a strand on the shared Executor), which owns
// the update record; no lock guards domain state. The image is fetched by a ChunkFetcher on the
// loop and written chunk by chunk (short consumer calls); the consumer's calls that may block
// (sync, verify, flash, reboot) run on the executor's blocking threads one at a time and post
// their result back to the loop, where a result for a record that moved on meanwhile is dropped.
// Start and Stop are called from the owner's thread; record() and crashed() from any thread.
#ifndef X1368_CLIENT_CLIENT_H_
#define X1368_CLIENT_CLIENT_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "x1368/client/firmware_consumer.h"
#include "x1368/client/update_state.h"
#include "x1368/core/chunk_fetcher.h"
#include "x1368/core/chunk_table.h"
#include "x1368/core/event_loop.h"
#include "x1368/core/links.h"
#include "x1368/core/metrics.h"
#include "x1368/core/node.h"
#include "x1368/core/transport.h"
#include "x1368/v1/envelope.pb.h"
#include "x1368/v1/storage.pb.h"

namespace x1368::client {

struct ClientOptions {
  std::string parent_id;
  core::ChunkFetcherOptions fetch;  // its window at most; the parent's go may allow fewer
  // Transient failures (the image unavailable, the parent or the broker away, chunks timing out)
  // are retried until the campaign's deadline (none: for good), waiting retry_delay doubled with
  // each attempt up to max_retry_delay, with jitter. Final ones (the image, its manifest or the
  // disk say no) fail at once; any other fails after max_attempts of the same state.
  int max_attempts = 3;
  absl::Duration retry_delay = absl::Seconds(2);
  absl::Duration max_retry_delay = absl::Minutes(5);
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
  // Call on the loop (or before anything else can run on it).
  absl::Status Start();
  // Waits for a consumer call in progress, and disconnects cleanly. Nothing
  // persisted is lost. Call from outside the loop, after the loop was stopped or with it idle.
  void Stop();

  // The persisted update record (a copy). Thread-safe.
  v1::UpdateRecord record() const;
  // True once the client stopped acting because a crash was simulated. Thread-safe.
  bool crashed() const;

 private:
  // Message handling.
  void OnMessage(const core::Topic& topic, const std::string& payload,
                 const core::OpenedMessage& opened);
  void HandleDirective(const std::string& envelope, const core::OpenedMessage& opened);
  void HandleGo(const v1::Go& go);
  void Offer(const std::string& envelope, const core::OpenedMessage& opened,
             const v1::Manifest& manifest);
  void Reject(const absl::Status& status, absl::string_view where);
  // Every change of this device's state or progress goes up in one coalesced report, sent
  // 200 to 400 ms after the first change (spread by device id): a burst of
  // transitions costs one report, and siblings that change together (a campaign's go reaching
  // 500 children) reach their parent spread out instead of in one burst beside their chunk
  // requests (a stock Mosquitto drops what a client has queued beyond 1000).
  void ScheduleReport();
  void PeriodicReport();
  void Report();

  // The update itself: Step() runs the action of the record's state (ActionFor in
  // update_state.h); each action ends in an event through Transition(), or in a consumer call
  // whose result comes back through Then().
  void Step();
  void StepSoon();
  // Records FAILED with `reason`, then discards the partial or failed image.
  void Fail(v1::Reason reason, const std::string& detail);
  void DiscardSlot();
  void AwaitGoThenAccept();
  void Download();
  // Fetches the image's chunk table (checked against the manifest), then downloads.
  void FetchTable(const v1::Manifest& manifest);
  // Counts the chunks that timed out since the last call, and warns about them.
  void CountTimeouts();
  void VerifyImage();
  void InstallImage();
  void TrialBoot();
  // Runs `call` on a blocking thread, then `then(result)` on the loop if the record has not moved
  // on meanwhile (a newer directive, a stop).
  void CallConsumer(std::function<absl::Status()> call,
                    std::function<void(const absl::Status&)> then);
  // Moves the record by `event`, persists it, reports it, and steps on. False when the client
  // must stop acting (storage failed, or a crash is being simulated).
  bool Transition(Event event, v1::Reason reason = v1::REASON_UNSPECIFIED,
                  absl::string_view detail = "", v1::UpdateRecord* base = nullptr,
                  const v1::Manifest* manifest = nullptr);
  bool Persist(const v1::UpdateRecord& rec, const v1::Manifest* manifest = nullptr);
  // A failure of the current state's action: FAILED at once, or a retry later (ClientOptions).
  void Retry(const absl::Status& status);
  // The disk is full: the partial slot goes first (freeing the space), then FAILED(STORAGE_FULL).
  void FailForSpace(const absl::Status& status);
  bool CrashHere(bool simulate);
  absl::StatusOr<v1::Manifest> ManifestOf(const std::string& directive_envelope);

  const ClientOptions opts_;
  core::NodeContext* node_;
  FirmwareConsumer* consumer_;
  core::EventLoop* loop_;
  core::NodeLinks links_;
  const ClientHooks hooks_;
  core::ChunkFetcher fetcher_;
  core::Metric* chunk_timeouts_ = nullptr;  // requests the parent never answered
  core::Metric* retries_ = nullptr;         // attempts of a state after a failure
  absl::BitGen rng_;                        // retry jitter
  uint64_t timeouts_seen_ = 0;              // fetcher_.timeouts() already counted

  // Loop only.
  v1::UpdateRecord record_;
  std::optional<v1::Manifest> manifest_;         // of record_'s directive
  std::optional<core::ChunkTable> table_;        // of manifest_'s image, once fetched
  std::optional<std::string> queued_directive_;  // arrived mid-install
  uint64_t generation_ = 0;                      // bumped on every persisted record
  bool busy_ = false;                            // a consumer call or a retry wait is pending
  bool rearmed_ = false;  // a trial that never started was booted again since Start()
  bool step_posted_ = false;
  bool stopping_ = false;
  core::Coalesced report_soon_;
  uint64_t last_progress_report_ = 0;
  std::map<std::string, std::string> pending_go_;  // campaign -> directive digest

  // For Stop() and the thread-safe observers.
  mutable absl::Mutex mu_;
  v1::UpdateRecord snapshot_ ABSL_GUARDED_BY(mu_);
  bool crashed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int consumer_calls_ ABSL_GUARDED_BY(mu_) = 0;  // running on a blocking thread
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace x1368::client

#endif  // X1368_CLIENT_CLIENT_H_
