#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A scriptable OTLP/HTTP upstream for tests/unit/test_export.c.

Listens on 127.0.0.1 (port 0: the kernel picks; written to --port-file),
records every request under --record-dir as NNNN.meta (method, path, client
port, TLS server name, headers) and NNNN.body (raw bytes, still compressed),
then answers with the next --respond spec; the last one repeats. A spec is
"STATUS[;key=value...]":
  retry-after=V   Retry-After header value
  partial=N       2xx: partial_success.rejected_<items> = N
  msg=TEXT        2xx: partial_success.error_message; else google.rpc.Status.message
  text=TEXT       answer TEXT as text/plain instead of protobuf
  delay=SECONDS   sleep before answering (a hanging upstream)
Exits by itself after --lifetime seconds so a crashed test leaves nothing behind.
"""
import argparse
import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def parse_spec(s):
    parts = s.split(";")
    spec = {"status": int(parts[0])}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        spec[k] = v
    return spec


class State:
    def __init__(self, specs, record_dir):
        self.specs = specs
        self.record_dir = record_dir
        self.lock = threading.Lock()
        self.n = 0
        self.sni = ""


STATE = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        with STATE.lock:
            n = STATE.n
            STATE.n += 1
            spec = STATE.specs[min(n, len(STATE.specs) - 1)]
            sni = STATE.sni
        base = os.path.join(STATE.record_dir, "%04d" % n)
        with open(base + ".body", "wb") as f:
            f.write(body)
        meta = ["method %s" % self.command, "path %s" % self.path,
                "client_port %d" % self.client_address[1], "sni %s" % sni]
        for k, v in self.headers.items():
            meta.append("h %s: %s" % (k.lower(), v))
        with open(base + ".meta.tmp", "w") as f:
            f.write("\n".join(meta) + "\n")
        os.rename(base + ".meta.tmp", base + ".meta")

        if "delay" in spec:
            time.sleep(float(spec["delay"]))
        status = spec["status"]
        ctype = "application/x-protobuf"
        if "text" in spec:
            payload = spec["text"].encode()
            ctype = "text/plain"
        elif 200 <= status < 300:
            payload = b""
            if "partial" in spec or "msg" in spec:
                ps = b""
                if "partial" in spec:
                    ps += field_varint(1, int(spec["partial"]))
                if "msg" in spec:
                    ps += field_bytes(2, spec["msg"].encode())
                payload = field_bytes(1, ps)
        else:
            payload = field_varint(1, 3)  # google.rpc.Status.code
            if "msg" in spec:
                payload += field_bytes(2, spec["msg"].encode())
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        if "retry-after" in spec:
            self.send_header("Retry-After", spec["retry-after"])
        self.end_headers()
        self.wfile.write(payload)


def main():
    global STATE
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--record-dir", required=True)
    ap.add_argument("--respond", action="append", default=[])
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--lifetime", type=float, default=60)
    a = ap.parse_args()
    STATE = State([parse_spec(s) for s in (a.respond or ["200"])], a.record_dir)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    if a.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls[0], a.tls[1])

        def on_sni(sock, name, _ctx):
            with STATE.lock:
                STATE.sni = name or ""

        ctx.sni_callback = on_sni
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    timer = threading.Timer(a.lifetime, lambda: os._exit(0))
    timer.daemon = True
    timer.start()
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
