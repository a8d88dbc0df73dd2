#include "x1368/root/root.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <future>
#include <set>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "x1368/core/chunk_fetcher.h"
#include "x1368/core/chunk_service.h"
#include "x1368/core/crypto.h"
#include "x1368/core/file_system.h"
#include "x1368/core/file_util.h"
#include "x1368/core/json.h"
#include "x1368/core/log.h"
#include "x1368/core/manifest.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"
#include "x1368/core/values.h"
#include "x1368/root/openapi.h"

namespace x1368::root {

using core::Channel;
using core::HttpRequest;
using core::HttpResponse;
using core::Reject;

namespace {

std::string ToJson(const google::protobuf::Message& m) { return core::MessageToJsonText(m); }

// GET /v1/devices?component=&subtree=&list=&limit=&after= (list: all, up_to_date, obsolete,
// failed, offline, updating, needs_update, ahead).
absl::StatusOr<v1::DeviceQuery> DeviceQueryFrom(const std::map<std::string, std::string>& params) {
  v1::DeviceQuery q;
  for (const auto& [key, value] : params) {
    if (key == "component") {
      q.set_component(value);
    } else if (key == "subtree") {
      q.set_subtree(value);
    } else if (key == "after") {
      q.set_after(value);
    } else if (key == "limit") {
      uint32_t limit = 0;
      if (!absl::SimpleAtoi(value, &limit)) {
        return absl::InvalidArgumentError(absl::StrCat("limit \"", value, "\" is not a number"));
      }
      q.set_limit(limit);
    } else if (key == "list") {
      v1::DeviceList list;
      if (!v1::DeviceList_Parse(absl::StrCat("LIST_", absl::AsciiStrToUpper(value)), &list)) {
        return absl::InvalidArgumentError(
            absl::StrCat("list \"", value,
                         "\" is none of all, up_to_date, obsolete, failed, offline, updating, "
                         "needs_update, ahead"));
      }
      q.set_list(list);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown parameter \"", key, "\""));
    }
  }
  return q;
}

// The name of an error's HTTP status, its `code` when the refusal carries no X.1368 reason.
std::string StatusName(int status) {
  switch (status) {
    case 400:
      return "BAD_REQUEST";
    case 401:
      return "UNAUTHENTICATED";
    case 403:
      return "PERMISSION_DENIED";
    case 404:
      return "NOT_FOUND";
    case 405:
      return "METHOD_NOT_ALLOWED";
    case 409:
      return "CONFLICT";
    case 411:
      return "LENGTH_REQUIRED";
    case 413:
      return "PAYLOAD_TOO_LARGE";
    case 415:
      return "UNSUPPORTED_MEDIA_TYPE";
    case 422:
      return "UNPROCESSABLE_ENTITY";
    case 503:
      return "UNAVAILABLE";
    default:
      return status >= 500 ? "INTERNAL" : "BAD_REQUEST";
  }
}

// Every non-2xx answer of the admin API, whoever gives it (a handler, or the server itself for
// an unknown route, a wrong method or a refused body): an ErrorReply in JSON.
HttpResponse ErrorBody(const core::HttpError& e) {
  v1::ErrorReply reply;
  const v1::Reason reason = core::ReasonOf(e.why);
  reply.set_code(reason == v1::REASON_UNSPECIFIED ? StatusName(e.status)
                                                  : core::ReasonName(reason));
  reply.set_message(std::string(e.why.message()));
  reply.mutable_details()->set_http_status(e.status);
  reply.mutable_details()->set_reason(reason);
  for (const std::string& m : e.allow) reply.mutable_details()->add_allow(m);
  HttpResponse out{e.status, "application/json", ToJson(reply)};
  // RFC 6750: a 401 names the scheme the client must use.
  if (e.status == 401) out.headers.emplace_back("WWW-Authenticate", R"(Bearer realm="x1368")");
  return out;
}

// A handler's refusal: the HTTP status for the Status's code. InvalidArgument: the request is
// malformed (400); FailedPrecondition without a reason: well-formed but naming what root does not
// have, an unknown release or device (422); AlreadyExists/Aborted: it conflicts with what root
// holds (409).
HttpResponse ErrorResponse(const absl::Status& s) {
  int status = 400;
  switch (s.code()) {
    case absl::StatusCode::kUnauthenticated:
      status = 401;
      break;
    case absl::StatusCode::kPermissionDenied:
      status = 403;
      break;
    case absl::StatusCode::kNotFound:
      status = 404;
      break;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      status = 409;
      break;
    case absl::StatusCode::kFailedPrecondition:
      // A release refused by the X.1368 checks (SIZE_MISMATCH, DIGEST_MISMATCH) stays a bad
      // request, its reason in `code`; 422 is for requests naming what root does not have.
      status = core::ReasonOf(s) == v1::REASON_UNSPECIFIED ? 422 : 400;
      break;
    case absl::StatusCode::kResourceExhausted:
      status = 413;
      break;
    case absl::StatusCode::kUnimplemented:
      // A request in a form root does not take; a manifest's unknown algorithm (which carries a
      // reason) stays a bad request.
      status = core::ReasonOf(s) == v1::REASON_UNSPECIFIED ? 415 : 400;
      break;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      status = 503;
      break;
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
      status = 500;
      break;
    default:
      break;
  }
  return ErrorBody({status, s, {}});
}

// `limit` of a list's query: 100 unless given, at most 1000 (as GET /v1/devices).
absl::StatusOr<size_t> LimitFrom(const std::string& value) {
  uint32_t limit = 0;
  if (!absl::SimpleAtoi(value, &limit)) {
    return absl::InvalidArgumentError(absl::StrCat("limit \"", value, "\" is not a number"));
  }
  return limit == 0 ? kDefaultPageSize : std::min(limit, kMaxPageSize);
}

// The parameters of a list (limit, after, and the filters in `filters`), each checked against
// that set: a misspelt filter is refused rather than silently ignored.
absl::StatusOr<std::map<std::string, std::string>> ListParams(
    const std::map<std::string, std::string>& params, std::vector<std::string> filters) {
  filters.push_back("limit");
  filters.push_back("after");
  for (const auto& [key, value] : params) {
    if (std::find(filters.begin(), filters.end(), key) == filters.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown parameter \"", key, "\" (this list takes ", absl::StrJoin(filters, ", "), ")"));
    }
  }
  return params;
}

// One page of `items` (already filtered and in list order): those after the item whose key is
// `after` (empty: from the first), at most `limit`; `next` is the last one's key when more
// follow. InvalidArgument for a cursor that names no item.
template <typename T, typename KeyFn>
absl::StatusOr<std::vector<T>> PageOf(const std::vector<T>& items, const KeyFn& key,
                                      const std::map<std::string, std::string>& params,
                                      std::string* next) {
  size_t limit = kDefaultPageSize;
  if (auto it = params.find("limit"); it != params.end()) {
    X1368_ASSIGN_OR_RETURN(limit, LimitFrom(it->second));
  }
  size_t begin = 0;
  if (auto it = params.find("after"); it != params.end() && !it->second.empty()) {
    auto found = std::find_if(items.begin(), items.end(),
                              [&](const T& item) { return key(item) == it->second; });
    if (found == items.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("after \"", it->second, "\" is not a cursor of this list"));
    }
    begin = static_cast<size_t>(found - items.begin()) + 1;
  }
  const size_t end = std::min(items.size(), begin + limit);
  next->clear();
  if (end < items.size()) *next = key(items[end - 1]);
  return std::vector<T>(items.begin() + begin, items.begin() + end);
}

v1::ReleaseInfo InfoOf(const Release& r) {
  v1::ReleaseInfo info;
  info.set_component(r.manifest.component());
  info.set_version(r.manifest.version());
  info.set_sequence_number(r.manifest.sequence_number());
  info.set_sha256_hex(core::HexEncode(r.manifest.sha256()));
  info.set_size(r.manifest.size());
  info.set_author_id(r.manifest.author_id());
  for (const auto& hw : r.manifest.hardware_classes()) info.add_hardware_classes(hw);
  return info;
}

// Runs `fn` on the event loop and waits for its result.
template <typename T>
absl::StatusOr<T> RunOnLoop(core::EventLoop* loop, std::function<absl::StatusOr<T>()> fn) {
  // The answer is set exactly once: by the task, or, when a stopping loop drops the task
  // unrun, by the last copy's destructor, so the waiting request gets "unavailable" rather than
  // a broken promise (an exception).
  class Answer {
   public:
    Answer() = default;
    Answer(const Answer&) = delete;
    Answer& operator=(const Answer&) = delete;
    ~Answer() {
      if (!set_) promise_.set_value(absl::UnavailableError("the root stopped before it answered"));
    }
    std::future<absl::StatusOr<T>> Future() { return promise_.get_future(); }
    void Set(absl::StatusOr<T> value) {
      promise_.set_value(std::move(value));
      set_ = true;
    }

   private:
    std::promise<absl::StatusOr<T>> promise_;
    bool set_ = false;
  };
  auto answer = std::make_shared<Answer>();
  auto future = answer->Future();
  loop->Post([answer, fn = std::move(fn)] { answer->Set(fn()); });
  if (future.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    return absl::UnavailableError("the root is shutting down or overloaded");
  }
  return future.get();
}

