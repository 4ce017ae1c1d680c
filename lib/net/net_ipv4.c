/* SPDX-License-Identifier: Apache-2.0 */
/* IPv4 (RFC 791) between Ethernet and ICMP/TCP: header checks (version,
 * IHL, total length, checksum), no fragments (dropped and counted; TCP
 * peers use MSS so fragments are rare), only our unicast address, options
 * skipped. Headers we send are 20 bytes, DF set, TTL 64. */
#include "net/net_internal.h"

#define NET_IP_PROTO_ICMP 1
#define NET_IP_PROTO_TCP 6
#define NET_IP_MF 0x2000
#define NET_IP_DF 0x4000
#define NET_IP_OFFSET_MASK 0x1fff

static bool ip_src_invalid(const struct net_stack *s, uint32_t src)
{
    uint32_t mask = s->cfg.ifc.netmask;
    return src == 0 || src == 0xffffffffu || (src >> 28) == 0xe || src == s->cfg.ifc.ip ||
           (mask != 0xffffffffu && (src & ~mask) == ~mask && ((src ^ s->cfg.ifc.ip) & mask) == 0);
}

void net_ipv4_input(struct net_stack *s, const uint8_t *src_mac, const uint8_t *p, size_t len)
{
    if (unlikely(len < NET_IPV4_HLEN)) {
        net_drop(s, NET_DROP_IP_SHORT);
        return;
    }
    if (unlikely((p[0] >> 4) != 4)) {
        net_drop(s, NET_DROP_IP_VERSION);
        return;
    }
    size_t ihl = (size_t)(p[0] & 0x0f) * 4;
    if (unlikely(ihl < NET_IPV4_HLEN || ihl > len)) {
        net_drop(s, NET_DROP_IP_HDR_LEN);
        return;
    }
    size_t total = net_rd16(p + 2);
    if (unlikely(total < ihl || total > len)) {
        net_drop(s, NET_DROP_IP_TOTAL_LEN);
        return;
    }
    if (!(s->rx_flags & NET_RX_IP_CKSUM_GOOD) && net_cksum_fold(net_cksum_add(0, p, ihl)) != 0) {
        net_drop(s, NET_DROP_IP_CHECKSUM);
        return;
    }
    if (unlikely(net_rd16(p + 6) & (NET_IP_MF | NET_IP_OFFSET_MASK))) {
        net_drop(s, NET_DROP_IP_FRAGMENT);
        return;
    }
    uint32_t dst = net_rd32(p + 16);
    if (dst != s->cfg.ifc.ip) {
        net_drop(s, NET_DROP_IP_DST);
        return;
    }
    uint32_t src = net_rd32(p + 12);
    if (unlikely(ip_src_invalid(s, src))) {
        net_drop(s, NET_DROP_IP_SRC);
        return;
    }
    /* Ethernet padding past total length is cut here. */
    if (p[9] == NET_IP_PROTO_TCP)
        net_tcp_input(s, src_mac, src, p + ihl, total - ihl);
    else if (p[9] == NET_IP_PROTO_ICMP)
        net_icmp_input(s, src_mac, src, p + ihl, total - ihl);
    else
        net_drop(s, NET_DROP_IP_PROTO);
}

void net_ipv4_write(struct net_stack *s, uint8_t *ip, uint32_t dst, uint8_t proto,
                    uint16_t payload_len)
{
    ip[0] = 0x45;
    ip[1] = 0;
    net_wr16(ip + 2, (uint16_t)(NET_IPV4_HLEN + payload_len));
    net_wr16(ip + 4, s->ip_id++);
    net_wr16(ip + 6, NET_IP_DF);
    ip[8] = 64;
    ip[9] = proto;
    net_wr16(ip + 10, 0);
    net_wr32(ip + 12, s->cfg.ifc.ip);
    net_wr32(ip + 16, dst);
    if (!s->cfg.tx_cksum_offload)
        net_wr16(ip + 10, net_cksum_fold(net_cksum_add(0, ip, NET_IPV4_HLEN)));
}
