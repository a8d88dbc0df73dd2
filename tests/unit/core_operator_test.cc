// What an operator sees of a node (issue #16): log lines in the json format (one JSON object per
// line, every key=value a member, values escaped), the throttle that keeps recurring problems
// audible without flooding, /healthz and /readyz with their reasons, and listener ports that a
// second server cannot share.
#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "spdlog/sinks/ostream_sink.h"
#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/file_system.h"
#include "x1368/core/health.h"
#include "x1368/core/http.h"
#include "x1368/core/http_client.h"
#include "x1368/core/log.h"

namespace x1368::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// `line` parsed as a JSON object (a parse error is a test failure).
google::protobuf::Struct ParseJson(const std::string& line) {
  google::protobuf::Struct out;
  auto s = google::protobuf::util::JsonStringToMessage(line, &out);
  EXPECT_TRUE(s.ok()) << s.ToString() << "\n" << line;
  return out;
}

std::string StringField(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end()) return "<missing>";
  return it->second.string_value();
}

TEST(JsonLogLineTest, EveryKeyValueIsAMemberWithItsType) {
  std::string line = core::JsonLogLine(
      "2026-11-25T15:22:47.123Z", "warning", "gw1",
      "event=mqtt.connect_failed broker=\"tcp://127.0.0.1:1\" failures=3 ratio=0.5 ok=false "
      "state=DOWNLOADING big=123456789012345678901");
  google::protobuf::Struct j = ParseJson(line);
  EXPECT_EQ(StringField(j, "ts"), "2026-11-25T15:22:47.123Z");
  EXPECT_EQ(StringField(j, "level"), "warning");
  EXPECT_EQ(StringField(j, "node"), "gw1");
  EXPECT_EQ(StringField(j, "event"), "mqtt.connect_failed");
  EXPECT_EQ(StringField(j, "broker"), "tcp://127.0.0.1:1");
  EXPECT_EQ(j.fields().at("failures").number_value(), 3);
  EXPECT_EQ(j.fields().at("ratio").number_value(), 0.5);
  EXPECT_FALSE(j.fields().at("ok").bool_value());
  EXPECT_EQ(j.fields().at("ok").kind_case(), google::protobuf::Value::kBoolValue);
  EXPECT_EQ(StringField(j, "state"), "DOWNLOADING");
  // Too long to be exact as a JSON number in every reader: a string.
  EXPECT_EQ(StringField(j, "big"), "123456789012345678901");
  // The members in the order of the line.
  EXPECT_THAT(line, HasSubstr("{\"ts\":\"2026-11-25T15:22:47.123Z\",\"level\":\"warning\","
                              "\"node\":\"gw1\",\"event\":\"mqtt.connect_failed\","));
}

TEST(JsonLogLineTest, QuotedValuesAreDataAndStayOneLine) {
  // What Quote() makes of hostile values: quotes, backslashes, newlines, control characters,
  // bytes that are not UTF-8, and a line separator.
  const std::string hostile =
      std::string("a\"b\\c\nts=2099 level=critical\x01\x7f") + "\xff" + "\xe2\x80\xa8" + "é";
  std::string message =
      absl::StrCat("event=rejected detail=", core::Quote(hostile), " where=", core::Quote("x y"));
  std::string line = core::JsonLogLine("t", "info", "gw1", message);
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  google::protobuf::Struct j = ParseJson(line);
  EXPECT_EQ(StringField(j, "detail"), std::string("a\"b\\c\nts=2099 level=critical\x01\x7f") +
                                          "\\xff" + "\xe2\x80\xa8" + "é");
  EXPECT_EQ(StringField(j, "where"), "x y");
  EXPECT_EQ(StringField(j, "level"), "info");  // not forged by the value
  EXPECT_EQ(j.fields().size(), 6u) << line;
}

