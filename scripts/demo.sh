#!/usr/bin/env bash
# The main job: a full signed firmware update through root -> intermediate -> cascaded
# intermediate -> six clients, each a separate process, on a Mosquitto this script starts on a
# free loopback port. Ends with "demo: N/N devices updated to <version>" and exit 0, or a
# non-zero exit naming what failed. Every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

scripts/setup.sh
build=${BUILD_DIR:-build}
if [ ! -f "$build/build.ninja" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
echo "demo: building (first build takes a few minutes) ..."
cmake --build "$build" --target tracker-root tracker-intermediate tracker-client trackerctl -- -j"$(nproc)" >/dev/null
bin="$top/$build/bin"

work=$(mktemp -d /tmp/x1368-demo-XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    echo "demo: FAILED (exit $rc); logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "demo: FAILED: $*" >&2; exit 1; }

# --- broker on a free loopback port -------------------------------------------------------------
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
port=""
for attempt in $(seq 1 30); do
  candidate=$((20000 + RANDOM % 40000))
  (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null && continue   # in use
  cat >"$work/mosquitto.conf" <<CONF
listener $candidate 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay true
user root
log_dest file $work/mosquitto.log
CONF
  "$mosq" -c "$work/mosquitto.conf" 2>>"$work/mosquitto.log" &
  mpid=$!
  for i in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then port=$candidate; break; fi
    kill -0 "$mpid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -n "$port" ]; then pids+=("$mpid"); break; fi
  kill "$mpid" 2>/dev/null || true
done
[ -n "$port" ] || fail "could not start mosquitto (see $work/mosquitto.log)"
broker="tcp://127.0.0.1:$port"
echo "demo: mosquitto on $broker"

# --- keys and certificates: root, two intermediates, an author, six devices ------------------------
ctl="$bin/trackerctl"
cd "$work"
"$ctl" keygen --out root.key >/dev/null
issue() {  # id role scope [components]
  "$ctl" keygen --out "$1.key" >/dev/null
  "$ctl" cert issue --root-key root.key --node "$1" --role "$2" --key "$1.key" \
    --scope "$3" --components "${4:-}" --out "$1.cert" >/dev/null
}
issue gw1 intermediate "gw2,dev-*"      # gw1 covers gw2's subtree too
issue gw2 intermediate "dev-b*"
issue author-1 author "" fw
devices_a=(dev-a1 dev-a2 dev-a3)
devices_b=(dev-b1 dev-b2 dev-b3)
for d in "${devices_a[@]}" "${devices_b[@]}"; do issue "$d" client ""; done
echo "demo: keys and root-signed certificates for root, gw1, gw2, author-1 and 6 devices"

# --- configurations ------------------------------------------------------------------------------
common() {  # id [parent]: the keys every node has (top-level keys first, then tables)
  cat <<CONF
node_id = "$1"
key = "$work/$1.key"
data_dir = "$work/data/$1"
CONF
  if [ -n "${2:-}" ]; then
    printf 'cert = "%s"\nparent_id = "%s"\n' "$work/$1.cert" "$2"
  fi
  cat <<CONF
[root]
id = "root"
public_key = "$work/root.pub"
CONF
}
{ common root; cat <<CONF
[downstream]
broker = "$broker"
[admin]
listen = "127.0.0.1:0"
token_file = "$work/admin.token"
CONF
} >root.toml
for gw in gw1 gw2; do
  parent=root; [ "$gw" = gw2 ] && parent=gw1
  { common "$gw" "$parent"; cat <<CONF
[upstream]
broker = "$broker"
[report]
interval_s = 5
CONF
  } >"$gw.toml"
done
client_conf() {  # id parent
  { common "$1" "$2"; cat <<CONF
[upstream]
broker = "$broker"
[consumer]
component = "fw"
hardware_class = "board-a"
initial_version = "1.0.0"
initial_sequence = 1
[update]
report_interval_s = 5
CONF
  } >"$1.toml"
}
for d in "${devices_a[@]}"; do client_conf "$d" gw1; done
for d in "${devices_b[@]}"; do client_conf "$d" gw2; done

# --- start the tree --------------------------------------------------------------------------------
start() {  # binary config: a first start, on a fresh data_dir (--init)
  "$bin/$1" --config "$2" --init 2>>"$work/${2%.toml}.log" &
  pids+=($!)
}
start tracker-root root.toml
for i in $(seq 1 100); do [ -f "$work/data/root/admin.port" ] && break; sleep 0.1; done
[ -f "$work/data/root/admin.port" ] || fail "tracker-root did not start (see $work/root.log)"
admin="http://127.0.0.1:$(cat "$work/data/root/admin.port")"
start tracker-intermediate gw1.toml
start tracker-intermediate gw2.toml
for d in "${devices_a[@]}" "${devices_b[@]}"; do start tracker-client "$d.toml"; done
echo "demo: started tracker-root, tracker-intermediate gw1 (under root), gw2 (under gw1), 6 tracker-clients"

api=(--admin "$admin" --token-file "$work/admin.token")
"$ctl" fleet wait "${api[@]}" --component fw --version 1.0.0 --count 6 --timeout-s 60 >/dev/null \
  || fail "the six devices did not all report to root (logs in $work)"
echo "demo: all 6 devices report version 1.0.0 to root"

# --- the author builds and signs 2.0.0; root publishes it; a campaign moves the fleet ------------
head -c 1048576 /dev/urandom >fw-2.0.0.bin
"$ctl" author sign --key author-1.key --cert author-1.cert --image fw-2.0.0.bin --component fw \
  --version 2.0.0 --sequence 2 --hardware board-a --out fw-2.0.0.manifest
"$ctl" release publish "${api[@]}" --manifest fw-2.0.0.manifest --image fw-2.0.0.bin
"$ctl" campaign start "${api[@]}" --component fw --version 2.0.0
"$ctl" fleet wait "${api[@]}" --component fw --version 2.0.0 --count 6 --timeout-s 120 \
  || fail "not every device reached 2.0.0 (logs in $work)"
"$ctl" fleet status "${api[@]}"
echo "demo: 6/6 devices updated to 2.0.0"
