#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A real upstream OTLP/HTTP receiver for the integration tests.

It stands where Jaeger/Tempo/a collector would be behind otlp-service: it
decodes every POST /v1/{traces,metrics,logs} (protobuf or OTLP/JSON, gzip or
not), records each span / data point / log record as a canonical dict with its
resource and scope, and answers the way the test asked it to (200, 200 with
partial_success, 429 with or without Retry-After, 503, 400, hang, close).

    python3 upstream.py --port P --control-port C [--host 127.0.0.1 (any 127.x)]

Port 0 picks a free port. When both servers listen, one JSON line
{"ready": true, "port": P, "control_port": C} is printed on stdout.

Control API (JSON), on the control port and under /_control/ on the OTLP port:
  GET  /health                      {"ok": true}
  POST /mode     MODE               default answer for every request
  POST /queue    {"modes": [MODE..]} answers for the next requests, in order,
                                    before the default applies again
  GET  /records[?signal=S&all=1]    recorded items (accepted ones unless all=1)
  GET  /requests                    one entry per request, in arrival order
  GET  /stats                       counts per status, per signal, queue left
  POST /reset                       forget everything, default mode 200
MODE is an object:
  {"status": 200}                               accept (the default)
  {"status": 200, "partial_rejected": N, "message": "..."}
                                                accept, report N rejected
  {"status": 429, "retry_after": 1}             Retry-After header when given
  {"status": 503} / {"status": 400} / any code  refuse with that status
  {"hang_s": 5}                                 read the request, send nothing
                                                for 5 s, then close
  {"close": true}                               close without an answer
  "times": K in a queued MODE repeats it K times.
Items are recorded as accepted only when the answer was a 2xx.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import otlp_pb  # noqa: E402

_REJECTED_FIELD = {"traces": "rejected_spans", "metrics": "rejected_data_points",
                   "logs": "rejected_log_records"}


