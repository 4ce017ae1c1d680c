/* SPDX-License-Identifier: Apache-2.0 */
/* TCP input (RFC 9293 3.10.7): header and checksum checks, the stateless
 * handshake for listened ports (SYN -> cookie SYN-ACK, cookie ACK -> new
 * connection -> on_accept), then per connection: RST and SYN validation
 * (RFC 5961), sequence acceptability and trimming, ACK processing, in-order
 * delivery, out-of-order queueing, FIN, and the ACKs that answer it all. */
#include "net/net_internal.h"

static bool tcp_listening(const struct net_stack *s, uint16_t port)
{
    for (unsigned i = 0; i < s->cfg.n_listen_ports; i++)
        if (s->cfg.listen_ports[i] == port)
            return true;
    return false;
}

/* MSS and window scale from a SYN; SACK-permitted and timestamps are
 * ignored (so never echoed). Malformed options end the parse. */
static void tcp_parse_options(struct net_tcp_seg *g, const uint8_t *p, size_t doff)
{
    size_t i = NET_TCP_HLEN;
    while (i < doff) {
        uint8_t kind = p[i];
        if (kind == 0)
            break;
        if (kind == 1) {
            i++;
            continue;
        }
        if (i + 1 >= doff)
            break;
        uint8_t olen = p[i + 1];
        if (olen < 2 || i + olen > doff)
            break;
        if (kind == 2 && olen == 4)
            g->opt_mss = net_rd16(p + i + 2);
        else if (kind == 3 && olen == 3)
            g->opt_wscale = (int8_t)(p[i + 2] > 14 ? 14 : p[i + 2]); /* RFC 7323 2.3 */
        i += olen;
    }
}

/* Initial congestion window, RFC 6928. */
static uint32_t tcp_initial_cwnd(uint16_t mss)
{
    return BASE_MIN(10u * mss, BASE_MAX(2u * mss, 14600u));
}

static void tcp_conn_segment(struct net_stack *s, struct net_tcp_conn *c,
                             const struct net_tcp_seg *g);

/* No connection for the 4-tuple: the LISTEN state of RFC 9293 3.10.7.2,
 * made stateless with SYN cookies. */
static void tcp_listen_input(struct net_stack *s, const struct net_tcp_seg *g)
{
    if (g->flags & NET_TCP_RST) {
        net_drop(s, NET_DROP_TCP_NO_CONN_RST);
        return;
    }
    if (!tcp_listening(s, g->dport)) {
        net_drop(s, NET_DROP_TCP_NO_LISTENER);
        net_tcp_reply_rst(s, g);
        return;
    }
    if (g->flags & NET_TCP_SYN) {
        if (g->flags & (NET_TCP_ACK | NET_TCP_FIN)) {
            net_drop(s, NET_DROP_TCP_FLAGS);
            if (g->flags & NET_TCP_ACK)
                net_tcp_reply_rst(s, g);
            return;
        }
        s->stats.tcp_syn_rx++;
        uint16_t mss;
        uint32_t iss = net_syncookie_make(s, g, &mss, g->opt_wscale);
        net_tcp_send_synack(s, g, iss, mss, g->opt_wscale);
        return;
    }
    if (!(g->flags & NET_TCP_ACK)) {
        net_drop(s, NET_DROP_TCP_FLAGS);
        return;
    }
    uint16_t mss;
    int8_t ws;
    if (net_syncookie_check(s, g, &mss, &ws) != 0) {
        net_drop(s, NET_DROP_TCP_NO_CONN);
        net_tcp_reply_rst(s, g);
        return;
    }
    struct net_tcp_conn *c = net_tcp_conn_new(s, g->saddr, g->sport, g->dport);
    if (c == NULL) {
        net_drop(s, NET_DROP_TCP_TABLE_FULL);
        net_tcp_reply_rst(s, g);
        return;
    }
    memcpy(c->peer_mac, g->src_mac, NET_ETH_ALEN);
    c->mss = BASE_MIN(mss, s->our_mss);
    c->snd_wscale = ws >= 0 ? (uint8_t)ws : 0;
    c->rcv_wscale = ws >= 0 ? s->cfg.rcv_wscale : 0;
    c->iss = g->ack - 1;
    c->snd_una = c->snd_nxt = c->snd_max = g->ack;
    c->irs = g->seq - 1;
    c->rcv_nxt = g->seq;
    c->rcv_adv = c->rcv_nxt + BASE_MIN(s->cfg.rcv_space_bytes, 0xffffu); /* our SYN-ACK */
    c->snd_wnd = c->max_snd_wnd = (uint32_t)g->wnd << c->snd_wscale;
    c->snd_wl1 = g->seq;
    c->snd_wl2 = g->ack;
    c->cwnd = tcp_initial_cwnd(c->mss);
    c->ssthresh = UINT32_MAX;
    c->state = NET_TCP_ESTABLISHED;
    if (s->cfg.keepalive_idle_us)
        c->idle_at = s->now_us + s->cfg.keepalive_idle_us;
    s->stats.tcp_accepted++;

    c->busy++;
    void *app = s->app.on_accept(s->app_ctx, c);
    c->busy--;
    if (app == NULL) {
        net_drop(s, NET_DROP_TCP_REFUSED);
        if (!c->detached) {
            c->detached = true;
            net_tcp_send_rst(s, c);
            c->state = NET_TCP_CLOSED;
        }
        net_tcp_conn_put(s, c);
        return;
    }
    c->app = app;
    tcp_conn_segment(s, c, g);
}

