#!/usr/bin/env bash
# Install what otlp-service needs on Debian 12, from Debian packages only.
#   scripts/install-deps.sh          build and run dependencies
#   scripts/install-deps.sh --test   plus the test tools (clients, upstreams, fuzzing)
set -euo pipefail
build_pkgs=(build-essential meson ninja-build pkg-config protobuf-c-compiler libprotobuf-c-dev
            libyaml-dev libdeflate-dev libzstd-dev libjansson-dev libssl-dev libcurl4-openssl-dev
            libnghttp2-dev libdpdk-dev dpdk libnats-dev librdkafka-dev libxxhash-dev libsystemd-dev
            ca-certificates)
test_pkgs=(libcmocka-dev clang curl python3 python3-pytest python3-protobuf protobuf-compiler
           prometheus wrk zstd nghttp2-client python3-grpcio
           python3-yaml python3-jsonschema python3-kubernetes systemd binutils shellcheck iputils-ping iproute2 nats-server)
pkgs=("${build_pkgs[@]}")
if [[ "${1:-}" == "--test" ]]; then
    pkgs+=("${test_pkgs[@]}")
    # Node for the OpenTelemetry JS SDK clients: Debian's nodejs/npm unless one is there.
    command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
    command -v npm >/dev/null 2>&1 || pkgs+=(npm)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -ne 0 ]] && SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
