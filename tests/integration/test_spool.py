# SPDX-License-Identifier: Apache-2.0
"""The disk spool (spool.enabled): an upstream outage under load, a graceful
stop with the upstream down and a restart, kill -9 with spooled data, a torn
record after a crash, and a full spool. Every span that got a 200 must reach
the upstream, checked by unique span id; duplicates are counted and
reported (the spool is at-least-once across crashes)."""

import collections
import os
import threading
import time

import itlib

SPOOL = {"enabled": True, "fsync": "interval", "fsync_interval_ms": 100}


def _span_keys(reqs):
    return [itlib.otlp_pb.record_key(r) for q in reqs for r in itlib.records_of("traces", q)]


def _check_arrived(upstream, accepted, what, allow_duplicates):
    """Every accepted span arrived; returns the number of duplicates."""
    want = collections.Counter(_span_keys(accepted))
    assert all(v == 1 for v in want.values()), "test bug: span ids repeat"
    got = collections.Counter(itlib.otlp_pb.record_key(r) for r in upstream.records("traces"))
    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    dups = sum(v - 1 for k, v in got.items() if v > 1)
    print("%s: %d spans acknowledged, %d arrived, %d missing, %d duplicates"
          % (what, len(want), sum(got.values()), len(missing), dups))
    assert not missing, "%s: %d acknowledged spans never arrived, e.g. %r" % (
        what, len(missing), missing[:3])
    assert not unexpected, "%s: spans that were never sent arrived: %r" % (what, unexpected[:3])
    if not allow_duplicates:
        assert dups == 0, "%s: %d duplicated spans" % (what, dups)
    return dups


def _wait_spans(upstream, n, timeout):
    itlib.wait_for(lambda: upstream.stats()["items_accepted"]["traces"] >= n, timeout,
                   what=lambda: "%d spans at the upstream (now %s)"
                   % (n, upstream.stats()["items_accepted"]["traces"]))


def _send_load(gw, n_requests, spans_per_request, tag, threads=4, pause_s=0.0):
    """Send from several threads; returns (accepted requests, refused count)."""
    accepted, refused = [], [0]
    lock = threading.Lock()
    per = n_requests // threads

    def run(t):
        for i in range(per):
            req = itlib.make_traces(spans_per_request, "%s-%d-%d" % (tag, t, i), n_resources=1)
            r = gw.send("traces", req)
            with lock:
                if r.status == 200:
                    accepted.append(req)
                else:
                    assert r.status in (429, 503), r
                    assert r.headers.get("retry-after"), r.headers
                    refused[0] += 1
            if pause_s:
                time.sleep(pause_s)

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return accepted, refused[0]


def _spool_dir(gw):
    return os.path.join(gw.config["service"]["data_dir"], "spool")


def _segments(gw):
    d = _spool_dir(gw)
    return sorted(f for f in os.listdir(d) if f.endswith(".seg")) if os.path.isdir(d) else []


