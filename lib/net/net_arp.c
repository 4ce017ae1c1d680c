/* SPDX-License-Identifier: Apache-2.0 */
/* ARP (RFC 826) for our one IPv4 address: answer requests for it, learn
 * from requests and replies, resolve next hops on demand with a fixed-size
 * cache (net_config.arp_entries, entries expire after arp_timeout_us).
 *
 * Reply path policy: the stack only ever answers peers that have just sent
 * it a frame, so TCP and ICMP replies go to the source MAC of the peer's
 * latest frame (for an off-subnet peer that is the gateway's MAC), kept per
 * connection. No packet ever waits for resolution, so there is no queue;
 * net_stack_arp_resolve() serves whoever must start a flow (none yet). */
#include <errno.h>

#include "net/net_internal.h"

#define NET_ARP_LEN 28
#define NET_ARP_REQUEST 1
#define NET_ARP_REPLY 2
#define NET_ARP_RETRY_US 1000000u   /* one request per second per address */
#define NET_ARP_PENDING_US 3000000u /* an unanswered entry may be reused after this */

static struct net_arp_entry *arp_find(struct net_stack *s, uint32_t ip)
{
    for (uint32_t i = 0; i < s->cfg.arp_entries; i++)
        if (s->arp[i].ip == ip)
            return &s->arp[i];
    return NULL;
}

/* A free entry, else an expired one, else a long-pending one; NULL if all
 * hold live data. */
static struct net_arp_entry *arp_slot(struct net_stack *s, uint64_t now)
{
    struct net_arp_entry *best = NULL;
    for (uint32_t i = 0; i < s->cfg.arp_entries; i++) {
        struct net_arp_entry *e = &s->arp[i];
        if (e->ip == 0)
            return e;
        bool stale =
            e->resolved ? e->expires_us <= now : now - e->requested_us >= NET_ARP_PENDING_US;
        if (stale && (best == NULL || e->expires_us < best->expires_us))
            best = e;
    }
    return best;
}

static void arp_learn(struct net_stack *s, struct net_arp_entry *e, uint32_t ip, const uint8_t *mac)
{
    e->ip = ip;
    memcpy(e->mac, mac, NET_ETH_ALEN);
    e->resolved = true;
    e->expires_us = s->now_us + s->cfg.arp_timeout_us;
}

static void arp_send(struct net_stack *s, uint16_t op, const uint8_t *eth_dst, const uint8_t *tha,
                     uint32_t tpa)
{
    uint8_t *f = net_eth_alloc(s, NET_ARP_LEN, eth_dst, NET_ETHERTYPE_ARP);
    if (f == NULL)
        return;
    uint8_t *a = f + NET_ETH_HLEN;
    net_wr16(a, 1);
    net_wr16(a + 2, NET_ETHERTYPE_IPV4);
    a[4] = NET_ETH_ALEN;
    a[5] = 4;
    net_wr16(a + 6, op);
    memcpy(a + 8, s->cfg.ifc.mac, NET_ETH_ALEN);
    net_wr32(a + 14, s->cfg.ifc.ip);
    memcpy(a + 18, tha, NET_ETH_ALEN);
    net_wr32(a + 24, tpa);
    net_eth_send(s, f, NET_ARP_LEN);
}

void net_arp_input(struct net_stack *s, const uint8_t *src_mac, const uint8_t *p, size_t len)
{
    (void)src_mac;
    if (unlikely(len < NET_ARP_LEN)) {
        net_drop(s, NET_DROP_ARP_SHORT);
        return;
    }
    uint16_t op = net_rd16(p + 6);
    if (net_rd16(p) != 1 || net_rd16(p + 2) != NET_ETHERTYPE_IPV4 || p[4] != NET_ETH_ALEN ||
        p[5] != 4 || (op != NET_ARP_REQUEST && op != NET_ARP_REPLY)) {
        net_drop(s, NET_DROP_ARP_FORMAT);
        return;
    }
    const uint8_t *sha = p + 8;
    uint32_t spa = net_rd32(p + 14);
    uint32_t tpa = net_rd32(p + 24);
    bool for_us = tpa == s->cfg.ifc.ip;
    bool learnable = spa != 0 && spa != s->cfg.ifc.ip && (sha[0] & 1) == 0;

    /* RFC 826 "merge": update a known sender even if the packet is not for
     * us; add it only when it is. */
    struct net_arp_entry *e = learnable ? arp_find(s, spa) : NULL;
    if (e != NULL)
        arp_learn(s, e, spa, sha);
    if (!for_us) {
        net_drop(s, NET_DROP_ARP_NOT_US);
        return;
    }
    s->stats.arp_rx++;
    if (e == NULL && learnable && (e = arp_slot(s, s->now_us)) != NULL)
        arp_learn(s, e, spa, sha);
    if (op == NET_ARP_REQUEST) {
        arp_send(s, NET_ARP_REPLY, sha, sha, spa);
        s->stats.arp_replies_tx++;
    }
}

int net_stack_arp_resolve(struct net_stack *s, uint32_t ip, uint64_t now_us,
                          uint8_t mac[NET_ETH_ALEN])
{
    static const uint8_t bcast[NET_ETH_ALEN] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t zero[NET_ETH_ALEN] = {0};
    const struct net_if_config *ifc = &s->cfg.ifc;
    uint32_t hop = ip;
    s->now_us = now_us;
    if (((ip ^ ifc->ip) & ifc->netmask) != 0) {
        if (ifc->gateway == 0)
            return -ENETUNREACH;
        hop = ifc->gateway;
    }
    struct net_arp_entry *e = arp_find(s, hop);
    if (e != NULL && e->resolved && e->expires_us > now_us) {
        memcpy(mac, e->mac, NET_ETH_ALEN);
        return 0;
    }
    if (e == NULL) {
        e = arp_slot(s, now_us);
        if (e == NULL)
            return -ENOBUFS;
        memset(e, 0, sizeof(*e));
        e->ip = hop;
    }
    if (e->resolved || e->requested_us == 0 || now_us - e->requested_us >= NET_ARP_RETRY_US) {
        e->resolved = false;
        e->requested_us = now_us;
        e->expires_us = 0;
        arp_send(s, NET_ARP_REQUEST, bcast, zero, hop);
        s->stats.arp_requests_tx++;
    }
    return -EAGAIN;
}
