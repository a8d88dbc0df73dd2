// fw-consumer-stub (x1368/stub/stub_consumer.h): A/B slots, a simulated bootloader, resumable
// downloads, verification and fault injection.
#include "x1368/stub/stub_consumer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/crypto.h"
#include "x1368/core/file_util.h"

namespace x1368::stub {
namespace {

using ::x1368::testing::HasReason;
using ::x1368::testing::TempDir;
using ::x1368::testing::TestPki;

// Serves an image from memory and counts what it was asked for.
class MemImageSource final : public client::ImageSource {
 public:
  explicit MemImageSource(std::string image) : image_(std::move(image)) {}
  absl::StatusOr<std::string> Read(uint64_t offset, uint32_t length) override {
    ++reads_;
    if (offset >= image_.size()) return absl::OutOfRangeError("past the end");
    std::string out = image_.substr(offset, length);
    bytes_ += out.size();
    if (first_offset_ < 0) first_offset_ = static_cast<int64_t>(offset);
    return out;
  }
  uint64_t bytes() const { return bytes_; }
  int reads() const { return reads_; }
  int64_t first_offset() const { return first_offset_; }

 private:
  std::string image_;
  uint64_t bytes_ = 0;
  int reads_ = 0;
  int64_t first_offset_ = -1;
};

constexpr char kComponent[] = "fw-main";
constexpr char kHardware[] = "board-a";
constexpr size_t kImageSize = 10'000;
constexpr uint32_t kChunk = 1024;

class StubConsumerTest : public ::testing::Test {
 protected:
  StubConsumerTest()
      : image_(TestPki::MakeImage(kImageSize, 42)),
        manifest_(TestPki::ManifestFor(image_, kComponent, "2.0.0", 2, {"board-z", kHardware},
                                       "author-1")) {}

  StubOptions Options(StubFaults faults = {}) {
    StubOptions o;
    o.dir = dir_.File("consumer");
    o.component = kComponent;
    o.hardware_class = kHardware;
    o.max_trial_boots = 2;
    o.faults = faults;
    return o;
  }

