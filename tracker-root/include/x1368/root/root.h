// The root status tracker (server module, X.1368 §8.2) with the firmware server inside it
// (X.1368 §3.2.3, §11.3; docs/architecture.md §7):
//   - accepts a release only with a valid author signature, a matching image digest and size,
//     and stores the image;
//   - starts a campaign by signing an UpdateDirective and publishing it once for its children
//     (and into their retained desired state), with its own go;
//   - serves image chunks to its children;
//   - keeps every device's state: from its own signed reports, or, inside a gateway's signed
//     batch, on the gateway's word for progress and end to end for outcomes (verify_relayed_all);
//     checks each gateway's subtree summary against its own view and asks again when they differ;
//   - answers the authenticated admin API that trackerctl uses.
//
// Threads: the event loop owns all state. HTTP handlers run on the server's threads and post to
// the loop, waiting for the answer; a release upload streams its image to a file in images_dir
// and reads it back for its digests there, on the handler's thread, and only its checks and the
// registry run on the loop. Start/Stop come from the owner's thread.
#ifndef X1368_ROOT_ROOT_H_
#define X1368_ROOT_ROOT_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "x1368/core/catch_up.h"
#include "x1368/core/chunk_table.h"
#include "x1368/core/event_loop.h"
#include "x1368/core/health.h"
#include "x1368/core/http.h"
#include "x1368/core/links.h"
#include "x1368/core/metrics.h"
#include "x1368/core/node.h"
#include "x1368/core/sqlite_db.h"
#include "x1368/core/subtree_index.h"
#include "x1368/root/fleet_query.h"
#include "x1368/root/registry.h"
#include "x1368/v1/admin.pb.h"

namespace x1368::root {

struct RootOptions {
  std::string images_dir;
  std::string admin_listen;  // "host:port"; empty: no admin API
  std::string admin_token;   // bearer token the admin API requires
  // What GET /readyz on the admin API reports (core/health.h); thread-safe. Unset: whether
  // data_dir takes a file.
  core::ReadinessCheck readiness;
  int64_t default_deadline_ms = 7LL * 24 * 3600 * 1000;
  uint64_t max_image_bytes = 256ULL << 20;
  // A device is shown offline when its last report is older than this.
  int64_t device_stale_after_ms = 180'000;
  // What the broker queues for root (Mosquitto's max_queued_messages): the children's chunks in
  // flight share it (core::ChunkWindowFor).
  uint32_t downstream_queue = 1000;
  // Which relayed reports root verifies the device's own signature of (status.verify_relayed):
  // false ("evidence"): outcomes (CONFIRMED, FAILED, ROLLED_BACK, DECLINED), requests for an
  // update, a device's first report through a gateway (or after it moved), and a change of
  // what it runs outside a campaign; the rest (progress) on the signed word of the gateway that
  // relayed it. true ("all"): every one.
  bool verify_relayed_all = false;
  // After a gateway's summary disagreed and its whole subtree was asked again, no new request
  // for this long, doubling while they keep disagreeing (up to an hour).
  absl::Duration resync_backoff = absl::Seconds(30);
};

class Root {
 public:
  Root(RootOptions options, core::NodeContext* node, core::SqliteDb* db,
       core::Transport* downstream, core::EventLoop* loop);
  ~Root();

  absl::Status Start();
  void Stop();
  int admin_port() const { return admin_port_; }

  // The admin operations; run on the event loop. PublishRelease takes the image in memory (tests,
  // the simulator); the admin API's POST /v1/releases streams it to disk, then runs the same
  // checks (CheckManifest, AcceptRelease).
  absl::StatusOr<v1::ReleaseInfo> PublishRelease(const v1::ReleaseSubmission& submission);
  absl::StatusOr<v1::CampaignInfo> StartCampaign(const v1::CampaignStartRequest& request);
  v1::FleetStatus Fleet() const;
  // "Show me device X" (issue #13): root's record beside what the device's gateway holds, its
  // signed report verified end to end. Asks along the device's path and waits up to `timeout`
  // for the answer; call from any thread but the loop's.
  absl::StatusOr<v1::DeviceLiveView> ShowDeviceLive(const std::string& device_id,
                                                    absl::Duration timeout);
  // What the lists judge online by, now.
  Liveness LivenessNow() const;
  // An online backup of root's database (SqliteDb::Snapshot), after committing what is staged:
  // the bytes of a database file that tracker-root --restore puts back.
  absl::StatusOr<std::string> Backup();
  // GET /v1/releases and /v1/campaigns (query: the request's parameters); on the loop.
  absl::StatusOr<v1::ReleasePage> ListReleases(
      const std::map<std::string, std::string>& query) const;
  absl::StatusOr<v1::CampaignPage> ListCampaigns(
      const std::map<std::string, std::string>& query) const;
  // Every campaign, oldest first, its state ("active" or "expired") as of now; on the loop.
  std::vector<v1::CampaignInfo> CampaignsNow() const;
  // `c` with its progress: the devices whose record names it, counted by state.
  v1::CampaignInfo WithProgress(v1::CampaignInfo c) const;
  // The admin API's routes (empty until started): its OpenAPI description must name them all.
  std::vector<core::HttpRoute> admin_routes() const;

