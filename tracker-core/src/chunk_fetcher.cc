#include "x1368/core/chunk_fetcher.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "x1368/core/reason.h"

namespace x1368::core {

uint32_t ChunkWindowFor(size_t children, uint32_t queue, uint32_t max_window) {
  uint64_t share = (queue / 2) / std::max<size_t>(children, 1);
  return static_cast<uint32_t>(std::clamp<uint64_t>(share, 1, std::max(max_window, 1u)));
}

ChunkFetcher::ChunkFetcher(EventLoop* loop, RequestSender send, ChunkFetcherOptions options)
    : loop_(loop),
      send_(std::move(send)),
      opts_(options),
      max_batch_(std::clamp(options.max_batch, 1u, kMaxChunksPerRequest)),
      window_(std::max(options.window, 1u)) {}

ChunkFetcher::~ChunkFetcher() { Cancel(); }

void ChunkFetcher::Start(FetchSpec spec, ChunkSink sink, Done done) {
  Cancel();
  active_ = true;
  spec_ = std::move(spec);
  size_ = spec_.size;
  chunk_ = std::max<uint32_t>(spec_.chunk, 1);
  next_request_ = next_deliver_ = std::min(spec_.offset, size_);
  sink_ = std::move(sink);
  done_ = std::move(done);
  if (next_deliver_ == size_) return Finish(absl::OkStatus());  // nothing left to fetch
  Pump();
}

void ChunkFetcher::set_window(uint32_t window) {
  window_ = std::max(window, 1u);
  if (active_) Pump();
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
    ++timer_generation_;
  }
}

uint32_t ChunkFetcher::LengthAt(uint64_t offset) const {
  return static_cast<uint32_t>(std::min<uint64_t>(chunk_, size_ - offset));
}

void ChunkFetcher::Send(uint64_t offset, uint32_t count) {
  v1::FirmwareChunkRequest req;
  req.set_image_sha256(spec_.sha256);
  req.set_table(spec_.table);
  req.set_offset(offset);
  // A full chunk each but the last, which the parent cuts at the end as we do.
  req.set_length(LengthAt(offset));
  if (count > 1) req.set_count(count);
  req.set_request_id(next_request_id_++);
  const int64_t now = loop_->clock().MonotonicMs();
  for (uint32_t i = 0; i < count; ++i, offset += LengthAt(offset)) {
    // Each new try of a chunk waits twice as long as the one before (up to 8 times the timeout):
    // a parent that is slow because it is loaded gets time, not a second copy of every request.
    int tries = ++tries_[offset];
    int64_t timeout_ms = absl::ToInt64Milliseconds(opts_.timeout) << std::min(tries - 1, 3);
    InFlight& f = in_flight_[offset];
    if (f.first_request_id == 0) f.first_request_id = req.request_id();
    f.request_id = req.request_id();
    f.deadline_ms = now + timeout_ms;
  }
  ++requests_sent_;
  chunks_requested_ += count;
  // Not sent (e.g. the link is down): its chunks time out and are asked again like lost ones.
  (void)send_(req);
}

void ChunkFetcher::Pump() {
  const uint64_t held = in_flight_.size() + received_.size();
  uint64_t free = held < window_ ? window_ - held : 0;
  const uint64_t rest = size_ - next_request_;
  uint64_t left = rest / chunk_ + (rest % chunk_ != 0);  // chunks never requested yet
  // Slots are refilled once half the window is free, not one by one as answers come: a window
  // topped up at each answer would go out a chunk per request, each signed by us and checked by
  // the parent (~90 us a hop, a large share of what a 64 KiB chunk costs to move). The other half
  // stays in flight meanwhile, so the link does not idle.
  const uint64_t batch = std::min<uint64_t>({(window_ + 1) / 2, max_batch_, left});
  if (batch == 0 || free < batch) return ArmTimer();
  while (free > 0 && left > 0) {
    uint32_t count = static_cast<uint32_t>(std::min<uint64_t>({free, max_batch_, left}));
    uint64_t offset = next_request_;
    for (uint32_t i = 0; i < count; ++i) next_request_ += LengthAt(next_request_);
    Send(offset, count);
    free -= count;
    left -= count;
  }
  ArmTimer();
}

