// ChunkFetcher (x1368/core/chunk_fetcher.h): windowed chunk requests to the parent on the
// node's loop, in batches (several chunks a request, the window refilled half at a time), each
// chunk checked on arrival (a bad one dropped, its request kept), in-order delivery, re-requests
// alone after a timeout on the loop's clock, bounded tries, the parent's window, error
// propagation and cancel. Everything runs on a manual executor with a FakeClock: time moves
// only when the test says so, and nothing sleeps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/chunk_fetcher.h"
#include "x1368/core/chunk_service.h"
#include "x1368/core/chunk_table.h"
#include "x1368/core/crypto.h"
#include "x1368/core/reason.h"

namespace x1368::core {
namespace {

using ::testing::ElementsAre;
using ::x1368::testing::HasReason;
using ::x1368::testing::TestPki;

constexpr uint32_t kChunk = 1000;
constexpr size_t kImageSize = 10'500;  // the last chunk is short
constexpr size_t kChunks = 11;

// The parent's side: records every request, split into its chunks as root and the gateway split
// a batch (SplitChunkRequest); the test answers them chunk by chunk.
class FakeParent {
 public:
  explicit FakeParent(std::string image)
      : image_(std::move(image)),
        sha_(core::Sha256(image_)),
        table_(DigestImage(image_, kChunk).table) {}

  const std::string& sha() const { return sha_; }
  const std::string& image() const { return image_; }

  ChunkFetcher::RequestSender Sender() {
    return [this](const v1::FirmwareChunkRequest& r) -> absl::Status {
      requests_.push_back(r);
      auto parts = SplitChunkRequest(r, image_.size());
      EXPECT_OK(parts);
      if (!parts.ok()) return absl::OkStatus();
      for (const v1::FirmwareChunkRequest& part : *parts) {
        all_.push_back(part);
        pending_.push_back(part);
      }
      return absl::OkStatus();
    };
  }

  v1::ChunkData AnswerFor(const v1::FirmwareChunkRequest& r) const {
    v1::ChunkData d;
    d.set_image_sha256(r.image_sha256());
    d.set_offset(r.offset());
    d.set_request_id(r.request_id());
    d.set_data(image_.substr(r.offset(), r.length()));
    return d;
  }

  v1::FirmwareChunkResponse RefusalFor(const v1::FirmwareChunkRequest& r, v1::Reason reason) const {
    v1::FirmwareChunkResponse resp;
    resp.set_image_sha256(r.image_sha256());
    resp.set_offset(r.offset());
    resp.set_request_id(r.request_id());
    resp.set_error(reason);
    return resp;
  }

  // What a client checks each chunk with: the image's chunk table.
  ChunkFetcher::FetchSpec Spec(uint64_t offset = 0) const {
    return {sha_,
            false,
            image_.size(),
            offset,
            kChunk,
            [table = table_](uint64_t at, absl::string_view data) -> absl::Status {
              if (Sha256(data) != table.substr(at / kChunk * kDigestBytes, kDigestBytes)) {
                return Reject(v1::DIGEST_MISMATCH, "chunk does not match the table");
              }
              return absl::OkStatus();
            }};
  }

  // Takes the oldest unanswered request.
  std::optional<v1::FirmwareChunkRequest> NextPending() {
    if (pending_.empty()) return std::nullopt;
    v1::FirmwareChunkRequest r = pending_.front();
    pending_.erase(pending_.begin());
    return r;
  }
  size_t pending() const { return pending_.size(); }
  // Every chunk asked for, one entry per chunk of each request.
  const std::vector<v1::FirmwareChunkRequest>& all() const { return all_; }
  // The requests as sent.
  const std::vector<v1::FirmwareChunkRequest>& requests() const { return requests_; }
  int RequestsFor(uint64_t offset) const {
    int n = 0;
    for (const auto& r : all_) n += r.offset() == offset;
    return n;
  }

 private:
  const std::string image_;
  const std::string sha_;
  const std::string table_;
  std::vector<v1::FirmwareChunkRequest> requests_;
  std::vector<v1::FirmwareChunkRequest> all_;
  std::vector<v1::FirmwareChunkRequest> pending_;
};

class ChunkFetcherTest : public ::testing::Test {
 protected:
  struct Result {
    std::string bytes;                 // what the sink received, in order
    std::vector<uint64_t> offsets;     // the offsets it received them at
    std::optional<absl::Status> done;  // set once `done` ran
    int done_calls = 0;
  };