TEST(JsonLogLineTest, TakenKeysGetAnUnderscoreAndOtherTextGoesToMsg) {
  std::string line = core::JsonLogLine(
      "t", "warning", "root",
      "event=child.refuses_parent node=\"gw1\" level=x ts=1 node=\"gw2\" loose words \"q\"");
  google::protobuf::Struct j = ParseJson(line);
  EXPECT_EQ(StringField(j, "node"), "root");
  EXPECT_EQ(StringField(j, "node_"), "gw1");
  EXPECT_EQ(StringField(j, "node__"), "gw2");
  EXPECT_EQ(StringField(j, "level"), "warning");
  EXPECT_EQ(StringField(j, "level_"), "x");
  EXPECT_EQ(j.fields().at("ts_").number_value(), 1);
  EXPECT_EQ(StringField(j, "msg"), "loose words \"q\"");
}

TEST(InitLoggingTest, TheJsonFormatWritesOneObjectPerLine) {
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  ASSERT_OK(core::InitLogging("dev-1", "info",
                              std::make_shared<spdlog::sinks::ostream_sink_mt>(captured), "json"));
  spdlog::info("event=update.state state=DOWNLOADING campaign={}", core::Quoted("c\n1"));
  spdlog::warn("event=mqtt.connection_lost broker={}", core::Quoted("tcp://b:1883"));
  spdlog::debug("event=not.written");
  spdlog::default_logger()->flush();
  spdlog::set_default_logger(previous);

  std::vector<std::string> lines = absl::StrSplit(captured.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << captured.str();
  google::protobuf::Struct first = ParseJson(lines[0]);
  EXPECT_EQ(StringField(first, "node"), "dev-1");
  EXPECT_EQ(StringField(first, "level"), "info");
  EXPECT_EQ(StringField(first, "event"), "update.state");
  EXPECT_EQ(StringField(first, "campaign"), "c\n1");
  EXPECT_THAT(StringField(first, "ts"),
              ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                                      "\\.[0-9]{3}Z"));
  google::protobuf::Struct second = ParseJson(lines[1]);
  EXPECT_EQ(StringField(second, "level"), "warning");
  EXPECT_EQ(StringField(second, "broker"), "tcp://b:1883");
}

TEST(InitLoggingTest, AnUnknownFormatIsRefused) {
  EXPECT_FALSE(core::InitLogging("n", "warn", "xml").ok());
  EXPECT_TRUE(core::IsValidLogFormat("logfmt"));
  EXPECT_TRUE(core::IsValidLogFormat("json"));
  EXPECT_FALSE(core::IsValidLogFormat("JSON"));
}

TEST(LogThrottleTest, TheFirstAtOnceThenOneAPeriodWithTheCountLeftOut) {
  core::LogThrottle t(absl::Minutes(1));
  absl::Time now = absl::FromUnixSeconds(1000);
  uint64_t skipped = 99;
  EXPECT_TRUE(t.Allow(&skipped, now));
  EXPECT_EQ(skipped, 0u);
  EXPECT_FALSE(t.Allow(&skipped, now + absl::Seconds(1)));
  EXPECT_FALSE(t.Allow(&skipped, now + absl::Seconds(59)));
  EXPECT_TRUE(t.Allow(&skipped, now + absl::Seconds(60)));
  EXPECT_EQ(skipped, 2u);
  EXPECT_FALSE(t.Allow(&skipped, now + absl::Seconds(61)));
  t.Reset();
  EXPECT_TRUE(t.Allow(&skipped, now + absl::Seconds(62)));
  EXPECT_EQ(skipped, 0u);
}

// A link that is up or down as the test says.
class StubLink final : public core::Transport {
 public:
  explicit StubLink(bool up) : up_(up) { opts_.broker_uri = "tcp://broker.test:1883"; }
  void SetMessageHandler(MessageHandler) override {}
  void SetConnectHandler(ConnectHandler) override {}
  void SetWillProvider(WillProvider) override {}
  void AddSubscription(const std::string&) override {}
  absl::Status Start() override { return absl::OkStatus(); }
  absl::Status Publish(core::MqttMessage) override { return absl::OkStatus(); }
  void Stop() override {}
  bool connected() const override { return up_; }
  core::TransportStats stats() const override { return {}; }
  const core::TransportOptions& options() const override { return opts_; }

 private:
  bool up_;
  core::TransportOptions opts_;
};

