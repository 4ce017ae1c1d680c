# SPDX-License-Identifier: Apache-2.0
"""Every YAML and JSON file under deploy/ parses; shell scripts parse."""
import json
import subprocess

import pytest
import yaml

import deploylib as dl

YAML_FILES = sorted(p for p in dl.DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))
JSON_FILES = sorted(dl.DEPLOY.rglob("*.json"))


def test_there_are_files():
    assert len(YAML_FILES) >= 15 and JSON_FILES


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(dl.DEPLOY)))
def test_yaml_parses(path):
    text = path.read_text()
    assert "\t" not in text, "tab characters in YAML"
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert docs, "no YAML document"
    for d in docs:
        assert isinstance(d, dict), "top level must be a mapping"


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: str(p.relative_to(dl.DEPLOY)))
def test_json_parses(path):
    json.loads(path.read_text())


@pytest.mark.parametrize("path", sorted(dl.DEPLOY.rglob("*.sh")) + [dl.HERE / "run.sh"],
                         ids=lambda p: p.name)
def test_shell_syntax(path):
    r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("path", sorted(dl.DEPLOY.rglob("*.sh")) + [dl.HERE / "run.sh"],
                         ids=lambda p: p.name)
def test_shellcheck(path):
    if dl.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    r = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
