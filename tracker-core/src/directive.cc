#include "x1368/core/directive.h"

#include "x1368/core/reason.h"

namespace x1368::core {

absl::Status CheckRootSigned(const OpenedMessage& directive) {
  if (!directive.signer->is_root) {
    return Reject(v1::OUT_OF_SCOPE, "directives must be root-signed");
  }
  return absl::OkStatus();
}

absl::StatusOr<OpenedMessage> OpenEmbeddedDirective(EnvelopeOpener& opener,
                                                    absl::string_view envelope) {
  X1368_ASSIGN_OR_RETURN(OpenedMessage opened, opener.Open(envelope, {Origin::kEmbedded, {}}));
  if (!opened.body.has_directive()) {
    return Reject(v1::UNKNOWN_TYPE, "embedded envelope holds a non-directive");
  }
  return opened;
}

void ForEachDesiredDirective(
    EnvelopeOpener& opener, const v1::DesiredState& desired, NonDirective non_directive,
    const std::function<void(const std::string& envelope, const OpenedMessage& opened)>&
        on_directive,
    const std::function<void(const absl::Status& status, absl::string_view where)>& on_reject) {
  for (const std::string& envelope : desired.directives()) {
    // Opened here rather than through OpenEmbeddedDirective: an envelope that does not open
    // (UNKNOWN_TYPE included, for a body with no message) and a root-signed non-directive are
    // told apart, as they always were.
    auto opened = opener.Open(envelope, {Origin::kEmbedded, {}});
    if (!opened.ok()) {
      on_reject(opened.status(), "desired.directive");
    } else if (!opened->body.has_directive()) {
      if (non_directive == NonDirective::kReject) {
        on_reject(Reject(v1::UNKNOWN_TYPE, "desired state holds a non-directive"), "desired");
      }
    } else {
      on_directive(envelope, *opened);
    }
  }
}

}  // namespace x1368::core
