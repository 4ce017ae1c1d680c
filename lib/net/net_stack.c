/* SPDX-License-Identifier: Apache-2.0 */
/* The per-lcore stack object: configuration defaults and checks, the one
 * allocation at create (connections, table, send and reassembly buffers,
 * timer wheel, ARP cache), the receive entry point and the counters. */
#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include "net/net_internal.h"

void net_config_defaults(struct net_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->ifc.mtu = 1500;
    cfg->max_conns = 4096;
    cfg->snd_buf_bytes = 16384;
    cfg->rcv_space_bytes = 256 * 1024;
    cfg->rcv_wscale = 4;
    cfg->ooo_buf_bytes = 256 * 1024;
    cfg->ooo_bufs = 512;
    cfg->rto_initial_us = 1000000;
    cfg->rto_min_us = 200000;
    cfg->rto_max_us = 60000000;
    cfg->max_retries = 8;
    cfg->delack_us = 40000;
    cfg->time_wait_us = 2000000;
    cfg->fin_wait2_timeout_us = 30000000;
    cfg->keepalive_idle_us = 120000000;
    cfg->keepalive_intvl_us = 15000000;
    cfg->keepalive_probes = 4;
    cfg->timer_tick_us = 1000;
    cfg->arp_entries = 64;
    cfg->arp_timeout_us = 300000000;
}

static int config_check(const struct net_config *c)
{
    if (c->ifc.ip == 0 || c->ifc.mtu < 576 || c->ifc.mtu > 9000)
        return -EINVAL;
    if (c->n_listen_ports == 0 || c->n_listen_ports > NET_MAX_LISTEN_PORTS)
        return -EINVAL;
    for (unsigned i = 0; i < c->n_listen_ports; i++)
        if (c->listen_ports[i] == 0)
            return -EINVAL;
    if (c->max_conns == 0 || c->max_conns > (1u << 24))
        return -EINVAL;
    if (c->snd_buf_bytes == 0 || c->snd_buf_bytes > (1u << 30))
        return -EINVAL;
    if (c->rcv_space_bytes > (1u << 30) || c->rcv_wscale > 14)
        return -EINVAL;
    if (c->ooo_buf_bytes > (1u << 24) || (c->ooo_buf_bytes && c->ooo_bufs == 0))
        return -EINVAL;
    if (c->timer_tick_us == 0 || c->rto_min_us == 0 || c->rto_min_us > c->rto_max_us ||
        c->rto_initial_us < c->rto_min_us || c->rto_initial_us > c->rto_max_us)
        return -EINVAL;
    if (c->max_retries > 255 || c->keepalive_probes > 255 ||
        (c->keepalive_idle_us && c->keepalive_intvl_us == 0))
        return -EINVAL;
    if (c->arp_entries == 0 || c->arp_entries > 4096)
        return -EINVAL;
    return 0;
}

