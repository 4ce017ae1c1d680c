# SPDX-License-Identifier: Apache-2.0
"""TLS, mTLS and bearer tokens on the OTLP listeners (receiver.tls,
receiver.auth; docs/tls.md) with real clients: curl over HTTPS, python's ssl
module, grpcio with ssl_channel_credentials, openssl s_client and the
OpenTelemetry JS SDK. Certificates are made per module with the openssl CLI.
Every accepted request is checked at the upstream; every refused one is
checked to have left nothing there, and counted on /metrics."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

import itlib
import otlp_pb

SIGNALS = ["traces", "metrics", "logs"]
ITEMS = {"traces": "spans", "metrics": "metric_points", "logs": "log_records"}
METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
TOKENS = ["tok-alpha.1", "tok-beta_2"]

GEN = r"""
set -e
cd "$1"
""" + itlib.CERT_SH_FUNCS + r"""SRV='subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth'
mkca ca 'otlp it CA'
mkca other 'untrusted CA'
leaf server ca 0x1001 30 "$SRV"
leaf server2 ca 0x2002 30 "$SRV"
leaf client ca 0x3003 30 extendedKeyUsage=clientAuth
leaf untrusted other 0x4004 30 extendedKeyUsage=clientAuth
leaf expired ca 0x5005 -1 extendedKeyUsage=clientAuth
chmod 600 *.key
"""


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    d = tmp_path_factory.mktemp("certs")
    p = subprocess.run(["sh", "-c", GEN, "sh", str(d)], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return d


def cert_serial(pem_or_der, der=False):
    args = ["openssl", "x509", "-noout", "-serial"] + (["-inform", "DER"] if der else [])
    p = subprocess.run(args, input=pem_or_der, capture_output=True, timeout=10)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode().strip().split("=", 1)[1]


def install_server_cert(certs, tmp_path, name):
    """Copy cert `name` to the paths the gateway is configured with; atomic
    renames, as a certificate manager would do it."""
    for ext in ("pem", "key"):
        src = certs / ("%s.%s" % (name, ext))
        tmp = tmp_path / ("live.%s.tmp" % ext)
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, tmp_path / ("live.%s" % ext))


def tls_config(certs, tmp_path, **tls):
    install_server_cert(certs, tmp_path, "server")
    cfg = {"enabled": True, "cert_file": str(tmp_path / "live.pem"),
           "key_file": str(tmp_path / "live.key")}
    cfg.update(tls)
    return cfg


def start_tls(start_gateway, upstream, certs, tmp_path, auth=None, **tls):
    timeout = tls.pop("request_timeout_ms", 2000)
    recv = {"tls": tls_config(certs, tmp_path, **tls), "request_timeout_ms": timeout}
    if auth is not None:
        recv["auth"] = auth
    return start_gateway(upstream, receiver=recv)


def curl_https(gw, path, body, headers, tmp_path, args=(), name="req", host=itlib.LOOPBACK):
    """POST over https with curl. Returns (curl exit code, status, headers, body, stderr)."""
    bfile = tmp_path / ("%s.body" % name)
    bfile.write_bytes(body)
    hfile = tmp_path / ("%s.hdr" % name)
    ofile = tmp_path / ("%s.out" % name)
    for f in (hfile, ofile):
        if f.exists():
            f.unlink()
    cmd = ["-X", "POST", "https://%s:%d%s" % (host, gw.http_port, path),
           "--data-binary", "@%s" % bfile, "-D", str(hfile), "-o", str(ofile),
           "-w", "%{http_code} %{http_version}"]
    for k, v in headers.items():
        cmd += ["-H", "%s: %s" % (k, v)]
    p = itlib.curl(cmd + list(args))
    out = p.stdout.decode().split()
    status = int(out[0]) if out else 0
    rh = {}
    if hfile.exists():
        for line in hfile.read_text("latin-1").splitlines():
            k, sep, v = line.partition(":")
            if sep and not line.startswith("HTTP/"):
                rh[k.strip().lower()] = v.strip()
        rh["_version"] = out[1] if len(out) > 1 else ""
    rb = ofile.read_bytes() if ofile.exists() else b""
    return p.returncode, status, rh, rb, p.stderr.decode("latin-1")


def ssl_context(certs, client=None):
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if client:
        ctx.load_cert_chain(str(certs / ("%s.pem" % client)), str(certs / ("%s.key" % client)))
    return ctx


def failures(gw, reason):
    return gw.metrics().value("otlp_tls_handshake_failures_total", reason=reason)


def wait_failure(gw, reason, n=1):
    itlib.wait_for(lambda: failures(gw, reason) >= n, 5,
                   what=lambda: "otlp_tls_handshake_failures_total{reason=%s} >= %d (%s)"
                   % (reason, n, [s for s in gw.metrics().series(
                       "otlp_tls_handshake_failures_total") if s[1]]))


def nothing_arrived(upstream):
    time.sleep(0.3)
    st = upstream.stats()["items_accepted"]
    assert sum(st.values()) == 0, st


# ---------------------------------------------------------------------------
# HTTPS with curl
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("signal_", SIGNALS)
@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_curl_https_arrives(start_gateway, upstream, certs, tmp_path, signal_, encoding):
    gw = start_tls(start_gateway, upstream, certs, tmp_path)
    req = itlib.make_request(signal_, 9, "https-" + encoding)
    body, headers = itlib.encode_request(req, encoding, encoding == "json")
    rc, status, rh, rb, err = curl_https(gw, "/v1/" + signal_, body, headers, tmp_path,
                                         ["--cacert", str(certs / "ca.pem")])
    assert rc == 0, err
    assert status == 200, rb
    assert rh["_version"] == "1.1"  # ALPN http/1.1, though curl offered h2
    resp = itlib.decode_response(signal_, rb, rh.get("content-type"))
    assert not resp.HasField("partial_success") or resp.partial_success.error_message == ""
    upstream.wait_items(signal_, 9)
    itlib.assert_same_items(itlib.records_of(signal_, req), upstream.records(signal_))
    m = gw.metrics()
    assert m.value("otlp_tls_connections_total", listener="http") == 1
    assert m.value("otlp_%s_accepted_total" % ITEMS[signal_]) == 9


def test_curl_without_ca_fails_verification(start_gateway, upstream, certs, tmp_path):
    gw = start_tls(start_gateway, upstream, certs, tmp_path)
    body, headers = itlib.encode_request(itlib.make_traces(3), "proto", False)
    rc, status, _, _, err = curl_https(gw, "/v1/traces", body, headers, tmp_path)
    assert rc == 60, (rc, err)  # CURLE_PEER_FAILED_VERIFICATION
    assert "certificate" in err
    # the name must match too: the certificate is for 127.0.0.1/localhost
    rc, _, _, _, err = curl_https(gw, "/v1/traces", body, headers, tmp_path,
                                  ["--cacert", str(certs / "ca.pem"), "--resolve",
                                   "otlp.example:%d:127.0.0.1" % gw.http_port],
                                  host="otlp.example")
    assert rc == 60, (rc, err)
    assert "subject name" in err or "no alternative certificate subject name" in err, err
    # (curl checks the name after the handshake: only the first is our failure)
    wait_failure(gw, "peer_alert")
    nothing_arrived(upstream)
    # plain HTTP on the TLS port: a plain 400 that says why, counted as not_tls
    r = itlib.http_request(gw.http_port, "POST", "/v1/traces", body, headers, timeout=5)
    assert r.status == 400 and b"use https://" in r.body, r
    wait_failure(gw, "not_tls")
    status, _, rb, err = itlib.curl_post(gw.http_port, "/v1/traces", body, headers, tmp_path,
                                         name="plain")
    assert status == 400 and b"use https://" in rb, (status, rb, err)
    wait_failure(gw, "not_tls", 2)
    assert gw.running()


def test_min_version_1_3(start_gateway, upstream, certs, tmp_path):
    gw = start_tls(start_gateway, upstream, certs, tmp_path, min_version="1.3")
    body, headers = itlib.encode_request(itlib.make_traces(2), "proto", False)
    ca = ["--cacert", str(certs / "ca.pem")]
    rc, _, _, _, err = curl_https(gw, "/v1/traces", body, headers, tmp_path,
                                  ca + ["--tls-max", "1.2"])
    assert rc == 35, (rc, err)  # CURLE_SSL_CONNECT_ERROR
    wait_failure(gw, "protocol_version")
    rc, status, _, _, err = curl_https(gw, "/v1/traces", body, headers, tmp_path,
                                       ca + ["--tlsv1.3"])
    assert (rc, status) == (0, 200), err
    upstream.wait_items("traces", 2)


def test_tls12_with_cipher_list(start_gateway, upstream, certs, tmp_path):
    gw = start_tls(start_gateway, upstream, certs, tmp_path,
                   ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    body, headers = itlib.encode_request(itlib.make_traces(2), "proto", False)
    rc, status, _, _, err = curl_https(gw, "/v1/traces", body, headers, tmp_path,
                                       ["--cacert", str(certs / "ca.pem"), "--tls-max", "1.2",
                                        "-v"])
    assert (rc, status) == (0, 200), err
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in err
    upstream.wait_items("traces", 2)


# ---------------------------------------------------------------------------
# mTLS
# ---------------------------------------------------------------------------

def test_mtls_require(start_gateway, upstream, certs, tmp_path):
    gw = start_tls(start_gateway, upstream, certs, tmp_path, client_auth="require",
                   ca_file=str(certs / "ca.pem"))
    ca = ["--cacert", str(certs / "ca.pem")]
    req = itlib.make_traces(4, tag="mtls")
    body, headers = itlib.encode_request(req, "proto", False)

    rc, status, _, _, err = curl_https(gw, "/v1/traces", body, headers, tmp_path,
                                       ca + ["--cert", str(certs / "client.pem"),
                                             "--key", str(certs / "client.key")])
    assert (rc, status) == (0, 200), err
    upstream.wait_items("traces", 4)
    itlib.assert_same_items(itlib.records_of("traces", req), upstream.records("traces"))
    upstream.reset()

    # no certificate: the handshake fails (TLS 1.3: curl notices on its first read)
    rc, status, _, _, err = curl_https(gw, "/v1/traces", body, headers, tmp_path, ca)
    assert rc != 0 and status == 0, (rc, status, err)
    wait_failure(gw, "client_cert_missing")
    # a certificate from a CA we do not trust, and an expired one
    for name in ("untrusted", "expired"):
        rc, status, _, _, err = curl_https(gw, "/v1/traces", body, headers, tmp_path,
                                           ca + ["--cert", str(certs / ("%s.pem" % name)),
                                                 "--key", str(certs / ("%s.key" % name))])
        assert rc != 0 and status == 0, (name, rc, status, err)
    wait_failure(gw, "client_cert_invalid", 2)
    log = "\n".join(gw.log_lines())
    assert "certificate has expired" in log
    nothing_arrived(upstream)
    assert gw.metrics().value("otlp_tls_connections_total", listener="http") == 1


def test_mtls_request_optional(start_gateway, upstream, certs, tmp_path):
    gw = start_tls(start_gateway, upstream, certs, tmp_path, client_auth="request",
                   ca_file=str(certs / "ca.pem"))
    ctx = ssl_context(certs)
    body, headers = itlib.encode_request(itlib.make_traces(3), "proto", False)
    c = http.client.HTTPSConnection(itlib.LOOPBACK, gw.http_port, context=ctx, timeout=5)
    c.request("POST", "/v1/traces", body, headers)
    assert c.getresponse().status == 200
    c.close()
    upstream.wait_items("traces", 3)
    bad = ssl_context(certs, client="untrusted")
    c = http.client.HTTPSConnection(itlib.LOOPBACK, gw.http_port, context=bad, timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        c.request("POST", "/v1/traces", body, headers)
        c.getresponse()
    c.close()
    wait_failure(gw, "client_cert_invalid")


# ---------------------------------------------------------------------------
# gRPC over TLS
# ---------------------------------------------------------------------------

def grpc_channel(gw, certs, client=None):
    grpc = pytest.importorskip("grpc", reason="python3-grpcio is not installed")
    key = chain = None
    if client:
        key = (certs / ("%s.key" % client)).read_bytes()
        chain = (certs / ("%s.pem" % client)).read_bytes()
    creds = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.pem").read_bytes(),
                                         private_key=key, certificate_chain=chain)
    return grpc.secure_channel("%s:%d" % (itlib.LOOPBACK, gw.grpc_port), creds,
                               options=[("grpc.enable_retries", 0)])


def grpc_export(ch, signal_, req, metadata=None):
    call = ch.unary_unary(METHODS[signal_], request_serializer=lambda m: m.SerializeToString(),
                          response_deserializer=otlp_pb.response_class(signal_).FromString)
    return call.with_call(req, timeout=10, metadata=metadata)


@pytest.mark.parametrize("signal_", SIGNALS)
def test_grpc_over_tls(start_gateway, upstream, certs, tmp_path, signal_):
    grpc = pytest.importorskip("grpc", reason="python3-grpcio is not installed")
    gw = start_tls(start_gateway, upstream, certs, tmp_path)
    req = itlib.make_request(signal_, 11, "grpc-tls")
    with grpc_channel(gw, certs) as ch:
        _, call = grpc_export(ch, signal_, req)
        assert call.code() == grpc.StatusCode.OK
    upstream.wait_items(signal_, 11)
    itlib.assert_same_items(itlib.records_of(signal_, req), upstream.records(signal_))
    assert gw.metrics().value("otlp_tls_connections_total", listener="grpc") >= 1


def test_grpc_mtls(start_gateway, upstream, certs, tmp_path):
    grpc = pytest.importorskip("grpc", reason="python3-grpcio is not installed")
    gw = start_tls(start_gateway, upstream, certs, tmp_path, client_auth="require",
                   ca_file=str(certs / "ca.pem"))
    req = itlib.make_traces(5, tag="grpc-mtls")
    with grpc_channel(gw, certs, client="client") as ch:
        _, call = grpc_export(ch, "traces", req)
        assert call.code() == grpc.StatusCode.OK
    upstream.wait_items("traces", 5)
    with grpc_channel(gw, certs) as ch:
        with pytest.raises(grpc.RpcError) as ei:
            grpc_export(ch, "traces", req)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    wait_failure(gw, "client_cert_missing")
    assert upstream.stats()["items_accepted"]["traces"] == 5


# ---------------------------------------------------------------------------
# Bearer tokens
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("over_tls", [True, False], ids=["tls", "plain"])
def test_bearer_token_http(start_gateway, upstream, certs, tmp_path, over_tls):
    auth = {"bearer_tokens": ",".join(TOKENS)}
    if over_tls:
        gw = start_tls(start_gateway, upstream, certs, tmp_path, auth=auth)
    else:
        gw = start_gateway(upstream, receiver={"auth": auth})
    req = itlib.make_traces(6, tag="bearer")

    def post(token=None, encoding="proto"):
        body, headers = itlib.encode_request(req, encoding, False)
        if token is not None:
            headers["Authorization"] = token
        if not over_tls:
            r = itlib.http_request(gw.http_port, "POST", "/v1/traces", body, headers)
            return r.status, r.headers, r.body
        rc, status, rh, rb, err = curl_https(gw, "/v1/traces", body, headers, tmp_path,
                                             ["--cacert", str(certs / "ca.pem")])
        assert rc == 0, err
        return status, rh, rb

    status, rh, rb = post()
    assert status == 401
    assert rh["www-authenticate"] == 'Bearer realm="otlp"'
    assert itlib.decode_rpc_status(rb, rh.get("content-type"))[0] == 16  # UNAUTHENTICATED
    for wrong in ("Bearer nope", "Bearer " + TOKENS[0] + "x", "Basic " + TOKENS[0],
                  "Bearer " + TOKENS[0][:-1]):
        status, rh, rb = post(wrong, "json")
        assert status == 401, wrong
        assert 'error="invalid_token"' in rh["www-authenticate"]
        assert rh["content-type"] == "application/json"
    nothing_arrived(upstream)

    status, _, _ = post("Bearer " + TOKENS[1])
    assert status == 200
    status, _, _ = post("bearer " + TOKENS[0], "json")
    assert status == 200
    upstream.wait_items("traces", 12)
    m = gw.metrics()
    assert m.value("otlp_receiver_errors_total", reason="unauthorized") == 5
    assert m.value("http_requests_total", path="/v1/traces", code="401") == 5
    log = "\n".join(gw.log_lines())
    for t in TOKENS:
        assert t not in log, "a token reached the log"


def test_bearer_token_grpc(start_gateway, upstream, certs, tmp_path):
    grpc = pytest.importorskip("grpc", reason="python3-grpcio is not installed")
    gw = start_tls(start_gateway, upstream, certs, tmp_path,
                   auth={"bearer_tokens": ",".join(TOKENS)})
    req = itlib.make_logs(4, tag="grpc-bearer")
    with grpc_channel(gw, certs) as ch:
        for md in (None, [("authorization", "Bearer wrong")],
                   [("authorization", TOKENS[0])]):
            with pytest.raises(grpc.RpcError) as ei:
                grpc_export(ch, "logs", req, metadata=md)
            assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED, md
        nothing_arrived(upstream)
        _, call = grpc_export(ch, "logs", req, metadata=[("authorization", "Bearer " + TOKENS[0])])
        assert call.code() == grpc.StatusCode.OK
    upstream.wait_items("logs", 4)
    m = gw.metrics()
    assert m.value("otlp_receiver_errors_total", protocol="grpc", reason="unauthenticated") == 3
    assert m.value("grpc_requests_total", grpc_status="Unauthenticated") == 3


def test_token_file(start_gateway, upstream, tmp_path):
    tf = tmp_path / "tokens"
    tf.write_text("# ingest tokens\nfrom-file-1\n\n  from-file-2  \n")
    tf.chmod(0o640)
    gw = start_gateway(upstream, receiver={"auth": {"token_file": str(tf)}})
    body, headers = itlib.encode_request(itlib.make_traces(2), "proto", False)
    assert gw.post("traces", body, headers).status == 401
    headers["Authorization"] = "Bearer from-file-2"
    assert gw.post("traces", body, headers).status == 200
    upstream.wait_items("traces", 2)
    log = gw.log_lines()
    assert any("chmod 600" in ln and "token_file" in ln for ln in log), log[-10:]
    assert not any("from-file" in ln for ln in log)


def test_bad_token_file_refuses_to_start(start_gateway, upstream, tmp_path):
    tf = tmp_path / "tokens"
    tf.write_text("# nothing here\n")
    tf.chmod(0o600)
    gw = start_gateway(upstream, wait_ready=False, receiver={"auth": {"token_file": str(tf)}})
    assert gw.proc.wait(10) != 0
    assert any("holds no token" in ln for ln in gw.log_lines())


# ---------------------------------------------------------------------------
# SIGHUP: certificate reload
# ---------------------------------------------------------------------------

def s_client_serial(port):
    p = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (itlib.LOOPBACK, port),
                        "-showcerts", "-servername", "localhost"],
                       input=b"", capture_output=True, timeout=15)
    m = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", p.stdout, re.S)
    assert m, p.stdout.decode()[-2000:] + p.stderr.decode()[-2000:]
    return cert_serial(m.group(0))


def test_sighup_reloads_certificates(start_gateway, upstream, certs, tmp_path):
    gw = start_tls(start_gateway, upstream, certs, tmp_path)
    assert s_client_serial(gw.http_port) == "1001"
    # a keep-alive connection made before the reload
    conn = http.client.HTTPSConnection(itlib.LOOPBACK, gw.http_port, context=ssl_context(certs),
                                       timeout=10)
    body, headers = itlib.encode_request(itlib.make_traces(3, tag="before"), "proto", False)
    conn.request("POST", "/v1/traces", body, headers)
    assert conn.getresponse().read() is not None
    sock_before = conn.sock
    assert cert_serial(conn.sock.getpeercert(binary_form=True), der=True) == "1001"

    install_server_cert(certs, tmp_path, "server2")
    gw.proc.send_signal(signal.SIGHUP)
    itlib.wait_for(lambda: gw.metrics().value("otlp_tls_reloads_total", result="ok") == 1, 5,
                   what="a successful reload")
    assert any("TLS certificates reloaded" in ln and "2002" in ln for ln in gw.log_lines())
    # new connections see the new certificate, on both ports
    assert s_client_serial(gw.http_port) == "2002"
    assert s_client_serial(gw.grpc_port) == "2002"
    # the old connection carries on with its certificate
    for i in range(3):
        conn.request("POST", "/v1/traces", body, headers)
        r = conn.getresponse()
        r.read()
        assert r.status == 200
    assert conn.sock is sock_before
    conn.close()
    upstream.wait_items("traces", 12)

    # bad files: the reload fails, the current certificate stays, nothing breaks
    (tmp_path / "live.pem").write_text("not a certificate\n")
    gw.proc.send_signal(signal.SIGHUP)
    itlib.wait_for(lambda: gw.metrics().value("otlp_tls_reloads_total", result="error") == 1, 5,
                   what="a failed reload")
    assert any("TLS reload failed" in ln for ln in gw.log_lines())
    assert s_client_serial(gw.http_port) == "2002"
    rc, status, _, _, err = curl_https(gw, "/v1/traces", body, headers, tmp_path,
                                       ["--cacert", str(certs / "ca.pem")])
    assert (rc, status) == (0, 200), err
    upstream.wait_items("traces", 15)
    assert gw.running()


def test_sighup_under_traffic(start_gateway, upstream, certs, tmp_path):
    """Requests on kept-alive connections go on while certificates are swapped
    back and forth; none fails."""
    gw = start_tls(start_gateway, upstream, certs, tmp_path)
    ctx = ssl_context(certs)
    conns = [http.client.HTTPSConnection(itlib.LOOPBACK, gw.http_port, context=ctx, timeout=10)
             for _ in range(4)]
    body, headers = itlib.encode_request(itlib.make_traces(2, tag="hup"), "proto", False)
    sent = 0
    for rnd in range(6):
        install_server_cert(certs, tmp_path, "server2" if rnd % 2 == 0 else "server")
        gw.proc.send_signal(signal.SIGHUP)
        for c in conns:
            c.request("POST", "/v1/traces", body, headers)
            r = c.getresponse()
            r.read()
            assert r.status == 200
            sent += 2
        # and a fresh connection each round
        rc, status, _, _, err = curl_https(gw, "/v1/traces", body, headers, tmp_path,
                                           ["--cacert", str(certs / "ca.pem")])
        assert (rc, status) == (0, 200), err
        sent += 2
    for c in conns:
        c.close()
    upstream.wait_items("traces", sent)
    itlib.wait_for(lambda: gw.metrics().value("otlp_tls_reloads_total", result="ok") == 6, 5,
                   what="6 reloads")


# ---------------------------------------------------------------------------
# Operations: key permissions, handshake timeout, config errors
# ---------------------------------------------------------------------------

def test_loose_key_permissions_warn(start_gateway, upstream, certs, tmp_path):
    recv = {"tls": tls_config(certs, tmp_path)}
    os.chmod(tmp_path / "live.key", 0o644)
    gw = start_gateway(upstream, receiver=recv)
    lines = [json.loads(ln) for ln in gw.log_lines() if ln.startswith("{")]
    warn = [ln for ln in lines if ln["level"] == "warn" and "chmod 600" in ln["msg"]]
    assert warn and warn[0]["file"].endswith("live.key") and warn[0]["mode"] == "0644", lines
    assert not any("PRIVATE KEY" in json.dumps(ln) for ln in lines)
    body, headers = itlib.encode_request(itlib.make_traces(1), "proto", False)
    rc, status, _, _, err = curl_https(gw, "/v1/traces", body, headers, tmp_path,
                                       ["--cacert", str(certs / "ca.pem")])
    assert (rc, status) == (0, 200), err


def test_handshake_timeout(start_gateway, upstream, certs, tmp_path):
    gw = start_tls(start_gateway, upstream, certs, tmp_path, request_timeout_ms=300)
    t0 = time.monotonic()
    with socket.create_connection((itlib.LOOPBACK, gw.http_port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then silence
        assert s.recv(100) == b""    # closed by the gateway
    assert time.monotonic() - t0 < 3
    wait_failure(gw, "timeout")
    assert gw.metrics().value("otlp_worker_timeouts_total") >= 1


def test_config_validation(gateway_bin, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("receiver:\n  tls:\n    enabled: true\n    client_auth: require\n"
                   "    min_version: 1.1\n  auth:\n    bearer_tokens: \"good, bad token\"\n")
    p = subprocess.run([gateway_bin, "validate", "--config", str(cfg)], capture_output=True,
                       timeout=10)
    err = p.stderr.decode()
    assert p.returncode == 2, err
    for needle in ("receiver.tls.cert_file: required", "receiver.tls.key_file: required",
                   "receiver.tls.ca_file: required", "receiver.tls.min_version",
                   "receiver.auth.bearer_tokens"):
        assert needle in err, (needle, err)
    assert "bad token" not in err  # a credential is never echoed


# ---------------------------------------------------------------------------
# The OpenTelemetry JS SDK over HTTPS (and gRPC over TLS)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("signal_", SIGNALS)
@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_js_sdk_https(js_ready, start_gateway, upstream, certs, tmp_path, signal_, encoding):
    gw = start_tls(start_gateway, upstream, certs, tmp_path,
                   auth={"bearer_tokens": TOKENS[0]})
    n = 40
    out = str(tmp_path / "summary.json")
    args = ["node", os.path.join(itlib.JS_DIR, "send.js"),
            "--endpoint", "https://%s:%d" % (itlib.LOOPBACK, gw.http_port),
            "--signal", signal_, "--encoding", encoding, "--count", str(n), "--out", out,
            "--header", "Authorization=Bearer " + TOKENS[0],
            "--resource", "test.case=https-%s-%s" % (signal_, encoding)]
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(certs / "ca.pem"))
    p = subprocess.run(args, capture_output=True, timeout=60, cwd=itlib.JS_DIR, env=env)
    with open(out) as f:
        summary = json.load(f)
    assert p.returncode == 0, (p.stderr.decode()[-2000:], summary.get("exports"))
    assert summary["exported_items"] == n
    assert not [d for d in summary["diag"] if d.startswith("error")], summary["diag"]
    upstream.wait_items(signal_, n)
    itlib.assert_same_items(itlib.summary_records(summary), upstream.records(signal_))
    assert gw.metrics().value("otlp_tls_connections_total", listener="http") >= 1

    # without the CA the SDK refuses our certificate: the export fails (Node
    # closes without an alert: counted as closed)
    env.pop("NODE_EXTRA_CA_CERTS")
    args[args.index("--count") + 1] = "3"
    p = subprocess.run(args, capture_output=True, timeout=60, cwd=itlib.JS_DIR, env=env)
    assert p.returncode == 1, p.stderr.decode()[-2000:]
    assert "certificate" in p.stderr.decode()
    itlib.wait_for(lambda: gw.metrics().value("otlp_tls_handshake_failures_total") >= 1, 5,
                   what="a handshake failure")


def test_js_sdk_grpc_mtls(js_ready, start_gateway, upstream, certs, tmp_path):
    """The SDK's gRPC exporter over mTLS, configured the standard way
    (OTEL_EXPORTER_OTLP_CERTIFICATE, _CLIENT_KEY, _CLIENT_CERTIFICATE)."""
    gw = start_tls(start_gateway, upstream, certs, tmp_path, client_auth="require",
                   ca_file=str(certs / "ca.pem"))
    n = 30
    out = str(tmp_path / "summary.json")
    args = ["--protocol", "grpc", "--endpoint", "https://localhost:%d" % gw.grpc_port,
            "--signal", "traces", "--count", str(n), "--out", out]
    env = dict(os.environ, OTEL_EXPORTER_OTLP_CERTIFICATE=str(certs / "ca.pem"),
               OTEL_EXPORTER_OTLP_CLIENT_KEY=str(certs / "client.key"),
               OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=str(certs / "client.pem"))
    p = subprocess.run(["node", os.path.join(itlib.JS_DIR, "send.js")] + args,
                       capture_output=True, timeout=60, cwd=itlib.JS_DIR, env=env)
    with open(out) as f:
        summary = json.load(f)
    if p.returncode != 0 and "localhost" in p.stderr.decode() and "ECONNREFUSED ::1" in \
            p.stderr.decode():
        pytest.skip("localhost resolves to ::1 only here")
    assert p.returncode == 0, (p.stderr.decode()[-2000:], summary.get("exports"))
    upstream.wait_items("traces", n)
    itlib.assert_same_items(itlib.summary_records(summary), upstream.records("traces"))
    assert gw.metrics().value("otlp_tls_connections_total", listener="grpc") >= 1
