// trackerctl as an operator's scripts use it (issue #16 item 4): global flags before or after the
// verb; the admin URL and token from flags, X1368_ADMIN_URL / X1368_ADMIN_TOKEN or a context of
// its config file, in that order; -o json|yaml in snake_case with 64-bit numbers as numbers and
// every field present; get / list / describe; --version; the documented exit codes (2 usage,
// 3 timeout, 4 unreachable, 5 refused); a bash completion generated from its own flags; and the
// local checks of cert issue and author sign. The trackerctl binary runs as a child process
// (with an empty environment) against a real root in this process (in-memory broker).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "testing/status_matchers.h"
#include "testing/tree.h"
#include "testing/wait.h"
#include "x1368/core/file_util.h"
#include "x1368/core/version.h"

namespace x1368::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "trackerctl-test-token-0123456789abcdef";

std::string ShellQuote(const std::string& s) {
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", R"('\'')"}}), "'");
}

struct Result {
  int code = -1;
  std::string out, err, command;
  std::string Describe() const {
    return absl::StrCat("$ ", command, "\n=> exit ", code, "\n--- stdout:\n", out,
                        "\n--- stderr:\n", err);
  }
};

class TrackerctlTest : public ::testing::Test {
 protected:
  void StartTree() {
    root_ = tree_.AddRoot([](nodes::RootSpec& spec) {
      spec.options.admin_listen = "127.0.0.1:0";
      spec.options.admin_token = kToken;
    });
    url_ = absl::StrCat("http://127.0.0.1:", root_->root->admin_port());
    tree_.AddIntermediate("gw1", "root", {"dev-*"});
    for (const std::string d : {"dev-1", "dev-2"}) tree_.AddClient(d, "gw1");
    ASSERT_TRUE(tree_.WaitForDevices({"dev-1", "dev-2"}, [](const v1::DeviceRecord& d) {
      return d.version() == "1.0.0";
    })) << "the devices never reported to root";
    ASSERT_OK(core::WriteFileAtomic(File("admin.token"), absl::StrCat(kToken, "\n")));
  }

  std::string File(const std::string& name) const { return absl::StrCat(dir_.path(), "/", name); }

  // trackerctl `args` in `dir_`, with only `env` (and PATH, HOME) in its environment.
  Result Ctl(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    std::vector<std::string> words = {"env", "-i", "PATH=/usr/bin:/bin",
                                      absl::StrCat("HOME=", dir_.path())};
    words.insert(words.end(), env.begin(), env.end());
    words.push_back(absl::StrCat(X1368_BIN_DIR, "/trackerctl"));
    words.insert(words.end(), args.begin(), args.end());
    return Shell(words);
  }
  // With root's URL and token as flags, after the verb.
  Result Admin(std::vector<std::string> args) {
    args.insert(args.end(), {"--admin", url_, "--token-file", File("admin.token")});
    return Ctl(args);
  }

  Result Shell(const std::vector<std::string>& words) {
    Result r;
    std::vector<std::string> quoted;
    for (const std::string& w : words) quoted.push_back(ShellQuote(w));
    r.command = absl::StrJoin(quoted, " ");
    const std::string out = File("cmd.out"), err = File("cmd.err");
    const int status = std::system(
        absl::StrCat("cd ", ShellQuote(dir_.path()), " && ", r.command, " >", out, " 2>", err)
            .c_str());
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = core::ReadFile(out).value_or("");
    r.err = core::ReadFile(err).value_or("");
    return r;
  }

  static nlohmann::json Json(const Result& r) {
    nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << r.Describe();
    return j;
  }

  // A port nothing listens on (root's, once stopped, would do; this one was never open).
  static std::string ClosedUrl() { return "http://127.0.0.1:1"; }

  TempDir dir_;
  TestTree tree_{nullptr};
  RootNode* root_ = nullptr;
  std::string url_;
};

