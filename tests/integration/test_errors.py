# SPDX-License-Identifier: Apache-2.0
"""Error answers of the OTLP/HTTP receiver, keep-alive and pipelining, and
partial_success for requests with some invalid items."""

import gzip
import socket
import time

import pytest

import itlib
import otlp_pb

LIMITS = {"max_body_bytes": 64 * 1024, "max_decompressed_bytes": 256 * 1024,
          "max_headers": 100}


@pytest.fixture
def lgw(upstream, start_gateway):
    return start_gateway(upstream, receiver=LIMITS)


def rpc_message(r):
    code, msg = itlib.decode_rpc_status(r.body, r.headers.get("content-type", ""))
    return code, msg


def test_malformed_protobuf_400(lgw, upstream):
    # Field 1 (resource_spans), length 100 but only 3 bytes follow.
    r = lgw.post("traces", b"\x0a\x64\x01\x02\x03", {"Content-Type": "application/x-protobuf"})
    assert r.status == 400, r
    code, msg = rpc_message(r)
    assert msg, "400 without a message: %r" % r.body
    r = lgw.post("metrics", b"\xff" * 32, {"Content-Type": "application/x-protobuf"})
    assert r.status == 400, r
    time.sleep(0.3)
    assert upstream.stats()["requests"] == 0, "malformed data was forwarded"


def test_invalid_json_400(lgw, upstream):
    for body in (b'{"resourceSpans": [', b'[1,2]', b'{"resourceSpans": [{"scopeSpans": 5}]}',
                 b'\xff\xfe'):
        r = lgw.post("traces", body, {"Content-Type": "application/json"})
        assert r.status == 400, (body, r)
        assert r.body, "400 without a message for %r" % body
        assert r.headers.get("content-type", "").startswith("application/json"), r.headers
        code, msg = rpc_message(r)
        assert msg


def test_bad_gzip_400(lgw):
    r = lgw.post("logs", b"\x1f\x8b\x08\x00garbage", {"Content-Type": "application/x-protobuf",
                                                       "Content-Encoding": "gzip"})
    assert r.status == 400, r


def test_unsupported_content_type_415(lgw):
    r = lgw.post("traces", b"hello", {"Content-Type": "text/plain"})
    assert r.status == 415, r


def test_unsupported_content_encoding_415(lgw):
    r = lgw.post("traces", b"hello", {"Content-Type": "application/x-protobuf",
                                      "Content-Encoding": "br"})
    assert r.status == 415, r


def test_get_on_signal_path_405(lgw):
    r = itlib.http_request(lgw.http_port, "GET", "/v1/traces")
    assert r.status == 405, r
    assert "POST" in r.headers.get("allow", ""), "405 without Allow: POST: %r" % r.headers


def test_unknown_path_404(lgw):
    body, h = itlib.encode_request(itlib.make_traces(1, "x"), "proto", False)
    r = itlib.http_request(lgw.http_port, "POST", "/v1/spans", body, h)
    assert r.status == 404, r
    assert itlib.http_request(lgw.http_port, "GET", "/").status == 404


def test_post_without_length_411(lgw):
    req = (b"POST /v1/traces HTTP/1.1\r\nHost: it\r\n"
           b"Content-Type: application/x-protobuf\r\n\r\n")
    [r] = itlib.raw_exchange(lgw.http_port, req)
    assert r.status == 411, r


def test_body_too_large_413(lgw):
    req = itlib.make_traces(400, "big")
    body, h = itlib.encode_request(req, "proto", False)
    assert len(body) > LIMITS["max_body_bytes"]
    head = ("POST /v1/traces HTTP/1.1\r\nHost: it\r\nContent-Type: application/x-protobuf\r\n"
            "Content-Length: %d\r\n\r\n" % len(body)).encode()
    with socket.create_connection((itlib.LOOPBACK, lgw.http_port), timeout=5) as s:
        s.sendall(head)
        try:
            s.sendall(body)
        except OSError:
            pass  # the gateway may answer and close before reading the body
        r = itlib.read_http_response(s.makefile("rb"))
    assert r.status == 413, r


def test_body_too_large_chunked_413(lgw):
    body = b"\x0a" * (LIMITS["max_body_bytes"] + 4096)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 8192]), body[i:i + 8192])
                      for i in range(0, len(body), 8192)) + b"0\r\n\r\n"
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: it\r\nContent-Type: application/x-protobuf\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    with socket.create_connection((itlib.LOOPBACK, lgw.http_port), timeout=5) as s:
        s.sendall(head)
        try:
            s.sendall(chunks)
        except OSError:
            pass
        r = itlib.read_http_response(s.makefile("rb"))
    assert r.status == 413, r


