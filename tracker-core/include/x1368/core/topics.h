// The MQTT topic tree of docs/architecture.md §4, built and parsed in one place.
//
//   <prefix>/<parent>/<child>/down/{cmd,desired,fw}   parent -> child ("_all" child: cmd only)
//   <prefix>/<parent>/<child>/up/{status,presence,fw} child -> parent
//
// Node ids are 1-64 characters of [A-Za-z0-9._-] and "_all" is reserved, so no id can add topic
// levels or wildcards. Every node's own id sits at a fixed level, which lets a broker ACL confine
// each MQTT client id to its own topics. Thread-safe: pure functions.
#ifndef X1368_CORE_TOPICS_H_
#define X1368_CORE_TOPICS_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace x1368::core {

inline constexpr absl::string_view kAllChildren = "_all";
inline constexpr absl::string_view kDefaultTopicPrefix = "x1368";

// True for 1-64 characters of [A-Za-z0-9._-], other than "_all".
bool IsValidNodeId(absl::string_view id);
// OK, or InvalidArgument saying what is wrong with `id` (`what` names it: "node_id", ...).
absl::Status ValidateNodeId(absl::string_view id, absl::string_view what = "node id");
// A path of tracker nodes in the tree ("gw-eu/gw-berlin-1"; DeviceRecord.path): empty, or up to
// kMaxPathDepth valid node ids joined by '/'.
inline constexpr int kMaxPathDepth = 16;
absl::Status ValidatePath(absl::string_view path);
// `head`, then `tail` below it: "a" + "b/c" = "a/b/c"; either may be empty.
std::string JoinPath(absl::string_view head, absl::string_view tail);

enum class Direction { kDown, kUp };
// kData (down only) carries ChunkData, the one payload that is not an Envelope: image chunks,
// checked against the author-signed chunk table instead of a signature.
enum class Channel { kCmd, kDesired, kFw, kStatus, kPresence, kData };

absl::string_view ChannelName(Channel channel);

struct Topic {
  std::string prefix;
  std::string parent;
  std::string child;  // a node id, or "_all" for a broadcast command
  Direction direction = Direction::kDown;
  Channel channel = Channel::kCmd;

  bool broadcast() const { return child == kAllChildren; }
  std::string ToString() const;
};

// Parses `topic` and checks every level: the prefix, two valid node ids (or "_all" as the child
// of a down/cmd topic), a direction and a channel that belongs to it. Rejections carry BAD_TOPIC.
absl::StatusOr<Topic> ParseTopic(absl::string_view topic, absl::string_view expected_prefix);

std::string DownTopic(absl::string_view prefix, absl::string_view parent, absl::string_view child,
                      Channel channel);
std::string UpTopic(absl::string_view prefix, absl::string_view parent, absl::string_view child,
                    Channel channel);

// Subscription filters: what a child reads from its parent, and what a parent reads from all of
// its children.
std::string ChildDownFilter(absl::string_view prefix, absl::string_view parent,
                            absl::string_view child);
std::string BroadcastDownFilter(absl::string_view prefix, absl::string_view parent);
std::string ParentUpFilter(absl::string_view prefix, absl::string_view parent);

}  // namespace x1368::core

#endif  // X1368_CORE_TOPICS_H_
