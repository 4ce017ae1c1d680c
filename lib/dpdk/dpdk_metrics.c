/* SPDX-License-Identifier: Apache-2.0 */
/* /metrics of the DPDK data plane, computed at scrape time: port counters
 * (rte_eth_stats_get), link state, per-lcore busy ratio and polls, the
 * stack's drop counters per reason summed over lcores, TCP connections,
 * mbufs in use and hugepage memory. Per-lcore values are plain stores by
 * the lcore, read tolerantly here. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_mempool.h>

#include "dpdk/dpdk_internal.h"
#include "obs/metrics.h"

enum port_stat { PS_IPACKETS, PS_OPACKETS, PS_IMISSED, PS_IERRORS, PS_OERRORS, PS_NOMBUF };

/* One function argument per series: the server plus what to read. */
struct metric_arg {
    struct dpdk_server *s;
    unsigned what; /* enum port_stat, worker index or drop reason */
};

struct metric_args {
    unsigned n;
    struct metric_arg a[];
};

static struct metric_arg *arg_new(struct dpdk_server *s, unsigned what)
{
    struct metric_args *m = s->metric_args;
    struct metric_arg *a = &m->a[m->n++];
    a->s = s;
    a->what = what;
    return a;
}

static double port_stat_fn(void *arg)
{
    const struct metric_arg *a = arg;
    struct dpdk_server *s = a->s;
    pthread_mutex_lock(&s->stats_lock);
    if (s->port_open)
        rte_eth_stats_get(s->port, &s->last_stats);
    const struct rte_eth_stats *st = &s->last_stats;
    uint64_t v = 0;
    switch ((enum port_stat)a->what) {
    case PS_IPACKETS: v = st->ipackets; break;
    case PS_OPACKETS: v = st->opackets; break;
    case PS_IMISSED: v = st->imissed; break;
    case PS_IERRORS: v = st->ierrors; break;
    case PS_OERRORS: v = st->oerrors; break;
    case PS_NOMBUF: v = st->rx_nombuf; break;
    }
    pthread_mutex_unlock(&s->stats_lock);
    return (double)v;
}

static double link_up_fn(void *arg)
{
    const struct metric_arg *a = arg;
    struct dpdk_server *s = a->s;
    pthread_mutex_lock(&s->stats_lock);
    if (s->port_open) {
        struct rte_eth_link link;
        memset(&link, 0, sizeof(link));
        if (rte_eth_link_get_nowait(s->port, &link) == 0)
            s->link_up = link.link_status ? 1 : 0;
    }
    int up = s->link_up;
    pthread_mutex_unlock(&s->stats_lock);
    return up;
}

static double busy_ratio_fn(void *arg)
{
    const struct metric_arg *a = arg;
    uint64_t bits = dpdk_stat_read(&a->s->workers[a->what].st.busy_ratio_bits);
    double v;
    memcpy(&v, &bits, sizeof(v));
    return v;
}

static double polls_fn(void *arg)
{
    const struct metric_arg *a = arg;
    return (double)dpdk_stat_read(&a->s->workers[a->what].st.polls);
}

/* Stack drop reasons first, then the glue's own (DPDK_DROP_REASONS). */
static double drops_fn(void *arg)
{
    const struct metric_arg *a = arg;
    uint64_t v = 0;
    for (unsigned i = 0; i < a->s->n_workers; i++) {
        const struct dpdk_worker *w = &a->s->workers[i];
        if (a->what < NET_DROP_COUNT) {
            if (w->stack != NULL)
                v += __atomic_load_n(&net_stack_stats(w->stack)->drops[a->what],
                                     __ATOMIC_RELAXED);
        } else {
            v += dpdk_stat_read(&w->st.drops[a->what - NET_DROP_COUNT]);
        }
    }
    return (double)v;
}

/* The stack's event counters (NET_COUNTERS), summed over lcores; `what`
 * is the byte offset of the counter in struct net_stats. */
static double events_fn(void *arg)
{
    const struct metric_arg *a = arg;
    uint64_t v = 0;
    for (unsigned i = 0; i < a->s->n_workers; i++) {
        const struct dpdk_worker *w = &a->s->workers[i];
        if (w->stack != NULL)
            v += __atomic_load_n((const uint64_t *)((const char *)net_stack_stats(w->stack) +
                                                    a->what),
                                 __ATOMIC_RELAXED);
    }
    return (double)v;
}

/* TCP connections in the stack's table (all states, TIME_WAIT included). */
static double tcp_conns_fn(void *arg)
{
    const struct metric_arg *a = arg;
    const struct dpdk_worker *w = &a->s->workers[a->what];
    if (w->stack == NULL)
        return 0;
    return (double)__atomic_load_n(&net_stack_stats(w->stack)->tcp_active, __ATOMIC_RELAXED);
}

static double throttles_fn(void *arg)
{
    const struct metric_arg *a = arg;
    uint64_t v = 0;
    for (unsigned i = 0; i < a->s->n_workers; i++)
        v += dpdk_stat_read(&a->s->workers[i].st.throttles);
    return (double)v;
}

static double mbuf_in_use_fn(void *arg)
{
    const struct metric_arg *a = arg;
    return a->s->pool != NULL ? (double)rte_mempool_in_use_count(a->s->pool) : 0;
}

static double mbuf_total_fn(void *arg)
{
    const struct metric_arg *a = arg;
    return a->s->pool != NULL ? (double)a->s->pool->size : 0;
}

static double hugepages_used_fn(void *arg)
{
    (void)arg;
    double total = 0;
    for (unsigned sock = 0; sock < rte_socket_count(); sock++) {
        struct rte_malloc_socket_stats st;
        if (rte_malloc_get_socket_stats(rte_socket_id_by_idx(sock), &st) == 0)
            total += (double)st.heap_allocsz_bytes;
    }
    return total;
}

