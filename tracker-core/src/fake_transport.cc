#include "x1368/core/fake_transport.h"

#include <algorithm>

namespace x1368::core {

std::unique_ptr<FakeTransport> FakeBroker::Connect(const std::string& client_id) {
  return std::make_unique<FakeTransport>(this, client_id);
}

std::vector<MqttMessage> FakeBroker::Published() const {
  absl::MutexLock lock(&mu_);
  return log_;
}

size_t FakeBroker::PublishedCount() const {
  absl::MutexLock lock(&mu_);
  return log_.size();
}

void FakeBroker::DuplicateDeliveries(bool on) {
  absl::MutexLock lock(&mu_);
  duplicate_ = on;
}

void FakeBroker::DropNext(int n) {
  absl::MutexLock lock(&mu_);
  drop_ = n;
}

void FakeBroker::KeepLog(bool on) {
  absl::MutexLock lock(&mu_);
  keep_log_ = on;
}

void FakeBroker::Inject(const MqttMessage& message) { Route(message); }

void FakeBroker::Attach(FakeTransport* t) {
  std::vector<MqttMessage> retained;
  {
    absl::MutexLock lock(&mu_);
    clients_.push_back(t);
    for (const auto& [topic, m] : retained_) retained.push_back(m);
  }
  for (const MqttMessage& m : retained) Deliver(t, m);
}

namespace {
// The transports whose handler runs on this thread now, as a chain of frames on the stack: a
// handler that stops its own transport must not wait for itself. A plain pointer, so that it has
// no destructor and still works while a thread (or the process, at exit) is being torn down.
struct DeliveryFrame {
  const FakeTransport* transport;
  const DeliveryFrame* outer;
};
thread_local const DeliveryFrame* delivering_here = nullptr;

bool DeliveringHere(const FakeTransport* t) {
  for (const DeliveryFrame* f = delivering_here; f != nullptr; f = f->outer) {
    if (f->transport == t) return true;
  }
  return false;
}
}  // namespace

void FakeBroker::Detach(FakeTransport* t, bool send_will) {
  std::optional<MqttMessage> will;
  {
    absl::MutexLock lock(&mu_);
    std::erase(clients_, t);
    bool self = DeliveringHere(t);
    auto idle = [this, t, self]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      auto it = busy_.find(t);
      return it == busy_.end() || it->second <= (self ? 1 : 0);
    };
    mu_.Await(absl::Condition(&idle));
  }
  if (send_will) {
    absl::MutexLock lock(&t->mu_);
    will = t->will_;
  }
  if (will) Route(*will);
}

void FakeBroker::Route(const MqttMessage& message) {
  std::vector<FakeTransport*> targets;
  bool duplicate = false;
  {
    absl::MutexLock lock(&mu_);
    if (keep_log_) log_.push_back(message);
    if (drop_ > 0) {
      --drop_;
      return;
    }
    if (message.retained) {
      if (message.payload.empty()) {
        retained_.erase(message.topic);
      } else {
        retained_[message.topic] = message;
      }
    }
    targets = clients_;
    duplicate = duplicate_;
  }
  MqttMessage live = message;
  live.retained = false;  // MQTT: the retain flag is cleared on live delivery
  for (FakeTransport* t : targets) {
    Deliver(t, live);
    if (duplicate) Deliver(t, live);
  }
}

void FakeBroker::Deliver(FakeTransport* t, const MqttMessage& message) {
  {
    absl::MutexLock lock(&mu_);
    // `t` may have been detached (and be about to be destroyed) since the caller listed it.
    if (std::find(clients_.begin(), clients_.end(), t) == clients_.end()) return;
    ++busy_[t];
  }
  DeliveryFrame frame{t, delivering_here};
  delivering_here = &frame;
  if (t->Subscribed(message.topic)) t->Receive(message);
  delivering_here = frame.outer;
  absl::MutexLock lock(&mu_);
  if (--busy_[t] == 0) busy_.erase(t);
}

FakeTransport::FakeTransport(FakeBroker* broker, std::string client_id) : broker_(broker) {
  options_.client_id = std::move(client_id);
  options_.broker_uri = "fake://";
}

FakeTransport::~FakeTransport() { Stop(); }

void FakeTransport::SetMessageHandler(MessageHandler handler) {
  absl::MutexLock lock(&mu_);
  on_message_ = std::move(handler);
}

void FakeTransport::SetConnectHandler(ConnectHandler handler) {
  absl::MutexLock lock(&mu_);
  on_connect_ = std::move(handler);
}

void FakeTransport::SetWillProvider(WillProvider provider) {
  absl::MutexLock lock(&mu_);
  will_provider_ = std::move(provider);
}

void FakeTransport::AddSubscription(const std::string& filter) {
  absl::MutexLock lock(&mu_);
  filters_.push_back(filter);
}

bool FakeTransport::Subscribed(const std::string& topic) const {
  absl::MutexLock lock(&mu_);
  if (!connected_) return false;
  for (const std::string& f : filters_) {
    if (TopicMatchesFilter(f, topic)) return true;
  }
  return false;
}

void FakeTransport::Receive(const MqttMessage& message) {
  MessageHandler handler;
  {
    absl::MutexLock lock(&mu_);
    handler = on_message_;
    ++stats_.received;
  }
  if (handler) handler(message);
}

absl::Status FakeTransport::Start() {
  Reconnect();
  return absl::OkStatus();
}

void FakeTransport::Reconnect() {
  WillProvider provider;
  {
    absl::MutexLock lock(&mu_);
    if (connected_) return;
    provider = will_provider_;
  }
  std::optional<MqttMessage> will;
  if (provider) will = provider();
  ConnectHandler handler;
  std::vector<MqttMessage> buffered;
  {
    absl::MutexLock lock(&mu_);
    will_ = will;
    connected_ = true;
    ++stats_.connects;
    handler = on_connect_;
    buffered.swap(buffered_);
  }
  broker_->Attach(this);
  if (handler) handler();
  for (const MqttMessage& m : buffered) broker_->Route(m);
}

absl::Status FakeTransport::Publish(const MqttMessage& message) {
  {
    absl::MutexLock lock(&mu_);
    ++stats_.published;
    if (!connected_) {
      buffered_.push_back(message);
      return absl::OkStatus();
    }
  }
  broker_->Route(message);
  return absl::OkStatus();
}

void FakeTransport::Cut() {
  {
    absl::MutexLock lock(&mu_);
    if (!connected_) return;
    connected_ = false;
    ++stats_.connection_losses;
  }
  broker_->Detach(this, /*send_will=*/true);
}

void FakeTransport::Stop() {
  {
    absl::MutexLock lock(&mu_);
    connected_ = false;
  }
  // Even when already cut: a delivery that began before the cut may still be running, and no
  // handler may run once Stop() has returned.
  broker_->Detach(this, /*send_will=*/false);
}

bool FakeTransport::connected() const {
  absl::MutexLock lock(&mu_);
  return connected_;
}

TransportStats FakeTransport::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace x1368::core
