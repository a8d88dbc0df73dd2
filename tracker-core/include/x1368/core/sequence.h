// Sequence numbers of docs/architecture.md §6: every sender numbers its messages, every receiver
// drops what it has already seen, and both survive restarts.
//
// SeqCounter hands out a sender's own numbers. It reserves them in leases persisted before use,
// so a crash skips ahead to the next lease and never reuses a number. Thread-safe.
//
// ReplayGuard keeps, per (sender, stream), the highest number seen and a 64-wide window below
// it (as IPsec does, RFC 4303 §3.4.3): a number inside the window that was not seen yet is still
// accepted, so QoS 1 redelivery and cross-topic reordering never lose a message, while anything
// seen or older than the window is refused. State is loaded lazily per sender and written back
// by Flush() in one store write. Not thread-safe: owned by one event loop.
#ifndef X1368_CORE_SEQUENCE_H_
#define X1368_CORE_SEQUENCE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "x1368/core/kv_store.h"

namespace x1368::core {

class SeqCounter {
 public:
  static absl::StatusOr<std::unique_ptr<SeqCounter>> Open(KvStore* store, std::string key,
                                                          uint64_t lease = 1024);
  // The next number (starting at 1). Fails only when a new lease cannot be persisted.
  absl::StatusOr<uint64_t> Next();

 private:
  SeqCounter(KvStore* store, std::string key, uint64_t lease, uint64_t next)
      : store_(store), key_(std::move(key)), lease_(lease), next_(next), limit_(next - 1) {}
  KvStore* store_;
  const std::string key_;
  const uint64_t lease_;
  absl::Mutex mu_;
  uint64_t next_ ABSL_GUARDED_BY(mu_);
  uint64_t limit_ ABSL_GUARDED_BY(mu_);  // highest number covered by the persisted lease
};

// Presence messages number their own stream (a connection epoch), so the Last Will signed at
// connect time is never older than what the node sends while connected.
enum class SeqStream { kMain, kPresence };

enum class SeqVerdict { kFresh, kDuplicate, kReplay };

class ReplayGuard {
 public:
  static constexpr uint64_t kWindow = 64;

  explicit ReplayGuard(KvStore* store) : store_(store) {}

  absl::StatusOr<SeqVerdict> Check(const std::string& sender, SeqStream stream, uint64_t seq);
  // Records `seq` as seen; call only after Check() said kFresh and the message was accepted.
  void Accept(const std::string& sender, SeqStream stream, uint64_t seq);
  // Persists every window changed since the last Flush, in one write.
  absl::Status Flush();
  bool dirty() const { return !dirty_.empty(); }

 private:
  struct Window {
    uint64_t highest = 0;
    uint64_t seen = 0;  // bit i: highest - i was seen
  };
  absl::StatusOr<Window*> Load(const std::string& key);

  KvStore* store_;
  absl::flat_hash_map<std::string, Window> windows_;
  absl::flat_hash_map<std::string, bool> dirty_;
};

}  // namespace x1368::core

#endif  // X1368_CORE_SEQUENCE_H_
