// A test fixture with a real Mosquitto on a free loopback port and an in-process TestTree on it,
// both stopped after the test (the tree first).
#ifndef X1368_TESTING_BROKER_TREE_H_
#define X1368_TESTING_BROKER_TREE_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "testing/mosquitto.h"
#include "testing/status_matchers.h"
#include "testing/tree.h"
#include "x1368/core/node.h"

namespace x1368::testing {

class BrokerTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = MosquittoBroker::Start(broker_dir_.path());
    ASSERT_OK(b);
    broker_ = *std::move(b);
    tree_ = std::make_unique<TestTree>(broker_.get());
  }
  void TearDown() override {
    tree_.reset();
    broker_.reset();
  }

  // The value of the counter `name` (no labels) in `node`'s metrics; 0 when it has none.
  static uint64_t Counter(core::NodeContext& node, const std::string& name) {
    std::string text = node.metrics().RenderPrometheus();
    size_t pos = text.find("\n" + name + " ");
    if (pos == std::string::npos) return 0;
    return std::stoull(text.substr(pos + name.size() + 2));
  }

  TempDir broker_dir_;
  std::unique_ptr<MosquittoBroker> broker_;
  std::unique_ptr<TestTree> tree_;
};

}  // namespace x1368::testing

#endif  // X1368_TESTING_BROKER_TREE_H_
