#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install otlp-service as a systemd service (socket mode; --dpdk adds the DPDK
# drop-in and hugepage reservation). Idempotent: files that are already in
# place and identical are left alone, an existing configuration or environment
# file is never overwritten, the user is created only when missing.
#
#   deploy/systemd/install.sh [options]
#     --binary PATH   otlp-service binary (default: build-release/app/otlp-service,
#                     else build/app/otlp-service, of this checkout)
#     --config PATH   configuration to install when none is there
#                     (default: config/production.yaml)
#     --dpdk          also install otlp-service-dpdk.conf as a drop-in and
#                     60-otlp-service-hugepages.conf in /etc/sysctl.d
#     --start         also (re)start the service after installing
#     --dry-run       print what would be done, change nothing
#     --root DIR      install into DIR instead of / (staging, packaging, tests):
#                     no user creation, no systemctl, no sysctl
#     -h, --help
#
# Build first: meson setup build-release --buildtype=release -Dtests=false &&
#              ninja -C build-release
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

binary=""
config="$repo/config/production.yaml"
dpdk=0
start=0
dry=0
root=""

usage() { sed -n '3,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --dpdk) dpdk=1; shift ;;
    --start) start=1; shift ;;
    --dry-run) dry=1; shift ;;
    --root) root="${2%/}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

if [[ -z "$binary" ]]; then
    for cand in "$repo/build-release/app/otlp-service" "$repo/build/app/otlp-service"; do
        [[ -x "$cand" ]] && { binary="$cand"; break; }
    done
fi
[[ -n "$binary" && -x "$binary" ]] || {
    echo "install.sh: no otlp-service binary (build it, or pass --binary PATH)" >&2
    exit 2
}
[[ -f "$config" ]] || { echo "install.sh: no such config: $config" >&2; exit 2; }
if ((!dry)) && [[ -z "$root" && $(id -u) -ne 0 ]]; then
    echo "install.sh: run as root (or use --dry-run / --root DIR)" >&2
    exit 2
fi

user=otlp-service
bin_dst="$root/usr/local/bin/otlp-service"
etc="$root/etc/otlp-service"
unit_dst="$root/etc/systemd/system/otlp-service.service"
dropin_dst="$root/etc/systemd/system/otlp-service.service.d/dpdk.conf"
sysctl_dst="$root/etc/sysctl.d/60-otlp-service-hugepages.conf"
doc_dst="$root/usr/local/share/doc/otlp-service"
changed=0

say() { printf '%s\n' "$*"; }
run() {
    if ((dry)); then
        say "would run: $*"
    else
        say "+ $*"
        "$@"
    fi
}

# install_file SRC DST MODE [keep]: copy when missing or different; with
# "keep", an existing DST is left as it is (operator-edited files).
install_file() {
    local src="$1" dst="$2" mode="$3" keep="${4:-}"
    if [[ -e "$dst" ]]; then
        if [[ "$keep" == keep ]]; then
            say "keep $dst (exists; not overwritten)"
            return
        fi
        if cmp -s "$src" "$dst"; then
            say "ok   $dst (up to date)"
            return
        fi
    fi
    changed=1
    run install -D -m "$mode" "$src" "$dst"
}

# 1. The service user: a system account without a login shell or home.
if [[ -z "$root" ]]; then
    if getent passwd "$user" >/dev/null; then
        say "ok   user $user exists"
    else
        changed=1
        run useradd --system --user-group --home-dir /var/lib/otlp-service --no-create-home \
            --shell /usr/sbin/nologin --comment "otlp-service OTLP gateway" "$user"
    fi
fi

# 2. Binary, configuration, environment file, docs.
install_file "$binary" "$bin_dst" 0755
install_file "$config" "$etc/config.yaml" 0644 keep
envtmp="$(mktemp)"
trap 'rm -f "$envtmp"' EXIT
cat >"$envtmp" <<'EOF'
# otlp-service environment (systemd EnvironmentFile; KEY=value per line).
# Referenced by config.yaml:
#OTLP_UPSTREAM_ENDPOINT=https://collector.example:4318
#DEPLOYMENT_ENV=production
# Any key can be overridden (docs/configuration.md), e.g. credentials:
#OTLP__EXPORTER__HEADERS__X_API_KEY=...
#OTLP__DATAPLANE__CORES=2-7
# DPDK nodes (with the dpdk.conf drop-in), e.g.:
#OTLP__DATAPLANE__MODE=dpdk
#OTLP__DATAPLANE__DPDK__EAL_ARGS=-a 0000:3b:00.0
#OTLP__DATAPLANE__DPDK__IP=198.18.0.10
#OTLP__DATAPLANE__DPDK__GATEWAY=198.18.0.1
EOF
install_file "$envtmp" "$etc/otlp-service.env" 0640 keep
if [[ -z "$root" && -e "$etc/otlp-service.env" ]] && getent group "$user" >/dev/null; then
    # Secrets may live here: readable by root and the service group only.
    if [[ "$(stat -c '%G %a' "$etc/otlp-service.env")" != "$user 640" ]]; then
        run chgrp "$user" "$etc/otlp-service.env"
        run chmod 0640 "$etc/otlp-service.env"
    fi
elif [[ -z "$root" ]] && ((dry)); then
    say "would run: chgrp $user $etc/otlp-service.env"
fi
for doc in operations.md configuration.md deployment.md; do
    [[ -f "$repo/docs/$doc" ]] && install_file "$repo/docs/$doc" "$doc_dst/$doc" 0644
done

# 3. systemd unit (and the DPDK drop-in).
install_file "$here/otlp-service.service" "$unit_dst" 0644
if ((dpdk)); then
    install_file "$here/otlp-service-dpdk.conf" "$dropin_dst" 0644
    install_file "$here/60-otlp-service-hugepages.conf" "$sysctl_dst" 0644
elif [[ -e "$dropin_dst" ]]; then
    say "note $dropin_dst exists (DPDK drop-in); remove it to run in socket mode"
fi

# 4. Check the configuration as the service will see it (with the env file).
if ((!dry)) && [[ -z "$root" ]]; then
    # shellcheck disable=SC1091  # the operator's env file, read as systemd will
    if (set -a; [[ -r "$etc/otlp-service.env" ]] && . "$etc/otlp-service.env"; set +a
        "$bin_dst" validate --config "$etc/config.yaml"); then
        :
    else
        say "WARNING: $etc/config.yaml does not validate yet (set the variables it needs in"
        say "         $etc/otlp-service.env); the service will refuse to start until it does."
    fi
fi

# 5. Tell systemd.
if [[ -z "$root" ]]; then
    if ((dpdk)); then
        if ((changed)) || ((dry)); then run sysctl -q -p "$sysctl_dst"; fi
    fi
    if ((changed)) || ((dry)); then
        run systemctl daemon-reload
    else
        say "ok   systemd units unchanged (no daemon-reload)"
    fi
    if ((dry)) || ! systemctl is-enabled --quiet otlp-service.service 2>/dev/null; then
        run systemctl enable otlp-service.service
    else
        say "ok   otlp-service.service enabled"
    fi
    if ((start)); then
        run systemctl restart otlp-service.service
    else
        say "start with: systemctl start otlp-service   (status: systemctl status otlp-service;"
        say "            ready when \`otlp-service health-check\` exits 0: GET 127.0.0.1:8080/health/ready)"
    fi
fi
((dry)) && say "dry run: nothing was changed"
exit 0
