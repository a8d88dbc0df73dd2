#include "x1368/core/clock.h"

#include <chrono>

namespace x1368::core {

int64_t RealClock::NowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t RealClock::MonotonicMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

RealClock* RealClock::Get() {
  static RealClock clock;
  return &clock;
}

Clock::WatchId FakeClock::Watch(std::function<void()> on_change) {
  absl::MutexLock lock(&mu_);
  WatchId id = next_watch_++;
  watchers_.emplace(id, std::move(on_change));
  return id;
}

void FakeClock::Unwatch(WatchId id) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(id);
}

void FakeClock::Set(int64_t now_ms) {
  now_ms_.store(now_ms);
  Notify();
}

void FakeClock::Advance(int64_t delta_ms) {
  if (delta_ms < 0) delta_ms = 0;  // time does not go back
  now_ms_.fetch_add(delta_ms);
  mono_ms_.fetch_add(delta_ms);
  Notify();
}

void FakeClock::Notify() {
  absl::MutexLock lock(&mu_);
  for (auto& [id, fn] : watchers_) fn();
}

int64_t TrustedClock::NowMs() const {
  // Saturating: the offset came from a signed time, but must never overflow the sum.
  int64_t now = base_->NowMs();
  int64_t offset = offset_ms_.load();
  if (offset > 0 && now > INT64_MAX - offset) return INT64_MAX;
  if (offset < 0 && now < INT64_MIN - offset) return INT64_MIN;
  return now + offset;
}

}  // namespace x1368::core
