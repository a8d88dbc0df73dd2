// The real daemons as child processes (docs/architecture.md §10): tracker-root,
// tracker-intermediate, tracker-client and trackerctl from the build's bin/ directory, started with
// fork/exec on a real Mosquitto. This covers what only a process shows: flags and --help,
// line-precise configuration errors (exit 2), a clean stop on SIGTERM (exit 0), the metrics and
// admin HTTP endpoints, a full signed update driven by trackerctl, and a SIGKILL in the middle of a
// download followed by a restart of the same process with the same configuration.
//
// Every child writes stdout and stderr to files in the test's TempDir; every wait is bounded and
// prints the tails of those files when it fails; TearDown stops every child (SIGTERM, then
// SIGKILL), and PR_SET_PDEATHSIG kills them if the test process itself dies.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "testing/exposition.h"
#include "testing/mosquitto.h"
#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"
#include "x1368/core/crypto.h"
#include "x1368/core/file_util.h"
#include "x1368/core/http_client.h"
#include "x1368/v1/admin.pb.h"

#ifndef X1368_BIN_DIR
#error "X1368_BIN_DIR must name the directory holding the daemons (set in CMake)"
#endif

namespace x1368::testing {
namespace {

std::string Bin(const std::string& name) { return absl::StrCat(X1368_BIN_DIR, "/", name); }

std::string Tail(const std::string& path, size_t bytes = 3000) {
  auto text = core::ReadFile(path);
  if (!text.ok()) return absl::StrCat("(", path, ": ", text.status().message(), ")");
  if (text->size() <= bytes) return *text;
  return absl::StrCat("...", text->substr(text->size() - bytes));
}

// A socket listening on 127.0.0.1 for as long as the object lives: a port that is taken.
class BusyPort {
 public:
  BusyPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0 &&
        ::listen(fd_, 1) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~BusyPort() {
    if (fd_ >= 0) ::close(fd_);
  }
  BusyPort(const BusyPort&) = delete;
  BusyPort& operator=(const BusyPort&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

// One child process with stdout and stderr appended to files (appended, so a restarted daemon
// keeps one log). Not thread-safe.
class ChildProcess {
 public:
  ChildProcess(std::string name, std::string out_path, std::string err_path)
      : name_(std::move(name)), out_path_(std::move(out_path)), err_path_(std::move(err_path)) {}
  ~ChildProcess() { Stop(absl::Seconds(5)); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Starts `argv` (argv[0] an absolute path). Fails if a previous run is still going.
  absl::Status Start(std::vector<std::string> argv) {
    if (running()) return absl::FailedPreconditionError(absl::StrCat(name_, " is still running"));
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (out < 0 || err < 0 || in < 0) {
      for (int fd : {out, err, in}) {
        if (fd >= 0) ::close(fd);
      }
      return absl::InternalError(absl::StrCat("cannot open the log files of ", name_));
    }
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid == 0) {
      // Only async-signal-safe calls until exec. A child must never outlive the test.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(err, 2);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(out);
    ::close(err);
    ::close(in);
    if (pid < 0) return absl::InternalError(absl::StrCat("fork failed for ", name_));
    pid_ = pid;
    status_.reset();
    return absl::OkStatus();
  }

  bool running() {
    Poll();
    return pid_ > 0;
  }

  void Signal(int sig) {
    if (running()) ::kill(pid_, sig);
  }

  // The wait status once the process has ended within `timeout`; nullopt if it still runs.
  std::optional<int> Wait(absl::Duration timeout) {
    WaitFor([this] { return !running(); }, timeout, absl::Milliseconds(10));
    return status_;
  }

  // SIGTERM, then SIGKILL after `grace`; reaps the process.
  void Stop(absl::Duration grace) {
    if (!running()) return;
    ::kill(pid_, SIGTERM);
    if (Wait(grace)) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    status_ = status;
    pid_ = -1;
  }

  const std::string& name() const { return name_; }
  const std::string& out_path() const { return out_path_; }
  const std::string& err_path() const { return err_path_; }

  std::string Describe() {
    std::string state = running() ? absl::StrCat("running as pid ", pid_)
                                  : (status_ ? DescribeWaitStatus(*status_) : "never started");
    return absl::StrCat("--- ", name_, " (", state, "), tail of ", err_path_, ":\n",
                        Tail(err_path_), "\n");
  }

 private:
  void Poll() {
    if (pid_ <= 0) return;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      status_ = status;
      pid_ = -1;
    }
  }

  std::string name_;
  std::string out_path_;
  std::string err_path_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// What a short-lived command (trackerctl, a daemon with --help or --check-config) did.
struct CommandResult {
  std::string command;
  std::optional<int> status;  // nullopt: it did not finish in time and was killed
  std::string out;
  std::string err;

  bool exited_with(int code) const {
    return status && WIFEXITED(*status) && WEXITSTATUS(*status) == code;
  }
  std::string Describe() const {
    return absl::StrCat("$ ", command, "\n=> ", status ? DescribeWaitStatus(*status) : "timed out",
                        "\n--- stdout:\n", out, "\n--- stderr:\n", err, "\n");
  }
};

// Everything the daemon tests share: a TempDir, child processes that are always stopped, and
// helpers that make keys with trackerctl and write the daemons' TOML configurations.
class DaemonsTestBase : public ::testing::Test {
 protected:
  // The nodes' MQTT 5 Will Delay: a node killed without a word is offline at root this long after
  // (the daemons' default is 10 s).
  static constexpr int kWillDelayS = 2;

  void TearDown() override {
    for (auto& child : children_) child->Stop(absl::Seconds(5));
    children_.clear();
    broker_.reset();
  }

  std::string File(const std::string& name) const { return dir_.File(name); }

  // Runs `binary args...` (one of the build's) to completion (bounded by `timeout`).
  CommandResult Run(const std::string& binary, const std::vector<std::string>& args,
                    absl::Duration timeout = absl::Seconds(60)) {
    return RunProgram(binary, Bin(binary), args, timeout);
  }

  // Runs the program at `path` (logs named after `name`) to completion.
  CommandResult RunProgram(const std::string& name, const std::string& path,
                           const std::vector<std::string>& args,
                           absl::Duration timeout = absl::Seconds(60)) {
    int n = ++commands_;
    std::string base = File(absl::StrCat("cmd-", n, "-", name));
    ChildProcess p(name, base + ".out", base + ".err");
    std::vector<std::string> argv = {path};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r;
    r.command = absl::StrJoin(argv, " ");
    if (absl::Status s = p.Start(argv); !s.ok()) {
      r.err = std::string(s.message());
      return r;
    }
    r.status = p.Wait(timeout);
    if (!r.status) p.Stop(absl::Seconds(1));
    r.out = core::ReadFile(p.out_path()).value_or("");
    r.err = core::ReadFile(p.err_path()).value_or("");
    return r;
  }

  CommandResult Ctl(const std::vector<std::string>& args,
                    absl::Duration timeout = absl::Seconds(60)) {
    return Run("trackerctl", args, timeout);
  }

  // trackerctl against root's admin API.
  CommandResult Admin(std::vector<std::string> args, absl::Duration timeout = absl::Seconds(60)) {
    args.insert(args.end(), {"--admin", admin_url_, "--token-file", File("admin.token")});
    return Ctl(args, timeout);
  }

  // Starts a daemon that runs until TearDown (or until the test stops it); logs go to
  // <name>.out / <name>.err in the TempDir. A first start: with --init, as an operator starts a
  // node on a fresh store (a restart goes through ChildProcess::Start, without it).
  ChildProcess* StartDaemon(const std::string& binary, const std::string& name,
                            const std::string& config, bool init = true) {
    children_.push_back(
        std::make_unique<ChildProcess>(name, File(name + ".out"), File(name + ".err")));
    ChildProcess* p = children_.back().get();
    std::vector<std::string> argv = {Bin(binary), "--config", config};
    if (init) argv.push_back("--init");
    absl::Status s = p->Start(argv);
    EXPECT_OK(s);
    return p;
  }

  // The tails of every daemon's log, for failure messages.
  std::string Logs() {
    std::string out;
    for (auto& child : children_) absl::StrAppend(&out, child->Describe());
    if (broker_) absl::StrAppend(&out, "--- mosquitto log:\n", Tail(broker_->log_path(), 1000));
    return out;
  }

  void StartBroker() {
    auto b = MosquittoBroker::Start(broker_dir_.path());
    ASSERT_OK(b);
    broker_ = *std::move(b);
  }

  // Keys and root-signed certificates made by trackerctl, as scripts/demo.sh does.
  ::testing::AssertionResult Keygen(const std::string& id) {
    CommandResult r = Ctl({"keygen", "--out", File(id + ".key")});
    if (!r.exited_with(0)) return ::testing::AssertionFailure() << r.Describe();
    return ::testing::AssertionSuccess();
  }
  ::testing::AssertionResult Issue(const std::string& id, const std::string& role,
                                   const std::string& scope, const std::string& components = "") {
    if (auto k = Keygen(id); !k) return k;
    CommandResult r = Ctl({"cert", "issue", "--root-key", File("root.key"), "--node", id, "--role",
                           role, "--key", File(id + ".key"), "--scope", scope, "--components",
                           components, "--out", File(id + ".cert")});
    if (!r.exited_with(0)) return ::testing::AssertionFailure() << r.Describe();
    return ::testing::AssertionSuccess();
  }
  // root, one gateway gw1 (scope dev-*), the author author-1 (component fw), and `devices`.
  ::testing::AssertionResult MakePki(const std::vector<std::string>& devices) {
    if (auto k = Keygen("root"); !k) return k;
    if (auto r = Issue("gw1", "intermediate", "dev-*"); !r) return r;
    if (auto r = Issue("author-1", "author", "", "fw"); !r) return r;
    for (const std::string& d : devices) {
      if (auto r = Issue(d, "client", ""); !r) return r;
    }
    return ::testing::AssertionSuccess();
  }

  std::string BrokerUri() const { return broker_ ? broker_->uri() : "tcp://127.0.0.1:1"; }

  // The keys every node has: top-level keys first (node_id on line 1), then [root].
  std::vector<std::string> CommonLines(const std::string& id, const std::string& parent) const {
    std::vector<std::string> lines = {
        absl::StrCat("node_id = \"", id, "\""),
        absl::StrCat("key = \"", File(id + ".key"), "\""),
        absl::StrCat("data_dir = \"", File("data/" + id), "\""),
    };
    if (!parent.empty()) {
      lines.push_back(absl::StrCat("cert = \"", File(id + ".cert"), "\""));
      lines.push_back(absl::StrCat("parent_id = \"", parent, "\""));
    }
    lines.insert(lines.end(), {"[root]", "id = \"root\"",
                               absl::StrCat("public_key = \"", File("root.pub"), "\"")});
    return lines;
  }

  std::vector<std::string> RootLines() const {
    std::vector<std::string> lines = CommonLines("root", "");
    lines.insert(lines.end(), {"[downstream]", absl::StrCat("broker = \"", BrokerUri(), "\""),
                               "[admin]", "listen = \"127.0.0.1:0\"",
                               absl::StrCat("token_file = \"", File("admin.token"), "\""), "[log]",
                               "level = \"info\""});
    return lines;
  }

  std::vector<std::string> IntermediateLines(const std::string& id, const std::string& parent,
                                             const std::string& metrics_listen = "") const {
    std::vector<std::string> lines = CommonLines(id, parent);
    lines.insert(lines.end(),
                 {"[upstream]", absl::StrCat("broker = \"", BrokerUri(), "\""),
                  absl::StrCat("will_delay_s = ", kWillDelayS), "[report]", "interval_s = 5",
                  "[batch]", "delay_ms = 50", "[log]", "level = \"info\""});
    if (!metrics_listen.empty()) {
      lines.insert(lines.end(), {"[metrics]", absl::StrCat("listen = \"", metrics_listen, "\"")});
    }
    return lines;
  }

  // `update` adds keys to the [update] table; `tables` adds whole tables at the end.
  std::vector<std::string> ClientLines(const std::string& id, const std::string& parent,
                                       const std::vector<std::string>& update = {},
                                       const std::vector<std::string>& tables = {}) const {
    std::vector<std::string> lines = CommonLines(id, parent);
    lines.insert(lines.end(),
                 {"[upstream]", absl::StrCat("broker = \"", BrokerUri(), "\""),
                  absl::StrCat("will_delay_s = ", kWillDelayS), "[consumer]", "component = \"fw\"",
                  "hardware_class = \"board-a\"", "initial_version = \"1.0.0\"",
                  "initial_sequence = 1", "[update]", "report_interval_s = 5"});
    lines.insert(lines.end(), update.begin(), update.end());
    lines.insert(lines.end(), {"[log]", "level = \"info\""});
    lines.insert(lines.end(), tables.begin(), tables.end());
    return lines;
  }

  std::string WriteConfig(const std::string& name, const std::vector<std::string>& lines) {
    std::string path = File(name);
    EXPECT_OK(core::WriteFileAtomic(path, absl::StrJoin(lines, "\n") + "\n"));
    return path;
  }

  // Starts tracker-root (its configuration plus `extra` lines at the end) and waits for it to
  // write <data_dir>/admin.port.
  ::testing::AssertionResult StartRoot(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> lines = RootLines();
    lines.insert(lines.end(), extra.begin(), extra.end());
    std::string config = WriteConfig("root.toml", lines);
    root_ = StartDaemon("tracker-root", "root", config);
    return WaitForAdminPort();
  }

  // Waits for root to write <data_dir>/admin.port, and points the admin client at it.
  ::testing::AssertionResult WaitForAdminPort() {
    std::string port_file = File("data/root/admin.port");
    bool up = WaitFor([&] { return core::PathExists(port_file) || !root_->running(); },
                      absl::Seconds(20));
    auto text = core::ReadFile(port_file);
    int port = 0;
    if (!up || !text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port)) {
      return ::testing::AssertionFailure()
             << "tracker-root did not write " << port_file << " within 20 s\n"
             << Logs();
    }
    admin_url_ = absl::StrCat("http://127.0.0.1:", port);
    return ::testing::AssertionSuccess();
  }

  // Starts the root StartRoot started again, over its data_dir, with `flags` (a restart: no
  // --init unless given), and waits for its admin port.
  ::testing::AssertionResult RestartRoot(const std::vector<std::string>& flags = {}) {
    if (root_->running()) return ::testing::AssertionFailure() << "root is still running";
    (void)core::RemoveFile(File("data/root/admin.port"));
    std::vector<std::string> argv = {Bin("tracker-root"), "--config", File("root.toml")};
    argv.insert(argv.end(), flags.begin(), flags.end());
    if (absl::Status s = root_->Start(argv); !s.ok()) return ::testing::AssertionFailure() << s;
    return WaitForAdminPort();
  }

  // `trackerctl fleet wait`: COUNT devices of fw run VERSION, as root sees it.
  ::testing::AssertionResult FleetWait(const std::string& version, int count, int timeout_s) {
    CommandResult r = Admin({"fleet", "wait", "--component", "fw", "--version", version, "--count",
                             absl::StrCat(count), "--timeout-s", absl::StrCat(timeout_s)},
                            absl::Seconds(timeout_s + 30));
    if (!r.exited_with(0)) {
      return ::testing::AssertionFailure() << r.Describe() << Logs();
    }
    return ::testing::AssertionSuccess();
  }

  // `trackerctl fleet status --json`, parsed.
  absl::StatusOr<v1::FleetStatus> FleetStatus(CommandResult* raw = nullptr) {
    CommandResult r = Admin({"fleet", "status", "--json"}, absl::Seconds(30));
    if (raw != nullptr) *raw = r;
    if (!r.exited_with(0)) return absl::UnavailableError(r.Describe());
    v1::FleetStatus fleet;
    auto parsed = google::protobuf::util::JsonStringToMessage(r.out, &fleet);
    if (!parsed.ok()) {
      return absl::DataLossError(
          absl::StrCat("fleet status --json does not parse: ", parsed.ToString(), "\n", r.out));
    }
    return fleet;
  }

  static const v1::DeviceRecord* FindDevice(const v1::FleetStatus& fleet, const std::string& id) {
    for (const v1::DeviceRecord& d : fleet.devices()) {
      if (d.device_id() == id) return &d;
    }
    return nullptr;
  }

  static const v1::NodeRecord* FindNode(const v1::FleetStatus& fleet, const std::string& id) {
    for (const v1::NodeRecord& n : fleet.nodes()) {
      if (n.node_id() == id) return &n;
    }
    return nullptr;
  }

  // Waits until root's fleet status (`trackerctl fleet status --json`) satisfies `pred`; on
  // timeout, says what root showed last.
  ::testing::AssertionResult WaitForFleet(const std::string& what,
                                          const std::function<bool(const v1::FleetStatus&)>& pred,
                                          absl::Duration timeout) {
    std::string seen = "nothing yet";
    absl::Time start = absl::Now();
    bool ok = WaitFor(
        [&] {
          CommandResult raw;
          auto fleet = FleetStatus(&raw);
          seen = fleet.ok() ? raw.out : std::string(fleet.status().message());
          return fleet.ok() && pred(*fleet);
        },
        timeout, absl::Milliseconds(200));
    if (!ok) {
      return ::testing::AssertionFailure()
             << "root did not show " << what << " within " << absl::FormatDuration(timeout)
             << "; last fleet status:\n"
             << seen << "\n"
             << Logs();
    }
    std::cerr << "root showed " << what << " after " << absl::FormatDuration(absl::Now() - start)
              << "\n";
    return ::testing::AssertionSuccess();
  }

  // A random image on disk, signed by author-1 as fw `version` in chunks of `chunk_size` (0:
  // trackerctl's default); published on root.
  ::testing::AssertionResult PublishRelease(const std::string& version, uint64_t sequence,
                                            size_t size, uint32_t chunk_size = 0) {
    std::string image = File(absl::StrCat("fw-", version, ".bin"));
    std::string manifest = File(absl::StrCat("fw-", version, ".manifest"));
    if (absl::Status s =
            core::WriteFileAtomic(image, TestPki::MakeImage(size, static_cast<uint32_t>(sequence)));
        !s.ok()) {
      return ::testing::AssertionFailure() << s;
    }
    std::vector<std::string> args = {"author",      "sign",
                                     "--key",       File("author-1.key"),
                                     "--cert",      File("author-1.cert"),
                                     "--image",     image,
                                     "--component", "fw",
                                     "--version",   version,
                                     "--sequence",  absl::StrCat(sequence),
                                     "--hardware",  "board-a",
                                     "--out",       manifest};
    if (chunk_size != 0) {
      args.push_back("--chunk-size");
      args.push_back(absl::StrCat(chunk_size));
    }
    CommandResult sign = Ctl(args);
    if (!sign.exited_with(0)) return ::testing::AssertionFailure() << sign.Describe();
    CommandResult publish = Admin({"release", "publish", "--manifest", manifest, "--image", image});
    if (!publish.exited_with(0)) {
      return ::testing::AssertionFailure() << publish.Describe() << Logs();
    }
    return ::testing::AssertionSuccess();
  }

  ::testing::AssertionResult StartCampaign(const std::string& version) {
    CommandResult r = Admin({"campaign", "start", "--component", "fw", "--version", version});
    if (!r.exited_with(0)) return ::testing::AssertionFailure() << r.Describe() << Logs();
    return ::testing::AssertionSuccess();
  }

  TempDir dir_;
  TempDir broker_dir_;
  std::unique_ptr<MosquittoBroker> broker_;
  std::vector<std::unique_ptr<ChildProcess>> children_;
  ChildProcess* root_ = nullptr;  // the one StartRoot started
  int commands_ = 0;
  std::string admin_url_;
};

// ---------------------------------------------------------------------------------------------
// 1. --help and --version

class DaemonsFlagsTest : public DaemonsTestBase {};

TEST_F(DaemonsFlagsTest, EachDaemonAnswersHelpWithItsFlags) {
  for (const char* daemon : {"tracker-root", "tracker-intermediate", "tracker-client"}) {
    CommandResult r = Run(daemon, {"--help"}, absl::Seconds(20));
    ASSERT_TRUE(r.exited_with(0)) << r.Describe();
    for (const char* flag :
         {"--config", "--check-config", "--init", "--restore", "--help", "--version"}) {
      EXPECT_TRUE(absl::StrContains(r.out, flag))
          << daemon << " --help does not name " << flag << "\n"
          << r.Describe();
    }
    EXPECT_TRUE(absl::StrContains(r.out, daemon)) << r.Describe();
  }
}

TEST_F(DaemonsFlagsTest, TrackerctlAnswersHelpWithItsSubcommands) {
  CommandResult r = Ctl({"--help"}, absl::Seconds(20));
  ASSERT_TRUE(r.exited_with(0)) << r.Describe();
  for (const char* sub : {"keygen", "cert", "author", "release", "campaign", "fleet", "backup"}) {
    EXPECT_TRUE(absl::StrContains(r.out, sub)) << "trackerctl --help does not name " << sub << "\n"
                                               << r.Describe();
  }
  // Subcommands have their own help naming their flags.
  CommandResult wait = Ctl({"fleet", "wait", "--help"}, absl::Seconds(20));
  ASSERT_TRUE(wait.exited_with(0)) << wait.Describe();
  for (const char* flag : {"--component", "--version", "--count", "--admin", "--token-file"}) {
    EXPECT_TRUE(absl::StrContains(wait.out, flag)) << wait.Describe();
  }
}

TEST_F(DaemonsFlagsTest, VersionAndMissingConfig) {
  for (const char* daemon : {"tracker-root", "tracker-intermediate", "tracker-client"}) {
    CommandResult version = Run(daemon, {"--version"}, absl::Seconds(20));
    EXPECT_TRUE(version.exited_with(0)) << version.Describe();
    EXPECT_TRUE(absl::StrContains(version.out, "0.1.0")) << version.Describe();
    // --config is required: a usage error, not a start.
    CommandResult none = Run(daemon, {}, absl::Seconds(20));
    EXPECT_TRUE(none.status && WIFEXITED(*none.status) && WEXITSTATUS(*none.status) != 0)
        << none.Describe();
    EXPECT_TRUE(absl::StrContains(none.err + none.out, "--config")) << none.Describe();
    // A config file that does not exist is a configuration error naming the file.
    std::string missing = File("no-such.toml");
    CommandResult absent = Run(daemon, {"--config", missing}, absl::Seconds(20));
    EXPECT_TRUE(absent.exited_with(2)) << absent.Describe();
    EXPECT_TRUE(absl::StrContains(absent.err, missing)) << absent.Describe();
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Configuration validation, for each daemon (only --check-config or a config error: nothing
// starts, no broker is needed).

struct DaemonKind {
  std::string binary;
  // A required key that is removed (its line starts with `required_line`) and its dotted name.
  std::string required_line;
  std::string required_key;
  // An appended table with a value of the wrong type.
  std::string wrong_table;
  std::string wrong_line;
  std::string wrong_key;
  std::string wrong_expected;
};

// Stable test names in CTest: the parameter prints as the binary's name, not as its bytes.
void PrintTo(const DaemonKind& kind, std::ostream* os) { *os << kind.binary; }

class DaemonsConfigTest : public DaemonsTestBase, public ::testing::WithParamInterface<DaemonKind> {
 protected:
  // --check-config opens every file the configuration names: they must exist and be right.
  void SetUp() override { ASSERT_TRUE(MakePki({"dev-1", "dev-2"})); }

  const std::string& Binary() const { return GetParam().binary; }
  bool IsRoot() const { return Binary() == "tracker-root"; }
  std::string NodeId() const {
    return IsRoot() ? "root" : Binary() == "tracker-intermediate" ? "gw1" : "dev-1";
  }

  // Replaces the line that starts with `prefix` (e.g. "key = ") by `prefix` + `value`; returns
  // its 1-based line number.
  static int SetKey(std::vector<std::string>& lines, const std::string& prefix,
                    const std::string& value) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (absl::StartsWith(lines[i], prefix)) {
        lines[i] = prefix + value;
        return static_cast<int>(i + 1);
      }
    }
    ADD_FAILURE() << "no line starts with " << prefix;
    return 0;
  }

  // Checks `lines` and expects exit 2 with "<file>:<line>: key '<key>': " followed, on the same
  // line, by `fragment`; and nothing created.
  ::testing::AssertionResult FailsAt(const std::string& name, const std::vector<std::string>& lines,
                                     int line, const std::string& key,
                                     const std::string& fragment) {
    CommandResult r = Check(name, lines);
    std::string where = absl::StrCat(File(name), ":", line, ": key '", key, "': ");
    size_t at = r.err.find(where);
    size_t end = at == std::string::npos ? at : r.err.find('\n', at);
    if (!r.exited_with(2) || at == std::string::npos ||
        r.err.substr(at, end == std::string::npos ? std::string::npos : end - at).find(fragment) ==
            std::string::npos) {
      return ::testing::AssertionFailure()
             << "expected exit 2 and \"" << where << "..." << fragment << "\"\n"
             << r.Describe();
    }
    if (Started()) {
      return ::testing::AssertionFailure() << "--check-config made the data directory\n"
                                           << r.Describe();
    }
    return ::testing::AssertionSuccess();
  }

  std::vector<std::string> ValidLines() const {
    const std::string& b = GetParam().binary;
    if (b == "tracker-root") return RootLines();
    if (b == "tracker-intermediate") return IntermediateLines("gw1", "root");
    return ClientLines("dev-1", "gw1");
  }

  // tracker-* --check-config FILE, where FILE holds `lines`.
  CommandResult Check(const std::string& name, const std::vector<std::string>& lines) {
    std::string path = WriteConfig(name, lines);
    return Run(GetParam().binary, {"--check-config", "--config", path}, absl::Seconds(20));
  }

  // True when the daemon got as far as making its data directory (it must not, here).
  bool Started() const {
    for (const char* id : {"root", "gw1", "dev-1"}) {
      if (core::PathExists(File(absl::StrCat("data/", id)))) return true;
    }
    return false;
  }
};

TEST_P(DaemonsConfigTest, ValidConfigPassesCheckConfigWithoutStarting) {
  std::string path = File("valid.toml");
  CommandResult r = Check("valid.toml", ValidLines());
  ASSERT_TRUE(r.exited_with(0)) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat(path, ": OK"))) << r.Describe();
  EXPECT_FALSE(Started()) << "--check-config made the data directory";
}

// Issue #16: a reference configuration must name every key the daemon reads
// (--check-config --complete, what tests/check-examples.sh runs on examples/): the tests' own
// short configuration leaves many at their defaults, and each is named.
TEST_P(DaemonsConfigTest, CompleteCheckNamesEveryKeyLeftAtItsDefault) {
  std::string path = WriteConfig("short.toml", ValidLines());
  CommandResult r =
      Run(GetParam().binary, {"--check-config", "--complete", "--config", path}, absl::Seconds(20));
  EXPECT_TRUE(r.exited_with(2)) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, "does not set")) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, "limits.max_message_bytes")) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, "topic_prefix")) << r.Describe();
  EXPECT_FALSE(Started());
}

