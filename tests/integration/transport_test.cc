// The MQTT transport against a real Mosquitto: QoS 1 delivery, retained messages, the Last Will
// signed before each connect and sent by the broker when a connection is lost without a
// DISCONNECT, the bounded buffer while disconnected (oldest dropped first), and reconnection with
// re-subscription after the broker dies; a transport owns no thread, and backs off on the
// executor's clock.
#include "x1368/core/transport.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "testing/mosquitto.h"
#include "testing/pki.h"
#include "testing/status_matchers.h"
#include "testing/wait.h"
#include "x1368/core/mqtt_transport.h"

namespace x1368::testing {
namespace {

class Inbox {
 public:
  core::Transport::MessageHandler Handler() {
    return [this](core::MqttMessage m) {
      absl::MutexLock lock(&mu_);
      messages_.push_back(std::move(m));
    };
  }
  std::vector<core::MqttMessage> Get() {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  size_t size() {
    absl::MutexLock lock(&mu_);
    return messages_.size();
  }
  // The payloads received so far, in order, for assertions and failure messages.
  std::vector<std::string> Payloads() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const auto& m : messages_) out.push_back(m.payload);
    return out;
  }

 private:
  absl::Mutex mu_;
  std::vector<core::MqttMessage> messages_;
};

// A TCP relay on 127.0.0.1 between MQTT clients and the broker. Cut() ends every relayed
// connection on both sides at once: the broker sees its client's socket close without an MQTT
// DISCONNECT (as after a power cut or a lost network), and the client sees its link drop and
// reconnects through the relay, which keeps accepting. The listening port is bound by the relay
// itself and held for its lifetime. Thread-safe.
class CuttableRelay {
 public:
  // Nullptr if the relay cannot listen.
  static std::unique_ptr<CuttableRelay> Start(int target_port) {
    std::unique_ptr<CuttableRelay> r(new CuttableRelay(target_port));
    r->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = Loopback(0);
    socklen_t len = sizeof(addr);
    if (r->listen_fd_ < 0 || ::bind(r->listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(r->listen_fd_, 16) != 0 ||
        ::getsockname(r->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return nullptr;
    }
    r->port_ = ntohs(addr.sin_port);
    r->acceptor_ = std::thread([relay = r.get()] { relay->AcceptLoop(); });
    return r;
  }

  ~CuttableRelay() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    if (acceptor_.joinable()) acceptor_.join();
    Cut();
    std::vector<std::thread> pumps;
    {
      absl::MutexLock lock(&mu_);
      pumps.swap(pumps_);
    }
    for (std::thread& t : pumps) t.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }

  int port() const { return port_; }

  // Ends every live relayed connection; returns how many there were.
  int Cut() {
    absl::MutexLock lock(&mu_);
    for (int fd : live_) ::shutdown(fd, SHUT_RDWR);
    return static_cast<int>(live_.size() / 2);
  }

 private:
  explicit CuttableRelay(int target_port) : target_port_(target_port) {}

  static sockaddr_in Loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    return addr;
  }

  void AcceptLoop() {
    while (true) {
      int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) {
        if (errno == EINTR) continue;
        return;  // shut down
      }
      int upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in target = Loopback(target_port_);
      if (upstream < 0 ||
          ::connect(upstream, reinterpret_cast<sockaddr*>(&target), sizeof(target)) != 0) {
        if (upstream >= 0) ::close(upstream);
        ::close(client);
        continue;
      }
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        ::close(upstream);
        ::close(client);
        return;
      }
      live_.insert(client);
      live_.insert(upstream);
      pumps_.emplace_back([this, client, upstream] { Pump(client, upstream); });
    }
  }

  // Copies bytes both ways until either side ends, then closes both sockets (under the lock, so
  // Cut() never touches a descriptor number that was already reused).
  void Pump(int a, int b) {
    char buf[16384];
    pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    bool open = true;
    while (open) {
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      for (int i = 0; i < 2 && open; ++i) {
        if (fds[i].revents == 0) continue;
        ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
        if (n <= 0) {
          open = false;
          break;
        }
        for (ssize_t sent = 0; sent < n && open;) {
          ssize_t w =
              ::send(fds[1 - i].fd, buf + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
          if (w <= 0) open = false;
          sent += w > 0 ? w : 0;
        }
      }
    }
    absl::MutexLock lock(&mu_);
    live_.erase(a);
    live_.erase(b);
    ::close(a);
    ::close(b);
  }

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  absl::Mutex mu_;
  std::set<int> live_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> pumps_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

class TransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = MosquittoBroker::Start(dir_.path());
    ASSERT_OK(b);
    broker_ = *std::move(b);
  }
  std::unique_ptr<core::Transport> Connect(const std::string& id, Inbox* inbox,
                                           std::vector<std::string> filters,
                                           int max_buffered = 1000) {
    core::TransportOptions o = broker_->ClientOptions(id);
    o.max_buffered = max_buffered;
    o.session_expiry_s = 0;
    auto t = core::MakeMqttTransport(o, &executor_);
    if (inbox != nullptr) t->SetMessageHandler(inbox->Handler());
    for (const auto& f : filters) t->AddSubscription(f);
    EXPECT_OK(t->Start());
    EXPECT_TRUE(WaitFor([&] { return t->connected(); }));
    return t;
  }

  // Every transport of a test runs on these threads (declared first: destroyed last).
  core::Executor executor_{core::RealClock::Get(), /*threads=*/2, /*blocking_threads=*/2};
  TempDir dir_;
  std::unique_ptr<MosquittoBroker> broker_;
};

