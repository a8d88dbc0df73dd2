#include "x1368/core/node_config.h"

#include "absl/strings/str_cat.h"
#include "x1368/core/log.h"
#include "x1368/core/topics.h"

namespace x1368::core {

NodeConfig ReadNodeConfig(ConfigFile& file, bool needs_cert) {
  NodeConfig c;
  c.node_id = file.String("node_id");
  if (absl::Status s = ValidateNodeId(c.node_id, "node_id"); !s.ok() && !c.node_id.empty()) {
    file.Fail("node_id", s.message());
  }
  c.topic_prefix = file.String("topic_prefix", std::string(kDefaultTopicPrefix));
  if (!IsValidNodeId(c.topic_prefix))
    file.Fail("topic_prefix", "must be 1-64 characters of [A-Za-z0-9._-]");
  c.key_file = file.Path("key");
  if (needs_cert) c.cert_file = file.Path("cert");
  c.data_dir = file.Path("data_dir");
  c.root_id = file.String("root.id", "root");
  if (!IsValidNodeId(c.root_id)) file.Fail("root.id", "not a valid node id");
  c.root_public_key_file = file.Path("root.public_key");
  c.limits.max_message_bytes =
      static_cast<size_t>(file.Int("limits.max_message_bytes", 256 * 1024, 1024, 64 << 20));
  c.limits.max_clock_skew_ms = file.Int("limits.clock_skew_s", 300, 0, 86400) * 1000;
  c.message_ttl_ms = file.Int("limits.message_ttl_s", 600, 1, 30 * 86400) * 1000;
  c.log_level = file.String("log.level", "warn");
  if (!IsValidLogLevel(c.log_level))
    file.Fail("log.level", "expected trace, debug, info, warn, error or off");
  c.metrics_listen = file.String("metrics.listen", "");
  return c;
}

TransportOptions ReadLinkConfig(ConfigFile& file, absl::string_view section,
                                absl::string_view client_id) {
  TransportOptions t;
  auto key = [&](absl::string_view k) { return absl::StrCat(section, ".", k); };
  t.client_id = std::string(client_id);
  t.broker_uri = file.String(key("broker"));
  bool tls_uri = t.broker_uri.rfind("ssl://", 0) == 0 || t.broker_uri.rfind("mqtts://", 0) == 0;
  if (!t.broker_uri.empty() && !tls_uri && t.broker_uri.rfind("tcp://", 0) != 0 &&
      t.broker_uri.rfind("mqtt://", 0) != 0) {
    file.Fail(key("broker"), "expected tcp://host:port or ssl://host:port");
  }
  t.tls.ca_file = file.Path(key("tls.ca"), "");
  t.tls.cert_file = file.Path(key("tls.cert"), "");
  t.tls.key_file = file.Path(key("tls.key"), "");
  if (tls_uri && !t.tls.enabled()) file.Fail(key("broker"), "an ssl:// broker needs tls.ca");
  if (t.tls.enabled() && !tls_uri) file.Fail(key("tls.ca"), "TLS settings need an ssl:// broker");
  t.keepalive_s = static_cast<int>(file.Int(key("keepalive_s"), 30, 1, 3600));
  t.session_expiry_s = static_cast<int>(file.Int(key("session_expiry_s"), 3600, 0, 30 * 86400));
  t.max_buffered = static_cast<int>(file.Int(key("max_buffered"), 10000, 1, 1'000'000));
  t.broker_max_queued =
      static_cast<uint32_t>(file.Int(key("max_queued_messages"), 1000, 2, 100'000'000));
  return t;
}

}  // namespace x1368::core