TEST_P(DaemonsConfigTest, SyntaxErrorNamesFileLineAndColumn) {
  std::vector<std::string> lines = ValidLines();
  lines.insert(lines.begin() + 2, "log_level = \"no closing quote");  // line 3
  std::string path = File("syntax.toml");
  CommandResult r = Check("syntax.toml", lines);
  EXPECT_TRUE(r.exited_with(2)) << r.Describe();
  std::string where = absl::StrCat(path, ":3:");
  size_t at = r.err.find(where);
  ASSERT_NE(at, std::string::npos) << "expected \"" << where << "<column>\"\n" << r.Describe();
  ASSERT_LT(at + where.size(), r.err.size());
  EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(r.err[at + where.size()])))
      << "no column after \"" << where << "\"\n"
      << r.Describe();
  EXPECT_FALSE(Started());
}

TEST_P(DaemonsConfigTest, UnknownKeyNamesFileAndLine) {
  std::vector<std::string> lines = ValidLines();
  lines.insert(lines.begin() + 2, "data_dri = \"/tmp/typo\"");  // line 3, a typo of data_dir
  std::string path = File("typo.toml");
  CommandResult r = Check("typo.toml", lines);
  EXPECT_TRUE(r.exited_with(2)) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, absl::StrCat(path, ":3: unknown key 'data_dri'")))
      << r.Describe();
  EXPECT_FALSE(Started());
}

TEST_P(DaemonsConfigTest, UnknownKeyInATableNamesFileAndLine) {
  std::vector<std::string> lines = ValidLines();
  ASSERT_EQ(lines[lines.size() - 2], "[log]") << "[log] is no longer the last table";
  lines.push_back("levle = \"debug\"");  // a typo of level, inside [log]
  int line = static_cast<int>(lines.size());
  std::string path = File("typo-table.toml");
  CommandResult r = Check("typo-table.toml", lines);
  EXPECT_TRUE(r.exited_with(2)) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, absl::StrCat(path, ":", line, ": unknown key 'log.levle'")))
      << r.Describe();
}

TEST_P(DaemonsConfigTest, WrongTypeNamesFileLineAndKey) {
  const DaemonKind& k = GetParam();
  std::vector<std::string> lines = ValidLines();
  lines.push_back(k.wrong_table);
  lines.push_back(k.wrong_line);
  int line = static_cast<int>(lines.size());
  std::string path = File("type.toml");
  CommandResult r = Check("type.toml", lines);
  EXPECT_TRUE(r.exited_with(2)) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, absl::StrCat(path, ":", line, ": key '", k.wrong_key,
                                                    "': expected ", k.wrong_expected)))
      << r.Describe();
  EXPECT_FALSE(Started());
}

