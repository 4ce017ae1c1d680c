# SPDX-License-Identifier: Apache-2.0
"""otlp-service with exporter.protocol kafka against librdkafka's mock
cluster (3 brokers on loopback ports; no Kafka broker installs here, the mock
stands in for one). kafkajs, an independent client, reads the topics back:
every item sent arrives, each message is an Export*ServiceRequest, each
trace's spans share one message key (the trace id in hex) and one partition
(the one Sarama's hash partitioner picks, as the Collector's exporter does).
Broker errors injected through the mock API cause retries, not loss."""

import base64
import collections
import json
import os
import subprocess
import threading
import time

import itlib
import otlp_pb

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(itlib.REPO_ROOT, "bench", "gen_request.py")


def consume(cluster, topics, tmp_path, min_messages=1, idle_ms=2500, timeout_ms=60000):
    """All messages of `topics` read with kafkajs: dicts with topic, partition,
    offset, key (bytes or None), value (bytes)."""
    out = tmp_path / ("consumed-%d.jsonl" % time.monotonic_ns())
    args = ["node", os.path.join(HERE, "consume.js"), "--brokers", cluster.bootstrap,
            "--out", str(out), "--min-messages", str(min_messages), "--idle-ms", str(idle_ms),
            "--timeout-ms", str(timeout_ms)]
    for t in topics:
        args += ["--topic", t]
    p = subprocess.run(args, capture_output=True, text=True, cwd=HERE, timeout=timeout_ms / 1000 + 60)
    assert p.returncode == 0, "consume.js failed: %s" % p.stderr
    msgs = []
    for line in out.read_text().splitlines():
        d = json.loads(line)
        d["key"] = None if d["key"] is None else base64.b64decode(d["key"])
        d["value"] = base64.b64decode(d["value"])
        msgs.append(d)
    return msgs


def decode(signal, value):
    req = otlp_pb.request_class(signal)()
    req.ParseFromString(value)
    return req


def sarama_partition(key, n):
    """Sarama's hash partitioner (the Collector's default): FNV-1a 32 read as
    int32, modulo n, absolute value."""
    h = 0x811C9DC5
    for c in key:
        h = ((h ^ c) * 0x01000193) & 0xFFFFFFFF
    if h >= 1 << 31:
        h -= 1 << 32
    p = abs(h) % n  # Go: -(|h| % n) for negative h, then negated
    return p


def check_trace_messages(msgs, partitions=6):
    """Each message: one trace, key = its id in hex, Sarama's partition; each
    trace on one partition. Returns the records of all messages."""
    records = []
    trace_parts = collections.defaultdict(set)
    for m in msgs:
        assert m["topic"] == "otlp_spans"
        req = decode("traces", m["value"])
        recs = otlp_pb.flatten("traces", req)
        assert recs, "empty message"
        ids = {r["item"]["traceId"] for r in recs}
        assert len(ids) == 1, "a message holds several traces: %s" % ids
        tid = ids.pop()
        assert m["key"] == tid.encode(), (m["key"], tid)
        assert m["partition"] == sarama_partition(m["key"], partitions)
        trace_parts[tid].add(m["partition"])
        records.extend(recs)
    split = {t: p for t, p in trace_parts.items() if len(p) > 1}
    assert not split, "traces on several partitions: %s" % split
    return records


def exported(gw, items="spans"):
    return gw.metrics().value("otlp_%s_exported_total" % items)


def gen_request(tmp_path, seed, spans):
    path = tmp_path / ("req-%d.pb" % seed)
    subprocess.run(["/usr/bin/python3", GEN, "--spans", str(spans), "--seed", str(seed),
                    "--out", str(path)], check=True, capture_output=True)
    return path.read_bytes()


def test_curl_traces_split_by_trace(cluster, start_gateway, tmp_path):
    gw = start_gateway(cluster)
    expected = []
    for seed in range(1, 9):
        body = gen_request(tmp_path, seed, 100)
        status, _, _, err = itlib.curl_post(gw.http_port, "/v1/traces", body,
                                            {"Content-Type": "application/x-protobuf"}, tmp_path,
                                            name="r%d" % seed)
        assert status == 200, err
        expected.extend(otlp_pb.flatten("traces", decode("traces", body)))
    itlib.wait_for(lambda: exported(gw) >= len(expected), 30, what="spans exported")
    msgs = consume(cluster, ["otlp_spans"], tmp_path, min_messages=80)
    got = check_trace_messages(msgs)
    itlib.assert_same_items(expected, got, what="spans")
    m = gw.metrics()
    assert m.value("otlp_kafka_messages_delivered_total") == len(msgs)
    assert m.value("otlp_spans_dropped_total") == 0
    # librdkafka's statistics (the source of the broker series) are a
    # snapshot every statistics.interval.ms: the last connection may not be
    # in the latest one yet.
    itlib.wait_for(lambda: gw.metrics().value("otlp_kafka_broker_up") == 3, 15,
                   what="all three brokers up in librdkafka's statistics")


