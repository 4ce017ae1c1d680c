# SPDX-License-Identifier: Apache-2.0
"""pytest fixtures for the Kafka exporter tests: librdkafka's mock cluster
(mock_cluster, built with the tests) standing in for Kafka, and otlp-service
started with exporter.protocol kafka. The helpers of tests/integration
(itlib: processes, curl, request builders, comparison) are reused."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import itlib  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    itlib.kill_all()


def mock_cluster_bin():
    b = os.environ.get("OTLP_KAFKA_MOCK")
    if not b:
        b = os.path.join(os.path.dirname(os.path.dirname(itlib.gateway_bin())), "tests", "kafka",
                         "mock_cluster")
    return os.path.abspath(b)


class MockCluster:
    """tests/kafka/mock_cluster as a child process; cmd() sends one command."""

    def __init__(self, workdir, topics):
        self.workdir = str(workdir)
        self.topics = dict(topics)
        self.proc = None
        self.bootstrap = None

    def start(self):
        args = [mock_cluster_bin(), "--brokers", "3"]
        for t, n in self.topics.items():
            args += ["--topic", "%s:%d" % (t, n)]
        log = open(os.path.join(self.workdir, "mock_cluster.log"), "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=log, text=True)
        itlib._register(self.proc)
        log.close()
        line = itlib._readline_timeout(self.proc.stdout, 15)
        if not line:
            raise RuntimeError("mock_cluster did not start")
        self.bootstrap = json.loads(line)["bootstrap"]
        return self

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = itlib._readline_timeout(self.proc.stdout, 10).strip()
        assert answer == "ok", "mock_cluster %r: %r" % (line, answer)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.stdin.close()  # the helper exits when stdin closes
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="session")
def kafka_ready(gateway_bin):
    if not os.access(mock_cluster_bin(), os.X_OK):
        pytest.skip("mock_cluster not built (needs librdkafka-dev): %s" % mock_cluster_bin())
    if not os.path.isdir(os.path.join(HERE, "node_modules", "kafkajs")):
        pytest.skip("tests/kafka/node_modules missing: run `npm ci` in it (run.sh does)")
    return True


@pytest.fixture(scope="session")
def gateway_bin():
    b = itlib.gateway_bin()
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.skip("otlp-service binary not found at %s (set OTLP_SERVICE_BIN)" % b)
    return b


@pytest.fixture
def cluster(tmp_path, kafka_ready):
    c = MockCluster(tmp_path, {"otlp_spans": 6, "otlp_metrics": 3, "otlp_logs": 3}).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def start_gateway(tmp_path, gateway_bin):
    """start_gateway(cluster, kafka={...}, **config overrides) -> itlib.Gateway."""
    started = []

    def start(cluster, kafka=None, wait_ready=True, **over):
        k = {"brokers": cluster.bootstrap, "statistics_interval_ms": 500}
        k.update(kafka or {})
        exp = {"protocol": "kafka", "file": None, "kafka": k}
        exp.update(over.pop("exporter", {}))
        cfg = itlib.base_config(tmp_path, None, exporter=exp, **over)
        gw = itlib.Gateway(tmp_path, cfg, name="gw%d" % len(started))
        started.append(gw)
        return gw.start(wait_ready=wait_ready)

    try:
        yield start
    finally:
        for gw in started:
            gw.stop(timeout=15)


@pytest.fixture(scope="session")
def js_ready():
    import shutil
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not itlib.js_available():
        pytest.skip("tests/integration/js/node_modules missing: run `npm ci` in it")
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of each gateway log to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        tmp = item.funcargs.get("tmp_path")
        if tmp is not None:
            for f in sorted(os.listdir(tmp)):
                if f.endswith(".stderr.log"):
                    gwlog = itlib.Gateway.__new__(itlib.Gateway)
                    gwlog.log_path = os.path.join(tmp, f)
                    rep.sections.append(("otlp-service log " + f, gwlog.log_tail(25)))
