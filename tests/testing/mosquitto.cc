#include "testing/mosquitto.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "x1368/core/file_util.h"

namespace x1368::testing {
namespace {

bool CanConnect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

std::string MosquittoBinary() {
  for (const char* p : {"/usr/sbin/mosquitto", "/usr/bin/mosquitto"}) {
    if (core::PathExists(p)) return p;
  }
  return "mosquitto";
}

absl::Status Run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  if (rc != 0) return absl::InternalError(absl::StrCat("command failed (", rc, "): ", cmd));
  return absl::OkStatus();
}

}  // namespace

int FreeTcpPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

bool ProcessListensOn(pid_t pid, int port) {
  // /proc/net/tcp: "sl local_address rem_address st ... uid timeout inode", addresses in hex.
  auto table = core::ReadFile("/proc/net/tcp");
  if (!table.ok()) return false;
  std::set<std::string> inodes;
  for (absl::string_view line : absl::StrSplit(*table, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.size() < 10 || f[3] != "0A") continue;  // 0A: LISTEN
    size_t colon = f[1].find(':');
    if (colon == absl::string_view::npos) continue;
    int p = static_cast<int>(std::strtol(std::string(f[1].substr(colon + 1)).c_str(), nullptr, 16));
    if (p == port) inodes.insert(absl::StrCat("socket:[", f[9], "]"));
  }
  if (inodes.empty()) return false;
  std::string fd_dir = absl::StrCat("/proc/", pid, "/fd");
  DIR* dir = ::opendir(fd_dir.c_str());
  if (dir == nullptr) return false;
  bool found = false;
  while (dirent* e = ::readdir(dir)) {
    char target[256];
    std::string link = absl::StrCat(fd_dir, "/", e->d_name);
    ssize_t n = ::readlink(link.c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    if (inodes.count(target)) {
      found = true;
      break;
    }
  }
  ::closedir(dir);
  return found;
}

absl::StatusOr<std::unique_ptr<MosquittoBroker>> MosquittoBroker::Start(const std::string& dir,
                                                                        MosquittoOptions options) {
  std::unique_ptr<MosquittoBroker> b(new MosquittoBroker(dir, std::move(options), 0));
  if (b->options_.tls) {
    if (absl::Status s = b->WriteTlsMaterial(); !s.ok()) return s;
  }
  // A port can be lost to a parallel test between FreeTcpPort() and the broker's bind: then the
  // broker is started again on another one.
  absl::Status s;
  for (int attempt = 0; attempt < 10; ++attempt) {
    b->port_ = FreeTcpPort();
    if (s = b->WriteConfig(); !s.ok()) return s;
    s = b->Launch();
    if (!absl::IsFailedPrecondition(s)) break;
  }
  if (!s.ok()) return s;
  return b;
}

std::vector<std::string> MosquittoBroker::DropEpisodes() const {
  std::vector<std::string> lines;
  auto log = core::ReadFile(log_path());
  if (!log.ok()) return lines;
  for (absl::string_view line : absl::StrSplit(*log, '\n')) {
    if (absl::StrContains(line, "Outgoing messages are being dropped")) lines.emplace_back(line);
  }
  return lines;
}

absl::Status MosquittoBroker::WriteConfig() {
  const std::string& dir = dir_;
  std::string conf =
      absl::StrCat("listener ", port_, " 127.0.0.1\n", "user root\n", "persistence false\n",
                   "log_dest file ", log_path(), "\n",
                   "log_type error\nlog_type warning\nlog_type notice\n", "set_tcp_nodelay true\n");
  if (options_.max_queued_messages > 0) {
    absl::StrAppend(&conf, "max_queued_messages ", options_.max_queued_messages, "\n");
  }
  if (options_.tls) {
    const std::string& p = options_.topic_prefix;
    absl::StrAppend(&conf, "cafile ", dir, "/ca.crt\n", "certfile ", dir, "/server.crt\n",
                    "keyfile ", dir, "/server.key\n", "require_certificate true\n",
                    "use_identity_as_username true\n", "tls_version tlsv1.3\n",
                    "allow_anonymous false\n", "acl_file ", dir, "/acl\n");
    std::string acl = absl::StrCat(
        "# Each node may only use topics that carry its own id.\n", "pattern write ", p,
        "/%u/+/down/#\n", "pattern write ", p, "/+/%u/up/#\n", "pattern read ", p, "/+/%u/down/#\n",
        "pattern read ", p, "/%u/+/up/#\n", "pattern read ", p, "/+/_all/down/#\n");
    if (absl::Status s = core::WriteFileAtomic(dir + "/acl", acl); !s.ok()) return s;
  } else {
    absl::StrAppend(&conf, "allow_anonymous true\n");
  }
  return core::WriteFileAtomic(dir + "/mosquitto.conf", conf);
}

absl::Status MosquittoBroker::Launch() {
  std::string bin = MosquittoBinary();
  std::string conf = dir_ + "/mosquitto.conf";
  // The broker's own chatter (e.g. its warning about running as root) goes to its log. Opened
  // here: between fork and exec the child of a threaded process may only make async-signal-safe
  // calls: an allocation there can deadlock on a lock another thread held at the fork (this
  // ASan's allocator has no fork handlers), and the broker then never starts.
  int fd =
      ::open((dir_ + "/mosquitto.stderr").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a test binary that was killed
    if (::getppid() != parent) ::_exit(126);
    if (fd >= 0) {
      ::dup2(fd, 1);  // dup2 clears FD_CLOEXEC on the copies
      ::dup2(fd, 2);
    }
    ::execl(bin.c_str(), bin.c_str(), "-c", conf.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  if (fd >= 0) ::close(fd);
  if (pid_ < 0) return absl::InternalError("fork failed for mosquitto");
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    // Connectable is not enough: another test's broker may hold the port.
    if (ProcessListensOn(pid_, port_) && CanConnect(port_)) return absl::OkStatus();
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      auto log = core::ReadFile(log_path());
      std::string text = log.ok() ? *log : "";
      if (absl::StrContains(text, "in use")) {
        return absl::FailedPreconditionError(absl::StrCat("port ", port_, " was taken: ", text));
      }
      return absl::InternalError(absl::StrCat("mosquitto exited at start: ", text));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError("mosquitto did not open its port within 10 s");
}

MosquittoBroker::~MosquittoBroker() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 200; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    absl::SleepFor(absl::Milliseconds(10));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

void MosquittoBroker::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

absl::Status MosquittoBroker::Restart() {
  Kill();
  return Launch();
}

std::string MosquittoBroker::uri() const {
  return absl::StrCat(options_.tls ? "ssl" : "tcp", "://127.0.0.1:", port_);
}

absl::Status MosquittoBroker::WriteTlsMaterial() {
  const std::string& d = dir_;
  std::string q = " >/dev/null 2>&1";
  if (absl::Status s = Run(absl::StrCat(
          "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 ",
          "-subj /CN=x1368-test-ca -keyout ", d, "/ca.key -out ", d, "/ca.crt", q));
      !s.ok()) {
    return s;
  }
  std::string ext = d + "/server.ext";
  if (absl::Status s = core::WriteFileAtomic(ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
      !s.ok())
    return s;
  return Run(absl::StrCat(
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout ",
      d, "/server.key -out ", d, "/server.csr", q, " && openssl x509 -req -in ", d,
      "/server.csr -CA ", d, "/ca.crt -CAkey ", d, "/ca.key -CAcreateserial -days 2 -extfile ", ext,
      " -out ", d, "/server.crt", q));
}

core::TlsOptions MosquittoBroker::ClientTls(const std::string& id) {
  core::TlsOptions t;
  t.ca_file = dir_ + "/ca.crt";
  t.cert_file = absl::StrCat(dir_, "/client-", id, ".crt");
  t.key_file = absl::StrCat(dir_, "/client-", id, ".key");
  if (!core::PathExists(t.cert_file)) {
    std::string q = " >/dev/null 2>&1";
    (void)Run(absl::StrCat(
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=", id,
        " -keyout ", t.key_file, " -out ", t.cert_file, ".csr", q, " && openssl x509 -req -in ",
        t.cert_file, ".csr -CA ", dir_, "/ca.crt -CAkey ", dir_,
        "/ca.key -CAcreateserial -days 2 -out ", t.cert_file, q));
  }
  return t;
}

core::TransportOptions MosquittoBroker::ClientOptions(const std::string& client_id) {
  core::TransportOptions o;
  o.broker_uri = uri();
  o.client_id = client_id;
  o.min_backoff = absl::Milliseconds(50);
  o.max_backoff = absl::Seconds(1);
  o.connect_timeout = absl::Seconds(5);
  if (options_.tls) o.tls = ClientTls(client_id);
  return o;
}

}  // namespace x1368::testing
