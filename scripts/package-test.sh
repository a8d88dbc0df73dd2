#!/usr/bin/env bash
# scripts/package-test.sh: the .deb from scratch, as an operator installs it, on a fresh Debian 12
# (as root): the build dependencies (scripts/setup.sh), a build without the tests, cpack,
# `apt-get install ./x1368-tracker_*.deb`, `systemd-analyze verify` on the installed units, then
# tracker-root started on the installed configuration (its keys made, its broker a local
# Mosquitto) through systemctl where systemd runs, or else as the unit's ExecStart line runs it
# (a uid of its own in group x1368, in the unit's StateDirectory), and its /healthz,
# /readyz and /metrics asked. Leaves the package installed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "package-test: run as root (it installs the package)"; exit 2; }
step() { echo "== $*"; }

step "dependencies"
scripts/setup.sh
build=${BUILD_DIR:-build-package}
step "build ($build)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DX1368_TESTS=OFF >/dev/null
cmake --build "$build" -- -j"$(nproc)" >/dev/null
step "cpack"
rm -f "$build"/x1368-tracker_*.deb
(cd "$build" && cpack -G DEB >/dev/null)
deb=$(ls "$build"/x1368-tracker_*.deb)
dpkg-deb -I "$deb" | grep -E '^ (Package|Version|Architecture|Depends):'

step "apt-get install ./$deb"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "./$deb" >/dev/null
getent group x1368 >/dev/null || { echo "postinst made no group x1368"; exit 1; }
for f in /usr/bin/tracker-root /usr/bin/trackerctl /etc/x1368/root.toml \
  /lib/systemd/system/tracker-root.service; do
  [ -e "$f" ] || { echo "$f was not installed"; exit 1; }
done

step "systemd-analyze verify"
systemd-analyze verify --man=no /lib/systemd/system/tracker-root.service \
  /lib/systemd/system/tracker-intermediate.service /lib/systemd/system/tracker-client.service
systemd-analyze verify --man=no tracker-client@dev-1.service

step "root's configuration: keys, a local broker"
conf=/etc/x1368
mkdir -p "$conf/keys"
trackerctl keygen --out "$conf/keys/root.key" >/dev/null
# The services run as a dynamic user in group x1368 (README: Installing from packages).
chgrp -R x1368 "$conf/keys" && chmod 0750 "$conf/keys" && chmod 0640 "$conf/keys"/*
# The example's broker is TLS at broker.example; here a local Mosquitto without TLS.
sed -i -e 's|^broker = "ssl://broker.example:8883"|broker = "tcp://127.0.0.1:1883"|' \
  -e '/^tls\./d' "$conf/root.toml"
tracker-root --check-config --config "$conf/root.toml"
pgrep -x mosquitto >/dev/null || mosquitto -d
admin=http://127.0.0.1:8368

wait_http() {  # URL [tries]: true once it answers 200
  for _ in $(seq "${2:-100}"); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

pid=""
if [ -d /run/systemd/system ]; then
  step "systemctl start tracker-root (first start: --init)"
  sed -i 's|^TRACKER_ROOT_ARGS=.*|TRACKER_ROOT_ARGS="--init"|' /etc/default/tracker-root
  systemctl daemon-reload
  systemctl start tracker-root.service
  sed -i 's|^TRACKER_ROOT_ARGS=.*|TRACKER_ROOT_ARGS=""|' /etc/default/tracker-root
else
  step "no systemd here: tracker-root as its unit's ExecStart runs it (first start: --init)"
  exec_start=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/tracker-root.service)
  state=/var/lib/$(sed -n 's/^StateDirectory=//p' /lib/systemd/system/tracker-root.service)
  # What DynamicUser= and StateDirectory= give it: a uid of its own (in systemd's dynamic range,
  # named by no passwd entry), group x1368 for its keys, a private state directory.
  uid=61368 gid=$(getent group x1368 | cut -d: -f3)
  install -d -m 0700 -o "$uid" -g "$gid" "$state"
  cmd=${exec_start//\$TRACKER_ROOT_ARGS/--init}
  # shellcheck disable=SC2086
  setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs $cmd \
    >/tmp/tracker-root.log 2>&1 &
  pid=$!
fi

step "/healthz, /readyz, /metrics"
wait_http "$admin/healthz" || {
  [ -n "$pid" ] && cat /tmp/tracker-root.log || journalctl -u tracker-root --no-pager | tail -30
  echo "tracker-root never answered /healthz"; exit 1; }
curl -fsS "$admin/healthz"; echo
wait_http "$admin/readyz" 150 || { curl -sS "$admin/readyz"; echo "tracker-root not ready"; exit 1; }
curl -fsS "$admin/metrics" | grep -E '^x1368_build_info|^x1368_mqtt_connected'
if [ -n "$pid" ]; then
  kill -TERM "$pid"
  wait "$pid" || { cat /tmp/tracker-root.log; echo "tracker-root did not stop cleanly"; exit 1; }
else
  systemctl stop tracker-root.service
fi
echo "package-test: OK"