// Names of an upload's temporary file in images_dir (images are named by their digest in hex).
constexpr absl::string_view kUploadPrefix = "upload-";
constexpr absl::string_view kUploadSuffix = ".part";
// A signed manifest is a few hundred bytes to a few KiB (trackerctl author sign); the part is
// held in memory until it ends, so it is bounded.
constexpr size_t kMaxManifestPartBytes = 64 << 10;
// The image part reaches the file in pieces of this size.
constexpr size_t kImageWriteBytes = 64 << 10;

constexpr absl::string_view kFormHelp =
    "the form has a part \"manifest\" (the signed manifest, as trackerctl author sign writes "
    "it) and then a part \"image\" (the image): curl -F manifest=@fw.manifest -F image=@fw.bin";

// One POST /v1/releases body, part by part: the manifest part kept in memory and verified when it
// ends (by `check`, on root's loop), the image part written to a temporary file as it arrives,
// never beyond the size the manifest signed. The file is removed with the object unless it was
// renamed away first. Not thread-safe: one per request, on the HTTP thread.
class ReleaseUpload {
 public:
  using Check = std::function<absl::StatusOr<v1::Manifest>(const v1::SignedManifest&)>;

  ReleaseUpload(core::FileSystem* fs, std::string path, Check check)
      : fs_(fs), path_(std::move(path)), check_(std::move(check)) {}
  ~ReleaseUpload() {
    if (absl::Status s = fs_->Remove(path_); !s.ok()) {
      spdlog::error("event=release.upload_cleanup_failed path={} error={}", core::Quoted(path_),
                    core::Quoted(s.message()));
    }
  }
  ReleaseUpload(const ReleaseUpload&) = delete;
  ReleaseUpload& operator=(const ReleaseUpload&) = delete;

  absl::Status OnPart(const core::HttpFormPart& part) {
    if (current_ == Part::kManifest) X1368_RETURN_IF_ERROR(EndManifest());
    if (part.name == "manifest") {
      if (seen_manifest_) return Reject(v1::MALFORMED, "a second manifest part");
      seen_manifest_ = true;
      current_ = Part::kManifest;
      return absl::OkStatus();
    }
    if (part.name == "image") {
      if (!manifest_) {
        return Reject(
            v1::MALFORMED,
            absl::StrCat("the image part came without a manifest part before it; ", kFormHelp));
      }
      if (seen_image_) {
        return Reject(v1::MALFORMED, "a second image part");
      }
      seen_image_ = true;
      current_ = Part::kImage;
      return fs_->Truncate(path_, 0, 0600);
    }
    return Reject(v1::MALFORMED, absl::StrCat("unexpected part \"", part.name, "\"; ", kFormHelp));
  }

  absl::Status OnData(absl::string_view piece) {
    switch (current_) {
      case Part::kManifest:
        if (manifest_bytes_.size() + piece.size() > kMaxManifestPartBytes) {
          return absl::ResourceExhaustedError(
              absl::StrCat("the manifest part is over ", kMaxManifestPartBytes,
                           " bytes: it must be the signed manifest file (trackerctl author sign "
                           "--out), not the image"));
        }
        manifest_bytes_.append(piece.data(), piece.size());
        return absl::OkStatus();
      case Part::kImage:
        if (image_bytes_ + piece.size() > manifest_->size()) {
          return Reject(v1::SIZE_MISMATCH,
                        absl::StrCat("the image part is longer than the ", manifest_->size(),
                                     " bytes the manifest says"));
        }
        image_bytes_ += piece.size();
        pending_.append(piece.data(), piece.size());
        if (pending_.size() >= kImageWriteBytes) return Flush();
        return absl::OkStatus();
      case Part::kNone:
        break;
    }
    return absl::OkStatus();
  }

  // Once the whole body is read: both parts there, the image on disk and synced.
  absl::Status Finish() {
    if (current_ == Part::kManifest) X1368_RETURN_IF_ERROR(EndManifest());
    current_ = Part::kNone;
    if (!seen_manifest_)
      return Reject(v1::MALFORMED, absl::StrCat("no manifest part; ", kFormHelp));
    if (!seen_image_) return Reject(v1::MALFORMED, absl::StrCat("no image part; ", kFormHelp));
    X1368_RETURN_IF_ERROR(Flush());
    return fs_->Sync(path_);
  }

  const std::string& path() const { return path_; }
  const v1::SignedManifest& signed_manifest() const { return signed_manifest_; }
  const v1::Manifest& manifest() const { return *manifest_; }

 private:
  enum class Part { kNone, kManifest, kImage };

  absl::Status EndManifest() {
    current_ = Part::kNone;
    if (!signed_manifest_.ParseFromString(manifest_bytes_)) {
      return Reject(v1::MANIFEST_MALFORMED,
                    "the manifest part is not a signed manifest (as trackerctl author sign "
                    "writes it)");
    }
    std::string().swap(manifest_bytes_);
    X1368_ASSIGN_OR_RETURN(manifest_, check_(signed_manifest_));
    return absl::OkStatus();
  }

  absl::Status Flush() {
    if (pending_.empty()) return absl::OkStatus();
    X1368_RETURN_IF_ERROR(fs_->WriteRange(path_, written_, pending_));
    written_ += pending_.size();
    pending_.clear();
    return absl::OkStatus();
  }

  core::FileSystem* fs_;
  const std::string path_;
  const Check check_;
  Part current_ = Part::kNone;
  bool seen_manifest_ = false;
  bool seen_image_ = false;
  std::string manifest_bytes_;
  v1::SignedManifest signed_manifest_;
  std::optional<v1::Manifest> manifest_;
  uint64_t image_bytes_ = 0;  // received
  uint64_t written_ = 0;      // of them, on disk
  std::string pending_;
};

}  // namespace

Root::Root(RootOptions options, core::NodeContext* node, core::SqliteDb* db,
           core::Transport* downstream, core::EventLoop* loop)
    : opts_(std::move(options)),
      node_(node),
      db_(db),
      loop_(loop),
      links_(node, loop, /*upstream=*/nullptr, /*parent_id=*/"", downstream) {
  reports_ =
      node_->metrics().Counter("x1368_device_reports_total", "Device status reports recorded");
  chunks_served_ = node_->metrics().Counter("x1368_chunks_served_total", "Firmware chunks served");
  desired_resent_ = node_->metrics().Counter(
      "x1368_desired_resent_total", "Desired states sent again to a device that missed a campaign");
  verified_ = node_->metrics().Counter(
      "x1368_relayed_reports_verified_total",
      "Relayed device reports whose own signature root verified (outcomes, first contact)");
  vouched_ = node_->metrics().Counter(
      "x1368_relayed_reports_vouched_total",
      "Relayed device reports taken on the relaying gateway's signed word (progress)");
  // From well under a second (a device under root) to minutes (a gateway's batches, a device
  // that reports what it queued while its link was down).
  report_latency_ = node_->metrics().Histogram(
      "x1368_report_latency_seconds",
      "Time from a device signing a status report to root receiving it, in seconds (device "
      "clocks as they run: a skewed clock shows here)",
      {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900});
}

Root::~Root() { Stop(); }

absl::Status Root::Start() {
  X1368_RETURN_IF_ERROR(node_->fs().MakeDirs(opts_.images_dir, 0700));
  X1368_RETURN_IF_ERROR(RemoveStaleUploads());
  X1368_ASSIGN_OR_RETURN(registry_, Registry::Open(db_));
  registry_->ScanDevices("", [this](const v1::DeviceRecord& d) {
    index_.Put(d.device_id(),
               {d.via(), d.component(), d.version(), d.state(), !d.link_down(), d.report_digest()});
    return true;
  });
  // A database restored from a backup comes without its images (README: they are copied back
  // by hand): every release whose image is missing is named, or devices would only see
  // IMAGE_UNAVAILABLE.
  for (const Release& r : registry_->Releases()) {
    if (node_->fs().Exists(r.image_path)) continue;
    spdlog::error("event=release.image_missing component={} version={} path={} hint={}",
                  core::Quoted(r.manifest.component()), core::Quoted(r.manifest.version()),
                  core::Quoted(r.image_path),
                  core::Quoted("copy release.images_dir back from the backup"));
  }
  core::NodeLinks::Handlers h;
  h.from_child = [this](const core::Topic& t, const std::string& p, core::OpenedMessage m) {
    FromChild(t, p, std::move(m));
  };
  // A child that corrected its clock may have refused what it was sent before: again.
  h.resend_requested = [this](const std::string& child) { SendDesired(child); };
  X1368_RETURN_IF_ERROR(links_.Start(std::move(h)));
  gauges_ =
      node_->metrics().AddCollector(core::CollectedOnLoop(loop_, [this] { return Gauges(); }));
  if (!opts_.admin_listen.empty()) X1368_RETURN_IF_ERROR(StartAdminApi());
  return absl::OkStatus();
}

