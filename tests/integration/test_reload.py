# SPDX-License-Identifier: Apache-2.0
"""SIGHUP re-reads the config file: live keys (service.log_level,
memory_limiter.*, exporter.retry.*, receiver.auth.*) apply at once with one log line each,
secrets redacted; keys that need a restart are listed; a file that does not
validate is refused and the running config stays. docs/operations.md."""

import json
import os
import signal
import time

import itlib


def log_records(gw):
    out = []
    for line in gw.log_lines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def hup_and_wait(gw, pred, what):
    n = len(log_records(gw))
    os.kill(gw.proc.pid, signal.SIGHUP)
    return itlib.wait_for(lambda: [r for r in log_records(gw)[n:] if pred(r)] or None, 10,
                          what=what)


def refused_debug_lines(gw):
    return [r for r in log_records(gw) if r.get("level") == "debug" and r.get("status") == 415]


def test_log_level_change_takes_effect(gw):
    assert gw.post("traces", b"", {"Content-Type": "text/plain"}).status == 415
    time.sleep(0.2)
    assert not refused_debug_lines(gw), "debug line written at log_level info"
    gw.config["service"]["log_level"] = "debug"
    gw.write_config()
    recs = hup_and_wait(gw, lambda r: r.get("msg") == "config reloaded",
                        "a 'config reloaded' line")
    assert [(r["key"], r["old"], r["new"]) for r in recs] == \
        [("service.log_level", "\"info\"", "\"debug\"")], recs
    assert gw.post("traces", b"", {"Content-Type": "text/plain"}).status == 415
    itlib.wait_for(lambda: refused_debug_lines(gw), 5, what="a debug line after the reload")
    # Nothing needs a restart: no such line.
    assert not [r for r in log_records(gw) if "restart" in r.get("msg", "")]


def test_invalid_config_is_refused_and_service_keeps_serving(gw, upstream):
    good = open(gw.config_path).read()
    assert "log_level: \"info\"" in good
    with open(gw.config_path, "w") as f:
        f.write(good.replace("log_level: \"info\"", "log_level: loud"))
    recs = hup_and_wait(gw, lambda r: r.get("level") == "error" and "refused" in r.get("msg", ""),
                        "the refusal of the invalid config")
    assert "log_level" in recs[0].get("errors", ""), recs
    assert not [r for r in log_records(gw) if r.get("msg") == "config reloaded"]
    req = itlib.make_traces(4, "after-bad-reload")
    r = gw.send("traces", req)
    assert r.status == 200, r
    upstream.wait_items("traces", 4)
    assert itlib.http_request(gw.control_port, "GET", "/health/ready").status == 200
    # An unparsable file too.
    with open(gw.config_path, "w") as f:
        f.write("receiver: [unclosed\n")
    hup_and_wait(gw, lambda r: r.get("level") == "error" and "refused" in r.get("msg", ""),
                 "the refusal of the unparsable config")
    assert gw.running()
    assert gw.send("traces", itlib.make_traces(2, "after-bad-yaml")).status == 200


def test_restart_only_keys_reported_and_tokens_live(gw):
    gw.config["batch"]["max_queue_size"] = 16384
    gw.config["receiver"]["max_headers"] = 50
    gw.config.setdefault("receiver", {})["auth"] = {"bearer_tokens": "s3cr3t-token"}
    gw.write_config()
    recs = hup_and_wait(gw, lambda r: "need a restart" in r.get("msg", ""),
                        "the line listing restart-only keys")
    keys = recs[0]["keys"].split(",")
    assert "batch.max_queue_size" in keys and "receiver.max_headers" in keys, recs
    assert "receiver.auth.bearer_tokens" not in keys, recs
    lines = "\n".join(gw.log_lines())
    assert "s3cr3t-token" not in lines, "a bearer token was logged"
    changed = [r for r in log_records(gw) if r.get("msg") == "config reloaded"]
    assert [(r["key"], r["new"]) for r in changed] == \
        [("receiver.auth.bearer_tokens", "\"<redacted>\"")], changed
    # The token applies now, on both receivers' shared check path (HTTP here).
    req = itlib.make_traces(2, "auth")
    assert gw.send("traces", req).status == 401
    body, headers = itlib.encode_request(req, "proto", False)
    headers["Authorization"] = "Bearer s3cr3t-token"
    assert gw.post("traces", body, headers).status == 200
    # A second SIGHUP lists the restart-only keys again (they still differ).
    hup_and_wait(gw, lambda r: "need a restart" in r.get("msg", "")
                 and "batch.max_queue_size" in r.get("keys", ""),
                 "the restart-only keys listed again")
    m = gw.metrics()
    assert m.value("otlp_queue_capacity") == 8192, "a restart-only key was applied"


def test_retry_settings_apply_live(gw, upstream):
    """exporter.retry.* is live: a batch retrying against a 503 upstream is
    dropped (reason retry_disabled) at its next failure once retries are
    turned off by SIGHUP, and the running max_elapsed follows too."""
    upstream.mode(status=503)
    gw.send("traces", itlib.make_traces(3, "retry-live"))
    itlib.wait_for(lambda: gw.metrics().value("otlp_export_requests_total", result="retry") >= 2,
                   10, what="two retries against the 503 upstream")
    gw.config["exporter"]["retry"]["enabled"] = False
    gw.write_config()
    recs = hup_and_wait(gw, lambda r: r.get("msg") == "config reloaded",
                        "a 'config reloaded' line")
    assert [(r["key"], r["new"]) for r in recs] == [("exporter.retry.enabled", "false")], recs
    assert not [r for r in log_records(gw) if "need a restart" in r.get("msg", "")]
    itlib.wait_for(lambda: gw.metrics().value("otlp_spans_dropped_total",
                                              reason="retry_disabled") == 3,
                   10, what="the waiting batch dropped with reason retry_disabled")
    upstream.mode(status=200)
