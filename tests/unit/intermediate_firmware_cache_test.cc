// The gateway's FirmwareCache on a real temporary directory: an image is filled in chunks (each
// checked by the caller against the chunk table) and becomes a cached image, kept with its table,
// only once complete at the manifest's size; a failed fill resumes in the same file; complete
// images are evicted least recently used first, with their tables; a restart forgets partial
// fills and images without a table; and bad input is refused with a typed reason before
// anything is written, never outside the cache directory.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>

#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/chunk_table.h"
#include "x1368/core/crypto.h"
#include "x1368/core/file_util.h"
#include "x1368/intermediate/firmware_cache.h"

namespace x1368::testing {
namespace {

using intermediate::FirmwareCache;

class FirmwareCacheTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(OpenCache(/*max_images=*/3)); }

  // A new cache object over the same directory: what a restart of the gateway finds.
  void OpenCache(size_t max_images) {
    cache_ = std::make_unique<FirmwareCache>(cache_dir_, max_images);
    ASSERT_OK(cache_->Open());
  }

  // Begins, writes in `chunk`-byte pieces from the last to the first, and completes.
  absl::Status Fill(const std::string& image, size_t chunk = 100) {
    std::string sha = core::Sha256(image);
    X1368_RETURN_IF_ERROR(cache_->Begin(sha, image.size()));
    size_t chunks = (image.size() + chunk - 1) / chunk;
    for (size_t i = chunks; i-- > 0;) {
      X1368_RETURN_IF_ERROR(cache_->Write(sha, i * chunk, image.substr(i * chunk, chunk)));
    }
    return cache_->Complete(sha, image.size(), TableOf(image));
  }

  static std::string TableOf(const std::string& image) {
    return core::DigestImage(image, core::kMinChunkBytes).table;
  }

  // Everything under the test's temporary directory, relative to it: shows what was written
  // and where, including anything outside the cache directory.
  std::set<std::string> AllFiles() const {
    std::set<std::string> out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir_.path())) {
      out.insert(std::filesystem::relative(e.path(), dir_.path()).string());
    }
    return out;
  }
  // The cache directory holding `names`; a complete image (a bare digest) comes with its table.
  std::set<std::string> CacheFiles(std::set<std::string> names) const {
    std::set<std::string> out{"cache"};
    for (const std::string& n : names) {
      out.insert("cache/" + n);
      if (n.size() == 64) out.insert("cache/" + n + ".chunks");
    }
    return out;
  }
  static std::string Hex(const std::string& image) { return core::HexEncode(core::Sha256(image)); }

  TempDir dir_;
  const std::string cache_dir_ = dir_.File("cache");
  std::unique_ptr<FirmwareCache> cache_;
  const std::string image_a_ = TestPki::MakeImage(1000, 1);
  const std::string image_b_ = TestPki::MakeImage(1000, 2);
  const std::string image_c_ = TestPki::MakeImage(999, 3);
  const std::string image_d_ = TestPki::MakeImage(1, 4);
};

TEST_F(FirmwareCacheTest, AnImageIsCachedWithItsTableOnceComplete) {
  std::string sha = core::Sha256(image_a_);
  ASSERT_OK(cache_->Begin(sha, image_a_.size()));
  EXPECT_FALSE(cache_->Has(sha));  // not servable while filling
  ASSERT_OK(cache_->Write(sha, 500, image_a_.substr(500)));
  ASSERT_OK(cache_->Write(sha, 0, image_a_.substr(0, 250)));
  ASSERT_OK(cache_->Write(sha, 250, image_a_.substr(250, 250)));
  ASSERT_OK(cache_->Complete(sha, image_a_.size(), TableOf(image_a_)));

  EXPECT_TRUE(cache_->Has(sha));
  auto table = core::ReadFile(cache_->TablePathOf(sha));
  ASSERT_OK(table);
  EXPECT_EQ(*table, TableOf(image_a_));
  EXPECT_EQ(cache_->PathOf(sha), cache_dir_ + "/" + Hex(image_a_));
  auto stored = core::ReadFile(cache_->PathOf(sha));
  ASSERT_OK(stored);
  EXPECT_EQ(*stored, image_a_);
  EXPECT_EQ(AllFiles(), CacheFiles({Hex(image_a_)}));  // no partial left behind
}

TEST_F(FirmwareCacheTest, AnImageOfOneByteAndChunksOfOneByteWork) {
  ASSERT_OK(Fill(image_d_, 1));
  ASSERT_OK(Fill(image_c_, 1));
  EXPECT_TRUE(cache_->Has(core::Sha256(image_d_)));
  EXPECT_TRUE(cache_->Has(core::Sha256(image_c_)));
}

