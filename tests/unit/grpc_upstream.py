#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A scriptable OTLP/gRPC upstream (python3-grpcio) for tests/unit/test_export_grpc.c
and tests/integration/test_grpc_export.py.

Serves the three unary Export methods of opentelemetry.proto.collector.*.v1 on
127.0.0.1 (--port 0: the kernel picks; the port is written to --port-file and
printed as one JSON line on stdout). The message classes are generated from the
project's proto/ with protoc at start; the services are plain grpcio generic
handlers, so no grpc_tools codegen is needed.

Every call is recorded under --record-dir as NNNN.body (the request message as
received, after grpcio undid any grpc-encoding) and then NNNN.meta, lines of:
  method /opentelemetry.proto.collector.trace.v1.TraceService/Export
  signal traces|metrics|logs
  items N               items in the decoded request (-1: not decodable)
  timeout_ms N          time left of the client's deadline on arrival (-1: none)
  concurrent N          calls in progress on arrival, this one included
  m NAME VALUE          one line per metadata entry the client sent
The file max_concurrent holds the most calls ever in progress at once.

Answers follow the --respond specs, one per call in arrival order; the last
one repeats. A spec is "CODE[;key=value...]", CODE a status name (ok,
unavailable, resource_exhausted, invalid_argument, ...) or number:
  partial=N       OK: partial_success.rejected_<items> = N
  msg=TEXT        OK: partial_success.error_message; else the status message
  retry=SECONDS   attach a google.rpc.RetryInfo (retry_delay) in grpc-status-details-bin
  delay=SECONDS   sleep before answering (to go past the client's deadline)
  barrier=N       hold the answer until N calls are in progress at once (at
                  most 5 s): proves the client's concurrency however slowly
                  grpcio hands calls to the handlers
--max-streams N sets SETTINGS_MAX_CONCURRENT_STREAMS; --identity-only refuses
compressed requests (proves the client really sent gzip); --tls CERT KEY
serves TLS (ALPN h2). Exits on SIGTERM, or by itself after --lifetime seconds.
Exit status 3: grpcio or protoc missing.
"""
import argparse
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

try:
    import grpc
except ImportError:
    sys.stderr.write("grpc_upstream.py: python3-grpcio is not installed for %s\n" % sys.executable)
    sys.exit(3)

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "..", "..", "proto")
PROTOS = [
    "opentelemetry/proto/common/v1/common.proto",
    "opentelemetry/proto/resource/v1/resource.proto",
    "opentelemetry/proto/trace/v1/trace.proto",
    "opentelemetry/proto/metrics/v1/metrics.proto",
    "opentelemetry/proto/logs/v1/logs.proto",
    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
    "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
    "opentelemetry/proto/collector/logs/v1/logs_service.proto",
]

CODES = {c.name.lower(): c for c in grpc.StatusCode}
CODES_BY_NUM = {c.value[0]: c for c in grpc.StatusCode}


def generate(outdir):
    try:
        subprocess.run(["protoc", "-I", PROTO_ROOT, "--python_out=" + outdir] + PROTOS,
                       check=True, capture_output=True, text=True)
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        sys.stderr.write("grpc_upstream.py: protoc failed: %s\n" % getattr(e, "stderr", e))
        sys.exit(3)
    sys.path.insert(0, outdir)
    mod = {}
    for s, p in (("traces", "trace"), ("metrics", "metrics"), ("logs", "logs")):
        mod[s] = importlib.import_module("opentelemetry.proto.collector.%s.v1.%s_service_pb2"
                                         % (p, p))
    return mod


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


def fbytes(num, data):
    return varint(num << 3 | 2) + varint(len(data)) + data


def fvarint(num, v):
    return varint(num << 3) + varint(v)


def status_details(code, msg, retry_s):
    """google.rpc.Status{code, message, details: [Any(RetryInfo{retry_delay})]}."""
    secs = int(retry_s)
    nanos = int(round((retry_s - secs) * 1e9))
    duration = fvarint(1, secs) + (fvarint(2, nanos) if nanos else b"")
    retry_info = fbytes(1, duration)
    anyv = fbytes(1, b"type.googleapis.com/google.rpc.RetryInfo") + fbytes(2, retry_info)
    return fvarint(1, code) + fbytes(2, msg.encode()) + fbytes(3, anyv)


def parse_spec(s):
    parts = s.split(";")
    c = parts[0].strip().lower()
    code = CODES_BY_NUM[int(c)] if c.isdigit() else CODES[c]
    spec = {"code": code}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        spec[k] = v
    return spec


SIGNALS = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export":
        ("traces", "ExportTraceServiceRequest", "ExportTraceServiceResponse", "rejected_spans",
         ("resource_spans", "scope_spans", "spans")),
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export":
        ("metrics", "ExportMetricsServiceRequest", "ExportMetricsServiceResponse",
         "rejected_data_points", ("resource_metrics", "scope_metrics", "metrics")),
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export":
        ("logs", "ExportLogsServiceRequest", "ExportLogsServiceResponse", "rejected_log_records",
         ("resource_logs", "scope_logs", "log_records")),
}


def count_items(signal, req, path):
    n = 0
    for r in getattr(req, path[0]):
        for s in getattr(r, path[1]):
            for item in getattr(s, path[2]):
                if signal != "metrics":
                    n += 1
                    continue
                kind = item.WhichOneof("data")
                n += len(getattr(item, kind).data_points) if kind else 0
    return n


class Upstream:
    def __init__(self, args, mods):
        self.args = args
        self.mods = mods
        self.specs = [parse_spec(s) for s in (args.respond or ["ok"])]
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.n = 0
        self.active = 0
        self.max_active = 0

    def record(self, n, lines, body):
        d = self.args.record_dir
        if not d:
            return
        with open(os.path.join(d, "%04d.body" % n), "wb") as f:
            f.write(body)
        tmp = os.path.join(d, ".%04d.meta" % n)
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.rename(tmp, os.path.join(d, "%04d.meta" % n))

    def handler(self, method):
        signal_name, req_cls, resp_cls, rejected_field, path = SIGNALS[method]
        mod = self.mods[signal_name]

        def export(raw, context):
            with self.lock:
                n = self.n
                self.n += 1
                self.active += 1
                self.max_active = max(self.max_active, self.active)
                active = self.active
                spec = self.specs[min(n, len(self.specs) - 1)]
                self.changed.notify_all()
            try:
                try:
                    req = getattr(mod, req_cls).FromString(raw)
                    items = count_items(signal_name, req, path)
                except Exception:  # noqa: BLE001 - recorded as undecodable
                    items = -1
                left = context.time_remaining()
                lines = ["method " + method, "signal " + signal_name, "items %d" % items,
                         "timeout_ms %d" % (-1 if left is None else int(left * 1000)),
                         "concurrent %d" % active]
                for k, v in context.invocation_metadata():
                    lines.append("m %s %s" % (k, v if isinstance(v, str) else v.hex()))
                self.record(n, lines, raw)
                if self.args.record_dir:
                    with self.lock:  # the current maximum, never an older one
                        with open(os.path.join(self.args.record_dir, "max_concurrent"), "w") as f:
                            f.write("%d\n" % self.max_active)
                if "barrier" in spec:
                    with self.changed:
                        self.changed.wait_for(lambda: self.max_active >= int(spec["barrier"]), 5)
                if "delay" in spec:
                    time.sleep(float(spec["delay"]))
                code = spec["code"]
                if code == grpc.StatusCode.OK:
                    resp = getattr(mod, resp_cls)()
                    if "partial" in spec or "msg" in spec:
                        setattr(resp.partial_success, rejected_field, int(spec.get("partial", 0)))
                        resp.partial_success.error_message = spec.get("msg", "")
                    return resp.SerializeToString()
                msg = spec.get("msg", "upstream says " + code.name)
                if "retry" in spec:
                    context.set_trailing_metadata(
                        (("grpc-status-details-bin",
                          status_details(code.value[0], msg, float(spec["retry"]))),))
                context.abort(code, msg)
            finally:
                with self.lock:
                    self.active -= 1
                    self.changed.notify_all()
        return export

    def service(self):
        up = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                if details.method not in SIGNALS:
                    return None
                return grpc.unary_unary_rpc_method_handler(up.handler(details.method))
        return Handler()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--record-dir")
    ap.add_argument("--respond", action="append")
    ap.add_argument("--max-streams", type=int, default=0)
    ap.add_argument("--identity-only", action="store_true")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--lifetime", type=float, default=300.0)
    args = ap.parse_args()

    outdir = tempfile.mkdtemp(prefix="grpc-upstream-pb-")
    try:
        mods = generate(outdir)
        up = Upstream(args, mods)
        options = [("grpc.so_reuseport", 1)]
        if args.max_streams:
            options.append(("grpc.max_concurrent_streams", args.max_streams))
        if args.identity_only:
            options.append(("grpc.compression_enabled_algorithms_bitset", 1))
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), handlers=[up.service()],
                             options=options, maximum_concurrent_rpcs=None)
        addr = "127.0.0.1:%d" % args.port
        if args.tls:
            with open(args.tls[0], "rb") as f:
                cert = f.read()
            with open(args.tls[1], "rb") as f:
                key = f.read()
            port = server.add_secure_port(addr, grpc.ssl_server_credentials([(key, cert)]))
        else:
            port = server.add_insecure_port(addr)
        if port == 0:
            sys.stderr.write("grpc_upstream.py: cannot bind %s\n" % addr)
            sys.exit(2)
        server.start()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write("%d\n" % port)
            os.rename(tmp, args.port_file)
        print(json.dumps({"port": port}), flush=True)
        # Python runs signal handlers on the main thread only, and a signal
        # delivered to one of grpcio's threads does not interrupt a long
        # wait here: wait in short slices so SIGTERM is seen promptly.
        end = time.monotonic() + args.lifetime
        while not stop.wait(0.1) and time.monotonic() < end:
            pass
        server.stop(0).wait(5)
    finally:
        shutil.rmtree(outdir, True)


if __name__ == "__main__":
    main()
