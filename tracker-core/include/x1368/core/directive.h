// Root-signed update directives as the modules below the root receive them (docs/architecture.md
// §7): a directive is sealed once by the root and travels unchanged, either on its own (forwarded
// by each gateway) or embedded in a parent's retained DesiredState, and is re-read from disk or
// from a queue later. Whatever the path, only a root-signed directive that passes every envelope
// rule is acted on; a parent may forward a directive, never author one. What each module then
// checks (selector and deadline on a device, certificate scope on a gateway) stays with it.
// Thread-safe as far as the EnvelopeOpener passed in is: it belongs to one event loop.
#ifndef X1368_CORE_DIRECTIVE_H_
#define X1368_CORE_DIRECTIVE_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "x1368/core/envelope.h"
#include "x1368/v1/messages.pb.h"

namespace x1368::core {

// OUT_OF_SCOPE unless `directive` was signed by the root. Needed for a directive that arrived
// on its own, opened as from the parent (which accepts the parent's signature too); an embedded
// one is checked by the opener already.
absl::Status CheckRootSigned(const OpenedMessage& directive);

// Opens an envelope carried inside something else (a DesiredState, a stored or a queued
// directive) under Origin::kEmbedded: signature, root signer, recipient and expiry, but no
// sequence number (the carrier's was checked). UNKNOWN_TYPE when it holds no directive.
absl::StatusOr<OpenedMessage> OpenEmbeddedDirective(EnvelopeOpener& opener,
                                                    absl::string_view envelope);

// What ForEachDesiredDirective does with an embedded envelope that opens, root-signed, but holds
// something other than a directive: count it as a rejection, or skip it silently.
enum class NonDirective { kReject, kIgnore };

// Unwraps a parent's DesiredState: `on_directive(envelope, opened)` for each embedded envelope
// that opens as a directive, in order; `on_reject(status, where)` for each that does not open
// (where "desired.directive") and, with NonDirective::kReject, for each non-directive
// (UNKNOWN_TYPE, where "desired"). The grants are the caller's: only a device acts on them.
void ForEachDesiredDirective(
    EnvelopeOpener& opener, const v1::DesiredState& desired, NonDirective non_directive,
    const std::function<void(const std::string& envelope, const OpenedMessage& opened)>&
        on_directive,
    const std::function<void(const absl::Status& status, absl::string_view where)>& on_reject);

}  // namespace x1368::core

#endif  // X1368_CORE_DIRECTIVE_H_