TEST(ReadinessTest, LinksDownAndAStoreThatTakesNoFileAreReasons) {
  TempDir dir;
  StubLink up(true), down(false);
  core::FileSystem* fs = core::PosixFileSystem();
  EXPECT_THAT(core::NotReadyReasons({{"upstream", &up}, {"downstream", nullptr}}, fs, dir.path()),
              ElementsAre());
  EXPECT_THAT(core::NotReadyReasons({{"upstream", &down}, {"downstream", &up}}, fs, dir.path()),
              ElementsAre("upstream link down (broker tcp://broker.test:1883)"));
  // The probe leaves nothing behind.
  EXPECT_THAT(*fs->List(dir.path()), ElementsAre());
  // A data_dir that cannot take a file (here: it is not a directory).
  ASSERT_OK(fs->WriteAtomic(dir.File("file"), "x"));
  std::vector<std::string> reasons = core::NotReadyReasons({}, fs, dir.File("file"));
  ASSERT_EQ(reasons.size(), 1u);
  EXPECT_THAT(reasons[0], HasSubstr("store not writable"));

  core::HttpResponse ready = core::ReadyzResponse({});
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.content_type, "application/json");
  EXPECT_EQ(ready.body, "{\"ready\":true,\"reasons\":[]}\n");
  core::HttpResponse not_ready = core::ReadyzResponse({"upstream link down", "a \"quoted\" one"});
  EXPECT_EQ(not_ready.status, 503);
  google::protobuf::Struct j = ParseJson(not_ready.body);
  EXPECT_FALSE(j.fields().at("ready").bool_value());
  ASSERT_EQ(j.fields().at("reasons").list_value().values_size(), 2);
  EXPECT_EQ(j.fields().at("reasons").list_value().values(1).string_value(), "a \"quoted\" one");
}

TEST(ReadinessTest, HealthzAndReadyzAreServed) {
  bool ready = false;
  core::HttpServer server;
  core::AddHealthRoutes(&server, [&ready]() -> std::vector<std::string> {
    if (ready) return {};
    return {"upstream link down"};
  });
  auto port = server.Start("127.0.0.1:0");
  ASSERT_OK(port);
  core::HttpClient http(absl::StrCat("http://127.0.0.1:", *port), "");
  auto health = http.Get("/healthz");
  ASSERT_OK(health);
  EXPECT_EQ(health->status, 200);
  auto r = http.Get("/readyz");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "{\"ready\":false,\"reasons\":[\"upstream link down\"]}\n");
  ready = true;
  r = http.Get("/readyz");
  ASSERT_OK(r);
  EXPECT_EQ(r->status, 200);
  server.Stop();
}

TEST(ExclusivePortTest, ASecondServerOnAPortInUseFailsNamingIt) {
  core::HttpServer first;
  first.Get("/who", [](const core::HttpRequest&) { return core::HttpResponse{200, "", "first"}; });
  auto port = first.Start("127.0.0.1:0");
  ASSERT_OK(port);
  const std::string listen = absl::StrCat("127.0.0.1:", *port);

  core::HttpServer second;
  second.Get("/who", [](const core::HttpRequest&) {
    return core::HttpResponse{200, "", "second"};
  });
  auto taken = second.Start(listen);
  ASSERT_FALSE(taken.ok()) << "a second server bound " << listen;
  EXPECT_THAT(std::string(taken.status().message()), HasSubstr(listen));
  EXPECT_THAT(std::string(taken.status().message()), HasSubstr("already in use"));

  // What a daemon checks before it connects to its broker says the same.
  absl::Status check = core::CheckListenFree(listen);
  EXPECT_EQ(check.code(), absl::StatusCode::kUnavailable) << check;
  EXPECT_THAT(std::string(check.message()), HasSubstr("already in use"));
  EXPECT_OK(core::CheckListenFree("127.0.0.1:0"));

  // Every request still reaches the first server.
  core::HttpClient http("http://" + listen, "");
  for (int i = 0; i < 10; ++i) {
    auto r = http.Get("/who");
    ASSERT_OK(r);
    EXPECT_EQ(r->body, "first");
  }
  first.Stop();
  // Once it is gone the port is free again at once (SO_REUSEADDR: no wait for TIME_WAIT).
  EXPECT_OK(core::CheckListenFree(listen));
  core::HttpServer third;
  EXPECT_OK(third.Start(listen).status());
  third.Stop();
}

}  // namespace
}  // namespace x1368::testing