TEST_F(TrackerctlTest, VersionAndHelpNameTheBuildExitCodesAndVariables) {
  Result v = Ctl({"--version"});
  EXPECT_EQ(v.code, 0) << v.Describe();
  EXPECT_THAT(v.out, HasSubstr(core::kVersion));
  EXPECT_THAT(v.out, HasSubstr(core::kGitRevision));
  Result help = Ctl({"--help"});
  EXPECT_EQ(help.code, 0) << help.Describe();
  for (const char* word : {"X1368_ADMIN_URL", "X1368_ADMIN_TOKEN", "X1368_CONFIG", "Exit codes",
                           "2 usage", "4 root's admin API unreachable", "--output"}) {
    EXPECT_THAT(help.out, HasSubstr(word));
  }
}

TEST_F(TrackerctlTest, UsageErrorsExitWithTwo) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{},
                                             {"fleet", "status", "--no-such-flag"},
                                             {"get", "devices", "-o", "xml"},
                                             {"campaign", "start", "--component", "fw"},
                                             {"get"}}) {
    Result r = Ctl(args);
    EXPECT_EQ(r.code, 2) << r.Describe();
  }
}

TEST_F(TrackerctlTest, AnUnreachableRootExitsWithFourAndSaysWhere) {
  Result r = Ctl({"get", "devices", "--admin", ClosedUrl(), "--token", "t"});
  EXPECT_EQ(r.code, 4) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("cannot reach root's admin API at http://127.0.0.1:1: connection "
                               "refused"));
  EXPECT_THAT(r.err, HasSubstr("X1368_ADMIN_URL"));
  Result dns = Ctl({"get", "releases", "--admin", "http://no-such-host.invalid:8368"},
                   {"X1368_ADMIN_TOKEN=t"});
  EXPECT_EQ(dns.code, 4) << dns.Describe();
  EXPECT_THAT(dns.err, HasSubstr("unknown host"));
}

TEST_F(TrackerctlTest, ARefusalByRootExitsWithFiveAndAFleetWaitTimeoutWithThree) {
  ASSERT_NO_FATAL_FAILURE(StartTree());
  Result wrong = Ctl({"get", "devices", "--admin", url_, "--token", "not-the-token-0123456789"});
  EXPECT_EQ(wrong.code, 5) << wrong.Describe();
  EXPECT_THAT(wrong.err, HasSubstr("HTTP 401 UNAUTHENTICATED"));
  Result unknown = Admin({"describe", "release", "fw", "9.9.9"});
  EXPECT_EQ(unknown.code, 5) << unknown.Describe();
  EXPECT_THAT(unknown.err, HasSubstr("HTTP 404 NOT_FOUND"));
  Result no_release = Admin({"campaign", "start", "--component", "fw", "--version", "9.9.9"});
  EXPECT_EQ(no_release.code, 5) << no_release.Describe();
  EXPECT_THAT(no_release.err, HasSubstr("HTTP 422"));

  Result wait = Admin({"fleet", "wait", "--component", "fw", "--version", "9.9.9", "--count", "2",
                       "--timeout-s", "1"});
  EXPECT_EQ(wait.code, 3) << wait.Describe();
  EXPECT_THAT(wait.err, HasSubstr("timed out"));
}

TEST_F(TrackerctlTest, GlobalFlagsGoBeforeOrAfterTheVerb) {
  ASSERT_NO_FATAL_FAILURE(StartTree());
  Result after = Ctl({"get", "devices", "--admin", url_, "--token", kToken, "-o", "json"});
  Result before = Ctl({"--admin", url_, "--token", kToken, "-o", "json", "get", "devices"});
  Result mixed = Ctl({"--admin", url_, "get", "-o", "json", "devices", "--token", kToken});
  for (const Result* r : {&after, &before, &mixed}) {
    EXPECT_EQ(r->code, 0) << r->Describe();
    EXPECT_EQ(Json(*r)["devices"].size(), 2u) << r->Describe();
  }
  // The verbs and flags scripts/demo.sh and the README use still parse (flags after the verb).
  Result status = Admin({"fleet", "status", "--json"});
  EXPECT_EQ(status.code, 0) << status.Describe();
  Result show = Admin({"device", "show", "dev-1"});
  EXPECT_EQ(show.code, 0) << show.Describe();
  EXPECT_THAT(show.out, HasSubstr("path:       gw1"));
}

