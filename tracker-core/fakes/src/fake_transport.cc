#include "x1368/core/fake_transport.h"

#include <algorithm>
#include <functional>
#include <set>

#include "absl/strings/match.h"

namespace x1368::core {

TransportFactory FakeBroker::Transports() {
  return [this](const TransportOptions& options) -> std::unique_ptr<Transport> {
    return Connect(options.client_id);
  };
}

TransportFactory FakeBroker::TransportsOr(TransportFactory others) {
  return [this, others = std::move(others)](
             const TransportOptions& options) -> std::unique_ptr<Transport> {
    if (absl::StartsWith(options.broker_uri, kMemoryScheme) || others == nullptr) {
      return Connect(options.client_id);
    }
    return others(options);
  };
}

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

std::string FakeBroker::LiteralPrefix(absl::string_view filter) {
  size_t end = 0;  // just past the last literal level seen
  size_t start = 0;
  while (start <= filter.size()) {
    size_t slash = filter.find('/', start);
    if (slash == absl::string_view::npos) slash = filter.size();
    absl::string_view level = filter.substr(start, slash - start);
    if (level == "+" || level == "#") break;
    end = slash;
    start = slash + 1;
  }
  return std::string(filter.substr(0, end));
}

void FakeBroker::Index(FakeTransport* t, const std::string& filter) {
  index_[LiteralPrefix(filter)].push_back({filter, t});
}

std::vector<FakeTransport*> FakeBroker::Subscribers(absl::string_view topic) const {
  std::vector<FakeTransport*> out;
  auto visit = [&](absl::string_view prefix) {
    auto it = index_.find(prefix);
    if (it == index_.end()) return;
    for (const Subscription& s : it->second) {
      if (TopicMatchesFilter(s.filter, topic) &&
          std::find(out.begin(), out.end(), s.transport) == out.end()) {
        out.push_back(s.transport);
      }
    }
  };
  visit("");  // filters that begin with a wildcard
  for (size_t slash = topic.find('/'); slash != absl::string_view::npos;
       slash = topic.find('/', slash + 1)) {
    visit(topic.substr(0, slash));
  }
  visit(topic);
  return out;
}

void FakeBroker::Attach(FakeTransport* t) {
  std::vector<MqttMessage> retained;
  {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> filters;
    {
      // Read under both locks: a subscription added meanwhile is either here or indexed by
      // Subscribe() once we are registered (twice is harmless: Subscribers() delivers once).
      absl::MutexLock transport_lock(&t->mu_);
      filters = t->filters_;
    }
    clients_[t] = filters;
    for (const std::string& f : filters) Index(t, f);
    // Only the retained topics under each filter's literal prefix can match it (retained_ is
    // ordered by topic): a device that connects does not scan the whole fleet's presence.
    std::set<absl::string_view> matched;
    for (const std::string& f : filters) {
      const std::string prefix = LiteralPrefix(f);
      for (auto it = retained_.lower_bound(prefix);
           it != retained_.end() && absl::StartsWith(it->first, prefix); ++it) {
        if (TopicMatchesFilter(f, it->first)) matched.insert(it->first);
      }
    }
    for (absl::string_view topic : matched) retained.push_back(retained_.find(topic)->second);
  }
  for (const MqttMessage& m : retained) Deliver(t, m);
}

void FakeBroker::Subscribe(FakeTransport* t, const std::string& filter) {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(t);
  if (it == clients_.end()) return;  // not connected (any more): subscribed at the next connect
  it->second.push_back(filter);
  Index(t, filter);
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
    if (auto it = clients_.find(t); it != clients_.end()) {
      for (const std::string& f : it->second) {
        auto& subs = index_[LiteralPrefix(f)];
        std::erase_if(subs, [t](const Subscription& s) { return s.transport == t; });
        if (subs.empty()) index_.erase(LiteralPrefix(f));
      }
      clients_.erase(it);
    }
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
    // Matched under the lock: a registered transport cannot be destroyed meanwhile (its Detach
    // waits for the lock), and only the subscribers are visited again below.
    targets = Subscribers(message.topic);
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
    if (!clients_.contains(t)) return;
    ++busy_[t];
  }
  DeliveryFrame frame{t, delivering_here};
  delivering_here = &frame;
  t->Receive(message);
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
  {
    absl::MutexLock lock(&mu_);
    filters_.push_back(filter);
  }
  broker_->Subscribe(this, filter);  // at once when connected
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

absl::Status FakeTransport::Publish(MqttMessage message) {
  {
    absl::MutexLock lock(&mu_);
    ++stats_.published;
    if (!connected_) {
      buffered_.push_back(std::move(message));
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
