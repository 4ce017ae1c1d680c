#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Synthesize OTLP/HTTP benchmark traffic with a fixed seed.

    otlp_traffic.py requests --out DIR [--seed 42]
        Pre-encoded Export{Trace,Metrics,Logs}ServiceRequest bodies, one file
        per request, for bench/loadgen.c, plus one index per request set:
          DIR/index-<set>.tsv   file signal encoding items raw_bytes wire_bytes
        Sets (each also as <set>-gzip, Content-Encoding gzip level 6):
          traces-100  16 SDK batches of 100 spans (~25-30 KB), the reference
          traces-mix  48 trace requests, sizes log-uniform 1 KB .. 1 MB
          metrics     16 metrics requests (sum, gauge, histogram), 1 KB .. 256 KB
          logs        16 logs requests, 1 KB .. 256 KB
          mixed       traces-mix + metrics + logs interleaved

    otlp_traffic.py pcap --index DIR/index-traces-100.tsv --out FILE.pcap
                         --dst-mac 02:70:63:61:70:00 [--flows 64] [--requests-per-flow 8]
        A pcap (Ethernet/IPv4/TCP, microsecond timestamps) of complete
        keep-alive conversations from 198.19.x.y towards 198.18.0.2:4318:
        SYN, SYN-ACK (with --responses), ACK, each request split into MSS
        segments, the server's response (with --responses), FIN/ACK both ways.
        Flows are interleaved request by request. Client sequence numbers are
        exact; the server's ISN is not knowable in advance (SYN cookies), so
        the client's ACK numbers assume --server-isn and --response-bytes, or
        with --replay-isn the ISN of a service run with
        dataplane.dpdk.replay_isn: true (benchmarks only: the SYN cookie keyed
        with the public NET_REPLAY_ISN_KEY, clock 0; see replay_isn()).

Spans are shaped like OpenTelemetry SDK output: one resource per SDK batch
(several per request above 64 KB, as a forwarding agent sends), resource
attributes service.*, host.*, k8s.*, telemetry.sdk.*, process.*; HTTP
server/client, DB and messaging spans with 5-15 attributes, exception and
log events, links on consumer spans, status OK/ERROR/unset.
"""
import argparse, array, gzip, math, os, random, struct, subprocess, sys, tempfile

T0 = 1764000000000000000  # 2025-11-24T16:00:00Z in ns; fixed so the output is reproducible


def load_proto():
    """protoc --python_out into a temp dir; returns (trace, metrics, logs) service modules."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proto")
    out = tempfile.mkdtemp(prefix="otlp-pb-")
    files = []
    for d, _, fs in os.walk(root):
        files += [os.path.relpath(os.path.join(d, f), root) for f in fs if f.endswith(".proto")]
    subprocess.check_call(["protoc", "--proto_path=" + root, "--python_out=" + out] + files)
    sys.path.insert(0, out)
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    return trace_service_pb2, metrics_service_pb2, logs_service_pb2


def kv(msg, key, value):
    a = msg.attributes.add()
    a.key = key
    if isinstance(value, bool):
        a.value.bool_value = value
    elif isinstance(value, int):
        a.value.int_value = value
    elif isinstance(value, float):
        a.value.double_value = value
    else:
        a.value.string_value = value


SERVICES = [
    ("checkout", "nodejs", "@opentelemetry/instrumentation-http", "0.57.0"),
    ("cart", "java", "io.opentelemetry.spring-webmvc-6.0", "2.10.0-alpha"),
    ("payment", "go", "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", "0.58.0"),
    ("frontend", "python", "opentelemetry.instrumentation.flask", "0.50b0"),
    ("inventory", "dotnet", "OpenTelemetry.Instrumentation.AspNetCore", "1.10.1"),
    ("shipping", "rust", "opentelemetry-http", "0.27.0"),
]
SDK_VERSIONS = {"nodejs": "1.30.0", "java": "1.45.0", "go": "1.33.0", "python": "1.29.0",
                "dotnet": "1.10.0", "rust": "0.27.1"}
ROUTES = ["/api/cart", "/api/cart/{id}", "/api/checkout", "/api/products/{id}", "/api/orders",
          "/api/users/{id}/profile", "/healthz", "/api/recommendations"]
