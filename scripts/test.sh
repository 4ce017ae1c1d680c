#!/usr/bin/env bash
# Install everything the tests need, build with warnings as errors, run the
# unit tests, the integration tests against real clients and upstreams, the
# whole unit suite again under AddressSanitizer+UndefinedBehaviorSanitizer,
# and each fuzz target briefly. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
bash scripts/install-deps.sh --test

echo "== build (werror) and unit tests"
[[ -d build-test ]] || meson setup build-test -Dwerror=true
ninja -C build-test
meson test -C build-test --print-errorlogs --num-processes 2

echo "== integration tests"
OTLP_SERVICE_BIN="$PWD/build-test/app/otlp-service" bash tests/integration/run.sh

echo "== Kafka exporter against librdkafka's mock cluster, read back with kafkajs"
bash tests/kafka/run.sh "$PWD/build-test/app/otlp-service"

echo "== DPDK data plane (EAL + net_tap in a network namespace, userspace TCP)"
OTLP_SERVICE_BIN="$PWD/build-test/app/otlp-service" bash tests/dpdk/run.sh

echo "== deployment files (promtool, systemd-analyze, schemas, live Prometheus)"
OTLP_SERVICE_BIN="$PWD/build-test/app/otlp-service" bash tests/deploy/run.sh

echo "== unit tests under ASan+UBSan"
[[ -d build-asan ]] || meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false
ninja -C build-asan
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --num-processes 2

echo "== fuzz targets (${FUZZ_SECONDS}s each)"
[[ -d build-fuzz ]] || CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false
ninja -C build-fuzz
for f in build-fuzz/tests/fuzz/fuzz_*; do
    [[ -x "$f" && -f "$f" ]] || continue
    name=$(basename "$f"); name=${name#fuzz_}
    corpus=tests/fuzz/corpus/$name
    work=$(mktemp -d)
    [[ -d "$corpus" ]] && cp -r "$corpus"/. "$work"/
    echo "-- $name"
    log=$(mktemp)
    if ! "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$work/" "$work" >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $name failed; crashing input kept in $work" >&2
        exit 1
    fi
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
    rm -f "$log"
    rm -rf "$work"
done
echo "== all tests passed"