// A fill that failed halfway (upstream gone) begins again in the same file: what it holds is
// kept, so the retry resumes instead of starting over.
TEST_F(FirmwareCacheTest, AFillBegunAgainKeepsWhatItHolds) {
  std::string sha = core::Sha256(image_a_);
  ASSERT_OK(cache_->Begin(sha, image_a_.size()));
  ASSERT_OK(cache_->Write(sha, 0, image_a_.substr(0, 500)));
  ASSERT_OK(cache_->Begin(sha, image_a_.size()));
  ASSERT_OK(cache_->Write(sha, 500, image_a_.substr(500)));
  ASSERT_OK(cache_->Complete(sha, image_a_.size(), TableOf(image_a_)));
  auto stored = core::ReadFile(cache_->PathOf(sha));
  ASSERT_OK(stored);
  EXPECT_EQ(*stored, image_a_);
  // Begun with another size, it starts over.
  std::string sha_b = core::Sha256(image_b_);
  ASSERT_OK(cache_->Begin(sha_b, 10));
  ASSERT_OK(cache_->Write(sha_b, 0, "0123456789"));
  ASSERT_OK(cache_->Begin(sha_b, image_b_.size()));
  ASSERT_OK(cache_->Write(sha_b, 10, image_b_.substr(10)));
  auto part = core::ReadFile(cache_->PartPath(sha_b));
  ASSERT_OK(part);
  EXPECT_EQ(part->substr(0, 10), std::string(10, '\0'));
}

TEST_F(FirmwareCacheTest, AWrongSizeIsSizeMismatchAndDropped) {
  std::string sha = core::Sha256(image_a_);
  ASSERT_OK(cache_->Begin(sha, image_a_.size()));
  ASSERT_OK(cache_->Write(sha, 0, image_a_));
  EXPECT_THAT(cache_->Complete(sha, image_a_.size() + 1, ""), HasReason(v1::SIZE_MISMATCH));
  EXPECT_FALSE(cache_->Has(sha));
  EXPECT_EQ(AllFiles(), CacheFiles({}));

  // Begun with a size that is not the image's: the file has that size, the digest cannot match.
  ASSERT_OK(cache_->Begin(sha, image_a_.size() + 10));
  ASSERT_OK(cache_->Write(sha, 0, image_a_));
  EXPECT_THAT(cache_->Complete(sha, image_a_.size(), ""), HasReason(v1::SIZE_MISMATCH));
  EXPECT_EQ(AllFiles(), CacheFiles({}));
}

TEST_F(FirmwareCacheTest, TheLeastRecentlyUsedImageGoesFirstAndTouchRenewsAnImage) {
  ASSERT_OK(Fill(image_a_));
  ASSERT_OK(Fill(image_b_));
  ASSERT_OK(Fill(image_c_));
  cache_->Touch(core::Sha256(image_a_));  // a is now the most recently used; b the least
  ASSERT_OK(Fill(image_d_));
  EXPECT_TRUE(cache_->Has(core::Sha256(image_a_)));
  EXPECT_FALSE(cache_->Has(core::Sha256(image_b_)));
  EXPECT_TRUE(cache_->Has(core::Sha256(image_c_)));
  EXPECT_TRUE(cache_->Has(core::Sha256(image_d_)));
  EXPECT_EQ(AllFiles(), CacheFiles({Hex(image_a_), Hex(image_c_), Hex(image_d_)}));

  // Without a touch, the oldest fill goes: c, then a.
  ASSERT_OK(Fill(image_b_));
  EXPECT_FALSE(cache_->Has(core::Sha256(image_c_)));
  EXPECT_EQ(AllFiles(), CacheFiles({Hex(image_a_), Hex(image_b_), Hex(image_d_)}));
  cache_->Touch(core::Sha256(image_c_));  // not cached: no effect, no error
  ASSERT_OK(Fill(image_c_));
  EXPECT_FALSE(cache_->Has(core::Sha256(image_a_)));
  EXPECT_EQ(AllFiles(), CacheFiles({Hex(image_b_), Hex(image_c_), Hex(image_d_)}));
}

TEST_F(FirmwareCacheTest, OpenForgetsPartialFillsOfAPreviousRunAndKeepsCompleteImages) {
  ASSERT_OK(Fill(image_a_));
  std::string sha_b = core::Sha256(image_b_);
  ASSERT_OK(cache_->Begin(sha_b, image_b_.size()));
  ASSERT_OK(cache_->Write(sha_b, 0, image_b_.substr(0, 500)));
  ASSERT_OK(core::WriteFileAtomic(cache_dir_ + "/not-an-image", "x"));
  // An image whose table is gone (a crash between the two), and a table without its image.
  ASSERT_OK(Fill(image_c_));
  ASSERT_OK(core::RemoveFile(cache_->TablePathOf(core::Sha256(image_c_))));
  ASSERT_OK(core::WriteFileAtomic(cache_dir_ + "/" + Hex(image_d_) + ".chunks", "x"));

  ASSERT_NO_FATAL_FAILURE(OpenCache(3));  // the gateway restarts mid-fill
  EXPECT_TRUE(cache_->Has(core::Sha256(image_a_)));
  EXPECT_FALSE(cache_->Has(sha_b));
  EXPECT_FALSE(cache_->Has(core::Sha256(image_c_)));
  EXPECT_EQ(AllFiles(), CacheFiles({Hex(image_a_), "not-an-image"}));
  // The interrupted fill is not continued: it starts again from Begin().
  EXPECT_THAT(cache_->Write(sha_b, 500, image_b_.substr(500)), HasReason(v1::IMAGE_UNAVAILABLE));
  ASSERT_OK(Fill(image_b_));
  EXPECT_TRUE(cache_->Has(sha_b));
}

