/* SPDX-License-Identifier: Apache-2.0 */
/* Ethernet II: the first step of net_stack_input() (accept frames for our
 * MAC or broadcast, dispatch ARP and IPv4) and the frame header of every
 * frame we send. */
#include "net/net_internal.h"

static const uint8_t net_eth_bcast[NET_ETH_ALEN] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

void net_eth_input(struct net_stack *s, const uint8_t *frame, size_t len)
{
    if (unlikely(len < NET_ETH_HLEN)) {
        net_drop(s, NET_DROP_ETH_SHORT);
        return;
    }
    if (memcmp(frame, s->cfg.ifc.mac, NET_ETH_ALEN) != 0 &&
        memcmp(frame, net_eth_bcast, NET_ETH_ALEN) != 0) {
        net_drop(s, NET_DROP_ETH_DST);
        return;
    }
    const uint8_t *src_mac = frame + NET_ETH_ALEN;
    uint16_t type = net_rd16(frame + 12);
    if (type == NET_ETHERTYPE_IPV4)
        net_ipv4_input(s, src_mac, frame + NET_ETH_HLEN, len - NET_ETH_HLEN);
    else if (type == NET_ETHERTYPE_ARP)
        net_arp_input(s, src_mac, frame + NET_ETH_HLEN, len - NET_ETH_HLEN);
    else
        net_drop(s, NET_DROP_ETH_TYPE);
}

/* Allocate a frame for `l3_len` bytes after the Ethernet header and write
 * that header. Returns the frame or NULL (counted). Pass it to
 * net_eth_send() before returning to the caller of the stack. */
uint8_t *net_eth_alloc(struct net_stack *s, size_t l3_len, const uint8_t dst[NET_ETH_ALEN],
                       uint16_t type)
{
    uint8_t *f = s->tx.alloc(s->tx_ctx, NET_ETH_HLEN + l3_len);
    if (unlikely(f == NULL)) {
        net_drop(s, NET_DROP_TX_ALLOC);
        return NULL;
    }
    memcpy(f, dst, NET_ETH_ALEN);
    memcpy(f + NET_ETH_ALEN, s->cfg.ifc.mac, NET_ETH_ALEN);
    net_wr16(f + 12, type);
    return f;
}

void net_eth_send(struct net_stack *s, uint8_t *frame, size_t l3_len)
{
    s->stats.tx_frames++;
    s->tx.send(s->tx_ctx, frame, NET_ETH_HLEN + l3_len);
}
