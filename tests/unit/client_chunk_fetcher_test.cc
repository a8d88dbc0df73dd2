// ChunkFetcher (x1368/client/chunk_fetcher.h): windowed chunk requests to the parent,
// re-requests after a timeout, bounded tries, error propagation and abort.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"
#include "x1368/client/chunk_fetcher.h"
#include "x1368/core/crypto.h"
#include "x1368/core/reason.h"

namespace x1368::client {
namespace {

using ::x1368::testing::HasReason;
using ::x1368::testing::TestPki;
using ::x1368::testing::WaitFor;

constexpr uint32_t kChunk = 1000;
constexpr size_t kImageSize = 10'500;  // the last chunk is short

// The parent's side: records every request; answers them from a thread of its own (auto mode)
// or when the test says so (manual mode). Answers are delivered outside the sender's call, as
// the event loop would.
class FakeParent {
 public:
  // What to do with a request: answer it (nullopt) or answer with an error / drop it.
  enum class Action { kAnswer, kDrop, kError };
  using Policy = std::function<Action(const v1::FirmwareChunkRequest&, int attempt)>;

  explicit FakeParent(std::string image) : image_(std::move(image)), sha_(core::Sha256(image_)) {}
  ~FakeParent() { StopAuto(); }

  const std::string& sha() const { return sha_; }
  const std::string& image() const { return image_; }

  ChunkFetcher::RequestSender Sender() {
    return [this](const v1::FirmwareChunkRequest& r) -> absl::Status {
      absl::MutexLock lock(&mu_);
      all_.push_back(r);
      pending_.push_back(r);
      return absl::OkStatus();
    };
  }

  // Stops answering when it goes out of scope: declared after the fetcher, it is destroyed
  // before it, so the answering thread never touches a destroyed fetcher.
  class [[nodiscard]] Answering {
   public:
    explicit Answering(FakeParent* p) : p_(p) {}
    Answering(const Answering&) = delete;
    Answering& operator=(const Answering&) = delete;
    ~Answering() { p_->StopAuto(); }

   private:
    FakeParent* p_;
  };

  std::unique_ptr<Answering> StartAuto(ChunkFetcher* fetcher, Policy policy) {
    fetcher_ = fetcher;
    policy_ = std::move(policy);
    thread_ = std::thread([this] { AutoLoop(); });
    return std::make_unique<Answering>(this);
  }
  void StopAuto() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }

  v1::FirmwareChunkResponse AnswerFor(const v1::FirmwareChunkRequest& r) const {
    v1::FirmwareChunkResponse resp;
    resp.set_image_sha256(r.image_sha256());
    resp.set_offset(r.offset());
    resp.set_request_id(r.request_id());
    resp.set_total_size(image_.size());
    resp.set_data(image_.substr(r.offset(), r.length()));
    return resp;
  }

  // Manual mode: the oldest unanswered request, once one is there.
  std::optional<v1::FirmwareChunkRequest> NextPending(absl::Duration timeout = absl::Seconds(5)) {
    absl::MutexLock lock(&mu_);
    auto has = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !pending_.empty(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&has), timeout)) return std::nullopt;
    v1::FirmwareChunkRequest r = pending_.front();
    pending_.pop_front();
    return r;
  }
  size_t pending() const {
    absl::MutexLock lock(&mu_);
    return pending_.size();
  }
  std::vector<v1::FirmwareChunkRequest> all() const {
    absl::MutexLock lock(&mu_);
    return all_;
  }
  int RequestsFor(uint64_t offset) const {
    int n = 0;
    for (const auto& r : all()) n += r.offset() == offset;
    return n;
  }

 private:
  void AutoLoop() {
    std::map<uint64_t, int> attempts;
    while (true) {
      v1::FirmwareChunkRequest r;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]()
                         ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || !pending_.empty(); };
        mu_.Await(absl::Condition(&ready));
        if (stop_) return;
        r = pending_.front();
        pending_.pop_front();
      }
      Action a = policy_(r, ++attempts[r.offset()]);
      if (a == Action::kDrop) continue;
      v1::FirmwareChunkResponse resp = AnswerFor(r);
      if (a == Action::kError) {
        resp.clear_data();
        resp.set_error(v1::IMAGE_UNAVAILABLE);
      }
      fetcher_->OnResponse(resp);
    }
  }

  const std::string image_;
  const std::string sha_;
  mutable absl::Mutex mu_;
  std::vector<v1::FirmwareChunkRequest> all_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::FirmwareChunkRequest> pending_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  ChunkFetcher* fetcher_ = nullptr;
  Policy policy_;
  std::thread thread_;
};

