// Time sources. Two kinds of time, never mixed:
//   - wall time (NowMs): what validity, expiry, skew and certificates are judged by. It may step
//     (NTP, an operator, a dead RTC battery); nothing waits on it.
//   - monotonic time (MonotonicMs): what every timer, retry and timeout is scheduled on. It never
//     goes back and is unaffected by a wall-clock step.
// The Executor (executor.h) runs every timer of every node on its Clock, so a FakeClock drives a
// whole tree of nodes: tests move time instead of sleeping.
// RealClock and FakeClock are thread-safe.
#ifndef X1368_CORE_CLOCK_H_
#define X1368_CORE_CLOCK_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace x1368::core {

class Clock {
 public:
  using WatchId = uint64_t;
  virtual ~Clock() = default;
  // Wall time: milliseconds since the Unix epoch.
  virtual int64_t NowMs() const = 0;
  // Monotonic milliseconds from an arbitrary origin.
  virtual int64_t MonotonicMs() const = 0;
  // False for a clock that moves only when told (FakeClock): whoever waits for a moment of it
  // must Watch() it instead of sleeping in real time.
  virtual bool advances_by_itself() const { return true; }
  // Calls `on_change` after every change of a clock that does not advance by itself (never for a
  // real clock). `on_change` runs under the clock's lock: it must only signal, not call back.
  virtual WatchId Watch(std::function<void()> on_change) {
    (void)on_change;
    return 0;
  }
  virtual void Unwatch(WatchId id) { (void)id; }
};

class RealClock final : public Clock {
 public:
  int64_t NowMs() const override;
  int64_t MonotonicMs() const override;
  static RealClock* Get();  // process-wide instance
};

// Moves only when told. Advance() moves both times (time passes); StepWall() moves the wall
// clock alone, as NTP or an operator would.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t now_ms = 1'700'000'000'000) : now_ms_(now_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  int64_t MonotonicMs() const override { return mono_ms_.load(); }
  bool advances_by_itself() const override { return false; }
  WatchId Watch(std::function<void()> on_change) override;
  void Unwatch(WatchId id) override;

  // Sets the wall clock (a step; monotonic time does not move).
  void Set(int64_t now_ms);
  void StepWall(int64_t delta_ms) { Set(now_ms_.load() + delta_ms); }
  // Lets `delta_ms` pass: both clocks move forward.
  void Advance(int64_t delta_ms);

 private:
  void Notify();

  std::atomic<int64_t> now_ms_;
  std::atomic<int64_t> mono_ms_{0};
  absl::Mutex mu_;
  WatchId next_watch_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<WatchId, std::function<void()>> watchers_ ABSL_GUARDED_BY(mu_);
};

// A node's trusted time (X.1368 §10 freshness; issue #14): the wall time of `base` plus an
// offset learned from the parent's signed time (TimeResponse, see links.h), so a device whose
// clock is off still judges validity, expiry and skew by its parent's time, and seals its own
// messages with it. Monotonic time is the base's, unchanged: timers never see the offset.
// Thread-safe.
class TrustedClock final : public Clock {
 public:
  explicit TrustedClock(const Clock* base, int64_t offset_ms = 0)
      : base_(base), offset_ms_(offset_ms) {}
  int64_t NowMs() const override;
  int64_t MonotonicMs() const override { return base_->MonotonicMs(); }
  bool advances_by_itself() const override { return base_->advances_by_itself(); }
  // Watching is the base clock's (a step of the offset is not a tick of time).
  WatchId Watch(std::function<void()> on_change) override {
    return const_cast<Clock*>(base_)->Watch(std::move(on_change));
  }
  void Unwatch(WatchId id) override { const_cast<Clock*>(base_)->Unwatch(id); }

  // The system's own wall time, before the offset.
  int64_t SystemNowMs() const { return base_->NowMs(); }
  int64_t offset_ms() const { return offset_ms_.load(); }
  void set_offset_ms(int64_t offset_ms) { offset_ms_.store(offset_ms); }
  const Clock* base() const { return base_; }

 private:
  const Clock* base_;
  std::atomic<int64_t> offset_ms_;
};

}  // namespace x1368::core

#endif  // X1368_CORE_CLOCK_H_
