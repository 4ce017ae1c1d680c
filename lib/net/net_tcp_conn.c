/* SPDX-License-Identifier: Apache-2.0 */
/* TCP connections: the per-lcore table (open addressing on the 4-tuple,
 * linear probing with backward-shift deletion, no tombstones), the
 * connection pool sized at create, the connection lifecycle and the calls
 * the application makes on a connection. */
#include <errno.h>

#include "net/net_internal.h"

static uint32_t conn_hash(const struct net_stack *s, uint32_t ip, uint16_t port, uint16_t lport)
{
    uint64_t k = ((uint64_t)ip << 32 | (uint64_t)port << 16 | lport) ^ s->hash_seed;
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return (uint32_t)k;
}

struct net_tcp_conn *net_tcp_lookup(struct net_stack *s, uint32_t ip, uint16_t port,
                                    uint16_t local_port)
{
    uint32_t i = conn_hash(s, ip, port, local_port) & s->table_mask;
    for (;;) {
        uint32_t v = s->table[i];
        if (v == 0)
            return NULL;
        struct net_tcp_conn *c = &s->conns[v - 1];
        if (c->peer_ip == ip && c->peer_port == port && c->local_port == local_port)
            return c;
        i = (i + 1) & s->table_mask;
    }
}

static void table_delete(struct net_stack *s, struct net_tcp_conn *c)
{
    uint32_t mask = s->table_mask;
    uint32_t i = conn_hash(s, c->peer_ip, c->peer_port, c->local_port) & mask;
    while (s->table[i] != c->index + 1)
        i = (i + 1) & mask;
    /* Backward shift: move later entries of the run into the hole unless
     * their home slot lies cyclically in (hole, j]. */
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        uint32_t v = s->table[j];
        if (v == 0)
            break;
        const struct net_tcp_conn *o = &s->conns[v - 1];
        uint32_t k = conn_hash(s, o->peer_ip, o->peer_port, o->local_port) & mask;
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays)
            continue;
        s->table[i] = v;
        i = j;
    }
    s->table[i] = 0;
}

struct net_tcp_conn *net_tcp_conn_new(struct net_stack *s, uint32_t ip, uint16_t port,
                                      uint16_t local_port)
{
    if (s->free_head == 0)
        return NULL;
    struct net_tcp_conn *c = &s->conns[s->free_head - 1];
    s->free_head = c->free_next;
    uint8_t *snd_buf = c->snd_buf;
    uint32_t index = c->index;
    memset(c, 0, sizeof(*c));
    c->snd_buf = snd_buf;
    c->index = index;
    c->s = s;
    net_dlist_init(&c->timer_link);
    c->peer_ip = ip;
    c->peer_port = port;
    c->local_port = local_port;
    c->rcv_space = s->cfg.rcv_space_bytes;
    c->rto_us = s->cfg.rto_initial_us;
    c->last_rx_us = s->now_us;

    uint32_t i = conn_hash(s, ip, port, local_port) & s->table_mask;
    while (s->table[i] != 0)
        i = (i + 1) & s->table_mask;
    s->table[i] = c->index + 1;
    s->n_conns++;
    s->stats.tcp_active = s->n_conns;
    return c;
}

void net_tcp_conn_release(struct net_stack *s, struct net_tcp_conn *c)
{
    if (c->state != NET_TCP_CLOSED || c->busy || c->s == NULL)
        return;
    net_timer_cancel(s, c);
    net_tcp_ooo_reset(s, c);
    table_delete(s, c);
    c->s = NULL; /* marks the pool entry free */
    c->free_next = s->free_head;
    s->free_head = c->index + 1;
    s->n_conns--;
    s->stats.tcp_active = s->n_conns;
    s->stats.tcp_closed++;
}

void net_tcp_conn_drop(struct net_stack *s, struct net_tcp_conn *c,
                       enum net_tcp_close_reason reason)
{
    if (c->state == NET_TCP_CLOSED)
        return;
    c->state = NET_TCP_CLOSED;
    if (!c->detached) {
        c->detached = true;
        c->busy++;
        s->app.on_closed(s->app_ctx, c, c->app, reason);
        c->busy--;
    }
    net_tcp_conn_release(s, c);
}

void net_tcp_conn_put(struct net_stack *s, struct net_tcp_conn *c)
{
    if (c->busy)
        return;
    if (c->state == NET_TCP_CLOSED)
        net_tcp_conn_release(s, c);
    else
        net_timer_sched(s, c);
}

/* RFC 9293 3.10.7.4: TIME_WAIT lasts 2 MSL there; we hold it for
 * cfg.time_wait_us (short): we never open connections, so the old
 * duplicates TIME_WAIT guards against could only hit a new connection
 * from the same peer port, whose cookie ISN differs. */
void net_tcp_enter_time_wait(struct net_stack *s, struct net_tcp_conn *c)
{
    c->state = NET_TCP_TIME_WAIT;
    c->rto_at = 0;
    c->delack_at = 0;
    c->idle_at = s->now_us + s->cfg.time_wait_us;
    net_tcp_ooo_reset(s, c);
}

/* ---- application calls ---- */

