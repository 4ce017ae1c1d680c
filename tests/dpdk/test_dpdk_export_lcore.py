# SPDX-License-Identifier: Apache-2.0
"""The export runner on its own EAL lcore, batches handed over through
rte_rings, batch bodies allocated once at start from EAL memory: the service
started with one lcore more than workers (--lcores 0@0,1@1,2@0 on the two
CPUs) exports everything from lcore 2, and its resident memory stays flat
under sustained load."""

import json
import re
import shutil
import subprocess
import time

import pytest

from conftest import GEN, URL, WRK_LUA, DpdkRig, itlib, report

LCORES = "--lcores=0@0,1@1,2@0"  # main, one worker, the export lcore


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def _wrk(r, body, seconds, conns=20):
    p = r.ns_run(["wrk", "-t", "2", "-c", str(conns), "-d", "%ds" % seconds, "-s", WRK_LUA,
                  URL + "/v1/traces", "--", str(body)], timeout=seconds + 60)
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    m = re.search(r"requests (\d+), non-2xx (\d+)", out)
    return int(m.group(1)), int(m.group(2)), out


def _lcore_rig(tmp_path, request, upstream, batch=None):
    r = DpdkRig(tmp_path, upstream=upstream, grpc=False, batch=batch)
    r.gw.config["dataplane"]["dpdk"]["eal_args"] += " " + LCORES
    request.addfinalizer(r.stop)
    return r.start()


@pytest.fixture
def lcore_rig(tmp_path, request, upstream):
    return _lcore_rig(tmp_path, request, upstream)


def test_export_runs_on_its_lcore(tmp_path, request, upstream):
    """Small batches (max_batch_bytes 128 KiB: a fixed capacity of 148 KiB)
    so that the largest request here is split over several batches."""
    r = _lcore_rig(tmp_path, request, upstream, batch={"max_batch_bytes": 131072})
    started = [l for l in r.gw.log_lines() if "export runner started" in l]
    assert started and "lcore 2" in started[-1], r.gw.log_tail(60)
    pool = [json.loads(l) for l in r.gw.log_lines() if "batch pool allocated" in l]
    assert pool and pool[0]["memory"] == "dpdk", r.gw.log_tail(60)
    m = r.metrics()
    assert m.value("otlp_dpdk_export_lcore") == 2
    assert m.value("otlp_dpdk_batch_pool_bytes") == pool[0]["total_bytes"]

    reqs = [itlib.make_traces(n, "lcore-%d" % i) for i, n in enumerate((1, 50, 300) * 5)]
    for i, req in enumerate(reqs):
        body, headers = itlib.encode_request(req, "proto", False)
        assert r.post(body, headers, name="l%d" % i) == 200
    expected = [x for req in reqs for x in itlib.records_of("traces", req)]
    upstream.wait_items("traces", len(expected))
    time.sleep(0.3)
    itlib.assert_same_items(expected, upstream.records("traces"))
    m = r.metrics()
    assert m.value("otlp_spans_exported_total") == len(expected)
    # Every batch went back to its worker's free ring.
    free = sum(v for lab, v in m.series("otlp_dpdk_ring_batches") if lab.get("ring") == "free")
    assert free == m.value("otlp_pool_free_batches")

    # Larger than one batch: split at ResourceSpans boundaries, all of it
    # arrives; each piece is an export request of its own.
    upstream.reset()
    big = itlib.make_traces(3000, "split", n_resources=12)
    body, _ = itlib.encode_request(big, "proto", False)
    assert len(body) > pool[0]["batch_bytes"], len(body)
    exports = m.value("otlp_export_requests_total", signal="traces", result="success")
    r.post_traces_exactly_once(upstream, big, name="big")
    m = r.metrics()
    assert m.value("otlp_export_requests_total", signal="traces", result="success") >= \
        exports + 2
    assert r.stop() == 0


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed")
def test_rss_flat_under_sustained_load(lcore_rig, upstream, tmp_path):
    """Batch memory is allocated up front: after a warm-up (connections,
    mbufs and parser buffers touched once) the resident set stays within a
    small margin while wrk keeps the service busy."""
    r = lcore_rig
    spans = 50
    body = tmp_path / "wrk.pb"
    subprocess.run(["/usr/bin/python3", GEN, "--spans", str(spans), "--out", str(body)],
                   check=True, capture_output=True)
    pid = r.gw.proc.pid
    rss_start = _rss_kib(pid)
    n1, bad1, _ = _wrk(r, body, 3)
    time.sleep(1)
    rss_warm = _rss_kib(pid)
    n2, bad2, out = _wrk(r, body, 10)
    time.sleep(1)
    rss_end = _rss_kib(pid)
    report("export lcore, wrk 20 conns 10 s, %d spans/request: %d requests, %d non-2xx; "
           "RSS start %d KiB, after warm-up %d KiB, after load %d KiB"
           % (spans, n2, bad2, rss_start, rss_warm, rss_end))
    assert n2 > 0, out
    assert rss_end - rss_warm < 16 * 1024, (rss_warm, rss_end)
    # What was acknowledged arrived (connections cut by wrk at the end may
    # have had one more request accepted).
    ok = (n1 - bad1) + (n2 - bad2)
    itlib.wait_for(lambda: upstream.stats()["items_accepted"]["traces"] >= ok * spans, 60,
                   what="acknowledged spans at the upstream")
    got = upstream.stats()["items_accepted"]["traces"]
    assert got <= (ok + 2 * 20) * spans, (got, ok)
    assert r.metrics().value("otlp_dpdk_export_lcore") == 2


def test_no_spare_lcore_keeps_a_thread(tmp_path, request, upstream):
    """--lcores with only the main and the worker lcore: the exporter runs on
    a plain thread, a warning says how to give it an lcore, data flows."""
    r = DpdkRig(tmp_path, upstream=upstream, grpc=False)
    r.gw.config["dataplane"]["dpdk"]["eal_args"] += " --lcores=0@0,1@1"
    request.addfinalizer(r.stop)
    r.start()
    lines = r.gw.log_lines()
    assert any("no EAL lcore for the exporter" in l for l in lines), r.gw.log_tail(60)
    started = [json.loads(l) for l in lines if "export runner started" in l]
    assert started and started[-1]["thread"] == "pthread"
    assert r.metrics().value("otlp_dpdk_export_lcore") == -1
    r.post_traces_exactly_once(upstream, itlib.make_traces(120, "thread"))
    assert r.stop() == 0
