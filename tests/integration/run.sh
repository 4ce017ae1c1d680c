#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run the otlp-service integration suite against a built binary.
#
#   tests/integration/run.sh [path/to/otlp-service] [extra pytest args...]
#
# The binary comes from $1, else $OTLP_SERVICE_BIN, else build/app/otlp-service.
# This script installs nothing system-wide; scripts/install-deps.sh provides
# the Debian packages it needs:
#   python3-pytest python3-protobuf protobuf-compiler curl nodejs npm prometheus
# (prometheus only for `promtool check metrics`; that check is skipped without it).
# It runs `npm ci` in tests/integration/js when node_modules is missing (the
# npm registry is reachable from developer machines and CI).
# Every test talks to 127.0.0.1 only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

bin="${OTLP_SERVICE_BIN:-$root/build/app/otlp-service}"
if [[ $# -gt 0 && "$1" != -* ]]; then
    bin="$1"
    shift
fi
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
if [[ ! -x "$bin" ]]; then
    echo "run.sh: otlp-service binary not found or not executable: $bin" >&2
    exit 2
fi
export OTLP_SERVICE_BIN="$bin"

# The Debian python3 has python3-protobuf and python3-pytest; a python3 earlier
# on PATH (pyenv, venv) may not.
py=python3
for cand in python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import google.protobuf, pytest' 2>/dev/null; then
        py="$cand"
        break
    fi
done
"$py" -c 'import google.protobuf, pytest' || {
    echo "run.sh: need python3-pytest and python3-protobuf" >&2
    exit 2
}
for tool in protoc curl node; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 2; }
done

if [[ ! -d "$here/js/node_modules/@opentelemetry" ]]; then
    (cd "$here/js" && npm ci --no-audit --no-fund --loglevel=error)
fi

cd "$root"
exec "$py" -m pytest -q -p no:cacheprovider tests/integration "$@"
