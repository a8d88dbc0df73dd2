#include "testing/tree.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "testing/wait.h"
#include "x1368/core/file_util.h"
#include "x1368/core/mqtt_transport.h"
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

TestTree::TestTree(MosquittoBroker* broker, Storage storage)
    : broker_(broker),
      storage_(storage),
      pki_(dir_.path()),
      author_(pki_.Issue("author-1", v1::ROLE_AUTHOR, {}, {"fw"})) {}

TestTree::~TestTree() {
  // Every node's strand first, so none acts on a node that is already gone.
  for (auto& c : clients_) c->Stop();
  for (auto& i : intermediates_) i->Stop();
  if (root_) root_->Stop();
}

core::TransportOptions TestTree::LinkFor(const std::string& id, const std::string& parent) {
  if (auto it = children_broker_.find(parent); it != children_broker_.end()) {
    return it->second->ClientOptions(id);
  }
  if (broker_ != nullptr) return broker_->ClientOptions(id);
  core::TransportOptions o;
  o.client_id = id;
  return o;
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
  // Every node of a tree starts on a fresh store; its restarts find it initialised.
  c.init = true;
  return c;
}

template <typename N>
void TestTree::Prepare(TreeNode<N>* n, const std::string& id) {
  n->id = id;
  n->dir = dir_.File(id);
  n->env.executor = &executor_;
  n->env.transports = broker_ != nullptr ? core::MqttTransports(&executor_) : fake_.Transports();
  if (storage_ == Storage::kMemory) {
    n->memfs = std::make_unique<core::MemFileSystem>();
    n->env.fs = n->memfs.get();
  }
}

RootNode* TestTree::AddRoot(const std::function<void(nodes::RootSpec&)>& configure) {
  root_ = std::make_unique<RootNode>();
  RootNode* r = root_.get();
  Prepare(r, pki_.root_id());
  nodes::RootSpec spec;
  spec.node = NodeConfigFor(r->id, pki_.root_key_path(), "", r->dir);
  spec.options.images_dir = r->dir + "/images";
  spec.downstream = LinkFor(r->id);
  spec.options.resync_backoff = absl::Seconds(2);
  if (configure) configure(spec);
  root_spec_ = spec;
  Must(nodes::Build(r->env, spec, r), "root build");
  Must(r->Start(), "root start");
  return r;
}

absl::Status TestTree::RestartRoot(const Meanwhile& meanwhile) {
  RootNode* r = root_.get();
  r->Reset();
  if (meanwhile) meanwhile(r->dir);
  X1368_RETURN_IF_ERROR(nodes::Build(r->env, root_spec_, r));
  return r->Start();
}

absl::Status TestTree::RestartIntermediate(IntermediateNode* n, const Meanwhile& meanwhile) {
  n->Reset();
  if (meanwhile) meanwhile(n->dir);
  X1368_RETURN_IF_ERROR(nodes::Build(n->env, intermediate_specs_.at(n->id), n));
  return n->Start();
}

IntermediateNode* TestTree::AddIntermediate(const std::string& id, const std::string& parent,
                                            std::vector<std::string> scope,
                                            MosquittoBroker* children_broker) {
  auto owned = std::make_unique<IntermediateNode>();
  IntermediateNode* n = owned.get();
  intermediates_.push_back(std::move(owned));
  Prepare(n, id);
  TestNode cert = pki_.Issue(id, v1::ROLE_INTERMEDIATE, std::move(scope));
  nodes::IntermediateSpec spec;
  spec.node = NodeConfigFor(id, cert.key_path, cert.cert_path, n->dir);
  spec.options.parent_id = parent;
  spec.options.cache_dir = n->dir + "/cache";
  spec.options.batch_delay = absl::Milliseconds(30);
  spec.options.fetch_timeout = absl::Seconds(2);
  spec.options.report_interval = absl::Seconds(2);
  // Its children report every 2 s (ClientSpec::report_interval): three missed are down.
  spec.options.child_timeout = absl::Seconds(7);
  spec.options.summary_interval = absl::Seconds(2);
  spec.options.resync_backoff = absl::Seconds(2);
  spec.upstream = LinkFor(id, parent);
  if (children_broker != nullptr) {
    spec.downstream = children_broker->ClientOptions(id);
    children_broker_[id] = children_broker;
  }
  intermediate_specs_[id] = spec;
  Must(nodes::Build(n->env, spec, n), "intermediate build");
  Must(n->Start(), "intermediate start");
  return n;
}

ClientNode* TestTree::AddClient(const std::string& id, const std::string& parent, ClientSpec spec) {
  auto owned = std::make_unique<ClientNode>();
  ClientNode* c = owned.get();
  clients_.push_back(std::move(owned));
  Prepare(c, id);
  if (spec.fs != nullptr) c->env.fs = spec.fs;
  c->parent = parent;
  c->wall = std::make_unique<SkewedClock>(&executor_.clock(), spec.clock_skew_ms);
  c->env.wall_clock = c->wall.get();
  if (spec.cert_validity) {
    pki_.Issue(id, v1::ROLE_CLIENT, {}, {}, spec.cert_validity->first, spec.cert_validity->second);
  } else {
    pki_.Issue(id, v1::ROLE_CLIENT);
  }
  nodes::ClientSpec& s = c->spec;
  s.node = NodeConfigFor(id, dir_.File(id + ".key"), dir_.File(id + ".cert"), c->dir);
  s.consumer.dir = c->dir + "/slots";
  s.consumer.fs = c->env.fs;
  s.consumer.component = "fw";
  s.consumer.hardware_class = spec.hardware_class;
  s.consumer.initial_version = spec.initial_version;
  s.consumer.initial_sequence = spec.initial_sequence;
  s.consumer.faults = spec.faults;
  s.consumer.sync_every_bytes = spec.sync_every_bytes;
  s.options.parent_id = parent;
  if (!spec.module_retries) {
    s.options.fetch.timeout = absl::Seconds(2);
    s.options.fetch.max_tries = 3;
    s.options.max_attempts = 2;
    s.options.retry_delay = absl::Milliseconds(200);
  }
  s.options.report_interval = spec.report_interval;
  s.hooks = spec.hooks;
  s.upstream = LinkFor(id, parent);
  Must(StartClient(c), "client start");
  return c;
}

absl::Status TestTree::StartClient(ClientNode* c) {
  X1368_RETURN_IF_ERROR(nodes::Build(c->env, c->spec, c));
  return c->Start();
}

void TestTree::CrashClient(ClientNode* c) {
  c->Reset();
  if (c->memfs) c->memfs->PowerCut();
}

absl::Status TestTree::RestartClient(ClientNode* c) {
  c->spec.hooks = {};
  return StartClient(c);
}

absl::StatusOr<v1::ReleaseInfo> TestTree::Publish(const std::string& image,
                                                  const std::string& version, uint64_t sequence,
                                                  std::vector<std::string> hardware,
                                                  const std::string& component) {
  v1::ReleaseSubmission sub;
  *sub.mutable_manifest() =
      TestPki::Sign(author_, TestPki::ManifestFor(image, component, version, sequence, hardware,
                                                  author_.id, publish_chunk_size));
  sub.set_image(image);
  return OnLoop(*root_->loop, [&] { return root_->root->PublishRelease(sub); });
}

absl::StatusOr<v1::CampaignInfo> TestTree::StartCampaign(const std::string& version,
                                                         const std::string& component,
                                                         int64_t deadline_s) {
  v1::CampaignStartRequest req;
  req.set_component(component);
  req.set_version(version);
  req.set_deadline_s(deadline_s);
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
