# SPDX-License-Identifier: Apache-2.0
"""The NATS JetStream exporter against a real nats-server cluster on loopback
(nats_cluster.py): every span that got a 200 is in the stream exactly once
with identical content, through a SIGKILLed server, a full outage, paused
servers (acknowledgements lost, batches re-published with the same
Nats-Msg-Id) and a full stream. The stream is read back with a small NATS
client speaking the JetStream API (JSON on $JS.API.*)."""

import collections
import json
import re
import subprocess
import threading
import time
import urllib.request

import pytest

import itlib
import nats_cluster
import otlp_pb

pytestmark = pytest.mark.skipif(nats_cluster.server_bin() is None,
                                reason="nats-server is not installed (apt-get install nats-server)")

SUBJECTS = {"traces": "otlp.traces", "metrics": "otlp.metrics", "logs": "otlp.logs"}
MSG_ID_RE = re.compile(r"^[0-9a-f]{16}-[0-9]+$")


@pytest.fixture(scope="module")
def nats_gateway_bin(gateway_bin):
    """The binary must be built with libnats (the exporter is optional)."""
    out = subprocess.run(["ldd", gateway_bin], capture_output=True, text=True).stdout
    if "libnats" not in out:
        pytest.skip("otlp-service was built without libnats (apt-get install libnats-dev)")
    return gateway_bin


@pytest.fixture
def nats3(tmp_path):
    c = nats_cluster.NatsCluster(tmp_path, 3)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def nats1(tmp_path):
    c = nats_cluster.NatsCluster(tmp_path, 1)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def nats_config(cluster, nats=None, **over):
    """Config overrides for a gateway exporting to `cluster`."""
    n = {"servers": cluster.servers_option, "create_stream": False}
    n.update(nats or {})
    cfg = {"exporter": {"protocol": "nats", "compression": "none", "file": None, "nats": n},
           "batch": {"max_batch_bytes": "512KiB"}}
    return itlib.deep_merge(cfg, over)


def create_stream(cluster, replicas, **kw):
    with cluster.client() as c:
        return c.stream_create("OTLP", list(SUBJECTS.values()), replicas=replicas, **kw)


def decode_stream(msgs):
    """Stream messages -> {signal: [records]}; checks headers and id uniqueness."""
    by_subject = {v: k for k, v in SUBJECTS.items()}
    out = collections.defaultdict(list)
    ids = collections.Counter()
    for seq, subject, hdrs, data in msgs:
        assert subject in by_subject, "message %d on unexpected subject %s" % (seq, subject)
        assert hdrs.get("Content-Type") == "application/x-protobuf", (seq, hdrs)
        mid = hdrs.get("Nats-Msg-Id", "")
        assert MSG_ID_RE.match(mid), "message %d: bad Nats-Msg-Id %r" % (seq, mid)
        ids[mid] += 1
        sig = by_subject[subject]
        req = otlp_pb.request_class(sig)()
        req.ParseFromString(data)  # each message is one Export*ServiceRequest
        out[sig].extend(itlib.records_of(sig, req))
    dup = [k for k, v in ids.items() if v > 1]
    assert not dup, "Nats-Msg-Id stored more than once: %r" % dup[:5]
    return out


def exported(gw, item="spans"):
    return gw.metrics().value("otlp_%s_exported_total" % item)


def wait_exported(gw, n, item="spans", timeout=60):
    itlib.wait_for(lambda: exported(gw, item) >= n, timeout,
                   what=lambda: "%d %s exported (now %s); log:\n%s" % (
                       n, item, exported(gw, item), gw.log_tail(15)))
    time.sleep(0.3)
    assert exported(gw, item) == n


def retries(m, signal="traces"):
    return m.value("otlp_export_requests_total", signal=signal, result="retry")


def curl_send(gw, tmp_path, signal, req, name):
    body, headers = itlib.encode_request(req, "proto", False)
    status, _, _, err = itlib.curl_post(gw.http_port, "/v1/" + signal, body, headers, tmp_path,
                                        name=name)
    return status


