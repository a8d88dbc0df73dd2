#include "x1368/client/client.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "x1368/core/directive.h"
#include "x1368/core/log.h"
#include "x1368/core/manifest.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"

namespace x1368::client {

using core::Channel;
using core::ReasonOf;

namespace {
constexpr char kRecordKey[] = "update_record";
constexpr int kMaxFinishedCampaigns = 16;
constexpr size_t kMaxPendingGo = 64;

// Failures a later attempt may not meet: the image not (yet) at the parent, the parent or the
// broker away, chunks that never came.
bool IsTransient(v1::Reason reason) {
  return reason == v1::DOWNLOAD_FAILED || reason == v1::IMAGE_UNAVAILABLE;
}

// Failures no attempt can mend: the image, its manifest or the device says no.
bool IsFinal(v1::Reason reason) {
  switch (reason) {
    case v1::DIGEST_MISMATCH:
    case v1::SIZE_MISMATCH:
    case v1::MANIFEST_BAD_SIGNATURE:
    case v1::MANIFEST_MALFORMED:
    case v1::AUTHOR_NOT_TRUSTED:
    case v1::WRONG_HARDWARE:
    case v1::NOT_NEWER:
    case v1::COMPONENT_MISMATCH:
    case v1::CONSUMER_DECLINED:
    case v1::DEADLINE_PASSED:
      return true;
    default:
      return false;
  }
}

// A write the disk had no room for, as the consumer reports it (its reason, or the file
// system's ResourceExhausted).
bool IsDiskFull(const absl::Status& s) {
  v1::Reason reason = ReasonOf(s);
  return reason == v1::STORAGE_FULL ||
         (reason == v1::REASON_UNSPECIFIED && absl::IsResourceExhausted(s));
}

// How long a device's changes gather before they go up (Client::ScheduleReport): 200 ms, plus
// up to as much again by its id, so siblings do not report in step.
absl::Duration ReportDelayFor(const std::string& device_id) {
  constexpr int64_t kGapMs = 200;
  return absl::Milliseconds(kGapMs + static_cast<int64_t>(std::hash<std::string>{}(device_id) %
                                                          static_cast<uint64_t>(kGapMs)));
}

bool Contains(const google::protobuf::RepeatedPtrField<std::string>& list, const std::string& v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}
}  // namespace

Client::Client(ClientOptions options, core::NodeContext* node, FirmwareConsumer* consumer,
               core::Transport* upstream, core::EventLoop* loop, ClientHooks hooks)
    : opts_(std::move(options)),
      node_(node),
      consumer_(consumer),
      loop_(loop),
      links_(node, loop, upstream, opts_.parent_id, /*downstream=*/nullptr),
      hooks_(std::move(hooks)),
      fetcher_(
          loop,
          [this](const v1::FirmwareChunkRequest& req) -> absl::Status {
            v1::Body body;
            *body.mutable_chunk_request() = req;
            return links_.SendUp(Channel::kFw, std::move(body));
          },
          opts_.fetch),
      report_soon_(loop, ReportDelayFor(node->id()), [this] { Report(); }) {
  chunk_timeouts_ = node_->metrics().Counter(
      "x1368_chunk_timeouts_total",
      "Chunks the parent did not send in time (each asked again); many mean a broker that "
      "drops messages (max_queued_messages) or a parent that cannot keep up");
  retries_ = node_->metrics().Counter(
      "x1368_update_retries_total",
      "Update steps tried again after a failure (transient ones back off until the deadline)");
}

void Client::CountTimeouts() {
  uint64_t now = fetcher_.timeouts();
  if (now <= timeouts_seen_) return;
  uint64_t n = now - timeouts_seen_;
  timeouts_seen_ = now;
  chunk_timeouts_->Add(n);
  spdlog::warn(
      "event=download.chunks_timed_out count={} parent={} hint=\"the broker may be dropping "
      "messages (its max_queued_messages below what the parent's configuration states) or the "
      "parent is overloaded\"",
      n, core::Quoted(opts_.parent_id));
}

Client::~Client() { Stop(); }

absl::Status Client::Start() {
  X1368_ASSIGN_OR_RETURN(std::optional<std::string> raw, node_->store().Get(kRecordKey));
  if (raw && !record_.ParseFromString(*raw)) {
    return core::Reject(v1::STORAGE_ERROR, "the persisted update record is corrupt");
  }
  if (record_.state() == v1::UPDATE_STATE_UNSPECIFIED) record_.set_state(v1::IDLE);
  if (!record_.directive_envelope().empty()) {
    // Re-verified after every restart: what is on disk is not trusted blindly.
    auto m = ManifestOf(record_.directive_envelope());
    if (m.ok()) manifest_ = *m;
  }
  if (!IsTerminal(record_.state())) {
    spdlog::info("event=update.resume state={} campaign={}", StateName(record_.state()),
                 core::Quoted(record_.campaign_id()));
  }
  {
    absl::MutexLock lock(&mu_);
    snapshot_ = record_;
  }
  core::NodeLinks::Handlers handlers;
  handlers.from_parent = [this](const core::Topic& t, const std::string& payload,
                                core::OpenedMessage opened) { OnMessage(t, payload, opened); };
  handlers.upstream_connected = [this] { Report(); };
  handlers.clock_corrected = [this] { ScheduleReport(); };
  // Chunks are unsigned: each is checked against the chunk table before it is kept.
  handlers.data_from_parent = [this](const v1::ChunkData& data) {
    if (absl::Status s = fetcher_.OnData(data); !s.ok()) Reject(s, "chunk");
  };
  // X.1368 §11.2 (modules) b: what fails verification is refused, counted and reported upward
  // (coalesced into one report), so the upstream modules know this device's state (§11.2 b).
  handlers.rejected = [this](const absl::Status& s) {
    if (ReasonOf(s) != v1::DUPLICATE) ScheduleReport();
  };
  X1368_RETURN_IF_ERROR(links_.Start(std::move(handlers)));
  loop_->PostAfter(opts_.report_interval, [this] { PeriodicReport(); });
  // A failure whose cleanup a power cut interrupted: the slot may still hold what failed.
  if (record_.state() == v1::FAILED) DiscardSlot();
  StepSoon();  // resumes an update cut short, by the action of its state
  return absl::OkStatus();
}

void Client::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  // The loop no longer runs (the owner stopped it first): nothing of ours runs beside us but a
  // consumer call on a blocking thread, which is let finish.
  stopping_ = true;
  {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return consumer_calls_ == 0; };
    mu_.Await(absl::Condition(&idle));
  }
  links_.Stop();
}

