#!/usr/bin/env bash
# Issue #17: the resident memory of tracker-root and of a gateway while they serve an image from
# disk, and of tracker-root while it takes the image's upload, beside the budget (32 MiB with a
# 64 MiB image). The real daemons, each its own process, on a Mosquitto this script starts on a
# free loopback port: tracker-root, one tracker-intermediate gw1 under it, four tracker-clients
# under gw1. A random image is signed with `trackerctl author sign` (default chunk size),
# published, and a campaign moves the four devices to it.
#
#   simulations/serve-rss.sh [BUILD_DIR] [--image-mib N] [--json FILE] [--timeout-s S]
#
#   BUILD_DIR     the CMake build directory holding bin/ (default: build/ at the repository root)
#   --image-mib   the image's size in MiB (default: 64)
#   --json FILE   also write the figures to FILE as one JSON object
#   --timeout-s   seconds the campaign may take before the run fails (default: 600)
#
# Figures (kB, from /proc/PID/status): each daemon's VmRSS before the publish; root's upload peak
# (`trackerctl release publish`: POST /v1/releases streams the image to disk), the larger of its
# VmRSS sampled every ~50 ms during the upload and its VmHWM right after it, reset just before
# it through /proc/PID/clear_refs (when the kernel lets it; else since root started), and its
# VmRSS then; and, from the campaign's start until every device runs the new version, each
# one's serving peak, measured the same way from the campaign's start. The upload peak and the
# serving peaks are what the budget is about; ratio = figure / budget (below 1: within it).
# Root's and the gateway's VmRSS includes ~14 MB of shared libraries.
#
# Builds nothing (the binaries must exist; the script says how to build them if not). Exits 0
# when it measured, whatever the figures; non-zero, with its logs kept, when the run failed.
# Every process it starts is stopped on exit. Needs jq or, failing that, python3.
set -euo pipefail

BUDGET_KB=32768
SAMPLE_S=0.05

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$repo/build"
image_mib=64
json_out=""
timeout_s=600
while [ $# -gt 0 ]; do
  case "$1" in
    --image-mib | --json | --timeout-s)
      [ $# -ge 2 ] || {
        echo "serve-rss: $1 needs a value" >&2
        exit 2
      }
      case "$1" in
        --image-mib) image_mib="$2" ;;
        --json) json_out="$2" ;;
        --timeout-s) timeout_s="$2" ;;
      esac
      shift 2
      continue
      ;;
    -h | --help)
      awk 'NR > 1 && !/^#/ { exit } NR > 1' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "serve-rss: unknown option $1 (see --help)" >&2
      exit 2
      ;;
    *) build="$1" ;;
  esac
  shift
done
for v in "$image_mib" "$timeout_s"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || {
    echo "serve-rss: $v is not a positive whole number" >&2
    exit 2
  }
done
# A relative --json is where the caller stands, not where the daemons run.
if [ -n "$json_out" ] && [ "${json_out:0:1}" != / ]; then json_out="$(pwd)/$json_out"; fi

bin="$(cd "$build" 2>/dev/null && pwd)/bin" || bin="$build/bin"
missing=()
for b in tracker-root tracker-intermediate tracker-client trackerctl; do
  [ -x "$bin/$b" ] || missing+=("$b")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "serve-rss: missing in $bin: ${missing[*]}" >&2
  echo "build them first:" >&2
  echo "  cmake --build $build --target tracker-root tracker-intermediate tracker-client" \
    "trackerctl" >&2
  exit 1
fi
if command -v jq >/dev/null; then
  json_tool=jq
elif command -v python3 >/dev/null; then
  json_tool=python3
else
  echo "serve-rss: needs jq or python3 to read trackerctl's JSON (scripts/setup.sh installs jq)" >&2
  exit 1
fi
mosq="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
[ -x "$mosq" ] || {
  echo "serve-rss: needs mosquitto (scripts/setup.sh installs it)" >&2
  exit 1
}

