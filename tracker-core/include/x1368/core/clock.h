// Time source. Everything that compares times (expiry, skew, deadlines, certificate validity)
// asks a Clock, so tests can move time and fault injectors can skew it.
// RealClock is thread-safe; FakeClock is thread-safe (atomic).
#ifndef X1368_CORE_CLOCK_H_
#define X1368_CORE_CLOCK_H_

#include <atomic>
#include <cstdint>

namespace x1368::core {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual int64_t NowMs() const = 0;
};

class RealClock final : public Clock {
 public:
  int64_t NowMs() const override;
  static RealClock* Get();  // process-wide instance
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t now_ms = 1'700'000'000'000) : now_ms_(now_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  void Set(int64_t now_ms) { now_ms_.store(now_ms); }
  void Advance(int64_t delta_ms) { now_ms_.fetch_add(delta_ms); }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace x1368::core

#endif  // X1368_CORE_CLOCK_H_
