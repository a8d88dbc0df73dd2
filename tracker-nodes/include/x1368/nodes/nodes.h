// The one place where nodes are wired: a root, an intermediate or a client with its stub
// consumer, built from a core::Env and a spec. The three daemons, the test tree and the fleet
// simulator all build their nodes here, so a node in a test or a simulated fleet is the node a
// daemon runs, on whatever clock, threads, files and broker the Env gives it.
//
// A built node owns everything it runs on: its strand (EventLoop on the Env's executor), its
// stores, its identity and its links. Start() runs the module's Start() on that strand and waits;
// Stop() stops the strand (nothing more of the node runs once it returns) and then the module.
// Reset() destroys all of it, as a power cut does to a process; building into the same object
// again is the reboot.
#ifndef X1368_NODES_NODES_H_
#define X1368_NODES_NODES_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "x1368/client/client.h"
#include "x1368/core/daemon.h"
#include "x1368/core/env.h"
#include "x1368/core/event_loop.h"
#include "x1368/core/kv_store.h"
#include "x1368/core/node.h"
#include "x1368/core/sqlite_db.h"
#include "x1368/intermediate/intermediate.h"
#include "x1368/root/root.h"
#include "x1368/stub/stub_consumer.h"

namespace x1368::nodes {

class Node : public core::Daemon {
 public:
  ~Node() override = default;

  absl::Status Start() override;
  void Stop() override;
  core::Metrics* metrics() override { return &node->metrics(); }
  // Its links connected, its data_dir writable (core/health.h).
  std::vector<std::string> NotReadyReasons() override;
  // Stop(), then destroys the module, links, stores and strand, in that order.
  void Reset();
  // Adds x1368_mqtt_* of its links to its metrics, until Reset(); once its links are built.
  void ExposeLinkMetrics();

  // Declared in the order they are built; destroyed in reverse.
  std::unique_ptr<core::EventLoop> loop;
  std::unique_ptr<core::SqliteDb> db;  // trackers only
  // Devices: what their state file is written through, with space kept back on a full disk.
  std::unique_ptr<core::ReservingFileSystem> store_fs;
  std::unique_ptr<core::KvStore> store;
  std::unique_ptr<core::NodeContext> node;
  std::unique_ptr<core::Transport> transport;   // to the parent (the root: to its children)
  std::unique_ptr<core::Transport> downstream;  // an intermediate's own subtree broker, if any

 protected:
  virtual absl::Status StartModule() = 0;
  virtual void StopModule() = 0;
  virtual void ResetModule() = 0;

 private:
  core::Metrics::Families LinkFamilies() const;
  bool stopped_ = false;
  core::Metrics::CollectorId links_collector_ = 0;
};

struct RootSpec {
  core::NodeConfig node;
  root::RootOptions options;
  core::TransportOptions downstream;
};
class RootNode : public Node {
 public:
  ~RootNode() override { Reset(); }
  std::unique_ptr<root::Root> root;

 private:
  absl::Status StartModule() override;
  void StopModule() override {
    if (root) root->Stop();
  }
  void ResetModule() override { root.reset(); }
};
absl::Status Build(const core::Env& env, const RootSpec& spec, RootNode* into);

struct IntermediateSpec {
  core::NodeConfig node;
  intermediate::IntermediateOptions options;
  core::TransportOptions upstream;
  // A broker of the subtree's own; without it children share the upstream connection's broker.
  std::optional<core::TransportOptions> downstream;
};
class IntermediateNode : public Node {
 public:
  ~IntermediateNode() override { Reset(); }
  std::unique_ptr<intermediate::Intermediate> intermediate;

 private:
  absl::Status StartModule() override { return intermediate->Start(); }
  void StopModule() override {
    if (intermediate) intermediate->Stop();
  }
  void ResetModule() override { intermediate.reset(); }
};
absl::Status Build(const core::Env& env, const IntermediateSpec& spec, IntermediateNode* into);

struct ClientSpec {
  core::NodeConfig node;
  client::ClientOptions options;
  client::ClientHooks hooks;
  core::TransportOptions upstream;
  stub::StubOptions consumer;  // its `fs` is the Env's
  // Kept free on the device's disk for its own state (core::ReservingFileSystem); 0: none.
  uint64_t state_reserve_bytes = 256 * 1024;
};
class ClientNode : public Node {
 public:
  ~ClientNode() override { Reset(); }
  std::unique_ptr<stub::StubConsumer> consumer;
  std::unique_ptr<client::Client> client;

 private:
  absl::Status StartModule() override { return client->Start(); }
  void StopModule() override {
    if (client) client->Stop();
  }
  void ResetModule() override {
    client.reset();
    consumer.reset();
  }
};
absl::Status Build(const core::Env& env, const ClientSpec& spec, ClientNode* into);

// The trackers' database files, in their data_dir.
inline constexpr char kRootDatabase[] = "root.db";
inline constexpr char kIntermediateDatabase[] = "intermediate.db";

// Restores a tracker's database (`database` in config.data_dir) from `backup`, a database file
// `trackerctl backup` wrote (SQLite's online backup of the running node): checks the backup
// (integrity, the store identity of config.node_id), refuses a data_dir that holds an
// initialised store, copies it in with SQLite's backup API, and raises the sequence counters to
// at least the anchor of the restore's time (core::ReanchorAfterRestore), so the node's next
// messages are above whatever it sent after the backup was taken. Returns what to tell the
// operator. The node must not be running.
absl::StatusOr<std::string> RestoreDatabase(const core::Env& env, const core::NodeConfig& config,
                                            const char* database, const std::string& backup);

// Build() into a new object.
template <typename N, typename Spec>
absl::StatusOr<std::unique_ptr<N>> Make(const core::Env& env, const Spec& spec) {
  auto n = std::make_unique<N>();
  if (absl::Status s = Build(env, spec, n.get()); !s.ok()) return s;
  return n;
}

}  // namespace x1368::nodes

#endif  // X1368_NODES_NODES_H_
