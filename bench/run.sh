#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# One-command benchmark: builds release, synthesizes traffic, runs the
# scenarios of docs/benchmarks.md against build-bench/app/otlp-service and
# prints one table (machine, commit, date, load average per row).
#
#   bench/run.sh [--quick] [--duration S] [--soak S] [--only LIST] [--out DIR] [--no-build]
#
#   --quick       10 s per run, 60 s soak (default: 30 s per run, 600 s soak)
#   --only LIST   comma list of: max,latency,gzip,mixed,soak,dpdk,replay
#   --out DIR     results (default build-bench/bench-results/<date>)
#   --report DIR  only print the table of an earlier run's DIR/results.jsonl
# Environment: OTLP_BENCH_HTTP_PORT (24318), OTLP_BENCH_CONTROL_PORT (28080),
#   OTLP_BENCH_CONNS (32), OTLP_BENCH_DPDK_MEM_MB (1024),
#   OTLP_BENCH_BUILD (build dir, default build-bench).
# DPDK replay runs with dataplane.dpdk.replay_isn (benchmarks only, insecure:
#   predictable ISNs) so the pcap's client ACKs match the server's ISNs.
# Test traffic goes to 127.0.0.1 only; DPDK mode reads a pcap (net_pcap), no NIC.
set -euo pipefail

# Run from a private copy: bash reads a script as it goes, so an edit of
# this file during a long run (soak) would otherwise break the run.
if [ -z "${OTLP_BENCH_ROOT:-}" ]; then
    OTLP_BENCH_ROOT=$(cd "$(dirname "$0")/.." && pwd)
    copy=$(mktemp /tmp/otlp-bench-run.XXXXXX)
    cp "$0" "$copy"
    OTLP_BENCH_ROOT=$OTLP_BENCH_ROOT OTLP_BENCH_SELF=$copy exec bash "$copy" "$@"
fi
trap 'rm -f "${OTLP_BENCH_SELF:-}"' EXIT
ROOT=$OTLP_BENCH_ROOT
PY=/usr/bin/python3
BUILD=${OTLP_BENCH_BUILD:-$ROOT/build-bench}
DUR=30
SOAK=600
ONLY=max,latency,gzip,grpc,mixed,soak,dpdk,replay
BUILD_IT=1
REPORT_ONLY=0
OUT=""
while [ $# -gt 0 ]; do
    case $1 in
    --quick) DUR=10; SOAK=60 ;;
    --duration) DUR=$2; shift ;;
    --soak) SOAK=$2; shift ;;
    --only) ONLY=$2; shift ;;
    --out) OUT=$2; shift ;;
    --no-build) BUILD_IT=0 ;;
    --report) REPORT_ONLY=1; OUT=$2; ONLY=none; BUILD_IT=0; shift ;;
    -h|--help) sed -n '3,20p' "$ROOT/bench/run.sh"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$BUILD/bench-results/$STAMP}
HTTP_PORT=${OTLP_BENCH_HTTP_PORT:-24318}
CTL_PORT=${OTLP_BENCH_CONTROL_PORT:-28080}
CONNS=${OTLP_BENCH_CONNS:-32}
DPDK_MEM=${OTLP_BENCH_DPDK_MEM_MB:-1024}
SVC=$BUILD/app/otlp-service
LG=$BUILD/bench/otlp-loadgen
RESULTS=$OUT/results.jsonl
want() { [[ ",$ONLY," == *",$1,"* ]]; }
log() { echo "[bench $(date +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)] $*" >&2; }

mkdir -p "$OUT"
[ $REPORT_ONLY = 1 ] || : > "$RESULTS"
# the commit of the tree that is built (recorded before the build, not at report time)
if [ $REPORT_ONLY = 0 ]; then
    { git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown; } >"$OUT/commit.txt"
    echo "$DUR $SOAK" >"$OUT/params.txt"
    git -C "$ROOT" status --porcelain --untracked-files=no -- . ':!docs' 2>/dev/null >"$OUT/dirty.txt" || true
fi

# ---------------------------------------------------------------- build
if [ $BUILD_IT = 1 ]; then
    log "building release in $BUILD"
    if [ ! -f "$BUILD/build.ninja" ]; then
        meson setup "$BUILD" "$ROOT" --buildtype=release -Dtests=false >"$OUT/build.log" 2>&1
    fi
    ninja -C "$BUILD" >>"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
fi
if [ ! -x "$LG" ]; then
    # bench/meson.build not wired into the top-level build: compile directly
    mkdir -p "$BUILD/bench"
    cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -o "$LG" "$ROOT/bench/loadgen.c" -lpthread -lm
fi

# ---------------------------------------------------------------- traffic
HASH=$(sha1sum "$ROOT/bench/otlp_traffic.py" | cut -c1-12)
TRAFFIC=$BUILD/bench-traffic-$HASH
if [ ! -f "$TRAFFIC/index-mixed.tsv" ]; then
    log "synthesizing traffic into $TRAFFIC"
    $PY "$ROOT/bench/otlp_traffic.py" requests --out "$TRAFFIC" >"$OUT/traffic.txt"
