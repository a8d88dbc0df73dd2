#!/usr/bin/env bash
# tests/check-examples.sh BIN_DIR EXAMPLE DAEMON: `DAEMON --check-config` on examples/EXAMPLE.toml,
# copied into a temporary directory beside the keys, certificates and TLS files it names, made as
# an operator would (trackerctl keygen / cert issue, openssl). --check-config opens and parses
# every one of them, so the example is checked with real files, not only its syntax.
set -euo pipefail
bin=$1 example=$2 daemon=$3
src=$(cd "$(dirname "$0")/../examples" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$src/$example.toml" "$work/"
mkdir -p "$work/keys" "$work/tls"
cd "$work"
ctl() { "$bin/trackerctl" "$@" >/dev/null; }
ctl keygen --out keys/root.key
ctl keygen --out keys/gw-berlin-1.key
ctl cert issue --root-key keys/root.key --node gw-berlin-1 --role intermediate \
  --key keys/gw-berlin-1.key --scope 'dev-ber-*' --out keys/gw-berlin-1.cert
ctl keygen --out keys/dev-ber-0001.key
ctl cert issue --root-key keys/root.key --node dev-ber-0001 --role client \
  --key keys/dev-ber-0001.key --out keys/dev-ber-0001.cert
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -days 1 -subj /CN=x1368-ca -keyout tls/ca.key -out tls/ca.crt \
  2>/dev/null
for id in root gw-berlin-1; do
  openssl req "${ec[@]}" -subj "/CN=$id" -keyout "tls/$id.key" -out "tls/$id.csr" 2>/dev/null
  openssl x509 -req -in "tls/$id.csr" -CA tls/ca.crt -CAkey tls/ca.key -CAcreateserial \
    -days 1 -out "tls/$id.crt" 2>/dev/null
done
exec "$bin/$daemon" --check-config --complete --config "$work/$example.toml"
