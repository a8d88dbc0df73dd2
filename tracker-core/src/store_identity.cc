#include "x1368/core/store_identity.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "x1368/core/log.h"
#include "x1368/core/reason.h"

namespace x1368::core {
namespace {

constexpr int kAnchorShift = 20;

// The persisted lease limit of a SeqCounter key (0 when absent).
absl::StatusOr<uint64_t> StoredLimit(KvStore& store, const char* key) {
  X1368_ASSIGN_OR_RETURN(std::optional<std::string> raw, store.Get(key));
  uint64_t limit = 0;
  if (raw && !absl::SimpleAtoi(*raw, &limit)) {
    return Reject(v1::STORAGE_ERROR, absl::StrCat("sequence counter ", key, " is corrupt"));
  }
  return limit;
}

}  // namespace

uint64_t SeqAnchorAt(int64_t now_ms) {
  return static_cast<uint64_t>(std::max<int64_t>(now_ms, 1)) << kAnchorShift;
}

absl::Status NotInitialisedError(const NodeConfig& config, absl::string_view store_file) {
  return absl::FailedPreconditionError(absl::StrCat(
      "data_dir ", config.data_dir, " holds no initialised store of node ", Quote(config.node_id),
      " (", store_file,
      " is missing or empty). A node does not start as new by itself: its sequence numbers would "
      "start again below what its parent and children have seen, and they would drop its "
      "messages. Start it once with --init to begin as a new node with nothing recorded, or "
      "restore root from a backup (tracker-root --restore FILE)"));
}

absl::StatusOr<std::optional<v1::StoreIdentity>> ReadStoreIdentity(KvStore& store) {
  X1368_ASSIGN_OR_RETURN(std::optional<std::string> raw, store.Get(kStoreIdentityKey));
  if (!raw) return std::nullopt;
  v1::StoreIdentity id;
  if (!id.ParseFromString(*raw) || id.node_id().empty()) {
    return Reject(v1::STORAGE_ERROR, "the store's identity record is corrupt");
  }
  return id;
}

absl::StatusOr<v1::StoreIdentity> PrepareStore(KvStore& store, const NodeConfig& config,
                                               const Clock& clock, absl::string_view store_file) {
  X1368_ASSIGN_OR_RETURN(std::optional<v1::StoreIdentity> existing, ReadStoreIdentity(store));
  if (existing) {
    if (existing->node_id() != config.node_id) {
      return absl::FailedPreconditionError(absl::StrCat(store_file, " is the store of node ",
                                                        Quote(existing->node_id()), ", not of ",
                                                        Quote(config.node_id), ": check data_dir"));
    }
    return *existing;
  }
  v1::StoreIdentity id;
  id.set_node_id(config.node_id);
  X1368_ASSIGN_OR_RETURN(std::optional<std::string> legacy, store.Get(kOwnSeqKey));
  if (legacy) {
    // A store from before identities: it has sequence state, so it is this node's own.
    X1368_RETURN_IF_ERROR(store.Put(kStoreIdentityKey, id.SerializeAsString()));
    spdlog::info("event=store.adopted store={}", Quoted(store_file));
    return id;
  }
  if (!config.init) return NotInitialisedError(config, store_file);
  const int64_t now = clock.NowMs();
  const uint64_t anchor = SeqAnchorAt(now);
  id.set_initialised_at_ms(now);
  id.set_seq_anchor(anchor);
  // One write: a store is either initialised with its counters anchored, or not at all.
  X1368_RETURN_IF_ERROR(store.Write({{kStoreIdentityKey, id.SerializeAsString()},
                                     {kOwnSeqKey, absl::StrCat(anchor - 1)},
                                     {kPresenceEpochKey, absl::StrCat(anchor - 1)}}));
  spdlog::warn("event=store.initialised store={} seq_from={} note={}", Quoted(store_file), anchor,
               Quoted("started as a new node with nothing recorded (--init)"));
  return id;
}

absl::StatusOr<uint64_t> ReanchorAfterRestore(KvStore& store, const Clock& clock) {
  X1368_ASSIGN_OR_RETURN(std::optional<v1::StoreIdentity> id, ReadStoreIdentity(store));
  if (!id) return Reject(v1::STORAGE_ERROR, "the store has no identity record");
  const int64_t now = clock.NowMs();
  const uint64_t floor = SeqAnchorAt(now) - 1;
  X1368_ASSIGN_OR_RETURN(uint64_t own, StoredLimit(store, kOwnSeqKey));
  X1368_ASSIGN_OR_RETURN(uint64_t presence, StoredLimit(store, kPresenceEpochKey));
  own = std::max(own, floor);
  presence = std::max(presence, floor);
  id->set_restored_at_ms(now);
  id->set_restored_anchor(own + 1);
  X1368_RETURN_IF_ERROR(store.Write({{kStoreIdentityKey, id->SerializeAsString()},
                                     {kOwnSeqKey, absl::StrCat(own)},
                                     {kPresenceEpochKey, absl::StrCat(presence)}}));
  return own + 1;
}

}  // namespace x1368::core