  void Start(FakeParent& parent, ChunkFetcherOptions opts = {}, uint64_t offset = 0,
             std::optional<absl::Status> sink_error_at_second = std::nullopt) {
    fetcher_ = std::make_unique<ChunkFetcher>(&loop_, parent.Sender(), opts);
    fetcher_->Start(
        parent.Spec(offset),
        [this, sink_error_at_second](uint64_t off, const std::string& data) -> absl::Status {
          result_.offsets.push_back(off);
          result_.bytes += data;
          if (sink_error_at_second && result_.offsets.size() == 2) return *sink_error_at_second;
          return absl::OkStatus();
        },
        [this](const absl::Status& s) {
          result_.done = s;
          ++result_.done_calls;
        });
    executor_.RunUntilIdle();
  }

  // Answers every pending request (per `policy`: true answers, false drops) until none is left.
  void AnswerAll(
      FakeParent& parent, const std::function<bool(const v1::FirmwareChunkRequest&, int)>& policy =
                              [](const v1::FirmwareChunkRequest&, int) { return true; }) {
    while (auto r = parent.NextPending()) {
      if (policy(*r, ++attempts_[r->offset()])) {
        EXPECT_OK(fetcher_->OnData(parent.AnswerFor(*r)));
      }
      executor_.RunUntilIdle();
    }
  }

  // Lets `ms` pass on the clock and runs what became due.
  void Elapse(int64_t ms) {
    clock_.Advance(ms);
    executor_.RunUntilIdle();
  }

  core::FakeClock clock_;
  core::Executor executor_{&clock_, /*threads=*/0};
  core::EventLoop loop_{&executor_};
  std::unique_ptr<ChunkFetcher> fetcher_;
  Result result_;
  std::map<uint64_t, int> attempts_;
};

TEST_F(ChunkFetcherTest, FetchesTheWholeImageInOrder) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 5));
  ChunkFetcherOptions opts;
  opts.window = 8;
  Start(parent, opts);
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_EQ(result_.done_calls, 1);
  EXPECT_EQ(result_.bytes, parent.image());
  EXPECT_FALSE(fetcher_->active());
  // Each chunk was asked for exactly once, with the right bounds, in two batches: the whole
  // window, then the three chunks left once they fit.
  EXPECT_EQ(fetcher_->chunks_requested(), kChunks);
  EXPECT_EQ(fetcher_->requests_sent(), 2u);
  ASSERT_EQ(parent.requests().size(), 2u);
  EXPECT_EQ(parent.requests()[0].offset(), 0u);
  EXPECT_EQ(parent.requests()[0].count(), 8u);
  EXPECT_EQ(parent.requests()[1].offset(), 8 * kChunk);
  EXPECT_EQ(parent.requests()[1].count(), 3u);
  std::set<uint64_t> offsets;
  for (const auto& r : parent.all()) {
    EXPECT_EQ(r.image_sha256(), parent.sha());
    EXPECT_EQ(r.offset() % kChunk, 0u);
    EXPECT_EQ(r.length(), std::min<uint64_t>(kChunk, kImageSize - r.offset()));
    EXPECT_TRUE(offsets.insert(r.offset()).second) << "chunk asked twice";
  }
  std::set<uint64_t> request_ids;
  for (const auto& r : parent.requests()) {
    EXPECT_EQ(r.length(), kChunk);
    EXPECT_TRUE(request_ids.insert(r.request_id()).second) << "request id reused";
  }
}

TEST_F(ChunkFetcherTest, KeepsAtMostWindowChunksInFlightAndFillsItBeforeTheFirstAnswer) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 6));
  ChunkFetcherOptions opts;
  opts.window = 3;
  Start(parent, opts);
  std::vector<uint64_t> first;
  for (const auto& r : parent.all()) first.push_back(r.offset());
  EXPECT_THAT(first, ElementsAre(0, 1000, 2000));
  ASSERT_EQ(parent.requests().size(), 1u);  // in one request
  EXPECT_EQ(parent.requests()[0].count(), 3u);
  // Answer one at a time, oldest first: the window refills once two of its three slots are
  // free (half of it, rounded up), two chunks in one request, never beyond the window.
  size_t answered = 0;
  while (auto r = parent.NextPending()) {
    EXPECT_EQ(r->offset(), answered * kChunk);
    (void)fetcher_->OnData(parent.AnswerFor(*r));
    executor_.RunUntilIdle();
    ++answered;
    EXPECT_LE(parent.pending(), 3u) << "after " << answered << " answers";
    EXPECT_GE(parent.pending(), std::min<size_t>(2, kChunks - answered));
  }
  EXPECT_EQ(answered, kChunks);
  EXPECT_EQ(parent.all().size(), kChunks);
  EXPECT_EQ(result_.bytes, parent.image());
  for (const auto& r : parent.requests()) EXPECT_LE(r.count(), 3u);
  EXPECT_LE(parent.requests().size(), 6u);  // 3, then 2 at a time (the last one may be 1)
}

