// The MQTT transport against a real Mosquitto: QoS 1 delivery, retained messages, the Last Will
// signed before each connect, the bounded buffer while disconnected (oldest dropped first), and
// reconnection with re-subscription after the broker dies.
#include "x1368/core/transport.h"

#include <gtest/gtest.h>

#include <set>

#include "testing/mosquitto.h"
#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"

namespace x1368::testing {
namespace {

class Inbox {
 public:
  core::Transport::MessageHandler Handler() {
    return [this](core::MqttMessage m) {
      absl::MutexLock lock(&mu_);
      messages_.push_back(std::move(m));
    };
  }
  std::vector<core::MqttMessage> Get() {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  size_t size() {
    absl::MutexLock lock(&mu_);
    return messages_.size();
  }

 private:
  absl::Mutex mu_;
  std::vector<core::MqttMessage> messages_;
};

class TransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = MosquittoBroker::Start(dir_.path());
    ASSERT_OK(b);
    broker_ = *std::move(b);
  }
  std::unique_ptr<core::Transport> Connect(const std::string& id, Inbox* inbox,
                                           std::vector<std::string> filters,
                                           int max_buffered = 1000) {
    core::TransportOptions o = broker_->ClientOptions(id);
    o.max_buffered = max_buffered;
    o.session_expiry_s = 0;
    auto t = core::MakeMqttTransport(o);
    if (inbox != nullptr) t->SetMessageHandler(inbox->Handler());
    for (const auto& f : filters) t->AddSubscription(f);
    EXPECT_OK(t->Start());
    EXPECT_TRUE(WaitFor([&] { return t->connected(); }));
    return t;
  }

  TempDir dir_;
  std::unique_ptr<MosquittoBroker> broker_;
};

TEST_F(TransportTest, DeliversInOrderWithQos1) {
  Inbox inbox;
  auto sub = Connect("sub", &inbox, {"t/#"});
  auto pub = Connect("pub", nullptr, {});
  for (int i = 0; i < 200; ++i) ASSERT_OK(pub->Publish({"t/x", std::to_string(i)}));
  ASSERT_TRUE(WaitFor([&] { return inbox.size() == 200; })) << "got " << inbox.size();
  auto got = inbox.Get();
  for (int i = 0; i < 200; ++i) EXPECT_EQ(got[i].payload, std::to_string(i));
}

TEST_F(TransportTest, LastWillIsFreshForEveryConnectionAndSentOnAbruptLoss) {
  Inbox inbox;
  auto watcher = Connect("watcher", &inbox, {"will/#"});
  core::TransportOptions o = broker_->ClientOptions("mortal");
  o.keepalive_s = 1;
  auto mortal = core::MakeMqttTransport(o);
  int wills = 0;
  mortal->SetWillProvider([&wills] {
    return core::MqttMessage{"will/mortal", "offline-" + std::to_string(++wills), false};
  });
  ASSERT_OK(mortal->Start());
  ASSERT_TRUE(WaitFor([&] { return mortal->connected(); }));
  // A clean Stop() sends no Will.
  mortal->Stop();
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(inbox.size(), 0u);
  EXPECT_EQ(wills, 1);
}

TEST_F(TransportTest, BuffersWhileDisconnectedAndDropsTheOldestBeyondTheBound) {
  auto pub = Connect("pub", nullptr, {}, /*max_buffered=*/5);
  broker_->Kill();
  ASSERT_TRUE(WaitFor([&] { return !pub->connected(); }));
  // Retained, so the subscriber that comes later still finds what survived the buffer.
  for (int i = 0; i < 10; ++i)
    ASSERT_OK(pub->Publish({"buf/" + std::to_string(i), "m" + std::to_string(i), true}));
  ASSERT_OK(broker_->Restart());
  ASSERT_TRUE(WaitFor([&] { return pub->connected(); }));
  Inbox inbox;
  auto sub = Connect("sub", &inbox, {"buf/#"});
  ASSERT_TRUE(WaitFor([&] { return inbox.size() >= 5; }));
  absl::SleepFor(absl::Milliseconds(300));
  std::set<std::string> topics;
  for (const auto& m : inbox.Get()) topics.insert(m.topic);
  EXPECT_EQ(topics, (std::set<std::string>{"buf/5", "buf/6", "buf/7", "buf/8", "buf/9"}));
}

TEST_F(TransportTest, ReconnectsAndResubscribesAfterTheBrokerDies) {
  Inbox inbox;
  auto sub = Connect("sub", &inbox, {"again/#"});
  auto pub = Connect("pub", nullptr, {});
  uint64_t connects = sub->stats().connects;
  broker_->Kill();
  ASSERT_OK(broker_->Restart());  // an empty broker: no session, no subscription survives
  ASSERT_TRUE(WaitFor([&] { return sub->stats().connects > connects && pub->connected(); }));
  ASSERT_OK(pub->Publish({"again/x", "after"}));
  ASSERT_TRUE(WaitFor([&] { return inbox.size() == 1; }));
  EXPECT_EQ(inbox.Get()[0].payload, "after");
  EXPECT_GE(sub->stats().connection_losses, 1u);
}

}  // namespace
}  // namespace x1368::testing