DB_STMTS = ["SELECT * FROM orders WHERE user_id = ? ORDER BY created_at DESC LIMIT 20",
            "UPDATE cart_items SET quantity = ? WHERE cart_id = ? AND sku = ?",
            "INSERT INTO payments (order_id, amount, currency, status) VALUES (?, ?, ?, ?)",
            "SELECT sku, name, price FROM products WHERE sku IN (?, ?, ?)"]
LOG_LINES = ["request completed", "cache miss for key cart:%d", "retrying upstream call, attempt %d",
             "user %d added item to cart", "payment authorized for order %d",
             "slow query detected: %d ms", "connection pool exhausted, waiting %d ms",
             "feature flag evaluated: new-checkout-flow=%d"]


def resource_attrs(res, rnd, svc_idx, pod_seq):
    name, lang, _, _ = SERVICES[svc_idx % len(SERVICES)]
    h = "%05x" % rnd.randrange(1 << 20)
    for k, v in [("service.name", name), ("service.namespace", "shop"),
                 ("service.version", "1.%d.%d" % (rnd.randint(0, 60), rnd.randint(0, 9))),
                 ("service.instance.id", "%08x-%04x" % (rnd.getrandbits(32), pod_seq)),
                 ("deployment.environment.name", "production"),
                 ("host.name", "ip-10-%d-%d-%d.ec2.internal" % (rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(0, 255))),
                 ("host.arch", "amd64"), ("os.type", "linux"),
                 ("cloud.provider", "aws"), ("cloud.region", "eu-west-1"),
                 ("k8s.cluster.name", "prod-eu-1"), ("k8s.namespace.name", "shop"),
                 ("k8s.deployment.name", name), ("k8s.pod.name", "%s-7f9c8d6b5-%s" % (name, h)),
                 ("k8s.node.name", "node-%d" % rnd.randint(1, 60)),
                 ("container.id", "%032x" % rnd.getrandbits(128)),
                 ("process.pid", rnd.randint(1, 32768)),
                 ("process.runtime.name", lang),
                 ("telemetry.sdk.name", "opentelemetry"), ("telemetry.sdk.language", lang),
                 ("telemetry.sdk.version", SDK_VERSIONS[lang])]:
        kv(res, k, v)


