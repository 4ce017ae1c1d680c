# SPDX-License-Identifier: Apache-2.0
"""Hostile clients against the socket mode: 10,000 idle connections,
slowloris (headers or body trickled), header floods, lying Content-Length and
chunked-encoding abuse. Throughout, a well-behaved client keeps getting its
200s, every item it sent arrives once, nothing of the hostile requests does,
and the gateway's memory stays bounded."""
import resource
import socket
import threading
import time

import pytest

import itlib

N_IDLE = 10000


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raw_post(signal, body, extra=b""):
    return (b"POST /v1/%s HTTP/1.1\r\nHost: it\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: %d\r\n" % (signal.encode(), len(body)) + extra + b"\r\n" + body)


class GoodClient(threading.Thread):
    """Sends a small traces request every `interval` s on fresh and kept-alive
    connections until stopped; records statuses, latencies and what it sent."""

    def __init__(self, gw, tag, interval=0.05):
        super().__init__(daemon=True)
        self.gw, self.tag, self.interval = gw, tag, interval
        self.sent, self.statuses, self.latencies = [], [], []
        self.stop_ev = threading.Event()

    def run(self):
        i = 0
        while not self.stop_ev.is_set():
            req = itlib.make_traces(2, "%s%d" % (self.tag, i))
            t0 = time.monotonic()
            try:
                r = self.gw.send("traces", req)
                self.statuses.append(r.status)
                if r.status == 200:
                    self.sent.append(req)
            except OSError as e:
                self.statuses.append(repr(e))
            self.latencies.append(time.monotonic() - t0)
            i += 1
            self.stop_ev.wait(self.interval)

    def finish(self, upstream):
        self.stop_ev.set()
        self.join(10)
        assert self.statuses and all(s == 200 for s in self.statuses), \
            "well-behaved client not served: %r" % [s for s in self.statuses if s != 200][:5]
        expected = [x for q in self.sent for x in itlib.records_of("traces", q)]
        upstream.wait_items("traces", len(expected), timeout=20)
        time.sleep(0.3)
        itlib.assert_same_items(expected, upstream.records("traces"))
        lat = sorted(self.latencies)
        return lat[len(lat) // 2], lat[int(len(lat) * 0.99)]


@pytest.fixture(scope="module", autouse=True)
def many_fds():
    """The test opens 10,000 sockets and the gateway (a child) inherits the
    limit: raise RLIMIT_NOFILE for both, restore afterwards."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(old[0], 2 * N_IDLE)
    try:  # root may raise the hard limit too
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, old[1])))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, old[1]), old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def test_10000_idle_connections(upstream, start_gateway):
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < N_IDLE + 200:
        pytest.skip("RLIMIT_NOFILE hard limit too low for %d connections" % N_IDLE)
    # max_connections is split between the workers and SO_REUSEPORT spreads
    # connections unevenly: leave room so neither worker refuses the client.
    gw = start_gateway(upstream, receiver={"max_connections": 2 * N_IDLE + 200})
    rss0 = rss_kb(gw.proc.pid)
    good = GoodClient(gw, "idle")
    good.start()
    socks = []
    try:
        t0 = time.monotonic()
        for _ in range(N_IDLE):
            socks.append(socket.create_connection((itlib.LOOPBACK, gw.http_port), timeout=10))
        opened = time.monotonic() - t0
        # A burst of 10,000 connects overflows the listen backlogs now and then;
        # the kernel then drops the client's last ACK and completes the
        # connection only when the SYN-ACK is resent (1 s, 2 s, 4 s ...).
        itlib.wait_for(lambda: gw.metrics().value("otlp_worker_connections") >= N_IDLE * 0.99,
                       45, what="%d connections open" % N_IDLE)
        time.sleep(1.0)  # the good client keeps sending meanwhile
        rss1 = rss_kb(gw.proc.pid)
        per_conn = (rss1 - rss0) * 1024 / N_IDLE
        print("\n%d idle connections opened in %.1f s; RSS %d -> %d KiB (%.0f B/connection)"
              % (N_IDLE, opened, rss0, rss1, per_conn))
        assert per_conn < 16 * 1024, "idle connections cost %.0f B each" % per_conn
        # One of the idle connections can still send a request.
        socks[N_IDLE // 2].sendall(raw_post("traces", b""))
        assert itlib.read_http_response(socks[N_IDLE // 2].makefile("rb")).status == 200
    finally:
        for s in socks:
            s.close()
    p50, p99 = good.finish(upstream)
    print("well-behaved client during the test: p50 %.1f ms, p99 %.1f ms"
          % (p50 * 1e3, p99 * 1e3))
    itlib.wait_for(lambda: gw.metrics().value("otlp_worker_connections") < 10, 20,
                   what="connections closed")


def trickle(socks, data, per_round_s, until):
    """Send data one byte per round to every socket until `until` (monotonic)
    or the data is out. Returns {socket: b"closed"|"reset"|None}."""
    pos = 0
    state = {s: None for s in socks}
    while time.monotonic() < until and pos < len(data):
        for s in socks:
            if state[s] is not None:
                continue
            try:
                s.sendall(data[pos:pos + 1])
            except (BrokenPipeError, ConnectionResetError):
                state[s] = "reset"
        pos += 1
        time.sleep(per_round_s)
    return state


@pytest.mark.parametrize("where", ["headers", "body"])
def test_slowloris(upstream, start_gateway, where):
    """200 connections send a request one byte every 100 ms: each is cut off
    (408 or close) once receiver.request_timeout_ms (2 s) passed, none of it
    arrives upstream, and a well-behaved client is served all along."""
    gw = start_gateway(upstream, receiver={"request_timeout_ms": 2000})
    body = itlib.make_traces(1, "slow").SerializeToString()
    req = raw_post("traces", body)
    if where == "body":
        split = req.index(b"\r\n\r\n") + 4
        head, req = req[:split], req[split:]
    socks = [socket.create_connection((itlib.LOOPBACK, gw.http_port), timeout=10)
             for _ in range(200)]
    good = GoodClient(gw, "sl" + where)
    good.start()
    try:
        if where == "body":
            for s in socks:
                s.sendall(head)
        t0 = time.monotonic()
        trickle(socks, req, 0.1, t0 + 4.0)  # 40 bytes in 4 s: never complete
        assert len(req) > 40
        # Every slow connection got a 408 or was closed by the server.
        for s in socks:
            s.settimeout(3)
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:80]
        took = time.monotonic() - t0
        assert took < 8, "slow connections lived %.1f s with a 2 s request timeout" % took
    finally:
        for s in socks:
            s.close()
    good.finish(upstream)
    m = gw.metrics()
    assert m.value("otlp_receiver_errors_total", reason="request_timeout") >= 200


def test_header_flood(upstream, start_gateway):
    """50 connections each stream an endless header section: each gets a 431
    and is closed; memory does not follow the flood."""
    gw = start_gateway(upstream)
    rss0 = rss_kb(gw.proc.pid)
    good = GoodClient(gw, "hf")
    good.start()
    results = []

    def flood():
        with socket.create_connection((itlib.LOOPBACK, gw.http_port), timeout=10) as s:
            s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: it\r\n")
            line = b"X-Flood: " + b"a" * 100 + b"\r\n"
            sent = 0
            try:
                while sent < 8 * 1024 * 1024:
                    s.sendall(line * 100)
                    sent += len(line) * 100
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                s.settimeout(5)
                data = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                data = b""
            results.append((sent, data[:12]))

    threads = [threading.Thread(target=flood) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    rss1 = rss_kb(gw.proc.pid)
    good.finish(upstream)
    assert len(results) == 50
    for sent, data in results:
        assert sent < 8 * 1024 * 1024, "server kept reading an endless header section"
        assert data in (b"", b"HTTP/1.1 431"), data
    assert any(d == b"HTTP/1.1 431" for _, d in results)
    print("\nheader flood: RSS %d -> %d KiB" % (rss0, rss1))
    assert rss1 - rss0 < 64 * 1024, "RSS grew %d KiB under a header flood" % (rss1 - rss0)


def test_lying_content_length(upstream, start_gateway):
    gw = start_gateway(upstream, receiver={"request_timeout_ms": 1500})
    good = itlib.make_traces(3, "honest")
    body = good.SerializeToString()
    # Claims more than it sends, then waits: 408 (or close), nothing arrives.
    with socket.create_connection((itlib.LOOPBACK, gw.http_port), timeout=10) as s:
        s.sendall(raw_post("traces", body)[:-10].replace(
            b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + 1000)))
        s.settimeout(5)
        data = s.recv(4096)
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:80]
    # Claims less than it sends: the cut body is not valid OTLP (400) and the
    # rest is not a request (400 and close); nothing of it arrives.
    lie = raw_post("traces", body).replace(b"Content-Length: %d" % len(body),
                                           b"Content-Length: %d" % (len(body) - 7))
    with socket.create_connection((itlib.LOOPBACK, gw.http_port), timeout=10) as s:
        s.sendall(lie)
        f = s.makefile("rb")
        r = itlib.read_http_response(f)
        assert r.status == 400, r
        try:
            r2 = itlib.read_http_response(f)
            assert r2.status == 400, r2
        except ConnectionError:
            pass
    # Absurd lengths: refused before any body is read.
    for cl in (b"99999999999999999999", b"18446744073709551616", b"1e9", b"0x10"):
        req = raw_post("traces", b"").replace(b"Content-Length: 0", b"Content-Length: " + cl)
        [r] = itlib.raw_exchange(gw.http_port, req)
        assert r.status in (400, 413), (cl, r)
    assert gw.send("traces", good).status == 200
    upstream.wait_items("traces", 3)
    time.sleep(0.3)
    itlib.assert_same_items(itlib.records_of("traces", good), upstream.records("traces"))


CHUNKED_ABUSE = {
    "size-overflow": b"FFFFFFFFFFFFFFFFFFFFFFFF\r\n",
    "size-not-hex": b"zz\r\nab\r\n0\r\n\r\n",
    "size-negative": b"-5\r\nabcde\r\n0\r\n\r\n",
    "missing-crlf": b"3\r\nabcXYZ\r\n0\r\n\r\n",
    "huge-extension": b"3;" + b"e" * 200000 + b"\r\nabc\r\n0\r\n\r\n",
    "trailer-flood": b"0\r\n" + b"X-T: v\r\n" * 50000 + b"\r\n",
    "over-limit-in-tiny-chunks": b"1\r\na\r\n" * 70000 + b"0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(CHUNKED_ABUSE))
def test_chunked_abuse(upstream, start_gateway, name):
    gw = start_gateway(upstream, receiver={"max_body_bytes": 64 * 1024,
                                           "max_decompressed_bytes": 256 * 1024})
    req = (b"POST /v1/traces HTTP/1.1\r\nHost: it\r\nContent-Type: application/x-protobuf\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_ABUSE[name])
    with socket.create_connection((itlib.LOOPBACK, gw.http_port), timeout=10) as s:
        try:
            s.sendall(req)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early and closed while we were still sending
        s.settimeout(5)
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else None
    assert status in (400, 413, 431), (name, data[:120])
    good = itlib.make_traces(2, "after-" + name)
    assert gw.send("traces", good).status == 200
    upstream.wait_items("traces", 2)
    time.sleep(0.2)
    itlib.assert_same_items(itlib.records_of("traces", good), upstream.records("traces"))
