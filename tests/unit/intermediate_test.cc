// The intermediate module on the in-memory broker (no Mosquitto): one cache fill from upstream
// for the whole subtree, storage failures that are counted and reported upward, never dropped,
// and batched chunk requests answered chunk by chunk (by root too).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "testing/status_matchers.h"
#include "testing/tree.h"
#include "testing/wait.h"
#include "x1368/core/chunk_service.h"
#include "x1368/core/crypto.h"
#include "x1368/core/envelope.h"
#include "x1368/core/file_util.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/sequence.h"

namespace x1368::testing {
namespace {

// A child of `parent` that asks for chunks by hand, signed with its own certificate, and keeps
// what comes back on its down topics: the chunks, and the parent's refusals.
class ChunkAsker {
 public:
  ChunkAsker(TestTree& tree, const std::string& id, v1::Role role, const std::string& parent)
      : id_(id),
        parent_(parent),
        node_(tree.pki().Issue(id, role,
                               role == v1::ROLE_INTERMEDIATE ? std::vector<std::string>{"dev-*"}
                                                             : std::vector<std::string>{})),
        transport_(tree.RawTransport(id)) {
    counter_ = *core::SeqCounter::Open(&store_, "seq");
    sealer_.emplace(id_, node_.key, node_.cert, counter_.get(), core::RealClock::Get());
    transport_->SetMessageHandler([this](core::MqttMessage m) {
      absl::MutexLock lock(&mu_);
      if (absl::EndsWith(m.topic, "/down/data")) {
        v1::ChunkData d;
        if (d.ParseFromString(m.payload)) data_.push_back(std::move(d));
      } else if (absl::EndsWith(m.topic, "/down/fw")) {
        v1::Envelope env;
        v1::Body body;
        if (env.ParseFromString(m.payload) && body.ParseFromString(env.body()) &&
            body.has_chunk_response()) {
          refusals_.push_back(body.chunk_response());
        }
      }
    });
    transport_->AddSubscription(absl::StrCat("x1368/", parent_, "/", id_, "/down/#"));
  }
  ~ChunkAsker() { transport_->Stop(); }

  absl::Status Start() {
    X1368_RETURN_IF_ERROR(transport_->Start());
    if (!WaitFor([&] { return transport_->connected(); })) {
      return absl::DeadlineExceededError("not connected");
    }
    return absl::OkStatus();
  }

  // Asks for `count` chunks of `length` bytes from `offset` on with request id `id`, then for one
  // chunk more (id + 1000) as a marker: the parent serves a child's requests in order, so once
  // the marker's answer is here, so is everything `id` got.
  void Ask(const std::string& sha, uint64_t offset, uint32_t length, uint32_t count, uint64_t id) {
    Send(sha, offset, length, count, id);
    Send(sha, 0, length, 1, id + 1000);
    EXPECT_TRUE(WaitFor([&] { return Answered(id + 1000); })) << "the marker was never answered";
  }

  void Send(const std::string& sha, uint64_t offset, uint32_t length, uint32_t count, uint64_t id) {
    v1::Body body;
    v1::FirmwareChunkRequest* r = body.mutable_chunk_request();
    r->set_image_sha256(sha);
    r->set_offset(offset);
    r->set_length(length);
    r->set_count(count);
    r->set_request_id(id);
    auto sealed = sealer_->Seal(parent_, std::move(body), 600'000);
    ASSERT_OK(sealed);
    ASSERT_OK(transport_->Publish({absl::StrCat("x1368/", parent_, "/", id_, "/up/fw"), *sealed}));
  }

  // Whether request `id` got a chunk or a refusal.
  bool Answered(uint64_t id) { return !Data(id).empty() || !Refusals(id).empty(); }

  // In offset order.
  std::vector<v1::ChunkData> Data(uint64_t id) {
    absl::MutexLock lock(&mu_);
    std::vector<v1::ChunkData> out;
    for (const auto& d : data_) {
      if (d.request_id() == id) out.push_back(d);
    }
    std::stable_sort(out.begin(), out.end(), [](const v1::ChunkData& a, const v1::ChunkData& b) {
      return a.offset() < b.offset();
    });
    return out;
  }
  std::vector<v1::FirmwareChunkResponse> Refusals(uint64_t id) {
    absl::MutexLock lock(&mu_);
    std::vector<v1::FirmwareChunkResponse> out;
    for (const auto& r : refusals_) {
      if (r.request_id() == id) out.push_back(r);
    }
    return out;
  }

 private:
  const std::string id_;
  const std::string parent_;
  TestNode node_;
  core::MemKvStore store_;
  std::unique_ptr<core::SeqCounter> counter_;
  std::optional<core::EnvelopeSealer> sealer_;
  std::unique_ptr<core::Transport> transport_;
  absl::Mutex mu_;
  std::vector<v1::ChunkData> data_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::FirmwareChunkResponse> refusals_ ABSL_GUARDED_BY(mu_);
};

class IntermediateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tree_ = std::make_unique<TestTree>(nullptr);
    tree_->AddRoot();
    gw_ = tree_->AddIntermediate("gw1", "root", {"dev-*"});
    image_ = TestPki::MakeImage(200 * 1024, 3);
  }