def fill_span(s, rnd, trace_id, parent, t, kind_hint):
    """One span of 5-15 attributes; returns its span_id."""
    s.trace_id = trace_id
    s.span_id = rnd.randbytes(8)
    if parent:
        s.parent_span_id = parent
    s.start_time_unix_nano = t
    s.end_time_unix_nano = t + rnd.randint(20000, 80000000)
    if rnd.random() < 0.05:
        s.flags = 0x100 | 1  # W3C sampled, parent-is-remote known
    err = rnd.random() < 0.04
    if kind_hint == "server":
        route = rnd.choice(ROUTES)
        method = rnd.choice(["GET", "GET", "GET", "POST", "PUT", "DELETE"])
        s.name = "%s %s" % (method, route)
        s.kind = 2
        code = 500 if err else rnd.choice([200, 200, 200, 201, 204, 304, 404])
        kv(s, "http.request.method", method)
        kv(s, "http.route", route)
        kv(s, "url.path", route.replace("{id}", str(rnd.randint(1, 999999))))
        kv(s, "http.response.status_code", code)
        kv(s, "server.address", "shop.example.com")
        kv(s, "server.port", 8080)
        if rnd.random() < 0.5:
            kv(s, "user_agent.original", rnd.choice([
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "okhttp/4.12.0", "Go-http-client/1.1", "python-requests/2.32.3"]))
        if rnd.random() < 0.3:
            kv(s, "client.address", "10.%d.%d.%d" % (rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(1, 254)))
        if rnd.random() < 0.3:
            kv(s, "network.protocol.version", "1.1")
        if rnd.random() < 0.3:
            kv(s, "url.scheme", "http")
        for j in range(rnd.randint(0, 2)):
            kv(s, "app.%s" % rnd.choice(["user.tier", "cart.items", "ab.bucket", "tenant.id"]),
               rnd.choice([rnd.randint(0, 50), "gold", "b", "t-%d" % rnd.randint(1, 900)]))
    elif kind_hint == "db":
        stmt = rnd.choice(DB_STMTS)
        op = stmt.split()[0]
        s.name = "%s shop.%s" % (op, rnd.choice(["orders", "cart_items", "payments", "products"]))
        s.kind = 3
        kv(s, "db.system.name", "postgresql")
        kv(s, "db.namespace", "shop")
        kv(s, "db.operation.name", op)
        if rnd.random() < 0.5:
            kv(s, "db.query.text", stmt)
        kv(s, "server.address", "pg-primary")
        kv(s, "server.port", 5432)
        if rnd.random() < 0.5:
            kv(s, "db.response.returned_rows", rnd.randint(0, 20))
    elif kind_hint == "client":
        peer = rnd.choice(["cart", "payment", "inventory", "shipping"])
        s.name = "POST"
        s.kind = 3
        kv(s, "http.request.method", "POST")
        kv(s, "url.full", "http://%s:8080/api/%s" % (peer, peer))
        kv(s, "server.address", peer)
        kv(s, "server.port", 8080)
        kv(s, "http.response.status_code", 503 if err else 200)
        kv(s, "network.peer.address", "10.%d.%d.%d" % (rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(1, 254)))
        if rnd.random() < 0.3:
            kv(s, "http.request.resend_count", rnd.randint(1, 3))
    elif kind_hint == "consumer":
        s.name = "process orders"
        s.kind = 5
        kv(s, "messaging.system", "kafka")
        kv(s, "messaging.operation.type", "process")
        kv(s, "messaging.destination.name", "orders")
        kv(s, "messaging.consumer.group.name", "fulfilment")
        kv(s, "messaging.kafka.offset", rnd.randint(0, 1 << 40))
        kv(s, "messaging.destination.partition.id", str(rnd.randint(0, 11)))
        # a consumer span links to the producer's context
        l = s.links.add()
        l.trace_id = rnd.randbytes(16)
        l.span_id = rnd.randbytes(8)
        kv(l, "messaging.operation.type", "send")
    else:
        s.name = rnd.choice(["render cart", "compute shipping quote", "validate address", "apply coupons"])
        s.kind = 1
        kv(s, "code.function.name", rnd.choice(["renderCart", "quote", "validate", "applyCoupons"]))
        kv(s, "code.file.path", "/app/src/%s.ts" % rnd.choice(["cart", "shipping", "address", "pricing"]))
        kv(s, "code.line.number", rnd.randint(1, 900))
        kv(s, "thread.id", rnd.randint(1, 64))
        kv(s, "app.items", rnd.randint(0, 30))
    if err:
        s.status.code = 2
        s.status.message = rnd.choice(["upstream unavailable", "deadline exceeded", "internal error"])
        e = s.events.add()
        e.name = "exception"
        e.time_unix_nano = s.end_time_unix_nano - 1000
        kv(e, "exception.type", rnd.choice(["java.net.SocketTimeoutException", "Error", "ConnectionResetError"]))
        kv(e, "exception.message", "connect timed out after 3000 ms")
        if rnd.random() < 0.5:
            kv(e, "exception.stacktrace", "at Client.send (client.js:210:15)\n    at async Cart.checkout (cart.js:88:9)")
    elif kind_hint == "server":
        s.status.code = 1 if rnd.random() < 0.3 else 0
    if rnd.random() < 0.15:
        e = s.events.add()
        e.name = rnd.choice(["cache.miss", "retry", "message received", "auth.ok"])
        e.time_unix_nano = s.start_time_unix_nano + rnd.randint(100, 10000)
        if rnd.random() < 0.5:
            kv(e, "attempt", rnd.randint(1, 3))
    return s.span_id


def build_traces(pb, rnd, target_bytes, svc0):
    """An ExportTraceServiceRequest of about target_bytes. SDK batches (one
    resource) up to 64 KB; beyond that several resources, as an agent forwards."""
    req = pb.ExportTraceServiceRequest()
    per_resource = 64 * 1024 if target_bytes > 64 * 1024 else target_bytes
    spans = 0
    t = T0 + rnd.randint(0, 10**9)
    svc = svc0
    while True:
        rs = req.resource_spans.add()
        resource_attrs(rs.resource, rnd, svc, spans)
        _, _, scope_name, scope_ver = SERVICES[svc % len(SERVICES)]
        scopes = [rs.scope_spans.add()]
        scopes[0].scope.name = scope_name
        scopes[0].scope.version = scope_ver
        s2 = rs.scope_spans.add()
        s2.scope.name = "io.opentelemetry.jdbc" if svc % 2 else "@opentelemetry/instrumentation-pg"
        s2.scope.version = "2.10.0-alpha"
        scopes.append(s2)
        start = req.ByteSize()
        while req.ByteSize() - start < per_resource and req.ByteSize() < target_bytes:
            # one trace fragment: a server span and 0-9 children
            trace_id = rnd.randbytes(16)
            parent = rnd.randbytes(8) if rnd.random() < 0.6 else b""
            root = fill_span(scopes[0].spans.add(), rnd, trace_id, parent, t, "server")
            spans += 1
            for _ in range(rnd.randint(0, 9)):
                hint = rnd.choice(["db", "db", "client", "internal", "consumer"])
                sc = scopes[1] if hint == "db" else scopes[0]
                fill_span(sc.spans.add(), rnd, trace_id, root, t + rnd.randint(1000, 5000000), hint)
                spans += 1
            t += rnd.randint(10000, 2000000)
        if not s2.spans:
            del rs.scope_spans[1]
        if req.ByteSize() >= target_bytes:
            return req, spans
        svc += 1


