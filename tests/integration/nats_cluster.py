# SPDX-License-Identifier: Apache-2.0
"""A real NATS JetStream cluster for the integration tests, and a tiny NATS
client to look into it.

NatsCluster starts N Debian nats-server processes on 127.0.0.1 (free client,
route and monitoring ports; JetStream store directories under the test's
tmp dir), forms one cluster over routes, waits until JetStream answers, and
can SIGKILL, SIGSTOP and restart single servers. stop() (called by the
fixture even when the test failed) ends every server it started.

NatsClient speaks the NATS text protocol over a socket (CONNECT, SUB,
PUB/HPUB, MSG/HMSG, PING/PONG) with request/reply, which is all the
JetStream API needs: it is JSON on $JS.API.* subjects. No NATS client
library is needed (Debian has none for Python).
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
import uuid

import itlib

LOOPBACK = itlib.LOOPBACK


def server_bin():
    return shutil.which("nats-server")


# ---------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------

class NatsError(Exception):
    pass


class NoResponders(NatsError):
    pass


class NatsClient:
    """One synchronous NATS connection: request() publishes with a reply
    subject and reads until the reply (answering server PINGs meanwhile)."""

    def __init__(self, urls, timeout=5.0):
        self.urls = list(urls)
        self.timeout = timeout
        self.sock = None
        self.buf = b""
        self.inbox = "_INBOX.%s" % uuid.uuid4().hex
        self.sid = 1
        self.info = None
        self._connect()

    def _connect(self):
        last = None
        for url in self.urls:
            host, port = url.split("://")[-1].rsplit(":", 1)
            try:
                s = socket.create_connection((host, int(port)), timeout=self.timeout)
            except OSError as e:
                last = e
                continue
            self.sock, self.buf = s, b""
            line = self._line()
            if not line.startswith(b"INFO "):
                raise NatsError("unexpected greeting %r" % line[:80])
            self.info = json.loads(line[5:])
            opts = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                    "protocol": 1, "name": "otlp-it", "lang": "python", "version": "0"}
            self._send(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
            while True:
                line = self._line()
                if line == b"PONG":
                    break
                if line.startswith(b"-ERR"):
                    raise NatsError(line.decode())
            self._send(("SUB %s.* %d\r\n" % (self.inbox, self.sid)).encode())
            return
        raise NatsError("no NATS server reachable in %s: %s" % (self.urls, last))

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise NatsError("connection closed by the server")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    @staticmethod
    def _headers(raw):
        """NATS/1.0[ status]\\r\\nK: V\\r\\n... -> (status, {k: v})."""
        lines = raw.decode("utf-8", "replace").split("\r\n")
        first = lines[0].split(" ", 2)
        status = int(first[1]) if len(first) > 1 and first[1].isdigit() else 0
        hdrs = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                hdrs[k.strip()] = v.strip()
        return status, hdrs

    def request(self, subject, payload=b"", headers=None, timeout=None):
        """Publish with a reply subject; return (headers dict, payload) of the reply.
        NoResponders when nobody listens; socket.timeout when no reply comes."""
        reply = "%s.%s" % (self.inbox, uuid.uuid4().hex[:12])
        if isinstance(payload, str):
            payload = payload.encode()
        if headers:
            h = "NATS/1.0\r\n" + "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
            hb = h.encode()
            self._send(("HPUB %s %s %d %d\r\n" % (subject, reply, len(hb), len(hb) + len(payload)))
                       .encode() + hb + payload + b"\r\n")
        else:
            self._send(("PUB %s %s %d\r\n" % (subject, reply, len(payload))).encode() + payload
                       + b"\r\n")
        self.sock.settimeout(timeout or self.timeout)
        try:
            while True:
                line = self._line()
                if line == b"PING":
                    self._send(b"PONG\r\n")
                    continue
                if line in (b"PONG", b"+OK") or line.startswith(b"INFO "):
                    continue
                if line.startswith(b"-ERR"):
                    raise NatsError(line.decode())
                parts = line.split()
                if parts[0] == b"MSG":
                    # MSG subject sid [reply] size
                    data = self._exact(int(parts[-1]))
                    status, hdrs = 0, {}
                elif parts[0] == b"HMSG":
                    # HMSG subject sid [reply] hdr_len total_len
                    hlen, total = int(parts[-2]), int(parts[-1])
                    raw = self._exact(total)
                    status, hdrs = self._headers(raw[:hlen])
                    data = raw[hlen:]
                else:
                    raise NatsError("unexpected protocol line %r" % line[:80])
                if parts[1].decode() != reply:
                    continue  # a late reply to an earlier request
                if status == 503:
                    raise NoResponders(subject)
                return hdrs, data
        finally:
            self.sock.settimeout(self.timeout)

    # --- JetStream API (JSON over $JS.API.*) ---

    def js(self, api, body=None, timeout=None):
        _, data = self.request("$JS.API." + api, json.dumps(body) if body is not None else b"",
                               timeout=timeout)
        resp = json.loads(data) if data else {}
        if "error" in resp:
            e = resp["error"]
            raise NatsError("JetStream %s: %s (err_code %s)" % (api, e.get("description"),
                                                                 e.get("err_code")))
        return resp

    def stream_create(self, name, subjects, replicas=1, max_bytes=-1, discard="old",
                      duplicate_window_s=120):
        return self.js("STREAM.CREATE." + name, {
            "name": name, "subjects": list(subjects), "retention": "limits",
            "storage": "file", "num_replicas": replicas, "discard": discard,
            "max_bytes": max_bytes, "max_msgs": -1, "max_age": 0, "max_msg_size": -1,
            "max_consumers": -1, "duplicate_window": int(duplicate_window_s * 1e9)})

    def stream_info(self, name):
        return self.js("STREAM.INFO." + name)

    def msg_get(self, stream, seq):
        """(subject, headers dict, data bytes) of message `seq`; None if deleted."""
        try:
            m = self.js("STREAM.MSG.GET." + stream, {"seq": seq})["message"]
        except NatsError as e:
            if "10037" in str(e):  # no message found
                return None
            raise
        hdrs = {}
        if m.get("hdrs"):
            _, hdrs = self._headers(base64.b64decode(m["hdrs"]))
        return m["subject"], hdrs, base64.b64decode(m.get("data", ""))


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------

class NatsServer:
    def __init__(self, workdir, name, cluster_name, route_ports):
        self.workdir = str(workdir)
        self.name = name
        self.cluster_name = cluster_name
        self.port = itlib.free_port()
        self.http_port = itlib.free_port()
        self.route_port = itlib.free_port()
        self.route_ports = route_ports
        self.store = os.path.join(self.workdir, "nats-%s-store" % name)
        self.conf = os.path.join(self.workdir, "nats-%s.conf" % name)
        self.log = os.path.join(self.workdir, "nats-%s.log" % name)
        self.proc = None

    @property
    def url(self):
        return "nats://%s:%d" % (LOOPBACK, self.port)

    def write_conf(self):
        lines = [
            'server_name: "%s"' % self.name,
            'listen: "%s:%d"' % (LOOPBACK, self.port),
            'http: "%s:%d"' % (LOOPBACK, self.http_port),
            "jetstream {",
            '  store_dir: "%s"' % self.store,
            "  max_memory_store: 64MB",
            "  max_file_store: 4GB",
            "}",
        ]
        if self.cluster_name:
            routes = ", ".join('"nats-route://%s:%d"' % (LOOPBACK, p) for p in self.route_ports)
            lines += ["cluster {", '  name: "%s"' % self.cluster_name,
                      '  listen: "%s:%d"' % (LOOPBACK, self.route_port),
                      "  routes: [%s]" % routes, "}"]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        self.write_conf()
        log = open(self.log, "ab")
        self.proc = subprocess.Popen([server_bin(), "-c", self.conf], stdout=log, stderr=log,
                                     cwd=self.workdir)
        log.close()
        itlib._register(self.proc)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def healthy(self):
        if not self.running():
            return False
        try:
            with urllib.request.urlopen("http://%s:%d/healthz" % (LOOPBACK, self.http_port),
                                        timeout=1) as r:
                return json.loads(r.read()).get("status") == "ok"
        except (OSError, ValueError):
            return False

    def kill(self, sig=signal.SIGKILL):
        if self.running():
            self.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)

    def pause(self):
        self.kill(signal.SIGSTOP)

    def resume(self):
        self.kill(signal.SIGCONT)

    def log_tail(self, n=20):
        try:
            with open(self.log, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


class NatsCluster:
    """n servers; n == 1 is a single JetStream server without routes."""

    def __init__(self, workdir, n=3, name="otlp-it"):
        if server_bin() is None:
            raise RuntimeError("nats-server is not installed (apt-get install nats-server)")
        self.workdir = str(workdir)
        route_ports = []
        self.servers = []
        for i in range(n):
            s = NatsServer(workdir, "n%d" % (i + 1), name if n > 1 else None, route_ports)
            route_ports.append(s.route_port)
            self.servers.append(s)

    @property
    def urls(self):
        return [s.url for s in self.servers]

    @property
    def servers_option(self):
        """exporter.nats.servers for the gateway."""
        return ",".join(self.urls)

    def start(self, timeout=30.0):
        for s in self.servers:
            s.start()
        self.wait_ready(timeout)
        return self

    def stop(self):
        for s in self.servers:
            if s.running():
                s.resume()  # a stopped process cannot handle SIGTERM
                s.kill(signal.SIGTERM)

    def restart(self, i, timeout=30.0):
        self.servers[i].start()
        itlib.wait_for(self.servers[i].healthy, timeout,
                       what=lambda: "nats %s healthy again:\n%s" % (
                           self.servers[i].name, self.servers[i].log_tail()))

    def client(self, timeout=5.0):
        return NatsClient([s.url for s in self.servers if s.running()], timeout=timeout)

    def wait_ready(self, timeout=30.0):
        """Every server healthy and the JetStream API answering (meta leader elected)."""
        def ready():
            for s in self.servers:
                if not s.running():
                    raise itlib.Fatal("nats-server %s exited:\n%s" % (s.name, s.log_tail()))
            if not all(s.healthy() for s in self.servers):
                return False
            with self.client(timeout=2.0) as c:
                c.js("INFO", timeout=2.0)
            return True
        itlib.wait_for(ready, timeout, interval=0.2,
                       what=lambda: "JetStream cluster ready:\n" + "\n".join(
                           "%s: %s" % (s.name, s.log_tail(5)) for s in self.servers))

    def stream_leader(self, stream):
        with self.client() as c:
            return c.stream_info(stream).get("cluster", {}).get("leader")

    def index_of(self, server_name):
        for i, s in enumerate(self.servers):
            if s.name == server_name:
                return i
        raise KeyError(server_name)

    def read_stream(self, stream, timeout=30.0):
        """Every message of `stream` as (seq, subject, headers, data), in order.
        Retries through leader elections."""
        def read():
            out = []
            with self.client(timeout=3.0) as c:
                st = c.stream_info(stream)["state"]
                first, last = st.get("first_seq", 0), st.get("last_seq", 0)
                for seq in range(first, last + 1) if st.get("messages", 0) else ():
                    m = c.msg_get(stream, seq)
                    if m is not None:
                        out.append((seq,) + m)
            return out or [()]  # truthy for wait_for even when empty
        res = itlib.wait_for(read, timeout, interval=0.5, what="reading stream %s" % stream)
        return [m for m in res if m]
