/* SPDX-License-Identifier: Apache-2.0 */
/* TCP timers on a hashed timer wheel: each connection sits in one slot, at
 * its earliest deadline (retransmission, delayed ACK, keepalive/FIN_WAIT_2/
 * TIME_WAIT, application deadline). NET_TIMER_SLOTS slots of timer_tick_us;
 * deadlines beyond one turn wait in their slot and are skipped until due.
 * Linking and unlinking are O(1); a tick costs the entries of one slot. */
#include "net/net_internal.h"

static uint64_t earliest(const struct net_tcp_conn *c)
{
    uint64_t t = 0;
    const uint64_t d[4] = {c->rto_at, c->delack_at, c->idle_at, c->app_at};
    for (int i = 0; i < 4; i++)
        if (d[i] != 0 && (t == 0 || d[i] < t))
            t = d[i];
    return t;
}

static void wheel_insert(struct net_stack *s, struct net_tcp_conn *c)
{
    uint64_t tick = c->timer_at / s->cfg.timer_tick_us;
    if (tick < s->wheel_tick)
        tick = s->wheel_tick;
    net_dlist_add_tail(&s->wheel[tick & (NET_TIMER_SLOTS - 1)], &c->timer_link);
}

void net_timer_cancel(struct net_stack *s, struct net_tcp_conn *c)
{
    (void)s;
    net_dlist_del(&c->timer_link);
    c->timer_at = 0;
}

/* Put c in the slot of its earliest deadline (after any deadline changed). */
void net_timer_sched(struct net_stack *s, struct net_tcp_conn *c)
{
    uint64_t t = earliest(c);
    if (t == c->timer_at && (t == 0) == net_dlist_empty(&c->timer_link))
        return;
    net_dlist_del(&c->timer_link);
    c->timer_at = t;
    if (t != 0)
        wheel_insert(s, c);
}

/* Keepalive (RFC 9293 3.8.4, RFC 1122 4.2.3.6), FIN_WAIT_2 and TIME_WAIT
 * expiry share idle_at; what it means depends on the state. */
static void idle_expired(struct net_stack *s, struct net_tcp_conn *c, uint64_t now)
{
    switch (c->state) {
    case NET_TCP_TIME_WAIT:
        c->state = NET_TCP_CLOSED;
        break;
    case NET_TCP_FIN_WAIT_2:
        s->stats.tcp_fin_wait2_timeouts++;
        net_tcp_send_rst(s, c);
        c->state = NET_TCP_CLOSED;
        break;
    default:
        if (s->cfg.keepalive_idle_us == 0)
            break;
        if (now < c->last_rx_us + s->cfg.keepalive_idle_us && c->ka_probes == 0) {
            c->idle_at = c->last_rx_us + s->cfg.keepalive_idle_us; /* traffic since */
            break;
        }
        if (c->ka_probes >= s->cfg.keepalive_probes) {
            s->stats.tcp_keepalive_aborts++;
            net_tcp_send_rst(s, c);
            net_tcp_conn_drop(s, c, NET_TCP_CLOSE_KEEPALIVE);
            break;
        }
        c->ka_probes++;
        net_tcp_send_keepalive(s, c);
        c->idle_at = now + s->cfg.keepalive_intvl_us;
        break;
    }
}

static void conn_expired(struct net_stack *s, struct net_tcp_conn *c, uint64_t now)
{
    c->busy++;
    if (c->delack_at && c->delack_at <= now) {
        c->delack_at = 0;
        if (c->ack_pending)
            net_tcp_send_ack(s, c);
    }
    if (c->state != NET_TCP_CLOSED && c->rto_at && c->rto_at <= now) {
        c->rto_at = 0;
        net_tcp_rto_expired(s, c);
    }
    if (c->state != NET_TCP_CLOSED && c->idle_at && c->idle_at <= now) {
        c->idle_at = 0;
        idle_expired(s, c, now);
    }
    if (c->state != NET_TCP_CLOSED && c->app_at && c->app_at <= now) {
        c->app_at = 0;
        if (!c->detached && s->app.on_timeout)
            s->app.on_timeout(s->app_ctx, c, c->app);
    }
    c->busy--;
    c->timer_at = 0;
    net_tcp_conn_put(s, c);
}

void net_stack_timers(struct net_stack *s, uint64_t now_us)
{
    s->now_us = now_us;
    uint64_t now_tick = now_us / s->cfg.timer_tick_us;
    if (now_tick < s->wheel_tick)
        return;
    uint64_t start = s->wheel_tick;
    uint64_t n = now_tick - start + 1;
    if (n > NET_TIMER_SLOTS)
        n = NET_TIMER_SLOTS;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t t = start + i;
        /* Deadlines re-armed while this slot runs land in the next one. */
        s->wheel_tick = t + 1;
        struct net_dlist *slot = &s->wheel[t & (NET_TIMER_SLOTS - 1)];
        if (net_dlist_empty(slot))
            continue;
        /* Detach the slot: callbacks may relink or free any connection. */
        struct net_dlist run;
        run.next = slot->next;
        run.prev = slot->prev;
        run.next->prev = &run;
        run.prev->next = &run;
        net_dlist_init(slot);
        while (!net_dlist_empty(&run)) {
            struct net_tcp_conn *c =
                (struct net_tcp_conn *)((char *)run.next -
                                        offsetof(struct net_tcp_conn, timer_link));
            net_dlist_del(&c->timer_link);
            if (c->timer_at <= now_us)
                conn_expired(s, c, now_us);
            else
                wheel_insert(s, c);
        }
    }
    s->wheel_tick = now_tick + 1;
}
