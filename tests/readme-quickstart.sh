#!/usr/bin/env bash
# tests/readme-quickstart.sh BIN_DIR README: runs the README's quick-start exactly as written, so
# the README cannot drift from what the programs do.
#
# Every fenced block opened with "```sh quickstart" is taken, in order, into one bash script, run
# with `set -euo pipefail` in a fresh temporary directory with BIN_DIR first on PATH (the block
# that builds the project is an ordinary "```sh" block and is not run: the test runs on the build
# under test). The only change made to the commands is the ports: the README's fixed ports
# (8883 MQTT over TLS, 8368 root's admin API, 9101 the gateway's metrics) are replaced by free
# ones, so that the test can run beside others. The script starts real daemons and a real
# Mosquitto in the background; whatever is still running when it ends is stopped. On failure the
# daemons' logs are printed.
set -euo pipefail
bin=$(cd "$1" && pwd)
readme=$2

work=$(mktemp -d /tmp/x1368-quickstart-XXXXXX)
script="$work/quickstart.sh"
lab="$work/lab"
mkdir -p "$lab"

awk '/^```sh quickstart *$/ { inside = 1; next }
     /^```/ { if (inside) print ""; inside = 0; next }
     inside { print }' "$readme" >"$script.raw"
blocks=$(grep -c '^```sh quickstart *$' "$readme" || true)
if [ "$blocks" -lt 5 ]; then
  echo "readme-quickstart: found $blocks quickstart blocks in $readme, expected the whole tree" >&2
  exit 1
fi

# A free loopback port: nothing answers on it now. The daemons refuse a port in use, so a port
# taken between here and their start fails the test loudly rather than silently.
taken=" "
free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 40000))
    case "$taken" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      taken+="$p "
      echo "$p"
      return
    fi
  done
  echo "readme-quickstart: no free port" >&2
  exit 1
}
mqtt=$(free_port) admin=$(free_port) metrics=$(free_port)
sed -e "s/\b8883\b/$mqtt/g" -e "s/\b8368\b/$admin/g" -e "s/\b9101\b/$metrics/g" \
  "$script.raw" >"$script"
for port in 8883 8368 9101; do
  grep -q "\b$port\b" "$script.raw" || {
    echo "readme-quickstart: the quick-start no longer uses port $port; update this runner" >&2
    exit 1
  }
done

# Its own process group, so that everything it started in the background is stopped at the end
# even when it fails half-way.
cd "$lab"
# trackerctl's contexts and any admin URL or token of the caller's stay out of it.
mkdir -p "$work/config"
unset X1368_ADMIN_URL X1368_ADMIN_TOKEN X1368_CONFIG
PATH="$bin:$PATH" XDG_CONFIG_HOME="$work/config" HOME="$work" setsid bash -euo pipefail "$script" >"$work/out.log" 2>&1 &
runner=$!
rc=0
wait "$runner" || rc=$?
kill -TERM -- "-$runner" 2>/dev/null || true
for _ in $(seq 1 50); do
  kill -0 -- "-$runner" 2>/dev/null || break
  sleep 0.1
done
kill -KILL -- "-$runner" 2>/dev/null || true

cat "$work/out.log"
if [ $rc -ne 0 ]; then
  echo "readme-quickstart: the quick-start failed (exit $rc); its logs:" >&2
  for log in "$lab"/*.log; do
    [ -f "$log" ] || continue
    echo "--- $log (last 30 lines)" >&2
    tail -n 30 "$log" >&2
  done
  echo "readme-quickstart: kept $work" >&2
  exit 1
fi
grep -q "quickstart: 2/2 devices run fw 2.0.0" "$work/out.log" || {
  echo "readme-quickstart: the quick-start ran but did not end with both devices updated" >&2
  exit 1
}
rm -rf "$work"
