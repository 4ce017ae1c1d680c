# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the DPDK suite: otlp-service in dataplane.mode dpdk on a
net_tap port, end to end. The service's TAP interface goes into a network namespace made by
scripts/dpdk-tap-rig.sh (198.18.0.1 there, the service is 198.18.0.2), and
real clients inside the namespace (ping, curl, wrk) talk to the userspace TCP
stack. The exporter writes to the test upstream (tests/integration/upstream.py)
on 127.0.0.1 through kernel sockets. Needs root; every namespace and process
is removed by finalizers even when a test fails."""

import os
import random
import re
import shutil
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import itlib  # noqa: E402

RIG = os.path.join(ROOT, "scripts", "dpdk-tap-rig.sh")
HUGEPAGES = os.path.join(ROOT, "scripts", "dpdk-hugepages.sh")
GEN = os.path.join(ROOT, "bench", "gen_request.py")
WRK_LUA = os.path.join(ROOT, "bench", "wrk_post.lua")
SERVICE_IP = "198.18.0.2"
URL = "http://%s:4318" % SERVICE_IP
RESULTS = os.environ.get("DPDK_TEST_RESULTS", os.path.join(ROOT, "build-dpdk",
                                                           "dpdk-test-results.txt"))



def report(line):
    """Figures go to stdout (pytest -s) and to RESULTS."""
    print(line)
    try:
        with open(RESULTS, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


class DpdkRig:
    """The service on net_tap plus its namespace. stop() is idempotent."""

    def __init__(self, tmp_path, upstream=None, hugepages=False, exporter=None, workers=1):
        self.tmp = tmp_path
        self.iface = "otlpt%05d" % random.randint(0, 99999)
        self.ns = "%s-%d" % (os.environ.get("OTLP_RIG_PREFIX", "otlp-rig-%d" % os.getpid()),
                              random.randint(0, 99999))
        mem = "-m 256" if hugepages else "--no-huge -m 512"
        eal = "%s --in-memory --no-pci --vdev=net_tap0,iface=%s" % (mem, self.iface)
        if not hugepages:
            eal = eal.replace(" --in-memory", "")  # --no-huge implies legacy mem
        over = {
            "dataplane": {"mode": "dpdk", "workers": workers,
                          "dpdk": {"eal_args": eal, "ip": SERVICE_IP,
                                   "time_wait_ms": 500, "max_conns_per_lcore": 1024}},
            "receiver": {"host": "0.0.0.0", "http_port": 4318},
        }
        cfg = itlib.base_config(tmp_path, upstream=upstream, **over)
        if exporter:
            cfg["exporter"] = itlib.deep_merge(cfg["exporter"], exporter)
            if exporter.get("protocol") == "discard":
                cfg["exporter"].pop("file", None)
        self.gw = itlib.Gateway(tmp_path, cfg, name="dpdk")
        self.rigged = False

    def start(self):
        self.gw.start(wait_ready=False)
        try:
            self.gw.wait_ready(30)
            out = subprocess.run([RIG, "setup", self.iface, self.ns, "--wait", "20"],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            self.rigged = True
            # The first exchange also resolves ARP both ways.
            itlib.wait_for(lambda: self.curl_status(["-X", "POST", "-H",
                                                     "Content-Type: application/json",
                                                     "--data", '{"resourceSpans":[]}',
                                                     URL + "/v1/traces"]) == 200,
                           20, interval=0.2, what="first request through the TAP")
        except BaseException:
            print(self.gw.log_tail(60))
            self.stop()
            raise
        return self

    def stop(self):
        code = None
        if self.gw.proc is not None and self.gw.running():
            code = self.gw.stop(20)
        if self.rigged or self.ns:
            subprocess.run([RIG, "teardown", self.ns], capture_output=True, timeout=30)
            self.rigged = False
        return code

    def ns_run(self, args, timeout=60, **kw):
        return subprocess.run(["ip", "netns", "exec", self.ns] + list(args),
                              capture_output=True, timeout=timeout, **kw)

    def curl_status(self, args, timeout=10):
        p = self.ns_run(["curl", "-sS", "--noproxy", "*", "--max-time", str(timeout), "-o",
                         "/dev/null", "-w", "%{http_code}"] + list(args), timeout=timeout + 5)
        try:
            return int(p.stdout.decode().strip() or 0)
        except ValueError:
            return 0

    def post(self, body, headers, name="req", timeout=20):
        """POST body with curl from inside the namespace; returns the status."""
        f = self.tmp / ("%s.body" % name)
        f.write_bytes(body)
        args = ["-X", "POST", "--data-binary", "@%s" % f, URL + "/v1/traces"]
        for k, v in headers.items():
            args += ["-H", "%s: %s" % (k, v)]
        return self.curl_status(args, timeout)

    def metrics(self):
        return self.gw.metrics()


@pytest.fixture(scope="module")
def mod_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("dpdk")


@pytest.fixture(scope="module")
def upstream(mod_tmp):
    u = itlib.Upstream(mod_tmp).start()
    yield u
    u.stop()


@pytest.fixture(scope="module")
def rig(mod_tmp, upstream, request):
    r = DpdkRig(mod_tmp, upstream=upstream)
    request.addfinalizer(r.stop)
    return r.start()


@pytest.fixture(autouse=True)
def _reset_upstream(request):
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").reset()




def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root (network namespaces, TAP)")
        for it in items:
            it.add_marker(skip)


def pytest_sessionfinish(session, exitstatus):
    itlib.kill_all()
