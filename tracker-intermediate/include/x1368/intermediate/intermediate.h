// The intermediate status tracker module on a gateway (X.1368 §8.2, hierarchical model;
// docs/architecture.md §7): cascadable, it sits between a parent (root or another intermediate)
// and its children (clients or further intermediates).
//
//   down: forwards root-signed directives unchanged, signs its own go for its children, keeps a
//         retained desired state for children that are away, serves firmware chunks from its
//         cache (filled once from upstream, verified against the manifest digest).
//   up:   verifies each child's signed report, keeps the subtree's registry (each device's latest
//         report, its liveness from heartbeats and Wills) and relays upward, in batches, only
//         what changed, with a signed summary of the whole subtree its parent checks its own
//         view against: the root's traffic grows with gateways and changes, not devices.
//
// Owned by one event loop: every method runs on it (Start/Stop from the owner's thread).
#ifndef X1368_INTERMEDIATE_INTERMEDIATE_H_
#define X1368_INTERMEDIATE_INTERMEDIATE_H_

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "x1368/core/catch_up.h"
#include "x1368/core/chunk_fetcher.h"
#include "x1368/core/chunk_table.h"
#include "x1368/core/event_loop.h"
#include "x1368/core/links.h"
#include "x1368/core/metrics.h"
#include "x1368/core/node.h"
#include "x1368/core/sqlite_db.h"
#include "x1368/core/subtree_index.h"
#include "x1368/intermediate/firmware_cache.h"
#include "x1368/v1/manifest.pb.h"

namespace x1368::intermediate {

struct IntermediateOptions {
  std::string parent_id;
  std::string cache_dir;
  size_t cache_max_images = 8;
  uint32_t fetch_window = 16;  // at most; the parent's go may allow fewer
  // A fill that failed (upstream gone, disk full) is tried again after this, doubling up to max.
  absl::Duration fill_retry_min = absl::Seconds(1);
  absl::Duration fill_retry_max = absl::Seconds(30);
  // What the broker of the downstream link queues for this node (Mosquitto's
  // max_queued_messages): the children's chunks in flight share it (ChunkWindowFor).
  uint32_t downstream_queue = 1000;
  absl::Duration fetch_timeout = absl::Seconds(5);
  int fetch_max_tries = 6;
  absl::Duration batch_delay = absl::Milliseconds(200);
  size_t batch_max_reports = 200;
  absl::Duration report_interval = absl::Seconds(60);
  // A direct child heard from (report, presence, chunk request) less recently than this is
  // down: its heartbeats (periodic reports) stopped without a Will (children.heartbeat_timeout_s).
  absl::Duration child_timeout = absl::Seconds(200);
  // A SubtreeSummary goes up with a batch at most this often, and alone when nothing else went
  // (status.summary_interval_s).
  absl::Duration summary_interval = absl::Seconds(60);
  // After a child's summary disagreed and its subtree was asked again (status.resync_backoff_s).
  absl::Duration resync_backoff = absl::Seconds(30);
  // Which reports in a cascaded child's batch have the device's own signature verified here:
  // false: the child gateway verified each; only outcomes and first contact are checked again.
  bool verify_relayed_all = false;
};

class Intermediate {
 public:
  // Pointers are not owned. `upstream` and `downstream` may be the same Transport.
  Intermediate(IntermediateOptions options, core::NodeContext* node, core::SqliteDb* db,
               core::Transport* upstream, core::Transport* downstream, core::EventLoop* loop);
  ~Intermediate();

  absl::Status Start();
  void Stop();

  // For tests (call on the loop thread, or with the loop idle).
  size_t active_directives() const { return directives_.size(); }
  bool cached(const std::string& sha256) const { return cache_.Has(sha256); }
  size_t known_children() const { return children_.size(); }
  // What this node's registry holds for its subtree (its SubtreeSummary).
  v1::SubtreeSummary Summary() const { return index_.Summary(); }

 private:
  struct Directive {
    core::ActiveDirective active;
    v1::Manifest manifest;
    v1::TargetSelector selector;
    int64_t accepted_ms = 0;  // when it reached this node (or this node restarted)
  };
  // Whether `d` is for the device that sent `report` (component, hardware class, device list).
  static bool Targets(const Directive& d, const std::string& device,
                      const v1::StatusReport& report);

