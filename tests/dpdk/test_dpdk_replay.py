# SPDX-License-Identifier: Apache-2.0
"""Pcap replay and connection churn in DPDK mode.

- A pcap of complete OTLP/HTTP conversations (bench/otlp_traffic.py pcap
  --replay-isn) replayed once by net_pcap into the service run with
  dataplane.dpdk.replay_isn (benchmarks only: public ISNs): every request in
  the pcap is accepted (otlp_spans_accepted_total == spans in the pcap,
  exactly once at the test upstream) and the tx pcap holds one HTTP 200 per
  request, one SYN-ACK and one FIN per conversation and no RST.
- replay_isn is refused unless the port is net_pcap reading pcap files.
- 1000 connections over net_tap from the namespace, one request each, closed
  by the client (half of them ask `Connection: close`, so the server closes
  first and holds TIME_WAIT): all 200, every span counted, and the
  connection table back to empty.
"""

import gzip
import os
import random
import struct
import subprocess

import pytest

from conftest import ROOT, URL, DpdkRig, itlib, report

TRAFFIC = os.path.join(ROOT, "bench", "otlp_traffic.py")
PCAP_MAC = "02:70:63:61:70:00"  # net_pcap's MAC for the first pcap vdev


def _write_index(tmp, n_requests):
    """Requests of 1..400 spans, every other one gzip, in the index format of
    otlp_traffic.py (file signal encoding items raw_bytes wire_bytes)."""
    rows, items = [], 0
    for i in range(n_requests):
        n = (1, 7, 60, 400)[i % 4]
        body = itlib.make_traces(n, "replay-%d" % i, seed=i).SerializeToString()
        enc = "gzip" if i % 2 else "identity"
        wire = gzip.compress(body, 6) if enc == "gzip" else body
        name = "req-%02d.pb%s" % (i, ".gz" if enc == "gzip" else "")
        (tmp / name).write_bytes(wire)
        rows.append("%s\ttraces\t%s\t%d\t%d\t%d" % (name, enc, n, len(body), len(wire)))
        items += n
    idx = tmp / "index-replay.tsv"
    idx.write_text("# file\tsignal\tencoding\titems\traw_bytes\twire_bytes\n" + "\n".join(rows) + "\n")
    return idx


def _response_200(tmp):
    """The exact HTTP 200 of this build (the client ACKs in the pcap count its
    bytes): one request to the same binary in socket mode."""
    cfg = itlib.base_config(tmp, exporter={"protocol": "discard"})
    cfg["exporter"].pop("file", None)
    gw = itlib.Gateway(tmp, cfg, name="resp").start()
    try:
        body = itlib.make_traces(1, "resp").SerializeToString()
        req = (b"POST /v1/traces HTTP/1.1\r\nHost: 198.18.0.2:4318\r\n"
               b"Content-Type: application/x-protobuf\r\nContent-Length: %d\r\n\r\n" % len(body)
               + body)
        import socket
        s = socket.create_connection(("127.0.0.1", gw.http_port), timeout=10)
        s.sendall(req)
        r = b""
        while b"\r\n\r\n" not in r:
            chunk = s.recv(4096)
            assert chunk, r
            r += chunk
        s.close()
    finally:
        gw.stop()
    assert r.startswith(b"HTTP/1.1 200 ") and r.endswith(b"Content-Length: 0\r\n\r\n"), r
    return r


def _read_pcap(path):
    """Frames of a classic pcap (either byte order)."""
    data = open(path, "rb").read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise AssertionError("%s: not a pcap (%r)" % (path, magic))
    off, frames = 24, []
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(end + "IIII", data[off:off + 16])
        frames.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    return frames


def _server_streams(frames):
    """Per client port: the server's TCP payload in sequence order, and
    counts of SYN-ACK, FIN and RST segments the server sent."""
    flows, synack, fin, rst = {}, 0, 0, 0
    for f in frames:
        if len(f) < 54 or f[12:14] != b"\x08\x00" or f[23] != 6:
            continue
        ihl = (f[14] & 0xf) * 4
        tcp = f[14 + ihl:]
        tot = struct.unpack("!H", f[16:18])[0]
        dport = struct.unpack("!H", tcp[2:4])[0]
        seq = struct.unpack("!I", tcp[4:8])[0]
        flags = tcp[13]
        doff = (tcp[12] >> 4) * 4
        payload = tcp[doff:tot - ihl]
        if flags & 0x12 == 0x12:
            synack += 1
        if flags & 0x01:
            fin += 1
        if flags & 0x04:
            rst += 1
        if payload:
            flows.setdefault(dport, {})[seq] = payload
    streams = {p: b"".join(segs[s] for s in sorted(segs)) for p, segs in flows.items()}
    return streams, synack, fin, rst


