// The node's single-threaded event loop (x1368/core/event_loop.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "testing/wait.h"
#include "x1368/core/event_loop.h"

namespace x1368::core {
namespace {

using ::testing::ElementsAre;
using ::x1368::testing::WaitFor;

TEST(EventLoopTest, PostedTasksRunInOrder) {
  EventLoop loop;
  std::vector<int> seen;
  for (int i = 1; i <= 5; ++i) loop.Post([&seen, i] { seen.push_back(i); });
  EXPECT_TRUE(seen.empty());  // nothing runs until the loop does
  loop.RunPending();
  EXPECT_THAT(seen, ElementsAre(1, 2, 3, 4, 5));
}

TEST(EventLoopTest, RunPendingRunsTasksPostedByTasks) {
  EventLoop loop;
  std::vector<int> seen;
  loop.Post([&] {
    seen.push_back(1);
    loop.Post([&] { seen.push_back(3); });
  });
  loop.Post([&] { seen.push_back(2); });
  loop.RunPending();
  EXPECT_THAT(seen, ElementsAre(1, 2, 3));
}

TEST(EventLoopTest, RunPendingRunsDueTimersOnly) {
  EventLoop loop;
  std::vector<int> seen;
  loop.PostAfter(absl::Hours(1), [&] { seen.push_back(99); });
  loop.PostAfter(absl::ZeroDuration(), [&] { seen.push_back(1); });
  loop.RunPending();
  EXPECT_THAT(seen, ElementsAre(1));
  loop.RunPending();
  EXPECT_THAT(seen, ElementsAre(1));
}

TEST(EventLoopTest, TimersRunInDeadlineOrder) {
  EventLoop loop;
  std::vector<int> seen;
  loop.PostAfter(absl::Milliseconds(30), [&] { seen.push_back(3); });
  loop.PostAfter(absl::Milliseconds(10), [&] { seen.push_back(1); });
  loop.PostAfter(absl::Milliseconds(20), [&] { seen.push_back(2); });
  loop.PostAfter(absl::Milliseconds(40), [&] { loop.Stop(); });
  loop.Post([&] { seen.push_back(0); });  // immediate work comes before every timer
  absl::Time start = absl::Now();
  loop.Run();
  EXPECT_THAT(seen, ElementsAre(0, 1, 2, 3));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(40));
}

TEST(EventLoopTest, CancelledTimerNeverRuns) {
  EventLoop loop;
  std::vector<int> seen;
  EventLoop::TimerId a = loop.PostAfter(absl::Milliseconds(5), [&] { seen.push_back(1); });
  EventLoop::TimerId b = loop.PostAfter(absl::Milliseconds(10), [&] { seen.push_back(2); });
  EXPECT_NE(a, b);
  loop.Cancel(a);
  loop.Cancel(12345);  // unknown ids are ignored
  loop.PostAfter(absl::Milliseconds(20), [&] { loop.Stop(); });
  loop.Run();
  EXPECT_THAT(seen, ElementsAre(2));
}

TEST(EventLoopTest, StopFromAnotherThreadEndsRun) {
  EventLoop loop;
  std::atomic<bool> running{false};
  std::atomic<bool> in_loop_thread{false};
  std::atomic<bool> returned{false};
  loop.Post([&] {
    in_loop_thread = loop.InLoopThread();
    running = true;
  });
  std::thread t([&] {
    loop.Run();
    returned = true;
  });
  ASSERT_TRUE(WaitFor([&] { return running.load(); }, absl::Seconds(5)));
  EXPECT_TRUE(in_loop_thread.load());
  EXPECT_FALSE(loop.InLoopThread());  // the test thread is not the loop thread
  EXPECT_FALSE(returned.load());      // an idle loop waits for work
  loop.Stop();
  EXPECT_TRUE(WaitFor([&] { return returned.load(); }, absl::Seconds(5)))
      << "Run() did not return after Stop()";
  t.join();
  EXPECT_TRUE(loop.stopped());
}

TEST(EventLoopTest, PostFromAnotherThreadWakesTheLoop) {
  EventLoop loop;
  std::atomic<int> ran{0};
  std::thread t([&] { loop.Run(); });
  loop.Post([&] { ++ran; });
  loop.Post([&] { ++ran; });
  EXPECT_TRUE(WaitFor([&] { return ran.load() == 2; }, absl::Seconds(5))) << "ran " << ran.load();
  loop.Stop();
  t.join();
}

TEST(EventLoopTest, NothingRunsAfterStop) {
  EventLoop loop;
  std::vector<int> seen;
  loop.Post([&] { seen.push_back(1); });
  loop.PostAfter(absl::ZeroDuration(), [&] { seen.push_back(2); });
  loop.Stop();
  loop.Post([&] { seen.push_back(3); });
  loop.RunPending();
  loop.Run();  // returns at once
  EXPECT_TRUE(seen.empty());
  EXPECT_TRUE(loop.stopped());
}

TEST(EventLoopTest, StopInsideATaskDropsTheRest) {
  EventLoop loop;
  std::vector<int> seen;
  loop.Post([&] {
    seen.push_back(1);
    loop.Stop();
  });
  loop.Post([&] { seen.push_back(2); });
  loop.Run();
  EXPECT_THAT(seen, ElementsAre(1));
}

}  // namespace
}  // namespace x1368::core