static uint32_t pow2_at_least(uint32_t v)
{
    uint32_t p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

int net_stack_create(const struct net_config *cfg, const struct net_tx_ops *tx, void *tx_ctx,
                     const struct net_app_ops *app, void *app_ctx, struct net_stack **out)
{
    if (cfg == NULL || tx == NULL || app == NULL || out == NULL || tx->alloc == NULL ||
        tx->send == NULL || app->on_accept == NULL || app->on_data == NULL ||
        app->on_closed == NULL)
        return -EINVAL;
    int rc = config_check(cfg);
    if (rc != 0)
        return rc;
    struct net_stack *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->cfg = *cfg;
    s->tx = *tx;
    s->tx_ctx = tx_ctx;
    s->app = *app;
    s->app_ctx = app_ctx;
    s->our_mss = (uint16_t)(cfg->ifc.mtu - NET_IPV4_HLEN - NET_TCP_HLEN);
    rc = -ENOMEM;

    uint8_t key[16];
    if (cfg->replay_isn) {
        memcpy(key, NET_REPLAY_ISN_KEY, sizeof(key));
    } else if (cfg->secret_set) {
        memcpy(key, cfg->secret, sizeof(key));
    } else if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
        rc = -EIO;
        goto fail;
    }
    memcpy(s->sip_key, key, sizeof(key));
    s->hash_seed = net_siphash(s->sip_key, (const uint8_t *)"net-conn-table", 14);

    uint32_t n = cfg->max_conns;
    s->conns = calloc(n, sizeof(*s->conns));
    s->table_mask = pow2_at_least(2 * n) - 1;
    s->table = calloc((size_t)s->table_mask + 1, sizeof(*s->table));
    s->snd_arena = malloc((size_t)n * cfg->snd_buf_bytes);
    s->wheel = calloc(NET_TIMER_SLOTS, sizeof(*s->wheel));
    s->arp = calloc(cfg->arp_entries, sizeof(*s->arp));
    if (!s->conns || !s->table || !s->snd_arena || !s->wheel || !s->arp)
        goto fail;
    if (cfg->ooo_buf_bytes) {
        s->ooo_buf_bytes = pow2_at_least(cfg->ooo_buf_bytes);
        s->ooo_arena = malloc((size_t)cfg->ooo_bufs * s->ooo_buf_bytes);
        s->ooo_free = calloc(cfg->ooo_bufs, sizeof(*s->ooo_free));
        if (!s->ooo_arena || !s->ooo_free)
            goto fail;
        for (uint32_t i = 0; i < cfg->ooo_bufs; i++)
            s->ooo_free[i] = cfg->ooo_bufs - 1 - i;
        s->ooo_free_n = cfg->ooo_bufs;
    }
    for (uint32_t i = 0; i < NET_TIMER_SLOTS; i++)
        net_dlist_init(&s->wheel[i]);
    for (uint32_t i = n; i-- > 0;) {
        struct net_tcp_conn *c = &s->conns[i];
        c->index = i;
        c->snd_buf = s->snd_arena + (size_t)i * cfg->snd_buf_bytes;
        net_dlist_init(&c->timer_link);
        c->free_next = s->free_head;
        s->free_head = i + 1;
    }
    *out = s;
    return 0;
fail:
    net_stack_destroy(s);
    return rc;
}

void net_stack_destroy(struct net_stack *s)
{
    if (s == NULL)
        return;
    if (s->conns != NULL) {
        for (uint32_t i = 0; i < s->cfg.max_conns; i++) {
            struct net_tcp_conn *c = &s->conns[i];
            if (c->s != NULL && !c->detached && c->state != NET_TCP_CLOSED) {
                c->detached = true;
                s->app.on_closed(s->app_ctx, c, c->app, NET_TCP_CLOSE_DESTROY);
            }
        }
    }
    free(s->conns);
    free(s->table);
    free(s->snd_arena);
    free(s->ooo_arena);
    free(s->ooo_free);
    free(s->wheel);
    free(s->arp);
    free(s);
}

void net_stack_input_flags(struct net_stack *s, const uint8_t *frame, size_t len, uint32_t rx_flags,
                           uint64_t now_us)
{
    s->now_us = now_us;
    s->rx_flags = rx_flags;
    s->stats.rx_frames++;
    net_eth_input(s, frame, len);
}

void net_stack_input(struct net_stack *s, const uint8_t *frame, size_t len, uint64_t now_us)
{
    net_stack_input_flags(s, frame, len, 0, now_us);
}

const struct net_stats *net_stack_stats(const struct net_stack *s)
{
    return &s->stats;
}

uint32_t net_stack_conn_count(const struct net_stack *s)
{
    return s->n_conns;
}

const char *net_drop_reason_name(enum net_drop_reason r)
{
    static const char *const names[] = {
#define X(n, l) l,
        NET_DROP_REASONS(X)
#undef X
    };
    return (unsigned)r < ARRAY_SIZE(names) ? names[r] : NULL;
}