void Root::Stop() {
  if (admin_) {
    admin_->Stop();
    admin_.reset();
  }
  // Before the registry goes: a scrape waits for the gauges it is computing.
  if (gauges_ != 0) node_->metrics().RemoveCollector(gauges_);
  gauges_ = 0;
  if (registry_) {
    links_.Stop();
    if (absl::Status s = registry_->Commit(); !s.ok()) {
      spdlog::error("event=registry.commit_failed error={}", core::Quoted(s.message()));
    }
    registry_.reset();
  }
}

// ---------------------------------------------------------------------------------------------
// Firmware server and campaigns

absl::StatusOr<v1::Manifest> Root::CheckManifest(const v1::SignedManifest& sm) {
  // X.1368 §11.3 a, §11.4 a/c: only what an author trusted for the component signed is accepted.
  X1368_ASSIGN_OR_RETURN(v1::Manifest m, core::VerifyManifest(node_->trust(), sm));
  if (m.size() > opts_.max_image_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the manifest's image of ", m.size(), " bytes is over root's limit of ",
                     opts_.max_image_bytes, " bytes (release.max_image_bytes)"));
  }
  return m;
}

absl::StatusOr<v1::ReleaseInfo> Root::PublishRelease(const v1::ReleaseSubmission& sub) {
  X1368_ASSIGN_OR_RETURN(v1::Manifest m, CheckManifest(sub.manifest()));
  return AcceptRelease(sub.manifest(), m, core::DigestImage(sub.image(), m.chunk_size()),
                       [&](const std::string& image_path) {
                         return node_->fs().WriteAtomic(image_path, sub.image(), 0600);
                       });
}

absl::StatusOr<v1::ReleaseInfo> Root::AcceptRelease(const v1::SignedManifest& signed_manifest,
                                                    const v1::Manifest& m,
                                                    const core::ImageDigests& digests,
                                                    const StoreImage& store_image) {
  if (digests.size != m.size()) {
    return Reject(v1::SIZE_MISMATCH,
                  absl::StrCat("image has ", digests.size, " bytes, manifest says ", m.size()));
  }
  // The image's digest and its chunk table must both be what the author signed, or devices would
  // fail each chunk (or the whole image) only after downloading it.
  if (digests.sha256 != m.sha256()) {
    return Reject(v1::DIGEST_MISMATCH, "image digest differs from the signed manifest");
  }
  if (core::Sha256(digests.table) != m.chunk_table_sha256()) {
    return Reject(v1::DIGEST_MISMATCH, "image chunks differ from the signed chunk table");
  }
  v1::ReleaseInfo info;
  info.set_component(m.component());
  info.set_version(m.version());
  info.set_sequence_number(m.sequence_number());
  info.set_sha256_hex(core::HexEncode(m.sha256()));
  info.set_size(m.size());
  info.set_author_id(m.author_id());
  for (const auto& hw : m.hardware_classes()) info.add_hardware_classes(hw);
  // X.1368 §11.3 e: a version and a sequence number each name one release of a component, for
  // good. The same release submitted again (same image, same sequence number) is idempotent and
  // answers what is stored; anything else that reuses either is refused with a typed reason.
  if (auto existing = registry_->FindRelease(m.component(), m.version())) {
    if (existing->manifest.sha256() == m.sha256() &&
        existing->manifest.sequence_number() == m.sequence_number()) {
      info.set_sequence_number(existing->manifest.sequence_number());
      info.set_author_id(existing->manifest.author_id());
      info.clear_hardware_classes();
      for (const auto& hw : existing->manifest.hardware_classes()) info.add_hardware_classes(hw);
      return info;
    }
    return Reject(v1::RELEASE_VERSION_EXISTS,
                  absl::StrCat(m.component(), " ", m.version(), " is already released (sequence ",
                               existing->manifest.sequence_number(), ", sha256 ",
                               core::HexEncode(existing->manifest.sha256()).substr(0, 16),
                               "...); a new release needs a new version"));
  }
  for (const Release& r : registry_->Releases()) {
    if (r.manifest.component() == m.component() &&
        r.manifest.sequence_number() == m.sequence_number()) {
      return Reject(v1::RELEASE_SEQUENCE_EXISTS,
                    absl::StrCat("sequence number ", m.sequence_number(), " of ", m.component(),
                                 " already belongs to release ", r.manifest.version(),
                                 "; a new release needs a higher sequence number"));
    }
  }
  Release release{signed_manifest, m, absl::StrCat(opts_.images_dir, "/", info.sha256_hex())};
  X1368_RETURN_IF_ERROR(
      node_->fs().WriteAtomic(core::ChunkTablePath(release.image_path), digests.table, 0600));
  X1368_RETURN_IF_ERROR(store_image(release.image_path));
  X1368_RETURN_IF_ERROR(registry_->AddRelease(release));
  spdlog::info("event=release.published component={} version={} sequence={} author={}",
               core::Quoted(m.component()), core::Quoted(m.version()), m.sequence_number(),
               core::Quoted(m.author_id()));
  return info;
}

absl::StatusOr<v1::ReleaseInfo> Root::PublishUpload(core::HttpBodyReader& body) {
  // The manifest is verified on the loop as soon as its part ends: the image part is then bounded
  // by the signed size, and an unsigned submission is refused before any image byte is stored.
  ReleaseUpload upload(
      &node_->fs(),
      absl::StrCat(opts_.images_dir, "/", kUploadPrefix, uploads_.fetch_add(1), kUploadSuffix),
      [this](const v1::SignedManifest& sm) {
        return RunOnLoop<v1::Manifest>(loop_, [this, sm] { return CheckManifest(sm); });
      });
  X1368_RETURN_IF_ERROR(
      body.ReadForm([&](const core::HttpFormPart& part) { return upload.OnPart(part); },
                    [&](absl::string_view piece) { return upload.OnData(piece); }));
  X1368_RETURN_IF_ERROR(upload.Finish());
  // Read back here, off the loop: the digests cost time, in bounded memory.
  X1368_ASSIGN_OR_RETURN(
      core::ImageDigests digests,
      core::DigestImageFile(node_->fs(), upload.path(), upload.manifest().chunk_size()));
  // Everything the loop's task uses is its own: if the wait gives up, the task may still run.
  return RunOnLoop<v1::ReleaseInfo>(loop_, [this, signed_manifest = upload.signed_manifest(),
                                            manifest = upload.manifest(),
                                            digests = std::move(digests), path = upload.path()] {
    // The file was synced (Finish): the rename makes the release durable.
    return AcceptRelease(signed_manifest, manifest, digests, [&](const std::string& image_path) {
      return node_->fs().Rename(path, image_path);
    });
  });
}

absl::Status Root::RemoveStaleUploads() {
  X1368_ASSIGN_OR_RETURN(std::vector<std::string> names, node_->fs().List(opts_.images_dir));
  int removed = 0;
  for (const std::string& name : names) {
    // An upload's file, or what a WriteAtomic left when the process died inside it.
    bool upload = absl::StartsWith(name, kUploadPrefix) && absl::EndsWith(name, kUploadSuffix);
    if (!upload && !absl::EndsWith(name, ".tmp")) continue;
    X1368_RETURN_IF_ERROR(node_->fs().Remove(absl::StrCat(opts_.images_dir, "/", name)));
    ++removed;
  }
  if (removed > 0) spdlog::info("event=release.stale_uploads_removed count={}", removed);
  return absl::OkStatus();
}