def test_outage_under_load_spools_and_drains(upstream, start_gateway):
    """Upstream down for a while under load, small queue: the spool takes what
    memory cannot hold, clients keep getting 200; after recovery every
    acknowledged span arrives exactly once and the spool drains."""
    gw = start_gateway(upstream, spool=SPOOL,
                       batch={"max_queue_size": 200, "max_export_batch_size": 50,
                              "batch_timeout_ms": 20, "max_concurrent_exports": 2},
                       exporter={"timeout_ms": 10000,
                                 "retry": {"initial_interval_ms": 100, "max_interval_ms": 500,
                                           "max_elapsed_ms": 600000}})
    port = upstream.port
    upstream.stop()  # connection refused from now on
    t0 = time.monotonic()
    accepted, refused = _send_load(gw, 400, 10, "outage", pause_s=0.03)
    outage_s = time.monotonic() - t0
    n = 10 * len(accepted)
    m = gw.metrics()
    print("outage %.1fs: %d spans acknowledged, %d requests refused; spool: appends %d "
          "records %d bytes %d; queue %d" % (
              outage_s, n, refused, m.value("otlp_spool_appends_total"),
              m.value("otlp_spool_records"), m.value("otlp_spool_bytes"),
              m.value("otlp_queue_size")))
    # Far more than the 200-item queue was acknowledged: the spool held it.
    assert n > 5 * 200, "only %d spans acknowledged with the spool on" % n
    assert refused <= 400 // 10, "%d of 400 requests refused with the spool on" % refused
    assert m.value("otlp_spool_appends_total") > 0
    assert m.value("otlp_spool_records") > 0
    assert m.value("otlp_spool_bytes") > 0
    assert m.value("otlp_spans_dropped_total") == 0
    assert m.value("otlp_spool_capacity_bytes") == 1 << 30

    up2 = itlib.Upstream(upstream.workdir, port=port).start()
    try:
        _wait_spans(up2, n, timeout=60)
        time.sleep(0.5)  # late duplicates would show now
        _check_arrived(up2, accepted, "outage", allow_duplicates=False)

        def drained():
            mm = gw.metrics()
            return (mm.value("otlp_spool_records") == 0 and mm.value("otlp_queue_size") == 0
                    and mm)
        m = itlib.wait_for(drained, 20, what="spool and queue drained")
        assert m.value("otlp_spool_replayed_total") == m.value("otlp_spool_appends_total")
        assert m.value("otlp_spans_exported_total") == n
        assert m.value("otlp_spans_dropped_total") == 0
        # Delivered segments are deleted (at most the one being written stays).
        assert len(_segments(gw)) <= 1, _segments(gw)
    finally:
        up2.stop()


def test_outage_many_small_batches_no_503(upstream, start_gateway):
    """An outage with a trickle of small requests: batches close by age with a
    few spans each, so the batch pool, not the item budget, runs out first.
    The runner spools them before that, and clients keep getting 200."""
    gw = start_gateway(upstream, spool=SPOOL,
                       batch={"max_queue_size": 2000, "max_export_batch_size": 200,
                              "batch_timeout_ms": 5, "max_concurrent_exports": 2},
                       exporter={"timeout_ms": 10000,
                                 "retry": {"initial_interval_ms": 200, "max_interval_ms": 1000,
                                           "max_elapsed_ms": 600000}})
    port = upstream.port
    upstream.stop()
    accepted, refused = _send_load(gw, 400, 1, "small", threads=2, pause_s=0.01)
    m = gw.metrics()
    print("small batches: %d acknowledged, %d refused, spool appends %d, free batches %d" % (
        len(accepted), refused, m.value("otlp_spool_appends_total"),
        m.value("otlp_pool_free_batches")))
    assert refused == 0, "%d requests refused during the outage" % refused
    assert m.value("otlp_spool_appends_total") > 0
    up2 = itlib.Upstream(upstream.workdir, port=port).start()
    try:
        _wait_spans(up2, len(accepted), timeout=30)
        time.sleep(0.5)
        _check_arrived(up2, accepted, "small batches", allow_duplicates=False)
    finally:
        up2.stop()


def test_graceful_stop_with_upstream_down_then_restart(upstream, start_gateway):
    """SIGTERM while the upstream is down: the data goes to the spool (not
    dropped), the process exits 0 promptly; restarted with the upstream up,
    it all arrives exactly once."""
    gw = start_gateway(upstream, spool=SPOOL, service={"shutdown_timeout_ms": 5000})
    port = upstream.port
    upstream.stop()
    reqs = [itlib.make_traces(7, "stop-%d" % i, n_resources=1) for i in range(10)]
    for q in reqs:
        assert gw.send("traces", q).status == 200
    time.sleep(0.3)
    t0 = time.monotonic()
    rc = gw.stop(timeout=15)
    took = time.monotonic() - t0
    assert rc == 0, "exit code %s" % rc
    assert took < 3.0, "stop took %.1fs: an outage should be spooled at once" % took
    logs = "\n".join(gw.log_lines())
    assert "kept in the spool" in logs or "spooled" in logs, logs[-2000:]
    assert "dropped" not in logs, logs[-2000:]
    assert _segments(gw), "no spool segment after a stop with undelivered data"

    up2 = itlib.Upstream(upstream.workdir, port=port).start()
    try:
        gw.start()
        _wait_spans(up2, 70, timeout=20)
        time.sleep(0.5)
        _check_arrived(up2, reqs, "graceful stop", allow_duplicates=False)
        itlib.wait_for(lambda: gw.metrics().value("otlp_spool_records") == 0, 10,
                       what="spool drained after restart")
        # A second clean stop leaves nothing to replay.
        assert gw.stop() == 0
        assert not _segments(gw), _segments(gw)
    finally:
        up2.stop()


