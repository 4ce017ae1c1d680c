# SPDX-License-Identifier: Apache-2.0
"""pytest fixtures: the test upstream, otlp-service started from a per-test
config, and clean-up of every process even when a test fails."""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import itlib  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    itlib.kill_all()


@pytest.fixture(scope="session")
def gateway_bin():
    b = itlib.gateway_bin()
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.skip("otlp-service binary not found at %s (set OTLP_SERVICE_BIN)" % b)
    return b


@pytest.fixture(scope="session")
def js_ready():
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not itlib.js_available():
        pytest.skip("tests/integration/js/node_modules missing: run `npm ci` in it (run.sh does)")
    return True


@pytest.fixture
def upstream(tmp_path):
    u = itlib.Upstream(tmp_path).start()
    try:
        yield u
    finally:
        u.stop()


@pytest.fixture
def start_gateway(tmp_path, gateway_bin):
    """start_gateway(upstream=None, env=None, wait_ready=True, **config overrides) -> Gateway.
    Every gateway started here is stopped at the end of the test."""
    started = []

    def start(upstream=None, env=None, wait_ready=True, name=None, **over):
        cfg = itlib.base_config(tmp_path, upstream, **over)
        gw = itlib.Gateway(tmp_path, cfg, env=env, name=name or "gw%d" % len(started))
        started.append(gw)
        return gw.start(wait_ready=wait_ready)

    try:
        yield start
    finally:
        for gw in started:
            gw.stop(timeout=10)


@pytest.fixture
def gw(upstream, start_gateway):
    """A gateway exporting over OTLP/HTTP to a fresh upstream."""
    return start_gateway(upstream)


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
