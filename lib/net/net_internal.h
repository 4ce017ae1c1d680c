/* SPDX-License-Identifier: Apache-2.0 */
/* Private to lib/net: the per-lcore stack struct, the connection struct and
 * the functions the layers call on each other. */
#ifndef OTLP_NET_INTERNAL_H
#define OTLP_NET_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "base/base.h"
#include "net/net_stack.h"

#define NET_TIMER_SLOTS 1024u   /* timer wheel slots (power of two) */
#define NET_TCP_OOO_RANGES 8    /* disjoint out-of-order ranges per connection */
#define NET_TCP_DEFAULT_MSS 536 /* RFC 9293 3.7.1 when the peer sends none */

#define NET_TCP_FIN 0x01
#define NET_TCP_SYN 0x02
#define NET_TCP_RST 0x04
#define NET_TCP_PSH 0x08
#define NET_TCP_ACK 0x10

/* Sequence number comparisons modulo 2^32 (RFC 9293 3.4). */
#define SEQ_LT(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) < 0)
#define SEQ_LEQ(a, b) ((int32_t)((uint32_t)(a) - (uint32_t)(b)) <= 0)
#define SEQ_GT(a, b) SEQ_LT(b, a)
#define SEQ_GEQ(a, b) SEQ_LEQ(b, a)

static inline uint16_t net_rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t net_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void net_wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void net_wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Intrusive circular list with a sentinel head. */
struct net_dlist {
    struct net_dlist *prev, *next;
};
static inline void net_dlist_init(struct net_dlist *l)
{
    l->prev = l->next = l;
}
static inline bool net_dlist_empty(const struct net_dlist *l)
{
    return l->next == l;
}
static inline void net_dlist_del(struct net_dlist *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    net_dlist_init(e);
}
static inline void net_dlist_add_tail(struct net_dlist *head, struct net_dlist *e)
{
    e->prev = head->prev;
    e->next = head;
    head->prev->next = e;
    head->prev = e;
}

struct net_arp_entry {
    uint32_t ip; /* 0: free */
    uint8_t mac[NET_ETH_ALEN];
    bool resolved;
    uint64_t expires_us;   /* resolved: stale after this */
    uint64_t requested_us; /* last request we sent */
};

struct net_tcp_ooo_range {
    uint32_t start, end; /* [start, end) in sequence space */
};

struct net_tcp_conn {
    struct net_dlist timer_link; /* in a wheel slot while timer_at != 0 */
    uint64_t timer_at;           /* earliest of the deadlines below (0: none) */
    uint64_t rto_at;             /* retransmission / persist */
    uint64_t delack_at;
    uint64_t idle_at; /* keepalive, FIN_WAIT_2 or TIME_WAIT expiry */
    uint64_t app_at;  /* application deadline */
    struct net_stack *s;
    void *app;
    uint32_t peer_ip;
    uint16_t peer_port;
    uint16_t local_port;
    uint8_t peer_mac[NET_ETH_ALEN];
    uint8_t state;       /* enum net_tcp_state */
    bool detached;       /* the application closed or aborted it */
    uint8_t busy;        /* the stack is inside a call on it: defer the release */
    bool ack_now;        /* send an ACK before returning */
    uint8_t ack_pending; /* in-order segments not yet acknowledged */
    bool fin_queued;     /* we close: FIN after the send buffer */
    bool fin_acked;      /* our FIN was acknowledged */
    bool fin_ooo;        /* peer FIN seen out of order at fin_ooo_seq */
    bool rtt_active;
    uint8_t snd_wscale, rcv_wscale;
    uint8_t retries, ka_probes;
    uint16_t mss;   /* effective send MSS */
    uint32_t index; /* in s->conns */
    uint32_t free_next;

