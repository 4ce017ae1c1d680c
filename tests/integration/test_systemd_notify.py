# SPDX-License-Identifier: Apache-2.0
"""sd_notify for Type=notify units, over the real protocol: a datagram socket
in the test plays systemd's $NOTIFY_SOCKET, the service sends through
libsystemd's sd_notify(). READY=1 only once /health/ready answers 200,
WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1/READY=1 around SIGHUP,
STOPPING=1 on SIGTERM."""
import os
import shutil
import signal
import socket
import tempfile
import time

import pytest

import itlib


@pytest.fixture
def notify_socket():
    d = tempfile.mkdtemp(prefix="otlp-notify-")  # short path: sun_path is 108 bytes
    path = os.path.join(d, "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    try:
        yield s, path
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)


def recv_until(sock, pred, timeout):
    """Datagrams (as dicts of KEY=value lines) until pred(msg) or timeout."""
    msgs = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            data = sock.recv(4096)
        except socket.timeout:
            break
        msg = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        msgs.append(msg)
        if pred(msg):
            return msgs
    raise AssertionError("no matching notification within %.1fs; got %r" % (timeout, msgs))


def test_ready_watchdog_reload_stopping(start_gateway, upstream, notify_socket):
    sock, path = notify_socket
    gw = start_gateway(upstream, wait_ready=False,
                       env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    msgs = recv_until(sock, lambda m: m.get("READY") == "1", 15)
    # Nothing before READY=1 claims readiness, and READY=1 means it.
    assert all("READY" not in m for m in msgs[:-1])
    assert "accepting OTLP" in msgs[-1].get("STATUS", "")
    assert itlib.http_request(gw.control_port, "GET", "/health/ready").status == 200

    # Keep-alives every 200 ms (half of WATCHDOG_USEC): at least 4 in 1.5 s.
    pings = 0
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        m = recv_until(sock, lambda m: True, 1.0)[-1]
        pings += m.get("WATCHDOG") == "1"
    assert pings >= 4, pings

    gw.proc.send_signal(signal.SIGHUP)
    recv_until(sock, lambda m: m.get("RELOADING") == "1" and "MONOTONIC_USEC" in m, 5)
    recv_until(sock, lambda m: m.get("READY") == "1", 5)

    gw.proc.send_signal(signal.SIGTERM)
    recv_until(sock, lambda m: m.get("STOPPING") == "1", 5)
    assert gw.proc.wait(15) == 0


def test_no_watchdog_without_watchdog_usec(start_gateway, upstream, notify_socket):
    sock, path = notify_socket
    start_gateway(upstream, wait_ready=False, env={"NOTIFY_SOCKET": path})
    recv_until(sock, lambda m: m.get("READY") == "1", 15)
    sock.settimeout(0.8)
    with pytest.raises(socket.timeout):
        sock.recv(4096)