v1::UpdateRecord Client::record() const {
  absl::MutexLock lock(&mu_);
  return snapshot_;
}

bool Client::crashed() const {
  absl::MutexLock lock(&mu_);
  return crashed_;
}

absl::StatusOr<v1::Manifest> Client::ManifestOf(const std::string& directive_envelope) {
  v1::Envelope env;
  v1::Body body;
  if (!env.ParseFromString(directive_envelope) || !body.ParseFromString(env.body()) ||
      !body.has_directive()) {
    return core::Reject(v1::MALFORMED, "stored directive does not parse");
  }
  return core::VerifyManifest(node_->trust(), body.directive().manifest());
}

// ---------------------------------------------------------------------------------------------
// Messages

void Client::Reject(const absl::Status& status, absl::string_view where) {
  links_.Reject(status, where);
}

void Client::ScheduleReport() { report_soon_.Schedule(); }

void Client::PeriodicReport() {
  Report();
  loop_->PostAfter(opts_.report_interval, [this] { PeriodicReport(); });
}

void Client::OnMessage(const core::Topic& topic, const std::string& payload,
                       const core::OpenedMessage& opened) {
  const v1::Body& body = opened.body;
  switch (body.message_case()) {
    case v1::Body::kDirective:
      return HandleDirective(payload, opened);
    case v1::Body::kGo:
      return HandleGo(body.go());
    case v1::Body::kDesired:
      // A device counts anything but a directive in its desired state: it has no other use.
      core::ForEachDesiredDirective(
          node_->opener(), body.desired(), core::NonDirective::kReject,
          [this](const std::string& envelope, const core::OpenedMessage& inner) {
            HandleDirective(envelope, inner);
          },
          [this](const absl::Status& s, absl::string_view where) { Reject(s, where); });
      for (const v1::Go& go : body.desired().grants()) HandleGo(go);
      return;
    case v1::Body::kChunkResponse:
      return fetcher_.OnResponse(body.chunk_response());
    case v1::Body::kStatusRequest:
      // The parent (re)connected and may have missed what we said: coalesced, so a request
      // that arrives with our own connect report costs one report.
      return ScheduleReport();
    default:
      return Reject(core::Reject(v1::UNKNOWN_TYPE, "not a message for a client"), topic.ToString());
  }
}

