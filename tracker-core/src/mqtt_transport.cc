// The only file that includes Paho. See transport.h for the contract.
//
// Two threads of our own drive the Paho async client:
//   - the connect loop (re)connects with jittered exponential backoff, signs a fresh Will for
//     each attempt, re-subscribes, and reads the broker's Receive Maximum;
//   - the sender drains one FIFO outbox, keeping at most that many QoS 1 publishes in flight.
// Keeping under the broker's Receive Maximum ourselves matters: Paho C 1.3 stalls up to a second
// whenever it reaches that limit itself (paho.mqtt.c#1457), and its own offline buffer drops
// messages that are merely queued while connected. The outbox is bounded by max_buffered and
// drops its oldest message first (status is state: the newest report supersedes older ones).
#include "x1368/core/mqtt_transport.h"

#include <dirent.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <deque>
#include <random>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "x1368/core/log.h"

namespace x1368::core {

namespace {

constexpr int kPahoBufferLimit = 1 << 24;

// Paho C never sets TCP_NODELAY, and MQTT's small packets (a PUBACK, then the next PUBLISH)
// then wait for the peer's delayed ACK under Nagle's algorithm: ~40 ms per hop. Paho does not
// expose its socket, so after each connect every TCP socket of the process gets the option;
// for the others (HTTP) it is harmless.
void SetNoDelayOnTcpSockets() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return;
  while (dirent* e = ::readdir(dir)) {
    int fd = std::atoi(e->d_name);
    if (fd <= 2 || fd == ::dirfd(dir)) continue;
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    int type = 0;
    socklen_t len = sizeof(type);
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) continue;
    sockaddr_storage addr;
    socklen_t alen = sizeof(addr);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
    if (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ::closedir(dir);
}
constexpr int kMaxInflight = 256;
constexpr absl::Duration kDrainOnStop = absl::Seconds(2);

class MqttTransport final : public Transport, private mqtt::iaction_listener {
 public:
  explicit MqttTransport(TransportOptions options) : opts_(std::move(options)) {}

  ~MqttTransport() override { Stop(); }

  void SetMessageHandler(MessageHandler handler) override {
    absl::MutexLock lock(&mu_);
    on_message_ = std::move(handler);
  }
  void SetConnectHandler(ConnectHandler handler) override {
    absl::MutexLock lock(&mu_);
    on_connect_ = std::move(handler);
  }
  void SetWillProvider(WillProvider provider) override {
    absl::MutexLock lock(&mu_);
    will_provider_ = std::move(provider);
  }

  void AddSubscription(const std::string& filter) override {
    bool now = false;
    {
      absl::MutexLock lock(&mu_);
      filters_.push_back(filter);
      now = connected_;
    }
    if (now) {
      try {
        client_->subscribe(filter, 1)->wait_for(std::chrono::seconds(5));
      } catch (const mqtt::exception& e) {
        spdlog::warn("event=mqtt.subscribe_failed filter={} error=\"{}\"", filter, e.what());
      }
    }
  }

  absl::Status Start() override {
    try {
      auto create = mqtt::create_options_builder()
                        .mqtt_version(MQTTVERSION_5)
                        .send_while_disconnected(true, /*anyTime=*/true)
                        .max_buffered_messages(kPahoBufferLimit)
                        .delete_oldest_messages(false)
                        .finalize();
      client_ = std::make_unique<mqtt::async_client>(opts_.broker_uri, opts_.client_id, create);
    } catch (const mqtt::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("MQTT client for ", opts_.broker_uri, ": ", e.what()));
    }
    client_->set_message_callback([this](mqtt::const_message_ptr msg) {
      stats_received_.fetch_add(1);
      MessageHandler handler;
      {
        absl::MutexLock lock(&mu_);
        if (stop_ || !on_message_) return;
        handler = on_message_;
        ++delivering_;
      }
      handler(MqttMessage{msg->get_topic(), msg->get_payload_str(), msg->is_retained()});
      absl::MutexLock lock(&mu_);
      --delivering_;
    });
    auto lost = [this](const std::string& cause) {
      absl::MutexLock lock(&mu_);
      if (connected_) stats_losses_.fetch_add(1);
      connected_ = false;
      want_connect_ = true;
      spdlog::info("event=mqtt.connection_lost broker={} cause=\"{}\"", opts_.broker_uri, cause);
    };
    client_->set_connection_lost_handler(lost);
    client_->set_disconnected_handler([lost](const mqtt::properties&, mqtt::ReasonCode rc) {
      lost(absl::StrCat("server disconnect ", static_cast<int>(rc)));
    });
    {
      absl::MutexLock lock(&mu_);
      want_connect_ = true;
    }
    connector_ = std::thread([this] { ConnectLoop(); });
    sender_ = std::thread([this] { SendLoop(); });
    return absl::OkStatus();
  }

