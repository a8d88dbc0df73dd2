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

TEST(CatchUpTest, NothingWhileTheDirectiveIsStillOnItsWay) {
  CatchUp c = Make();
  EXPECT_FALSE(c.OnReport("dev", /*behind=*/true, kDirective + 9'999, kDirective));
  EXPECT_TRUE(c.OnReport("dev", true, kDirective + 10'000, kDirective));
  EXPECT_EQ(c.resends(), 1u);
}

TEST(CatchUpTest, NothingForAChildThatIsCaughtUp) {
  CatchUp c = Make();
  EXPECT_FALSE(c.OnReport("dev", /*behind=*/false, kDirective + 60'000, kDirective));
  EXPECT_EQ(c.resends(), 0u);
}

TEST(CatchUpTest, BacksOffAndStopsAfterMaxResends) {
  CatchUp c = Make();
  int64_t t = kDirective + 10'000;
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
  int64_t t = kDirective + 10'000;
  EXPECT_TRUE(c.OnReport("a", true, t, kDirective));
  EXPECT_TRUE(c.OnReport("b", true, t, kDirective));
  EXPECT_FALSE(c.OnReport("a", true, t + 1, kDirective));
}

TEST(CatchUpTest, ACaughtUpReportOrANewDirectiveStartsTheCountAgain) {
  CatchUp c = Make();
  int64_t t = kDirective + 10'000;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(c.OnReport("dev", true, t + i * 1'000'000, kDirective));
  EXPECT_FALSE(c.OnReport("dev", true, t + 5'000'000, kDirective));
  // A new campaign: the count is for the newest directive.
  const int64_t next = kDirective + 6'000'000;
  EXPECT_TRUE(c.OnReport("dev", true, next + 10'000, next));
  // Caught up, then behind again (lost the next go): resent again.
  EXPECT_FALSE(c.OnReport("dev", false, next + 20'000, next));
  EXPECT_TRUE(c.OnReport("dev", true, next + 21'000, next));
}

}  // namespace
}  // namespace x1368::core