TEST_F(TrackerctlTest, TheAdminApiComesFromFlagsThenEnvironmentThenContext) {
  ASSERT_NO_FATAL_FAILURE(StartTree());
  Result env = Ctl({"get", "devices"}, {absl::StrCat("X1368_ADMIN_URL=", url_),
                                        absl::StrCat("X1368_ADMIN_TOKEN=", kToken)});
  EXPECT_EQ(env.code, 0) << env.Describe();
  EXPECT_THAT(env.out, HasSubstr("dev-2"));

  // A context in the default file ($HOME/.config/x1368/trackerctl.toml), the token by file.
  Result set =
      Ctl({"config", "set-context", "lab", "--admin", url_, "--token-file", File("admin.token")});
  ASSERT_EQ(set.code, 0) << set.Describe();
  auto file = core::ReadFile(File(".config/x1368/trackerctl.toml"));
  ASSERT_OK(file);
  EXPECT_THAT(*file, HasSubstr("current_context = 'lab'"));
  Result by_context = Ctl({"get", "devices", "-o", "json"});
  EXPECT_EQ(by_context.code, 0) << by_context.Describe();
  EXPECT_EQ(Json(by_context)["devices"].size(), 2u);

  // A second context holding the token itself: view says it is there, never what it is.
  Result other = Ctl({"--config", File("other.toml"), "config", "set-context", "prod", "--admin",
                      ClosedUrl(), "--token", "secret-token-never-printed"});
  ASSERT_EQ(other.code, 0) << other.Describe();
  for (const std::string output : {"table", "json", "yaml"}) {
    Result view = Ctl({"config", "view", "-o", output, "--config", File("other.toml")});
    EXPECT_EQ(view.code, 0) << view.Describe();
    EXPECT_THAT(view.out, HasSubstr("prod"));
    EXPECT_THAT(view.out, Not(HasSubstr("secret-token-never-printed"))) << view.out;
  }
  // X1368_CONFIG names the file; its context's URL (closed) is used...
  const std::string config_env = absl::StrCat("X1368_CONFIG=", File("other.toml"));
  EXPECT_EQ(Ctl({"get", "devices"}, {config_env}).code, 4);
  // ...unless the environment names another, or the flag does: flag > env > context.
  EXPECT_EQ(Ctl({"get", "devices"}, {config_env, absl::StrCat("X1368_ADMIN_URL=", url_),
                                     absl::StrCat("X1368_ADMIN_TOKEN=", kToken)})
                .code,
            0);
  EXPECT_EQ(
      Ctl({"get", "devices", "--admin", ClosedUrl()},
          {absl::StrCat("X1368_ADMIN_URL=", url_), absl::StrCat("X1368_ADMIN_TOKEN=", kToken)})
          .code,
      4);
  // --context picks another context of the file than its current one.
  EXPECT_EQ(Ctl({"get", "devices", "--context", "lab"}).code, 0);
  Result missing = Ctl({"get", "devices", "--context", "nowhere"});
  EXPECT_EQ(missing.code, 1) << missing.Describe();
  EXPECT_THAT(missing.err, HasSubstr("no context \"nowhere\""));
  Result use = Ctl({"config", "use-context", "prod", "--config", File("other.toml")});
  EXPECT_EQ(use.code, 0) << use.Describe();
}

