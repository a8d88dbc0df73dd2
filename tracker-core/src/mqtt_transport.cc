// The only file that includes Paho. See transport.h for the contract.
//
// No thread of its own: a transport is a state machine driven by Paho's asynchronous callbacks
// (connect, subscribe and delivery listeners, connection lost), which only do bookkeeping under
// the transport's lock, and by tasks on its strand (an EventLoop on the shared Executor):
//   - a connect attempt signs a fresh Will, starts Paho's asynchronous connect and returns; the
//     listener then subscribes every filter, reads the broker's Receive Maximum, and once every
//     SUBACK is in, the link is up; a failed attempt schedules the next one with jittered
//     exponential backoff (a timer on the executor's Clock, so a FakeClock drives it);
//   - the sender drains one FIFO outbox, keeping at most that many QoS 1 publishes in flight;
//     each PUBACK frees a slot and schedules the next drain.
// So 1,000 transports in one process cost no thread beyond the executor's and Paho C's own two,
// which its asynchronous library shares across every client of the process.
// Keeping under the broker's Receive Maximum ourselves matters: Paho C 1.3 stalls up to a second
// whenever it reaches that limit itself (paho.mqtt.c#1457), and its own offline buffer drops
// messages that are merely queued while connected. The outbox is bounded by max_buffered and
// drops its oldest message first (status is state: the newest report supersedes older ones).
//
// Paho C calls every callback with its process-wide lock held, and that lock guards every Paho
// call: so nothing here calls Paho while holding mu_ (a callback waiting for mu_ would then wait
// on a thread that waits for Paho's lock), and callbacks never call Paho (paho.mqtt.cpp#155) nor
// wait for anything; what they start runs on the strand.
#include "x1368/core/mqtt_transport.h"

#include <dirent.h>
#include <mqtt/async_client.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <random>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "x1368/core/event_loop.h"
#include "x1368/core/log.h"

namespace x1368::core {

namespace {

constexpr int kPahoBufferLimit = 1 << 24;
constexpr int kMaxInflight = 256;
// How long Stop() lets queued messages go out, and waits for a connect in progress to settle.
constexpr absl::Duration kDrainOnStop = absl::Seconds(2);
// How long Stop() waits for the DISCONNECT to be written.
constexpr absl::Duration kDisconnectOnStop = absl::Seconds(2);
// A connection whose SUBACKs have not all come back by then is dropped and made again.
constexpr absl::Duration kSubscribeTimeout = absl::Seconds(10);
// A connection up this long resets the reconnect backoff; one lost sooner keeps backing off.
constexpr absl::Duration kStableAfter = absl::Seconds(10);
// After the broker closed our session for another connection with our client id, the next
// attempt waits at least this long (doubling): the two never trade the session in a tight loop.
constexpr absl::Duration kTakenOverMinWait = absl::Seconds(2);
// Quick losses in a row before the link is reported as flapping (error log, LINK_FLAPPING).
constexpr int kFlappingAfter = 3;
// A link that cannot be (re)made is a warning at the first failed attempt, then one a minute
// while it lasts; a lost link and a publish that fails likewise.
constexpr absl::Duration kProblemLogEvery = absl::Minutes(1);
// Another connection using our client id (a takeover the broker names, or a flapping link) is
// one error per episode, repeated at most hourly while it lasts; the episode ends once a
// connection has lasted kConflictOverAfter.
constexpr absl::Duration kConflictLogEvery = absl::Hours(1);
constexpr absl::Duration kConflictOverAfter = absl::Minutes(5);

// Paho C never sets TCP_NODELAY, and MQTT's small packets (a PUBACK, then the next PUBLISH)
// then wait for the peer's delayed ACK under Nagle's algorithm: ~40 ms per hop. Paho does not
// expose its socket, so after each connect the process's TCP sockets get the option (for the
// others, HTTP, it is harmless), found through /proc/self/fd.
//
// Examining every descriptor after every connect made hosting N connections quadratic: five
// system calls per descriptor, N descriptors, N connects. So each socket is examined once: the
// registry remembers the descriptors that hold a socket already examined, and a scan lists the
// directory (a few getdents calls for the whole table, no call per descriptor) and examines only
// the others: the new sockets, plus the few descriptors that are not sockets (files, pipes),
// which are not remembered because the kernel may give their number to a socket next.
// A remembered number is reused only after its socket was closed. Every listing forgets the
// numbers that are gone, and every connect attempt lists (Forget) right before Paho creates its
// socket, after Paho has closed the one of the previous connection: so the new socket's number
// is never a remembered one, unless another thread closes a socket in the instant between that
// listing and Paho's socket() and Paho gets its number; that connection then keeps Nagle's
// algorithm (slower, still correct).
class NoDelayRegistry {
 public:
  static NoDelayRegistry& Get() {
    static auto* registry = new NoDelayRegistry();
    return *registry;
  }

