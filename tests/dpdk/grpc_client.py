#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""OTLP/gRPC client of the DPDK suite (python3-grpcio), run inside the rig's
network namespace with `ip netns exec`: sends every FILE (a serialized
ExportTraceServiceRequest) as one TraceService/Export call, all of them
concurrently over one channel (one HTTP/2 connection, many streams).

    grpc_client.py --target 198.18.0.2:4317 [--gzip] [--retry S] FILE...

--retry S: retry RESOURCE_EXHAUSTED and UNAVAILABLE for up to S seconds, as
an OTLP exporter does (the gateway refuses under pressure). Prints one JSON
line: {"codes": [final status name per file], "attempts": N,
"refusals": {status: count}, "seconds": T}. Exit 0 when every call ended OK.
"""

import argparse
import json
import sys
import threading
import time

import grpc

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
RETRYABLE = ("RESOURCE_EXHAUSTED", "UNAVAILABLE")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--retry", type=float, default=0.0)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()

    comp = grpc.Compression.Gzip if a.gzip else grpc.Compression.NoCompression
    ch = grpc.insecure_channel(a.target, compression=comp,
                               options=[("grpc.enable_http_proxy", 0),
                                        ("grpc.enable_retries", 0)])
    grpc.channel_ready_future(ch).result(timeout=a.timeout)
    # No serializers: requests and responses are raw bytes.
    export = ch.unary_unary(EXPORT)
    bodies = []
    for f in a.files:
        with open(f, "rb") as fh:
            bodies.append(fh.read())

    lock = threading.Lock()
    stats = {"attempts": 0, "refusals": {}}
    codes = [None] * len(bodies)
    t0 = time.time()

    def send(i):
        end = time.time() + a.retry
        delay = 0.05
        while True:
            with lock:
                stats["attempts"] += 1
            try:
                _, call = export.with_call(bodies[i], timeout=a.timeout, compression=comp)
                codes[i] = call.code().name
                return
            except grpc.RpcError as e:
                name = e.code().name
                codes[i] = name
                with lock:
                    stats["refusals"][name] = stats["refusals"].get(name, 0) + 1
                if name not in RETRYABLE or time.time() >= end:
                    return
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ch.close()
    print(json.dumps({"codes": codes, "attempts": stats["attempts"],
                      "refusals": stats["refusals"], "seconds": round(time.time() - t0, 3)}))
    return 0 if all(c == "OK" for c in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