work="$(mktemp -d "${TMPDIR:-/tmp}/x1368-serve-rss-XXXXXX")"
pids=() # every process started here, in start order; stopped in reverse
cleanup() {
  local rc=$? i p alive
  trap '' INT TERM # a second signal must not cut the cleanup short
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  # Bounded: what has not gone after 5 s is killed.
  for _ in $(seq 1 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 1 ] || break
    sleep 0.1
  done
  for p in "${pids[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ $rc -ne 0 ]; then
    echo "serve-rss: FAILED (exit $rc); logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
note() { echo "serve-rss: $*" >&2; }
fail() {
  echo "serve-rss: FAILED: $*" >&2
  exit 1
}

# --- /proc -----------------------------------------------------------------------------------

# Sets st_rss, st_hwm, st_anon and st_file (kB) from /proc/PID/status; no fork, so the sampler
# costs next to nothing. Returns 1 when the process is gone.
read_status() {
  st_rss="" st_hwm="" st_anon="" st_file=""
  [ -r "/proc/$1/status" ] || return 1
  local k v _
  while read -r k v _; do
    case "$k" in
      VmHWM:) st_hwm=$v ;;
      VmRSS:) st_rss=$v ;;
      RssAnon:) st_anon=$v ;;
      RssFile:) st_file=$v ;;
    esac
  done 2>/dev/null <"/proc/$1/status"
  [ -n "$st_rss" ]
}
rss_of() { read_status "$1" && echo "$st_rss"; }
hwm_of() { read_status "$1" && echo "$st_hwm"; }

# Writes "time root_rss root_anon root_file gw_rss gw_anon gw_file" every SAMPLE_S seconds until
# killed (time: $EPOCHREALTIME; a gone process samples as 0).
sampler() {
  local t r ra rf g ga gf
  while :; do
    t=$EPOCHREALTIME
    if read_status "$root_pid"; then r=$st_rss ra=$st_anon rf=$st_file; else r=0 ra=0 rf=0; fi
    if read_status "$gw_pid"; then g=$st_rss ga=$st_anon gf=$st_file; else g=0 ga=0 gf=0; fi
    echo "$t $r $ra $rf $g $ga $gf"
    sleep "$SAMPLE_S"
  done
}

# --- broker on a free loopback port (as scripts/demo.sh) -------------------------------------