  // Forgets the remembered descriptors that are closed now.
  void Forget() {
    absl::MutexLock lock(&mu_);
    std::vector<int> open = ListDescriptors();
    std::vector<bool> still(seen_.size(), false);
    for (int fd : open) {
      if (static_cast<size_t>(fd) < seen_.size() && seen_[fd]) still[fd] = true;
    }
    seen_ = std::move(still);
  }

  // Sets TCP_NODELAY on every TCP socket not examined before.
  void SetOnNewSockets() {
    absl::MutexLock lock(&mu_);
    for (int fd : ListDescriptors()) {
      if (static_cast<size_t>(fd) < seen_.size() && seen_[fd]) continue;
      struct stat st;
      if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
      if (static_cast<size_t>(fd) >= seen_.size()) seen_.resize(fd + 1, false);
      seen_[fd] = true;
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
  }

 private:
  static std::vector<int> ListDescriptors() {
    std::vector<int> fds;
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) return fds;
    while (dirent* e = ::readdir(dir)) {
      int fd = std::atoi(e->d_name);
      if (fd <= 2 || fd == ::dirfd(dir)) continue;
      fds.push_back(fd);
    }
    ::closedir(dir);
    return fds;
  }

  absl::Mutex mu_;
  std::vector<bool> seen_ ABSL_GUARDED_BY(mu_);  // by descriptor: a socket already examined
};

class MqttTransport final : public Transport {
 public:
  MqttTransport(TransportOptions options, Executor* executor)
      : opts_(std::move(options)),
        strand_(executor),
        rng_(std::random_device{}()),
        backoff_(opts_.min_backoff) {}

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
    {
      absl::MutexLock lock(&mu_);
      filters_.push_back(filter);
      if (!LinkUp()) return;  // the next connect subscribes it with the others
    }
    strand_.Post([this] { SubscribePending(); });
  }

  absl::Status Start() override {
    auto create = mqtt::create_options_builder()
                      .mqtt_version(MQTTVERSION_5)
                      .send_while_disconnected(true, /*anyTime=*/true)
                      .max_buffered_messages(kPahoBufferLimit)
                      .delete_oldest_messages(false)
                      .finalize();
    std::unique_ptr<mqtt::async_client> client;
    try {
      client = std::make_unique<mqtt::async_client>(opts_.broker_uri, opts_.client_id, create);
    } catch (const mqtt::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("MQTT client for ", opts_.broker_uri, ": ", e.what()));
    }
    client->set_message_callback([this](mqtt::const_message_ptr msg) { OnMessage(*msg); });
    client->set_connection_lost_handler([this](const std::string& cause) { OnLost(cause); });
    client->set_disconnected_handler([this](const mqtt::properties&, mqtt::ReasonCode rc) {
      // The broker ended the session on purpose (quota exceeded, a packet too large, the session
      // taken over by another connection with our client id...): the operator must hear it.
      const char* why = MQTTReasonCode_toString(static_cast<MQTTReasonCodes>(rc));
      if (rc == mqtt::ReasonCode::SESSION_TAKEN_OVER) {
        // Someone else holds our identity on this broker: a clone, a stale process, an
        // attacker with our credentials. Reconnecting at once would only take it back and be
        // taken again, every few seconds on both sides: OnLost() backs off instead. Said once
        // per episode (then hourly while it lasts), not at every takeover.
        const uint64_t takeovers = stats_taken_over_.fetch_add(1) + 1;
        {
          absl::MutexLock lock(&mu_);
          conflict_ = true;
        }
        uint64_t skipped = 0;
        if (conflict_log_.Allow(&skipped)) {
          spdlog::error(
              "event=mqtt.session_taken_over broker={} client_id={} takeovers={} detail={}",
              Quoted(opts_.broker_uri), Quoted(opts_.client_id), takeovers,
              Quoted(absl::StrCat("another connection uses the client id ", opts_.client_id,
                                  " on this broker (a second instance of this node, a clone, or "
                                  "stolen credentials); reconnecting with backoff, this is "
                                  "logged again hourly while it lasts")));
        } else {
          spdlog::debug("event=mqtt.session_taken_over broker={} client_id={} takeovers={}",
                        Quoted(opts_.broker_uri), Quoted(opts_.client_id), takeovers);
        }
      } else {
        spdlog::warn("event=mqtt.disconnected_by_broker broker={} client_id={} rc={} reason={}",
                     Quoted(opts_.broker_uri), Quoted(opts_.client_id), static_cast<int>(rc),
                     Quoted(why != nullptr ? why : "unknown"));
      }
      OnLost(absl::StrCat("server disconnect ", static_cast<int>(rc)));
    });
    {
      absl::MutexLock lock(&mu_);
      if (client_ != nullptr || stopping_) {
        return absl::FailedPreconditionError("transport already started");
      }
      client_ = std::move(client);
    }
    strand_.Post([this] { Attempt(); });
    return absl::OkStatus();
  }

