#!/usr/bin/env bash
# Runs the benchmarks and the simulator scenarios of issue #12 and prints ONE markdown table:
# every figure beside the physical limit measured in the same run, and their ratio.
#
#   simulations/run-benchmarks.sh [BUILD_DIR] [--quick] [--write]
#
#   BUILD_DIR  the CMake build directory holding bin/ (default: build/ at the repository root)
#   --quick    1,000 / 500-device scenarios instead of 10,000 / 2,000, no in-process 100k run,
#              no Mosquitto fleet benchmark, an 8 MiB image instead of 32 MiB through the
#              gateway, a 16 MiB image instead of 64 MiB for the daemons' RSS: about a minute
#              instead of much longer
#   --write    also write the table to simulations/RESULTS.md
#
# Environment:
#   SIM_DEVICE_LINKS  the simulator's --device-links for the hier/flat scenarios (default: mqtt)
#   SIM_TIMEOUT       seconds each scenario may take before the simulator gives up (default: 1200)
#   BENCH_OUT_DIR     keep the raw JSON outputs there (default: a temporary directory, removed)
#
# It builds nothing: the binaries must exist (the script says how to build them if not). The
# ratio column is always figure speed / limit speed: 1 means the limit, below 1 slower than it.
# A run that fails becomes a "failed: <reason>" row; the table is printed whatever happens.
# Needs jq (scripts/setup.sh installs it) or, failing that, python3 to read the JSON.
set -euo pipefail

DEVICE_LINKS="${SIM_DEVICE_LINKS:-mqtt}"
SIM_TIMEOUT="${SIM_TIMEOUT:-1200}"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$repo/build"
quick=0
write=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --write) write=1 ;;
    -h | --help)
      sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*)
      echo "run-benchmarks: unknown option $arg (see --help)" >&2
      exit 2
      ;;
    *) build="$arg" ;;
  esac
done

bin="$build/bin"
missing=()
for b in core_bench in_process_fleet_bench data_path_bench tracker-sim tracker-root \
  tracker-intermediate tracker-client trackerctl; do
  [ -x "$bin/$b" ] || missing+=("$b")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "run-benchmarks: missing in $bin: ${missing[*]}" >&2
  echo "build them first:" >&2
  echo "  cmake --build $build --target core_bench in_process_fleet_bench data_path_bench" \
    "tracker-sim tracker-root tracker-intermediate tracker-client trackerctl" >&2
  exit 1
fi

if command -v jq >/dev/null; then
  json_tool=jq
elif command -v python3 >/dev/null; then
  json_tool=python3
else
  echo "run-benchmarks: needs jq or python3 to read the benchmarks' JSON" >&2
  echo "  (scripts/setup.sh installs jq)" >&2
  exit 1
fi

if [ -n "${BENCH_OUT_DIR:-}" ]; then
  out="$BENCH_OUT_DIR"
  mkdir -p "$out"
else
  out="$(mktemp -d "${TMPDIR:-/tmp}/x1368-bench-XXXXXX")"
  trap 'rm -rf "$out"' EXIT
fi

note() { echo "run-benchmarks: $*" >&2; }

# --- reading JSON ---------------------------------------------------------------------------

# A top-level key of a JSON object file, printed as is; nothing if absent or null.
json_key() {
  local file="$1" key="$2"
  [ -s "$file" ] || return 0
  if [ "$json_tool" = jq ]; then
    jq -r --arg k "$key" '.[$k] // empty' "$file" 2>/dev/null || true
  else
    python3 - "$file" "$key" <<'EOF' 2>/dev/null || true
import json, sys
v = json.load(open(sys.argv[1])).get(sys.argv[2])
if v is not None:
    print(str(v).lower() if isinstance(v, bool) else v)
EOF
  fi
}

# A field of the first Google Benchmark entry whose name starts with PREFIX; nothing if absent.
bench_field() {
  local file="$1" prefix="$2" field="$3"
  [ -s "$file" ] || return 0
  if [ "$json_tool" = jq ]; then
    jq -r --arg p "$prefix" --arg f "$field" \
      '[.benchmarks[]? | select(.name | startswith($p))][0][$f] // empty' "$file" \
      2>/dev/null || true
  else
    python3 - "$file" "$prefix" "$field" <<'EOF' 2>/dev/null || true
import json, sys
for b in json.load(open(sys.argv[1])).get("benchmarks", []):
    if b.get("name", "").startswith(sys.argv[2]):
        v = b.get(sys.argv[3])
        if v is not None:
            print(str(v).lower() if isinstance(v, bool) else v)
        break
EOF
  fi
}