TEST_F(ChunkFetcherTest, RefillsHalfTheWindowInOneRequest) {
  FakeParent parent(TestPki::MakeImage(20 * kChunk, 6));
  ChunkFetcherOptions opts;
  opts.window = 8;
  Start(parent, opts);
  ASSERT_EQ(parent.requests().size(), 1u);
  // Three answers free three slots: nothing goes out yet ...
  for (int i = 0; i < 3; ++i) {
    auto r = parent.NextPending();
    ASSERT_TRUE(r.has_value());
    EXPECT_OK(fetcher_->OnData(parent.AnswerFor(*r)));
    executor_.RunUntilIdle();
  }
  EXPECT_EQ(parent.requests().size(), 1u);
  EXPECT_EQ(parent.pending(), 5u);
  // ... the fourth frees half the window, refilled by one request for the next four chunks.
  auto r = parent.NextPending();
  ASSERT_TRUE(r.has_value());
  EXPECT_OK(fetcher_->OnData(parent.AnswerFor(*r)));
  executor_.RunUntilIdle();
  ASSERT_EQ(parent.requests().size(), 2u);
  EXPECT_EQ(parent.requests()[1].offset(), 8 * kChunk);
  EXPECT_EQ(parent.requests()[1].count(), 4u);
  EXPECT_EQ(parent.pending(), 8u);
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_EQ(result_.bytes, parent.image());
  EXPECT_EQ(fetcher_->chunks_requested(), 20u);
}

// A window wider than a request may ask for goes out in several requests, none beyond
// kMaxChunksPerRequest; max_batch 1 asks for one chunk per request.
TEST_F(ChunkFetcherTest, ABatchNeverExceedsTheCapOrTheChunksLeft) {
  FakeParent parent(TestPki::MakeImage(50 * kChunk + 7, 6));
  ChunkFetcherOptions opts;
  opts.window = 40;
  Start(parent, opts);
  ASSERT_EQ(parent.requests().size(), 3u);
  EXPECT_EQ(parent.requests()[0].count(), kMaxChunksPerRequest);
  EXPECT_EQ(parent.requests()[1].count(), kMaxChunksPerRequest);
  EXPECT_EQ(parent.requests()[2].count(), 40 - 2 * kMaxChunksPerRequest);
  EXPECT_EQ(parent.pending(), 40u);
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_EQ(result_.bytes, parent.image());
  EXPECT_EQ(fetcher_->chunks_requested(), 51u);
  // The last request ends at the last chunk (of 7 bytes), not past it.
  EXPECT_EQ(parent.requests().back().offset() + parent.requests().back().count() * kChunk,
            51u * kChunk);

  result_ = {};
  FakeParent single(TestPki::MakeImage(kImageSize, 6));
  opts.window = 8;
  opts.max_batch = 1;
  Start(single, opts);
  AnswerAll(single);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_EQ(single.requests().size(), kChunks);
  for (const auto& r : single.requests()) EXPECT_LE(r.count(), 1u);
}

TEST_F(ChunkFetcherTest, OutOfOrderAnswersAreHandedOverInOrder) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 6));
  ChunkFetcherOptions opts;
  opts.window = 4;
  Start(parent, opts);
  std::vector<v1::FirmwareChunkRequest> first(parent.all().begin(), parent.all().end());
  ASSERT_EQ(first.size(), 4u);
  // 3, 2, 1 arrive before 0: nothing reaches the sink until 0 does.
  for (int i : {3, 2, 1}) EXPECT_OK(fetcher_->OnData(parent.AnswerFor(first[i])));
  executor_.RunUntilIdle();
  EXPECT_TRUE(result_.offsets.empty());
  (void)fetcher_->OnData(parent.AnswerFor(first[0]));
  executor_.RunUntilIdle();
  EXPECT_THAT(result_.offsets, ElementsAre(0, 1000, 2000, 3000));
}

TEST_F(ChunkFetcherTest, ResumesAtTheGivenOffset) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 6));
  Start(parent, {}, /*offset=*/4 * kChunk);
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_EQ(result_.bytes, parent.image().substr(4 * kChunk));
  EXPECT_EQ(parent.RequestsFor(0), 0);
  EXPECT_EQ(fetcher_->chunks_requested(), kChunks - 4);
}

TEST_F(ChunkFetcherTest, NothingLeftToFetchIsDoneAtOnce) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 6));
  Start(parent, {}, /*offset=*/kImageSize);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_TRUE(parent.all().empty());
}