  // A counter of the gateway's, read on its loop.
  int64_t GatewayCounter(const std::string& name) {
    return OnLoop(*gw_->loop, [&] { return gw_->node->metrics().Counter(name, "")->value(); });
  }

  // Count of `reason` among the rejections a gateway reported to root about itself.
  uint64_t NodeRejections(const std::string& id, v1::Reason reason) {
    const v1::FleetStatus fleet = tree_->Fleet();
    for (const v1::NodeRecord& n : fleet.nodes()) {
      if (n.node_id() != id) continue;
      for (const v1::ReasonCount& rc : n.rejections()) {
        if (rc.reason() == reason) return rc.count();
      }
    }
    return 0;
  }

  std::unique_ptr<TestTree> tree_;
  IntermediateNode* gw_ = nullptr;
  std::string image_;
};

TEST_F(IntermediateTest, FetchesTheImageOnceForTheWholeSubtree) {
  std::vector<std::string> ids = {"dev-1", "dev-2", "dev-3", "dev-4"};
  for (const std::string& id : ids) tree_->AddClient(id, "gw1");
  ASSERT_TRUE(tree_->WaitForDevices(ids, [](const auto& d) { return d.version() == "1.0.0"; }));
  ASSERT_OK(tree_->Publish(image_, "2.0.0", 2));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  ASSERT_TRUE(tree_->WaitForVersion(ids, "2.0.0"));
  // 200 KiB in the manifest's 16 KiB chunks: 13 chunks from root, whatever the children.
  EXPECT_EQ(GatewayCounter("x1368_chunks_fetched_total"), 13);
  // To each child: its chunk table, then 13 chunks.
  EXPECT_GE(GatewayCounter("x1368_chunks_served_total"), 4 * (1 + 13));
}

// Issue #13: devices that start together with their gateway publish their first report before
// the gateway has subscribed, and the broker (no retained message, no session yet) drops it.
// The gateway asks its children for their state once its link is up, so root hears from every
// device now, not only at the next periodic report (an hour here).
TEST_F(IntermediateTest, DevicesThatReportedBeforeTheirGatewaySubscribedAreAskedAgain) {
  ClientSpec quiet;
  quiet.report_interval = absl::Hours(1);
  std::vector<std::string> ids = {"late-1", "late-2", "late-3", "late-4"};
  for (const std::string& id : ids) tree_->AddClient(id, "gw2", quiet);
  tree_->AddIntermediate("gw2", "root", {"late-*"});
  EXPECT_TRUE(tree_->WaitForDevices(
      ids, [](const auto& d) { return d.version() == "1.0.0"; }, absl::Seconds(10)));
}

// The same one tier up: the lower gateway heard its devices, but its batch went out before its
// own parent had subscribed. The upper gateway's request travels down the whole subtree.
TEST_F(IntermediateTest, AGatewayThatSubscribesLateGetsItsWholeSubtreeReported) {
  ClientSpec quiet;
  quiet.report_interval = absl::Hours(1);
  tree_->fake_broker()->KeepLog(true);
  tree_->AddIntermediate("gw-low", "gw-mid", {"low-*"});
  std::vector<std::string> ids = {"low-1", "low-2", "low-3"};
  for (const std::string& id : ids) tree_->AddClient(id, "gw-low", quiet);
  // Every report has gone out in gw-low's batches (into nothing) before gw-mid exists.
  auto batched = [&] {
    int reports = 0;
    for (const core::MqttMessage& m : tree_->fake_broker()->Published()) {
      v1::Envelope env;
      v1::Body body;
      if (m.topic == "x1368/gw-mid/gw-low/up/status" && env.ParseFromString(m.payload) &&
          body.ParseFromString(env.body())) {
        reports += body.status_batch().reports_size();
      }
    }
    return reports;
  };
  ASSERT_TRUE(WaitFor([&] { return batched() >= 3; }, absl::Seconds(10)));
  tree_->AddIntermediate("gw-mid", "root", {"gw-low", "low-*"});
  EXPECT_TRUE(tree_->WaitForDevices(
      ids, [](const auto& d) { return d.version() == "1.0.0"; }, absl::Seconds(10)));
}

// Issue #14: a gateway that cannot store the image is a transient failure for its children (the
// operator may mend it): they keep their firmware and retry, with backoff, until the campaign's
// deadline, and only then fail, saying why. Root sees the gateway's storage error meanwhile.
TEST_F(IntermediateTest, ACacheThatCannotBeWrittenKeepsItsChildrenRetryingUntilTheDeadline) {
  ClientNode* dev = tree_->AddClient("dev-1", "gw1");
  ASSERT_TRUE(
      tree_->WaitForDevices({"dev-1"}, [](const auto& d) { return d.version() == "1.0.0"; }));
  // The cache directory becomes a file: the gateway cannot store the image.
  std::string cache = gw_->dir + "/cache";
  std::filesystem::remove_all(cache);
  ASSERT_OK(core::WriteFileAtomic(cache, "not a directory"));
  ASSERT_OK(tree_->Publish(image_, "2.0.0", 2));
  absl::Time start = absl::Now();
  // Each attempt waits out its chunk timeouts (2 + 4 + 8 s here): the second one ends past the
  // deadline.
  ASSERT_OK(tree_->StartCampaign("2.0.0", "fw", /*deadline_s=*/20));
  // Root sees the gateway's storage error in the gateway's own report, while the device waits.
  EXPECT_TRUE(WaitFor([&] { return NodeRejections("gw1", v1::STORAGE_ERROR) > 0; }))
      << "root never heard of the gateway's storage error";
  EXPECT_TRUE(tree_->WaitForDevices(
      {"dev-1"}, [](const v1::DeviceRecord& d) { return d.state() == v1::FAILED; },
      absl::Seconds(50)))
      << tree_->Device("dev-1")->ShortDebugString();
  EXPECT_GE(absl::Now() - start, absl::Seconds(19)) << "gave up before the deadline";
  std::optional<v1::DeviceRecord> d = tree_->Device("dev-1");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->reason(), v1::DEADLINE_PASSED) << d->ShortDebugString();
  EXPECT_THAT(d->detail(), ::testing::HasSubstr("DOWNLOAD_FAILED")) << "the last cause is kept";
  EXPECT_THAT(d->detail(), ::testing::HasSubstr("gave up at the deadline after "));
  EXPECT_EQ(d->version(), "1.0.0");
  EXPECT_GT(OnLoop(*dev->loop,
                   [&] {
                     return dev->node->metrics().Counter("x1368_update_retries_total", "")->value();
                   }),
            0);
}

