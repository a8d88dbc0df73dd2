// tracker-client: the status tracker client module on a device, driving fw-consumer-stub.
// Flags, config and lifecycle come from core::RunDaemon; this file maps the config onto the
// Client and its consumer.
#include "absl/strings/str_cat.h"
#include "x1368/client/client.h"
#include "x1368/core/daemon.h"
#include "x1368/core/file_util.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"
#include "x1368/stub/stub_consumer.h"

namespace x1368::client {
namespace {

class ClientDaemon final : public core::Daemon {
 public:
  absl::Status Start() override { return client->Start(); }
  void Stop() override { client->Stop(); }
  core::Metrics* metrics() override { return &node->metrics(); }
  std::string ExtraMetrics() override {
    core::TransportStats t = transport->stats();
    return absl::StrCat("x1368_mqtt_connects_total ", t.connects, "\n",
                        "x1368_mqtt_published_total ", t.published, "\n",
                        "x1368_mqtt_received_total ", t.received, "\n");
  }

  std::unique_ptr<core::FileKvStore> store;
  std::unique_ptr<core::NodeContext> node;
  std::unique_ptr<stub::StubConsumer> consumer;
  std::unique_ptr<core::Transport> transport;
  std::unique_ptr<Client> client;
};

core::DaemonSetup ReadConfig(core::ConfigFile& f) {
  core::DaemonSetup setup;
  setup.node = core::ReadNodeConfig(f, /*needs_cert=*/true);
  ClientOptions opts;
  opts.parent_id = f.String("parent_id");
  if (!opts.parent_id.empty() && !core::IsValidNodeId(opts.parent_id))
    f.Fail("parent_id", "not a valid node id");
  core::TransportOptions upstream = core::ReadLinkConfig(f, "upstream", setup.node.node_id);

  stub::StubOptions stub;
  std::string kind = f.String("consumer.kind", "stub");
  if (kind != "stub") f.Fail("consumer.kind", "only \"stub\" is built in");
  stub.dir = f.Path("consumer.dir", "");
  if (stub.dir.empty()) stub.dir = setup.node.data_dir + "/slots";
  stub.component = f.String("consumer.component");
  if (!stub.component.empty() && !core::IsValidNodeId(stub.component))
    f.Fail("consumer.component", "invalid name");
  stub.hardware_class = f.String("consumer.hardware_class");
  if (!stub.hardware_class.empty() && !core::IsValidNodeId(stub.hardware_class)) {
    f.Fail("consumer.hardware_class", "invalid name");
  }
  stub.initial_version = f.String("consumer.initial_version", "1.0.0");
  stub.initial_sequence =
      static_cast<uint64_t>(f.Int("consumer.initial_sequence", 1, 0, INT64_MAX));
  stub.max_trial_boots = static_cast<uint32_t>(f.Int("consumer.max_trial_boots", 2, 1, 100));
  auto faults = stub::ParseFaults(f.StringList("consumer.faults"));
  if (!faults.ok()) {
    f.Fail("consumer.faults", faults.status().message());
  } else {
    stub.faults = *faults;
  }
  opts.chunk_size = static_cast<uint32_t>(f.Int("update.chunk_size", 32 * 1024, 512, 1 << 20));
  if (opts.chunk_size + 4096 > setup.node.limits.max_message_bytes) {
    f.Fail("update.chunk_size", "does not fit in limits.max_message_bytes");
  }
  opts.fetch.window = static_cast<uint32_t>(f.Int("update.window", 8, 1, 256));
  opts.fetch.timeout = absl::Milliseconds(f.Int("update.chunk_timeout_ms", 5000, 10, 600'000));
  opts.fetch.max_tries = static_cast<int>(f.Int("update.chunk_tries", 6, 1, 1000));
  opts.max_attempts = static_cast<int>(f.Int("update.max_attempts", 3, 1, 100));
  opts.retry_delay = absl::Milliseconds(f.Int("update.retry_delay_ms", 2000, 0, 3'600'000));
  opts.report_interval = absl::Seconds(f.Int("update.report_interval_s", 60, 1, 86400));

  setup.build = [node_config = setup.node, opts, upstream,
                 stub](core::EventLoop* loop) -> absl::StatusOr<std::unique_ptr<core::Daemon>> {
    auto d = std::make_unique<ClientDaemon>();
    X1368_RETURN_IF_ERROR(core::MakeDirs(node_config.data_dir, 0700));
    X1368_ASSIGN_OR_RETURN(d->store, core::FileKvStore::Open(node_config.data_dir + "/state.kv"));
    X1368_ASSIGN_OR_RETURN(
        d->node, core::NodeContext::Create(node_config, d->store.get(), core::RealClock::Get()));
    X1368_ASSIGN_OR_RETURN(d->consumer, stub::StubConsumer::Open(stub));
    d->transport = core::MakeMqttTransport(upstream, loop->executor());
    d->client =
        std::make_unique<Client>(opts, d->node.get(), d->consumer.get(), d->transport.get(), loop);
    return std::unique_ptr<core::Daemon>(std::move(d));
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
