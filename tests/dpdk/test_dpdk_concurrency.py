# SPDX-License-Identifier: Apache-2.0
"""1,200 concurrent keep-alive connections (wrk) against one worker lcore:
every connection is served, at most 1 % lose their connection to TAP drops,
and afterwards the connection
table and the mbuf pool are back at their start values (no leaked slots or
packet buffers)."""

import re
import shutil
import subprocess

import pytest

from conftest import GEN, URL, WRK_LUA, DpdkRig, itlib, report

CONNS = 1200


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed")
def test_1200_concurrent_connections_no_leak(tmp_path, request):
    # A queue that never refuses: its 3,914 batches are preallocated in EAL
    # memory, so small ones (76 KiB each, 290 MiB) stay within
    # dataplane.dpdk.batch_pool_bytes (512 MiB); at the default 8 MiB the
    # pool would be capped at 56 batches and answer 503 pool_exhausted when
    # the export lcore is descheduled for 100 ms on this 2-CPU VM.
    r = DpdkRig(tmp_path, exporter={"protocol": "discard"},
                batch={"max_queue_size": 1000000, "max_batch_bytes": "64KiB"})
    r.gw.config["dataplane"]["dpdk"]["max_conns_per_lcore"] = 4096
    request.addfinalizer(r.stop)
    r.start()
    itlib.wait_for(lambda: r.metrics().value("otlp_tcp_connections") == 0, 10,
                   what="start-up connection gone")
    m0 = r.metrics()
    body = tmp_path / "conc.pb"
    subprocess.run(["/usr/bin/python3", GEN, "--spans", "10", "--out", str(body)], check=True,
                   capture_output=True)
    p = r.ns_run(["wrk", "-t", "2", "-c", str(CONNS), "-d", "6s", "--timeout", "10s", "-s",
                  WRK_LUA, URL + "/v1/traces", "--", str(body)], timeout=120)
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    # The TAP (a 1000-frame queue, a CPU shared with wrk and the lcore) drops
    # frames at this load; a client then now and then loses a connection
    # (read error). Every connection must connect, and losses stay rare.
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errs = [int(x) for x in se.groups()] if se else [0, 0, 0, 0]
    assert errs[0] == 0, out
    assert sum(errs[1:]) <= CONNS // 100, out
    m = re.search(r"requests (\d+), non-2xx (\d+)", out)
    n, non2xx = int(m.group(1)), int(m.group(2))
    mid = r.metrics()
    assert n > CONNS and non2xx == 0, out

    # A connection whose handshake lost frames at the TAP completes only on
    # the client's retransmission, which may come after wrk's 6 s.
    def accepted():
        return r.metrics().value("otlp_net_events_total", event="tcp_accepted") - \
            m0.value("otlp_net_events_total", event="tcp_accepted")
    itlib.wait_for(lambda: accepted() >= CONNS - CONNS // 100, 15,
                   what="%d of %d connections accepted" % (CONNS - CONNS // 100, CONNS))
    # All closed: the table drains after TIME_WAIT, the mbufs come back.
    itlib.wait_for(lambda: r.metrics().value("otlp_tcp_connections") == 0, 20,
                   what="otlp_tcp_connections back to 0")
    itlib.wait_for(lambda: r.metrics().value("otlp_mbuf_in_use") <= m0.value("otlp_mbuf_in_use"),
                   10, what="otlp_mbuf_in_use back to %d" % m0.value("otlp_mbuf_in_use"))
    m1 = r.metrics()
    report("%d concurrent connections, 6 s: %d requests, 0 non-2xx, %d accepted, socket errors "
           "(connect/read/write/timeout) %s, RTO aborts %d; mbuf_in_use %d -> %d -> %d, "
           "connections %d after"
           % (CONNS, n, accepted(), errs, m1.value("otlp_net_events_total", event="tcp_rto_aborts"),
              m0.value("otlp_mbuf_in_use"), mid.value("otlp_mbuf_in_use"),
              m1.value("otlp_mbuf_in_use"), m1.value("otlp_tcp_connections")))
    assert m1.value("otlp_worker_connections") == 0
    assert r.stop() == 0