def build_traces_n(pb, rnd, n_spans, svc):
    """A single-resource SDK batch of exactly n_spans spans."""
    req = pb.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    resource_attrs(rs.resource, rnd, svc, 0)
    _, _, scope_name, scope_ver = SERVICES[svc % len(SERVICES)]
    ss = rs.scope_spans.add()
    ss.scope.name = scope_name
    ss.scope.version = scope_ver
    t = T0 + rnd.randint(0, 10**9)
    n = 0
    while n < n_spans:
        trace_id = rnd.randbytes(16)
        root = fill_span(ss.spans.add(), rnd, trace_id, rnd.randbytes(8) if rnd.random() < 0.6 else b"", t, "server")
        n += 1
        for _ in range(min(rnd.randint(0, 9), n_spans - n)):
            fill_span(ss.spans.add(), rnd, trace_id, root, t + rnd.randint(1000, 5000000),
                      rnd.choice(["db", "db", "client", "internal", "consumer"]))
            n += 1
        t += rnd.randint(10000, 2000000)
    return req, n


HIST_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]


def build_metrics(pb, rnd, target_bytes, svc):
    """An ExportMetricsServiceRequest of about target_bytes: per resource the
    HTTP server duration histogram, request counter, JVM/runtime gauges, with
    one data point per (route, method, status) series."""
    req = pb.ExportMetricsServiceRequest()
    points = 0
    t = T0 + rnd.randint(0, 10**9)
    while req.ByteSize() < target_bytes:
        rm = req.resource_metrics.add()
        resource_attrs(rm.resource, rnd, svc, points)
        sm = rm.scope_metrics.add()
        sm.scope.name = SERVICES[svc % len(SERVICES)][2]
        sm.scope.version = SERVICES[svc % len(SERVICES)][3]
        series = [(r, m, c) for r in ROUTES for m in ("GET", "POST") for c in (200, 404, 500)]
        rnd.shuffle(series)
        series = series[:rnd.randint(4, len(series))]
        hist = sm.metrics.add()
        hist.name = "http.server.request.duration"
        hist.unit = "s"
        hist.description = "Duration of HTTP server requests."
        hist.histogram.aggregation_temporality = 2
        cnt = sm.metrics.add()
        cnt.name = "http.server.request.count"
        cnt.unit = "{request}"
        cnt.sum.aggregation_temporality = 2
        cnt.sum.is_monotonic = True
        for route, method, code in series:
            if req.ByteSize() >= target_bytes and points:
                break
            dp = hist.histogram.data_points.add()
            for k, v in (("http.route", route), ("http.request.method", method),
                         ("http.response.status_code", code), ("url.scheme", "http"),
                         ("network.protocol.version", "1.1")):
                kv(dp, k, v)
            dp.start_time_unix_nano = T0 - 3600 * 10**9
            dp.time_unix_nano = t
            counts = [rnd.randint(0, 5000) for _ in range(len(HIST_BOUNDS) + 1)]
            dp.count = sum(counts)
            dp.sum = dp.count * rnd.uniform(0.01, 0.3)
            dp.bucket_counts.extend(counts)
            dp.explicit_bounds.extend(HIST_BOUNDS)
            dp.min = 0.0009
            dp.max = rnd.uniform(1, 12)
            if rnd.random() < 0.2:
                ex = dp.exemplars.add()
                ex.time_unix_nano = t - 1000
                ex.as_double = rnd.uniform(0.001, 2)
                ex.trace_id = rnd.randbytes(16)
                ex.span_id = rnd.randbytes(8)
            c = cnt.sum.data_points.add()
            for k, v in (("http.route", route), ("http.request.method", method),
                         ("http.response.status_code", code)):
                kv(c, k, v)
            c.start_time_unix_nano = dp.start_time_unix_nano
            c.time_unix_nano = t
            c.as_int = dp.count
            points += 2
        g_names = [("process.runtime.memory.used", "By"), ("process.cpu.utilization", "1"),
                   ("process.runtime.gc.pause", "s"), ("db.client.connection.count", "{connection}")]
        for gname, unit in g_names:
            g = sm.metrics.add()
            g.name = gname
            g.unit = unit
            for pool in ("heap", "non_heap", "eden", "old")[:rnd.randint(1, 4)]:
                dp = g.gauge.data_points.add()
                kv(dp, "pool", pool)
                dp.time_unix_nano = t
                dp.as_double = rnd.uniform(0, 1e9)
                points += 1
        svc += 1
        t += 10**9
    return req, points


