// A node's two links (docs/architecture.md §3): at most one upstream link to its parent and at most
// one downstream link where its children connect. Both may share one Transport (one broker); the
// topic decides which side a message belongs to.
//
// NodeLinks owns the message path every module shares: it subscribes the right filters, signs a
// fresh Last Will per connection and announces presence on the upstream link, asks the children
// for their state each time the downstream link is up (RequestStatus), parses each topic,
// opens the envelope under the right origin (the parent for down topics, exactly the child the
// topic names for up topics), counts every rejection by reason, and hands verified messages to
// the module. Replay state is written back once per burst of messages. Chunk bytes (down/data)
// are the one exception to the envelope: parsed here, verified by the module against the
// author-signed chunk table.
//
// Handlers run on the event loop. Send*/Publish* are thread-safe (the client's worker calls
// them); everything else belongs to the event loop thread.
#ifndef X1368_CORE_LINKS_H_
#define X1368_CORE_LINKS_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "x1368/core/envelope.h"
#include "x1368/core/event_loop.h"
#include "x1368/core/node.h"
#include "x1368/core/topics.h"
#include "x1368/core/transport.h"

namespace x1368::core {

// A root-signed directive as a parent keeps it for its children.
struct ActiveDirective {
  std::string campaign_id;
  std::string envelope;  // the root's bytes, forwarded unchanged
  std::string digest;    // SHA-256 of its body: what a Go names
  int64_t expires_at_ms = 0;
};

class NodeLinks {
 public:
  using MessageHandler =
      std::function<void(const Topic&, const std::string& payload, OpenedMessage)>;

  struct Handlers {
    MessageHandler from_parent;                // verified message on my parent's down topics
    MessageHandler from_child;                 // verified message on a child's up topic
    std::function<void()> upstream_connected;  // after presence "online" went out
    std::function<void(const absl::Status&)> rejected;  // after it was counted
    // Chunk bytes on my parent's down/data topic for me: parsed, NOT authenticated. The
    // handler checks them against the chunk table before using them.
    std::function<void(const v1::ChunkData&)> data_from_parent;
    // Time sync (see below). `resend_requested(child)`: a child corrected its clock and may have
    // refused what it was sent meanwhile; its desired state should go again. `clock_corrected`:
    // this node adopted a new clock offset (its next report carries it).
    std::function<void(const std::string& child)> resend_requested;
    std::function<void()> clock_corrected;
  };

  // `upstream` and `downstream` may be null (root has no parent, a device no children) or the
  // same Transport. Pointers are not owned.
  NodeLinks(NodeContext* node, EventLoop* loop, Transport* upstream, std::string parent_id,
            Transport* downstream);

  absl::Status Start(Handlers handlers);
  void Stop();

  const std::string& parent_id() const { return parent_id_; }

  // Seals `body` for the parent and publishes it on my up/<channel> topic.
  absl::Status SendUp(Channel channel, v1::Body body);
  // Seals `body` for `child` and publishes it on its down/<channel> topic. `ttl_ms` 0: the
  // node's default message TTL (retained messages need longer).
  absl::Status SendDown(const std::string& child, Channel channel, v1::Body body,
                        bool retained = false, int64_t ttl_ms = 0);
  // Publishes chunk bytes, unsigned, on `child`'s down/data topic.
  absl::Status SendData(const std::string& child, const v1::ChunkData& data);
  // Seals `body` for "_all" and publishes it once on my _all/down/cmd topic.
  absl::Status Broadcast(v1::Body body);
  // Asks every child for a fresh status report (a signed StatusRequest on _all/down/cmd).
  absl::Status RequestStatus();
  // Publishes bytes signed by someone else (a root directive) unchanged on _all/down/cmd.
  absl::Status ForwardToChildren(const std::string& envelope);
  // Publishes `directives`, with a go for each, as `child`'s retained desired state: what it
  // finds when it comes back (X.1368 §11.2 c: the update reaches a device that was away). Valid
  // as long as the longest-lived directive. Each go allows `chunk_window` chunks in
  // flight.
  absl::Status SendDesiredState(const std::string& child,
                                const std::vector<ActiveDirective>& directives,
                                uint32_t chunk_window);

  // Counts and reports a rejection found by the module itself (e.g. a bad manifest).
  // `from_parent`: of a message that came down from the parent (NodeContext::CountRejection).
  void Reject(const absl::Status& status, absl::string_view where, bool from_parent = false);

