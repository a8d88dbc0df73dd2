// The in-memory broker (x1368/core/fake_transport.h): delivery, retained messages, the Will, and
// safety against a transport that goes away while another thread routes to it (the race behind a
// heap-use-after-free that made CI fail at random).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "testing/wait.h"
#include "x1368/core/fake_transport.h"

namespace x1368::core {
namespace {

using ::testing::ElementsAre;
using ::x1368::testing::WaitFor;

// What a node behind a transport holds: its handler writes here, so a delivery after the node is
// gone is a use-after-free that ASan reports.
struct Inbox {
  absl::Mutex mu;
  std::vector<std::string> payloads;
  void Add(const MqttMessage& m) {
    absl::MutexLock lock(&mu);
    payloads.push_back(m.payload);
  }
  std::vector<std::string> Get() {
    absl::MutexLock lock(&mu);
    return payloads;
  }
};

std::unique_ptr<FakeTransport> Subscriber(FakeBroker& broker, const std::string& id,
                                          const std::string& filter, Inbox* inbox) {
  auto t = broker.Connect(id);
  t->SetMessageHandler([inbox](MqttMessage m) { inbox->Add(m); });
  t->AddSubscription(filter);
  EXPECT_TRUE(t->Start().ok());
  return t;
}

TEST(FakeBrokerTest, DeliversInPublishOrderToMatchingSubscribersOnly) {
  FakeBroker broker;
  Inbox a, b;
  auto ta = Subscriber(broker, "a", "x/+/up", &a);
  auto tb = Subscriber(broker, "b", "y/#", &b);
  auto pub = broker.Connect("p");
  ASSERT_TRUE(pub->Start().ok());
  ASSERT_TRUE(pub->Publish({"x/1/up", "1"}).ok());
  ASSERT_TRUE(pub->Publish({"y/z", "2"}).ok());
  ASSERT_TRUE(pub->Publish({"x/2/up", "3"}).ok());
  EXPECT_THAT(a.Get(), ElementsAre("1", "3"));
  EXPECT_THAT(b.Get(), ElementsAre("2"));
}

TEST(FakeBrokerTest, RetainedMessageReachesALaterSubscriberAndEmptyPayloadClearsIt) {
  FakeBroker broker;
  auto pub = broker.Connect("p");
  ASSERT_TRUE(pub->Start().ok());
  ASSERT_TRUE(pub->Publish({"d/1", "kept", /*retained=*/true}).ok());
  Inbox early;
  auto t1 = Subscriber(broker, "s1", "d/#", &early);
  EXPECT_THAT(early.Get(), ElementsAre("kept"));
  ASSERT_TRUE(pub->Publish({"d/1", "", /*retained=*/true}).ok());
  Inbox late;
  auto t2 = Subscriber(broker, "s2", "d/#", &late);
  EXPECT_TRUE(late.Get().empty());
}

TEST(FakeBrokerTest, CutPublishesTheWillAndStopDoesNot) {
  FakeBroker broker;
  Inbox watcher;
  auto w = Subscriber(broker, "w", "will/#", &watcher);
  auto cut = broker.Connect("c1");
  cut->SetWillProvider([] { return MqttMessage{"will/c1", "gone"}; });
  ASSERT_TRUE(cut->Start().ok());
  auto stopped = broker.Connect("c2");
  stopped->SetWillProvider([] { return MqttMessage{"will/c2", "gone"}; });
  ASSERT_TRUE(stopped->Start().ok());
  cut->Cut();
  stopped->Stop();
  EXPECT_THAT(watcher.Get(), ElementsAre("gone"));
  EXPECT_EQ(broker.Published().back().topic, "will/c1");
}

TEST(FakeBrokerTest, NoHandlerRunsAfterStopReturnsWhileAnotherThreadRoutes) {
  // A publisher thread routes without pause while this thread connects subscribers, stops them
  // and destroys them together with the state their handler writes to. Before the fix, the
  // broker could still deliver to a transport (and its node) destroyed under it.
  FakeBroker broker;
  broker.KeepLog(false);
  std::atomic<bool> done{false};
  std::atomic<int> delivered_after_stop{0};
  std::thread publisher([&] {
    auto pub = broker.Connect("publisher");
    ASSERT_TRUE(pub->Start().ok());
    // Bounded in time, not count: the rounds below take what the machine makes them take.
    absl::Time deadline = absl::Now() + absl::Seconds(60);
    for (int i = 0; !done.load() && absl::Now() < deadline; ++i) {
      ASSERT_TRUE(pub->Publish({"t/up", std::to_string(i)}).ok());
    }
  });
  for (int round = 0; round < 300; ++round) {
    auto inbox = std::make_unique<Inbox>();
    auto stopped = std::make_shared<std::atomic<bool>>(false);
    auto t = broker.Connect("sub-" + std::to_string(round));
    t->SetMessageHandler([inbox = inbox.get(), stopped, &delivered_after_stop](MqttMessage m) {
      if (stopped->load()) ++delivered_after_stop;
      inbox->Add(m);
    });
    t->AddSubscription("t/#");
    ASSERT_TRUE(t->Start().ok());
    ASSERT_TRUE(
        WaitFor([&] { return !inbox->Get().empty(); }, absl::Seconds(10), absl::Milliseconds(1)));
    if (round % 2 == 0) t->Cut();  // an abrupt loss first, then the node goes away
    t->Stop();
    stopped->store(true);
    t.reset();
    inbox.reset();
  }
  done = true;
  publisher.join();
  EXPECT_EQ(delivered_after_stop.load(), 0);
}

TEST(FakeBrokerTest, AHandlerMayStopItsOwnTransport) {
  FakeBroker broker;
  auto t = broker.Connect("self");
  std::atomic<int> calls{0};
  FakeTransport* raw = t.get();
  t->SetMessageHandler([raw, &calls](MqttMessage) {
    ++calls;
    raw->Stop();  // must not wait for its own delivery
  });
  t->AddSubscription("s/#");
  ASSERT_TRUE(t->Start().ok());
  broker.Inject({"s/1", "a"});
  broker.Inject({"s/1", "b"});
  EXPECT_EQ(calls.load(), 1);
  EXPECT_FALSE(t->connected());
}

}  // namespace
}  // namespace x1368::core
