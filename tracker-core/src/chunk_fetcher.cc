#include "x1368/core/chunk_fetcher.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "x1368/core/reason.h"

namespace x1368::core {

ChunkFetcher::ChunkFetcher(EventLoop* loop, RequestSender send, ChunkFetcherOptions options)
    : loop_(loop), send_(std::move(send)), opts_(options) {}

ChunkFetcher::~ChunkFetcher() { Cancel(); }

void ChunkFetcher::Start(const std::string& sha256, uint64_t size, uint64_t offset, uint32_t chunk,
                         ChunkSink sink, Done done) {
  Cancel();
  active_ = true;
  sha256_ = sha256;
  size_ = size;
  chunk_ = std::max<uint32_t>(chunk, 1);
  next_request_ = next_deliver_ = std::min(offset, size);
  sink_ = std::move(sink);
  done_ = std::move(done);
  if (next_deliver_ == size_) return Finish(absl::OkStatus());  // nothing left to fetch
  Pump();
}

void ChunkFetcher::Cancel() {
  active_ = false;
  in_flight_.clear();
  received_.clear();
  tries_.clear();
  sink_ = nullptr;
  done_ = nullptr;
  if (timer_armed_) {
    loop_->Cancel(timer_);
    timer_armed_ = false;
  }
}

uint32_t ChunkFetcher::LengthAt(uint64_t offset) const {
  return static_cast<uint32_t>(std::min<uint64_t>(chunk_, size_ - offset));
}

void ChunkFetcher::Send(uint64_t offset) {
  v1::FirmwareChunkRequest req;
  req.set_image_sha256(sha256_);
  req.set_offset(offset);
  req.set_length(LengthAt(offset));
  req.set_request_id(next_request_id_++);
  // Each new try of a chunk waits twice as long as the one before (up to 8 times the timeout):
  // a parent that is slow because it is loaded gets time, not a second copy of every request.
  int tries = ++tries_[offset];
  int64_t timeout_ms = absl::ToInt64Milliseconds(opts_.timeout) << std::min(tries - 1, 3);
  InFlight& f = in_flight_[offset];
  if (f.first_request_id == 0) f.first_request_id = req.request_id();
  f.request_id = req.request_id();
  f.deadline_ms = loop_->clock().MonotonicMs() + timeout_ms;
  ++requests_sent_;
  // Not sent (e.g. the link is down): it times out and is asked again like a lost one.
  (void)send_(req);
}

void ChunkFetcher::Pump() {
  while (next_request_ < size_ && in_flight_.size() + received_.size() < opts_.window) {
    uint64_t offset = next_request_;
    next_request_ += LengthAt(offset);
    Send(offset);
  }
  ArmTimer();
}

void ChunkFetcher::ArmTimer() {
  if (timer_armed_ || in_flight_.empty()) return;
  int64_t first = INT64_MAX;
  for (const auto& [offset, f] : in_flight_) first = std::min(first, f.deadline_ms);
  int64_t wait = std::max<int64_t>(0, first - loop_->clock().MonotonicMs());
  timer_armed_ = true;
  timer_ = loop_->PostAfter(absl::Milliseconds(wait), [this] {
    timer_armed_ = false;
    OnTimer();
  });
}

void ChunkFetcher::OnTimer() {
  if (!active_) return;
  int64_t now = loop_->clock().MonotonicMs();
  std::vector<uint64_t> expired;
  for (const auto& [offset, f] : in_flight_) {
    if (f.deadline_ms <= now) expired.push_back(offset);
  }
  for (uint64_t offset : expired) {
    if (tries_[offset] >= opts_.max_tries) {
      return Finish(Reject(v1::DOWNLOAD_FAILED, absl::StrCat("no answer for chunk at ", offset,
                                                             " after ", tries_[offset], " tries")));
    }
    Send(offset);  // lost: ask again, as a new request
  }
  ArmTimer();
}

void ChunkFetcher::OnResponse(const v1::FirmwareChunkResponse& r) {
  if (!active_ || r.image_sha256() != sha256_) return;
  auto it = in_flight_.find(r.offset());
  // Only answers to what we asked for are kept: memory stays bounded by the window. An answer to
  // an earlier try of the chunk counts: a loaded parent answers late, and refusing its late
  // answers while asking again would only load it more.
  if (it == in_flight_.end() || r.request_id() < it->second.first_request_id ||
      r.request_id() > it->second.request_id) {
    return;
  }
  in_flight_.erase(it);
  if (r.error() != v1::REASON_UNSPECIFIED) {
    return Finish(Reject(r.error(), absl::StrCat("parent refused chunk at ", r.offset())));
  }
  if (r.data().size() != LengthAt(r.offset())) {
    // Not the bytes asked for: asked again (counted against the chunk's tries).
    if (tries_[r.offset()] >= opts_.max_tries) {
      return Finish(
          Reject(v1::SIZE_MISMATCH, absl::StrCat("chunk at ", r.offset(), " has ", r.data().size(),
                                                 " bytes, not ", LengthAt(r.offset()))));
    }
    Send(r.offset());
    return ArmTimer();
  }
  received_[r.offset()] = r.data();
  // Hand over in order whatever is now contiguous.
  while (active_) {
    auto next = received_.find(next_deliver_);
    if (next == received_.end()) break;
    std::string data = std::move(next->second);
    received_.erase(next);
    tries_.erase(next_deliver_);
    uint64_t offset = next_deliver_;
    next_deliver_ += data.size();
    if (absl::Status s = sink_(offset, data); !s.ok()) return Finish(s);
    if (next_deliver_ == size_) return Finish(absl::OkStatus());
  }
  if (active_) Pump();
}

void ChunkFetcher::Finish(const absl::Status& status) {
  Done done = std::move(done_);
  Cancel();
  if (done) done(status);
}

}  // namespace x1368::core