absl::StatusOr<v1::CampaignInfo> Root::StartCampaign(const v1::CampaignStartRequest& req) {
  // Well-formed requests that name what root does not have are FailedPrecondition (HTTP 422):
  // a campaign for an unknown device would wait for it forever, silently.
  std::optional<Release> release = registry_->FindRelease(req.component(), req.version());
  if (!release) {
    return absl::FailedPreconditionError(absl::StrCat("no release ", core::Quote(req.version()),
                                                      " of ", core::Quote(req.component()),
                                                      " (trackerctl get releases lists them)"));
  }
  for (const std::string& d : req.devices()) {
    X1368_RETURN_IF_ERROR(core::ValidateNodeId(d, "device id"));
    const v1::DeviceRecord* known = registry_->FindDevice(d);
    if (known == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("no device ", d, " has reported to root (trackerctl get devices)"));
    }
    if (known->component() != req.component()) {
      return absl::FailedPreconditionError(absl::StrCat("device ", d, " runs ",
                                                        core::Quote(known->component()), ", not ",
                                                        core::Quote(req.component())));
    }
  }
  constexpr int64_t kMaxDeadlineS = 365LL * 86400;
  if (req.deadline_s() < 0 || req.deadline_s() > kMaxDeadlineS) {
    return absl::InvalidArgumentError(absl::StrCat("deadline_s must be within 0..", kMaxDeadlineS));
  }
  int64_t now = node_->clock().NowMs();
  int64_t ttl = req.deadline_s() > 0 ? req.deadline_s() * 1000 : opts_.default_deadline_ms;
  v1::CampaignInfo info;
  info.set_campaign_id(
      absl::StrCat(req.component(), "-", req.version(), "-", registry_->campaign_count() + 1));
  info.set_component(req.component());
  info.set_version(req.version());
  info.set_started_at_ms(now);
  info.set_state("active");
  info.set_expires_at_ms(now + ttl);
  for (const std::string& dev : req.devices()) info.add_devices(dev);

  v1::Body body;
  v1::UpdateDirective* d = body.mutable_directive();
  d->set_campaign_id(info.campaign_id());
  *d->mutable_manifest() = release->signed_manifest;
  d->mutable_selector()->set_component(req.component());
  for (const std::string& dev : req.devices()) d->mutable_selector()->add_devices(dev);
  d->set_deadline_ms(now + ttl);
  X1368_ASSIGN_OR_RETURN(std::string envelope, node_->sealer().Seal(core::kAllChildren, body, ttl));
  v1::Envelope env;
  env.ParseFromString(envelope);
  Campaign campaign{info, envelope, core::Sha256(env.body()), now + ttl};
  // Persisted before anything is sent: what was announced is never forgotten by a crash.
  X1368_RETURN_IF_ERROR(registry_->AddCampaign(campaign));
  X1368_RETURN_IF_ERROR(links_.ForwardToChildren(envelope));
  v1::Body go;
  go.mutable_go()->set_campaign_id(info.campaign_id());
  go.mutable_go()->set_directive_digest(campaign.directive_digest);
  go.mutable_go()->set_chunk_window(ChildWindow());
  X1368_RETURN_IF_ERROR(links_.Broadcast(std::move(go)));
  for (const v1::NodeRecord& n : registry_->Nodes()) {
    if (!n.online()) SendDesired(n.node_id());
  }
  spdlog::info("event=campaign.started campaign={} component={} version={}",
               core::Quoted(info.campaign_id()), core::Quoted(req.component()),
               core::Quoted(req.version()));
  return info;
}

void Root::SendDesired(const std::string& child) {
  std::vector<core::ActiveDirective> active;
  for (const Campaign& c : registry_->ActiveCampaigns(node_->clock().NowMs())) {
    active.push_back(
        {c.info.campaign_id(), c.directive_envelope, c.directive_digest, c.expires_at_ms});
  }
  if (absl::Status s = links_.SendDesiredState(child, active, ChildWindow()); !s.ok()) {
    spdlog::warn("event=desired.send_failed child={} error={}", core::Quoted(child),
                 core::Quoted(s.message()));
  }
}

uint32_t Root::ChildWindow() {
  return core::ChunkWindowFor(registry_->direct_child_count(), opts_.downstream_queue,
                              kMaxChildWindow);
}

void Root::ServeChunk(const std::string& child, const v1::FirmwareChunkRequest& req) {
  auto refuse = [&](const v1::FirmwareChunkRequest& what, const absl::Status& why) {
    v1::Body body;
    *body.mutable_chunk_response() = core::ChunkError(what, core::ReasonOf(why));
    (void)links_.SendDown(child, Channel::kFw, std::move(body));
  };
  std::optional<Release> r = registry_->FindReleaseByDigest(req.image_sha256());
  if (!r) return refuse(req, core::Reject(v1::IMAGE_UNAVAILABLE, "no such release"));
  const std::string path = req.table() ? core::ChunkTablePath(r->image_path) : r->image_path;
  const uint64_t size = req.table()
                            ? core::ChunkTableBytes(r->manifest.size(), r->manifest.chunk_size())
                            : r->manifest.size();
  // A batch is answered a chunk at a time, each chunk as if it had been asked for alone.
  absl::StatusOr<std::vector<v1::FirmwareChunkRequest>> parts = core::SplitChunkRequest(req, size);
  if (!parts.ok()) return refuse(req, parts.status());
  for (const v1::FirmwareChunkRequest& part : *parts) {
    absl::StatusOr<v1::ChunkData> data = core::ReadChunk(node_->fs(), path, size, part);
    // The refusal ends the child's fetch: the rest of the batch would go unread.
    if (!data.ok()) return refuse(part, data.status());
    chunks_served_->Add();
    (void)links_.SendData(child, *data);
  }
}

// ---------------------------------------------------------------------------------------------
// From the children

void Root::SetNodeOnline(const std::string& id, bool online) {
  v1::NodeRecord n = registry_->Node(id).value_or(v1::NodeRecord());
  n.set_node_id(id);
  n.set_via(id);  // presence comes from root's own children only
  n.set_online(online);
  n.set_updated_at_ms(node_->clock().NowMs());
  registry_->StageNode(n);
  ScheduleCommit();
}

void Root::FromChild(const core::Topic& topic, const std::string& payload, core::OpenedMessage m) {
  (void)payload;
  const v1::Body& body = m.body;
  switch (body.message_case()) {
    case v1::Body::kPresence:
      if (topic.channel != Channel::kPresence) break;
      SetNodeOnline(topic.child, body.presence().online());
      if (body.presence().online()) SendDesired(topic.child);
      return;
    case v1::Body::kStatus:
      if (topic.channel != Channel::kStatus) break;
      if (body.status().device_id() != m.body.sender()) {
        return links_.Reject(Reject(v1::SENDER_MISMATCH, "report names another device"),
                             topic.ToString());
      }
      ObserveLatency(m);
      return Record(body.status(), *m.signer, topic.child, "");
    case v1::Body::kStatusBatch:
      if (topic.channel != Channel::kStatus) break;
      return RecordBatch(topic.child, m);
    case v1::Body::kChunkRequest:
      if (topic.channel != Channel::kFw) break;
      return ServeChunk(topic.child, body.chunk_request());
    case v1::Body::kDeviceDetail: {
      if (topic.channel != Channel::kStatus) break;
      auto it = live_queries_.find(body.device_detail().nonce());
      if (it == live_queries_.end()) {
        return links_.Reject(Reject(v1::UNKNOWN_TYPE, "an answer to no query of root's"),
                             "device_detail");
      }
      it->second->detail = body.device_detail();
      it->second->answered.Notify();
      live_queries_.erase(it);
      return;
    }
    default:
      break;
  }
  links_.Reject(Reject(v1::UNKNOWN_TYPE, "unexpected message from a child"), topic.ToString());
}

