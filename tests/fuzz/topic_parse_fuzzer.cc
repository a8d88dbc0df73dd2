// libFuzzer target: arbitrary strings as MQTT topics into core::ParseTopic (docs/architecture.md
// §4). Every topic a node receives goes through ParseTopic first. Beyond "never crashes" this
// checks that whatever parses is exactly what DownTopic/UpTopic would build from its parts, and
// that the subscription filter meant for it matches it: a parse that accepts anything else would
// let a crafted topic name a different node than the one the broker ACL checked.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "x1368/core/node_config.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"
#include "x1368/core/transport.h"

namespace x1368::fuzz {
namespace {

void Fail(const std::string& topic, const char* what) {
  fprintf(stderr, "topic_parse: %s for topic \"%s\"\n", what, topic.c_str());
  abort();
}

void Check(const std::string& topic, absl::string_view prefix) {
  auto parsed = core::ParseTopic(topic, prefix);
  if (!parsed.ok()) {
    if (core::ReasonOf(parsed.status()) != v1::BAD_TOPIC)
      Fail(topic, "rejection without BAD_TOPIC");
    return;
  }
  const core::Topic& t = *parsed;
  std::string rebuilt = t.direction == core::Direction::kDown
                            ? core::DownTopic(t.prefix, t.parent, t.child, t.channel)
                            : core::UpTopic(t.prefix, t.parent, t.child, t.channel);
  if (rebuilt != topic) Fail(topic, "DownTopic/UpTopic does not rebuild the parsed topic");
  if (t.ToString() != topic) Fail(topic, "Topic::ToString differs from the parsed topic");
  if (t.prefix != prefix) Fail(topic, "prefix differs from the expected one");
  if (!core::IsValidNodeId(t.parent)) Fail(topic, "parent is not a valid node id");
  if (!t.broadcast() && !core::IsValidNodeId(t.child)) Fail(topic, "child is not a valid node id");
  if (t.broadcast() &&
      (t.direction != core::Direction::kDown || t.channel != core::Channel::kCmd)) {
    Fail(topic, "\"_all\" outside down/cmd");
  }
  if (t.direction == core::Direction::kDown) {
    std::string filter = t.broadcast() ? core::BroadcastDownFilter(t.prefix, t.parent)
                                       : core::ChildDownFilter(t.prefix, t.parent, t.child);
    if (!core::TopicMatchesFilter(filter, topic)) Fail(topic, "its down filter does not match it");
  } else if (!core::TopicMatchesFilter(core::ParentUpFilter(t.prefix, t.parent), topic)) {
    Fail(topic, "its parent's up filter does not match it");
  }
}

}  // namespace
}  // namespace x1368::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string topic(reinterpret_cast<const char*>(data), size);
  x1368::fuzz::Check(topic, x1368::core::kDefaultTopicPrefix);
  // The prefix is configurable (any valid node id, checked in ReadNodeConfig): also parse against
  // whatever the input puts in the first level.
  absl::string_view first = absl::string_view(topic).substr(0, topic.find('/'));
  if (first != x1368::core::kDefaultTopicPrefix && x1368::core::IsValidNodeId(first)) {
    x1368::fuzz::Check(topic, first);
  }
  // Node ids are validated where they enter; both spellings of the check must agree.
  if (x1368::core::IsValidNodeId(topic) != x1368::core::ValidateNodeId(topic).ok()) {
    fprintf(stderr, "topic_parse: IsValidNodeId and ValidateNodeId disagree\n");
    abort();
  }
  return 0;
}
