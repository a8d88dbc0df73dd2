// Process plumbing shared by the daemons' main.cc: clean shutdown on SIGTERM/SIGINT.
#ifndef X1368_CORE_DAEMON_H_
#define X1368_CORE_DAEMON_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "x1368/core/config.h"
#include "x1368/core/env.h"
#include "x1368/core/health.h"
#include "x1368/core/http.h"
#include "x1368/core/metrics.h"
#include "x1368/core/node.h"

namespace x1368::core {

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and every thread it starts later;
// call first thing in main(). Also ignores SIGPIPE.
void BlockTerminationSignals();

// Starts a thread that waits for SIGTERM or SIGINT and then calls `on_signal` once. The returned
// thread is detached by the caller or joined after the signal.
std::thread WatchTerminationSignals(std::function<void(int signal)> on_signal);

// Serves GET /metrics (Prometheus text: everything `metrics` collects), GET /healthz and
// GET /readyz (health.h; `ready` says what keeps the node from being ready) on `listen`
// ("host:port"). Returns the running server; a port another process listens on already is an
// error naming it.
absl::StatusOr<std::unique_ptr<HttpServer>> StartMetricsServer(const std::string& listen,
                                                               Metrics* metrics,
                                                               ReadinessCheck ready = {});

// A running daemon (tracker-root, tracker-intermediate, tracker-client) as RunDaemon sees it.
class Daemon {
 public:
  virtual ~Daemon() = default;
  // Starts the node on its own strand and returns once it has started.
  virtual absl::Status Start() = 0;
  // Stops its strand (nothing more of it runs), then disconnects.
  virtual void Stop() = 0;
  // Everything the node exposes, its links' series included (they are collectors of it).
  virtual Metrics* metrics() = 0;
  // What keeps the node from doing its work now (GET /readyz); empty: ready. Thread-safe.
  virtual std::vector<std::string> NotReadyReasons() { return {}; }
};

struct DaemonSetup {
  NodeConfig node;
  // Called once the configuration file is valid; builds the daemon from `env` (the real clock,
  // the process's executor, the disk, MQTT) and `node` (the configuration's, with the flags that
  // bear on it: --init).
  std::function<absl::StatusOr<std::unique_ptr<Daemon>>(const Env& env, const NodeConfig& node)>
      build;
  // Restores the node's store from the backup file `backup` into its data_dir, which must hold
  // no initialised store, and returns what to tell the operator; the daemon then exits. Null
  // for a daemon that keeps nothing to restore (--restore is refused).
  std::function<absl::StatusOr<std::string>(const Env& env, const NodeConfig& node,
                                            const std::string& backup)>
      restore;
};

// The whole main() of a daemon: flags (--config FILE, --check-config, --init, --restore FILE,
// --log-format logfmt|json, --help), the config file read by `read` and validated with
// line-precise errors, every file it names opened (exit 2), logging, the metrics endpoint (with
// /healthz and /readyz; a port in use fails the start, exit 1), Start(), the event loop, and a
// clean Stop() on SIGTERM/SIGINT (exit 0). A store that is missing or was never initialised fails
// the start (exit 1) unless --init is given.
int RunDaemon(int argc, char** argv, const std::string& name, const std::string& description,
              const std::function<DaemonSetup(ConfigFile&)>& read);

}  // namespace x1368::core

#endif  // X1368_CORE_DAEMON_H_
