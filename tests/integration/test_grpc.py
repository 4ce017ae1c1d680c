# SPDX-License-Identifier: Apache-2.0
"""The OTLP/gRPC receiver (receiver.grpc_port) with real gRPC clients: Debian's
python3-grpcio, the OpenTelemetry JS SDK's gRPC exporters (js/send.js
--protocol grpc) and h2load. What arrives at the test upstream is compared
with what was sent (exactly once, identical), and the gRPC status mapping of
lib/grpc/grpc_receiver.h is checked: OK with partial_success, INVALID_ARGUMENT,
UNIMPLEMENTED, RESOURCE_EXHAUSTED (with RetryInfo under pressure), UNAVAILABLE
while draining; /metrics agrees with the traffic."""

import re
import shutil
import signal
import struct
import subprocess
import threading
import time

import pytest

import itlib
import otlp_pb

grpc = pytest.importorskip("grpc", reason="python3-grpcio is not installed")

METHODS = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
ITEMS = {"traces": "spans", "metrics": "metric_points", "logs": "log_records"}
REJECTED = {"traces": "rejected_spans", "metrics": "rejected_data_points",
            "logs": "rejected_log_records"}
# grpc_requests_total{grpc_status=...} uses the canonical status names.
STATUS_LABEL = {grpc.StatusCode.OK: "OK", grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
                grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
                grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
                grpc.StatusCode.UNAVAILABLE: "Unavailable"}
RETRY_INFO_URL = "type.googleapis.com/google.rpc.RetryInfo"
GZIP = grpc.Compression.Gzip


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def channel(gw, **options):
    opts = [("grpc.enable_retries", 0)] + list(options.items())
    return grpc.insecure_channel("%s:%d" % (itlib.LOOPBACK, gw.grpc_port), options=opts)


def export_call(ch, signal_):
    """Unary Export of `signal_` with the message classes of otlp_pb (no codegen)."""
    return ch.unary_unary("/" + METHODS[signal_],
                          request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=otlp_pb.response_class(signal_).FromString)


def raw_call(ch, path):
    """Unary call on any path with raw bytes in and out."""
    return ch.unary_unary(path)


def export_ok(ch, signal_, req, **kw):
    resp, call = export_call(ch, signal_).with_call(req, timeout=10, **kw)
    assert call.code() == grpc.StatusCode.OK
    return resp, call


def rpc_error(fn, *args, **kw):
    """Call, expect a grpc.RpcError, return it."""
    kw.setdefault("timeout", 10)
    try:
        r = fn(*args, **kw)
    except grpc.RpcError as e:
        return e
    raise AssertionError("expected a gRPC error, got OK: %r" % (r,))


