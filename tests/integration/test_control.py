# SPDX-License-Identifier: Apache-2.0
"""Control plane: health probes and /metrics (format and figures that agree
with the traffic the test sent)."""

import shutil
import subprocess

import pytest

import itlib
from test_errors import bad_span_request


def test_health_endpoints(gw):
    for path in ("/health/live", "/health/ready", "/health/startup"):
        r = itlib.http_request(gw.control_port, "GET", path)
        assert r.status == 200, (path, r)
    assert itlib.http_request(gw.control_port, "GET", "/health/nope").status == 404
    assert itlib.http_request(gw.control_port, "GET", "/nope").status == 404


def test_metrics_format(gw):
    gw.send("traces", itlib.make_traces(3, "fmt"))
    r = itlib.http_request(gw.control_port, "GET", "/metrics")
    assert r.status == 200
    assert r.headers.get("content-type", "").startswith("text/plain"), r.headers
    text = r.body.decode("utf-8")
    m = itlib.Metrics(text)
    for name in ("otlp_spans_received_total", "otlp_spans_accepted_total",
                 "otlp_spans_refused_total", "otlp_spans_exported_total",
                 "otlp_metric_points_received_total", "otlp_log_records_received_total",
                 "otlp_queue_size", "otlp_queue_capacity", "http_requests_total",
                 "http_request_duration_seconds_bucket", "http_request_duration_seconds_sum",
                 "http_request_duration_seconds_count"):
        assert name in m.names(), "%s missing from /metrics" % name
    for name in ("otlp_spans_received_total", "http_requests_total"):
        assert m.types.get(name) == "counter", (name, m.types.get(name))
    assert m.types.get("http_request_duration_seconds") == "histogram"
    assert m.types.get("otlp_queue_size") == "gauge"
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    p = subprocess.run(["promtool", "check", "metrics"], input=r.body, capture_output=True)
    assert p.returncode == 0, "promtool check metrics: %s %s" % (p.stdout.decode(),
                                                                   p.stderr.decode())


def test_counters_agree_with_traffic(gw, upstream, tmp_path):
    # 3 good trace requests (4+5+6 spans), 1 partial (3 forwarded, 4 rejected),
    # 2 metric requests (6+4 points), 2 log requests (5+2), 1 malformed request.
    for i, n in enumerate((4, 5, 6)):
        assert gw.send("traces", itlib.make_traces(n, "c%d" % i)).status == 200
    assert gw.send("traces", bad_span_request()[0]).status == 200
    assert gw.send("metrics", itlib.make_metrics(6, "c"), "json").status == 200
    assert gw.send("metrics", itlib.make_metrics(4, "c2")).status == 200
    assert gw.send("logs", itlib.make_logs(5, "c"), use_gzip=True).status == 200
    assert gw.send("logs", itlib.make_logs(2, "c2")).status == 200
    assert gw.post("logs", b"\x0a\xff", {"Content-Type": "application/x-protobuf"}).status == 400

    upstream.wait_items("traces", 18)
    upstream.wait_items("metrics", 10)
    upstream.wait_items("logs", 7)
    got = upstream.stats()["items_accepted"]

    def settled():
        m = gw.metrics()
        return m.value("otlp_log_records_exported_total") == 7 and \
            m.value("otlp_spans_exported_total") == 18 and \
            m.value("otlp_metric_points_exported_total") == 10 and m
    m = itlib.wait_for(settled, 5, what="exported counters to settle")

    for item, sig in (("spans", "traces"), ("metric_points", "metrics"),
                      ("log_records", "logs")):
        rec = m.value("otlp_%s_received_total" % item)
        acc = m.value("otlp_%s_accepted_total" % item)
        ref = m.value("otlp_%s_refused_total" % item)
        rej = m.value("otlp_%s_rejected_total" % item)
        assert rec == acc + ref + rej, \
            "%s: received %s != accepted %s + refused %s + rejected %s" % (item, rec, acc, ref, rej)
        assert m.value("otlp_%s_exported_total" % item) == got[sig], item
        assert m.value("otlp_%s_dropped_total" % item) == 0, item
    assert m.value("otlp_spans_accepted_total") == 18
    assert m.value("otlp_spans_refused_total") == 0
    assert m.value("otlp_spans_rejected_total") == 4
    assert m.value("otlp_spans_received_total") == 22
    assert m.value("otlp_metric_points_accepted_total") == 10
    assert m.value("otlp_log_records_accepted_total") == 7
    assert m.value("http_requests_total", path="/v1/traces", code="200") == 4
    assert m.value("http_requests_total", path="/v1/metrics", code="200") == 2
    assert m.value("http_requests_total", path="/v1/logs", code="200") == 2
    assert m.value("http_requests_total", path="/v1/logs", code="400") == 1
    assert m.value("http_request_duration_seconds_count") >= 9
    assert m.value("otlp_queue_size") == 0
    assert m.value("otlp_queue_capacity") == gw.config["batch"]["max_queue_size"]
    ok = m.value("otlp_export_requests_total", result="success") or \
        m.value("otlp_export_requests_total", result="ok")
    assert ok == upstream.stats()["by_status"].get("200"), m.series("otlp_export_requests_total")
    assert m.value("otlp_export_duration_seconds_count") >= ok
