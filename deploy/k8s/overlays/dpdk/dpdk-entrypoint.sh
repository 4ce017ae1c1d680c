#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Entrypoint of the DPDK gateway pods: derive the per-pod DPDK settings from
# what Kubernetes hands the pod, then exec otlp-service with the arguments
# given. Each setting is only derived when the variable is not already set.
#
#   OTLP__DATAPLANE__DPDK__IP        the address IPAM gave the SR-IOV network
#                                    ($OTLP_SRIOV_NETWORK) in Multus'
#                                    network-status annotation (downward API
#                                    file $OTLP_PODINFO/annotations)
#   OTLP__DATAPLANE__DPDK__EAL_ARGS  -a <VF PCI address> from the SR-IOV device
#                                    plugin's $PCIDEVICE_<RESOURCE> variable,
#                                    hugepages from /dev/hugepages
#   OTLP__DATAPLANE__CORES           the exclusive cores the CPU manager gave
#                                    this container (Cpus_allowed_list)
set -eu

podinfo="${OTLP_PODINFO:-/etc/podinfo}"
network="${OTLP_SRIOV_NETWORK:-otlp-sriov}"
pcivar="${OTLP_SRIOV_RESOURCE_VAR:-PCIDEVICE_INTEL_COM_SRIOV_NETDEVICE}"

if [ -z "${OTLP__DATAPLANE__DPDK__IP:-}" ]; then
    # network-status is a JSON list of networks, quoted on one line (\n and
    # \" escapes). Drop the escaped newlines and blanks, put one network per
    # line, keep ours ("namespace/name"), take the first address in "ips".
    ip=$(grep '^k8s.v1.cni.cncf.io/network-status=' "$podinfo/annotations" 2>/dev/null |
        sed 's/\\n//g; s/[[:space:]]//g; s/},{/\n/g' |
        grep -F -e "/$network\\\"" -e "\\\"$network\\\"" |
        grep -oE 'ips\\":\[\\"[0-9]{1,3}(\.[0-9]{1,3}){3}' | head -n 1 |
        grep -oE '[0-9]{1,3}(\.[0-9]{1,3}){3}$' || true)
    if [ -z "$ip" ]; then
        echo "dpdk-entrypoint: no address for network $network in $podinfo/annotations" >&2
        exit 2
    fi
    export OTLP__DATAPLANE__DPDK__IP="$ip"
fi

if [ -z "${OTLP__DATAPLANE__DPDK__EAL_ARGS:-}" ]; then
    pci=$(eval "printf '%s' \"\${$pcivar:-}\"" | cut -d, -f1)
    if [ -z "$pci" ]; then
        echo "dpdk-entrypoint: \$$pcivar is not set (no VF from the SR-IOV device plugin)" >&2
        exit 2
    fi
    export OTLP__DATAPLANE__DPDK__EAL_ARGS="-a $pci --huge-dir /dev/hugepages"
fi

if [ -z "${OTLP__DATAPLANE__CORES:-}" ]; then
    cores=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status)
    [ -n "$cores" ] && export OTLP__DATAPLANE__CORES="$cores"
fi

exec "${OTLP_SERVICE:-/usr/local/bin/otlp-service}" "$@"
