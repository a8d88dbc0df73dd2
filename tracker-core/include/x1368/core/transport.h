// The MQTT link behind a small interface (docs/style.md: only one file of tracker-core includes
// Paho).
//
// A Transport is one MQTT 5 connection: it connects, reconnects with exponential backoff,
// re-subscribes after every reconnect, signs a fresh Last Will before every connect attempt
// (WillProvider), and buffers a bounded number of publishes while disconnected, dropping the
// oldest first (status is state, so the newest report supersedes older ones).
//
// A transport owns no thread: the MQTT one runs on a shared Executor and on Paho's own threads,
// so one process can host many. Handlers run on those threads (the message handler on Paho's,
// the Will provider and connect handler on the executor, one at a time) and must only hand work
// to the node's EventLoop; never call back into the Transport from inside a handler
// (paho.mqtt.cpp#155, #356). All methods are thread-safe.
#ifndef X1368_CORE_TRANSPORT_H_
#define X1368_CORE_TRANSPORT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "x1368/core/executor.h"

namespace x1368::core {

struct MqttMessage {
  std::string topic;
  std::string payload;
  bool retained = false;
};

struct TlsOptions {
  std::string ca_file;    // CA that signed the broker's certificate
  std::string cert_file;  // this node's TLS client certificate (PEM)
  std::string key_file;   // its private key (PEM)
  bool enabled() const { return !ca_file.empty(); }
};

struct TransportOptions {
  std::string broker_uri;  // tcp://host:port, or ssl://host:port with tls set
  std::string client_id;   // the node id: broker ACLs match it with %c
  TlsOptions tls;
  int keepalive_s = 30;
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration min_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(30);
  int max_buffered = 10000;  // publishes held while disconnected
  // MQTT 5 session expiry: the broker keeps subscriptions and queues QoS 1 messages this long
  // while the node is away. 0: a clean session on every connect.
  int session_expiry_s = 3600;
  // MQTT 5 Will Delay Interval: the broker holds this node's Will (its "offline" presence) this
  // long after the connection is lost, and drops it if the node is back in time, so a quick
  // reconnect is never an outage (X.1368 §11.2 b.i). 0: the Will goes at once. The daemons'
  // default is 10 s (`<link>.will_delay_s`).
  int will_delay_s = 0;
  // What the broker queues for this connection beyond the messages in flight (Mosquitto's
  // max_queued_messages, 1000 unless its configuration says otherwise; it drops the rest without
  // telling anyone). A parent shares it among its children's chunks in flight (ChunkWindowFor).
  uint32_t broker_max_queued = 1000;
};

struct TransportStats {
  uint64_t connects = 0;
  uint64_t connection_losses = 0;
  uint64_t published = 0;
  uint64_t publish_errors = 0;
  uint64_t received = 0;
  uint64_t dropped = 0;  // oldest messages dropped from the full offline buffer
  // The broker closed the connection because another one connected with our client id.
  uint64_t taken_over = 0;
  // Connections lost before they had lasted 10 s (each one backs the next attempt off).
  uint64_t quick_losses = 0;
};

class Transport {
 public:
  using MessageHandler = std::function<void(MqttMessage)>;
  using ConnectHandler = std::function<void()>;
  using WillProvider = std::function<std::optional<MqttMessage>()>;

  virtual ~Transport() = default;

  // Set before Start().
  virtual void SetMessageHandler(MessageHandler handler) = 0;
  // Called after each successful (re)connect, once subscriptions are in place.
  virtual void SetConnectHandler(ConnectHandler handler) = 0;
  // Called before each connect attempt; its message becomes the Last Will of that connection.
  virtual void SetWillProvider(WillProvider provider) = 0;
  // Remembered and subscribed (QoS 1) on every connect; takes effect at once when connected.
  virtual void AddSubscription(const std::string& filter) = 0;

  // Starts connecting in the background; returns at once.
  virtual absl::Status Start() = 0;
  // QoS 1. While disconnected the message waits in the bounded buffer. By value: a chunk's
  // payload is moved along, never copied, until Paho copies it for the socket.
  virtual absl::Status Publish(MqttMessage message) = 0;
  // Disconnects cleanly (the broker discards the Will) and stops reconnecting. Waits (bounded)
  // for queued messages to go out and for a handler that is running; once it returns no handler
  // runs. May be called from an executor thread.
  virtual void Stop() = 0;

  virtual bool connected() const = 0;
  virtual TransportStats stats() const = 0;
  virtual const TransportOptions& options() const = 0;
};

// MQTT topic filter matching, with the `+` and `#` wildcards.
bool TopicMatchesFilter(absl::string_view filter, absl::string_view topic);

}  // namespace x1368::core

#endif  // X1368_CORE_TRANSPORT_H_
