// An x1368 tree in the test process: root, intermediates and clients built by tracker-nodes as
// the daemons build them, each on its own strand of the tree's one shared Executor, with its
// files on the disk or in memory, connected through a real Mosquitto (or the in-memory
// FakeBroker). Tests build the shape they need, publish
// releases, start campaigns and wait for the fleet to converge, then look inside any node.
#ifndef X1368_TESTING_TREE_H_
#define X1368_TESTING_TREE_H_

#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "testing/mosquitto.h"
#include "testing/pki.h"
#include "x1368/client/client.h"
#include "x1368/core/env.h"
#include "x1368/core/event_loop.h"
#include "x1368/core/executor.h"
#include "x1368/core/fake_transport.h"
#include "x1368/core/file_system.h"
#include "x1368/nodes/nodes.h"

namespace x1368::testing {

// Runs `fn` on `loop` and returns its result.
template <typename F>
auto OnLoop(core::EventLoop& loop, F fn) -> decltype(fn()) {
  return core::CallOnLoop(loop, std::move(fn));
}

// A wall clock `skew_ms` off the base clock, as a device's with a wrong RTC; set_skew_ms() is a
// step while running (NTP, an operator). Monotonic time is the base's.
class SkewedClock final : public core::Clock {
 public:
  SkewedClock(const core::Clock* base, int64_t skew_ms) : base_(base), skew_ms_(skew_ms) {}
  int64_t NowMs() const override { return base_->NowMs() + skew_ms_.load(); }
  int64_t MonotonicMs() const override { return base_->MonotonicMs(); }
  bool advances_by_itself() const override { return base_->advances_by_itself(); }
  void set_skew_ms(int64_t skew_ms) { skew_ms_.store(skew_ms); }

 private:
  const core::Clock* base_;
  std::atomic<int64_t> skew_ms_;
};

// Where the tree's nodes keep their files: a real temporary directory, or one MemFileSystem per
// node (whose PowerCut() drops what that node had not synced).
enum class Storage { kDisk, kMemory };

// A node of the tree: the node the daemons run (tracker-nodes), plus what the tree needs to
// restart it over the same files.
template <typename N>
struct TreeNode : N {
  ~TreeNode() override { this->Reset(); }  // before `memfs` goes
  std::string id;
  std::string dir;
  std::unique_ptr<core::MemFileSystem> memfs;  // Storage::kMemory only
  core::Env env;
};
using RootNode = TreeNode<nodes::RootNode>;
using IntermediateNode = TreeNode<nodes::IntermediateNode>;
struct ClientNode : TreeNode<nodes::ClientNode> {
  ~ClientNode() override { this->Reset(); }  // before `wall` goes
  std::string parent;
  nodes::ClientSpec spec;
  std::unique_ptr<SkewedClock> wall;  // its own wall clock (ClientSpec::clock_skew_ms)
};

struct ClientSpec {
  std::string hardware_class = "board-a";
  std::string initial_version = "1.0.0";
  uint64_t initial_sequence = 1;
  stub::StubFaults faults;
  client::ClientHooks hooks;
  // The full-state report; short, so that a test that loses one does not wait long.
  absl::Duration report_interval = absl::Seconds(2);
  // The client module's own fetch timeout and retries (for benchmarks under load) instead of the
  // tests' short ones, which give up within seconds.
  bool module_retries = false;
  // How often the stub syncs its slot while downloading: small, so that the tests' images of a
  // few hundred KiB are synced mid-download and a power cut has something to resume from (the
  // stub's own default is 4 MiB).
  uint64_t sync_every_bytes = 256 * 1024;
  // The client's files go here instead of the tree's storage (benchmarks count its syncs); not
  // owned, must outlive the tree.
  core::FileSystem* fs = nullptr;
  // The device's wall clock runs this far off everyone else's (ClientNode::wall steps it).
  int64_t clock_skew_ms = 0;
  // Its certificate's window, when not the default (1970 to 2096).
  std::optional<std::pair<int64_t, int64_t>> cert_validity;
};

class TestTree {
 public:
  // With a real broker (`broker` set) or the in-memory one (`broker` null).
  explicit TestTree(MosquittoBroker* broker, Storage storage = Storage::kDisk);
  ~TestTree();

  TestPki& pki() { return pki_; }
  const std::string& dir() const { return dir_.path(); }
  const TestNode& author() const { return author_; }

