#include "x1368/nodes/nodes.h"

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "x1368/core/reason.h"

namespace x1368::nodes {

absl::Status Node::Start() {
  // On the node's own strand: nothing else of the node runs until the module has started.
  absl::Status started;
  absl::Notification done;
  loop->Post([&] {
    started = StartModule();
    done.Notify();
  });
  done.WaitForNotification();
  return started;
}

void Node::Stop() {
  if (stopped_ || loop == nullptr) return;
  stopped_ = true;
  loop->Stop();
  StopModule();
}

void Node::Reset() {
  Stop();
  ResetModule();
  downstream.reset();
  transport.reset();
  node.reset();
  store.reset();
  db.reset();
  loop.reset();
  stopped_ = false;
}

std::string Node::ExtraMetrics() {
  std::string out;
  auto add = [&out](const char* link, core::Transport* t) {
    if (t == nullptr) return;
    core::TransportStats s = t->stats();
    absl::StrAppend(&out, "x1368_mqtt_connects_total{link=\"", link, "\"} ", s.connects, "\n",
                    "x1368_mqtt_published_total{link=\"", link, "\"} ", s.published, "\n",
                    "x1368_mqtt_received_total{link=\"", link, "\"} ", s.received, "\n",
                    "x1368_mqtt_dropped_total{link=\"", link, "\"} ", s.dropped, "\n");
  };
  // The root's one link goes down to its children; everyone else's first link goes up.
  add(node != nullptr && node->id() == node->config().root_id ? "downstream" : "upstream",
      transport.get());
  add("downstream", downstream.get());
  return out;
}

// What every node has: its strand, its store (a table in the tracker's SQLite database, or the
// device's one atomically replaced file), and its identity.
absl::Status BuildCommon(const core::Env& env, const core::NodeConfig& config, const char* database,
                         Node* n) {
  if (n->loop != nullptr) return absl::FailedPreconditionError("node is already built");
  // Credentials first: a node that cannot be itself creates nothing.
  X1368_ASSIGN_OR_RETURN(core::Credentials credentials, core::LoadCredentials(config, env.clock()));
  X1368_RETURN_IF_ERROR(env.fs->MakeDirs(config.data_dir, 0700));
  n->loop = std::make_unique<core::EventLoop>(env.executor);
  if (database != nullptr) {
    X1368_ASSIGN_OR_RETURN(
        n->db, core::SqliteDb::Open(absl::StrCat(config.data_dir, "/", database), env.fs));
    X1368_ASSIGN_OR_RETURN(n->store, core::SqliteKvStore::Open(n->db.get()));
  } else {
    X1368_ASSIGN_OR_RETURN(n->store,
                           core::FileKvStore::Open(config.data_dir + "/state.kv", env.fs));
  }
  X1368_ASSIGN_OR_RETURN(n->node, core::NodeContext::Create(config, std::move(credentials),
                                                            n->store.get(), env.clock(), env.fs));
  return absl::OkStatus();
}

absl::Status RootNode::StartModule() {
  X1368_RETURN_IF_ERROR(root->Start());
  if (root->admin_port() > 0) {
    // With admin.listen on port 0 the kernel picks the port; this is where a client finds it.
    return node->fs().WriteAtomic(node->config().data_dir + "/admin.port",
                                  absl::StrCat(root->admin_port(), "\n"));
  }
  return absl::OkStatus();
}

absl::Status Build(const core::Env& env, const RootSpec& spec, RootNode* n) {
  X1368_RETURN_IF_ERROR(BuildCommon(env, spec.node, "root.db", n));
  n->transport = env.transports(spec.downstream);
  n->root = std::make_unique<root::Root>(spec.options, n->node.get(), n->db.get(),
                                         n->transport.get(), n->loop.get());
  return absl::OkStatus();
}

absl::Status Build(const core::Env& env, const IntermediateSpec& spec, IntermediateNode* n) {
  X1368_RETURN_IF_ERROR(BuildCommon(env, spec.node, "intermediate.db", n));
  n->transport = env.transports(spec.upstream);
  if (spec.downstream) n->downstream = env.transports(*spec.downstream);
  core::Transport* down = n->downstream ? n->downstream.get() : n->transport.get();
  n->intermediate = std::make_unique<intermediate::Intermediate>(
      spec.options, n->node.get(), n->db.get(), n->transport.get(), down, n->loop.get());
  return absl::OkStatus();
}

absl::Status Build(const core::Env& env, const ClientSpec& spec, ClientNode* n) {
  X1368_RETURN_IF_ERROR(BuildCommon(env, spec.node, /*database=*/nullptr, n));
  stub::StubOptions consumer = spec.consumer;
  consumer.fs = env.fs;
  X1368_ASSIGN_OR_RETURN(n->consumer, stub::StubConsumer::Open(consumer));
  n->transport = env.transports(spec.upstream);
  n->client = std::make_unique<client::Client>(spec.options, n->node.get(), n->consumer.get(),
                                               n->transport.get(), n->loop.get(), spec.hooks);
  return absl::OkStatus();
}

}  // namespace x1368::nodes