def build_logs(pb, rnd, target_bytes, svc):
    """An ExportLogsServiceRequest of about target_bytes: application log
    records with severity, a string body, 3-8 attributes, and the trace
    context on most of them."""
    req = pb.ExportLogsServiceRequest()
    records = 0
    t = T0 + rnd.randint(0, 10**9)
    while req.ByteSize() < target_bytes:
        rl = req.resource_logs.add()
        resource_attrs(rl.resource, rnd, svc, records)
        sl = rl.scope_logs.add()
        sl.scope.name = "com.example.shop.%s" % SERVICES[svc % len(SERVICES)][0]
        start = req.ByteSize()
        while req.ByteSize() < target_bytes and req.ByteSize() - start < 64 * 1024:
            r = sl.log_records.add()
            r.time_unix_nano = t
            r.observed_time_unix_nano = t + rnd.randint(1000, 900000)
            sev = rnd.choice([9, 9, 9, 9, 5, 13, 17])
            r.severity_number = sev
            r.severity_text = {5: "DEBUG", 9: "INFO", 13: "WARN", 17: "ERROR"}[sev]
            line = rnd.choice(LOG_LINES)
            r.body.string_value = (line % rnd.randint(1, 99999)) if "%d" in line else line
            kv(r, "log.logger", "com.example.shop.%s" % rnd.choice(["CartService", "CheckoutController", "PaymentClient"]))
            kv(r, "thread.name", "http-nio-8080-exec-%d" % rnd.randint(1, 200))
            kv(r, "code.function.name", rnd.choice(["handle", "checkout", "authorize", "lookup"]))
            for _ in range(rnd.randint(0, 5)):
                kv(r, rnd.choice(["user.id", "order.id", "cart.id", "http.route", "duration_ms"]),
                   rnd.choice([rnd.randint(1, 10**6), rnd.choice(ROUTES)]))
            if rnd.random() < 0.8:
                r.trace_id = rnd.randbytes(16)
                r.span_id = rnd.randbytes(8)
                r.flags = 1
            records += 1
            t += rnd.randint(1000, 5000000)
        svc += 1
    return req, records


def log_uniform(rnd, lo, hi):
    return int(math.exp(rnd.uniform(math.log(lo), math.log(hi))))