// Reads the whole image the way a consumer does: chunk by chunk, in order.
absl::StatusOr<std::string> ReadAll(ChunkFetcher& fetcher, uint64_t size) {
  std::string out;
  for (uint64_t off = 0; off < size; off += kChunk) {
    X1368_ASSIGN_OR_RETURN(std::string data, fetcher.Read(off, kChunk));
    if (data.empty()) return absl::DataLossError("empty chunk");
    out += data;
  }
  return out;
}

FakeParent::Policy AnswerAll() {
  return [](const v1::FirmwareChunkRequest&, int) { return FakeParent::Action::kAnswer; };
}

TEST(ChunkFetcherTest, ReadsTheWholeImageInOrder) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 5));
  ChunkFetcher fetcher(parent.Sender(), ChunkFetcherOptions{});
  fetcher.Begin(parent.sha(), kImageSize);
  auto answering_parent = parent.StartAuto(&fetcher, AnswerAll());
  auto image = ReadAll(fetcher, kImageSize);
  ASSERT_OK(image);
  EXPECT_EQ(*image, parent.image());
  // Each chunk was asked for exactly once, with the right bounds.
  EXPECT_EQ(fetcher.requests_sent(), 11u);
  std::set<uint64_t> request_ids;
  for (const auto& r : parent.all()) {
    EXPECT_EQ(r.image_sha256(), parent.sha());
    EXPECT_EQ(r.offset() % kChunk, 0u);
    EXPECT_EQ(r.length(), std::min<uint64_t>(kChunk, kImageSize - r.offset()));
    EXPECT_TRUE(request_ids.insert(r.request_id()).second) << "request id reused";
  }
}

TEST(ChunkFetcherTest, KeepsAtMostWindowRequestsInFlight) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 6));
  ChunkFetcherOptions opts;
  opts.window = 3;
  opts.timeout = absl::Seconds(10);  // nothing is lost here
  ChunkFetcher fetcher(parent.Sender(), opts);
  fetcher.Begin(parent.sha(), kImageSize);

  absl::StatusOr<std::string> result;
  std::thread reader([&] { result = ReadAll(fetcher, kImageSize); });

  // Answer one request at a time, oldest first. Before each answer the reader has filled its
  // window (3 requests, fewer near the end) and never goes beyond it.
  constexpr size_t kChunks = 11;
  size_t answered = 0;
  while (answered < kChunks) {
    const size_t expected = std::min<size_t>(3, kChunks - answered);
    ASSERT_TRUE(
        WaitFor([&] { return parent.all().size() - answered >= expected; }, absl::Seconds(5)))
        << "after " << answered << " answers, requests sent: " << parent.all().size();
    EXPECT_EQ(parent.all().size() - answered, expected) << "after " << answered << " answers";
    auto r = parent.NextPending();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->offset(), answered * kChunk);
    fetcher.OnResponse(parent.AnswerFor(*r));
    ++answered;
  }
  reader.join();
  ASSERT_OK(result);
  EXPECT_EQ(*result, parent.image());
  EXPECT_EQ(parent.all().size(), kChunks);
}

TEST(ChunkFetcherTest, WindowIsFilledBeforeTheFirstAnswer) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 6));
  ChunkFetcherOptions opts;
  opts.window = 4;
  opts.timeout = absl::Seconds(10);
  ChunkFetcher fetcher(parent.Sender(), opts);
  fetcher.Begin(parent.sha(), kImageSize);
  absl::StatusOr<std::string> first;
  std::thread reader([&] { first = fetcher.Read(0, kChunk); });
  ASSERT_TRUE(WaitFor([&] { return parent.all().size() == 4; }, absl::Seconds(5)))
      << "requests sent: " << parent.all().size();
  std::vector<uint64_t> offsets;
  for (const auto& r : parent.all()) offsets.push_back(r.offset());
  EXPECT_THAT(offsets, ::testing::ElementsAre(0, 1000, 2000, 3000));
  fetcher.OnResponse(parent.AnswerFor(parent.all()[0]));
  reader.join();
  ASSERT_OK(first);
  EXPECT_EQ(*first, parent.image().substr(0, kChunk));
  EXPECT_EQ(parent.all().size(), 4u);
}