class State:
    """Everything the control API reads and writes, behind one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.reset()

    def reset(self):
        with self.lock:
            self.default_mode = {"status": 200}
            self.queue = []
            self.records = []
            self.requests = []
            self.generation = getattr(self, "generation", 0) + 1

    def next_mode(self):
        with self.lock:
            if self.queue:
                return dict(self.queue.pop(0))
            return dict(self.default_mode)


STATE = State()


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def rpc_status(code, message, as_json):
    """google.rpc.Status, hand-encoded (code = 1, message = 2)."""
    if as_json:
        return json.dumps({"code": code, "message": message}).encode(), "application/json"
    m = message.encode()
    return (b"\x08" + _varint(code) + b"\x12" + _varint(len(m)) + m,
            "application/x-protobuf")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "otlp-test-upstream/1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("upstream: %s\n" % (fmt % args))

    # --- plumbing ---------------------------------------------------------
    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ValueError("eof in chunk size")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, code, body=b"", ctype="application/json", extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _json(self, code, obj):
        self._send(code, json.dumps(obj).encode())

    # --- control API --------------------------------------------------------
    def _control(self, method, path):
        u = urlparse(path)
        p = u.path
        if p.startswith("/_control"):
            p = p[len("/_control"):] or "/"
        q = parse_qs(u.query)
        body = self._read_body() if method == "POST" else b""
        try:
            arg = json.loads(body) if body else None
        except ValueError:
            return self._json(400, {"error": "body is not JSON"})
        st = STATE
        if method == "GET" and p == "/health":
            return self._json(200, {"ok": True})
        if method == "POST" and p == "/mode":
            with st.lock:
                st.default_mode = arg or {"status": 200}
            return self._json(200, {"ok": True})
        if method == "POST" and p == "/queue":
            modes = arg.get("modes", []) if isinstance(arg, dict) else (arg or [])
            with st.lock:
                for m in modes:
                    m = dict(m)
                    times = int(m.pop("times", 1))
                    st.queue.extend([m] * times)
                left = len(st.queue)
            return self._json(200, {"ok": True, "queued": left})
        if method == "GET" and p == "/records":
            sig = q.get("signal", [None])[0]
            all_ = q.get("all", ["0"])[0] == "1"
            with st.lock:
                recs = [r for r in st.records
                        if (sig is None or r["signal"] == sig) and (all_ or r["accepted"])]
            return self._json(200, recs)
        if method == "GET" and p == "/requests":
            with st.lock:
                reqs = list(st.requests)
            return self._json(200, reqs)
        if method == "GET" and p == "/stats":
            with st.lock:
                by_status, by_signal, items = {}, {}, {s: 0 for s in otlp_pb.SIGNALS}
                errors = 0
                for r in st.requests:
                    by_status[str(r["status"])] = by_status.get(str(r["status"]), 0) + 1
                    if r["signal"]:
                        by_signal[r["signal"]] = by_signal.get(r["signal"], 0) + 1
                    if r["error"]:
                        errors += 1
                for r in st.records:
                    if r["accepted"]:
                        items[r["signal"]] += 1
                out = {"requests": len(st.requests), "by_status": by_status,
                       "by_signal": by_signal, "items_accepted": items,
                       "decode_errors": errors, "queue_left": len(st.queue)}
            return self._json(200, out)
        if method == "POST" and p == "/reset":
            st.reset()
            return self._json(200, {"ok": True})
        return self._json(404, {"error": "unknown control path %s %s" % (method, p)})

    # --- OTLP ---------------------------------------------------------------
    def do_GET(self):
        if self.server.control or self.path.startswith("/_control"):
            return self._control("GET", self.path)
        if self.path in otlp_pb.PATHS:
            return self._send(405, b"", extra={"Allow": "POST"})
        return self._send(404)

    def do_POST(self):
        if self.server.control or self.path.startswith("/_control"):
            return self._control("POST", self.path)
        t_arrival = time.time()
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        path = urlparse(self.path).path
        signal_ = otlp_pb.PATHS.get(path)
        ctype = self.headers.get("Content-Type", "")
        cenc = self.headers.get("Content-Encoding", "")
        as_json = ctype.split(";")[0].strip().lower() == "application/json"
        entry = {"time": t_arrival, "path": path, "signal": signal_, "content_type": ctype,
                 "content_encoding": cenc, "body_bytes": len(body), "items": 0,
                 "headers": {k.lower(): v for k, v in self.headers.items()},
                 "status": None, "mode": None, "error": None}
        if signal_ is None:
            entry["status"] = 404
            self._log(entry)
            return self._send(404)
        req = None
        try:
            req = otlp_pb.decode_body(body, ctype, cenc, signal_)
            entry["items"] = otlp_pb.count_items(signal_, req)
        except ValueError as e:
            entry["error"] = str(e)
        mode = STATE.next_mode()
        entry["mode"] = mode
        gen = STATE.generation

        if mode.get("close"):
            entry["status"] = "close"
            self._log(entry, req, signal_, accepted=False, gen=gen)
            self.close_connection = True
            return
        if mode.get("hang_s") is not None:
            entry["status"] = "hang"
            self._log(entry, req, signal_, accepted=False, gen=gen)
            STATE.stop.wait(float(mode["hang_s"]))
            self.close_connection = True
            return
        if req is None:
            entry["status"] = 400
            self._log(entry)
            b, ct = rpc_status(3, "upstream could not decode: %s" % entry["error"], as_json)
            return self._send(400, b, ct)

        code = int(mode.get("status", 200))
        entry["status"] = code
        if 200 <= code < 300:
            resp = otlp_pb.response_class(signal_)()
            if mode.get("partial_rejected") is not None:
                ps = resp.partial_success
                setattr(ps, _REJECTED_FIELD[signal_], int(mode["partial_rejected"]))
                ps.error_message = mode.get("message", "rejected by test upstream")
            self._log(entry, req, signal_, accepted=True, gen=gen)
            if as_json:
                return self._send(code, otlp_pb.message_to_otlp_json(resp).encode(),
                                  "application/json")
            return self._send(code, resp.SerializeToString(), "application/x-protobuf")
        self._log(entry, req, signal_, accepted=False, gen=gen)
        extra = {}
        if mode.get("retry_after") is not None:
            extra["Retry-After"] = str(mode["retry_after"])
        b, ct = rpc_status(14 if code == 503 else 8 if code == 429 else 3,
                           mode.get("message", "test upstream answers %d" % code), as_json)
        return self._send(code, b, ct, extra)

    def _log(self, entry, req=None, signal_=None, accepted=False, gen=None):
        st = STATE
        recs = otlp_pb.flatten(signal_, req) if req is not None else []
        with st.lock:
            if gen is not None and gen != st.generation:
                return  # a reset happened while this request was in flight
            entry["seq"] = len(st.requests)
            st.requests.append(entry)
            for r in recs:
                r["accepted"] = accepted
                r["request_seq"] = entry["seq"]
                st.records.append(r)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, control, verbose):
        super().__init__(addr, Handler)
        self.control = control
        self.verbose = verbose

    def handle_error(self, request, client_address):
        # Clients (the gateway) time out and drop connections on purpose in
        # the outage tests; a reset socket is not worth a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, BrokenPipeError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    if not (a.host.startswith("127.") or a.host in ("localhost", "::1")):
        ap.error("test upstream listens on loopback only")

    otlp = Server((a.host, a.port), control=False, verbose=a.verbose)
    # Any 127.x address serves OTLP (several upstreams behind one DNS name);
    # the control API stays on 127.0.0.1 where the tests look for it.
    ctl_host = "127.0.0.1" if a.host.startswith("127.") else a.host
    ctl = Server((ctl_host, a.control_port), control=True, verbose=a.verbose)
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1},
                                daemon=True) for s in (otlp, ctl)]
    for t in threads:
        t.start()

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(json.dumps({"ready": True, "port": otlp.server_address[1],
                      "control_port": ctl.server_address[1], "pid": os.getpid()}), flush=True)
    done.wait()
    STATE.stop.set()
    for s in (otlp, ctl):
        s.shutdown()
        s.server_close()


if __name__ == "__main__":
    main()
