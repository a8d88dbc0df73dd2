#!/usr/bin/env bash
# Runs every test: installs what is missing, then
#   1. the normal build (-Wall -Wextra -Werror) and all its tests: unit, broker-backed
#      integration (each fixture starts its own Mosquitto on a free loopback port, plain and with
#      TLS client certificates + ACL), and the fuzz targets' seed corpora; then the conformance
#      table (docs/conformance.md) is checked against that build's tests
#      (scripts/check-conformance.sh);
#   2. the same tests under AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. every libFuzzer target (clang) for a bounded number of runs.
# Options: --quick (step 1 only), --no-fuzz, --no-asan.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0; fuzz=1; asan=1
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --no-fuzz) fuzz=0 ;;
    --no-asan) asan=0 ;;
    *) echo "usage: scripts/test.sh [--quick] [--no-fuzz] [--no-asan]" >&2; exit 2 ;;
  esac
done

scripts/setup.sh
jobs=$(nproc)
start=$(date +%s)
stamp() { echo "test.sh: $* ($(( $(date +%s) - start ))s)"; }

configure() {  # dir, extra cmake args...
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
  fi
}

run_ctest() {  # dir
  (cd "$1" && ctest --output-on-failure -j"$jobs" --timeout 300)
}

stamp "step 1: build (gcc, -Werror)"
configure build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -- -j"$jobs"
stamp "step 1: tests"
run_ctest build
stamp "step 1: conformance table names only existing tests"
scripts/check-conformance.sh build
[ $quick = 1 ] && { stamp "done (quick)"; exit 0; }

if [ $asan = 1 ]; then
  stamp "step 2: build with ASan + UBSan"
  configure build-asan -DCMAKE_BUILD_TYPE=Debug -DX1368_SANITIZE=ON
  cmake --build build-asan -- -j"$jobs"
  stamp "step 2: tests under ASan + UBSan"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_ctest build-asan
fi

if [ $fuzz = 1 ]; then
  stamp "step 3: build libFuzzer targets (clang)"
  configure build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DX1368_FUZZ=ON -DX1368_TESTS=OFF \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
  cmake --build build-fuzz --target fuzzers -- -j"$jobs"
  for f in build-fuzz/fuzz/*_fuzzer; do
    name=$(basename "$f")
    corpus=tests/fuzz/corpus/${name%_fuzzer}
    work=$(mktemp -d)
    stamp "step 3: $name"
    "$f" -runs="${FUZZ_RUNS:-50000}" -max_total_time="${FUZZ_SECONDS:-30}" -rss_limit_mb=2048 \
      -print_final_stats=0 "$work" "$corpus" 2>"$work.log" \
      || { tail -n 40 "$work.log"; echo "test.sh: $name found a crash" >&2; exit 1; }
    rm -rf "$work" "$work.log"
  done
fi
stamp "all tests passed"