// What `jq '[.devices[]|select(.online==false)]|length'` needs: every field, false and 0 too,
// snake_case, 64-bit numbers as numbers, enums by name.
TEST_F(TrackerctlTest, JsonAndYamlOutputIsSnakeCaseWithNumbersAndEveryField) {
  ASSERT_NO_FATAL_FAILURE(StartTree());
  ASSERT_OK(tree_.Publish(TestPki::MakeImage(20000, 1), "2.0.0", 2));
  Result devices = Admin({"get", "devices", "-o", "json"});
  ASSERT_EQ(devices.code, 0) << devices.Describe();
  nlohmann::json page = Json(devices);
  ASSERT_EQ(page["devices"].size(), 2u) << devices.out;
  for (const nlohmann::json& d : page["devices"]) {
    for (const char* key : {"device_id", "online", "obsolete", "ahead_of_root", "sequence_number",
                            "updated_at_ms", "latest_version", "rejections", "clock_offset_ms"}) {
      EXPECT_TRUE(d.contains(key)) << key << " missing in " << d.dump();
    }
    EXPECT_TRUE(d["online"].is_boolean()) << d.dump();
    EXPECT_TRUE(d["ahead_of_root"].is_boolean() && !d["ahead_of_root"].get<bool>()) << d.dump();
    EXPECT_TRUE(d["sequence_number"].is_number_unsigned()) << d.dump();
    EXPECT_TRUE(d["updated_at_ms"].is_number_integer()) << d.dump();
    EXPECT_TRUE(d["state"].is_string()) << d.dump();
    EXPECT_EQ(d["obsolete"], true) << d.dump();
    EXPECT_FALSE(d.contains("deviceId")) << d.dump();
  }
  // The count jq makes of offline devices is the --offline list's length.
  size_t offline = 0;
  for (const nlohmann::json& d : page["devices"]) offline += d["online"] == false ? 1 : 0;
  Result offline_list = Admin({"get", "devices", "--offline", "-o", "json"});
  ASSERT_EQ(offline_list.code, 0) << offline_list.Describe();
  EXPECT_EQ(Json(offline_list)["devices"].size(), offline);

  Result releases = Admin({"list", "releases", "-o", "json"});
  ASSERT_EQ(releases.code, 0) << releases.Describe();
  EXPECT_EQ(Json(releases)["releases"][0]["sequence_number"], 2) << releases.out;
  Result fleet = Admin({"fleet", "status", "-o", "json"});
  ASSERT_EQ(fleet.code, 0) << fleet.Describe();
  EXPECT_TRUE(Json(fleet)["devices"][0]["sequence_number"].is_number()) << fleet.out;

  Result yaml = Admin({"describe", "release", "fw", "2.0.0", "-o", "yaml"});
  ASSERT_EQ(yaml.code, 0) << yaml.Describe();
  YAML::Node doc = YAML::Load(yaml.out);
  EXPECT_EQ(doc["version"].as<std::string>(), "2.0.0") << yaml.out;
  EXPECT_EQ(doc["sequence_number"].as<uint64_t>(), 2u) << yaml.out;
  EXPECT_THAT(yaml.out, HasSubstr("sequence_number: 2\n"));
}

TEST_F(TrackerctlTest, GetListAndDescribeReleasesCampaignsAndDevices) {
  ASSERT_NO_FATAL_FAILURE(StartTree());
  ASSERT_OK(tree_.Publish(TestPki::MakeImage(20000, 1), "2.0.0", 2));
  Result start =
      Admin({"campaign", "start", "--component", "fw", "--version", "2.0.0", "--devices", "dev-1"});
  ASSERT_EQ(start.code, 0) << start.Describe();
  Result releases = Admin({"get", "releases"});
  EXPECT_EQ(releases.code, 0) << releases.Describe();
  EXPECT_THAT(releases.out, HasSubstr("COMPONENT"));
  EXPECT_THAT(releases.out, HasSubstr("2.0.0"));
  Result campaigns = Admin({"list", "campaigns", "-o", "json"});
  ASSERT_EQ(campaigns.code, 0) << campaigns.Describe();
  ASSERT_EQ(Json(campaigns)["campaigns"].size(), 1u) << campaigns.out;
  const std::string id = Json(campaigns)["campaigns"][0]["campaign_id"];
  Result campaign = Admin({"describe", "campaign", id});
  EXPECT_EQ(campaign.code, 0) << campaign.Describe();
  EXPECT_THAT(campaign.out, HasSubstr("devices:    dev-1"));
  EXPECT_THAT(campaign.out, HasSubstr("progress:   "));
  // dev-1 takes it: the campaign's progress counts it by its state.
  ASSERT_TRUE(tree_.WaitForVersion({"dev-1"}, "2.0.0"));
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(Admin({"describe", "campaign", id}).out, "CONFIRMED=1");
  })) << Admin({"describe", "campaign", id}).Describe();
  Result device = Admin({"describe", "device", "dev-2"});
  EXPECT_EQ(device.code, 0) << device.Describe();
  EXPECT_THAT(device.out, HasSubstr("device:     dev-2"));
  Result paged = Admin({"get", "devices", "--limit", "1"});
  EXPECT_EQ(paged.code, 0) << paged.Describe();
  EXPECT_THAT(paged.err, HasSubstr("more: --after dev-1"));
}