def _spool_everything(gw, reqs):
    """Send with the upstream down and wait until every batch is in the spool
    (nothing left in memory)."""
    for q in reqs:
        assert gw.send("traces", q).status == 200

    def spooled():
        m = gw.metrics()
        return m.value("otlp_queue_size") == 0 and m.value("otlp_spool_records") > 0 and m
    return itlib.wait_for(spooled, 20, what="all batches in the spool")


def test_kill9_with_spooled_data_restart_delivers(upstream, start_gateway):
    """kill -9 after the data reached the spool: a restart with the upstream up
    delivers every acknowledged span (at least once; duplicates reported)."""
    gw = start_gateway(upstream, spool=SPOOL,
                       exporter={"retry": {"initial_interval_ms": 50, "max_interval_ms": 100,
                                           "max_elapsed_ms": 300}})
    port = upstream.port
    upstream.stop()
    total = []
    for rnd in range(3):  # several crashes in a row, the spool grows each time
        reqs = [itlib.make_traces(5, "kill%d-%d" % (rnd, i), n_resources=1) for i in range(12)]
        m = _spool_everything(gw, reqs)
        total += reqs
        print("round %d: spool records %d bytes %d" % (
            rnd, m.value("otlp_spool_records"), m.value("otlp_spool_bytes")))
        gw.proc.kill()
        gw.proc.wait(5)
        gw._log.close()
        assert _segments(gw)
        gw.start()
    up2 = itlib.Upstream(upstream.workdir, port=port).start()
    try:
        _wait_spans(up2, 5 * len(total), timeout=30)
        time.sleep(0.5)
        _check_arrived(up2, total, "kill -9", allow_duplicates=True)
        itlib.wait_for(lambda: gw.metrics().value("otlp_spool_records") == 0, 10,
                       what="spool drained")
    finally:
        up2.stop()


def test_kill9_during_replay_restart_delivers(upstream, start_gateway):
    """kill -9 in the middle of a replay (some spooled batches delivered, the
    rest in flight to an upstream that hangs): after a restart everything
    arrives; batches delivered after the last saved acknowledgement mark
    arrive twice, and the test reports how many."""
    gw = start_gateway(upstream, spool=SPOOL,
                       batch={"max_export_batch_size": 5, "max_concurrent_exports": 1},
                       exporter={"timeout_ms": 20000,
                                 "retry": {"initial_interval_ms": 50, "max_interval_ms": 100,
                                           "max_elapsed_ms": 200}})
    port = upstream.port
    upstream.stop()
    reqs = [itlib.make_traces(5, "replay-%d" % i, n_resources=1) for i in range(20)]
    _spool_everything(gw, reqs)
    assert gw.stop() == 0
    up2 = itlib.Upstream(upstream.workdir, port=port).start()
    try:
        up2.queue({"status": 200, "times": 8})
        up2.mode(hang_s=30)
        gw.start()
        _wait_spans(up2, 40, timeout=20)
        time.sleep(0.5)  # the 9th batch hangs in flight; the mark may or may not be saved
        gw.proc.kill()
        gw.proc.wait(5)
        gw._log.close()
        up2.mode(status=200)
        gw.start()
        _wait_spans(up2, 100, timeout=30)
        time.sleep(0.5)
        _check_arrived(up2, reqs, "kill -9 during replay", allow_duplicates=True)
    finally:
        up2.stop()


