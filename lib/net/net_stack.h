/* SPDX-License-Identifier: Apache-2.0 */
/* The userspace TCP/IP stack of one worker lcore: Ethernet, ARP, IPv4,
 * ICMP echo and server-side TCP, with all state in one struct sized at
 * create. Pure C without DPDK: the caller passes received frames and the
 * current time, frames go out through struct net_tx_ops. No clock reads,
 * no allocation after net_stack_create(). */
#ifndef OTLP_NET_STACK_H
#define OTLP_NET_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/net_pkt.h"
#include "net/net_stats.h"
#include "net/net_tcp.h"

#define NET_MAX_LISTEN_PORTS 8

struct net_stack;

/* Our interface. Addresses in host byte order. */
struct net_if_config {
    uint8_t mac[NET_ETH_ALEN];
    uint32_t ip;
    uint32_t netmask;
    uint32_t gateway; /* 0: no gateway (only the local subnet is reachable) */
    uint16_t mtu;     /* IP MTU, 576..9000; our MSS is mtu - 40 */
};

struct net_config {
    struct net_if_config ifc;
    uint16_t listen_ports[NET_MAX_LISTEN_PORTS];
    unsigned n_listen_ports;

    uint32_t max_conns;       /* connection table size, 1..2^24 */
    uint32_t snd_buf_bytes;   /* per-connection send buffer */
    uint32_t rcv_space_bytes; /* initial receive budget (window) per connection */
    uint8_t rcv_wscale;       /* our window scale shift, 0..14 */
    uint32_t ooo_buf_bytes;   /* reassembly buffer per connection, rounded up to a
                                 power of two; 0 drops out-of-order data */
    uint32_t ooo_bufs;        /* reassembly buffers shared by all connections */

    uint64_t rto_initial_us; /* RFC 6298 2.1: 1 s */
    uint64_t rto_min_us;     /* RFC 6298 2.4 says 1 s; 200 ms as Linux */
    uint64_t rto_max_us;
    unsigned max_retries;  /* RTO expiries in a row before abort (RST) */
    uint64_t delack_us;    /* delayed ACK; every 2nd segment is acked at once */
    uint64_t time_wait_us; /* TIME_WAIT duration (short: we never reconnect) */
    uint64_t fin_wait2_timeout_us;
    uint64_t keepalive_idle_us; /* 0 disables keepalive */
    uint64_t keepalive_intvl_us;
    unsigned keepalive_probes;
    uint64_t timer_tick_us; /* timer wheel granularity */

    uint32_t arp_entries;
    uint64_t arp_timeout_us;

    bool tx_cksum_offload; /* leave IPv4 checksum 0 and put the pseudo-header sum
                              into the TCP checksum, for NIC offload */
    bool secret_set;       /* use `secret` (all lcores must share it) */
    uint8_t secret[16];    /* SYN cookie / ISN key (RFC 6528); random if unset */
    /* BENCHMARK ONLY, INSECURE: the ISN becomes a fixed public function
     * (the SYN cookie keyed with NET_REPLAY_ISN_KEY, its clock stopped at 0)
     * so a recorded pcap of complete conversations can be replayed; and a
     * SYN for a 4-tuple that still has a connection (any state) replaces it,
     * so the same conversations can be replayed again. Anyone can then
     * complete a handshake without seeing the SYN-ACK. Overrides `secret`. */
    bool replay_isn;
};

/* The public key of replay_isn (bench/otlp_traffic.py has the same bytes). */
#define NET_REPLAY_ISN_KEY "otlp-replay-isn!"


/* Fill `cfg` with defaults (no address, no port). */
void net_config_defaults(struct net_config *cfg);

/*
 * Create a stack. Copies cfg, tx and app; borrows tx_ctx and app_ctx for its
 * lifetime. When cfg->secret_set is false a random key is read once
 * (getrandom); lcores of one process must share the key, so the glue reads
 * it once and sets it in every lcore's config.
 * Returns 0 and *out, or
 *   -EINVAL  a NULL argument, no address or port, a value out of range,
 *   -ENOMEM  allocation failed,
 *   -EIO     no randomness available for the key.
 */
int net_stack_create(const struct net_config *cfg, const struct net_tx_ops *tx, void *tx_ctx,
                     const struct net_app_ops *app, void *app_ctx, struct net_stack **out);

/* Release everything. Connections the application still holds get
 * on_closed(NET_TCP_CLOSE_DESTROY); nothing is sent. NULL is a no-op. */
void net_stack_destroy(struct net_stack *s);

/*
 * Process one received Ethernet frame (borrowed until return). Replies,
 * ACKs and application responses are sent through net_tx_ops from inside.
 * Every frame not used is counted in net_stats.drops.
 */
void net_stack_input(struct net_stack *s, const uint8_t *frame, size_t len, uint64_t now_us);

/* Same, with NET_RX_* checksum flags from the NIC. */
void net_stack_input_flags(struct net_stack *s, const uint8_t *frame, size_t len, uint32_t rx_flags,
                           uint64_t now_us);

/* Run expired timers (retransmission, delayed ACK, keepalive, TIME_WAIT,
 * application deadlines). Call every loop iteration or at least every
 * timer_tick_us; time must not go backwards. */
void net_stack_timers(struct net_stack *s, uint64_t now_us);

/*
 * Link-layer address of the next hop towards `ip` (itself on our subnet,
 * else the gateway). Returns 0 and mac, or
 *   -EAGAIN       not resolved yet; an ARP request was sent (at most one per
 *                 second per address),
 *   -ENETUNREACH  off-subnet and no gateway,
 *   -ENOBUFS      the ARP cache is full of pending entries.
 * TCP replies do not need this: they go to the source MAC of the peer's
 * latest segment (see docs in net_arp.c).
 */
int net_stack_arp_resolve(struct net_stack *s, uint32_t ip, uint64_t now_us,
                          uint8_t mac[NET_ETH_ALEN]);

const struct net_stats *net_stack_stats(const struct net_stack *s);
/* Connections in the table (all states). */
uint32_t net_stack_conn_count(const struct net_stack *s);

#endif
