#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Test rig for the DPDK data plane on net_tap: put the kernel side of the
# service's TAP interface into a network namespace of its own, with an
# address from the benchmarking range 198.18.0.0/15, so clients started with
# `ip netns exec NS ...` reach the service (198.18.0.2) through the userspace
# TCP stack.
#
#   dpdk-tap-rig.sh setup IFACE [NS] [--wait SECONDS] [--addr 198.18.0.1/24]
#        waits for IFACE (the net_tap iface= of the service) to appear, creates
#        NS (default otlp-rig-$$), moves IFACE into it, assigns the address,
#        brings IFACE and lo up; prints NS on stdout.
#   dpdk-tap-rig.sh teardown NS
#        deletes the namespace (only names starting with otlp-rig-).
#
# Safety: only TUN/TAP interfaces are moved (never a physical NIC), only
# namespaces named otlp-rig-* are created or removed, and only addresses in
# 198.18.0.0/15 are assigned, inside that namespace. Needs root.
set -euo pipefail

die() { echo "dpdk-tap-rig: $*" >&2; exit 2; }

in_bench_range() { # 198.18.x.y or 198.19.x.y
    [[ "$1" =~ ^198\.(18|19)\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$ ]] || return 1
    (( BASH_REMATCH[2] <= 255 && BASH_REMATCH[3] <= 255 && BASH_REMATCH[4] >= 15 &&
       BASH_REMATCH[4] <= 30 ))
}

cmd_setup() {
    local iface="" ns="" wait_s=30 addr="198.18.0.1/24"
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --wait) wait_s="$2"; shift 2 ;;
            --addr) addr="$2"; shift 2 ;;
            -*) die "unknown option $1" ;;
            *) if [[ -z "$iface" ]]; then iface="$1"; elif [[ -z "$ns" ]]; then ns="$1";
               else die "too many arguments"; fi; shift ;;
        esac
    done
    [[ -n "$iface" ]] || die "usage: setup IFACE [NS]"
    [[ "$iface" =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "bad interface name '$iface'"
    ns="${ns:-otlp-rig-$$}"
    [[ "$ns" == otlp-rig-* ]] || die "namespace name must start with otlp-rig-"
    in_bench_range "$addr" || die "address $addr is not in 198.18.0.0/15"

    local t=0
    until [[ -e "/sys/class/net/$iface" ]]; do
        (( t < wait_s * 10 )) || die "interface $iface did not appear within ${wait_s}s"
        sleep 0.1
        t=$((t + 1))
    done
    # A TAP made by DPDK's net_tap has tun_flags; a physical NIC has not.
    [[ -e "/sys/class/net/$iface/tun_flags" ]] || die "$iface is not a TUN/TAP interface"

    if ! ip netns list | awk '{print $1}' | grep -qx "$ns"; then
        ip netns add "$ns"
    fi
    ip link set dev "$iface" netns "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$addr" dev "$iface"
    ip -n "$ns" link set "$iface" up
    echo "$ns"
}

cmd_teardown() {
    local ns="${1:-}"
    [[ -n "$ns" ]] || die "usage: teardown NS"
    [[ "$ns" == otlp-rig-* ]] || die "refusing to remove namespace '$ns' (not otlp-rig-*)"
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
        # Any tc qdisc and the address go with the namespace; the TAP itself
        # disappears when the service closes it.
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
        ip netns del "$ns"
    fi
}

[[ $(id -u) -eq 0 ]] || die "needs root (ip netns)"
case "${1:-}" in
    setup) shift; cmd_setup "$@" ;;
    teardown) shift; cmd_teardown "$@" ;;
    *) echo "usage: $0 setup IFACE [NS] [--wait S] [--addr 198.18.0.1/24] | teardown NS" >&2
       exit 2 ;;
esac
