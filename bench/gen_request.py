#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Write an SDK-shaped OTLP ExportTraceServiceRequest (protobuf) with a fixed
seed: one resource with service/host/k8s attributes, one scope, N spans with
6-10 attributes, an event on every 4th span and a status. Usage:
    gen_request.py --spans 100 --out req.pb [--gzip]"""
import argparse, gzip, os, random, subprocess, sys, tempfile

def load_proto():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proto")
    out = tempfile.mkdtemp(prefix="otlp-pb-")
    files = []
    for d, _, fs in os.walk(root):
        files += [os.path.relpath(os.path.join(d, f), root) for f in fs if f.endswith(".proto")]
    subprocess.check_call(["protoc", "--proto_path=" + root, "--python_out=" + out] + files)
    sys.path.insert(0, out)
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    return trace_service_pb2

def kv(span_or_res, key, value):
    a = span_or_res.attributes.add()
    a.key = key
    if isinstance(value, bool):
        a.value.bool_value = value
    elif isinstance(value, int):
        a.value.int_value = value
    elif isinstance(value, float):
        a.value.double_value = value
    else:
        a.value.string_value = value

def build(pb, n, seed):
    rnd = random.Random(seed)
    req = pb.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for k, v in [("service.name", "checkout"), ("service.version", "1.42.0"),
                 ("host.name", "node-17.example.internal"), ("k8s.namespace.name", "shop"),
                 ("k8s.pod.name", "checkout-7f9c8d6b5-x2x9z"), ("telemetry.sdk.name", "opentelemetry"),
                 ("telemetry.sdk.language", "nodejs"), ("telemetry.sdk.version", "1.30.0")]:
        kv(rs.resource, k, v)
    ss = rs.scope_spans.add()
    ss.scope.name = "@opentelemetry/instrumentation-http"
    ss.scope.version = "0.57.0"
    t0 = 1732440000000000000
    trace = rnd.randbytes(16)
    for i in range(n):
        if i % 10 == 0:
            trace = rnd.randbytes(16)
        s = ss.spans.add()
        s.trace_id = trace
        s.span_id = rnd.randbytes(8)
        if i % 10:
            s.parent_span_id = rnd.randbytes(8)
        s.name = rnd.choice(["GET /api/cart", "POST /api/checkout", "SELECT orders", "redis GET"])
        s.kind = rnd.choice([1, 2, 3])
        s.start_time_unix_nano = t0 + i * 1000000
        s.end_time_unix_nano = s.start_time_unix_nano + rnd.randint(10000, 5000000)
        kv(s, "http.request.method", "GET")
        kv(s, "url.path", "/api/cart/%d" % rnd.randint(1, 99999))
        kv(s, "http.response.status_code", 200)
        kv(s, "server.address", "cart.shop.svc.cluster.local")
        kv(s, "network.peer.port", rnd.randint(1024, 65535))
        kv(s, "user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)")
        for j in range(rnd.randint(0, 4)):
            kv(s, "app.attr.%d" % j, rnd.random())
        if i % 4 == 0:
            e = s.events.add()
            e.name = "cache.miss"
            e.time_unix_nano = s.start_time_unix_nano + 500
        s.status.code = 1
    return req

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=100)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True)
    ap.add_argument("--gzip", action="store_true")
    a = ap.parse_args()
    body = build(load_proto(), a.spans, a.seed).SerializeToString()
    if a.gzip:
        body = gzip.compress(body, 6)
    with open(a.out, "wb") as f:
        f.write(body)
    print("%s: %d spans, %d bytes (%.0f B/span)" % (a.out, a.spans, len(body), len(body) / a.spans))

if __name__ == "__main__":
    main()