# --- numbers --------------------------------------------------------------------------------

# A number for people: thousands grouped from 100 up, 3 significant digits below; "-" if empty.
num() {
  [ -n "${1:-}" ] || {
    echo "-"
    return
  }
  awk -v x="$1" 'BEGIN {
    a = x < 0 ? -x : x
    if (a >= 100) {
      s = sprintf("%.0f", a); o = ""
      while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
      printf "%s%s%s\n", (x < 0 ? "-" : ""), s, o
    } else if (a >= 10) printf "%.1f\n", x
    else if (a >= 1) printf "%.2f\n", x
    else printf "%.3g\n", x
  }'
}

# a / b; nothing if either is missing or b is 0.
div() {
  if [ -z "${1:-}" ] || [ -z "${2:-}" ]; then
    echo ""
    return
  fi
  awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print ""; else printf "%.6g\n", a / b }'
}

# A ratio: two decimals, or 3 significant digits when small; "-" if empty.
ratio() {
  [ -n "${1:-}" ] || {
    echo "-"
    return
  }
  awk -v x="$1" 'BEGIN { if (x >= 0.1 || x == 0) printf "%.2f\n", x; else printf "%.3g\n", x }'
}

rows=()
row() { rows+=("| $1 | $2 | $3 | $4 |"); }

# "1k" for 1000, "10k", "100k"; as is otherwise.
label() { if [ $(($1 % 1000)) -eq 0 ]; then echo "$(($1 / 1000))k"; else echo "$1"; fi; }

# Why a command failed, from its exit code and the last line it wrote to stderr (CLI11's
# closing hint skipped).
why() {
  local rc="$1" err="$2" last=""
  [ -s "$err" ] && last="$(grep -v -e '^[[:space:]]*$' -e '^Run with --help' "$err" |
    tail -n 1 | tr '|' '/' | cut -c1-160)"
  case "$rc" in
    124) echo "timed out${last:+: $last}" ;;
    137) echo "killed by SIGKILL (out of memory?)${last:+: $last}" ;;
    139) echo "segmentation fault${last:+: $last}" ;;
    134) echo "aborted${last:+: $last}" ;;
    *) echo "exit $rc${last:+: $last}" ;;
  esac
}

# --- core_bench -----------------------------------------------------------------------------
# The benchmarks write their JSON with --benchmark_out: the modules log to stdout.

note "core_bench (about 10 s)"
core_json="$out/core_bench.json"
rc=0
"$bin/core_bench" --benchmark_format=json --benchmark_out="$core_json" \
  --benchmark_out_format=json >"$out/core_bench.log" 2>"$out/core_bench.err" || rc=$?
if [ $rc -ne 0 ] || [ ! -s "$core_json" ]; then
  row "core_bench" "failed: $(why $rc "$out/core_bench.err")" "-" "-"
