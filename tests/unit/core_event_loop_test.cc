// The shared Executor (x1368/core/executor.h) and the node's event loop, a serial strand on it
// (x1368/core/event_loop.h). Timers run on the executor's clock: with a FakeClock the tests move
// time instead of sleeping.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "testing/wait.h"
#include "x1368/core/event_loop.h"
#include "x1368/core/executor.h"

namespace x1368::core {
namespace {

using ::testing::ElementsAre;
using ::x1368::testing::WaitFor;

// An executor with no threads: nothing runs until the test says so.
struct Manual {
  FakeClock clock;
  Executor executor{&clock, /*threads=*/0};
  EventLoop loop{&executor};
};

TEST(EventLoopTest, PostedTasksRunInOrder) {
  Manual m;
  std::vector<int> seen;
  for (int i = 1; i <= 5; ++i) m.loop.Post([&seen, i] { seen.push_back(i); });
  EXPECT_TRUE(seen.empty());  // nothing runs until the executor does
  m.executor.RunUntilIdle();
  EXPECT_THAT(seen, ElementsAre(1, 2, 3, 4, 5));
}

TEST(EventLoopTest, RunUntilIdleRunsTasksPostedByTasks) {
  Manual m;
  std::vector<int> seen;
  m.loop.Post([&] {
    seen.push_back(1);
    m.loop.Post([&] { seen.push_back(3); });
  });
  m.loop.Post([&] { seen.push_back(2); });
  m.executor.RunUntilIdle();
  EXPECT_THAT(seen, ElementsAre(1, 2, 3));
}

TEST(EventLoopTest, TimersFireWhenTheClockReachesThemInDeadlineOrder) {
  Manual m;
  std::vector<int> seen;
  m.loop.PostAfter(absl::Milliseconds(30), [&] { seen.push_back(3); });
  m.loop.PostAfter(absl::Milliseconds(10), [&] { seen.push_back(1); });
  m.loop.PostAfter(absl::Milliseconds(20), [&] { seen.push_back(2); });
  m.loop.Post([&] { seen.push_back(0); });  // immediate work needs no time
  m.executor.RunUntilIdle();
  EXPECT_THAT(seen, ElementsAre(0));
  m.clock.Advance(9);
  m.executor.RunUntilIdle();
  EXPECT_THAT(seen, ElementsAre(0));
  m.clock.Advance(1);
  m.executor.RunUntilIdle();
  EXPECT_THAT(seen, ElementsAre(0, 1));
  m.clock.Advance(100);
  m.executor.RunUntilIdle();
  EXPECT_THAT(seen, ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(m.executor.pending_timers(), 0u);
}

TEST(EventLoopTest, AWallClockStepMovesNoTimer) {
  // NTP (or an operator) steps the wall clock: timers are on monotonic time and stay put.
  Manual m;
  int fired = 0;
  m.loop.PostAfter(absl::Seconds(60), [&] { ++fired; });
  m.clock.StepWall(3600 * 1000);  // one hour ahead
  m.executor.RunUntilIdle();
  EXPECT_EQ(fired, 0);
  m.clock.StepWall(-2 * 3600 * 1000);  // and back, past where it began
  m.executor.RunUntilIdle();
  EXPECT_EQ(fired, 0);
  m.clock.Advance(60'000);
  m.executor.RunUntilIdle();
  EXPECT_EQ(fired, 1);
}

TEST(EventLoopTest, CancelledTimerNeverRuns) {
  Manual m;
  std::vector<int> seen;
  EventLoop::TimerId a = m.loop.PostAfter(absl::Milliseconds(5), [&] { seen.push_back(1); });
  EventLoop::TimerId b = m.loop.PostAfter(absl::Milliseconds(10), [&] { seen.push_back(2); });
  EXPECT_NE(a, b);
  m.loop.Cancel(a);
  m.loop.Cancel(12345);  // unknown ids are ignored
  EXPECT_EQ(m.executor.pending_timers(), 1u);
  m.clock.Advance(20);
  m.executor.RunUntilIdle();
  EXPECT_THAT(seen, ElementsAre(2));
}

TEST(EventLoopTest, NothingRunsAfterStop) {
  Manual m;
  std::vector<int> seen;
  m.loop.Post([&] { seen.push_back(1); });
  m.loop.PostAfter(absl::ZeroDuration(), [&] { seen.push_back(2); });
  m.loop.Stop();
  m.loop.Post([&] { seen.push_back(3); });
  m.loop.PostAfter(absl::ZeroDuration(), [&] { seen.push_back(4); });
  m.clock.Advance(1);
  m.executor.RunUntilIdle();
  EXPECT_TRUE(seen.empty());
  EXPECT_TRUE(m.loop.stopped());
  EXPECT_EQ(m.executor.pending_timers(), 0u);  // Stop() took its timers out of the executor
}

TEST(EventLoopTest, StopInsideATaskDropsTheRest) {
  Manual m;
  std::vector<int> seen;
  m.loop.Post([&] {
    seen.push_back(1);
    m.loop.Stop();  // must not wait for itself
  });
  m.loop.Post([&] { seen.push_back(2); });
  m.executor.RunUntilIdle();
  EXPECT_THAT(seen, ElementsAre(1));
}

TEST(EventLoopTest, ATimerOfADestroyedLoopIsHarmless) {
  Manual m;
  auto loop = std::make_unique<EventLoop>(&m.executor);
  int fired = 0;
  loop->PostAfter(absl::Milliseconds(5), [&] { ++fired; });
  loop->Post([&] { ++fired; });
  loop.reset();
  m.clock.Advance(10);
  m.executor.RunUntilIdle();  // the drain queued for the loop finds it stopped
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(m.executor.pending_timers(), 0u);
}

TEST(EventLoopTest, ManyLoopsShareTwoThreadsEachStaysSerialAndInOrder) {
  // 200 nodes' loops on one 2-thread executor: tasks of one loop never overlap and keep their
  // order; tasks of different loops do run side by side.
  FakeClock clock;
  Executor executor(&clock, /*threads=*/2, /*blocking_threads=*/1);
  EXPECT_EQ(executor.threads(), 3);
  constexpr int kLoops = 200, kTasks = 50;
  struct Node {
    std::unique_ptr<EventLoop> loop;
    std::atomic<int> inside{0};
    std::vector<int> seen;  // touched only by the node's own tasks
    bool overlapped = false;
  };
  std::vector<Node> nodes(kLoops);
  for (Node& n : nodes) n.loop = std::make_unique<EventLoop>(&executor);
  std::atomic<int> done{0};
  for (int t = 0; t < kTasks; ++t) {
    for (Node& n : nodes) {
      n.loop->Post([&n, t, &done] {
        if (n.inside.fetch_add(1) != 0) n.overlapped = true;
        n.seen.push_back(t);
        n.inside.fetch_sub(1);
        ++done;
      });
    }
  }
  ASSERT_TRUE(WaitFor([&] { return done.load() == kLoops * kTasks; }, absl::Seconds(30)))
      << done.load() << " of " << kLoops * kTasks << " ran";
  for (Node& n : nodes) {
    n.loop->Stop();
    EXPECT_FALSE(n.overlapped);
    ASSERT_EQ(n.seen.size(), static_cast<size_t>(kTasks));
    for (int t = 0; t < kTasks; ++t) EXPECT_EQ(n.seen[t], t);
  }
}

TEST(EventLoopTest, StopWaitsForTheTaskRunningOnAnotherThread) {
  FakeClock clock;
  Executor executor(&clock, /*threads=*/2);
  EventLoop loop(&executor);
  absl::Notification entered, release;
  std::atomic<bool> finished{false};
  std::atomic<bool> in_loop_thread{false};
  loop.Post([&] {
    in_loop_thread = loop.InLoopThread();
    entered.Notify();
    release.WaitForNotification();
    finished = true;
  });
  entered.WaitForNotification();
  EXPECT_TRUE(in_loop_thread.load());
  EXPECT_FALSE(loop.InLoopThread());  // the test thread is not running a task of the loop
  std::thread stopper([&] {
    loop.Stop();
    EXPECT_TRUE(finished.load()) << "Stop() returned while a task still ran";
  });
  release.Notify();
  stopper.join();
  EXPECT_TRUE(loop.stopped());
}

TEST(EventLoopTest, ThreadedExecutorFiresTimersWhenTheFakeClockMoves) {
  FakeClock clock;
  Executor executor(&clock, /*threads=*/2);
  EventLoop loop(&executor);
  std::atomic<int> fired{0};
  loop.PostAfter(absl::Seconds(30), [&] { ++fired; });
  // A sentinel through the same path proves the loop ran while the timer was not yet due.
  std::atomic<bool> sentinel{false};
  loop.Post([&] { sentinel = true; });
  ASSERT_TRUE(WaitFor([&] { return sentinel.load(); }, absl::Seconds(10)));
  EXPECT_EQ(fired.load(), 0);
  clock.Advance(30'000);  // wakes the waiting workers
  EXPECT_TRUE(WaitFor([&] { return fired.load() == 1; }, absl::Seconds(10)));
}

TEST(EventLoopTest, RealClockTimersFire) {
  Executor executor(RealClock::Get(), /*threads=*/1);
  EventLoop loop(&executor);
  std::atomic<int> fired{0};
  int64_t start = RealClock::Get()->MonotonicMs();
  std::atomic<int64_t> at{0};
  loop.PostAfter(absl::Milliseconds(20), [&] {
    at = RealClock::Get()->MonotonicMs();
    ++fired;
  });
  ASSERT_TRUE(WaitFor([&] { return fired.load() == 1; }, absl::Seconds(10)));
  EXPECT_GE(at.load() - start, 20);
}

TEST(ExecutorTest, BlockingWorkDoesNotHoldUpLoops) {
  FakeClock clock;
  Executor executor(&clock, /*threads=*/1, /*blocking_threads=*/1);
  EventLoop loop(&executor);
  absl::Notification release;
  std::atomic<bool> blocking_done{false};
  executor.SubmitBlocking([&] {
    release.WaitForNotification();
    blocking_done = true;
  });
  std::atomic<int> ran{0};
  for (int i = 0; i < 10; ++i) loop.Post([&] { ++ran; });
  EXPECT_TRUE(WaitFor([&] { return ran.load() == 10; }, absl::Seconds(10)));
  EXPECT_FALSE(blocking_done.load());
  release.Notify();
  EXPECT_TRUE(WaitFor([&] { return blocking_done.load(); }, absl::Seconds(10)));
}

TEST(ExecutorTest, ShutdownDropsWhatHasNotStarted) {
  FakeClock clock;
  Executor executor(&clock, /*threads=*/0);
  int ran = 0;
  executor.Submit([&] { ++ran; });
  executor.SubmitAfter(absl::Milliseconds(1), [&] { ++ran; });
  executor.Shutdown();
  executor.Submit([&] { ++ran; });
  clock.Advance(5);
  EXPECT_EQ(executor.RunUntilIdle(), 0u);
  EXPECT_EQ(ran, 0);
}

}  // namespace
}  // namespace x1368::core

namespace x1368::core {
namespace {

TEST(CoalescedTest, ABurstOfSchedulesRunsTheTaskOnceAfterTheDelay) {
  Manual m;
  int runs = 0;
  Coalesced report(&m.loop, absl::Milliseconds(200), [&] { ++runs; });
  m.loop.Post([&] {
    for (int i = 0; i < 5; ++i) report.Schedule();
  });
  m.executor.RunUntilIdle();
  EXPECT_TRUE(report.pending());
  m.clock.Advance(199);
  m.executor.RunUntilIdle();
  EXPECT_EQ(runs, 0);
  m.clock.Advance(1);
  m.executor.RunUntilIdle();
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(report.pending());
  m.loop.Post([&] { report.Schedule(); });  // a later burst gets a run of its own
  m.executor.RunUntilIdle();
  m.clock.Advance(200);
  m.executor.RunUntilIdle();
  EXPECT_EQ(runs, 2);
}

TEST(CoalescedTest, ZeroDelayRunsBehindWhatIsQueuedAndAGoneOwnerDropsItsRun) {
  Manual m;
  std::vector<int> seen;
  Coalesced flush(&m.loop, absl::ZeroDuration(), [&] { seen.push_back(0); });
  m.loop.Post([&] {
    flush.Schedule();
    flush.Schedule();
  });
  m.loop.Post([&] { seen.push_back(1); });  // queued before the flush runs
  m.executor.RunUntilIdle();
  EXPECT_THAT(seen, ElementsAre(1, 0));

  int runs = 0;
  {
    auto gone = std::make_unique<Coalesced>(&m.loop, absl::Milliseconds(5), [&] { ++runs; });
    m.loop.Post([&] { gone->Schedule(); });
    m.executor.RunUntilIdle();
  }
  m.clock.Advance(10);
  m.executor.RunUntilIdle();
  EXPECT_EQ(runs, 0);
}

}  // namespace
}  // namespace x1368::core
