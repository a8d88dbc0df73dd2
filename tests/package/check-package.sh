#!/usr/bin/env bash
# tests/package/check-package.sh BUILD_DIR: builds the .deb of this build (cpack, into a
# temporary directory) and checks it without installing it into the system: its control data
# (dpkg-deb -I: name, Depends from dpkg-shlibdeps, conffiles, maintainer scripts), its contents
# (dpkg-deb --contents), then, extracted into a temporary root (dpkg-deb -x), its systemd units
# (systemd-analyze verify --root, against that root with the host's own units beside them),
# each unit's StateDirectory against its configuration's data_dir, and the extracted
# tracker-root --check-config on the installed /etc/x1368/root.toml with keys and TLS files made
# beside it. Exits 77 (ctest: skipped) naming what is missing when cpack, dpkg-deb,
# dpkg-shlibdeps or systemd-analyze is not there (scripts/setup.sh installs them).
set -euo pipefail
build=$(cd "$1" && pwd)
for tool in cpack dpkg-deb dpkg-shlibdeps systemd-analyze openssl; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing (scripts/setup.sh)"; exit 77; }
done
[ -d /lib/systemd/system ] || { echo "SKIP: no /lib/systemd/system to verify units against"; exit 77; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== cpack"
(cd "$work" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work/out" >"$work/cpack.log" 2>&1) \
  || { cat "$work/cpack.log"; fail "cpack -G DEB failed"; }
debs=("$work"/out/x1368-tracker_*.deb)
[ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] || fail "expected one x1368-tracker_*.deb, got: ${debs[*]}"
deb=${debs[0]}
echo "built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"

echo "== control data"
info=$(dpkg-deb -I "$deb")
echo "$info" | grep -E '^ (Package|Version|Architecture|Maintainer|Depends|Installed-Size):'
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = x1368-tracker ] || fail "Package is '$(field Package)'"
[ -n "$(field Maintainer)" ] || fail "no Maintainer"
[ -n "$(field Description)" ] || fail "no Description"
depends=$(field Depends)
# dpkg-shlibdeps found the shared libraries' packages.
for lib in libc6 libssl3 libprometheus-cpp-core libpaho-mqttpp3 libsqlite3-0 libcurl4 passwd; do
  echo ", $depends" | grep -q ", $lib" || fail "Depends lacks $lib: $depends"
done
dpkg-deb -e "$deb" "$work/control"
for f in conffiles postinst prerm postrm; do [ -f "$work/control/$f" ] || fail "no $f"; done
for f in /etc/x1368/root.toml /etc/x1368/intermediate.toml /etc/x1368/client.toml \
  /etc/default/tracker-root; do
  grep -qx "$f" "$work/control/conffiles" || fail "$f is not a conffile"
done
# systemctl only where systemd runs (a chroot or an image build has none).
grep -q 'if \[ -d /run/systemd/system \]' "$work/control/postinst" || fail "postinst runs systemctl unconditionally"

echo "== contents"
contents=$(dpkg-deb --contents "$deb" | awk '{print $6}')
for f in ./usr/bin/tracker-root ./usr/bin/tracker-intermediate ./usr/bin/tracker-client \
  ./usr/bin/trackerctl ./lib/systemd/system/tracker-root.service \
  ./lib/systemd/system/tracker-intermediate.service ./lib/systemd/system/tracker-client.service \
  ./lib/systemd/system/tracker-client@.service ./etc/x1368/root.toml \
  ./usr/share/doc/x1368-tracker/README.md ./usr/share/doc/x1368-tracker/examples/root.toml; do
  echo "$contents" | grep -qx "$f" || fail "$f is not in the package"
done
if echo "$contents" | grep -E '_test$|/include/|\.a$'; then fail "test binaries, headers or archives in the package"; fi

echo "== extracted"
root="$work/root"
dpkg-deb -x "$deb" "$root"
"$root/usr/bin/tracker-root" --version
# The units' data: each StateDirectory is its configuration's data_dir.
for d in root intermediate client; do
  unit="$root/lib/systemd/system/tracker-$d.service"
  state=$(sed -n 's/^StateDirectory=//p' "$unit")
  data_dir=$(sed -n 's/^data_dir = "\([^"]*\)".*/\1/p' "$root/etc/x1368/$d.toml")
  [ "/var/lib/$state" = "$data_dir" ] || fail "tracker-$d.service: StateDirectory=$state, but $d.toml has data_dir $data_dir"
  grep -q "^ExecStart=/usr/bin/tracker-$d --config /etc/x1368/$d.toml" "$unit" || fail "tracker-$d.service: ExecStart"
done

echo "== systemd-analyze verify"
# Against the extracted root (ExecStart= resolved inside it), with the host's units beside ours so
# that the targets they name exist. Any complaint fails: unknown keys are only warnings.
cp -an /lib/systemd/system/. "$root/lib/systemd/system/" 2>/dev/null || true
for unit in tracker-root.service tracker-intermediate.service tracker-client.service \
  tracker-client@dev-1.service; do
  out=$(systemd-analyze verify --man=no --generators=no --root="$root" "$unit" 2>&1) \
    || fail "systemd-analyze verify $unit: $out"
  [ -z "$out" ] || fail "systemd-analyze verify $unit: $out"
  echo "$unit: OK"
done
# The sandbox is there (a unit file edited into laxness fails here).
for key in DynamicUser=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes \
  'CapabilityBoundingSet=$' 'SystemCallFilter=@system-service' 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
  Type=exec Restart=on-failure; do
  grep -q "^$key" "$root/lib/systemd/system/tracker-root.service" || fail "tracker-root.service lacks $key"
done

echo "== tracker-root --check-config on the installed root.toml"
conf="$root/etc/x1368"
mkdir -p "$conf/keys" "$conf/tls"
"$root/usr/bin/trackerctl" keygen --out "$conf/keys/root.key" >/dev/null
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -days 1 -subj /CN=x1368-ca -keyout "$conf/tls/ca.key" \
  -out "$conf/tls/ca.crt" 2>/dev/null
openssl req "${ec[@]}" -subj /CN=root -keyout "$conf/tls/root.key" -out "$conf/tls/root.csr" 2>/dev/null
openssl x509 -req -in "$conf/tls/root.csr" -CA "$conf/tls/ca.crt" -CAkey "$conf/tls/ca.key" \
  -CAcreateserial -days 1 -out "$conf/tls/root.crt" 2>/dev/null
"$root/usr/bin/tracker-root" --check-config --config "$conf/root.toml"
echo "PASS"