else
  # name prefix | measure | unit of the figure | what the limit is
  core_row() {
    local prefix="$1" measure="$2" unit="$3" limit_what="$4" err
    err="$(bench_field "$core_json" "$prefix" error_message)"
    if [ -n "$err" ]; then
      row "$measure" "failed: $err" "-" "-"
      return
    fi
    local per limit r
    if [ "$unit" = "MB/s" ]; then
      per="$(bench_field "$core_json" "$prefix" MB_per_s)"
      limit="$(bench_field "$core_json" "$prefix" limit_MB_per_s)"
    else
      per="$(bench_field "$core_json" "$prefix" per_s)"
      limit="$(bench_field "$core_json" "$prefix" limit_per_s)"
    fi
    r="$(bench_field "$core_json" "$prefix" ratio_to_limit)"
    if [ -z "$per" ]; then
      row "$measure" "failed: no result" "-" "-"
      return
    fi
    local sp=" "
    [ "${unit:0:1}" = / ] && sp=""
    row "$measure" "$(num "$per")$sp$unit" "$(num "$limit")$sp$unit ($limit_what)" "$(ratio "$r")"
  }
  core_row BM_EnvelopeSeal/ "envelope seal, 300-byte status body (ideal 1)" "/s" \
    "Ed25519 sign"
  core_row BM_EnvelopeOpen/ "envelope open at the gateway, cert cached (ideal 1)" "/s" \
    "Ed25519 verify"
  core_row BM_ManifestVerify/cached_cert:0/ "manifest verify, author cert not cached (ideal 0.5)" \
    "/s" "Ed25519 verify"
  core_row BM_ManifestVerify/cached_cert:1/ "manifest verify, author cert cached (ideal 1)" "/s" \
    "Ed25519 verify"
  core_row BM_RegistryUpsert/batch:100/ "registry upsert, batches of 100 records" "records/s" \
    "raw sqlite3, 1 txn"
  core_row BM_RegistryUpsert/batch:1000/ "registry upsert, batches of 1000 records" "records/s" \
    "raw sqlite3, 1 txn"
  core_row BM_RootIngest/verify_all:0/ \
    "root ingest of device state changes in gateway batches, persisted; outcomes verified" \
    "changes/s" "Ed25519 verify"
  core_row BM_RootIngest/verify_all:1/ \
    "the same, every device signature verified (status.verify_relayed = all)" "changes/s" \
    "Ed25519 verify"
  hb="$(bench_field "$core_json" BM_Heartbeat/ bytes_per_device_hour)"
  hb_limit="$(bench_field "$core_json" BM_Heartbeat/ limit_bytes_per_device_hour)"
  if [ -n "$hb" ]; then
    # Stays at the gateway: root never sees an unchanged report (issue #13).
    row "heartbeat bytes per device per hour on the device's link (report every 60 s)" \
      "$(num "$hb") B" "$(num "$hb_limit") B (MQTT keepalive alone)" \
      "$(ratio "$(bench_field "$core_json" BM_Heartbeat/ ratio_to_limit)")"
  fi
  core_row BM_ChunkServe/chunk:16384/ "chunk serve from gateway cache, 16 KiB" "MB/s" "SHA-256"
  core_row BM_ChunkServe/chunk:65536/ "chunk serve from gateway cache, 64 KiB" "MB/s" "SHA-256"
fi

# --- in_process_fleet_bench -----------------------------------------------------------------

# Each fleet in a process of its own: one leaves memory behind that would hide the next one's.
fleet_json="$out/in_process_fleet_bench.json"
rc=0
run_fleet() {
  local filter="$1" json="$2"
  note "in_process_fleet_bench --benchmark_filter=$filter (minutes)"
  "$bin/in_process_fleet_bench" --benchmark_filter="$filter" --benchmark_format=json \
    --benchmark_out="$json" --benchmark_out_format=json \
    >"$out/in_process_fleet_bench.log" 2>"$out/in_process_fleet_bench.err" || rc=$?
}
run_fleet '^BM_Fleet/1000/' "$fleet_json"
fleet_rows() {
  local prefix="$1" name="$2" limit_key="$3" limit_what="$4" err secs limit r rss
  err="$(bench_field "$fleet_json" "$prefix" error_message)"
  secs="$(bench_field "$fleet_json" "$prefix" seconds_to_all_confirmed)"
  if [ -n "$err" ] || [ -z "$secs" ]; then
    if [ -n "$err" ]; then
      row "$name: seconds to all confirmed" "failed: $err" "-" "-"
    else
      row "$name: seconds to all confirmed" \
        "failed: $(why $rc "$out/in_process_fleet_bench.err")" "-" "-"
    fi
    return
  fi
  limit="$(bench_field "$fleet_json" "$prefix" "$limit_key")"
  r="$(bench_field "$fleet_json" "$prefix" ratio_limit_over_actual)"
  rss="$(bench_field "$fleet_json" "$prefix" rss_kb_per_client)"
  row "$name: seconds to all confirmed" "$(num "$secs") s" "$(num "$limit") s ($limit_what)" \
    "$(ratio "$r")"
  row "$name: RSS per client" "$(num "$rss") kB" "-" "-"
}
fleet_rows BM_Fleet/1000/ "in-memory broker fleet, 1000 clients, 256 KiB update" \
  sha256_only_seconds "SHA-256 of the image x 1000"
if [ $quick -eq 0 ]; then
  fleet_json="$out/in_process_mosquitto_fleet_bench.json"
  run_fleet '^BM_MosquittoFleet/1000/' "$fleet_json"
  fleet_rows BM_MosquittoFleet/1000/ "Mosquitto fleet, 1000 clients, 256 KiB update" \
    raw_limit_seconds "chunks at raw QoS 1 rate"