// One signed request for several chunks: each comes back alone, with the request's id, from the
// gateway's cache (the image filled for dev-1) and from root's firmware server alike. A batch
// that runs past the end gets the chunks there are, a count of 0 is one chunk, and a count
// beyond kMaxChunksPerRequest is refused whole.
class BatchServingTest : public IntermediateTest {
 protected:
  static constexpr uint32_t kChunk = 16 * 1024;  // the tree's manifests
  void SetUp() override {
    IntermediateTest::SetUp();
    tree_->AddClient("dev-1", "gw1");
    ASSERT_TRUE(
        tree_->WaitForDevices({"dev-1"}, [](const auto& d) { return d.version() == "1.0.0"; }));
    ASSERT_OK(tree_->Publish(image_, "2.0.0", 2));
    ASSERT_OK(tree_->StartCampaign("2.0.0"));
    ASSERT_TRUE(tree_->WaitForVersion({"dev-1"}, "2.0.0"));
    sha_ = core::Sha256(image_);
  }

  // Every case at `parent`, asked by `asker`.
  void ExpectBatchesServed(ChunkAsker& asker) {
    const uint64_t chunks = (image_.size() + kChunk - 1) / kChunk;  // 13, the last short
    // Four from the second chunk on.
    asker.Ask(sha_, kChunk, kChunk, 4, 1);
    std::vector<v1::ChunkData> got = asker.Data(1);
    ASSERT_EQ(got.size(), 4u);
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].offset(), (i + 1) * kChunk);
      EXPECT_EQ(got[i].data(), image_.substr((i + 1) * kChunk, kChunk));
      EXPECT_EQ(got[i].image_sha256(), sha_);
    }
    // Five from the second-to-last: the two there are, the last one short.
    asker.Ask(sha_, (chunks - 2) * kChunk, kChunk, 5, 2);
    got = asker.Data(2);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].data(), image_.substr((chunks - 2) * kChunk, kChunk));
    EXPECT_EQ(got[1].data(), image_.substr((chunks - 1) * kChunk));
    // The whole image in batches of the largest count.
    std::string whole;
    for (uint64_t at = 0, id = 10; at < image_.size(); at += kMaxChunksPerRequest() * kChunk) {
      asker.Ask(sha_, at, kChunk, kMaxChunksPerRequest(), ++id);
      for (const v1::ChunkData& d : asker.Data(id)) whole += d.data();
    }
    EXPECT_EQ(whole, image_);
    // A count of 0 is one chunk.
    asker.Ask(sha_, 3 * kChunk, kChunk, 0, 3);
    got = asker.Data(3);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].offset(), 3 * kChunk);
    // One past the cap, and a huge count: refused whole, nothing served.
    for (uint32_t count : {kMaxChunksPerRequest() + 1, UINT32_MAX}) {
      SCOPED_TRACE(count);
      uint64_t id = 100 + (count & 0xff);
      asker.Ask(sha_, 0, kChunk, count, id);
      EXPECT_TRUE(asker.Data(id).empty());
      ASSERT_TRUE(WaitFor([&] { return !asker.Refusals(id).empty(); }));
      EXPECT_EQ(asker.Refusals(id)[0].error(), v1::MALFORMED);
      EXPECT_EQ(asker.Refusals(id)[0].offset(), 0u);
    }
    // A batch that begins past the end is refused as a single chunk there is.
    asker.Ask(sha_, chunks * kChunk, kChunk, 4, 4);
    EXPECT_TRUE(asker.Data(4).empty());
    ASSERT_TRUE(WaitFor([&] { return !asker.Refusals(4).empty(); }));
    EXPECT_EQ(asker.Refusals(4)[0].error(), v1::MALFORMED);
  }
  static uint32_t kMaxChunksPerRequest() { return core::kMaxChunksPerRequest; }

  std::string sha_;
};