TEST_P(DaemonsConfigTest, ValueOutOfRangeNamesFileLineAndBounds) {
  std::vector<std::string> lines = ValidLines();
  lines.insert(lines.end(), {"[limits]", "max_message_bytes = 10"});
  int line = static_cast<int>(lines.size());
  std::string path = File("range.toml");
  CommandResult r = Check("range.toml", lines);
  EXPECT_TRUE(r.exited_with(2)) << r.Describe();
  EXPECT_TRUE(absl::StrContains(
      r.err, absl::StrCat(path, ":", line, ": key 'limits.max_message_bytes': 10 is outside [")))
      << r.Describe();
  EXPECT_FALSE(Started());
}

TEST_P(DaemonsConfigTest, MissingRequiredKeyIsNamed) {
  const DaemonKind& k = GetParam();
  std::vector<std::string> lines = ValidLines();
  size_t before = lines.size();
  std::erase_if(lines, [&](const std::string& l) { return absl::StartsWith(l, k.required_line); });
  ASSERT_EQ(lines.size() + 1, before) << "the valid config has no line " << k.required_line;
  std::string path = File("missing.toml");
  CommandResult r = Check("missing.toml", lines);
  EXPECT_TRUE(r.exited_with(2)) << r.Describe();
  EXPECT_TRUE(absl::StrContains(
      r.err, absl::StrCat(path, ": key '", k.required_key, "': missing (required)")))
      << r.Describe();
  EXPECT_FALSE(Started());
}

TEST_P(DaemonsConfigTest, EveryErrorIsReportedAtOnceInFileOrder) {
  const DaemonKind& k = GetParam();
  std::vector<std::string> lines = ValidLines();
  lines.insert(lines.begin() + 2, "data_dri = \"/tmp/typo\"");
  lines.push_back(k.wrong_table);
  lines.push_back(k.wrong_line);
  std::string path = File("several.toml");
  CommandResult r = Check("several.toml", lines);
  EXPECT_TRUE(r.exited_with(2)) << r.Describe();
  size_t typo = r.err.find("unknown key 'data_dri'");
  size_t type = r.err.find(absl::StrCat("key '", k.wrong_key, "'"));
  ASSERT_NE(typo, std::string::npos) << r.Describe();
  ASSERT_NE(type, std::string::npos) << r.Describe();
  EXPECT_LT(typo, type) << "errors are not in file order\n" << r.Describe();
}

// Ids follow the wire's rules (1-64 characters of [A-Za-z0-9._-], never empty): an empty
// parent_id once made the daemons run on x1368//dev-a1/... (issue #14).
TEST_P(DaemonsConfigTest, IdsAreCheckedWithTheWireRules) {
  std::vector<std::pair<std::string, std::string>> keys = {{"node_id = ", "node_id"},
                                                           {"id = ", "root.id"}};
  if (!IsRoot()) keys.push_back({"parent_id = ", "parent_id"});
  for (const auto& [prefix, key] : keys) {
    for (const auto& [value, fragment] : std::vector<std::pair<std::string, std::string>>{
             {"\"\"", "the id is empty"},
             {"\"gw/1\"", "has characters outside [A-Za-z0-9._-]"},
             {"\"_all\"", "is reserved"}}) {
      std::vector<std::string> lines = ValidLines();
      int line = SetKey(lines, prefix, value);
      EXPECT_TRUE(FailsAt("ids.toml", lines, line, key, fragment)) << key << " = " << value;
    }
  }
}

// Every key file, certificate and root public key is opened and parsed by --check-config, and
// each failure names the file, the line and the key (issue #14: they all passed as OK).
TEST_P(DaemonsConfigTest, EveryCredentialFileIsOpenedAndParsed) {
  ASSERT_OK(core::WriteFileAtomic(File("garbage.pem"), "not a key at all\n"));
  ASSERT_OK(core::MakeDirs(File("a-directory")));
  struct Case {
    std::string prefix, key, parse_error;
  };
  std::vector<Case> cases = {{"key = ", "key", "not a PEM private key"},
                             {"public_key = ", "root.public_key", "not a PEM public key"}};
  if (!IsRoot()) cases.push_back({"cert = ", "cert", "not a certificate"});
  for (const Case& c : cases) {
    const std::string missing = File("no-such-file");
    std::vector<std::string> lines = ValidLines();
    int line = SetKey(lines, c.prefix, absl::StrCat("\"", missing, "\""));
    EXPECT_TRUE(FailsAt("files.toml", lines, line, c.key,
                        absl::StrCat("cannot read ", missing, ": No such file or directory")));

    lines = ValidLines();
    SetKey(lines, c.prefix, absl::StrCat("\"", File("a-directory"), "\""));
    EXPECT_TRUE(FailsAt("files.toml", lines, line, c.key,
                        absl::StrCat("cannot read ", File("a-directory"), ": Is a directory")));

    lines = ValidLines();
    SetKey(lines, c.prefix, absl::StrCat("\"", File("garbage.pem"), "\""));
    EXPECT_TRUE(FailsAt("files.toml", lines, line, c.key,
                        absl::StrCat(File("garbage.pem"), ": ", c.parse_error)));
  }
}

// The files are checked against each other and the node id, as the node does when it starts.
TEST_P(DaemonsConfigTest, CredentialsAreCheckedAgainstEachOtherAndTheNodeId) {
  std::vector<std::string> lines = ValidLines();
  if (IsRoot()) {
    int line = SetKey(lines, "key = ", absl::StrCat("\"", File("gw1.key"), "\""));
    EXPECT_TRUE(FailsAt("cross.toml", lines, line, "key", "is not the root anchor's"));
    return;
  }
  // Another node's certificate, then this node's certificate beside another key.
  const std::string other = NodeId() == "dev-1" ? "dev-2" : "dev-1";
  int line = SetKey(lines, "cert = ", absl::StrCat("\"", File(other + ".cert"), "\""));
  EXPECT_TRUE(FailsAt("cross.toml", lines, line, "cert",
                      absl::StrCat("is issued to \"", other, "\", not \"", NodeId(), "\"")));
  lines = ValidLines();
  SetKey(lines, "key = ", absl::StrCat("\"", File(other + ".key"), "\""));
  EXPECT_TRUE(FailsAt("cross.toml", lines, line, "cert", "does not certify the key in"));
}

// Not only --check-config: a plain start with a broken configuration creates nothing either (it
// once made the data directory and the database before failing on the key).
TEST_P(DaemonsConfigTest, AStartWithABrokenConfigurationCreatesNothing) {
  std::vector<std::string> lines = ValidLines();
  int line = SetKey(lines, "public_key = ", absl::StrCat("\"", File("no-such.pub"), "\""));
  std::string path = WriteConfig("start.toml", lines);
  CommandResult r = Run(Binary(), {"--config", path, "--init"}, absl::Seconds(20));
  EXPECT_TRUE(r.exited_with(2)) << r.Describe();
  EXPECT_TRUE(absl::StrContains(
      r.err, absl::StrCat(path, ":", line, ": key 'root.public_key': cannot read ")))
      << r.Describe();
  EXPECT_FALSE(Started()) << r.Describe();
  EXPECT_FALSE(core::PathExists(File("admin.token"))) << r.Describe();
}

INSTANTIATE_TEST_SUITE_P(
    Daemons, DaemonsConfigTest,
    ::testing::Values(DaemonKind{"tracker-root", "broker = ", "downstream.broker", "[fleet]",
                                 "stale_after_s = \"soon\"", "fleet.stale_after_s", "an integer"},
                      DaemonKind{"tracker-intermediate", "parent_id = ", "parent_id", "[cache]",
                                 "max_images = \"many\"", "cache.max_images", "an integer"},
                      DaemonKind{"tracker-client", "parent_id = ", "parent_id", "[metrics]",
                                 "listen = 9100", "metrics.listen", "a string"}),
    [](const ::testing::TestParamInfo<DaemonKind>& info) {
      return absl::StrReplaceAll(info.param.binary, {{"-", "_"}});
    });

// ---------------------------------------------------------------------------------------------
// 3-6. Running trees of daemons on a real Mosquitto.

class DaemonsProcessTest : public DaemonsTestBase {
 protected:
  // SIGTERM (or `sig`), then exit status 0 within 10 s (docs/architecture.md §10: clean shutdown).
  ::testing::AssertionResult TerminatesCleanly(ChildProcess* p, int sig = SIGTERM) {
    absl::Time start = absl::Now();
    p->Signal(sig);
    std::optional<int> status = p->Wait(absl::Seconds(10));
    if (!status) {
      std::string seen = p->Describe();
      p->Stop(absl::Seconds(1));
      return ::testing::AssertionFailure() << p->name() << " still ran 10 s after SIGTERM\n"
                                           << seen;
    }
    if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
      return ::testing::AssertionFailure()
             << p->name() << " ended with " << DescribeWaitStatus(*status) << " after SIGTERM\n"
             << p->Describe();
    }
    std::cerr << p->name() << " stopped in " << absl::FormatDuration(absl::Now() - start) << "\n";
    return ::testing::AssertionSuccess();
  }
};

TEST_F(DaemonsProcessTest, SigtermStopsEveryDaemonCleanly) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1"}));
  ASSERT_TRUE(StartRoot());
  ChildProcess* root = children_.back().get();
  ChildProcess* gw1 = StartDaemon("tracker-intermediate", "gw1",
                                  WriteConfig("gw1.toml", IntermediateLines("gw1", "root")));
  ChildProcess* dev = StartDaemon("tracker-client", "dev-1",
                                  WriteConfig("dev-1.toml", ClientLines("dev-1", "gw1")));
  // The client reported through the intermediate: the whole tree is up.
  ASSERT_TRUE(FleetWait("1.0.0", 1, 60));

  ASSERT_TRUE(TerminatesCleanly(dev));
  ASSERT_TRUE(TerminatesCleanly(gw1));
  ASSERT_TRUE(TerminatesCleanly(root));
  for (ChildProcess* p : {dev, gw1, root}) {
    std::string log = core::ReadFile(p->err_path()).value_or("");
    EXPECT_TRUE(absl::StrContains(log, "event=shutdown")) << p->Describe();
    EXPECT_TRUE(absl::StrContains(log, "event=stopped")) << p->Describe();
  }
}

TEST_F(DaemonsProcessTest, SigtermAndSigintStopDaemonsThatNeverReachedTheirBroker) {
  // No broker at all: the daemons keep retrying their link, and a signal must still stop them.
  ASSERT_TRUE(MakePki({"dev-1"}));
  ChildProcess* gw1 = StartDaemon("tracker-intermediate", "gw1",
                                  WriteConfig("gw1.toml", IntermediateLines("gw1", "root")));
  ChildProcess* dev = StartDaemon("tracker-client", "dev-1",
                                  WriteConfig("dev-1.toml", ClientLines("dev-1", "gw1")));
  for (ChildProcess* p : {gw1, dev}) {
    std::string err = p->err_path();
    ASSERT_TRUE(WaitFor(
        [&] { return absl::StrContains(core::ReadFile(err).value_or(""), "event=started"); },
        absl::Seconds(20)))
        << p->name() << " did not log event=started\n"
        << Logs();
  }
  ASSERT_TRUE(TerminatesCleanly(dev, SIGINT));
  ASSERT_TRUE(TerminatesCleanly(gw1));
}

TEST_F(DaemonsProcessTest, APortInUseFailsTheStartWithExitOneAndAReason) {
  ASSERT_TRUE(MakePki({"dev-1"}));
  BusyPort busy;
  ASSERT_GT(busy.port(), 0);
  std::string taken = absl::StrCat("127.0.0.1:", busy.port());

  // Root's admin API cannot bind.
  std::vector<std::string> root = RootLines();
  std::replace(root.begin(), root.end(), std::string("listen = \"127.0.0.1:0\""),
               absl::StrCat("listen = \"", taken, "\""));
  ChildProcess* r = StartDaemon("tracker-root", "root", WriteConfig("root.toml", root));
  std::optional<int> status = r->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.has_value()) << "tracker-root kept running with its admin port taken\n"
                                  << r->Describe();
  EXPECT_EQ(DescribeWaitStatus(*status), "exit 1") << r->Describe();
  EXPECT_TRUE(absl::StrContains(core::ReadFile(r->err_path()).value_or(""), taken))
      << r->Describe();
  EXPECT_FALSE(core::PathExists(File("data/root/admin.port")));

  // A client's metrics endpoint cannot bind.
  ChildProcess* dev = StartDaemon(
      "tracker-client", "dev-1",
      WriteConfig("dev-1.toml",
                  ClientLines("dev-1", "gw1", {},
                              {"[metrics]", absl::StrCat("listen = \"", taken, "\"")})));
  status = dev->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.has_value()) << "tracker-client kept running with its metrics port taken\n"
                                  << dev->Describe();
  EXPECT_EQ(DescribeWaitStatus(*status), "exit 1") << dev->Describe();
  EXPECT_TRUE(absl::StrContains(core::ReadFile(dev->err_path()).value_or(""), "metrics endpoint"))
      << dev->Describe();
}

// ---------------------------------------------------------------------------------------------
// Operator experience (issue #16): failures speak at the default level, --log-format json,
// /healthz and /readyz, and ports that a second daemon cannot share.

class DaemonsOperatorTest : public DaemonsProcessTest {
 protected:
  // `lines` without the tests' `level = "info"`: the daemon logs at its default level (warn).
  static std::vector<std::string> AtDefaultLevel(std::vector<std::string> lines) {
    lines.erase(std::remove(lines.begin(), lines.end(), std::string("level = \"info\"")),
                lines.end());
    return lines;
  }

  // Starts a daemon with extra flags (after --config and --init).
  ChildProcess* StartWithFlags(const std::string& binary, const std::string& name,
                               const std::string& config, const std::vector<std::string>& flags) {
    children_.push_back(
        std::make_unique<ChildProcess>(name, File(name + ".out"), File(name + ".err")));
    ChildProcess* p = children_.back().get();
    std::vector<std::string> argv = {Bin(binary), "--config", config, "--init"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    EXPECT_OK(p->Start(argv));
    return p;
  }

  // Waits for `p`'s stderr to hold every one of `needles`.
  ::testing::AssertionResult WaitForLog(ChildProcess* p, const std::vector<std::string>& needles,
                                        absl::Duration timeout) {
    auto has_all = [&] {
      std::string log = core::ReadFile(p->err_path()).value_or("");
      for (const std::string& n : needles) {
        if (!absl::StrContains(log, n)) return false;
      }
      return true;
    };
    if (WaitFor(has_all, timeout, absl::Milliseconds(50))) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << p->name() << " did not log " << absl::StrJoin(needles, " and ") << " within "
           << absl::FormatDuration(timeout) << "\n"
           << Logs();
  }

  // The port a daemon wrote to <data_dir>/<file> (metrics.port, admin.port), once it is there.
  int PortFile(const std::string& id, const std::string& file) {
    std::string path = File("data/" + id + "/" + file);
    int port = 0;
    WaitFor(
        [&] {
          auto text = core::ReadFile(path);
          return text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port);
        },
        absl::Seconds(20));
    EXPECT_GT(port, 0) << path << " was not written\n" << Logs();
    return port;
  }