absl::StatusOr<v1::DeviceLiveView> Root::ShowDeviceLive(const std::string& id,
                                                        absl::Duration timeout) {
  X1368_RETURN_IF_ERROR(core::ValidateNodeId(id, "device id"));
  const std::string nonce = core::RandomBytes(16);
  auto query = RunOnLoop<std::shared_ptr<LiveQuery>>(
      loop_, [&]() -> absl::StatusOr<std::shared_ptr<LiveQuery>> {
        const v1::DeviceRecord* d = registry_->FindDevice(id);
        if (d == nullptr) return absl::NotFoundError(absl::StrCat("no device ", id));
        if (d->via() == d->device_id()) {
          return absl::FailedPreconditionError(
              absl::StrCat("device ", id,
                           " reports to root directly: no gateway to ask (its record is all "
                           "root has)"));
        }
        v1::Body body;
        body.mutable_device_probe()->set_device_id(id);
        body.mutable_device_probe()->set_nonce(nonce);
        X1368_RETURN_IF_ERROR(links_.SendDown(d->via(), Channel::kCmd, std::move(body)));
        auto q = std::make_shared<LiveQuery>();
        live_queries_[nonce] = q;
        return q;
      });
  if (!query.ok()) return query.status();
  const bool answered = (*query)->answered.WaitForNotificationWithTimeout(timeout);
  return RunOnLoop<v1::DeviceLiveView>(loop_, [&]() -> absl::StatusOr<v1::DeviceLiveView> {
    live_queries_.erase(nonce);
    if (!answered) {
      return absl::DeadlineExceededError(absl::StrCat("no answer from the gateways on the path of ",
                                                      id, " within ",
                                                      absl::FormatDuration(timeout)));
    }
    v1::DeviceLiveView view;
    std::optional<v1::DeviceRecord> record = ShowDevice(*registry_, id, LivenessNow());
    if (record) *view.mutable_record() = *record;
    *view.mutable_detail() = (*query)->detail;
    if (view.detail().error() != v1::REASON_UNSPECIFIED) return view;
    // The device's own signature, under root's trust, for the device asked about.
    v1::Envelope env;
    v1::Body body;
    absl::Status s;
    if (!env.ParseFromString(view.detail().report()) || env.signer_id() != id) {
      s = Reject(v1::MALFORMED, "the answer's report is not an envelope of the device");
    } else if (auto signer = node_->trust().Resolve(
                   env.signer_id(), env.has_signer_cert() ? &env.signer_cert() : nullptr,
                   /*check_validity=*/true);
               !signer.ok()) {
      s = signer.status();
    } else if (!(*signer)->key.Verify(core::SignedKind::kEnvelopeBody, env.body(),
                                      env.signature())) {
      s = Reject(v1::BAD_SIGNATURE, "the device's signature does not verify");
    } else if (!body.ParseFromString(env.body()) || !body.has_status() ||
               body.status().device_id() != id || body.sender() != id) {
      s = Reject(v1::MALFORMED, "the signed body is not the device's report");
    }
    view.set_report_verified(s.ok());
    view.set_report_error(std::string(s.message()));
    view.set_matches_root(s.ok() && record &&
                          core::ReportDigest(body.status()) == record->report_digest());
    return view;
  });
}

namespace {

uint64_t CountOf(const google::protobuf::RepeatedPtrField<v1::ReasonCount>& counts,
                 v1::Reason reason) {
  for (const v1::ReasonCount& rc : counts) {
    if (rc.reason() == reason) return rc.count();
  }
  return 0;
}

}  // namespace

void Root::WarnIfRefusingParent(const std::string& id, const std::string& via,
                                const google::protobuf::RepeatedPtrField<v1::ReasonCount>& before,
                                const google::protobuf::RepeatedPtrField<v1::ReasonCount>& now) {
  uint64_t replays = CountOf(now, v1::REPLAY);
  // Counters restart with the node: any count above the last one seen is news.
  if (replays == 0 || replays == CountOf(before, v1::REPLAY)) return;
  spdlog::warn(
      "event=child.refuses_parent node={} via={} reason=REPLAY count={} hint={}", core::Quoted(id),
      core::Quoted(via), replays,
      core::Quoted("it drops its parent's messages as replays: the parent's sequence numbers "
                   "went back (its store was lost or put back from a copy); see trackerctl "
                   "fleet status"));
}

void Root::WarnOfSignals(const v1::DeviceRecord& d, const v1::DeviceRecord* before) {
  // An update that failed or was rolled back is for an operator to act on (issue #16): said
  // once, when the device's report first shows it, with the campaign and the reason.
  const bool bad = d.state() == v1::FAILED || d.state() == v1::ROLLED_BACK;
  if (bad && (before == nullptr || before->state() != d.state() ||
              before->campaign_id() != d.campaign_id())) {
    spdlog::warn(
        "event=device.update_failed device={} path={} campaign={} state={} reason={} "
        "detail={}",
        core::Quoted(d.device_id()), core::Quoted(d.path()), core::Quoted(d.campaign_id()),
        v1::UpdateState_Name(d.state()), core::ReasonName(d.reason()), core::Quoted(d.detail()));
  }
  // X.1368 §11.1 a.iv: a device that asks for an update; said once, when it starts asking.
  if (!d.needs_update().empty() && (before == nullptr || before->needs_update().empty())) {
    spdlog::warn("event=device.needs_update device={} via={} version={} why={}",
                 core::Quoted(d.device_id()), core::Quoted(d.via()), core::Quoted(d.version()),
                 core::Quoted(d.needs_update()));
  }
  // A device running an image newer than any release root knows for it (installed by other
  // means, or a release lost with root's store): a trigger to look. Judged when what it runs
  // changes, not at every report.
  if (before != nullptr && before->sequence_number() == d.sequence_number() &&
      before->component() == d.component()) {
    return;
  }
  const LatestReleases latest(registry_->Releases());
  const v1::Manifest* newest = latest.For(d.component(), d.hardware_class());
  if (newest != nullptr && d.sequence_number() > newest->sequence_number()) {
    spdlog::warn(
        "event=device.ahead_of_root device={} via={} component={} version={} sequence={} "
        "newest_release={} hint={}",
        core::Quoted(d.device_id()), core::Quoted(d.via()), core::Quoted(d.component()),
        core::Quoted(d.version()), d.sequence_number(), core::Quoted(newest->version()),
        core::Quoted("it runs an image root never released for it; see trackerctl fleet status "
                     "--ahead"));
  }
}

bool Root::NeedsDeviceSignature(const v1::Body& body, const std::string& via) const {
  if (opts_.verify_relayed_all || !body.has_status()) return true;
  const v1::StatusReport& r = body.status();
  // Evidence is never taken on a gateway's word: what a device ended in, what it asks for.
  if (core::IsEvidence(r)) return true;
  // Nor who it is and where: its first report through this gateway, or one that is not a
  // device's (a gateway's own report relayed from below).
  const v1::DeviceRecord* d = registry_->FindDevice(r.device_id());
  if (d == nullptr || d->via() != via) return true;
  // Nor what it runs, when that changes outside a campaign's steps.
  const bool in_campaign = r.state() >= v1::OFFERED && r.state() <= v1::TRIAL_BOOT;
  return !in_campaign &&
         (d->sequence_number() != r.sequence_number() || d->component() != r.component());
}

void Root::RecordBatch(const std::string& via, const core::OpenedMessage& m) {
  // Each report is checked for its signer's certificate, its place in the relaying gateway's
  // subtree and its sequence numbers; its own signature as NeedsDeviceSignature says.
  links_.ForEachRelayedReport(
      m,
      [&](const std::string&, const core::OpenedMessage& r, const std::string& path) {
        (r.verified ? verified_ : vouched_)->Add();
        ObserveLatency(r);
        Record(r.body.status(), *r.signer, via, core::JoinPath(via, path), r.verified ? "" : via);
      },
      [this, &via](const v1::Body& body) { return NeedsDeviceSignature(body, via); });
  const v1::StatusBatch& b = m.body.status_batch();
  for (const v1::ChildLiveness& l : b.liveness()) RecordLiveness(via, l);
  if (b.has_summary()) CheckSummary(via, b.summary());
}

void Root::RecordLiveness(const std::string& via, const v1::ChildLiveness& l) {
  if (!core::IsValidNodeId(l.node_id()) || !core::ValidatePath(l.path()).ok()) {
    return links_.Reject(Reject(v1::MALFORMED, "liveness of an invalid node or path"),
                         "batch.liveness");
  }
  const std::string path = core::JoinPath(via, l.path());
  if (const v1::DeviceRecord* d = registry_->FindDevice(l.node_id())) {
    // Only the gateway the device reports through speaks for it; a device that moved is still
    // missed by its old gateway, which is news of nothing.
    if (d->via() != via) return;
    if (d->link_down() == !l.online()) return;
    v1::DeviceRecord updated = *d;
    updated.set_link_down(!l.online());
    registry_->StageDevice(updated);
    index_.SetOnline(l.node_id(), l.online());
    ScheduleCommit();
    return;
  }
  if (l.node_id() == via) return;  // a gateway's own presence comes to root directly
  // Nodes below a gateway are known from their own reports, which come first.
  v1::NodeRecord n = registry_->Node(l.node_id()).value_or(v1::NodeRecord());
  if (n.node_id().empty() || n.via() != via) {
    return links_.Reject(
        Reject(v1::OUT_OF_SCOPE, "liveness of a node root does not know under this gateway"),
        "batch.liveness");
  }
  n.set_node_id(l.node_id());
  n.set_via(via);
  n.set_path(path);
  n.set_online(l.online());
  n.set_updated_at_ms(node_->clock().NowMs());
  registry_->StageNode(n);
  ScheduleCommit();
}

