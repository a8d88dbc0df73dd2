// libFuzzer target: bytes as TOML text into core::ConfigFile::Parse, then the readers every
// daemon runs: ReadNodeConfig, ReadLinkConfig for both links, the typed getters and Finish().
// Configuration is local, not network input, but a daemon must answer a broken file with an
// error naming the line, never with a crash. Beyond that: a config that Finish() accepts has
// passed every check ReadNodeConfig makes (valid ids, limits inside their ranges).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"
#include "x1368/core/config.h"
#include "x1368/core/node.h"
#include "x1368/core/node_config.h"
#include "x1368/core/topics.h"

namespace {

void Fail(const char* what) {
  fprintf(stderr, "config_parse: %s\n", what);
  abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace x1368;
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto file = core::ConfigFile::Parse(text, "fuzz.toml", "/etc/x1368");
  if (!file.ok()) {
    if (file.status().message().empty()) Fail("parse error without a message");
    return 0;
  }
  core::ConfigFile& f = *file;
  const bool needs_cert = f.Has("cert");
  core::NodeConfig node = core::ReadNodeConfig(f, needs_cert);
  core::ReadLinkConfig(f, "upstream", node.node_id);
  if (f.Has("downstream")) core::ReadLinkConfig(f, "downstream", node.node_id);
  // What the daemons read on top (see tracker-*/src/main.cc), through every getter type.
  (void)f.String("parent_id", "");
  (void)f.Path("cache.dir", "");
  (void)f.Int("fetch.chunk_size", 64 * 1024, 1024, 128 * 1024);
  (void)f.Int("campaign.default_deadline_s", 7 * 86400, 60, 365LL * 86400);
  (void)f.Bool("consumer.fail_install", false);
  (void)f.StringList("consumer.components");
  if (f.Has("fail")) f.Fail("fail", "rejected by the harness");
  absl::Status status = f.Finish();
  if (status.ok()) {
    if (!core::IsValidNodeId(node.node_id)) Fail("accepted an invalid node_id");
    if (!core::IsValidNodeId(node.topic_prefix)) Fail("accepted an invalid topic_prefix");
    if (!core::IsValidNodeId(node.root_id)) Fail("accepted an invalid root.id");
    if (node.limits.max_message_bytes < 1024) Fail("accepted a tiny message limit");
    if (node.message_ttl_ms <= 0) Fail("accepted a non-positive message TTL");
    if (node.key_file.empty() || node.data_dir.empty()) Fail("accepted without key or data_dir");
  }
  return 0;
}
