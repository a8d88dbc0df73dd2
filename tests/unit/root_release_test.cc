// Root's firmware server (X.1368 §11.3 a and e), at the Root API: PublishRelease accepts an
// author-signed release once, answers the very same release again idempotently, and refuses a
// second release that reuses a component's version or sequence number, with a typed reason that
// survives a restart of root. Real keys and signatures; the in-memory broker (no Mosquitto).
#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <string>
#include <thread>

#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/clock.h"
#include "x1368/core/crypto.h"
#include "x1368/core/event_loop.h"
#include "x1368/core/executor.h"
#include "x1368/core/fake_transport.h"
#include "x1368/core/file_util.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/node.h"
#include "x1368/core/sqlite_db.h"
#include "x1368/root/root.h"

namespace x1368::testing {
namespace {

using ::testing::HasSubstr;

class RootReleaseTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(StartRoot()); }
  void TearDown() override { StopRoot(); }

  // A root over the database in dir_/root: a restart finds what the previous one stored.
  void StartRoot() {
    std::string dir = dir_.File("root");
    ASSERT_OK(core::MakeDirs(dir));
    auto db = core::SqliteDb::Open(dir + "/root.db");
    ASSERT_OK(db);
    db_ = *std::move(db);
    auto store = core::SqliteKvStore::Open(db_.get());
    ASSERT_OK(store);
    store_ = *std::move(store);
    core::NodeConfig config;
    config.node_id = pki_.root_id();
    config.key_file = pki_.root_key_path();
    config.root_id = pki_.root_id();
    config.root_public_key_file = pki_.root_pub_path();
    config.data_dir = dir;
    auto node = core::NodeContext::Create(config, store_.get(), core::RealClock::Get());
    ASSERT_OK(node);
    node_ = *std::move(node);
    transport_ = broker_.Connect(pki_.root_id());
    loop_ = std::make_unique<core::EventLoop>(&executor_);
    root::RootOptions options;
    options.images_dir = dir + "/images";
    root_ = std::make_unique<root::Root>(options, node_.get(), db_.get(), transport_.get(),
                                         loop_.get());
    ASSERT_OK(OnRootLoop([this] { return root_->Start(); }));
  }

  void StopRoot() {
    if (loop_) loop_->Stop();
    if (root_) root_->Stop();
    root_.reset();
    transport_.reset();
    node_.reset();
    store_.reset();
    db_.reset();
    loop_.reset();
  }

  // Runs `fn` on root's event loop, where the admin operations run, and returns its result.
  template <typename F>
  auto OnRootLoop(F fn) -> decltype(fn()) {
    auto done = std::make_shared<std::promise<decltype(fn())>>();
    auto result = done->get_future();
    loop_->Post([done, fn = std::move(fn)]() mutable { done->set_value(fn()); });
    return result.get();
  }

  // `image` signed by author-1 as `component` `version` / `sequence`, submitted to root.
  absl::StatusOr<v1::ReleaseInfo> Publish(const std::string& image, const std::string& version,
                                          uint64_t sequence, const std::string& component = "fw") {
    v1::ReleaseSubmission sub;
    *sub.mutable_manifest() = TestPki::Sign(
        author_,
        TestPki::ManifestFor(image, component, version, sequence, {"board-a"}, author_.id));
    sub.set_image(image);
    return OnRootLoop([this, sub] { return root_->PublishRelease(sub); });
  }

  std::vector<v1::ReleaseInfo> Releases() {
    v1::FleetStatus fleet = OnRootLoop([this] { return root_->Fleet(); });
    return {fleet.releases().begin(), fleet.releases().end()};
  }

  TempDir dir_;
  TestPki pki_{dir_.path()};
  TestNode author_ = pki_.Issue("author-1", v1::ROLE_AUTHOR, {}, {"fw", "bootloader"});
  core::Executor executor_{core::RealClock::Get(), /*threads=*/1};
  core::FakeBroker broker_;
  std::unique_ptr<core::SqliteDb> db_;
  std::unique_ptr<core::KvStore> store_;
  std::unique_ptr<core::NodeContext> node_;
  std::unique_ptr<core::Transport> transport_;
  std::unique_ptr<core::EventLoop> loop_;
  std::unique_ptr<root::Root> root_;
};