TEST_F(ChunkFetcherTest, ALostAnswerIsRequestedAgainAfterTheTimeoutOnTheClock) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 7));
  ChunkFetcherOptions opts;
  opts.window = 4;  // chunks 0-3, then 4-7 once 0 is here
  opts.timeout = absl::Seconds(5);
  Start(parent, opts);
  // The first request for chunk 0 and for chunk 5 is lost.
  auto lose_first = [](const v1::FirmwareChunkRequest& r, int attempt) {
    return !(attempt == 1 && (r.offset() == 0 || r.offset() == 5 * kChunk));
  };
  AnswerAll(parent, lose_first);
  EXPECT_FALSE(result_.done.has_value());
  Elapse(4999);  // not yet
  EXPECT_EQ(parent.RequestsFor(0), 1);
  Elapse(1);
  EXPECT_EQ(parent.RequestsFor(0), 2);
  AnswerAll(parent, lose_first);
  // Chunk 5 was asked for later (with 4-7, once 0 was here), so it times out later; and on
  // time, though the retry of 0 before it waits twice as long.
  Elapse(5000);
  AnswerAll(parent, lose_first);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_EQ(result_.bytes, parent.image());
  EXPECT_EQ(parent.RequestsFor(0), 2);
  EXPECT_EQ(parent.RequestsFor(5 * kChunk), 2);
  EXPECT_EQ(parent.RequestsFor(kChunk), 1);
  EXPECT_EQ(fetcher_->chunks_requested(), kChunks + 2);
  EXPECT_EQ(fetcher_->timeouts(), 2u);
  std::vector<uint64_t> ids;
  for (const auto& r : parent.all()) {
    if (r.offset() == 0) ids.push_back(r.request_id());
  }
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_NE(ids[0], ids[1]);  // the retry is a new request
}

TEST_F(ChunkFetcherTest, AWallClockStepDoesNotTimeRequestsOut) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 7));
  Start(parent);
  clock_.StepWall(24 * 3600 * 1000);  // NTP moves the wall clock a day ahead
  executor_.RunUntilIdle();
  EXPECT_EQ(parent.RequestsFor(0), 1);
}

TEST_F(ChunkFetcherTest, ALateAnswerToAnEarlierTryCountsAndTheSecondIsIgnored) {
  // A loaded parent answers after the timeout: its answer to the first try is as good as one to
  // the second, and the chunk reaches the sink once.
  FakeParent parent(TestPki::MakeImage(kImageSize, 7));
  ChunkFetcherOptions opts;
  opts.window = 1;
  opts.timeout = absl::Seconds(1);
  Start(parent, opts);
  auto first_try = parent.NextPending();
  ASSERT_TRUE(first_try.has_value());
  Elapse(1000);
  auto second_try = parent.NextPending();
  ASSERT_TRUE(second_try.has_value());
  EXPECT_EQ(second_try->offset(), 0u);
  (void)fetcher_->OnData(parent.AnswerFor(*first_try));
  executor_.RunUntilIdle();
  EXPECT_THAT(result_.offsets, ElementsAre(0));
  (void)fetcher_->OnData(parent.AnswerFor(*second_try));
  executor_.RunUntilIdle();
  EXPECT_THAT(result_.offsets, ElementsAre(0));
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_EQ(result_.bytes, parent.image());
}

// One chunk of a batch lost: it alone is asked for again, in a request of its own, and the rest
// of the batch is not asked twice.
TEST_F(ChunkFetcherTest, ALostChunkOfABatchIsAskedForAgainAlone) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 7));
  ChunkFetcherOptions opts;
  opts.window = 4;
  opts.timeout = absl::Seconds(1);
  Start(parent, opts);
  ASSERT_EQ(parent.requests().size(), 1u);
  const uint64_t batch_id = parent.requests()[0].request_id();
  while (auto r = parent.NextPending()) {
    if (r->offset() != 2 * kChunk) {
      EXPECT_OK(fetcher_->OnData(parent.AnswerFor(*r)));
    }
  }
  executor_.RunUntilIdle();
  EXPECT_THAT(result_.offsets, ElementsAre(0, 1000));
  // The two delivered free half the window: 4 and 5 go out while 2 is still awaited.
  ASSERT_EQ(parent.requests().size(), 2u);
  EXPECT_EQ(parent.requests()[1].offset(), 4 * kChunk);
  EXPECT_EQ(parent.requests()[1].count(), 2u);
  Elapse(1000);
  // Chunk 2 timed out, asked again alone (3, 4 and 5 are here already).
  ASSERT_EQ(parent.requests().size(), 3u);
  const v1::FirmwareChunkRequest retry = parent.requests()[2];
  EXPECT_EQ(retry.offset(), 2 * kChunk);
  EXPECT_LE(retry.count(), 1u);
  EXPECT_EQ(retry.length(), kChunk);
  EXPECT_NE(retry.request_id(), batch_id);
  EXPECT_EQ(parent.RequestsFor(3 * kChunk), 1);
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_EQ(result_.bytes, parent.image());
  EXPECT_EQ(fetcher_->timeouts(), 1u);
  EXPECT_EQ(fetcher_->chunks_requested(), kChunks + 1);
}

