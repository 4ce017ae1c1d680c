# SPDX-License-Identifier: Apache-2.0
"""curl -> otlp-service -> test upstream: every encoding of every signal is
answered correctly and arrives upstream exactly once with identical content."""

import pytest

import itlib

SIGNALS = ["traces", "metrics", "logs"]
RESPONSE_FIELD = {"traces": "rejected_spans", "metrics": "rejected_data_points",
                  "logs": "rejected_log_records"}


def check_ok_response(signal, status, rh, rb, encoding):
    assert status == 200, "HTTP %s: %r" % (status, rb[:300])
    ct = rh.get("content-type", "")
    assert ct.split(";")[0].strip() == itlib.CONTENT_TYPES[encoding], \
        "response Content-Type %r does not match the request's %s" % (ct, encoding)
    resp = itlib.decode_response(signal, rb, ct)
    if resp.HasField("partial_success"):
        assert getattr(resp.partial_success, RESPONSE_FIELD[signal]) == 0, resp
    return resp


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("encoding", ["proto", "json"])
@pytest.mark.parametrize("use_gzip", [False, True], ids=["plain", "gzip"])
def test_post_arrives_once_identical(gw, upstream, tmp_path, signal, encoding, use_gzip):
    reqs = [itlib.make_request(signal, n, "%s-%d" % (encoding, i)) for i, n in enumerate((7, 5))]
    for i, req in enumerate(reqs):
        body, headers = itlib.encode_request(req, encoding, use_gzip)
        status, rh, rb, _ = itlib.curl_post(gw.http_port, "/v1/" + signal, body, headers,
                                            tmp_path, name="r%d" % i)
        check_ok_response(signal, status, rh, rb, encoding)
    got = upstream.wait_items(signal, 12)
    expected = [r for req in reqs for r in itlib.records_of(signal, req)]
    itlib.assert_same_items(expected, upstream.records(signal))
    assert upstream.stats()["decode_errors"] == 0
    assert len(got) == 12


@pytest.mark.parametrize("signal", SIGNALS)
def test_expect_100_continue(gw, upstream, tmp_path, signal):
    req = itlib.make_request(signal, 40, "expect")
    body, headers = itlib.encode_request(req, "proto", False)
    assert len(body) > 1024
    headers["Expect"] = "100-continue"
    status, rh, rb, err = itlib.curl_post(gw.http_port, "/v1/" + signal, body, headers,
                                          tmp_path, extra_args=["-v"])
    check_ok_response(signal, status, rh, rb, "proto")
    assert "HTTP/1.1 100 Continue" in err, \
        "gateway did not send '100 Continue' for Expect: 100-continue (curl waited it out)"
    upstream.wait_items(signal, 40)
    itlib.assert_same_items(itlib.records_of(signal, req), upstream.records(signal))


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("use_gzip", [False, True], ids=["plain", "gzip"])
def test_chunked_upload(gw, upstream, tmp_path, signal, use_gzip):
    req = itlib.make_request(signal, 30, "chunked")
    body, headers = itlib.encode_request(req, "proto", use_gzip)
    headers["Transfer-Encoding"] = "chunked"
    status, rh, rb, err = itlib.curl_post(gw.http_port, "/v1/" + signal, body, headers,
                                          tmp_path, extra_args=["-v"])
    assert "Transfer-Encoding: chunked" in err  # curl really sent it chunked
    check_ok_response(signal, status, rh, rb, "proto")
    upstream.wait_items(signal, 30)
    itlib.assert_same_items(itlib.records_of(signal, req), upstream.records(signal))


def test_chunked_in_many_small_chunks(gw, upstream):
    """A chunked body split into 100-byte chunks sent in separate writes."""
    req = itlib.make_traces(12, "smallchunks")
    body, _ = itlib.encode_request(req, "proto", False)
    head = ("POST /v1/traces HTTP/1.1\r\nHost: it\r\nContent-Type: application/x-protobuf\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 100]), body[i:i + 100])
                      for i in range(0, len(body), 100)) + b"0\r\n\r\n"
    import socket
    with socket.create_connection((itlib.LOOPBACK, gw.http_port), timeout=5) as s:
        s.sendall(head)
        for i in range(0, len(chunks), 37):
            s.sendall(chunks[i:i + 37])
        r = itlib.read_http_response(s.makefile("rb"))
    assert r.status == 200, r
    upstream.wait_items("traces", 12)
    itlib.assert_same_items(itlib.records_of("traces", req), upstream.records("traces"))


RES_ATTRS = {"deployment.environment": "it-gw", "gw.added": "yes", "k8s.cluster.name": "c1"}


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_resource_attributes_upserted(upstream, start_gateway, tmp_path, signal, encoding):
    """resources.attributes appear on every resource, overwriting same-named ones;
    everything else is unchanged."""
    gw = start_gateway(upstream, resources={"attributes": RES_ATTRS})
    # One request whose resources carry a same-named attribute, one without it,
    # and one whose resource-level message has no Resource at all.
    r1 = itlib.make_request(signal, 6, "res1",
                            resource_extra={"deployment.environment": "original"})
    r2 = itlib.make_request(signal, 4, "res2")
    r3 = itlib.make_request(signal, 3, "res3")
    rfield = {"traces": "resource_spans", "metrics": "resource_metrics",
              "logs": "resource_logs"}[signal]
    for rr in getattr(r3, rfield):
        rr.ClearField("resource")
    for req in (r1, r2, r3):
        r = gw.send(signal, req, encoding)
        assert r.status == 200, r
    got = upstream.wait_items(signal, 13)
    for rec in got:
        a = itlib.otlp_pb.attrs(rec["resource"].get("attributes"))  # raises on duplicates
        for k, v in RES_ATTRS.items():
            assert a.get(k) == ("s", v), "resource attribute %s: %r (resource %r)" % (
                k, a.get(k), rec["resource"])
    expected = [r for req in (r1, r2, r3) for r in itlib.records_of(signal, req)]
    itlib.assert_same_items(expected, got, ignore_resource_keys=list(RES_ATTRS))