int dpdk_metrics_register(struct dpdk_server *s)
{
    unsigned cap = 64 + 3 * s->n_workers + NET_DROP_COUNT + DPDK_DROP_COUNT;
    struct metric_args *m = calloc(1, sizeof(*m) + cap * sizeof(m->a[0]));
    if (m == NULL)
        return -ENOMEM;
    s->metric_args = m;
    struct obs_registry *reg = s->reg;
    char lbl[96];
    int rc = 0;

    static const struct {
        const char *name, *help;
        enum port_stat what;
    } port_stats[] = {
        {"otlp_port_rx_packets_total", "Packets received by the port", PS_IPACKETS},
        {"otlp_port_tx_packets_total", "Packets sent by the port", PS_OPACKETS},
        {"otlp_port_rx_missed_total", "Packets the port dropped: rx queues full (imissed)",
         PS_IMISSED},
        {"otlp_port_rx_errors_total", "Erroneous packets received (ierrors)", PS_IERRORS},
        {"otlp_port_tx_errors_total", "Packets the port failed to send (oerrors)", PS_OERRORS},
        {"otlp_port_rx_nombuf_total", "Receive failures for lack of an mbuf (rx_nombuf)",
         PS_NOMBUF},
    };
    snprintf(lbl, sizeof(lbl), "port=\"%u\"", s->port);
    for (unsigned i = 0; i < ARRAY_SIZE(port_stats) && rc == 0; i++)
        rc = obs_counter_func_register(reg, port_stats[i].name, port_stats[i].help, lbl,
                                       port_stat_fn, arg_new(s, port_stats[i].what));
    if (rc == 0)
        rc = obs_gauge_func_register(reg, "otlp_port_link_up", "1 when the port's link is up",
                                     lbl, link_up_fn, arg_new(s, 0));
    for (unsigned i = 0; i < s->n_workers && rc == 0; i++) {
        snprintf(lbl, sizeof(lbl), "lcore=\"%u\",worker=\"%u\"", s->workers[i].lcore, i);
        rc = obs_gauge_func_register(reg, "otlp_lcore_busy_ratio",
                                     "Share of TSC cycles in loop iterations that did work "
                                     "(received or sent packets), over the last second",
                                     lbl, busy_ratio_fn, arg_new(s, i));
        if (rc == 0)
            rc = obs_counter_func_register(reg, "otlp_lcore_polls_total",
                                           "Poll loop iterations of the lcore", lbl, polls_fn,
                                           arg_new(s, i));
        if (rc == 0)
            rc = obs_gauge_func_register(reg, "otlp_tcp_connections",
                                         "TCP connections in the lcore's table, all states "
                                         "(TIME_WAIT included)",
                                         lbl, tcp_conns_fn, arg_new(s, i));
    }
    for (unsigned r = 0; r < NET_DROP_COUNT + DPDK_DROP_COUNT && rc == 0; r++) {
        static const char *const glue[] = {
#define X(n, l) l,
            DPDK_DROP_REASONS(X)
#undef X
        };
        const char *name = r < NET_DROP_COUNT ? net_drop_reason_name((enum net_drop_reason)r)
                                              : glue[r - NET_DROP_COUNT];
        snprintf(lbl, sizeof(lbl), "reason=\"%s\"", name);
        rc = obs_counter_func_register(reg, "otlp_net_drops_total",
                                       "Frames dropped by the userspace stack or the DPDK "
                                       "glue, per reason, summed over lcores",
                                       lbl, drops_fn, arg_new(s, r));
    }
    static const struct {
        const char *label;
        size_t offset;
    } events[] = {
#define X(n, l) {l, offsetof(struct net_stats, n)},
        NET_COUNTERS(X)
#undef X
    };
    for (unsigned e = 0; e < ARRAY_SIZE(events) && rc == 0; e++) {
        if (strcmp(events[e].label, "tcp_active") == 0)
            continue; /* a gauge: otlp_tcp_connections */
        snprintf(lbl, sizeof(lbl), "event=\"%s\"", events[e].label);
        rc = obs_counter_func_register(reg, "otlp_net_events_total",
                                       "Events of the userspace TCP/IP stack (frames, ARP, "
                                       "ICMP, handshakes, retransmissions...), summed over "
                                       "lcores",
                                       lbl, events_fn, arg_new(s, (unsigned)events[e].offset));
    }
    if (rc == 0)
        rc = obs_counter_func_register(reg, "otlp_tcp_window_closed_total",
                                       "Times a connection's receive window was closed "
                                       "because the export queue or batch pool was full",
                                       "", throttles_fn, arg_new(s, 0));
    if (rc == 0)
        rc = obs_gauge_func_register(reg, "otlp_mbuf_in_use", "Packet buffers taken from the pool",
                                     "", mbuf_in_use_fn, arg_new(s, 0));
    if (rc == 0)
        rc = obs_gauge_func_register(reg, "otlp_mbuf_capacity", "Packet buffers in the pool", "",
                                     mbuf_total_fn, arg_new(s, 0));
    if (rc == 0)
        rc = obs_gauge_func_register(reg, "otlp_hugepages_used_bytes",
                                     "DPDK heap memory allocated (hugepages, or anonymous "
                                     "memory with --no-huge)",
                                     "", hugepages_used_fn, arg_new(s, 0));
    return rc;
}

void dpdk_metrics_free(struct dpdk_server *s)
{
    free(s->metric_args);
    s->metric_args = NULL;
}
