// Values from the wire are data (issue #14): the grammar of x1368/core/values.h, and logging
// that quotes and escapes every such value (x1368/core/log.h), checked on the lines a node
// really writes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "spdlog/sinks/ostream_sink.h"
#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/clock.h"
#include "x1368/core/envelope.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/log.h"
#include "x1368/core/node.h"
#include "x1368/core/reason.h"
#include "x1368/core/sequence.h"
#include "x1368/core/values.h"

namespace x1368::core {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::x1368::testing::HasReason;
using ::x1368::testing::TempDir;
using ::x1368::testing::TestNode;
using ::x1368::testing::TestPki;

constexpr char kForged[] = "2.5.0\nts=2099 level=critical node=root event=FORGED";

TEST(VersionTest, SemVerTwoIsAcceptedAndNothingElse) {
  for (const char* v :
       {"0.0.0", "1.0.0", "2.5.0", "10.20.30", "1.1.2-prerelease+meta", "1.0.0-alpha",
        "1.0.0-alpha.1", "1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0-alpha+001", "1.0.0+20130313144700",
        "1.0.0-rc.1+build.1", "1.0.0--", "1.0.0-a-b.c--d"}) {
    EXPECT_TRUE(IsValidVersion(v)) << v;
    EXPECT_OK(ValidateVersion(v));
  }
  for (const char* v :
       {"",          "1",      "1.2",    "1.2.3.4",  "v1.2.3",     "V1.2.3", "01.1.1",
        "1.01.1",    "1.1.01", "1.2.3-", "1.2.3-01", "1.2.3-a..b", "1.2.3+", "1.2.3+a..b",
        "1.2.3-a_b", "1.2.3 ", " 1.2.3", "1.2.3\n",  "1.2.-3",     "a.b.c",  "1.2.3+\xc3\xa9",
        kForged}) {
    EXPECT_FALSE(IsValidVersion(v)) << v;
  }
  EXPECT_TRUE(IsValidVersion(std::string(60, '1') + ".0.0"));  // 64 characters: the limit
  EXPECT_FALSE(IsValidVersion(std::string(61, '1') + ".0.0"));
  EXPECT_TRUE(IsValidVersion("1.0.0-" + std::string(58, 'a')));  // exactly 64
  EXPECT_FALSE(IsValidVersion("1.0.0-" + std::string(59, 'a')));
  // The error names the value, escaped: the message stays one line.
  absl::Status s = ValidateVersion(kForged);
  EXPECT_THAT(s.message(), HasSubstr("\"2.5.0\\nts=2099 level=critical node=root event=FORGED\""));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("\n")));
}

TEST(TextTest, ControlCharactersAndBrokenUtf8AreRefused) {
  EXPECT_OK(ValidateText("", "description"));
  EXPECT_OK(ValidateText("fixes the radio; \xe2\x80\x93 \xf0\x9f\x93\xa1", "description"));
  for (const std::string& bad :
       {std::string("a\nb"), std::string("a\tb"), std::string("a\rb"), std::string("a\x7f"),
        std::string("a\xc2\x85"), std::string("a\xe2\x80\xa8"), std::string("\xff"),
        std::string("\xc0\xaf"), std::string("\xed\xa0\x80"), std::string(1, '\0')}) {
    EXPECT_FALSE(ValidateText(bad, "description").ok()) << Quote(bad);
  }
  EXPECT_FALSE(ValidateText(std::string(1025, 'x'), "description").ok());
  EXPECT_OK(ValidateText(std::string(1024, 'x'), "description"));
}

TEST(QuoteTest, EveryValueBecomesOneLineOfPrintableText) {
  EXPECT_EQ(Quote(""), "\"\"");
  EXPECT_EQ(Quote("dev-1"), "\"dev-1\"");
  EXPECT_EQ(Quote("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
  EXPECT_EQ(Quote(kForged), "\"2.5.0\\nts=2099 level=critical node=root event=FORGED\"");
  EXPECT_EQ(Quote("a\r\tb"), "\"a\\r\\tb\"");
  EXPECT_EQ(Quote(std::string("\0\x1b[31m\x7f", 7)), "\"\\x00\\x1b[31m\\x7f\"");
  EXPECT_EQ(Quote("caf\xc3\xa9 \xe2\x9c\x93"), "\"caf\xc3\xa9 \xe2\x9c\x93\"");  // UTF-8 kept
  EXPECT_EQ(Quote("a\xc2\x85"
                  "b\xe2\x80\xa8"),
            "\"a\\u0085b\\u2028\"");
  EXPECT_EQ(Quote("\xff\xc3"), "\"\\xff\\xc3\"");  // not UTF-8
  std::string huge(5000, 'x');
  std::string q = Quote(huge);
  EXPECT_EQ(q, "\"" + std::string(kMaxQuotedBytes, 'x') + "...(5000 bytes)\"");
}

// A node logs a rejection whose detail carries a newline from the wire (a recipient that is
// not this node's id, as an attacker would sign it): the line comes out whole and escaped, and
// no forged line follows it.
TEST(LoggingTest, ARejectionDetailWithANewlineIsOneEscapedLine) {
  TempDir dir;
  TestPki pki(dir.path());
  TestNode gw = pki.Issue("gw1", v1::ROLE_INTERMEDIATE, {"dev-*"});
  FakeClock clock;
  NodeConfig config;
  config.node_id = "gw1";
  config.key_file = gw.key_path;
  config.cert_file = gw.cert_path;
  config.root_public_key_file = pki.root_pub_path();
  MemKvStore store;
  auto node = NodeContext::Create(config, &store, &clock);
  ASSERT_OK(node);

  // Root signs a go addressed to a recipient with a newline in it.
  MemKvStore root_store;
  auto seq = SeqCounter::Open(&root_store, "own_seq");
  ASSERT_OK(seq);
  EnvelopeSealer root(pki.root_id(), pki.root_key(), std::nullopt, seq->get(), &clock);
  v1::Body body;
  body.mutable_go()->set_campaign_id("c1");
  auto sealed = root.Seal(std::string("gw1\n") + "ts=2099 level=critical node=root event=FORGED",
                          body, 60'000);
  ASSERT_OK(sealed);
  absl::StatusOr<OpenedMessage> opened =
      (*node)->opener().Open(*sealed, OpenContext{Origin::kFromParent, "root", nullptr});
  ASSERT_THAT(opened, HasReason(v1::WRONG_RECIPIENT));
  ASSERT_THAT(std::string(opened.status().message()), HasSubstr("\n"))
      << "the test needs a detail that carries the raw newline";

  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  ASSERT_OK(InitLogging("gw1", "info", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured)));
  (*node)->CountRejection(opened.status(), "x1368/root/gw1/down/cmd");
  spdlog::default_logger()->flush();
  spdlog::set_default_logger(previous);

  std::string log = captured.str();
  std::vector<std::string> lines = absl::StrSplit(log, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 1u) << log;
  EXPECT_THAT(lines[0], HasSubstr("level=warning node=gw1 event=rejected "
                                  "where=\"x1368/root/gw1/down/cmd\" reason=WRONG_RECIPIENT "
                                  "detail=\"WRONG_RECIPIENT: addressed to \\\"gw1\\nts=2099 "
                                  "level=critical node=root event=FORGED\\\"\""))
      << log;
  EXPECT_EQ((*node)->metrics().Rejections(v1::WRONG_RECIPIENT), 1u);
}

}  // namespace
}  // namespace x1368::core
