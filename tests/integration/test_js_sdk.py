# SPDX-License-Identifier: Apache-2.0
"""OpenTelemetry JavaScript SDK -> otlp-service -> test upstream, for every
signal and exporter flavour: what the SDK exported arrives exactly once and
identical (ids, names, attributes, values, timestamps)."""

import pytest

import itlib


@pytest.mark.parametrize("signal", ["traces", "metrics", "logs"])
@pytest.mark.parametrize("encoding,use_gzip", [("proto", False), ("json", False),
                                                ("proto", True), ("json", True)],
                         ids=["proto", "json", "proto-gzip", "json-gzip"])
def test_js_sdk_through_gateway(js_ready, gw, upstream, tmp_path, signal, encoding, use_gzip):
    n = 60
    out = str(tmp_path / "summary.json")
    args = ["--endpoint", "http://%s:%d" % (itlib.LOOPBACK, gw.http_port), "--signal", signal,
            "--encoding", encoding, "--count", str(n), "--out", out,
            "--resource", "test.case=%s-%s-%s" % (signal, encoding, use_gzip)]
    if use_gzip:
        args.append("--gzip")
    p, summary = itlib.run_js(args)
    assert p.returncode == 0, "send.js failed: %s %s" % (p.stderr.decode()[-2000:],
                                                         summary and summary.get("exports"))
    assert summary["exported_items"] == n
    assert not [d for d in summary["diag"] if d.startswith("error")], summary["diag"]
    # A partial_success answer would show up as a diag warning.
    assert not [d for d in summary["diag"] if "partial" in d.lower()], summary["diag"]
    upstream.wait_items(signal, n)
    itlib.assert_same_items(itlib.summary_records(summary), upstream.records(signal))
    # The short item list agrees too (belt and braces on ids and names).
    recs = upstream.records(signal)
    if signal == "traces":
        assert sorted((i["spanId"], i["name"]) for i in summary["items"]) == \
            sorted((r["item"]["spanId"], r["item"]["name"]) for r in recs)
    m = gw.metrics()
    item = {"traces": "spans", "metrics": "metric_points", "logs": "log_records"}[signal]
    assert m.value("otlp_%s_accepted_total" % item) == n
