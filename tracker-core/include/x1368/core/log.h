// Structured, quiet-by-default logging on spdlog: one line per event on stderr,
//   ts=2026-11-25T15:22:47.123Z level=info node=gw1 event=directive.forwarded campaign="c1" ...
// Messages are written as `event=<name> key=value ...` (logfmt) so logs can be grepped and
// parsed. The default level is "warn": a healthy node says almost nothing, and whatever an
// operator must act on (a lost link, a broker that cannot be reached, a refused message, a
// rolled-back update) is a warning or an error.
//
// The "json" format writes the same event as one JSON object per line, for log collectors:
//   {"ts":"2026-11-25T15:22:47.123Z","level":"info","node":"gw1","event":"directive.forwarded",
//    "campaign":"c1",...}
// every key=value of the message a member (quoted values as JSON strings, bare integers and
// decimals as numbers, true/false as booleans, anything else as a string); a key that is taken
// already (ts, level, node, or a repeated key) gets "_" appended; text that is not key=value goes
// to "msg".
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

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
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
// `format`: "logfmt" (the default) or "json".
absl::Status InitLogging(absl::string_view node_id, absl::string_view level,
                         absl::string_view format = "logfmt");
// The same logger (pattern, level, flushing) writing to `sink` instead: tests read the lines a
// node writes exactly as a daemon writes them.
absl::Status InitLogging(absl::string_view node_id, absl::string_view level, spdlog::sink_ptr sink,
                         absl::string_view format = "logfmt");

// True when `level` is one InitLogging accepts.
bool IsValidLogLevel(absl::string_view level);
// True when `format` is one InitLogging accepts: logfmt or json.
bool IsValidLogFormat(absl::string_view format);

// `value` as a JSON string, in double quotes: `"`, `\` and control characters escaped, valid
// UTF-8 unchanged, a byte that is not UTF-8 as the text \xNN.
std::string JsonQuote(absl::string_view value);

// One log line in the json format (without its newline): `ts` and `level` as given, `node`, and
// the members of `message` (`event=<name> key=value ...`, values as Quoted() writes them).
std::string JsonLogLine(absl::string_view ts, absl::string_view level, absl::string_view node,
                        absl::string_view message);

// A problem that may recur often (a broker that cannot be reached, a flood of refused messages)
// is written at once the first time, then at most once a `period`, saying how many times it
// was not written in between: never silent, never a flood. Thread-safe.
class LogThrottle {
 public:
  explicit LogThrottle(absl::Duration period) : period_(period) {}
  // Whether this occurrence is to be written; `*skipped`: the occurrences not written since the
  // last one that was.
  bool Allow(uint64_t* skipped, absl::Time now = absl::Now());
  // The next occurrence is written at once (the problem ended).
  void Reset();

 private:
  const absl::Duration period_;
  absl::Mutex mu_;
  absl::Time last_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  uint64_t skipped_ ABSL_GUARDED_BY(mu_) = 0;
};

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
