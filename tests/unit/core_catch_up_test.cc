// core::CatchUp: when a parent sends a child that missed a campaign its desired state again.
#include <gtest/gtest.h>

#include "x1368/core/catch_up.h"

namespace x1368::core {
namespace {

constexpr int64_t kDirective = 1'000'000;  // when the newest directive arrived (ms)

CatchUp Make() {
  CatchUp::Options o;
  o.grace = absl::Seconds(10);
  o.first_backoff = absl::Seconds(30);
  o.max_resends = 3;
  return CatchUp(o);
}

TEST(CatchUpTest, OneReportIsNotEnoughItMayBeOlderThanTheDirective) {
  CatchUp c = Make();
  const int64_t t = kDirective + 60'000;
  EXPECT_FALSE(c.OnReport("dev", /*behind=*/true, t, kDirective));
  EXPECT_FALSE(c.OnReport("dev", true, t + 9'999, kDirective));
  EXPECT_TRUE(c.OnReport("dev", true, t + 10'000, kDirective));  // still behind after the grace
  EXPECT_EQ(c.resends(), 1u);
}

TEST(CatchUpTest, AReportInBetweenThatIsCaughtUpStartsTheWatchAgain) {
  CatchUp c = Make();
  const int64_t t = kDirective;
  EXPECT_FALSE(c.OnReport("dev", true, t, kDirective));  // sent before the directive reached it
  EXPECT_FALSE(c.OnReport("dev", false, t + 1'000, kDirective));  // then it got it
  EXPECT_EQ(c.watched(), 0u);
  EXPECT_FALSE(c.OnReport("dev", true, t + 10'000, kDirective));  // behind again: a new watch
  EXPECT_EQ(c.resends(), 0u);
}

TEST(CatchUpTest, NothingForAChildThatIsCaughtUp) {
  CatchUp c = Make();
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(c.OnReport("dev", /*behind=*/false, kDirective + i * 60'000, kDirective));
  }
  EXPECT_EQ(c.resends(), 0u);
  EXPECT_EQ(c.watched(), 0u);
}

TEST(CatchUpTest, BacksOffAndStopsAfterMaxResends) {
  CatchUp c = Make();
  int64_t t = kDirective;
  EXPECT_FALSE(c.OnReport("dev", true, t, kDirective));
  t += 10'000;
  EXPECT_TRUE(c.OnReport("dev", true, t, kDirective));
  EXPECT_FALSE(c.OnReport("dev", true, t + 29'999, kDirective));  // first backoff: 30 s
  EXPECT_TRUE(c.OnReport("dev", true, t + 30'000, kDirective));
  EXPECT_FALSE(c.OnReport("dev", true, t + 30'000 + 59'999, kDirective));  // then 60 s
  EXPECT_TRUE(c.OnReport("dev", true, t + 90'000, kDirective));
  // Three resends: a device the campaign does not target costs its parent no more than that.
  EXPECT_FALSE(c.OnReport("dev", true, t + 10'000'000, kDirective));
  EXPECT_EQ(c.resends(), 3u);
}

TEST(CatchUpTest, ChildrenAreCountedApart) {
  CatchUp c = Make();
  EXPECT_FALSE(c.OnReport("a", true, kDirective, kDirective));
  EXPECT_FALSE(c.OnReport("b", true, kDirective + 5'000, kDirective));
  EXPECT_TRUE(c.OnReport("a", true, kDirective + 10'000, kDirective));
  EXPECT_FALSE(c.OnReport("b", true, kDirective + 10'000, kDirective));
  EXPECT_TRUE(c.OnReport("b", true, kDirective + 15'000, kDirective));
}

TEST(CatchUpTest, ANewDirectiveStartsTheCountAgain) {
  CatchUp c = Make();
  int64_t t = kDirective;
  EXPECT_FALSE(c.OnReport("dev", true, t, kDirective));
  for (int i = 1; i <= 3; ++i) {
    EXPECT_TRUE(c.OnReport("dev", true, t + i * 1'000'000, kDirective));
  }
  EXPECT_FALSE(c.OnReport("dev", true, t + 5'000'000, kDirective));
  const int64_t next = kDirective + 6'000'000;
  EXPECT_FALSE(c.OnReport("dev", true, next, next));
  EXPECT_TRUE(c.OnReport("dev", true, next + 10'000, next));
}

}  // namespace
}  // namespace x1368::core
