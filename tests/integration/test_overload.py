# SPDX-License-Identifier: Apache-2.0
"""memory_limiter (lib/memlimit): an upstream slower than ingest and clients
sending large requests as fast as they can. Clients get 503 with Retry-After
(gRPC: UNAVAILABLE with RetryInfo) instead of the gateway growing past its
limit; every span acknowledged with a 200 reaches the upstream once it
recovers; /metrics shows the refusals. docs/operations.md, "Memory limiter"."""

import os
import signal
import struct
import threading
import time

import pytest

import itlib
import otlp_pb

LIMIT_MIB = 64
SPIKE_MIB = 16
# What may pass the hard limit: allocations between two checks that are not
# reserved up front (batch storage, the exporter's encode and gzip buffers)
# and what the kernel counts late. docs/operations.md documents this margin.
MARGIN_MIB = 24


def proc_status(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


def big_traces(first_id, n, pad):
    """One resource, one scope, n spans with ids first_id.. and a `pad`-byte
    attribute each: a large request whose spans are told apart by id."""
    req = otlp_pb.trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    a = rs.resource.attributes.add()
    a.key = "service.name"
    a.value.string_value = "overload"
    ss = rs.scope_spans.add()
    ss.scope.name = "overload"
    filler = "x" * pad
    t = time.time_ns()
    for i in range(n):
        sp = ss.spans.add()
        sp.trace_id = struct.pack(">QQ", 0x0123456789abcdef, first_id + i)
        sp.span_id = struct.pack(">Q", first_id + i)
        sp.name = "load"
        sp.start_time_unix_nano = t
        sp.end_time_unix_nano = t + 1000
        kv = sp.attributes.add()
        kv.key = "pad"
        kv.value.string_value = filler
    return req.SerializeToString()


def span_ids(records):
    out = []
    for r in records:
        sp = r.get("span") or r.get("item") or r
        sid = sp.get("span_id") or sp.get("spanId")
        out.append(sid)
    return out


def test_overload_refuses_stays_under_limit_and_loses_nothing(upstream, start_gateway):
    gw = start_gateway(
        upstream,
        dataplane={"mode": "socket", "workers": 2},
        memory_limiter={"limit_mib": LIMIT_MIB, "spike_limit_mib": SPIKE_MIB,
                        "check_interval_ms": 20},
        # The queue budget alone would let far more than the limit in.
        batch={"max_queue_size": 4000000, "max_export_batch_size": 4096,
               "max_batch_bytes": "2MiB", "batch_timeout_ms": 50,
               "max_concurrent_exports": 2},
        exporter={"timeout_ms": 1000,
                  "retry": {"initial_interval_ms": 100, "max_interval_ms": 500,
                            "max_elapsed_ms": 600000}})
    pid = gw.proc.pid
    base = proc_status(pid)["VmRSS"]
    upstream.mode(hang_s=3)  # slower than ingest: nothing is exported for now

    accepted, lock = [], threading.Lock()
    statuses = {}
    stop = threading.Event()
    next_id = [1]
    rss_max = [0]
    n_spans, pad = 100, 6000  # about 600 KiB per request

    def client():
        while not stop.is_set():
            with lock:
                first = next_id[0]
                next_id[0] += n_spans
            body = big_traces(first, n_spans, pad)
            try:
                r = gw.post("traces", body, {"Content-Type": "application/x-protobuf"},
                            timeout=10)
            except OSError:
                with lock:
                    statuses["error"] = statuses.get("error", 0) + 1
                continue
            with lock:
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status == 200:
                    accepted.append(first)
                elif r.status in (429, 503):
                    ra = r.headers.get("retry-after")
                    assert ra and ra.isdigit(), r.headers
                    statuses.setdefault("refused_bodies", r.body[:200])

    def sampler():
        while not stop.is_set():
            try:
                rss_max[0] = max(rss_max[0], proc_status(pid)["VmRSS"])
            except OSError:
                return
            time.sleep(0.02)

    threads = [threading.Thread(target=client) for _ in range(4)]
    threads.append(threading.Thread(target=sampler))
    for t in threads:
        t.start()
    t0 = time.monotonic()
    saw_refusals = False
    while time.monotonic() - t0 < 30:
        time.sleep(0.5)
        with lock:
            refused = statuses.get(503, 0) + statuses.get(429, 0)
        if refused >= 20 and time.monotonic() - t0 >= 8:
            saw_refusals = True
            break
    stop.set()
    for t in threads:
        t.join(30)
    st = proc_status(pid)
    m = gw.metrics()
    limit = LIMIT_MIB << 20
    report = ("limit %d MiB, start RSS %.1f MiB, peak RSS sampled %.1f MiB, VmHWM %.1f MiB, "
              "statuses %r, accepted %d requests"
              % (LIMIT_MIB, base / 2**20, rss_max[0] / 2**20, st["VmHWM"] / 2**20,
                 {k: v for k, v in statuses.items() if k != "refused_bodies"}, len(accepted)))
    print(report)
    assert saw_refusals, "clients were never refused: " + report
    assert statuses.get("error", 0) == 0, report
    assert statuses.get(503, 0) > 0, report
    assert st["VmHWM"] <= limit + (MARGIN_MIB << 20), "past the limit: " + report
    assert accepted, report
    refused_http = m.value("otlp_memory_limiter_refused_total", protocol="http", signal="traces")
    assert refused_http > 0, m.series("otlp_memory_limiter_refused_total")
    assert m.value("otlp_memory_limiter_transitions_total", state="soft") >= 1
    assert m.value("otlp_receiver_errors_total", reason="memory_limit") > 0
    assert m.value("otlp_memory_limiter_limit_bytes", limit="hard") == limit
    assert m.value("otlp_process_memory_bytes") > 0
    # Readiness stays: the limiter refuses per request (documented choice).
    assert itlib.http_request(gw.control_port, "GET", "/health/ready").status == 200

    # The upstream recovers: every acknowledged span arrives, exactly once.
    upstream.mode(status=200)
    want = len(accepted) * n_spans
    upstream.wait_items("traces", want, timeout=120)
    time.sleep(1.0)
    got = span_ids(upstream.records("traces"))
    exp = set()
    for first in accepted:
        exp.update("%016x" % (first + i) for i in range(n_spans))
    got_set = set(x.lower() for x in got if x)
    assert exp <= got_set, "%d acknowledged spans lost" % len(exp - got_set)
    assert len(got) == len(got_set), "%d duplicates" % (len(got) - len(got_set))

    # Memory is given back once the queue drained, and data is accepted again.
    def accepting():
        return gw.metrics().value("otlp_memory_limiter_state") == 0
    itlib.wait_for(accepting, 20, what="memory limiter back to ok after the queue drained: "
                   "RSS %.1f MiB" % (proc_status(pid)["VmRSS"] / 2**20))
    r = gw.post("traces", big_traces(10**12, 10, 10), {"Content-Type": "application/x-protobuf"})
    assert r.status == 200, r
    print("after recovery: RSS %.1f MiB" % (proc_status(pid)["VmRSS"] / 2**20))


def test_limit_below_usage_refuses_http_and_grpc_until_raised(upstream, start_gateway):
    """A limit below what the process already uses: every request is refused,
    retryably, on both protocols; a SIGHUP with a higher limit lets them in."""
    gw = start_gateway(upstream, memory_limiter={"limit_mib": 2, "spike_limit_mib": 1,
                                                 "check_interval_ms": 20})
    req = itlib.make_traces(3, "ml-low")
    r = gw.send("traces", req)
    assert r.status == 503, r
    assert r.headers.get("retry-after") == "1", r.headers
    code, msg = itlib.decode_rpc_status(r.body, r.headers.get("content-type", ""))[:2]
    assert code == 14 and "memory limit" in msg, (code, msg)
    m = gw.metrics()
    assert m.value("otlp_memory_limiter_state") >= 1
    assert m.value("otlp_memory_limiter_refused_total", protocol="http", signal="traces") == 1

    grpc = pytest.importorskip("grpc", reason="python3-grpcio is not installed")
    ch = grpc.insecure_channel("%s:%d" % (itlib.LOOPBACK, gw.grpc_port),
                               options=[("grpc.enable_retries", 0)])
    call = ch.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                          request_serializer=lambda x: x.SerializeToString(),
                          response_deserializer=otlp_pb.response_class("logs").FromString)
    try:
        call(itlib.make_logs(2, "ml-low"), timeout=10)
        raise AssertionError("gRPC export accepted above the memory limit")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAVAILABLE, (e.code(), e.details())
        keys = [k for k, _ in (e.trailing_metadata() or ())]
        assert "grpc-status-details-bin" in keys, keys  # RetryInfo
    m = gw.metrics()
    assert m.value("otlp_memory_limiter_refused_total", protocol="grpc", signal="logs") == 1

    # Raise the limit with SIGHUP: accepted again, data delivered.
    gw.config["memory_limiter"]["limit_mib"] = 4096
    gw.config["memory_limiter"]["spike_limit_mib"] = 0
    gw.write_config()
    os.kill(gw.proc.pid, signal.SIGHUP)
    itlib.wait_for(lambda: gw.metrics().value("otlp_memory_limiter_state") == 0, 10,
                   what="memory limiter ok after SIGHUP raised the limit")
    r = gw.send("traces", req)
    assert r.status == 200, r
    upstream.wait_items("traces", 3)
    call(itlib.make_logs(2, "ml-ok"), timeout=10)
    upstream.wait_items("logs", 2)
    ch.close()
