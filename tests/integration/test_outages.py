# SPDX-License-Identifier: Apache-2.0
"""The upstream misbehaves: 503s, 429 with Retry-After, 400, hangs, and a full
outage that fills the queue. Nothing acknowledged may be lost or duplicated."""

import time

import itlib


def _send_ok(gw, signal, req, encoding="proto"):
    r = gw.send(signal, req, encoding)
    assert r.status == 200, r
    return r


def _exports(m, signal, result):
    return m.value("otlp_export_requests_total", signal=signal, result=result)


def test_503_then_recovery_retries_and_delivers_once(gw, upstream):
    upstream.queue({"status": 503, "times": 3})
    reqs = [itlib.make_traces(5, "r503-%d" % i) for i in range(3)]
    for q in reqs:
        _send_ok(gw, "traces", q)
    upstream.wait_items("traces", 15, timeout=20)
    time.sleep(0.5)  # late duplicates would show now
    itlib.assert_same_items([x for q in reqs for x in itlib.records_of("traces", q)],
                            upstream.records("traces"))
    st = upstream.stats()
    assert st["by_status"].get("503") == 3, st
    m = gw.metrics()
    assert _exports(m, "traces", "retry") > 0, \
        "no otlp_export_requests_total{result=\"retry\"}: %r" % m.series(
            "otlp_export_requests_total")
    assert m.value("otlp_spans_exported_total") == 15
    assert m.value("otlp_spans_dropped_total") == 0


def test_429_retry_after_is_honoured(gw, upstream):
    upstream.queue({"status": 429, "retry_after": 1})
    req = itlib.make_logs(4, "r429")
    _send_ok(gw, "logs", req)
    upstream.wait_items("logs", 4, timeout=15)
    reqs = [r for r in upstream.requests() if r["signal"] == "logs"]
    assert [r["status"] for r in reqs][:2] == [429, 200], reqs
    gap = reqs[1]["time"] - reqs[0]["time"]
    # retry.initial_interval_ms is 100 in this config: only Retry-After explains >= 1 s.
    assert gap >= 0.95, "retried %.3f s after a 429 with Retry-After: 1" % gap
    assert gap < 5, "retried only after %.3f s" % gap
    itlib.assert_same_items(itlib.records_of("logs", req), upstream.records("logs"))


def test_400_drops_counted_not_retried(gw, upstream):
    upstream.mode(status=400)
    req = itlib.make_metrics(6, "r400")
    _send_ok(gw, "metrics", req)

    def dropped():
        return gw.metrics().value("otlp_metric_points_dropped_total")
    itlib.wait_for(lambda: dropped() >= 6, 10, what="6 dropped metric points")
    time.sleep(1.0)  # several retry intervals: a retry would show by now
    st = upstream.stats()
    assert st["requests"] == 1, "a 400 answer was retried: %r" % upstream.requests()
    m = gw.metrics()
    series = m.series("otlp_metric_points_dropped_total")
    reasons = {lab.get("reason") for lab, v in series if v > 0}
    assert reasons and all(reasons), "drop counted without a reason label: %r" % series
    assert m.value("otlp_metric_points_dropped_total") == 6
    assert m.value("otlp_metric_points_exported_total") == 0
    assert _exports(m, "metrics", "retry") == 0


def test_partial_success_from_upstream_is_counted(gw, upstream):
    upstream.queue({"status": 200, "partial_rejected": 2, "message": "2 spans too old"})
    req = itlib.make_traces(5, "partial-up", n_resources=1)
    _send_ok(gw, "traces", req)
    upstream.wait_items("traces", 5)

    def counted():
        m = gw.metrics()
        return m.value("otlp_spans_dropped_total") == 2 and m
    m = itlib.wait_for(counted, 5, what="2 spans counted as dropped after partial_success")
    assert upstream.stats()["requests"] == 1, "partial_success must not be retried"
    del m


def test_hang_beyond_timeout_is_retried(upstream, start_gateway):
    gw = start_gateway(upstream, exporter={"timeout_ms": 400})
    upstream.queue({"hang_s": 3})
    req = itlib.make_traces(6, "hang")
    t0 = time.monotonic()
    _send_ok(gw, "traces", req)
    upstream.wait_items("traces", 6, timeout=10)
    took = time.monotonic() - t0
    assert took < 2.5, "retry came %.2fs later: exporter.timeout_ms 400 not applied" % took
    itlib.assert_same_items(itlib.records_of("traces", req), upstream.records("traces"))
    st = upstream.stats()
    assert st["by_status"].get("hang") == 1 and st["by_status"].get("200") == 1, st
    m = gw.metrics()
    assert _exports(m, "traces", "retry") > 0 or \
        m.value("otlp_export_requests_total", result="timeout") > 0