void Client::HandleDirective(const std::string& envelope, const core::OpenedMessage& opened) {
  if (absl::Status s = core::CheckRootSigned(opened); !s.ok()) return Reject(s, "directive");
  const v1::UpdateDirective& d = opened.body.directive();
  ConsumerStatus status = consumer_->Status();
  // Not for this device: silently not ours (X.1368 §10 d, §11.2 c: only the needed update).
  if (d.selector().component() != status.component) return;
  if (!d.selector().devices().empty() && !Contains(d.selector().devices(), node_->id())) return;
  if (d.campaign_id() == record_.campaign_id() ||
      Contains(record_.finished_campaigns(), d.campaign_id())) {
    return;  // already handled: idempotent under redelivery and desired-state catch-up
  }
  auto manifest = core::VerifyManifest(node_->trust(), d.manifest());
  if (!manifest.ok()) return Reject(manifest.status(), "directive.manifest");
  if (manifest->component() != d.selector().component()) {
    return Reject(core::Reject(v1::COMPONENT_MISMATCH, "manifest is for another component"),
                  "directive");
  }
  if (!Contains(manifest->hardware_classes(), status.hardware_class) ||
      (!d.selector().hardware_classes().empty() &&
       !Contains(d.selector().hardware_classes(), status.hardware_class))) {
    return Reject(core::Reject(v1::WRONG_HARDWARE, absl::StrCat("not for ", status.hardware_class)),
                  "directive");
  }
  if (manifest->sha256() == status.image_sha256) {
    // Already running exactly this image: nothing to do, nothing touched (X.1368 §10 e.i).
    ScheduleReport();
    return;
  }
  if (manifest->sequence_number() <= status.sequence_number) {
    return Reject(core::Reject(v1::NOT_NEWER,
                               absl::StrCat("sequence ", manifest->sequence_number(),
                                            " is not above the running ", status.sequence_number)),
                  "directive");
  }
  if (d.deadline_ms() != 0 && d.deadline_ms() < node_->clock().NowMs()) {
    return Reject(core::Reject(v1::DEADLINE_PASSED, "directive deadline has passed"), "directive");
  }
  Offer(envelope, opened, *manifest);
}

void Client::Offer(const std::string& envelope, const core::OpenedMessage& opened,
                   const v1::Manifest& manifest) {
  if (stopping_) return;
  const v1::UpdateDirective& d = opened.body.directive();
  auto go = pending_go_.find(d.campaign_id());
  bool go_ok = go != pending_go_.end() && go->second == opened.body_digest;
  if (go != pending_go_.end()) pending_go_.erase(go);
  if (!IsTerminal(record_.state()) && !IsPreInstall(record_.state())) {
    // Installing or in trial: finish that first, then look at this one.
    queued_directive_ = envelope;
    return;
  }
  v1::UpdateRecord rec = record_;
  rec.set_campaign_id(d.campaign_id());
  rec.set_directive_envelope(envelope);
  rec.set_directive_digest(opened.body_digest);
  rec.set_deadline_ms(d.deadline_ms());
  rec.set_bytes_done(0);
  rec.set_trial_started(false);
  rec.set_go_received(go_ok);
  spdlog::info("event=update.offered campaign={} version={}", core::Quoted(d.campaign_id()),
               core::Quoted(manifest.version()));
  // A download of a superseded image stops here; a consumer result for it is dropped (the
  // record moved on).
  if (Transition(Event::kOffer, v1::REASON_UNSPECIFIED, "", &rec, &manifest)) fetcher_.Cancel();
}

void Client::HandleGo(const v1::Go& go) {
  if (!go.devices().empty() && !Contains(go.devices(), node_->id())) return;
  // The parent's share of its broker queue for each child (flow control).
  if (go.chunk_window() > 0) fetcher_.set_window(std::min(opts_.fetch.window, go.chunk_window()));
  if (go.campaign_id() != record_.campaign_id()) {
    // The go may overtake its directive (different topics): keep it for a while.
    if (pending_go_.size() >= kMaxPendingGo) pending_go_.erase(pending_go_.begin());
    pending_go_[go.campaign_id()] = go.directive_digest();
    return;
  }
  if (go.directive_digest() != record_.directive_digest()) {
    return Reject(core::Reject(v1::GO_MISMATCH, "go names another directive for this campaign"),
                  "go");
  }
  if (record_.state() != v1::OFFERED || record_.go_received()) return;  // idempotent
  v1::UpdateRecord rec = record_;
  rec.set_go_received(true);
  if (Persist(rec)) StepSoon();
}

