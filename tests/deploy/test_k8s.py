# SPDX-License-Identifier: Apache-2.0
"""deploy/k8s: the kustomizations build (kubectl kustomize); every object
validates against the Kubernetes OpenAPI schemas (kubernetes-models, npm) and
the Prometheus Operator CRD schema; no object has a field the Kubernetes API
does not know (python3-kubernetes models); and the objects agree with each
other and with the service (selectors, ports, probe paths, config, env
overrides, QoS, security)."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import deploylib as dl

K8S = dl.DEPLOY / "k8s"
OVERLAYS = ["socket", "dpdk"]
NODE_VALIDATOR = dl.HERE / "k8s_validate.mjs"


def _fallback_build(path: Path) -> list[dict]:
    """Without kubectl: the resources a kustomization lists, with its
    namespace, and no patches (enough for the cross-checks)."""
    k = yaml.safe_load((path / "kustomization.yaml").read_text())
    docs = []
    for r in k.get("resources", []):
        p = (path / r).resolve()
        docs += _fallback_build(p) if p.is_dir() else dl.load_yaml_docs(p)
    for g in k.get("configMapGenerator", []):
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": g["name"]},
                     "data": {Path(f).name: (path / f).read_text() for f in g.get("files", [])}})
    if k.get("namespace"):
        for d in docs:
            if d["kind"] != "Namespace":
                d["metadata"]["namespace"] = k["namespace"]
    return docs


_cache: dict[str, list[dict]] = {}
_fallback: set[str] = set()


def rendered(name: str) -> list[dict]:
    if name not in _cache:
        path = K8S / ("base" if name == "base" else f"overlays/{name}")
        try:
            _cache[name] = dl.kustomize_build(path)
        except FileNotFoundError:
            _cache[name] = _fallback_build(path)
            _fallback.add(name)
    return _cache[name]


def needs_patches(name: str) -> None:
    """The DPDK overlay patches the Namespace and the Services: without a
    kustomize build, checks that depend on that are skipped."""
    rendered(name)
    if name == "dpdk" and name in _fallback:
        pytest.skip("no kustomize build: the dpdk overlay's patches are not applied")


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def workloads(docs):
    return [d for d in docs if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]


def selects(selector: dict, labels: dict) -> bool:
    ml = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
    if any(labels.get(k) != v for k, v in ml.items()):
        return False
    for e in selector.get("matchExpressions", []):
        if e["operator"] == "DoesNotExist" and e["key"] in labels:
            return False
        if e["operator"] == "Exists" and e["key"] not in labels:
            return False
        if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
            return False
        if e["operator"] == "NotIn" and labels.get(e["key"]) in e["values"]:
            return False
    return True


# ------------------------------------------------------------------ build
@pytest.mark.parametrize("name", ["base"] + OVERLAYS)
def test_kustomize_build(name):
    if dl.kubectl_with_kustomize() is None:
        pytest.skip("no kubectl with kustomize >= v4: kustomizations not built "
                    "(the other checks use the raw files without patches)")
    docs = rendered(name)
    assert docs
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace"), f"{d['kind']}/{d['metadata']['name']}: no namespace"
        assert d["metadata"]["labels"].get("app.kubernetes.io/part-of") == "otlp-service"


def test_overlay_contents():
    s = {(d["kind"], d["metadata"]["name"]) for d in rendered("socket")}
    for want in [("Deployment", "otlp-service"), ("HorizontalPodAutoscaler", "otlp-service"),
                 ("Service", "otlp-service"), ("Service", "otlp-service-headless"),
                 ("ConfigMap", "otlp-service-config"), ("NetworkPolicy", "otlp-service"),
                 ("PodDisruptionBudget", "otlp-service"), ("ServiceAccount", "otlp-service"),
                 ("ServiceMonitor", "otlp-service"), ("Namespace", "otlp-gateway")]:
        assert want in s, want
    d = {(d["kind"], d["metadata"]["name"]) for d in rendered("dpdk")}
    assert ("DaemonSet", "otlp-service-dpdk") in d
    assert ("NetworkAttachmentDefinition", "otlp-sriov") in d


# ------------------------------------------------------------------ schemas
def _node_validate(tmp_path, docs) -> list[dict]:
    if not (dl.HERE / "node_modules" / "kubernetes-models").exists() or dl.which("node") is None:
        pytest.skip("kubernetes-models not installed (run.sh runs npm ci in tests/deploy)")
    f = tmp_path / "docs.yaml"
    f.write_text(yaml.safe_dump_all(docs))
    r = subprocess.run(["node", str(NODE_VALIDATOR), str(f)], capture_output=True, text=True,
                       cwd=dl.HERE, timeout=120)
    if r.returncode not in (0, 1) or not r.stdout.strip():
        raise AssertionError(f"validator crashed: {r.stderr}")
    return [json.loads(l) for l in r.stdout.splitlines()]


@pytest.mark.parametrize("name", OVERLAYS)
def test_openapi_schema(tmp_path, name):
    results = _node_validate(tmp_path, rendered(name))
    bad = [f"{x['kind']}/{x['name']}: {x['errors']}" for x in results if x["status"] == "invalid"]
    assert not bad, "\n".join(bad)
    unchecked = {x["kind"] for x in results if x["status"] == "no-schema"}
    assert unchecked <= {"NetworkAttachmentDefinition"}, unchecked


def test_openapi_schema_is_live(tmp_path):
    dep = json.loads(json.dumps(by_kind(rendered("socket"), "Deployment")[0]))
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["ports"][0]["containerPort"] = "4317"
    c["resources"]["limits"]["memory"] = "2 GiB"
    del dep["spec"]["selector"]
    results = _node_validate(tmp_path, [dep])
    errs = " ".join(results[0]["errors"])
    assert results[0]["status"] == "invalid"
    assert "containerPort" in errs and "memory" in errs and "selector" in errs, errs


# Unknown-field check against the API models of python3-kubernetes (API 1.22).
# autoscaling/v2 has the same fields as v2beta2 there.
MODEL = {
    ("v1", "Namespace"): "V1Namespace", ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "ConfigMap"): "V1ConfigMap", ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment", ("apps/v1", "DaemonSet"): "V1DaemonSet",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2beta2HorizontalPodAutoscaler",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
}


def unknown_fields(data, type_name: str, path: str, models) -> list[str]:
    if type_name in ("str", "int", "bool", "float", "object", "datetime", "date"):
        return []
    m = re.fullmatch(r"list\[(.+)\]", type_name)
    if m:
        if not isinstance(data, list):
            return [f"{path}: expected a list"]
        return [e for i, x in enumerate(data) for e in unknown_fields(x, m.group(1), f"{path}[{i}]", models)]
    m = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if m:
        return [e for k, x in data.items() for e in unknown_fields(x, m.group(1), f"{path}.{k}", models)]
    cls = getattr(models, type_name)
    if not isinstance(data, dict):
        return [f"{path}: expected an object"]
    json_to_attr = {v: k for k, v in cls.attribute_map.items()}
    out = []
    for k, v in data.items():
        if k not in json_to_attr:
            out.append(f"{path}.{k}: unknown field for {type_name}")
        else:
            out += unknown_fields(v, cls.openapi_types[json_to_attr[k]], f"{path}.{k}", models)
    return out


@pytest.mark.parametrize("name", OVERLAYS)
def test_no_unknown_fields(name):
    try:
        from kubernetes.client import models
    except ImportError:
        pytest.skip("python3-kubernetes not installed")
    errs = []
    for d in rendered(name):
        t = MODEL.get((d["apiVersion"], d["kind"]))
        if t:
            errs += unknown_fields(d, t, f"{d['kind']}/{d['metadata']['name']}", models)
    assert not errs, "\n".join(errs)


def test_unknown_field_check_is_live():
    try:
        from kubernetes.client import models
    except ImportError:
        pytest.skip("python3-kubernetes not installed")
    dep = json.loads(json.dumps(by_kind(rendered("socket"), "Deployment")[0]))
    dep["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    errs = unknown_fields(dep, "V1Deployment", "d", models)
    assert any("readinesProbe" in e for e in errs)


# ------------------------------------------------------------------ cross-checks
def container(w):
    cs = w["spec"]["template"]["spec"]["containers"]
    return [c for c in cs if c["name"] == "otlp-service"][0]


@pytest.mark.parametrize("name", OVERLAYS)
def test_probes_match_control_port(name):
    for w in workloads(rendered(name)):
        c = container(w)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports.get("control") == 8080
        for probe, path in (("startupProbe", "/health/startup"), ("livenessProbe", "/health/live"),
                            ("readinessProbe", "/health/ready")):
            h = c[probe]["httpGet"]
            assert h["path"] == path, (probe, h)
            port = ports.get(h["port"], h["port"])
            assert port == 8080, (probe, h)
        ann = w["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true"
        assert int(ann["prometheus.io/port"]) == 8080 and ann["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", OVERLAYS)
def test_services_reach_pods(name):
    needs_patches(name)
    docs = rendered(name)
    ws = workloads(docs)
    svcs = by_kind(docs, "Service")
    assert len(svcs) == 2 and any(s["spec"].get("clusterIP") == "None" for s in svcs)
    for s in svcs:
        pods = [w for w in ws if selects(s["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])]
        assert pods, f"Service {s['metadata']['name']} selects no pods"
        for w in pods:
            names = {p["name"]: p["containerPort"] for p in container(w)["ports"]}
            for p in s["spec"]["ports"]:
                tp = p["targetPort"]
                assert tp in names or tp in names.values(), \
                    f"Service {s['metadata']['name']} port {p['name']}: no container port {tp}"
                assert names.get(tp, tp) == p["port"]
    if name == "socket":
        ports = {p["port"] for p in svcs[0]["spec"]["ports"]}
        assert ports == {4317, 4318, 8080}


@pytest.mark.parametrize("name", OVERLAYS)
def test_selectors_and_references(name):
    docs = rendered(name)
    ws = workloads(docs)
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in ws]
    for w in ws:
        assert selects(w["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        spec = w["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] in {d["metadata"]["name"] for d in by_kind(docs, "ServiceAccount")}
        cms = {d["metadata"]["name"] for d in by_kind(docs, "ConfigMap")}
        vols = {v["name"]: v for v in spec["volumes"]}
        for v in vols.values():
            if "configMap" in v:
                assert v["configMap"]["name"] in cms
        for m in container(w)["volumeMounts"]:
            assert m["name"] in vols
    for kind in ("PodDisruptionBudget",):
        for d in by_kind(docs, kind):
            assert any(selects(d["spec"]["selector"], l) for l in pod_labels), kind
    np_ = by_kind(docs, "NetworkPolicy")[0]
    assert any(selects(np_["spec"]["podSelector"], l) for l in pod_labels)
    ingress_ports = sorted(p["port"] for r in np_["spec"]["ingress"] for p in r["ports"])
    assert ingress_ports == [4317, 4318, 8080]
    egress_ports = {p["port"] for r in np_["spec"]["egress"] for p in r["ports"]}
    assert {4317, 4318, 53} <= egress_ports
    sm = by_kind(docs, "ServiceMonitor")[0]
    matched = [s for s in by_kind(docs, "Service") if selects(sm["spec"]["selector"], s["metadata"]["labels"])]
    assert len(matched) == 1, "ServiceMonitor must select exactly one Service (no double scrape)"
    assert any(p["name"] == sm["spec"]["endpoints"][0]["port"] for p in matched[0]["spec"]["ports"])
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) in {(w["kind"], w["metadata"]["name"]) for w in ws}


def test_hpa_metrics():
    hpa = by_kind(rendered("socket"), "HorizontalPodAutoscaler")[0]
    m = hpa["spec"]["metrics"]
    assert {x["resource"]["name"] for x in m if x["type"] == "Resource"} == {"cpu", "memory"}
    assert [x["pods"]["metric"]["name"] for x in m if x["type"] == "Pods"] == ["otlp_http_requests_per_second"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in by_kind(rendered("socket"), "Deployment")[0]["spec"]


def test_socket_pods_restricted():
    """Pod Security "restricted" for the socket Deployment, plus a read-only root."""
    w = by_kind(rendered("socket"), "Deployment")[0]
    spec = w["spec"]["template"]["spec"]
    psc = spec["securityContext"]
    c = container(w)
    sc = c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 0
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    assert spec["automountServiceAccountToken"] is False
    for v in spec["volumes"]:
        assert set(v) - {"name"} <= {"configMap", "emptyDir", "secret", "projected",
                                    "persistentVolumeClaim", "downwardAPI"}
    ns = by_kind(rendered("socket"), "Namespace")[0]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_dpdk_pods():
    needs_patches("dpdk")
    docs = rendered("dpdk")
    w = by_kind(docs, "DaemonSet")[0]
    spec = w["spec"]["template"]["spec"]
    c = container(w)
    res = c["resources"]
    # Guaranteed QoS with integer CPUs (exclusive cores under the static CPU manager).
    assert res["requests"] == res["limits"]
    assert re.fullmatch(r"[1-9][0-9]*", str(res["limits"]["cpu"]))
    assert "memory" in res["limits"] and "hugepages-2Mi" in res["limits"]
    assert res["limits"].get("intel.com/sriov_netdevice") == "1"
    vols = {v["name"]: v for v in spec["volumes"]}
    hp = [m for m in c["volumeMounts"] if m["mountPath"] == "/dev/hugepages"]
    assert hp and vols[hp[0]["name"]]["emptyDir"]["medium"].startswith("HugePages")
    assert "IPC_LOCK" in c["securityContext"]["capabilities"]["add"]
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["nodeSelector"] and spec["tolerations"]
    net = w["spec"]["template"]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
    nads = {d["metadata"]["name"]: d for d in by_kind(docs, "NetworkAttachmentDefinition")}
    assert net in nads
    nad = nads[net]
    assert nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"] == "intel.com/sriov_netdevice"
    cni = json.loads(nad["spec"]["config"])
    assert cni["type"] == "sriov" and cni["name"] == net
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["OTLP__DATAPLANE__MODE"] == "dpdk"
    assert c["command"] == ["/bin/sh", "/app/bin/dpdk-entrypoint.sh"]
    pod_vols = [v for v in spec["volumes"] if "downwardAPI" in v]
    assert any(i["fieldRef"]["fieldPath"] == "metadata.annotations"
               for v in pod_vols for i in v["downwardAPI"]["items"])
    ns = by_kind(docs, "Namespace")[0]
    assert ns["metadata"]["name"] == "otlp-gateway-dpdk"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


@pytest.mark.parametrize("name", OVERLAYS)
def test_grace_period_covers_shutdown(name):
    cfg = yaml.safe_load((dl.ROOT / "config/production.yaml").read_text())
    shutdown_s = cfg["service"]["shutdown_timeout_ms"] / 1000
    for w in workloads(rendered(name)):
        spec = w["spec"]["template"]["spec"]
        pre = container(w).get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pause = float(pre[-1]) if pre and pre[0].endswith("sleep") else 0
        assert spec["terminationGracePeriodSeconds"] > shutdown_s + pause + 5


def test_configmap_is_production_yaml():
    cm = [d for d in dl.load_yaml_docs(K8S / "base" / "configmap.yaml") if d["kind"] == "ConfigMap"][0]
    assert cm["data"]["config.yaml"] == (dl.ROOT / "config/production.yaml").read_text(), \
        "deploy/k8s/base/configmap.yaml differs from config/production.yaml"


def network_status(pod_annotations: dict, ip: str, pci: str, style: str = "indent") -> str:
    """The downward-API annotations file of a DPDK pod as Multus would leave
    it: the pod's own annotations plus network-status with the default
    network and the SR-IOV one."""
    ns = "otlp-gateway-dpdk"
    status = [
        {"name": "cbr0", "interface": "eth0", "ips": ["10.244.1.5"], "mac": "0a:58:0a:f4:01:05",
         "default": True, "dns": {}},
        {"name": f"{ns}/{pod_annotations['k8s.v1.cni.cncf.io/networks']}", "interface": "net1",
         "ips": [ip], "dns": {},
         "device-info": {"type": "pci", "version": "1.1.0", "pci": {"pci-address": pci}}},
    ]
    anns = dict(pod_annotations)
    if style == "indent":  # Go json.MarshalIndent(..., "", "    ")
        text = json.dumps(status, indent=4)
    else:  # "[{ ... },{ ... }]", as older Multus versions and its docs show it
        text = "[" + ",".join(json.dumps(x, indent=4) for x in status) + "]"
    anns["k8s.v1.cni.cncf.io/network-status"] = text
    # kubelet writes key="value" lines with the value quoted like Go's %q.
    return "".join(f"{k}={json.dumps(v)}\n" for k, v in sorted(anns.items()))


@pytest.mark.parametrize("name", OVERLAYS)
def test_pod_environment_validates(tmp_path, service_bin, name):
    """The ConfigMap's config with each pod's environment (OTLP__ overrides
    included; for DPDK pods, what the entrypoint derives from the pod's
    network-status, VF and cpuset) passes `otlp-service validate`: the binary
    itself accepts every override name and value the manifests set."""
    docs = rendered(name)
    cms = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    cm = cms["otlp-service-config"]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(cm["data"]["config.yaml"])
    for w in workloads(docs):
        c = container(w)
        env = {"PATH": "/usr/bin:/bin"}
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif "resourceFieldRef" in e["valueFrom"]:
                ref = e["valueFrom"]["resourceFieldRef"]
                assert ref["resource"] in ("limits.cpu", "requests.cpu")
                env[e["name"]] = str(c["resources"][ref["resource"].split(".")[0]]["cpu"])
        cmd = [str(service_bin), "validate", "--config", str(cfg)]
        if c.get("command"):
            # The DPDK entrypoint, from its ConfigMap, with what Kubernetes
            # would hand the pod.
            assert c["command"][:2] == ["/bin/sh", "/app/bin/dpdk-entrypoint.sh"]
            vols = {v["name"]: v for v in w["spec"]["template"]["spec"]["volumes"]}
            mount = [m for m in c["volumeMounts"] if m["mountPath"] == "/app/bin"][0]
            script = cms[vols[mount["name"]]["configMap"]["name"]]["data"]["dpdk-entrypoint.sh"]
            (tmp_path / "entrypoint.sh").write_text(script)
            podinfo = tmp_path / "podinfo"
            podinfo.mkdir(exist_ok=True)
            (podinfo / "annotations").write_text(network_status(
                w["spec"]["template"]["metadata"]["annotations"], "198.18.0.10", "0000:3b:02.1"))
            env.update(OTLP_PODINFO=str(podinfo), OTLP_SERVICE=str(service_bin),
                       PCIDEVICE_INTEL_COM_SRIOV_NETDEVICE="0000:3b:02.1")
            cmd = ["/bin/sh", str(tmp_path / "entrypoint.sh")] + cmd[1:]
            probe = subprocess.run(["/bin/sh", str(tmp_path / "entrypoint.sh")], capture_output=True,
                                   text=True, env=dict(env, OTLP_SERVICE="/usr/bin/env"))
            assert probe.returncode == 0, probe.stderr
            derived = dict(l.split("=", 1) for l in probe.stdout.splitlines() if l.startswith("OTLP__"))
            assert derived["OTLP__DATAPLANE__DPDK__IP"] == "198.18.0.10"
            assert derived["OTLP__DATAPLANE__DPDK__EAL_ARGS"].startswith("-a 0000:3b:02.1 ")
            assert derived.get("OTLP__DATAPLANE__CORES")
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert r.returncode == 0, f"{w['metadata']['name']}: {r.stderr}"


@pytest.mark.parametrize("style", ["indent", "compact"])
def test_dpdk_entrypoint_finds_the_sriov_address(tmp_path, style):
    script = K8S / "overlays" / "dpdk" / "dpdk-entrypoint.sh"
    (tmp_path / "annotations").write_text(network_status(
        {"k8s.v1.cni.cncf.io/networks": "otlp-sriov", "prometheus.io/port": "8080"},
        "198.18.0.77", "0000:af:00.3", style))
    r = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "OTLP_PODINFO": str(tmp_path),
                            "OTLP_SERVICE": "/usr/bin/env",
                            "PCIDEVICE_INTEL_COM_SRIOV_NETDEVICE": "0000:af:00.3,0000:af:00.4"})
    assert r.returncode == 0, r.stderr
    env = dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)
    assert env["OTLP__DATAPLANE__DPDK__IP"] == "198.18.0.77"  # not eth0's 10.244.1.5
    assert env["OTLP__DATAPLANE__DPDK__EAL_ARGS"] == "-a 0000:af:00.3 --huge-dir /dev/hugepages"


def test_dpdk_entrypoint_refuses_without_network(tmp_path):
    script = K8S / "overlays" / "dpdk" / "dpdk-entrypoint.sh"
    (tmp_path / "annotations").write_text('k8s.v1.cni.cncf.io/networks="otlp-sriov"\n')
    r = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "OTLP_PODINFO": str(tmp_path),
                            "OTLP_SERVICE": "/bin/true"})
    assert r.returncode == 2 and "no address for network otlp-sriov" in r.stderr