def test_close_without_answer_is_retried(gw, upstream):
    upstream.queue({"close": True, "times": 2})
    req = itlib.make_logs(3, "close")
    _send_ok(gw, "logs", req)
    upstream.wait_items("logs", 3, timeout=10)
    time.sleep(0.3)
    itlib.assert_same_items(itlib.records_of("logs", req), upstream.records("logs"))


def test_queue_full_backpressure_then_recovery(upstream, start_gateway):
    """Upstream down + tiny queue: clients get 429/503 with Retry-After; after the
    upstream comes back every item that got a 200 arrives exactly once."""
    gw = start_gateway(upstream, batch={"max_queue_size": 40, "max_export_batch_size": 10,
                                        "batch_timeout_ms": 20},
                       exporter={"timeout_ms": 500,
                                 "retry": {"initial_interval_ms": 100, "max_interval_ms": 300,
                                           "max_elapsed_ms": 120000}})
    port = upstream.port
    upstream.stop()  # connection refused from now on
    accepted, refused = [], []
    for i in range(30):
        req = itlib.make_traces(5, "qf%d" % i, n_resources=1)
        r = gw.send("traces", req)
        if r.status == 200:
            accepted.append(req)
        else:
            assert r.status in (429, 503), r
            ra = r.headers.get("retry-after")
            assert ra and ra.isdigit() and int(ra) >= 1, "no Retry-After on %d: %r" % (
                r.status, r.headers)
            refused.append(req)
        if len(refused) >= 3:
            break
    assert refused, "queue never filled: %d requests of 5 spans accepted with " \
                    "max_queue_size 40 and the upstream down" % len(accepted)
    assert 5 * len(accepted) <= 40, "accepted %d spans over a queue of 40" % (5 * len(accepted))
    m = gw.metrics()
    assert m.value("otlp_spans_refused_total") == 5 * len(refused)
    assert m.value("otlp_queue_size") > 0
    assert m.value("otlp_queue_capacity") == 40
    # The upstream recovers on the same port.
    up2 = itlib.Upstream(upstream.workdir, port=port).start()
    try:
        n = 5 * len(accepted)
        up2.wait_items("traces", n, timeout=20)
        time.sleep(0.5)
        itlib.assert_same_items([x for q in accepted for x in itlib.records_of("traces", q)],
                                up2.records("traces"))
        itlib.wait_for(lambda: gw.metrics().value("otlp_queue_size") == 0, 5,
                       what="queue drained")
        # Accepting again.
        _send_ok(gw, "traces", itlib.make_traces(2, "after"))
        up2.wait_items("traces", n + 2)
    finally:
        up2.stop()


def test_sigterm_drains_queued_items(upstream, start_gateway):
    """Items acknowledged just before SIGTERM are exported before exit."""
    gw = start_gateway(upstream, batch={"batch_timeout_ms": 600000,
                                        "max_export_batch_size": 1000})
    req = itlib.make_traces(7, "drain")
    _send_ok(gw, "traces", req)
    time.sleep(0.2)
    assert upstream.stats()["requests"] == 0  # still batched
    rc = gw.stop()
    assert rc == 0, "exit code %s after SIGTERM" % rc
    itlib.assert_same_items(itlib.records_of("traces", req), upstream.records("traces"))


def test_503_retry_after_is_honoured(gw, upstream):
    upstream.queue({"status": 503, "retry_after": 1})
    req = itlib.make_traces(2, "r503ra")
    _send_ok(gw, "traces", req)
    upstream.wait_items("traces", 2, timeout=15)
    reqs = upstream.requests()
    gap = reqs[1]["time"] - reqs[0]["time"]
    assert gap >= 0.95, "retried %.3f s after a 503 with Retry-After: 1" % gap


def test_sigterm_with_upstream_down_exits_in_time(upstream, start_gateway):
    """A dead upstream must not hold shutdown beyond service.shutdown_timeout_ms;
    what could not be delivered is counted as dropped, not silently lost."""
    gw = start_gateway(upstream, service={"shutdown_timeout_ms": 1500})
    upstream.stop()
    _send_ok(gw, "traces", itlib.make_traces(3, "downstop"))
    time.sleep(0.3)
    t0 = time.monotonic()
    rc = gw.stop(timeout=10)
    took = time.monotonic() - t0
    assert took < 4.0, "shutdown took %.1fs with shutdown_timeout_ms 1500" % took
    assert rc is not None and rc >= 0, "killed by signal %s" % rc
    logs = "\n".join(gw.log_lines())
    assert "drop" in logs.lower() or "lost" in logs.lower() or "discard" in logs.lower(), \
        "shutdown lost 3 queued spans without saying so:\n" + logs[-2000:]
