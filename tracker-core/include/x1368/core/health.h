// Liveness and readiness for orchestrators and load balancers, served beside /metrics (every
// daemon's metrics endpoint) and on root's admin API:
//   GET /healthz  200 "ok": the process runs and serves HTTP.
//   GET /readyz   200 {"ready":true,"reasons":[]} when the node can do its work now: each of its
//                 MQTT links is connected and its store is writable; otherwise
//                 503 {"ready":false,"reasons":["upstream link down", ...]}.
#ifndef X1368_CORE_HEALTH_H_
#define X1368_CORE_HEALTH_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "x1368/core/file_system.h"
#include "x1368/core/http.h"
#include "x1368/core/transport.h"

namespace x1368::core {

// What keeps the node from being ready, one short sentence each; empty: ready.
using ReadinessCheck = std::function<std::vector<std::string>()>;

// A link of the node: "upstream" or "downstream", and its transport (null: the node has none).
struct ReadinessLink {
  const char* name;
  const Transport* transport;
};

// The reasons a node with `links` and its store in `data_dir` (on `fs`) is not ready:
// "<name> link down" for each link that is not connected, and "store not writable: <why>" when
// a file cannot be created and written in data_dir (a read-only or full disk, lost permissions).
// The probe file it writes (.readyz-probe) is removed again.
std::vector<std::string> NotReadyReasons(const std::vector<ReadinessLink>& links, FileSystem* fs,
                                         const std::string& data_dir);

// Whether `dir` takes a new file now; the reason when it does not.
std::optional<std::string> StoreNotWritable(FileSystem* fs, const std::string& dir);

// The answers, for `reasons` from a ReadinessCheck.
HttpResponse HealthzResponse();
HttpResponse ReadyzResponse(const std::vector<std::string>& reasons);

// Registers GET /healthz and GET /readyz on `server` (before Start()). A null `ready`: always
// ready.
void AddHealthRoutes(HttpServer* server, ReadinessCheck ready);

}  // namespace x1368::core

#endif  // X1368_CORE_HEALTH_H_
