# SPDX-License-Identifier: Apache-2.0
"""spool.durability: spool in DPDK mode: a client in the namespace posts
unique spans over keep-alive connections into the userspace TCP stack while
the service is killed with SIGKILL three times and restarted on the same
data_dir (a new TAP each time, moved into the same namespace). Every span
that got a 200 reaches the upstream, checked by span id."""

import collections
import random
import subprocess
import time

from conftest import SERVICE_IP, DpdkRig, itlib, report

CLIENT = r"""
import http.client, sys, time
n, folder, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
conn, i = None, 0
with open(out, "a") as acked:
    while i < n:
        body = open("%s/req-%d.pb" % (folder, i), "rb").read()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(sys.argv[4], 4318, timeout=5)
            conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                acked.write("%d\n" % i)
                acked.flush()
        except (OSError, http.client.HTTPException):
            conn = None
            time.sleep(0.1)
        i += 1
        time.sleep(0.01)
"""


def test_kill9_in_dpdk_mode_loses_nothing_acknowledged(tmp_path, upstream, request):
    r = DpdkRig(tmp_path, upstream=upstream)
    r.gw.config["spool"] = {"durability": "spool", "fsync": "interval",
                            "fsync_interval_ms": 100, "wal_segment_ms": 200}
    request.addfinalizer(r.stop)
    r.start()
    n = 1500
    reqs = [itlib.make_traces(4, "dpdk-crash-%d" % i, n_resources=1) for i in range(n)]
    folder = tmp_path / "reqs"
    folder.mkdir()
    for i, q in enumerate(reqs):
        (folder / ("req-%d.pb" % i)).write_bytes(q.SerializeToString())
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    acked_file = tmp_path / "acked.txt"
    client = subprocess.Popen(["ip", "netns", "exec", r.ns, "/usr/bin/python3", str(script),
                               str(n), str(folder), str(acked_file), SERVICE_IP])
    rng = random.Random()
    try:
        for k in range(3):
            time.sleep(rng.uniform(1.0, 2.5))
            r.gw.proc.kill()
            r.gw.proc.wait(5)
            r.gw._log.close()
            report("dpdk crash %d: kill -9 after %d acknowledged requests"
                   % (k + 1, len(acked_file.read_text().split())))
            r.start()  # same config and data_dir; a new TAP into the same namespace
        client.wait(300)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    acked = [reqs[int(x)] for x in acked_file.read_text().split()]
    assert len(acked) > 200, len(acked)
    want = collections.Counter(itlib.otlp_pb.record_key(x) for q in acked
                               for x in itlib.records_of("traces", q))

    def arrived():
        got = set(itlib.otlp_pb.record_key(x) for x in upstream.records("traces"))
        return set(want) <= got
    itlib.wait_for(arrived, 90, interval=0.5, what="every acknowledged span at the upstream")
    got = collections.Counter(itlib.otlp_pb.record_key(x) for x in upstream.records("traces"))
    dups = sum(v - 1 for k, v in got.items() if v > 1 and k in want)
    report("dpdk kill -9 x3: %d requests (%d spans) acknowledged of %d sent, 0 missing, "
           "%d duplicates" % (len(acked), len(want), n, dups))
    assert r.metrics().value("otlp_wal_appends_total") > 0