else
  row "Mosquitto fleet, 1000 clients" "skipped (--quick)" "-" "-"
fi

# --- data_path_bench ------------------------------------------------------------------------
# One image through one gateway to one device over Mosquitto, beside a plain Paho request/response
# pair at the manifest's chunk size on the same broker (TCP_NODELAY on its sockets: without it the
# pair stalls on delayed ACKs and is no limit); the client's fsyncs per downloaded MiB.

# --quick: no standalone raw pairs (the image run measures its own), the default chunk size only.
# The full run takes 32 MiB at every chunk size a manifest may name: how the default was chosen.
if [ $quick -eq 1 ]; then
  image_mib=8
  dp_filter="^BM_ImageThroughGateway/image_mib:$image_mib/"
else
  image_mib=32
  dp_filter="^BM_RawRequestResponse/|^BM_ImageThroughGateway/image_mib:$image_mib/"
fi
note "data_path_bench, $image_mib MiB image (under a minute)"
dp_json="$out/data_path_bench.json"
rc=0
"$bin/data_path_bench" --benchmark_filter="$dp_filter" \
  --benchmark_format=json --benchmark_out="$dp_json" --benchmark_out_format=json \
  >"$out/data_path_bench.log" 2>"$out/data_path_bench.err" || rc=$?
img="BM_ImageThroughGateway/image_mib:$image_mib/chunk_kib:64/brokers:1/"  # the default chunk size
err="$(bench_field "$dp_json" "$img" error_message)"
dl="$(bench_field "$dp_json" "$img" download_MB_per_s)"
if [ -n "$err" ] || [ -z "$dl" ]; then
  [ -n "$err" ] || err="$(why $rc "$out/data_path_bench.err")"
  row "image through one gateway ($image_mib MiB)" "failed: $err" "-" "-"
else
  dp() { bench_field "$dp_json" "$img" "$1"; }
  kib="$(awk -v b="$(dp chunk_bytes)" 'BEGIN { printf "%d\n", b / 1024 }')"
  raw="$(dp raw_MB_per_s)"
  paho="$(dp raw_paho_default_MB_per_s)"
  # On a broker of its own when that size was run alone, else the image run's.
  alone="$(bench_field "$dp_json" "BM_RawRequestResponse/$kib/" MB_per_s)"
  row "raw MQTT QoS 1 request/response, $kib KiB responses (the default chunk size), 8 in flight" \
    "$(num "${alone:-$raw}") MB/s" "-" "-"
  row "the same, sockets as Paho leaves them (no TCP_NODELAY, as the transport's)" \
    "$(num "$paho") MB/s" "$(num "$raw") MB/s (TCP_NODELAY)" "$(ratio "$(div "$paho" "$raw")")"
  row "image through one gateway ($image_mib MiB): download MB/s, campaign start to DOWNLOADED" \
    "$(num "$dl") MB/s" "$(num "$raw") MB/s (raw request/response, $kib KiB, one hop)" \
    "$(ratio "$(dp ratio)")"
  row "the same beside two hops with plain clients (a Paho relay in the middle, as a gateway)" \
    "$(num "$dl") MB/s" "$(num "$(dp raw_relay_MB_per_s)") MB/s (raw relay, $kib KiB, two hops)" \
    "$(ratio "$(dp relay_ratio)")"
  row "a second device from the gateway's filled cache (one hop)" \
    "$(num "$(dp cached_MB_per_s)") MB/s" "$(num "$raw") MB/s (raw request/response, $kib KiB)" \
    "$(ratio "$(dp cached_ratio)")"
  own="BM_ImageThroughGateway/image_mib:$image_mib/chunk_kib:64/brokers:2/"
  odl="$(bench_field "$dp_json" "$own" download_MB_per_s)"
  if [ -n "$odl" ]; then
    row "image through one gateway ($image_mib MiB) that runs its own broker for its children" \
      "$(num "$odl") MB/s" \
      "$(num "$(bench_field "$dp_json" "$own" raw_MB_per_s)") MB/s (raw request/response, 64 KiB, one hop)" \
      "$(ratio "$(bench_field "$dp_json" "$own" ratio)")"
  fi
  row "image through one gateway ($image_mib MiB): seconds to confirmed" \
    "$(num "$(dp seconds_to_confirmed)") s" "-" "-"
  row "client's disk per downloaded MiB, campaign start to DOWNLOADED" \
    "$(num "$(dp fsyncs_per_MiB)") fsyncs, $(num "$(dp renames_per_MiB)") renames" "-" "-"
  for k in 16 32 128; do
    other="BM_ImageThroughGateway/image_mib:$image_mib/chunk_kib:$k/brokers:1/"
    odl="$(bench_field "$dp_json" "$other" download_MB_per_s)"
    [ -n "$odl" ] || continue
    row "image through one gateway ($image_mib MiB) in $k KiB chunks: download MB/s" \
      "$(num "$odl") MB/s" \
      "$(num "$(bench_field "$dp_json" "$other" raw_MB_per_s)") MB/s (raw request/response, $k KiB)" \
      "$(ratio "$(bench_field "$dp_json" "$other" ratio)")"
  done
