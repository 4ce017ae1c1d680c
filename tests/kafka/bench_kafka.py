#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Spans/s through the Kafka exporter against librdkafka's mock cluster (3
brokers on loopback, otlp_spans with 6 partitions). wrk posts one
100-span request (bench/gen_request.py: 10 traces of 10 spans) over
keep-alive connections; the figure is the rise of otlp_spans_exported_total
(spans whose every message got its delivery report) over the measured
window, for each exporter setting; the discard exporter gives the ingest
ceiling of the same box. Prints a Markdown table.

    tests/kafka/bench_kafka.py [--bin build/app/otlp-service] [--seconds 15]"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import itlib  # noqa: E402

ROOT = itlib.REPO_ROOT


def run_case(args, tmp, name, exporter, kafka):
    mc = subprocess.Popen([args.mock, "--topic", "otlp_spans:6"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True)
    bootstrap = json.loads(mc.stdout.readline())["bootstrap"]
    http_port, ctl_port = itlib.free_port(), itlib.free_port()
    cfg = {
        "service": {"name": "bench", "log_level": "warn", "data_dir": tmp},
        "receiver": {"host": "127.0.0.1", "http_port": http_port, "grpc_port": 0},
        "dataplane": {"mode": "socket", "workers": args.workers},
        "batch": {"max_queue_size": 65536, "max_export_batch_size": 1024,
                  "batch_timeout_ms": 50, "max_concurrent_exports": 4},
        "exporter": {"protocol": exporter},
        "control": {"host": "127.0.0.1", "port": ctl_port},
    }
    if exporter == "kafka":
        k = {"brokers": bootstrap}
        k.update(kafka)
        cfg["exporter"]["kafka"] = k
    path = os.path.join(tmp, name + ".yaml")
    with open(path, "w") as f:
        f.write(itlib.yaml_dump(cfg) + "\n")
    log = open(os.path.join(tmp, name + ".log"), "w")
    gw = subprocess.Popen([args.bin, "--config", path], stdout=log, stderr=log)
    try:
        itlib.wait_for(lambda: itlib.http_request(ctl_port, "GET", "/health/ready").status == 200,
                       15)

        def exported():
            m = itlib.Metrics(itlib.http_request(ctl_port, "GET", "/metrics").body.decode())
            return m.value("otlp_spans_exported_total"), m
        url = "http://127.0.0.1:%d/v1/traces" % http_port
        wrk = subprocess.Popen(["wrk", "-t", "1", "-c", str(args.connections), "-d",
                                "%ds" % (args.seconds + 4), "-s",
                                os.path.join(ROOT, "bench", "wrk_post.lua"), url, "--",
                                args.request], stdout=subprocess.PIPE, text=True)
        time.sleep(2)  # warm-up
        e0, _ = exported()
        t0 = time.monotonic()
        time.sleep(args.seconds)
        e1, m = exported()
        t1 = time.monotonic()
        out = wrk.communicate()[0].strip().splitlines()
        rate = (e1 - e0) / (t1 - t0)
        msgs = m.value("otlp_kafka_messages_delivered_total")
        refused = m.value("http_requests_total", code="429") + \
            m.value("http_requests_total", code="503")
        return rate, msgs, refused, out[-1] if out else ""
    finally:
        gw.terminate()
        gw.wait(20)
        mc.stdin.close()
        mc.wait(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "app", "otlp-service"))
    ap.add_argument("--mock", default=None)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    args.mock = args.mock or os.path.join(os.path.dirname(os.path.dirname(args.bin)), "tests",
                                          "kafka", "mock_cluster")
    tmp = tempfile.mkdtemp(prefix="kafka-bench-")
    args.request = os.path.join(tmp, "req.pb")
    subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "bench", "gen_request.py"),
                    "--spans", "100", "--out", args.request], check=True, capture_output=True)
    cases = [
        ("discard (ingest ceiling)", "discard", {}),
        ("kafka, one message per batch", "kafka", {"partition_traces_by_id": False}),
        ("kafka, split by trace id (default)", "kafka", {}),
        # the mock broker does not set TCP_NODELAY: pipelined responses wait
        # for delayed ACKs (~40 ms); one request in flight avoids that
        ("kafka, split by trace id, max.in.flight 1", "kafka",
         {"properties": {"max.in.flight.requests.per.connection": "1"}}),
        ("kafka, split by trace id, lz4", "kafka", {"compression": "lz4"}),
        ("kafka, split by trace id, zstd", "kafka", {"compression": "zstd"}),
        ("kafka, one message per batch, otlp_json", "kafka",
         {"partition_traces_by_id": False, "encoding": "otlp_json"}),
    ]
    print("| exporter setting | spans/s exported | Kafka messages | 429/503 | wrk |")
    print("| --- | ---: | ---: | ---: | --- |")
    for i, (name, exporter, kafka) in enumerate(cases):
        rate, msgs, refused, wrk_line = run_case(args, tmp, "case%d" % i, exporter, kafka)
        print("| %s | %.0f | %s | %d | %s |" % (name, rate, "%d" % msgs if exporter == "kafka"
                                                 else "-", refused, wrk_line), flush=True)


if __name__ == "__main__":
    main()