/* RFC 9293 3.10.7.4 first check: is any of the segment inside the window? */
static bool tcp_acceptable(const struct net_tcp_conn *c, uint32_t seq, uint32_t seg_len,
                           uint32_t wnd)
{
    if (seg_len == 0) {
        if (wnd == 0)
            return seq == c->rcv_nxt;
        return SEQ_GEQ(seq, c->rcv_nxt) && SEQ_LT(seq, c->rcv_nxt + wnd);
    }
    if (wnd == 0)
        return false;
    uint32_t last = seq + seg_len - 1;
    return (SEQ_GEQ(seq, c->rcv_nxt) && SEQ_LT(seq, c->rcv_nxt + wnd)) ||
           (SEQ_GEQ(last, c->rcv_nxt) && SEQ_LT(last, c->rcv_nxt + wnd));
}

static void tcp_challenge_ack(struct net_stack *s, struct net_tcp_conn *c, enum net_drop_reason r)
{
    net_drop(s, r);
    s->stats.tcp_challenge_acks++;
    net_tcp_send_ack(s, c);
}

/* RFC 9293 3.10.7.4 "fifth, check the ACK field". Returns false when the
 * connection ended (LAST_ACK done) or the segment needs no more work. */
static bool tcp_process_ack(struct net_stack *s, struct net_tcp_conn *c,
                            const struct net_tcp_seg *g)
{
    if (SEQ_GT(g->ack, c->snd_una)) {
        uint32_t acked = g->ack - c->snd_una;
        uint32_t data_end = c->snd_una + c->snd_len;
        if (c->fin_queued && !c->fin_acked && SEQ_GT(g->ack, data_end)) {
            c->fin_acked = true;
            acked--;
        }
        c->snd_head = (uint32_t)(((uint64_t)c->snd_head + acked) % s->cfg.snd_buf_bytes);
        c->snd_len -= acked;
        c->snd_una = g->ack;
        if (SEQ_LT(c->snd_nxt, c->snd_una))
            c->snd_nxt = c->snd_una;
        if (c->rtt_active && SEQ_GT(g->ack, c->rtt_seq)) {
            c->rtt_active = false;
            net_tcp_update_rtt(s, c, s->now_us - c->rtt_start_us);
        } /* else Karn: keep a backed-off RTO until a new sample */
        c->retries = 0;
        if (c->cwnd < c->ssthresh) /* RFC 5681 3.1 */
            c->cwnd += BASE_MIN(acked, (uint32_t)c->mss);
        else
            c->cwnd += BASE_MAX(1u, (uint32_t)c->mss * c->mss / c->cwnd);
        c->rto_at = c->snd_una == c->snd_max ? 0 : s->now_us + c->rto_us;
    }
    /* RFC 9293 3.10.7.4: update the send window from the newest segment. */
    if (SEQ_LT(c->snd_wl1, g->seq) || (c->snd_wl1 == g->seq && SEQ_LEQ(c->snd_wl2, g->ack))) {
        c->snd_wnd = (uint32_t)g->wnd << c->snd_wscale;
        c->snd_wl1 = g->seq;
        c->snd_wl2 = g->ack;
        if (c->snd_wnd > c->max_snd_wnd)
            c->max_snd_wnd = c->snd_wnd;
    }
    if (!c->fin_acked)
        return true;
    switch (c->state) {
    case NET_TCP_FIN_WAIT_1:
        c->state = NET_TCP_FIN_WAIT_2;
        c->rto_at = 0;
        c->idle_at = s->now_us + s->cfg.fin_wait2_timeout_us;
        return true;
    case NET_TCP_CLOSING:
        net_tcp_enter_time_wait(s, c);
        return false;
    case NET_TCP_LAST_ACK:
        c->state = NET_TCP_CLOSED;
        return false;
    default:
        return true;
    }
}

