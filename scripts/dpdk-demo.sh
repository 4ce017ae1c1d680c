#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# One-command demo of the DPDK data plane: otlp-service on a net_tap port
# (no NIC, no hugepages needed), its TAP moved into a network namespace by
# dpdk-tap-rig.sh, real OTLP traffic sent from inside the namespace with curl
# (protobuf and JSON) and, when node and tests/integration/js/node_modules
# exist, the OpenTelemetry JS SDK; then prints what arrived in the file
# exporter's output and the port/stack metrics. Cleans up on exit.
#
#   sudo scripts/dpdk-demo.sh [path/to/otlp-service]   (default build-dpdk/app/otlp-service)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${1:-${OTLP_SERVICE_BIN:-$root/build-dpdk/app/otlp-service}}"
[[ -x "$bin" ]] || { echo "dpdk-demo: no otlp-service binary at $bin" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "dpdk-demo: needs root (TAP, namespaces)" >&2; exit 2; }

work="$(mktemp -d /tmp/otlp-dpdk-demo.XXXXXX)"
iface="otlpdemo$((RANDOM % 1000))"
ns="otlp-rig-demo-$$"
ctl=$((20000 + RANDOM % 20000))
svc_pid=""
cleanup() {
    if [[ -n "$svc_pid" ]] && kill -0 "$svc_pid" 2>/dev/null; then
        kill -TERM "$svc_pid"
        wait "$svc_pid" 2>/dev/null || true
    fi
    "$root/scripts/dpdk-tap-rig.sh" teardown "$ns" 2>/dev/null || true
    echo "(logs and output kept in $work)"
}
trap cleanup EXIT INT TERM

cat > "$work/otlp.yaml" <<YAML
service:
  data_dir: $work/data
  shutdown_timeout_ms: 3000
receiver:
  grpc_port: 0
control:
  host: 127.0.0.1
  port: $ctl
dataplane:
  mode: dpdk
  workers: 1
  dpdk:
    eal_args: "--no-huge -m 1024 --no-pci --vdev=net_tap0,iface=$iface"
    ip: 198.18.0.2
batch:
  batch_timeout_ms: 100
exporter:
  protocol: file
YAML
mkdir -p "$work/data"
echo "== starting otlp-service (dataplane.mode dpdk, net_tap iface $iface)"
"$bin" --config "$work/otlp.yaml" 2> "$work/service.log" &
svc_pid=$!
"$root/scripts/dpdk-tap-rig.sh" setup "$iface" "$ns" --wait 20 > /dev/null
echo "== namespace $ns: client 198.18.0.1/24 on $iface, service 198.18.0.2"
in_ns() { ip netns exec "$ns" "$@"; }
if command -v ping > /dev/null; then
    in_ns ping -c 2 -i 0.2 -W 2 198.18.0.2 | grep -E "bytes from|packet loss" || true
fi

url=http://198.18.0.2:4318
echo "== curl: OTLP/JSON, 3 spans"
json='{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"dpdk-demo"}}]},
 "scopeSpans":[{"scope":{"name":"demo"},"spans":[
 {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"a","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000001000000"},
 {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","name":"b","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000001000000"},
 {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b176","name":"c","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000001000000"}]}]}]}'
in_ns curl -sS --noproxy '*' -m 10 -w '  -> HTTP %{http_code}\n' -o /dev/null \
    -H 'Content-Type: application/json' --data "$json" "$url/v1/traces"
sent=3
if /usr/bin/python3 -c 'import google.protobuf' 2>/dev/null && command -v protoc > /dev/null; then
    echo "== curl: OTLP/protobuf from bench/gen_request.py, 500 spans"
    /usr/bin/python3 "$root/bench/gen_request.py" --spans 500 --out "$work/req.pb" > /dev/null
    in_ns curl -sS --noproxy '*' -m 10 -w '  -> HTTP %{http_code}\n' -o /dev/null \
        -H 'Content-Type: application/x-protobuf' --data-binary "@$work/req.pb" "$url/v1/traces"
    sent=$((sent + 500))
fi
js="$root/tests/integration/js"
if command -v node > /dev/null && [[ -d "$js/node_modules/@opentelemetry" ]]; then
    # send.js only talks to loopback: a relay on the namespace's own
    # 127.0.0.1:4318 forwards each connection to the service through the TAP.
    echo "== OpenTelemetry JS SDK (tests/integration/js/send.js): 200 spans, via a relay"
    in_ns /usr/bin/python3 -c '
import socket, threading
def pipe(a, b):
    try:
        while (d := a.recv(65536)):
            b.sendall(d)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
ls = socket.create_server(("127.0.0.1", 4318))
while True:
    c, _ = ls.accept()
    u = socket.create_connection(("198.18.0.2", 4318))
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
' &
    relay_pid=$!
    sleep 0.5
    in_ns node "$js/send.js" --endpoint http://127.0.0.1:4318 --signal traces --count 200 \
        --out "$work/js-summary.json" > "$work/js.log" 2>&1 && sent=$((sent + 200)) ||
        echo "  (send.js failed, see $work/js.log)"
    kill "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
fi

sleep 1 # batch_timeout_ms 100: the file exporter writes within a few hundred ms
got=$(/usr/bin/python3 - "$work/data/export" <<'PY'
import glob, json, sys
n = 0
for f in glob.glob(sys.argv[1] + "/traces*"):
    for line in open(f):
        if line.strip():
            for rs in json.loads(line).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    n += len(ss.get("spans", []))
print(n)
PY
)
echo "== arrived in $work/data/export: $got spans (sent $sent)"
echo "== metrics (http://127.0.0.1:$ctl/metrics)"
curl -s "http://127.0.0.1:$ctl/metrics" |
    grep -E '^(otlp_port_(rx|tx)_packets_total|otlp_spans_(received|exported)_total|otlp_net_events_total\{event="(tcp_accepted|icmp_echo_replies|arp_replies_tx)"|otlp_mbuf_in_use|otlp_lcore_busy_ratio|http_requests_total)' | grep -v ' 0$'
[[ "$got" == "$sent" ]]