  void FromParent(const core::Topic& topic, const std::string& payload, core::OpenedMessage m);
  void FromChild(const core::Topic& topic, const std::string& payload, core::OpenedMessage m);
  void AcceptDirective(const std::string& envelope, const core::OpenedMessage& m, bool fresh);
  absl::Status LoadState();
  void SetChildOnline(const std::string& child, bool online);
  void SendDesired(const std::string& child);
  // A device's report shows it missed an active campaign: its desired state goes out again
  // (core/catch_up.h).
  void CatchUpChild(const std::string& child, const v1::StatusReport& report);
  void PruneExpired();

  // An image being filled from upstream: its table first, then its chunks in order, each checked
  // against the table before it is written and served (cut-through).
  struct Fill {
    v1::Manifest manifest;
    std::optional<core::ChunkTable> table;
    uint64_t verified = 0;  // bytes [0, verified) are written, every chunk checked
    std::shared_ptr<core::ChunkFetcher> fetcher;  // null while a retry waits
    bool retry_pending = false;
    int failures = 0;
    uint64_t timeouts_counted = 0;  // of fetcher->timeouts()
    // Set when the parent served what fails the signed chunk table (DIGEST_MISMATCH every
    // time): no child can get a good image, so children are refused at once, with that reason,
    // instead of waiting out their retries. Cleared when a later fill gets further.
    std::optional<absl::Status> refusal;
    // Children's requests for what the fill does not hold yet, by (kind, offset, child): the
    // table's first, then the image's in offset order.
    std::map<std::tuple<int, uint64_t, std::string>, v1::FirmwareChunkRequest> waiting;
  };

  // A child's request, of one chunk or a batch.
  void ServeChunk(const std::string& child, const v1::FirmwareChunkRequest& request);
  // Bytes in what `request` asks for (the image, or its table), from the cache or a directive's
  // manifest: what its batch is cut at.
  absl::StatusOr<uint64_t> ServedSize(const v1::FirmwareChunkRequest& request);
  // One chunk (a part of the request: core::SplitChunkRequest), answered or left waiting.
  void ServeOne(const std::string& child, const v1::FirmwareChunkRequest& request);
  // Sends `data`, or the refusal its error carries.
  void Answer(const std::string& child, const v1::FirmwareChunkRequest& request,
              absl::StatusOr<v1::ChunkData> data);
  void AnswerWaiting(Fill& fill);
  // The fill of `manifest`'s image, started (or resumed) unless it runs or waits for a retry.
  Fill& StartFill(const v1::Manifest& manifest);
  void FetchImage(const std::string& sha256);
  void FillFailed(const std::string& sha256, const absl::Status& status);
  // Counts (and warns about) the chunks the fill's fetcher asked again after a timeout.
  void CountTimeouts(Fill& fill);
  // The window the parent's go allows (0: none stated).
  void AdoptWindow(uint32_t window);
  // The window our own go allows each child.
  uint32_t ChildWindow() const;

  // Errors are never dropped: a failed store write is counted as STORAGE_ERROR (reported upward
  // with the rejections) and logged; a message that could not be sent is counted and logged.
  void StorageFailed(const absl::Status& status, absl::string_view event);
  void SendFailed(const absl::Status& status, absl::string_view event);

  // The registry of the subtree (issue #13): every device's and node's latest report as this
  // node relayed it. A report that differs from the last one is recorded and relayed; the same
  // again is a heartbeat: it refreshes liveness only. `path`: the nodes between this one and the
  // sender (StatusBatch.paths).
  void Observe(const std::string& id, const std::string& envelope, const v1::StatusReport& report,
               const std::string& path, bool device);
  // A direct child was heard from: its heartbeat.
  void Heard(const std::string& child);
  // A node of the subtree went up or down (presence, heartbeats, a cascaded child's entry).
  void SetLiveness(const std::string& id, bool online);
  void SweepHeartbeats();
  // A cascaded child's batch: its reports, its subtree's liveness, its summary.
  void FromChildBatch(const std::string& child, const core::OpenedMessage& m);
  bool NeedsDeviceSignature(const v1::Body& body, const std::string& child) const;
  // Every device's and node's latest report and liveness again, then the summary: what a
  // parent whose view disagreed asks for (StatusRequest.full).
  void ResendAll();
  // The log of exchanges with each direct child (DeviceDetail.log): the last kCommLogSize, the
  // same exchange repeated counted in one entry.
  static constexpr size_t kCommLogSize = 16;
  void Log(const std::string& child, bool from_child, absl::string_view what,
           v1::Reason outcome = v1::REASON_UNSPECIFIED);
  // "Show me device X": answered for a direct child, passed on toward the gateway of a device
  // further down, refused (OUT_OF_SCOPE) for one the registry does not hold.
  void AnswerProbe(const v1::DeviceProbe& probe);
  // A child gateway's answer to a query this node passed on: up it goes.
  void RelayDeviceDetail(const std::string& child, const v1::DeviceDetail& detail);
  absl::Status LoadRegistry();
  void PersistRegistry();
  void PeriodicSummary();

