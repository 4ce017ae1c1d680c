# SPDX-License-Identifier: Apache-2.0
"""memory_limiter in DPDK mode: the upstream hangs while four clients in the
namespace post ~160 KB requests into the userspace stack as fast as they
can. Above the soft limit the stack refuses with 503 + Retry-After and
closes the TCP window; the service's memory stays under the hard limit plus
the margin docs/operations.md states, a request held back by the closed
window gets its 503 after dataplane.dpdk.throttle_timeout_ms, and every span
that got a 200 (with no partial_success) reaches the upstream once it
answers again. With --no-huge, DPDK's memory is part of
the RSS, so the limit is set relative to the RSS after start-up."""

import struct
import subprocess
import time

from conftest import SERVICE_IP, DpdkRig, itlib, report

SPIKE_MIB, HEADROOM_MIB, MARGIN_MIB = 16, 48, 24
N_BODIES, SPANS, PAD = 240, 100, 1500

CLIENT = r"""
import http.client, sys, time
first, last, folder, out, host = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
conn, refused, slowest = None, 0, 0.0
with open(out, "a") as acked:
    for i in range(first, last):
        body = open("%s/b-%d.pb" % (folder, i), "rb").read()
        t0 = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, 4318, timeout=30)
            conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
            r = conn.getresponse()
            payload = r.read()
            if r.status == 200 and payload:
                # partial_success: the service rejected some of it
                acked.write("partial %d %s\n" % (i, payload.hex()))
            elif r.status == 200:
                acked.write("%d\n" % i)
                acked.flush()
            elif r.status in (429, 503) and r.getheader("Retry-After"):
                refused += 1
            else:
                acked.write("bad %d\n" % r.status)
            if r.getheader("Connection", "").lower() == "close":
                conn = None
        except (OSError, http.client.HTTPException):
            conn = None
            time.sleep(0.05)
        slowest = max(slowest, time.monotonic() - t0)
print(refused, slowest)
"""


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def body(first_id):
    from otlp_pb import trace_service_pb2
    req = trace_service_pb2.ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    t = time.time_ns()
    for i in range(SPANS):
        sp = ss.spans.add()
        sp.trace_id = struct.pack(">QQ", 0xfeed, first_id + i)
        sp.span_id = struct.pack(">Q", first_id + i + 1)  # an all-zero id is invalid
        sp.name = "overload"
        sp.start_time_unix_nano, sp.end_time_unix_nano = t, t + 1000
        kv = sp.attributes.add()
        kv.key, kv.value.string_value = "pad", "x" * PAD
    return req.SerializeToString()


def test_memory_limiter_in_dpdk_mode(tmp_path, upstream, request):
    # 1. The RSS of an idle service in this configuration.
    (tmp_path / "probe").mkdir()
    probe = DpdkRig(tmp_path / "probe", upstream=upstream)
    request.addfinalizer(probe.stop)
    probe.start()
    time.sleep(1.0)
    base_mib = vm(probe.gw.proc.pid, "VmRSS") // (1 << 20)
    probe.stop()
    limit = base_mib + HEADROOM_MIB
    # 2. The same with the limiter on.
    r = DpdkRig(tmp_path, upstream=upstream,
                batch={"max_queue_size": 4000000, "max_export_batch_size": 4096,
                       "max_batch_bytes": "2MiB", "batch_timeout_ms": 50,
                       "max_concurrent_exports": 2})
    r.gw.config["memory_limiter"] = {"limit_mib": limit, "spike_limit_mib": SPIKE_MIB,
                                     "check_interval_ms": 20}
    r.gw.config["exporter"]["retry"] = {"initial_interval_ms": 100, "max_interval_ms": 500,
                                        "max_elapsed_ms": 600000}
    request.addfinalizer(r.stop)
    r.start()
    pid = r.gw.proc.pid
    folder = tmp_path / "bodies"
    folder.mkdir()
    for i in range(N_BODIES):
        (folder / ("b-%d.pb" % i)).write_bytes(body(i * SPANS))
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    acked_file = tmp_path / "acked.txt"
    m0 = r.metrics()
    upstream.mode(hang_s=3)  # slower than ingest
    per = N_BODIES // 4
    clients = [subprocess.Popen(["ip", "netns", "exec", r.ns, "/usr/bin/python3", str(script),
                                 str(k * per), str((k + 1) * per), str(folder), str(acked_file),
                                 SERVICE_IP], stdout=subprocess.PIPE) for k in range(4)]
    peak = 0
    while any(c.poll() is None for c in clients):
        peak = max(peak, vm(pid, "VmRSS"))
        time.sleep(0.02)
    outs = [c.stdout.read().decode().split() for c in clients]
    refused = sum(int(o[0]) for o in outs)
    slowest = max(float(o[1]) for o in outs)
    hwm = vm(pid, "VmHWM")
    m1 = r.metrics()
    lines = acked_file.read_text().split("\n")
    odd = [x for x in lines if x.startswith(("bad", "partial"))]
    assert not odd, odd
    acked = [int(x) for x in lines if x.strip()]
    window = m1.value("otlp_tcp_window_closed_total") - m0.value("otlp_tcp_window_closed_total")
    ml_refused = m1.value("otlp_memory_limiter_refused_total") - \
        m0.value("otlp_memory_limiter_refused_total")
    report("dpdk memory limiter: base RSS %d MiB, limit %d MiB (soft %d); peak RSS %.1f MiB, "
           "VmHWM %.1f MiB; %d of %d requests acknowledged, %d refused (503), limiter refusals "
           "%d, TCP window closed %d times; slowest request %.1f s"
           % (base_mib, limit, limit - SPIKE_MIB, peak / 2**20, hwm / 2**20, len(acked),
              N_BODIES, refused, ml_refused, window, slowest))
    assert refused > 0 and ml_refused > 0, "the limiter never refused"
    # Held back by a closed window, a request is answered after
    # throttle_timeout_ms (2 s), well before an SDK's 10 s export timeout.
    assert slowest < 10.0, "a request waited %.1f s for its answer" % slowest
    assert hwm <= (limit + MARGIN_MIB) << 20, "VmHWM %.1f MiB over %d + %d MiB" % (
        hwm / 2**20, limit, MARGIN_MIB)
    # 3. The upstream answers again: everything acknowledged arrives.
    upstream.mode(status=200)
    from otlp_pb import trace_service_pb2
    want = set()
    for i in acked:
        req = trace_service_pb2.ExportTraceServiceRequest()
        req.ParseFromString((folder / ("b-%d.pb" % i)).read_bytes())
        want.update(itlib.otlp_pb.record_key(x) for x in itlib.records_of("traces", req))

    def arrived():
        got = set(itlib.otlp_pb.record_key(x) for x in upstream.records("traces"))
        return want <= got
    try:
        itlib.wait_for(arrived, 120, interval=1.0, what="every acknowledged span at the upstream")
    finally:
        m2 = r.metrics()
        got = set(itlib.otlp_pb.record_key(x) for x in upstream.records("traces"))
        report("after recovery: accepted %d, exported %d, dropped %d, upstream has %d of %d; "
               "export requests %s"
               % (m2.value("otlp_spans_accepted_total"), m2.value("otlp_spans_exported_total"),
                  m2.value("otlp_spans_dropped_total"), len(got & want), len(want),
                  {k.get("result"): v for k, v in m2.series("otlp_export_requests_total")
                   if k.get("signal") == "traces"}))