def test_torn_record_after_crash_is_cut_and_counted(upstream, start_gateway):
    """A record cut short by a crash (simulated: bytes appended after kill -9)
    is detected by its CRC at start, logged, counted and truncated away; the
    complete records before it are delivered."""
    gw = start_gateway(upstream, spool=SPOOL,
                       exporter={"retry": {"initial_interval_ms": 50, "max_interval_ms": 100,
                                           "max_elapsed_ms": 200}})
    port = upstream.port
    upstream.stop()
    reqs = [itlib.make_traces(4, "torn-%d" % i, n_resources=1) for i in range(6)]
    _spool_everything(gw, reqs)
    gw.proc.kill()
    gw.proc.wait(5)
    gw._log.close()
    seg = os.path.join(_spool_dir(gw), _segments(gw)[-1])
    size = os.path.getsize(seg)
    with open(seg, "ab") as f:  # half a record header, as a torn write leaves it
        f.write(b"SREC" + os.urandom(20))
    up2 = itlib.Upstream(upstream.workdir, port=port).start()
    try:
        gw.start()
        _wait_spans(up2, 24, timeout=20)
        _check_arrived(up2, reqs, "torn record", allow_duplicates=True)
        m = gw.metrics()
        assert m.value("otlp_spool_corrupt_records_total") == 1
        logs = "\n".join(gw.log_lines())
        assert "torn record" in logs, logs[-2000:]
        assert not os.path.exists(seg) or os.path.getsize(seg) == size
    finally:
        up2.stop()


def test_spool_full_refuses_with_503_and_loses_nothing(upstream, start_gateway):
    """spool.max_bytes reached with the upstream down: batches stay in memory,
    the queue fills and clients get 429/503 with Retry-After; nothing that got
    a 200 is lost once the upstream is back."""
    gw = start_gateway(upstream,
                       spool=dict(SPOOL, max_bytes="1MiB", segment_bytes="64KiB"),
                       batch={"max_queue_size": 400, "max_export_batch_size": 100,
                              "batch_timeout_ms": 20},
                       exporter={"timeout_ms": 10000,
                                 "retry": {"initial_interval_ms": 100, "max_interval_ms": 300,
                                           "max_elapsed_ms": 300}})
    port = upstream.port
    upstream.stop()
    accepted, refused, refused_full = [], 0, 0
    for i in range(600):
        req = itlib.make_traces(20, "full-%d" % i, n_resources=1)
        r = gw.send("traces", req)
        if r.status == 200:
            accepted.append(req)
            continue
        assert r.status in (429, 503), r
        assert r.headers.get("retry-after"), r.headers
        refused += 1
        if gw.metrics().value("otlp_spool_full_total") > 0:
            refused_full += 1  # refused while the spool is full
            if refused_full >= 5:
                break
        time.sleep(0.05)
    m = gw.metrics()
    print("spool full: %d requests acknowledged, %d refused; spool bytes %d full %d" % (
        len(accepted), refused, m.value("otlp_spool_bytes"), m.value("otlp_spool_full_total")))
    assert refused_full >= 5, "the spool never filled"
    assert m.value("otlp_spool_full_total") > 0
    assert m.value("otlp_spool_bytes") <= 1 << 20
    assert m.value("otlp_spans_dropped_total") == 0
    up2 = itlib.Upstream(upstream.workdir, port=port).start()
    try:
        _wait_spans(up2, 20 * len(accepted), timeout=60)
        time.sleep(0.5)
        _check_arrived(up2, accepted, "spool full", allow_duplicates=False)
    finally:
        up2.stop()


def test_second_instance_on_the_same_spool_is_refused(upstream, start_gateway, tmp_path):
    """Two processes must never write one spool: the second fails to start and
    says why."""
    start_gateway(upstream, spool=SPOOL)
    cfg = itlib.base_config(tmp_path, upstream, spool=SPOOL)
    gw2 = itlib.Gateway(tmp_path, cfg, name="second")
    gw2.start(wait_ready=False)
    try:
        gw2.proc.wait(10)
    finally:
        gw2.stop()
    assert gw2.proc.returncode != 0
    logs = "\n".join(gw2.log_lines())
    assert "cannot lock" in logs, logs[-2000:]