  absl::Status Publish(MqttMessage m) override {
    {
      absl::MutexLock lock(&mu_);
      if (client_ == nullptr) return absl::FailedPreconditionError("transport not started");
      if (stop_) return absl::FailedPreconditionError("transport stopped");
      outbox_.push_back(std::move(m));
      if (outbox_.size() > static_cast<size_t>(opts_.max_buffered)) {
        outbox_.pop_front();
        stats_dropped_.fetch_add(1);
      }
      if (!ShouldSchedulePump()) return absl::OkStatus();
    }
    strand_.Post([this] { Pump(); });
    return absl::OkStatus();
  }

  // Blocks its caller for a bounded time (kDrainOnStop, then kDisconnectOnStop) and needs no
  // executor thread to finish: what it waits for runs on Paho's threads or on the caller itself.
  // So it cannot deadlock when called from an executor thread, even with every other one busy.
  void Stop() override {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_ || client_ == nullptr) {
        stopping_ = true;
        return;
      }
      stopping_ = true;
    }
    // From here no attempt, timer, drain or connect handler of ours runs on the executor: one
    // running now is waited for.
    strand_.Stop();
    absl::Time deadline = absl::Now() + kDrainOnStop;
    {
      absl::MutexLock lock(&mu_);
      // A connect in progress is let to finish, so that an accepted one gets its DISCONNECT and
      // the broker does not announce this node offline with its Will.
      auto settled = [this]()
                         ABSL_SHARED_LOCKS_REQUIRED(mu_) { return phase_ != Phase::kConnecting; };
      mu_.AwaitWithDeadline(absl::Condition(&settled), deadline);
    }
    // A clean shutdown lets what is already queued go out (bounded), sent from this thread.
    while (true) {
      Pump();
      absl::MutexLock lock(&mu_);
      if (phase_ != Phase::kConnected || (outbox_.empty() && inflight_ == 0)) break;
      uint64_t seen = deliveries_;
      auto changed = [this, seen]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return phase_ != Phase::kConnected || deliveries_ != seen;
      };
      if (!mu_.AwaitWithDeadline(absl::Condition(&changed), deadline)) break;
    }
    bool disconnect = false;
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      // No handler runs once Stop() has returned: the node behind it may be destroyed next.
      auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return delivering_ == 0; };
      mu_.Await(absl::Condition(&idle));
      disconnect = LinkUp();
    }
    if (disconnect) {
      bool sent = false;
      try {
        client_->disconnect(0, ToContext(kStopContext), disconnect_listener_);
        sent = true;
      } catch (const mqtt::exception&) {
        // Already disconnected: nothing to say goodbye on.
      }
      absl::MutexLock lock(&mu_);
      auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_disconnected_; };
      if (sent) mu_.AwaitWithTimeout(absl::Condition(&done), kDisconnectOnStop);
    }
    absl::MutexLock lock(&mu_);
    phase_ = Phase::kStopped;
  }

  bool connected() const override {
    absl::MutexLock lock(&mu_);
    return phase_ == Phase::kConnected;
  }

  TransportStats stats() const override {
    TransportStats s;
    s.connects = stats_connects_.load();
    s.connection_losses = stats_losses_.load();
    s.published = stats_published_.load();
    s.publish_errors = stats_publish_errors_.load();
    s.received = stats_received_.load();
    s.dropped = stats_dropped_.load();
    s.taken_over = stats_taken_over_.load();
    s.quick_losses = stats_quick_losses_.load();
    return s;
  }

  const TransportOptions& options() const override { return opts_; }

 private:
  enum class Phase {
    kIdle,         // not started, or waiting for the next attempt
    kConnecting,   // Paho's connect is in progress
    kSubscribing,  // connected; waiting for the SUBACKs
    kConnected,    // subscriptions in place: publishing
    kStopped,
  };
  // The context of Stop()'s disconnect (connect attempts are numbered from 1).
  static constexpr uint64_t kStopContext = 0;

  // Routes a Paho action listener's outcome to a member function. Paho calls it on its own
  // thread, under its lock.
  class Listener final : public mqtt::iaction_listener {
   public:
    using Fn = void (MqttTransport::*)(const mqtt::token&, bool ok);
    Listener(MqttTransport* t, Fn fn) : t_(t), fn_(fn) {}

   private:
    void on_success(const mqtt::token& tok) override { (t_->*fn_)(tok, true); }
    void on_failure(const mqtt::token& tok) override { (t_->*fn_)(tok, false); }
    MqttTransport* t_;
    Fn fn_;
  };

  static void* ToContext(uint64_t attempt) {
    return reinterpret_cast<void*>(static_cast<uintptr_t>(attempt));
  }
  static uint64_t FromContext(const mqtt::token& tok) {
    return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(tok.get_user_context()));
  }

  // Paho holds a live connection.
  bool LinkUp() const ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return phase_ == Phase::kSubscribing || phase_ == Phase::kConnected;
  }

  // True (and marks a drain as scheduled) when the outbox can send and no drain is queued.
  bool ShouldSchedulePump() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (pump_scheduled_ || stopping_ || phase_ != Phase::kConnected) return false;
    if (outbox_.empty() || inflight_ >= inflight_limit_) return false;
    pump_scheduled_ = true;
    return true;
  }

  // On the strand: one connect attempt, under a freshly signed Will.
  void Attempt() {
    WillProvider provider;
    uint64_t attempt;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_ || phase_ != Phase::kIdle) return;
      phase_ = Phase::kConnecting;
      attempt = ++attempt_;
      outstanding_subscribes_ = 0;
      subscribed_ = 0;
      provider = will_provider_;
    }
    // Paho closes the previous connection's socket under its lock, which is_connected() takes:
    // after it, the registry can forget that socket's number before Paho reuses it.
    (void)client_->is_connected();
    NoDelayRegistry::Get().Forget();
    std::optional<MqttMessage> will;
    if (provider) will = provider();
    try {
      mqtt::connect_options options;
      BuildConnectOptions(will, &options);
      client_->connect(options, ToContext(attempt), connect_listener_);
    } catch (const mqtt::exception& e) {
      NoteConnectFailure(e.what());
      Backoff(attempt);
    }
  }

  // A connect attempt failed: a warning at the first failure since the link was last up, then
  // one a minute (with the count) for as long as the broker cannot be reached.
  void NoteConnectFailure(const std::string& error) {
    int failures = 0;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      failures = ++connect_failures_;
    }
    uint64_t skipped = 0;
    if (connect_failure_log_.Allow(&skipped)) {
      {
        absl::MutexLock lock(&mu_);
        outage_reported_ = true;
      }
      spdlog::warn(
          "event=mqtt.connect_failed broker={} client_id={} failures={} error={} detail={}",
          Quoted(opts_.broker_uri), Quoted(opts_.client_id), failures, Quoted(error),
          Quoted("cannot connect to the MQTT broker; retrying with backoff (logged once a "
                 "minute while it lasts)"));
    } else {
      spdlog::debug("event=mqtt.connect_failed broker={} client_id={} failures={} error={}",
                    Quoted(opts_.broker_uri), Quoted(opts_.client_id), failures, Quoted(error));
    }
  }

  // What Paho says of a failed connect: its error, and the broker's reason for a refusal.
  static std::string DescribeConnectFailure(const mqtt::token& tok) {
    const int rc = tok.get_return_code();
    const char* what = MQTTAsync_strerror(rc);
    std::string out = absl::StrCat(what != nullptr ? what : "failure", " (rc ", rc, ")");
    const auto reason = static_cast<int>(tok.get_reason_code());
    if (reason >= 0x80) {
      const char* why = MQTTReasonCode_toString(static_cast<MQTTReasonCodes>(reason));
      absl::StrAppend(&out, "; the broker refused: ", why != nullptr ? why : "unknown", " (",
                      reason, ")");
    }
    return out;
  }

  // The attempt failed: the next one starts after a jittered, growing delay.
  void Backoff(uint64_t attempt) {
    absl::Duration wait;
    {
      absl::MutexLock lock(&mu_);
      if (attempt != attempt_ || phase_ != Phase::kConnecting) return;
      phase_ = Phase::kIdle;
      // Full jitter keeps a fleet that lost its broker from reconnecting in lockstep.
      double jitter = std::uniform_real_distribution<double>(0.5, 1.0)(rng_);
      wait = backoff_ * jitter;
      backoff_ = std::min(backoff_ * 2, opts_.max_backoff);
    }
    strand_.PostAfter(wait, [this] { Attempt(); });
  }

  // Paho: the CONNACK came back, or the attempt failed.
  void OnConnectDone(const mqtt::token& tok, bool ok) {
    uint64_t attempt = FromContext(tok);
    if (!ok) {
      NoteConnectFailure(DescribeConnectFailure(tok));
      // Here rather than on the strand: Stop() waits for the attempt to settle.
      Backoff(attempt);
      return;
    }
    int receive_max = 65535;
    try {
      mqtt::connect_response connack = tok.get_connect_response();  // props refer into it
      const mqtt::properties& props = connack.get_properties();
      if (props.contains(mqtt::property::RECEIVE_MAXIMUM)) {
        receive_max = mqtt::get<uint16_t>(props, mqtt::property::RECEIVE_MAXIMUM);
      }
    } catch (const mqtt::exception&) {
    }
    bool ready = false;
    {
      absl::MutexLock lock(&mu_);
      if (attempt != attempt_ || phase_ != Phase::kConnecting) return;
      // One below the broker's limit, so Paho itself never reaches it.
      inflight_limit_ = std::clamp(receive_max - 1, 1, kMaxInflight);
      inflight_ = 0;  // what was in flight before was re-sent by Paho or lost with the link
      phase_ = Phase::kSubscribing;
      if (filters_.empty()) ready = MarkReady();
    }
    if (ready) {
      strand_.Post([this, attempt] { OnReady(attempt); });
      return;
    }
    strand_.Post([this] { SubscribePending(); });
    strand_.PostAfter(kSubscribeTimeout, [this, attempt] { SubscribeTimedOut(attempt); });
  }

  // Called when the last SUBACK of a connection is in. Returns true to run OnReady().
  // The backoff is not reset here but once the connection has lasted kStableAfter
  // (OnReady): a link that is lost again at once (a broker that restarts in a loop, another
  // connection taking our client id) keeps backing off instead of reconnecting in a tight loop.
  bool MarkReady() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    phase_ = Phase::kConnected;
    stats_connects_.fetch_add(1);
    return true;
  }

  // On the strand: subscribes the filters this connection has not subscribed yet.
  void SubscribePending() {
    std::vector<std::string> filters;
    uint64_t attempt;
    {
      absl::MutexLock lock(&mu_);
      if (!LinkUp()) return;
      attempt = attempt_;
      filters.assign(filters_.begin() + subscribed_, filters_.end());
      subscribed_ = filters_.size();
      outstanding_subscribes_ += static_cast<int>(filters.size());
    }
    for (const std::string& f : filters) {
      try {
        client_->subscribe(f, 1, ToContext(attempt), subscribe_listener_);
      } catch (const mqtt::exception& e) {
        spdlog::warn("event=mqtt.subscribe_failed filter={} error={}", Quoted(f), Quoted(e.what()));
        absl::MutexLock lock(&mu_);
        // The link went down meanwhile (the next connect subscribes again), or the filter is
        // invalid: either way not a SUBACK to wait for.
        if (attempt == attempt_) --outstanding_subscribes_;
      }
    }
    bool ready = false;
    {
      absl::MutexLock lock(&mu_);
      if (attempt == attempt_ && phase_ == Phase::kSubscribing && outstanding_subscribes_ == 0) {
        ready = MarkReady();
      }
    }
    if (ready) OnReady(attempt);
  }

  // Paho: a SUBACK came back, or the subscribe failed.
  void OnSubscribeDone(const mqtt::token& tok, bool ok) {
    uint64_t attempt = FromContext(tok);
    if (!ok || static_cast<int>(tok.get_reason_code()) >= 0x80) {
      // Refused by the broker (an ACL): retrying would not change its answer.
      spdlog::warn("event=mqtt.subscribe_failed client_id={} rc={} reason={}",
                   Quoted(opts_.client_id), tok.get_return_code(),
                   static_cast<int>(tok.get_reason_code()));
    }
    bool ready = false;
    {
      absl::MutexLock lock(&mu_);
      if (attempt != attempt_) return;
      --outstanding_subscribes_;
      if (phase_ == Phase::kSubscribing && outstanding_subscribes_ == 0) ready = MarkReady();
    }
    if (ready) strand_.Post([this, attempt] { OnReady(attempt); });
  }

  // On the strand: a broker that does not answer SUBSCRIBE is treated as a broken link.
  void SubscribeTimedOut(uint64_t attempt) {
    {
      absl::MutexLock lock(&mu_);
      if (attempt != attempt_ || phase_ != Phase::kSubscribing) return;
    }
    spdlog::warn("event=mqtt.subscribe_timeout broker={} client_id={}", Quoted(opts_.broker_uri),
                 Quoted(opts_.client_id));
    try {
      client_->disconnect(0, ToContext(attempt), disconnect_listener_);
    } catch (const mqtt::exception&) {
      // Lost meanwhile: OnLost() reconnects.
    }
  }

  // Paho: our DISCONNECT went out (or could not).
  void OnDisconnectDone(const mqtt::token& tok, bool) {
    uint64_t attempt = FromContext(tok);
    {
      absl::MutexLock lock(&mu_);
      if (attempt == kStopContext) {
        stop_disconnected_ = true;
        return;
      }
      // Dropped after a subscribe timeout: the next attempt backs off.
      if (attempt != attempt_ || !LinkUp()) return;
      phase_ = Phase::kConnecting;
    }
    Backoff(attempt);
  }

  // On the strand: the connection of `attempt` is up with its subscriptions.
  void OnReady(uint64_t attempt) {
    ConnectHandler handler;
    int failures = 0;
    bool recovered = false;
    {
      absl::MutexLock lock(&mu_);
      if (attempt != attempt_ || phase_ != Phase::kConnected) return;
      handler = on_connect_;
      failures = connect_failures_;
      // A link whose loss (or failed connects) was a warning: that it is back is one too.
      recovered = outage_reported_ && !conflict_;
      connect_failures_ = 0;
      outage_reported_ = false;
    }
    connect_failure_log_.Reset();
    NoDelayRegistry::Get().SetOnNewSockets();
    if (recovered) {
      spdlog::warn("event=mqtt.connected broker={} client_id={} failed_attempts={} detail={}",
                   Quoted(opts_.broker_uri), Quoted(opts_.client_id), failures,
                   Quoted("the link is back"));
    } else {
      spdlog::info("event=mqtt.connected broker={} client_id={}", Quoted(opts_.broker_uri),
                   Quoted(opts_.client_id));
    }
    strand_.PostAfter(kStableAfter, [this, attempt] {
      absl::MutexLock lock(&mu_);
      if (attempt != attempt_ || phase_ != Phase::kConnected) return;
      backoff_ = opts_.min_backoff;
      stable_ = true;
      quick_losses_in_a_row_ = 0;
    });
    strand_.PostAfter(kConflictOverAfter, [this, attempt] {
      {
        absl::MutexLock lock(&mu_);
        if (attempt != attempt_ || phase_ != Phase::kConnected || !conflict_) return;
        conflict_ = false;
      }
      conflict_log_.Reset();
      spdlog::warn("event=mqtt.link_settled broker={} client_id={} detail={}",
                   Quoted(opts_.broker_uri), Quoted(opts_.client_id),
                   Quoted("the connection has held for 5 minutes: no other connection took "
                          "this client id meanwhile"));
    });
    if (handler) handler();
    Pump();
  }

  // Paho: the connection is gone (a network loss, or the broker's DISCONNECT). After a link
  // that had been up for kStableAfter the next attempt starts at once; otherwise (and always
  // after a takeover) it waits the jittered backoff, which grows with each quick loss.
  void OnLost(const std::string& cause) {
    absl::Duration wait;
    {
      absl::MutexLock lock(&mu_);
      // Paho reports a broker's DISCONNECT twice (disconnected, then connection lost).
      if (!LinkUp()) return;
      const bool quick = phase_ == Phase::kConnected && !stable_;
      if (phase_ == Phase::kConnected) stats_losses_.fetch_add(1);
      phase_ = Phase::kIdle;
      stable_ = false;
      // A lost link is a warning, at most one a minute (a link lost again and again says so
      // once a minute, with the count). Within an episode of another connection using our client
      // id (already an error) each loss is part of it.
      // Paho gives no cause when the socket was closed (by the broker or the network).
      absl::string_view why = cause;
      if (why.empty()) why = "connection closed";
      uint64_t suppressed = 0;
      if (!conflict_ && loss_log_.Allow(&suppressed)) {
        outage_reported_ = true;
        spdlog::warn("event=mqtt.connection_lost broker={} client_id={} cause={} suppressed={}",
                     Quoted(opts_.broker_uri), Quoted(opts_.client_id), Quoted(why), suppressed);
      } else {
        spdlog::debug("event=mqtt.connection_lost broker={} client_id={} cause={}",
                      Quoted(opts_.broker_uri), Quoted(opts_.client_id), Quoted(why));
      }
      const bool taken_over = stats_taken_over_.load() != taken_over_seen_;
      taken_over_seen_ = stats_taken_over_.load();
      if (quick) {
        stats_quick_losses_.fetch_add(1);
        if (++quick_losses_in_a_row_ == kFlappingAfter) {
          conflict_ = true;
          uint64_t skipped = 0;
          if (conflict_log_.Allow(&skipped)) {
            spdlog::error("event=mqtt.link_flapping broker={} client_id={} losses={} detail={}",
                          Quoted(opts_.broker_uri), Quoted(opts_.client_id), quick_losses_in_a_row_,
                          Quoted(absl::StrCat("each connection was lost within seconds: another "
                                              "connection may be using the client id ",
                                              opts_.client_id)));
          } else {
            spdlog::debug("event=mqtt.link_flapping broker={} client_id={} losses={}",
                          Quoted(opts_.broker_uri), Quoted(opts_.client_id),
                          quick_losses_in_a_row_);
          }
        }
      }
      // A link that did not last waits its jittered backoff and doubles it, from where the
      // attempts before it left it (a broker restarting right after we connected costs what its
      // downtime costs, as before). A takeover the broker named, or a link flapping
      // (kFlappingAfter quick losses in a row), waits at least kTakenOverMinWait: two
      // connections with one client id then trade the session ever more slowly.
      const bool flapping = quick && quick_losses_in_a_row_ >= kFlappingAfter;
      if (taken_over || quick || backoff_ > opts_.min_backoff) {
        const absl::Duration floor = taken_over || flapping ? kTakenOverMinWait : backoff_;
        const absl::Duration base = std::min(std::max(backoff_, floor), opts_.max_backoff);
        double jitter = std::uniform_real_distribution<double>(0.5, 1.0)(rng_);
        wait = base * jitter;
        backoff_ = std::min(base * 2, opts_.max_backoff);
      }
    }
    if (wait <= absl::ZeroDuration()) {
      strand_.Post([this] { Attempt(); });
    } else {
      strand_.PostAfter(wait, [this] { Attempt(); });
    }
  }

  // Paho: a message for us. Runs the handler on Paho's thread (it only posts to a loop).
  void OnMessage(const mqtt::message& msg) {
    stats_received_.fetch_add(1);
    MessageHandler handler;
    {
      absl::MutexLock lock(&mu_);
      if (stop_ || !on_message_) return;
      handler = on_message_;
      ++delivering_;
    }
    handler(MqttMessage{msg.get_topic(), msg.get_payload_str(), msg.is_retained()});
    absl::MutexLock lock(&mu_);
    --delivering_;
  }

  // Paho: a publish completed (PUBACK) or failed.
  void OnDelivered(const mqtt::token&, bool ok) {
    {
      absl::MutexLock lock(&mu_);
      if (inflight_ > 0) --inflight_;
      ++deliveries_;
      if (!ok) stats_publish_errors_.fetch_add(1);
      if (!ShouldSchedulePump()) return;
    }
    strand_.Post([this] { Pump(); });
  }

  // Sends from the outbox while the window has room. On the strand, or on Stop()'s thread once
  // the strand has stopped: never two at once, so the outbox's order is the order on the wire.
  void Pump() {
    {
      absl::MutexLock lock(&mu_);
      pump_scheduled_ = false;
    }
    while (true) {
      MqttMessage m;
      {
        absl::MutexLock lock(&mu_);
        if (phase_ != Phase::kConnected || inflight_ >= inflight_limit_ || outbox_.empty()) return;
        m = std::move(outbox_.front());
        outbox_.pop_front();
        ++inflight_;
      }
      try {
        client_->publish(mqtt::make_message(m.topic, std::move(m.payload), 1, m.retained), nullptr,
                         delivery_listener_);
        stats_published_.fetch_add(1);
      } catch (const mqtt::exception& e) {
        absl::MutexLock lock(&mu_);
        --inflight_;
        stats_publish_errors_.fetch_add(1);
        // The message is lost (a status report is repaired by the next one).
        uint64_t skipped = 0;
        if (publish_failure_log_.Allow(&skipped)) {
          spdlog::warn("event=mqtt.publish_failed broker={} topic={} error={} suppressed={}",
                       Quoted(opts_.broker_uri), Quoted(m.topic), Quoted(e.what()), skipped);
        } else {
          spdlog::debug("event=mqtt.publish_failed topic={} error={}", Quoted(m.topic),
                        Quoted(e.what()));
        }
      }
    }
  }

  // Paho C++ 1.2 copies connect_options with raw pointers into the copied-from object's
  // properties, Will and TLS options (its builder's finalize() and connect()'s by-value parameter
  // both copy), so those are set on the object that stays alive until connect() has returned
  // (Paho C copies them all before MQTTAsync_connect returns).
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
    if (will) {
      mqtt::properties props;
      if (opts_.will_delay_s > 0) {
        props.add(mqtt::property(mqtt::property::WILL_DELAY_INTERVAL, opts_.will_delay_s));
      }
      out->set_will(mqtt::will_options(will->topic, will->payload, 1, will->retained, props));
    }
  }

  // Declared in destruction order: client_ goes first (Paho calls nothing after its destructor,
  // which takes Paho's lock and so waits for a callback in progress), while everything its
  // callbacks touch is still alive.
  const TransportOptions opts_;
  mutable absl::Mutex mu_;
  MessageHandler on_message_ ABSL_GUARDED_BY(mu_);
  ConnectHandler on_connect_ ABSL_GUARDED_BY(mu_);
  WillProvider will_provider_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> filters_ ABSL_GUARDED_BY(mu_);
  std::deque<MqttMessage> outbox_ ABSL_GUARDED_BY(mu_);
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kIdle;
  uint64_t attempt_ ABSL_GUARDED_BY(mu_) = 0;   // the current connect attempt, from 1
  size_t subscribed_ ABSL_GUARDED_BY(mu_) = 0;  // filters_ subscribed on this connection
  int outstanding_subscribes_ ABSL_GUARDED_BY(mu_) = 0;
  int inflight_ ABSL_GUARDED_BY(mu_) = 0;
  int inflight_limit_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t deliveries_ ABSL_GUARDED_BY(mu_) = 0;  // PUBACKs and failures so far
  int delivering_ ABSL_GUARDED_BY(mu_) = 0;       // message handlers running now
  bool pump_scheduled_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // Stop() has begun
  bool stop_ ABSL_GUARDED_BY(mu_) = false;      // no more publishes or handlers
  bool stop_disconnected_ ABSL_GUARDED_BY(mu_) = false;
  EventLoop strand_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_);
  uint64_t taken_over_seen_ ABSL_GUARDED_BY(mu_) = 0;
  bool stable_ ABSL_GUARDED_BY(mu_) = false;  // the connection has lasted kStableAfter
  int quick_losses_in_a_row_ ABSL_GUARDED_BY(mu_) = 0;
  // What the log said: failed attempts since the link was last up, whether a warning said the
  // link is down, and whether another connection using our client id is being reported.
  int connect_failures_ ABSL_GUARDED_BY(mu_) = 0;
  bool outage_reported_ ABSL_GUARDED_BY(mu_) = false;
  bool conflict_ ABSL_GUARDED_BY(mu_) = false;
  LogThrottle connect_failure_log_{kProblemLogEvery};
  LogThrottle loss_log_{kProblemLogEvery};
  LogThrottle publish_failure_log_{kProblemLogEvery};
  LogThrottle conflict_log_{kConflictLogEvery};

  std::atomic<uint64_t> stats_connects_{0}, stats_losses_{0}, stats_published_{0},
      stats_publish_errors_{0}, stats_received_{0}, stats_dropped_{0}, stats_taken_over_{0},
      stats_quick_losses_{0};

  Listener connect_listener_{this, &MqttTransport::OnConnectDone};
  Listener subscribe_listener_{this, &MqttTransport::OnSubscribeDone};
  Listener disconnect_listener_{this, &MqttTransport::OnDisconnectDone};
  Listener delivery_listener_{this, &MqttTransport::OnDelivered};
  // Set once by Start(); read without the lock afterwards (only the strand and Stop() call Paho).
  std::unique_ptr<mqtt::async_client> client_;
};

}  // namespace

std::unique_ptr<Transport> MakeMqttTransport(TransportOptions options, Executor* executor) {
  return std::make_unique<MqttTransport>(std::move(options), executor);
}

TransportFactory MqttTransports(Executor* executor) {
  return
      [executor](const TransportOptions& options) { return MakeMqttTransport(options, executor); };
}

}  // namespace x1368::core
