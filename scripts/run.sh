#!/usr/bin/env bash
# Install dependencies, build in release mode and run the service on
# config/default.yaml (socket mode, file exporter under ./data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[[ -d build-release ]] || meson setup build-release --buildtype=release -Dtests=false
ninja -C build-release
exec ./build-release/app/otlp-service --config config/default.yaml "$@"
