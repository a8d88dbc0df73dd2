// tracker-intermediate: the cascadable intermediate status tracker on a gateway.
// Flags, config and lifecycle come from core::RunDaemon; this file maps the config onto the
// Intermediate and its links.
#include "absl/strings/str_cat.h"
#include "x1368/core/daemon.h"
#include "x1368/core/file_util.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/reason.h"
#include "x1368/core/sqlite_db.h"
#include "x1368/core/topics.h"
#include "x1368/intermediate/intermediate.h"

namespace x1368::intermediate {
namespace {

class IntermediateDaemon final : public core::Daemon {
 public:
  absl::Status Start() override { return intermediate->Start(); }
  void Stop() override { intermediate->Stop(); }
  core::Metrics* metrics() override { return &node->metrics(); }
  std::string ExtraMetrics() override {
    std::string out;
    auto add = [&out](const char* link, core::Transport* t) {
      core::TransportStats s = t->stats();
      absl::StrAppend(&out, "x1368_mqtt_connects_total{link=\"", link, "\"} ", s.connects, "\n",
                      "x1368_mqtt_published_total{link=\"", link, "\"} ", s.published, "\n",
                      "x1368_mqtt_received_total{link=\"", link, "\"} ", s.received, "\n");
    };
    add("upstream", upstream.get());
    if (downstream) add("downstream", downstream.get());
    return out;
  }

  std::unique_ptr<core::SqliteDb> db;
  std::unique_ptr<core::SqliteKvStore> store;
  std::unique_ptr<core::NodeContext> node;
  std::unique_ptr<core::Transport> upstream;
  std::unique_ptr<core::Transport> downstream;  // null when children share the upstream broker
  std::unique_ptr<Intermediate> intermediate;
};

core::DaemonSetup ReadConfig(core::ConfigFile& f) {
  core::DaemonSetup setup;
  setup.node = core::ReadNodeConfig(f, /*needs_cert=*/true);
  IntermediateOptions opts;
  opts.parent_id = f.String("parent_id");
  if (!opts.parent_id.empty() && !core::IsValidNodeId(opts.parent_id))
    f.Fail("parent_id", "not a valid node id");
  core::TransportOptions upstream = core::ReadLinkConfig(f, "upstream", setup.node.node_id);
  std::optional<core::TransportOptions> downstream;
  if (f.Has("downstream")) {
    core::TransportOptions d = core::ReadLinkConfig(f, "downstream", setup.node.node_id);
    if (d.broker_uri != upstream.broker_uri) downstream = d;  // a broker of its own for the subtree
  }
  opts.cache_dir = f.Path("cache.dir", "");
  if (opts.cache_dir.empty()) opts.cache_dir = setup.node.data_dir + "/cache";
  opts.cache_max_images = static_cast<size_t>(f.Int("cache.max_images", 8, 1, 10'000));
  opts.fetch_chunk_size =
      static_cast<uint32_t>(f.Int("fetch.chunk_size", 64 * 1024, 1024, 128 * 1024));
  opts.fetch_window = static_cast<uint32_t>(f.Int("fetch.window", 8, 1, 256));
  opts.fetch_timeout = absl::Milliseconds(f.Int("fetch.timeout_ms", 5000, 10, 600'000));
  opts.fetch_max_tries = static_cast<int>(f.Int("fetch.tries", 6, 1, 1000));
  opts.batch_delay = absl::Milliseconds(f.Int("batch.delay_ms", 200, 0, 60'000));
  opts.batch_max_reports = static_cast<size_t>(f.Int("batch.max_reports", 200, 1, 100'000));
  opts.report_interval = absl::Seconds(f.Int("report.interval_s", 60, 1, 86400));

  setup.build = [node_config = setup.node, opts, upstream, downstream](
                    core::EventLoop* loop) -> absl::StatusOr<std::unique_ptr<core::Daemon>> {
    auto d = std::make_unique<IntermediateDaemon>();
    X1368_RETURN_IF_ERROR(core::MakeDirs(node_config.data_dir, 0700));
    X1368_ASSIGN_OR_RETURN(d->db, core::SqliteDb::Open(node_config.data_dir + "/intermediate.db"));
    X1368_ASSIGN_OR_RETURN(d->store, core::SqliteKvStore::Open(d->db.get()));
    X1368_ASSIGN_OR_RETURN(
        d->node, core::NodeContext::Create(node_config, d->store.get(), core::RealClock::Get()));
    d->upstream = core::MakeMqttTransport(upstream, loop->executor());
    if (downstream) d->downstream = core::MakeMqttTransport(*downstream, loop->executor());
    core::Transport* down = d->downstream ? d->downstream.get() : d->upstream.get();
    d->intermediate = std::make_unique<Intermediate>(opts, d->node.get(), d->db.get(),
                                                     d->upstream.get(), down, loop);
    return std::unique_ptr<core::Daemon>(std::move(d));
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
