// No silent state loss (issue #14): a node whose store is missing or empty does not start as a
// new node unless told to, and its sequence numbers never go back across a lost store.
//
// A node's sequence numbers (SeqCounter "own_seq", and "presence_epoch" for presence) live in its
// store, and every receiver drops what is not above what it has seen from the sender. A store
// lost while the node was stopped used to make it start again at 1: its parent or children then
// dropped its next messages as replays, silently. Now:
//
//   - An initialised store carries a StoreIdentity (node id, when it began). PrepareStore refuses
//     a store without one unless the node was started with --init (NodeConfig::init), as etcd's
//     --initial-cluster-state new: a lost store is an operator's decision, never a default.
//     A store of another node is refused too (data_dir pointed at the wrong directory).
//   - A store initialised (or restored from a backup) at time T hands out numbers from
//     SeqAnchorAt(T) = T_ms * 2^20 on, so a fresh store starts above anything the node issued
//     before, without remembering anything of it. The assumptions: the wall clock at --init (or
//     restore) is later than at the previous one by more than the numbers issued in between
//     divided by 2^20 (a node would have to send over a million messages per millisecond, its
//     lease skips of 1,024 per restart included, to catch up with the clock), and it is before
//     2248 (the presence stream doubles its epoch within 64 bits). A clock that is wrong at
//     --init breaks the guarantee: set it first.
//
// Thread-safe as the KvStore is: functions without state of their own.
#ifndef X1368_CORE_STORE_IDENTITY_H_
#define X1368_CORE_STORE_IDENTITY_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "x1368/core/clock.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/node.h"
#include "x1368/v1/storage.pb.h"

namespace x1368::core {

inline constexpr char kStoreIdentityKey[] = "store_identity";
// The SeqCounter keys NodeContext keeps in the store.
inline constexpr char kOwnSeqKey[] = "own_seq";
inline constexpr char kPresenceEpochKey[] = "presence_epoch";

// The first sequence number of a store that begins at `now_ms` (see above).
uint64_t SeqAnchorAt(int64_t now_ms);

// The error of a node whose store is missing or was never initialised: names `data_dir`, the
// store file and the --init flag.
absl::Status NotInitialisedError(const NodeConfig& config, absl::string_view store_file);

// Checks that `store` (`store_file` names it in messages) is the initialised store of
// `config.node_id`. A store without a StoreIdentity: adopted when it already holds sequence
// state (a store from before StoreIdentity existed), initialised when `config.init` is set
// (identity written, counters anchored at SeqAnchorAt(now), in one write), refused otherwise
// (NotInitialisedError). A store of another node is refused (FailedPrecondition).
absl::StatusOr<v1::StoreIdentity> PrepareStore(KvStore& store, const NodeConfig& config,
                                               const Clock& clock, absl::string_view store_file);

// Reads the StoreIdentity of `store`, or nullopt when it has none.
absl::StatusOr<std::optional<v1::StoreIdentity>> ReadStoreIdentity(KvStore& store);

// After a restore from a backup (which may be older than the numbers the node issued since):
// raises both sequence counters to at least SeqAnchorAt(now) (never lowers them) and records the
// restore in the identity, in one write. Returns the number the node continues from.
absl::StatusOr<uint64_t> ReanchorAfterRestore(KvStore& store, const Clock& clock);

}  // namespace x1368::core

#endif  // X1368_CORE_STORE_IDENTITY_H_
