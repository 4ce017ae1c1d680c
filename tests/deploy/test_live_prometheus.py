# SPDX-License-Identifier: Apache-2.0
"""A real Prometheus (Debian package) scrapes the built service every second
and loads deploy/prometheus/otlp-service-alerts.yml. Through its HTTP API:
the rules loaded and evaluate without error, every metric the rules and the
dashboard name has data (future ones excepted), every dashboard query and
alert expression runs, and nothing fires on a healthy service."""
import json
import time
import urllib.parse

import pytest

import deploylib as dl


def api(prom, path, **params):
    url = prom["base"] + path + ("?" + urllib.parse.urlencode(params) if params else "")
    body = json.loads(dl.http_get(url, timeout=10))
    assert body["status"] == "success", body
    return body["data"]


def query(prom, expr):
    return api(prom, "/api/v1/query", query=expr)


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last}")


@pytest.fixture(scope="module")
def warm(prometheus, service):
    """Wait until Prometheus has scraped the service a few times."""
    def enough():
        r = query(prometheus, 'count_over_time(up{job="otlp-service"}[1m])')
        return r["result"] and float(r["result"][0]["value"][1]) >= 4 and r
    wait_for(enough, 30, "4 scrapes of the service")
    # Traffic between scrapes, so that rates are non-zero.
    from conftest import SPAN_JSON
    for _ in range(5):
        dl.http_post(service["ingest"] + "/v1/traces", SPAN_JSON, "application/json")
    time.sleep(2.5)
    return prometheus


def test_target_up(warm):
    r = query(warm, 'up{job="otlp-service"}')["result"]
    assert len(r) == 1 and r[0]["value"][1] == "1"


def test_rules_loaded_and_healthy(warm):
    expected = {r.get("alert") or r.get("record") for r in dl.alert_rules()}

    def healthy():
        groups = api(warm, "/api/v1/rules")["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        ok = set(rules) == expected and all(r.get("health") == "ok" for r in rules.values())
        return ok and rules

    rules = wait_for(healthy, 15, "every rule loaded and evaluated (health ok)")
    assert not [n for n, r in rules.items() if r.get("lastError")]


def names_with_data(prom) -> set[str]:
    r = query(prom, 'count by (__name__) ({job="otlp-service"})')["result"]
    return {x["metric"]["__name__"] for x in r}


def test_metrics_the_rules_and_dashboard_use_have_data(warm):
    have = names_with_data(warm)
    recorded = {r["record"] for r in dl.alert_rules() if "record" in r}
    wanted = {}
    for r in dl.alert_rules():
        for n in dl.promql_metric_names(r["expr"]):
            wanted.setdefault(n, f"rule {r.get('alert') or r.get('record')}")
    for title, e in dl.dashboard_exprs():
        for n in dl.promql_metric_names(e):
            wanted.setdefault(n, f"panel {title!r}")
    missing = {n: w for n, w in wanted.items()
               if n not in have and n not in dl.FUTURE_METRICS and n not in recorded}
    assert not missing, f"no data in Prometheus for: {missing}"
    # And the future ones really are absent today (drop them from FUTURE_METRICS once exported).
    assert not (dl.FUTURE_METRICS & have), dl.FUTURE_METRICS & have
    # The recording rule produced its series.
    for n in recorded:
        assert query(warm, n)["result"], n


def test_every_dashboard_query_runs(warm):
    empty = []
    for title, e in dl.dashboard_exprs():
        r = query(warm, dl.grafana_vars_to_promql(e))
        names = dl.promql_metric_names(e)
        if not r["result"] and not names & dl.FUTURE_METRICS and "> 0" not in e:
            empty.append((title, e))
    assert not empty, f"queries without result on a live service: {empty}"


def test_every_alert_expression_runs(warm):
    for r in dl.alert_rules():
        query(warm, r["expr"])  # status success: parses and evaluates


def test_healthy_service_fires_nothing(warm):
    alerts = api(warm, "/api/v1/alerts")["alerts"]
    assert not [a for a in alerts if a["state"] == "firing"], alerts
    # Conditions, not just the `for:` delay: no alert expression has a result
    # on a healthy service, except the ones about absent future metrics.
    for r in dl.alert_rules():
        if "alert" in r and r["alert"] not in ("OtlpServiceAbsent",):
            assert not query(warm, r["expr"])["result"], r["alert"]
