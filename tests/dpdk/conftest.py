# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the DPDK suite: otlp-service in dataplane.mode dpdk on a
net_tap port, end to end. The service's TAP interface goes into a network namespace made by
scripts/dpdk-tap-rig.sh (198.18.0.1 there, the service is 198.18.0.2), and
real clients inside the namespace (ping, curl, wrk; h2load and python3-grpcio
for OTLP/gRPC on 4317) talk to the userspace TCP stack. The exporter writes to the test upstream (tests/integration/upstream.py)
on 127.0.0.1 through kernel sockets. Needs root; every namespace and process
is removed by finalizers even when a test fails."""

import importlib.util
import json
import os
import random
import re
import shutil
import struct
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
GRPC_CLIENT = os.path.join(HERE, "grpc_client.py")
SERVICE_IP = "198.18.0.2"
URL = "http://%s:4318" % SERVICE_IP
GRPC_PORT = 4317
GRPC_TARGET = "%s:%d" % (SERVICE_IP, GRPC_PORT)
GRPC_EXPORT_URL = ("http://%s/opentelemetry.proto.collector.trace.v1.TraceService/Export"
                   % GRPC_TARGET)
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

    def __init__(self, tmp_path, upstream=None, hugepages=False, exporter=None, workers=1,
                 grpc=True, batch=None, receiver=None, tls_args=None):
        self.tmp = tmp_path
        # receiver.tls: curl's TLS arguments for the first request (https)
        self.tls_args = [str(a) for a in tls_args] if tls_args else None
        self.url = URL.replace("http://", "https://") if tls_args else URL
        self.iface = "otlpt%05d" % random.randint(0, 99999)
        self.ns = "%s-%d" % (os.environ.get("OTLP_RIG_PREFIX", "otlp-rig-%d" % os.getpid()),
                              random.randint(0, 99999))
        mem = "-m 768" if hugepages else "--no-huge -m 1024"
        eal = "%s --in-memory --no-pci --vdev=net_tap0,iface=%s" % (mem, self.iface)
        if not hugepages:
            eal = eal.replace(" --in-memory", "")  # --no-huge implies legacy mem
        over = {
            "dataplane": {"mode": "dpdk", "workers": workers,
                          "dpdk": {"eal_args": eal, "ip": SERVICE_IP,
                                   "time_wait_ms": 500, "max_conns_per_lcore": 1024}},
            "receiver": {"host": "0.0.0.0", "http_port": 4318,
                         "grpc_port": GRPC_PORT if grpc else 0},
        }
        if batch:
            over["batch"] = batch
        if receiver:
            over["receiver"].update(receiver)
        cfg = itlib.base_config(tmp_path, upstream=upstream, **over)
        if upstream is not None:
            # The test upstream is one Python process, slow on a loaded VM;
            # with the default 3 s a timed-out export is retried although the
            # upstream took it, and shows up there as duplicates.
            cfg["exporter"]["timeout_ms"] = 20000
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
            ca = self.tls_args or []
            itlib.wait_for(lambda: self.curl_status(ca + ["-X", "POST", "-H",
                                                          "Content-Type: application/json",
                                                          "--data", '{"resourceSpans":[]}',
                                                          self.url + "/v1/traces"]) == 200,
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

    def post_traces_exactly_once(self, upstream, req, name="req"):
        """POST one traces request (an itlib.make_traces() message) as
        protobuf; it must get 200 and arrive at the upstream exactly once."""
        body, headers = itlib.encode_request(req, "proto", False)
        assert self.post(body, headers, name=name) == 200
        expected = itlib.records_of("traces", req)
        upstream.wait_items("traces", len(expected))
        time.sleep(0.3)
        itlib.assert_same_items(expected, upstream.records("traces"))

    def grpc_export(self, files, use_gzip=False, retry=0.0, timeout=120):
        """Send each file (a serialized ExportTraceServiceRequest) with
        grpc_client.py (python3-grpcio) from inside the namespace, all
        concurrently over one channel. Returns (exit code, result dict).
        Skips the test without python3-grpcio."""
        if importlib.util.find_spec("grpc") is None:
            pytest.skip("python3-grpcio not installed")
        args = ["/usr/bin/python3", GRPC_CLIENT, "--target", GRPC_TARGET, "--retry", str(retry)]
        if use_gzip:
            args.append("--gzip")
        p = self.ns_run(args + [str(f) for f in files], timeout=timeout)
        out = p.stdout.decode()
        try:
            res = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError("grpc_client.py: %s %s" % (out, p.stderr.decode()))
        return p.returncode, res

    def h2load(self, body_file, n, conns, streams, timeout=180):
        """h2load (nghttp2-client) from inside the namespace: n gRPC Export
        calls with body_file (already gRPC-framed) over `conns` connections
        with `streams` concurrent streams each. Returns the parsed summary."""
        p = self.ns_run(["h2load", "-n", str(n), "-c", str(conns), "-m", str(streams), "-d",
                         str(body_file), "-H", "content-type: application/grpc", "-H",
                         "te: trailers", GRPC_EXPORT_URL], timeout=timeout)
        out = p.stdout.decode()
        assert p.returncode == 0, out + p.stderr.decode()
        res = {"out": out}
        m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
        res["seconds"] = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        res["rps"] = float(m.group(3))
        m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored", out)
        res.update(total=int(m.group(1)), done=int(m.group(2)), succeeded=int(m.group(3)),
                   failed=int(m.group(4)), errored=int(m.group(5)))
        m = re.search(r"status codes: (\d+) 2xx", out)
        res["2xx"] = int(m.group(1))
        m = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", out)
        res["mean_latency"] = m.group(1) if m else "?"
        return res


def grpc_framed(data):
    """One gRPC length-prefixed message: flag 0 (not compressed), length."""
    return b"\0" + struct.pack(">I", len(data)) + data


def gen_request(tmp, spans, grpc=False):
    """bench/gen_request.py --spans N; with grpc the 5-byte message prefix."""
    raw = tmp / ("gen-%d.pb" % spans)
    subprocess.run(["/usr/bin/python3", GEN, "--spans", str(spans), "--out", str(raw)],
                   check=True, capture_output=True)
    if not grpc:
        return raw
    framed = tmp / ("gen-%d.grpc" % spans)
    framed.write_bytes(grpc_framed(raw.read_bytes()))
    return framed


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