    /* RFC 9293 3.3.1 send sequence variables; snd_max: highest sent */
    uint32_t snd_una, snd_nxt, snd_max, snd_wnd, snd_wl1, snd_wl2, max_snd_wnd, iss;
    uint32_t cwnd, ssthresh;
    /* receive sequence variables; rcv_adv: right edge we advertised */
    uint32_t rcv_nxt, rcv_adv, irs, rcv_space, fin_ooo_seq;

    uint8_t *snd_buf;  /* ring of s->cfg.snd_buf_bytes */
    uint32_t snd_head; /* ring index of the byte at snd_una */
    uint32_t snd_len;  /* bytes from snd_una: unacked + unsent (FIN not included) */

    uint32_t rtt_seq;
    uint64_t rtt_start_us;
    uint64_t srtt_us, rttvar_us, rto_us;
    bool srtt_valid;
    uint64_t last_rx_us;

    uint8_t *ooo_buf; /* from the shared pool while ranges are held */
    uint32_t ooo_slot;
    uint32_t n_ooo;
    struct net_tcp_ooo_range ooo[NET_TCP_OOO_RANGES];
};

struct net_stack {
    struct net_config cfg;
    struct net_tx_ops tx;
    void *tx_ctx;
    struct net_app_ops app;
    void *app_ctx;
    struct net_stats stats;
    uint64_t sip_key[2]; /* SipHash key for cookies / ISNs */
    uint64_t hash_seed;  /* connection table hash */
    uint16_t ip_id;
    uint16_t our_mss;
    uint32_t rx_flags; /* of the frame being processed */
    uint64_t now_us;   /* of the call being processed */

    struct net_arp_entry *arp;

    struct net_tcp_conn *conns;
    uint32_t free_head; /* index + 1, 0: none */
    uint32_t n_conns;
    uint32_t *table; /* conn index + 1, 0: empty; linear probing */
    uint32_t table_mask;
    uint8_t *snd_arena;
    uint8_t *ooo_arena;
    uint32_t ooo_buf_bytes;
    uint32_t *ooo_free; /* stack of free reassembly slots */
    uint32_t ooo_free_n;

    struct net_dlist *wheel;
    uint64_t wheel_tick; /* next tick to run */
};

/* Parsed TCP segment, sequence space as on the wire. */
struct net_tcp_seg {
    const uint8_t *src_mac;
    uint32_t saddr;
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint16_t wnd;
    uint8_t flags;
    const uint8_t *data;
    uint32_t len;
    /* options, parsed on SYN only */
    uint16_t opt_mss;  /* 0: absent */
    int8_t opt_wscale; /* -1: absent */
};

static inline void net_drop(struct net_stack *s, enum net_drop_reason r)
{
    s->stats.drops[r]++;
}

/* net_cksum.c: Internet checksum (RFC 1071). */
uint32_t net_cksum_add(uint32_t sum, const uint8_t *p, size_t len);
uint16_t net_cksum_fold(uint32_t sum);
uint32_t net_cksum_pseudo(uint32_t src, uint32_t dst, uint8_t proto, uint16_t len);

/* net_eth.c */
void net_eth_input(struct net_stack *s, const uint8_t *frame, size_t len);
uint8_t *net_eth_alloc(struct net_stack *s, size_t l3_len, const uint8_t dst[NET_ETH_ALEN],
                       uint16_t type);
void net_eth_send(struct net_stack *s, uint8_t *frame, size_t l3_len);

/* net_arp.c */
void net_arp_input(struct net_stack *s, const uint8_t *src_mac, const uint8_t *p, size_t len);

/* net_ipv4.c */
void net_ipv4_input(struct net_stack *s, const uint8_t *src_mac, const uint8_t *p, size_t len);
/* Write a 20-byte IPv4 header (DF, TTL 64) for `payload_len` bytes. */
void net_ipv4_write(struct net_stack *s, uint8_t *ip, uint32_t dst, uint8_t proto,
                    uint16_t payload_len);