fi

# ---------------------------------------------------------------- service helpers
SVC_PID=""
metric() { # metric NAME [LABEL-FILTER]: sum of the series of NAME on /metrics
    curl -s --max-time 5 "http://127.0.0.1:$CTL_PORT/metrics" |
        awk -v n="$1" -v f="${2:-}" '$1 !~ /^#/ { split($1, a, "{"); if (a[1] == n && (f == "" || index($1, f))) s += $2 } END { printf "%.0f\n", s }'
}
metric_float() {
    curl -s --max-time 5 "http://127.0.0.1:$CTL_PORT/metrics" |
        awk -v n="$1" '$1 !~ /^#/ { split($1, a, "{"); if (a[1] == n) { s += $2; c++ } } END { if (c) printf "%.6f\n", s / c; else print 0 }'
}
proc_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_s() { # user+system seconds of a process
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}
runq_s() { # seconds the process's threads spent runnable but waiting for a CPU (schedstat)
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $2 } END { printf "%.6f\n", s / 1e9 }'
}
huge_used_kb() { awk '/^HugePages_Total/ {t=$2} /^HugePages_Free/ {f=$2} /^Hugepagesize/ {s=$2} END {print (t-f)*s}' /proc/meminfo; }

write_config() { # write_config FILE MODE WORKERS [EAL_ARGS]
    cat >"$1" <<EOF
service:
  log_level: warn
  data_dir: $OUT/data
  shutdown_timeout_ms: 2000
receiver:
  host: 127.0.0.1
  http_port: $([ "$2" = dpdk ] && echo 4318 || echo "$HTTP_PORT") # dpdk: the userspace stack's port
  grpc_port: ${GRPC_PORT_CFG:-0}
dataplane:
  mode: $2
  workers: $3
  cores: "${SVC_CORES:-}"
EOF
    if [ "$2" = dpdk ]; then
        cat >>"$1" <<EOF
  dpdk:
    eal_args: "$4"
    ip: 198.18.0.2
    netmask: 255.254.0.0
    mbufs: 65536
    max_conns_per_lcore: 4096
EOF
        # a pcap of whole conversations: the ISNs must be the pcap's (insecure, bench only)
        case $4 in *net_pcap*) echo "    replay_isn: true" >>"$1" ;; esac
    fi
    cat >>"$1" <<EOF
batch:
  max_queue_size: 65536
  max_export_batch_size: 8192
exporter:
  protocol: discard
control:
  host: 127.0.0.1
  port: $CTL_PORT
EOF
}

start_service() { # start_service CONFIG LOG
    "$SVC" --config "$1" >"$2" 2>&1 &
    SVC_PID=$!
    for _ in $(seq 1 100); do
        if curl -sf --max-time 1 "http://127.0.0.1:$CTL_PORT/health/ready" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$SVC_PID" 2>/dev/null; then
            echo "service exited at start; log:" >&2; tail -20 "$2" >&2; SVC_PID=""; return 1
        fi
        sleep 0.1
    done
    echo "service not ready after 10 s" >&2
    return 1
}
stop_service() {
    [ -n "$SVC_PID" ] || return 0
    kill -TERM "$SVC_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SVC_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SVC_PID" 2>/dev/null || true
    wait "$SVC_PID" 2>/dev/null || true
    SVC_PID=""
}
trap 'stop_service; rm -f "${OTLP_BENCH_SELF:-}"' EXIT

