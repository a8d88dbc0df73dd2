// The topic tree of docs/architecture.md §4 (x1368/core/topics.h) and MQTT filter matching.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "testing/status_matchers.h"
#include "x1368/core/topics.h"
#include "x1368/core/transport.h"

namespace x1368::core {
namespace {

using ::x1368::testing::HasReason;

TEST(NodeIdTest, AcceptsAllowedCharacters) {
  EXPECT_TRUE(IsValidNodeId("a"));
  EXPECT_TRUE(IsValidNodeId("dev-001"));
  EXPECT_TRUE(IsValidNodeId("A.b_c-D9"));
  EXPECT_TRUE(IsValidNodeId("0123456789"));
  EXPECT_TRUE(IsValidNodeId("_"));
  EXPECT_TRUE(IsValidNodeId("_all_"));  // only "_all" itself is reserved
  EXPECT_TRUE(IsValidNodeId("all"));
  EXPECT_OK(ValidateNodeId("gw-1"));
}

TEST(NodeIdTest, LengthLimitIs64) {
  EXPECT_TRUE(IsValidNodeId(std::string(64, 'x')));
  EXPECT_FALSE(IsValidNodeId(std::string(65, 'x')));
  EXPECT_THAT(std::string(ValidateNodeId(std::string(65, 'x'), "node_id").message()),
              ::testing::HasSubstr("longer than 64"));
}

TEST(NodeIdTest, RejectsEmptyReservedAndForeignCharacters) {
  EXPECT_FALSE(IsValidNodeId(""));
  EXPECT_FALSE(IsValidNodeId("_all"));
  EXPECT_FALSE(IsValidNodeId("."));
  EXPECT_FALSE(IsValidNodeId(".."));
  EXPECT_TRUE(IsValidNodeId("..."));
  EXPECT_TRUE(IsValidNodeId(".a"));
  EXPECT_THAT(std::string(ValidateNodeId("..", "device id").message()),
              ::testing::HasSubstr("reserved"));
  EXPECT_FALSE(IsValidNodeId("a/b"));
  EXPECT_FALSE(IsValidNodeId("+"));
  EXPECT_FALSE(IsValidNodeId("#"));
  EXPECT_FALSE(IsValidNodeId("dev+1"));
  EXPECT_FALSE(IsValidNodeId("dev#"));
  EXPECT_FALSE(IsValidNodeId("a b"));
  EXPECT_FALSE(IsValidNodeId(" a"));
  EXPECT_FALSE(IsValidNodeId("a\n"));
  EXPECT_FALSE(IsValidNodeId(std::string("a\0b", 3)));
  EXPECT_FALSE(IsValidNodeId("d\xc3\xa9v"));  // "dév"
  EXPECT_FALSE(
      IsValidNodeId("\xe2\x80\x8b"
                    "a"));  // zero-width space
  EXPECT_FALSE(IsValidNodeId("$SYS"));

  EXPECT_THAT(std::string(ValidateNodeId("", "node_id").message()), ::testing::HasSubstr("empty"));
  EXPECT_THAT(std::string(ValidateNodeId("_all", "node_id").message()),
              ::testing::HasSubstr("reserved"));
  EXPECT_THAT(std::string(ValidateNodeId("a/b", "node_id").message()),
              ::testing::HasSubstr("node_id \"a/b\""));
}

TEST(TopicTest, ParsesEveryValidChannelAndDirection) {
  const std::vector<std::tuple<std::string, Direction, Channel>> cases = {
      {"down", Direction::kDown, Channel::kCmd},  {"down", Direction::kDown, Channel::kDesired},
      {"down", Direction::kDown, Channel::kFw},   {"up", Direction::kUp, Channel::kStatus},
      {"up", Direction::kUp, Channel::kPresence}, {"up", Direction::kUp, Channel::kFw},
  };
  for (const auto& [dir, direction, channel] : cases) {
    std::string text = "x1368/gw-1/dev-7/" + dir + "/" + std::string(ChannelName(channel));
    auto t = ParseTopic(text, "x1368");
    ASSERT_OK(t);
    EXPECT_EQ(t->prefix, "x1368") << text;
    EXPECT_EQ(t->parent, "gw-1") << text;
    EXPECT_EQ(t->child, "dev-7") << text;
    EXPECT_EQ(t->direction, direction) << text;
    EXPECT_EQ(t->channel, channel) << text;
    EXPECT_FALSE(t->broadcast()) << text;
    EXPECT_EQ(t->ToString(), text);
  }
}

TEST(TopicTest, ParsesBroadcastCommand) {
  auto t = ParseTopic("x1368/gw-1/_all/down/cmd", "x1368");
  ASSERT_OK(t);
  EXPECT_TRUE(t->broadcast());
  EXPECT_EQ(t->child, "_all");
  EXPECT_EQ(t->channel, Channel::kCmd);
}

TEST(TopicTest, HonoursCustomPrefix) {
  EXPECT_OK(ParseTopic("lab.fleet/p/c/up/status", "lab.fleet"));
  EXPECT_THAT(ParseTopic("x1368/p/c/up/status", "lab.fleet"), HasReason(v1::BAD_TOPIC));
}

TEST(TopicTest, RejectsWrongPrefix) {
  EXPECT_THAT(ParseTopic("other/p/c/down/cmd", "x1368"), HasReason(v1::BAD_TOPIC));
  EXPECT_THAT(ParseTopic("X1368/p/c/down/cmd", "x1368"), HasReason(v1::BAD_TOPIC));
  EXPECT_THAT(ParseTopic("/p/c/down/cmd", "x1368"), HasReason(v1::BAD_TOPIC));
}

TEST(TopicTest, RejectsWrongLevelCount) {
  for (const char* t : {"", "x1368", "x1368/p/c/down", "x1368/p/c/down/cmd/extra",
                        "x1368/p/c/down/cmd/", "x1368/p/down/cmd", "/x1368/p/c/down/cmd"}) {
    EXPECT_THAT(ParseTopic(t, "x1368"), HasReason(v1::BAD_TOPIC)) << t;
  }
}

TEST(TopicTest, RejectsWildcards) {
  for (const char* t :
       {"x1368/+/c/down/cmd", "x1368/p/+/down/cmd", "x1368/p/c/+/cmd", "x1368/p/c/down/+",
        "x1368/p/c/down/#", "x1368/#/c/up/status", "x1368/p/c#/up/status", "+/p/c/down/cmd"}) {
    EXPECT_THAT(ParseTopic(t, "x1368"), HasReason(v1::BAD_TOPIC)) << t;
  }
}

TEST(TopicTest, RejectsChannelOfTheOtherDirection) {
  for (const char* t : {"x1368/p/c/down/status", "x1368/p/c/down/presence", "x1368/p/c/up/cmd",
                        "x1368/p/c/up/desired", "x1368/p/c/down/unknown", "x1368/p/c/sideways/cmd",
                        "x1368/p/c/DOWN/cmd", "x1368/p/c/down/CMD"}) {
    EXPECT_THAT(ParseTopic(t, "x1368"), HasReason(v1::BAD_TOPIC)) << t;
  }
}

TEST(TopicTest, AllIsOnlyValidOnDownCmd) {
  for (const char* t : {"x1368/p/_all/down/desired", "x1368/p/_all/down/fw", "x1368/p/_all/up/cmd",
                        "x1368/p/_all/up/status", "x1368/p/_all/up/presence", "x1368/p/_all/up/fw",
                        "x1368/p/_all/down/status"}) {
    EXPECT_THAT(ParseTopic(t, "x1368"), HasReason(v1::BAD_TOPIC)) << t;
  }
  // "_all" is never a parent.
  EXPECT_THAT(ParseTopic("x1368/_all/c/down/cmd", "x1368"), HasReason(v1::BAD_TOPIC));
}

TEST(TopicTest, RejectsInvalidIds) {
  for (const char* t : {"x1368//c/down/cmd", "x1368/p//down/cmd", "x1368/p q/c/down/cmd",
                        "x1368/p/c\xc3\xa9/down/cmd", "x1368/p/c*/up/status"}) {
    EXPECT_THAT(ParseTopic(t, "x1368"), HasReason(v1::BAD_TOPIC)) << t;
  }
  std::string long_child = "x1368/p/" + std::string(65, 'c') + "/up/status";
  EXPECT_THAT(ParseTopic(long_child, "x1368"), HasReason(v1::BAD_TOPIC));
  std::string max_child = "x1368/p/" + std::string(64, 'c') + "/up/status";
  EXPECT_OK(ParseTopic(max_child, "x1368"));
}

TEST(TopicTest, BuildersRoundTripThroughParse) {
  for (Channel c : {Channel::kCmd, Channel::kDesired, Channel::kFw}) {
    std::string s = DownTopic("x1368", "gw-1", "dev.2", c);
    auto t = ParseTopic(s, "x1368");
    ASSERT_OK(t);
    EXPECT_EQ(t->direction, Direction::kDown);
    EXPECT_EQ(t->channel, c);
    EXPECT_EQ(t->parent, "gw-1");
    EXPECT_EQ(t->child, "dev.2");
    EXPECT_EQ(t->ToString(), s);
  }
  for (Channel c : {Channel::kStatus, Channel::kPresence, Channel::kFw}) {
    std::string s = UpTopic("x1368", "gw-1", "dev.2", c);
    auto t = ParseTopic(s, "x1368");
    ASSERT_OK(t);
    EXPECT_EQ(t->direction, Direction::kUp);
    EXPECT_EQ(t->channel, c);
    EXPECT_EQ(t->ToString(), s);
  }
  auto all = ParseTopic(DownTopic("x1368", "gw-1", kAllChildren, Channel::kCmd), "x1368");
  ASSERT_OK(all);
  EXPECT_TRUE(all->broadcast());
}

TEST(TopicTest, SubscriptionFiltersMatchTheirTopics) {
  std::string child = ChildDownFilter("x1368", "gw", "dev");
  EXPECT_EQ(child, "x1368/gw/dev/down/#");
  EXPECT_TRUE(TopicMatchesFilter(child, DownTopic("x1368", "gw", "dev", Channel::kCmd)));
  EXPECT_TRUE(TopicMatchesFilter(child, DownTopic("x1368", "gw", "dev", Channel::kDesired)));
  EXPECT_FALSE(TopicMatchesFilter(child, DownTopic("x1368", "gw", "dev2", Channel::kCmd)));
  EXPECT_FALSE(TopicMatchesFilter(child, UpTopic("x1368", "gw", "dev", Channel::kStatus)));

  std::string all = BroadcastDownFilter("x1368", "gw");
  EXPECT_TRUE(TopicMatchesFilter(all, "x1368/gw/_all/down/cmd"));
  EXPECT_FALSE(TopicMatchesFilter(all, "x1368/gw/dev/down/cmd"));

  std::string up = ParentUpFilter("x1368", "gw");
  EXPECT_EQ(up, "x1368/gw/+/up/#");
  EXPECT_TRUE(TopicMatchesFilter(up, UpTopic("x1368", "gw", "a", Channel::kStatus)));
  EXPECT_TRUE(TopicMatchesFilter(up, UpTopic("x1368", "gw", "b", Channel::kPresence)));
  EXPECT_FALSE(TopicMatchesFilter(up, UpTopic("x1368", "other", "a", Channel::kStatus)));
  EXPECT_FALSE(TopicMatchesFilter(up, DownTopic("x1368", "gw", "a", Channel::kCmd)));
}

TEST(TopicFilterTest, ExactMatch) {
  EXPECT_TRUE(TopicMatchesFilter("a/b/c", "a/b/c"));
  EXPECT_FALSE(TopicMatchesFilter("a/b/c", "a/b/d"));
  EXPECT_FALSE(TopicMatchesFilter("a/b/c", "a/b"));
  EXPECT_FALSE(TopicMatchesFilter("a/b", "a/b/c"));
}

TEST(TopicFilterTest, PlusMatchesExactlyOneLevel) {
  EXPECT_TRUE(TopicMatchesFilter("a/+/c", "a/b/c"));
  EXPECT_TRUE(TopicMatchesFilter("a/+/c", "a/xyz/c"));
  EXPECT_TRUE(TopicMatchesFilter("+/+/+", "a/b/c"));
  EXPECT_TRUE(TopicMatchesFilter("a/+", "a/b"));
  EXPECT_FALSE(TopicMatchesFilter("a/+/c", "a/b/x/c"));
  EXPECT_FALSE(TopicMatchesFilter("a/+/c", "a/c"));
  EXPECT_FALSE(TopicMatchesFilter("a/+", "a/b/c"));
  EXPECT_FALSE(TopicMatchesFilter("a/+/c", "a/b/d"));
}

TEST(TopicFilterTest, HashMatchesRemainingLevels) {
  EXPECT_TRUE(TopicMatchesFilter("#", "a"));
  EXPECT_TRUE(TopicMatchesFilter("#", "a/b/c"));
  EXPECT_TRUE(TopicMatchesFilter("a/#", "a/b"));
  EXPECT_TRUE(TopicMatchesFilter("a/#", "a/b/c/d"));
  EXPECT_TRUE(TopicMatchesFilter("a/#", "a"));  // MQTT: "#" also matches the parent level
  EXPECT_TRUE(TopicMatchesFilter("a/+/#", "a/b/c"));
  EXPECT_FALSE(TopicMatchesFilter("a/#", "b/c"));
  EXPECT_FALSE(TopicMatchesFilter("a/b/#", "a/c/d"));
}

}  // namespace
}  // namespace x1368::core