/* net_icmp.c */
void net_icmp_input(struct net_stack *s, const uint8_t *src_mac, uint32_t saddr, const uint8_t *p,
                    size_t len);

/* net_tcp_in.c */
void net_tcp_input(struct net_stack *s, const uint8_t *src_mac, uint32_t saddr, const uint8_t *p,
                   size_t len);

/* net_tcp_out.c */
void net_tcp_output(struct net_stack *s, struct net_tcp_conn *c, bool probe);
void net_tcp_send_ack(struct net_stack *s, struct net_tcp_conn *c);
void net_tcp_send_rst(struct net_stack *s, struct net_tcp_conn *c);
void net_tcp_send_keepalive(struct net_stack *s, struct net_tcp_conn *c);
/* RST in answer to a segment without a connection (RFC 9293 3.10.7.1). */
void net_tcp_reply_rst(struct net_stack *s, const struct net_tcp_seg *g);
void net_tcp_send_synack(struct net_stack *s, const struct net_tcp_seg *g, uint32_t iss,
                         uint16_t mss, int8_t wscale);
uint16_t net_tcp_rcv_wnd_field(struct net_stack *s, struct net_tcp_conn *c);
void net_tcp_rto_expired(struct net_stack *s, struct net_tcp_conn *c);
void net_tcp_update_rtt(struct net_stack *s, struct net_tcp_conn *c, uint64_t rtt_us);

/* net_tcp_conn.c */
struct net_tcp_conn *net_tcp_lookup(struct net_stack *s, uint32_t ip, uint16_t port,
                                    uint16_t local_port);
struct net_tcp_conn *net_tcp_conn_new(struct net_stack *s, uint32_t ip, uint16_t port,
                                      uint16_t local_port);
/* End the connection: state CLOSED, on_closed when still attached, release
 * now or when the outermost call on it returns. */
void net_tcp_conn_drop(struct net_stack *s, struct net_tcp_conn *c,
                       enum net_tcp_close_reason reason);
/* Release a CLOSED connection unless busy. */
void net_tcp_conn_release(struct net_stack *s, struct net_tcp_conn *c);
/* Leave a top-level call on c: release if closed, else reschedule timers. */
void net_tcp_conn_put(struct net_stack *s, struct net_tcp_conn *c);
void net_tcp_enter_time_wait(struct net_stack *s, struct net_tcp_conn *c);

/* net_tcp_ooo.c */
/* Store out-of-order bytes [seq, seq+len). Returns 0 or the drop reason. */
int net_tcp_ooo_insert(struct net_stack *s, struct net_tcp_conn *c, uint32_t seq,
                       const uint8_t *data, uint32_t len);
/* Deliver held bytes that became in order (advances rcv_nxt). */
void net_tcp_ooo_pull(struct net_stack *s, struct net_tcp_conn *c);
void net_tcp_ooo_reset(struct net_stack *s, struct net_tcp_conn *c);
/* Hand in-order bytes to the application (rcv_nxt already advanced). */
void net_tcp_deliver(struct net_stack *s, struct net_tcp_conn *c, const uint8_t *data,
                     uint32_t len);

/* net_tcp_timer.c */
void net_timer_sched(struct net_stack *s, struct net_tcp_conn *c);
void net_timer_cancel(struct net_stack *s, struct net_tcp_conn *c);

/* net_syncookie.c */
uint64_t net_siphash(const uint64_t key[2], const uint8_t *in, size_t len);
/* ISN for a SYN: the cookie encoding mss index and peer wscale. */
uint32_t net_syncookie_make(struct net_stack *s, const struct net_tcp_seg *g, uint16_t *mss,
                            int8_t wscale);
/* Check the ACK completing a handshake; 0 and the decoded mss / wscale
 * (-1: none) or -1 when invalid. */
int net_syncookie_check(struct net_stack *s, const struct net_tcp_seg *g, uint16_t *mss,
                        int8_t *wscale);

#endif
