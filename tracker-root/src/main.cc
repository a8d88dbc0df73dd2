// tracker-root: the root status tracker with its firmware server and admin API.
// Flags, config and lifecycle come from core::RunDaemon; this file maps the config onto Root.
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "x1368/core/crypto.h"
#include "x1368/core/daemon.h"
#include "x1368/core/file_util.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/reason.h"
#include "x1368/core/sqlite_db.h"
#include "x1368/root/root.h"

namespace x1368::root {
namespace {

class RootDaemon final : public core::Daemon {
 public:
  absl::Status Start() override {
    X1368_RETURN_IF_ERROR(root->Start());
    if (root->admin_port() > 0) {
      return core::WriteFileAtomic(data_dir + "/admin.port",
                                   absl::StrCat(root->admin_port(), "\n"));
    }
    return absl::OkStatus();
  }
  void Stop() override { root->Stop(); }
  core::Metrics* metrics() override { return &node->metrics(); }

  std::string data_dir;
  std::unique_ptr<core::SqliteDb> db;
  std::unique_ptr<core::SqliteKvStore> store;
  std::unique_ptr<core::NodeContext> node;
  std::unique_ptr<core::Transport> downstream;
  std::unique_ptr<Root> root;
};

// The admin token: read from the file, or made (random, mode 0600) when the file does not exist.
absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path) {
  if (core::PathExists(path)) {
    X1368_ASSIGN_OR_RETURN(std::string token, core::ReadFileLimited(path, 4096));
    std::string t(absl::StripAsciiWhitespace(token));
    if (t.size() < 16)
      return absl::InvalidArgumentError(absl::StrCat(path, ": token shorter than 16 characters"));
    return t;
  }
  std::random_device rd;
  std::string raw(32, '\0');
  for (char& c : raw) c = static_cast<char>(rd() & 0xff);
  std::string token = core::HexEncode(raw);
  X1368_RETURN_IF_ERROR(core::WriteFileAtomic(path, token + "\n", 0600));
  return token;
}

core::DaemonSetup ReadConfig(core::ConfigFile& f) {
  core::DaemonSetup setup;
  setup.node = core::ReadNodeConfig(f, /*needs_cert=*/false);
  if (setup.node.node_id != setup.node.root_id) {
    f.Fail("node_id",
           absl::StrCat("the root's node_id must equal root.id (\"", setup.node.root_id, "\")"));
  }
  core::TransportOptions downstream = core::ReadLinkConfig(f, "downstream", setup.node.node_id);
  RootOptions opts;
  opts.images_dir = f.Path("release.images_dir", "");
  if (opts.images_dir.empty()) opts.images_dir = setup.node.data_dir + "/images";
  opts.max_image_bytes =
      static_cast<uint64_t>(f.Int("release.max_image_bytes", 256LL << 20, 1, 4LL << 30));
  opts.admin_listen = f.String("admin.listen", "127.0.0.1:8368");
  std::string token_file = f.Path("admin.token_file", "");
  if (token_file.empty()) token_file = setup.node.data_dir + "/admin.token";
  opts.default_deadline_ms =
      f.Int("campaign.default_deadline_s", 7 * 86400, 60, 365LL * 86400) * 1000;
  opts.device_stale_after_ms = f.Int("fleet.stale_after_s", 180, 1, 30 * 86400) * 1000;

  setup.build =
      [node_config = setup.node, opts, downstream,
       token_file](core::EventLoop* loop) mutable -> absl::StatusOr<std::unique_ptr<core::Daemon>> {
    auto d = std::make_unique<RootDaemon>();
    d->data_dir = node_config.data_dir;
    X1368_RETURN_IF_ERROR(core::MakeDirs(node_config.data_dir, 0700));
    X1368_ASSIGN_OR_RETURN(opts.admin_token, LoadOrCreateToken(token_file));
    X1368_ASSIGN_OR_RETURN(d->db, core::SqliteDb::Open(node_config.data_dir + "/root.db"));
    X1368_ASSIGN_OR_RETURN(d->store, core::SqliteKvStore::Open(d->db.get()));
    X1368_ASSIGN_OR_RETURN(
        d->node, core::NodeContext::Create(node_config, d->store.get(), core::RealClock::Get()));
    d->downstream = core::MakeMqttTransport(downstream, loop->executor());
    d->root = std::make_unique<Root>(opts, d->node.get(), d->db.get(), d->downstream.get(), loop);
    return std::unique_ptr<core::Daemon>(std::move(d));
  };
  return setup;
}

}  // namespace
}  // namespace x1368::root

int main(int argc, char** argv) {
  return x1368::core::RunDaemon(
      argc, argv, "tracker-root",
      "x1368 root status tracker: accepts author-signed releases into its firmware server, "
      "starts campaigns with root-signed directives, serves firmware chunks, verifies every "
      "device's signed report and keeps the fleet's state; trackerctl talks to its admin API.",
      x1368::root::ReadConfig);
}
