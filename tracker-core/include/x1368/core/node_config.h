// Reading a node's configuration file: the keys every node shares and its MQTT links, and the
// files they name.
#ifndef X1368_CORE_NODE_CONFIG_H_
#define X1368_CORE_NODE_CONFIG_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "x1368/core/clock.h"
#include "x1368/core/config.h"
#include "x1368/core/node.h"
#include "x1368/core/transport.h"

namespace x1368::core {

// Reads the common keys: node_id, topic_prefix, key, cert, data_dir, root.id,
// root.public_key, limits.max_message_bytes, limits.clock_skew_s, limits.message_ttl_s,
// log.level, log.format, metrics.listen. Errors are recorded in `file`. Reads no other file: see
// CheckNodeFiles.
NodeConfig ReadNodeConfig(ConfigFile& file, bool needs_cert);

// A key holding a node id (node_id, parent_id, root.id): checked with the wire's rules
// (ValidateNodeId: 1-64 characters of [A-Za-z0-9._-], not "_all", never empty), so that a
// configuration that passes never builds a topic the wire would refuse.
std::string ReadId(ConfigFile& file, absl::string_view key,
                   std::optional<std::string> fallback = std::nullopt);

// Opens and checks every file the common keys name, each error against its key and line:
// key, cert and root.public_key read, parsed and checked against each other and node_id
// (LoadCredentials, on `clock`: what the node itself does when it starts), and data_dir, which
// must be a directory if it exists. Creates nothing.
void CheckNodeFiles(ConfigFile& file, const NodeConfig& config, const Clock* clock);

// Reads [<section>]: broker, tls.ca, tls.cert, tls.key, keepalive_s, session_expiry_s,
// max_buffered, max_queued_messages.
TransportOptions ReadLinkConfig(ConfigFile& file, absl::string_view section,
                                absl::string_view client_id);

// Opens and parses the TLS files of [<section>] that `link` names: tls.ca and tls.cert as PEM
// certificates, tls.key as a PEM private key.
void CheckLinkFiles(ConfigFile& file, absl::string_view section, const TransportOptions& link);

}  // namespace x1368::core

#endif  // X1368_CORE_NODE_CONFIG_H_
