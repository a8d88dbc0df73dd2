// tracker-client: the status tracker client module on a device, driving fw-consumer-stub.
// Flags, config and lifecycle come from core::RunDaemon and the wiring from tracker-nodes; this
// file maps the configuration file onto a ClientSpec.
#include "absl/strings/str_cat.h"
#include "x1368/core/daemon.h"
#include "x1368/core/node_config.h"
#include "x1368/core/topics.h"
#include "x1368/core/values.h"
#include "x1368/nodes/nodes.h"

namespace x1368::client {
namespace {

core::DaemonSetup ReadConfig(core::ConfigFile& f) {
  core::DaemonSetup setup;
  setup.node = core::ReadNodeConfig(f, /*needs_cert=*/true);
  ClientOptions opts;
  opts.parent_id = core::ReadId(f, "parent_id");
  core::TransportOptions upstream = core::ReadLinkConfig(f, "upstream", setup.node.node_id);
  core::CheckLinkFiles(f, "upstream", upstream);

  stub::StubOptions stub;
  std::string kind = f.String("consumer.kind", "stub");
  if (kind != "stub") f.Fail("consumer.kind", "only \"stub\" is built in");
  stub.dir = f.Path("consumer.dir", "");
  if (stub.dir.empty()) stub.dir = setup.node.data_dir + "/slots";
  // What the device reports upward and manifests must match: the wire's grammar (values.h).
  stub.component = f.String("consumer.component");
  if (absl::Status s = core::ValidateIdentifier(stub.component, "the component name");
      !s.ok() && f.Has("consumer.component")) {
    f.Fail("consumer.component", s.message());
  }
  stub.hardware_class = f.String("consumer.hardware_class");
  if (absl::Status s = core::ValidateIdentifier(stub.hardware_class, "the hardware class");
      !s.ok() && f.Has("consumer.hardware_class")) {
    f.Fail("consumer.hardware_class", s.message());
  }
  stub.initial_version = f.String("consumer.initial_version", "1.0.0");
  if (absl::Status s = core::ValidateVersion(stub.initial_version); !s.ok()) {
    f.Fail("consumer.initial_version", s.message());
  }
  stub.initial_sequence =
      static_cast<uint64_t>(f.Int("consumer.initial_sequence", 1, 0, INT64_MAX));
  stub.max_trial_boots = static_cast<uint32_t>(f.Int("consumer.max_trial_boots", 2, 1, 100));
  stub.sync_every_bytes =
      static_cast<uint64_t>(f.Int("consumer.sync_every_kib", 4096, 64, 1 << 20)) * 1024;
  auto faults = stub::ParseFaults(f.StringList("consumer.faults"));
  if (!faults.ok()) {
    f.Fail("consumer.faults", faults.status().message());
  } else {
    stub.faults = *faults;
  }
  opts.fetch.window = static_cast<uint32_t>(f.Int("update.window", 16, 1, 256));
  // The chunks in flight toward this device are queued for it by its broker too.
  opts.fetch.window = std::min(opts.fetch.window, std::max(upstream.broker_max_queued / 2, 1u));
  opts.fetch.timeout = absl::Milliseconds(f.Int("update.chunk_timeout_ms", 5000, 10, 600'000));
  opts.fetch.max_tries = static_cast<int>(f.Int("update.chunk_tries", 6, 1, 1000));
  opts.max_attempts = static_cast<int>(f.Int("update.max_attempts", 3, 1, 100));
  opts.retry_delay = absl::Milliseconds(f.Int("update.retry_delay_ms", 2000, 0, 3'600'000));
  opts.report_interval = absl::Seconds(f.Int("update.report_interval_s", 60, 1, 86400));

  opts.max_retry_delay = absl::Seconds(f.Int("update.max_retry_delay_s", 300, 1, 86400));
  uint64_t reserve = static_cast<uint64_t>(f.Int("storage.reserve_kib", 256, 0, 1 << 20)) * 1024;

  nodes::ClientSpec spec{.node = setup.node,
                         .options = opts,
                         .hooks = {},
                         .upstream = upstream,
                         .consumer = stub,
                         .state_reserve_bytes = reserve};
  setup.build = [spec](const core::Env& env, const core::NodeConfig& node) mutable
      -> absl::StatusOr<std::unique_ptr<core::Daemon>> {
    spec.node = node;
    return nodes::Make<nodes::ClientNode>(env, spec);
  };
  return setup;
}

}  // namespace
}  // namespace x1368::client

int main(int argc, char** argv) {
  return x1368::core::RunDaemon(
      argc, argv, "tracker-client",
      "x1368 status tracker client module: verifies directives from the root and go signals from "
      "its parent, and drives the device's firmware consumer (A/B slots) through download, "
      "verification, trial boot and confirmation, reporting each step upward.",
      x1368::client::ReadConfig);
}
