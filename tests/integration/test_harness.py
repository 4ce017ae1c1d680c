# SPDX-License-Identifier: Apache-2.0
"""The test tools proven against each other without otlp-service: the JS SDK
client and curl talk straight to the test upstream. When these pass and a
gateway test fails, the gateway is at fault."""

import http.client
import time

import pytest

import itlib
import otlp_pb

SIGNALS = ["traces", "metrics", "logs"]


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("encoding,use_gzip", [("proto", False), ("json", False),
                                                ("proto", True), ("json", True)])
def test_js_client_direct_to_upstream(js_ready, upstream, tmp_path, signal, encoding, use_gzip):
    out = str(tmp_path / "summary.json")
    args = ["--endpoint", upstream.url, "--signal", signal, "--encoding", encoding,
            "--count", "11", "--out", out] + (["--gzip"] if use_gzip else [])
    p, summary = itlib.run_js(args)
    assert p.returncode == 0, p.stderr.decode()
    assert summary["ok"] and summary["exported_items"] == 11
    assert len(summary["exports"]) >= 3, "send.js must export in several batches"
    got = upstream.wait_items(signal, 11)
    itlib.assert_same_items(itlib.summary_records(summary), got)
    reqs = upstream.requests()
    want_ct = itlib.CONTENT_TYPES[encoding]
    assert all(r["content_type"].startswith(want_ct) for r in reqs), reqs
    assert all((r["content_encoding"] == "gzip") == use_gzip for r in reqs), reqs


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("encoding,use_gzip", [("proto", False), ("json", True)])
def test_curl_and_builders_direct_to_upstream(upstream, tmp_path, signal, encoding, use_gzip):
    req = itlib.make_request(signal, 9, "direct")
    body, headers = itlib.encode_request(req, encoding, use_gzip)
    status, rh, rb, _ = itlib.curl_post(upstream.port, "/v1/" + signal, body, headers, tmp_path)
    assert status == 200
    assert rh["content-type"].startswith(itlib.CONTENT_TYPES[encoding])
    itlib.decode_response(signal, rb, rh["content-type"])
    got = upstream.wait_items(signal, 9)
    itlib.assert_same_items(itlib.records_of(signal, req), got)


def test_js_client_reports_failure(js_ready, upstream, tmp_path):
    upstream.mode(status=400)
    out = str(tmp_path / "s.json")
    p, summary = itlib.run_js(["--endpoint", upstream.url, "--signal", "traces",
                               "--count", "3", "--out", out])
    assert p.returncode == 1
    assert summary["ok"] is False and summary["exports"][0]["ok"] is False


def test_upstream_modes(upstream):
    req = itlib.make_traces(4, "modes")
    upstream.queue({"status": 503, "times": 2}, {"status": 429, "retry_after": 3},
                   {"status": 400}, {"status": 200, "partial_rejected": 2, "message": "nope"})
    got = [upstream_post(upstream, req) for _ in range(6)]
    assert [r.status for r in got] == [503, 503, 429, 400, 200, 200]
    assert got[2].headers.get("retry-after") == "3"
    assert "retry-after" not in got[0].headers
    partial = itlib.decode_response("traces", got[4].body, got[4].headers["content-type"])
    assert partial.partial_success.rejected_spans == 2
    assert partial.partial_success.error_message == "nope"
    full = itlib.decode_response("traces", got[5].body, got[5].headers["content-type"])
    assert not full.HasField("partial_success")
    st = upstream.stats()
    assert st["by_status"] == {"503": 2, "429": 1, "400": 1, "200": 2}
    assert st["items_accepted"]["traces"] == 8
    assert len(upstream.records("traces", all_=True)) == 24
    upstream.reset()
    assert upstream.stats()["requests"] == 0


def test_upstream_close_and_hang(upstream):
    req = itlib.make_traces(1, "close")
    upstream.queue({"close": True}, {"hang_s": 0.6})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        upstream_post(upstream, req)
    t0 = time.monotonic()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        upstream_post(upstream, req)
    assert time.monotonic() - t0 >= 0.5
    assert upstream_post(upstream, req).status == 200
    assert upstream.stats()["items_accepted"]["traces"] == 1


def test_upstream_rejects_garbage(upstream):
    r = itlib.http_request(upstream.port, "POST", "/v1/logs", b"\xff\xff\xff",
                           {"Content-Type": "application/x-protobuf"})
    assert r.status == 400
    code, msg = itlib.decode_rpc_status(r.body, r.headers["content-type"])
    assert code == 3 and "decode" in msg
    assert upstream.stats()["decode_errors"] == 1


def upstream_post(upstream, req):
    body, headers = itlib.encode_request(req, "proto", False)
    return itlib.http_request(upstream.port, "POST", "/v1/traces", body, headers)


def test_prometheus_parser():
    m = itlib.Metrics('# HELP a_total x\n# TYPE a_total counter\n'
                      'a_total{signal="traces",result="ok"} 3\n'
                      'a_total{signal="logs",result="retry"} 2 1700000000000\n'
                      'b{l="q\\"x"} 1.5e+00\nc 7\n')
    assert m.get("a_total") == 5 and m.get("a_total", result="retry") == 2
    assert m.get("b", l='q"x') == 1.5 and m.value("nope") == 0.0
    assert m.types["a_total"] == "counter"


def test_otlp_json_hex_ids_roundtrip():
    req = itlib.make_logs(3, "hex")
    js = otlp_pb.message_to_otlp_json(req)
    assert otlp_pb.parse_otlp_json(js, otlp_pb.request_class("logs")) == req