 private:
  void FromChild(const core::Topic& topic, const std::string& payload, core::OpenedMessage m);
  // `via`: root's direct child it came through; `path`: from there down to the sender's parent
  // (DeviceRecord.path).
  // `vouched_by`: the gateway whose batch vouched for it (empty: its own signature verified).
  void Record(const v1::StatusReport& report, const core::Identity& signer, const std::string& via,
              const std::string& path, const std::string& vouched_by = "");
  // A StatusBatch from root's child `via` (a gateway): its reports, its subtree's liveness and
  // its summary, checked against root's view of that subtree.
  void RecordBatch(const std::string& via, const core::OpenedMessage& m);
  // Whether a report relayed by `via` needs the device's own signature (verify_relayed_all).
  bool NeedsDeviceSignature(const v1::Body& body, const std::string& via) const;
  void RecordLiveness(const std::string& via, const v1::ChildLiveness& l);
  void CheckSummary(const std::string& via, const v1::SubtreeSummary& summary);
  // Logs a warning when a node's report says it refused more of its parent's messages as
  // replays than it had said before (StatusReport.parent_rejections).
  // Signals from below (X.1368 §11.1 a.iv): a device that asks for an update, or runs an image
  // newer than root's newest release for it, is a warning when it starts to.
  void WarnOfSignals(const v1::DeviceRecord& d, const v1::DeviceRecord* before);
  void WarnIfRefusingParent(const std::string& id, const std::string& via,
                            const google::protobuf::RepeatedPtrField<v1::ReasonCount>& before,
                            const google::protobuf::RepeatedPtrField<v1::ReasonCount>& now);
  void ServeChunk(const std::string& child, const v1::FirmwareChunkRequest& request);
  // The chunks each child may keep in flight (stated in root's go).
  uint32_t ChildWindow();
  static constexpr uint32_t kMaxChildWindow = 16;
  void SendDesired(const std::string& child);
  void SetNodeOnline(const std::string& node, bool online);
  void ScheduleCommit();
  absl::Status StartAdminApi();

  // Metrics computed when scraped, on the loop: devices by subtree, component, version, state
  // and online; tracker nodes by online; the active campaigns' progress.
  core::Metrics::Families Gauges() const;
  prometheus::MetricFamily DeviceGauge() const;
  prometheus::MetricFamily NodeGauge() const;
  prometheus::MetricFamily CampaignGauge() const;
  // A device's report: how long from when it signed it to root (x1368_report_latency_seconds).
  void ObserveLatency(const core::OpenedMessage& report);

  // Releases. CheckManifest: what a submission must pass before its image is looked at.
  // AcceptRelease: the image's digests (`digests`, computed by the caller with the manifest's
  // chunk size) against the verified `manifest`, the registry's rules on versions and sequence
  // numbers, then `store_image` puts the image at its path and the release is recorded. Both on
  // the loop.
  using StoreImage = std::function<absl::Status(const std::string& image_path)>;
  absl::StatusOr<v1::Manifest> CheckManifest(const v1::SignedManifest& signed_manifest);
  absl::StatusOr<v1::ReleaseInfo> AcceptRelease(const v1::SignedManifest& signed_manifest,
                                                const v1::Manifest& manifest,
                                                const core::ImageDigests& digests,
                                                const StoreImage& store_image);
  // POST /v1/releases, on the HTTP thread: the multipart body streamed into a temporary file.
  absl::StatusOr<v1::ReleaseInfo> PublishUpload(core::HttpBodyReader& body);
  // Temporary files of uploads cut short by a crash; at start, before the admin API.
  absl::Status RemoveStaleUploads();

  const RootOptions opts_;
  core::NodeContext* node_;
  core::SqliteDb* db_;
  core::EventLoop* loop_;
  core::NodeLinks links_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<core::HttpServer> admin_;
  int admin_port_ = 0;
  void CommitStaged();
  // One transaction for the whole burst of reports queued before it.
  core::Coalesced commit_{loop_, absl::ZeroDuration(), [this] { CommitStaged(); }};
  core::Metric* reports_ = nullptr;
  core::Metric* desired_resent_ = nullptr;
  core::CatchUp catch_up_;  // for devices directly under root (core/catch_up.h)
  // Every device, by the hop it reports through (its via): what gateways' summaries are checked
  // against.
  core::SubtreeIndex index_;
  core::ResyncPacer resync_{absl::ToInt64Milliseconds(opts_.resync_backoff)};
  core::Metric* vouched_ = nullptr;
  // Device queries on their way, by nonce.
  struct LiveQuery {
    absl::Notification answered;
    v1::DeviceDetail detail;
  };
  std::map<std::string, std::shared_ptr<LiveQuery>> live_queries_;
  core::Metric* verified_ = nullptr;
  core::Metric* chunks_served_ = nullptr;
  prometheus::Histogram* report_latency_ = nullptr;
  core::Metrics::CollectorId gauges_ = 0;
  std::atomic<uint64_t> uploads_{0};  // names each upload's temporary file
};

}  // namespace x1368::root

#endif  // X1368_ROOT_ROOT_H_
