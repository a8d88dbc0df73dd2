#include "x1368/core/values.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "x1368/core/log.h"
#include "x1368/core/reason.h"
#include "x1368/core/topics.h"

namespace x1368::core {
namespace {

bool IsNumeric(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return !s.empty();
}

// A SemVer identifier: non-empty [0-9A-Za-z-]+.
bool IsSemverIdentifier(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  }
  return true;
}

bool IsNumberWithoutLeadingZero(absl::string_view s) {
  return IsNumeric(s) && (s.size() == 1 || s[0] != '0');
}

// Why `v` is not SemVer 2.0, or empty when it is.
std::string SemverProblem(absl::string_view v) {
  if (v.empty()) return "is empty";
  if (v.size() > kMaxVersionLength) {
    return absl::StrCat("is longer than ", kMaxVersionLength, " characters");
  }
  if (v[0] == 'v' || v[0] == 'V') return "starts with \"v\" (SemVer has none)";
  absl::string_view core = v, pre, build;
  if (size_t plus = core.find('+'); plus != absl::string_view::npos) {
    build = core.substr(plus + 1);
    core = core.substr(0, plus);
    if (build.empty()) return "has an empty build part after \"+\"";
  }
  if (size_t dash = core.find('-'); dash != absl::string_view::npos) {
    pre = core.substr(dash + 1);
    core = core.substr(0, dash);
    if (pre.empty()) return "has an empty pre-release part after \"-\"";
  }
  std::vector<absl::string_view> numbers = absl::StrSplit(core, '.');
  if (numbers.size() != 3) return "is not MAJOR.MINOR.PATCH";
  for (absl::string_view n : numbers) {
    if (!IsNumberWithoutLeadingZero(n)) {
      return "needs MAJOR.MINOR.PATCH as numbers without leading zeros";
    }
  }
  if (!pre.empty()) {
    for (absl::string_view id : absl::StrSplit(pre, '.')) {
      if (!IsSemverIdentifier(id)) {
        return "has a pre-release identifier that is not [0-9A-Za-z-]+";
      }
      if (IsNumeric(id) && !IsNumberWithoutLeadingZero(id)) {
        return "has a numeric pre-release identifier with a leading zero";
      }
    }
  }
  if (!build.empty()) {
    for (absl::string_view id : absl::StrSplit(build, '.')) {
      if (!IsSemverIdentifier(id)) return "has a build identifier that is not [0-9A-Za-z-]+";
    }
  }
  return "";
}

}  // namespace

size_t DecodeUtf8(absl::string_view s, uint32_t* cp) {
  if (s.empty()) return 0;
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char c = byte(0);
  size_t len = 0;
  uint32_t min = 0;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if (c >= 0xc2 && c <= 0xdf) {
    len = 2, *cp = c & 0x1f, min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3, *cp = c & 0x0f, min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4, *cp = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() < len) return 0;
  for (size_t i = 1; i < len; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return 0;
    *cp = (*cp << 6) | (byte(i) & 0x3f);
  }
  if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff)) return 0;
  return len;
}

bool IsValidVersion(absl::string_view version) { return SemverProblem(version).empty(); }

absl::Status ValidateVersion(absl::string_view version, absl::string_view what) {
  std::string problem = SemverProblem(version);
  if (problem.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      what, " ", Quote(version), " ", problem,
      " (versions are SemVer 2.0: ", "MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], e.g. 2.0.0)"));
}

absl::Status ValidateIdentifier(absl::string_view id, absl::string_view what) {
  return ValidateNodeId(id, what);
}

absl::Status ValidateText(absl::string_view text, absl::string_view what, size_t max_bytes) {
  if (text.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is ", text.size(), " bytes, more than ", max_bytes));
  }
  absl::string_view rest = text;
  while (!rest.empty()) {
    uint32_t cp = 0;
    size_t used = DecodeUtf8(rest, &cp);
    if (used == 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, " ", Quote(text), " is not UTF-8"));
    }
    if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " ", Quote(text), " holds a control character"));
    }
    rest.remove_prefix(used);
  }
  return absl::OkStatus();
}

absl::Status ValidateReport(const v1::StatusReport& r, bool device) {
  X1368_RETURN_IF_ERROR(ValidateNodeId(r.device_id(), "report's device id"));
  if (!device) return absl::OkStatus();
  X1368_RETURN_IF_ERROR(ValidateIdentifier(r.component(), "report's component"));
  X1368_RETURN_IF_ERROR(ValidateIdentifier(r.hardware_class(), "report's hardware class"));
  X1368_RETURN_IF_ERROR(ValidateVersion(r.version(), "report's version"));
  if (!r.target_version().empty()) {
    X1368_RETURN_IF_ERROR(ValidateVersion(r.target_version(), "report's target version"));
  }
  if (!v1::UpdateState_IsValid(r.state()) || r.state() == v1::UPDATE_STATE_UNSPECIFIED) {
    return absl::InvalidArgumentError(absl::StrCat("report's state ", r.state(), " is unknown"));
  }
  if (!v1::Reason_IsValid(r.reason())) {
    return absl::InvalidArgumentError(absl::StrCat("report's reason ", r.reason(), " is unknown"));
  }
  // Ids and texts are data, logged quoted: only their size is bounded here.
  constexpr size_t kMaxCampaignId = 256, kMaxDetail = 4096;
  if (r.campaign_id().size() > kMaxCampaignId || r.detail().size() > kMaxDetail ||
      r.needs_update().size() > kMaxDetail) {
    return absl::InvalidArgumentError("report's campaign id, detail or request is too long");
  }
  if (r.bytes_total() > 0 && r.bytes_done() > r.bytes_total()) {
    return absl::InvalidArgumentError(
        absl::StrCat("report's progress ", r.bytes_done(), " is past its total ", r.bytes_total()));
  }
  return absl::OkStatus();
}

}  // namespace x1368::core
