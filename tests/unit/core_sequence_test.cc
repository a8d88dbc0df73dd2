// SeqCounter (own numbers, leased and persisted before use) and ReplayGuard (the 64-wide window
// of numbers seen from each sender), x1368/core/sequence.h.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "testing/status_matchers.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/sequence.h"

namespace x1368::core {
namespace {

using ::x1368::testing::HasReason;

TEST(SeqCounterTest, StartsAtOneAndIsMonotonic) {
  MemKvStore store;
  auto counter = SeqCounter::Open(&store, "own_seq", /*lease=*/4);
  ASSERT_OK(counter);
  uint64_t last = 0;
  for (int i = 0; i < 20; ++i) {
    auto n = (*counter)->Next();
    ASSERT_OK(n);
    if (i == 0) {
      EXPECT_EQ(*n, 1u);
    }
    EXPECT_EQ(*n, last + 1);
    last = *n;
  }
}

TEST(SeqCounterTest, ReopenSkipsAheadAndNeverReuses) {
  MemKvStore store;
  std::set<uint64_t> handed_out;
  uint64_t highest = 0;
  for (int run = 0; run < 3; ++run) {
    auto counter = SeqCounter::Open(&store, "own_seq", /*lease=*/16);
    ASSERT_OK(counter);
    for (int i = 0; i < 5; ++i) {
      auto n = (*counter)->Next();
      ASSERT_OK(n);
      EXPECT_GT(*n, highest) << "run " << run;
      EXPECT_TRUE(handed_out.insert(*n).second) << *n << " handed out twice";
      highest = *n;
    }
  }
  // After the first run handed out 1..5 from the lease 1..16, the next run starts past it.
  EXPECT_TRUE(handed_out.count(17));
}

TEST(SeqCounterTest, ReopenAfterNCallsGivesMoreThanN) {
  MemKvStore store;
  constexpr int kCalls = 3000;  // spans several default leases
  {
    auto counter = SeqCounter::Open(&store, "own_seq");
    ASSERT_OK(counter);
    for (int i = 0; i < kCalls; ++i) ASSERT_OK((*counter)->Next());
  }
  auto reopened = SeqCounter::Open(&store, "own_seq");
  ASSERT_OK(reopened);
  auto n = (*reopened)->Next();
  ASSERT_OK(n);
  EXPECT_GT(*n, static_cast<uint64_t>(kCalls));
}

TEST(SeqCounterTest, LeaseIsPersistedBeforeUse) {
  MemKvStore store;
  auto counter = SeqCounter::Open(&store, "own_seq", /*lease=*/4);
  ASSERT_OK(counter);
  EXPECT_EQ(store.writes(), 0u);
  ASSERT_OK((*counter)->Next());
  EXPECT_EQ(store.writes(), 1u);
  auto stored = store.Get("own_seq");
  ASSERT_OK(stored);
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ(**stored, "4");
  for (int i = 0; i < 3; ++i) ASSERT_OK((*counter)->Next());
  EXPECT_EQ(store.writes(), 1u);  // 1..4 from one lease
  ASSERT_OK((*counter)->Next());  // 5 needs the next lease
  EXPECT_EQ(store.writes(), 2u);
}

TEST(SeqCounterTest, FailsRatherThanHandOutUnpersistedNumbers) {
  MemKvStore base;
  FaultyKvStore store(&base);
  auto counter = SeqCounter::Open(&store, "own_seq", /*lease=*/2);
  ASSERT_OK(counter);
  store.FailWritesAfter(1);  // the first lease is written, the second is not
  auto a = (*counter)->Next();
  auto b = (*counter)->Next();
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_EQ(*a, 1u);
  EXPECT_EQ(*b, 2u);
  EXPECT_THAT((*counter)->Next(), HasReason(v1::STORAGE_ERROR));
  EXPECT_THAT((*counter)->Next(), HasReason(v1::STORAGE_ERROR));

  // Once the disk works again the counter continues, and a restart never goes back.
  store.Heal();
  auto c = (*counter)->Next();
  ASSERT_OK(c);
  EXPECT_EQ(*c, 3u);
  auto reopened = SeqCounter::Open(&store, "own_seq", /*lease=*/2);
  ASSERT_OK(reopened);
  auto d = (*reopened)->Next();
  ASSERT_OK(d);
  EXPECT_GT(*d, *c);
}

TEST(SeqCounterTest, CorruptStoredValueIsAnError) {
  MemKvStore store;
  ASSERT_OK(store.Put("own_seq", "not a number"));
  EXPECT_THAT(SeqCounter::Open(&store, "own_seq"), HasReason(v1::STORAGE_ERROR));
}

TEST(SeqCounterTest, UnreadableStoreFailsOpen) {
  MemKvStore base;
  FaultyKvStore store(&base);
  store.FailReads(true);
  EXPECT_FALSE(SeqCounter::Open(&store, "own_seq").ok());
}

TEST(ReplayGuardTest, FreshDuplicateReplay) {
  MemKvStore store;
  ReplayGuard guard(&store);
  auto v = guard.Check("gw", SeqStream::kMain, 1);
  ASSERT_OK(v);
  EXPECT_EQ(*v, SeqVerdict::kFresh);
  guard.Accept("gw", SeqStream::kMain, 1);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 1), SeqVerdict::kDuplicate);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 2), SeqVerdict::kFresh);
  guard.Accept("gw", SeqStream::kMain, 200);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 1), SeqVerdict::kReplay);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 200), SeqVerdict::kDuplicate);
}