  // GET `path` on `base_url` until `pred` holds for the reply (or `timeout`); the last reply.
  core::HttpReply GetUntil(const std::string& base_url, const std::string& path,
                           const std::function<bool(const core::HttpReply&)>& pred,
                           absl::Duration timeout) {
    core::HttpClient http(base_url, "");
    core::HttpReply last;
    WaitFor(
        [&] {
          auto r = http.Get(path);
          if (!r.ok()) return false;
          last = *r;
          return pred(last);
        },
        timeout, absl::Milliseconds(100));
    return last;
  }
};

TEST_F(DaemonsOperatorTest, AnUnreachableBrokerIsAWarningNamingItAtTheDefaultLevel) {
  // No broker: tcp://127.0.0.1:1 refuses every connection.
  ASSERT_TRUE(MakePki({"dev-1"}));
  ChildProcess* dev =
      StartDaemon("tracker-client", "dev-1",
                  WriteConfig("dev-1.toml", AtDefaultLevel(ClientLines("dev-1", "gw1"))));
  ASSERT_TRUE(WaitForLog(dev,
                         {"level=warning node=dev-1 event=mqtt.connect_failed "
                          "broker=\"tcp://127.0.0.1:1\" client_id=\"dev-1\" failures=1"},
                         absl::Seconds(5)));
  // One warning a minute while it lasts, not one per attempt (the attempts come every few
  // hundred milliseconds at first), and nothing below warn.
  absl::SleepFor(absl::Seconds(3));
  std::string log = core::ReadFile(dev->err_path()).value_or("");
  std::vector<std::string> lines = absl::StrSplit(log, '\n', absl::SkipEmpty());
  int warnings = 0;
  for (const std::string& line : lines) {
    EXPECT_FALSE(absl::StrContains(line, "level=info")) << line;
    if (absl::StrContains(line, "event=mqtt.connect_failed")) ++warnings;
  }
  EXPECT_EQ(warnings, 1) << log;
  EXPECT_TRUE(dev->running()) << dev->Describe();
}

TEST_F(DaemonsOperatorTest, LogFormatJsonWritesOneJsonObjectPerLine) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1"}));
  // The intermediate through its configuration file, the client through the flag.
  std::vector<std::string> gw = IntermediateLines("gw1", "root");
  gw.insert(std::find(gw.begin(), gw.end(), std::string("level = \"info\"")) + 1,
            "format = \"json\"");
  ChildProcess* gw1 = StartDaemon("tracker-intermediate", "gw1", WriteConfig("gw1.toml", gw));
  ChildProcess* dev = StartWithFlags("tracker-client", "dev-1",
                                     WriteConfig("dev-1.toml", ClientLines("dev-1", "gw1")),
                                     {"--log-format", "json"});
  for (ChildProcess* p : {gw1, dev}) {
    ASSERT_TRUE(WaitForLog(p, {"\"event\":\"mqtt.connected\""}, absl::Seconds(20)));
  }
  ASSERT_TRUE(TerminatesCleanly(dev));
  ASSERT_TRUE(TerminatesCleanly(gw1));

  for (auto [p, id] : {std::pair{gw1, "gw1"}, std::pair{dev, "dev-1"}}) {
    std::string log = core::ReadFile(p->err_path()).value_or("");
    std::vector<std::string> lines = absl::StrSplit(log, '\n', absl::SkipEmpty());
    ASSERT_GE(lines.size(), 3u) << log;
    std::set<std::string> events;
    for (const std::string& line : lines) {
      google::protobuf::Struct j;
      auto parsed = google::protobuf::util::JsonStringToMessage(line, &j);
      ASSERT_TRUE(parsed.ok()) << parsed.ToString() << ": " << line;
      for (const char* key : {"ts", "level", "node", "event"}) {
        ASSERT_TRUE(j.fields().contains(key)) << key << " missing: " << line;
      }
      EXPECT_EQ(j.fields().at("node").string_value(), id) << line;
      events.insert(j.fields().at("event").string_value());
      if (j.fields().at("event").string_value() == "mqtt.connected") {
        EXPECT_EQ(j.fields().at("broker").string_value(), BrokerUri()) << line;
        EXPECT_EQ(j.fields().at("client_id").string_value(), id) << line;
        EXPECT_EQ(j.fields().at("level").string_value(), "info") << line;
      }
    }
    for (const char* e : {"started", "mqtt.connected", "shutdown", "stopped"}) {
      EXPECT_EQ(events.count(e), 1u) << id << " logged no " << e << "\n" << log;
    }
  }

  // A format that does not exist is a configuration error naming its key and line.
  std::vector<std::string> bad = IntermediateLines("gw1", "root");
  bad.insert(std::find(bad.begin(), bad.end(), std::string("level = \"info\"")) + 1,
             "format = \"xml\"");
  CommandResult r =
      Run("tracker-intermediate", {"--check-config", "--config", WriteConfig("bad.toml", bad)});
  EXPECT_TRUE(r.exited_with(2)) << r.Describe();
  EXPECT_TRUE(absl::StrContains(r.err, "log.format")) << r.Describe();
  r = Run("tracker-intermediate",
          {"--check-config", "--config", File("gw1.toml"), "--log-format", "xml"});
  EXPECT_FALSE(r.exited_with(0)) << r.Describe();
}

TEST_F(DaemonsOperatorTest, ReadyzAnswers503WithReasonsUntilTheLinksAreUp) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  broker_->Kill();  // its port is known: the nodes start while it is down
  ASSERT_TRUE(MakePki({"dev-1"}));
  ASSERT_TRUE(StartRoot());
  StartDaemon("tracker-client", "dev-1",
              WriteConfig("dev-1.toml", ClientLines("dev-1", "gw1", {},
                                                    {"[metrics]", "listen = \"127.0.0.1:0\""})));
  const std::string dev_metrics =
      absl::StrCat("http://127.0.0.1:", PortFile("dev-1", "metrics.port"));
  auto answered = [](const core::HttpReply&) { return true; };

  core::HttpReply health = GetUntil(dev_metrics, "/healthz", answered, absl::Seconds(10));
  EXPECT_EQ(health.status, 200) << Logs();
  core::HttpReply ready = GetUntil(dev_metrics, "/readyz", answered, absl::Seconds(10));
  EXPECT_EQ(ready.status, 503) << ready.body;
  EXPECT_EQ(ready.content_type, "application/json");
  google::protobuf::Struct j;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(ready.body, &j).ok()) << ready.body;
  EXPECT_FALSE(j.fields().at("ready").bool_value()) << ready.body;
  ASSERT_EQ(j.fields().at("reasons").list_value().values_size(), 1) << ready.body;
  EXPECT_THAT(j.fields().at("reasons").list_value().values(0).string_value(),
              ::testing::HasSubstr("upstream link down"))
      << ready.body;
  // Root's admin API answers the same, without a token.
  core::HttpReply root_ready = GetUntil(admin_url_, "/readyz", answered, absl::Seconds(10));
  EXPECT_EQ(root_ready.status, 503) << root_ready.body;
  EXPECT_TRUE(absl::StrContains(root_ready.body, "downstream link down")) << root_ready.body;
  EXPECT_EQ(GetUntil(admin_url_, "/healthz", answered, absl::Seconds(10)).status, 200);

  // Once the broker is back and the links are up, both are ready.
  ASSERT_OK(broker_->Restart());
  auto is_ready = [](const core::HttpReply& r) { return r.status == 200; };
  ready = GetUntil(dev_metrics, "/readyz", is_ready, absl::Seconds(40));
  EXPECT_EQ(ready.status, 200) << ready.body << Logs();
  EXPECT_EQ(ready.body, "{\"ready\":true,\"reasons\":[]}\n");
  root_ready = GetUntil(admin_url_, "/readyz", is_ready, absl::Seconds(40));
  EXPECT_EQ(root_ready.status, 200) << root_ready.body << Logs();

  // The broker lost again: not ready at once, with the reason.
  broker_->Kill();
  ready = GetUntil(
      dev_metrics, "/readyz", [](const core::HttpReply& r) { return r.status == 503; },
      absl::Seconds(20));
  EXPECT_EQ(ready.status, 503) << ready.body;
  EXPECT_TRUE(absl::StrContains(ready.body, "upstream link down")) << ready.body;
}

TEST_F(DaemonsOperatorTest, ASecondDaemonOnAPortInUseFailsNamingThePort) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1", "dev-2"}));
  ASSERT_TRUE(StartRoot());
  const std::string admin = admin_url_.substr(std::string("http://").size());

  // A second root (its own data_dir) configured on the first one's admin port.
  std::vector<std::string> second = RootLines();
  for (std::string& line : second) {
    if (line == "listen = \"127.0.0.1:0\"") line = absl::StrCat("listen = \"", admin, "\"");
    absl::StrReplaceAll({{File("data/root"), File("data/root2")}}, &line);
  }
  ChildProcess* root2 = StartDaemon("tracker-root", "root2", WriteConfig("root2.toml", second));
  std::optional<int> status = root2->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.has_value()) << "a second root kept running on the admin port " << admin
                                  << "\n"
                                  << root2->Describe();
  EXPECT_EQ(DescribeWaitStatus(*status), "exit 1") << root2->Describe();
  std::string err = core::ReadFile(root2->err_path()).value_or("");
  EXPECT_TRUE(absl::StrContains(err, admin)) << err;
  EXPECT_TRUE(absl::StrContains(err, "already in use")) << err;
  // It failed before it connected to the broker with root's client id: the first root kept its
  // MQTT session, and the second created nothing.
  EXPECT_FALSE(absl::StrContains(core::ReadFile(root_->err_path()).value_or(""),
                                 "event=mqtt.connection_lost"))
      << root_->Describe();
  EXPECT_FALSE(core::PathExists(File("data/root2/root.db")));
  // Every request still reaches the first root.
  auto token = core::ReadFile(File("admin.token"));
  ASSERT_OK(token);
  core::HttpClient http(admin_url_, std::string(absl::StripAsciiWhitespace(*token)));
  for (int i = 0; i < 6; ++i) {
    auto r = http.Get("/v1/summary");
    ASSERT_OK(r);
    EXPECT_EQ(r->status, 200) << r->body;
  }

  // Two metrics endpoints on one port: the second daemon fails naming it.
  StartDaemon("tracker-client", "dev-1",
              WriteConfig("dev-1.toml", ClientLines("dev-1", "root", {},
                                                    {"[metrics]", "listen = \"127.0.0.1:0\""})));
  const std::string metrics = absl::StrCat("127.0.0.1:", PortFile("dev-1", "metrics.port"));
  ChildProcess* dev2 = StartDaemon(
      "tracker-client", "dev-2",
      WriteConfig("dev-2.toml",
                  ClientLines("dev-2", "root", {},
                              {"[metrics]", absl::StrCat("listen = \"", metrics, "\"")})));
  status = dev2->Wait(absl::Seconds(20));
  ASSERT_TRUE(status.has_value()) << "a second metrics endpoint kept running on " << metrics << "\n"
                                  << dev2->Describe();
  EXPECT_EQ(DescribeWaitStatus(*status), "exit 1") << dev2->Describe();
  err = core::ReadFile(dev2->err_path()).value_or("");
  EXPECT_TRUE(absl::StrContains(err, "metrics endpoint")) << err;
  EXPECT_TRUE(absl::StrContains(err, metrics)) << err;
  EXPECT_TRUE(absl::StrContains(err, "already in use")) << err;
}

TEST_F(DaemonsOperatorTest, AClientIdInUseTwiceIsOneErrorPerEpisodeNotOnePerFlap) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1"}));
  // The same device twice (a clone, or a second instance started by mistake): each connection
  // closes the other's (Mosquitto 2.0 closes the old connection without a DISCONNECT naming the
  // takeover, so the nodes see a link that keeps being lost within seconds).
  std::vector<ChildProcess*> twins;
  for (const char* name : {"dev-1", "dev-1-twin"}) {
    std::vector<std::string> lines =
        AtDefaultLevel(ClientLines("dev-1", "gw1", {}, {"[metrics]", "listen = \"127.0.0.1:0\""}));
    for (std::string& line : lines) {
      absl::StrReplaceAll({{File("data/dev-1"), File(absl::StrCat("data/", name))}}, &line);
    }
    twins.push_back(
        StartDaemon("tracker-client", name, WriteConfig(absl::StrCat(name, ".toml"), lines)));
  }
  std::vector<std::string> metrics;
  for (const char* name : {"dev-1", "dev-1-twin"}) {
    metrics.push_back(absl::StrCat("http://127.0.0.1:", PortFile(name, "metrics.port")));
  }
  // Many losses, counted by the two nodes' metrics, over long enough for the backoff to let a
  // connection last past 10 s now and then (which ended the flapping report before).
  auto losses = [&] {
    uint64_t total = 0;
    for (const std::string& url : metrics) {
      core::HttpClient http(url, "");
      auto r = http.Get("/metrics");
      if (!r.ok()) continue;
      for (absl::string_view line : absl::StrSplit(r->body, '\n')) {
        uint64_t n = 0;
        if (absl::ConsumePrefix(&line, "x1368_mqtt_connection_losses_total{link=\"upstream\"} ") &&
            absl::SimpleAtoi(line, &n)) {
          total += n;
        }
      }
    }
    return total;
  };
  uint64_t seen = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        seen = losses();
        return seen >= 12;
      },
      absl::Seconds(150), absl::Milliseconds(500)))
      << "only " << seen << " connections lost\n"
      << Logs();
  std::cerr << seen << " connections lost\n";
  int errors = 0;
  for (ChildProcess* p : twins) {
    EXPECT_TRUE(p->running()) << "a device must not exit over its client id\n" << p->Describe();
    std::string log = core::ReadFile(p->err_path()).value_or("");
    int conflict = 0;
    int lost = 0;
    for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
      if (absl::StrContains(line, "event=mqtt.session_taken_over") ||
          absl::StrContains(line, "event=mqtt.link_flapping")) {
        EXPECT_TRUE(absl::StrContains(line, "level=error")) << line;
        EXPECT_TRUE(absl::StrContains(line, "client_id=\"dev-1\"")) << line;
        EXPECT_TRUE(absl::StrContains(line, "client id dev-1")) << line;
        ++conflict;
      }
      if (absl::StrContains(line, "event=mqtt.connection_lost")) ++lost;
    }
    EXPECT_LE(conflict, 1) << p->name() << " logged the conflict more than once:\n" << log;
    // The losses before the conflict was recognised (3 quick ones in a row) are warnings; the
    // rest are part of the episode.
    EXPECT_LE(lost, 3) << p->name() << " logged every lost connection:\n" << log;
    errors += conflict;
  }
  EXPECT_GE(errors, 1) << Logs();
}