// ---------------------------------------------------------------------------------------------
// The update: the action of each state (update_state.h kActions)

void Client::StepSoon() {
  if (step_posted_) return;
  step_posted_ = true;
  loop_->Post([this] {
    step_posted_ = false;
    Step();
  });
}

void Client::Step() {
  if (stopping_ || busy_ || fetcher_.active()) return;
  if (IsTerminal(record_.state())) {
    if (queued_directive_) {
      std::string d = std::move(*queued_directive_);
      queued_directive_.reset();
      auto inner = core::OpenEmbeddedDirective(node_->opener(), d);
      if (inner.ok()) HandleDirective(d, *inner);
    }
    return;
  }
  if (!manifest_) {
    // The stored directive no longer verifies (e.g. the author certificate expired).
    Transition(Event::kFail, v1::AUTHOR_NOT_TRUSTED, "stored directive no longer verifies");
    return;
  }
  switch (ActionFor(record_.state())) {
    case Action::kNone:
      return;
    case Action::kAwaitGo:
      return AwaitGoThenAccept();
    case Action::kDownload:
      return Download();
    case Action::kVerify:
      return VerifyImage();
    case Action::kBeginInstall:
      Transition(Event::kInstall);
      return;
    case Action::kInstall:
      return InstallImage();
    case Action::kTrialBoot:
      return TrialBoot();
  }
}

void Client::CallConsumer(std::function<absl::Status()> call,
                          std::function<void(const absl::Status&)> then) {
  busy_ = true;
  uint64_t generation = generation_;
  {
    absl::MutexLock lock(&mu_);
    ++consumer_calls_;
  }
  loop_->executor()->SubmitBlocking(
      [this, generation, call = std::move(call), then = std::move(then)] {
        absl::Status s = call();
        loop_->Post([this, generation, s, then] {
          busy_ = false;
          if (stopping_) return;
          if (generation != generation_)
            return Step();  // moved on meanwhile: act on the new record
          then(s);
        });
        absl::MutexLock lock(&mu_);
        --consumer_calls_;  // the last touch of `this`: Stop() may return now
      });
}

void Client::AwaitGoThenAccept() {
  if (!record_.go_received()) return;  // the parent's go arrives as a message
  if (record_.deadline_ms() != 0 && record_.deadline_ms() < node_->clock().NowMs()) {
    Transition(Event::kFail, v1::DEADLINE_PASSED, "deadline passed before go");
    return;
  }
  CallConsumer([this, m = *manifest_] { return consumer_->Accept(m); },
               [this](const absl::Status& s) {
                 if (ReasonOf(s) == v1::CONSUMER_DECLINED) {
                   Transition(Event::kDecline, v1::CONSUMER_DECLINED, s.message());
                 } else if (!s.ok()) {
                   Transition(Event::kFail, ReasonOf(s), s.message());
                 } else {
                   Transition(Event::kGo);
                 }
               });
}

void Client::FetchTable(const v1::Manifest& m) {
  auto bytes = std::make_shared<std::string>();
  fetcher_.Start(
      {m.sha256(), /*table=*/true, core::ChunkTableBytes(m.size(), m.chunk_size()), 0,
       core::kMaxChunkBytes, nullptr},
      [bytes](uint64_t, const std::string& data) {
        bytes->append(data);
        return absl::OkStatus();
      },
      [this, m, bytes](const absl::Status& s) {
        CountTimeouts();
        if (!s.ok()) return Retry(s);
        auto table = core::ChunkTable::Make(m, std::move(*bytes));
        if (!table.ok()) {
          Reject(table.status(), "chunk_table");  // a parent that sends a bad table
          return Retry(table.status());
        }
        table_ = *std::move(table);
        Download();
      });
}

