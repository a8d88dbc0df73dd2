// No silent state loss (issue #14): a store that is missing or empty is refused unless the node
// is started with --init, a store is its node's own, and a fresh store numbers its messages above
// anything the node sent before it was lost (x1368/core/store_identity.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "testing/status_matchers.h"
#include "x1368/core/clock.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/sequence.h"
#include "x1368/core/store_identity.h"

namespace x1368::core {
namespace {

using ::testing::HasSubstr;

NodeConfig Config(const std::string& id, bool init) {
  NodeConfig c;
  c.node_id = id;
  c.data_dir = "/var/lib/x1368/" + id;
  c.init = init;
  return c;
}

uint64_t NextSeq(KvStore& store, const char* key = kOwnSeqKey) {
  auto counter = SeqCounter::Open(&store, key);
  EXPECT_OK(counter);
  auto n = (*counter)->Next();
  EXPECT_OK(n);
  return *n;
}

TEST(StoreIdentityTest, AStoreThatWasNeverInitialisedIsRefusedWithoutInit) {
  MemKvStore store;
  FakeClock clock;
  auto id = PrepareStore(store, Config("root", false), clock, "/var/lib/x1368/root/root.db");
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("data_dir /var/lib/x1368/root"));
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("/var/lib/x1368/root/root.db"));
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("--init"));
  EXPECT_EQ(store.writes(), 0u) << "a refused store is left as it was";
}

TEST(StoreIdentityTest, InitRecordsTheNodeAndAnchorsBothCountersAtTheClock) {
  MemKvStore store;
  FakeClock clock(1'800'000'000'000);
  auto id = PrepareStore(store, Config("gw1", true), clock, "intermediate.db");
  ASSERT_OK(id);
  EXPECT_EQ(id->node_id(), "gw1");
  EXPECT_EQ(id->initialised_at_ms(), 1'800'000'000'000);
  EXPECT_EQ(id->seq_anchor(), SeqAnchorAt(1'800'000'000'000));
  EXPECT_EQ(store.writes(), 1u) << "identity and counters in one write";
  EXPECT_EQ(NextSeq(store), SeqAnchorAt(1'800'000'000'000));
  EXPECT_EQ(NextSeq(store, kPresenceEpochKey), SeqAnchorAt(1'800'000'000'000));
  // Presence numbers are epoch*2 (+1): they must fit in 64 bits for centuries.
  EXPECT_LT(SeqAnchorAt(8'000'000'000'000), uint64_t{1} << 63);  // the year 2223
}

TEST(StoreIdentityTest, AnInitialisedStoreStartsWithoutInitAndInitChangesNothing) {
  MemKvStore store;
  FakeClock clock;
  ASSERT_OK(PrepareStore(store, Config("dev-1", true), clock, "state.kv"));
  uint64_t first = NextSeq(store);
  clock.Advance(60'000);
  ASSERT_OK(PrepareStore(store, Config("dev-1", false), clock, "state.kv"));
  ASSERT_OK(PrepareStore(store, Config("dev-1", true), clock, "state.kv"));  // ignored
  uint64_t next = NextSeq(store);
  EXPECT_GT(next, first);
  EXPECT_LT(next, SeqAnchorAt(clock.NowMs())) << "--init on an initialised store re-anchored it";
}

TEST(StoreIdentityTest, TheStoreOfAnotherNodeIsRefused) {
  MemKvStore store;
  FakeClock clock;
  ASSERT_OK(PrepareStore(store, Config("gw1", true), clock, "intermediate.db"));
  auto other = PrepareStore(store, Config("gw2", true), clock, "intermediate.db");
  ASSERT_FALSE(other.ok());
  EXPECT_THAT(std::string(other.status().message()),
              HasSubstr("is the store of node \"gw1\", not of \"gw2\""));
}

TEST(StoreIdentityTest, AStoreFromBeforeIdentitiesIsAdoptedAsItIs) {
  MemKvStore store;
  ASSERT_OK(store.Put(kOwnSeqKey, "5120"));
  FakeClock clock;
  auto id = PrepareStore(store, Config("root", false), clock, "root.db");
  ASSERT_OK(id);
  EXPECT_EQ(id->seq_anchor(), 0u);
  EXPECT_EQ(NextSeq(store), 5121u) << "its numbers go on from where they were";
  auto stored = ReadStoreIdentity(store);
  ASSERT_OK(stored);
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ((*stored)->node_id(), "root");
}

// The case: root had sent numbers up to some value, its store was emptied, and it began
// again. A fresh store started a millisecond later already numbers above all of it, however many
// restarts (each skips a lease of 1,024) and messages there were in between.
TEST(StoreIdentityTest, AFreshStoreNumbersAboveEverythingTheLostOneHandedOut) {
  FakeClock clock;
  uint64_t highest = 0;
  {
    MemKvStore lost;
    ASSERT_OK(PrepareStore(lost, Config("root", true), clock, "root.db"));
    for (int restart = 0; restart < 50; ++restart) {
      auto counter = SeqCounter::Open(&lost, kOwnSeqKey);
      ASSERT_OK(counter);
      for (int i = 0; i < 2000; ++i) {
        auto n = (*counter)->Next();
        ASSERT_OK(n);
        highest = *n;
      }
    }
  }
  clock.Advance(1);
  MemKvStore fresh;
  ASSERT_OK(PrepareStore(fresh, Config("root", true), clock, "root.db"));
  EXPECT_GT(NextSeq(fresh), highest);
}

TEST(StoreIdentityTest, ARestoreRaisesTheCountersToTheClockAndNeverLowersThem) {
  FakeClock clock;
  MemKvStore store;
  ASSERT_OK(PrepareStore(store, Config("root", true), clock, "root.db"));
  uint64_t before = NextSeq(store);
  clock.Advance(3'600'000);
  auto next = ReanchorAfterRestore(store, clock);
  ASSERT_OK(next);
  EXPECT_EQ(*next, SeqAnchorAt(clock.NowMs()));
  EXPECT_GT(*next, before);
  EXPECT_EQ(NextSeq(store), *next);
  EXPECT_EQ(NextSeq(store, kPresenceEpochKey), *next);
  auto id = ReadStoreIdentity(store);
  ASSERT_OK(id);
  EXPECT_EQ((*id)->restored_at_ms(), clock.NowMs());
  // A clock behind the store's numbers: they stay where they are.
  clock.Set(clock.NowMs() - 86'400'000);
  uint64_t current = NextSeq(store);
  auto again = ReanchorAfterRestore(store, clock);
  ASSERT_OK(again);
  EXPECT_GT(*again, current);
  EXPECT_GT(NextSeq(store), current);
  // A store without an identity is no backup of a node.
  MemKvStore empty;
  EXPECT_FALSE(ReanchorAfterRestore(empty, clock).ok());
}

}  // namespace
}  // namespace x1368::core
