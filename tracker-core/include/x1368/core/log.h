// Structured, quiet-by-default logging on spdlog: one line per event on stderr,
//   ts=2026-11-25T15:22:47.123Z level=info node=gw1 event=directive.forwarded campaign="c1" ...
// Messages are written as `event=<name> key=value ...` (logfmt) so logs can be grepped and
// parsed. The default level is "warn": a healthy node says almost nothing.
//
// Values are data: every string that comes from the wire, from a file or from a user (ids,
// versions, campaign ids, error messages that quote any of them) is logged through Quoted(),
// which writes it in double quotes with quotes, backslashes and control characters escaped, so
// no value can end its line, start another one or forge a key (issue #14). Our own enum names
// and numbers are written bare.
#ifndef X1368_CORE_LOG_H_
#define X1368_CORE_LOG_H_

#include <string>
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
// The same logger (pattern, level, flushing) writing to `sink` instead: tests read the lines a
// node writes exactly as a daemon writes them.
absl::Status InitLogging(absl::string_view node_id, absl::string_view level, spdlog::sink_ptr sink);

// True when `level` is one InitLogging accepts.
bool IsValidLogLevel(absl::string_view level);

// The longest part of a value a log line (or an error message) shows; the rest is cut and its
// size said, so a hostile value cannot flood the log either.
inline constexpr size_t kMaxQuotedBytes = 1024;

// `value` in double quotes, escaped: `"` and `\` as \" and \\, newline, carriage return and tab
// as \n, \r and \t, every other control character (C0, DEL, C1) and the Unicode line and
// paragraph separators as \xNN or \uNNNN, bytes that are not UTF-8 as \xNN. Valid UTF-8 text
// passes unchanged. Longer than kMaxQuotedBytes: cut there, with "...(N bytes)" appended
// inside the quotes. The result is always one line of printable text.
std::string Quote(absl::string_view value);
void AppendQuoted(std::string* out, absl::string_view value);

// A string to log as data: `key={}` with Quoted(value) writes key="<escaped value>". Holds a
// view: use it within the logging call. Escaping happens only if the line is written.
struct Quoted {
  explicit Quoted(absl::string_view v) : value(v) {}
  absl::string_view value;
};

}  // namespace x1368::core

template <>
struct fmt::formatter<x1368::core::Quoted> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(const x1368::core::Quoted& q, Ctx& ctx) const {
    std::string s = x1368::core::Quote(q.value);
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

#endif  // X1368_CORE_LOG_H_