void Root::CheckSummary(const std::string& via, const v1::SubtreeSummary& summary) {
  const v1::SubtreeSummary mine = index_.SummaryOf(via);
  const bool same = core::SubtreeIndex::Same(mine, summary);
  const int64_t now = node_->clock().NowMs();
  v1::NodeRecord n = registry_->Node(via).value_or(v1::NodeRecord());
  n.set_node_id(via);
  if (n.via().empty()) n.set_via(via);
  n.set_summary_at_ms(now);
  n.set_summary_devices(summary.devices());
  n.set_summary_matches(same);
  if (!same) n.set_summary_mismatches(n.summary_mismatches() + 1);
  registry_->StageNode(n);
  ScheduleCommit();
  if (!resync_.Compared(via, same, now)) return;
  node_->metrics().CountRejection(v1::SUMMARY_MISMATCH);
  spdlog::warn(
      "event=subtree.mismatch gateway={} its_devices={} root_devices={} hint={}", core::Quoted(via),
      summary.devices(), mine.devices(),
      core::Quoted("root's view of the gateway's subtree differs from the gateway's: its whole "
                   "subtree is asked again"));
  v1::Body body;
  body.mutable_status_request()->set_full(true);
  if (absl::Status s = links_.SendDown(via, Channel::kCmd, std::move(body)); !s.ok()) {
    spdlog::warn("event=status_request.send_failed child={} error={}", core::Quoted(via),
                 core::Quoted(s.message()));
  }
}

void Root::Record(const v1::StatusReport& r, const core::Identity& signer, const std::string& via,
                  const std::string& path, const std::string& vouched_by) {
  if (absl::Status s = core::ValidateReport(r, signer.role == v1::ROLE_CLIENT); !s.ok()) {
    return links_.Reject(Reject(v1::MALFORMED, s.message()), "report");
  }
  int64_t now = node_->clock().NowMs();
  if (signer.role == v1::ROLE_INTERMEDIATE) {
    v1::NodeRecord n = registry_->Node(r.device_id()).value_or(v1::NodeRecord());
    WarnIfRefusingParent(r.device_id(), via, n.parent_rejections(), r.parent_rejections());
    n.set_node_id(r.device_id());
    n.set_via(via);
    n.set_path(path);
    n.set_updated_at_ms(now);
    if (via != r.device_id()) n.set_online(true);  // cascaded: alive if it reports
    n.mutable_rejections()->CopyFrom(r.rejections());
    n.mutable_parent_rejections()->CopyFrom(r.parent_rejections());
    n.set_clock_offset_ms(r.clock_offset_ms());
    registry_->StageNode(n);
  } else {
    // Read before StageDevice() overwrites it.
    const v1::DeviceRecord* before = registry_->FindDevice(r.device_id());
    WarnIfRefusingParent(r.device_id(), via,
                         before ? before->parent_rejections()
                                : google::protobuf::RepeatedPtrField<v1::ReasonCount>(),
                         r.parent_rejections());
    v1::DeviceRecord d;
    // A report is its gateway's word that it is online; a liveness entry says otherwise.
    d.set_link_down(false);
    d.set_report_digest(core::ReportDigest(r));
    d.set_vouched_by(vouched_by);
    d.set_device_id(r.device_id());
    d.set_via(via);
    d.set_path(path);
    d.set_component(r.component());
    d.set_version(r.version());
    d.set_sequence_number(r.sequence_number());
    d.set_hardware_class(r.hardware_class());
    d.set_campaign_id(r.campaign_id());
    d.set_state(r.state());
    d.set_reason(r.reason());
    d.set_detail(r.detail());
    d.set_updated_at_ms(now);
    d.mutable_rejections()->CopyFrom(r.rejections());
    d.mutable_parent_rejections()->CopyFrom(r.parent_rejections());
    d.set_clock_offset_ms(r.clock_offset_ms());
    d.set_needs_update(r.needs_update());
    WarnOfSignals(d, before);
    index_.Put(d.device_id(),
               {via, d.component(), d.version(), d.state(), true, d.report_digest()});
    registry_->StageDevice(d);
    reports_->Add();
    if (via == r.device_id()) {
      // A device of ours directly: did it miss an active campaign (a lost directive or go)?
      int64_t newest = 0;
      bool in_active = false;
      for (const Campaign& c : registry_->ActiveCampaigns(now)) {
        in_active = in_active || c.info.campaign_id() == r.campaign_id();
        // Only campaigns for its component and hardware class: one it would refuse is not
        // one it missed.
        if (c.info.component() != r.component()) continue;
        std::optional<Release> release =
            registry_->FindRelease(c.info.component(), c.info.version());
        const auto& classes = release ? release->manifest.hardware_classes()
                                      : google::protobuf::RepeatedPtrField<std::string>();
        if (std::find(classes.begin(), classes.end(), r.hardware_class()) == classes.end()) {
          continue;
        }
        newest = std::max(newest, c.info.started_at_ms());
      }
      bool behind = newest > 0 && (!in_active || r.state() == v1::OFFERED);
      if (newest > 0 && catch_up_.OnReport(r.device_id(), behind, now, newest)) {
        spdlog::info("event=desired.resent child={} campaign={} state={}",
                     core::Quoted(r.device_id()), core::Quoted(r.campaign_id()),
                     v1::UpdateState_Name(r.state()));
        desired_resent_->Add();
        SendDesired(r.device_id());
      }
    }
  }
  ScheduleCommit();
}

void Root::ScheduleCommit() { commit_.Schedule(); }

void Root::CommitStaged() {
  if (!registry_) return;
  if (absl::Status s = registry_->Commit(); !s.ok()) {
    node_->metrics().CountRejection(v1::STORAGE_ERROR);
    spdlog::error("event=registry.commit_failed error={}", core::Quoted(s.message()));
  }
}

Liveness Root::LivenessNow() const {
  return Liveness{node_->clock().NowMs(), opts_.device_stale_after_ms};
}

absl::StatusOr<std::string> Root::Backup() {
  X1368_RETURN_IF_ERROR(registry_->Commit());
  X1368_ASSIGN_OR_RETURN(std::string bytes, db_->Snapshot());
  spdlog::info("event=backup.taken bytes={}", bytes.size());
  return bytes;
}

v1::FleetStatus Root::Fleet() const {
  v1::FleetStatus f;
  int64_t now = node_->clock().NowMs();
  const Liveness liveness{now, opts_.device_stale_after_ms};
  for (v1::DeviceRecord& d : registry_->Devices()) {
    d.set_online(DeviceOnline(*registry_, d, liveness));
    *f.add_devices() = std::move(d);
  }
  for (const v1::NodeRecord& n : registry_->Nodes()) *f.add_nodes() = n;
  for (const v1::CampaignInfo& c : registry_->Campaigns()) *f.add_campaigns() = c;
  for (const Release& r : registry_->Releases()) {
    v1::ReleaseInfo* info = f.add_releases();
    info->set_component(r.manifest.component());
    info->set_version(r.manifest.version());
    info->set_sequence_number(r.manifest.sequence_number());
    info->set_sha256_hex(core::HexEncode(r.manifest.sha256()));
    info->set_size(r.manifest.size());
    info->set_author_id(r.manifest.author_id());
    for (const auto& hw : r.manifest.hardware_classes()) info->add_hardware_classes(hw);
  }
  for (const v1::ReasonCount& rc : node_->metrics().RejectionCounts()) *f.add_rejections() = rc;
  return f;
}

// ---------------------------------------------------------------------------------------------
// Metrics (README "Metrics"): what root holds anyway, counted when scraped.

namespace {

const char* Bool(bool b) { return b ? "true" : "false"; }

// The devices a campaign's directive names; empty: every device of its component.
std::set<std::string> SelectedDevices(const Campaign& c) {
  v1::Envelope env;
  v1::Body body;
  if (!env.ParseFromString(c.directive_envelope) || !body.ParseFromString(env.body())) return {};
  const auto& devices = body.directive().selector().devices();
  return {devices.begin(), devices.end()};
}

// Where a device stands in a campaign that targets it.
const char* CampaignStatus(const v1::DeviceRecord& d, const std::string& campaign_id) {
  if (d.campaign_id() != campaign_id) return "pending";
  switch (d.state()) {
    case v1::CONFIRMED:
      return "confirmed";
    case v1::FAILED:
    case v1::ROLLED_BACK:
    case v1::DECLINED:
      return "failed";
    case v1::OFFERED:
    case v1::DOWNLOADING:
    case v1::DOWNLOADED:
    case v1::VERIFIED:
    case v1::INSTALLING:
    case v1::TRIAL_BOOT:
      return "updating";
    default:
      return "pending";
  }
}

}  // namespace

void Root::ObserveLatency(const core::OpenedMessage& report) {
  if (report.signer == nullptr || report.signer->role != v1::ROLE_CLIENT) return;
  const int64_t ms = node_->clock().NowMs() - report.body.issued_at_ms();
  // A device clock ahead of root's would make it negative: it counts as immediate.
  report_latency_->Observe(std::max<int64_t>(ms, 0) / 1000.0);
}

core::Metrics::Families Root::Gauges() const {
  if (registry_ == nullptr) return {};
  return {DeviceGauge(), NodeGauge(), CampaignGauge()};
}

