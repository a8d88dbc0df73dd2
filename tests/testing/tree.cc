#include "testing/tree.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "testing/wait.h"
#include "x1368/core/file_util.h"
#include "x1368/core/reason.h"

namespace x1368::testing {
namespace {
template <typename T>
T Must(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    fprintf(stderr, "tree setup failed (%s): %s\n", what, v.status().ToString().c_str());
    abort();
  }
  return *std::move(v);
}
void Must(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    fprintf(stderr, "tree setup failed (%s): %s\n", what, s.ToString().c_str());
    abort();
  }
}
}  // namespace

TestTree::TestTree(MosquittoBroker* broker)
    : broker_(broker),
      pki_(dir_.path()),
      author_(pki_.Issue("author-1", v1::ROLE_AUTHOR, {}, {"fw"})) {}

TestTree::~TestTree() {
  for (auto& c : clients_) {
    c->StopLoop();
    if (c->client) c->client->Stop();
  }
  for (auto& i : intermediates_) {
    i->StopLoop();
    i->intermediate->Stop();
  }
  if (root_) {
    root_->StopLoop();
    root_->root->Stop();
  }
}

std::unique_ptr<core::Transport> TestTree::MakeTransport(const std::string& id) {
  if (broker_ != nullptr) return core::MakeMqttTransport(broker_->ClientOptions(id), &executor_);
  return fake_.Connect(id);
}

std::unique_ptr<core::Transport> TestTree::RawTransport(const std::string& client_id) {
  return MakeTransport(client_id);
}

core::NodeConfig TestTree::NodeConfigFor(const std::string& id, const std::string& key,
                                         const std::string& cert, const std::string& data_dir) {
  core::NodeConfig c;
  c.node_id = id;
  c.key_file = key;
  c.cert_file = cert;
  c.root_id = pki_.root_id();
  c.root_public_key_file = pki_.root_pub_path();
  c.data_dir = data_dir;
  return c;
}

RootNode* TestTree::AddRoot() {
  root_ = std::make_unique<RootNode>();
  RootNode* r = root_.get();
  r->loop = std::make_unique<core::EventLoop>(&executor_);
  r->id = pki_.root_id();
  r->dir = dir_.File(r->id);
  Must(core::MakeDirs(r->dir), "root dir");
  r->db = Must(core::SqliteDb::Open(r->dir + "/root.db"), "root db");
  r->store = Must(core::SqliteKvStore::Open(r->db.get()), "root kv");
  r->node = Must(core::NodeContext::Create(NodeConfigFor(r->id, pki_.root_key_path(), "", r->dir),
                                           r->store.get(), core::RealClock::Get()),
                 "root node");
  r->transport = MakeTransport(r->id);
  root::RootOptions opts;
  opts.images_dir = r->dir + "/images";
  r->root = std::make_unique<root::Root>(opts, r->node.get(), r->db.get(), r->transport.get(),
                                         r->loop.get());
  // Started on its loop, as the daemons do: nothing of the node runs beside its own strand.
  Must(OnLoop(*r->loop, [r] { return r->root->Start(); }), "root start");
  return r;
}

IntermediateNode* TestTree::AddIntermediate(const std::string& id, const std::string& parent,
                                            std::vector<std::string> scope) {
  auto owned = std::make_unique<IntermediateNode>();
  IntermediateNode* n = owned.get();
  intermediates_.push_back(std::move(owned));
  n->id = id;
  n->loop = std::make_unique<core::EventLoop>(&executor_);
  n->dir = dir_.File(id);
  Must(core::MakeDirs(n->dir), "intermediate dir");
  TestNode cert = pki_.Issue(id, v1::ROLE_INTERMEDIATE, std::move(scope));
  n->db = Must(core::SqliteDb::Open(n->dir + "/intermediate.db"), "intermediate db");
  n->store = Must(core::SqliteKvStore::Open(n->db.get()), "intermediate kv");
  n->node = Must(core::NodeContext::Create(NodeConfigFor(id, cert.key_path, cert.cert_path, n->dir),
                                           n->store.get(), core::RealClock::Get()),
                 "intermediate node");
  n->transport = MakeTransport(id);
  intermediate::IntermediateOptions opts;
  opts.parent_id = parent;
  opts.cache_dir = n->dir + "/cache";
  opts.batch_delay = absl::Milliseconds(30);
  opts.fetch_timeout = absl::Seconds(2);
  opts.report_interval = absl::Seconds(2);
  n->intermediate = std::make_unique<intermediate::Intermediate>(
      opts, n->node.get(), n->db.get(), n->transport.get(), n->transport.get(), n->loop.get());
  Must(OnLoop(*n->loop, [n] { return n->intermediate->Start(); }), "intermediate start");
  return n;
}

