#include "x1368/core/event_loop.h"

namespace x1368::core {

void EventLoop::Post(Task task) {
  absl::MutexLock lock(&mu_);
  if (stop_) return;
  tasks_.push_back(std::move(task));
}

EventLoop::TimerId EventLoop::PostAfter(absl::Duration delay, Task task) {
  absl::MutexLock lock(&mu_);
  TimerId id = next_timer_++;
  if (!stop_) timers_.emplace(absl::Now() + delay, std::make_pair(id, std::move(task)));
  return id;
}

void EventLoop::Cancel(TimerId id) {
  absl::MutexLock lock(&mu_);
  for (auto it = timers_.begin(); it != timers_.end(); ++it) {
    if (it->second.first == id) {
      timers_.erase(it);
      return;
    }
  }
}

bool EventLoop::RunOne(bool block) {
  Task task;
  {
    absl::MutexLock lock(&mu_);
    while (true) {
      if (stop_) return false;
      absl::Time now = absl::Now();
      if (!timers_.empty() && timers_.begin()->first <= now) {
        task = std::move(timers_.begin()->second.second);
        timers_.erase(timers_.begin());
        break;
      }
      if (!tasks_.empty()) {
        task = std::move(tasks_.front());
        tasks_.pop_front();
        break;
      }
      if (!block) return false;
      absl::Time wake = timers_.empty() ? now + absl::Seconds(1) : timers_.begin()->first;
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || !tasks_.empty(); };
      mu_.AwaitWithDeadline(absl::Condition(&ready), wake);
    }
  }
  task();
  return true;
}

void EventLoop::Run() {
  {
    absl::MutexLock lock(&mu_);
    loop_thread_ = std::this_thread::get_id();
  }
  while (RunOne(/*block=*/true)) {
  }
  absl::MutexLock lock(&mu_);
  loop_thread_ = {};
}

void EventLoop::RunPending() {
  while (RunOne(/*block=*/false)) {
  }
}

void EventLoop::Stop() {
  absl::MutexLock lock(&mu_);
  stop_ = true;
  tasks_.clear();
  timers_.clear();
}

bool EventLoop::stopped() const {
  absl::MutexLock lock(&mu_);
  return stop_;
}

bool EventLoop::InLoopThread() const {
  absl::MutexLock lock(&mu_);
  return loop_thread_ == std::this_thread::get_id();
}

}  // namespace x1368::core
