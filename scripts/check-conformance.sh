#!/usr/bin/env bash
# Checks docs/conformance.md against the tests a build directory registered with CTest:
#   - every test the table names (a `backticked` name in the tests column) exists in `ctest -N`;
#   - every row marked `done` names at least one test;
#   - every row has a known status (done, partial, planned, or n/a followed by its reason).
# Usage: scripts/check-conformance.sh [BUILD_DIR] [TABLE]   (defaults: build, docs/conformance.md)
# Exit 0 when the table is consistent, 1 with one line per problem otherwise, 2 on usage errors.
# Needs only bash, awk and ctest (run by scripts/test.sh after the build's tests).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:-build}
table=${2:-docs/conformance.md}
[ -f "$table" ] || { echo "check-conformance: no $table" >&2; exit 2; }
[ -f "$build/CTestTestfile.cmake" ] || {
  echo "check-conformance: $build is not a configured build directory" >&2; exit 2; }

tests=$(mktemp)
trap 'rm -f "$tests"' EXIT
# "  Test #12: Suite.Name  # GetParam() = x" -> "Suite.Name"
(cd "$build" && ctest -N) | sed -n 's/^ *Test *#[0-9]*: //p' | sed 's/  *#.*$//; s/ *$//' >"$tests"
count=$(wc -l <"$tests")
[ "$count" -gt 0 ] || { echo "check-conformance: ctest -N lists no tests in $build" >&2; exit 2; }

awk -F'|' -v table="$table" -v count="$count" '
  FNR == NR { known[$0] = 1; next }   # first file: the test names
  # Table rows: | clause | requirement | status | where | tests | notes |
  /^\|/ {
    if ($2 ~ /^ *-+ *$/ || $2 ~ /^ *clause *$/) next      # separator and header lines
    if (NF < 8) { printf "%s:%d: expected 6 columns\n", table, FNR; bad++; next }
    clause = $2; gsub(/^ +| +$/, "", clause)
    status = $4; gsub(/^ +| +$/, "", status)
    rows++
    if (status == "done" || status == "partial" || status == "planned") {
      statuses[status]++
    } else if (status ~ /^n\/a: ./) {
      statuses["n/a"]++
    } else {
      printf "%s:%d: %s: status \"%s\" is not done, partial, planned or \"n/a: reason\"\n",
             table, FNR, clause, status
      bad++
    }
    cell = $6; named = 0
    while (match(cell, /`[^`]+`/)) {
      name = substr(cell, RSTART + 1, RLENGTH - 2)
      cell = substr(cell, RSTART + RLENGTH)
      named++
      if (!(name in known)) {
        printf "%s:%d: %s names test \"%s\", which ctest -N does not list\n", table, FNR, clause, name
        bad++
      }
    }
    if (status == "done" && named == 0) {
      printf "%s:%d: %s is marked done but names no test\n", table, FNR, clause
      bad++
    }
  }
  END {
    if (rows == 0) { printf "%s: no table rows found\n", table; exit 1 }
    printf "check-conformance: %d rows (done %d, partial %d, planned %d, n/a %d) against %d tests\n",
           rows, statuses["done"], statuses["partial"], statuses["planned"], statuses["n/a"], count
    exit bad > 0 ? 1 : 0
  }
' "$tests" "$table"
