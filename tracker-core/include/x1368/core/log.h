// Structured, quiet-by-default logging on spdlog: one line per event on stderr,
//   ts=2026-11-25T15:22:47.123Z level=info node=gw1 event=directive.forwarded campaign=c1 ...
// Messages are written as `event=<name> key=value ...` so logs can be grepped and parsed.
// The default level is "warn": a healthy node says almost nothing.
#ifndef X1368_CORE_LOG_H_
#define X1368_CORE_LOG_H_

#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

// Lets log lines format absl::string_view (Debian's Abseil has its own string_view type).
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(absl::string_view s, Ctx& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

namespace x1368::core {

// Installs the stderr logger for this process. `level`: trace, debug, info, warn, error, off.
absl::Status InitLogging(absl::string_view node_id, absl::string_view level);

// True when `level` is one InitLogging accepts.
bool IsValidLogLevel(absl::string_view level);

}  // namespace x1368::core

#endif  // X1368_CORE_LOG_H_