TEST_F(DaemonsOperatorTest, AdminRequestsWithoutTheTokenAreAWarningAtTheDefaultLevel) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({}));
  root_ =
      StartDaemon("tracker-root", "root", WriteConfig("root.toml", AtDefaultLevel(RootLines())));
  ASSERT_TRUE(WaitForAdminPort());
  for (const char* token : {"", "not-the-token-0123456789", ""}) {
    core::HttpClient http(admin_url_, token);
    auto r = http.Get("/v1/fleet");
    ASSERT_OK(r);
    EXPECT_EQ(r->status, 401) << r->body;
  }
  // The first refusal is said at once; the next ones within the minute are counted, not logged.
  ASSERT_TRUE(WaitForLog(root_,
                         {"level=warning node=root event=admin.unauthorized method=\"GET\" "
                          "path=\"/v1/fleet\" token=missing suppressed=0"},
                         absl::Seconds(5)));
  std::string log = core::ReadFile(root_->err_path()).value_or("");
  std::vector<absl::string_view> parts = absl::StrSplit(log, "event=admin.unauthorized");
  EXPECT_EQ(parts.size(), 2u) << log;
  // Probes carry no token and are not refused.
  core::HttpClient probe(admin_url_, "");
  auto health = probe.Get("/healthz");
  ASSERT_OK(health);
  EXPECT_EQ(health->status, 200);
}

TEST_F(DaemonsProcessTest, MetricsEndpointsAndAdminAuthentication) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1"}));
  ASSERT_TRUE(StartRoot());
  // Port 0: each daemon binds a free port itself and writes it to <data_dir>/metrics.port (a port
  // picked in advance could be taken by a parallel test meanwhile).
  StartDaemon("tracker-intermediate", "gw1",
              WriteConfig("gw1.toml", IntermediateLines("gw1", "root", "127.0.0.1:0")));
  StartDaemon("tracker-client", "dev-1",
              WriteConfig("dev-1.toml", ClientLines("dev-1", "gw1", {},
                                                    {"[metrics]", "listen = \"127.0.0.1:0\""})));
  ASSERT_TRUE(FleetWait("1.0.0", 1, 60));
  auto metrics_at = [this](const std::string& id) {
    auto text = core::ReadFile(File("data/" + id + "/metrics.port"));
    int port = 0;
    EXPECT_TRUE(text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port))
        << id << " wrote no metrics.port\n"
        << Logs();
    return absl::StrCat("127.0.0.1:", port);
  };
  const std::string gw_metrics = metrics_at("gw1");
  const std::string dev_metrics = metrics_at("dev-1");

  // GET /metrics on each node's endpoint: Prometheus text with the x1368_ counters.
  auto fetch = [this](const std::string& url, const std::string& path, const std::string& token,
                      core::HttpReply* out) {
    core::HttpClient http(url, token);
    absl::StatusOr<core::HttpReply> r = absl::UnknownError("not fetched");
    bool ok = WaitFor(
        [&] {
          r = http.Get(path);
          return r.ok();
        },
        absl::Seconds(10), absl::Milliseconds(100));
    if (ok) *out = *r;
    return ok ? ::testing::AssertionSuccess()
              : ::testing::AssertionFailure() << "GET " << url << path << ": " << r.status() << "\n"
                                              << Logs();
  };
  core::HttpReply r;
  ASSERT_TRUE(fetch("http://" + dev_metrics, "/metrics", "", &r));
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(absl::StrContains(r.body, "x1368_")) << r.body;
  EXPECT_TRUE(absl::StrContains(r.body, "x1368_mqtt_connects_total")) << r.body;
  ASSERT_TRUE(fetch("http://" + dev_metrics, "/healthz", "", &r));
  EXPECT_EQ(r.status, 200);

  ASSERT_TRUE(fetch("http://" + gw_metrics, "/metrics", "", &r));
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(absl::StrContains(r.body, "x1368_mqtt_connects_total{link=\"upstream\"}")) << r.body;

  // Root's admin port serves /metrics without a token, the API only with the bearer token.
  ASSERT_TRUE(fetch(admin_url_, "/metrics", "", &r));
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(absl::StrContains(r.body, "x1368_")) << r.body;

  ASSERT_TRUE(fetch(admin_url_, "/v1/fleet", "", &r));
  EXPECT_EQ(r.status, 401) << r.body;
  ASSERT_TRUE(fetch(admin_url_, "/v1/fleet", "not-the-token-0123456789", &r));
  EXPECT_EQ(r.status, 401) << r.body;

  auto token = core::ReadFile(File("admin.token"));
  ASSERT_OK(token);
  ASSERT_TRUE(fetch(admin_url_, "/v1/fleet", std::string(absl::StripAsciiWhitespace(*token)), &r));
  EXPECT_EQ(r.status, 200) << r.body;
  google::protobuf::util::JsonParseOptions o;
  o.ignore_unknown_fields = true;
  v1::FleetStatus fleet;
  auto parsed = google::protobuf::util::JsonStringToMessage(r.body, &fleet, o);
  ASSERT_TRUE(parsed.ok()) << parsed.ToString() << "\n" << r.body;
  const v1::DeviceRecord* d = FindDevice(fleet, "dev-1");
  ASSERT_NE(d, nullptr) << r.body;
  EXPECT_EQ(d->version(), "1.0.0");
  EXPECT_EQ(d->via(), "gw1");
}

// Issue #16 item 6: after an update of two devices under gw1 and one directly under root, root's
// /metrics (on its admin port) and gw1's count them by subtree, version and state, root's report
// latency histogram has observations, and every series reads back with its HELP and TYPE.
TEST_F(DaemonsProcessTest, MetricsAfterAnUpdateCountDevicesByVersionAndState) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1", "dev-2", "dev-3"}));
  ASSERT_TRUE(StartRoot());
  StartDaemon("tracker-intermediate", "gw1",
              WriteConfig("gw1.toml", IntermediateLines("gw1", "root", "127.0.0.1:0")));
  for (const std::string d : {"dev-1", "dev-2"}) {
    StartDaemon("tracker-client", d, WriteConfig(d + ".toml", ClientLines(d, "gw1")));
  }
  StartDaemon("tracker-client", "dev-3", WriteConfig("dev-3.toml", ClientLines("dev-3", "root")));
  ASSERT_TRUE(FleetWait("1.0.0", 3, 60));
  ASSERT_TRUE(PublishRelease("2.0.0", 2, 100 * 1024));
  ASSERT_TRUE(StartCampaign("2.0.0"));
  ASSERT_TRUE(FleetWait("2.0.0", 3, 120));

  auto scrape = [this](const std::string& url) {
    auto r = core::HttpClient(url, "").Get("/metrics");
    EXPECT_TRUE(r.ok() && r->status == 200) << url << ": " << (r.ok() ? r->body : "") << Logs();
    Exposition e = ParseExposition(r.ok() ? r->body : "");
    EXPECT_TRUE(e.errors.empty()) << url << ":\n" << absl::StrJoin(e.errors, "\n");
    return e;
  };
  const std::map<std::string, std::string> confirmed = {{"version", "2.0.0"},
                                                        {"state", "CONFIRMED"}};
  Exposition root;
  EXPECT_TRUE(WaitFor([&] {
    root = scrape(admin_url_);
    return root.Sum("x1368_devices", confirmed) == 3;
  })) << "root's x1368_devices{version=\"2.0.0\",state=\"CONFIRMED\"}: "
      << root.Sum("x1368_devices", confirmed);
  EXPECT_EQ(root.Sum("x1368_devices", {{"subtree", "gw1"}, {"online", "true"}}), 2);
  EXPECT_EQ(root.Sum("x1368_devices", {{"subtree", "direct"}, {"online", "true"}}), 1);
  EXPECT_EQ(root.Sum("x1368_nodes", {{"online", "true"}}), 1);  // gw1; dev-3 is no tracker
  EXPECT_EQ(root.Sum("x1368_campaign_devices", {{"status", "targeted"}}), 3);
  EXPECT_EQ(root.Sum("x1368_campaign_devices", {{"status", "confirmed"}}), 3);
  EXPECT_GT(root.Sum("x1368_report_latency_seconds_count"), 0);
  EXPECT_EQ(root.Sum("x1368_build_info"), 1);
  EXPECT_GT(root.Sum("process_resident_memory_bytes"), 0);
  // Root's own MQTT link, on the admin API's /metrics too.
  EXPECT_EQ(root.Sum("x1368_mqtt_connected", {{"link", "downstream"}}), 1);

  auto port = core::ReadFile(File("data/gw1/metrics.port"));
  ASSERT_OK(port);
  const std::string gw1 = absl::StrCat("http://127.0.0.1:", absl::StripAsciiWhitespace(*port));
  Exposition gw;
  EXPECT_TRUE(WaitFor([&] {
    gw = scrape(gw1);
    return gw.Sum("x1368_subtree_devices", confirmed) == 2;
  })) << "gw1's x1368_subtree_devices: "
      << gw.Sum("x1368_subtree_devices", confirmed);
  EXPECT_EQ(gw.Sum("x1368_mqtt_connected", {{"link", "upstream"}}), 1);
  EXPECT_EQ(gw.help.count("x1368_mqtt_connects_total"), 1u);
}

TEST_F(DaemonsProcessTest, SignedUpdateDrivenByTrackerctl) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  std::vector<std::string> devices = {"dev-1", "dev-2"};
  ASSERT_TRUE(MakePki(devices));
  ASSERT_TRUE(StartRoot());
  StartDaemon("tracker-intermediate", "gw1",
              WriteConfig("gw1.toml", IntermediateLines("gw1", "root")));
  for (const std::string& d : devices) {
    StartDaemon("tracker-client", d, WriteConfig(d + ".toml", ClientLines(d, "gw1")));
  }
  ASSERT_TRUE(FleetWait("1.0.0", 2, 60));

  ASSERT_TRUE(PublishRelease("2.0.0", 2, 300 * 1024));
  // X.1368 §11.2 a: with 2.0.0 released, both devices are on the obsolete list.
  auto page = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"fleet", "status"});
    args.push_back("--json");
    CommandResult r = Admin(args);
    EXPECT_TRUE(r.exited_with(0)) << r.Describe();
    v1::DevicePage p;
    google::protobuf::util::JsonParseOptions o;
    o.ignore_unknown_fields = true;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &p, o).ok()) << r.out;
    std::vector<std::string> ids;
    for (const v1::DeviceRecord& d : p.devices()) ids.push_back(d.device_id());
    return std::pair{ids, p};
  };
  auto [obsolete, before] = page({"--obsolete", "--component", "fw"});
  EXPECT_EQ(obsolete, devices);
  for (const v1::DeviceRecord& d : before.devices()) EXPECT_EQ(d.latest_version(), "2.0.0");
  ASSERT_TRUE(StartCampaign("2.0.0"));
  ASSERT_TRUE(FleetWait("2.0.0", 2, 120));
  EXPECT_TRUE(page({"--obsolete"}).first.empty());
  // A page at a time: the cursor leads to the rest.
  auto [first, first_page] = page({"--up-to-date", "--subtree", "gw1", "--limit", "1"});
  EXPECT_EQ(first, (std::vector<std::string>{"dev-1"}));
  ASSERT_EQ(first_page.next_after(), "dev-1");
  EXPECT_EQ(page({"--up-to-date", "--limit", "1", "--after", "dev-1"}).first,
            (std::vector<std::string>{"dev-2"}));
  CommandResult offline = Admin({"fleet", "status", "--offline"});
  ASSERT_TRUE(offline.exited_with(0)) << offline.Describe();
  EXPECT_TRUE(absl::StrContains(offline.out, "DEVICE")) << offline.out;
  EXPECT_FALSE(absl::StrContains(offline.out, "dev-1")) << offline.out;
  CommandResult shown = Admin({"device", "show", "dev-1"});
  ASSERT_TRUE(shown.exited_with(0)) << shown.Describe();
  EXPECT_TRUE(absl::StrContains(shown.out, "path:       gw1")) << shown.out;
  EXPECT_TRUE(absl::StrContains(shown.out, "version:    2.0.0")) << shown.out;
  // Issue #13: "show me device X" asks gw1, whose registry holds dev-1's own signed report
  // (verified by root: the CONFIRMED it recorded) and its log of exchanges with dev-1.
  CommandResult live = Admin({"device", "show", "dev-1", "--live"});
  ASSERT_TRUE(live.exited_with(0)) << live.Describe();
  EXPECT_TRUE(absl::StrContains(live.out, "gateway:    gw1 says online")) << live.out;
  EXPECT_TRUE(absl::StrContains(live.out, "its own signature verified by root; the one root's"))
      << live.out;
  EXPECT_TRUE(absl::StrContains(live.out, "desired state")) << live.out;
  EXPECT_TRUE(absl::StrContains(live.out, "chunk request")) << live.out;
  CommandResult unknown = Admin({"device", "show", "dev-nobody"});
  EXPECT_FALSE(unknown.exited_with(0)) << unknown.Describe();
  EXPECT_TRUE(absl::StrContains(unknown.err, "no device dev-nobody")) << unknown.Describe();
  CommandResult bad = Admin({"fleet", "status", "--limit", "5000"});
  EXPECT_FALSE(bad.exited_with(0)) << bad.Describe();
  EXPECT_TRUE(absl::StrContains(bad.err, "at most 1000") || absl::StrContains(bad.err, "1000"))
      << bad.Describe();

  CommandResult raw;
  auto fleet = FleetStatus(&raw);
  ASSERT_OK(fleet);
  EXPECT_TRUE(absl::StrContains(raw.out, "\"2.0.0\"")) << raw.out;
  for (const std::string& id : devices) {
    const v1::DeviceRecord* d = FindDevice(*fleet, id);
    ASSERT_NE(d, nullptr) << id << " missing from\n" << raw.out;
    EXPECT_EQ(d->version(), "2.0.0") << raw.out;
    EXPECT_EQ(d->state(), v1::CONFIRMED) << raw.out;
    EXPECT_EQ(d->sequence_number(), 2u) << raw.out;
    EXPECT_EQ(d->via(), "gw1") << raw.out;
  }
  // The human-readable table names both devices too.
  CommandResult table = Admin({"fleet", "status"});
  ASSERT_TRUE(table.exited_with(0)) << table.Describe();
  for (const std::string& id : devices) {
    EXPECT_TRUE(absl::StrContains(table.out, id)) << table.out;
  }
}