# run_socket NAME WORKERS INDEX [loadgen args...]: one socket-mode scenario
# against a fresh service; appends one JSON object to $RESULTS.
run_socket() {
    local name=$1 workers=$2 index=$3
    shift 3
    local conf=$OUT/$name.yaml
    write_config "$conf" socket "$workers"
    start_service "$conf" "$OUT/$name.service.log" || return 1
    local la0 cpu0 acc0 la1 cpu1 acc1 hwm rss w0 w1 rq0 rq1
    la0=$(cut -d' ' -f1 /proc/loadavg)
    w0=$(date +%s.%N)
    cpu0=$(cpu_s "$SVC_PID")
    rq0=$(runq_s "$SVC_PID")
    acc0=$(metric otlp_spans_accepted_total)
    log "$name: workers=$workers $(basename "$index") $*"
    ${LG_PREFIX:-} "$LG" --index "$index" --label "$name" "$@" "http://127.0.0.1:$HTTP_PORT" \
        >"$OUT/$name.json" 2>"$OUT/$name.txt" || true
    cpu1=$(cpu_s "$SVC_PID")
    rq1=$(runq_s "$SVC_PID")
    curl -s --max-time 5 "http://127.0.0.1:$CTL_PORT/metrics" >"$OUT/$name.metrics" || true
    w1=$(date +%s.%N)
    acc1=$(metric otlp_spans_accepted_total)
    la1=$(cut -d' ' -f1 /proc/loadavg)
    hwm=$(proc_kb "$SVC_PID" VmHWM)
    rss=$(proc_kb "$SVC_PID" VmRSS)
    stop_service
    cat "$OUT/$name.txt" >&2
    $PY - "$OUT/$name.json" "$workers" "$la0" "$la1" "$cpu0" "$cpu1" "$acc0" "$acc1" "$hwm" "$rss" \
        "$(huge_used_kb)" "$w0" "$w1" "$rq0" "$rq1" "$OUT/$name.metrics" >>"$RESULTS" <<'EOF'
import json, sys, re
f, workers, la0, la1, c0, c1, a0, a1, hwm, rss, huge, w0, w1, rq0, rq1, mf = sys.argv[1:]
j = json.loads(open(f).read().strip().splitlines()[-1])
# in-service time (first byte of the request to its response queued), from the
# service's own histogram: the bucket bound under which 99 % of requests fall
buckets = {}
for line in open(mf):
    m = re.match(r'http_request_duration_seconds_bucket\{.*le="([^"]+)"\} (\S+)', line)
    if m:
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        buckets[le] = buckets.get(le, 0) + float(m.group(2))
tot = buckets.get(float("inf"), 0)
svc_p99 = next((le for le in sorted(buckets) if tot and buckets[le] >= 0.99 * tot), None)
j["svc_p99_le_ms"] = None if svc_p99 is None else svc_p99 * 1000
j.update(kind="socket", workers=int(workers), load_start=float(la0), load_end=float(la1),
         svc_cpu_s=float(c1) - float(c0), svc_cores=(float(c1) - float(c0)) / (float(w1) - float(w0)),
         svc_spans_accepted=int(a1) - int(a0),
         svc_runq_wait_per_s=(float(rq1) - float(rq0)) / (float(w1) - float(w0)),
         peak_rss_kb=int(hwm), rss_end_kb=int(rss), hugepages_kb=int(huge))
print(json.dumps(j))
EOF
}

jget() { $PY -c 'import json,sys; j=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(eval(sys.argv[2], {}, j))' "$@"; }

BEST_W=2
MAX_RPS=0
MAX_W1=0
# ---------------------------------------------------------------- (a) max throughput
if want max; then
    for w in 1 2; do
        run_socket "max-w$w" "$w" "$TRAFFIC/index-traces-100.tsv" -c "$CONNS" -d "$DUR" -w 2
        rps=$(jget "$OUT/max-w$w.json" requests_per_s)
        [ $w = 1 ] && MAX_W1=$rps
        if $PY -c "import sys; sys.exit(0 if float('$rps') > float('$MAX_RPS') else 1)"; then
            MAX_RPS=$rps; BEST_W=$w
        fi
    done
fi
# ---------------------------------------------------------------- (b) latency at 50% / 90%
if want latency; then
    if [ "$MAX_RPS" = 0 ]; then
        run_socket "max-w2" 2 "$TRAFFIC/index-traces-100.tsv" -c "$CONNS" -d "$DUR" -w 2
        MAX_RPS=$(jget "$OUT/max-w2.json" requests_per_s); BEST_W=2
    fi
    for pct in 50 90; do
        rate=$($PY -c "print(round(float('$MAX_RPS') * $pct / 100))")
        run_socket "lat$pct-w$BEST_W" "$BEST_W" "$TRAFFIC/index-traces-100.tsv" \
            -c $((CONNS * 2)) -d "$DUR" -w 2 -R "$rate"
    done
    # 50% / 90% of the one-worker maximum with that worker pinned to CPU 1 and
    # the loadgen to CPU 0, to separate the service's own latency from
    # run-queue waits on the shared CPUs.
    if [ "$(nproc)" -ge 2 ] && [ "$MAX_W1" != 0 ]; then
        for pct in 50 90; do
            rate=$($PY -c "print(round(float('$MAX_W1') * $pct / 100))")
            SVC_CORES=1 LG_PREFIX="taskset -c 0" run_socket "lat$pct-w1-pinned" 1 \
                "$TRAFFIC/index-traces-100.tsv" -c $((CONNS * 2)) -d "$DUR" -w 2 -R "$rate"
        done
    fi
fi
# ---------------------------------------------------------------- (c) gzip ingest
if want gzip; then
    for w in 1 2; do
        run_socket "gzip-w$w" "$w" "$TRAFFIC/index-traces-100-gzip.tsv" -c "$CONNS" -d "$DUR" -w 2
    done