TEST_F(TrackerctlTest, BashCompletionCompletesVerbsSubcommandsAndFlags) {
  Result script = Ctl({"completion", "bash"});
  ASSERT_EQ(script.code, 0) << script.Describe();
  ASSERT_OK(core::WriteFileAtomic(File("completion.bash"), script.out));
  auto complete = [&](const std::string& words, int cword) {
    Result r = Shell({"bash", "-c",
                      absl::StrCat("source ", File("completion.bash"), "; COMP_WORDS=(", words,
                                   "); COMP_CWORD=", cword,
                                   "; _trackerctl; printf '%s\\n' \"${COMPREPLY[@]}\"")});
    EXPECT_EQ(r.code, 0) << r.Describe();
    return r.out;
  };
  EXPECT_EQ(complete("trackerctl ge", 1), "get\n");
  // After `get`: its resources (and their singular aliases), its flags and the global ones.
  const std::string after_get = complete("trackerctl get ''", 2);
  for (const char* word : {"devices\n", "releases\n", "campaigns\n", "campaign\n", "--output\n",
                           "--admin\n", "--token-file\n", "--help\n"}) {
    EXPECT_THAT(after_get, HasSubstr(word));
  }
  EXPECT_THAT(after_get, Not(HasSubstr("keygen")));
  EXPECT_EQ(complete("trackerctl fleet status --obs", 3), "--obsolete\n");
  EXPECT_EQ(complete("trackerctl --admin x describe r", 4), "release\n");
  EXPECT_EQ(complete("trackerctl config u", 2), "use-context\n");
}

TEST_F(TrackerctlTest, CertIssueRefusesARootKeyThatIsNotRoots) {
  for (const char* key : {"root.key", "other.key"}) {
    Result r = Ctl({"keygen", "--out", key});
    ASSERT_EQ(r.code, 0) << r.Describe();
  }
  ASSERT_EQ(Ctl({"keygen", "--out", "gw1.key"}).code, 0);
  std::vector<std::string> issue = {"cert",    "issue",        "--node", "gw1",
                                    "--role",  "intermediate", "--key",  "gw1.key",
                                    "--scope", "dev-*",        "--out",  "gw1.cert"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = issue;
    args.insert(args.end(), extra.begin(), extra.end());
    return Ctl(args);
  };
  // Told root's public key.
  Result wrong = with({"--root-key", "other.key", "--root-pub", "root.pub"});
  EXPECT_EQ(wrong.code, 1) << wrong.Describe();
  EXPECT_THAT(wrong.err, HasSubstr("other.key is not root's key"));
  // Or finding it beside the key it was given (a wrong key copied over root.key).
  std::filesystem::create_directories(File("copy"));
  ASSERT_OK(core::WriteFileAtomic(File("copy/root.key"), *core::ReadFile(File("other.key"))));
  ASSERT_OK(core::WriteFileAtomic(File("copy/root.pub"), *core::ReadFile(File("root.pub"))));
  Result beside = with({"--root-key", "copy/root.key"});
  EXPECT_EQ(beside.code, 1) << beside.Describe();
  EXPECT_THAT(beside.err, HasSubstr("copy/root.pub"));
  EXPECT_FALSE(core::FileSize(File("gw1.cert")).ok()) << "a refused certificate was written";
  Result right = with({"--root-key", "root.key"});
  EXPECT_EQ(right.code, 0) << right.Describe();
  Result shown = Ctl({"cert", "show", "gw1.cert", "-o", "json"});
  ASSERT_EQ(shown.code, 0) << shown.Describe();
  EXPECT_EQ(Json(shown)["node_id"], "gw1");
  EXPECT_TRUE(Json(shown)["not_after_ms"].is_number_integer()) << shown.out;
}

