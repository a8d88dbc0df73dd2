#include "x1368/client/chunk_fetcher.h"

#include "absl/strings/str_cat.h"
#include "x1368/core/reason.h"

namespace x1368::client {

void ChunkFetcher::Begin(const std::string& sha256, uint64_t size) {
  absl::MutexLock lock(&mu_);
  if (sha256 != sha256_) {
    in_flight_.clear();
    received_.clear();
    errors_.clear();
  }
  sha256_ = sha256;
  size_ = size;
  aborted_ = false;
}

void ChunkFetcher::Abort() {
  absl::MutexLock lock(&mu_);
  aborted_ = true;
}

uint64_t ChunkFetcher::requests_sent() const {
  absl::MutexLock lock(&mu_);
  return requests_sent_;
}

absl::Status ChunkFetcher::Request(uint64_t offset, uint32_t length) {
  v1::FirmwareChunkRequest req;
  req.set_image_sha256(sha256_);
  req.set_offset(offset);
  req.set_length(length);
  req.set_request_id(next_request_id_++);
  in_flight_[offset] = Pending{req.request_id(), length};
  ++requests_sent_;
  return send_(req);
}

absl::StatusOr<std::string> ChunkFetcher::Read(uint64_t offset, uint32_t length) {
  absl::MutexLock lock(&mu_);
  if (offset >= size_) return core::Reject(v1::DOWNLOAD_FAILED, "read past the end of the image");
  int tries = 0;
  while (true) {
    if (aborted_) return absl::CancelledError("download aborted");
    // Keep the window full: this chunk and the next ones the reader will ask for.
    for (uint32_t k = 0; k < opts_.window; ++k) {
      uint64_t off = offset + uint64_t{k} * length;
      if (off >= size_) break;
      if (in_flight_.count(off) || received_.count(off) || errors_.count(off)) continue;
      uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(length, size_ - off));
      if (k == 0) ++tries;
      if (absl::Status s = Request(off, len); !s.ok() && k == 0) {
        in_flight_.erase(off);  // not sent: retry after the timeout
      }
    }
    if (auto it = received_.find(offset); it != received_.end()) {
      std::string data = std::move(it->second);
      received_.erase(it);
      return data;
    }
    if (auto it = errors_.find(offset); it != errors_.end()) {
      v1::Reason reason = it->second;
      errors_.erase(it);
      return core::Reject(reason, absl::StrCat("parent refused chunk at ", offset));
    }
    auto ready = [this, offset]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return aborted_ || received_.count(offset) > 0 || errors_.count(offset) > 0;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), opts_.timeout)) {
      if (tries >= opts_.max_tries) {
        return core::Reject(v1::DOWNLOAD_FAILED, absl::StrCat("no answer for chunk at ", offset,
                                                              " after ", tries, " tries"));
      }
      in_flight_.erase(offset);  // lost: ask again on the next pass
    }
  }
}

void ChunkFetcher::OnResponse(const v1::FirmwareChunkResponse& r) {
  absl::MutexLock lock(&mu_);
  if (r.image_sha256() != sha256_) return;
  auto it = in_flight_.find(r.offset());
  // Only answers to what we asked for are kept: memory stays bounded by the window.
  if (it == in_flight_.end() || it->second.request_id != r.request_id()) return;
  in_flight_.erase(it);
  if (r.error() != v1::REASON_UNSPECIFIED) {
    errors_[r.offset()] = r.error();
  } else {
    received_[r.offset()] = r.data();
  }
}

}  // namespace x1368::client