def pb_fields(b):
    """Protobuf wire bytes -> {field number: [values]} (varint ints, bytes for
    length-delimited). Enough for google.rpc.Status, Any, RetryInfo, Duration."""
    out, i = {}, 0
    while i < len(b):
        key, i = itlib._read_varint(b, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = itlib._read_varint(b, i)
        elif wt == 2:
            n, i = itlib._read_varint(b, i)
            if i + n > len(b):
                raise ValueError("truncated length-delimited field %d" % field)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError("unexpected wire type %d (field %d)" % (wt, field))
        out.setdefault(field, []).append(v)
    return out


def decode_status_details(b):
    """google.rpc.Status{code=1, message=2, details=3 Any{type_url=1, value=2}}
    -> (code, message, [(type_url, value bytes)])."""
    f = pb_fields(b)
    details = []
    for any_ in f.get(3, []):
        a = pb_fields(any_)
        details.append((a.get(1, [b""])[0].decode(), a.get(2, [b""])[0]))
    return f.get(1, [0])[0], f.get(2, [b""])[0].decode("utf-8"), details


def retry_delay(details):
    """The RetryInfo.retry_delay (Duration{seconds=1, nanos=2}) in seconds, or None."""
    for url, value in details:
        if url == RETRY_INFO_URL:
            d = pb_fields(value).get(1, [b""])[0]
            dur = pb_fields(d)
            return dur.get(1, [0])[0] + dur.get(2, [0])[0] / 1e9
    return None


def trailer(err, key):
    for k, v in err.trailing_metadata() or ():
        if k == key:
            return v
    return None


def grpc_requests(m, signal_, status):
    method = METHODS[signal_] if signal_ in METHODS else signal_
    return m.value("grpc_requests_total", method=method, grpc_status=status)


def bad_span_request():
    """Two ResourceSpans of 3 spans; the second gets a 4th span with a 5-byte
    trace_id, so its 4 spans are rejected (validation is per top-level entry,
    lib/otlp/otlp_scan.h) and the first entry's 3 spans are forwarded."""
    req = itlib.make_traces(6, "gpartial", n_resources=2)
    spans = req.resource_spans[1].scope_spans[0].spans
    bad = spans.add()
    bad.CopyFrom(spans[0])
    bad.trace_id = b"\x01\x02\x03\x04\x05"
    bad.span_id = b"\x09" * 8
    bad.name = "bad-span"
    good = otlp_pb.trace_service_pb2.ExportTraceServiceRequest()
    good.resource_spans.append(req.resource_spans[0])
    return req, good


# ---------------------------------------------------------------------------
# python3-grpcio
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("use_gzip", [False, True], ids=["identity", "gzip"])
def test_all_signals_arrive_once(gw, upstream, use_gzip):
    """Two requests per signal on one channel: OK, no partial_success, and every
    span, data point and log record arrives exactly once and identical. With
    gzip the gateway counts fewer bytes than the messages' size (it really
    received them compressed)."""
    kw = {"compression": GZIP} if use_gzip else {}
    ch = channel(gw)
    sent, size = {}, {}
    for s in ("traces", "metrics", "logs"):
        reqs = [itlib.make_request(s, 12, "g%s%d%s" % (s[0], i, "z" * use_gzip))
                for i in range(2)]
        for q in reqs:
            resp, call = export_ok(ch, s, q, **kw)
            assert not resp.HasField("partial_success"), resp
            assert call.trailing_metadata() is not None
        sent[s] = reqs
        size[s] = sum(q.ByteSize() for q in reqs)
    for s, reqs in sent.items():
        upstream.wait_items(s, 24)
    time.sleep(0.3)  # late duplicates would show now
    for s, reqs in sent.items():
        itlib.assert_same_items([x for q in reqs for x in itlib.records_of(s, q)],
                                upstream.records(s), what=s)
    m = gw.metrics()
    for s in sent:
        item = ITEMS[s]
        assert m.value("otlp_%s_received_total" % item, protocol="grpc") == 24
        assert m.value("otlp_%s_accepted_total" % item, protocol="grpc") == 24
        got = m.value("otlp_%s_received_bytes_total" % item, protocol="grpc")
        if use_gzip:
            assert 0 < got < 0.7 * size[s], (s, got, size[s])
        else:
            assert got == size[s], (s, got, size[s])
        assert grpc_requests(m, s, "OK") == 2
    ch.close()


def test_metadata_and_deadline(gw, upstream):
    """Custom ASCII and -bin metadata, a user-agent and a grpc-timeout are
    accepted; a header list over receiver.max_header_bytes is refused with
    RESOURCE_EXHAUSTED and nothing of it arrives."""
    ch = channel(gw, **{"grpc.primary_user_agent": "otlp-it-grpc/1.0"})
    req = itlib.make_logs(5, "gmeta")
    md = [("x-tenant", "team-a"), ("x-request-id", "r-1"), ("authorization", "Bearer abc"),
          ("x-trace-bin", b"\x00\x01\x02\xff")]
    resp, _ = export_ok(ch, "logs", req, metadata=md, compression=GZIP)
    assert not resp.HasField("partial_success")
    # A generous and a tight (but sufficient) deadline.
    req2 = itlib.make_logs(3, "gmeta2")
    export_call(ch, "logs").with_call(req2, timeout=3600)
    req3 = itlib.make_logs(2, "gmeta3")
    export_call(ch, "logs").with_call(req3, timeout=2)
    big = itlib.make_logs(2, "gmetabig")
    e = rpc_error(export_call(ch, "logs"), big, metadata=[("x-big", "a" * 20000)])
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (e.code(), e.details())
    assert e.details(), "no grpc-message"
    upstream.wait_items("logs", 10)
    time.sleep(0.3)
    itlib.assert_same_items([x for q in (req, req2, req3) for x in itlib.records_of("logs", q)],
                            upstream.records("logs"))
    m = gw.metrics()
    assert m.value("otlp_receiver_errors_total", protocol="grpc",
                   reason="headers_too_large") == 1
    ch.close()


def test_partial_success_bad_trace_id(gw, upstream):
    req, good = bad_span_request()
    ch = channel(gw)
    resp, _ = export_ok(ch, "traces", req)
    assert resp.partial_success.rejected_spans == 4, resp
    assert "trace_id" in resp.partial_success.error_message.replace("traceId", "trace_id"), resp
    upstream.wait_items("traces", 3)
    time.sleep(0.3)
    itlib.assert_same_items(itlib.records_of("traces", good), upstream.records("traces"))
    m = gw.metrics()
    assert m.value("otlp_spans_rejected_total", protocol="grpc") == 4
    assert m.value("otlp_spans_accepted_total", protocol="grpc") == 3
    assert m.value("otlp_spans_received_total", protocol="grpc") == 7
    assert grpc_requests(m, "traces", "OK") == 1
    ch.close()


def test_malformed_message_invalid_argument(gw, upstream):
    ch = channel(gw)
    for s, body in (("traces", b"\x0a\x64\x01\x02\x03"),  # length 100, 3 bytes follow
                    ("metrics", b"\xff" * 32),
                    ("logs", b"\x0a\x02\x0a")):  # ResourceLogs whose resource is cut short
        e = rpc_error(raw_call(ch, "/" + METHODS[s]), body)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (s, e.code(), e.details())
        assert e.details() and "protobuf" in e.details().lower(), (s, e.details())
    # Not protobuf at all (a gzip header: wire type 7 does not exist).
    e = rpc_error(raw_call(ch, "/" + METHODS["traces"]), b"\x1f\x8b\x08\x00garbage-garbage")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    time.sleep(0.3)
    assert upstream.stats()["requests"] == 0, "malformed data was forwarded"
    m = gw.metrics()
    assert m.value("otlp_receiver_errors_total", protocol="grpc",
                   reason="invalid_protobuf") == 4
    for s in METHODS:
        assert m.value("otlp_%s_received_total" % ITEMS[s], protocol="grpc") == 0
    ch.close()


def test_unknown_method_unimplemented(gw, upstream):
    ch = channel(gw)
    for path in ("/opentelemetry.proto.collector.trace.v1.TraceService/Nope",
                 "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
                 "/grpc.health.v1.Health/Check",
                 "/opentelemetry.proto.collector.trace.v1.TraceService/export"):
        e = rpc_error(raw_call(ch, path), itlib.make_traces(1, "unk").SerializeToString())
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED, (path, e.code(), e.details())
        assert e.details(), path
    # The connection is still good for real calls.
    export_ok(ch, "traces", itlib.make_traces(2, "after-unk"))
    upstream.wait_items("traces", 2)
    m = gw.metrics()
    assert grpc_requests(m, "other", "Unimplemented") == 4
    ch.close()


def test_default_max_recv_msg_is_4mib(gw, upstream):
    """Like common gRPC servers the receiver takes messages up to 4 MiB by
    default (receiver.grpc_max_recv_msg_bytes), although OTLP/HTTP bodies may
    reach receiver.max_body_bytes (8 MiB)."""
    ch = channel(gw, **{"grpc.max_send_message_length": 16 << 20})
    under = itlib.make_logs(1, "g4m-under")
    under.resource_logs[0].scope_logs[0].log_records[0].body.string_value = "u" * (4 * 1024 * 1024 - 4096)
    assert under.ByteSize() <= 4 * 1024 * 1024
    export_ok(ch, "logs", under)
    over = itlib.make_logs(1, "g4m-over")
    over.resource_logs[0].scope_logs[0].log_records[0].body.string_value = "o" * (4 * 1024 * 1024)
    assert over.ByteSize() > 4 * 1024 * 1024
    e = rpc_error(export_call(ch, "logs"), over)
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (e.code(), e.details())
    upstream.wait_items("logs", 1)
    time.sleep(0.3)
    assert len(upstream.records("logs")) == 1
    ch.close()


def test_oversized_message_resource_exhausted(upstream, start_gateway):
    """A message over receiver.grpc_max_recv_msg_bytes gets RESOURCE_EXHAUSTED
    (without RetryInfo: retrying cannot help); the same data gzip-compressed
    under the limit is accepted; nothing of the refused one arrives."""
    gw = start_gateway(upstream, receiver={"grpc_max_recv_msg_bytes": 64 * 1024,
                                           "max_body_bytes": 1024 * 1024,
                                           "max_decompressed_bytes": 1024 * 1024})
    ch = channel(gw)
    big = itlib.make_traces(400, "gbig")
    assert big.ByteSize() > 64 * 1024
    e = rpc_error(export_call(ch, "traces"), big)
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (e.code(), e.details())
    assert e.details()
    details = trailer(e, "grpc-status-details-bin")
    assert details is None or retry_delay(decode_status_details(details)[2]) is None, \
        "RetryInfo on a message that can never fit"
    big2 = itlib.make_traces(400, "gbigz")
    export_ok(ch, "traces", big2, compression=GZIP)
    upstream.wait_items("traces", 400)
    time.sleep(0.3)
    itlib.assert_same_items(itlib.records_of("traces", big2), upstream.records("traces"))
    m = gw.metrics()
    assert m.value("otlp_receiver_errors_total", protocol="grpc",
                   reason="message_too_large") == 1
    assert grpc_requests(m, "traces", "ResourceExhausted") == 1
    ch.close()


def test_queue_full_resource_exhausted_with_retry_info(upstream, start_gateway):
    """Upstream answers 503 + tiny queue: once the queue is full the client gets
    RESOURCE_EXHAUSTED whose grpc-status-details-bin is a google.rpc.Status
    with a RetryInfo (retry_delay = receiver.retry_after_s). After the upstream
    recovers, every acknowledged item arrives exactly once."""
    gw = start_gateway(upstream, receiver={"retry_after_s": 2},
                       batch={"max_queue_size": 40, "max_export_batch_size": 10,
                              "batch_timeout_ms": 20},
                       exporter={"timeout_ms": 500,
                                 "retry": {"initial_interval_ms": 100, "max_interval_ms": 300,
                                           "max_elapsed_ms": 120000}})
    upstream.mode(status=503)
    ch = channel(gw)
    accepted, refused = [], []
    for i in range(30):
        req = itlib.make_traces(5, "gqf%d" % i, n_resources=1)
        try:
            export_call(ch, "traces")(req, timeout=5)
            accepted.append(req)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (e.code(), e.details())
            refused.append((req, e))
            if len(refused) >= 3:
                break
    assert refused, "queue never filled: %d requests of 5 spans accepted with " \
                    "max_queue_size 40 and the upstream answering 503" % len(accepted)
    assert 5 * len(accepted) <= 40, "accepted %d spans over a queue of 40" % (5 * len(accepted))
    for _, e in refused:
        raw = trailer(e, "grpc-status-details-bin")
        assert raw is not None, "RESOURCE_EXHAUSTED without grpc-status-details-bin: %r" % (
            e.trailing_metadata(),)
        code, msg, details = decode_status_details(raw)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], code
        assert msg == e.details() or msg in e.details(), (msg, e.details())
        assert [u for u, _ in details] == [RETRY_INFO_URL], details
        assert retry_delay(details) == 2, details
    m = gw.metrics()
    assert m.value("otlp_spans_refused_total", protocol="grpc") == 5 * len(refused)
    assert m.value("otlp_receiver_errors_total", protocol="grpc",
                   reason="queue_full") == len(refused)
    assert grpc_requests(m, "traces", "ResourceExhausted") == len(refused)
    upstream.mode(status=200)
    n = 5 * len(accepted)
    upstream.wait_items("traces", n, timeout=20)
    time.sleep(0.5)
    itlib.assert_same_items([x for q in accepted for x in itlib.records_of("traces", q)],
                            upstream.records("traces"))
    # Accepting again once the queue has drained.
    itlib.wait_for(lambda: gw.metrics().value("otlp_queue_size") == 0, 5, what="queue drained")
    export_ok(ch, "traces", itlib.make_traces(2, "gqf-after"))
    upstream.wait_items("traces", n + 2)
    ch.close()


