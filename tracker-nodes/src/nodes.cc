#include "x1368/nodes/nodes.h"

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "spdlog/spdlog.h"
#include "x1368/core/log.h"
#include "x1368/core/reason.h"
#include "x1368/core/store_identity.h"

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
  // Before the links go: a scrape must not read them as they do.
  if (node != nullptr && links_collector_ != 0) node->metrics().RemoveCollector(links_collector_);
  links_collector_ = 0;
  downstream.reset();
  transport.reset();
  node.reset();
  store.reset();
  db.reset();
  loop.reset();
  stopped_ = false;
}

void Node::ExposeLinkMetrics() {
  links_collector_ = node->metrics().AddCollector([this] { return LinkFamilies(); });
}

core::Metrics::Families Node::LinkFamilies() const {
  using prometheus::MetricType;
  struct Series {
    const char* name;
    const char* help;
    MetricType type;
    double (*value)(const core::Transport&, const core::TransportStats&);
  };
  static constexpr Series kSeries[] = {
      {"x1368_mqtt_connected", "Whether the link is connected to its broker (1) or not (0)",
       MetricType::Gauge,
       [](const core::Transport& t, const core::TransportStats&) {
         return t.connected() ? 1.0 : 0.0;
       }},
      {"x1368_mqtt_connects_total", "Connections made to the broker", MetricType::Counter,
       [](const core::Transport&, const core::TransportStats& s) { return 1.0 * s.connects; }},
      {"x1368_mqtt_connection_losses_total", "Connections to the broker lost", MetricType::Counter,
       [](const core::Transport&, const core::TransportStats& s) {
         return 1.0 * s.connection_losses;
       }},
      {"x1368_mqtt_session_taken_over_total",
       "Connections the broker closed because another client connected with this client id",
       MetricType::Counter,
       [](const core::Transport&, const core::TransportStats& s) { return 1.0 * s.taken_over; }},
      {"x1368_mqtt_published_total", "Messages published", MetricType::Counter,
       [](const core::Transport&, const core::TransportStats& s) { return 1.0 * s.published; }},
      {"x1368_mqtt_received_total", "Messages received", MetricType::Counter,
       [](const core::Transport&, const core::TransportStats& s) { return 1.0 * s.received; }},
      {"x1368_mqtt_dropped_total",
       "Messages dropped from the full offline buffer (the oldest first)", MetricType::Counter,
       [](const core::Transport&, const core::TransportStats& s) { return 1.0 * s.dropped; }},
  };
  // The root's one link goes down to its children; everyone else's first link goes up.
  const bool is_root = node != nullptr && node->id() == node->config().root_id;
  const std::pair<const char*, const core::Transport*> links[] = {
      {is_root ? "downstream" : "upstream", transport.get()}, {"downstream", downstream.get()}};
  core::Metrics::Families out;
  for (const Series& series : kSeries) {
    prometheus::MetricFamily f = core::Family(series.name, series.help, series.type);
    for (const auto& [link, t] : links) {
      if (t != nullptr) core::AddSample(&f, {{"link", link}}, series.value(*t, t->stats()));
    }
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<std::string> Node::NotReadyReasons() {
  if (node == nullptr) return {"not started"};
  const bool is_root = node->id() == node->config().root_id;
  std::vector<core::ReadinessLink> links = {{is_root ? "downstream" : "upstream", transport.get()},
                                            {"downstream", downstream.get()}};
  return core::NotReadyReasons(links, &node->fs(), node->config().data_dir);
}

// What every node has: its strand, its store (a table in the tracker's SQLite database, or the
// device's one atomically replaced file), and its identity. Nothing is created for a node whose
// credentials fail, or whose store is missing without --init (core/store_identity.h).
absl::Status BuildCommon(const core::Env& env, const core::NodeConfig& config, const char* database,
                         Node* n, uint64_t state_reserve_bytes = 0) {
  if (n->loop != nullptr) return absl::FailedPreconditionError("node is already built");
  // Credentials first: a node that cannot be itself creates nothing.
  X1368_ASSIGN_OR_RETURN(core::Credentials credentials, core::LoadCredentials(config, env.clock()));
  const std::string store_file =
      absl::StrCat(config.data_dir, "/", database != nullptr ? database : "state.kv");
  if (!config.init) {
    // Refused before anything is made: opening a database that is not there creates it.
    auto size = env.fs->Size(store_file);
    if (!size.ok() || *size == 0) return core::NotInitialisedError(config, store_file);
  }
  X1368_RETURN_IF_ERROR(env.fs->MakeDirs(config.data_dir, 0700));
  n->loop = std::make_unique<core::EventLoop>(env.executor);
  if (database != nullptr) {
    X1368_ASSIGN_OR_RETURN(n->db, core::SqliteDb::Open(store_file, env.fs));
    X1368_ASSIGN_OR_RETURN(n->store, core::SqliteKvStore::Open(n->db.get()));
  } else {
    n->store_fs = std::make_unique<core::ReservingFileSystem>(
        env.fs, absl::StrCat(config.data_dir, "/state.reserve"), state_reserve_bytes);
    if (absl::Status s = n->store_fs->Ensure(); !s.ok()) {
      // A node that starts on a full disk still runs: its state may fit, and it must report.
      spdlog::error("event=storage.reserve_missing error={}", core::Quoted(s.message()));
    }
    X1368_ASSIGN_OR_RETURN(n->store, core::FileKvStore::Open(store_file, n->store_fs.get()));
  }
  X1368_RETURN_IF_ERROR(core::PrepareStore(*n->store, config, *env.clock(), store_file).status());
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
  X1368_RETURN_IF_ERROR(BuildCommon(env, spec.node, kRootDatabase, n));
  n->transport = env.transports(spec.downstream);
  n->ExposeLinkMetrics();
  root::RootOptions options = spec.options;
  // The admin API's /readyz: root's link to its children's broker and its data_dir.
  if (!options.readiness) options.readiness = [n] { return n->NotReadyReasons(); };
  n->root = std::make_unique<root::Root>(options, n->node.get(), n->db.get(), n->transport.get(),
                                         n->loop.get());
  return absl::OkStatus();
}

absl::Status Build(const core::Env& env, const IntermediateSpec& spec, IntermediateNode* n) {
  X1368_RETURN_IF_ERROR(BuildCommon(env, spec.node, kIntermediateDatabase, n));
  n->transport = env.transports(spec.upstream);
  if (spec.downstream) n->downstream = env.transports(*spec.downstream);
  n->ExposeLinkMetrics();
  core::Transport* down = n->downstream ? n->downstream.get() : n->transport.get();
  n->intermediate = std::make_unique<intermediate::Intermediate>(
      spec.options, n->node.get(), n->db.get(), n->transport.get(), down, n->loop.get());
  return absl::OkStatus();
}

absl::Status Build(const core::Env& env, const ClientSpec& spec, ClientNode* n) {
  X1368_RETURN_IF_ERROR(
      BuildCommon(env, spec.node, /*database=*/nullptr, n, spec.state_reserve_bytes));
  stub::StubOptions consumer = spec.consumer;
  consumer.fs = env.fs;
  X1368_ASSIGN_OR_RETURN(n->consumer, stub::StubConsumer::Open(consumer));
  n->transport = env.transports(spec.upstream);
  n->ExposeLinkMetrics();
  n->client = std::make_unique<client::Client>(spec.options, n->node.get(), n->consumer.get(),
                                               n->transport.get(), n->loop.get(), spec.hooks);
  return absl::OkStatus();
}

absl::StatusOr<std::string> RestoreDatabase(const core::Env& env, const core::NodeConfig& config,
                                            const char* database, const std::string& backup) {
  // The backup first: nothing is touched for a file that is not this node's good backup.
  X1368_ASSIGN_OR_RETURN(auto source, core::SqliteDb::OpenReadOnly(backup));
  X1368_RETURN_IF_ERROR(source->CheckIntegrity());
  auto read_identity = source->Prepare("SELECT value FROM kv WHERE key = ?");
  if (!read_identity.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        backup, " is not a tracker's database backup: ", read_identity.status().message()));
  }
  (*read_identity)->Bind(1, core::kStoreIdentityKey);
  X1368_ASSIGN_OR_RETURN(bool found, (*read_identity)->Step());
  v1::StoreIdentity identity;
  if (!found || !identity.ParseFromString((*read_identity)->ColumnText(0))) {
    return absl::InvalidArgumentError(
        absl::StrCat(backup, " holds no store identity: not a backup made by trackerctl backup"));
  }
  read_identity->reset();
  if (identity.node_id() != config.node_id) {
    return absl::InvalidArgumentError(absl::StrCat(backup, " is a backup of node ",
                                                   core::Quote(identity.node_id()), ", not of ",
                                                   core::Quote(config.node_id)));
  }
  // Never over a store in use: a restore replaces what is there, so what is there must be lost.
  const std::string target = absl::StrCat(config.data_dir, "/", database);
  if (auto size = env.fs->Size(target); size.ok() && *size > 0) {
    {
      X1368_ASSIGN_OR_RETURN(auto existing, core::SqliteDb::Open(target, env.fs));
      X1368_ASSIGN_OR_RETURN(auto store, core::SqliteKvStore::Open(existing.get()));
      X1368_ASSIGN_OR_RETURN(auto id, core::ReadStoreIdentity(*store));
      if (id) {
        return absl::FailedPreconditionError(absl::StrCat(
            target, " holds the initialised store of node ", core::Quote(id->node_id()),
            ": a restore only replaces a store that is lost; move it away first"));
      }
    }
    for (const char* suffix : {"", "-wal", "-shm"}) {
      if (env.fs->Exists(target + suffix)) X1368_RETURN_IF_ERROR(env.fs->Remove(target + suffix));
    }
  }
  X1368_RETURN_IF_ERROR(env.fs->MakeDirs(config.data_dir, 0700));
  X1368_ASSIGN_OR_RETURN(auto db, core::SqliteDb::Open(target, env.fs));
  X1368_RETURN_IF_ERROR(db->CopyFrom(*source));
  X1368_RETURN_IF_ERROR(db->CheckIntegrity());
  X1368_ASSIGN_OR_RETURN(auto store, core::SqliteKvStore::Open(db.get()));
  X1368_ASSIGN_OR_RETURN(uint64_t next, core::ReanchorAfterRestore(*store, *env.clock()));
  spdlog::warn("event=store.restored backup={} store={} seq_from={}", core::Quoted(backup),
               core::Quoted(target), next);
  return absl::StrCat("restored ", backup, " into ", target, " (node ", config.node_id,
                      "); its sequence numbers continue from ", next,
                      ", above anything it sent since the backup. Start it without --restore.");
}

}  // namespace x1368::nodes
