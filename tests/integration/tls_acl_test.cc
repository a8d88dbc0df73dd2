// The broker as deployments should run it (docs/architecture.md §4, §5): TLS 1.3 with a client
// certificate for every node (its CN is the node id) and the ACL that confines each node to the
// topics that carry its own id. The update works through it; a node cannot read or write another
// node's topics; a client without a certificate cannot connect at all.
#include <gtest/gtest.h>

#include "testing/mosquitto.h"
#include "testing/status_matchers.h"
#include "testing/tree.h"
#include "testing/wait.h"
#include "x1368/core/mqtt_transport.h"

namespace x1368::testing {
namespace {

class TlsAclTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = MosquittoBroker::Start(broker_dir_.path(), {.tls = true});
    ASSERT_OK(b);
    broker_ = *std::move(b);
    tree_ = std::make_unique<TestTree>(broker_.get());
    tree_->AddRoot();
    gw1_ = tree_->AddIntermediate("gw1", "root", {"dev-*"});
    tree_->AddClient("dev-1", "gw1");
    tree_->AddClient("dev-2", "gw1");
    ASSERT_TRUE(tree_->WaitForDevices({"dev-1", "dev-2"},
                                      [](const auto& d) { return d.version() == "1.0.0"; }))
        << "nodes did not report over TLS; broker log: " << broker_->log_path();
  }
  void TearDown() override {
    tree_.reset();
    broker_.reset();
  }

  TempDir broker_dir_;
  std::unique_ptr<MosquittoBroker> broker_;
  std::unique_ptr<TestTree> tree_;
  IntermediateNode* gw1_ = nullptr;
};

TEST_F(TlsAclTest, SignedUpdateThroughTlsAndAcl) {
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(128 * 1024, 31), "2.0.0", 2));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  EXPECT_TRUE(tree_->WaitForVersion({"dev-1", "dev-2"}, "2.0.0"));
}

TEST_F(TlsAclTest, ANodeCannotReadOrWriteAnotherNodesTopics) {
  // dev-3 holds a valid TLS certificate of its own, and tries to act on dev-1's topics.
  auto dev3 = tree_->RawTransport("dev-3");
  absl::Mutex mu;
  std::vector<std::string> received;
  dev3->SetMessageHandler([&](core::MqttMessage m) {
    absl::MutexLock lock(&mu);
    received.push_back(m.topic);
  });
  dev3->AddSubscription("x1368/gw1/dev-1/down/#");  // not its own: denied
  dev3->AddSubscription("x1368/gw1/_all/down/#");   // every child may read broadcasts
  ASSERT_OK(dev3->Start());
  ASSERT_TRUE(WaitFor([&] { return dev3->connected(); }))
      << "dev-3 could not connect with its certificate";

  // Writes on dev-1's up topic are dropped by the broker; writes on its own reach gw1.
  uint64_t mismatches_before = gw1_->node->metrics().TotalRejections();
  ASSERT_OK(dev3->Publish({"x1368/gw1/dev-1/up/status", "forged report in dev-1's name"}));
  ASSERT_OK(dev3->Publish({"x1368/gw1/dev-3/up/status", "junk on its own topic"}));
  ASSERT_TRUE(WaitFor([&] { return gw1_->node->metrics().Rejections(v1::MALFORMED) >= 1; }))
      << "dev-3's message on its own topic never reached gw1";
  // Same connection, published first: had the forged one passed the ACL it would be counted too.
  EXPECT_EQ(gw1_->node->metrics().TotalRejections(), mismatches_before + 1);

  // The update traffic for dev-1 flows while dev-3 listens; it sees only the broadcasts.
  ASSERT_OK(tree_->Publish(TestPki::MakeImage(64 * 1024, 32), "2.0.0", 2));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  ASSERT_TRUE(tree_->WaitForVersion({"dev-1", "dev-2"}, "2.0.0"));
  absl::MutexLock lock(&mu);
  bool saw_broadcast = false;
  for (const std::string& t : received) {
    EXPECT_EQ(t.find("/dev-1/"), std::string::npos) << "dev-3 read " << t;
    saw_broadcast |= t == "x1368/gw1/_all/down/cmd";
  }
  EXPECT_TRUE(saw_broadcast) << "dev-3 should still read its parent's broadcasts";
  dev3->Stop();
}

TEST_F(TlsAclTest, NoCertificateNoConnection) {
  core::TransportOptions o = broker_->ClientOptions("intruder");
  o.tls.cert_file.clear();
  o.tls.key_file.clear();
  auto intruder = core::MakeMqttTransport(o, tree_->executor());
  ASSERT_OK(intruder->Start());
  EXPECT_FALSE(WaitFor([&] { return intruder->connected(); }, absl::Seconds(3)));
  intruder->Stop();

  core::TransportOptions plain = broker_->ClientOptions("plain");
  plain.tls = {};
  plain.broker_uri = "tcp://127.0.0.1:" + std::to_string(broker_->port());
  auto cleartext = core::MakeMqttTransport(plain, tree_->executor());
  ASSERT_OK(cleartext->Start());
  EXPECT_FALSE(WaitFor([&] { return cleartext->connected(); }, absl::Seconds(3)));
  cleartext->Stop();
}

}  // namespace
}  // namespace x1368::testing
