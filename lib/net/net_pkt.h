/* SPDX-License-Identifier: Apache-2.0 */
/* The packet boundary of the userspace stack: received frames are borrowed
 * contiguous buffers; frames to send are written into buffers the transport
 * hands out through struct net_tx_ops, so the DPDK glue can map them onto
 * rte_mbufs (alloc -> rte_pktmbuf_alloc + append, send -> tx burst buffer). */
#ifndef OTLP_NET_PKT_H
#define OTLP_NET_PKT_H

#include <stddef.h>
#include <stdint.h>

#define NET_ETH_ALEN 6
#define NET_ETH_HLEN 14
#define NET_IPV4_HLEN 20 /* without options; we never send options */
#define NET_TCP_HLEN 20  /* without options */
#define NET_ETHERTYPE_IPV4 0x0800
#define NET_ETHERTYPE_ARP 0x0806

/*
 * Per-frame receive flags, from the NIC's checksum offload (mbuf ol_flags).
 * A flag says the NIC verified that checksum and found it good; the stack
 * then skips its own check. Frames the NIC marked bad are dropped by the
 * glue (and counted there); frames with unknown status are passed with the
 * flag clear and verified in software.
 */
#define NET_RX_IP_CKSUM_GOOD (1u << 0)
#define NET_RX_L4_CKSUM_GOOD (1u << 1)

/*
 * Where outgoing frames go. The stack never allocates frame memory itself.
 *
 * alloc(ctx, len): return a writable buffer of at least `len` bytes for one
 *   Ethernet frame (no FCS), or NULL when none is free; the stack then drops
 *   the frame and counts NET_DROP_TX_ALLOC. The buffer belongs to the stack
 *   until it passes it to send().
 * send(ctx, frame, len): takes ownership of `frame`, which holds a complete
 *   frame of `len` bytes (len <= the alloc'ed size). Called exactly once for
 *   every successful alloc, before the stack returns to its caller; frames
 *   are sent in call order. Frames may be shorter than the 60-byte Ethernet
 *   minimum: the NIC (or the glue) pads them.
 *
 * Both are called from within net_stack_input(), net_stack_timers() and the
 * net_tcp_* calls, on the lcore that owns the stack.
 */
struct net_tx_ops {
    uint8_t *(*alloc)(void *ctx, size_t len);
    void (*send)(void *ctx, uint8_t *frame, size_t len);
};

#endif
