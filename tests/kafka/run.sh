#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run the Kafka exporter tests: the C tests against an in-process mock
# cluster (meson test export_kafka) are part of the unit suite; this runs the
# integration tests (test_kafka.py) with the built gateway and mock_cluster.
#
#   tests/kafka/run.sh [path/to/otlp-service] [extra pytest args...]
#
# Needs librdkafka-dev and libxxhash-dev at build time (without them the
# exporter and mock_cluster are not built and these tests skip), node and
# npm (kafkajs is installed here with `npm ci` when node_modules is missing),
# python3-pytest and python3-protobuf. Traffic stays on 127.0.0.1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${OTLP_SERVICE_BIN:-$root/build/app/otlp-service}"
if [[ $# -gt 0 && "$1" != -* ]]; then
    bin="$1"
    shift
fi
case "$bin" in /*) ;; *) bin="$PWD/$bin" ;; esac
export OTLP_SERVICE_BIN="$bin"
export OTLP_KAFKA_MOCK="${OTLP_KAFKA_MOCK:-$(dirname "$(dirname "$bin")")/tests/kafka/mock_cluster}"

if [[ ! -d "$here/node_modules/kafkajs" ]]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
if [[ ! -d "$root/tests/integration/js/node_modules/@opentelemetry" ]]; then
    (cd "$root/tests/integration/js" && npm ci --no-audit --no-fund --loglevel=error)
fi
cd "$root"
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/kafka "$@"
