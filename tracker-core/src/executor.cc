#include "x1368/core/executor.h"

#include <algorithm>

namespace x1368::core {

Executor::Executor(const Clock* clock, int threads, int blocking_threads) : clock_(clock) {
  if (!clock_->advances_by_itself()) {
    // A fake clock moves only when told: wake the waiting workers when it does.
    watch_ = const_cast<Clock*>(clock_)->Watch([this] {
      absl::MutexLock lock(&mu_);
      ++wakeups_;
    });
  }
  if (threads <= 0) return;
  for (int i = 0; i < threads; ++i) workers_.emplace_back([this] { WorkerLoop(false); });
  for (int i = 0; i < std::max(1, blocking_threads); ++i) {
    blocking_workers_.emplace_back([this] { WorkerLoop(true); });
  }
}

Executor::~Executor() {
  Shutdown();
  if (watch_ != 0) const_cast<Clock*>(clock_)->Unwatch(watch_);
}

void Executor::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  Kick();
  for (std::thread& t : workers_) {
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
  }
  for (std::thread& t : blocking_workers_) {
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
  }
  absl::MutexLock lock(&mu_);
  tasks_.clear();
  blocking_.clear();
  timers_.clear();
  timer_due_.clear();
}

void Executor::Kick() {
  {
    std::lock_guard<std::mutex> lock(sleep_mu_);
    ++kicks_;
  }
  sleep_cv_.notify_all();
}

void Executor::Submit(Task task) {
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    tasks_.push_back(std::move(task));
  }
  Kick();
}

void Executor::SubmitBlocking(Task task) {
  absl::MutexLock lock(&mu_);
  if (stop_) return;
  blocking_.push_back(std::move(task));
}

Executor::TimerId Executor::SubmitAfter(absl::Duration delay, Task task) {
  int64_t delay_ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(delay));
  int64_t due = clock_->MonotonicMs() + delay_ms;
  absl::MutexLock lock(&mu_);
  TimerId id = next_timer_++;
  if (stop_) return id;
  timers_.emplace(std::make_pair(due, id), std::move(task));
  timer_due_[id] = due;
  ++wakeups_;  // a worker asleep until a later timer (or for good) must look again
  Kick();
  return id;
}

void Executor::Cancel(TimerId id) {
  absl::MutexLock lock(&mu_);
  auto it = timer_due_.find(id);
  if (it == timer_due_.end()) return;
  timers_.erase({it->second, id});
  timer_due_.erase(it);
}

size_t Executor::pending_timers() const {
  absl::MutexLock lock(&mu_);
  return timers_.size();
}

void Executor::PromoteDueTimers() {
  if (timers_.empty()) return;
  int64_t now = clock_->MonotonicMs();
  while (!timers_.empty() && timers_.begin()->first.first <= now) {
    auto node = timers_.extract(timers_.begin());
    timer_due_.erase(node.key().second);
    tasks_.push_back(std::move(node.mapped()));
  }
}

bool Executor::HasWork(bool blocking) const {
  if (stop_) return true;
  if (blocking) return !blocking_.empty();
  if (!tasks_.empty()) return true;
  return !timers_.empty() && timers_.begin()->first.first <= clock_->MonotonicMs();
}

void Executor::WorkerLoop(bool blocking) {
  while (true) {
    Task task;
    {
      absl::MutexLock lock(&mu_);
      while (true) {
        if (stop_) return;
        if (!blocking) PromoteDueTimers();
        std::deque<Task>& queue = blocking ? blocking_ : tasks_;
        if (!queue.empty()) {
          task = std::move(queue.front());
          queue.pop_front();
          break;
        }
        uint64_t seen = wakeups_;
        auto ready = [this, blocking, seen]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
          return HasWork(blocking) || (!blocking && wakeups_ != seen);
        };
        if (blocking || timers_.empty() || !clock_->advances_by_itself()) {
          mu_.Await(absl::Condition(&ready));
        } else {
          // A real clock: sleep until the first timer is due (or new work wakes us).
          int64_t wait_ms = timers_.begin()->first.first - clock_->MonotonicMs();
          if (wait_ms <= 0 || ready()) continue;
          uint64_t kicks;
          {
            // Read before mu_ is released: whatever is submitted after that kicks past it.
            std::lock_guard<std::mutex> sleep_lock(sleep_mu_);
            kicks = kicks_;
          }
          mu_.Unlock();
          {
            std::unique_lock<std::mutex> sleep_lock(sleep_mu_);
            sleep_cv_.wait_for(sleep_lock, std::chrono::milliseconds(wait_ms),
                               [&] { return kicks_ != kicks; });
          }
          mu_.Lock();
        }
      }
    }
    task();
  }
}

size_t Executor::RunUntilIdle() {
  size_t ran = 0;
  while (true) {
    Task task;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return ran;
      PromoteDueTimers();
      if (!tasks_.empty()) {
        task = std::move(tasks_.front());
        tasks_.pop_front();
      } else if (!blocking_.empty()) {
        task = std::move(blocking_.front());
        blocking_.pop_front();
      } else {
        return ran;
      }
    }
    task();
    ++ran;
  }
}

}  // namespace x1368::core