def test_sigterm_drains_unavailable(upstream, start_gateway):
    """SIGTERM while a client keeps sending on one channel: every request that
    got OK arrives exactly once; after the first refusal every request fails
    with UNAVAILABLE (the gateway's 'shutting down', or the connection gone
    after GOAWAY); the gateway exits 0."""
    gw = start_gateway(upstream)
    ch = channel(gw)
    call = export_call(ch, "traces")
    ok, errors = [], []
    stop = threading.Event()
    started = threading.Event()

    def sender():
        i = 0
        while not stop.is_set() and len(errors) < 20:
            req = itlib.make_traces(3, "gdrain%d" % i)
            i += 1
            try:
                call(req, timeout=5)
                ok.append(req)
                if len(ok) >= 5:
                    started.set()
            except grpc.RpcError as e:
                errors.append(e)
                time.sleep(0.01)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    assert started.wait(10), "no OK before SIGTERM: %r" % [(e.code(), e.details())
                                                            for e in errors]
    gw.proc.send_signal(signal.SIGTERM)
    rc = gw.proc.wait(15)
    time.sleep(0.2)
    stop.set()
    t.join(10)
    assert rc == 0, "exit code %s after SIGTERM" % rc
    assert errors, "no request failed after SIGTERM"
    bad = [(e.code(), e.details()) for e in errors if e.code() != grpc.StatusCode.UNAVAILABLE]
    assert not bad, "requests after SIGTERM failed otherwise than UNAVAILABLE: %r" % bad
    for e in errors:
        if "shutting down" in (e.details() or ""):
            raw = trailer(e, "grpc-status-details-bin")
            assert raw is not None and retry_delay(decode_status_details(raw)[2]) is not None, \
                "UNAVAILABLE shutting down without RetryInfo: %r" % (e.trailing_metadata(),)
    itlib.assert_same_items([x for q in ok for x in itlib.records_of("traces", q)],
                            upstream.records("traces"))
    ch.close()


