#include "x1368/stub/stub_consumer.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"
#include "x1368/core/crypto.h"
#include "x1368/core/log.h"
#include "x1368/core/reason.h"

namespace x1368::stub {

using core::Reject;

namespace {
constexpr char kBootEnvKey[] = "bootenv";

std::string FactoryImage(const StubOptions& o) {
  std::string image =
      absl::StrCat("x1368 factory image: ", o.component, " ", o.initial_version, "\n");
  image.resize(4096, '\0');
  return image;
}
}  // namespace

absl::StatusOr<StubFaults> ParseFaults(const std::vector<std::string>& names) {
  StubFaults f;
  for (const std::string& n : names) {
    if (n == "decline") {
      f.decline = true;
    } else if (absl::StartsWith(n, "fail_download_at=")) {
      if (!absl::SimpleAtoi(n.substr(17), &f.fail_download_at) || f.fail_download_at < 0) {
        return absl::InvalidArgumentError(absl::StrCat("bad fault \"", n, "\""));
      }
    } else if (n == "corrupt_download") {
      f.corrupt_download = true;
    } else if (n == "fail_install") {
      f.fail_install = true;
    } else if (n == "trial_boot_fails") {
      f.trial_boot_fails = true;
    } else if (n == "health_check_fails") {
      f.health_check_fails = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown fault \"", n,
          "\" (decline, fail_download_at=N, corrupt_download, fail_install, trial_boot_fails, "
          "health_check_fails)"));
    }
  }
  return f;
}

absl::StatusOr<std::unique_ptr<StubConsumer>> StubConsumer::Open(StubOptions options) {
  X1368_RETURN_IF_ERROR(options.fs->MakeDirs(options.dir));
  X1368_ASSIGN_OR_RETURN(auto store, core::FileKvStore::Open(options.dir + "/bootenv", options.fs));
  std::unique_ptr<StubConsumer> c(new StubConsumer(std::move(options), std::move(store)));
  absl::MutexLock lock(&c->mu_);
  c->faults_ = c->opts_.faults;
  X1368_ASSIGN_OR_RETURN(std::optional<std::string> raw, c->store_->Get(kBootEnvKey));
  if (raw) {
    if (!c->env_.ParseFromString(*raw) || c->env_.slots_size() != 2 || c->env_.active() > 1) {
      return Reject(v1::STORAGE_ERROR, "boot environment is corrupt");
    }
  } else {
    // First power-on: the factory image in slot A.
    std::string image = FactoryImage(c->opts_);
    X1368_RETURN_IF_ERROR(c->opts_.fs->WriteAtomic(c->SlotPath(0), image));
    v1::SlotInfo* a = c->env_.add_slots();
    a->set_component(c->opts_.component);
    a->set_version(c->opts_.initial_version);
    a->set_sequence_number(c->opts_.initial_sequence);
    a->set_sha256(core::Sha256(image));
    a->set_size(image.size());
    a->set_installed(true);
    c->env_.add_slots();
    c->env_.set_active(0);
    X1368_RETURN_IF_ERROR(c->Persist());
  }
  // The bootloader's view of an unconfirmed trial: each power-on counts a boot; past the limit it
  // goes back to the other slot, which still holds the previous, confirmed image.
  if (c->env_.trial_pending()) {
    c->env_.set_boot_attempts(c->env_.boot_attempts() + 1);
    // An image that does not boot (the trial_boot_fails fault) fails every boot, this one too.
    if (c->env_.boot_attempts() > c->opts_.max_trial_boots || c->faults_.trial_boot_fails) {
      spdlog::warn("event=stub.bootloader_reverted boots={}", c->env_.boot_attempts());
      c->env_.set_failed_trial_sha256(c->env_.slots(static_cast<int>(c->env_.active())).sha256());
      c->env_.set_active(1 - c->env_.active());
      c->env_.set_trial_pending(false);
      c->env_.set_boot_attempts(0);
      c->env_.set_last_trial_failed(true);
    }
    X1368_RETURN_IF_ERROR(c->Persist());
  }
  // The self-check of a booted image: its bytes against the digest recorded when it was installed.
  // One that fails keeps running (there is nothing better to boot: the other slot holds an older
  // or no image) and asks for an update.
  const v1::SlotInfo& running = c->env_.slots(static_cast<int>(c->env_.active()));
  auto digest = core::Sha256Of(*c->opts_.fs, c->SlotPath(c->env_.active()));
  if (!digest.ok() || *digest != running.sha256()) {
    c->self_check_failed_sha_ = running.sha256();
    c->self_check_error_ = digest.ok() ? "its digest differs from the installed image's"
                                       : std::string(digest.status().message());
    spdlog::error("event=stub.self_check_failed slot={} version={} error={}", c->env_.active(),
                  core::Quoted(running.version()), core::Quoted(c->self_check_error_));
  }
  return c;
}

std::string StubConsumer::SlotPath(uint32_t slot) const {
  return absl::StrCat(opts_.dir, slot == 0 ? "/slot-a.img" : "/slot-b.img");
}

