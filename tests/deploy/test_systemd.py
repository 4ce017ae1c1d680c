# SPDX-License-Identifier: Apache-2.0
"""deploy/systemd: the unit and the DPDK drop-in pass systemd-analyze verify
and security review; install.sh is idempotent and its --dry-run changes
nothing."""
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import deploylib as dl

SYSTEMD = dl.DEPLOY / "systemd"
UNIT = SYSTEMD / "otlp-service.service"
DROPIN = SYSTEMD / "otlp-service-dpdk.conf"

needs_analyze = pytest.mark.skipif(dl.which("systemd-analyze") is None,
                                   reason="systemd-analyze not installed (apt-get install systemd)")


def unit_copy(tmp_path: Path, service_bin: Path, dropin: bool = False, extra: str = "") -> Path:
    """The unit with its binary paths pointing at the built binary (verify
    checks that ExecStart's program exists)."""
    d = tmp_path / "units"
    d.mkdir(exist_ok=True)
    text = UNIT.read_text().replace("/usr/local/bin/otlp-service", str(service_bin))
    unit = d / "otlp-service.service"
    unit.write_text(text + extra)
    if dropin:
        (d / "otlp-service.service.d").mkdir(exist_ok=True)
        shutil.copy(DROPIN, d / "otlp-service.service.d" / "dpdk.conf")
    return unit


def analyze(unit: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{unit.parent}:", SYSTEMD_LOG_COLOR="0")
    return subprocess.run(["systemd-analyze", *args, str(unit)], capture_output=True, text=True,
                          env=env, timeout=60)


def our_messages(r: subprocess.CompletedProcess, unit: Path) -> list[str]:
    return [l for l in (r.stdout + r.stderr).splitlines()
            if str(unit.parent) in l or "otlp-service" in l]


@needs_analyze
@pytest.mark.parametrize("dropin", [False, True], ids=["socket", "socket+dpdk-dropin"])
def test_verify(tmp_path, service_bin, dropin):
    unit = unit_copy(tmp_path, service_bin, dropin)
    r = analyze(unit, "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert our_messages(r, unit) == [], "systemd-analyze verify warnings:\n" + r.stdout + r.stderr


@needs_analyze
def test_verify_catches_a_typo(tmp_path, service_bin):
    """The check above is live: a misspelt directive is reported."""
    unit = unit_copy(tmp_path, service_bin, extra="\n[Service]\nRestartt=always\n")
    r = analyze(unit, "verify")
    assert any("Restartt" in l for l in our_messages(r, unit)), r.stdout + r.stderr


@needs_analyze
@pytest.mark.parametrize("dropin,threshold", [(False, 20), (True, 50)], ids=["socket", "dpdk"])
def test_security_exposure(tmp_path, service_bin, dropin, threshold):
    """systemd's own exposure score: <= 2.0 in socket mode, <= 5.0 with the
    DPDK drop-in (capabilities and devices it must have)."""
    unit = unit_copy(tmp_path, service_bin, dropin)
    r = analyze(unit, "security", "--offline=yes", f"--threshold={threshold}", "--no-pager")
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert r.returncode == 0, f"exposure {m.group(1)} over {threshold / 10}"


def test_unit_directives():
    text = UNIT.read_text()
    for want in ("Type=notify", "NotifyAccess=main", "WatchdogSec=", "ExecReload=",
                 "Restart=on-failure", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/otlp-service", "NoNewPrivileges=yes", "PrivateTmp=yes",
                 "ProtectHome=yes", "LimitNOFILE=1048576", "StateDirectory=otlp-service",
                 "User=otlp-service", "#CPUAffinity="):
        assert want in text, want
    assert re.search(r"^CapabilityBoundingSet=$", text, re.M), "empty bounding set in socket mode"
    assert re.search(r"^ExecStartPre=\S+ validate --config \S+$", text, re.M)
    dropin = DROPIN.read_text()
    for want in ("CAP_IPC_LOCK", "CAP_SYS_RAWIO", "LimitMEMLOCK=infinity",
                 "Requires=dev-hugepages.mount", "After=dev-hugepages.mount"):
        assert want in dropin, want


# ------------------------------------------------------------------ install.sh
INSTALL = SYSTEMD / "install.sh"


def run_install(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=60)


def test_install_dry_run_changes_nothing(service_bin):
    watched = [Path("/etc/otlp-service"), Path("/etc/systemd/system/otlp-service.service"),
               Path("/usr/local/bin/otlp-service")]
    before = {p: p.exists() for p in watched}
    r = run_install("--dry-run", "--dpdk", "--binary", str(service_bin))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "dry run: nothing was changed" in out
    assert "+ " not in out.replace("would run: ", ""), "dry run executed a command"
    for want in ("systemctl daemon-reload", "systemctl enable otlp-service.service",
                 "/etc/systemd/system/otlp-service.service.d/dpdk.conf"):
        assert want in out, want
    if os.geteuid() == 0 and not before[Path("/etc/otlp-service")]:
        assert "useradd --system" in out or "user otlp-service exists" in out
    assert {p: p.exists() for p in watched} == before


def test_install_into_root_is_idempotent(tmp_path, service_bin):
    root = tmp_path / "root"
    first = run_install("--root", str(root), "--binary", str(service_bin), "--dpdk")
    assert first.returncode == 0, first.stderr
    files = {
        "usr/local/bin/otlp-service": 0o755,
        "etc/otlp-service/config.yaml": 0o644,
        "etc/otlp-service/otlp-service.env": 0o640,
        "etc/systemd/system/otlp-service.service": 0o644,
        "etc/systemd/system/otlp-service.service.d/dpdk.conf": 0o644,
        "etc/sysctl.d/60-otlp-service-hugepages.conf": 0o644,
    }
    for rel, mode in files.items():
        p = root / rel
        assert p.is_file(), rel
        assert stat.S_IMODE(p.stat().st_mode) == mode, f"{rel}: {oct(p.stat().st_mode)}"
    assert (root / "etc/otlp-service/config.yaml").read_text() == \
        (dl.ROOT / "config/production.yaml").read_text()
    # An operator edits the config; a second run keeps it and changes nothing.
    cfg = root / "etc/otlp-service/config.yaml"
    cfg.write_text(cfg.read_text() + "# local edit\n")
    second = run_install("--root", str(root), "--binary", str(service_bin), "--dpdk")
    assert second.returncode == 0, second.stderr
    assert not [l for l in second.stdout.splitlines() if l.startswith("+ ")], second.stdout
    assert cfg.read_text().endswith("# local edit\n")


def test_install_refuses_without_binary(tmp_path):
    r = run_install("--root", str(tmp_path), "--binary", str(tmp_path / "missing"))
    assert r.returncode == 2 and "binary" in r.stderr