fi

# --- the daemons' RSS while serving an image from disk (issue #17) -------------------------
# simulations/serve-rss.sh: the real tracker-root, one gateway and four clients, each its own
# process, on a Mosquitto of its own. The limit is the issue's budget, not a physical one: the
# ratio is the share of it used (below 1: within it).

if [ $quick -eq 1 ]; then
  rss_mib=16
else
  rss_mib=64
fi
note "serve-rss.sh, $rss_mib MiB image (under a minute)"
rss_json="$out/serve-rss.json"
rc=0
timeout --kill-after=30 900 "$repo/simulations/serve-rss.sh" "$build" --image-mib "$rss_mib" \
  --json "$rss_json" --timeout-s 600 >"$out/serve-rss.log" 2>"$out/serve-rss.err" || rc=$?
rss_root="$(json_key "$rss_json" root_rss_serving_peak_kb)"
if [ $rc -ne 0 ] || [ -z "$rss_root" ]; then
  row "root and gateway RSS serving a $rss_mib MiB image" "failed: $(why $rc "$out/serve-rss.err")" \
    "-" "-"
else
  rk() { json_key "$rss_json" "$1"; }
  budget="$(rk budget_kb)"
  row "root RSS serving a $rss_mib MiB image from disk, peak (campaign start to 4 devices updated)" \
    "$(num "$rss_root") kB" "$(num "$budget") kB (issue #17 budget)" \
    "$(ratio "$(div "$rss_root" "$budget")")"
  v="$(rk gateway_rss_serving_peak_kb)"
  row "gateway RSS serving the same image to its 4 devices, peak" "$(num "$v") kB" \
    "$(num "$budget") kB (issue #17 budget)" "$(ratio "$(div "$v" "$budget")")"
  row "root / gateway RSS before the publish (idle, 4 devices)" \
    "$(num "$(rk root_rss_before_publish_kb)") / $(num "$(rk gateway_rss_before_publish_kb)") kB" \
    "-" "-"
  # The upload streams the image to disk (POST /v1/releases, multipart): within the same budget.
  v="$(rk root_rss_upload_peak_kb)"
  row "root RSS during the $rss_mib MiB release upload (POST /v1/releases, streamed), peak" \
    "$(num "$v") kB" "$(num "$budget") kB (issue #17 budget)" "$(ratio "$(div "$v" "$budget")")"
fi

# --- tracker-sim scenarios ------------------------------------------------------------------

if [ $quick -eq 1 ]; then
  big=1000
  faults=500
else
  big=10000
  faults=2000
fi

declare -A sim_json # scenario -> its JSON file, when it produced one

# Seconds after the campaign start at which the offline share comes online (passed explicitly
# to the fault scenario): no run with an offline share can be final before then.
OFFLINE_DELAY=5

