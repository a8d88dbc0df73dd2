#include "x1368/core/reason.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace x1368::core {
namespace {

constexpr absl::string_view kReasonPayload = "type.x1368/reason";

absl::StatusCode CodeFor(Reason reason) {
  switch (reason) {
    case v1::MALFORMED:
    case v1::OVERSIZE:
    case v1::UNKNOWN_TYPE:
    case v1::BAD_TOPIC:
    case v1::MANIFEST_MALFORMED:
      return absl::StatusCode::kInvalidArgument;
    case v1::UNKNOWN_SIGNER:
    case v1::BAD_SIGNATURE:
    case v1::BAD_CERT:
    case v1::OUT_OF_SCOPE:
    case v1::SENDER_MISMATCH:
    case v1::MANIFEST_BAD_SIGNATURE:
    case v1::AUTHOR_NOT_TRUSTED:
      return absl::StatusCode::kPermissionDenied;
    case v1::REPLAY:
    case v1::DUPLICATE:
    case v1::RELEASE_VERSION_EXISTS:
    case v1::RELEASE_SEQUENCE_EXISTS:
      return absl::StatusCode::kAlreadyExists;
    case v1::EXPIRED:
    case v1::DEADLINE_PASSED:
      return absl::StatusCode::kDeadlineExceeded;
    case v1::UNSUPPORTED_ALG:
      return absl::StatusCode::kUnimplemented;
    case v1::IMAGE_UNAVAILABLE:
      return absl::StatusCode::kNotFound;
    case v1::STORAGE_ERROR:
      return absl::StatusCode::kDataLoss;
    case v1::STORAGE_FULL:
      return absl::StatusCode::kResourceExhausted;
    default:
      return absl::StatusCode::kFailedPrecondition;
  }
}

}  // namespace

absl::Status Reject(Reason reason, absl::string_view message) {
  absl::Status status(CodeFor(reason), absl::StrCat(ReasonName(reason), ": ", message));
  status.SetPayload(kReasonPayload, absl::Cord(absl::StrCat(static_cast<int>(reason))));
  return status;
}

Reason ReasonOf(const absl::Status& status) {
  if (status.ok()) return v1::REASON_UNSPECIFIED;
  auto payload = status.GetPayload(kReasonPayload);
  int value = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &value) || !v1::Reason_IsValid(value)) {
    return v1::REASON_UNSPECIFIED;
  }
  return static_cast<Reason>(value);
}

std::string ReasonName(Reason reason) {
  if (v1::Reason_IsValid(reason)) return v1::Reason_Name(reason);
  return absl::StrCat("REASON_", static_cast<int>(reason));
}

absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  absl::Status out(status.code(), absl::StrCat("while ", context, ": ", status.message()));
  status.ForEachPayload(
      [&out](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

}  // namespace x1368::core
