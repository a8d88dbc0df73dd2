// tracker-root: the root status tracker with its firmware server and admin API.
// Flags, config and lifecycle come from core::RunDaemon and the wiring from tracker-nodes; this
// file maps the configuration file onto a RootSpec and keeps the admin token.
#include <malloc.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "x1368/core/crypto.h"
#include "x1368/core/daemon.h"
#include "x1368/core/file_util.h"
#include "x1368/core/http.h"
#include "x1368/core/node_config.h"
#include "x1368/core/reason.h"
#include "x1368/nodes/nodes.h"

namespace x1368::root {
namespace {

constexpr size_t kMinTokenChars = 16;

// The admin token in `path`, or nullopt when there is no such file (yet).
absl::StatusOr<std::optional<std::string>> ReadToken(const std::string& path) {
  if (!core::PathExists(path)) return std::nullopt;
  X1368_ASSIGN_OR_RETURN(std::string token, core::ReadFileLimited(path, 4096));
  std::string t(absl::StripAsciiWhitespace(token));
  if (t.size() < kMinTokenChars) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": token shorter than ", kMinTokenChars, " characters"));
  }
  return t;
}

// 256 bits from OpenSSL's CSPRNG, in hex.
std::string RandomToken() { return core::HexEncode(core::RandomBytes(32)); }

core::DaemonSetup ReadConfig(core::ConfigFile& f) {
  core::DaemonSetup setup;
  setup.node = core::ReadNodeConfig(f, /*needs_cert=*/false);
  if (setup.node.node_id != setup.node.root_id) {
    f.Fail("node_id",
           absl::StrCat("the root's node_id must equal root.id (\"", setup.node.root_id, "\")"));
  }
  core::TransportOptions downstream = core::ReadLinkConfig(f, "downstream", setup.node.node_id);
  core::CheckLinkFiles(f, "downstream", downstream);
  RootOptions opts;
  opts.downstream_queue = downstream.broker_max_queued;
  opts.images_dir = f.Path("release.images_dir", "");
  if (opts.images_dir.empty()) opts.images_dir = setup.node.data_dir + "/images";
  opts.max_image_bytes =
      static_cast<uint64_t>(f.Int("release.max_image_bytes", 256LL << 20, 1, 4LL << 30));
  opts.admin_listen = f.String("admin.listen", "127.0.0.1:8368");
  std::string token_file = f.Path("admin.token_file", "");
  if (token_file.empty()) token_file = setup.node.data_dir + "/admin.token";
  if (auto token = ReadToken(token_file); !token.ok()) {
    f.Fail(f.Has("admin.token_file") ? "admin.token_file" : "data_dir", token.status().message());
  }
  opts.default_deadline_ms =
      f.Int("campaign.default_deadline_s", 7 * 86400, 60, 365LL * 86400) * 1000;
  opts.device_stale_after_ms = f.Int("fleet.stale_after_s", 180, 1, 30 * 86400) * 1000;
  opts.resync_backoff = absl::Seconds(f.Int("status.resync_backoff_s", 30, 1, 3600));
  const std::string verify = f.String("status.verify_relayed", "evidence");
  if (verify != "evidence" && verify != "all") {
    f.Fail("status.verify_relayed", "must be \"evidence\" or \"all\"");
  }
  opts.verify_relayed_all = verify == "all";

  nodes::RootSpec spec{.node = setup.node, .options = opts, .downstream = downstream};
  setup.build = [spec, token_file](const core::Env& env, const core::NodeConfig& node) mutable
      -> absl::StatusOr<std::unique_ptr<core::Daemon>> {
    spec.node = node;
    // A second root on this admin port fails here, before it connects to the broker with root's
    // client id (where it would take the running root's session).
    if (!spec.options.admin_listen.empty()) {
      X1368_RETURN_IF_ERROR(core::CheckListenFree(spec.options.admin_listen));
    }
    // The token file is made (random, mode 0600) only once the node is built: a start that
    // fails leaves nothing behind.
    X1368_ASSIGN_OR_RETURN(std::optional<std::string> token, ReadToken(token_file));
    spec.options.admin_token = token ? *token : RandomToken();
    X1368_ASSIGN_OR_RETURN(auto built, nodes::Make<nodes::RootNode>(env, spec));
    if (!token) {
      X1368_RETURN_IF_ERROR(
          core::WriteFileAtomic(token_file, spec.options.admin_token + "\n", 0600));
    }
    return std::unique_ptr<core::Daemon>(std::move(built));
  };
  setup.restore = [](const core::Env& env, const core::NodeConfig& node,
                     const std::string& backup) -> absl::StatusOr<std::string> {
    return nodes::RestoreDatabase(env, node, nodes::kRootDatabase, backup);
  };
  return setup;
}

}  // namespace
}  // namespace x1368::root

int main(int argc, char** argv) {
#ifdef __GLIBC__
  // Buffers of 1 MiB and more (the fleet status of a large fleet, a release's chunk table) each in
  // a mapping of its own, returned when it is freed. glibc's default mmap threshold follows the
  // largest buffer freed so far (up to 32 MiB): after one large buffer the next ones of that size
  // come from the arena and can stay resident once freed, which the budget for root's memory
  // while it serves (issue #17) does not allow for. (Release uploads no longer hold the image in
  // memory: POST /v1/releases streams it to disk.)
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
  return x1368::core::RunDaemon(
      argc, argv, "tracker-root",
      "x1368 root status tracker: accepts author-signed releases into its firmware server, "
      "starts campaigns with root-signed directives, serves firmware chunks, verifies every "
      "device's signed report and keeps the fleet's state; trackerctl talks to its admin API.",
      x1368::root::ReadConfig);
}
