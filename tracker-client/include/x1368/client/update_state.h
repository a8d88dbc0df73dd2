// The client / consumer update state machine of docs/architecture.md §8, as data.
//
//   IDLE -> OFFERED -> DOWNLOADING -> DOWNLOADED -> VERIFIED -> INSTALLING -> TRIAL_BOOT ->
//   CONFIRMED outcomes: DECLINED, FAILED(reason), ROLLED_BACK(reason)
//
// kTransitions (update_state.cc) is the one table of legal moves; Apply() is the one function
// that moves; kActions beside it names what the client does in each state (ActionFor), both on
// entering it and on finding it persisted after a restart: every action is idempotent, so the
// same table drives the update and its recovery. Tests check the table itself: every state
// reachable, every non-terminal state with a failure edge, no duplicate rows. Thread-safe: constant
// data.
#ifndef X1368_CLIENT_UPDATE_STATE_H_
#define X1368_CLIENT_UPDATE_STATE_H_

#include <optional>
#include <span>
#include <string>

#include "absl/strings/string_view.h"
#include "x1368/v1/messages.pb.h"

namespace x1368::client {

using State = v1::UpdateState;

enum class Event {
  kOffer,       // a verified, applicable directive arrived
  kGo,          // the parent's go for the offered directive
  kDecline,     // the consumer declined (X.1368 §11.1 a.vi)
  kDownloaded,  // the image is complete in the inactive slot
  kVerified,    // digest, size, version and hardware class check out
  kInstall,     // installation into the inactive slot begins
  kInstalled,   // the slot is installed; a trial boot follows
  kConfirmed,   // the trial image runs and is made permanent
  kRollBack,    // the trial image failed; the previous slot runs again
  kFail,        // any step failed; the running firmware is untouched
};

struct Transition {
  State from;
  Event event;
  State to;
};

// What the client does in a state, on entering it and after a restart.
enum class Action {
  kNone,          // terminal or idle: wait for the next directive
  kAwaitGo,       // OFFERED: wait for the parent's go, then ask the consumer to accept
  kDownload,      // DOWNLOADING: fetch the image, continuing after the bytes already in the slot
  kVerify,        // DOWNLOADED: verify (again: the slot may have been cut short)
  kBeginInstall,  // VERIFIED: move on to INSTALLING
  kInstall,       // INSTALLING: (re)install; installation is idempotent
  kTrialBoot,     // TRIAL_BOOT: boot the trial once, then confirm if it runs, else roll back
};

std::span<const Transition> TransitionTable();
// Every event, once (tests iterate it instead of keeping their own list).
std::span<const Event> AllEvents();

// The state after `event` in `from`, or nullopt when the move is illegal.
std::optional<State> Apply(State from, Event event);

bool IsTerminal(State state);  // CONFIRMED, DECLINED, FAILED, ROLLED_BACK, and IDLE
// States from which a newer directive may replace the current one (nothing installed yet).
bool IsPreInstall(State state);
Action ActionFor(State state);

std::string StateName(State state);
absl::string_view EventName(Event event);

}  // namespace x1368::client

#endif  // X1368_CLIENT_UPDATE_STATE_H_
