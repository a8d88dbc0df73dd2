#include "simulations/sim/sim_link.h"

#include <functional>
#include <utility>

#include "absl/strings/match.h"
#include "x1368/core/fake_transport.h"

namespace x1368::sim {

SimLink::SimLink(std::unique_ptr<core::Transport> inner, LinkCounters* counters,
                 std::atomic<uint64_t>* image_out, double loss, uint64_t seed)
    : inner_(std::move(inner)),
      counters_(counters),
      image_out_(image_out),
      loss_(loss),
      rng_(seed) {}

SimLink::~SimLink() = default;

bool SimLink::Lose() {
  if (loss_ <= 0) return false;
  absl::MutexLock lock(&rng_mu_);
  return std::uniform_real_distribution<double>(0, 1)(rng_) < loss_;
}

void SimLink::Count(const core::MqttMessage& m, bool out) {
  counters_->messages.fetch_add(1, std::memory_order_relaxed);
  if (absl::EndsWith(m.topic, "/down/data")) {  // chunks of images and their tables
    counters_->image_bytes.fetch_add(m.payload.size(), std::memory_order_relaxed);
    if (out && image_out_ != nullptr) {
      image_out_->fetch_add(m.payload.size(), std::memory_order_relaxed);
    }
  } else {
    counters_->control_bytes.fetch_add(m.payload.size(), std::memory_order_relaxed);
  }
}

void SimLink::SetMessageHandler(MessageHandler handler) {
  inner_->SetMessageHandler([this, handler = std::move(handler)](core::MqttMessage m) {
    if (cut_.load()) return;
    if (Lose()) {
      counters_->lost.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    Count(m, /*out=*/false);
    handler(std::move(m));
  });
}

void SimLink::SetConnectHandler(ConnectHandler handler) {
  inner_->SetConnectHandler([this, handler = std::move(handler)] {
    if (!cut_.load()) handler();
  });
}

void SimLink::SetWillProvider(WillProvider provider) {
  inner_->SetWillProvider(std::move(provider));
}

void SimLink::AddSubscription(const std::string& filter) { inner_->AddSubscription(filter); }

absl::Status SimLink::Start() { return inner_->Start(); }

absl::Status SimLink::Publish(core::MqttMessage message) {
  if (cut_.load()) return absl::OkStatus();  // the node thinks it spoke; nobody heard it
  if (Lose()) {
    counters_->lost.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }
  Count(message, /*out=*/true);
  return inner_->Publish(std::move(message));
}

void SimLink::Stop() { inner_->Stop(); }

bool SimLink::connected() const { return !cut_.load() && inner_->connected(); }

core::TransportStats SimLink::stats() const { return inner_->stats(); }

const core::TransportOptions& SimLink::options() const { return inner_->options(); }

void SimLink::Cut() {
  cut_.store(true);
  if (auto* fake = dynamic_cast<core::FakeTransport*>(inner_.get())) fake->Cut();
}

core::TransportFactory CountedLinks(core::TransportFactory inner, FleetCounters* counters,
                                    std::string root_id, double loss, uint64_t seed) {
  return [inner = std::move(inner), counters, root_id = std::move(root_id), loss,
          seed](const core::TransportOptions& o) -> std::unique_ptr<core::Transport> {
    std::unique_ptr<core::Transport> t = inner(o);
    if (t == nullptr) return t;
    LinkCounters* c = &counters->devices;
    std::atomic<uint64_t>* image_out = nullptr;
    if (o.client_id == root_id) {
      c = &counters->root;
      image_out = &counters->root_image_out;
    } else if (absl::StartsWith(o.client_id, "gw-")) {
      c = &counters->gateways;
    }
    // Loss is the last mile's: device links only (a gateway's uplink is a wired backhaul here).
    double link_loss = c == &counters->devices ? loss : 0;
    return std::make_unique<SimLink>(
        std::move(t), c, image_out, link_loss,
        seed ^ std::hash<std::string>()(o.client_id));  // repeatable, unlike absl::Hash
  };
}

}  // namespace x1368::sim