absl::Status StubConsumer::Persist() {
  absl::Status s = store_->Put(kBootEnvKey, env_.SerializeAsString());
  if (!s.ok()) return Reject(v1::STORAGE_ERROR, s.message());
  return absl::OkStatus();
}

v1::BootEnv StubConsumer::boot_env() {
  absl::MutexLock lock(&mu_);
  return env_;
}

void StubConsumer::set_faults(const StubFaults& faults) {
  absl::MutexLock lock(&mu_);
  faults_ = faults;
}

client::ConsumerStatus StubConsumer::Status() {
  absl::MutexLock lock(&mu_);
  const v1::SlotInfo& s = env_.slots(static_cast<int>(env_.active()));
  client::ConsumerStatus out;
  out.component = opts_.component;
  out.version = s.version();
  out.sequence_number = s.sequence_number();
  out.hardware_class = opts_.hardware_class;
  out.image_sha256 = s.sha256();
  out.in_trial = env_.trial_pending();
  out.failed_trial_sha256 = env_.failed_trial_sha256();
  if (!self_check_failed_sha_.empty() && s.sha256() == self_check_failed_sha_) {
    out.needs_update = absl::StrCat("the running image (", s.version(),
                                    ") fails its self-check: ", self_check_error_);
  }
  return out;
}