  std::unique_ptr<StubConsumer> Open(StubFaults faults = {}) {
    auto c = StubConsumer::Open(Options(faults));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // Download + Verify + Install of manifest_ with a fresh source.
  void Stage(StubConsumer& c) {
    MemImageSource src(image_);
    ASSERT_OK(client::DownloadFrom(c, manifest_, &src, kChunk, nullptr));
    ASSERT_OK(c.Verify(manifest_));
    ASSERT_OK(c.Install(manifest_));
  }

  TempDir dir_;
  std::string image_;
  v1::Manifest manifest_;
};

TEST_F(StubConsumerTest, FactoryImageOnFirstOpen) {
  auto c = Open();
  ASSERT_NE(c, nullptr);
  client::ConsumerStatus s = c->Status();
  EXPECT_EQ(s.component, kComponent);
  EXPECT_EQ(s.version, "1.0.0");
  EXPECT_EQ(s.sequence_number, 1u);
  EXPECT_EQ(s.hardware_class, kHardware);
  EXPECT_FALSE(s.in_trial);
  v1::BootEnv env = c->boot_env();
  EXPECT_EQ(env.active(), 0u);
  ASSERT_EQ(env.slots_size(), 2);
  EXPECT_TRUE(env.slots(0).installed());
  EXPECT_FALSE(env.slots(1).installed());
  // The reported digest is the digest of slot A's file.
  auto digest = core::Sha256File(c->SlotPath(0));
  ASSERT_OK(digest);
  EXPECT_EQ(s.image_sha256, *digest);
}

TEST_F(StubConsumerTest, StatePersistsAcrossReopen) {
  {
    auto c = Open();
    ASSERT_NE(c, nullptr);
  }
  auto again = Open();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->Status().version, "1.0.0");
  EXPECT_EQ(again->boot_env().active(), 0u);
}

TEST_F(StubConsumerTest, HappyPathSwitchesTheActiveSlot) {
  auto c = Open();
  ASSERT_NE(c, nullptr);
  ASSERT_OK(c->Accept(manifest_));
  MemImageSource src(image_);
  uint64_t last_progress = 0;
  ASSERT_OK(client::DownloadFrom(*c, manifest_, &src, kChunk, [&](uint64_t done) {
    EXPECT_GT(done, last_progress);
    last_progress = done;
  }));
  EXPECT_EQ(last_progress, kImageSize);
  EXPECT_EQ(src.bytes(), kImageSize);
  ASSERT_OK(c->Verify(manifest_));
  EXPECT_EQ(c->Status().version, "1.0.0");  // nothing changes before the trial boot
  ASSERT_OK(c->Install(manifest_));
  EXPECT_EQ(c->Status().version, "1.0.0");
  ASSERT_OK(c->BootTrial(manifest_));
  client::ConsumerStatus trial = c->Status();
  EXPECT_EQ(trial.version, "2.0.0");
  EXPECT_TRUE(trial.in_trial);
  ASSERT_OK(c->Confirm(manifest_));

  client::ConsumerStatus s = c->Status();
  EXPECT_EQ(s.version, "2.0.0");
  EXPECT_EQ(s.sequence_number, 2u);
  EXPECT_EQ(s.image_sha256, core::Sha256(image_));
  EXPECT_FALSE(s.in_trial);
  EXPECT_EQ(c->boot_env().active(), 1u);
  auto slot_b = core::ReadFile(c->SlotPath(1));
  ASSERT_OK(slot_b);
  EXPECT_EQ(*slot_b, image_);

  // Confirmed state survives a power cycle.
  c.reset();
  auto rebooted = Open();
  ASSERT_NE(rebooted, nullptr);
  EXPECT_EQ(rebooted->Status().version, "2.0.0");
  EXPECT_FALSE(rebooted->Status().in_trial);
}

TEST_F(StubConsumerTest, StepsAreIdempotent) {
  auto c = Open();
  ASSERT_NE(c, nullptr);
  Stage(*c);
  EXPECT_OK(c->Install(manifest_));
  ASSERT_OK(c->BootTrial(manifest_));
  EXPECT_OK(c->BootTrial(manifest_));
  ASSERT_OK(c->Confirm(manifest_));
  EXPECT_OK(c->Confirm(manifest_));
  EXPECT_EQ(c->Status().version, "2.0.0");
  EXPECT_EQ(c->boot_env().active(), 1u);
}

TEST_F(StubConsumerTest, ResumesAnInterruptedDownload) {
  StubFaults faults;
  faults.fail_download_at = 5000;
  auto c = Open(faults);
  ASSERT_NE(c, nullptr);
  MemImageSource first(image_);
  EXPECT_THAT(client::DownloadFrom(*c, manifest_, &first, kChunk, nullptr),
              HasReason(v1::DOWNLOAD_FAILED));
  // The link broke in the chunk that crosses byte 5000: what came before it is in the slot.
  const uint64_t held = *core::FileSize(c->SlotPath(1));
  EXPECT_EQ(held, 4 * kChunk);
  EXPECT_GE(first.bytes(), held);

  MemImageSource second(image_);
  ASSERT_OK(client::DownloadFrom(*c, manifest_, &second, kChunk, nullptr));
  EXPECT_LT(second.bytes(), kImageSize) << "the second attempt started over";
  EXPECT_EQ(held + second.bytes(), kImageSize);
  EXPECT_EQ(static_cast<uint64_t>(second.first_offset()), held);
  EXPECT_OK(c->Verify(manifest_));
}

TEST_F(StubConsumerTest, ResumesAfterAPowerCutDuringDownload) {
  StubFaults faults;
  faults.fail_download_at = 3000;
  {
    auto c = Open(faults);
    ASSERT_NE(c, nullptr);
    MemImageSource first(image_);
    EXPECT_THAT(client::DownloadFrom(*c, manifest_, &first, kChunk, nullptr),
                HasReason(v1::DOWNLOAD_FAILED));
  }
  auto c = Open();  // rebooted, no faults
  ASSERT_NE(c, nullptr);
  MemImageSource second(image_);
  ASSERT_OK(client::DownloadFrom(*c, manifest_, &second, kChunk, nullptr));
  EXPECT_LT(second.bytes(), kImageSize);
  EXPECT_OK(c->Verify(manifest_));
}

TEST_F(StubConsumerTest, PartialFileLongerThanTheImageStartsOver) {
  StubFaults faults;
  faults.fail_download_at = 5000;
  auto c = Open(faults);
  ASSERT_NE(c, nullptr);
  MemImageSource first(image_);
  EXPECT_FALSE(client::DownloadFrom(*c, manifest_, &first, kChunk, nullptr).ok());
  // The partial slot file grew past the image size (garbage after a crash).
  ASSERT_OK(core::WriteFileRange(c->SlotPath(1), kImageSize, std::string(500, 'g')));
  ASSERT_GT(*core::FileSize(c->SlotPath(1)), kImageSize);

  MemImageSource second(image_);
  ASSERT_OK(client::DownloadFrom(*c, manifest_, &second, kChunk, nullptr));
  EXPECT_EQ(second.bytes(), kImageSize);
  EXPECT_EQ(*core::FileSize(c->SlotPath(1)), kImageSize);
  EXPECT_OK(c->Verify(manifest_));
}

TEST_F(StubConsumerTest, ADifferentImageStartsOver) {
  StubFaults faults;
  faults.fail_download_at = 5000;
  auto c = Open(faults);
  ASSERT_NE(c, nullptr);
  MemImageSource first(image_);
  EXPECT_FALSE(client::DownloadFrom(*c, manifest_, &first, kChunk, nullptr).ok());

  std::string other = TestPki::MakeImage(kImageSize, 43);
  v1::Manifest other_manifest =
      TestPki::ManifestFor(other, kComponent, "3.0.0", 3, {kHardware}, "author-1");
  MemImageSource src(other);
  ASSERT_OK(client::DownloadFrom(*c, other_manifest, &src, kChunk, nullptr));
  EXPECT_EQ(src.bytes(), kImageSize);
  EXPECT_OK(c->Verify(other_manifest));
}

TEST_F(StubConsumerTest, CorruptDownloadIsDigestMismatch) {
  StubFaults faults;
  faults.corrupt_download = true;
  auto c = Open(faults);
  ASSERT_NE(c, nullptr);
  MemImageSource src(image_);
  ASSERT_OK(client::DownloadFrom(*c, manifest_, &src, kChunk, nullptr));
  EXPECT_THAT(c->Verify(manifest_), HasReason(v1::DIGEST_MISMATCH));
  EXPECT_THAT(c->Install(manifest_), HasReason(v1::DIGEST_MISMATCH));  // never installs it
  EXPECT_THAT(c->BootTrial(manifest_), HasReason(v1::INSTALL_FAILED));
  client::ConsumerStatus s = c->Status();
  EXPECT_EQ(s.version, "1.0.0");
  EXPECT_EQ(s.sequence_number, 1u);
  EXPECT_FALSE(s.in_trial);
  EXPECT_EQ(c->boot_env().active(), 0u);
}

TEST_F(StubConsumerTest, WrongHardwareClass) {
  auto c = Open();
  ASSERT_NE(c, nullptr);
  v1::Manifest m = TestPki::ManifestFor(image_, kComponent, "2.0.0", 2, {"board-b"}, "author-1");
  MemImageSource src(image_);
  ASSERT_OK(client::DownloadFrom(*c, m, &src, kChunk, nullptr));
  EXPECT_THAT(c->Verify(m), HasReason(v1::WRONG_HARDWARE));
  EXPECT_THAT(c->Install(m), HasReason(v1::WRONG_HARDWARE));
}

TEST_F(StubConsumerTest, WrongComponent) {
  auto c = Open();
  ASSERT_NE(c, nullptr);
  v1::Manifest m = TestPki::ManifestFor(image_, "fw-radio", "2.0.0", 2, {kHardware}, "author-1");
  EXPECT_THAT(c->Accept(m), HasReason(v1::COMPONENT_MISMATCH));
  MemImageSource src(image_);
  ASSERT_OK(client::DownloadFrom(*c, m, &src, kChunk, nullptr));
  EXPECT_THAT(c->Verify(m), HasReason(v1::COMPONENT_MISMATCH));
}

TEST_F(StubConsumerTest, OlderOrEqualSequenceIsNotNewer) {
  auto c = Open();
  ASSERT_NE(c, nullptr);
  for (uint64_t seq : {1u, 0u}) {
    v1::Manifest m =
        TestPki::ManifestFor(image_, kComponent, "0.9.0", seq, {kHardware}, "author-1");
    MemImageSource src(image_);
    ASSERT_OK(client::DownloadFrom(*c, m, &src, kChunk, nullptr));
    EXPECT_THAT(c->Verify(m), HasReason(v1::NOT_NEWER)) << "sequence " << seq;
  }
  // After 2 is confirmed, 2 again is not newer either.
  Stage(*c);
  ASSERT_OK(c->BootTrial(manifest_));
  ASSERT_OK(c->Confirm(manifest_));
  MemImageSource src(image_);
  ASSERT_OK(client::DownloadFrom(*c, manifest_, &src, kChunk, nullptr));
  EXPECT_THAT(c->Verify(manifest_), HasReason(v1::NOT_NEWER));
}

TEST_F(StubConsumerTest, SizeMismatch) {
  auto c = Open();
  ASSERT_NE(c, nullptr);
  // The manifest claims more bytes than the source has.
  v1::Manifest longer = manifest_;
  longer.set_size(kImageSize + 100);
  MemImageSource src(image_);
  EXPECT_FALSE(client::DownloadFrom(*c, longer, &src, kChunk, nullptr).ok());
  EXPECT_THAT(c->Verify(longer), HasReason(v1::SIZE_MISMATCH));

  // The source has more bytes than the manifest says: never written past the declared size.
  v1::Manifest shorter =
      TestPki::ManifestFor(image_.substr(0, 4000), kComponent, "2.0.0", 2, {kHardware}, "author-1");
  MemImageSource long_src(image_);
  ASSERT_OK(client::DownloadFrom(*c, shorter, &long_src, kChunk, nullptr));
  EXPECT_EQ(*core::FileSize(c->SlotPath(1)), 4000u);
  EXPECT_OK(c->Verify(shorter));

  // Nothing downloaded for this manifest at all.
  c->Discard();
  EXPECT_THAT(c->Verify(manifest_), HasReason(v1::SIZE_MISMATCH));
}

TEST_F(StubConsumerTest, TrialBootFailureKeepsTheOldImage) {
  StubFaults faults;
  faults.trial_boot_fails = true;
  auto c = Open(faults);
  ASSERT_NE(c, nullptr);
  Stage(*c);
  EXPECT_THAT(c->BootTrial(manifest_), HasReason(v1::TRIAL_BOOT_FAILED));
  client::ConsumerStatus s = c->Status();
  EXPECT_EQ(s.version, "1.0.0");
  EXPECT_FALSE(s.in_trial);
  v1::BootEnv env = c->boot_env();
  EXPECT_EQ(env.active(), 0u);
  EXPECT_TRUE(env.last_trial_failed());
  EXPECT_FALSE(env.trial_pending());
  EXPECT_EQ(s.failed_trial_sha256, manifest_.sha256()) << "the client tells a revert by this";
}

TEST_F(StubConsumerTest, FailedHealthCheckRollsBack) {
  StubFaults faults;
  faults.health_check_fails = true;
  auto c = Open(faults);
  ASSERT_NE(c, nullptr);
  Stage(*c);
  ASSERT_OK(c->BootTrial(manifest_));
  EXPECT_EQ(c->Status().version, "2.0.0");
  EXPECT_THAT(c->Confirm(manifest_), HasReason(v1::TRIAL_BOOT_FAILED));
  EXPECT_TRUE(c->Status().in_trial);
  ASSERT_OK(c->Rollback());
  client::ConsumerStatus s = c->Status();
  EXPECT_EQ(s.version, "1.0.0");
  EXPECT_EQ(s.sequence_number, 1u);
  EXPECT_FALSE(s.in_trial);
  EXPECT_EQ(c->boot_env().active(), 0u);
  EXPECT_TRUE(c->boot_env().last_trial_failed());
  EXPECT_EQ(s.failed_trial_sha256, manifest_.sha256());
  EXPECT_OK(c->Rollback());  // idempotent
  EXPECT_EQ(c->Status().version, "1.0.0");
}

TEST_F(StubConsumerTest, FailedInstallLeavesTheActiveSlot) {
  StubFaults faults;
  faults.fail_install = true;
  auto c = Open(faults);
  ASSERT_NE(c, nullptr);
  MemImageSource src(image_);
  ASSERT_OK(client::DownloadFrom(*c, manifest_, &src, kChunk, nullptr));
  ASSERT_OK(c->Verify(manifest_));
  EXPECT_THAT(c->Install(manifest_), HasReason(v1::INSTALL_FAILED));
  EXPECT_THAT(c->BootTrial(manifest_), HasReason(v1::INSTALL_FAILED));
  EXPECT_EQ(c->Status().version, "1.0.0");
}

TEST_F(StubConsumerTest, PowerCutDuringTrialRevertsAfterMaxTrialBoots) {
  {
    auto c = Open();
    ASSERT_NE(c, nullptr);
    Stage(*c);
    EXPECT_EQ(c->Status().failed_trial_sha256, "");
    ASSERT_OK(c->BootTrial(manifest_));
    EXPECT_TRUE(c->Status().in_trial);
    EXPECT_EQ(c->Status().failed_trial_sha256, "") << "a trial that is up has not failed";
    EXPECT_EQ(c->boot_env().boot_attempts(), 1u);
  }  // power cut before Confirm
  {
    auto c = Open();  // second boot of the trial image: still within max_trial_boots=2
    ASSERT_NE(c, nullptr);
    client::ConsumerStatus s = c->Status();
    EXPECT_EQ(s.version, "2.0.0");
    EXPECT_TRUE(s.in_trial);
    EXPECT_EQ(c->boot_env().boot_attempts(), 2u);
  }                 // another power cut
  auto c = Open();  // third boot: the bootloader gives up on the trial
  ASSERT_NE(c, nullptr);
  client::ConsumerStatus s = c->Status();
  EXPECT_EQ(s.version, "1.0.0");
  EXPECT_FALSE(s.in_trial);
  v1::BootEnv env = c->boot_env();
  EXPECT_EQ(env.active(), 0u);
  EXPECT_TRUE(env.last_trial_failed());
  EXPECT_EQ(s.failed_trial_sha256, manifest_.sha256());
  // Confirming the reverted trial is refused.
  EXPECT_THAT(c->Confirm(manifest_), HasReason(v1::TRIAL_BOOT_FAILED));
}

TEST_F(StubConsumerTest, TrialConfirmedAfterOneRebootStays) {
  {
    auto c = Open();
    ASSERT_NE(c, nullptr);
    Stage(*c);
    ASSERT_OK(c->BootTrial(manifest_));
  }
  auto c = Open();
  ASSERT_NE(c, nullptr);
  ASSERT_OK(c->Confirm(manifest_));
  c.reset();
  for (int i = 0; i < 3; ++i) {
    auto again = Open();
    ASSERT_NE(again, nullptr);
    EXPECT_EQ(again->Status().version, "2.0.0");
    EXPECT_FALSE(again->Status().in_trial);
  }
}

TEST_F(StubConsumerTest, DownloadIsRefusedWhileATrialIsPending) {
  auto c = Open();
  ASSERT_NE(c, nullptr);
  Stage(*c);
  ASSERT_OK(c->BootTrial(manifest_));
  MemImageSource src(image_);
  EXPECT_THAT(client::DownloadFrom(*c, manifest_, &src, kChunk, nullptr),
              HasReason(v1::INSTALL_FAILED));
  EXPECT_EQ(src.reads(), 0);
}

TEST_F(StubConsumerTest, DeclineFault) {
  StubFaults faults;
  faults.decline = true;
  auto c = Open(faults);
  ASSERT_NE(c, nullptr);
  EXPECT_THAT(c->Accept(manifest_), HasReason(v1::CONSUMER_DECLINED));
  c->set_faults(StubFaults{});
  EXPECT_OK(c->Accept(manifest_));
}

TEST_F(StubConsumerTest, SourceErrorsPropagate) {
  class Failing final : public client::ImageSource {
   public:
    absl::StatusOr<std::string> Read(uint64_t, uint32_t) override {
      return core::Reject(v1::IMAGE_UNAVAILABLE, "gone");
    }
  } failing;
  auto c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_THAT(client::DownloadFrom(*c, manifest_, &failing, kChunk, nullptr),
              HasReason(v1::IMAGE_UNAVAILABLE));
  EXPECT_EQ(c->Status().version, "1.0.0");
}

TEST_F(StubConsumerTest, ChunksAreRefusedWithoutABegunDownloadOrPastTheImage) {
  auto c = Open();
  ASSERT_NE(c, nullptr);
  EXPECT_THAT(c->WriteChunk(manifest_, 0, image_.substr(0, kChunk)),
              HasReason(v1::DOWNLOAD_FAILED));  // no BeginDownload for this image
  auto held = c->BeginDownload(manifest_);
  ASSERT_OK(held);
  EXPECT_EQ(*held, 0u);
  EXPECT_THAT(c->WriteChunk(manifest_, kImageSize - 10, std::string(11, 'x')),
              HasReason(v1::SIZE_MISMATCH));
  EXPECT_THAT(c->WriteChunk(manifest_, kImageSize + 1, "x"), HasReason(v1::SIZE_MISMATCH));
  EXPECT_THAT(c->WriteChunk(manifest_, 0, ""), HasReason(v1::DOWNLOAD_FAILED));
  EXPECT_EQ(*core::FileSize(c->SlotPath(1)), 0u);  // nothing refused was written
  ASSERT_OK(c->WriteChunk(manifest_, 0, image_.substr(0, kChunk)));
  auto again = c->BeginDownload(manifest_);  // a restart resumes after what is held
  ASSERT_OK(again);
  EXPECT_EQ(*again, kChunk);
}

TEST(StubFaultsTest, ParsesKnownNames) {
  auto f = ParseFaults({"decline", "fail_download_at=123", "corrupt_download", "fail_install",
                        "trial_boot_fails", "health_check_fails"});
  ASSERT_OK(f);
  EXPECT_TRUE(f->decline);
  EXPECT_EQ(f->fail_download_at, 123);
  EXPECT_TRUE(f->corrupt_download);
  EXPECT_TRUE(f->fail_install);
  EXPECT_TRUE(f->trial_boot_fails);
  EXPECT_TRUE(f->health_check_fails);
  auto none = ParseFaults({});
  ASSERT_OK(none);
  EXPECT_FALSE(none->decline);
  EXPECT_EQ(none->fail_download_at, -1);
}

TEST(StubFaultsTest, RejectsUnknownNames) {
  EXPECT_FALSE(ParseFaults({"explode"}).ok());
  EXPECT_FALSE(ParseFaults({"decline", "Decline"}).ok());
  EXPECT_FALSE(ParseFaults({"fail_download_at="}).ok());
  EXPECT_FALSE(ParseFaults({"fail_download_at=abc"}).ok());
  EXPECT_FALSE(ParseFaults({"fail_download_at=-5"}).ok());
  EXPECT_THAT(std::string(ParseFaults({"explode"}).status().message()),
              ::testing::HasSubstr("explode"));
}

TEST(StubOpenTest, CorruptBootEnvIsStorageError) {
  TempDir dir;
  StubOptions o;
  o.dir = dir.File("consumer");
  o.component = kComponent;
  o.hardware_class = kHardware;
  {
    auto c = StubConsumer::Open(o);
    ASSERT_OK(c);
  }
  const std::string bootenv = o.dir + "/bootenv";
  auto raw = core::ReadFile(bootenv);
  ASSERT_OK(raw);
  std::string bad = *raw;
  bad[bad.size() - 1] ^= 0x20;
  ASSERT_OK(core::WriteFileAtomic(bootenv, bad));
  EXPECT_THAT(StubConsumer::Open(o), HasReason(v1::STORAGE_ERROR));

  ASSERT_OK(core::WriteFileAtomic(bootenv, "garbage"));
  EXPECT_THAT(StubConsumer::Open(o), HasReason(v1::STORAGE_ERROR));

  // An intact file whose boot environment is not valid: one slot only, or not a BootEnv.
  std::filesystem::remove(bootenv);
  {
    auto store = core::FileKvStore::Open(bootenv);
    ASSERT_OK(store);
    v1::BootEnv one_slot;
    one_slot.add_slots()->set_installed(true);
    ASSERT_OK((*store)->Put("bootenv", one_slot.SerializeAsString()));
  }
  EXPECT_THAT(StubConsumer::Open(o), HasReason(v1::STORAGE_ERROR));
  {
    auto store = core::FileKvStore::Open(bootenv);
    ASSERT_OK(store);
    ASSERT_OK((*store)->Put("bootenv", std::string("\x0a\x05"
                                                   "ab",
                                                   4)));
  }
  EXPECT_THAT(StubConsumer::Open(o), HasReason(v1::STORAGE_ERROR));
}

}  // namespace
}  // namespace x1368::stub