// The parent answers a chunk of a batch late, after it was asked for again: the batch's answer
// counts (its id is the chunk's first try), the retry's answer is then ignored, and an answer
// carrying the id of a later batch that never asked for the chunk is not kept.
TEST_F(ChunkFetcherTest, ALateAnswerToABatchCountsAndTheRetrysIsIgnored) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 7));
  ChunkFetcherOptions opts;
  opts.window = 4;
  opts.timeout = absl::Seconds(1);
  Start(parent, opts);
  std::vector<v1::FirmwareChunkRequest> batch;
  while (auto r = parent.NextPending()) batch.push_back(*r);
  ASSERT_EQ(batch.size(), 4u);
  for (int i : {1, 2, 3}) EXPECT_OK(fetcher_->OnData(parent.AnswerFor(batch[i])));
  executor_.RunUntilIdle();
  Elapse(1000);  // chunk 0 asked again alone
  auto retry = parent.NextPending();
  ASSERT_TRUE(retry.has_value());
  EXPECT_EQ(retry->offset(), 0u);
  EXPECT_EQ(parent.pending(), 0u);
  // An answer for chunk 0 with an id from the future (not yet sent) is not ours.
  v1::ChunkData future = parent.AnswerFor(batch[0]);
  future.set_request_id(retry->request_id() + 1);
  EXPECT_OK(fetcher_->OnData(future));
  executor_.RunUntilIdle();
  EXPECT_TRUE(result_.offsets.empty());
  // The batch's own late answer for chunk 0: kept; the whole batch goes to the sink.
  EXPECT_OK(fetcher_->OnData(parent.AnswerFor(batch[0])));
  executor_.RunUntilIdle();
  EXPECT_THAT(result_.offsets, ElementsAre(0, 1000, 2000, 3000));
  EXPECT_OK(fetcher_->OnData(parent.AnswerFor(*retry)));  // already kept: ignored
  executor_.RunUntilIdle();
  EXPECT_THAT(result_.offsets, ElementsAre(0, 1000, 2000, 3000));
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_EQ(result_.bytes, parent.image());
}

// A whole batch lost: each of its chunks is asked for again in a request of its own, and the
// window still holds: never more chunks in flight than it allows.
TEST_F(ChunkFetcherTest, AWholeLostBatchIsAskedForAgainChunkByChunkWithinTheWindow) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 7));
  ChunkFetcherOptions opts;
  opts.window = 4;
  opts.timeout = absl::Seconds(1);
  Start(parent, opts);
  while (parent.NextPending()) {
  }
  Elapse(1000);
  ASSERT_EQ(parent.requests().size(), 5u);
  for (size_t i = 1; i < 5; ++i) {
    EXPECT_LE(parent.requests()[i].count(), 1u);
    EXPECT_EQ(parent.requests()[i].offset(), (i - 1) * kChunk);
  }
  EXPECT_EQ(parent.pending(), 4u);
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_EQ(result_.bytes, parent.image());
  // In flight never exceeded the window: 4 chunks, then 4 singles for them, then the rest.
  EXPECT_EQ(fetcher_->chunks_requested(), kChunks + 4);
}

TEST_F(ChunkFetcherTest, GivesUpAfterMaxTries) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 8));
  ChunkFetcherOptions opts;
  opts.timeout = absl::Milliseconds(20);
  opts.max_tries = 3;
  Start(parent, opts);
  for (int i = 0; i < 10 && !result_.done; ++i) Elapse(20);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_THAT(*result_.done, HasReason(v1::DOWNLOAD_FAILED));
  EXPECT_EQ(parent.RequestsFor(0), 3);
  EXPECT_EQ(result_.done_calls, 1);
  EXPECT_FALSE(fetcher_->active());
  Elapse(1000);  // nothing more is sent once it gave up
  EXPECT_EQ(parent.RequestsFor(0), 3);
}

