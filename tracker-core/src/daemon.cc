#include "x1368/core/daemon.h"

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "x1368/core/file_util.h"
#include "x1368/core/log.h"
#include "x1368/core/mqtt_transport.h"
#include "x1368/core/node_config.h"
#include "x1368/core/version.h"

namespace x1368::core {
namespace {
sigset_t TerminationSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}
}  // namespace

void BlockTerminationSignals() {
  sigset_t set = TerminationSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

std::thread WatchTerminationSignals(std::function<void(int)> on_signal) {
  return std::thread([on_signal = std::move(on_signal)] {
    sigset_t set = TerminationSet();
    while (true) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGHUP) continue;  // reserved for reloading; ignored for now
      on_signal(sig);
      return;
    }
  });
}

absl::StatusOr<std::unique_ptr<HttpServer>> StartMetricsServer(const std::string& listen,
                                                               Metrics* metrics,
                                                               ReadinessCheck ready) {
  auto server = std::make_unique<HttpServer>();
  server->Get("/metrics", [metrics](const HttpRequest&) {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4";
    r.body = metrics->RenderPrometheus();
    return r;
  });
  AddHealthRoutes(server.get(), std::move(ready));
  auto port = server->Start(listen);
  if (!port.ok()) return port.status();
  return server;
}

int RunDaemon(int argc, char** argv, const std::string& name, const std::string& description,
              const std::function<DaemonSetup(ConfigFile&)>& read) {
  BlockTerminationSignals();
#ifdef NDEBUG
  // Debian's Abseil checks every mutex acquisition against a process-wide lock graph, which
  // serializes the whole process behind one lock (half the CPU of a 10,000-device simulation).
  // Debug and sanitizer builds keep the check; release daemons do not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  CLI::App app(description, name);
  std::string config_path;
  bool check_only = false;
  bool init = false;
  std::string restore_from;
  std::string log_format;
  app.add_option("-c,--config", config_path, "TOML configuration file")->required();
  app.add_flag("--check-config", check_only,
               "validate the configuration file, opening every file it names, and exit");
  bool complete = false;
  app.add_flag("--complete", complete,
               "with --check-config: also fail when a key this daemon reads is not in the file "
               "(for reference configurations, such as the examples, that must name every key)")
      ->needs("--check-config");
  app.add_flag("--init", init,
               "initialise a missing or empty store as a new node's (first start); without it "
               "such a store is refused, so that a lost store never goes unnoticed");
  app.add_option("--restore", restore_from,
                 "restore the node's database from FILE (made by trackerctl backup) into its "
                 "data_dir, which must hold no initialised store, and exit")
      ->excludes("--init");
  app.add_option("--log-format", log_format,
                 "how log lines on stderr are written: logfmt (key=value, the default) or json "
                 "(one JSON object per line); overrides log.format in the configuration file")
      ->check(CLI::IsMember({"logfmt", "json"}));
  app.set_version_flag("--version",
                       absl::StrCat("x1368 tracker ", kVersion, " (", kGitRevision, ")"));
  CLI11_PARSE(app, argc, argv);

  auto file = ConfigFile::Load(config_path);
  if (!file.ok()) {
    std::cerr << name << ": " << file.status().message() << "\n";
    return 2;
  }
  DaemonSetup setup = read(*file);
  // Every file the configuration names is opened and parsed now, before anything is created:
  // a broken key must be an error naming its key and line, not a failed start that left a
  // data directory and a database behind (issue #14).
  CheckNodeFiles(*file, setup.node, RealClock::Get());
  if (absl::Status s = file->Finish(); !s.ok()) {
    std::cerr << name << ": invalid configuration:\n" << s.message() << "\n";
    return 2;
  }
  if (check_only) {
    if (std::vector<std::string> missing = file->Defaulted(); complete && !missing.empty()) {
      std::cerr << name << ": " << config_path << " does not set " << absl::StrJoin(missing, ", ")
                << "\n";
      return 2;
    }
    std::cout << config_path << ": OK\n";
    return 0;
  }
  setup.node.init = init;
  if (!log_format.empty()) setup.node.log_format = log_format;
  if (absl::Status s = InitLogging(setup.node.node_id, setup.node.log_level, setup.node.log_format);
      !s.ok()) {
    std::cerr << name << ": " << s.message() << "\n";
    return 2;
  }
  // A daemon is one node: two threads run its loop, its timers and its MQTT transports (which
  // own no thread), two more its blocking calls.
  Executor executor(RealClock::Get(), /*threads=*/2, /*blocking_threads=*/2);
  Env env{.executor = &executor, .fs = PosixFileSystem(), .transports = MqttTransports(&executor)};
  if (!restore_from.empty()) {
    if (!setup.restore) {
      std::cerr << name << ": --restore: this daemon keeps no database to restore\n";
      return 2;
    }
    auto restored = setup.restore(env, setup.node, restore_from);
    if (!restored.ok()) {
      spdlog::critical("event=restore_failed error={}", Quoted(restored.status().message()));
      std::cerr << name << ": --restore: " << restored.status().message() << "\n";
      return 1;
    }
    std::cout << *restored << "\n";
    return 0;
  }
  auto daemon = setup.build(env, setup.node);
  if (!daemon.ok()) {
    spdlog::critical("event=start_failed error={}", Quoted(daemon.status().message()));
    std::cerr << name << ": " << daemon.status().message() << "\n";
    return 1;
  }
  // The metrics endpoint before the node starts: a port in use fails the start before the node
  // connects to its broker (where a second instance would take the first one's session).
  std::unique_ptr<HttpServer> metrics_server;
  if (!setup.node.metrics_listen.empty()) {
    Daemon* d = daemon->get();
    auto server = StartMetricsServer(setup.node.metrics_listen, d->metrics(),
                                     [d] { return d->NotReadyReasons(); });
    if (!server.ok()) {
      std::cerr << name << ": metrics endpoint: " << server.status().message() << "\n";
      return 1;
    }
    metrics_server = std::move(*server);
    // With port 0 the kernel picks a free port (no race with another process for a port chosen
    // in advance): it is logged and written to <data_dir>/metrics.port for whoever scrapes.
    spdlog::info("event=metrics.listening port={}", metrics_server->port());
    if (!setup.node.data_dir.empty()) {
      if (absl::Status s = WriteFileAtomic(setup.node.data_dir + "/metrics.port",
                                           absl::StrCat(metrics_server->port(), "\n"));
          !s.ok()) {
        spdlog::error("event=metrics.port_file_failed error={}", Quoted(s.message()));
      }
    }
  }
  if (absl::Status s = (*daemon)->Start(); !s.ok()) {
    std::cerr << name << ": " << s.message() << "\n";
    return 1;
  }
  absl::Notification stop;
  std::thread signals = WatchTerminationSignals([&stop](int sig) {
    spdlog::info("event=shutdown signal={}", sig);
    stop.Notify();
  });
  spdlog::info("event=started");
  stop.WaitForNotification();
  if (metrics_server) metrics_server->Stop();
  (*daemon)->Stop();
  signals.join();
  spdlog::info("event=stopped");
  return 0;
}

}  // namespace x1368::core