def test_many_concurrent_streams_one_channel(gw, upstream):
    """50 Export calls in flight at once on one channel (one HTTP/2 connection,
    concurrent streams), mixed signals: all OK, everything arrives once."""
    ch = channel(gw)
    reqs = [("traces" if i % 3 == 0 else "metrics" if i % 3 == 1 else "logs",
             i) for i in range(50)]
    reqs = [(s, itlib.make_request(s, 4, "gcc%d" % i)) for s, i in reqs]
    futs = [export_call(ch, s).future(q, timeout=15) for s, q in reqs]
    for f in futs:
        resp = f.result()
        assert not resp.HasField("partial_success"), resp
    for s in METHODS:
        expected = [x for sig, q in reqs if sig == s for x in itlib.records_of(s, q)]
        upstream.wait_items(s, len(expected))
    time.sleep(0.3)
    for s in METHODS:
        expected = [x for sig, q in reqs if sig == s for x in itlib.records_of(s, q)]
        itlib.assert_same_items(expected, upstream.records(s), what=s)
    m = gw.metrics()
    assert sum(grpc_requests(m, s, "OK") for s in METHODS) == 50
    ch.close()


def test_metrics_agree_with_traffic(gw, upstream):
    """grpc_requests_total{method,grpc_status} and the protocol="grpc" item
    counters match a known mix of calls; the OTLP/HTTP series are untouched."""
    ch = channel(gw)
    n_items = {"traces": 0, "metrics": 0, "logs": 0}
    n_ok = {"traces": 3, "metrics": 2, "logs": 1}
    nbytes = {"traces": 0, "metrics": 0, "logs": 0}
    for s, k in n_ok.items():
        for i in range(k):
            q = itlib.make_request(s, 7 + i, "gmx%s%d" % (s[0], i))
            export_ok(ch, s, q)
            n_items[s] += 7 + i
            nbytes[s] += q.ByteSize()
    req, _good = bad_span_request()
    export_ok(ch, "traces", req)  # 7 received, 3 accepted, 4 rejected
    nbytes["traces"] += req.ByteSize()
    for body in (b"\xff\xff", b"\x0a\x64\x01"):
        e = rpc_error(raw_call(ch, "/" + METHODS["metrics"]), body)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        nbytes["metrics"] += len(body)
    e = rpc_error(raw_call(ch, "/opentelemetry.proto.collector.logs.v1.LogsService/Nope"), b"")
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED
    for s in METHODS:
        upstream.wait_items(s, n_items[s] + (3 if s == "traces" else 0))
    m = gw.metrics()
    expect = {("traces", "OK"): 4, ("metrics", "OK"): 2, ("logs", "OK"): 1,
              ("metrics", "InvalidArgument"): 2, ("other", "Unimplemented"): 1}
    got = {(lab["method"], lab["grpc_status"]): v for lab, v in m.series("grpc_requests_total")
           if v}
    want = {(METHODS.get(s, s), st): v for (s, st), v in expect.items()}
    assert got == want, "grpc_requests_total %r, expected %r" % (got, want)
    assert m.types.get("grpc_requests_total") == "counter"
    for s in METHODS:
        item = ITEMS[s]
        extra = 7 if s == "traces" else 0
        assert m.value("otlp_%s_received_total" % item, protocol="grpc") == n_items[s] + extra
        assert m.value("otlp_%s_accepted_total" % item, protocol="grpc") == \
            n_items[s] + (3 if s == "traces" else 0)
        assert m.value("otlp_%s_received_bytes_total" % item, protocol="grpc") == nbytes[s]
        # OTLP/HTTP series (no protocol label) saw nothing.
        http = [v for lab, v in m.series("otlp_%s_received_total" % item)
                if lab.get("protocol") != "grpc"]
        assert sum(http) == 0, (item, http)
    assert m.value("otlp_spans_rejected_total", protocol="grpc") == 4
    # Every request has a duration observation.
    n_dur = sum(v for lab, v in m.series("grpc_request_duration_seconds_count"))
    assert n_dur == sum(expect.values()), n_dur
    ch.close()


