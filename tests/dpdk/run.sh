#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# DPDK data-plane suite: otlp-service on net_tap, clients in a network
# namespace (scripts/dpdk-tap-rig.sh). Needs root, libdpdk (Debian:
# libdpdk-dev dpdk), curl, iproute2, and for parts of it iputils-ping, wrk,
# tc (netem), h2load (nghttp2-client) and python3-grpcio (OTLP/gRPC).
#
#   tests/dpdk/run.sh [path/to/otlp-service] [extra pytest args...]
#
# The binary comes from $1, else $OTLP_SERVICE_BIN, else build-dpdk/app/otlp-service.
# Measured figures are printed and appended to $DPDK_TEST_RESULTS
# (default build-dpdk/dpdk-test-results.txt). Every namespace and process the
# suite starts is removed when it ends, also on failure or Ctrl-C.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

bin="${OTLP_SERVICE_BIN:-$root/build-dpdk/app/otlp-service}"
if [[ $# -gt 0 && "$1" != -* ]]; then
    bin="$1"
    shift
fi
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
[[ -x "$bin" ]] || { echo "run.sh: otlp-service binary not found: $bin" >&2; exit 2; }
export OTLP_SERVICE_BIN="$bin"
[[ $(id -u) -eq 0 ]] || { echo "run.sh: needs root (namespaces, TAP)" >&2; exit 2; }

# Debian's python3 has python3-pytest and python3-protobuf; pyenv's may not.
py=/usr/bin/python3
"$py" -c 'import google.protobuf, pytest' || {
    echo "run.sh: need python3-pytest and python3-protobuf" >&2
    exit 2
}

# Belt and braces beside the pytest finalizers: namespaces of this run.
cleanup() {
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^otlp-rig-$$-" || true); do
        "$root/scripts/dpdk-tap-rig.sh" teardown "$ns" || true
    done
}
trap cleanup EXIT INT TERM

cd "$root"
# The suite's namespaces are named otlp-rig-<pid of pytest>-*; pytest runs as
# a child here, so pass our pid for the trap above.
export OTLP_RIG_PREFIX="otlp-rig-$$"
"$py" -m pytest -q -p no:cacheprovider -rs tests/dpdk "$@"
