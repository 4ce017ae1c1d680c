# SPDX-License-Identifier: Apache-2.0
"""Helpers for the deploy/ tests: paths, processes, PromQL metric names,
Fluent Bit classic config parsing, Kubernetes manifests."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEPLOY = ROOT / "deploy"

# Metrics the dashboard and the alerts name on purpose although this build does
# not export them yet (DPDK data plane, disk spool). Everything else they name
# must be in a real scrape.
FUTURE_METRICS = {
    "otlp_port_rx_missed_total",
    "otlp_lcore_busy_ratio",
    "otlp_hugepages_used_bytes",
    "otlp_spool_bytes",
}
# Series Prometheus makes itself, not the service.
SYNTHETIC_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


# --------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> bytes:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return r.read()
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s: {last}")


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def http_post(url: str, body: bytes, ctype: str, timeout: float = 5.0) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL: only the process (group) we started."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies, even by
    SIGKILL, so no server outlives the run."""
    try:
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def start_process(args: list[str], log: Path, **kw) -> subprocess.Popen:
    f = open(log, "wb")
    # Own process group, so stop_process() ends exactly what we started.
    return subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_die_with_parent, **kw)


def which(tool: str) -> str | None:
    return shutil.which(tool)


# --------------------------------------------------------------- PromQL
PROMQL_WORDS = {
    # aggregations, keywords, set operators, modifiers
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "by", "without", "on", "ignoring", "group_left",
    "group_right", "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects. Good for the expressions in
    this repository (selectors, functions, aggregations, binary operators)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # range selectors / subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        tok = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):  # function call
            continue
        if tok.lower() in PROMQL_WORDS:
            continue
        # duration/number suffixes (1e3, 5m) never start with a letter here
        names.add(tok)
    return names


def scrape_names(text: str) -> set[str]:
    """Sample names in a Prometheus text exposition."""
    out = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        out.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return out


def grafana_vars_to_promql(expr: str) -> str:
    """Replace the dashboard's template variables with values Prometheus
    accepts, so the expression can be run as is."""
    return (expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
            .replace("$__interval", "15s").replace("$job", ".*").replace("$instance", ".*"))


def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "otlp-service-dashboard.json").read_text())


def dashboard_exprs(d: dict | None = None) -> list[tuple[str, str]]:
    """(panel title, expr) of every query in the dashboard (rows included)."""
    d = d or dashboard()
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))

    walk(d.get("panels", []))
    return out


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "otlp-service-alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


# --------------------------------------------------------------- Fluent Bit
def parse_fluentbit(path: Path) -> list[tuple[str, list[tuple[str, str]], int]]:
    """Classic-format Fluent Bit config -> [(SECTION, [(key, value)], line)].
    Raises ValueError on what Fluent Bit itself rejects: entries outside a
    section, bad section headers, keys without values, mixed indentation."""
    sections = []
    cur = None
    indent = None
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("["):
            m = re.fullmatch(r"\[([A-Z_]+)\]", line)
            if not m:
                raise ValueError(f"{path.name}:{n}: bad section header {line!r}")
            cur = (m.group(1), [], n)
            sections.append(cur)
            continue
        if line.startswith("@"):
            continue  # @INCLUDE / @SET
        if cur is None:
            raise ValueError(f"{path.name}:{n}: entry outside a section")
        lead = line[: len(line) - len(line.lstrip())]
        if not lead:
            raise ValueError(f"{path.name}:{n}: entry not indented")
        if "\t" in lead and " " in lead:
            raise ValueError(f"{path.name}:{n}: mixed tabs and spaces")
        if indent is None:
            indent = lead
        elif lead != indent:
            raise ValueError(f"{path.name}:{n}: indentation differs from the first entry")
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            raise ValueError(f"{path.name}:{n}: key without value: {line.strip()!r}")
        cur[1].append((parts[0], parts[1]))
    return sections


def fluentbit_match(pattern: str, tag: str) -> bool:
    """Fluent Bit's Match: '*' matches any run of characters."""
    return re.fullmatch(".*".join(re.escape(p) for p in pattern.split("*")), tag) is not None


def onig_to_python(regex: str) -> str:
    """Fluent Bit (Onigmo) named groups (?<name>...) -> Python (?P<name>...)."""
    return re.sub(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", r"(?P<\1>", regex)


def strftime_to_python(fmt: str) -> str:
    """Fluent Bit's %L (fractional seconds) -> Python's %f."""
    return fmt.replace("%L", "%f")


# --------------------------------------------------------------- Kubernetes
def kubectl_with_kustomize() -> str | None:
    """kubectl whose built-in kustomize is v4 or later (the kustomizations use
    `labels:` and `patches:`); Debian 12's kubernetes-client (1.20) is older."""
    kubectl = which("kubectl")
    if kubectl is None:
        return None
    try:
        out = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True,
                             text=True, timeout=30).stdout
        ver = json.loads(out).get("kustomizeVersion", "")
    except (ValueError, subprocess.SubprocessError, OSError):
        return None
    m = re.match(r"v?(\d+)\.", ver)
    return kubectl if m and int(m.group(1)) >= 4 else None


def kustomize_build(path: Path) -> list[dict]:
    kubectl = kubectl_with_kustomize()
    if kubectl is None:
        raise FileNotFoundError("kubectl with kustomize >= v4")
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True,
                         timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]
