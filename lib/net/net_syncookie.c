/* SPDX-License-Identifier: Apache-2.0 */
/* Stateless handshake: every SYN is answered with a SYN cookie as ISN, and a
 * connection is created only by the ACK that returns a valid one. A SYN
 * flood therefore never touches the connection table.
 *
 * Cookie (32 bits) = 7 bits (MSS index << 4 | peer window-scale code, XORed
 * with hash bits) << 25 | 25 check bits of the hash. The hash is SipHash-2-4
 * keyed with the per-process secret over the 4-tuple, the peer's ISN and a
 * 64-second time counter, so the ISN is a keyed hash as RFC 6528 asks and a
 * cookie is valid for 64 to 128 s. MSS is rounded down to a table entry;
 * SACK-permitted and timestamps are not kept (we do neither).
 * With net_config.replay_isn (benchmarks) the key is NET_REPLAY_ISN_KEY and
 * the clock stays at 0, so the ISN is a public function a pcap generator
 * reproduces (bench/otlp_traffic.py replay_isn()). */
#include "net/net_internal.h"

#define NET_COOKIE_TICK_SHIFT 26 /* 2^26 us = 67 s */
#define NET_COOKIE_CHECK_BITS 25
#define NET_COOKIE_CHECK_MASK ((1u << NET_COOKIE_CHECK_BITS) - 1)
#define NET_COOKIE_WS_NONE 15

static const uint16_t net_cookie_mss[8] = {536, 1200, 1360, 1400, 1440, 1460, 4312, 8960};

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rotl(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = rotl(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = rotl(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rotl(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rotl(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = rotl(v2, 32);                                                                         \
    } while (0)

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* SipHash-2-4 (Aumasson, Bernstein). */
uint64_t net_siphash(const uint64_t key[2], const uint8_t *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ull ^ key[0];
    uint64_t v1 = 0x646f72616e646f6dull ^ key[1];
    uint64_t v2 = 0x6c7967656e657261ull ^ key[0];
    uint64_t v3 = 0x7465646279746573ull ^ key[1];
    uint64_t b = (uint64_t)len << 56;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t m = le64(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; i + j < len; j++)
        b |= (uint64_t)in[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t cookie_hash(struct net_stack *s, const struct net_tcp_seg *g, uint32_t peer_isn,
                            uint64_t tick)
{
    uint8_t in[24];
    net_wr32(in, g->saddr);
    net_wr32(in + 4, s->cfg.ifc.ip);
    net_wr16(in + 8, g->sport);
    net_wr16(in + 10, g->dport);
    net_wr32(in + 12, peer_isn);
    net_wr32(in + 16, (uint32_t)(tick >> 32));
    net_wr32(in + 20, (uint32_t)tick);
    return net_siphash(s->sip_key, in, sizeof(in));
}

static inline uint64_t cookie_tick(const struct net_stack *s)
{
    return s->cfg.replay_isn ? 0 : s->now_us >> NET_COOKIE_TICK_SHIFT;
}

uint32_t net_syncookie_make(struct net_stack *s, const struct net_tcp_seg *g, uint16_t *mss,
                            int8_t wscale)
{
    uint16_t eff = g->opt_mss ? g->opt_mss : NET_TCP_DEFAULT_MSS;
    if (eff > s->our_mss)
        eff = s->our_mss;
    unsigned idx = 0;
    for (unsigned i = 1; i < ARRAY_SIZE(net_cookie_mss); i++)
        if (net_cookie_mss[i] <= eff)
            idx = i;
    *mss = net_cookie_mss[idx];
    unsigned ws = wscale < 0 ? NET_COOKIE_WS_NONE : (unsigned)wscale;
    uint64_t h = cookie_hash(s, g, g->seq, cookie_tick(s));
    uint32_t data = ((idx << 4 | ws) ^ (uint32_t)(h >> 57)) & 0x7f;
    return data << NET_COOKIE_CHECK_BITS | ((uint32_t)h & NET_COOKIE_CHECK_MASK);
}

int net_syncookie_check(struct net_stack *s, const struct net_tcp_seg *g, uint16_t *mss,
                        int8_t *wscale)
{
    uint32_t cookie = g->ack - 1;
    uint64_t tick = cookie_tick(s);
    for (unsigned age = 0; age < 2 && age <= tick; age++) {
        uint64_t h = cookie_hash(s, g, g->seq - 1, tick - age);
        if ((cookie & NET_COOKIE_CHECK_MASK) != ((uint32_t)h & NET_COOKIE_CHECK_MASK))
            continue;
        uint32_t data = ((cookie >> NET_COOKIE_CHECK_BITS) ^ (uint32_t)(h >> 57)) & 0x7f;
        unsigned ws = data & 0xf;
        *mss = net_cookie_mss[data >> 4];
        *wscale = ws == NET_COOKIE_WS_NONE ? -1 : (int8_t)(ws > 14 ? 14 : ws);
        return 0;
    }
    return -1;
}
