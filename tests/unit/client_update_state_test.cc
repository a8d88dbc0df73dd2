// The update state table of docs/architecture.md §8 (x1368/client/update_state.h), checked as data.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <set>
#include <tuple>
#include <utility>
#include <vector>

#include "x1368/client/update_state.h"

namespace x1368::client {
namespace {

// Every real state of the proto enum (all but UPDATE_STATE_UNSPECIFIED).
std::vector<State> AllStates() {
  std::vector<State> out;
  const auto* desc = v1::UpdateState_descriptor();
  for (int i = 0; i < desc->value_count(); ++i) {
    State s = static_cast<State>(desc->value(i)->number());
    if (s != v1::UPDATE_STATE_UNSPECIFIED) out.push_back(s);
  }
  return out;
}

TEST(UpdateStateTest, TableIsNotEmptyAndCoversEveryState) {
  EXPECT_FALSE(TransitionTable().empty());
  EXPECT_EQ(AllStates().size(), 11u);
}

TEST(UpdateStateTest, EveryStateIsReachableFromIdle) {
  std::set<State> reached = {v1::IDLE};
  std::deque<State> todo = {v1::IDLE};
  while (!todo.empty()) {
    State s = todo.front();
    todo.pop_front();
    for (const Transition& t : TransitionTable()) {
      if (t.from == s && reached.insert(t.to).second) todo.push_back(t.to);
    }
  }
  for (State s : AllStates()) {
    EXPECT_TRUE(reached.count(s)) << StateName(s) << " is not reachable from IDLE";
  }
  EXPECT_FALSE(reached.count(v1::UPDATE_STATE_UNSPECIFIED));
}

TEST(UpdateStateTest, EveryNonTerminalStateHasAFailureEdge) {
  for (State s : AllStates()) {
    if (IsTerminal(s)) continue;
    bool has_failure_edge = false;
    for (const Transition& t : TransitionTable()) {
      if (t.from == s && (t.to == v1::FAILED || t.to == v1::ROLLED_BACK)) has_failure_edge = true;
    }
    EXPECT_TRUE(has_failure_edge) << StateName(s) << " cannot fail or roll back";
  }
}

TEST(UpdateStateTest, NoDuplicateRows) {
  std::set<std::pair<State, Event>> keys;
  for (const Transition& t : TransitionTable()) {
    EXPECT_TRUE(keys.insert({t.from, t.event}).second)
        << "duplicate row " << StateName(t.from) << " + " << EventName(t.event);
  }
}

TEST(UpdateStateTest, EveryRowChangesStateExceptAReplacingOffer) {
  for (const Transition& t : TransitionTable()) {
    if (t.from == v1::OFFERED && t.event == Event::kOffer) {
      EXPECT_EQ(t.to, v1::OFFERED);
      continue;
    }
    EXPECT_NE(t.from, t.to) << StateName(t.from) << " + " << EventName(t.event) << " does not move";
  }
}

TEST(UpdateStateTest, RowsOnlyUseRealStates) {
  for (const Transition& t : TransitionTable()) {
    EXPECT_NE(t.from, v1::UPDATE_STATE_UNSPECIFIED);
    EXPECT_NE(t.to, v1::UPDATE_STATE_UNSPECIFIED);
    EXPECT_TRUE(v1::UpdateState_IsValid(t.from));
    EXPECT_TRUE(v1::UpdateState_IsValid(t.to));
  }
}

TEST(UpdateStateTest, TheHappyPathIsLegal) {
  State s = v1::IDLE;
  const std::pair<Event, State> path[] = {
      {Event::kOffer, v1::OFFERED},         {Event::kGo, v1::DOWNLOADING},
      {Event::kDownloaded, v1::DOWNLOADED}, {Event::kVerified, v1::VERIFIED},
      {Event::kInstall, v1::INSTALLING},    {Event::kInstalled, v1::TRIAL_BOOT},
      {Event::kConfirmed, v1::CONFIRMED},
  };
  for (const auto& [event, expected] : path) {
    auto next = Apply(s, event);
    ASSERT_TRUE(next.has_value()) << StateName(s) << " + " << EventName(event);
    EXPECT_EQ(*next, expected);
    s = *next;
  }
}

// The specification of the machine, written out here independently of the table: every legal
// move, and nothing else. Apply() must allow exactly these for every state and every event, so a
// row added to, dropped from or changed in the table fails here until the specification agrees.
TEST(UpdateStateTest, ApplyAllowsExactlyTheSpecifiedMoves) {
  using v1::CONFIRMED, v1::DECLINED, v1::DOWNLOADED, v1::DOWNLOADING, v1::FAILED, v1::IDLE,
      v1::INSTALLING, v1::OFFERED, v1::ROLLED_BACK, v1::TRIAL_BOOT, v1::VERIFIED;
  const std::set<std::tuple<State, Event, State>> spec = {
      // Offers: a newer directive may replace one only before anything is installed.
      {IDLE, Event::kOffer, OFFERED},
      {OFFERED, Event::kOffer, OFFERED},
      {DOWNLOADING, Event::kOffer, OFFERED},
      {DOWNLOADED, Event::kOffer, OFFERED},
      {VERIFIED, Event::kOffer, OFFERED},
      {CONFIRMED, Event::kOffer, OFFERED},
      {DECLINED, Event::kOffer, OFFERED},
      {FAILED, Event::kOffer, OFFERED},
      {ROLLED_BACK, Event::kOffer, OFFERED},
      // The way forward.
      {OFFERED, Event::kGo, DOWNLOADING},
      {OFFERED, Event::kDecline, DECLINED},
      {DOWNLOADING, Event::kDownloaded, DOWNLOADED},
      {DOWNLOADED, Event::kVerified, VERIFIED},
      {VERIFIED, Event::kInstall, INSTALLING},
      {INSTALLING, Event::kInstalled, TRIAL_BOOT},
      {TRIAL_BOOT, Event::kConfirmed, CONFIRMED},
      // Failures: before the trial the running image is untouched; in the trial, roll back.
      {OFFERED, Event::kFail, FAILED},
      {DOWNLOADING, Event::kFail, FAILED},
      {DOWNLOADED, Event::kFail, FAILED},
      {VERIFIED, Event::kFail, FAILED},
      {INSTALLING, Event::kFail, FAILED},
      {TRIAL_BOOT, Event::kRollBack, ROLLED_BACK},
  };
  size_t allowed = 0;
  for (State s : AllStates()) {
    for (Event e : AllEvents()) {
      std::optional<State> to = Apply(s, e);
      if (!to) continue;
      ++allowed;
      EXPECT_TRUE(spec.count({s, e, *to})) << StateName(s) << " + " << EventName(e) << " -> "
                                           << StateName(*to) << " is not in the specification";
    }
  }
  for (const auto& [from, event, to] : spec) {
    EXPECT_EQ(Apply(from, event), to) << StateName(from) << " + " << EventName(event);
  }
  EXPECT_EQ(allowed, spec.size());
}

TEST(UpdateStateTest, EveryEventHasANameAndIsUsedByTheTable) {
  std::set<absl::string_view> names;
  for (Event e : AllEvents()) {
    EXPECT_NE(EventName(e), "?");
    EXPECT_TRUE(names.insert(EventName(e)).second) << EventName(e) << " named twice";
    bool used = false;
    for (const Transition& t : TransitionTable()) used |= t.event == e;
    EXPECT_TRUE(used) << EventName(e) << " appears in no row of the table";
  }
}

TEST(UpdateStateTest, IllegalMovesReturnNullopt) {
  EXPECT_EQ(Apply(v1::IDLE, Event::kConfirmed), std::nullopt);
  EXPECT_EQ(Apply(v1::IDLE, Event::kGo), std::nullopt);
  EXPECT_EQ(Apply(v1::OFFERED, Event::kInstall), std::nullopt);
  EXPECT_EQ(Apply(v1::DOWNLOADING, Event::kConfirmed), std::nullopt);
  EXPECT_EQ(Apply(v1::CONFIRMED, Event::kFail), std::nullopt);
  // Once installation began, a newer offer may not interrupt it.
  EXPECT_EQ(Apply(v1::INSTALLING, Event::kOffer), std::nullopt);
  EXPECT_EQ(Apply(v1::TRIAL_BOOT, Event::kOffer), std::nullopt);
  EXPECT_EQ(Apply(v1::UPDATE_STATE_UNSPECIFIED, Event::kOffer), std::nullopt);
}

TEST(UpdateStateTest, EveryNonTerminalStateHasAnActionAndTerminalOnesNone) {
  std::set<Action> used;
  for (State s : AllStates()) {
    if (IsTerminal(s)) {
      EXPECT_EQ(ActionFor(s), Action::kNone) << StateName(s);
    } else {
      EXPECT_NE(ActionFor(s), Action::kNone) << StateName(s) << " has no action";
      // One action per state: two states doing the same thing would be one state.
      EXPECT_TRUE(used.insert(ActionFor(s)).second) << StateName(s) << " shares its action";
    }
  }
  EXPECT_EQ(ActionFor(v1::OFFERED), Action::kAwaitGo);
  EXPECT_EQ(ActionFor(v1::DOWNLOADING), Action::kDownload);
  EXPECT_EQ(ActionFor(v1::DOWNLOADED), Action::kVerify);
  EXPECT_EQ(ActionFor(v1::VERIFIED), Action::kBeginInstall);
  EXPECT_EQ(ActionFor(v1::INSTALLING), Action::kInstall);
  EXPECT_EQ(ActionFor(v1::TRIAL_BOOT), Action::kTrialBoot);
}

TEST(UpdateStateTest, TerminalAndPreInstallStates) {
  for (State s : {v1::IDLE, v1::CONFIRMED, v1::DECLINED, v1::FAILED, v1::ROLLED_BACK}) {
    EXPECT_TRUE(IsTerminal(s)) << StateName(s);
    EXPECT_FALSE(IsPreInstall(s)) << StateName(s);
  }
  for (State s : {v1::OFFERED, v1::DOWNLOADING, v1::DOWNLOADED, v1::VERIFIED}) {
    EXPECT_FALSE(IsTerminal(s)) << StateName(s);
    EXPECT_TRUE(IsPreInstall(s)) << StateName(s);
    // A newer directive may replace the current one before anything is installed.
    EXPECT_EQ(Apply(s, Event::kOffer), v1::OFFERED) << StateName(s);
  }
  for (State s : {v1::INSTALLING, v1::TRIAL_BOOT}) {
    EXPECT_FALSE(IsTerminal(s)) << StateName(s);
    EXPECT_FALSE(IsPreInstall(s)) << StateName(s);
  }
  // Every terminal state accepts the next offer.
  for (State s : AllStates()) {
    if (IsTerminal(s)) {
      EXPECT_EQ(Apply(s, Event::kOffer), v1::OFFERED) << StateName(s);
    }
  }
}

TEST(UpdateStateTest, StateNames) {
  for (State s : AllStates()) {
    EXPECT_EQ(StateName(s), v1::UpdateState_Name(s));
    EXPECT_NE(StateName(s), "UNKNOWN");
  }
  EXPECT_EQ(StateName(v1::IDLE), "IDLE");
  EXPECT_EQ(StateName(v1::TRIAL_BOOT), "TRIAL_BOOT");
  EXPECT_EQ(StateName(v1::ROLLED_BACK), "ROLLED_BACK");
  EXPECT_EQ(StateName(static_cast<State>(77)), "UNKNOWN");
}

}  // namespace
}  // namespace x1368::client