/* The peer's FIN is next in sequence. */
static void tcp_process_fin(struct net_stack *s, struct net_tcp_conn *c)
{
    c->rcv_nxt++;
    c->ack_now = true;
    switch (c->state) {
    case NET_TCP_ESTABLISHED:
        c->state = NET_TCP_CLOSE_WAIT;
        if (!c->detached) {
            c->busy++;
            s->app.on_data(s->app_ctx, c, c->app, NULL, 0);
            c->busy--;
        }
        break;
    case NET_TCP_FIN_WAIT_1:
        c->state = NET_TCP_CLOSING;
        break;
    case NET_TCP_FIN_WAIT_2:
        net_tcp_enter_time_wait(s, c);
        break;
    default:
        break;
    }
}

/* Data and FIN of an acceptable segment (already trimmed to the window). */
static void tcp_process_data(struct net_stack *s, struct net_tcp_conn *c, uint32_t seq,
                             const uint8_t *data, uint32_t len, bool fin)
{
    if (c->state != NET_TCP_ESTABLISHED && c->state != NET_TCP_FIN_WAIT_1 &&
        c->state != NET_TCP_FIN_WAIT_2) {
        if (len > 0 || fin)
            net_drop(s, NET_DROP_TCP_AFTER_FIN);
        return;
    }
    if (len > 0 && seq == c->rcv_nxt) {
        c->rcv_nxt += len;
        c->ack_pending++;
        bool had_ooo = c->n_ooo > 0;
        net_tcp_deliver(s, c, data, len);
        if (c->state == NET_TCP_CLOSED)
            return;
        if (had_ooo)
            net_tcp_ooo_pull(s, c);
        if (c->state == NET_TCP_CLOSED)
            return;
        /* RFC 5681 4.2: ACK every second segment and at once when a gap
         * filled; else within delack_us. A response sent meanwhile carried
         * the ACK already. */
        if (c->ack_pending && (had_ooo || c->ack_pending >= 2))
            c->ack_now = true;
        else if (c->ack_pending && c->delack_at == 0)
            c->delack_at = s->now_us + s->cfg.delack_us;
    } else if (len > 0) {
        s->stats.tcp_ooo_segments++;
        int r = net_tcp_ooo_insert(s, c, seq, data, len);
        if (r != 0)
            net_drop(s, (enum net_drop_reason)r);
        else if (fin) {
            c->fin_ooo = true;
            c->fin_ooo_seq = seq + len;
        }
        fin = false;
        c->ack_now = true; /* RFC 5681 4.2: duplicate ACK at once */
    } else if (fin && seq != c->rcv_nxt) {
        c->fin_ooo = true;
        c->fin_ooo_seq = seq;
        fin = false;
        c->ack_now = true;
    }
    if (fin) {
        tcp_process_fin(s, c);
    } else if (c->fin_ooo && c->fin_ooo_seq == c->rcv_nxt) {
        c->fin_ooo = false;
        tcp_process_fin(s, c);
    }
}

