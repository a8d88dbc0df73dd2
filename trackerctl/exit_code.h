// trackerctl's exit codes (README "trackerctl", and the --help footer): what a script can tell
// apart without reading the message.
#ifndef X1368_TRACKERCTL_EXIT_CODE_H_
#define X1368_TRACKERCTL_EXIT_CODE_H_

#include "absl/status/status.h"

namespace x1368::ctl {

enum ExitCode {
  kExitOk = 0,
  kExitFailed = 1,       // anything else: a file, a key, a local check
  kExitUsage = 2,        // the command line does not parse
  kExitTimeout = 3,      // fleet wait gave up
  kExitUnreachable = 4,  // root's admin API cannot be reached (refused, DNS, TLS, timeout)
  kExitRefused = 5,      // root answered with an error (any non-2xx)
};

inline constexpr char kExitCodesHelp[] =
    "Exit codes: 0 ok, 1 failed, 2 usage, 3 timeout (fleet wait), 4 root's admin API "
    "unreachable, 5 refused by root (an HTTP error).";

// `s` (not OK) carrying the exit code it ends trackerctl with.
absl::Status WithExit(absl::Status s, ExitCode code);
// The exit code `s` carries; kExitFailed when none.
ExitCode ExitOf(const absl::Status& s);

// Prints "trackerctl: MESSAGE" on stderr and returns the exit code.
int Fail(const absl::Status& s);

}  // namespace x1368::ctl

#endif  // X1368_TRACKERCTL_EXIT_CODE_H_