void Client::Download() {
  const v1::Manifest m = *manifest_;
  // The table comes first (and again after a restart: it is small, and not kept on disk).
  if (!table_ || table_->image_size() != m.size() ||
      core::Sha256(table_->bytes()) != m.chunk_table_sha256()) {
    table_.reset();
    return FetchTable(m);
  }
  // Short consumer calls, on the loop: the slot says where to resume.
  absl::StatusOr<uint64_t> held = consumer_->BeginDownload(m);
  if (!held.ok()) return Retry(held.status());
  // Resumed at the last whole chunk held: a chunk is checked whole, so a partial one at the end
  // (a power cut mid-write) is fetched and written again.
  uint64_t offset = std::min(*held, m.size());
  if (offset < m.size()) offset -= offset % m.chunk_size();
  record_.set_bytes_done(offset);
  last_progress_report_ = offset;
  const core::ChunkTable* table = &*table_;
  fetcher_.Start(
      {m.sha256(), /*table=*/false, m.size(), offset, m.chunk_size(),
       [table](uint64_t at, absl::string_view data) { return table->Verify(at, data); }},
      [this, m](uint64_t offset, const std::string& data) -> absl::Status {
        X1368_RETURN_IF_ERROR(consumer_->WriteChunk(m, offset, data));
        uint64_t done = offset + data.size();
        record_.set_bytes_done(done);
        // Progress goes up at each quarter, not with every chunk.
        if (done * 4 / m.size() > last_progress_report_ * 4 / m.size() || done == m.size()) {
          last_progress_report_ = done;
          ScheduleReport();
        }
        return absl::OkStatus();
      },
      [this, m](const absl::Status& s) {
        CountTimeouts();
        if (!s.ok()) return Retry(s);
        // Making the image durable syncs it: a blocking call.
        CallConsumer([this, m] { return consumer_->FinishDownload(m); },
                     [this, size = m.size()](const absl::Status& finished) {
                       if (!finished.ok()) return Retry(finished);
                       v1::UpdateRecord rec = record_;
                       rec.set_bytes_done(size);
                       Transition(Event::kDownloaded, v1::REASON_UNSPECIFIED, "", &rec);
                     });
      });
}

void Client::VerifyImage() {
  CallConsumer([this, m = *manifest_] { return consumer_->Verify(m); },
               [this](const absl::Status& s) {
                 if (!s.ok()) {
                   Fail(ReasonOf(s), std::string(s.message()));
                 } else {
                   Transition(Event::kVerified);
                 }
               });
}

void Client::Fail(v1::Reason reason, const std::string& detail) {
  // The failure reaches disk before the slot is cleaned: a power cut in between leaves FAILED
  // with its true reason (and a slot that Start() cleans), never a clean slot that a restart
  // would then fail on for another reason.
  if (!Transition(Event::kFail, reason, detail)) return;
  DiscardSlot();
}

void Client::FailForSpace(const absl::Status& status) {
  // Unlike Fail(), the slot goes before the failure is recorded: that record may need the space.
  // A power cut in between leaves the update in DOWNLOADING with an empty slot, and the restart
  // meets the same full disk again.
  node_->metrics().CountRejection(v1::STORAGE_FULL);
  spdlog::error(
      "event=update.storage_full campaign={} error={} hint=\"no room for the image: the "
      "partial download is discarded and the device stays on its running image\"",
      core::Quoted(record_.campaign_id()), core::Quoted(status.message()));
  std::string detail(status.message());
  CallConsumer(
      [this] {
        consumer_->Discard();
        return absl::OkStatus();
      },
      [this, detail](const absl::Status&) {
        if (!Transition(Event::kFail, v1::STORAGE_FULL, detail)) {
          // Not even the record fits (the reserve is gone too): tried again later.
          busy_ = true;
          loop_->PostAfter(opts_.retry_delay, [this] {
            busy_ = false;
            Step();
          });
        }
      });
}

void Client::DiscardSlot() {
  CallConsumer(
      [this] {
        consumer_->Discard();
        return absl::OkStatus();
      },
      [this](const absl::Status&) { Step(); });  // a directive may have queued meanwhile
}

void Client::InstallImage() {
  CallConsumer([this, m = *manifest_] { return consumer_->Install(m); },
               [this](const absl::Status& s) {
                 if (!s.ok()) return Retry(core::Reject(v1::INSTALL_FAILED, s.message()));
                 v1::UpdateRecord rec = record_;
                 rec.set_trial_started(false);
                 Transition(Event::kInstalled, v1::REASON_UNSPECIFIED, "", &rec);
               });
}