TEST_F(BatchServingTest, TheGatewayAnswersABatchChunkByChunk) {
  ChunkAsker asker(*tree_, "dev-9", v1::ROLE_CLIENT, "gw1");
  ASSERT_OK(asker.Start());
  ExpectBatchesServed(asker);
}

TEST_F(BatchServingTest, RootAnswersABatchChunkByChunk) {
  ChunkAsker asker(*tree_, "gw9", v1::ROLE_INTERMEDIATE, "root");
  ASSERT_OK(asker.Start());
  ExpectBatchesServed(asker);
}

// A batch asked of a gateway before its cache holds the image: the chunks wait for the fill (or
// are cut through from it) one by one, and every one comes back with the batch's id.
TEST_F(IntermediateTest, ABatchAskedDuringTheFillIsAnsweredChunkByChunk) {
  ASSERT_OK(tree_->Publish(image_, "2.0.0", 2));
  ASSERT_OK(tree_->StartCampaign("2.0.0"));
  ChunkAsker asker(*tree_, "dev-9", v1::ROLE_CLIENT, "gw1");
  ASSERT_OK(asker.Start());
  const std::string sha = core::Sha256(image_);
  constexpr uint32_t kChunk = 16 * 1024;
  // Until the gateway holds the directive it refuses: asked again until it does not. (No
  // marker: a second request for a chunk that waits takes the first one's place.)
  uint64_t id = 1;
  for (; id < 100; ++id) {
    asker.Send(sha, 0, kChunk, core::kMaxChunksPerRequest, id);
    ASSERT_TRUE(WaitFor([&] { return asker.Answered(id); }));
    if (asker.Refusals(id).empty()) break;
    EXPECT_EQ(asker.Refusals(id)[0].error(), v1::IMAGE_UNAVAILABLE);
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(WaitFor([&] { return asker.Data(id).size() == 13u; }))
      << asker.Data(id).size() << " chunks";
  EXPECT_TRUE(asker.Refusals(id).empty());
  std::string whole;
  for (const v1::ChunkData& d : asker.Data(id)) whole += d.data();
  EXPECT_EQ(whole, image_);
}

}  // namespace
}  // namespace x1368::testing