def write_requests(out, seed):
    tr, me, lo = load_proto()
    os.makedirs(out, exist_ok=True)
    rnd = random.Random(seed)
    sets = {}

    def emit(set_name, name, signal, req, items):
        raw = req.SerializeToString()
        entries = []
        for enc, body, suffix in (("identity", raw, ".pb"), ("gzip", gzip.compress(raw, 6, mtime=0), ".pb.gz")):
            fn = name + suffix
            with open(os.path.join(out, fn), "wb") as f:
                f.write(body)
            key = set_name if enc == "identity" else set_name + "-gzip"
            sets.setdefault(key, []).append((fn, signal, enc, items, len(raw), len(body)))
            entries.append(len(body))
        return entries

    for i in range(16):
        req, n = build_traces_n(tr, rnd, 100, i)
        emit("traces-100", "traces-100-%02d" % i, "traces", req, n)
    for i in range(48):
        target = 1024 if i == 0 else (1024 * 1024 if i == 1 else log_uniform(rnd, 1024, 1024 * 1024))
        req, n = build_traces(tr, rnd, target, i)
        emit("traces-mix", "traces-mix-%02d" % i, "traces", req, n)
    for i in range(16):
        target = 1024 if i == 0 else log_uniform(rnd, 1024, 256 * 1024)
        req, n = build_metrics(me, rnd, target, i)
        emit("metrics", "metrics-%02d" % i, "metrics", req, n)
    for i in range(16):
        target = 1024 if i == 0 else log_uniform(rnd, 1024, 256 * 1024)
        req, n = build_logs(lo, rnd, target, i)
        emit("logs", "logs-%02d" % i, "logs", req, n)
    for enc in ("", "-gzip"):
        t, m, l = sets["traces-mix" + enc], sets["metrics" + enc], sets["logs" + enc]
        mixed = []
        for i in range(max(len(t), len(m), len(l))):
            for lst in (t, m, l):
                if i < len(lst):
                    mixed.append(lst[i])
        sets["mixed" + enc] = mixed
    for name, rows in sorted(sets.items()):
        with open(os.path.join(out, "index-%s.tsv" % name), "w") as f:
            f.write("# otlp_traffic.py seed=%d set=%s\n# file\tsignal\tencoding\titems\traw_bytes\twire_bytes\n" % (seed, name))
            for r in rows:
                f.write("%s\t%s\t%s\t%d\t%d\t%d\n" % r)
        items = sum(r[3] for r in rows)
        raw = sum(r[4] for r in rows)
        wire = sum(r[5] for r in rows)
        print("%-16s %3d requests %8d items %10d raw bytes %10d wire bytes  %.0f raw B/item, %d..%d wire B" % (
            name, len(rows), items, raw, wire, raw / items, min(r[5] for r in rows), max(r[5] for r in rows)))


# ---------------------------------------------------------------- pcap

def csum(data):
    """Internet checksum (RFC 1071) of bytes."""
    if len(data) & 1:
        data += b"\0"
    a = array.array("H", data)
    if sys.byteorder == "little":
        a.byteswap()
    s = sum(a)
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff


def mac_bytes(s):
    b = bytes(int(x, 16) for x in s.split(":"))
    if len(b) != 6:
        raise SystemExit("bad MAC %r" % s)
    return b


def ip_bytes(s):
    return bytes(int(x) for x in s.split("."))