def stop_log(gw):
    """The exporter's final counters ("nats exporter stopped" line)."""
    for line in gw.log_lines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d.get("msg") == "nats exporter stopped":
            return d
    raise AssertionError("no 'nats exporter stopped' line:\n" + gw.log_tail(20))


class Sender(threading.Thread):
    """Sends trace requests with curl until stopped; keeps those answered 200."""

    def __init__(self, gw, tmp_path, tag, spans=20, pause=0.02, limit=None):
        super().__init__(daemon=True)
        self.gw, self.tmp_path, self.tag = gw, tmp_path, tag
        self.spans, self.pause, self.limit = spans, pause, limit
        self.ok, self.refused, self.errors = [], 0, []
        self.stop_flag = threading.Event()

    def run(self):
        i = 0
        while not self.stop_flag.is_set() and (self.limit is None or i < self.limit):
            req = itlib.make_traces(self.spans, tag="%s-%d" % (self.tag, i), seed=hash(self.tag) + i)
            try:
                st = curl_send(self.gw, self.tmp_path, "traces", req, "%s-%d" % (self.tag, i % 4))
            except AssertionError as e:  # curl itself failed: not acknowledged
                self.errors.append(str(e))
                st = 0
            if st == 200:
                self.ok.append(req)
            else:
                self.refused += 1
            i += 1
            time.sleep(self.pause)

    def finish(self):
        self.stop_flag.set()
        self.join(60)
        return [r for q in self.ok for r in itlib.records_of("traces", q)]


def js_ok_records(summary):
    """Records of the JS SDK's exports that succeeded (got a 200)."""
    recs = []
    for entry, batch in zip(summary["exports"], summary["batches"]):
        if entry["ok"]:
            recs.extend(otlp_pb.flatten("traces", otlp_pb.parse_otlp_json(
                batch, otlp_pb.request_class("traces"))))
    return recs


def connected_server(cluster, client_name):
    """Index of the server holding the gateway's connection (monitoring /connz)."""
    for i, s in enumerate(cluster.servers):
        if not s.running():
            continue
        with urllib.request.urlopen("http://%s:%d/connz" % (itlib.LOOPBACK, s.http_port),
                                    timeout=2) as r:
            conns = json.loads(r.read()).get("connections") or []
        if any(c.get("name") == client_name for c in conns):
            return i
    return None


# ---------------------------------------------------------------------------


def test_curl_all_signals_exactly_once(nats3, nats_gateway_bin, start_gateway, tmp_path):
    """curl -> gateway -> 3-replica stream: every item once, identical, with
    the headers and a unique Nats-Msg-Id per batch."""
    create_stream(nats3, 3)
    gw = start_gateway(**nats_config(nats3, batch={"max_concurrent_exports": 4}))
    sent = collections.defaultdict(list)
    for i in range(30):
        req = itlib.make_traces(10 + i % 7, tag="c%d" % i, seed=i)
        assert curl_send(gw, tmp_path, "traces", req, "t%d" % (i % 3)) == 200
        sent["traces"] += itlib.records_of("traces", req)
    for sig in ("metrics", "logs"):
        for i in range(4):
            req = itlib.make_request(sig, 12, "%s%d" % (sig[0], i))
            assert curl_send(gw, tmp_path, sig, req, sig) == 200
            sent[sig] += itlib.records_of(sig, req)
    wait_exported(gw, len(sent["traces"]))
    wait_exported(gw, len(sent["metrics"]), "metric_points")
    wait_exported(gw, len(sent["logs"]), "log_records")
    msgs = nats3.read_stream("OTLP")
    got = decode_stream(msgs)
    for sig in SUBJECTS:
        itlib.assert_same_items(sent[sig], got[sig], what=sig)
    info = nats3.client().stream_info("OTLP")
    assert info["config"]["num_replicas"] == 3
    m = gw.metrics()
    assert m.value("otlp_spans_dropped_total") == 0
    assert m.value("otlp_export_requests_total", result="failed") == 0
    # the exporter's own series
    assert m.value("otlp_nats_connected") == 1
    assert m.value("otlp_nats_pending_acks") == 0
    assert m.value("otlp_nats_acks_total") == m.value("otlp_nats_publishes_total") == len(msgs)
    assert m.value("otlp_nats_duplicate_acks_total") == 0