# run_sim NAME FLOOR ARGS...: runs one scenario and adds its rows. FLOOR is a lower bound of
# its seconds to all final that follows from its own options, or "" when there is none.
run_sim() {
  local name="$1" floor="$2"
  shift 2
  local json="$out/sim-$name.json" err="$out/sim-$name.err" rc=0
  note "tracker-sim $name: $*"
  timeout --kill-after=30 $((SIM_TIMEOUT + 120)) \
    "$bin/tracker-sim" "$@" --timeout "$SIM_TIMEOUT" --quiet --json "$json" \
    >/dev/null 2>"$err" || rc=$?
  if [ ! -s "$json" ]; then
    row "$name" "failed: $(why $rc "$err")" "-" "-"
    return
  fi
  sim_json[$name]="$json"
  k() { json_key "$json" "$1"; }
  local devices final setup in_ out_ verify broker rpd run_s
  devices="$(k devices)"
  final="$(k seconds_to_all_final)"
  setup="$(k setup_seconds)"
  in_="$(k root_messages_in)"
  out_="$(k root_messages_out)"
  verify="$(k ed25519_verify_per_second)"
  broker="$(k broker_raw_messages_per_second)"
  rpd="$(k root_messages_per_device)"
  if [ $rc -ne 0 ]; then
    row "$name" "failed: $(why $rc "$err")" "-" "-"
  fi
  if [ -n "$final" ] && awk -v f="$final" 'BEGIN { exit !(f >= 0) }'; then
    if [ -n "$floor" ]; then
      row "$name: seconds to all final" "$(num "$final") s" \
        "$(num "$floor") s (offline devices come online)" "$(ratio "$(div "$floor" "$final")")"
    else
      row "$name: seconds to all final" "$(num "$final") s" "-" "-"
    fi
  else
    row "$name: seconds to all final" "not all final" "-" "-"
  fi
  row "$name: outcome" "confirmed $(k confirmed), failed $(k failed), rolled back \
$(k rolled_back), bricked $(k bricked), offline $(k offline_at_end) of $devices" "-" "-"
  row "$name: root messages per device" "$(num "$rpd")" "-" "-"
  local rpc changes
  rpc="$(k root_messages_per_change)"
  changes="$(k device_state_changes)"
  if [ -n "$changes" ] && [ "$changes" != "0" ]; then
    # Issue #13's target: at most 0.01 root messages (in and out) per device state change.
    row "$name: root messages per device state change ($(num "$changes") changes)" \
      "$(num "$rpc")" "-" "-"
  fi
  # Root's rates over the whole run (setup, which includes measuring the limits, then the
  # rollout): the messages are counted for the whole run, not the rollout alone.
  if [ -n "$final" ] && awk -v f="$final" 'BEGIN { exit !(f >= 0) }'; then
    run_s="$(awk -v a="$setup" -v b="$final" 'BEGIN { printf "%.6g\n", a + b }')"
    local rin rall
    rin="$(div "$in_" "$run_s")"
    rall="$(div "$(awk -v a="$in_" -v b="$out_" 'BEGIN { print a + b }')" "$run_s")"
    # Root checks at least one signature for every message it receives (a relayed batch counts
    # once here, though root verifies each report in it).
    row "$name: root messages in/s, setup + rollout (a batch counts 1)" "$(num "$rin")/s" \
      "$(num "$verify")/s (Ed25519 verify)" "$(ratio "$(div "$rin" "$verify")")"
    row "$name: root messages in+out/s, setup + rollout" "$(num "$rall")/s" \
      "$(num "$broker")/s (broker raw QoS 1)" "$(ratio "$(div "$rall" "$broker")")"
  fi
  local image up v
  v="$(k peak_rss_root_kb)"
  row "$name: peak RSS of the sim process (root and the gateways)" \
    "$([ -n "$v" ] && echo "$(num "$v") kB" || echo -)" "-" "-"
  v="$(k peak_rss_per_device_kb)"
  row "$name: peak RSS per device" "$([ -n "$v" ] && echo "$(num "$v") kB" || echo -)" "-" "-"
  local cb
  cb="$(k control_bytes_per_device)"
  v="$(k workers)"
  row "$name: device links, worker processes, brokers" \
    "$(k device_links), $([ -n "$v" ] && echo "$v" || echo -), $(k brokers)" "-" "-"
  row "$name: control bytes per device" "$([ -n "$cb" ] && echo "$(num "$cb") B" || echo -)" "-" "-"
  up="$(k upstream_image_bytes)"
  image="$(k image_size)"
  if [ -n "$up" ]; then
    row "$name: upstream image bytes" "$(num "$up") B ($(num "$(div "$up" "$image")") x image)" \
      "-" "-"
  else
    row "$name: upstream image bytes" "-" "-" "-"
  fi
}

common=(--image-size 65536)
run_sim "hier-$(label $big)" "" --devices $big --tiers 2 --fanout 10 "${common[@]}" \
  --device-links "$DEVICE_LINKS"