// Issue #14 (X.1368 §10 freshness): real devices whose clocks are wrong, under faketime(1)
// (libfaketime; its monotonic clock left alone, as a wrong RTC leaves it). One runs a year
// behind, one a day behind (their own certificate and their gateway's look not yet valid). Not
// ahead: under faketime, Abseil's timed waits (futex deadlines on CLOCK_REALTIME, which
// libfaketime cannot reach) would sleep for the skew; ahead is covered in process
// (WrongClockTest). Each starts anyway, learns its gateway's signed time, shows at root with its
// offset, and completes the update.
TEST_F(DaemonsProcessTest, DevicesWithWrongClocksUnderFaketimeSyncAndUpdate) {
  const std::string faketime = "/usr/bin/faketime";
  ASSERT_EQ(access(faketime.c_str(), X_OK), 0) << "faketime is missing: run scripts/setup.sh";
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1", "dev-2"}));
  ASSERT_TRUE(StartRoot());
  StartDaemon("tracker-intermediate", "gw1",
              WriteConfig("gw1.toml", IntermediateLines("gw1", "root")));
  constexpr int64_t kDayMs = 86'400'000;
  const std::map<std::string, std::pair<std::string, int64_t>> skews = {
      {"dev-1", {"-1y", -365 * kDayMs}}, {"dev-2", {"-1d", -kDayMs}}};
  // Under ASan (the sanitizer build of the tests), libfaketime is preloaded ahead of ASan's
  // runtime, which ASan refuses unless told that the order is fine.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string asan_options =
      absl::StrCat("ASAN_OPTIONS=", asan != nullptr ? asan : "", asan != nullptr ? ":" : "",
                   "verify_asan_link_order=0");
  for (const auto& [id, skew] : skews) {
    children_.push_back(std::make_unique<ChildProcess>(id, File(id + ".out"), File(id + ".err")));
    ASSERT_OK(
        children_.back()->Start({"/usr/bin/env", "DONT_FAKE_MONOTONIC=1", asan_options, faketime,
                                 "-f", skew.first, Bin("tracker-client"), "--config",
                                 WriteConfig(id + ".toml", ClientLines(id, "gw1")), "--init"}));
  }
  auto offsets_shown = [&](const v1::FleetStatus& f) {
    for (const auto& [id, skew] : skews) {
      const v1::DeviceRecord* d = FindDevice(f, id);
      // Within a minute: faketime's offset is taken when the process starts.
      if (d == nullptr || std::llabs(d->clock_offset_ms() + skew.second) > 60'000) return false;
    }
    return true;
  };
  ASSERT_TRUE(
      WaitForFleet("both devices with their clock offsets", offsets_shown, absl::Seconds(60)));
  ASSERT_TRUE(PublishRelease("2.0.0", 2, 64 * 1024));
  ASSERT_TRUE(StartCampaign("2.0.0"));
  ASSERT_TRUE(FleetWait("2.0.0", 2, 120));
  CommandResult shown = Admin({"device", "show", "dev-1"});
  ASSERT_TRUE(shown.exited_with(0)) << shown.Describe();
  EXPECT_TRUE(absl::StrContains(shown.out, "clock:      offset 3153")) << shown.out;
  EXPECT_TRUE(absl::StrContains(shown.out, "CLOCK_SKEW")) << shown.out;
  std::string log = core::ReadFile(File("dev-1.err")).value_or("");
  EXPECT_TRUE(absl::StrContains(log, "event=cert.out_of_validity")) << log;
  EXPECT_TRUE(absl::StrContains(log, "event=time.corrected")) << log;
}

// X.1368 §11.2 b.i and §11.2 (modules) c, through the Last Will: a client and a gateway killed
// without a word (SIGKILL: no MQTT DISCONNECT) are shown offline at root within seconds (their
// Will Delay, kWillDelayS, then the relay), long
// before root's staleness rule (fleet.stale_after_s, an hour here) could say so; the nodes that
// still run stay online.
TEST_F(DaemonsProcessTest, KilledNodesAreShownOfflineAtRoot) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1", "dev-2"}));
  ASSERT_TRUE(StartRoot({"[fleet]", "stale_after_s = 3600"}));
  ChildProcess* gw1 = StartDaemon("tracker-intermediate", "gw1",
                                  WriteConfig("gw1.toml", IntermediateLines("gw1", "root")));
  // dev-1 directly under root (client-server model), dev-2 behind gw1 (hierarchical).
  ChildProcess* dev1 = StartDaemon("tracker-client", "dev-1",
                                   WriteConfig("dev-1.toml", ClientLines("dev-1", "root")));
  StartDaemon("tracker-client", "dev-2", WriteConfig("dev-2.toml", ClientLines("dev-2", "gw1")));
  ASSERT_TRUE(FleetWait("1.0.0", 2, 60));
  auto online = [](const v1::FleetStatus& f, const std::string& id) {
    const v1::NodeRecord* n = FindNode(f, id);
    return n != nullptr && n->online();
  };
  ASSERT_TRUE(WaitForFleet(
      "dev-1 and gw1 online",
      [&](const v1::FleetStatus& f) {
        const v1::DeviceRecord* d = FindDevice(f, "dev-1");
        return online(f, "dev-1") && online(f, "gw1") && d != nullptr && d->online();
      },
      absl::Seconds(30)));

  dev1->Signal(SIGKILL);
  std::optional<int> status = dev1->Wait(absl::Seconds(10));
  ASSERT_TRUE(status && WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL)
      << (status ? DescribeWaitStatus(*status) : "still running");
  EXPECT_TRUE(WaitForFleet(
      "dev-1 offline (its node record and its device record) while dev-2 and gw1 stay online",
      [&](const v1::FleetStatus& f) {
        const v1::NodeRecord* n = FindNode(f, "dev-1");
        const v1::DeviceRecord* d1 = FindDevice(f, "dev-1");
        const v1::DeviceRecord* d2 = FindDevice(f, "dev-2");
        return n != nullptr && !n->online() && d1 != nullptr && !d1->online() && d2 != nullptr &&
               d2->online() && online(f, "gw1");
      },
      absl::Seconds(20)));

  gw1->Signal(SIGKILL);
  status = gw1->Wait(absl::Seconds(10));
  ASSERT_TRUE(status && WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL)
      << (status ? DescribeWaitStatus(*status) : "still running");
  EXPECT_TRUE(WaitForFleet(
      "gw1 offline, and dev-2 behind it unreachable",
      [&](const v1::FleetStatus& f) {
        const v1::NodeRecord* n = FindNode(f, "gw1");
        const v1::DeviceRecord* d2 = FindDevice(f, "dev-2");
        return n != nullptr && !n->online() && d2 != nullptr && !d2->online();
      },
      absl::Seconds(20)));
}

// Issue #13, liveness: a device that stops sending while its connection stays up (hung, or a
// link that lost its packets: no Will comes for the keepalive's 1.5x) is down once its gateway
// missed its heartbeats (children.heartbeat_timeout_s), and up again when it speaks.
TEST_F(DaemonsProcessTest, ASilentDeviceIsDownAfterMissedHeartbeatsAndUpWhenItSpeaksAgain) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1", "dev-2"}));
  ASSERT_TRUE(StartRoot({"[fleet]", "stale_after_s = 3600"}));
  std::vector<std::string> gw = IntermediateLines("gw1", "root");
  gw.insert(gw.end(), {"[children]", "heartbeat_timeout_s = 4"});
  StartDaemon("tracker-intermediate", "gw1", WriteConfig("gw1.toml", gw));
  auto fast = [&](const std::string& id) {
    std::vector<std::string> lines = ClientLines(id, "gw1");
    for (std::string& l : lines) {
      if (l == "report_interval_s = 5") l = "report_interval_s = 1";
    }
    return lines;
  };
  StartDaemon("tracker-client", "dev-1", WriteConfig("dev-1.toml", fast("dev-1")));
  ChildProcess* dev2 =
      StartDaemon("tracker-client", "dev-2", WriteConfig("dev-2.toml", fast("dev-2")));
  ASSERT_TRUE(FleetWait("1.0.0", 2, 60));
  auto device_online = [](const v1::FleetStatus& f, const std::string& id) {
    const v1::DeviceRecord* d = FindDevice(f, id);
    return d == nullptr ? std::optional<bool>() : std::optional<bool>(d->online());
  };
  ASSERT_TRUE(WaitForFleet(
      "both online",
      [&](const v1::FleetStatus& f) {
        return device_online(f, "dev-1") == true && device_online(f, "dev-2") == true;
      },
      absl::Seconds(30)));
  dev2->Signal(SIGSTOP);
  absl::Time stopped = absl::Now();
  EXPECT_TRUE(WaitForFleet(
      "dev-2 offline, dev-1 online",
      [&](const v1::FleetStatus& f) {
        return device_online(f, "dev-2") == false && device_online(f, "dev-1") == true;
      },
      absl::Seconds(15)));
  EXPECT_GE(absl::Now() - stopped, absl::Seconds(3)) << "down before its heartbeats were missed";
  dev2->Signal(SIGCONT);
  EXPECT_TRUE(WaitForFleet(
      "dev-2 online again",
      [&](const v1::FleetStatus& f) { return device_online(f, "dev-2") == true; },
      absl::Seconds(15)));
}

// A node stopped cleanly (SIGTERM: an MQTT DISCONNECT, after which the broker discards the Will)
// says it is going: root shows it offline at once, not when its reports go stale (an hour here).
TEST_F(DaemonsProcessTest, CleanlyStoppedNodesAreShownOfflineAtOnce) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1"}));
  ASSERT_TRUE(StartRoot({"[fleet]", "stale_after_s = 3600"}));
  ChildProcess* gw1 = StartDaemon("tracker-intermediate", "gw1",
                                  WriteConfig("gw1.toml", IntermediateLines("gw1", "root")));
  ChildProcess* dev1 = StartDaemon("tracker-client", "dev-1",
                                   WriteConfig("dev-1.toml", ClientLines("dev-1", "root")));
  ASSERT_TRUE(FleetWait("1.0.0", 1, 60));
  auto node_online = [](const v1::FleetStatus& f, const std::string& id) {
    const v1::NodeRecord* n = FindNode(f, id);
    return n == nullptr ? std::optional<bool>() : std::optional<bool>(n->online());
  };
  ASSERT_TRUE(WaitForFleet(
      "dev-1 and gw1 online",
      [&](const v1::FleetStatus& f) {
        return node_online(f, "dev-1") == true && node_online(f, "gw1") == true;
      },
      absl::Seconds(30)));
  for (ChildProcess* p : {dev1, gw1}) {
    ASSERT_TRUE(TerminatesCleanly(p));
    absl::Time stopped = absl::Now();
    const std::string id = p == dev1 ? "dev-1" : "gw1";
    EXPECT_TRUE(WaitForFleet(
        absl::StrCat(id, " offline"),
        [&](const v1::FleetStatus& f) { return node_online(f, id) == false; }, absl::Seconds(10)));
    EXPECT_LT(absl::Now() - stopped, absl::Seconds(5)) << id << " was not offline at once";
  }
}

// X.1368 §11.3 e, through trackerctl and root's admin API: once fw 2.0.0 is released with
// sequence number 2, another image as 2.0.0 and another version with sequence number 2 are
// refused (HTTP 409, typed reason, exit 5: refused by root); the very same release again is
// accepted idempotently.
TEST_F(DaemonsProcessTest, ReleaseReusingAVersionOrSequenceNumberIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({}));
  ASSERT_TRUE(StartRoot());
  // Signs a random image (seed `seed`) as fw `version` / `sequence` and publishes it.
  auto publish = [&](const std::string& name, const std::string& version, uint64_t sequence,
                     uint32_t seed) {
    std::string image = File(name + ".bin");
    std::string manifest = File(name + ".manifest");
    EXPECT_OK(core::WriteFileAtomic(image, TestPki::MakeImage(64 * 1024, seed)));
    CommandResult sign =
        Ctl({"author", "sign", "--key", File("author-1.key"), "--cert", File("author-1.cert"),
             "--image", image, "--component", "fw", "--version", version, "--sequence",
             absl::StrCat(sequence), "--hardware", "board-a", "--out", manifest});
    EXPECT_TRUE(sign.exited_with(0)) << sign.Describe();
    return Admin({"release", "publish", "--manifest", manifest, "--image", image});
  };

  CommandResult first = publish("first", "2.0.0", 2, 1);
  ASSERT_TRUE(first.exited_with(0)) << first.Describe() << Logs();

  CommandResult same_version = publish("same-version", "2.0.0", 3, 2);
  EXPECT_TRUE(same_version.exited_with(5)) << same_version.Describe();
  EXPECT_TRUE(absl::StrContains(same_version.err, "HTTP 409")) << same_version.Describe();
  EXPECT_TRUE(absl::StrContains(same_version.err, "RELEASE_VERSION_EXISTS"))
      << same_version.Describe();

  CommandResult same_sequence = publish("same-sequence", "2.1.0", 2, 3);
  EXPECT_TRUE(same_sequence.exited_with(5)) << same_sequence.Describe();
  EXPECT_TRUE(absl::StrContains(same_sequence.err, "HTTP 409")) << same_sequence.Describe();
  EXPECT_TRUE(absl::StrContains(same_sequence.err, "RELEASE_SEQUENCE_EXISTS"))
      << same_sequence.Describe();

  // The first release, submitted again unchanged: accepted, nothing new stored.
  CommandResult again = Admin(
      {"release", "publish", "--manifest", File("first.manifest"), "--image", File("first.bin")});
  EXPECT_TRUE(again.exited_with(0)) << again.Describe();

  CommandResult raw;
  auto fleet = FleetStatus(&raw);
  ASSERT_OK(fleet);
  ASSERT_EQ(fleet->releases_size(), 1) << raw.out;
  EXPECT_EQ(fleet->releases(0).version(), "2.0.0") << raw.out;
  EXPECT_EQ(fleet->releases(0).sequence_number(), 2u) << raw.out;
  EXPECT_EQ(fleet->releases(0).sha256_hex(),
            core::HexEncode(core::Sha256(TestPki::MakeImage(64 * 1024, 1))))
      << raw.out;
}