TEST_F(ChunkFetcherTest, FailingSenderCountsAsALostRequest) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 8));
  ChunkFetcherOptions opts;
  opts.timeout = absl::Milliseconds(20);
  opts.max_tries = 2;
  int calls = 0;
  fetcher_ = std::make_unique<ChunkFetcher>(
      &loop_,
      [&](const v1::FirmwareChunkRequest&) -> absl::Status {
        ++calls;
        return absl::UnavailableError("not connected");
      },
      opts);
  std::optional<absl::Status> done;
  fetcher_->Start(
      parent.Spec(), [](uint64_t, const std::string&) { return absl::OkStatus(); },
      [&](const absl::Status& s) { done = s; });
  for (int i = 0; i < 10 && !done; ++i) Elapse(20);
  ASSERT_TRUE(done.has_value());
  EXPECT_THAT(*done, HasReason(v1::DOWNLOAD_FAILED));
  EXPECT_GE(calls, 2);
}

TEST_F(ChunkFetcherTest, ARefusalEndsTheFetchWithItsReason) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 9));
  Start(parent);
  while (auto r = parent.NextPending()) {
    if (r->offset() == 2 * kChunk) {
      fetcher_->OnResponse(parent.RefusalFor(*r, v1::IMAGE_UNAVAILABLE));
    } else {
      EXPECT_OK(fetcher_->OnData(parent.AnswerFor(*r)));
    }
    executor_.RunUntilIdle();
    if (result_.done) break;
  }
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_THAT(*result_.done, HasReason(v1::IMAGE_UNAVAILABLE));
  EXPECT_THAT(result_.offsets, ElementsAre(0, 1000));
}

// The parent refuses the whole batch (e.g. MALFORMED): its refusal names the batch's first
// offset and id, and ends the fetch.
TEST_F(ChunkFetcherTest, ARefusalOfABatchEndsTheFetch) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 9));
  Start(parent);
  ASSERT_EQ(parent.requests().size(), 1u);
  fetcher_->OnResponse(parent.RefusalFor(parent.requests()[0], v1::MALFORMED));
  executor_.RunUntilIdle();
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_THAT(*result_.done, HasReason(v1::MALFORMED));
}

TEST_F(ChunkFetcherTest, ARefusalOfSomethingNotAskedForIsIgnored) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 9));
  Start(parent);
  auto r = parent.NextPending();
  ASSERT_TRUE(r.has_value());
  v1::FirmwareChunkResponse stale = parent.RefusalFor(*r, v1::IMAGE_UNAVAILABLE);
  stale.set_request_id(r->request_id() + 1000);
  fetcher_->OnResponse(stale);
  v1::FirmwareChunkResponse for_the_table = parent.RefusalFor(*r, v1::IMAGE_UNAVAILABLE);
  for_the_table.set_table(true);
  fetcher_->OnResponse(for_the_table);
  executor_.RunUntilIdle();
  EXPECT_FALSE(result_.done.has_value());
  EXPECT_OK(fetcher_->OnData(parent.AnswerFor(*r)));
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
}

TEST_F(ChunkFetcherTest, AChunkOfTheWrongLengthIsDroppedAndTheRealOneStillCounts) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 9));
  Start(parent);
  auto r = parent.NextPending();
  ASSERT_TRUE(r.has_value());
  v1::ChunkData shortened = parent.AnswerFor(*r);
  shortened.set_data(shortened.data().substr(0, 10));
  EXPECT_THAT(fetcher_->OnData(shortened), HasReason(v1::SIZE_MISMATCH));
  executor_.RunUntilIdle();
  EXPECT_TRUE(result_.offsets.empty());
  EXPECT_EQ(parent.RequestsFor(0), 1);  // still in flight: the real answer may come
  EXPECT_OK(fetcher_->OnData(parent.AnswerFor(*r)));
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_EQ(result_.bytes, parent.image());
}

// Tampering at the first, a middle and the last (short) chunk: each forged copy is caught by
// the chunk table before the sink sees it, and the chunk is asked for again at once.
TEST_F(ChunkFetcherTest, ATamperedChunkAnywhereIsCaughtAndFetchedAgain) {
  for (uint64_t tampered : {uint64_t{0}, uint64_t{5 * kChunk}, uint64_t{10 * kChunk}}) {
    SCOPED_TRACE(tampered);
    result_ = {};
    attempts_.clear();
    FakeParent parent(TestPki::MakeImage(kImageSize, 15));
    ChunkFetcherOptions opts;
    opts.timeout = absl::Seconds(1);
    Start(parent, opts);
    int caught = 0;
    auto answer = [&] {
      while (auto r = parent.NextPending()) {
        v1::ChunkData d = parent.AnswerFor(*r);
        if (r->offset() == tampered && ++attempts_[tampered] == 1) {
          d.mutable_data()->back() ^= 0x01;  // one bit
          absl::Status s = fetcher_->OnData(d);
          EXPECT_THAT(s, HasReason(v1::DIGEST_MISMATCH));
          caught += !s.ok();
        } else {
          EXPECT_OK(fetcher_->OnData(d));
        }
        executor_.RunUntilIdle();
      }
    };
    answer();
    ASSERT_TRUE(result_.done.has_value());
    EXPECT_OK(*result_.done);
    EXPECT_EQ(result_.bytes, parent.image());
    EXPECT_EQ(caught, 1);
    EXPECT_EQ(parent.RequestsFor(tampered), 2);
    EXPECT_EQ(fetcher_->timeouts(), 0u);  // asked again without waiting
  }
}

