// A real Mosquitto broker for a test: started on a free loopback port in a temporary directory,
// optionally with TLS client certificates and the ACL of docs/architecture.md §4, and stopped
// (SIGTERM, then SIGKILL) when the object goes away. Nothing listens beyond 127.0.0.1.
#ifndef X1368_TESTING_MOSQUITTO_H_
#define X1368_TESTING_MOSQUITTO_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "x1368/core/transport.h"

namespace x1368::testing {

// A TCP port on 127.0.0.1 that was free a moment ago. Another process (ctest -j runs fixtures
// in parallel) may take it before it is used: whoever binds it must check that it got it.
int FreeTcpPort();

// True when process `pid` holds a socket listening on TCP `port` (from /proc): tells our broker
// from another test's broker that took the same port first.
bool ProcessListensOn(pid_t pid, int port);

struct MosquittoOptions {
  // TLS 1.3 listener that requires a client certificate; the certificate's CN becomes the
  // username, and the ACL confines each node to its own topics (pattern lines on %u).
  bool tls = false;
  std::string topic_prefix = "x1368";
  // Mosquitto's max_queued_messages; 0 keeps its default (1000), as the README asks users to.
  int max_queued_messages = 0;
};

class MosquittoBroker {
 public:
  // `dir` must exist; config, log, certificates go there.
  static absl::StatusOr<std::unique_ptr<MosquittoBroker>> Start(const std::string& dir,
                                                                MosquittoOptions options = {});
  ~MosquittoBroker();

  int port() const { return port_; }
  std::string uri() const;
  // Transport options for a node: the broker URI, and with TLS a client certificate for `id`
  // (its CN), made on first use.
  core::TransportOptions ClientOptions(const std::string& client_id);
  // Files of a client certificate for `id` (TLS only).
  core::TlsOptions ClientTls(const std::string& id);

  // Stops the broker abruptly (SIGKILL), as a crash or a lost gateway would; Restart() brings it
  // back on the same port with the same configuration.
  void Kill();
  absl::Status Restart();
  std::string log_path() const { return dir_ + "/mosquitto.log"; }
  // Each time the broker started dropping messages for a client whose queue was full, its log
  // line ("Outgoing messages are being dropped for client X"): none on a run that fits it.
  std::vector<std::string> DropEpisodes() const;

 private:
  MosquittoBroker(std::string dir, MosquittoOptions options, int port)
      : dir_(std::move(dir)), options_(std::move(options)), port_(port) {}
  // Starts the broker on port_; FailedPrecondition when another process holds the port.
  absl::Status Launch();
  absl::Status WriteConfig();
  absl::Status WriteTlsMaterial();

  std::string dir_;
  MosquittoOptions options_;
  int port_;
  pid_t pid_ = -1;
};

}  // namespace x1368::testing

#endif  // X1368_TESTING_MOSQUITTO_H_