int net_tcp_send(struct net_tcp_conn *c, const void *data, size_t len)
{
    if (c == NULL || (data == NULL && len > 0))
        return -EINVAL;
    struct net_stack *s = c->s;
    if (s == NULL || c->detached || c->fin_queued ||
        (c->state != NET_TCP_ESTABLISHED && c->state != NET_TCP_CLOSE_WAIT))
        return -EPIPE;
    uint32_t cap = s->cfg.snd_buf_bytes;
    if (len > cap - c->snd_len)
        return -ENOBUFS;
    if (len == 0)
        return 0;
    uint32_t tail = (c->snd_head + c->snd_len) % cap;
    uint32_t first = BASE_MIN((uint32_t)len, cap - tail);
    memcpy(c->snd_buf + tail, data, first);
    memcpy(c->snd_buf, (const uint8_t *)data + first, len - first);
    c->snd_len += (uint32_t)len;
    net_tcp_output(s, c, false);
    net_tcp_conn_put(s, c);
    return 0;
}

void net_tcp_close(struct net_tcp_conn *c)
{
    if (c == NULL || c->s == NULL || c->detached)
        return;
    struct net_stack *s = c->s;
    c->detached = true;
    if (c->state == NET_TCP_ESTABLISHED)
        c->state = NET_TCP_FIN_WAIT_1;
    else if (c->state == NET_TCP_CLOSE_WAIT)
        c->state = NET_TCP_LAST_ACK;
    else
        return;
    c->fin_queued = true;
    c->app_at = 0;
    net_tcp_output(s, c, false);
    net_tcp_conn_put(s, c);
}

void net_tcp_abort(struct net_tcp_conn *c)
{
    if (c == NULL || c->s == NULL || c->detached || c->state == NET_TCP_CLOSED)
        return;
    struct net_stack *s = c->s;
    c->detached = true;
    net_tcp_send_rst(s, c);
    c->state = NET_TCP_CLOSED;
    net_tcp_conn_put(s, c);
}

void net_tcp_set_rcv_space(struct net_tcp_conn *c, uint32_t bytes)
{
    if (c == NULL || c->s == NULL || c->detached)
        return;
    struct net_stack *s = c->s;
    uint32_t old_wnd = c->rcv_adv - c->rcv_nxt;
    c->rcv_space = bytes;
    uint64_t max_wnd = (uint64_t)0xffff << c->rcv_wscale;
    uint32_t new_wnd = (uint32_t)BASE_MIN((uint64_t)bytes, max_wnd);
    new_wnd &= ~((1u << c->rcv_wscale) - 1);
    uint32_t cap = (uint32_t)BASE_MIN((uint64_t)BASE_MAX(s->cfg.rcv_space_bytes, bytes), max_wnd);
    uint32_t thresh = BASE_MIN((uint32_t)c->mss, cap / 2);
    if (c->state == NET_TCP_ESTABLISHED || c->state == NET_TCP_FIN_WAIT_1 ||
        c->state == NET_TCP_FIN_WAIT_2) {
        /* As Linux: only when the window left is at most half the largest,
         * and it opens by at least min(MSS, half of it). */
        if ((uint64_t)old_wnd * 2 <= cap && new_wnd > old_wnd && new_wnd - old_wnd >= thresh) {
            /* RFC 9293 3.8.6.2.2: window update once it opens by enough */
            if (c->busy)
                c->ack_now = true;
            else
                net_tcp_send_ack(s, c);
        }
    }
    net_tcp_conn_put(s, c);
}

void net_tcp_set_app_deadline(struct net_tcp_conn *c, uint64_t at_us)
{
    if (c == NULL || c->s == NULL || c->detached)
        return;
    c->app_at = at_us;
    net_tcp_conn_put(c->s, c);
}

enum net_tcp_state net_tcp_conn_state(const struct net_tcp_conn *c)
{
    return (enum net_tcp_state)c->state;
}

void net_tcp_conn_peer(const struct net_tcp_conn *c, uint32_t *ip, uint16_t *port)
{
    if (ip)
        *ip = c->peer_ip;
    if (port)
        *port = c->peer_port;
}

uint16_t net_tcp_conn_local_port(const struct net_tcp_conn *c)
{
    return c->local_port;
}

size_t net_tcp_conn_snd_queued(const struct net_tcp_conn *c)
{
    return c->snd_len;
}

size_t net_tcp_conn_snd_free(const struct net_tcp_conn *c)
{
    return c->s ? c->s->cfg.snd_buf_bytes - c->snd_len : 0;
}

const char *net_tcp_state_name(enum net_tcp_state st)
{
    static const char *const names[] = {
#define X(n, l) l,
        NET_TCP_STATES(X)
#undef X
    };
    return (unsigned)st < ARRAY_SIZE(names) ? names[st] : NULL;
}

const char *net_tcp_close_reason_name(enum net_tcp_close_reason r)
{
    static const char *const names[] = {
#define X(n, l) l,
        NET_TCP_CLOSE_REASONS(X)
#undef X
    };
    return (unsigned)r < ARRAY_SIZE(names) ? names[r] : NULL;
}
