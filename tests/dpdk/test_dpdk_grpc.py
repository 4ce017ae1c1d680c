# SPDX-License-Identifier: Apache-2.0
"""OTLP/gRPC on 4317 through the DPDK data plane (one service shared by the
module, exporting to the test upstream): python3-grpcio with and without
gzip, many concurrent streams on one connection, exactly-once delivery;
h2load with a gRPC-framed 100-span request; HTTP and gRPC side by side; no
connection left behind."""

import shutil
import threading
import time

import pytest

from conftest import SERVICE_IP, URL, DpdkRig, gen_request, grpc_framed, itlib, report

GRPC = {"protocol": "grpc"}


@pytest.fixture(scope="module")
def rig(mod_tmp, upstream, request):
    """The module's service, with gRPC on 4317. The queue holds the 20,000
    spans of the h2load test, so none is refused while the test upstream (a
    Python process) catches up."""
    r = DpdkRig(mod_tmp, upstream=upstream, batch={"max_queue_size": 65536})
    request.addfinalizer(r.stop)
    return r.start()


def _write(tmp, name, req):
    f = tmp / name
    f.write_bytes(req.SerializeToString())
    return f


@pytest.mark.parametrize("use_gzip", [True, False], ids=["gzip", "identity"])
def test_grpcio_exactly_once(rig, upstream, use_gzip):
    """grpcio from inside the namespace: 3 requests (1, 37 and 900 spans),
    concurrently over one channel, grpc-encoding gzip or identity; every span
    arrives at the upstream exactly once."""
    tag = "grpcio-%s" % ("gz" if use_gzip else "id")
    reqs = [itlib.make_traces(n, "%s-%d" % (tag, i)) for i, n in enumerate((1, 37, 900))]
    files = [_write(rig.tmp, "%s-%d.pb" % (tag, i), r) for i, r in enumerate(reqs)]
    before = rig.metrics().value("otlp_spans_accepted_total", **GRPC)
    rc, res = rig.grpc_export(files, use_gzip=use_gzip)
    assert rc == 0 and res["codes"] == ["OK"] * 3, res
    expected = [r for req in reqs for r in itlib.records_of("traces", req)]
    upstream.wait_items("traces", len(expected))
    time.sleep(0.3)
    itlib.assert_same_items(expected, upstream.records("traces"))
    m = rig.metrics()
    assert m.value("otlp_spans_accepted_total", **GRPC) - before == len(expected)
    if use_gzip:
        assert m.value("grpc_requests_total", grpc_status="OK") >= 3


def test_grpcio_many_streams(rig, upstream):
    """60 concurrent calls (5-400 spans, gzip; 9,100 spans) multiplexed on one
    HTTP/2 connection: all OK in the end (RESOURCE_EXHAUSTED would be
    retried, as OTLP exporters do), exactly once."""
    sizes = [(5, 50, 400)[i % 3] for i in range(60)]
    reqs = [itlib.make_traces(n, "streams-%d" % i) for i, n in enumerate(sizes)]
    files = [_write(rig.tmp, "streams-%d.pb" % i, r) for i, r in enumerate(reqs)]
    rc, res = rig.grpc_export(files, use_gzip=True, retry=30)
    assert rc == 0 and set(res["codes"]) == {"OK"}, res
    assert set(res["refusals"]) <= {"RESOURCE_EXHAUSTED"}, res
    expected = [r for req in reqs for r in itlib.records_of("traces", req)]
    upstream.wait_items("traces", len(expected), timeout=30)
    time.sleep(0.3)
    itlib.assert_same_items(expected, upstream.records("traces"))
    report("grpcio net_tap: 60 concurrent calls, %d spans, gzip, one connection: %.2f s, "
           "%d attempts (refusals %s), exactly once"
           % (len(expected), res["seconds"], res["attempts"], res["refusals"]))


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load not installed (nghttp2-client)")
def test_h2load_grpc_exactly_once(rig, upstream):
    """h2load, 200 calls of a gRPC-framed 100-span request, 2 connections x
    10 streams: all 2xx with grpc-status 0, otlp_spans_accepted_total{protocol=
    "grpc"} grows by 20,000 and the upstream gets 20,000 spans."""
    body = gen_request(rig.tmp, 100, grpc=True)
    m0 = rig.metrics()
    res = rig.h2load(body, 200, 2, 10)
    assert res["succeeded"] == 200 and res["2xx"] == 200, res["out"]
    m = rig.metrics()
    assert m.value("otlp_spans_accepted_total", **GRPC) - \
        m0.value("otlp_spans_accepted_total", **GRPC) == 20000
    assert m.value("grpc_requests_total", grpc_status="OK") - \
        m0.value("grpc_requests_total", grpc_status="OK") == 200
    upstream.wait_items("traces", 20000, timeout=60)
    time.sleep(0.5)
    assert upstream.stats()["items_accepted"]["traces"] == 20000