def test_pcap_replay_all_accepted(tmp_path, request, upstream):
    flows, per_flow, n_idx = 16, 4, 8
    idx = _write_index(tmp_path, n_idx)
    resp = _response_200(tmp_path)
    (tmp_path / "resp.bin").write_bytes(resp)
    rx = tmp_path / "rx.pcap"
    tx = tmp_path / "tx.pcap"
    subprocess.run(["/usr/bin/python3", TRAFFIC, "pcap", "--index", str(idx), "--out", str(rx),
                    "--dst-mac", PCAP_MAC, "--flows", str(flows), "--requests-per-flow",
                    str(per_flow), "--replay-isn", "--response-file", str(tmp_path / "resp.bin")],
                   check=True, capture_output=True)
    meta = dict(l.split("\t") for l in (tmp_path / "rx.pcap.meta").read_text().splitlines() if l)
    n_req, n_spans = int(meta["requests"]), int(meta["items"])
    assert n_req == flows * per_flow

    eal = ("--no-huge -m 1024 --no-pci --file-prefix=otlp-replay-%d-%d "
           "--vdev=net_pcap0,rx_pcap=%s,tx_pcap=%s" % (os.getpid(), random.randint(0, 99999),
                                                       rx, tx))
    cfg = itlib.base_config(tmp_path, upstream=upstream, dataplane={
        "mode": "dpdk", "workers": 1,
        "dpdk": {"eal_args": eal, "ip": "198.18.0.2", "netmask": "255.254.0.0",
                 "replay_isn": True}})
    cfg["receiver"].update({"host": "0.0.0.0", "http_port": 4318, "grpc_port": 0})
    cfg["exporter"]["timeout_ms"] = 20000
    gw = itlib.Gateway(tmp_path, cfg, name="replay")
    request.addfinalizer(gw.stop)
    gw.start(timeout=30)
    try:
        itlib.wait_for(lambda: gw.metrics().value("otlp_spans_accepted_total") >= n_spans, 30,
                       interval=0.2, what="%d spans accepted" % n_spans)
        itlib.wait_for(lambda: gw.metrics().value("otlp_tcp_connections") == 0, 10,
                       interval=0.2, what="every replayed connection closed")
    except AssertionError:
        print(gw.log_tail(40))
        raise
    m = gw.metrics()
    assert m.value("otlp_spans_accepted_total") == n_spans
    assert m.value("http_requests_total", path="/v1/traces", code="200") == n_req
    assert m.value("http_requests_total") == n_req
    assert m.value("otlp_net_events_total", event="tcp_accepted") == flows
    assert m.value("otlp_net_events_total", event="tcp_resets_tx") == 0
    drops = {lab["reason"]: v for lab, v in m.series("otlp_net_drops_total") if v}
    assert drops == {}, drops
    assert m.value("otlp_worker_connections") == 0
    upstream.wait_items("traces", n_spans, timeout=30)
    assert gw.stop() == 0  # closes the port: the tx pcap is complete

    streams, synack, fin, rst = _server_streams(_read_pcap(tx))
    assert (synack, fin, rst) == (flows, flows, 0)
    assert len(streams) == flows
    for port, data in streams.items():
        assert data == resp * per_flow, "client port %d: %r" % (port, data[:200])
    report("pcap replay (net_pcap, replay_isn): %d conversations, %d requests, %d spans: all "
           "accepted, %d x 200 in the tx pcap" % (flows, n_req, n_spans, n_req))


@pytest.mark.parametrize("vdev", ["net_null0", "net_pcap0,iface=lo",
                                  "net_pcap0,rx_pcap=/dev/null,tx_iface=lo"])