fi
# ---------------------------------------------------------------- OTLP/gRPC (h2load)
# The same 100-span request as one gRPC message, unary Export calls over 4
# connections x 16 streams (h2load, nghttp2-client), 1 and 2 workers.
# spans/s from otlp_spans_accepted_total{protocol="grpc"}; h2load reports
# the mean and spread of the call time, not percentiles.
run_grpc() { # run_grpc NAME WORKERS CALLS
    local name=$1 workers=$2 calls=$3 gport=${OTLP_BENCH_GRPC_PORT:-24317}
    local conf=$OUT/$1.yaml framed=$OUT/traces-100.grpc
    $PY -c 'import struct,sys; b=open(sys.argv[1],"rb").read(); open(sys.argv[2],"wb").write(b"\0"+struct.pack(">I",len(b))+b)' \
        "$TRAFFIC/traces-100-00.pb" "$framed"
    GRPC_PORT_CFG=$gport write_config "$conf" socket "$workers"
    start_service "$conf" "$OUT/$name.service.log" || return 1
    local la0 la1 cpu0 cpu1 acc0 acc1 w0 w1 hwm
    la0=$(cut -d' ' -f1 /proc/loadavg)
    acc0=$(metric otlp_spans_accepted_total 'protocol="grpc"')
    cpu0=$(cpu_s "$SVC_PID")
    w0=$(date +%s.%N)
    log "$name: workers=$workers h2load -n $calls -c 4 -m 16"
    h2load -n "$calls" -c 4 -m 16 -d "$framed" -H 'content-type: application/grpc' -H 'te: trailers' \
        "http://127.0.0.1:$gport/opentelemetry.proto.collector.trace.v1.TraceService/Export" \
        >"$OUT/$name.txt" 2>&1 || true
    w1=$(date +%s.%N)
    cpu1=$(cpu_s "$SVC_PID")
    acc1=$(metric otlp_spans_accepted_total 'protocol="grpc"')
    la1=$(cut -d' ' -f1 /proc/loadavg)
    hwm=$(proc_kb "$SVC_PID" VmHWM)
    stop_service
    $PY - "$OUT/$name.txt" "$name" "$workers" "$la0" "$la1" "$cpu0" "$cpu1" "$acc0" "$acc1" "$w0" "$w1" "$hwm" \
        >>"$RESULTS" <<'EOF'
import json, re, sys
f, name, workers, la0, la1, c0, c1, a0, a1, w0, w1, hwm = sys.argv[1:]
t = open(f).read()
m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", t)
secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1) if m else float(w1) - float(w0)
ok = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", t)
rt = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", t)
spans = int(a1) - int(a0)
cpu = float(c1) - float(c0)
print(json.dumps(dict(kind="grpc", label=name, workers=int(workers), load_start=float(la0),
    load_end=float(la1), requests_per_s=float(m.group(3)) if m else 0.0,
    spans_per_s=spans / secs if secs else 0.0, svc_cores=cpu / (float(w1) - float(w0)),
    spans_per_cpu_s=spans / cpu if cpu else 0.0,
    non2xx=(int(ok.group(2)) + int(ok.group(3)) + int(ok.group(4))) if ok else -1,
    call_time=dict(min=rt.group(1), max=rt.group(2), mean=rt.group(3), sd=rt.group(4)) if rt else {},
    peak_rss_kb=int(hwm))))
EOF
}
if want grpc; then
    if command -v h2load >/dev/null 2>&1; then
        for w in 1 2; do
            run_grpc "grpc-w$w" "$w" $((DUR * 4000))
        done
    else
        log "grpc: h2load not installed (nghttp2-client); scenario skipped"
        echo '{"kind":"grpc","label":"grpc","skipped":"h2load not installed"}' >>"$RESULTS"
    fi
fi
# ---------------------------------------------------------------- all signals, 1 KB .. 1 MB
MIXED_RPS=0
if want mixed || want soak; then
    run_socket "mixed-w2" 2 "$TRAFFIC/index-mixed.tsv" -c "$CONNS" -d "$DUR" -w 2
    MIXED_RPS=$(jget "$OUT/mixed-w2.json" requests_per_s)
fi
# ---------------------------------------------------------------- (d) soak
if want soak; then
    name=soak
    conf=$OUT/$name.yaml
    write_config "$conf" socket 2
    start_service "$conf" "$OUT/$name.service.log"
    rate=$($PY -c "print(max(1, round(float('$MIXED_RPS') * 0.5)))")
    la0=$(cut -d' ' -f1 /proc/loadavg)
    log "soak: ${SOAK} s, mixed set at $rate req/s (50% of max), RSS every 10 s"
    # the loadgen runs longer than the soak and is stopped (SIGINT) after the last sample
    "$LG" --index "$TRAFFIC/index-mixed.tsv" --label soak -c "$CONNS" -d "$((SOAK + 60))" -R "$rate" \
        "http://127.0.0.1:$HTTP_PORT" >"$OUT/$name.json" 2>"$OUT/$name.txt" &
    LGPID=$!
    echo "t_s,vmrss_kb,metrics_rss_bytes,spans_accepted" >"$OUT/soak-rss.csv"
    s0=$(date +%s)
    t=0
    while [ $t -lt "$SOAK" ] && kill -0 $LGPID 2>/dev/null; do
        t=$((t + 10))
        sleep $((s0 + t - $(date +%s) > 0 ? s0 + t - $(date +%s) : 0))
        echo "$t,$(proc_kb "$SVC_PID" VmRSS),$(metric process_resident_memory_bytes),$(metric otlp_spans_accepted_total)" >>"$OUT/soak-rss.csv"
    done
    kill -INT $LGPID 2>/dev/null || true
    wait $LGPID || true
    la1=$(cut -d' ' -f1 /proc/loadavg)
    hwm=$(proc_kb "$SVC_PID" VmHWM)
    cpu=$(cpu_s "$SVC_PID")
    stop_service
    cat "$OUT/$name.txt" >&2
    $PY - "$OUT/$name.json" "$OUT/soak-rss.csv" "$la0" "$la1" "$hwm" "$cpu" >>"$RESULTS" <<'EOF'