class Pcap:
    def __init__(self, path):
        self.f = open(path, "wb")
        # classic pcap, microsecond resolution, LINKTYPE_ETHERNET, snaplen 65535
        self.f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        self.t_us = 1764000000 * 1000000
        self.packets = 0
        self.bytes = 0

    def frame(self, frame, gap_us=2):
        self.t_us += gap_us
        self.f.write(struct.pack("<IIII", self.t_us // 1000000, self.t_us % 1000000, len(frame), len(frame)))
        self.f.write(frame)
        self.packets += 1
        self.bytes += len(frame)

    def close(self):
        self.f.close()


def tcp_frame(src_mac, dst_mac, sip, dip, sport, dport, seq, ack, flags, win, payload=b"", opts=b"", ip_id=0):
    thl = 20 + len(opts)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xffffffff, ack & 0xffffffff,
                      (thl // 4) << 4, flags, win, 0, 0) + opts
    pseudo = sip + dip + struct.pack("!BBH", 0, 6, thl + len(payload))
    c = csum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    tot = 20 + thl + len(payload)
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, tot, ip_id & 0xffff, 0x4000, 64, 6, 0, sip, dip)
    iph = iph[:10] + struct.pack("!H", csum(iph)) + iph[12:]
    return dst_mac + src_mac + b"\x08\x00" + iph + tcp + payload


FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# ---- lib/net/net_syncookie.c with dataplane.dpdk.replay_isn (benchmarks only)
REPLAY_ISN_KEY = b"otlp-replay-isn!"  # NET_REPLAY_ISN_KEY in lib/net/net_stack.h
COOKIE_MSS = (536, 1200, 1360, 1400, 1440, 1460, 4312, 8960)
M64 = (1 << 64) - 1


def siphash24(key, data):
    """SipHash-2-4 of bytes with a 16-byte key (as net_siphash())."""
    k0, k1 = struct.unpack("<QQ", key)
    v = [0x736f6d6570736575 ^ k0, 0x646f72616e646f6d ^ k1, 0x6c7967656e657261 ^ k0, 0x7465646279746573 ^ k1]

    def rotl(x, b):
        return ((x << b) | (x >> (64 - b))) & M64

    def rnd():
        v[0] = (v[0] + v[1]) & M64; v[1] = rotl(v[1], 13); v[1] ^= v[0]; v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & M64; v[3] = rotl(v[3], 16); v[3] ^= v[2]
        v[0] = (v[0] + v[3]) & M64; v[3] = rotl(v[3], 21); v[3] ^= v[0]
        v[2] = (v[2] + v[1]) & M64; v[1] = rotl(v[1], 17); v[1] ^= v[2]; v[2] = rotl(v[2], 32)

    n = len(data) // 8 * 8
    for i in range(0, n, 8):
        m = struct.unpack("<Q", data[i:i + 8])[0]
        v[3] ^= m; rnd(); rnd(); v[0] ^= m
    b = (len(data) & 0xff) << 56
    for j, c in enumerate(data[n:]):
        b |= c << (8 * j)
    v[3] ^= b; rnd(); rnd(); v[0] ^= b
    v[2] ^= 0xff
    rnd(); rnd(); rnd(); rnd()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def replay_isn(cip, sip, cport, sport, client_isn, client_mss, client_wscale, server_mtu=1500):
    """The server's ISN under dataplane.dpdk.replay_isn: net_syncookie_make()
    with key NET_REPLAY_ISN_KEY and time tick 0. Addresses as 4 bytes;
    client_mss 0 / client_wscale None when the SYN has no such option."""
    eff = min(client_mss or 536, server_mtu - 40)
    idx = max([0] + [i for i in range(1, len(COOKIE_MSS)) if COOKIE_MSS[i] <= eff])
    ws = 15 if client_wscale is None else min(client_wscale, 14)
    h = siphash24(REPLAY_ISN_KEY, cip + sip + struct.pack("!HHIII", cport, sport, client_isn, 0, 0))
    data = ((idx << 4 | ws) ^ (h >> 57)) & 0x7f
    return (data << 25 | (h & 0x1ffffff)) & 0xffffffff


def read_index(path):
    base = os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            fn, signal, enc, items, raw, wire = line.rstrip("\n").split("\t")
            with open(os.path.join(base, fn), "rb") as b:
                body = b.read()
            rows.append((signal, enc, int(items), body))
    return rows


def write_pcap(a):
    reqs = read_index(a.index)
    dst_mac = mac_bytes(a.dst_mac)
    dip = ip_bytes(a.dst_ip)
    gw_mac = mac_bytes(a.src_mac)
    resp = b""
    if a.response_file:
        with open(a.response_file, "rb") as f:
            resp = f.read()
    resp_len = len(resp) if resp else a.response_bytes
    for signal, enc, items, body in reqs:
        if len(body) > a.max_request_bytes:
            raise SystemExit("request of %d bytes exceeds --max-request-bytes %d (the server's receive "
                             "window: a pcap cannot wait for window updates)" % (len(body), a.max_request_bytes))
    pc = Pcap(a.out)
    flows = []
    rnd = random.Random(a.seed)
    for i in range(a.flows):
        # 198.19.0.0/16 clients; port spread like an ephemeral range
        sip = bytes([198, 19, 1 + i // 250, 2 + i % 250])
        flows.append({"sip": sip, "sport": 32768 + rnd.randrange(28000), "seq": rnd.getrandbits(32),
                      "srv": a.server_isn + i * a.server_isn_step, "id": rnd.getrandbits(16), "sent": 0})
        if a.replay_isn:
            fl = flows[-1]
            fl["srv"] = replay_isn(sip, dip, fl["sport"], a.dst_port, fl["seq"], a.mss, 7, a.server_mtu)
    mss = a.mss
    win = 64240 >> 7  # we advertise window scale 7
    opts_syn = struct.pack("!BBH", 2, 4, mss) + b"\x01\x03\x03\x07"  # MSS, NOP, WS=7

    def c2s(fl, flags, payload=b"", opts=b"", gap=2):
        fl["id"] += 1
        pc.frame(tcp_frame(gw_mac, dst_mac, fl["sip"], dip, fl["sport"], a.dst_port, fl["seq"], fl["srv"],
                           flags, 64240 if flags & SYN else win, payload, opts, fl["id"]), gap)
        fl["seq"] += len(payload) + (1 if flags & (SYN | FIN) else 0)

    def s2c(fl, flags, payload=b"", gap=2):
        if not a.responses:
            fl["srv"] += len(payload) + (1 if flags & (SYN | FIN) else 0)
            return
        pc.frame(tcp_frame(dst_mac, gw_mac, dip, fl["sip"], a.dst_port, fl["sport"], fl["srv"], fl["seq"],
                           flags, 65535, payload, struct.pack("!BBH", 2, 4, mss) if flags & SYN else b""), gap)
        fl["srv"] += len(payload) + (1 if flags & (SYN | FIN) else 0)

    # handshakes, interleaved
    for fl in flows:
        c2s(fl, SYN, opts=opts_syn)
    for fl in flows:
        s2c(fl, SYN | ACK)
    for fl in flows:
        c2s(fl, ACK)
    items_total = 0
    payload_bytes = 0
    k = 0
    for r in range(a.requests_per_flow):
        for fl in flows:
            signal, enc, items, body = reqs[k % len(reqs)]
            k += 1
            head = ("POST /v1/%s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: OTel-OTLP-Exporter-Go/1.33.0\r\n"
                    "Content-Type: application/x-protobuf\r\n%sContent-Length: %d\r\n\r\n" % (
                        signal, a.dst_ip, a.dst_port,
                        "Content-Encoding: gzip\r\n" if enc == "gzip" else "", len(body))).encode()
            msg = head + body
            for off in range(0, len(msg), mss):
                seg = msg[off:off + mss]
                c2s(fl, ACK | (PSH if off + mss >= len(msg) else 0), seg)
            items_total += items
            payload_bytes += len(msg)
            if resp_len:
                s2c(fl, ACK | PSH, resp if resp else b"\0" * resp_len)
                c2s(fl, ACK)  # the client acknowledges the response
    for fl in flows:
        c2s(fl, FIN | ACK)
    for fl in flows:
        s2c(fl, FIN | ACK)
    for fl in flows:
        c2s(fl, ACK)
    pc.close()
    meta = a.out + ".meta"
    with open(meta, "w") as f:
        f.write("packets\t%d\nframe_bytes\t%d\nrequests\t%d\nitems\t%d\nhttp_bytes\t%d\nflows\t%d\n" % (
            pc.packets, pc.bytes, k, items_total, payload_bytes, a.flows))
    print("%s: %d flows, %d requests, %d items, %d packets, %d frame bytes (HTTP %d bytes)" % (
        a.out, a.flows, k, items_total, pc.packets, pc.bytes, payload_bytes))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("requests", help="pre-encoded request files and indexes")
    r.add_argument("--out", required=True)
    r.add_argument("--seed", type=int, default=42)
    p = sub.add_parser("pcap", help="TCP conversations for net_pcap replay")
    p.add_argument("--index", required=True, help="an index-<set>.tsv written by `requests`")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--flows", type=int, default=64)
    p.add_argument("--requests-per-flow", type=int, default=8)
    p.add_argument("--dst-mac", required=True, help="MAC of the service's DPDK port")
    p.add_argument("--src-mac", default="02:00:c6:13:00:01", help="client (or router) MAC")
    p.add_argument("--dst-ip", default="198.18.0.2")
    p.add_argument("--dst-port", type=int, default=4318)
    p.add_argument("--mss", type=int, default=1460)
    p.add_argument("--server-isn", type=int, default=0, help="ISN assumed for the server's SYN-ACK")
    p.add_argument("--server-isn-step", type=int, default=0)
    p.add_argument("--replay-isn", action="store_true",
                   help="server ISNs of dataplane.dpdk.replay_isn (benchmarks only; overrides --server-isn)")
    p.add_argument("--server-mtu", type=int, default=1500, help="dataplane.dpdk.mtu, for --replay-isn")
    p.add_argument("--responses", action="store_true", help="also write the server's packets")
    p.add_argument("--response-bytes", type=int, default=0,
                   help="length of each HTTP response, for the client's ACK numbers")
    p.add_argument("--response-file", help="exact HTTP response bytes (sets --response-bytes)")
    p.add_argument("--max-request-bytes", type=int, default=256 * 1024)
    a = ap.parse_args()
    if a.cmd == "requests":
        write_requests(a.out, a.seed)
    else:
        write_pcap(a)


if __name__ == "__main__":
    main()
