/* SPDX-License-Identifier: Apache-2.0 */
/* Private to lib/dpdk: the server and per-lcore worker structs shared by
 * dpdk_server.c (lcore loops, TCP glue), dpdk_port.c (EAL, pool, port) and
 * dpdk_metrics.c (port, lcore and stack metrics). */
#ifndef OTLP_DPDK_INTERNAL_H
#define OTLP_DPDK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "base/base.h"
#include "config/config.h"
#include "dpdk/dpdk_server.h"
#include "grpc/grpc_receiver.h"
#include "net/net_stack.h"
#include "receiver/receiver.h"
#include "tls/tls.h"

#define DPDK_BURST 32
#define DPDK_MAX_FRAME (9000 + NET_ETH_HLEN + 4) /* largest frame: mtu 9000 + VLAN */
#define DPDK_POOL_CACHE 256
#define DPDK_SCAN_MS 250  /* timeout scan */
#define DPDK_GRPC_SCAN_MS 50 /* gRPC timers: resume stalled clients this often */
#define DPDK_STATS_MS 1000 /* busy ratio window */
#define DPDK_TLS_BUF (16 * 1024 + 256) /* plaintext of one TLS record, per lcore */

/* Drops and events of the glue itself, beside the stack's net_stats:
 * X(name, metric reason label). Summed into otlp_net_drops_total. */
#define DPDK_DROP_REASONS(X)                                                                       \
    X(NIC_IP_CKSUM, "nic_ip_checksum")  /* the NIC marked the IPv4 checksum bad */                \
    X(NIC_L4_CKSUM, "nic_l4_checksum")  /* the NIC marked the TCP/UDP checksum bad */             \
    X(RX_TOO_LONG, "rx_too_long")       /* a chained frame beyond DPDK_MAX_FRAME */               \
    X(TX_FULL, "tx_ring_full")          /* the NIC did not take a frame: freed */                 \
    X(TX_TOO_LONG, "tx_too_long")       /* a frame larger than an mbuf (stack bug) */

enum dpdk_drop {
#define X(n, l) DPDK_DROP_##n,
    DPDK_DROP_REASONS(X)
#undef X
    DPDK_DROP_COUNT
};

/* One client connection of a worker: the receiver's state (OTLP/HTTP or,
 * accepted on receiver.grpc_port, OTLP/gRPC) plus the response bytes the
 * TCP send buffer could not take yet. */
struct dpdk_conn {
    struct net_tcp_conn *tc; /* NULL: slot free */
    bool grpc;               /* `gc` is live, else `rc` */
    union {
        struct receiver_conn rc;
        struct grpc_conn gc;
    };
    struct buf out;          /* kept across connections: no malloc per request */
    size_t out_off;
    /* receiver.tls: `out` holds TLS records up to `sealed` and plaintext the
     * receivers appended after it, encrypted by conn_flush(); tls.ssl NULL:
     * plain TCP. */
    struct tls_conn tls;
    size_t sealed;
    uint64_t last_active_ms;
    uint64_t accepted_ms;    /* TLS handshake deadline: request_timeout_ms from here */
    bool want_close;         /* close once `out` is sent */
    bool pending;            /* on the worker's pending list */
    bool throttled;          /* receive window closed: the pipeline is full (HTTP only) */
    uint64_t throttled_ms;   /* when the window closed (throttled) */
    struct dpdk_conn *next_free;
    struct dpdk_conn *next_pending;
    struct dpdk_conn *grpc_prev, *grpc_next; /* the worker's gRPC connections */
};

/* Per-lcore counters read by the scraper: plain relaxed stores. */
struct dpdk_worker_stats {
    uint64_t polls;
    uint64_t busy_ratio_bits; /* double, last DPDK_STATS_MS window */
    uint64_t drops[DPDK_DROP_COUNT];
    uint64_t conns;           /* application connections (gauge) */
    uint64_t accepted, refused, timeouts, throttles;
};

struct dpdk_worker {
    _Alignas(BASE_CACHE_LINE) struct dpdk_server *s;
    unsigned id;    /* worker index = queue id = registry shard */
    unsigned lcore; /* EAL lcore id */
    bool launched;
    struct net_stack *stack;
    struct receiver_worker *rw;
    struct grpc_worker *gw;     /* NULL: no gRPC */
    struct tls_worker *tw;      /* NULL: plain TCP */
    uint8_t *tls_buf;           /* DPDK_TLS_BUF: decrypted bytes on their way to a receiver */
    struct dpdk_conn *conns;
    struct dpdk_conn *grpc_conns; /* gRPC connections, for the 50 ms timer scan */
    unsigned n_grpc;
    struct dpdk_conn *free_list;
    struct dpdk_conn *pending; /* connections with unsent response bytes */
    unsigned n_conns, max_conns, n_throttled;
    struct rte_mbuf *tx[DPDK_BURST];
    unsigned n_tx;
    uint8_t *scratch; /* linearised chained frames */
    uint64_t now_ms;
    struct dpdk_worker_stats st;
};

struct dpdk_server {
    const struct svc_config *cfg;
    struct receiver *r;
    struct grpc_receiver *gr; /* NULL: receiver.grpc_port is 0 */
    struct tls_ctx *tls;      /* NULL: plain TCP */
    struct pipeline *p;
    struct obs_registry *reg;
    unsigned n_workers;
    uint16_t port;      /* DPDK port id */
    uint16_t grpc_port; /* TCP port of OTLP/gRPC (when gr) */
    bool eal_ready, port_started, port_open;
    struct rte_mempool *pool;
    struct rte_ether_addr mac;
    bool rx_cksum; /* the port verifies IPv4 and TCP checksums */
    uint64_t tsc_hz;
    _Atomic int stopping;
    _Atomic uint64_t deadline_ms;
    bool stopped;
    struct dpdk_worker *workers;
    /* Metrics. The mutex orders scrapes (rte_eth_stats_get) against stop. */
    pthread_mutex_t stats_lock;
    struct rte_eth_stats last_stats; /* kept after the port is closed */
    int link_up;
    uint32_t m_conns, m_accepted, m_refused, m_timeouts;
    void *metric_args; /* dpdk_metrics.c */
};

/* dpdk_port.c */
bool dpdk_eal_ready(void);
int dpdk_port_init(struct dpdk_server *s);
void dpdk_port_close(struct dpdk_server *s);

/* dpdk_metrics.c */
int dpdk_metrics_register(struct dpdk_server *s);
void dpdk_metrics_free(struct dpdk_server *s);

static inline void dpdk_stat_add(uint64_t *p, uint64_t n)
{
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline uint64_t dpdk_stat_read(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

#endif