// Issue #13: two connections with one client id (a cloned device, a stale process) took the
// session from each other every ~2 s for as long as both ran, because each reconnected at once.
// Now a connection lost before it lasted 10 s backs the next attempt off (at least 2 s, then
// doubling), so the pair trades the session a few times, ever more slowly; the one left alone
// reconnects and stays.
TEST_F(TransportTest, TwoConnectionsWithOneClientIdBackOffInsteadOfTradingTheSession) {
  core::TransportOptions o = broker_->ClientOptions("twin");
  o.min_backoff = absl::Milliseconds(200);  // the daemons' defaults, but a shorter cap
  o.max_backoff = absl::Seconds(8);
  auto a = core::MakeMqttTransport(o, &executor_);
  ASSERT_OK(a->Start());
  ASSERT_TRUE(WaitFor([&] { return a->connected(); }));
  auto b = core::MakeMqttTransport(o, &executor_);
  ASSERT_OK(b->Start());
  absl::SleepFor(absl::Seconds(25));
  const core::TransportStats sa = a->stats(), sb = b->stats();
  // Waits of 1-2, 2-4, 4-8, then 4-8 s: at most 7 connects each in 25 s (at once each time, the
  // pair connected 12 or more times each).
  EXPECT_LE(sa.connects, 8u) << "a connected " << sa.connects << " times";
  EXPECT_LE(sb.connects, 8u) << "b connected " << sb.connects << " times";
  EXPECT_GE(sa.quick_losses + sb.quick_losses, 2u);
  b->Stop();
  EXPECT_TRUE(WaitFor([&] { return a->connected(); }, absl::Seconds(15)));
  const uint64_t connects = a->stats().connects;
  absl::SleepFor(absl::Seconds(2));
  EXPECT_TRUE(a->connected());
  EXPECT_EQ(a->stats().connects, connects);
  a->Stop();
}

TEST_F(TransportTest, DeliversInOrderWithQos1) {
  Inbox inbox;
  auto sub = Connect("sub", &inbox, {"t/#"});
  auto pub = Connect("pub", nullptr, {});
  for (int i = 0; i < 200; ++i) ASSERT_OK(pub->Publish({"t/x", std::to_string(i)}));
  ASSERT_TRUE(WaitFor([&] { return inbox.size() == 200; })) << "got " << inbox.size();
  auto got = inbox.Get();
  for (int i = 0; i < 200; ++i) EXPECT_EQ(got[i].payload, std::to_string(i));
}

