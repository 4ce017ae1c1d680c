# SPDX-License-Identifier: Apache-2.0
"""The command line: --version, validate, health-check, environment overrides
and ${VAR} expansion, and the JSON log lines on stderr."""

import json
import os
import re
import socket
import subprocess

import pytest

import itlib


def run(args, env=None, timeout=15):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([itlib.gateway_bin()] + list(args), capture_output=True, text=True,
                          env=e, timeout=timeout)


def project_version():
    with open(os.path.join(itlib.REPO_ROOT, "meson.build")) as f:
        return re.search(r"version:\s*'([^']+)'", f.read()).group(1)


def test_version(gateway_bin):
    p = run(["--version"])
    assert p.returncode == 0, p.stderr
    assert project_version() in p.stdout, p.stdout


def test_validate_good_config(gateway_bin, tmp_path, upstream):
    cfg = itlib.base_config(tmp_path, upstream, resources={"attributes": {"a.b": "c"}},
                            exporter={"headers": {"X-Api-Key": "k"}})
    path = tmp_path / "good.yaml"
    path.write_text(itlib.yaml_dump(cfg) + "\n")
    p = run(["validate", "--config", str(path)])
    assert p.returncode == 0, p.stderr


BROKEN = """\
service:
  name: "broken"
receiver:
  host: "127.0.0.1"
  http_port: 4318
  max_headres: 10
batch:
  max_queue_size: "lots"
exporter:
  protocol: otlp_http
  endpoint: "ftp://x"
"""


def test_validate_broken_config_names_lines(gateway_bin, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    p = run(["validate", "--config", str(path)])
    assert p.returncode != 0
    err = p.stderr + p.stdout
    for line, key in ((6, "max_headres"), (8, "max_queue_size"), (11, "endpoint")):
        assert re.search(r"%s:%d\b.*%s" % (re.escape(str(path)), line, key), err), \
            "no '%s:%d: ...%s' in validate output:\n%s" % (path, line, key, err)


def test_validate_missing_file(gateway_bin, tmp_path):
    p = run(["validate", "--config", str(tmp_path / "nope.yaml")])
    assert p.returncode != 0
    assert "nope.yaml" in p.stderr


def test_run_refuses_broken_config(gateway_bin, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    p = run(["--config", str(path)])
    assert p.returncode != 0
    assert "max_headres" in p.stderr


def test_health_check_exit_codes(start_gateway):
    gw = start_gateway()
    p = run(["health-check", "--config", gw.config_path])
    assert p.returncode == 0, p.stderr
    gw.stop()
    p = run(["health-check", "--config", gw.config_path])
    assert p.returncode != 0


def test_health_check_default_port_8080(gateway_bin):
    with socket.socket() as s:
        if s.connect_ex((itlib.LOOPBACK, 8080)) == 0:
            pytest.skip("something listens on 8080 here")
    p = run(["health-check"])
    assert p.returncode != 0


def test_env_override_exporter_endpoint(upstream, start_gateway, tmp_path):
    dead = "http://%s:%d" % (itlib.LOOPBACK, itlib.free_port())
    gw = start_gateway(upstream, exporter={"endpoint": dead},
                       env={"OTLP__EXPORTER__ENDPOINT": upstream.url})
    req = itlib.make_traces(4, "envov")
    assert gw.send("traces", req).status == 200
    upstream.wait_items("traces", 4)
    itlib.assert_same_items(itlib.records_of("traces", req), upstream.records("traces"))


def test_env_var_expansion_in_config(upstream, start_gateway):
    gw = start_gateway(upstream, exporter={"endpoint": "${IT_UPSTREAM_URL}",
                                           "headers": {"X-It-Token": "${IT_TOKEN}"}},
                       env={"IT_UPSTREAM_URL": upstream.url, "IT_TOKEN": "s3cret"})
    assert gw.send("logs", itlib.make_logs(2, "expand")).status == 200
    upstream.wait_items("logs", 2)
    hdrs = upstream.requests()[0]["headers"]
    assert hdrs.get("x-it-token") == "s3cret", hdrs


def test_exporter_headers_and_compression(upstream, start_gateway):
    gw = start_gateway(upstream, exporter={"compression": "gzip",
                                           "headers": {"X-Api-Key": "abc123"}})
    assert gw.send("metrics", itlib.make_metrics(3, "hdr"), "json").status == 200
    upstream.wait_items("metrics", 3)
    r = upstream.requests()[0]
    assert r["content_type"].startswith("application/x-protobuf"), r
    assert r["content_encoding"] == "gzip", r
    assert r["headers"].get("x-api-key") == "abc123", r["headers"]
    assert r["path"] == "/v1/metrics"


def test_exporter_no_compression(upstream, start_gateway):
    gw = start_gateway(upstream, exporter={"compression": "none"})
    assert gw.send("traces", itlib.make_traces(2, "nocomp")).status == 200
    upstream.wait_items("traces", 2)
    assert upstream.requests()[0]["content_encoding"] in ("", "identity")


def test_logs_are_json_lines(start_gateway):
    gw = start_gateway(service={"log_level": "debug"})
    gw.send("traces", itlib.make_traces(1, "log"))
    gw.stop()
    lines = [ln for ln in gw.log_lines() if ln.strip()]
    assert lines, "no log output on stderr"
    for ln in lines:
        try:
            obj = json.loads(ln)
        except ValueError:
            raise AssertionError("stderr line is not JSON: %r" % ln)
        for k in ("level", "time"):
            assert k in obj, "log line without %r: %r" % (k, ln)
        assert "msg" in obj or "message" in obj, "log line without a message: %r" % ln
