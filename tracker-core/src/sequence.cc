#include "x1368/core/sequence.h"

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "x1368/core/reason.h"

namespace x1368::core {
namespace {

std::string WindowKey(const std::string& sender, SeqStream stream) {
  return absl::StrCat("seen/", stream == SeqStream::kPresence ? "presence/" : "main/", sender);
}

std::string EncodeU64Pair(uint64_t a, uint64_t b) {
  char buf[16];
  std::memcpy(buf, &a, 8);
  std::memcpy(buf + 8, &b, 8);
  return std::string(buf, 16);
}

}  // namespace

absl::StatusOr<std::unique_ptr<SeqCounter>> SeqCounter::Open(KvStore* store, std::string key,
                                                             uint64_t lease) {
  X1368_ASSIGN_OR_RETURN(std::optional<std::string> stored, store->Get(key));
  uint64_t persisted_limit = 0;
  if (stored && !absl::SimpleAtoi(*stored, &persisted_limit)) {
    return Reject(v1::STORAGE_ERROR, absl::StrCat("sequence counter ", key, " is corrupt"));
  }
  if (lease == 0) lease = 1;
  return std::unique_ptr<SeqCounter>(
      new SeqCounter(store, std::move(key), lease, persisted_limit + 1));
}

absl::StatusOr<uint64_t> SeqCounter::Next() {
  absl::MutexLock lock(&mu_);
  if (next_ > limit_) {
    uint64_t new_limit = next_ + lease_ - 1;
    absl::Status s = store_->Put(key_, absl::StrCat(new_limit));
    if (!s.ok()) return WithContext(s, "reserving sequence numbers");
    limit_ = new_limit;
  }
  return next_++;
}

absl::StatusOr<ReplayGuard::Window*> ReplayGuard::Load(const std::string& key) {
  auto it = windows_.find(key);
  if (it != windows_.end()) return &it->second;
  Window w;
  X1368_ASSIGN_OR_RETURN(std::optional<std::string> stored, store_->Get(key));
  if (stored) {
    if (stored->size() != 16)
      return Reject(v1::STORAGE_ERROR, absl::StrCat("replay window ", key, " is corrupt"));
    std::memcpy(&w.highest, stored->data(), 8);
    std::memcpy(&w.seen, stored->data() + 8, 8);
  }
  return &windows_.emplace(key, w).first->second;
}

absl::StatusOr<SeqVerdict> ReplayGuard::Check(const std::string& sender, SeqStream stream,
                                              uint64_t seq) {
  X1368_ASSIGN_OR_RETURN(Window * w, Load(WindowKey(sender, stream)));
  if (seq == 0) return SeqVerdict::kReplay;
  if (seq > w->highest) return SeqVerdict::kFresh;
  uint64_t age = w->highest - seq;
  if (age >= kWindow) return SeqVerdict::kReplay;
  return (w->seen >> age) & 1 ? SeqVerdict::kDuplicate : SeqVerdict::kFresh;
}

void ReplayGuard::Accept(const std::string& sender, SeqStream stream, uint64_t seq) {
  std::string key = WindowKey(sender, stream);
  auto loaded = Load(key);
  if (!loaded.ok()) return;  // Check() already failed for this sender; nothing to record
  Window* w = *loaded;
  if (seq > w->highest) {
    uint64_t shift = seq - w->highest;
    w->seen = shift >= kWindow ? 0 : w->seen << shift;
    w->seen |= 1;
    w->highest = seq;
  } else {
    uint64_t age = w->highest - seq;
    if (age < kWindow) w->seen |= uint64_t{1} << age;
  }
  dirty_[key] = true;
}

absl::Status ReplayGuard::Flush() {
  if (dirty_.empty()) return absl::OkStatus();
  KvStore::Pairs puts;
  puts.reserve(dirty_.size());
  for (const auto& [key, unused] : dirty_) {
    const Window& w = windows_[key];
    puts.emplace_back(key, EncodeU64Pair(w.highest, w.seen));
  }
  X1368_RETURN_IF_ERROR(store_->Write(puts));
  dirty_.clear();
  return absl::OkStatus();
}

}  // namespace x1368::core