import csv, json, sys
f, csvf, la0, la1, hwm, cpu = sys.argv[1:]
j = json.loads(open(f).read().strip().splitlines()[-1])
rows = list(csv.DictReader(open(csvf)))
at30 = next((r for r in rows if int(r["t_s"]) >= 30), rows[0] if rows else None)
end = rows[-1] if rows else None
soak = {}
if at30 and end:
    a, b = int(at30["vmrss_kb"]), int(end["vmrss_kb"])
    ma, mb = int(at30["metrics_rss_bytes"]), int(end["metrics_rss_bytes"])
    soak = dict(rss_30s_kb=a, rss_end_kb=b, rss_diff_pct=(b - a) * 100.0 / a, t_end_s=int(end["t_s"]),
                t_30s=int(at30["t_s"]),
                metrics_rss_30s=ma, metrics_rss_end=mb,
                metrics_rss_diff_pct=(mb - ma) * 100.0 / ma if ma else 0.0,
                rss_min_kb=min(int(r["vmrss_kb"]) for r in rows), rss_max_kb=max(int(r["vmrss_kb"]) for r in rows))
j.update(kind="soak", workers=2, load_start=float(la0), load_end=float(la1), peak_rss_kb=int(hwm),
         svc_cpu_s=float(cpu), hugepages_kb=0, soak=soak)
print(json.dumps(j))
EOF
fi

