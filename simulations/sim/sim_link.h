// The sim's view of every link: a Transport decorator that counts what crosses it (control bytes
// apart from image bytes), can lose a share of the messages (--loss), and can be cut dead the way
// a power cut or a kill -9 cuts a node off (nothing in or out from then on).
#ifndef X1368_SIM_SIM_LINK_H_
#define X1368_SIM_SIM_LINK_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "absl/synchronization/mutex.h"
#include "x1368/core/env.h"
#include "x1368/core/transport.h"

namespace x1368::sim {

// What crossed a set of links, as their nodes published and received it.
struct LinkCounters {
  std::atomic<uint64_t> messages{0};       // published + received
  std::atomic<uint64_t> image_bytes{0};    // chunks of images and their tables (…/down/data)
  std::atomic<uint64_t> control_bytes{0};  // every other payload, chunk requests included
  std::atomic<uint64_t> lost{0};           // dropped by --loss

  void Add(const LinkCounters& o) {
    messages += o.messages.load();
    image_bytes += o.image_bytes.load();
    control_bytes += o.control_bytes.load();
    lost += o.lost.load();
  }
};

// Counters by the kind of node a link belongs to, told by its client id ("root" for root,
// "gw-" gateways, "dev-" devices). Only the image bytes root publishes leave the top of the tree:
// `root_image_out` is what the whole fleet's download cost the root's link.
struct FleetCounters {
  LinkCounters root, gateways, devices;
  std::atomic<uint64_t> root_image_out{0};
};

class SimLink : public core::Transport {
 public:
  // `loss`: the share of messages, in each direction, that never arrive (seeded per link).
  SimLink(std::unique_ptr<core::Transport> inner, LinkCounters* counters,
          std::atomic<uint64_t>* image_out, double loss, uint64_t seed);
  ~SimLink() override;

  void SetMessageHandler(MessageHandler handler) override;
  void SetConnectHandler(ConnectHandler handler) override;
  void SetWillProvider(WillProvider provider) override;
  void AddSubscription(const std::string& filter) override;
  absl::Status Start() override;
  absl::Status Publish(core::MqttMessage message) override;
  void Stop() override;
  bool connected() const override;
  core::TransportStats stats() const override;
  const core::TransportOptions& options() const override;

  // From now on nothing goes out and nothing comes in. On the in-process broker the link also
  // drops the way a dead node's does (its Will goes out).
  void Cut();

 private:
  bool Lose();
  void Count(const core::MqttMessage& m, bool out);

  std::unique_ptr<core::Transport> inner_;
  LinkCounters* counters_;
  std::atomic<uint64_t>* image_out_;  // may be null
  const double loss_;
  std::atomic<bool> cut_{false};
  absl::Mutex rng_mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(rng_mu_);
};

// Wraps every link `inner` makes in a SimLink counting into `counters` by node kind.
core::TransportFactory CountedLinks(core::TransportFactory inner, FleetCounters* counters,
                                    std::string root_id, double loss, uint64_t seed);

}  // namespace x1368::sim

#endif  // X1368_SIM_SIM_LINK_H_
