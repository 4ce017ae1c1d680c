#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Reserve 2 MiB hugepages for the DPDK data plane and mount hugetlbfs.
#
#   dpdk-hugepages.sh N          make sure at least N 2 MiB pages are reserved
#                                (node-wide) and hugetlbfs is mounted at
#                                /dev/hugepages; idempotent
#   dpdk-hugepages.sh --release  give back what this script reserved and
#                                unmount what it mounted
#   dpdk-hugepages.sh --status   print the counters
#
# What it changed is remembered in /run/otlp-dpdk-hugepages, so --release
# restores the previous page count and leaves a mount it did not make. For a
# permanent set-up use the kernel command line (hugepagesz=2M hugepages=N) or
# a sysctl.d file instead. Needs root.
set -euo pipefail

state=/run/otlp-dpdk-hugepages
sysfs=/sys/kernel/mm/hugepages/hugepages-2048kB
mnt=/dev/hugepages

die() { echo "dpdk-hugepages: $*" >&2; exit 2; }

status() {
    echo "2MiB pages: total $(cat $sysfs/nr_hugepages) free $(cat $sysfs/free_hugepages)" \
         "reserved $(cat $sysfs/resv_hugepages)"
    if mountpoint -q "$mnt"; then echo "hugetlbfs mounted at $mnt"; else echo "$mnt not mounted"; fi
}

[[ -d "$sysfs" ]] || die "no 2 MiB hugepage support in this kernel"
case "${1:-}" in
    --status) status; exit 0 ;;
    --release)
        [[ $(id -u) -eq 0 ]] || die "needs root"
        if [[ -f "$state" ]]; then
            # shellcheck disable=SC1090
            . "$state"
            if [[ "${mounted:-0}" == 1 ]] && mountpoint -q "$mnt"; then
                umount "$mnt" || echo "dpdk-hugepages: $mnt busy, left mounted" >&2
            fi
            echo "${previous:-0}" > "$sysfs/nr_hugepages"
            rm -f "$state"
        fi
        status
        exit 0 ;;
    ''|-*) echo "usage: $0 N | --release | --status" >&2; exit 2 ;;
esac

n="$1"
[[ "$n" =~ ^[0-9]+$ ]] || die "N must be a number of 2 MiB pages"
[[ $(id -u) -eq 0 ]] || die "needs root"
cur=$(cat "$sysfs/nr_hugepages")
if [[ ! -f "$state" ]]; then
    echo "previous=$cur" > "$state"
    echo "mounted=0" >> "$state"
fi
if (( cur < n )); then
    echo "$n" > "$sysfs/nr_hugepages"
    got=$(cat "$sysfs/nr_hugepages")
    (( got >= n )) || die "asked for $n pages, the kernel gave $got (memory fragmented?)"
fi
if ! mountpoint -q "$mnt"; then
    mkdir -p "$mnt"
    mount -t hugetlbfs -o pagesize=2M nodev "$mnt"
    sed -i 's/^mounted=.*/mounted=1/' "$state"
fi
status