TEST_F(TrackerctlTest, AuthorSignRefusesWhatDevicesWouldRefuse) {
  for (const char* key : {"root.key", "author.key", "other.key", "dev.key"}) {
    ASSERT_EQ(Ctl({"keygen", "--out", key}).code, 0);
  }
  auto issue = [&](const std::string& node, const std::string& role, const std::string& key,
                   const std::string& out, std::vector<std::string> extra) {
    std::vector<std::string> args = {"cert",   "issue", "--root-key", "root.key", "--node", node,
                                     "--role", role,    "--key",      key,        "--out",  out};
    args.insert(args.end(), extra.begin(), extra.end());
    Result r = Ctl(args);
    EXPECT_EQ(r.code, 0) << r.Describe();
  };
  issue("author-1", "author", "author.key", "author.cert", {"--components", "fw"});
  issue("author-1", "author", "author.key", "expired.cert", {"--components", "fw", "--days", "0"});
  issue("dev-1", "client", "dev.key", "dev.cert", {});
  ASSERT_OK(core::WriteFileAtomic(File("fw.bin"), TestPki::MakeImage(10000, 1)));
  auto sign = [&](const std::string& key, const std::string& cert, const std::string& component,
                  std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "author",     "sign",   "--key",       key,       "--cert",    cert,
        "--image",    "fw.bin", "--component", component, "--version", "2.0.0",
        "--sequence", "2",      "--hardware",  "board-a", "--out",     "fw.manifest"};
    args.insert(args.end(), extra.begin(), extra.end());
    return Ctl(args);
  };
  Result scope = sign("author.key", "author.cert", "bootloader");
  EXPECT_EQ(scope.code, 1) << scope.Describe();
  EXPECT_THAT(scope.err, HasSubstr("AUTHOR_NOT_TRUSTED"));
  EXPECT_THAT(scope.err, HasSubstr("not \"bootloader\""));
  Result key = sign("other.key", "author.cert", "fw");
  EXPECT_EQ(key.code, 1) << key.Describe();
  EXPECT_THAT(key.err, HasSubstr("does not certify other.key"));
  Result role = sign("dev.key", "dev.cert", "fw");
  EXPECT_EQ(role.code, 1) << role.Describe();
  EXPECT_THAT(role.err, HasSubstr("not an author's"));
  Result expired = sign("author.key", "expired.cert", "fw");
  EXPECT_EQ(expired.code, 1) << expired.Describe();
  EXPECT_THAT(expired.err, HasSubstr("expired on"));
  // With root's public key, the certificate's signature too: another root's key is refused.
  Result foreign = sign("author.key", "author.cert", "fw", {"--root-pub", "other.pub"});
  EXPECT_EQ(foreign.code, 1) << foreign.Describe();
  EXPECT_THAT(foreign.err, HasSubstr("BAD_CERT"));
  EXPECT_FALSE(core::FileSize(File("fw.manifest")).ok()) << "a refused manifest was written";
  Result good = sign("author.key", "author.cert", "fw", {"--root-pub", "root.pub"});
  EXPECT_EQ(good.code, 0) << good.Describe();
}

}  // namespace
}  // namespace x1368::testing