TEST(ChunkFetcherTest, DroppedResponseIsRequestedAgain) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 7));
  ChunkFetcherOptions opts;
  opts.timeout = absl::Milliseconds(50);
  ChunkFetcher fetcher(parent.Sender(), opts);
  fetcher.Begin(parent.sha(), kImageSize);
  // The first request for chunk 0 and for chunk 5 is lost.
  auto answering_parent =
      parent.StartAuto(&fetcher, [](const v1::FirmwareChunkRequest& r, int attempt) {
        bool lost = attempt == 1 && (r.offset() == 0 || r.offset() == 5 * kChunk);
        return lost ? FakeParent::Action::kDrop : FakeParent::Action::kAnswer;
      });
  auto image = ReadAll(fetcher, kImageSize);
  ASSERT_OK(image);
  EXPECT_EQ(*image, parent.image());
  EXPECT_EQ(parent.RequestsFor(0), 2);
  EXPECT_EQ(parent.RequestsFor(5 * kChunk), 2);
  EXPECT_EQ(parent.RequestsFor(kChunk), 1);
  EXPECT_EQ(fetcher.requests_sent(), 13u);
  // The retry is a new request.
  std::vector<uint64_t> ids;
  for (const auto& r : parent.all()) {
    if (r.offset() == 0) ids.push_back(r.request_id());
  }
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_NE(ids[0], ids[1]);
}

TEST(ChunkFetcherTest, GivesUpAfterMaxTries) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 8));
  ChunkFetcherOptions opts;
  opts.timeout = absl::Milliseconds(20);
  opts.max_tries = 3;
  ChunkFetcher fetcher(parent.Sender(), opts);
  fetcher.Begin(parent.sha(), kImageSize);
  auto answering_parent = parent.StartAuto(
      &fetcher, [](const v1::FirmwareChunkRequest&, int) { return FakeParent::Action::kDrop; });
  EXPECT_THAT(fetcher.Read(0, kChunk), HasReason(v1::DOWNLOAD_FAILED));
  EXPECT_EQ(parent.RequestsFor(0), 3);
}

TEST(ChunkFetcherTest, FailingSenderCountsAsALostRequest) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 8));
  ChunkFetcherOptions opts;
  opts.timeout = absl::Milliseconds(20);
  opts.max_tries = 2;
  std::atomic<int> calls{0};
  ChunkFetcher fetcher(
      [&](const v1::FirmwareChunkRequest&) -> absl::Status {
        ++calls;
        return absl::UnavailableError("not connected");
      },
      opts);
  fetcher.Begin(parent.sha(), kImageSize);
  EXPECT_THAT(fetcher.Read(0, kChunk), HasReason(v1::DOWNLOAD_FAILED));
  EXPECT_GE(calls.load(), 2);
}

TEST(ChunkFetcherTest, ErrorResponsePropagatesItsReason) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 9));
  ChunkFetcher fetcher(parent.Sender(), ChunkFetcherOptions{});
  fetcher.Begin(parent.sha(), kImageSize);
  auto answering_parent = parent.StartAuto(&fetcher, [](const v1::FirmwareChunkRequest& r, int) {
    return r.offset() == 2 * kChunk ? FakeParent::Action::kError : FakeParent::Action::kAnswer;
  });
  auto first = fetcher.Read(0, kChunk);
  ASSERT_OK(first);
  ASSERT_OK(fetcher.Read(kChunk, kChunk));
  EXPECT_THAT(fetcher.Read(2 * kChunk, kChunk), HasReason(v1::IMAGE_UNAVAILABLE));
}

