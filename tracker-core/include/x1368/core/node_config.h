// Reading a node's configuration file: the keys every node shares and its MQTT links.
#ifndef X1368_CORE_NODE_CONFIG_H_
#define X1368_CORE_NODE_CONFIG_H_

#include "absl/strings/string_view.h"
#include "x1368/core/config.h"
#include "x1368/core/node.h"
#include "x1368/core/transport.h"

namespace x1368::core {

// Reads the common keys: node_id, topic_prefix, key, cert, data_dir, root.id,
// root.public_key, limits.max_message_bytes, limits.clock_skew_s, limits.message_ttl_s,
// log.level, metrics.listen. Errors are recorded in `file`.
NodeConfig ReadNodeConfig(ConfigFile& file, bool needs_cert);

// Reads [<section>]: broker, tls.ca, tls.cert, tls.key, keepalive_s, session_expiry_s,
// max_buffered, max_queued_messages.
TransportOptions ReadLinkConfig(ConfigFile& file, absl::string_view section,
                                absl::string_view client_id);

}  // namespace x1368::core

#endif  // X1368_CORE_NODE_CONFIG_H_