prometheus::MetricFamily Root::DeviceGauge() const {
  prometheus::MetricFamily f = core::Family(
      "x1368_devices",
      "Devices root knows, by first-level subtree (root's child gateway they report through, or "
      "\"direct\"), component, running version, update state and whether online (their link)",
      prometheus::MetricType::Gauge);
  // Devices directly under root are each their own hop: one "direct" series for all of them.
  std::map<core::Metrics::Labels, uint64_t> counts;
  for (const std::string& hop : index_.Hops()) {
    const std::string subtree = index_.Find(hop) != nullptr ? "direct" : hop;
    const v1::SubtreeSummary summary = index_.SummaryOf(hop);
    for (const v1::SummaryCount& c : summary.counts()) {
      counts[{{"subtree", subtree},
              {"component", c.component()},
              {"version", c.version()},
              {"state", v1::UpdateState_Name(c.state())},
              {"online", Bool(c.online())}}] += c.devices();
    }
  }
  for (const auto& [labels, n] : counts) core::AddSample(&f, labels, static_cast<double>(n));
  return f;
}

prometheus::MetricFamily Root::NodeGauge() const {
  prometheus::MetricFamily f =
      core::Family("x1368_nodes", "Tracker nodes (gateways) root knows, by whether online",
                   prometheus::MetricType::Gauge);
  uint64_t online = 0, offline = 0;
  for (const v1::NodeRecord& n : registry_->Nodes()) {
    // Devices directly under root have a node record too (their presence): not tracker nodes.
    if (registry_->FindDevice(n.node_id()) != nullptr) continue;
    ++(n.online() ? online : offline);
  }
  core::AddSample(&f, {{"online", "true"}}, static_cast<double>(online));
  core::AddSample(&f, {{"online", "false"}}, static_cast<double>(offline));
  return f;
}

prometheus::MetricFamily Root::CampaignGauge() const {
  prometheus::MetricFamily f = core::Family(
      "x1368_campaign_devices",
      "Devices an active campaign targets (status=\"targeted\"), and of them how many are "
      "pending, updating, confirmed or failed (FAILED, ROLLED_BACK or DECLINED)",
      prometheus::MetricType::Gauge);
  for (const Campaign& c : registry_->ActiveCampaigns(node_->clock().NowMs())) {
    const std::set<std::string> selected = SelectedDevices(c);
    std::optional<Release> release = registry_->FindRelease(c.info.component(), c.info.version());
    if (!release) continue;
    const auto& classes = release->manifest.hardware_classes();
    std::map<std::string, uint64_t> by_status = {
        {"targeted", 0}, {"pending", 0}, {"updating", 0}, {"confirmed", 0}, {"failed", 0}};
    registry_->ScanDevices("", [&](const v1::DeviceRecord& d) {
      if (d.component() != c.info.component()) return true;
      if (!selected.empty() && !selected.contains(d.device_id())) return true;
      if (std::find(classes.begin(), classes.end(), d.hardware_class()) == classes.end()) {
        return true;
      }
      ++by_status["targeted"];
      ++by_status[CampaignStatus(d, c.info.campaign_id())];
      return true;
    });
    for (const auto& [status, n] : by_status) {
      core::AddSample(&f,
                      {{"campaign", c.info.campaign_id()},
                       {"component", c.info.component()},
                       {"version", c.info.version()},
                       {"status", status}},
                      static_cast<double>(n));
    }
  }
  return f;
}

// ---------------------------------------------------------------------------------------------
// Admin API (docs/architecture.md §10)

std::vector<v1::CampaignInfo> Root::CampaignsNow() const {
  const int64_t now = node_->clock().NowMs();
  std::set<std::string> active;
  for (const Campaign& c : registry_->ActiveCampaigns(now)) active.insert(c.info.campaign_id());
  std::vector<v1::CampaignInfo> out = registry_->Campaigns();
  for (v1::CampaignInfo& c : out) c.set_state(active.count(c.campaign_id()) ? "active" : "expired");
  std::sort(out.begin(), out.end(), [](const v1::CampaignInfo& a, const v1::CampaignInfo& b) {
    return std::make_tuple(a.started_at_ms(), a.campaign_id()) <
           std::make_tuple(b.started_at_ms(), b.campaign_id());
  });
  return out;
}

v1::CampaignInfo Root::WithProgress(v1::CampaignInfo c) const {
  std::map<v1::UpdateState, uint64_t> states;
  for (const v1::DeviceRecord& d : registry_->Devices()) {
    if (d.campaign_id() == c.campaign_id()) ++states[d.state()];
  }
  for (const auto& [state, n] : states) {
    v1::StateCount* count = c.add_progress();
    count->set_state(state);
    count->set_devices(n);
  }
  return c;
}

absl::StatusOr<v1::ReleasePage> Root::ListReleases(
    const std::map<std::string, std::string>& query) const {
  X1368_ASSIGN_OR_RETURN(auto params, ListParams(query, {"component"}));
  std::vector<v1::ReleaseInfo> all;
  for (const Release& r : registry_->Releases()) {
    if (params.count("component") && r.manifest.component() != params["component"]) continue;
    all.push_back(InfoOf(r));
  }
  std::sort(all.begin(), all.end(), [](const v1::ReleaseInfo& a, const v1::ReleaseInfo& b) {
    return std::make_tuple(a.component(), a.sequence_number()) <
           std::make_tuple(b.component(), b.sequence_number());
  });
  v1::ReleasePage page;
  auto key = [](const v1::ReleaseInfo& r) { return absl::StrCat(r.component(), "/", r.version()); };
  X1368_ASSIGN_OR_RETURN(std::vector<v1::ReleaseInfo> items,
                         PageOf(all, key, params, page.mutable_next_after()));
  for (v1::ReleaseInfo& r : items) *page.add_releases() = std::move(r);
  return page;
}

absl::StatusOr<v1::CampaignPage> Root::ListCampaigns(
    const std::map<std::string, std::string>& query) const {
  X1368_ASSIGN_OR_RETURN(auto params, ListParams(query, {"component", "state"}));
  if (params.count("state") && params["state"] != "active" && params["state"] != "expired") {
    return absl::InvalidArgumentError(
        absl::StrCat("state \"", params["state"], "\" is neither active nor expired"));
  }
  std::vector<v1::CampaignInfo> all;
  for (v1::CampaignInfo& c : CampaignsNow()) {
    if (params.count("component") && c.component() != params["component"]) continue;
    if (params.count("state") && c.state() != params["state"]) continue;
    all.push_back(std::move(c));
  }
  v1::CampaignPage page;
  auto key = [](const v1::CampaignInfo& c) { return c.campaign_id(); };
  X1368_ASSIGN_OR_RETURN(std::vector<v1::CampaignInfo> items,
                         PageOf(all, key, params, page.mutable_next_after()));
  for (v1::CampaignInfo& c : items) *page.add_campaigns() = std::move(c);
  return page;
}