ClientNode* TestTree::AddClient(const std::string& id, const std::string& parent, ClientSpec spec) {
  auto owned = std::make_unique<ClientNode>();
  ClientNode* c = owned.get();
  clients_.push_back(std::move(owned));
  c->id = id;
  c->loop = std::make_unique<core::EventLoop>(&executor_);
  c->parent = parent;
  c->dir = dir_.File(id);
  Must(core::MakeDirs(c->dir), "client dir");
  pki_.Issue(id, v1::ROLE_CLIENT);
  c->stub_options.dir = c->dir + "/slots";
  c->stub_options.component = "fw";
  c->stub_options.hardware_class = spec.hardware_class;
  c->stub_options.initial_version = spec.initial_version;
  c->stub_options.initial_sequence = spec.initial_sequence;
  c->stub_options.faults = spec.faults;
  c->options.parent_id = parent;
  c->options.chunk_size = 16 * 1024;
  c->options.fetch.timeout = absl::Seconds(2);
  c->options.fetch.max_tries = 3;
  c->options.max_attempts = 2;
  c->options.retry_delay = absl::Milliseconds(200);
  c->options.report_interval = absl::Seconds(2);
  c->hooks = spec.hooks;
  Must(StartClient(c), "client start");
  return c;
}

absl::Status TestTree::StartClient(ClientNode* c) {
  X1368_ASSIGN_OR_RETURN(auto store, core::FileKvStore::Open(c->dir + "/state.kv"));
  c->store = std::move(store);
  X1368_ASSIGN_OR_RETURN(
      c->node, core::NodeContext::Create(NodeConfigFor(c->id, dir_.File(c->id + ".key"),
                                                       dir_.File(c->id + ".cert"), c->dir),
                                         c->store.get(), core::RealClock::Get()));
  X1368_ASSIGN_OR_RETURN(c->consumer, stub::StubConsumer::Open(c->stub_options));
  c->transport = MakeTransport(c->id);
  c->client = std::make_unique<client::Client>(c->options, c->node.get(), c->consumer.get(),
                                               c->transport.get(), c->loop.get(), c->hooks);
  X1368_RETURN_IF_ERROR(OnLoop(*c->loop, [c] { return c->client->Start(); }));
  return absl::OkStatus();
}

void TestTree::CrashClient(ClientNode* c) {
  c->StopLoop();
  c->client->Stop();
  c->client.reset();
  c->transport.reset();
  c->consumer.reset();
  c->node.reset();
  c->store.reset();
}

absl::Status TestTree::RestartClient(ClientNode* c) {
  c->loop = std::make_unique<core::EventLoop>(&executor_);
  c->hooks = {};
  return StartClient(c);
}

absl::StatusOr<v1::ReleaseInfo> TestTree::Publish(const std::string& image,
                                                  const std::string& version, uint64_t sequence,
                                                  std::vector<std::string> hardware,
                                                  const std::string& component) {
  v1::ReleaseSubmission sub;
  *sub.mutable_manifest() = TestPki::Sign(
      author_, TestPki::ManifestFor(image, component, version, sequence, hardware, author_.id));
  sub.set_image(image);
  return OnLoop(*root_->loop, [&] { return root_->root->PublishRelease(sub); });
}

absl::StatusOr<v1::CampaignInfo> TestTree::StartCampaign(const std::string& version,
                                                         const std::string& component) {
  v1::CampaignStartRequest req;
  req.set_component(component);
  req.set_version(version);
  return OnLoop(*root_->loop, [&] { return root_->root->StartCampaign(req); });
}

v1::FleetStatus TestTree::Fleet() {
  return OnLoop(*root_->loop, [&] { return root_->root->Fleet(); });
}

std::optional<v1::DeviceRecord> TestTree::Device(const std::string& id) {
  v1::FleetStatus fleet = Fleet();
  for (const v1::DeviceRecord& d : fleet.devices()) {
    if (d.device_id() == id) return d;
  }
  return std::nullopt;
}

uint64_t TestTree::DeviceRejections(const std::string& id, v1::Reason reason) {
  auto d = Device(id);
  if (!d) return 0;
  for (const v1::ReasonCount& rc : d->rejections()) {
    if (rc.reason() == reason) return rc.count();
  }
  return 0;
}

bool TestTree::WaitForDevices(const std::vector<std::string>& devices,
                              const std::function<bool(const v1::DeviceRecord&)>& pred,
                              absl::Duration timeout) {
  return WaitFor(
      [&] {
        v1::FleetStatus f = Fleet();
        absl::flat_hash_map<std::string, const v1::DeviceRecord*> by_id;
        for (const v1::DeviceRecord& d : f.devices()) by_id[d.device_id()] = &d;
        for (const std::string& id : devices) {
          auto it = by_id.find(id);
          if (it == by_id.end() || !pred(*it->second)) return false;
        }
        return true;
      },
      timeout, absl::Milliseconds(50));
}

bool TestTree::WaitForVersion(const std::vector<std::string>& devices, const std::string& version,
                              absl::Duration timeout) {
  return WaitForDevices(
      devices,
      [&](const v1::DeviceRecord& d) {
        return d.version() == version && d.state() == v1::CONFIRMED;
      },
      timeout);
}

}  // namespace x1368::testing