  // Opens every report inside a StatusBatch that `batch` (already opened) carries, each under
  // its own device's signature, subtree and sequence numbers (Origin::kRelayed via the batch's
  // signer), and hands each valid one to `fn` with its raw envelope. Bad ones are counted.
  // `path`: the nodes between the batch's signer and the report's sender (StatusBatch.paths);
  // a batch whose paths do not match its reports, or name an invalid node, is refused whole.
  // Time (X.1368 §10 freshness; issue #14). A node asks its parent for the time (TimeRequest,
  // a fresh random nonce) each time its upstream link is up, and again when a message of its
  // parent is refused for time (EXPIRED, ISSUED_IN_FUTURE, BAD_CERT), at most once every
  // kTimeRequestIntervalMs (monotonic: a trigger within it is deferred to its end, not lost),
  // and every kTimeResyncIntervalMs anyway (a clock stepped while nothing came down). The parent
  // answers each request with its own trusted time (TimeResponse) signed for that child. The answer
  // is adopted when it carries the nonce of the request outstanding (answered within
  // kTimeResponseTimeoutMs), is signed by the parent itself (the usual origin checks), its
  // certificate valid at the time it asserts: offset = time_ms + rtt/2 - system time, adopted when
  // it moves trusted time by more than kTimeAdoptThresholdMs. After a correction the node asks once
  // more with `resend`, and the parent sends its desired state again (what was refused for time
  // meanwhile).
  static constexpr int64_t kTimeRequestIntervalMs = 10'000;
  static constexpr int64_t kTimeResponseTimeoutMs = 30'000;
  static constexpr int64_t kTimeAdoptThresholdMs = 1'000;
  static constexpr int64_t kTimeResyncIntervalMs = 3'600'000;
  // A parent answers each child's time requests from a bucket of kTimeAnswerBurst, refilled by
  // one every kTimeAnswerRefillMs; a request with none left is refused unanswered (TOO_FREQUENT).
  // A well-behaved child never meets it: it asks at most once every kTimeRequestIntervalMs,
  // besides at a new connection and once more, with `resend`, right after a correction.
  static constexpr int kTimeAnswerBurst = 3;
  static constexpr int64_t kTimeAnswerRefillMs = kTimeRequestIntervalMs / 2;
  // Sends a TimeRequest now, or at the end of the interval when the last one went less than
  // kTimeRequestIntervalMs ago; `force` (a new connection): now unless the last is unanswered;
  // `resend`: now.
  void RequestTime(bool force = false, bool resend = false);

  // `verify_relayed`: which reports have their own signature verified (OpenContext); null:
  // all. A resent report (the same sequence number again) is handed on with `duplicate` set.
  // A batch that names a device twice is refused whole (MALFORMED).
  void ForEachRelayedReport(
      const OpenedMessage& batch,
      const std::function<void(const std::string& envelope, const OpenedMessage& report,
                               const std::string& path)>& fn,
      const std::function<bool(const v1::Body&)>& verify_relayed = nullptr);

 private:
  void OnMessage(const MqttMessage& m);
  void OnData(const Topic& topic, const MqttMessage& m);
  void DownstreamConnected();
  // Counts SESSION_TAKEN_OVER and LINK_FLAPPING for what `link` suffered since the last call.
  void CountTakeovers(Transport* link);
  void ScheduleFlush();
  void OnTimeResponse(const Topic& topic, const OpenedMessage& m);
  void AnswerTime(const Topic& topic, const OpenedMessage& m);
  // A message of the parent was refused: if for time, ask the time (rate-limited).
  void ResyncAfter(const absl::Status& status);
  struct PendingTime {
    std::string nonce;
    int64_t sent_mono_ms = 0;
    bool resend = false;
  };
  std::optional<PendingTime> pending_time_;
  std::optional<int64_t> last_time_request_mono_ms_;
  bool time_request_deferred_ = false;
  // Each child's answers left and when they were last refilled (monotonic), for
  // kTimeAnswerBurst. One entry per child that passed the envelope checks: bounded by the
  // children root certified.
  struct TimeAnswers {
    int left = 0;
    int64_t at_ms = 0;
  };
  absl::flat_hash_map<std::string, TimeAnswers> time_answers_;
  void PeriodicTimeRequest();

  NodeContext* node_;
  EventLoop* loop_;
  Transport* upstream_;
  const std::string parent_id_;
  Transport* downstream_;
  struct LinkAlarms {
    uint64_t taken_over = 0;
    uint64_t quick_losses = 0;
  };
  LinkAlarms upstream_alarms_, downstream_alarms_;
  Handlers handlers_;
  void FlushReplay();
  // Queued behind the messages already waiting, so one write covers the whole burst.
  Coalesced flush_{loop_, absl::ZeroDuration(), [this] { FlushReplay(); }};
};

}  // namespace x1368::core

#endif  // X1368_CORE_LINKS_H_
