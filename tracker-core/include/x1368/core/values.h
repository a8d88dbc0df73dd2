// The grammar of the values that signed messages carry and that end up in stores, logs and an
// operator's terminal (issue #14: values from the wire are data). Signers refuse to sign what
// breaks it and every receiver refuses it, so a value that reaches a log or a table has a known
// shape; logs quote and escape every value all the same (log.h: Quoted).
//
//   identifier   1-64 characters of [A-Za-z0-9._-], other than "_all" (the node id grammar of
//                topics.h): node ids, author ids, component names, hardware classes.
//   version      SemVer 2.0 (https://semver.org): MAJOR.MINOR.PATCH, then optionally
//                -PRERELEASE and +BUILD, each a dot-separated list of non-empty
//                [0-9A-Za-z-]+ identifiers; MAJOR, MINOR, PATCH and numeric pre-release
//                identifiers without leading zeros; no leading "v"; at most 64 characters.
//                "2.0.0", "1.4.0-rc.1", "3.0.0+build.7" are versions; "v2.0.0", "2.0",
//                "02.0.0" are not.
//   text         free text (a manifest's description): at most 1024 bytes of UTF-8 without
//                control characters (no newline, no tab, no C1 control, no line separator).
//
// Thread-safe: pure functions.
#ifndef X1368_CORE_VALUES_H_
#define X1368_CORE_VALUES_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "x1368/v1/messages.pb.h"

namespace x1368::core {

inline constexpr size_t kMaxVersionLength = 64;
inline constexpr size_t kMaxTextBytes = 1024;

// True for a SemVer 2.0 version of at most kMaxVersionLength characters.
bool IsValidVersion(absl::string_view version);
// OK, or InvalidArgument saying what is wrong with `version` (`what` names it), the value
// quoted and escaped.
absl::Status ValidateVersion(absl::string_view version, absl::string_view what = "version");

// OK for an identifier (see above), or InvalidArgument naming `what`.
absl::Status ValidateIdentifier(absl::string_view id, absl::string_view what);

// OK for free text of at most `max_bytes` (see above), or InvalidArgument naming `what`.
absl::Status ValidateText(absl::string_view text, absl::string_view what,
                          size_t max_bytes = kMaxTextBytes);

// A status report's values (issue #13: bad input from below is refused with a counted reason,
// never stored): the device id; for a firmware consumer's report (`device`) also its component
// and hardware class (identifiers), running and target versions (SemVer; the target may be
// empty), a known update state and reason, a campaign id and texts of bounded size, and
// progress that does not exceed its total. A tracker node's own report carries only its id and
// counters. MALFORMED-worthy: InvalidArgument saying which value is wrong.
absl::Status ValidateReport(const v1::StatusReport& report, bool device);

// The length of the UTF-8 sequence at the start of `s` and its code point in `*cp`, or 0 when
// `s` does not start with one (overlong forms, surrogates and values past U+10FFFF included).
size_t DecodeUtf8(absl::string_view s, uint32_t* cp);

}  // namespace x1368::core

#endif  // X1368_CORE_VALUES_H_