  // `path`: the nodes between this one and the device (StatusBatch.paths).
  void Relay(const std::string& device, const std::string& envelope, const std::string& path);
  void FlushBatch();
  // x1368_subtree_devices, computed on the loop when scraped.
  prometheus::MetricFamily SubtreeGauge() const;
  void UnexposeGauges();
  void ReportSelf();
  void AskChildren();
  void PeriodicSelfReport();
  void ScheduleSelfReport();

  const IntermediateOptions opts_;
  core::NodeContext* node_;
  core::SqliteDb* db_;
  core::EventLoop* loop_;
  core::NodeLinks links_;
  FirmwareCache cache_;

  std::map<std::string, Directive> directives_;  // by campaign id
  std::map<std::string, bool> children_;         // child id -> online
  core::CatchUp catch_up_;
  // Cache fills from upstream, by image SHA-256: the same windowed fetcher a client uses.
  std::map<std::string, Fill> fills_;
  size_t waiting_requests_ = 0;            // over every fill
  uint32_t upstream_window_ = UINT32_MAX;  // what the parent's go allows us

  struct Relayed {
    std::string envelope;  // the device's latest signed report
    std::string path;
  };
  std::map<std::string, Relayed> batch_;  // by device
  size_t batch_bytes_ = 0;

  struct Known {
    std::string envelope;  // its latest signed report
    std::string path;      // between this node and it ("": a direct child)
    std::string digest;    // core::ReportDigest of that report
    bool device = true;    // a firmware consumer (false: a tracker node's own report)
    bool online = true;
    int64_t last_seen_ms = 0;  // direct children: last heard from (monotonic)
  };
  std::map<std::string, Known> known_;  // the registry, by device or node id
  core::SubtreeIndex index_;            // its devices, by hop
  std::set<std::string> unsaved_;       // ids whose row the next flush writes
  // Liveness changes for the next batch, by node id: online, path.
  std::map<std::string, std::pair<bool, std::string>> liveness_out_;
  int64_t last_summary_ms_ = INT64_MIN / 2;  // monotonic
  bool summary_wanted_ = false;              // the next flush carries a summary
  bool resending_ = false;
  core::ResyncPacer resync_{absl::ToInt64Milliseconds(opts_.resync_backoff)};
  std::map<std::string, std::deque<v1::CommEntry>> comm_;  // by direct child
  // Queries passed on toward a child gateway, by nonce: the child it went to, and when it is
  // forgotten (monotonic).
  std::map<std::string, std::pair<std::string, int64_t>> queries_;
  core::Coalesced batch_due_{loop_, opts_.batch_delay, [this] { FlushBatch(); }};
  core::Coalesced self_report_soon_{loop_, absl::Milliseconds(200), [this] { ReportSelf(); }};
  core::Coalesced ask_children_{loop_, absl::ZeroDuration(), [this] { AskChildren(); }};
  // Children coming online in a wave (a site powering up, a broker back) send their first
  // reports together, and a broker whose queue for this node overflows drops some without a
  // word: once the wave has gone on for a while, every child is asked again (devices whose
  // report did arrive answer with a heartbeat, which goes no further).
  core::Coalesced ask_after_wave_{loop_, absl::Seconds(5), [this] { AskChildren(); }};
  bool stopped_ = false;

  core::Metric* relayed_ = nullptr;
  core::Metric* batches_ = nullptr;
  core::Metric* chunks_served_ = nullptr;
  core::Metric* upstream_chunks_ = nullptr;
  core::Metric* send_failures_ = nullptr;
  core::Metric* desired_resent_ = nullptr;
  core::Metric* fill_retries_ = nullptr;
  core::Metric* chunk_timeouts_ = nullptr;
  core::Metric* heartbeats_ = nullptr;
  core::Metrics::CollectorId gauges_ = 0;
  core::Metric* summaries_ = nullptr;
};

}  // namespace x1368::intermediate

#endif  // X1368_INTERMEDIATE_INTERMEDIATE_H_