static void tcp_conn_segment_body(struct net_stack *s, struct net_tcp_conn *c,
                                  const struct net_tcp_seg *g)
{
    uint8_t flags = g->flags;
    uint32_t seq = g->seq;
    uint32_t len = g->len;
    const uint8_t *data = g->data;
    bool fin = (flags & NET_TCP_FIN) != 0;
    uint32_t seg_len = len + ((flags & NET_TCP_SYN) ? 1u : 0u) + (fin ? 1u : 0u);
    uint32_t wnd = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;

    /* replay_isn (benchmarks only): a pcap replayed again opens the same
     * 4-tuples with the same ISNs, below the old sequence space; its SYN
     * replaces whatever the last pass left (TIME_WAIT, or a conversation
     * that went astray), so one bad pass cannot poison the next. */
    if (unlikely(s->cfg.replay_isn) && (flags & NET_TCP_SYN) &&
        !(flags & (NET_TCP_ACK | NET_TCP_RST))) {
        s->stats.tcp_reopened++;
        if (c->state == NET_TCP_TIME_WAIT)
            c->state = NET_TCP_CLOSED;
        else
            net_tcp_conn_drop(s, c, NET_TCP_CLOSE_REPLACED);
        tcp_listen_input(s, g);
        return;
    }
    /* RFC 9293 3.10.7.4: a new SYN may reopen a TIME_WAIT pair when it is
     * above the old sequence space. */
    if (c->state == NET_TCP_TIME_WAIT && (flags & NET_TCP_SYN) &&
        !(flags & (NET_TCP_ACK | NET_TCP_RST))) {
        if (SEQ_GT(seq, c->rcv_nxt)) {
            s->stats.tcp_reopened++;
            c->state = NET_TCP_CLOSED;
            tcp_listen_input(s, g);
        } else {
            net_tcp_send_ack(s, c);
        }
        return;
    }

    /* RFC 5961 3.2: only an RST at exactly RCV.NXT resets; one elsewhere
     * in the window gets a challenge ACK. */
    if (flags & NET_TCP_RST) {
        uint32_t w = wnd ? wnd : 1;
        if (seq == c->rcv_nxt) {
            s->stats.tcp_resets_rx++;
            net_tcp_conn_drop(s, c, NET_TCP_CLOSE_RESET);
        } else if (SEQ_GT(seq, c->rcv_nxt) && SEQ_LT(seq, c->rcv_nxt + w)) {
            tcp_challenge_ack(s, c, NET_DROP_TCP_RST_CHALLENGED);
        } else {
            net_drop(s, NET_DROP_TCP_RST_OUT_OF_WINDOW);
        }
        return;
    }

    if (!tcp_acceptable(c, seq, seg_len, wnd)) {
        if (seg_len > 0 && SEQ_LEQ(seq + seg_len, c->rcv_nxt)) {
            net_drop(s, NET_DROP_TCP_DUPLICATE);
            s->stats.tcp_dup_bytes += len;
        } else {
            net_drop(s, NET_DROP_TCP_OUT_OF_WINDOW);
        }
        net_tcp_send_ack(s, c);
        return;
    }
    /* RFC 5961 4.2: SYN on a synchronized connection. */
    if (flags & NET_TCP_SYN) {
        tcp_challenge_ack(s, c, NET_DROP_TCP_SYN_CHALLENGED);
        return;
    }
    if (!(flags & NET_TCP_ACK)) {
        net_drop(s, NET_DROP_TCP_NO_ACK);
        return;
    }
    /* RFC 5961 5.2: acceptable ACKs are SND.UNA - MAX.SND.WND ..= SND.NXT
     * (SND.MAX here: the highest we sent, as snd_nxt moves back on RTO). */
    if (SEQ_GT(g->ack, c->snd_max) || SEQ_LT(g->ack, c->snd_una - c->max_snd_wnd)) {
        net_drop(s, NET_DROP_TCP_ACK_INVALID);
        net_tcp_send_ack(s, c);
        return;
    }
    c->last_rx_us = s->now_us;
    c->ka_probes = 0;
    memcpy(c->peer_mac, g->src_mac, NET_ETH_ALEN);
    if (!tcp_process_ack(s, c, g))
        return;
    if (c->state == NET_TCP_TIME_WAIT) {
        if (fin) { /* retransmitted FIN: ACK it, restart the wait */
            c->ack_now = true;
            c->idle_at = s->now_us + s->cfg.time_wait_us;
        }
        return;
    }

    /* Trim what we already have (RFC 9293 3.10.7.4: overlaps) and what lies
     * beyond the window. */
    if (SEQ_LT(seq, c->rcv_nxt)) {
        uint32_t d = c->rcv_nxt - seq;
        if (d > len)
            d = len;
        s->stats.tcp_dup_bytes += d;
        data += d;
        len -= d;
        seq += d;
    }
    if (SEQ_GT(seq + len, c->rcv_nxt + wnd)) {
        len = c->rcv_nxt + wnd - seq;
        fin = false;
        net_drop(s, NET_DROP_TCP_OUT_OF_WINDOW);
    }
    tcp_process_data(s, c, seq, data, len, fin);
}