// X.1368 §11.2 b.i and §11.2 (modules) c: a node that vanishes without a word is announced
// offline by the broker, with the Will signed for that very connection (a fresh one before every
// connect attempt, so a Will captured from an old connection never speaks for a newer one).
TEST_F(TransportTest, LastWillIsFreshForEveryConnectionAndSentOnAbruptLoss) {
  Inbox inbox;
  auto watcher = Connect("watcher", &inbox, {"will/#"});
  auto relay = CuttableRelay::Start(broker_->port());
  ASSERT_NE(relay, nullptr);
  core::TransportOptions o = broker_->ClientOptions("mortal");
  o.broker_uri = absl::StrCat("tcp://127.0.0.1:", relay->port());
  o.session_expiry_s = 0;
  o.min_backoff = absl::Milliseconds(50);
  auto mortal = core::MakeMqttTransport(o, &executor_);
  // The provider runs before each connect attempt and the connect handler after each successful
  // one, one at a time on the transport's strand: the last Will signed before a connect handler
  // call is the Will of that connection.
  absl::Mutex mu;
  int signed_wills = 0;
  std::string last_signed;
  std::vector<std::string> connection_wills;  // the Will of each connection, in order
  mortal->SetWillProvider([&] {
    absl::MutexLock lock(&mu);
    last_signed = absl::StrCat("offline-", ++signed_wills);
    return core::MqttMessage{"will/mortal", last_signed, false};
  });
  mortal->SetConnectHandler([&] {
    absl::MutexLock lock(&mu);
    connection_wills.push_back(last_signed);
  });
  auto wills_of_connections = [&] {
    absl::MutexLock lock(&mu);
    return connection_wills;
  };
  auto seen = [&] {
    return absl::StrCat(
        "watcher saw [", absl::StrJoin(inbox.Payloads(), ", "), "]; Wills of the connections [",
        absl::StrJoin(wills_of_connections(), ", "), "]; ", mortal->stats().connects, " connects");
  };
  ASSERT_OK(mortal->Start());

  for (size_t connection = 1; connection <= 2; ++connection) {
    ASSERT_TRUE(WaitFor([&] {
      return wills_of_connections().size() >= connection && mortal->connected();
    })) << "connection "
        << connection << " did not come up; " << seen();
    std::string will = wills_of_connections()[connection - 1];
    EXPECT_EQ(inbox.size(), connection - 1) << "a Will arrived while connected; " << seen();
    // The connection ends with no DISCONNECT: the broker must publish this connection's Will.
    ASSERT_GE(relay->Cut(), 1) << "no live connection to cut; " << seen();
    ASSERT_TRUE(WaitFor([&] { return inbox.size() >= connection; }))
        << "the broker did not send the Will of connection " << connection << "; " << seen();
    EXPECT_EQ(inbox.Payloads()[connection - 1], will) << seen();
  }
  // The transport reconnects after each loss, each time under a newly signed Will.
  ASSERT_TRUE(WaitFor([&] { return wills_of_connections().size() >= 3 && mortal->connected(); }))
      << seen();
  std::vector<std::string> wills = wills_of_connections();
  EXPECT_NE(wills[0], wills[1]) << seen();
  EXPECT_NE(wills[1], wills[2]) << seen();
  EXPECT_EQ(inbox.Payloads(), (std::vector<std::string>{wills[0], wills[1]})) << seen();
  EXPECT_GE(mortal->stats().connection_losses, 2u);
  mortal->Stop();
}

// Issue #13 / X.1368 §11.2 b.i: with a Will Delay, a connection lost and made again within it is
// no outage (the broker drops the Will when the node is back); one that stays lost gets its Will,
// but only once the delay has passed.
TEST_F(TransportTest, AReconnectWithinTheWillDelayIsNoOutage) {
  Inbox inbox;
  auto watcher = Connect("watcher", &inbox, {"will/#"});
  auto relay = CuttableRelay::Start(broker_->port());
  ASSERT_NE(relay, nullptr);
  core::TransportOptions o = broker_->ClientOptions("mortal");
  o.broker_uri = absl::StrCat("tcp://127.0.0.1:", relay->port());
  o.min_backoff = absl::Milliseconds(50);
  o.will_delay_s = 3;
  auto mortal = core::MakeMqttTransport(o, &executor_);
  mortal->SetWillProvider([] { return core::MqttMessage{"will/mortal", "offline", false}; });
  ASSERT_OK(mortal->Start());
  ASSERT_TRUE(WaitFor([&] { return mortal->connected(); }));
  ASSERT_GE(relay->Cut(), 1);
  ASSERT_TRUE(WaitFor([&] { return mortal->connected() && mortal->stats().connects >= 2; }))
      << "no reconnect";
  absl::SleepFor(absl::Seconds(4));  // past the delay: a Will held by the broker would be out
  ASSERT_OK(watcher->Publish({"will/barrier", "barrier"}));
  ASSERT_TRUE(WaitFor([&] { return inbox.size() >= 1; }));
  EXPECT_EQ(inbox.Payloads(), (std::vector<std::string>{"barrier"}))
      << "a reconnect within the Will Delay was announced as an outage";

  // Now the way back is gone: the Will comes, after the delay.
  absl::Time lost = absl::Now();
  relay.reset();  // stops accepting and cuts the live connection
  ASSERT_TRUE(WaitFor([&] { return inbox.size() >= 2; }, absl::Seconds(15)));
  EXPECT_EQ(inbox.Payloads()[1], "offline");
  EXPECT_GE(absl::Now() - lost, absl::Milliseconds(2500)) << "the Will did not wait its delay";
  mortal->Stop();
}

