#include "trackerctl/exit_code.h"

#include <iostream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace x1368::ctl {
namespace {

constexpr char kExitPayload[] = "x1368/trackerctl-exit";

}  // namespace

absl::Status WithExit(absl::Status s, ExitCode code) {
  s.SetPayload(kExitPayload, absl::Cord(absl::StrCat(static_cast<int>(code))));
  return s;
}

ExitCode ExitOf(const absl::Status& s) {
  if (s.ok()) return kExitOk;
  int code = 0;
  auto payload = s.GetPayload(kExitPayload);
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &code)) return kExitFailed;
  return static_cast<ExitCode>(code);
}

int Fail(const absl::Status& s) {
  std::cerr << "trackerctl: " << s.message() << "\n";
  return ExitOf(s);
}

}  // namespace x1368::ctl
