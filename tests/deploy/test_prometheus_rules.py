# SPDX-License-Identifier: Apache-2.0
"""deploy/prometheus: promtool check rules and promtool test rules; every
alert has severity, summary, description and a runbook_url whose anchor
exists in the operations docs; the rules name only metrics the service
exports (or declared future ones)."""
import re
import subprocess

import pytest

import deploylib as dl

PROM = dl.DEPLOY / "prometheus"
needs_promtool = pytest.mark.skipif(dl.which("promtool") is None,
                                    reason="promtool not installed (apt-get install prometheus)")


@needs_promtool
def test_promtool_check_rules():
    r = subprocess.run(["promtool", "check", "rules", str(PROM / "otlp-service-alerts.yml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@needs_promtool
def test_promtool_test_rules():
    r = subprocess.run(["promtool", "test", "rules", "otlp-service-alerts.test.yml"],
                       capture_output=True, text=True, cwd=PROM)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@needs_promtool
def test_promtool_tests_are_live(tmp_path):
    """The unit tests fail when the drop-rate alert is broken (threshold
    raised so it can never fire)."""
    rules = (PROM / "otlp-service-alerts.yml").read_text()
    broken = rules.replace('(rate(otlp_spans_dropped_total{job=~"otlp-service.*"}[5m])) > 0',
                           '(rate(otlp_spans_dropped_total{job=~"otlp-service.*"}[5m])) > 1e9')
    assert broken != rules
    (tmp_path / "otlp-service-alerts.yml").write_text(broken)
    (tmp_path / "t.yml").write_text((PROM / "otlp-service-alerts.test.yml").read_text())
    r = subprocess.run(["promtool", "test", "rules", "t.yml"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode != 0 and "OtlpSpansDropped" in r.stdout + r.stderr


REQUIRED = {"OtlpHighErrorRate", "OtlpHighLatency", "OtlpSpansDropped", "OtlpMemoryNearLimit",
            "OtlpServiceRestarting", "OtlpQueueSaturated", "OtlpSpoolGrowing",
            "OtlpUpstreamFailing", "OtlpUpstreamRetrying", "OtlpPortRxMissed", "OtlpServiceDown",
            "OtlpServiceAbsent"}


def doc_anchors() -> set[str]:
    """GitHub-style anchors of the headings in the operations docs."""
    anchors = set()
    for name in ("operations.md", "deployment.md"):
        p = dl.ROOT / "docs" / name
        if not p.exists():
            continue
        for line in p.read_text().splitlines():
            m = re.match(r"#{1,6}\s+(.*)", line)
            if m:
                a = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
                anchors.add(a)
            for m in re.finditer(r'<a (?:id|name)="([^"]+)"', line):
                anchors.add(m.group(1))
    return anchors


def test_alert_metadata():
    alerts = [r for r in dl.alert_rules() if "alert" in r]
    assert REQUIRED <= {a["alert"] for a in alerts}
    anchors = doc_anchors()
    for a in alerts:
        assert a["labels"]["severity"] in ("critical", "warning", "info"), a["alert"]
        ann = a["annotations"]
        assert ann.get("summary") and ann.get("description"), a["alert"]
        url = ann["runbook_url"]
        assert url.startswith("docs/operations.md#"), url
        assert url.split("#", 1)[1] in anchors, f"{a['alert']}: no heading for {url} in docs"


def test_rules_name_known_metrics(scrape):
    exported = dl.scrape_names(scrape)
    recorded = {r["record"] for r in dl.alert_rules() if "record" in r}
    for r in dl.alert_rules():
        for n in dl.promql_metric_names(r["expr"]):
            if n in recorded or n in dl.SYNTHETIC_METRICS or n in dl.FUTURE_METRICS:
                continue
            assert n in exported, f"{r.get('alert') or r.get('record')}: {n} not in /metrics"