# ---------------------------------------------------------------------------
# OpenTelemetry JS SDK (@opentelemetry/exporter-*-otlp-grpc)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("signal_", ["traces", "metrics", "logs"])
@pytest.mark.parametrize("use_gzip", [False, True], ids=["identity", "gzip"])
def test_js_sdk_grpc(js_ready, gw, upstream, tmp_path, signal_, use_gzip):
    n = 60
    out = str(tmp_path / "summary.json")
    args = ["--protocol", "grpc", "--endpoint", "http://%s:%d" % (itlib.LOOPBACK, gw.grpc_port),
            "--signal", signal_, "--count", str(n), "--out", out,
            "--header", "x-it-case=%s" % signal_,
            "--resource", "test.case=grpc-%s-%s" % (signal_, use_gzip)]
    if use_gzip:
        args.append("--gzip")
    p, summary = itlib.run_js(args)
    assert p.returncode == 0, "send.js failed: %s %s" % (p.stderr.decode()[-2000:],
                                                         summary and summary.get("exports"))
    assert summary["protocol"] == "grpc"
    assert summary["exported_items"] == n
    assert not [d for d in summary["diag"] if d.startswith("error")], summary["diag"]
    assert not [d for d in summary["diag"] if "partial" in d.lower()], summary["diag"]
    upstream.wait_items(signal_, n)
    time.sleep(0.3)
    itlib.assert_same_items(itlib.summary_records(summary), upstream.records(signal_))
    m = gw.metrics()
    item = ITEMS[signal_]
    assert m.value("otlp_%s_accepted_total" % item, protocol="grpc") == n
    assert m.value("otlp_%s_received_total" % item) == n  # all of it over gRPC
    assert grpc_requests(m, signal_, "OK") == len(summary["exports"])
    size = sum(otlp_pb.parse_otlp_json(b, otlp_pb.request_class(signal_)).ByteSize()
               for b in summary["batches"])
    got = m.value("otlp_%s_received_bytes_total" % item, protocol="grpc")
    if use_gzip:
        assert got < 0.7 * size, "gzip exporter, %d bytes received for %d" % (got, size)
    else:
        assert got > 0.7 * size, (got, size)


