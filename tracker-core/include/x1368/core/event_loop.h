// The one thread that owns a node's state (STYLE.md "Errors, threads, state"). MQTT callbacks,
// timers and signal handlers never touch domain state: they Post() a task here.
// Post, PostAfter, Cancel and Stop are thread-safe; tasks run one at a time on the loop thread.
#ifndef X1368_CORE_EVENT_LOOP_H_
#define X1368_CORE_EVENT_LOOP_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace x1368::core {

class EventLoop {
 public:
  using Task = std::function<void()>;
  using TimerId = uint64_t;

  EventLoop() = default;
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  void Post(Task task);
  // Runs `task` once after `delay`; the id cancels it.
  TimerId PostAfter(absl::Duration delay, Task task);
  void Cancel(TimerId id);

  // Runs tasks on the calling thread until Stop(). Tasks posted after Stop() are dropped.
  void Run();
  void Stop();
  bool stopped() const;

  // Runs queued tasks (not timers that are not yet due) on the calling thread until none is
  // left; for tests that drive a node without a separate thread.
  void RunPending();

  // True on the thread currently inside Run().
  bool InLoopThread() const;

 private:
  bool RunOne(bool block) ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  std::deque<Task> tasks_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, std::pair<TimerId, Task>> timers_ ABSL_GUARDED_BY(mu_);
  TimerId next_timer_ ABSL_GUARDED_BY(mu_) = 1;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread::id loop_thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace x1368::core

#endif  // X1368_CORE_EVENT_LOOP_H_