def test_exporter_creates_the_stream(nats3, nats_gateway_bin, start_gateway, tmp_path):
    """create_stream: replicas, max_bytes, subjects (prefix and an explicit
    one) and a duplicate window covering the retry horizon."""
    gw = start_gateway(**nats_config(nats3, {
        "create_stream": True, "stream": "OTLP_IT", "stream_replicas": 3,
        "stream_max_bytes": "64MiB", "subject_prefix": "it", "traces_subject": "it.spans.v1"},
        exporter={"retry": {"max_elapsed_ms": 200000}}))
    with nats3.client() as c:
        cfg = c.stream_info("OTLP_IT")["config"]
    assert cfg["num_replicas"] == 3
    assert sorted(cfg["subjects"]) == ["it.logs", "it.metrics", "it.spans.v1"]
    assert cfg["max_bytes"] == 64 << 20
    assert cfg["storage"] == "file"
    # retry.max_elapsed_ms + timeout_ms + 2 s grace
    assert cfg["duplicate_window"] == (200000 + 3000 + 2000) * 10 ** 6
    tr = itlib.make_traces(30, tag="cs", seed=7)
    lg = itlib.make_logs(9, tag="cs")
    assert gw.send("traces", tr).status == 200
    assert gw.send("logs", lg).status == 200
    wait_exported(gw, 30)
    wait_exported(gw, 9, "log_records")
    msgs = nats3.read_stream("OTLP_IT")
    assert sorted(m[1] for m in msgs) == ["it.logs", "it.spans.v1"]
    for _, subject, _, data in msgs:
        sig = "traces" if subject == "it.spans.v1" else "logs"
        req = otlp_pb.request_class(sig)()
        req.ParseFromString(data)
        itlib.assert_same_items(itlib.records_of(sig, tr if sig == "traces" else lg),
                                itlib.records_of(sig, req))
    # A second gateway finds the stream and leaves it as it is.
    gw2 = start_gateway(**nats_config(nats3, {"create_stream": True, "stream": "OTLP_IT",
                                              "stream_replicas": 1}))
    with nats3.client() as c:
        assert c.stream_info("OTLP_IT")["config"]["num_replicas"] == 3
    gw2.stop()
    assert any("using stream" in ln for ln in gw2.log_lines())


def test_js_sdk_and_curl_through_killed_servers(nats3, nats_gateway_bin, js_ready, start_gateway,
                                                tmp_path):
    """While the JS SDK and curl send, the stream leader and then the server
    the gateway is connected to are SIGKILLed and restarted: every span that
    got a 200 is in the stream exactly once, identical."""
    create_stream(nats3, 3)
    gw = start_gateway(**nats_config(
        nats3, {"max_pending": 8},
        batch={"max_concurrent_exports": 8, "max_export_batch_size": 200, "batch_timeout_ms": 20},
        exporter={"timeout_ms": 2000,
                  "retry": {"initial_interval_ms": 100, "max_interval_ms": 500,
                            "max_elapsed_ms": 90000}}))
    curl_sender = Sender(gw, tmp_path, "k", spans=15, pause=0.01)
    curl_sender.start()
    out = str(tmp_path / "js-summary.json")
    js_result = {}

    def run_js():
        js_result["p"], js_result["summary"] = itlib.run_js(
            ["--endpoint", "http://%s:%d" % (itlib.LOOPBACK, gw.http_port), "--signal", "traces",
             "--encoding", "proto", "--count", "3000", "--batch-size", "25", "--out", out,
             "--resource", "test.case=nats-kill"], timeout=180)
    js_thread = threading.Thread(target=run_js, daemon=True)
    js_thread.start()

    time.sleep(1.0)
    leader = nats3.index_of(nats3.stream_leader("OTLP"))
    nats3.servers[leader].kill()  # SIGKILL
    time.sleep(3.0)
    nats3.restart(leader)
    time.sleep(1.0)
    victim = connected_server(nats3, "otlp-it")
    assert victim is not None, "gateway connection not found in /connz"
    nats3.servers[victim].kill()
    time.sleep(2.0)
    nats3.restart(victim)
    time.sleep(1.0)

    expected = curl_sender.finish()
    js_thread.join(180)
    p, summary = js_result["p"], js_result["summary"]
    assert summary is not None, p.stderr.decode()[-2000:]
    js_recs = js_ok_records(summary)
    assert js_recs, "the JS SDK exported nothing: %s" % p.stderr.decode()[-2000:]
    expected += js_recs
    assert len(curl_sender.ok) > 50, "too few curl requests during the run"
    wait_exported(gw, len(expected), timeout=120)
    got = decode_stream(nats3.read_stream("OTLP", timeout=60))
    itlib.assert_same_items(expected, got["traces"], what="spans")
    m = gw.metrics()
    assert m.value("otlp_spans_dropped_total") == 0
    assert m.value("otlp_export_requests_total", result="failed") == 0
    gw.stop()
    st = stop_log(gw)
    print("kill run: %d spans, curl refused %d, retries %d, exporter %r"
          % (len(expected), curl_sender.refused, retries(m), st))