// An operator uploads a release with plain curl (README): the form trackerctl sends, here from
// the curl program itself, with an image over 1 MiB so that curl asks "Expect: 100-continue"
// first. The wrong token is refused before the image is sent.
TEST_F(DaemonsProcessTest, CurlUploadsAReleaseAsTrackerctlDoes) {
  std::string curl;
  for (absl::string_view dir :
       absl::StrSplit(std::getenv("PATH") ? std::getenv("PATH") : "", ':')) {
    std::string candidate = absl::StrCat(dir, "/curl");
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) {
      curl = candidate;
      break;
    }
  }
  ASSERT_FALSE(curl.empty()) << "no curl on PATH (scripts/setup.sh installs it)";
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({}));
  ASSERT_TRUE(StartRoot());
  const std::string image = File("fw.bin");
  const std::string manifest = File("fw.manifest");
  const std::string bytes = TestPki::MakeImage(3 * 1024 * 1024 + 17, 11);
  ASSERT_OK(core::WriteFileAtomic(image, bytes));
  CommandResult sign =
      Ctl({"author", "sign", "--key", File("author-1.key"), "--cert", File("author-1.cert"),
           "--image", image, "--component", "fw", "--version", "2.0.0", "--sequence", "2",
           "--hardware", "board-a", "--out", manifest});
  ASSERT_TRUE(sign.exited_with(0)) << sign.Describe();
  auto token = core::ReadFile(File("admin.token"));
  ASSERT_OK(token);
  auto upload = [&](const std::string& bearer) {
    return RunProgram(
        "curl", curl,
        {"-sS", "-w", "\nHTTP %{http_code}\n", "-H", absl::StrCat("Authorization: Bearer ", bearer),
         "-F", absl::StrCat("manifest=@", manifest), "-F", absl::StrCat("image=@", image),
         absl::StrCat(admin_url_, "/v1/releases")});
  };

  CommandResult denied = upload("not-the-token-0123456789");
  ASSERT_TRUE(denied.exited_with(0)) << denied.Describe();
  EXPECT_TRUE(absl::StrContains(denied.out, "HTTP 401")) << denied.Describe();
  EXPECT_TRUE(absl::StrContains(denied.out, "bearer token")) << denied.Describe();

  CommandResult r = upload(std::string(absl::StripAsciiWhitespace(*token)));
  ASSERT_TRUE(r.exited_with(0)) << r.Describe() << Logs();
  EXPECT_TRUE(absl::StrContains(r.out, "HTTP 201")) << r.Describe() << Logs();
  EXPECT_TRUE(absl::StrContains(r.out, "\"version\":\"2.0.0\"")) << r.Describe();

  CommandResult raw;
  auto fleet = FleetStatus(&raw);
  ASSERT_OK(fleet);
  ASSERT_EQ(fleet->releases_size(), 1) << raw.out;
  EXPECT_EQ(fleet->releases(0).sha256_hex(), core::HexEncode(core::Sha256(bytes))) << raw.out;
  EXPECT_EQ(fleet->releases(0).size(), bytes.size()) << raw.out;
}

// Issue #14: the version "2.5.0\nts=2099 level=critical node=root event=FORGED" was signed,
// accepted by root and wrote a forged line into root's log. trackerctl refuses to sign it, and
// root refuses such a manifest signed by other means (HTTP 400, MANIFEST_MALFORMED), its log
// without a forged line; a valid release still goes through.
TEST_F(DaemonsProcessTest, AVersionOutsideTheGrammarIsRefusedAtSigningAndAtPublish) {
  const std::string forged = "2.5.0\nts=2099 level=critical node=root event=FORGED";
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({}));
  ASSERT_TRUE(StartRoot());
  std::string image = File("fw.bin");
  ASSERT_OK(core::WriteFileAtomic(image, TestPki::MakeImage(64 * 1024, 7)));

  CommandResult sign =
      Ctl({"author", "sign", "--key", File("author-1.key"), "--cert", File("author-1.cert"),
           "--image", image, "--component", "fw", "--version", forged, "--sequence", "2",
           "--hardware", "board-a", "--out", File("forged.manifest")});
  EXPECT_TRUE(sign.exited_with(1)) << sign.Describe();
  EXPECT_TRUE(absl::StrContains(sign.err, "MANIFEST_MALFORMED")) << sign.Describe();
  EXPECT_TRUE(absl::StrContains(sign.err, "\"2.5.0\\nts=2099")) << sign.Describe();
  EXPECT_FALSE(core::PathExists(File("forged.manifest")));

  // The same manifest signed with the author's key by other means than trackerctl.
  auto key = core::PrivateKey::LoadPemFile(File("author-1.key"));
  ASSERT_OK(key);
  auto cert_bytes = core::ReadFile(File("author-1.cert"));
  ASSERT_OK(cert_bytes);
  v1::Manifest m = TestPki::ManifestFor(TestPki::MakeImage(64 * 1024, 7), "fw", forged, 2,
                                        {"board-a"}, "author-1");
  v1::SignedManifest sm;
  m.SerializeToString(sm.mutable_manifest());
  sm.set_author_id("author-1");
  sm.set_alg(v1::ED25519);
  sm.set_signature(*key->Sign(core::SignedKind::kManifest, sm.manifest()));
  ASSERT_TRUE(sm.mutable_author_cert()->ParseFromString(*cert_bytes));
  ASSERT_OK(core::WriteFileAtomic(File("forged.manifest"), sm.SerializeAsString()));
  CommandResult publish =
      Admin({"release", "publish", "--manifest", File("forged.manifest"), "--image", image});
  EXPECT_TRUE(publish.exited_with(5)) << publish.Describe();
  EXPECT_TRUE(absl::StrContains(publish.err, "HTTP 400")) << publish.Describe();
  EXPECT_TRUE(absl::StrContains(publish.err, "MANIFEST_MALFORMED")) << publish.Describe();

  EXPECT_TRUE(PublishRelease("2.5.0", 2, 64 * 1024));
  auto fleet = FleetStatus();
  ASSERT_OK(fleet);
  ASSERT_EQ(fleet->releases_size(), 1);
  EXPECT_EQ(fleet->releases(0).version(), "2.5.0");
  // Root logs at info here: every line it wrote is one of its own. The refused version may
  // appear inside a quoted, escaped value (the refusal says what was refused), never as keys.
  auto keys_outside_quotes = [](absl::string_view line) {
    std::string out;
    bool quoted = false;
    for (size_t i = 0; i < line.size(); ++i) {
      if (quoted && line[i] == '\\') {
        ++i;  // an escaped character inside a value
      } else if (line[i] == '"') {
        quoted = !quoted;
      } else if (!quoted) {
        out.push_back(line[i]);
      }
    }
    return out;
  };
  std::string log = core::ReadFile(root_->err_path()).value_or("");
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    EXPECT_TRUE(absl::StartsWith(line, "ts=2") && !absl::StartsWith(line, "ts=2099") &&
                !absl::StrContains(keys_outside_quotes(line), "event=FORGED"))
        << "a line root did not write:\n"
        << line;
  }
  EXPECT_TRUE(absl::StrContains(log, "event=release.published component=\"fw\" version=\"2.5.0\""))
      << log;
}

// ---------------------------------------------------------------------------------------------
// No silent state loss (issue #14, item 1): root's database lost while root was stopped.

std::string RootDb() { return "data/root/root.db"; }

// Root's database deleted, then emptied, while root was stopped: root refuses to start as new
// (exit 1, naming its data_dir and --init) and creates nothing; started with --init it begins
// as a new root whose sequence numbers are above everything it sent before, so the gateway and
// the device take its next campaign (before the fix: dropped as replays, silently).
TEST_F(DaemonsProcessTest, RootWithALostStoreRefusesToStartUntilToldToInitAndIsThenHeard) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1"}));
  ASSERT_TRUE(StartRoot());
  StartDaemon("tracker-intermediate", "gw1",
              WriteConfig("gw1.toml", IntermediateLines("gw1", "root")));
  StartDaemon("tracker-client", "dev-1", WriteConfig("dev-1.toml", ClientLines("dev-1", "gw1")));
  ASSERT_TRUE(FleetWait("1.0.0", 1, 60));
  ASSERT_TRUE(PublishRelease("2.0.0", 2, 64 * 1024));
  ASSERT_TRUE(StartCampaign("2.0.0"));
  ASSERT_TRUE(FleetWait("2.0.0", 1, 120));
  ASSERT_TRUE(TerminatesCleanly(root_));

  for (const char* suffix : {"", "-wal", "-shm"}) {
    ASSERT_OK(core::RemoveFile(File(RootDb() + suffix)));
  }
  const std::vector<std::string> plain = {"--config", File("root.toml")};
  CommandResult deleted = Run("tracker-root", plain, absl::Seconds(20));
  EXPECT_TRUE(deleted.exited_with(1)) << deleted.Describe();
  EXPECT_TRUE(absl::StrContains(deleted.err, absl::StrCat("data_dir ", File("data/root"))))
      << deleted.Describe();
  EXPECT_TRUE(absl::StrContains(deleted.err, "--init")) << deleted.Describe();
  EXPECT_FALSE(core::PathExists(File(RootDb()))) << "the refused start made a database";

  ASSERT_OK(core::WriteFileAtomic(File(RootDb()), ""));  // emptied
  CommandResult emptied = Run("tracker-root", plain, absl::Seconds(20));
  EXPECT_TRUE(emptied.exited_with(1)) << emptied.Describe();
  EXPECT_TRUE(absl::StrContains(emptied.err, "--init")) << emptied.Describe();
  EXPECT_EQ(core::FileSize(File(RootDb())).value_or(1), 0u);

  ASSERT_TRUE(RestartRoot({"--init"}));
  auto fleet = FleetStatus();
  ASSERT_OK(fleet);
  EXPECT_EQ(fleet->releases_size(), 0) << "a new root knows no releases";
  EXPECT_TRUE(
      absl::StrContains(core::ReadFile(root_->err_path()).value_or(""), "event=store.initialised"));
  ASSERT_TRUE(FleetWait("2.0.0", 1, 60));  // the device is heard again
  ASSERT_TRUE(PublishRelease("3.0.0", 3, 64 * 1024));
  ASSERT_TRUE(StartCampaign("3.0.0"));
  ASSERT_TRUE(FleetWait("3.0.0", 1, 120));
  fleet = FleetStatus();
  ASSERT_OK(fleet);
  const v1::NodeRecord* gw1 = FindNode(*fleet, "gw1");
  ASSERT_NE(gw1, nullptr);
  for (const v1::ReasonCount& rc : gw1->parent_rejections()) {
    EXPECT_NE(rc.reason(), v1::REPLAY) << "gw1 dropped some of the new root's messages";
  }
}

// A child that refuses its parent's messages as replays says so where the operator looks: root's
// database put back from a file copy (not --restore) after root had restarted twice, so its
// numbers went back past gw1's window. gw1 logs a warning, reports the count up, root logs a
// warning naming gw1, and trackerctl fleet status prints it.
TEST_F(DaemonsProcessTest, AChildThatRefusesItsParentsMessagesAsReplaysIsVisibleAtRoot) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1"}));
  ASSERT_TRUE(StartRoot());
  ChildProcess* gw1 = StartDaemon("tracker-intermediate", "gw1",
                                  WriteConfig("gw1.toml", IntermediateLines("gw1", "root")));
  StartDaemon("tracker-client", "dev-1", WriteConfig("dev-1.toml", ClientLines("dev-1", "gw1")));
  ASSERT_TRUE(FleetWait("1.0.0", 1, 60));
  ASSERT_TRUE(TerminatesCleanly(root_));
  auto copy = core::ReadFile(File(RootDb()));  // closed cleanly: the WAL is checkpointed
  ASSERT_OK(copy);

  // Each start that sends leases 1,024 numbers past the last lease: two starts, each with a
  // campaign that reaches gw1, put root's numbers beyond the copy's by more than gw1's window of
  // 64 (after one, the copy's next numbers would be within the window: dropped as duplicates).
  ASSERT_TRUE(RestartRoot());
  ASSERT_TRUE(PublishRelease("2.0.0", 2, 64 * 1024));
  ASSERT_TRUE(StartCampaign("2.0.0"));
  ASSERT_TRUE(FleetWait("2.0.0", 1, 120));
  ASSERT_TRUE(TerminatesCleanly(root_));
  ASSERT_TRUE(RestartRoot());
  ASSERT_TRUE(PublishRelease("2.1.0", 3, 64 * 1024));
  ASSERT_TRUE(StartCampaign("2.1.0"));
  ASSERT_TRUE(FleetWait("2.1.0", 1, 120));
  ASSERT_TRUE(TerminatesCleanly(root_));

  for (const char* suffix : {"-wal", "-shm"}) ASSERT_OK(core::RemoveFile(File(RootDb() + suffix)));
  ASSERT_OK(core::WriteFileAtomic(File(RootDb()), *copy));
  ASSERT_TRUE(RestartRoot());  // its first message, a status request, is refused by gw1

  ASSERT_TRUE(WaitForFleet(
      "gw1 reporting REPLAY refusals of its parent's messages",
      [](const v1::FleetStatus& f) {
        const v1::NodeRecord* n = FindNode(f, "gw1");
        if (n == nullptr) return false;
        for (const v1::ReasonCount& rc : n->parent_rejections()) {
          if (rc.reason() == v1::REPLAY && rc.count() > 0) return true;
        }
        return false;
      },
      absl::Seconds(30)));
  EXPECT_TRUE(absl::StrContains(core::ReadFile(gw1->err_path()).value_or(""),
                                "level=warning node=gw1 event=parent.replay_refused"))
      << gw1->Describe();
  EXPECT_TRUE(WaitFor([&] {
    return absl::StrContains(core::ReadFile(root_->err_path()).value_or(""),
                             "level=warning node=root event=child.refuses_parent node=\"gw1\"");
  })) << root_->Describe();
  CommandResult table = Admin({"fleet", "status"});
  ASSERT_TRUE(table.exited_with(0)) << table.Describe();
  EXPECT_TRUE(absl::StrContains(table.out, "warning: gw1 (via gw1) refused")) << table.out;
}

