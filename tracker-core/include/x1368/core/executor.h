// The threads a process runs its nodes on (cf. LevelDB's Env::Schedule): one fixed pool shared by
// every node of the process, plus the timers of all of them, scheduled on one Clock's monotonic
// time. A node never owns a thread: it runs as a serial strand (EventLoop, event_loop.h) on an
// Executor, so N nodes in one process need O(1) threads.
//
// With threads == 0 nothing runs by itself: a test calls RunUntilIdle() to run every task ready
// now and every timer due now on its own thread. With a FakeClock, timers fire when the test
// advances the clock (and then runs the executor, or lets the pool run it).
//
// Tasks must not block for long: a blocking call (flash, disk sync of an image) goes to
// SubmitBlocking(), which runs it on a separate, bounded set of threads.
// Thread-safe.
#ifndef X1368_CORE_EXECUTOR_H_
#define X1368_CORE_EXECUTOR_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "x1368/core/clock.h"

namespace x1368::core {

class Executor {
 public:
  using Task = std::function<void()>;
  using TimerId = uint64_t;

  // `clock` must outlive the executor. `threads` run tasks and timers; `blocking_threads` run
  // SubmitBlocking() work (with threads == 0 both run only inside RunUntilIdle()).
  Executor(const Clock* clock, int threads, int blocking_threads = 2);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  void Submit(Task task);
  // Runs `task` on the pool once `delay` of the clock's monotonic time has passed.
  TimerId SubmitAfter(absl::Duration delay, Task task);
  // Forgets a timer that has not fired; unknown ids are ignored.
  void Cancel(TimerId id);
  // Runs `task` on the blocking threads: for calls that may take long.
  void SubmitBlocking(Task task);

  // Runs, on the calling thread, every task ready now (including those they post) and every
  // timer due now, until none is left. Returns how many ran. For executors with no threads.
  size_t RunUntilIdle();

  // Stops the threads after the task each is running; tasks and timers not started are dropped.
  // Idempotent; the destructor calls it.
  void Shutdown();

  const Clock& clock() const { return *clock_; }
  int threads() const { return static_cast<int>(workers_.size() + blocking_workers_.size()); }
  // Timers waiting to fire (for tests and metrics).
  size_t pending_timers() const;

 private:
  void WorkerLoop(bool blocking);
  // Moves every timer due now onto the task queue.
  void PromoteDueTimers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasWork(bool blocking) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const Clock* clock_;
  Clock::WatchId watch_ = 0;
  mutable absl::Mutex mu_;
  std::deque<Task> tasks_ ABSL_GUARDED_BY(mu_);
  std::deque<Task> blocking_ ABSL_GUARDED_BY(mu_);
  // By (due monotonic ms, id): equal deadlines fire in the order they were set.
  std::map<std::pair<int64_t, TimerId>, Task> timers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<TimerId, int64_t> timer_due_ ABSL_GUARDED_BY(mu_);
  TimerId next_timer_ ABSL_GUARDED_BY(mu_) = 1;
  // Bumped when a waiting worker must re-plan its wait: a fake clock moved, or a timer was set.
  uint64_t wakeups_ ABSL_GUARDED_BY(mu_) = 0;
  // A worker waiting for its next timer sleeps here, on the monotonic clock
  // (std::condition_variable::wait_for: steady_clock), not in absl's AwaitWithTimeout, whose
  // deadline is wall time in Abseil 20220623 (a futex on CLOCK_REALTIME): a wall-clock step back
  // while it slept held every timer back by the step, and a daemon under faketime ahead never
  // woke (issue #14). Kick() after anything that may end such a sleep (new work, a new timer,
  // stop). Lock order: mu_ before sleep_mu_.
  void Kick();
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;
  uint64_t kicks_ = 0;  // guarded by sleep_mu_
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
  std::vector<std::thread> blocking_workers_;
};

}  // namespace x1368::core

#endif  // X1368_CORE_EXECUTOR_H_