TEST(ChunkFetcherTest, IgnoresResponsesItDidNotAskFor) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 10));
  ChunkFetcherOptions opts;
  opts.window = 1;
  opts.timeout = absl::Seconds(10);
  ChunkFetcher fetcher(parent.Sender(), opts);
  fetcher.Begin(parent.sha(), kImageSize);
  absl::StatusOr<std::string> result;
  std::thread reader([&] { result = fetcher.Read(0, kChunk); });
  auto req = parent.NextPending();
  ASSERT_TRUE(req.has_value());

  v1::FirmwareChunkResponse other_image = parent.AnswerFor(*req);
  other_image.set_image_sha256(core::Sha256("another image"));
  other_image.set_data(std::string(kChunk, 'X'));
  fetcher.OnResponse(other_image);

  v1::FirmwareChunkResponse stale_id = parent.AnswerFor(*req);
  stale_id.set_request_id(req->request_id() + 1000);
  stale_id.set_data(std::string(kChunk, 'Y'));
  fetcher.OnResponse(stale_id);

  v1::FirmwareChunkResponse unasked = parent.AnswerFor(*req);
  unasked.set_offset(7 * kChunk);
  unasked.set_data(std::string(kChunk, 'Z'));
  fetcher.OnResponse(unasked);

  // None of these may satisfy the read: only the real answer does.
  fetcher.OnResponse(parent.AnswerFor(*req));
  reader.join();
  ASSERT_OK(result);
  EXPECT_EQ(*result, parent.image().substr(0, kChunk));
  // The unasked chunk was not kept either: reading it asks the parent.
  size_t before = parent.all().size();
  std::thread reader2([&] { result = fetcher.Read(7 * kChunk, kChunk); });
  ASSERT_TRUE(WaitFor([&] { return parent.all().size() > before; }, absl::Seconds(5)));
  fetcher.OnResponse(parent.AnswerFor(parent.all().back()));
  reader2.join();
  ASSERT_OK(result);
  EXPECT_EQ(*result, parent.image().substr(7 * kChunk, kChunk));
}

TEST(ChunkFetcherTest, AbortCancelsABlockedRead) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 11));
  ChunkFetcherOptions opts;
  opts.timeout = absl::Seconds(10);
  ChunkFetcher fetcher(parent.Sender(), opts);
  fetcher.Begin(parent.sha(), kImageSize);
  absl::StatusOr<std::string> result;
  std::thread reader([&] { result = fetcher.Read(0, kChunk); });
  auto req0 = parent.NextPending();  // the read is waiting for its answer
  ASSERT_TRUE(req0.has_value());
  absl::Time start = absl::Now();
  fetcher.Abort();
  reader.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  // Later reads fail too, until the next Begin.
  EXPECT_EQ(fetcher.Read(kChunk, kChunk).status().code(), absl::StatusCode::kCancelled);
  fetcher.Begin(parent.sha(), kImageSize);
  // The answer to the request made before the abort arrives now: same image, still wanted.
  fetcher.OnResponse(parent.AnswerFor(*req0));
  auto answering_parent = parent.StartAuto(&fetcher, AnswerAll());
  auto again = fetcher.Read(0, kChunk);
  ASSERT_OK(again);
  EXPECT_EQ(*again, parent.image().substr(0, kChunk));
}

TEST(ChunkFetcherTest, ReadPastTheEndFails) {
  FakeParent parent(TestPki::MakeImage(kImageSize, 12));
  ChunkFetcher fetcher(parent.Sender(), ChunkFetcherOptions{});
  fetcher.Begin(parent.sha(), kImageSize);
  EXPECT_THAT(fetcher.Read(kImageSize, kChunk), HasReason(v1::DOWNLOAD_FAILED));
  EXPECT_TRUE(parent.all().empty());
}

TEST(ChunkFetcherTest, BeginWithAnotherImageForgetsOldChunks) {
  FakeParent old_parent(TestPki::MakeImage(kImageSize, 13));
  FakeParent new_parent(TestPki::MakeImage(kImageSize, 14));
  std::atomic<FakeParent*> target{&old_parent};
  ChunkFetcherOptions opts;
  opts.window = 4;
  ChunkFetcher fetcher(
      [&](const v1::FirmwareChunkRequest& r) { return target.load()->Sender()(r); }, opts);
  fetcher.Begin(old_parent.sha(), kImageSize);
  auto answering_old_parent = old_parent.StartAuto(&fetcher, AnswerAll());
  ASSERT_OK(fetcher.Read(0, kChunk));  // chunks 1..3 of the old image arrive meanwhile
  ASSERT_TRUE(WaitFor([&] { return old_parent.pending() == 0; }, absl::Seconds(5)));
  old_parent.StopAuto();

  target = &new_parent;
  fetcher.Begin(new_parent.sha(), kImageSize);
  auto answering_new_parent = new_parent.StartAuto(&fetcher, AnswerAll());
  auto chunk1 = fetcher.Read(kChunk, kChunk);
  ASSERT_OK(chunk1);
  EXPECT_EQ(*chunk1, new_parent.image().substr(kChunk, kChunk));
}

}  // namespace
}  // namespace x1368::client