def test_replay_isn_refused_without_pcap_files(tmp_path, vdev):
    """Public ISNs only on pcap files: not on another PMD, not on net_pcap
    bound to a live interface."""
    cfg = itlib.base_config(tmp_path, dataplane={
        "mode": "dpdk", "workers": 1,
        "dpdk": {"eal_args": "--no-huge -m 1024 --no-pci --vdev=%s" % vdev, "ip": "198.18.0.2",
                 "replay_isn": True}})
    gw = itlib.Gateway(tmp_path, cfg, name="refuse").start(wait_ready=False)
    try:
        gw.proc.wait(30)
    finally:
        gw.stop()
    assert gw.proc.returncode != 0
    assert any("replay_isn is for pcap replay only" in l for l in gw.log_lines()), gw.log_tail()


CHURN_CLIENT = r'''
import socket, sys, threading
host, body_path, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = open(body_path, "rb").read()
ok, bad, lock = [0], [], threading.Lock()
def one(i):
    close = i % 2 == 0
    req = (b"POST /v1/traces HTTP/1.1\r\nHost: %s:4318\r\nContent-Type: application/x-protobuf\r\n"
           b"%sContent-Length: %d\r\n\r\n" % (host.encode(), b"Connection: close\r\n" if close else b"",
                                            len(body)) + body)
    s = socket.create_connection((host, 4318), timeout=10)
    s.sendall(req)
    r = b""
    while b"\r\n\r\n" not in r:
        c = s.recv(4096)
        if not c:
            break
        r += c
    if close:  # the server closes first: read to its FIN
        while s.recv(4096):
            pass
    s.close()
    return r.split(b"\r\n", 1)[0]
def worker(k):
    for i in range(k, n, threads):
        try:
            st = one(i)
        except OSError as e:
            st = repr(e).encode()
        with lock:
            if st.startswith(b"HTTP/1.1 200 "):
                ok[0] += 1
            else:
                bad.append(st)
ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
[t.start() for t in ts]
[t.join() for t in ts]
print(ok[0], bad[:5])
'''


def test_connection_churn_1000(tmp_path, request):
    """1000 connections from the namespace (4 at a time), one request each,
    then closed; half by the server (Connection: close, TIME_WAIT on our
    side), half by the client. All 200, every span counted, no connection
    left once TIME_WAIT (500 ms in the rig) has passed."""
    r = DpdkRig(tmp_path, exporter={"protocol": "discard"}, grpc=False)
    request.addfinalizer(r.stop)
    r.start()
    body = itlib.make_traces(5, "churn").SerializeToString()
    (tmp_path / "churn.pb").write_bytes(body)
    (tmp_path / "churn.py").write_text(CHURN_CLIENT)
    m0 = r.metrics()
    host = URL.split("//")[1].split(":")[0]
    import time
    t0 = time.time()
    p = r.ns_run(["/usr/bin/python3", str(tmp_path / "churn.py"), host, str(tmp_path / "churn.pb"),
                  "1000", "4"], timeout=300)
    dt = time.time() - t0
    out = p.stdout.decode().strip()
    assert p.returncode == 0 and out.startswith("1000 "), out + p.stderr.decode()
    itlib.wait_for(lambda: r.metrics().value("otlp_tcp_connections") == 0, 15, interval=0.2,
                   what="otlp_tcp_connections back to 0 after TIME_WAIT")
    m = r.metrics()

    def d(name, **lab):
        return m.value(name, **lab) - m0.value(name, **lab)
    assert d("http_requests_total", path="/v1/traces", code="200") == 1000
    assert d("otlp_spans_accepted_total") == 5000
    assert d("otlp_worker_connections_accepted_total") == 1000
    assert d("otlp_net_events_total", event="tcp_accepted") == 1000
    assert d("otlp_net_events_total", event="tcp_closed") == 1000
    assert m.value("otlp_worker_connections") == 0
    assert d("otlp_worker_connections_refused_total") == 0
    assert d("otlp_net_drops_total", reason="tcp_table_full") == 0
    report("churn: 1000 connections (half closed by the server) in %.2f s (%.0f conn/s), all "
           "200, table empty afterwards; resets tx %d" % (
               dt, 1000 / dt, d("otlp_net_events_total", event="tcp_resets_tx")))