def test_all_servers_down_backs_off_and_drains(nats3, nats_gateway_bin, start_gateway, tmp_path):
    """Every server SIGKILLed: the gateway keeps answering 200, retries with
    backoff (otlp_export_requests_total{result="retry"} grows), the queue
    holds the batches; when the cluster is back the backlog drains, once."""
    create_stream(nats3, 3)
    gw = start_gateway(**nats_config(
        nats3, batch={"max_concurrent_exports": 4},
        exporter={"timeout_ms": 2000,
                  "retry": {"initial_interval_ms": 200, "max_interval_ms": 1000,
                            "max_elapsed_ms": 120000}}))
    expected = []
    for i in range(5):
        req = itlib.make_traces(20, tag="before%d" % i, seed=100 + i)
        assert gw.send("traces", req).status == 200
        expected += itlib.records_of("traces", req)
    wait_exported(gw, len(expected))

    for s in nats3.servers:
        s.kill()
    for i in range(20):
        req = itlib.make_traces(20, tag="down%d" % i, seed=200 + i)
        assert gw.send("traces", req).status == 200
        expected += itlib.records_of("traces", req)
    time.sleep(2.0)
    m1 = gw.metrics()
    time.sleep(3.0)
    m2 = gw.metrics()
    assert retries(m2) > retries(m1) > 0, "no growing retries while every server is down"
    assert m2.value("otlp_spans_exported_total") == 100, "exported with every server down?"
    assert m2.value("otlp_export_retry_queue") > 0
    assert m2.value("otlp_nats_connected") == 0
    health = itlib.http_request(gw.control_port, "GET", "/health/live")
    assert health.status == 200

    for i in range(3):
        nats3.servers[i].start()
    nats3.wait_ready(60)
    wait_exported(gw, len(expected), timeout=90)
    got = decode_stream(nats3.read_stream("OTLP", timeout=60))
    itlib.assert_same_items(expected, got["traces"], what="spans")
    m = gw.metrics()
    assert m.value("otlp_spans_dropped_total") == 0
    assert m.value("otlp_nats_connected") == 1
    assert m.value("otlp_nats_reconnects_total") >= 1
    assert any("not_connected" in ln for ln in gw.log_lines())