# ---------------------------------------------------------------------------
# h2load
# ---------------------------------------------------------------------------

def test_h2load_many_streams(start_gateway, tmp_path):
    """h2load: 2000 unary Exports of 100 spans over 4 connections x 10
    concurrent streams. Every response is 2xx with grpc-status OK, and all
    200,000 spans are accepted and exported (exporter `discard`)."""
    if shutil.which("h2load") is None:
        pytest.skip("h2load not installed (apt-get install nghttp2-client)")
    gw = start_gateway(None, exporter={"protocol": "discard", "file": None},
                       batch={"max_queue_size": 65536, "max_export_batch_size": 4096})
    req = itlib.make_traces(100, "h2load", n_resources=2)
    msg = req.SerializeToString()
    body = tmp_path / "req.grpc"
    body.write_bytes(struct.pack(">BI", 0, len(msg)) + msg)
    url = "http://%s:%d/%s" % (itlib.LOOPBACK, gw.grpc_port, METHODS["traces"])
    p = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10", "-d", str(body),
                        "-H", "content-type: application/grpc", "-H", "te: trailers", url],
                       capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    mo = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                   r"(\d+) failed, (\d+) errored", out)
    assert mo, out
    total, _, done, succeeded, failed, errored = map(int, mo.groups())
    assert (done, succeeded, failed, errored) == (2000, 2000, 0, 0), out
    ms = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    assert ms and int(ms.group(1)) == 2000, out

    def exported():
        m = gw.metrics()
        return m.value("otlp_spans_exported_total") >= 200000 and m
    m = itlib.wait_for(exported, 15, what=lambda: "200000 spans exported (%r)" % (
        gw.metrics().series("otlp_spans_exported_total"),))
    # :status 200 is also used for gRPC errors: the grpc-status counts decide.
    assert grpc_requests(m, "traces", "OK") == 2000, m.series("grpc_requests_total")
    assert m.value("otlp_spans_accepted_total", protocol="grpc") == 200000
    assert m.value("otlp_spans_refused_total", protocol="grpc") == 0
    assert m.value("otlp_spans_exported_total") == 200000
    assert m.value("otlp_spans_dropped_total") == 0