static void tcp_conn_segment(struct net_stack *s, struct net_tcp_conn *c,
                             const struct net_tcp_seg *g)
{
    c->busy++;
    if (c->state != NET_TCP_CLOSED) /* e.g. aborted inside on_accept */
        tcp_conn_segment_body(s, c, g);
    if (c->state != NET_TCP_CLOSED) {
        net_tcp_output(s, c, false);
        if (c->ack_now)
            net_tcp_send_ack(s, c);
    }
    c->busy--;
    net_tcp_conn_put(s, c);
}

void net_tcp_input(struct net_stack *s, const uint8_t *src_mac, uint32_t saddr, const uint8_t *p,
                   size_t len)
{
    if (unlikely(len < NET_TCP_HLEN)) {
        net_drop(s, NET_DROP_TCP_SHORT);
        return;
    }
    size_t doff = (size_t)(p[12] >> 4) * 4;
    if (unlikely(doff < NET_TCP_HLEN || doff > len)) {
        net_drop(s, NET_DROP_TCP_HDR_LEN);
        return;
    }
    if (!(s->rx_flags & NET_RX_L4_CKSUM_GOOD)) {
        uint32_t sum = net_cksum_pseudo(saddr, s->cfg.ifc.ip, 6, (uint16_t)len);
        if (net_cksum_fold(net_cksum_add(sum, p, len)) != 0) {
            net_drop(s, NET_DROP_TCP_CHECKSUM);
            return;
        }
    }
    struct net_tcp_seg g = {
        .src_mac = src_mac,
        .saddr = saddr,
        .sport = net_rd16(p),
        .dport = net_rd16(p + 2),
        .seq = net_rd32(p + 4),
        .ack = net_rd32(p + 8),
        .flags = (uint8_t)(p[13] & 0x3f),
        .wnd = net_rd16(p + 14),
        .data = p + doff,
        .len = (uint32_t)(len - doff),
        .opt_mss = 0,
        .opt_wscale = -1,
    };
    if (g.flags & NET_TCP_SYN)
        tcp_parse_options(&g, p, doff);
    struct net_tcp_conn *c = net_tcp_lookup(s, saddr, g.sport, g.dport);
    if (c == NULL)
        tcp_listen_input(s, &g);
    else
        tcp_conn_segment(s, c, &g);
}
