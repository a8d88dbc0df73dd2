// An in-memory MQTT broker and Transport for unit tests and simulations without Mosquitto:
// QoS 1 delivery in publish order, retained messages, Last Will on an abrupt disconnect, and
// fault injection (cut a connection, duplicate every delivery, drop the next N messages).
// Delivery happens on the publisher's thread; handlers only post to event loops, as they must
// with the real transport. Thread-safe: a transport that stops, is cut or is destroyed while
// another thread routes a message is first unregistered, then waits until no delivery to it is
// still running, so no handler runs on a transport (or on the node behind it) once Stop() or the
// destructor has returned.
#ifndef X1368_CORE_FAKE_TRANSPORT_H_
#define X1368_CORE_FAKE_TRANSPORT_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "x1368/core/env.h"
#include "x1368/core/transport.h"

namespace x1368::core {

class FakeTransport;

class FakeBroker {
 public:
  std::unique_ptr<FakeTransport> Connect(const std::string& client_id);
  // Connects each link by its client id (for core::Env::transports).
  TransportFactory Transports();
  // Connects here the links whose broker_uri starts with kMemoryScheme (env.h); `others` makes
  // every other link (e.g. MqttTransports()). `others` may be null when every link is in memory.
  TransportFactory TransportsOr(TransportFactory others);

  // Every message published so far (for assertions on what crossed the wire).
  std::vector<MqttMessage> Published() const;
  size_t PublishedCount() const;
  // Publishes as if from an outside client (an attacker, or a test).
  void Inject(const MqttMessage& message);
  // Every later delivery happens twice (QoS 1 redelivery).
  void DuplicateDeliveries(bool on);
  // Drops the next `n` messages published.
  void DropNext(int n);
  // Whether Published() keeps every message (the default); off for long or large runs.
  void KeepLog(bool on);

 private:
  friend class FakeTransport;
  // Registers `t` with its subscriptions (a connect) and delivers the retained messages they match.
  void Attach(FakeTransport* t);
  // Adds a subscription of a registered transport.
  void Subscribe(FakeTransport* t, const std::string& filter);
  // Unregisters `t` (idempotent) and waits until no other thread is delivering to it.
  void Detach(FakeTransport* t, bool send_will);
  void Route(const MqttMessage& message);
  // Delivers to `t` only while it is registered, counting the delivery in `busy_` so that
  // Detach() can wait for it.
  void Deliver(FakeTransport* t, const MqttMessage& message);

  struct Subscription {
    std::string filter;
    FakeTransport* transport;
  };
  // The subscribers a message may reach, without looking at every transport: `index_` is keyed by
  // a filter's literal levels before its first wildcard ("x1368/gw1" for "x1368/gw1/+/up/#"), so
  // a topic is matched only against the filters keyed by one of its level prefixes.
  static std::string LiteralPrefix(absl::string_view filter);
  void Index(FakeTransport* t, const std::string& filter) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The registered transports that `topic` reaches, each once.
  std::vector<FakeTransport*> Subscribers(absl::string_view topic) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  // Registered (connected) transports and their filters.
  absl::flat_hash_map<FakeTransport*, std::vector<std::string>> clients_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::vector<Subscription>> index_ ABSL_GUARDED_BY(mu_);
  // Deliveries running now, per transport.
  absl::flat_hash_map<const FakeTransport*, int> busy_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, MqttMessage, std::less<>> retained_ ABSL_GUARDED_BY(mu_);
  std::vector<MqttMessage> log_ ABSL_GUARDED_BY(mu_);
  bool duplicate_ ABSL_GUARDED_BY(mu_) = false;
  bool keep_log_ ABSL_GUARDED_BY(mu_) = true;
  int drop_ ABSL_GUARDED_BY(mu_) = 0;
};

class FakeTransport final : public Transport {
 public:
  FakeTransport(FakeBroker* broker, std::string client_id);
  ~FakeTransport() override;

  void SetMessageHandler(MessageHandler handler) override;
  void SetConnectHandler(ConnectHandler handler) override;
  void SetWillProvider(WillProvider provider) override;
  void AddSubscription(const std::string& filter) override;
  absl::Status Start() override;
  absl::Status Publish(MqttMessage message) override;
  void Stop() override;
  bool connected() const override;
  TransportStats stats() const override;
  const TransportOptions& options() const override { return options_; }

  // Abrupt loss: the broker publishes the Will; publishes are buffered until Reconnect().
  void Cut();
  void Reconnect();

 private:
  friend class FakeBroker;
  void Receive(const MqttMessage& message);

  FakeBroker* broker_;
  TransportOptions options_;
  mutable absl::Mutex mu_;
  MessageHandler on_message_ ABSL_GUARDED_BY(mu_);
  ConnectHandler on_connect_ ABSL_GUARDED_BY(mu_);
  WillProvider will_provider_ ABSL_GUARDED_BY(mu_);
  std::optional<MqttMessage> will_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> filters_ ABSL_GUARDED_BY(mu_);
  std::vector<MqttMessage> buffered_ ABSL_GUARDED_BY(mu_);
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  TransportStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace x1368::core

#endif  // X1368_CORE_FAKE_TRANSPORT_H_