TEST_F(TransportTest, CleanStopSendsNoWill) {
  Inbox inbox;
  auto watcher = Connect("watcher", &inbox, {"will/#"});
  core::TransportOptions o = broker_->ClientOptions("mortal");
  o.session_expiry_s = 0;
  auto mortal = core::MakeMqttTransport(o, &executor_);
  mortal->SetWillProvider([] { return core::MqttMessage{"will/mortal", "offline", false}; });
  ASSERT_OK(mortal->Start());
  ASSERT_TRUE(WaitFor([&] { return mortal->connected(); }));
  mortal->Stop();  // DISCONNECT: the broker discards the Will
  // Publish order as the barrier: the broker handled mortal's DISCONNECT before this publish,
  // which was sent after Stop() returned, so a Will would have reached the watcher first.
  ASSERT_OK(watcher->Publish({"will/barrier", "barrier"}));
  ASSERT_TRUE(WaitFor([&] { return inbox.size() >= 1; }));
  EXPECT_EQ(inbox.Payloads(), (std::vector<std::string>{"barrier"}));
}

TEST_F(TransportTest, BuffersWhileDisconnectedAndDropsTheOldestBeyondTheBound) {
  auto pub = Connect("pub", nullptr, {}, /*max_buffered=*/5);
  broker_->Kill();
  ASSERT_TRUE(WaitFor([&] { return !pub->connected(); }));
  // Retained, so the subscriber that comes later still finds what survived the buffer.
  for (int i = 0; i < 10; ++i)
    ASSERT_OK(pub->Publish({"buf/" + std::to_string(i), "m" + std::to_string(i), true}));
  ASSERT_OK(broker_->Restart());
  ASSERT_TRUE(WaitFor([&] { return pub->connected(); }));
  Inbox inbox;
  auto sub = Connect("sub", &inbox, {"buf/#"});
  ASSERT_TRUE(WaitFor([&] { return inbox.size() >= 5; }));
  // A sentinel instead of a sleep: the broker sends the retained messages on subscribe, before
  // anything published later, so once the sentinel is in, every survivor is too.
  ASSERT_OK(pub->Publish({"buf/sentinel", "s"}));
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& m : inbox.Get()) {
      if (m.topic == "buf/sentinel") return true;
    }
    return false;
  }));
  std::set<std::string> topics;
  for (const auto& m : inbox.Get()) topics.insert(m.topic);
  EXPECT_EQ(topics,
            (std::set<std::string>{"buf/5", "buf/6", "buf/7", "buf/8", "buf/9", "buf/sentinel"}));
}

TEST_F(TransportTest, ReconnectsAndResubscribesAfterTheBrokerDies) {
  Inbox inbox;
  auto sub = Connect("sub", &inbox, {"again/#"});
  auto pub = Connect("pub", nullptr, {});
  uint64_t connects = sub->stats().connects;
  broker_->Kill();
  ASSERT_OK(broker_->Restart());  // an empty broker: no session, no subscription survives
  ASSERT_TRUE(WaitFor([&] { return sub->stats().connects > connects && pub->connected(); }));
  ASSERT_OK(pub->Publish({"again/x", "after"}));
  ASSERT_TRUE(WaitFor([&] { return inbox.size() == 1; }));
  EXPECT_EQ(inbox.Get()[0].payload, "after");
  EXPECT_GE(sub->stats().connection_losses, 1u);
}

// Threads in this process, from /proc/self/task.
int ProcessThreads() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n;
}

// A transport owns no thread: 50 of them, connected and exchanging messages, run on the
// executor's threads plus Paho C's two, which its asynchronous library shares process-wide.
TEST_F(TransportTest, ManyTransportsCreateNoThreadsOfTheirOwn) {
  constexpr int kTransports = 50;
  Inbox inbox;
  auto sub = Connect("sub", &inbox, {"many/#"});  // Paho's threads run from here on
  const int before = ProcessThreads();
  std::vector<std::unique_ptr<core::Transport>> transports;
  for (int i = 0; i < kTransports; ++i) {
    core::TransportOptions o = broker_->ClientOptions(absl::StrCat("t", i));
    o.session_expiry_s = 0;
    transports.push_back(core::MakeMqttTransport(o, &executor_));
    transports.back()->AddSubscription(absl::StrCat("many/", i));
    ASSERT_OK(transports.back()->Start());
  }
  ASSERT_TRUE(WaitFor([&] {
    for (auto& t : transports) {
      if (!t->connected()) return false;
    }
    return true;
  }));
  for (int i = 0; i < kTransports; ++i) {
    ASSERT_OK(transports[i]->Publish({absl::StrCat("many/", i), "x"}));
  }
  ASSERT_TRUE(WaitFor([&] { return inbox.size() == kTransports; })) << "got " << inbox.size();
  const int during = ProcessThreads();
  // Two threads per transport before this change: 100 more. Slack for the threads Paho or the
  // C++ runtime may start once; none may scale with the number of transports.
  EXPECT_LE(during - before, 4) << before << " threads before, " << during << " with "
                                << kTransports << " transports";
  for (auto& t : transports) t->Stop();
}