void Client::TrialBoot() {
  const v1::Manifest m = *manifest_;
  auto check = [this, m] {
    ConsumerStatus status = consumer_->Status();
    if (status.image_sha256 != m.sha256()) {
      if (status.failed_trial_sha256 != m.sha256() && !rearmed_) {
        // Not running the new image, and no trial of it was reverted: the power went before the
        // consumer switched slots. The install stands; boot the trial now (once per start, so a
        // consumer that cannot tell the two apart never loops).
        rearmed_ = true;
        spdlog::info("event=update.trial_rearmed campaign={}", core::Quoted(record_.campaign_id()));
        v1::UpdateRecord rec = record_;
        rec.set_trial_started(false);
        if (Persist(rec)) StepSoon();
        return;
      }
      // Not running the new image: the bootloader went back to the previous slot.
      Transition(Event::kRollBack, v1::TRIAL_BOOT_FAILED, "the bootloader reverted the trial");
      return;
    }
    if (!status.in_trial) {
      Transition(Event::kConfirmed);
      return;
    }
    CallConsumer(
        [this, m] {
          absl::Status s = consumer_->Confirm(m);
          if (!s.ok()) (void)consumer_->Rollback();
          return s;
        },
        [this](const absl::Status& s) {
          if (!s.ok()) {
            Transition(Event::kRollBack, v1::TRIAL_BOOT_FAILED, s.message());
          } else {
            Transition(Event::kConfirmed);
          }
        });
  };
  if (record_.trial_started()) return check();  // after a restart: did the trial come up?
  v1::UpdateRecord rec = record_;
  rec.set_trial_started(true);  // persisted first: a trial is booted once
  if (!Persist(rec)) return;
  CallConsumer([this, m] { return consumer_->BootTrial(m); },
               [this, check](const absl::Status& s) {
                 if (!s.ok()) {
                   Transition(Event::kRollBack, v1::TRIAL_BOOT_FAILED, s.message());
                   return;
                 }
                 if (CrashHere(hooks_.crash_after_trial_boot && hooks_.crash_after_trial_boot()))
                   return;
                 check();
               });
}

void Client::Retry(const absl::Status& status) {
  if (IsDiskFull(status)) return FailForSpace(status);
  v1::Reason reason = ReasonOf(status);
  if (IsFinal(reason)) return Fail(reason, std::string(status.message()));
  v1::UpdateRecord rec = record_;
  rec.set_attempts(rec.attempts() + 1);
  absl::Duration wait = opts_.retry_delay;
  if (IsTransient(reason)) {
    // Capped exponential backoff with jitter (half to all of the step), so a fleet that lost
    // its parent together does not come back in step; given up only at the deadline.
    int doublings = std::min<int>(static_cast<int>(rec.attempts()) - 1, 20);
    absl::Duration step =
        std::min(opts_.retry_delay * (int64_t{1} << doublings), opts_.max_retry_delay);
    wait = step / 2 + absl::Milliseconds(
                          absl::Uniform<int64_t>(rng_, 0, absl::ToInt64Milliseconds(step) / 2 + 1));
    if (rec.deadline_ms() != 0 &&
        node_->clock().NowMs() + absl::ToInt64Milliseconds(wait) >= rec.deadline_ms()) {
      Fail(v1::DEADLINE_PASSED, absl::StrCat("gave up at the deadline after ", rec.attempts(),
                                             " attempts: ", status.message()));
      return;
    }
  } else if (static_cast<int>(rec.attempts()) >= opts_.max_attempts) {
    Fail(reason == v1::REASON_UNSPECIFIED ? v1::DOWNLOAD_FAILED : reason,
         std::string(status.message()));
    return;
  }
  rec.set_detail(std::string(status.message()));
  if (!Persist(rec)) return;
  retries_->Add();
  spdlog::warn(
      "event=update.retry state={} campaign={} attempt={} retry_in_ms={} reason={} error={}",
      StateName(rec.state()), core::Quoted(rec.campaign_id()), rec.attempts(),
      absl::ToInt64Milliseconds(wait), core::ReasonName(reason), core::Quoted(status.message()));
  ScheduleReport();  // the parent sees the attempt and its cause
  busy_ = true;      // nothing else acts until the retry is due (on the clock)
  loop_->PostAfter(wait, [this] {
    busy_ = false;
    Step();
  });
}

