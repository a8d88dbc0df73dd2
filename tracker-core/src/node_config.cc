#include "x1368/core/node_config.h"

#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "x1368/core/crypto.h"
#include "x1368/core/file_util.h"
#include "x1368/core/log.h"
#include "x1368/core/topics.h"

namespace x1368::core {
namespace {

constexpr uint64_t kMaxTlsFileBytes = 1 << 20;

// "cannot read <path>: <why>".
absl::StatusOr<std::string> ReadConfiguredFile(const std::string& path) {
  auto raw = ReadFileLimited(path, kMaxTlsFileBytes);
  if (raw.ok()) return raw;
  absl::string_view m = raw.status().message();
  if (absl::ConsumePrefix(&m, "open ") || absl::ConsumePrefix(&m, "read ")) {
    return absl::Status(raw.status().code(), absl::StrCat("cannot read ", m));
  }
  return raw.status();
}

}  // namespace

std::string ReadId(ConfigFile& file, absl::string_view key, std::optional<std::string> fallback) {
  std::string id = file.String(key, std::move(fallback));
  // A missing required key is already an error of its own.
  if (!file.Has(key)) return id;
  if (absl::Status s = ValidateNodeId(id, "the id"); !s.ok()) file.Fail(key, s.message());
  return id;
}

NodeConfig ReadNodeConfig(ConfigFile& file, bool needs_cert) {
  NodeConfig c;
  c.node_id = ReadId(file, "node_id");
  c.topic_prefix = file.String("topic_prefix", std::string(kDefaultTopicPrefix));
  if (!IsValidNodeId(c.topic_prefix))
    file.Fail("topic_prefix", "must be 1-64 characters of [A-Za-z0-9._-]");
  c.key_file = file.Path("key");
  if (needs_cert) c.cert_file = file.Path("cert");
  c.data_dir = file.Path("data_dir");
  if (file.Has("data_dir") && c.data_dir.empty()) file.Fail("data_dir", "is empty");
  c.root_id = ReadId(file, "root.id", "root");
  c.root_public_key_file = file.Path("root.public_key");
  c.limits.max_message_bytes =
      static_cast<size_t>(file.Int("limits.max_message_bytes", 256 * 1024, 1024, 64 << 20));
  c.limits.max_clock_skew_ms = file.Int("limits.clock_skew_s", 300, 0, 86400) * 1000;
  c.message_ttl_ms = file.Int("limits.message_ttl_s", 600, 1, 30 * 86400) * 1000;
  c.log_level = file.String("log.level", "warn");
  if (!IsValidLogLevel(c.log_level))
    file.Fail("log.level", "expected trace, debug, info, warn, error or off");
  c.log_format = file.String("log.format", "logfmt");
  if (!IsValidLogFormat(c.log_format)) file.Fail("log.format", "expected logfmt or json");
  c.metrics_listen = file.String("metrics.listen", "");
  return c;
}

void CheckNodeFiles(ConfigFile& file, const NodeConfig& config, const Clock* clock) {
  if (!config.data_dir.empty()) {
    std::error_code ec;
    if (std::filesystem::exists(config.data_dir, ec) &&
        !std::filesystem::is_directory(config.data_dir, ec)) {
      file.Fail("data_dir", absl::StrCat(config.data_dir, " exists and is not a directory"));
    }
  }
  std::vector<CredentialProblem> problems;
  (void)LoadCredentials(config, clock, &problems);
  for (const CredentialProblem& p : problems) {
    // A key left out (or empty) is already an error of its own; the rest name a file.
    bool named = (p.key == "key" && !config.key_file.empty()) ||
                 (p.key == "cert" && !config.cert_file.empty()) ||
                 (p.key == "root.public_key" && !config.root_public_key_file.empty());
    if (!named && file.Has(p.key)) {
      file.Fail(p.key, "names no file");
    } else if (named) {
      file.Fail(p.key, p.message);
    }
  }
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
  t.will_delay_s = static_cast<int>(file.Int(key("will_delay_s"), 10, 0, 86400));
  t.max_buffered = static_cast<int>(file.Int(key("max_buffered"), 10000, 1, 1'000'000));
  t.broker_max_queued =
      static_cast<uint32_t>(file.Int(key("max_queued_messages"), 1000, 2, 100'000'000));
  return t;
}

void CheckLinkFiles(ConfigFile& file, absl::string_view section, const TransportOptions& link) {
  auto check = [&](absl::string_view k, const std::string& path,
                   absl::Status (*parse)(absl::string_view)) {
    if (path.empty()) return;
    std::string key = absl::StrCat(section, ".", k);
    auto pem = ReadConfiguredFile(path);
    if (!pem.ok()) return file.Fail(key, pem.status().message());
    if (absl::Status s = parse(*pem); !s.ok()) file.Fail(key, absl::StrCat(path, " ", s.message()));
  };
  check("tls.ca", link.tls.ca_file, CheckPemCertificates);
  check("tls.cert", link.tls.cert_file, CheckPemCertificates);
  check("tls.key", link.tls.key_file, CheckPemPrivateKey);
}

}  // namespace x1368::core
