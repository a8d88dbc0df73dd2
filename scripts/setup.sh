#!/usr/bin/env bash
# Installs every Debian package that the build, the tests and the demo need.
# Idempotent: packages already present are left alone. Uses sudo when not root.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  protobuf-compiler libprotobuf-dev
  libpaho-mqtt-dev libpaho-mqttpp-dev
  mosquitto mosquitto-clients
  libssl-dev openssl
  libabsl-dev
  libsqlite3-dev
  libgtest-dev libgmock-dev
  libtomlplusplus-dev libcli11-dev
  libspdlog-dev libfmt-dev
  libcpp-httplib-dev libcurl4-openssl-dev
  nlohmann-json3-dev libyaml-cpp-dev
  prometheus-cpp-dev
  curl
  libbenchmark-dev
  clang libclang-rt-14-dev
  procps
  jq
  faketime
  dpkg-dev file systemd
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
