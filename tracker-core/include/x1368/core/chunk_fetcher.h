// Fetches one image, or its chunk table, from the parent tracker (a client's gateway, or a
// gateway's parent filling its cache) in chunks over MQTT: FirmwareChunkRequest up (signed),
// ChunkData down (unsigned). It runs on the node's event loop and never blocks: it keeps a window
// of chunks in flight, asked for a batch at a time (one signed request for several consecutive
// chunks: the signature, not the bytes, is what a chunk request costs), checks each chunk the
// moment it arrives (FetchSpec::verify: the chunk table), hands the chunks to a sink strictly in
// offset order, re-requests alone a chunk that does not arrive within the timeout (on the loop's
// clock), and gives up after a bounded number of requests for one chunk. A chunk that fails its
// check is dropped and counted and asked for again at once, while the earlier request stays
// answerable: a forged or damaged copy never displaces the real one, and a parent that keeps
// sending bad bytes ends the fetch with the check's reason.
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
#include "x1368/core/chunk_service.h"
#include "x1368/core/event_loop.h"
#include "x1368/v1/messages.pb.h"

namespace x1368::core {

struct ChunkFetcherOptions {
  // Chunks requested ahead of the one the sink waits for: at most what the broker queues for
  // the parent, shared by its children (the parent states it in its go; set_window). Requests
  // in flight are fewer: a request may ask for several chunks. 16 rather than 8 since requests
  // are batched: a half-window refill is then 8 chunks under one signature, measured faster at
  // every chunk size of data_path_bench's but 128 KiB (a wash); 32 helped only chunks of 16 and
  // 32 KiB, and holds twice the memory on the device (received ahead of the sink).
  uint32_t window = 16;
  // Chunks one request asks for at most (1: a request per chunk).
  uint32_t max_batch = kMaxChunksPerRequest;
  absl::Duration timeout = absl::Seconds(5);  // for the first try; doubles with each retry
  int max_tries = 6;                          // requests per chunk
};

// Flow control that fits the broker: the chunks (so at most as many requests) each of `children`
// may keep in flight toward their parent, so that all of them together stay within half of what the
// broker queues for the parent (`queue`: Mosquitto's max_queued_messages, 1000 by default), the
// other half left to status traffic. Between 1 and `max_window`. A parent states it in its go.
uint32_t ChunkWindowFor(size_t children, uint32_t queue, uint32_t max_window);

class ChunkFetcher {
 public:
  // Seals and publishes one request. A failure counts as a lost request.
  using RequestSender = std::function<absl::Status(const v1::FirmwareChunkRequest&)>;
  // Takes the chunk at `offset`; an error ends the fetch with it.
  using ChunkSink = std::function<absl::Status(uint64_t offset, const std::string& data)>;
  using Done = std::function<void(const absl::Status&)>;

  struct FetchSpec {
    std::string sha256;   // the image
    bool table = false;   // its chunk table instead of its bytes
    uint64_t size = 0;    // bytes to fetch in all (the image's, or the table's)
    uint64_t offset = 0;  // where to begin: a multiple of `chunk` (a resumed download)
    uint32_t chunk = 0;   // bytes per request
    // Checks a chunk before it is kept; an error drops it (counted by the caller). Null: any
    // chunk of the right length is kept (the table, checked whole once complete).
    std::function<absl::Status(uint64_t offset, absl::string_view data)> verify;
  };

  ChunkFetcher(EventLoop* loop, RequestSender send, ChunkFetcherOptions options);
  ~ChunkFetcher();
  ChunkFetcher(const ChunkFetcher&) = delete;
  ChunkFetcher& operator=(const ChunkFetcher&) = delete;

  // Fetches bytes [offset, size) of what `spec` names. `done` runs once: OK when every byte went
  // to the sink; else the sink's error, the parent's refusal (its reason), or DOWNLOAD_FAILED
  // once one chunk went unanswered max_tries times. A fetch in progress is cancelled first.
  void Start(FetchSpec spec, ChunkSink sink, Done done);
  // A chunk from the parent. OK when it was kept or is not ours (late, for another fetch); the
  // check's error when it failed FetchSpec::verify (the caller counts it).
  absl::Status OnData(const v1::ChunkData& data);
  // The parent's signed refusal: ends the fetch with its reason.
  void OnResponse(const v1::FirmwareChunkResponse& response);
  // Ends the fetch in progress without calling its `done`; answers still on the way are ignored.
  void Cancel();
  // Requests in flight from now on (at least 1): what the parent allows each child.
  void set_window(uint32_t window);

  bool active() const { return active_; }
  uint64_t requests_sent() const { return requests_sent_; }        // signed requests
  uint64_t chunks_requested() const { return chunks_requested_; }  // over all of them
  uint64_t timeouts() const { return timeouts_; }                  // chunks that went unanswered

 private:
  struct InFlight {
    uint64_t first_request_id = 0;  // of the first try: a late answer to it is as good
    uint64_t request_id = 0;        // of the latest try
    int64_t deadline_ms = 0;        // monotonic
  };
  uint32_t LengthAt(uint64_t offset) const;
  // Asks for `count` chunks from `offset` on in one request.
  void Send(uint64_t offset, uint32_t count);
  void Pump();
  void ArmTimer();
  void OnTimer();
  void Finish(const absl::Status& status);

  EventLoop* const loop_;
  const RequestSender send_;
  const ChunkFetcherOptions opts_;
  const uint32_t max_batch_;
  uint32_t window_;

  bool active_ = false;
  FetchSpec spec_;
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
  uint64_t chunks_requested_ = 0;
  uint64_t timeouts_ = 0;
  EventLoop::TimerId timer_ = 0;
  bool timer_armed_ = false;
  int64_t timer_deadline_ms_ = 0;  // monotonic, while armed
  uint64_t timer_generation_ = 0;  // of the timer armed last: an older one that runs is stale
};

}  // namespace x1368::core

#endif  // X1368_CORE_CHUNK_FETCHER_H_
