// tracker-intermediate: the cascadable intermediate status tracker on a gateway.
// Flags, config and lifecycle come from core::RunDaemon and the wiring from tracker-nodes; this
// file maps the configuration file onto an IntermediateSpec.
#include "x1368/core/daemon.h"
#include "x1368/core/node_config.h"
#include "x1368/core/topics.h"
#include "x1368/nodes/nodes.h"

namespace x1368::intermediate {
namespace {

core::DaemonSetup ReadConfig(core::ConfigFile& f) {
  core::DaemonSetup setup;
  setup.node = core::ReadNodeConfig(f, /*needs_cert=*/true);
  IntermediateOptions opts;
  opts.parent_id = core::ReadId(f, "parent_id");
  core::TransportOptions upstream = core::ReadLinkConfig(f, "upstream", setup.node.node_id);
  core::CheckLinkFiles(f, "upstream", upstream);
  std::optional<core::TransportOptions> downstream;
  if (f.Has("downstream")) {
    core::TransportOptions d = core::ReadLinkConfig(f, "downstream", setup.node.node_id);
    core::CheckLinkFiles(f, "downstream", d);
    if (d.broker_uri != upstream.broker_uri) downstream = d;  // a broker of its own for the subtree
  }
  opts.downstream_queue = downstream ? downstream->broker_max_queued : upstream.broker_max_queued;
  opts.cache_dir = f.Path("cache.dir", "");
  if (opts.cache_dir.empty()) opts.cache_dir = setup.node.data_dir + "/cache";
  opts.cache_max_images = static_cast<size_t>(f.Int("cache.max_images", 8, 1, 10'000));
  opts.fetch_window = static_cast<uint32_t>(f.Int("fetch.window", 16, 1, 256));
  opts.fetch_timeout = absl::Milliseconds(f.Int("fetch.timeout_ms", 5000, 10, 600'000));
  opts.fetch_max_tries = static_cast<int>(f.Int("fetch.tries", 6, 1, 1000));
  opts.batch_delay = absl::Milliseconds(f.Int("batch.delay_ms", 200, 0, 60'000));
  opts.batch_max_reports = static_cast<size_t>(f.Int("batch.max_reports", 200, 1, 100'000));
  opts.report_interval = absl::Seconds(f.Int("report.interval_s", 60, 1, 86400));
  opts.child_timeout = absl::Seconds(f.Int("children.heartbeat_timeout_s", 200, 2, 7 * 86400));
  opts.summary_interval = absl::Seconds(f.Int("status.summary_interval_s", 60, 1, 86400));
  opts.resync_backoff = absl::Seconds(f.Int("status.resync_backoff_s", 30, 1, 3600));
  const std::string verify = f.String("status.verify_relayed", "evidence");
  if (verify != "evidence" && verify != "all") {
    f.Fail("status.verify_relayed", "must be \"evidence\" or \"all\"");
  }
  opts.verify_relayed_all = verify == "all";

  nodes::IntermediateSpec spec{
      .node = setup.node, .options = opts, .upstream = upstream, .downstream = downstream};
  setup.build = [spec](const core::Env& env, const core::NodeConfig& node) mutable
      -> absl::StatusOr<std::unique_ptr<core::Daemon>> {
    spec.node = node;
    return nodes::Make<nodes::IntermediateNode>(env, spec);
  };
  return setup;
}

}  // namespace
}  // namespace x1368::intermediate

int main(int argc, char** argv) {
  return x1368::core::RunDaemon(
      argc, argv, "tracker-intermediate",
      "x1368 intermediate status tracker (gateway): forwards root-signed directives unchanged, "
      "paces its children with signed go messages, serves firmware from a verified cache filled "
      "once from upstream, and relays its subtree's signed status upward in batches. "
      "Intermediates cascade: the parent may be the root or another intermediate.",
      x1368::intermediate::ReadConfig);
}