// A parent that keeps sending bad bytes for a chunk: the fetch ends after max_tries with the
// check's reason, not as an unanswered download.
TEST_F(ChunkFetcherTest, AChunkBadEveryTimeEndsTheFetchWithTheChecksReason) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 18));
  ChunkFetcherOptions opts;
  opts.max_tries = 3;
  Start(parent, opts);
  while (auto r = parent.NextPending()) {
    v1::ChunkData d = parent.AnswerFor(*r);
    if (r->offset() == 3 * kChunk) d.mutable_data()->front() ^= 0x40;
    (void)fetcher_->OnData(d);
    executor_.RunUntilIdle();
    if (result_.done) break;
  }
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_THAT(*result_.done, HasReason(v1::DIGEST_MISMATCH));
  EXPECT_EQ(parent.RequestsFor(3 * kChunk), 3);
  EXPECT_EQ(result_.bytes, parent.image().substr(0, 3 * kChunk));
}

// A chunk swapped for another of the same image (right length, wrong place) and a duplicate of
// one already kept: the first is caught, the second ignored; the sink sees each chunk once.
TEST_F(ChunkFetcherTest, AReorderedOrDuplicatedChunkNeverReachesTheSink) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 16));
  ChunkFetcherOptions opts;
  opts.window = 4;
  Start(parent, opts);
  std::vector<v1::FirmwareChunkRequest> first(parent.all().begin(), parent.all().end());
  v1::ChunkData swapped = parent.AnswerFor(first[1]);
  swapped.set_data(parent.AnswerFor(first[2]).data());
  EXPECT_THAT(fetcher_->OnData(swapped), HasReason(v1::DIGEST_MISMATCH));
  EXPECT_OK(fetcher_->OnData(parent.AnswerFor(first[0])));
  EXPECT_OK(fetcher_->OnData(parent.AnswerFor(first[0])));  // a duplicate: ignored
  executor_.RunUntilIdle();
  EXPECT_THAT(result_.offsets, ElementsAre(0));
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_EQ(result_.bytes, parent.image());
}

TEST_F(ChunkFetcherTest, TheParentsWindowAppliesAtOnce) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 17));
  ChunkFetcherOptions opts;
  opts.window = 8;
  Start(parent, opts);
  EXPECT_EQ(parent.pending(), 8u);
  fetcher_->set_window(2);
  // Nothing is taken back, but nothing more goes out until fewer than 2 are in flight.
  for (int i = 0; i < 6; ++i) {
    auto r = parent.NextPending();
    ASSERT_TRUE(r.has_value());
    EXPECT_OK(fetcher_->OnData(parent.AnswerFor(*r)));
    executor_.RunUntilIdle();
  }
  EXPECT_EQ(parent.all().size(), 8u);
  auto r = parent.NextPending();
  ASSERT_TRUE(r.has_value());
  EXPECT_OK(fetcher_->OnData(parent.AnswerFor(*r)));
  executor_.RunUntilIdle();
  EXPECT_EQ(parent.pending(), 2u);  // 1 left in flight + 1 new
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
}