def test_lost_acks_are_deduplicated(nats1, nats_gateway_bin, start_gateway, tmp_path):
    """The server is paused (SIGSTOP) with publishes in flight: no
    acknowledgement within timeout_ms, the batches are re-published with the
    same Nats-Msg-Id into the still open connection. After SIGCONT the stream
    holds each batch once and the exporter saw JetStream's duplicate acks."""
    create_stream(nats1, 1)
    gw = start_gateway(**nats_config(
        nats1, batch={"max_concurrent_exports": 4, "max_export_batch_size": 50},
        exporter={"timeout_ms": 400,
                  "retry": {"initial_interval_ms": 100, "max_interval_ms": 300,
                            "max_elapsed_ms": 60000, "randomization": 0.0}}))
    expected = []
    nats1.servers[0].pause()
    try:
        for i in range(8):
            req = itlib.make_traces(40, tag="p%d" % i, seed=300 + i)
            assert gw.send("traces", req).status == 200
            expected += itlib.records_of("traces", req)
        time.sleep(2.5)
    finally:
        nats1.servers[0].resume()
    wait_exported(gw, len(expected), timeout=60)
    got = decode_stream(nats1.read_stream("OTLP"))
    itlib.assert_same_items(expected, got["traces"], what="spans")
    m = gw.metrics()
    assert retries(m) > 0
    assert m.value("otlp_nats_duplicate_acks_total") > 0
    assert m.value("otlp_nats_ack_timeouts_total") > 0
    gw.stop()
    st = stop_log(gw)
    assert st["duplicates"] > 0, st
    assert st["timeouts"] > 0, st


def test_full_stream_is_a_permanent_failure(nats1, nats_gateway_bin, start_gateway, tmp_path):
    """A stream with discard "new" that is full rejects the message
    ("maximum bytes exceeded"): dropped and counted, not retried."""
    create_stream(nats1, 1, max_bytes=6000, discard="new")
    gw = start_gateway(**nats_config(nats1, batch={"max_concurrent_exports": 1}))
    first = itlib.make_traces(5, tag="fits", seed=1)
    assert gw.send("traces", first).status == 200
    wait_exported(gw, 5)
    big = itlib.make_traces(40, tag="toolarge", seed=2)
    assert gw.send("traces", big).status == 200
    m = itlib.wait_for(lambda: (lambda m: m if m.value("otlp_spans_dropped_total",
                                                       reason="upstream_rejected") == 40
                                else None)(gw.metrics()), 20, what="40 spans upstream_rejected")
    assert m.value("otlp_export_requests_total", signal="traces", result="failed") == 1
    assert retries(m) == 0
    assert exported(gw) == 5
    assert any("stream_full" in ln for ln in gw.log_lines()), gw.log_tail(10)
    msgs = nats1.read_stream("OTLP")
    assert len(msgs) == 1


def test_start_without_server_then_connect(tmp_path, nats_gateway_bin, start_gateway):
    """No server reachable at start: the gateway starts, accepts and retries;
    once a server is up the stream is created and the data arrives."""
    cluster = nats_cluster.NatsCluster(tmp_path, 1)
    try:
        gw = start_gateway(**nats_config(cluster, {"create_stream": True},
                                         exporter={"retry": {"max_interval_ms": 300}}))
        req = itlib.make_traces(25, tag="late", seed=5)
        assert gw.send("traces", req).status == 200
        itlib.wait_for(lambda: retries(gw.metrics()) > 0, 10, what="retries while no server")
        assert exported(gw) == 0
        cluster.start()
        wait_exported(gw, 25, timeout=30)
        got = decode_stream(cluster.read_stream("OTLP"))
        itlib.assert_same_items(itlib.records_of("traces", req), got["traces"])
    finally:
        cluster.stop()


def test_oversized_batch_is_rejected_not_retried(nats1, nats_gateway_bin, start_gateway, tmp_path):
    """A batch above the server's max_payload can never be published:
    permanent, counted, and the start-up log said so."""
    create_stream(nats1, 1)
    gw = start_gateway(**nats_config(nats1, batch={"max_batch_bytes": "8MiB",
                                                   "max_export_batch_size": 10000,
                                                   "max_queue_size": 20000}))
    assert any("max_payload" in ln for ln in gw.log_lines())
    req = itlib.make_traces(3000, tag="huge", seed=9, n_resources=1)
    assert len(req.SerializeToString()) > 1 << 20
    assert gw.send("traces", req).status == 200
    itlib.wait_for(lambda: gw.metrics().value("otlp_spans_dropped_total",
                                              reason="upstream_rejected") == 3000, 20,
                   what="oversized batch dropped")
    assert retries(gw.metrics()) == 0
    assert any("message_too_large" in ln for ln in gw.log_lines())