def test_js_sdk_traces(cluster, start_gateway, tmp_path, js_ready):
    gw = start_gateway(cluster, kafka={"compression": "gzip"})
    out = str(tmp_path / "sent.json")
    p, summary = itlib.run_js(["--endpoint", "http://127.0.0.1:%d" % gw.http_port,
                               "--signal", "traces", "--encoding", "proto", "--count", "300",
                               "--out", out])
    assert p.returncode == 0, p.stderr.decode()
    expected = itlib.summary_records(summary)
    assert len(expected) == 300
    itlib.wait_for(lambda: exported(gw) >= 300, 30, what="spans exported")
    msgs = consume(cluster, ["otlp_spans"], tmp_path)
    got = check_trace_messages(msgs)
    itlib.assert_same_items(expected, got, what="spans")


def test_metrics_and_logs_keyed_by_resource(cluster, start_gateway, tmp_path):
    gw = start_gateway(cluster, kafka={"partition_metrics_by_resource_attributes": True,
                                       "partition_logs_by_resource_attributes": True,
                                       "compression": "none"})
    sent = {"metrics": [], "logs": []}
    for i in range(4):
        for sig in ("metrics", "logs"):
            req = itlib.make_request(sig, 30, "k%d" % i, resource_extra={"svc.idx": i % 2})
            r = gw.send(sig, req)
            assert r.status == 200, r
            sent[sig].extend(otlp_pb.flatten(sig, req))
    itlib.wait_for(lambda: exported(gw, "metric_points") >= len(sent["metrics"]) and
                   exported(gw, "log_records") >= len(sent["logs"]), 30, what="items exported")
    for sig, topic in (("metrics", "otlp_metrics"), ("logs", "otlp_logs")):
        msgs = consume(cluster, [topic], tmp_path)
        got = []
        keys = collections.defaultdict(set)
        for m in msgs:
            assert len(m["key"]) == 16  # the Collector's resource attribute hash
            assert m["partition"] == sarama_partition(m["key"], 3)
            recs = otlp_pb.flatten(sig, decode(sig, m["value"]))
            for r in recs:
                keys[json.dumps(r["resource"], sort_keys=True)].add(m["key"])
            got.extend(recs)
        # one key per resource, different resources different keys
        assert all(len(k) == 1 for k in keys.values()), keys
        assert len({next(iter(k)) for k in keys.values()}) == len(keys)
        itlib.assert_same_items(sent[sig], got, what=sig)


def test_broker_errors_retry_not_loss(cluster, start_gateway, tmp_path):
    """Produce request errors and the leader of some partitions down while
    traffic flows: messages time out, batches are retried (and produced again
    whole: duplicates allowed), nothing is lost or dropped."""
    gw = start_gateway(cluster, exporter={"timeout_ms": 1500})
    bodies = [gen_request(tmp_path, 100 + i, 50) for i in range(24)]
    statuses = []

    def send():
        for i, body in enumerate(bodies):
            r = gw.post("traces", body, {"Content-Type": "application/x-protobuf"})
            statuses.append(r.status)
            time.sleep(0.25)  # traffic before, during and after the outage

    t = threading.Thread(target=send)
    t.start()
    time.sleep(0.5)
    cluster.cmd("errors 0 NOT_LEADER_FOR_PARTITION,REQUEST_TIMED_OUT,NOT_ENOUGH_REPLICAS,"
                "_TRANSPORT,NOT_ENOUGH_REPLICAS_AFTER_APPEND")
    cluster.cmd("down 1")
    time.sleep(4)
    cluster.cmd("up 1")
    t.join()
    assert statuses == [200] * len(bodies)
    total = 50 * len(bodies)
    itlib.wait_for(lambda: exported(gw) >= total, 90, what="spans exported")
    m = gw.metrics()
    kafka_lines = "\n".join(ln for ln in m.text.splitlines()
                             if ("kafka" in ln or "otlp_export_requests" in ln or
                                 "dropped" in ln) and not ln.startswith("#"))
    assert m.value("otlp_spans_dropped_total") == 0, kafka_lines
    assert m.value("otlp_export_requests_total", signal="traces", result="retry") > 0, kafka_lines
    assert m.value("otlp_kafka_messages_failed_total") > 0, kafka_lines
    msgs = consume(cluster, ["otlp_spans"], tmp_path, min_messages=total // 10)  # 10 spans a trace
    got = check_trace_messages(msgs)
    expected = []
    for body in bodies:
        expected.extend(otlp_pb.flatten("traces", decode("traces", body)))
    want = collections.Counter(otlp_pb.record_key(r) for r in expected)
    have = collections.Counter(otlp_pb.record_key(r) for r in got)
    missing = want - have
    assert not missing, "lost %d spans" % sum(missing.values())
    dups = sum((have - want).values())
    print("spans sent %d, read back %d (%d duplicates from re-produced batches)"
          % (total, len(got), dups))