absl::Status StubConsumer::Accept(const v1::Manifest& m) {
  absl::MutexLock lock(&mu_);
  if (faults_.decline)
    return Reject(v1::CONSUMER_DECLINED, "the consumer declines updates (fault)");
  if (m.component() != opts_.component) return Reject(v1::COMPONENT_MISMATCH, m.component());
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> StubConsumer::BeginDownload(const v1::Manifest& m) {
  absl::MutexLock lock(&mu_);
  if (env_.trial_pending()) return Reject(v1::INSTALL_FAILED, "a trial is still pending");
  std::string path = SlotPath(inactive());
  if (env_.download_sha256() != m.sha256() || !opts_.fs->Exists(path)) {
    // A different image than the partial one: start over in the inactive slot.
    X1368_RETURN_IF_ERROR(opts_.fs->WriteAtomic(path, ""));
    env_.mutable_slots(static_cast<int>(inactive()))->Clear();
    env_.set_download_sha256(m.sha256());
    X1368_RETURN_IF_ERROR(Persist());
  }
  auto size = opts_.fs->Size(path);
  uint64_t offset = size.ok() ? *size : 0;
  if (offset > m.size()) {  // longer than the image: garbage, start over
    X1368_RETURN_IF_ERROR(opts_.fs->WriteAtomic(path, ""));
    offset = 0;
  }
  fail_at_ = download_fault_fired_ ? -1 : faults_.fail_download_at;
  since_sync_ = 0;
  return offset;
}

absl::Status StubConsumer::WriteChunk(const v1::Manifest& m, uint64_t offset,
                                      absl::string_view data) {
  absl::MutexLock lock(&mu_);
  if (env_.download_sha256() != m.sha256()) {
    return Reject(v1::DOWNLOAD_FAILED, "no download of this image was begun");
  }
  if (data.empty()) return Reject(v1::DOWNLOAD_FAILED, absl::StrCat("empty chunk at ", offset));
  if (offset > m.size() || data.size() > m.size() - offset) {
    return Reject(v1::SIZE_MISMATCH, "image longer than the manifest says");
  }
  std::string path = SlotPath(inactive());
  if (fail_at_ >= 0 && offset + data.size() > static_cast<uint64_t>(fail_at_)) {
    download_fault_fired_ = true;
    fail_at_ = -1;
    (void)opts_.fs->Sync(path);
    return Reject(v1::DOWNLOAD_FAILED, absl::StrCat("link broke at byte ", offset, " (fault)"));
  }
  X1368_RETURN_IF_ERROR(opts_.fs->WriteRange(path, offset, data));
  since_sync_ += data.size();
  if (since_sync_ >= opts_.sync_every_bytes) {
    X1368_RETURN_IF_ERROR(opts_.fs->Sync(path));
    since_sync_ = 0;
  }
  return absl::OkStatus();
}

absl::Status StubConsumer::FinishDownload(const v1::Manifest& m) {
  absl::MutexLock lock(&mu_);
  std::string path = SlotPath(inactive());
  if (faults_.corrupt_download) {
    // Bytes that arrived damaged are on disk like any others (synced below), and finishing the
    // same download again after a restart leaves them damaged.
    X1368_ASSIGN_OR_RETURN(std::string digest, core::Sha256Of(*opts_.fs, path));
    X1368_ASSIGN_OR_RETURN(std::string first, opts_.fs->ReadRange(path, 0, 1));
    if (digest == m.sha256() && !first.empty())
      X1368_RETURN_IF_ERROR(opts_.fs->WriteRange(path, 0, std::string(1, first[0] ^ 0x5a)));
  }
  X1368_RETURN_IF_ERROR(opts_.fs->Sync(path));
  since_sync_ = 0;
  return absl::OkStatus();
}

absl::Status StubConsumer::CheckImage(const v1::Manifest& m) {
  const v1::SlotInfo& running = env_.slots(static_cast<int>(env_.active()));
  if (m.component() != opts_.component) return Reject(v1::COMPONENT_MISMATCH, m.component());
  bool hw_ok = false;
  for (const std::string& hw : m.hardware_classes()) hw_ok |= hw == opts_.hardware_class;
  if (!hw_ok)
    return Reject(v1::WRONG_HARDWARE, absl::StrCat("image is not for ", opts_.hardware_class));
  if (m.sequence_number() <= running.sequence_number()) {
    return Reject(v1::NOT_NEWER, absl::StrCat("sequence ", m.sequence_number(), " <= running ",
                                              running.sequence_number()));
  }
  std::string path = SlotPath(inactive());
  auto size = opts_.fs->Size(path);
  if (!size.ok() || *size != m.size()) {
    return Reject(v1::SIZE_MISMATCH, absl::StrCat("slot holds ", size.ok() ? *size : 0,
                                                  " bytes, manifest says ", m.size()));
  }
  X1368_ASSIGN_OR_RETURN(std::string digest, core::Sha256Of(*opts_.fs, path));
  if (digest != m.sha256())
    return Reject(v1::DIGEST_MISMATCH, "image digest differs from the manifest");
  return absl::OkStatus();
}

absl::Status StubConsumer::Verify(const v1::Manifest& m) {
  absl::MutexLock lock(&mu_);
  return CheckImage(m);
}

absl::Status StubConsumer::Install(const v1::Manifest& m) {
  absl::MutexLock lock(&mu_);
  if (faults_.fail_install) return Reject(v1::INSTALL_FAILED, "slot write failed (fault)");
  v1::SlotInfo& slot = *env_.mutable_slots(static_cast<int>(inactive()));
  if (slot.installed() && slot.sha256() == m.sha256()) return absl::OkStatus();  // idempotent
  X1368_RETURN_IF_ERROR(CheckImage(m));  // never mark a slot bootable without checking it
  slot.set_component(m.component());
  slot.set_version(m.version());
  slot.set_sequence_number(m.sequence_number());
  slot.set_sha256(m.sha256());
  slot.set_size(m.size());
  slot.set_installed(true);
  env_.clear_download_sha256();
  return Persist();
}

absl::Status StubConsumer::BootTrial(const v1::Manifest& m) {
  absl::MutexLock lock(&mu_);
  const v1::SlotInfo& active = env_.slots(static_cast<int>(env_.active()));
  if (env_.trial_pending() && active.sha256() == m.sha256()) return absl::OkStatus();  // already up
  const v1::SlotInfo& target = env_.slots(static_cast<int>(inactive()));
  if (!target.installed() || target.sha256() != m.sha256()) {
    return Reject(v1::INSTALL_FAILED, "the trial slot does not hold this image");
  }
  env_.set_active(inactive());
  env_.set_trial_pending(true);
  env_.set_boot_attempts(1);
  env_.set_last_trial_failed(false);
  env_.clear_failed_trial_sha256();
  X1368_RETURN_IF_ERROR(Persist());
  if (faults_.trial_boot_fails) {
    // The new image does not come up: the bootloader falls back to the previous slot.
    env_.set_failed_trial_sha256(m.sha256());
    env_.set_active(inactive());
    env_.set_trial_pending(false);
    env_.set_boot_attempts(0);
    env_.set_last_trial_failed(true);
    X1368_RETURN_IF_ERROR(Persist());
    return Reject(v1::TRIAL_BOOT_FAILED, "trial image did not boot (fault)");
  }
  return absl::OkStatus();
}

absl::Status StubConsumer::Confirm(const v1::Manifest& m) {
  absl::MutexLock lock(&mu_);
  const v1::SlotInfo& active = env_.slots(static_cast<int>(env_.active()));
  if (active.sha256() != m.sha256())
    return Reject(v1::TRIAL_BOOT_FAILED, "the trial image is not running");
  if (!env_.trial_pending()) return absl::OkStatus();  // already confirmed
  if (faults_.health_check_fails)
    return Reject(v1::TRIAL_BOOT_FAILED, "health check failed (fault)");
  env_.set_trial_pending(false);
  env_.set_boot_attempts(0);
  return Persist();
}

absl::Status StubConsumer::Rollback() {
  absl::MutexLock lock(&mu_);
  if (!env_.trial_pending()) return absl::OkStatus();
  env_.set_failed_trial_sha256(env_.slots(static_cast<int>(env_.active())).sha256());
  env_.set_active(inactive());
  env_.set_trial_pending(false);
  env_.set_boot_attempts(0);
  env_.set_last_trial_failed(true);
  return Persist();
}

void StubConsumer::Discard() {
  absl::MutexLock lock(&mu_);
  if (env_.trial_pending()) return;
  // Removed, not emptied: on a full disk that is what always succeeds and frees the space.
  (void)opts_.fs->Remove(SlotPath(inactive()));
  env_.mutable_slots(static_cast<int>(inactive()))->Clear();
  env_.clear_download_sha256();
  (void)Persist();
}

}  // namespace x1368::stub