absl::Status Root::StartAdminApi() {
  admin_ = std::make_unique<core::HttpServer>();
  // The largest release upload: its image, its manifest and the form's framing.
  admin_->set_max_body_bytes(opts_.max_image_bytes + (1 << 20));
  // What the server answers itself (unknown routes, wrong methods, refused bodies) is JSON too.
  admin_->set_error_format(ErrorBody);
  // A request without the right token is a warning (someone guessing, or a client with a stale
  // token), at most one a minute with the count left out.
  auto refused_log = std::make_shared<core::LogThrottle>(absl::Minutes(1));
  auto authorized = [this, refused_log](const HttpRequest& req) {
    absl::string_view auth = req.authorization;
    const bool ok = absl::ConsumePrefix(&auth, "Bearer ") && !opts_.admin_token.empty() &&
                    core::SameSecret(auth, opts_.admin_token);
    uint64_t suppressed = 0;
    if (!ok && refused_log->Allow(&suppressed)) {
      spdlog::warn("event=admin.unauthorized method={} path={} token={} suppressed={}",
                   core::Quoted(req.method), core::Quoted(req.path),
                   req.authorization.empty() ? "missing" : "wrong", suppressed);
    }
    return ok;
  };
  // 401 (with WWW-Authenticate): the caller did not prove who it is. The admin API has one
  // caller, the token's holder, so nothing answers 403 for lack of a permission.
  auto denied = [] {
    return absl::UnauthenticatedError(
        "missing or wrong bearer token (Authorization: Bearer TOKEN; root writes it to "
        "<data_dir>/admin.token)");
  };
  auto unauthorized = [denied] { return ErrorResponse(denied()); };
  // The image streams to disk (bounded memory, whatever its size): multipart/form-data, so that
  // plain curl uploads a release as trackerctl does.
  core::HttpStreamedRoute releases;
  releases.admit = [authorized, denied](const HttpRequest& req) -> absl::Status {
    if (!authorized(req)) return denied();
    if (!absl::StartsWithIgnoreCase(req.content_type, "multipart/form-data")) {
      return absl::UnimplementedError(
          absl::StrCat("POST /v1/releases takes multipart/form-data, not \"", req.content_type,
                       "\": ", kFormHelp));
    }
    return absl::OkStatus();
  };
  releases.handle = [this](const HttpRequest&, core::HttpBodyReader& body) {
    absl::StatusOr<v1::ReleaseInfo> info = PublishUpload(body);
    if (!info.ok()) {
      spdlog::warn("event=release.upload_refused reason={} error={}",
                   core::ReasonName(core::ReasonOf(info.status())),
                   core::Quoted(info.status().message()));
      return ErrorResponse(info.status());
    }
    return HttpResponse{201, "application/json", ToJson(*info)};
  };
  releases.refuse = ErrorResponse;
  admin_->PostStreamed("/v1/releases", std::move(releases));
  admin_->Post("/v1/campaigns", [this, authorized, unauthorized](const HttpRequest& req) {
    if (!authorized(req)) return unauthorized();
    v1::CampaignStartRequest start;
    if (!google::protobuf::util::JsonStringToMessage(req.body, &start).ok()) {
      return ErrorResponse(Reject(v1::MALFORMED, "body is not a CampaignStartRequest in JSON"));
    }
    auto info = RunOnLoop<v1::CampaignInfo>(loop_, [this, &start] { return StartCampaign(start); });
    if (!info.ok()) return ErrorResponse(info.status());
    return HttpResponse{201, "application/json", ToJson(*info)};
  });
  admin_->Get("/v1/fleet", [this, authorized, unauthorized](const HttpRequest& req) {
    if (!authorized(req)) return unauthorized();
    auto fleet = RunOnLoop<v1::FleetStatus>(
        loop_, [this]() -> absl::StatusOr<v1::FleetStatus> { return Fleet(); });
    if (!fleet.ok()) return ErrorResponse(fleet.status());
    return HttpResponse{200, "application/json", ToJson(*fleet)};
  });
  // X.1368 §11.2 a: the lists, a page at a time, and one device.
  admin_->Get("/v1/devices", [this, authorized, unauthorized](const HttpRequest& req) {
    if (!authorized(req)) return unauthorized();
    absl::StatusOr<v1::DeviceQuery> query = DeviceQueryFrom(req.params);
    if (!query.ok()) return ErrorResponse(query.status());
    auto page = RunOnLoop<v1::DevicePage>(
        loop_, [this, &query] { return ListDevices(*registry_, *query, LivenessNow()); });
    if (!page.ok()) return ErrorResponse(page.status());
    return HttpResponse{200, "application/json", ToJson(*page)};
  });
  admin_->Get(R"(/v1/devices/([^/]+))", [this, authorized, unauthorized](const HttpRequest& req) {
    if (!authorized(req)) return unauthorized();
    std::string id = req.path.substr(std::string("/v1/devices/").size());
    if (absl::Status s = core::ValidateNodeId(id, "device id"); !s.ok()) return ErrorResponse(s);
    auto device =
        RunOnLoop<v1::DeviceRecord>(loop_, [this, &id]() -> absl::StatusOr<v1::DeviceRecord> {
          std::optional<v1::DeviceRecord> d = ShowDevice(*registry_, id, LivenessNow());
          if (!d) return absl::NotFoundError(absl::StrCat("no device ", id));
          return *std::move(d);
        });
    if (!device.ok()) return ErrorResponse(device.status());
    return HttpResponse{200, "application/json", ToJson(*device)};
  });
  admin_->Get(R"(/v1/devices/([^/]+)/live)",
              [this, authorized, unauthorized](const HttpRequest& req) {
                if (!authorized(req)) return unauthorized();
                std::string id = req.path.substr(std::string("/v1/devices/").size());
                id = id.substr(0, id.find('/'));
                auto view = ShowDeviceLive(id, absl::Seconds(5));
                if (!view.ok()) return ErrorResponse(view.status());
                return HttpResponse{200, "application/json", ToJson(*view)};
              });
  admin_->Get("/v1/summary", [this, authorized, unauthorized](const HttpRequest& req) {
    if (!authorized(req)) return unauthorized();
    auto summary = RunOnLoop<v1::FleetSummary>(loop_, [this]() -> absl::StatusOr<v1::FleetSummary> {
      return Summarize(*registry_, LivenessNow());
    });
    if (!summary.ok()) return ErrorResponse(summary.status());
    return HttpResponse{200, "application/json", ToJson(*summary)};
  });
  // The loop's tasks own what they use (copies): if the wait gives up, the task may still run.
  admin_->Get("/v1/releases", [this, authorized, unauthorized](const HttpRequest& req) {
    if (!authorized(req)) return unauthorized();
    auto page =
        RunOnLoop<v1::ReleasePage>(loop_, [this, q = req.params] { return ListReleases(q); });
    if (!page.ok()) return ErrorResponse(page.status());
    return HttpResponse{200, "application/json", ToJson(*page)};
  });
  admin_->Get(
      R"(/v1/releases/([^/]+)/([^/]+))", [this, authorized, unauthorized](const HttpRequest& req) {
        if (!authorized(req)) return unauthorized();
        std::vector<std::string> parts = absl::StrSplit(req.path, '/');
        // "", "v1", "releases", component, version
        auto info =
            RunOnLoop<v1::ReleaseInfo>(loop_, [this, parts]() -> absl::StatusOr<v1::ReleaseInfo> {
              std::optional<Release> r = registry_->FindRelease(parts[3], parts[4]);
              if (!r) {
                return absl::NotFoundError(absl::StrCat("no release ", core::Quote(parts[4]),
                                                        " of ", core::Quote(parts[3])));
              }
              return InfoOf(*r);
            });
        if (!info.ok()) return ErrorResponse(info.status());
        return HttpResponse{200, "application/json", ToJson(*info)};
      });
  admin_->Get("/v1/campaigns", [this, authorized, unauthorized](const HttpRequest& req) {
    if (!authorized(req)) return unauthorized();
    auto page =
        RunOnLoop<v1::CampaignPage>(loop_, [this, q = req.params] { return ListCampaigns(q); });
    if (!page.ok()) return ErrorResponse(page.status());
    return HttpResponse{200, "application/json", ToJson(*page)};
  });
  admin_->Get(R"(/v1/campaigns/([^/]+))", [this, authorized, unauthorized](const HttpRequest& req) {
    if (!authorized(req)) return unauthorized();
    std::string id = req.path.substr(std::string("/v1/campaigns/").size());
    auto info =
        RunOnLoop<v1::CampaignInfo>(loop_, [this, id]() -> absl::StatusOr<v1::CampaignInfo> {
          for (v1::CampaignInfo& c : CampaignsNow()) {
            if (c.campaign_id() == id) return WithProgress(std::move(c));
          }
          return absl::NotFoundError(absl::StrCat("no campaign ", core::Quote(id)));
        });
    if (!info.ok()) return ErrorResponse(info.status());
    return HttpResponse{200, "application/json", ToJson(*info)};
  });
  // The API's description, without a token: clients and tools read it before they have one.
  admin_->Get("/v1/openapi.json", [](const HttpRequest&) {
    return HttpResponse{200, "application/json", OpenApiDocument()};
  });
  // An online backup: SQLite's backup API on root's own connection, on the loop (so between two
  // writes of root's, never inside one), after what was staged is committed.
  admin_->Get("/v1/backup", [this, authorized, unauthorized](const HttpRequest& req) {
    if (!authorized(req)) return unauthorized();
    auto bytes = RunOnLoop<std::string>(loop_, [this] { return Backup(); });
    if (!bytes.ok()) return ErrorResponse(bytes.status());
    return HttpResponse{200, "application/vnd.sqlite3", *std::move(bytes)};
  });
  admin_->Get("/metrics", [this](const HttpRequest&) {
    return HttpResponse{200, "text/plain; version=0.0.4", node_->metrics().RenderPrometheus()};
  });
  // GET /healthz and /readyz, without a token (probes carry none).
  core::ReadinessCheck ready = opts_.readiness;
  if (!ready) {
    ready = [this] { return core::NotReadyReasons({}, &node_->fs(), node_->config().data_dir); };
  }
  core::AddHealthRoutes(admin_.get(), std::move(ready));
  X1368_ASSIGN_OR_RETURN(admin_port_, admin_->Start(opts_.admin_listen));
  spdlog::info("event=admin.listening port={}", admin_port_);
  return absl::OkStatus();
}

std::vector<core::HttpRoute> Root::admin_routes() const {
  return admin_ ? admin_->routes() : std::vector<core::HttpRoute>{};
}

}  // namespace x1368::root
