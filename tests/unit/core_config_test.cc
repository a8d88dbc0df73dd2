// TOML configuration errors that name the file, the line and the key (x1368/core/config.h), and
// the common node / link keys read through it (x1368/core/node.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "x1368/core/config.h"
#include "x1368/core/file_util.h"
#include "x1368/core/node.h"
#include "x1368/core/node_config.h"

namespace x1368::core {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::TempDir;

ConfigFile MustParse(absl::string_view text, std::string base_dir = "/etc/x1368") {
  auto cfg = ConfigFile::Parse(text, "cfg.toml", std::move(base_dir));
  EXPECT_TRUE(cfg.ok()) << cfg.status();
  return *std::move(cfg);
}

std::string FinishMessage(ConfigFile& cfg) {
  absl::Status s = cfg.Finish();
  EXPECT_FALSE(s.ok()) << "expected configuration errors";
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  return std::string(s.message());
}

TEST(ConfigTest, SyntaxErrorNamesFileLineAndColumn) {
  auto cfg = ConfigFile::Parse("a = 1\nb = \"ok\"\nc = = 3\n", "cfg.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_EQ(cfg.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cfg.status().message()),
              ::testing::MatchesRegex("cfg\\.toml:3:[0-9]+: .*"));
}

TEST(ConfigTest, UnterminatedStringIsASyntaxError) {
  auto cfg = ConfigFile::Parse("\n\nname = \"open\n", "node.toml");
  ASSERT_FALSE(cfg.ok());
  EXPECT_THAT(std::string(cfg.status().message()), HasSubstr("node.toml:3:"));
}

TEST(ConfigTest, ReadsTypedValues) {
  ConfigFile cfg = MustParse(
      "name = \"gw-1\"\n"
      "count = 7\n"
      "flag = true\n"
      "list = [\"a\", \"b\"]\n"
      "[upstream]\n"
      "broker = \"tcp://127.0.0.1:1883\"\n");
  EXPECT_TRUE(cfg.Has("name"));
  EXPECT_TRUE(cfg.Has("upstream.broker"));
  EXPECT_FALSE(cfg.Has("upstream.nothing"));
  EXPECT_EQ(cfg.String("name"), "gw-1");
  EXPECT_EQ(cfg.Int("count", std::nullopt, 0, 10), 7);
  EXPECT_TRUE(cfg.Bool("flag", false));
  EXPECT_THAT(cfg.StringList("list"), ::testing::ElementsAre("a", "b"));
  EXPECT_EQ(cfg.String("upstream.broker"), "tcp://127.0.0.1:1883");
  EXPECT_OK(cfg.Finish());
}

TEST(ConfigTest, FallbacksForMissingOptionalKeys) {
  ConfigFile cfg = MustParse("");
  EXPECT_EQ(cfg.String("s", "dflt"), "dflt");
  EXPECT_EQ(cfg.Int("i", 5, 0, 10), 5);
  EXPECT_FALSE(cfg.Bool("b", false));
  EXPECT_TRUE(cfg.StringList("l").empty());
  EXPECT_OK(cfg.Finish());
}

TEST(ConfigTest, WrongTypeNamesFileLineAndKey) {
  ConfigFile cfg = MustParse("\nnode_id = 5\ncount = \"seven\"\nflag = 1\nlist = [1, 2]\n");
  cfg.String("node_id");
  cfg.Int("count", 1, 0, 10);
  cfg.Bool("flag", false);
  cfg.StringList("list");
  std::string msg = FinishMessage(cfg);
  EXPECT_THAT(msg, HasSubstr("cfg.toml:2: key 'node_id': expected a string"));
  EXPECT_THAT(msg, HasSubstr("cfg.toml:3: key 'count': expected an integer"));
  EXPECT_THAT(msg, HasSubstr("cfg.toml:4: key 'flag': expected true or false"));
  EXPECT_THAT(msg, HasSubstr("cfg.toml:5: key 'list': expected an array of strings"));
}

TEST(ConfigTest, MissingRequiredKey) {
  ConfigFile cfg = MustParse("other = 1\n");
  cfg.Int("other", 0, 0, 10);
  EXPECT_EQ(cfg.String("node_id"), "");
  cfg.Int("port", std::nullopt, 1, 65535);
  std::string msg = FinishMessage(cfg);
  EXPECT_THAT(msg, HasSubstr("key 'node_id': missing (required)"));
  EXPECT_THAT(msg, HasSubstr("key 'port': missing (required)"));
}

TEST(ConfigTest, IntOutsideRange) {
  ConfigFile cfg = MustParse("a = 1\nport = 70000\nneg = -1\n");
  cfg.Int("a", std::nullopt, 0, 10);
  EXPECT_EQ(cfg.Int("port", 1883, 1, 65535), 1883);  // the fallback, plus an error
  cfg.Int("neg", std::nullopt, 0, 10);
  std::string msg = FinishMessage(cfg);
  EXPECT_THAT(msg, HasSubstr("cfg.toml:2: key 'port': 70000 is outside [1, 65535]"));
  EXPECT_THAT(msg, HasSubstr("cfg.toml:3: key 'neg': -1 is outside [0, 10]"));
  EXPECT_THAT(msg, Not(HasSubstr("'a'")));
}

TEST(ConfigTest, UnknownKeyIsReportedWithItsLine) {
  ConfigFile cfg = MustParse(
      "node_id = \"gw\"\n"
      "key = \"gw.key\"\n"
      "\n"
      "# the next key is a typo for upstream\n"
      "uplink = \"tcp://h:1\"\n");
  cfg.String("node_id");
  cfg.Path("key");
  std::string msg = FinishMessage(cfg);
  EXPECT_THAT(msg, HasSubstr("cfg.toml:5: unknown key 'uplink'"));
  EXPECT_THAT(msg, Not(HasSubstr("'node_id'")));
}

TEST(ConfigTest, UnknownNestedKeyNamesItsFullPath) {
  ConfigFile cfg = MustParse(
      "[upstream]\n"
      "broker = \"tcp://h:1\"\n"
      "brokr = \"tcp://h:2\"\n");
  cfg.String("upstream.broker");
  std::string msg = FinishMessage(cfg);
  EXPECT_THAT(msg, HasSubstr("cfg.toml:3: unknown key 'upstream.brokr'"));
  EXPECT_THAT(msg, Not(HasSubstr("'upstream.broker'")));
}

TEST(ConfigTest, ErrorsAreListedInFileOrder) {
  ConfigFile cfg = MustParse("a = \"x\"\nb = \"y\"\nc = 3\n");
  cfg.Int("c", 0, 0, 1);  // line 3
  cfg.Int("a", 0, 0, 1);  // line 1
  // b (line 2) is unknown
  std::string msg = FinishMessage(cfg);
  size_t p1 = msg.find("cfg.toml:1:"), p2 = msg.find("cfg.toml:2:"), p3 = msg.find("cfg.toml:3:");
  ASSERT_NE(p1, std::string::npos) << msg;
  ASSERT_NE(p2, std::string::npos) << msg;
  ASSERT_NE(p3, std::string::npos) << msg;
  EXPECT_LT(p1, p2);
  EXPECT_LT(p2, p3);
}

TEST(ConfigTest, FailRecordsAnErrorAgainstTheKeysLine) {
  ConfigFile cfg = MustParse("x = 1\n[t]\ny = \"v\"\n");
  cfg.Int("x", 0, 0, 10);
  cfg.String("t.y");
  cfg.Fail("t.y", "not acceptable");
  EXPECT_THAT(FinishMessage(cfg), HasSubstr("cfg.toml:3: key 't.y': not acceptable"));
}

TEST(ConfigTest, PathResolvesAgainstBaseDir) {
  ConfigFile cfg = MustParse(
      "rel = \"keys/node.key\"\n"
      "abs = \"/var/lib/x1368/node.key\"\n",
      "/etc/x1368");
  EXPECT_EQ(cfg.Path("rel"), "/etc/x1368/keys/node.key");
  EXPECT_EQ(cfg.Path("abs"), "/var/lib/x1368/node.key");
  EXPECT_EQ(cfg.Path("missing", ""), "");
  EXPECT_OK(cfg.Finish());
}

TEST(ConfigTest, LoadUsesTheFilesDirectory) {
  testing::TempDir dir;
  ASSERT_OK(WriteFileAtomic(dir.File("node.toml"), "key = \"node.key\"\n"));
  auto cfg = ConfigFile::Load(dir.File("node.toml"));
  ASSERT_OK(cfg);
  EXPECT_EQ(cfg->name(), dir.File("node.toml"));
  EXPECT_EQ(cfg->Path("key"), dir.File("node.key"));
  EXPECT_FALSE(ConfigFile::Load(dir.File("missing.toml")).ok());
}

// --- ReadNodeConfig / ReadLinkConfig ------------------------------------------------------

constexpr char kValidNode[] =
    "node_id = \"gw-1\"\n"
    "key = \"gw-1.key\"\n"
    "cert = \"gw-1.cert\"\n"
    "data_dir = \"data\"\n"
    "[root]\n"
    "id = \"root\"\n"
    "public_key = \"/pki/root.pub\"\n"
    "[limits]\n"
    "max_message_bytes = 4096\n"
    "clock_skew_s = 10\n"
    "message_ttl_s = 60\n"
    "[log]\n"
    "level = \"info\"\n";

TEST(NodeConfigTest, ReadsAValidConfig) {
  ConfigFile cfg = MustParse(kValidNode, "/etc/x1368");
  NodeConfig c = ReadNodeConfig(cfg, /*needs_cert=*/true);
  EXPECT_OK(cfg.Finish());
  EXPECT_EQ(c.node_id, "gw-1");
  EXPECT_EQ(c.topic_prefix, "x1368");
  EXPECT_EQ(c.key_file, "/etc/x1368/gw-1.key");
  EXPECT_EQ(c.cert_file, "/etc/x1368/gw-1.cert");
  EXPECT_EQ(c.data_dir, "/etc/x1368/data");
  EXPECT_EQ(c.root_id, "root");
  EXPECT_EQ(c.root_public_key_file, "/pki/root.pub");
  EXPECT_EQ(c.limits.max_message_bytes, 4096u);
  EXPECT_EQ(c.limits.max_clock_skew_ms, 10'000);
  EXPECT_EQ(c.message_ttl_ms, 60'000);
  EXPECT_EQ(c.log_level, "info");
}

TEST(NodeConfigTest, InvalidNodeIdCharacters) {
  std::string text = kValidNode;
  text.replace(text.find("\"gw-1\""), 6, "\"gw/1\"");
  ConfigFile cfg = MustParse(text);
  ReadNodeConfig(cfg, true);
  std::string msg = FinishMessage(cfg);
  EXPECT_THAT(msg, HasSubstr("cfg.toml:1: key 'node_id'"));
  EXPECT_THAT(msg, HasSubstr("A-Za-z0-9._-"));
}

TEST(NodeConfigTest, ReservedNodeId) {
  std::string text = kValidNode;
  text.replace(text.find("\"gw-1\""), 6, "\"_all\"");
  ConfigFile cfg = MustParse(text);
  ReadNodeConfig(cfg, true);
  EXPECT_THAT(FinishMessage(cfg), HasSubstr("cfg.toml:1: key 'node_id'"));
}

TEST(NodeConfigTest, BadLogLevel) {
  std::string text = kValidNode;
  text.replace(text.find("\"info\""), 6, "\"loud\"");
  ConfigFile cfg = MustParse(text);
  ReadNodeConfig(cfg, true);
  EXPECT_THAT(FinishMessage(cfg), HasSubstr("cfg.toml:13: key 'log.level'"));
}

TEST(NodeConfigTest, MissingCertWhenNeeded) {
  std::string text = kValidNode;
  text.erase(text.find("cert = "), std::string("cert = \"gw-1.cert\"\n").size());
  {
    ConfigFile cfg = MustParse(text);
    ReadNodeConfig(cfg, /*needs_cert=*/true);
    EXPECT_THAT(FinishMessage(cfg), HasSubstr("key 'cert': missing (required)"));
  }
  ConfigFile root_cfg = MustParse(text);
  ReadNodeConfig(root_cfg, /*needs_cert=*/false);
  EXPECT_OK(root_cfg.Finish());
}

TEST(NodeConfigTest, LimitOutOfRange) {
  std::string text = kValidNode;
  text.replace(text.find("4096"), 4, "10");
  ConfigFile cfg = MustParse(text);
  ReadNodeConfig(cfg, true);
  EXPECT_THAT(FinishMessage(cfg), HasSubstr("cfg.toml:9: key 'limits.max_message_bytes'"));
}

TEST(NodeConfigTest, EmptyIdsAreErrorsNamingTheirKeyAndLine) {
  // An empty id once passed: the daemons then ran on topics with an empty level (issue #14).
  std::string text = kValidNode;
  text.replace(text.find("\"gw-1\""), 6, "\"\"");
  text.replace(text.find("id = \"root\""), 11, "id = \"\"");
  text = "parent_id = \"\"\n" + text;
  ConfigFile cfg = MustParse(text);
  ReadNodeConfig(cfg, true);
  ReadId(cfg, "parent_id");
  std::string msg = FinishMessage(cfg);
  EXPECT_THAT(msg, HasSubstr("cfg.toml:1: key 'parent_id': the id is empty"));
  EXPECT_THAT(msg, HasSubstr("cfg.toml:2: key 'node_id': the id is empty"));
  EXPECT_THAT(msg, HasSubstr("cfg.toml:7: key 'root.id': the id is empty"));
}

TEST(NodeConfigTest, ReadIdReportsAMissingKeyOnce) {
  ConfigFile cfg = MustParse("");
  EXPECT_EQ(ReadId(cfg, "parent_id"), "");
  std::string msg = FinishMessage(cfg);
  EXPECT_EQ(msg, "cfg.toml: key 'parent_id': missing (required)");
  ConfigFile with_fallback = MustParse("");
  EXPECT_EQ(ReadId(with_fallback, "root.id", "root"), "root");
  EXPECT_OK(with_fallback.Finish());
}

// CheckNodeFiles opens what the keys name; every problem is reported against its key's line.
class NodeFilesTest : public ::testing::Test {
 protected:
  NodeFilesTest()
      : pki_(dir_.path()),
        gw_(pki_.Issue("gw-1", v1::ROLE_INTERMEDIATE, {"dev-*"})),
        other_(pki_.Issue("gw-2", v1::ROLE_INTERMEDIATE, {"dev-*"})) {}
  // kValidNode, with `dir_` as the base directory and the real root public key.
  std::string Text() const {
    std::string text = kValidNode;
    text.replace(text.find("/pki/root.pub"), 13, pki_.root_pub_path());
    return text;
  }
  std::string Check(const std::string& text) {
    ConfigFile cfg = MustParse(text, dir_.path());
    NodeConfig c = ReadNodeConfig(cfg, /*needs_cert=*/true);
    CheckNodeFiles(cfg, c, RealClock::Get());
    absl::Status s = cfg.Finish();
    return s.ok() ? "OK" : std::string(s.message());
  }

  TempDir dir_;
  testing::TestPki pki_;
  testing::TestNode gw_, other_;
};

TEST_F(NodeFilesTest, ValidFilesPassAndNothingIsCreated) {
  EXPECT_EQ(Check(Text()), "OK");
  EXPECT_FALSE(PathExists(dir_.File("data")));
}

TEST_F(NodeFilesTest, MissingFilesAreNamedWithTheirKeys) {
  std::string text = Text();
  text.replace(text.find("gw-1.key"), 8, "keys/nope.key");
  text.replace(text.find(pki_.root_pub_path()), pki_.root_pub_path().size(), "/nonexistent.pub");
  std::string msg = Check(text);
  EXPECT_THAT(msg, HasSubstr(absl::StrCat("cfg.toml:2: key 'key': cannot read ", dir_.path(),
                                          "/keys/nope.key: No such file or directory")));
  EXPECT_THAT(msg, HasSubstr("cfg.toml:7: key 'root.public_key': cannot read /nonexistent.pub: "
                             "No such file or directory"));
}

TEST_F(NodeFilesTest, FilesThatDoNotParseAreNamedWithTheirKeys) {
  ASSERT_OK(WriteFileAtomic(dir_.File("gw-1.cert"), "garbage"));
  ASSERT_OK(WriteFileAtomic(dir_.File("gw-1.key"), "-----BEGIN PRIVATE KEY-----\nxx\n"));
  std::string msg = Check(Text());
  EXPECT_THAT(msg, HasSubstr("cfg.toml:2: key 'key': "));
  EXPECT_THAT(msg, HasSubstr("gw-1.key: not a PEM private key"));
  EXPECT_THAT(msg, HasSubstr("cfg.toml:3: key 'cert': "));
  EXPECT_THAT(msg, HasSubstr("gw-1.cert: not a certificate"));
}

TEST_F(NodeFilesTest, ACertificateOfAnotherNodeOrKeyIsRefused) {
  std::string text = Text();
  text.replace(text.find("gw-1.cert"), 9, "gw-2.cert");
  EXPECT_THAT(Check(text), HasSubstr("cfg.toml:3: key 'cert': " + dir_.File("gw-2.cert") +
                                     " is issued to \"gw-2\", not \"gw-1\""));
  text = Text();
  text.replace(text.find("gw-1.key"), 8, "gw-2.key");
  EXPECT_THAT(Check(text), HasSubstr("cfg.toml:3: key 'cert': " + dir_.File("gw-1.cert") +
                                     " does not certify the key in " + dir_.File("gw-2.key")));
}

TEST_F(NodeFilesTest, ADataDirThatIsAFileIsRefused) {
  ASSERT_OK(WriteFileAtomic(dir_.File("data"), "not a directory"));
  EXPECT_THAT(Check(Text()), HasSubstr("cfg.toml:4: key 'data_dir': " + dir_.File("data") +
                                       " exists and is not a directory"));
}

TEST(LinkFilesTest, TlsFilesAreOpenedAndParsed) {
  TempDir dir;
  ASSERT_OK(WriteFileAtomic(dir.File("ca.pem"), "not a certificate"));
  ConfigFile cfg = MustParse(
      "[upstream]\n"
      "broker = \"ssl://broker:8883\"\n"
      "tls.ca = \"ca.pem\"\n"
      "tls.key = \"client.key\"\n",
      dir.path());
  TransportOptions t = ReadLinkConfig(cfg, "upstream", "gw-1");
  CheckLinkFiles(cfg, "upstream", t);
  std::string msg = FinishMessage(cfg);
  EXPECT_THAT(msg, HasSubstr("cfg.toml:3: key 'upstream.tls.ca': " + dir.File("ca.pem") +
                             " holds no PEM X.509 certificate"));
  EXPECT_THAT(msg, HasSubstr("cfg.toml:4: key 'upstream.tls.key': cannot read " +
                             dir.File("client.key") + ": No such file or directory"));
}

TEST(LinkConfigTest, ReadsPlainAndTlsLinks) {
  ConfigFile cfg = MustParse(
      "[upstream]\n"
      "broker = \"ssl://broker:8883\"\n"
      "keepalive_s = 15\n"
      "[upstream.tls]\n"
      "ca = \"ca.pem\"\n"
      "cert = \"node.pem\"\n"
      "key = \"node-key.pem\"\n",
      "/etc/x1368");
  TransportOptions t = ReadLinkConfig(cfg, "upstream", "gw-1");
  EXPECT_OK(cfg.Finish());
  EXPECT_EQ(t.broker_uri, "ssl://broker:8883");
  EXPECT_EQ(t.client_id, "gw-1");
  EXPECT_EQ(t.keepalive_s, 15);
  EXPECT_EQ(t.tls.ca_file, "/etc/x1368/ca.pem");
  EXPECT_EQ(t.tls.cert_file, "/etc/x1368/node.pem");
  EXPECT_EQ(t.tls.key_file, "/etc/x1368/node-key.pem");
  EXPECT_TRUE(t.tls.enabled());

  ConfigFile plain = MustParse("[upstream]\nbroker = \"tcp://127.0.0.1:1883\"\n");
  TransportOptions p = ReadLinkConfig(plain, "upstream", "dev");
  EXPECT_OK(plain.Finish());
  EXPECT_FALSE(p.tls.enabled());
}

TEST(LinkConfigTest, SslBrokerWithoutCa) {
  ConfigFile cfg = MustParse("[upstream]\nbroker = \"ssl://broker:8883\"\n");
  ReadLinkConfig(cfg, "upstream", "gw-1");
  EXPECT_THAT(FinishMessage(cfg),
              HasSubstr("cfg.toml:2: key 'upstream.broker': an ssl:// broker needs tls.ca"));
}

TEST(LinkConfigTest, TlsSettingsWithPlainBroker) {
  ConfigFile cfg =
      MustParse("[upstream]\nbroker = \"tcp://b:1883\"\n[upstream.tls]\nca = \"ca.pem\"\n");
  ReadLinkConfig(cfg, "upstream", "gw-1");
  EXPECT_THAT(FinishMessage(cfg), HasSubstr("cfg.toml:4: key 'upstream.tls.ca'"));
}

TEST(LinkConfigTest, UnknownSchemeAndMissingBroker) {
  ConfigFile bad = MustParse("[upstream]\nbroker = \"http://b:1883\"\n");
  ReadLinkConfig(bad, "upstream", "gw-1");
  EXPECT_THAT(FinishMessage(bad), HasSubstr("cfg.toml:2: key 'upstream.broker'"));

  ConfigFile missing = MustParse("");
  ReadLinkConfig(missing, "upstream", "gw-1");
  EXPECT_THAT(FinishMessage(missing), HasSubstr("key 'upstream.broker': missing (required)"));
}

}  // namespace
}  // namespace x1368::core