# ---------------------------------------------------------------- (e) DPDK replay (net_pcap)
dpdk_replay() { # dpdk_replay NAME PCAP
    local name=$1 pcap=$2 conf=$OUT/$1.yaml
    write_config "$conf" dpdk 1 "--no-huge -m $DPDK_MEM --no-pci --vdev=net_pcap0,rx_pcap=$pcap,infinite_rx=1"
    start_service "$conf" "$OUT/$name.service.log" || return 1
    sleep 2 # warm-up: infinite_rx loads the pcap into mbufs first
    local la0 t0 s0 b0 p0 t1 s1 b1 p1 busy hwm huge rst nconn wtid c0 c1 sc0 sc1 rq0 rq1
    la0=$(cut -d' ' -f1 /proc/loadavg)
    # the worker lcore's thread (DPDK names it rte-worker-N): its own CPU time,
    # so cycles/span does not count the time other processes held its CPU
    wtid=$(grep -l '^rte-worker' /proc/"$SVC_PID"/task/*/comm 2>/dev/null | head -1 | cut -d/ -f5)
    c0=$(awk '{print $14 + $15}' /proc/"$SVC_PID"/task/"$wtid"/stat)
    rq0=$(awk '{print $2}' /proc/"$SVC_PID"/task/"$wtid"/schedstat)
    sc0=$(cpu_s "$SVC_PID")
    curl -s "http://127.0.0.1:$CTL_PORT/metrics" >"$OUT/$name.metrics0"
    t0=$(date +%s.%N)
    log "$name: replay $(basename "$pcap") on 1 worker lcore for $DUR s"
    sleep "$DUR"
    curl -s "http://127.0.0.1:$CTL_PORT/metrics" >"$OUT/$name.metrics1"
    t1=$(date +%s.%N)
    c1=$(awk '{print $14 + $15}' /proc/"$SVC_PID"/task/"$wtid"/stat)
    rq1=$(awk '{print $2}' /proc/"$SVC_PID"/task/"$wtid"/schedstat)
    sc1=$(cpu_s "$SVC_PID")
    busy=$(metric_float otlp_lcore_busy_ratio)
    hwm=$(proc_kb "$SVC_PID" VmHWM)
    la1=$(cut -d' ' -f1 /proc/loadavg)
    stop_service
    $PY - "$name" "$OUT/$name.metrics0" "$OUT/$name.metrics1" "$t0" "$t1" "$busy" "$hwm" "$la0" "$la1" \
        "$pcap.meta" "$(( c1 - c0 ))" "$(getconf CLK_TCK)" "$(( rq1 - rq0 ))" "$sc0" "$sc1" >>"$RESULTS" <<'EOF'
import json, sys, re, subprocess
name, m0, m1, t0, t1, busy, hwm, la0, la1, meta, lcore_ticks, clk_tck, runq_ns, sc0, sc1 = sys.argv[1:]
def load(p):
    d = {}
    for line in open(p):
        if line.startswith("#") or not line.strip():
            continue
        k, v = line.rsplit(" ", 1)
        d[k] = float(v)
    return d
a, b = load(m0), load(m1)
def delta(prefix):
    return sum(b[k] - a.get(k, 0) for k in b if k == prefix or k.startswith(prefix + "{"))
secs = float(t1) - float(t0)
spans = delta("otlp_spans_accepted_total")
reqs = delta("http_requests_total")
mt = dict(l.split("\t") for l in open(meta).read().split("\n") if l)
http_bytes_per_req = int(mt["http_bytes"]) / int(mt["requests"])
mhz = 0.0
for l in open("/proc/cpuinfo"):
    if l.startswith("cpu MHz"):
        mhz = float(l.split(":")[1]); break
cycles = float(busy) * secs * mhz * 1e6
lcore_cpu_s = int(lcore_ticks) / int(clk_tck)  # the worker thread's own CPU time
cpu_cycles = lcore_cpu_s * mhz * 1e6
non2xx = sum(b[k] - a.get(k, 0) for k in b if k.startswith("http_requests_total{") and 'code="200"' not in k)
drops = {k: b[k] - a.get(k, 0) for k in b if k.startswith("otlp_net_drops_total") and b[k] - a.get(k, 0) > 0}
ev = {k.split('"')[1]: b[k] - a.get(k, 0) for k in b if k.startswith("otlp_net_events_total")}
print(json.dumps(dict(kind="dpdk", label=name, workers=1, duration_s=secs, spans_per_s=spans / secs,
    requests_per_s=reqs / secs, payload_gbit_per_s=reqs * http_bytes_per_req * 8 / secs / 1e9,
    rx_packets_per_s=delta("otlp_port_rx_packets_total") / secs, lcore_busy=float(busy),
    cycles_per_span=cycles / spans if spans else None, cycles_per_request=cycles / reqs if reqs else None,
    lcore_cpu=lcore_cpu_s / secs, lcore_runq_wait=int(runq_ns) / 1e9 / secs,
    svc_cpu=(float(sc1) - float(sc0)) / secs, non_2xx=non2xx,
    spans_per_lcore_cpu_s=spans / lcore_cpu_s if lcore_cpu_s else None,
    cpu_cycles_per_span=cpu_cycles / spans if spans else None,
    reopened=ev.get("tcp_reopened", 0),
    drops=drops, tcp_resets_tx=ev.get("tcp_resets_tx", 0), tcp_syn_rx=ev.get("tcp_syn_rx", 0),
    peak_rss_kb=int(hwm), hugepages_kb=int(b.get("otlp_hugepages_used_bytes", 0) / 1024),
    load_start=float(la0), load_end=float(la1))))
EOF
}
DPDK_OK=0
MAC=02:70:63:61:70:00 # net_pcap's default; asked from the service below when DPDK mode runs
if want dpdk || want replay; then
    # the exact HTTP 200 of this build, for the client's ACK numbers in the pcap
    write_config "$OUT/resp.yaml" socket 1
    start_service "$OUT/resp.yaml" "$OUT/resp.service.log"
    $PY - "$HTTP_PORT" "$TRAFFIC/traces-100-00.pb" "$OUT/response-200.bin" <<'EOF'
import socket, sys
port, body, out = int(sys.argv[1]), open(sys.argv[2], "rb").read(), sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: 198.18.0.2:4318\r\nUser-Agent: OTel-OTLP-Exporter-Go/1.33.0\r\n"
          b"Content-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
r = b""
while b"\r\n\r\n" not in r:
    r += s.recv(4096)
open(out, "wb").write(r)
EOF
    stop_service
fi
if want dpdk; then
    $PY -c 'import struct,sys; open(sys.argv[1],"wb").write(struct.pack("<IHHiIII",0xa1b2c3d4,2,4,0,0,65535,1))' "$OUT/empty.pcap"
    write_config "$OUT/mac.yaml" dpdk 1 "--no-huge -m $DPDK_MEM --no-pci --vdev=net_pcap0,rx_pcap=$OUT/empty.pcap"
    sed -i 's/log_level: warn/log_level: info/' "$OUT/mac.yaml" # the port's MAC is logged at info
    if ! "$SVC" validate --config "$OUT/mac.yaml" >"$OUT/dpdk-validate.txt" 2>&1; then
        log "dpdk: this build does not know dataplane.mode dpdk; scenario skipped"
        echo '{"kind":"dpdk","label":"replay-dpdk","skipped":"dataplane.mode dpdk not supported by this build"}' >>"$RESULTS"
    elif start_service "$OUT/mac.yaml" "$OUT/mac.service.log"; then
        MAC=$(grep -o '"mac":"[0-9a-f:]*"' "$OUT/mac.service.log" | head -1 | cut -d'"' -f4 || true)
        stop_service
        DPDK_OK=1
        MAC=${MAC:-02:70:63:61:70:00}
    else
        log "dpdk: the service did not start in dpdk mode (see $OUT/mac.service.log)"
        echo '{"kind":"dpdk","label":"replay-dpdk","skipped":"service did not start in dpdk mode"}' >>"$RESULTS"
    fi
fi
if want dpdk || want replay; then
    for set in traces-100 traces-100-gzip; do
        $PY "$ROOT/bench/otlp_traffic.py" pcap --index "$TRAFFIC/index-$set.tsv" \
            --out "$OUT/$set.pcap" --dst-mac "$MAC" --flows 64 --requests-per-flow 8 --replay-isn \
            --response-file "$OUT/response-200.bin" >>"$OUT/pcap.txt"
    done
fi
if [ $DPDK_OK = 1 ]; then
    for set in traces-100 traces-100-gzip; do
        dpdk_replay "replay-dpdk-$set" "$OUT/$set.pcap"
    done
fi

# ---------------------------------------------------------------- in-process replay, by layer
# One thread runs what a DPDK worker lcore runs (lib/net -> receiver -> pipeline,
# discard exporter on its own thread): net = pcap frames into the stack; http =
# the HTTP bytes into the receiver; scan = inflate + validate + batch only.
if want replay && [ -x "$BUILD/bench/otlp-replay" ]; then
    RS=$((DUR / 2 > 3 ? DUR / 2 : 3))
    for set in traces-100 traces-100-gzip; do
        for layer in net http scan; do
            log "inproc-$layer-$set: $RS s"
            if [ $layer = net ]; then src=(--pcap "$OUT/$set.pcap"); else src=(--index "$TRAFFIC/index-$set.tsv"); fi
            "$BUILD/bench/otlp-replay" --layer $layer "${src[@]}" --seconds "$RS" \
                --label "inproc-$layer-$set" >>"$RESULTS" 2>>"$OUT/replay.txt" || true
        done
    done
fi

# ---------------------------------------------------------------- report
$PY - "$RESULTS" "$ROOT" "$OUT" "$DUR" "$SOAK" <<'EOF' | tee "$OUT/table.md"
import json, subprocess, sys, datetime, os
res, root, out, dur, soak = sys.argv[1:]
if os.path.exists(os.path.join(out, "params.txt")):
    dur, soak = open(os.path.join(out, "params.txt")).read().split()
rows = [json.loads(l) for l in open(res) if l.strip()]
def sh(c):
    try:
        return subprocess.check_output(c, shell=True, cwd=root, text=True, stderr=subprocess.DEVNULL).strip()
    except Exception:
        return "?"
model = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
commit = open(os.path.join(out, "commit.txt")).read().strip() if os.path.exists(os.path.join(out, "commit.txt")) else "?"
dirty = open(os.path.join(out, "dirty.txt")).read().split() if os.path.exists(os.path.join(out, "dirty.txt")) else []
if dirty:
    commit += " + uncommitted changes in " + ", ".join(dirty[1::2][:6]) + (" ..." if len(dirty) > 12 else "")
print("## Results %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
print()
print("- machine: %s CPUs, %s, %s" % (sh("nproc"), model, sh("uname -r")))
print("- commit: %s; build: release (build-bench); runs of %s s after 2 s warm-up, soak %s s" % (commit, dur, soak))
print("- service: exporter `discard`, batch.max_queue_size 65536, max_export_batch_size 8192; "
      "loadgen on the same 2 CPUs")
print()
print("| scenario | workers | load | req/s | items/s | spans/s | svc CPU | svc runq wait | spans/CPU-s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | in-service p99 | non-2xx | peak RSS MB | hugepages MB (DPDK memseg) |")
print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
def f(x, d=0):
    return "-" if x is None else ("{:,.%df}" % d).format(x)
for r in rows:
    if r.get("skipped"):
        print("| %s | - | - | skipped: %s |||||||||||||||" % (r["label"], r["skipped"]))
        continue
    if r["kind"] in ("socket", "soak"):
        lat = r["latency_ms"]
        svc_cores = r.get("svc_cores")
        spc = r["spans_per_s"] / svc_cores if svc_cores else None
        label = r["label"] + (" @%.0f req/s" % r["rate_target"] if r["mode"] == "open" else " (closed loop)")
        rq = r.get("svc_runq_wait_per_s")
        sp = r.get("svc_p99_le_ms")
        print("| %s | %d | %.1f-%.1f | %s | %s | %s | %s | %s | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %s | %d | %.0f | %.0f |" % (
            label, r["workers"], r["load_start"], r["load_end"], f(r["requests_per_s"]), f(r["items_per_s"]),
            f(r["spans_per_s"]), "-" if svc_cores is None else "%.2f" % svc_cores,
            "-" if rq is None else "%.0f ms/s" % (rq * 1000), f(spc),
            lat["p50"], lat["p90"], lat["p99"], lat["p99_9"], lat["max"],
            "-" if sp is None else "<= %g ms" % sp, r["non2xx"],
            r["peak_rss_kb"] / 1024, r["hugepages_kb"] / 1024))
    elif r["kind"] == "dpdk" and not r["spans_per_s"]:
        nc = sum(v for k, v in r["drops"].items() if "tcp_no_conn" in k)
        print("| %s (net_pcap, 1 lcore) | 1 | %.1f-%.1f | blocked: 0 spans accepted; %s of %s rx packets/s dropped as tcp_no_conn "
              "and answered with RST (the pcap cannot know the SYN-cookie ISN) |||||||||||||| %.0f | %.0f |" % (
            r["label"], r["load_start"], r["load_end"], f(nc / r["duration_s"]), f(r["rx_packets_per_s"]),
            r["peak_rss_kb"] / 1024, r["hugepages_kb"] / 1024))
    elif r["kind"] == "dpdk" and "lcore_cpu" in r:
        print("| %s (net_pcap, 1 lcore) | 1 | %.1f-%.1f | %s | - | %s | %.2f (lcore %.2f) | %.0f ms/s | %s per lcore CPU-s | - | - | - | - | - | - | %d | %.0f | %.0f |" % (
            r["label"], r["load_start"], r["load_end"], f(r["requests_per_s"]), f(r["spans_per_s"]),
            r["svc_cpu"], r["lcore_cpu"], r["lcore_runq_wait"] * 1000, f(r["spans_per_lcore_cpu_s"]),
            r["non_2xx"], r["peak_rss_kb"] / 1024, r["hugepages_kb"] / 1024))
    elif r["kind"] == "dpdk":
        print("| %s (net_pcap, 1 lcore) | 1 | %.1f-%.1f | %s | - | %s | busy %.2f | - | %s cycles/span | - | - | - | - | - | - | - | %.0f | %.0f |" % (
            r["label"], r["load_start"], r["load_end"], f(r["requests_per_s"]), f(r["spans_per_s"]),
            r["lcore_busy"], f(r["cycles_per_span"]), r["peak_rss_kb"] / 1024, r["hugepages_kb"] / 1024))
    elif r["kind"] == "grpc":
        ct = r.get("call_time", {})
        print("| %s (OTLP/gRPC, h2load 4 conns x 16 streams) | %d | %.1f-%.1f | %s | - | %s | %.2f | - | %s | mean %s | - | - | - | max %s | - | %d | %.0f | 0 |" % (
            r["label"], r["workers"], r["load_start"], r["load_end"], f(r["requests_per_s"]),
            f(r["spans_per_s"]), r["svc_cores"], f(r["spans_per_cpu_s"]), ct.get("mean", "?"),
            ct.get("max", "?"), r["non2xx"], r["peak_rss_kb"] / 1024))
    elif r["kind"] == "inproc":
        print("| %s (in-process, 1 thread) | 1 | %.1f-%.1f | %s | - | %s | %.2f | - | %s | - | - | - | - | - | - | - | %.0f | 0 |" % (
            r["label"], r["load_start"], r["load_end"], f(r["requests_per_s"]), f(r["spans_per_s"]),
            r["cpu_cores"], f(r["spans_per_cpu_s"]), r["peak_rss_kb"] / 1024))
print()
for r in rows:
    if r.get("kind") == "soak" and r.get("soak"):
        s = r["soak"]
        print("Soak: VmRSS %.1f MB at %d s, %.1f MB at %d s: %+.2f %% (/metrics process_resident_memory_bytes: %+.2f %%); "
              "min %.1f MB, max %.1f MB over the run. Samples: soak-rss.csv." % (
                  s["rss_30s_kb"] / 1024, s.get("t_30s", 30), s["rss_end_kb"] / 1024, s["t_end_s"], s["rss_diff_pct"],
                  s["metrics_rss_diff_pct"], s["rss_min_kb"] / 1024, s["rss_max_kb"] / 1024))
    if r.get("kind") == "dpdk" and not r.get("skipped"):
        print("%s: %.2f Gbit/s HTTP payload, %s rx packets/s, %s cycles/request, TCP SYNs %d, RSTs sent %d, drops %s" % (
            r["label"], r["payload_gbit_per_s"], f(r["rx_packets_per_s"]), f(r["cycles_per_request"]),
            r["tcp_syn_rx"], r["tcp_resets_tx"], json.dumps(r["drops"])))
        if "lcore_cpu" in r:
            print("  worker lcore: %.2f CPU, %.0f ms/s runnable but waiting; %s cycles/span by its CPU time "
                  "(%s by busy x wall clock); %s spans per lcore CPU-s; non-2xx %d; SYNs that reopened a 4-tuple %d" % (
                      r["lcore_cpu"], r["lcore_runq_wait"] * 1000, f(r["cpu_cycles_per_span"]),
                      f(r["cycles_per_span"]), f(r["spans_per_lcore_cpu_s"]), r["non_2xx"], r["reopened"]))
print()
print("Raw results: %s" % out)
EOF