TEST(ChunkWindowForTest, SharesHalfTheBrokerQueueAmongTheChildren) {
  EXPECT_EQ(ChunkWindowFor(1, 1000, 8), 8u);     // capped by the node's own window
  EXPECT_EQ(ChunkWindowFor(62, 1000, 8), 8u);    // 500 / 62
  EXPECT_EQ(ChunkWindowFor(100, 1000, 8), 5u);   // 500 / 100
  EXPECT_EQ(ChunkWindowFor(500, 1000, 8), 1u);   // 500 / 500
  EXPECT_EQ(ChunkWindowFor(5000, 1000, 8), 1u);  // never 0
  EXPECT_EQ(ChunkWindowFor(0, 1000, 8), 8u);
  EXPECT_EQ(ChunkWindowFor(500, 100'000, 8), 8u);
}

TEST_F(ChunkFetcherTest, IgnoresResponsesItDidNotAskFor) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 10));
  ChunkFetcherOptions opts;
  opts.window = 1;
  Start(parent, opts);
  auto req = parent.NextPending();
  ASSERT_TRUE(req.has_value());

  v1::ChunkData other_image = parent.AnswerFor(*req);
  other_image.set_image_sha256(core::Sha256("another image"));
  other_image.set_data(std::string(kChunk, 'X'));
  EXPECT_OK(fetcher_->OnData(other_image));

  v1::ChunkData stale_id = parent.AnswerFor(*req);
  stale_id.set_request_id(req->request_id() + 1000);
  stale_id.set_data(std::string(kChunk, 'Y'));
  EXPECT_OK(fetcher_->OnData(stale_id));

  v1::ChunkData unasked = parent.AnswerFor(*req);
  unasked.set_offset(7 * kChunk);
  unasked.set_data(std::string(kChunk, 'Z'));
  EXPECT_OK(fetcher_->OnData(unasked));
  v1::ChunkData table_instead = parent.AnswerFor(*req);
  table_instead.set_table(true);
  EXPECT_OK(fetcher_->OnData(table_instead));
  executor_.RunUntilIdle();
  EXPECT_TRUE(result_.offsets.empty());

  // Only the real answer counts, and the unasked chunk was not kept: it is asked for in turn.
  (void)fetcher_->OnData(parent.AnswerFor(*req));
  executor_.RunUntilIdle();
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_OK(*result_.done);
  EXPECT_EQ(result_.bytes, parent.image());
  EXPECT_EQ(parent.RequestsFor(7 * kChunk), 1);
}

TEST_F(ChunkFetcherTest, ASinkErrorEndsTheFetchWithIt) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 11));
  Start(parent, {}, 0, core::Reject(v1::STORAGE_ERROR, "disk full"));
  AnswerAll(parent);
  ASSERT_TRUE(result_.done.has_value());
  EXPECT_THAT(*result_.done, HasReason(v1::STORAGE_ERROR));
  EXPECT_EQ(result_.offsets.size(), 2u);
  EXPECT_EQ(result_.done_calls, 1);
}

TEST_F(ChunkFetcherTest, CancelStopsEverythingWithoutCallingDone) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 12));
  Start(parent);
  auto r = parent.NextPending();
  ASSERT_TRUE(r.has_value());
  size_t sent = parent.all().size();
  fetcher_->Cancel();
  EXPECT_FALSE(fetcher_->active());
  (void)fetcher_->OnData(parent.AnswerFor(*r));  // an answer still on the way
  Elapse(60'000);                                // no timer is left to re-request anything
  EXPECT_TRUE(result_.offsets.empty());
  EXPECT_FALSE(result_.done.has_value());
  EXPECT_EQ(parent.all().size(), sent);
}

TEST_F(ChunkFetcherTest, StartingAnotherImageForgetsTheFirst) {
  FakeParent old_parent(TestPki::MakeImage(kImageSize, 13));
  FakeParent new_parent(TestPki::MakeImage(kImageSize, 14));
  FakeParent* target = &old_parent;
  fetcher_ = std::make_unique<ChunkFetcher>(
      &loop_, [&](const v1::FirmwareChunkRequest& r) { return target->Sender()(r); },
      ChunkFetcherOptions{});
  Result first, second;
  auto start = [&](FakeParent& p, Result& into) {
    fetcher_->Start(
        p.Spec(),
        [&into](uint64_t, const std::string& data) {
          into.bytes += data;
          return absl::OkStatus();
        },
        [&into](const absl::Status& s) {
          into.done = s;
          ++into.done_calls;
        });
    executor_.RunUntilIdle();
  };
  start(old_parent, first);
  auto old_req = old_parent.NextPending();
  ASSERT_TRUE(old_req.has_value());
  target = &new_parent;
  start(new_parent, second);  // the same fetcher, now for another image
  EXPECT_OK(fetcher_->OnData(old_parent.AnswerFor(*old_req)));  // the old image's answer is ignored
  executor_.RunUntilIdle();
  EXPECT_TRUE(second.bytes.empty());
  while (auto r = new_parent.NextPending()) {
    EXPECT_OK(fetcher_->OnData(new_parent.AnswerFor(*r)));
    executor_.RunUntilIdle();
  }
  ASSERT_TRUE(second.done.has_value());
  EXPECT_OK(*second.done);
  EXPECT_EQ(second.bytes, new_parent.image());
  EXPECT_TRUE(first.bytes.empty());
  EXPECT_EQ(first.done_calls, 0);  // a fetch replaced by Start() is cancelled, not finished
}

}  // namespace
}  // namespace x1368::core