  absl::Status Publish(const MqttMessage& m) override {
    if (client_ == nullptr) return absl::FailedPreconditionError("transport not started");
    absl::MutexLock lock(&mu_);
    if (stop_) return absl::FailedPreconditionError("transport stopped");
    outbox_.push_back(m);
    if (outbox_.size() > static_cast<size_t>(opts_.max_buffered)) {
      outbox_.pop_front();
      stats_dropped_.fetch_add(1);
    }
    return absl::OkStatus();
  }

  void Stop() override {
    {
      absl::MutexLock lock(&mu_);
      if (stop_ || client_ == nullptr) return;
      // A clean shutdown first lets what is already queued go out (bounded).
      auto drained = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return !connected_ || (outbox_.empty() && inflight_ == 0);
      };
      mu_.AwaitWithTimeout(absl::Condition(&drained), kDrainOnStop);
      stop_ = true;
      // No handler runs once Stop() has returned: the node behind it may be destroyed next.
      auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return delivering_ == 0; };
      mu_.Await(absl::Condition(&idle));
    }
    if (connector_.joinable()) connector_.join();
    if (sender_.joinable()) sender_.join();
    try {
      if (client_->is_connected()) client_->disconnect()->wait_for(std::chrono::seconds(2));
    } catch (const mqtt::exception&) {
    }
    absl::MutexLock lock(&mu_);
    connected_ = false;
  }

  bool connected() const override {
    absl::MutexLock lock(&mu_);
    return connected_;
  }

  TransportStats stats() const override {
    TransportStats s;
    s.connects = stats_connects_.load();
    s.connection_losses = stats_losses_.load();
    s.published = stats_published_.load();
    s.publish_errors = stats_publish_errors_.load();
    s.received = stats_received_.load();
    s.dropped = stats_dropped_.load();
    return s;
  }

  const TransportOptions& options() const override { return opts_; }

 private:
  // mqtt::iaction_listener: a publish completed (PUBACK) or failed. Called on a Paho thread:
  // only bookkeeping here, never a call back into Paho.
  void on_success(const mqtt::token&) override { Delivered(true); }
  void on_failure(const mqtt::token&) override { Delivered(false); }
  void Delivered(bool ok) {
    absl::MutexLock lock(&mu_);
    if (inflight_ > 0) --inflight_;
    if (!ok) stats_publish_errors_.fetch_add(1);
  }

  void SendLoop() {
    while (true) {
      MqttMessage m;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
          return stop_ || (connected_ && inflight_ < inflight_limit_ && !outbox_.empty());
        };
        mu_.Await(absl::Condition(&ready));
        if (stop_) return;
        m = std::move(outbox_.front());
        outbox_.pop_front();
        ++inflight_;
      }
      try {
        client_->publish(mqtt::make_message(m.topic, m.payload, 1, m.retained), nullptr, *this);
        stats_published_.fetch_add(1);
      } catch (const mqtt::exception& e) {
        absl::MutexLock lock(&mu_);
        --inflight_;
        stats_publish_errors_.fetch_add(1);
        spdlog::debug("event=mqtt.publish_failed topic={} error=\"{}\"", m.topic, e.what());
      }
    }
  }

  // Paho C++ 1.2 copies connect_options with raw pointers into the copied-from object's
  // properties, Will and TLS options (its builder's finalize() and connect()'s by-value parameter
  // both copy), so those are set on the object that stays alive until connect() has returned.
  void BuildConnectOptions(const std::optional<MqttMessage>& will, mqtt::connect_options* out) {
    mqtt::connect_options_builder b;
    b.mqtt_version(MQTTVERSION_5)
        .clean_start(opts_.session_expiry_s == 0)
        .keep_alive_interval(std::chrono::seconds(opts_.keepalive_s))
        .connect_timeout(
            std::chrono::milliseconds(absl::ToInt64Milliseconds(opts_.connect_timeout)));
    *out = b.finalize();
    if (opts_.tls.enabled()) {
      out->set_ssl(mqtt::ssl_options_builder()
                       .trust_store(opts_.tls.ca_file)
                       .key_store(opts_.tls.cert_file)
                       .private_key(opts_.tls.key_file)
                       .enable_server_cert_auth(true)
                       .verify(true)
                       .finalize());
    }
    if (opts_.session_expiry_s > 0) {
      out->set_properties(mqtt::properties{
          mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL, opts_.session_expiry_s)});
    }
    if (will) out->set_will_message(mqtt::message(will->topic, will->payload, 1, will->retained));
  }

  // Connects and subscribes; returns the broker's Receive Maximum, or 0 on failure.
  int TryConnect() {
    WillProvider provider;
    {
      absl::MutexLock lock(&mu_);
      provider = will_provider_;
    }
    std::optional<MqttMessage> will;
    if (provider) will = provider();
    try {
      mqtt::connect_options options;
      BuildConnectOptions(will, &options);
      auto tok = client_->connect(options);
      int64_t timeout_ms = absl::ToInt64Milliseconds(opts_.connect_timeout) + 1000;
      if (!tok->wait_for(std::chrono::milliseconds(timeout_ms)) || !client_->is_connected()) {
        try {
          client_->disconnect()->wait_for(std::chrono::seconds(1));
        } catch (const mqtt::exception&) {
        }
        return 0;
      }
      int receive_max = 65535;
      mqtt::connect_response connack = tok->get_connect_response();
      const mqtt::properties& props = connack.get_properties();
      if (props.contains(mqtt::property::RECEIVE_MAXIMUM)) {
        receive_max = mqtt::get<uint16_t>(props, mqtt::property::RECEIVE_MAXIMUM);
      }
      std::vector<std::string> filters;
      {
        absl::MutexLock lock(&mu_);
        filters = filters_;
      }
      for (const std::string& f : filters) {
        if (!client_->subscribe(f, 1)->wait_for(std::chrono::seconds(10))) return 0;
      }
      return std::max(receive_max, 1);
    } catch (const mqtt::exception& e) {
      spdlog::debug("event=mqtt.connect_failed broker={} error=\"{}\"", opts_.broker_uri, e.what());
      return 0;
    }
  }

  void ConnectLoop() {
    std::mt19937_64 rng(std::random_device{}());
    absl::Duration backoff = opts_.min_backoff;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || want_connect_; };
        mu_.Await(absl::Condition(&wake));
        if (stop_) return;
      }
      if (int receive_max = TryConnect(); receive_max > 0) {
        ConnectHandler handler;
        {
          absl::MutexLock lock(&mu_);
          // One below the broker's limit, so Paho itself never reaches it.
          inflight_limit_ = std::clamp(receive_max - 1, 1, kMaxInflight);
          inflight_ = 0;  // what was in flight before was re-sent by Paho or lost with the link
          connected_ = true;
          want_connect_ = false;
          handler = on_connect_;
        }
        SetNoDelayOnTcpSockets();
        stats_connects_.fetch_add(1);
        backoff = opts_.min_backoff;
        spdlog::info("event=mqtt.connected broker={} client_id={}", opts_.broker_uri,
                     opts_.client_id);
        if (handler) handler();
        continue;
      }
      // Full jitter keeps a fleet that lost its broker from reconnecting in lockstep.
      double jitter = std::uniform_real_distribution<double>(0.5, 1.0)(rng);
      absl::Duration wait = backoff * jitter;
      backoff = std::min(backoff * 2, opts_.max_backoff);
      absl::MutexLock lock(&mu_);
      auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_; };
      mu_.AwaitWithTimeout(absl::Condition(&stopping), wait);
      if (stop_) return;
    }
  }

  const TransportOptions opts_;
  std::unique_ptr<mqtt::async_client> client_;
  std::thread connector_;
  std::thread sender_;

  mutable absl::Mutex mu_;
  MessageHandler on_message_ ABSL_GUARDED_BY(mu_);
  ConnectHandler on_connect_ ABSL_GUARDED_BY(mu_);
  WillProvider will_provider_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> filters_ ABSL_GUARDED_BY(mu_);
  std::deque<MqttMessage> outbox_ ABSL_GUARDED_BY(mu_);
  int inflight_ ABSL_GUARDED_BY(mu_) = 0;
  int delivering_ ABSL_GUARDED_BY(mu_) = 0;  // message handlers running now
  int inflight_limit_ ABSL_GUARDED_BY(mu_) = 1;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool want_connect_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  std::atomic<uint64_t> stats_connects_{0}, stats_losses_{0}, stats_published_{0},
      stats_publish_errors_{0}, stats_received_{0}, stats_dropped_{0};
};

}  // namespace

std::unique_ptr<Transport> MakeMqttTransport(TransportOptions options) {
  return std::make_unique<MqttTransport>(std::move(options));
}

TransportFactory MqttTransports() {
  return [](const TransportOptions& options) { return MakeMqttTransport(options); };
}

}  // namespace x1368::core
