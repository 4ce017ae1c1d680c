# SPDX-License-Identifier: Apache-2.0
"""Beyond the happy path: concurrency, large and slow requests, timeouts,
batching limits, retry limits, OTLP/JSON forward compatibility, validation,
zstd, and file rotation. Every test asserts what arrived."""

import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

import itlib
import otlp_pb
from test_file_exporter import read_jsonl


def test_concurrent_clients_all_arrive_once(gw, upstream):
    sent = {"traces": [], "metrics": [], "logs": []}
    lock = threading.Lock()
    errors = []

    def client(k):
        try:
            for j in range(12):
                sig = ("traces", "metrics", "logs")[(k + j) % 3]
                req = itlib.make_request(sig, 1 + (k * j) % 7, "cc%d-%d" % (k, j))
                enc = "json" if j % 2 else "proto"
                r = gw.send(sig, req, enc, use_gzip=(j % 3 == 0))
                if r.status != 200:
                    errors.append((k, j, r))
                    continue
                with lock:
                    sent[sig].extend(itlib.records_of(sig, req))
        except Exception as e:  # noqa: BLE001
            errors.append((k, e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    for sig, exp in sent.items():
        upstream.wait_items(sig, len(exp))
    time.sleep(0.3)
    for sig, exp in sent.items():
        itlib.assert_same_items(exp, upstream.records(sig), what=sig)


def test_large_request(gw, upstream):
    req = itlib.make_traces(900, "large", n_resources=3)
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for i, sp in enumerate(ss.spans):
                sp.attributes.append(itlib._kv("blob", ("%06d" % i) * 400))
    body, h = itlib.encode_request(req, "proto", False)
    assert 2 * 1024 * 1024 < len(body) < 8 * 1024 * 1024, len(body)
    r = gw.post("traces", body, h, timeout=30)
    assert r.status == 200, r
    upstream.wait_items("traces", 900, timeout=30)
    itlib.assert_same_items(itlib.records_of("traces", req), upstream.records("traces"))


def test_request_trickled_byte_by_byte(gw, upstream):
    req = itlib.make_logs(2, "trickle")
    body = req.SerializeToString()
    data = ("POST /v1/logs HTTP/1.1\r\nHost: it\r\nContent-Type: application/x-protobuf\r\n"
            "Content-Length: %d\r\n\r\n" % len(body)).encode() + body
    with socket.create_connection((itlib.LOOPBACK, gw.http_port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        step = max(1, len(data) // 150)
        for i in range(0, len(data), step):
            s.sendall(data[i:i + step])
            time.sleep(0.002)
        r = itlib.read_http_response(s.makefile("rb"))
    assert r.status == 200, r
    upstream.wait_items("logs", 2)
    itlib.assert_same_items(itlib.records_of("logs", req), upstream.records("logs"))


def test_request_timeout_closes_slow_request(upstream, start_gateway):
    gw = start_gateway(upstream, receiver={"request_timeout_ms": 300})
    with socket.create_connection((itlib.LOOPBACK, gw.http_port), timeout=5) as s:
        s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: it\r\n"
                  b"Content-Type: application/x-protobuf\r\nContent-Length: 100\r\n\r\n\x0a")
        t0 = time.monotonic()
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        took = time.monotonic() - t0
    assert took < 3, "slow request kept open %.1fs with request_timeout_ms 300" % took
    if data:
        assert data.startswith(b"HTTP/1.1 408"), data[:100]


def test_idle_keepalive_connection_closed(upstream, start_gateway):
    gw = start_gateway(upstream, receiver={"idle_timeout_ms": 300})
    body = itlib.make_traces(1, "idle").SerializeToString()
    with socket.create_connection((itlib.LOOPBACK, gw.http_port), timeout=5) as s:
        s.sendall(("POST /v1/traces HTTP/1.1\r\nHost: it\r\nContent-Type: "
                   "application/x-protobuf\r\nContent-Length: %d\r\n\r\n" % len(body)).encode()
                  + body)
        f = s.makefile("rb")
        assert itlib.read_http_response(f).status == 200
        t0 = time.monotonic()
        assert f.read(1) == b"", "server sent data on an idle connection"
        took = time.monotonic() - t0
    assert 0.2 < took < 3, "idle connection closed after %.2fs (idle_timeout_ms 300)" % took


def test_batches_merge_and_respect_max_export_batch_size(upstream, start_gateway):
    gw = start_gateway(upstream, dataplane={"workers": 1},
                       batch={"max_export_batch_size": 10, "batch_timeout_ms": 400})
    reqs = [itlib.make_traces(3, "merge%d" % i, n_resources=1) for i in range(10)]
    for q in reqs:
        assert gw.send("traces", q).status == 200
    upstream.wait_items("traces", 30)
    ups = [r for r in upstream.requests() if r["signal"] == "traces"]
    sizes = [r["items"] for r in ups]
    assert len(ups) < 10, "no batching: %d upstream requests for 10 client requests" % len(ups)
    assert max(sizes) <= 10, "export requests of %s items with max_export_batch_size 10" % sizes
    itlib.assert_same_items([x for q in reqs for x in itlib.records_of("traces", q)],
                            upstream.records("traces"))


def test_retry_gives_up_after_max_elapsed(upstream, start_gateway):
    gw = start_gateway(upstream, exporter={"retry": {"initial_interval_ms": 50,
                                                     "max_interval_ms": 100,
                                                     "max_elapsed_ms": 600}})
    upstream.mode(status=503)
    assert gw.send("logs", itlib.make_logs(4, "giveup")).status == 200
    itlib.wait_for(lambda: gw.metrics().value("otlp_log_records_dropped_total") == 4, 8,
                   what="4 log records dropped after retries ran out")
    n = upstream.stats()["requests"]
    assert n >= 3, "only %d attempts in 600 ms with 50-100 ms back-off" % n
    time.sleep(0.5)
    assert upstream.stats()["requests"] == n, "still retrying after giving up"
    m = gw.metrics()
    assert all(lab.get("reason") for lab, v in m.series("otlp_log_records_dropped_total") if v)


def test_retry_disabled(upstream, start_gateway):
    gw = start_gateway(upstream, exporter={"retry": {"enabled": False}})
    upstream.mode(status=503)
    assert gw.send("traces", itlib.make_traces(3, "noretry")).status == 200
    itlib.wait_for(lambda: gw.metrics().value("otlp_spans_dropped_total") == 3, 5,
                   what="3 spans dropped")
    time.sleep(0.4)
    assert upstream.stats()["requests"] == 1


def test_json_forward_compatible_and_lenient(gw, upstream):
    req = itlib.make_traces(2, "fwd", n_resources=1)
    doc = otlp_pb.message_to_otlp_dict(req)
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["someFutureField"] = {"nested": [1, 2, {"x": "y"}]}  # OTLP: MUST be ignored
    doc["resourceSpans"][0]["futureResourceThing"] = 7
    span["startTimeUnixNano"] = int(span["startTimeUnixNano"])  # int64 as a JSON number
    body = json.dumps(doc).encode()
    r = gw.post("traces", body, {"Content-Type": "application/json; charset=utf-8"})
    assert r.status == 200, r
    upstream.wait_items("traces", 2)
    itlib.assert_same_items(itlib.records_of("traces", req), upstream.records("traces"))


def test_protobuf_unknown_fields_pass(gw, upstream):
    req = itlib.make_logs(3, "unk")
    body = req.SerializeToString()
    # Append an unknown top-level field (number 99, varint 1): must be ignored.
    body += bytes([0x98, 0x06, 0x01])
    r = gw.post("logs", body, {"Content-Type": "application/x-protobuf"})
    assert r.status == 200, r
    upstream.wait_items("logs", 3)
    itlib.assert_same_items(itlib.records_of("logs", req), upstream.records("logs"))


def test_empty_requests(gw, upstream):
    r = gw.post("traces", b"", {"Content-Type": "application/x-protobuf"})
    assert r.status == 200, r
    r = gw.post("metrics", b"{}", {"Content-Type": "application/json"})
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("application/json")
    time.sleep(0.3)
    assert upstream.stats()["items_accepted"] == {"traces": 0, "metrics": 0, "logs": 0}


def test_invalid_utf8_string_400(gw, upstream):
    req = itlib.make_traces(1, "utf8", n_resources=1)
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    sp.name = "NAMEMARK"
    body = req.SerializeToString().replace(b"NAMEMARK", b"NAME\xff\xfeRK")
    r = gw.post("traces", body, {"Content-Type": "application/x-protobuf"})
    assert r.status == 400 or (r.status == 200 and itlib.decode_response(
        "traces", r.body, r.headers["content-type"]).partial_success.rejected_spans == 1), r
    time.sleep(0.3)
    assert upstream.stats()["items_accepted"]["traces"] == 0


def test_nesting_too_deep_400(gw, upstream):
    req = itlib.make_logs(1, "deep")
    lr = req.resource_logs[0].scope_logs[0].log_records[0]
    v = {"leaf": 1}
    for _ in range(40):
        v = {"k": v}
    itlib._set_any(lr.body, v)
    r = gw.post("logs", req.SerializeToString(), {"Content-Type": "application/x-protobuf"})
    assert r.status == 400, r
    r = gw.post("logs", otlp_pb.message_to_otlp_json(req).encode(),
                {"Content-Type": "application/json"})
    assert r.status == 400, r
    time.sleep(0.3)
    assert upstream.stats()["requests"] == 0


@pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd CLI not installed")
def test_zstd_request(gw, upstream):
    req = itlib.make_metrics(7, "zstd")
    raw = req.SerializeToString()
    body = subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True,
                          check=True).stdout
    r = gw.post("metrics", body, {"Content-Type": "application/x-protobuf",
                                  "Content-Encoding": "zstd"})
    assert r.status == 200, r
    upstream.wait_items("metrics", 7)
    itlib.assert_same_items(itlib.records_of("metrics", req), upstream.records("metrics"))


def test_file_exporter_rotation(start_gateway, tmp_path):
    gw = start_gateway(exporter={"file": {"max_file_bytes": "1MiB", "max_files": 2}})
    outdir = gw.config["exporter"]["file"]["path"]
    for i in range(12):
        assert gw.send("traces", itlib.make_traces(400, "rot%d" % i)).status == 200
    assert gw.stop() == 0
    files = sorted(os.listdir(outdir))
    rotated = [f for f in files if f.startswith("traces-") and f.endswith(".jsonl")]
    assert "traces.jsonl" in files, files
    assert 1 <= len(rotated) <= 2, "max_files 2, found rotated %s" % rotated
    seen = []
    for f in rotated + ["traces.jsonl"]:
        p = os.path.join(outdir, f)
        assert os.path.getsize(p) <= 1024 * 1024 + 4 * 1024 * 1024, (f, os.path.getsize(p))
        seen.extend(read_jsonl(p, "traces"))
    keys = [otlp_pb.record_key(r) for r in seen]
    assert len(keys) == len(set(keys)), "an item was written twice"
    assert seen