void ChunkFetcher::ArmTimer() {
  if (in_flight_.empty()) return;
  int64_t first = INT64_MAX;
  for (const auto& [offset, f] : in_flight_) first = std::min(first, f.deadline_ms);
  // A retry waits longer than a first try: chunks asked for after it are due before it, and the
  // timer moves up for them.
  if (timer_armed_) {
    if (timer_deadline_ms_ <= first) return;
    loop_->Cancel(timer_);
  }
  int64_t wait = std::max<int64_t>(0, first - loop_->clock().MonotonicMs());
  timer_armed_ = true;
  timer_deadline_ms_ = first;
  // A timer that fired just before it was cancelled still runs (its task was already queued on
  // the loop): it must not take the place of the one armed since, which would then be left
  // armed with nobody to cancel it, and could fire after the fetcher is gone.
  const uint64_t generation = ++timer_generation_;
  timer_ = loop_->PostAfter(absl::Milliseconds(wait), [this, generation] {
    if (generation != timer_generation_) return;
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
    ++timeouts_;
    Send(offset, 1);  // lost: ask again, alone, as a new request
  }
  ArmTimer();
}

void ChunkFetcher::OnResponse(const v1::FirmwareChunkResponse& r) {
  if (!active_ || r.image_sha256() != spec_.sha256 || r.table() != spec_.table) return;
  auto it = in_flight_.find(r.offset());
  if (it == in_flight_.end() || r.request_id() < it->second.first_request_id ||
      r.request_id() > it->second.request_id || r.error() == v1::REASON_UNSPECIFIED) {
    return;
  }
  Finish(Reject(r.error(), absl::StrCat("parent refused chunk at ", r.offset())));
}

absl::Status ChunkFetcher::OnData(const v1::ChunkData& d) {
  if (!active_ || d.image_sha256() != spec_.sha256 || d.table() != spec_.table) {
    return absl::OkStatus();
  }
  auto it = in_flight_.find(d.offset());
  // Only answers to what we asked for are kept: memory stays bounded by the window. An answer to
  // an earlier try of the chunk counts: a loaded parent answers late, and refusing its late
  // answers while asking again would only load it more.
  if (it == in_flight_.end() || d.request_id() < it->second.first_request_id ||
      d.request_id() > it->second.request_id) {
    return absl::OkStatus();
  }
  if (d.data().size() != LengthAt(d.offset())) {
    // Not even the right length: dropped without a new try (a truncated copy; the genuine one
    // or the timeout follows).
    return Reject(v1::SIZE_MISMATCH, absl::StrCat("chunk at ", d.offset(), " has ", d.data().size(),
                                                  " bytes, not ", LengthAt(d.offset())));
  }
  // Checked before it is kept. A bad chunk is asked for again at once (a try, counted); the
  // earlier request stays answerable, so a genuine late answer still counts. A chunk that comes
  // back bad max_tries times ends the fetch with the check's reason.
  if (spec_.verify) {
    if (absl::Status bad = spec_.verify(d.offset(), d.data()); !bad.ok()) {
      if (tries_[d.offset()] >= opts_.max_tries) {
        Finish(bad);
      } else {
        Send(d.offset(), 1);
        ArmTimer();
      }
      return bad;
    }
  }
  in_flight_.erase(it);
  received_[d.offset()] = d.data();
  // Hand over in order whatever is now contiguous.
  while (active_) {
    auto next = received_.find(next_deliver_);
    if (next == received_.end()) break;
    std::string data = std::move(next->second);
    received_.erase(next);
    tries_.erase(next_deliver_);
    uint64_t offset = next_deliver_;
    next_deliver_ += data.size();
    if (absl::Status s = sink_(offset, data); !s.ok()) {
      Finish(s);
      return absl::OkStatus();
    }
    if (next_deliver_ == size_) {
      Finish(absl::OkStatus());
      return absl::OkStatus();
    }
  }
  if (active_) Pump();
  return absl::OkStatus();
}

void ChunkFetcher::Finish(const absl::Status& status) {
  Done done = std::move(done_);
  Cancel();
  if (done) done(status);
}

}  // namespace x1368::core
