# SPDX-License-Identifier: Apache-2.0
"""receiver.tls in DPDK mode: OpenSSL over memory BIOs on the userspace TCP
stack (lib/dpdk tls_input/conn_seal, lib/tls tls_conn_init_mem). Clients in
the namespace: curl --cacert over TLS 1.3 and 1.2, keep-alive, a body of many
records and segments; no CA (verification fails), plain http:// on the TLS
port (lib/tls's plain 400); mTLS with a good, a missing, an untrusted and an
expired client certificate; OTLP/gRPC over TLS with h2load (ALPN h2). Every
accepted span is counted once, refusals are counted by reason, and no
connection is left. Certificates are made per module with the openssl CLI,
as tests/integration/test_tls.py does."""

import shutil
import subprocess

import pytest

from conftest import GRPC_EXPORT_URL, SERVICE_IP, DpdkRig, gen_request, itlib, report

GEN = r"""
set -e
cd "$1"
""" + itlib.CERT_SH_FUNCS + r"""SRV='subjectAltName=IP:198.18.0.2
extendedKeyUsage=serverAuth'
mkca ca 'otlp dpdk CA'
mkca other 'untrusted CA'
leaf server ca 0x1001 30 "$SRV"
leaf client ca 0x3003 30 extendedKeyUsage=clientAuth
leaf untrusted other 0x4004 30 extendedKeyUsage=clientAuth
leaf expired ca 0x5005 -1 extendedKeyUsage=clientAuth
chmod 600 *.key
"""
HTTPS = "https://%s:4318/v1/traces" % SERVICE_IP


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    d = tmp_path_factory.mktemp("dpdk-certs")
    p = subprocess.run(["sh", "-c", GEN, "sh", str(d)], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return d


def tls_rig(tmp_path, request, certs, **tls):
    cfg = {"enabled": True, "cert_file": str(certs / "server.pem"),
           "key_file": str(certs / "server.key")}
    cfg.update(tls)
    args = ["--cacert", certs / "ca.pem"]
    if tls.get("client_auth") == "require":
        args += ["--cert", certs / "client.pem", "--key", certs / "client.key"]
    r = DpdkRig(tmp_path, exporter={"protocol": "discard"}, tls_args=args,
                receiver={"tls": cfg, "request_timeout_ms": 3000})
    request.addfinalizer(r.stop)
    return r.start()


def curl(r, body_file, args, urls=1):
    """curl from the namespace: POST body_file to HTTPS `urls` times (one
    connection, keep-alive). Returns (exit code, status codes, stderr)."""
    cmd = ["curl", "-sS", "--noproxy", "*", "--max-time", "15", "-o", "/dev/null",
           "-w", "%{http_code}\\n", "-H", "Content-Type: application/x-protobuf"]
    for i in range(urls):
        if i:
            cmd.append("--next")
            cmd += ["-o", "/dev/null", "-w", "%{http_code}\\n", "-H",
                    "Content-Type: application/x-protobuf"]
        cmd += list(args) + ["--data-binary", "@%s" % body_file, HTTPS]
    p = r.ns_run(cmd, timeout=40)
    return p.returncode, p.stdout.decode().split(), p.stderr.decode()


def failures(m, reason):
    return m.value("otlp_tls_handshake_failures_total", reason=reason)


def spans(m):
    return m.value("otlp_spans_accepted_total")


def test_tls_curl(tmp_path, request, certs):
    r = tls_rig(tmp_path, request, certs)
    ca = ["--cacert", str(certs / "ca.pem")]
    small = tmp_path / "s.pb"
    small.write_bytes(itlib.make_traces(5, "tls-s").SerializeToString())
    big = tmp_path / "b.pb"  # ~150 KB: many TLS records and TCP segments
    big.write_bytes(itlib.make_traces(1500, "tls-b").SerializeToString())
    m0 = r.metrics()
    rc, codes, err = curl(r, small, ca + ["--tlsv1.3"], urls=3)  # one connection, keep-alive
    assert (rc, codes) == (0, ["200"] * 3), err
    rc, codes, err = curl(r, small, ca + ["--tls-max", "1.2"])
    assert (rc, codes) == (0, ["200"]), err
    rc, codes, err = curl(r, big, ca, urls=2)
    assert (rc, codes) == (0, ["200", "200"]), err
    m = r.metrics()
    assert spans(m) - spans(m0) == 4 * 5 + 2 * 1500
    assert m.value("otlp_tls_connections_total", listener="http") - \
        m0.value("otlp_tls_connections_total", listener="http") == 3

    # no CA: curl refuses our certificate (and alerts us)
    rc, codes, err = curl(r, small, [])
    assert rc == 60, (rc, err)  # CURLE_PEER_FAILED_VERIFICATION
    # plain http:// on the TLS port: lib/tls's plain 400, counted as not_tls
    p = r.ns_run(["curl", "-sS", "--noproxy", "*", "--max-time", "10", "-H",
                  "Content-Type: application/x-protobuf", "--data-binary", "@%s" % small,
                  "http://%s:4318/v1/traces" % SERVICE_IP, "-w", "\\n%{http_code}"], timeout=20)
    out = p.stdout.decode()
    assert out.endswith("400") and "use https://" in out, out + p.stderr.decode()
    itlib.wait_for(lambda: failures(r.metrics(), "not_tls") == 1 and
                   failures(r.metrics(), "peer_alert") == 1, 5, what="failures counted")
    itlib.wait_for(lambda: r.metrics().value("otlp_worker_connections") == 0, 10,
                   what="no connection left")
    assert spans(r.metrics()) - spans(m0) == 4 * 5 + 2 * 1500
    report("dpdk tls: curl TLS 1.3 (keep-alive x3), TLS 1.2, 2 x 1500 spans: all 200; no CA -> "
           "rc 60, plain http -> 400, both counted")


def test_mtls(tmp_path, request, certs):
    r = tls_rig(tmp_path, request, certs, client_auth="require", ca_file=str(certs / "ca.pem"))
    ca = ["--cacert", str(certs / "ca.pem")]
    body = tmp_path / "m.pb"
    body.write_bytes(itlib.make_traces(7, "mtls").SerializeToString())
    m0 = r.metrics()
    rc, codes, err = curl(r, body, ca + ["--cert", str(certs / "client.pem"),
                                         "--key", str(certs / "client.key")], urls=2)
    assert (rc, codes) == (0, ["200", "200"]), err
    rc, codes, err = curl(r, body, ca)
    assert rc != 0 and codes in ([], ["000"]), (rc, codes, err)
    for name in ("untrusted", "expired"):
        rc, codes, err = curl(r, body, ca + ["--cert", str(certs / ("%s.pem" % name)),
                                             "--key", str(certs / ("%s.key" % name))])
        assert rc != 0 and codes in ([], ["000"]), (name, rc, codes, err)
    itlib.wait_for(lambda: failures(r.metrics(), "client_cert_missing") == 1 and
                   failures(r.metrics(), "client_cert_invalid") == 2, 5,
                   what="refusals counted by reason")
    itlib.wait_for(lambda: r.metrics().value("otlp_worker_connections") == 0, 10,
                   what="no connection left")
    assert spans(r.metrics()) - spans(m0) == 14
    assert "certificate has expired" in "\n".join(r.gw.log_lines())
    report("dpdk mtls: client certificate -> 200 x2; none, untrusted CA, expired -> refused "
           "(client_cert_missing 1, client_cert_invalid 2)")


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load not installed (nghttp2-client)")
def test_grpc_over_tls(tmp_path, request, certs):
    r = tls_rig(tmp_path, request, certs)
    body = gen_request(tmp_path, 100, grpc=True)
    m0 = r.metrics()
    p = r.ns_run(["h2load", "-n", "200", "-c", "2", "-m", "5", "-d", str(body), "-H",
                  "content-type: application/grpc", "-H", "te: trailers",
                  GRPC_EXPORT_URL.replace("http://", "https://")], timeout=120)
    out = p.stdout.decode()
    assert p.returncode == 0 and "200 succeeded" in out and "status codes: 200 2xx" in out, \
        out + p.stderr.decode()
    assert "TLSv1.3" in out or "TLSv1.2" in out, out
    m = r.metrics()
    assert m.value("otlp_spans_accepted_total", protocol="grpc") - \
        m0.value("otlp_spans_accepted_total", protocol="grpc") == 200 * 100
    assert m.value("otlp_tls_connections_total", listener="grpc") == 2
    itlib.wait_for(lambda: r.metrics().value("otlp_worker_connections") == 0, 10,
                   what="no connection left")
    report("dpdk grpc over tls: h2load 200 calls x 100 spans over 2 TLS connections, all OK")