TEST_F(FirmwareCacheTest, OpenAppliesASmallerLimitAtOnce) {
  ASSERT_OK(Fill(image_a_));
  ASSERT_OK(Fill(image_b_));
  ASSERT_OK(Fill(image_c_));
  ASSERT_NO_FATAL_FAILURE(OpenCache(1));
  int kept = 0;
  for (const std::string* image : {&image_a_, &image_b_, &image_c_}) {
    kept += cache_->Has(core::Sha256(*image)) ? 1 : 0;
  }
  EXPECT_EQ(kept, 1);
  EXPECT_EQ(AllFiles().size(), 3u);  // the directory and one image with its table
}

TEST_F(FirmwareCacheTest, AnIdThatIsNotASha256IsMalformed) {
  for (const std::string& bad :
       {std::string(), std::string(31, 'a'), std::string(33, 'a'), Hex(image_a_)}) {
    SCOPED_TRACE(bad.size());
    EXPECT_THAT(cache_->Begin(bad, 10), HasReason(v1::MALFORMED));
    EXPECT_THAT(cache_->Write(bad, 0, "x"), HasReason(v1::MALFORMED));
    EXPECT_THAT(cache_->Complete(bad, 10, ""), HasReason(v1::MALFORMED));
    EXPECT_FALSE(cache_->Has(bad));
  }
  EXPECT_EQ(AllFiles(), CacheFiles({}));
}

// The id is the raw digest and names files by its hex form: bytes that read as a path
// ("../" and "/") stay inside the cache directory.
TEST_F(FirmwareCacheTest, AnIdThatLooksLikeAPathStaysInsideTheDirectory) {
  const std::string traversal = "/../../../../../../../../tmp/pwn";
  ASSERT_EQ(traversal.size(), 32u);
  EXPECT_EQ(core::DirName(cache_->PathOf(traversal)), cache_dir_);
  ASSERT_OK(cache_->Begin(traversal, 3));
  ASSERT_OK(cache_->Write(traversal, 0, "abc"));
  ASSERT_OK(cache_->Complete(traversal, 3, "table"));
  EXPECT_EQ(AllFiles(), CacheFiles({core::HexEncode(traversal)}));
}

TEST_F(FirmwareCacheTest, WritesWithoutBeginAreRefusedAndCreateNothing) {
  std::string sha = core::Sha256(image_a_);
  EXPECT_THAT(cache_->Write(sha, 0, image_a_), HasReason(v1::IMAGE_UNAVAILABLE));
  EXPECT_THAT(cache_->Complete(sha, image_a_.size(), ""), HasReason(v1::IMAGE_UNAVAILABLE));
  EXPECT_FALSE(cache_->Has(sha));
  EXPECT_EQ(AllFiles(), CacheFiles({}));
}

TEST_F(FirmwareCacheTest, AChunkThatDoesNotFitTheImageIsRefusedBeforeWriting) {
  std::string sha = core::Sha256(image_a_);
  ASSERT_OK(cache_->Begin(sha, image_a_.size()));
  std::string part = cache_dir_ + "/" + Hex(image_a_) + ".part";
  EXPECT_THAT(cache_->Write(sha, image_a_.size() + 1, "x"), HasReason(v1::SIZE_MISMATCH));
  EXPECT_THAT(cache_->Write(sha, image_a_.size(), "x"), HasReason(v1::SIZE_MISMATCH));
  EXPECT_THAT(cache_->Write(sha, image_a_.size() - 1, "xy"), HasReason(v1::SIZE_MISMATCH));
  EXPECT_THAT(cache_->Write(sha, UINT64_MAX, "x"), HasReason(v1::SIZE_MISMATCH));
  EXPECT_THAT(cache_->Write(sha, 1, std::string(image_a_.size(), 'x')),
              HasReason(v1::SIZE_MISMATCH));
  auto size = core::FileSize(part);
  ASSERT_OK(size);
  EXPECT_EQ(*size, image_a_.size());  // nothing grew the file
  // An empty chunk at the very end fits; the fill still completes.
  EXPECT_OK(cache_->Write(sha, image_a_.size(), ""));
  ASSERT_OK(cache_->Write(sha, 0, image_a_));
  ASSERT_OK(cache_->Complete(sha, image_a_.size(), TableOf(image_a_)));
  EXPECT_TRUE(cache_->Has(sha));
}

}  // namespace
}  // namespace x1368::testing
