# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the deploy/ tests: the built service on free loopback ports
and a real Prometheus scraping it. Every process started here is stopped at
the end of the session, also when a test fails or the run is interrupted."""
from __future__ import annotations

import atexit
import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

import deploylib as dl

_started: list[subprocess.Popen] = []


def _cleanup() -> None:
    for p in reversed(_started):
        dl.stop_process(p, timeout=5)


atexit.register(_cleanup)


_counts: dict[str, int] = {}


def pytest_terminal_summary(terminalreporter):
    st = terminalreporter.stats
    _counts["passed"] = len(st.get("passed", []))
    _counts["failed"] = len(st.get("failed", [])) + len(st.get("error", []))
    _counts["skipped"] = len(st.get("skipped", []))


def pytest_unconfigure(config):
    """The closing line, after pytest's own summary."""
    if _counts:
        print(f"deploy: {_counts['passed']} passed, {_counts['failed']} failed, "
              f"{_counts['skipped']} skipped", flush=True)


@pytest.fixture(scope="session")
def service_bin() -> Path:
    b = os.environ.get("OTLP_SERVICE_BIN")
    if not b:
        pytest.fail("OTLP_SERVICE_BIN is not set (tests/deploy/run.sh sets it)")
    p = Path(b).resolve()
    assert p.is_file() and os.access(p, os.X_OK), f"not an executable: {p}"
    return p


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deploy")


SPAN_JSON = json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": [{
    "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708",
    "name": "deploy-test", "kind": 1, "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]}).encode()
METRIC_JSON = json.dumps({"resourceMetrics": [{"resource": {}, "scopeMetrics": [{"metrics": [{
    "name": "deploy.test", "gauge": {"dataPoints": [{"asInt": "1", "timeUnixNano": "1"}]}}]}]}]}).encode()
LOG_JSON = json.dumps({"resourceLogs": [{"resource": {}, "scopeLogs": [{"logRecords": [{
    "timeUnixNano": "1", "body": {"stringValue": "deploy test"}}]}]}]}).encode()


@pytest.fixture(scope="session")
def service(service_bin, workdir):
    """The service on free loopback ports, file exporter in a temp dir, with a
    little traffic of every signal sent so that every series has moved."""
    http_port, ctl_port = dl.free_port(), dl.free_port()
    cfg = workdir / "service.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        service:
          data_dir: "{workdir / 'data'}"
          shutdown_timeout_ms: 2000
        receiver:
          host: "127.0.0.1"
          http_port: {http_port}
          grpc_port: 0
        dataplane:
          workers: 2
        batch:
          batch_timeout_ms: 50
        control:
          host: "127.0.0.1"
          port: {ctl_port}
        """))
    log = workdir / "service.log"
    proc = dl.start_process([str(service_bin), "--config", str(cfg)], log)
    _started.append(proc)
    base = f"http://127.0.0.1:{ctl_port}"
    try:
        dl.wait_http(base + "/health/ready", timeout=15, proc=proc)
        ingest = f"http://127.0.0.1:{http_port}"
        for path, body in (("/v1/traces", SPAN_JSON), ("/v1/metrics", METRIC_JSON),
                           ("/v1/logs", LOG_JSON)):
            for _ in range(3):
                assert dl.http_post(ingest + path, body, "application/json") == 200
        assert dl.http_post(ingest + "/v1/traces", b"{not json", "application/json") == 400
        assert dl.http_post(ingest + "/nowhere", b"", "application/json") == 404
    except BaseException:
        dl.stop_process(proc)
        raise
    info = {"proc": proc, "http_port": http_port, "ctl_port": ctl_port, "base": base,
            "ingest": f"http://127.0.0.1:{http_port}", "config": cfg, "log": log}
    yield info
    dl.stop_process(proc)


@pytest.fixture(scope="session")
def scrape(service) -> str:
    time.sleep(0.3)  # let the 50 ms batches be exported
    return dl.http_get(service["base"] + "/metrics").decode()


@pytest.fixture(scope="session")
def prometheus(service, workdir):
    """A real Prometheus (Debian package) on loopback, scraping the service
    every second as job "otlp-service" and evaluating the alert rules."""
    prom = dl.which("prometheus")
    if prom is None:
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    port = dl.free_port()
    rules = dl.DEPLOY / "prometheus" / "otlp-service-alerts.yml"
    cfg = workdir / "prometheus.yml"
    cfg.write_text(textwrap.dedent(f"""\
        global:
          scrape_interval: 1s
          evaluation_interval: 1s
        rule_files:
          - {rules}
        scrape_configs:
          - job_name: otlp-service
            static_configs:
              - targets: ["127.0.0.1:{service['ctl_port']}"]
        """))
    data = workdir / "prometheus-data"
    proc = dl.start_process([prom, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                             f"--web.listen-address=127.0.0.1:{port}",
                             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                            workdir / "prometheus.log")
    _started.append(proc)
    base = f"http://127.0.0.1:{port}"
    try:
        dl.wait_http(base + "/-/ready", timeout=30, proc=proc)
    except BaseException:
        dl.stop_process(proc)
        raise
    yield {"base": base, "proc": proc, "log": workdir / "prometheus.log"}
    dl.stop_process(proc)
