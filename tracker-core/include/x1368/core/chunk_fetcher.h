// Fetches one image from the parent tracker (a client's gateway, or a gateway's parent filling
// its cache) in chunks over MQTT: FirmwareChunkRequest up,
// FirmwareChunkResponse down. It runs on the node's event loop and never blocks: it keeps a
// window of requests in flight, hands the chunks to a sink strictly in offset order, re-requests a
// chunk that does not arrive within the timeout (on the loop's clock) or arrives malformed, and
// gives up after a bounded number of requests for one chunk. Integrity is the consumer's job: the
// image digest in the author-signed manifest is checked once the image is complete.
//
// Not thread-safe: every call, and every callback, is on the loop.
#ifndef X1368_CORE_CHUNK_FETCHER_H_
#define X1368_CORE_CHUNK_FETCHER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "x1368/core/event_loop.h"
#include "x1368/v1/messages.pb.h"

namespace x1368::core {

struct ChunkFetcherOptions {
  uint32_t window = 8;  // chunks requested ahead of the one the sink waits for
  absl::Duration timeout = absl::Seconds(5);  // for the first try; doubles with each retry
  int max_tries = 6;                          // requests per chunk
};

class ChunkFetcher {
 public:
  // Seals and publishes one request. A failure counts as a lost request.
  using RequestSender = std::function<absl::Status(const v1::FirmwareChunkRequest&)>;
  // Takes the chunk at `offset`; an error ends the fetch with it.
  using ChunkSink = std::function<absl::Status(uint64_t offset, const std::string& data)>;
  using Done = std::function<void(const absl::Status&)>;

  ChunkFetcher(EventLoop* loop, RequestSender send, ChunkFetcherOptions options);
  ~ChunkFetcher();
  ChunkFetcher(const ChunkFetcher&) = delete;
  ChunkFetcher& operator=(const ChunkFetcher&) = delete;

  // Fetches bytes [offset, size) of image `sha256` in requests of `chunk` bytes. `done` runs once:
  // OK when every byte went to the sink; else the sink's error, the parent's refusal (its reason),
  // or DOWNLOAD_FAILED once one chunk went unanswered max_tries times. A fetch in progress is
  // cancelled first.
  void Start(const std::string& sha256, uint64_t size, uint64_t offset, uint32_t chunk,
             ChunkSink sink, Done done);
  void OnResponse(const v1::FirmwareChunkResponse& response);
  // Ends the fetch in progress without calling its `done`; answers still on the way are ignored.
  void Cancel();

  bool active() const { return active_; }
  uint64_t requests_sent() const { return requests_sent_; }

 private:
  struct InFlight {
    uint64_t first_request_id = 0;  // of the first try: a late answer to it is as good
    uint64_t request_id = 0;        // of the latest try
    int64_t deadline_ms = 0;        // monotonic
  };
  uint32_t LengthAt(uint64_t offset) const;
  void Send(uint64_t offset);
  void Pump();
  void ArmTimer();
  void OnTimer();
  void Finish(const absl::Status& status);

  EventLoop* const loop_;
  const RequestSender send_;
  const ChunkFetcherOptions opts_;

  bool active_ = false;
  std::string sha256_;
  uint64_t size_ = 0;
  uint32_t chunk_ = 0;
  uint64_t next_request_ = 0;  // first offset never requested yet
  uint64_t next_deliver_ = 0;  // the offset the sink waits for
  ChunkSink sink_;
  Done done_;
  std::map<uint64_t, InFlight> in_flight_;    // by offset
  std::map<uint64_t, std::string> received_;  // ahead of next_deliver_, by offset
  std::map<uint64_t, int> tries_;             // requests sent per offset
  uint64_t next_request_id_ = 1;
  uint64_t requests_sent_ = 0;
  EventLoop::TimerId timer_ = 0;
  bool timer_armed_ = false;
};

}  // namespace x1368::core

#endif  // X1368_CORE_CHUNK_FETCHER_H_