TEST_F(RootReleaseTest, SecondReleaseWithAnExistingVersionIsRefused) {
  const std::string first = TestPki::MakeImage(4096, 1);
  ASSERT_OK(Publish(first, "2.0.0", 2));

  // Another image under the same version, with a new sequence number: refused.
  auto other_image = Publish(TestPki::MakeImage(4096, 2), "2.0.0", 3);
  EXPECT_THAT(other_image, HasReason(v1::RELEASE_VERSION_EXISTS));
  EXPECT_EQ(other_image.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(other_image.status().message()), HasSubstr("fw 2.0.0"));

  // The same image under the same version but another sequence number: refused too.
  EXPECT_THAT(Publish(first, "2.0.0", 4), HasReason(v1::RELEASE_VERSION_EXISTS));

  // Root still holds exactly the first release.
  std::vector<v1::ReleaseInfo> releases = Releases();
  ASSERT_EQ(releases.size(), 1u);
  EXPECT_EQ(releases[0].version(), "2.0.0");
  EXPECT_EQ(releases[0].sequence_number(), 2u);
  EXPECT_EQ(releases[0].sha256_hex(), core::HexEncode(core::Sha256(first)));
}

TEST_F(RootReleaseTest, SecondReleaseWithAnExistingSequenceNumberIsRefused) {
  ASSERT_OK(Publish(TestPki::MakeImage(4096, 1), "2.0.0", 2));

  auto reused = Publish(TestPki::MakeImage(4096, 2), "2.1.0", 2);
  EXPECT_THAT(reused, HasReason(v1::RELEASE_SEQUENCE_EXISTS));
  EXPECT_EQ(reused.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(reused.status().message()), HasSubstr("2.0.0"));

  std::vector<v1::ReleaseInfo> releases = Releases();
  ASSERT_EQ(releases.size(), 1u);
  EXPECT_EQ(releases[0].version(), "2.0.0");
  // A new version with a new sequence number is a new release.
  EXPECT_OK(Publish(TestPki::MakeImage(4096, 3), "2.1.0", 3));
  EXPECT_EQ(Releases().size(), 2u);
}

TEST_F(RootReleaseTest, TheSameReleaseSubmittedAgainIsIdempotent) {
  const std::string image = TestPki::MakeImage(4096, 1);
  auto first = Publish(image, "2.0.0", 2);
  ASSERT_OK(first);
  auto again = Publish(image, "2.0.0", 2);
  ASSERT_OK(again);
  EXPECT_EQ(again->sha256_hex(), first->sha256_hex());
  EXPECT_EQ(again->sequence_number(), 2u);
  EXPECT_EQ(Releases().size(), 1u);
}

TEST_F(RootReleaseTest, VersionsAndSequenceNumbersBelongToOneComponent) {
  ASSERT_OK(Publish(TestPki::MakeImage(4096, 1), "2.0.0", 2, "fw"));
  // The same version and sequence number of another component is another release.
  EXPECT_OK(Publish(TestPki::MakeImage(4096, 2), "2.0.0", 2, "bootloader"));
  EXPECT_EQ(Releases().size(), 2u);
}

TEST_F(RootReleaseTest, RefusalsHoldAfterRootRestarts) {
  ASSERT_OK(Publish(TestPki::MakeImage(4096, 1), "2.0.0", 2));
  StopRoot();
  ASSERT_NO_FATAL_FAILURE(StartRoot());
  EXPECT_THAT(Publish(TestPki::MakeImage(4096, 2), "2.0.0", 3),
              HasReason(v1::RELEASE_VERSION_EXISTS));
  EXPECT_THAT(Publish(TestPki::MakeImage(4096, 3), "2.1.0", 2),
              HasReason(v1::RELEASE_SEQUENCE_EXISTS));
}

}  // namespace
}  // namespace x1368::testing
