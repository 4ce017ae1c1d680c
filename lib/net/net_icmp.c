/* SPDX-License-Identifier: Apache-2.0 */
/* ICMP (RFC 792): answer echo requests to our address, so operators can
 * ping the data-plane port. Every other type is counted and dropped (no
 * path MTU discovery: we send DF with an MSS from our MTU). */
#include "net/net_internal.h"

#define NET_ICMP_HLEN 8
#define NET_ICMP_ECHO_REPLY 0
#define NET_ICMP_ECHO_REQUEST 8

void net_icmp_input(struct net_stack *s, const uint8_t *src_mac, uint32_t saddr, const uint8_t *p,
                    size_t len)
{
    if (unlikely(len < NET_ICMP_HLEN)) {
        net_drop(s, NET_DROP_ICMP_SHORT);
        return;
    }
    if (net_cksum_fold(net_cksum_add(0, p, len)) != 0) {
        net_drop(s, NET_DROP_ICMP_CHECKSUM);
        return;
    }
    if (p[0] != NET_ICMP_ECHO_REQUEST || p[1] != 0) {
        net_drop(s, NET_DROP_ICMP_TYPE);
        return;
    }
    uint8_t *f = net_eth_alloc(s, NET_IPV4_HLEN + len, src_mac, NET_ETHERTYPE_IPV4);
    if (f == NULL)
        return;
    uint8_t *icmp = f + NET_ETH_HLEN + NET_IPV4_HLEN;
    memcpy(icmp, p, len);
    icmp[0] = NET_ICMP_ECHO_REPLY;
    net_wr16(icmp + 2, 0);
    net_wr16(icmp + 2, net_cksum_fold(net_cksum_add(0, icmp, len)));
    net_ipv4_write(s, f + NET_ETH_HLEN, saddr, 1, (uint16_t)len);
    net_eth_send(s, f, NET_IPV4_HLEN + len);
    s->stats.icmp_echo_replies++;
}