port=""
for _ in $(seq 1 30); do
  candidate=$((20000 + RANDOM % 40000))
  (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null && continue # in use
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
  for _ in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
      port=$candidate
      break
    fi
    kill -0 "$mpid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -n "$port" ]; then
    pids+=("$mpid")
    break
  fi
  kill "$mpid" 2>/dev/null || true
  wait "$mpid" 2>/dev/null || true
done
[ -n "$port" ] || fail "could not start mosquitto (see $work/mosquitto.log)"
broker="tcp://127.0.0.1:$port"

# --- keys, certificates, configurations -------------------------------------------------------

ctl="$bin/trackerctl"
devices=(dev-1 dev-2 dev-3 dev-4)
cd "$work"
"$ctl" keygen --out root.key >/dev/null
issue() { # id role scope [components]
  "$ctl" keygen --out "$1.key" >/dev/null
  "$ctl" cert issue --root-key root.key --node "$1" --role "$2" --key "$1.key" \
    --scope "$3" --components "${4:-}" --out "$1.cert" >/dev/null
}
issue gw1 intermediate "dev-*"
issue author-1 author "" fw
for d in "${devices[@]}"; do issue "$d" client ""; done

common() { # id [parent]: the keys every node has (top-level keys first, then tables)
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
{
  common root
  cat <<CONF
[downstream]
broker = "$broker"
[admin]
listen = "127.0.0.1:0"
token_file = "$work/admin.token"
CONF
} >root.toml
{
  common gw1 root
  cat <<CONF
[upstream]
broker = "$broker"
[report]
interval_s = 5
CONF
} >gw1.toml
for d in "${devices[@]}"; do
  {
    common "$d" gw1
    cat <<CONF
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
  } >"$d.toml"
done

# --- the tree ---------------------------------------------------------------------------------

start() { # binary config: the daemon's own pid is $! (bash execs a simple command in the fork);
  # a first start, on a fresh data_dir (--init)
  "$bin/$1" --config "$2" --init 2>>"$work/${2%.toml}.log" &
  pids+=($!)
}
start tracker-root root.toml
root_pid=$!
for _ in $(seq 1 100); do
  [ -f "$work/data/root/admin.port" ] && break
  kill -0 "$root_pid" 2>/dev/null || break
  sleep 0.1
done
[ -f "$work/data/root/admin.port" ] || fail "tracker-root did not start (see $work/root.log)"
admin="http://127.0.0.1:$(cat "$work/data/root/admin.port")"
api=(--admin "$admin" --token-file "$work/admin.token")
start tracker-intermediate gw1.toml
gw_pid=$!
client_pids=()
for d in "${devices[@]}"; do
  start tracker-client "$d.toml"
  client_pids+=($!)
done

# How many devices of fw run VERSION and are done with it (not between offer and trial boot, as
# `trackerctl fleet wait` counts them), and how many ended badly: "updated bad", or nothing when
# root did not answer.
fleet_count() {
  local version="$1" fleet
  fleet="$(timeout 10 "$ctl" fleet status "${api[@]}" --json 2>/dev/null)" || return 0
  if [ "$json_tool" = jq ]; then
    jq -r --arg v "$version" '[.devices[]? | select(.component == "fw")] as $d
      | [$d[] | select(.version == $v and ((.state // "") as $s
          | ["OFFERED", "DOWNLOADING", "DOWNLOADED", "VERIFIED", "INSTALLING", "TRIAL_BOOT"]
          | index($s) | not))] as $up
      | [$d[] | select(.state == "FAILED" or .state == "ROLLED_BACK" or .state == "DECLINED")]
        as $bad
      | "\($up | length) \($bad | length)"' <<<"$fleet" 2>/dev/null || true
  else
    python3 -c '
import json, sys
busy = {"OFFERED", "DOWNLOADING", "DOWNLOADED", "VERIFIED", "INSTALLING", "TRIAL_BOOT"}
d = [x for x in json.loads(sys.stdin.read()).get("devices", []) if x.get("component") == "fw"]
up = sum(1 for x in d if x.get("version") == sys.argv[1] and x.get("state", "") not in busy)
bad = sum(1 for x in d if x.get("state") in ("FAILED", "ROLLED_BACK", "DECLINED"))
print(up, bad)' "$version" <<<"$fleet" 2>/dev/null || true
  fi
}

# Waits (at most SECONDS) until every device runs VERSION; fails on a device that ended badly.
wait_fleet() { # version seconds
  local deadline=$((SECONDS + $2)) up bad
  while [ $SECONDS -lt $deadline ]; do
    read -r up bad <<<"$(fleet_count "$1")" || true
    [ "${up:-0}" -ge ${#devices[@]} ] && return 0
    [ "${bad:-0}" -gt 0 ] && fail "$bad device(s) failed the update to $1 (logs in $work)"
    for p in "$root_pid" "$gw_pid" "${client_pids[@]}"; do
      kill -0 "$p" 2>/dev/null || fail "a daemon (pid $p) exited (logs in $work)"
    done
    sleep 0.2
  done
  fail "not all ${#devices[@]} devices on $1 within $2 s (logs in $work)"
}

wait_fleet 1.0.0 60
root_before=$(rss_of "$root_pid")
gw_before=$(rss_of "$gw_pid")
root_hwm_before=$(hwm_of "$root_pid")

# --- the image, the upload ---------------------------------------------------------------------

head -c $((image_mib << 20)) /dev/urandom >fw-2.0.0.bin
"$ctl" author sign --key author-1.key --cert author-1.cert --image fw-2.0.0.bin --component fw \
  --version 2.0.0 --sequence 2 --hardware board-a --out fw-2.0.0.manifest >/dev/null
sampler >samples.txt 2>/dev/null &
pids+=($!)
# The upload's peak exactly: 5 resets VmHWM to the current VmRSS (Linux 4.0+).
hwm_reset_upload=1
echo 5 2>/dev/null >"/proc/$root_pid/clear_refs" || hwm_reset_upload=0
t_publish=$EPOCHREALTIME
timeout 300 "$ctl" release publish "${api[@]}" --manifest fw-2.0.0.manifest \
  --image fw-2.0.0.bin >/dev/null || fail "release publish failed (see $work/root.log)"
t_published=$EPOCHREALTIME
read_status "$root_pid" || fail "tracker-root exited during the publish"
root_hwm_upload=$st_hwm
root_after=$st_rss
gw_after=$(rss_of "$gw_pid")
upload_s=$(awk -v a="$t_publish" -v b="$t_published" 'BEGIN { printf "%.2f\n", b - a }')

# --- the campaign: root and gw1 serve it from disk ---------------------------------------------

# The peaks from here on, exactly: 5 resets VmHWM to the current VmRSS (Linux 4.0+).
hwm_reset=1
for p in "$root_pid" "$gw_pid"; do echo 5 2>/dev/null >"/proc/$p/clear_refs" || hwm_reset=0; done
t_campaign=$EPOCHREALTIME
timeout 60 "$ctl" campaign start "${api[@]}" --component fw --version 2.0.0 >/dev/null ||
  fail "campaign start failed (see $work/root.log)"
wait_fleet 2.0.0 "$timeout_s"
t_done=$EPOCHREALTIME
root_hwm_serving="" gw_hwm_serving=""
if [ $hwm_reset -eq 1 ]; then
  root_hwm_serving=$(hwm_of "$root_pid")
  gw_hwm_serving=$(hwm_of "$gw_pid")
fi
client_hwm_max=0
for p in "${client_pids[@]}"; do
  h=$(hwm_of "$p") || continue
  [ "$h" -gt "$client_hwm_max" ] && client_hwm_max=$h
done

# The sampled peaks of a window of samples.txt: "root root_anon root_file gw gw_anon gw_file" at
# each one's peak VmRSS.
peaks() { # from to
  awk -v a="$1" -v b="$2" '$1 >= a && $1 <= b {
      if ($2 > r) { r = $2; ra = $3; rf = $4 }
      if ($5 > g) { g = $5; ga = $6; gf = $7 }
      n++
    } END { printf "%d %d %d %d %d %d %d\n", r, ra, rf, g, ga, gf, n }' samples.txt
}
read -r root_up_peak _ _ _ _ _ _ <<<"$(peaks "$t_publish" "$t_campaign")"
read -r root_peak root_peak_anon root_peak_file gw_peak gw_peak_anon gw_peak_file samples \
  <<<"$(peaks "$t_campaign" "$t_done")"
serving_s=$(awk -v a="$t_campaign" -v b="$t_done" 'BEGIN { printf "%.1f\n", b - a }')

# --- report ------------------------------------------------------------------------------------

# Each peak: the larger of the sampled one (which can miss a spike between samples) and the
# VmHWM since the reset (the kernel's RSS counters lag by up to a few hundred kB).
max() { if [ -n "$2" ] && [ "$2" -gt "$1" ]; then echo "$2"; else echo "$1"; fi; }
root_upload=$(max "$root_up_peak" "$root_hwm_upload")
root_serving=$(max "$root_peak" "$root_hwm_serving")
gw_serving=$(max "$gw_peak" "$gw_hwm_serving")

ratio() { awk -v x="$1" -v b="$BUDGET_KB" 'BEGIN { printf "%.2f\n", x / b }'; }
verdict() { if [ "$1" -le "$BUDGET_KB" ]; then echo "within"; else echo "OVER"; fi; }
line() { printf 'serve-rss: %-52s %13s kB%s\n' "$1" "$2" "${3:+  $3}"; }
echo "serve-rss: ${image_mib} MiB image, root -> gw1 -> ${#devices[@]} devices;" \
  "all on 2.0.0 ${serving_s} s after the campaign start; $samples samples while serving"
line "root VmRSS before publish" "$root_before"
line "gateway VmRSS before publish" "$gw_before"
line "root RSS upload peak (POST /v1/releases, ${upload_s} s)" "$root_upload" \
  "$(ratio "$root_upload") of the $BUDGET_KB kB budget: $(verdict "$root_upload")"
line "  root sampled VmRSS peak / VmHWM during the upload" \
  "$root_up_peak / $root_hwm_upload$([ $hwm_reset_upload -eq 1 ] || echo ' (since start)')"
line "root VmRSS after publish" "$root_after"
line "gateway VmRSS after publish" "$gw_after"
for who in root gateway; do
  if [ $who = root ]; then
    set -- "$root_serving" "$root_peak" "$root_hwm_serving" "$root_peak_anon" "$root_peak_file"
  else
    set -- "$gw_serving" "$gw_peak" "$gw_hwm_serving" "$gw_peak_anon" "$gw_peak_file"
  fi
  line "$who RSS serving peak" "$1" "$(ratio "$1") of the $BUDGET_KB kB budget: $(verdict "$1")"
  line "  $who sampled VmRSS peak / VmHWM while serving" "$2 / ${3:--}"
  line "  $who at its sampled peak: anonymous / file-backed" "$4 / $5"
done
[ $hwm_reset -eq 1 ] || note "could not reset VmHWM through /proc/PID/clear_refs: sampled peaks only"
line "largest client VmHWM (not budgeted)" "$client_hwm_max"

if [ -n "$json_out" ]; then
  opt() { if [ -n "$1" ]; then echo "$1"; else echo null; fi; }
  cat >"$json_out" <<JSON
{
  "image_mib": $image_mib,
  "devices": ${#devices[@]},
  "budget_kb": $BUDGET_KB,
  "seconds_to_all_updated": $serving_s,
  "samples": $samples,
  "sample_interval_s": $SAMPLE_S,
  "root_rss_before_publish_kb": $root_before,
  "gateway_rss_before_publish_kb": $gw_before,
  "root_hwm_before_publish_kb": $root_hwm_before,
  "root_hwm_after_publish_kb": $root_hwm_upload,
  "root_hwm_reset_before_upload": $([ $hwm_reset_upload -eq 1 ] && echo true || echo false),
  "root_rss_upload_peak_kb": $root_upload,
  "root_rss_upload_peak_sampled_kb": $root_up_peak,
  "upload_seconds": $upload_s,
  "root_rss_after_publish_kb": $root_after,
  "gateway_rss_after_publish_kb": $gw_after,
  "root_rss_serving_peak_kb": $root_serving,
  "root_rss_serving_peak_sampled_kb": $root_peak,
  "root_hwm_serving_kb": $(opt "$root_hwm_serving"),
  "root_rss_serving_peak_anon_kb": $root_peak_anon,
  "root_rss_serving_peak_file_kb": $root_peak_file,
  "gateway_rss_serving_peak_kb": $gw_serving,
  "gateway_rss_serving_peak_sampled_kb": $gw_peak,
  "gateway_hwm_serving_kb": $(opt "$gw_hwm_serving"),
  "gateway_rss_serving_peak_anon_kb": $gw_peak_anon,
  "gateway_rss_serving_peak_file_kb": $gw_peak_file,
  "client_hwm_max_kb": $client_hwm_max,
  "root_serving_ratio": $(ratio "$root_serving"),
  "gateway_serving_ratio": $(ratio "$gw_serving"),
  "root_upload_ratio": $(ratio "$root_upload"),
  "root_upload_per_image_byte": $(awk -v h="$root_upload" -v b="$root_before" \
    -v m="$image_mib" 'BEGIN { printf "%.3f\n", (h - b) / (m * 1024) }')
}
JSON
fi
