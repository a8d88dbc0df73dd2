#include "x1368/core/event_loop.h"

#include <deque>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace x1368::core {

// Shared with the executor's queued drains and timers, so that one still queued after the loop
// is gone finds a stopped state instead of a dangling loop.
struct EventLoop::State {
  // A drain runs at most this many tasks before yielding its thread to other loops.
  static constexpr int kBatch = 64;

  Executor* executor;
  absl::Mutex mu;
  std::deque<Task> tasks ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<TimerId, Executor::TimerId> timers ABSL_GUARDED_BY(mu);  // ours -> executor's
  TimerId next_timer ABSL_GUARDED_BY(mu) = 1;
  bool scheduled ABSL_GUARDED_BY(mu) = false;  // a drain is queued or running
  bool stop ABSL_GUARDED_BY(mu) = false;
  std::thread::id running_on ABSL_GUARDED_BY(mu);  // the thread inside a task, if any

  explicit State(Executor* e) : executor(e) {}

  // Queues `task`; schedules a drain when none is pending.
  static void Enqueue(const std::shared_ptr<State>& self, Task task) {
    bool schedule = false;
    {
      absl::MutexLock lock(&self->mu);
      if (self->stop) return;
      self->tasks.push_back(std::move(task));
      schedule = !self->scheduled;
      self->scheduled = true;
    }
    if (schedule) self->executor->Submit([self] { Drain(self); });
  }

  static void Drain(const std::shared_ptr<State>& self) {
    for (int i = 0; i < kBatch; ++i) {
      Task task;
      {
        absl::MutexLock lock(&self->mu);
        if (self->stop || self->tasks.empty()) {
          self->scheduled = false;
          return;
        }
        task = std::move(self->tasks.front());
        self->tasks.pop_front();
        self->running_on = std::this_thread::get_id();
      }
      task();
      absl::MutexLock lock(&self->mu);
      self->running_on = {};
    }
    // More left: go to the back of the executor's queue so other loops get their turn.
    self->executor->Submit([self] { Drain(self); });
  }
};

EventLoop::EventLoop(Executor* executor)
    : executor_(executor), state_(std::make_shared<State>(executor)) {}

EventLoop::~EventLoop() { Stop(); }

void EventLoop::Post(Task task) { State::Enqueue(state_, std::move(task)); }

EventLoop::TimerId EventLoop::PostAfter(absl::Duration delay, Task task) {
  TimerId id;
  {
    absl::MutexLock lock(&state_->mu);
    id = state_->next_timer++;
    if (state_->stop) return id;
  }
  std::weak_ptr<State> weak = state_;
  Executor::TimerId executor_id =
      executor_->SubmitAfter(delay, [weak, id, task = std::move(task)]() mutable {
        std::shared_ptr<State> self = weak.lock();
        if (!self) return;
        {
          absl::MutexLock lock(&self->mu);
          // Cancelled meanwhile (or stopped): the entry is gone.
          if (self->timers.erase(id) == 0) return;
        }
        State::Enqueue(self, std::move(task));
      });
  absl::MutexLock lock(&state_->mu);
  if (!state_->stop) state_->timers.emplace(id, executor_id);
  return id;
}

void EventLoop::Cancel(TimerId id) {
  Executor::TimerId executor_id = 0;
  {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->timers.find(id);
    if (it == state_->timers.end()) return;
    executor_id = it->second;
    state_->timers.erase(it);
  }
  executor_->Cancel(executor_id);
}

void EventLoop::Stop() {
  absl::flat_hash_map<TimerId, Executor::TimerId> timers;
  {
    absl::MutexLock lock(&state_->mu);
    state_->stop = true;
    state_->tasks.clear();
    timers.swap(state_->timers);
    // Wait for a task running on another thread; a task may stop its own loop.
    std::thread::id self = std::this_thread::get_id();
    State* s = state_.get();
    auto idle = [s, self]() ABSL_SHARED_LOCKS_REQUIRED(s->mu) {
      return s->running_on == std::thread::id() || s->running_on == self;
    };
    state_->mu.Await(absl::Condition(&idle));
  }
  for (const auto& [id, executor_id] : timers) executor_->Cancel(executor_id);
}

bool EventLoop::stopped() const {
  absl::MutexLock lock(&state_->mu);
  return state_->stop;
}

bool EventLoop::InLoopThread() const {
  absl::MutexLock lock(&state_->mu);
  return state_->running_on == std::this_thread::get_id();
}

void Coalesced::Schedule() {
  if (pending_) return;
  pending_ = true;
  auto run = [this, alive = alive_] {
    if (!*alive) return;
    pending_ = false;
    task_();
  };
  if (delay_ <= absl::ZeroDuration()) {
    loop_->Post(std::move(run));
  } else {
    loop_->PostAfter(delay_, std::move(run));
  }
}

}  // namespace x1368::core
