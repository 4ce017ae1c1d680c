# SPDX-License-Identifier: Apache-2.0
"""The OpenTelemetry JavaScript SDK inside the namespace, through the kernel
and the TAP into the userspace TCP stack: traces, metrics and logs over
OTLP/HTTP (protobuf and JSON) and OTLP/gRPC. Whatever the SDK exported
arrives at the upstream exactly once and identical."""

import json
import os
import shutil

import pytest

from conftest import GRPC_PORT, SERVICE_IP, URL, itlib, report

JS_DIR = os.path.join(itlib.REPO_ROOT, "tests", "integration", "js")


@pytest.fixture(scope="module")
def js():
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not itlib.js_available():
        pytest.skip("tests/integration/js/node_modules missing: run `npm ci` in it")
    return True


@pytest.mark.parametrize("signal", ["traces", "metrics", "logs"])
@pytest.mark.parametrize("protocol,encoding", [("http", "proto"), ("http", "json"),
                                               ("grpc", "proto")])
def test_js_sdk_through_userspace_stack(js, rig, upstream, tmp_path, signal, protocol, encoding):
    n = 40
    out = tmp_path / ("summary-%s-%s-%s.json" % (signal, protocol, encoding))
    endpoint = URL if protocol == "http" else "http://%s:%d" % (SERVICE_IP, GRPC_PORT)
    p = rig.ns_run(["node", os.path.join(JS_DIR, "send.js"), "--endpoint", endpoint,
                    "--protocol", protocol, "--signal", signal, "--encoding", encoding,
                    "--count", str(n), "--out", str(out),
                    "--resource", "test.case=dpdk-%s-%s-%s" % (signal, protocol, encoding)],
                   timeout=120, cwd=JS_DIR)
    summary = json.loads(out.read_text()) if out.exists() else None
    assert p.returncode == 0, "send.js failed: %s %s" % (p.stderr.decode()[-2000:],
                                                         summary and summary.get("exports"))
    assert summary["exported_items"] == n
    assert not [d for d in summary["diag"] if d.startswith("error")], summary["diag"]
    upstream.wait_items(signal, n, timeout=30)
    itlib.assert_same_items(itlib.summary_records(summary), upstream.records(signal))
    report("JS SDK over the userspace stack: %s %s/%s, %d items exactly once"
           % (signal, protocol, encoding, n))
