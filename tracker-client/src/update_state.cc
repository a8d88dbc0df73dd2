#include "x1368/client/update_state.h"

#include <iterator>

namespace x1368::client {
namespace {

using E = Event;
constexpr State IDLE = v1::IDLE, OFFERED = v1::OFFERED, DOWNLOADING = v1::DOWNLOADING,
                DOWNLOADED = v1::DOWNLOADED, VERIFIED = v1::VERIFIED, INSTALLING = v1::INSTALLING,
                TRIAL_BOOT = v1::TRIAL_BOOT, CONFIRMED = v1::CONFIRMED, DECLINED = v1::DECLINED,
                FAILED = v1::FAILED, ROLLED_BACK = v1::ROLLED_BACK;

// clang-format off
constexpr Transition kTransitions[] = {
  // from          event            to
  {IDLE,         E::kOffer,       OFFERED},
  {OFFERED,      E::kOffer,       OFFERED},      // a newer directive replaces the offer
  {OFFERED,      E::kGo,          DOWNLOADING},
  {OFFERED,      E::kDecline,     DECLINED},
  {OFFERED,      E::kFail,        FAILED},       // deadline passed, storage error
  {DOWNLOADING,  E::kOffer,       OFFERED},      // superseded before anything was installed
  {DOWNLOADING,  E::kDownloaded,  DOWNLOADED},
  {DOWNLOADING,  E::kFail,        FAILED},
  {DOWNLOADED,   E::kOffer,       OFFERED},
  {DOWNLOADED,   E::kVerified,    VERIFIED},
  {DOWNLOADED,   E::kFail,        FAILED},       // digest, size, version or hardware mismatch
  {VERIFIED,     E::kOffer,       OFFERED},
  {VERIFIED,     E::kInstall,     INSTALLING},
  {VERIFIED,     E::kFail,        FAILED},
  {INSTALLING,   E::kInstalled,   TRIAL_BOOT},
  {INSTALLING,   E::kFail,        FAILED},       // the inactive slot failed; the active one runs
  {TRIAL_BOOT,   E::kConfirmed,   CONFIRMED},
  {TRIAL_BOOT,   E::kRollBack,    ROLLED_BACK},
  {CONFIRMED,    E::kOffer,       OFFERED},
  {DECLINED,     E::kOffer,       OFFERED},
  {FAILED,       E::kOffer,       OFFERED},
  {ROLLED_BACK,  E::kOffer,       OFFERED},
};

struct StateAction {
  State state;
  Action action;
};

// What the client does in each state that is not terminal (ActionFor: kNone for the others).
constexpr StateAction kActions[] = {
  // state        action
  {OFFERED,      Action::kAwaitGo},
  {DOWNLOADING,  Action::kDownload},
  {DOWNLOADED,   Action::kVerify},
  {VERIFIED,     Action::kBeginInstall},
  {INSTALLING,   Action::kInstall},
  {TRIAL_BOOT,   Action::kTrialBoot},
};
// clang-format on

}  // namespace

constexpr Event kEvents[] = {E::kOffer,    E::kGo,      E::kDecline,   E::kDownloaded,
                             E::kVerified, E::kInstall, E::kInstalled, E::kConfirmed,
                             E::kRollBack, E::kFail};
static_assert(std::size(kEvents) == static_cast<size_t>(E::kFail) + 1,
              "kEvents must list every Event, and kFail must stay the last one");

std::span<const Transition> TransitionTable() { return kTransitions; }
std::span<const Event> AllEvents() { return kEvents; }

std::optional<State> Apply(State from, Event event) {
  for (const Transition& t : kTransitions) {
    if (t.from == from && t.event == event) return t.to;
  }
  return std::nullopt;
}

bool IsTerminal(State s) {
  return s == IDLE || s == CONFIRMED || s == DECLINED || s == FAILED || s == ROLLED_BACK ||
         s == v1::UPDATE_STATE_UNSPECIFIED;
}

bool IsPreInstall(State s) {
  return s == OFFERED || s == DOWNLOADING || s == DOWNLOADED || s == VERIFIED;
}

Action ActionFor(State s) {
  for (const StateAction& a : kActions) {
    if (a.state == s) return a.action;
  }
  return Action::kNone;
}

std::string StateName(State s) {
  if (v1::UpdateState_IsValid(s)) return v1::UpdateState_Name(s);
  return "UNKNOWN";
}

absl::string_view EventName(Event e) {
  switch (e) {
    case E::kOffer:
      return "offer";
    case E::kGo:
      return "go";
    case E::kDecline:
      return "decline";
    case E::kDownloaded:
      return "downloaded";
    case E::kVerified:
      return "verified";
    case E::kInstall:
      return "install";
    case E::kInstalled:
      return "installed";
    case E::kConfirmed:
      return "confirmed";
    case E::kRollBack:
      return "roll_back";
    case E::kFail:
      return "fail";
  }
  return "?";
}

}  // namespace x1368::client