TEST(ReplayGuardTest, CheckAloneDoesNotRecord) {
  MemKvStore store;
  ReplayGuard guard(&store);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 5), SeqVerdict::kFresh);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 5), SeqVerdict::kFresh);
  EXPECT_FALSE(guard.dirty());
}

TEST(ReplayGuardTest, SequenceZeroIsNeverFresh) {
  MemKvStore store;
  ReplayGuard guard(&store);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 0), SeqVerdict::kReplay);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kPresence, 0), SeqVerdict::kReplay);
}

TEST(ReplayGuardTest, WindowEdgeAt64) {
  MemKvStore store;
  ReplayGuard guard(&store);
  const uint64_t high = 1000;
  guard.Accept("gw", SeqStream::kMain, high);
  // Ages 1..63 are inside the window and not seen yet.
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, high - 1), SeqVerdict::kFresh);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, high - (ReplayGuard::kWindow - 1)),
            SeqVerdict::kFresh);
  // Age 64 and beyond are outside.
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, high - ReplayGuard::kWindow), SeqVerdict::kReplay);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 1), SeqVerdict::kReplay);

  // The oldest slot of the window is tracked: accept it, then it is a duplicate.
  guard.Accept("gw", SeqStream::kMain, high - 63);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, high - 63), SeqVerdict::kDuplicate);
  // Moving up by one pushes it out of the window.
  guard.Accept("gw", SeqStream::kMain, high + 1);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, high - 63), SeqVerdict::kReplay);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, high), SeqVerdict::kDuplicate);
}

TEST(ReplayGuardTest, SeenBitsShiftWithTheWindow) {
  MemKvStore store;
  ReplayGuard guard(&store);
  for (uint64_t s : {10u, 12u, 14u}) guard.Accept("gw", SeqStream::kMain, s);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 10), SeqVerdict::kDuplicate);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 11), SeqVerdict::kFresh);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 12), SeqVerdict::kDuplicate);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 13), SeqVerdict::kFresh);
  // A jump of exactly the window width clears every old bit.
  guard.Accept("gw", SeqStream::kMain, 14 + ReplayGuard::kWindow);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 15), SeqVerdict::kFresh);
  EXPECT_EQ(*guard.Check("gw", SeqStream::kMain, 14), SeqVerdict::kReplay);
}

TEST(ReplayGuardTest, StreamsAndSendersAreIndependent) {
  MemKvStore store;
  ReplayGuard guard(&store);
  guard.Accept("dev-1", SeqStream::kMain, 500);
  EXPECT_EQ(*guard.Check("dev-1", SeqStream::kPresence, 3), SeqVerdict::kFresh);
  guard.Accept("dev-1", SeqStream::kPresence, 3);
  EXPECT_EQ(*guard.Check("dev-1", SeqStream::kPresence, 3), SeqVerdict::kDuplicate);
  EXPECT_EQ(*guard.Check("dev-1", SeqStream::kMain, 3), SeqVerdict::kReplay);
  EXPECT_EQ(*guard.Check("dev-1", SeqStream::kMain, 500), SeqVerdict::kDuplicate);
  EXPECT_EQ(*guard.Check("dev-2", SeqStream::kMain, 3), SeqVerdict::kFresh);
}

TEST(ReplayGuardTest, FlushPersistsInOneWriteAndSurvivesRestart) {
  MemKvStore store;
  {
    ReplayGuard guard(&store);
    guard.Accept("a", SeqStream::kMain, 100);
    guard.Accept("a", SeqStream::kMain, 98);
    guard.Accept("b", SeqStream::kPresence, 7);
    EXPECT_TRUE(guard.dirty());
    ASSERT_OK(guard.Flush());
    EXPECT_FALSE(guard.dirty());
    EXPECT_EQ(store.writes(), 1u);
    ASSERT_OK(guard.Flush());  // nothing changed: no write
    EXPECT_EQ(store.writes(), 1u);
  }
  ReplayGuard restarted(&store);
  EXPECT_EQ(*restarted.Check("a", SeqStream::kMain, 100), SeqVerdict::kDuplicate);
  EXPECT_EQ(*restarted.Check("a", SeqStream::kMain, 98), SeqVerdict::kDuplicate);
  EXPECT_EQ(*restarted.Check("a", SeqStream::kMain, 99), SeqVerdict::kFresh);
  EXPECT_EQ(*restarted.Check("a", SeqStream::kMain, 36), SeqVerdict::kReplay);
  EXPECT_EQ(*restarted.Check("b", SeqStream::kPresence, 7), SeqVerdict::kDuplicate);
  EXPECT_EQ(*restarted.Check("b", SeqStream::kMain, 7), SeqVerdict::kFresh);
}

TEST(ReplayGuardTest, FailedFlushKeepsTheStateDirty) {
  MemKvStore base;
  FaultyKvStore store(&base);
  ReplayGuard guard(&store);
  guard.Accept("a", SeqStream::kMain, 5);
  store.FailWritesAfter(0);
  EXPECT_THAT(guard.Flush(), HasReason(v1::STORAGE_ERROR));
  EXPECT_TRUE(guard.dirty());
  store.Heal();
  ASSERT_OK(guard.Flush());
  ReplayGuard restarted(&store);
  EXPECT_EQ(*restarted.Check("a", SeqStream::kMain, 5), SeqVerdict::kDuplicate);
}

TEST(ReplayGuardTest, CorruptWindowIsAnError) {
  MemKvStore store;
  ASSERT_OK(store.Put("seen/main/a", "short"));
  ReplayGuard guard(&store);
  EXPECT_THAT(guard.Check("a", SeqStream::kMain, 1), HasReason(v1::STORAGE_ERROR));
}

}  // namespace
}  // namespace x1368::core
