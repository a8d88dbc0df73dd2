#include "x1368/core/topics.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "x1368/core/log.h"
#include "x1368/core/reason.h"
#include "x1368/core/transport.h"

namespace x1368::core {
namespace {

constexpr size_t kMaxNodeIdLength = 64;

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool ChannelFits(Direction direction, Channel channel) {
  if (direction == Direction::kDown) {
    return channel == Channel::kCmd || channel == Channel::kDesired || channel == Channel::kFw ||
           channel == Channel::kData;
  }
  return channel == Channel::kStatus || channel == Channel::kPresence || channel == Channel::kFw;
}

bool ParseChannel(absl::string_view name, Channel* out) {
  static constexpr std::pair<absl::string_view, Channel> kNames[] = {
      {"cmd", Channel::kCmd},       {"desired", Channel::kDesired},   {"fw", Channel::kFw},
      {"status", Channel::kStatus}, {"presence", Channel::kPresence}, {"data", Channel::kData},
  };
  for (const auto& [n, c] : kNames) {
    if (n == name) {
      *out = c;
      return true;
    }
  }
  return false;
}

}  // namespace

bool IsValidNodeId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxNodeIdLength || id == kAllChildren) return false;
  // "." and ".." would name a directory, not a node, wherever an id becomes a path segment (a
  // URL of the admin API, a data directory named after the node).
  if (id == "." || id == "..") return false;
  for (char c : id) {
    if (!IsIdChar(c)) return false;
  }
  return true;
}

absl::Status ValidateNodeId(absl::string_view id, absl::string_view what) {
  if (IsValidNodeId(id)) return absl::OkStatus();
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  if (id == kAllChildren) {
    return absl::InvalidArgumentError(absl::StrCat(what, " \"_all\" is reserved"));
  }
  if (id.size() > kMaxNodeIdLength) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is longer than ", kMaxNodeIdLength, " characters"));
  }
  if (id == "." || id == "..") {
    return absl::InvalidArgumentError(absl::StrCat(what, " \"", id, "\" is reserved"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, " ", Quote(id), " has characters outside [A-Za-z0-9._-]"));
}

absl::Status ValidatePath(absl::string_view path) {
  if (path.empty()) return absl::OkStatus();
  std::vector<absl::string_view> nodes = absl::StrSplit(path, '/');
  if (nodes.size() > static_cast<size_t>(kMaxPathDepth)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a path of ", nodes.size(), " nodes (at most ", kMaxPathDepth, ")"));
  }
  for (absl::string_view n : nodes) X1368_RETURN_IF_ERROR(ValidateNodeId(n, "a node of a path"));
  return absl::OkStatus();
}

std::string JoinPath(absl::string_view head, absl::string_view tail) {
  if (head.empty()) return std::string(tail);
  if (tail.empty()) return std::string(head);
  return absl::StrCat(head, "/", tail);
}

absl::string_view ChannelName(Channel channel) {
  switch (channel) {
    case Channel::kCmd:
      return "cmd";
    case Channel::kDesired:
      return "desired";
    case Channel::kFw:
      return "fw";
    case Channel::kStatus:
      return "status";
    case Channel::kPresence:
      return "presence";
    case Channel::kData:
      return "data";
  }
  return "?";
}

std::string Topic::ToString() const {
  return absl::StrCat(prefix, "/", parent, "/", child, "/",
                      direction == Direction::kDown ? "down" : "up", "/", ChannelName(channel));
}

absl::StatusOr<Topic> ParseTopic(absl::string_view topic, absl::string_view expected_prefix) {
  std::vector<absl::string_view> levels = absl::StrSplit(topic, '/');
  if (levels.size() != 5) {
    return Reject(v1::BAD_TOPIC, absl::StrCat("topic has ", levels.size(), " levels, not 5"));
  }
  Topic out;
  if (levels[0] != expected_prefix) {
    return Reject(v1::BAD_TOPIC, absl::StrCat("topic prefix is not \"", expected_prefix, "\""));
  }
  out.prefix = std::string(levels[0]);
  if (!IsValidNodeId(levels[1])) return Reject(v1::BAD_TOPIC, "invalid parent id in topic");
  out.parent = std::string(levels[1]);
  if (levels[3] == "down") {
    out.direction = Direction::kDown;
  } else if (levels[3] == "up") {
    out.direction = Direction::kUp;
  } else {
    return Reject(v1::BAD_TOPIC, "topic direction is neither down nor up");
  }
  if (!ParseChannel(levels[4], &out.channel) || !ChannelFits(out.direction, out.channel)) {
    return Reject(v1::BAD_TOPIC, "unknown channel for this direction");
  }
  if (levels[2] == kAllChildren) {
    if (out.direction != Direction::kDown || out.channel != Channel::kCmd) {
      return Reject(v1::BAD_TOPIC, "\"_all\" is only valid on down/cmd");
    }
  } else if (!IsValidNodeId(levels[2])) {
    return Reject(v1::BAD_TOPIC, "invalid child id in topic");
  }
  out.child = std::string(levels[2]);
  return out;
}

std::string DownTopic(absl::string_view prefix, absl::string_view parent, absl::string_view child,
                      Channel channel) {
  return absl::StrCat(prefix, "/", parent, "/", child, "/down/", ChannelName(channel));
}

std::string UpTopic(absl::string_view prefix, absl::string_view parent, absl::string_view child,
                    Channel channel) {
  return absl::StrCat(prefix, "/", parent, "/", child, "/up/", ChannelName(channel));
}

std::string ChildDownFilter(absl::string_view prefix, absl::string_view parent,
                            absl::string_view child) {
  return absl::StrCat(prefix, "/", parent, "/", child, "/down/#");
}

std::string BroadcastDownFilter(absl::string_view prefix, absl::string_view parent) {
  return absl::StrCat(prefix, "/", parent, "/", kAllChildren, "/down/#");
}

std::string ParentUpFilter(absl::string_view prefix, absl::string_view parent) {
  return absl::StrCat(prefix, "/", parent, "/+/up/#");
}

// Level by level, without splitting into a vector: the in-memory broker runs this for every
// candidate subscription of every message.
bool TopicMatchesFilter(absl::string_view filter, absl::string_view topic) {
  size_t fi = 0, ti = 0;
  while (true) {
    size_t fe = filter.find('/', fi);
    if (fe == absl::string_view::npos) fe = filter.size();
    absl::string_view flevel = filter.substr(fi, fe - fi);
    if (flevel == "#") return true;
    size_t te = topic.find('/', ti);
    if (te == absl::string_view::npos) te = topic.size();
    if (flevel != "+" && flevel != topic.substr(ti, te - ti)) return false;
    bool filter_ends = fe == filter.size(), topic_ends = te == topic.size();
    if (filter_ends || topic_ends) {
      if (filter_ends && topic_ends) return true;
      // The topic ended first: only a final "#" also matches the parent level (MQTT 4.7.1.2).
      return topic_ends && filter.substr(fe + 1) == "#";
    }
    fi = fe + 1;
    ti = te + 1;
  }
}

}  // namespace x1368::core