run_sim "flat-$(label $big)" "" --devices $big --topology client-server "${common[@]}" \
  --device-links "$DEVICE_LINKS"
run_sim "hier-$(label $big)-broker-per-gateway" "" --devices $big --tiers 2 --fanout 10 \
  "${common[@]}" --device-links "$DEVICE_LINKS" --brokers per-gateway
hier="${sim_json[hier-$(label $big)]:-}"
flat="${sim_json[flat-$(label $big)]:-}"
if [ -n "$hier" ] && [ -n "$flat" ]; then
  f="$(json_key "$flat" root_messages_per_device)"
  h="$(json_key "$hier" root_messages_per_device)"
  row "root messages per device, flat / hierarchical ($(label $big))" "$(num "$f") / $(num "$h")" \
    "-" "$(ratio "$(div "$f" "$h")")"
else
  row "root messages per device, flat / hierarchical ($(label $big))" "failed: a scenario failed" \
    "-" "-"
fi
if [ $quick -eq 0 ]; then
  # 16 KiB: each in-process device keeps its two slots (and their synced copies) in memory.
  run_sim "inproc-100k" "" --devices 100000 --tiers 2 --fanout 10 --image-size 16384 \
    --device-links in-process
else
  row "inproc-100k" "skipped (--quick)" "-" "-"
fi
# Issue #17: a 256 KiB campaign to 500 devices under 2 gateways on a stock Mosquitto
# (max_queued_messages 1000) beside the same with a queue no run fills: the go's window keeps
# the gateways' queues within the broker's, so the stock broker costs (almost) nothing.
run_sim "stock-broker-500" "" --devices 500 --tiers 1 --fanout 2 --image-size 262144 --seed 11
run_sim "raised-queue-500" "" --devices 500 --tiers 1 --fanout 2 --image-size 262144 --seed 11 \
  --broker-queue 1000000
stock="${sim_json[stock-broker-500]:-}"
raised="${sim_json[raised-queue-500]:-}"
if [ -n "$stock" ] && [ -n "$raised" ]; then
  sf="$(json_key "$stock" seconds_to_all_final)"
  rf="$(json_key "$raised" seconds_to_all_final)"
  row "500 devices, 256 KiB: seconds on a stock broker / with a raised queue (target <= 1.5)" \
    "$(num "$sf") s / $(num "$rf") s" "-" "$(ratio "$(div "$sf" "$rf")")"
  row "500 devices, 256 KiB, stock broker: broker drop episodes; image bytes per device" \
    "$(json_key "$stock" broker_drop_episodes); $(num "$(json_key "$stock" image_bytes_per_device)") B" \
    "262,144 B (the image)" \
    "$(ratio "$(div 262144 "$(json_key "$stock" image_bytes_per_device)")")"
else
  row "500 devices, 256 KiB: stock broker / raised queue" "failed: a scenario failed" "-" "-"
fi
run_sim "faults-$(label $faults)" $OFFLINE_DELAY --devices $faults --tiers 2 --fanout 4 \
  --offline-share 0.05 --offline-delay $OFFLINE_DELAY --install-fail-share 0.05 \
  --boot-fail-share 0.02 --kill-intermediate --kill-at 1 --downtime 3 --seed 7

# --- the table ------------------------------------------------------------------------------

cpu="$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
ram="$(awk '/^MemTotal:/ { printf "%.1f GiB\n", $2 / 1048576 }' /proc/meminfo 2>/dev/null)"
commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
table() {
  echo "# Benchmarks beside the physical limits"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(uname -srm); CPU: ${cpu:-unknown}; cores: $(nproc); RAM: ${ram:-unknown}"
  echo "- commit: $commit; mode: $([ $quick -eq 1 ] && echo quick || echo full);" \
    "sim device links: $DEVICE_LINKS"
  echo "- every limit is measured in the same run; ratio = figure / limit as speeds (1: at the" \
    "limit, below 1: slower). For the sim's root rates the ratio is how much of the limit root" \
    "used, not how close it came to it; for the RSS rows it is the share of the budget used" \
    "(below 1: within it). The sim samples its counts once a second: its times are that" \
    "coarse."
  echo
  echo "| measure | figure | in-run limit | ratio |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
}
table
if [ $write -eq 1 ]; then
  table >"$repo/simulations/RESULTS.md"
  note "wrote simulations/RESULTS.md"
fi
