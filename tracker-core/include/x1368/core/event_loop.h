// A node's event loop: the one serial strand that owns a node's state (docs/style.md "Errors,
// threads, state"). MQTT callbacks, timers and signal handlers never touch domain state: they
// Post() a task here. Tasks of one loop run one at a time, in the order posted, on whichever
// thread of the shared Executor (executor.h) is free; many loops share the executor's threads.
// Timers run on the executor's Clock (monotonic time), so a FakeClock drives them.
//
// Post, PostAfter, Cancel and Stop are thread-safe. After Stop() (or the destructor) returns, no
// task of this loop runs any more, except the one calling Stop() itself.
#ifndef X1368_CORE_EVENT_LOOP_H_
#define X1368_CORE_EVENT_LOOP_H_

#include <cstdint>
#include <functional>
#include <future>
#include <memory>

#include "absl/time/time.h"
#include "x1368/core/executor.h"

namespace x1368::core {

class EventLoop {
 public:
  using Task = std::function<void()>;
  using TimerId = uint64_t;

  // `executor` must outlive the loop.
  explicit EventLoop(Executor* executor);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  void Post(Task task);
  // Runs `task` on this loop once `delay` has passed on the clock; the id cancels it.
  TimerId PostAfter(absl::Duration delay, Task task);
  void Cancel(TimerId id);

  // Drops every queued task and timer, refuses new ones, and waits for a running task to end.
  void Stop();
  bool stopped() const;

  // True while a task of this loop runs on the calling thread.
  bool InLoopThread() const;

  Executor* executor() const { return executor_; }
  const Clock& clock() const { return executor_->clock(); }

 private:
  struct State;
  Executor* executor_;
  std::shared_ptr<State> state_;
};

// Runs `fn` on `loop` and waits for its result: for threads outside the loop (tests, the
// simulator, admin handlers), never from a task of the loop itself.
template <typename F>
auto CallOnLoop(EventLoop& loop, F fn) -> decltype(fn()) {
  using T = decltype(fn());
  auto p = std::make_shared<std::promise<T>>();
  auto f = p->get_future();
  loop.Post([p, fn = std::move(fn)]() mutable { p->set_value(fn()); });
  return f.get();
}

// One run of `task` for a burst of Schedule() calls: the first schedules it `delay` later (zero:
// behind whatever is queued on the loop now), the others join that run. One report for many state
// changes, one commit or replay flush for many messages, one batch for many reports.
// On the loop only. A run still pending when the object goes is dropped.
class Coalesced {
 public:
  Coalesced(EventLoop* loop, absl::Duration delay, std::function<void()> task)
      : loop_(loop), delay_(delay), task_(std::move(task)) {}
  ~Coalesced() { *alive_ = false; }
  Coalesced(const Coalesced&) = delete;
  Coalesced& operator=(const Coalesced&) = delete;

  void Schedule();
  bool pending() const { return pending_; }

 private:
  EventLoop* loop_;
  const absl::Duration delay_;
  std::function<void()> task_;
  bool pending_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace x1368::core

#endif  // X1368_CORE_EVENT_LOOP_H_