// A transport whose own subscription also covers what it publishes: after the broker restarts
// empty it must subscribe again before sending what it buffered meanwhile, or that message has
// no subscriber when it arrives.
TEST_F(TransportTest, AfterABrokerRestartResubscribesThenResendsWhatWasBuffered) {
  Inbox inbox;
  auto loop = Connect("loop", &inbox, {"echo/#"});
  ASSERT_OK(loop->Publish({"echo/x", "before"}));
  ASSERT_TRUE(WaitFor([&] { return inbox.size() == 1; }));
  uint64_t connects = loop->stats().connects;
  broker_->Kill();
  ASSERT_TRUE(WaitFor([&] { return !loop->connected(); }));
  ASSERT_OK(loop->Publish({"echo/x", "while-down"}));
  ASSERT_OK(broker_->Restart());  // no session, no subscription survives
  ASSERT_TRUE(WaitFor([&] { return loop->stats().connects > connects && loop->connected(); }));
  ASSERT_TRUE(WaitFor([&] { return inbox.size() == 2; })) << "got " << inbox.size();
  EXPECT_EQ(inbox.Payloads(), (std::vector<std::string>{"before", "while-down"}));
  EXPECT_GE(loop->stats().connection_losses, 1u);
}

// Stop() from the executor's only thread: it drains what is queued and disconnects without
// needing any executor thread (it sends from its own, and Paho's threads do the rest).
TEST_F(TransportTest, StopFromTheExecutorsOnlyThreadDrainsAndReturns) {
  Inbox inbox;
  auto sub = Connect("sub", &inbox, {"drain/#"});
  core::Executor single(core::RealClock::Get(), /*threads=*/1, /*blocking_threads=*/1);
  core::TransportOptions o = broker_->ClientOptions("pub");
  o.session_expiry_s = 0;
  auto pub = core::MakeMqttTransport(o, &single);
  ASSERT_OK(pub->Start());
  ASSERT_TRUE(WaitFor([&] { return pub->connected(); }));
  absl::Notification stopped;
  single.Submit([&] {
    for (int i = 0; i < 100; ++i) (void)pub->Publish({"drain/x", std::to_string(i)});
    pub->Stop();  // the drain cannot run on this executor: its only thread is here
    stopped.Notify();
  });
  ASSERT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(WaitFor([&] { return inbox.size() == 100; })) << "got " << inbox.size();
  EXPECT_EQ(inbox.Payloads().back(), "99");
}

// Backoff runs on the executor's Clock: with a FakeClock no retry happens until time moves,
// and the delays grow (jittered, within [0.5, 1] of the doubling backoff).
TEST(TransportBackoffTest, RetriesOnlyWhenTheExecutorsClockMoves) {
  core::FakeClock clock;
  core::Executor executor(&clock, /*threads=*/1, /*blocking_threads=*/1);
  core::TransportOptions o;
  o.broker_uri = absl::StrCat("tcp://127.0.0.1:", FreeTcpPort());  // nobody listens
  o.client_id = "lonely";
  o.min_backoff = absl::Seconds(1);
  o.max_backoff = absl::Seconds(4);
  auto t = core::MakeMqttTransport(o, &executor);
  std::atomic<int> attempts{0};
  t->SetWillProvider([&]() -> std::optional<core::MqttMessage> {
    ++attempts;
    return std::nullopt;
  });
  ASSERT_OK(t->Start());
  ASSERT_TRUE(WaitFor([&] { return attempts == 1 && executor.pending_timers() == 1; }));
  // Paho answers a refused connect at once; the next attempt waits for the clock.
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(attempts, 1);
  clock.Advance(499);  // below the shortest jittered first delay (0.5 s)
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(attempts, 1);
  clock.Advance(501);  // 1 s: the first delay is over
  ASSERT_TRUE(WaitFor([&] { return attempts == 2 && executor.pending_timers() == 1; }));
  clock.Advance(999);  // the second delay is at least 1 s (0.5 of 2 s)
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(attempts, 2);
  clock.Advance(1001);
  ASSERT_TRUE(WaitFor([&] { return attempts == 3; }));
  EXPECT_FALSE(t->connected());
  t->Stop();
}

}  // namespace
}  // namespace x1368::testing