  // `configure` may change root's spec before it is built (its admin API, its limits).
  RootNode* AddRoot(const std::function<void(nodes::RootSpec&)>& configure = nullptr);
  // `scope`: what the intermediate's certificate covers. `children_broker` (a real broker only):
  // the intermediate's children connect there, and it bridges them to its parent's broker, as a
  // gateway running its own broker for its subtree does; null: they share its parent's.
  IntermediateNode* AddIntermediate(const std::string& id, const std::string& parent,
                                    std::vector<std::string> scope,
                                    MosquittoBroker* children_broker = nullptr);
  ClientNode* AddClient(const std::string& id, const std::string& parent, ClientSpec spec = {});

  // Stops a client (as a power cut would: nothing more runs) and brings it back over the same
  // files: the stub's Open() is the reboot. With Storage::kMemory, CrashClient also drops every
  // write the client had not synced.
  void CrashClient(ClientNode* c);
  absl::Status RestartClient(ClientNode* c);
  // Stops root or an intermediate as a power cut would (nothing more runs, its session is left
  // to the broker), runs `meanwhile` with its data directory (a test may damage its files), and
  // builds it again over its files.
  using Meanwhile = std::function<void(const std::string& data_dir)>;
  absl::Status RestartRoot(const Meanwhile& meanwhile = nullptr);
  absl::Status RestartIntermediate(IntermediateNode* n, const Meanwhile& meanwhile = nullptr);

  // Chunk size of the manifests Publish() signs: small by default, so the tests' small images
  // come in several chunks.
  uint32_t publish_chunk_size = 16 * 1024;

  // Admin operations, run on the root's loop.
  absl::StatusOr<v1::ReleaseInfo> Publish(const std::string& image, const std::string& version,
                                          uint64_t sequence,
                                          std::vector<std::string> hardware = {"board-a"},
                                          const std::string& component = "fw");
  // `deadline_s` 0: the root's default (a week).
  absl::StatusOr<v1::CampaignInfo> StartCampaign(const std::string& version,
                                                 const std::string& component = "fw",
                                                 int64_t deadline_s = 0);
  v1::FleetStatus Fleet();
  std::optional<v1::DeviceRecord> Device(const std::string& id);
  // Count of `reason` among the rejections a device reported to root.
  uint64_t DeviceRejections(const std::string& id, v1::Reason reason);

  // Waits until root sees each of `devices` in a state that satisfies `pred`.
  bool WaitForDevices(const std::vector<std::string>& devices,
                      const std::function<bool(const v1::DeviceRecord&)>& pred,
                      absl::Duration timeout = absl::Seconds(30));
  bool WaitForVersion(const std::vector<std::string>& devices, const std::string& version,
                      absl::Duration timeout = absl::Seconds(30));

  // A raw transport with its own client id, for injecting what an attacker would send.
  std::unique_ptr<core::Transport> RawTransport(const std::string& client_id);
  // Fake broker only.
  core::FakeBroker* fake_broker() { return &fake_; }

  RootNode* root() { return root_.get(); }
  core::Executor* executor() { return &executor_; }

 private:
  std::unique_ptr<core::Transport> MakeTransport(const std::string& id);
  core::NodeConfig NodeConfigFor(const std::string& id, const std::string& key,
                                 const std::string& cert, const std::string& data_dir);
  // The link of `id` to its parent's broker.
  core::TransportOptions LinkFor(const std::string& id, const std::string& parent = "");
  // Sets id, dir and env (with a MemFileSystem of its own under Storage::kMemory).
  template <typename N>
  void Prepare(TreeNode<N>* n, const std::string& id);
  absl::Status StartClient(ClientNode* c);

  MosquittoBroker* broker_;
  std::map<std::string, MosquittoBroker*> children_broker_;  // by the parent that bridges them
  const Storage storage_;
  // Every node of the tree runs on these threads (declared first: destroyed last).
  core::Executor executor_{core::RealClock::Get(), /*threads=*/2, /*blocking_threads=*/2};
  core::FakeBroker fake_;
  TempDir dir_;
  TestPki pki_;
  TestNode author_;
  std::unique_ptr<RootNode> root_;
  nodes::RootSpec root_spec_;
  std::map<std::string, nodes::IntermediateSpec> intermediate_specs_;  // by id
  std::vector<std::unique_ptr<IntermediateNode>> intermediates_;
  std::vector<std::unique_ptr<ClientNode>> clients_;
};

}  // namespace x1368::testing

#endif  // X1368_TESTING_TREE_H_