def test_gzip_bomb_413(lgw, upstream):
    # 8 MiB of zeros gzips to ~8 KiB: small on the wire, far over the
    # 256 KiB decompression limit. docs: lib/compress -EMSGSIZE -> 413.
    bomb = gzip.compress(b"\x00" * (8 * 1024 * 1024), 9)
    assert len(bomb) < LIMITS["max_body_bytes"]
    r = lgw.post("traces", bomb, {"Content-Type": "application/x-protobuf",
                                  "Content-Encoding": "gzip"})
    assert r.status == 413, r
    assert upstream.stats()["requests"] == 0


def test_too_many_headers_431(lgw):
    extra = "".join("X-Filler-%d: v\r\n" % i for i in range(LIMITS["max_headers"] + 20))
    req = ("POST /v1/traces HTTP/1.1\r\nHost: it\r\nContent-Type: application/x-protobuf\r\n"
           "%sContent-Length: 0\r\n\r\n" % extra).encode()
    [r] = itlib.raw_exchange(lgw.http_port, req)
    assert r.status == 431, r


def test_header_section_too_large_431(lgw):
    req = ("POST /v1/traces HTTP/1.1\r\nHost: it\r\nX-Big: %s\r\n"
           "Content-Length: 0\r\n\r\n" % ("a" * 70000)).encode()
    [r] = itlib.raw_exchange(lgw.http_port, req)
    assert r.status == 431, r


def _raw_post(signal, body, ctype="application/x-protobuf", close=False):
    return ("POST /v1/%s HTTP/1.1\r\nHost: it\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (signal, ctype, len(body), "Connection: close\r\n" if close else "")
            ).encode() + body


def test_keep_alive_and_pipelining(lgw, upstream):
    reqs = [itlib.make_traces(3, "pipe%d" % i) for i in range(3)]
    bodies = [r.SerializeToString() for r in reqs]
    with socket.create_connection((itlib.LOOPBACK, lgw.http_port), timeout=5) as s:
        f = s.makefile("rb")
        # Two requests in one send: two responses back, in order.
        s.sendall(_raw_post("traces", bodies[0]) + _raw_post("traces", bodies[1]))
        r1 = itlib.read_http_response(f)
        r2 = itlib.read_http_response(f)
        # The connection stays open for a third request.
        s.sendall(_raw_post("traces", bodies[2]))
        r3 = itlib.read_http_response(f)
    for r in (r1, r2, r3):
        assert r.status == 200, r
        assert r.headers.get("connection", "").lower() != "close", r.headers
        itlib.decode_response("traces", r.body, r.headers["content-type"])
    upstream.wait_items("traces", 9)
    itlib.assert_same_items([x for q in reqs for x in itlib.records_of("traces", q)],
                            upstream.records("traces"))


def test_pipelined_mixed_signals_and_connection_close(lgw, upstream):
    t = itlib.make_traces(2, "mix")
    m = itlib.make_metrics(3, "mix")
    lg = itlib.make_logs(4, "mix")
    data = (_raw_post("traces", t.SerializeToString())
            + _raw_post("metrics", otlp_pb.message_to_otlp_json(m).encode(), "application/json")
            + _raw_post("logs", lg.SerializeToString(), close=True))
    rs = itlib.raw_exchange(lgw.http_port, data, n_responses=3)
    assert [r.status for r in rs] == [200, 200, 200], rs
    assert rs[1].headers["content-type"].startswith("application/json")
    assert rs[0].headers["content-type"].startswith("application/x-protobuf")
    upstream.wait_items("logs", 4)
    upstream.wait_items("metrics", 3)
    upstream.wait_items("traces", 2)


def bad_span_request():
    """Two ResourceSpans of 3 spans each; the second gets a 4th span whose
    trace_id is 5 bytes. The gateway validates per top-level ResourceSpans
    entry (lib/otlp/otlp_scan.h), so the 4 spans of the second entry are
    rejected and the 3 of the first are forwarded."""
    req = itlib.make_traces(6, "partial", n_resources=2)
    spans = req.resource_spans[1].scope_spans[0].spans
    bad = spans.add()
    bad.CopyFrom(spans[0])
    bad.trace_id = b"\x01\x02\x03\x04\x05"  # 5 bytes: invalid (must be 16)
    bad.span_id = b"\x09" * 8
    bad.name = "bad-span"
    good = otlp_pb.trace_service_pb2.ExportTraceServiceRequest()
    good.resource_spans.append(req.resource_spans[0])
    return req, good


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_partial_success_bad_trace_id(lgw, upstream, encoding):
    req, good = bad_span_request()
    r = lgw.send("traces", req, encoding)
    assert r.status == 200, r
    resp = itlib.decode_response("traces", r.body, r.headers["content-type"])
    assert resp.partial_success.rejected_spans == 4, resp
    assert "trace_id" in resp.partial_success.error_message.replace("traceId", "trace_id"), resp
    # The valid resource's spans are forwarded, nothing of the invalid one.
    upstream.wait_items("traces", 3)
    time.sleep(0.3)
    itlib.assert_same_items(itlib.records_of("traces", good), upstream.records("traces"))
    m = lgw.metrics()
    assert m.value("otlp_spans_rejected_total") == 4
    assert m.value("otlp_spans_accepted_total") == 3
    assert m.value("otlp_spans_received_total") == 7