bool Client::Persist(const v1::UpdateRecord& rec, const v1::Manifest* manifest) {
  if (stopping_) return false;
  absl::Status s = node_->store().Put(kRecordKey, rec.SerializeAsString());
  if (!s.ok()) {
    // Never retried silently: counted, logged and reported; the previous record stays on disk.
    node_->metrics().CountRejection(v1::STORAGE_ERROR);
    spdlog::error("event=update.persist_failed state={} error={}", StateName(rec.state()),
                  core::Quoted(s.message()));
    return false;
  }
  record_ = rec;
  if (manifest != nullptr) manifest_ = *manifest;
  ++generation_;
  absl::MutexLock lock(&mu_);
  snapshot_ = record_;
  return true;
}

bool Client::Transition(Event event, v1::Reason reason, absl::string_view detail,
                        v1::UpdateRecord* base, const v1::Manifest* manifest) {
  v1::UpdateRecord rec = base != nullptr ? *base : record_;
  std::optional<State> to = Apply(rec.state(), event);
  if (!to) {
    spdlog::error("event=update.illegal_transition from={} event={}", StateName(rec.state()),
                  EventName(event));
    return false;
  }
  rec.set_state(*to);
  rec.set_reason(reason);
  rec.set_detail(std::string(detail));
  rec.set_attempts(0);
  rec.set_updated_at_ms(node_->clock().NowMs());
  if (IsTerminal(*to)) {
    rec.add_finished_campaigns(rec.campaign_id());
    while (rec.finished_campaigns_size() > kMaxFinishedCampaigns) {
      rec.mutable_finished_campaigns()->erase(rec.mutable_finished_campaigns()->begin());
    }
  }
  if (!Persist(rec, manifest)) {
    ScheduleReport();
    return false;
  }
  // An update that failed or was rolled back needs the operator (the device runs its old image
  // and will not try this campaign again); every other step is healthy progress.
  const spdlog::level::level_enum level = *to == v1::FAILED        ? spdlog::level::err
                                          : *to == v1::ROLLED_BACK ? spdlog::level::warn
                                                                   : spdlog::level::info;
  if (level == spdlog::level::info) {
    spdlog::info("event=update.state state={} campaign={} reason={}", StateName(*to),
                 core::Quoted(rec.campaign_id()), core::ReasonName(reason));
  } else {
    spdlog::log(level, "event=update.state state={} campaign={} reason={} detail={}",
                StateName(*to), core::Quoted(rec.campaign_id()), core::ReasonName(reason),
                core::Quoted(detail));
  }
  ScheduleReport();
  if (CrashHere(hooks_.crash_after_persist && hooks_.crash_after_persist(*to))) return false;
  StepSoon();
  return true;
}

bool Client::CrashHere(bool simulate) {
  if (!simulate) return false;
  // A simulated power cut: nothing of this client acts or reports any more.
  stopping_ = true;
  fetcher_.Cancel();
  absl::MutexLock lock(&mu_);
  crashed_ = true;
  return true;
}

// ---------------------------------------------------------------------------------------------

void Client::Report() {
  if (stopping_) return;
  ConsumerStatus status = consumer_->Status();
  v1::StatusReport r;
  r.set_device_id(node_->id());
  r.set_component(status.component);
  r.set_version(status.version);
  r.set_sequence_number(status.sequence_number);
  r.set_hardware_class(status.hardware_class);
  r.set_needs_update(status.needs_update);
  r.set_campaign_id(record_.campaign_id());
  r.set_state(record_.state());
  r.set_reason(record_.reason());
  r.set_detail(record_.detail());
  r.set_bytes_done(record_.bytes_done());
  if (manifest_) {
    r.set_bytes_total(manifest_->size());
    r.set_target_version(manifest_->version());
  }
  for (const v1::ReasonCount& rc : node_->metrics().RejectionCounts()) *r.add_rejections() = rc;
  for (const v1::ReasonCount& rc : node_->metrics().ParentRejectionCounts()) {
    *r.add_parent_rejections() = rc;
  }
  r.set_clock_offset_ms(node_->trusted_clock().offset_ms());
  v1::Body body;
  *body.mutable_status() = std::move(r);
  if (absl::Status s = links_.SendUp(Channel::kStatus, std::move(body)); !s.ok()) {
    spdlog::warn("event=report.send_failed error={}", core::Quoted(s.message()));
  }
}

}  // namespace x1368::client