// An online backup of the running root (trackerctl backup: SQLite's backup API through the
// admin API), restored after its whole data_dir was wiped (tracker-root --restore, with the
// images copied back as README says): root continues with its releases and campaigns, and its
// children take its next campaign although root had sent messages, over two more starts, after
// the backup was taken (the restore raises its sequence numbers to the clock).
TEST_F(DaemonsProcessTest, RootRestoredFromAnOnlineBackupContinuesAndIsHeard) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1"}));
  ASSERT_TRUE(StartRoot());
  StartDaemon("tracker-intermediate", "gw1",
              WriteConfig("gw1.toml", IntermediateLines("gw1", "root")));
  StartDaemon("tracker-client", "dev-1", WriteConfig("dev-1.toml", ClientLines("dev-1", "gw1")));
  ASSERT_TRUE(FleetWait("1.0.0", 1, 60));
  ASSERT_TRUE(PublishRelease("2.0.0", 2, 64 * 1024));
  ASSERT_TRUE(StartCampaign("2.0.0"));
  ASSERT_TRUE(FleetWait("2.0.0", 1, 120));

  const std::string backup = File("root-backup.db");
  CommandResult taken = Admin({"backup", "--out", backup});
  ASSERT_TRUE(taken.exited_with(0)) << taken.Describe() << Logs();
  EXPECT_TRUE(absl::StrContains(taken.out, "backed up root's database")) << taken.Describe();
  std::error_code ec;
  std::filesystem::copy(File("data/root/images"), File("images-backup"),
                        std::filesystem::copy_options::recursive, ec);
  ASSERT_FALSE(ec) << ec.message();

  // Root goes on after the backup, over two more starts, each with a release and a campaign
  // that reach gw1: its numbers pass the backup's by more than two leases of 1,024, so that a
  // restore that put them back as they were would be dropped as replays.
  for (const auto& [version, sequence] : {std::pair<std::string, int>{"2.1.0", 3}, {"2.2.0", 4}}) {
    ASSERT_TRUE(TerminatesCleanly(root_));
    ASSERT_TRUE(RestartRoot());
    ASSERT_TRUE(PublishRelease(version, sequence, 64 * 1024));
    ASSERT_TRUE(StartCampaign(version));
    ASSERT_TRUE(FleetWait(version, 1, 120));
  }
  ASSERT_TRUE(TerminatesCleanly(root_));

  std::filesystem::remove_all(File("data/root"), ec);
  ASSERT_FALSE(ec) << ec.message();
  const std::vector<std::string> plain = {"--config", File("root.toml")};
  CommandResult refused = Run("tracker-root", plain, absl::Seconds(20));
  EXPECT_TRUE(refused.exited_with(1)) << refused.Describe();
  std::vector<std::string> restore = plain;
  restore.insert(restore.end(), {"--restore", backup});
  CommandResult restored = Run("tracker-root", restore, absl::Seconds(30));
  ASSERT_TRUE(restored.exited_with(0)) << restored.Describe();
  EXPECT_TRUE(absl::StrContains(restored.out, "restored " + backup)) << restored.Describe();
  CommandResult again = Run("tracker-root", restore, absl::Seconds(30));
  EXPECT_TRUE(again.exited_with(1)) << "a restore over an initialised store\n" << again.Describe();
  EXPECT_TRUE(absl::StrContains(again.err, "holds the initialised store")) << again.Describe();
  std::filesystem::copy(File("images-backup"), File("data/root/images"),
                        std::filesystem::copy_options::recursive, ec);
  ASSERT_FALSE(ec) << ec.message();

  ASSERT_TRUE(RestartRoot());
  auto fleet = FleetStatus();
  ASSERT_OK(fleet);
  ASSERT_EQ(fleet->releases_size(), 1) << "the backup holds 2.0.0, not 2.1.0 nor 2.2.0";
  EXPECT_EQ(fleet->releases(0).version(), "2.0.0");
  ASSERT_EQ(fleet->campaigns_size(), 1);
  EXPECT_EQ(fleet->campaigns(0).version(), "2.0.0");
  ASSERT_NE(FindDevice(*fleet, "dev-1"), nullptr);
  EXPECT_FALSE(absl::StrContains(core::ReadFile(root_->err_path()).value_or(""),
                                 "event=release.image_missing"));

  ASSERT_TRUE(PublishRelease("3.0.0", 5, 64 * 1024));
  ASSERT_TRUE(StartCampaign("3.0.0"));
  ASSERT_TRUE(FleetWait("3.0.0", 1, 120));
  fleet = FleetStatus();
  ASSERT_OK(fleet);
  const v1::NodeRecord* gw1 = FindNode(*fleet, "gw1");
  ASSERT_NE(gw1, nullptr);
  for (const v1::ReasonCount& rc : gw1->parent_rejections()) {
    EXPECT_NE(rc.reason(), v1::REPLAY) << "gw1 dropped some of the restored root's messages";
  }
}

// Issue #14 case 4: the broker goes away right after a campaign started, for longer than a
// device's chunk retries and update attempts last (here 2 tries of 300 ms, 2 attempts). Those
// are transient failures: the devices keep retrying, with backoff, until the campaign's
// deadline, and all of them update once the broker is back. Before, a device ended FAILED.
TEST_F(DaemonsProcessTest, ABrokerOutageLongerThanTheRetriesEndsInEveryDeviceUpdated) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1", "dev-2"}));
  ASSERT_TRUE(StartRoot());
  StartDaemon("tracker-intermediate", "gw1",
              WriteConfig("gw1.toml", IntermediateLines("gw1", "root")));
  for (const char* id : {"dev-1", "dev-2"}) {
    StartDaemon(
        "tracker-client", id,
        WriteConfig(absl::StrCat(id, ".toml"),
                    ClientLines(id, "gw1",
                                {"chunk_timeout_ms = 300", "chunk_tries = 2", "max_attempts = 2",
                                 "retry_delay_ms = 200", "max_retry_delay_s = 2"})));
  }
  ASSERT_TRUE(FleetWait("1.0.0", 2, 60));
  // Small chunks, so the downloads are under way when the broker goes.
  ASSERT_TRUE(PublishRelease("2.0.0", 2, 1024 * 1024, /*chunk_size=*/4096));
  ASSERT_TRUE(StartCampaign("2.0.0"));
  ASSERT_TRUE(
      WaitFor([&] { return core::FileSize(File("data/dev-1/slots/slot-b.img")).value_or(0) > 0; },
              absl::Seconds(30)));
  broker_->Kill();
  absl::SleepFor(absl::Seconds(8));
  ASSERT_OK(broker_->Restart());
  ASSERT_TRUE(FleetWait("2.0.0", 2, 90)) << Logs();
  std::string log = core::ReadFile(File("dev-1.err")).value_or("") +
                    core::ReadFile(File("dev-2.err")).value_or("");
  EXPECT_FALSE(absl::StrContains(log, "state=FAILED")) << log;
  EXPECT_TRUE(absl::StrContains(log, "event=update.retry"))
      << "the outage never reached the devices' retries: the test proves nothing\n"
      << log;
}

// A size-limited tmpfs mounted for one test, unmounted when it ends: a real filesystem that
// fills up. Mounting needs root (CI runs as root, as does the fresh Debian run).
class SmallDisk {
 public:
  static std::unique_ptr<SmallDisk> Mount(const std::string& dir, const std::string& size) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    std::string cmd = absl::StrCat("mount -t tmpfs -o size=", size, ",mode=0700 x1368-test '", dir,
                                   "' 2>/dev/null");
    if (std::system(cmd.c_str()) != 0) return nullptr;
    return std::unique_ptr<SmallDisk>(new SmallDisk(dir));
  }
  ~SmallDisk() {
    std::string cmd = absl::StrCat("umount -l '", dir_, "' 2>/dev/null");
    (void)std::system(cmd.c_str());
  }
  uint64_t free_bytes() const {
    std::error_code ec;
    auto space = std::filesystem::space(dir_, ec);
    return ec ? 0 : space.available;
  }

 private:
  explicit SmallDisk(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

// Issue #14: a device whose data directory is a real filesystem too small for the image (a 1 MiB
// tmpfs, a 2 MiB image). The download fails when the disk is full, the partial slot is discarded
// and the space freed, the device stays on its image and root sees FAILED STORAGE_FULL. It still
// restarts and reports, and takes a smaller update.
TEST_F(DaemonsProcessTest, AFullDiskFailsTheDownloadFreesItsSpaceAndTheDeviceRecovers) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a size-limited tmpfs needs root";
  auto disk = SmallDisk::Mount(File("data/dev-1"), "1m");
  ASSERT_NE(disk, nullptr) << "cannot mount a tmpfs (running without CAP_SYS_ADMIN?)";
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1"}));
  ASSERT_TRUE(StartRoot());
  StartDaemon("tracker-intermediate", "gw1",
              WriteConfig("gw1.toml", IntermediateLines("gw1", "root")));
  std::string dev_config = WriteConfig("dev-1.toml", ClientLines("dev-1", "gw1"));
  ChildProcess* dev = StartDaemon("tracker-client", "dev-1", dev_config);
  ASSERT_TRUE(FleetWait("1.0.0", 1, 60));
  const uint64_t free_before = disk->free_bytes();

  ASSERT_TRUE(PublishRelease("2.0.0", 2, 2 * 1024 * 1024));
  ASSERT_TRUE(StartCampaign("2.0.0"));
  const v1::DeviceRecord* d = nullptr;
  absl::StatusOr<v1::FleetStatus> fleet;
  ASSERT_TRUE(WaitFor(
      [&] {
        fleet = FleetStatus();
        d = fleet.ok() ? FindDevice(*fleet, "dev-1") : nullptr;
        return d != nullptr && d->state() == v1::FAILED;
      },
      absl::Seconds(60)))
      << Logs();
  EXPECT_EQ(d->reason(), v1::STORAGE_FULL) << d->ShortDebugString();
  EXPECT_EQ(d->version(), "1.0.0");
  EXPECT_THAT(d->detail(), ::testing::HasSubstr("No space left")) << d->ShortDebugString();
  EXPECT_FALSE(core::PathExists(File("data/dev-1/slots/slot-b.img")))
      << "the partial download was kept";
  EXPECT_GE(disk->free_bytes() + 64 * 1024, free_before) << "the space was not given back";
  EXPECT_TRUE(
      absl::StrContains(core::ReadFile(dev->err_path()).value_or(""), "event=update.storage_full"));

  // A restart on the same small disk, then an image that fits.
  ASSERT_TRUE(TerminatesCleanly(dev));
  ASSERT_OK(dev->Start({Bin("tracker-client"), "--config", dev_config}));
  ASSERT_TRUE(PublishRelease("2.0.1", 3, 128 * 1024));
  ASSERT_TRUE(StartCampaign("2.0.1"));
  // (Not `fleet wait`: it takes the FAILED of the first campaign for the end of this one.)
  EXPECT_TRUE(WaitFor(
      [&] {
        fleet = FleetStatus();
        d = fleet.ok() ? FindDevice(*fleet, "dev-1") : nullptr;
        return d != nullptr && d->version() == "2.0.1" && d->state() == v1::CONFIRMED;
      },
      absl::Seconds(60)))
      << (d != nullptr ? d->ShortDebugString() : "") << Logs();
}

// X.1368 §10 c, §11.1 a.iii / docs/architecture.md §8: a device that loses power in the middle of a
// download resumes from its persisted state when it comes back, and a device stopped politely does
// the same.
TEST_F(DaemonsProcessTest, ClientKilledMidDownloadResumesAfterRestart) {
  ASSERT_NO_FATAL_FAILURE(StartBroker());
  ASSERT_TRUE(MakePki({"dev-1"}));
  ASSERT_TRUE(StartRoot());
  StartDaemon("tracker-intermediate", "gw1",
              WriteConfig("gw1.toml", IntermediateLines("gw1", "root")));
  // Small chunks, two in flight: 512 chunks, so the download lasts long enough to be cut.
  std::string dev_config = WriteConfig(
      "dev-1.toml", ClientLines("dev-1", "gw1", {"window = 2", "retry_delay_ms = 200"}));
  ChildProcess* dev = StartDaemon("tracker-client", "dev-1", dev_config);
  ASSERT_TRUE(FleetWait("1.0.0", 1, 60));

  constexpr uint64_t kImageSize = 2 * 1024 * 1024;
  ASSERT_TRUE(PublishRelease("2.0.0", 2, kImageSize, /*chunk_size=*/4096));
  ASSERT_TRUE(StartCampaign("2.0.0"));

  // Waits until at least `min_bytes` of the image are on dev-1's disk: the stub consumer writes
  // into the inactive slot (B, since A runs 1.0.0). The slot alone is watched: root hears of
  // DOWNLOADING a few hundred ms after it began (reports are coalesced), about when a 2 MiB
  // download on loopback ends, and a trackerctl call per poll would let the moment pass.
  const std::string slot = File("data/dev-1/slots/slot-b.img");
  auto wait_mid_download = [&](uint64_t min_bytes) -> ::testing::AssertionResult {
    bool too_late = false;
    uint64_t partial = 0;
    bool caught = WaitFor(
        [&] {
          partial = core::FileSize(slot).value_or(0);
          too_late = partial >= kImageSize;
          return too_late || partial >= min_bytes;
        },
        absl::Seconds(60), absl::Milliseconds(2));
    if (!caught || too_late) {
      return ::testing::AssertionFailure()
             << (too_late ? "the download finished before the test could cut it"
                          : "dev-1 did not get far enough into its download")
             << " (wanted " << min_bytes << " bytes); " << partial << " bytes in " << slot << "\n"
             << Logs();
    }
    return ::testing::AssertionSuccess() << partial;
  };
  auto log_size = [&] { return core::ReadFile(dev->err_path()).value_or("").size(); };

  // Power cut: SIGKILL at 64 KiB.
  ASSERT_TRUE(wait_mid_download(64 * 1024));
  dev->Signal(SIGKILL);
  std::optional<int> status = dev->Wait(absl::Seconds(10));
  ASSERT_TRUE(status && WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL)
      << (status ? DescribeWaitStatus(*status) : "still running");
  uint64_t killed_at = core::FileSize(slot).value_or(0);
  std::cerr << "killed dev-1 with " << killed_at << " of " << kImageSize << " bytes in its slot\n";
  ASSERT_LT(killed_at, kImageSize);

  // Power back on: the same binary, the same configuration, the same data directory. It picks
  // the update up from its persisted state, not from a new offer.
  size_t log_mark = log_size();
  ASSERT_OK(dev->Start({Bin("tracker-client"), "--config", dev_config}));
  ASSERT_TRUE(WaitFor(
      [&] {
        return absl::StrContains(core::ReadFile(dev->err_path()).value_or("").substr(log_mark),
                                 "event=update.resume state=DOWNLOADING");
      },
      absl::Seconds(20)))
      << "the restarted client did not resume its download\n"
      << dev->Describe();

  // A polite stop in the middle of the resumed download: exit 0 within 10 s, then resume again.
  ASSERT_TRUE(wait_mid_download(killed_at + 256 * 1024));
  ASSERT_TRUE(TerminatesCleanly(dev));
  uint64_t stopped_at = core::FileSize(slot).value_or(0);
  std::cerr << "stopped dev-1 with " << stopped_at << " bytes in its slot\n";
  ASSERT_LT(stopped_at, kImageSize) << "the download finished before SIGTERM took effect";
  log_mark = log_size();
  ASSERT_OK(dev->Start({Bin("tracker-client"), "--config", dev_config}));

  ASSERT_TRUE(FleetWait("2.0.0", 1, 120));
  auto fleet = FleetStatus();
  ASSERT_OK(fleet);
  const v1::DeviceRecord* d = FindDevice(*fleet, "dev-1");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->version(), "2.0.0");
  EXPECT_EQ(d->state(), v1::CONFIRMED) << v1::UpdateState_Name(d->state()) << "\n" << Logs();
  EXPECT_TRUE(dev->running()) << Logs();
  std::string after = core::ReadFile(dev->err_path()).value_or("").substr(log_mark);
  EXPECT_TRUE(absl::StrContains(after, "event=update.resume state=DOWNLOADING")) << after;
}

}  // namespace
}  // namespace x1368::testing