@pytest.mark.parametrize("head", [
    # request smuggling shapes: both framings, conflicting lengths, folding
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: -1\r\n",
    b"Content-Length: 5\r\nX-Folded: a\r\n b\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
], ids=["cl-and-te", "two-cl", "negative-cl", "obs-fold", "te-not-chunked"])
def test_ambiguous_framing_400(lgw, upstream, head):
    req = (b"POST /v1/traces HTTP/1.1\r\nHost: it\r\nContent-Type: application/x-protobuf\r\n"
           + head + b"\r\n0\r\n\r\n")
    [r] = itlib.raw_exchange(lgw.http_port, req)
    assert r.status in (400, 501), r
    assert r.headers.get("connection", "").lower() == "close", \
        "connection kept open after a framing error: %r" % r.headers


def test_error_then_pipelined_request(lgw, upstream):
    """An OTLP-level 400 does not poison the connection: the next pipelined
    request is answered (or the connection is closed cleanly after the 400)."""
    good = itlib.make_traces(2, "after400")
    data = _raw_post("traces", b"\x0a\x64\x01") + _raw_post("traces", good.SerializeToString())
    with socket.create_connection((itlib.LOOPBACK, lgw.http_port), timeout=5) as s:
        s.sendall(data)
        f = s.makefile("rb")
        r1 = itlib.read_http_response(f)
        assert r1.status == 400, r1
        if r1.headers.get("connection", "").lower() == "close":
            return
        r2 = itlib.read_http_response(f)
    assert r2.status == 200, r2
    upstream.wait_items("traces", 2)


def test_expect_100_continue_too_large_413(lgw):
    """With Expect: 100-continue and a Content-Length over the limit, the
    gateway answers 413 at once instead of 100 Continue."""
    n = LIMITS["max_body_bytes"] + 1
    head = ("POST /v1/traces HTTP/1.1\r\nHost: it\r\nContent-Type: application/x-protobuf\r\n"
            "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % n).encode()
    with socket.create_connection((itlib.LOOPBACK, lgw.http_port), timeout=5) as s:
        s.sendall(head)
        r = itlib.read_http_response(s.makefile("rb"))
    assert r.status == 413, r


def test_http10_request(lgw, upstream):
    body = itlib.make_logs(1, "h10").SerializeToString()
    req = ("POST /v1/logs HTTP/1.0\r\nContent-Type: application/x-protobuf\r\n"
           "Content-Length: %d\r\n\r\n" % len(body)).encode() + body
    with socket.create_connection((itlib.LOOPBACK, lgw.http_port), timeout=5) as s:
        s.sendall(req)
        f = s.makefile("rb")
        r = itlib.read_http_response(f)
        assert r.status == 200, r
        assert f.read(1) == b"", "HTTP/1.0 without keep-alive must be closed after the response"
    upstream.wait_items("logs", 1)


def test_max_connections(upstream, start_gateway):
    gw = start_gateway(upstream, receiver={"max_connections": 4}, dataplane={"workers": 1})
    socks = [socket.create_connection((itlib.LOOPBACK, gw.http_port), timeout=3)
             for _ in range(4)]
    try:
        time.sleep(0.2)
        extra = socket.create_connection((itlib.LOOPBACK, gw.http_port), timeout=3)
        extra.sendall(_raw_post("traces", b""))
        try:
            data = extra.recv(4096)
        except (ConnectionResetError, socket.timeout):
            data = b""
        extra.close()
        assert data == b"" or data.startswith(b"HTTP/1.1 503"), \
            "5th connection served with max_connections 4: %r" % data[:80]
        # The first four still work.
        socks[0].sendall(_raw_post("traces", itlib.make_traces(1, "mc").SerializeToString()))
        assert itlib.read_http_response(socks[0].makefile("rb")).status == 200
    finally:
        for s in socks:
            s.close()
    # Once they are gone, new connections are served again.
    itlib.wait_for(lambda: gw.post("traces", b"", {"Content-Type": "application/x-protobuf"}
                                   ).status == 200, 5, what="connection after others closed")
