// An ImageSource that fetches an image in chunks from the parent tracker over MQTT
// (DESIGN.md §7.5): FirmwareChunkRequest up, FirmwareChunkResponse down. It keeps a window of
// requests in flight ahead of the reader, re-requests a chunk that does not arrive in time, and
// gives up after a bounded number of tries. Integrity is the consumer's job: the image digest in
// the author-signed manifest is checked once the image is complete.
//
// Read() blocks the consumer's worker thread; OnResponse() is called from the event loop;
// Abort() from anywhere. Thread-safe.
#ifndef X1368_CLIENT_CHUNK_FETCHER_H_
#define X1368_CLIENT_CHUNK_FETCHER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "x1368/client/firmware_consumer.h"
#include "x1368/v1/messages.pb.h"

namespace x1368::client {

struct ChunkFetcherOptions {
  uint32_t window = 8;  // chunks requested ahead of the reader
  absl::Duration timeout = absl::Seconds(5);
  int max_tries = 6;  // per chunk
};

class ChunkFetcher final : public ImageSource {
 public:
  // `send` seals and publishes one request; it must be thread-safe.
  using RequestSender = std::function<absl::Status(const v1::FirmwareChunkRequest&)>;

  ChunkFetcher(RequestSender send, ChunkFetcherOptions options)
      : send_(std::move(send)), opts_(options) {}

  // Targets `sha256` of `size` bytes; forgets any other image's chunks.
  void Begin(const std::string& sha256, uint64_t size);
  absl::StatusOr<std::string> Read(uint64_t offset, uint32_t length) override;
  void OnResponse(const v1::FirmwareChunkResponse& response);
  // Makes every pending and later Read() fail with CANCELLED until Begin().
  void Abort();

  uint64_t requests_sent() const;

 private:
  struct Pending {
    uint64_t request_id = 0;
    uint32_t length = 0;
  };
  absl::Status Request(uint64_t offset, uint32_t length) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RequestSender send_;
  const ChunkFetcherOptions opts_;
  mutable absl::Mutex mu_;
  std::string sha256_ ABSL_GUARDED_BY(mu_);
  uint64_t size_ ABSL_GUARDED_BY(mu_) = 0;
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_request_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t requests_sent_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, Pending> in_flight_ ABSL_GUARDED_BY(mu_);     // by offset
  std::map<uint64_t, std::string> received_ ABSL_GUARDED_BY(mu_);  // by offset
  std::map<uint64_t, v1::Reason> errors_ ABSL_GUARDED_BY(mu_);     // by offset
};

}  // namespace x1368::client

#endif  // X1368_CLIENT_CHUNK_FETCHER_H_