def test_grpc_and_http_side_by_side(rig, upstream):
    """curl on 4318 and grpcio on 4317 at the same time: both protocols on
    one lcore, each counted under its own label."""
    m0 = rig.metrics()
    http_req = itlib.make_traces(20, "side-http")
    body, headers = itlib.encode_request(http_req, "proto", False)
    grpc_reqs = [itlib.make_traces(30, "side-grpc-%d" % i) for i in range(10)]
    files = [_write(rig.tmp, "side-%d.pb" % i, r) for i, r in enumerate(grpc_reqs)]
    out = {}
    t = threading.Thread(target=lambda: out.update(r=rig.grpc_export(files, use_gzip=True)))
    t.start()
    statuses = [rig.post(body, headers, name="side%d" % i) for i in range(5)]
    t.join(120)
    rc, res = out["r"]
    assert statuses == [200] * 5
    assert rc == 0 and set(res["codes"]) == {"OK"}, res
    expected = (itlib.records_of("traces", http_req) * 5 +
                [r for q in grpc_reqs for r in itlib.records_of("traces", q)])
    upstream.wait_items("traces", len(expected))
    time.sleep(0.3)
    itlib.assert_same_items(expected, upstream.records("traces"))
    m = rig.metrics()
    assert m.value("otlp_spans_accepted_total", **GRPC) - \
        m0.value("otlp_spans_accepted_total", **GRPC) == 300
    # The HTTP receiver's series has no label: all series minus gRPC.
    assert m.value("otlp_spans_accepted_total") - m0.value("otlp_spans_accepted_total") == 400


def test_grpc_bad_frames_and_no_leak(rig):
    """Garbage on 4317 closes the connection (HTTP/2 protocol error), an
    unknown method is UNIMPLEMENTED; afterwards no application connection
    is left and the TCP table drains after TIME_WAIT."""
    m0 = rig.metrics()
    garbage = ("import socket; s = socket.create_connection(('%s', 4317), 5); "
               "s.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'); s.settimeout(5); "
               "n = 0\nwhile True:\n    d = s.recv(4096)\n    n += len(d)\n    if not d: break\n"
               "print(n)" % SERVICE_IP)
    p = rig.ns_run(["/usr/bin/python3", "-c", garbage], timeout=20)
    assert p.returncode == 0, p.stderr.decode()  # the server closed the connection
    body = rig.tmp / "unknown.grpc"
    body.write_bytes(grpc_framed(b""))
    if shutil.which("h2load") is not None:
        r = rig.ns_run(["h2load", "-n", "3", "-c", "1", "-d", str(body), "-H",
                        "content-type: application/grpc", "http://%s:4317/no.Such/Method"
                        % SERVICE_IP], timeout=30)
        assert r.returncode == 0, r.stdout.decode()
    itlib.wait_for(lambda: rig.metrics().value("otlp_worker_connections") == 0, 10,
                   what="otlp_worker_connections back to 0")
    m = rig.metrics()
    assert m.value("otlp_receiver_errors_total", protocol="grpc", reason="http2_protocol_error") \
        - m0.value("otlp_receiver_errors_total", protocol="grpc",
                   reason="http2_protocol_error") == 1
    if shutil.which("h2load") is not None:
        assert m.value("grpc_requests_total", method="other", grpc_status="Unimplemented") >= 3
    itlib.wait_for(lambda: rig.metrics().value("otlp_tcp_connections") == 0, 10,
                   what="otlp_tcp_connections back to 0 after TIME_WAIT")
    # HTTP still answers after all that.
    assert rig.curl_status(["-X", "POST", "-H", "Content-Type: application/json", "--data",
                            '{"resourceSpans":[]}', URL + "/v1/traces"]) == 200
