/* SPDX-License-Identifier: Apache-2.0 */
/* TCP output: segment building (headers, options, checksum or offload
 * pseudo sum), sending queued data within the send and congestion windows
 * segmented to the MSS, ACKs and RSTs, and retransmission (RFC 6298). */
#include "net/net_internal.h"

#define NET_IP_PROTO_TCP 6

/* Allocate a frame with a TCP header of `optlen` option bytes and room for
 * `len` payload bytes; fills Ethernet, ports, seq, ack, flags, window. */
static uint8_t *tcp_alloc(struct net_stack *s, const uint8_t *dst_mac, uint16_t sport,
                          uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags, uint16_t wnd,
                          uint32_t optlen, uint32_t len)
{
    uint8_t *f =
        net_eth_alloc(s, NET_IPV4_HLEN + NET_TCP_HLEN + optlen + len, dst_mac, NET_ETHERTYPE_IPV4);
    if (f == NULL)
        return NULL;
    uint8_t *t = f + NET_ETH_HLEN + NET_IPV4_HLEN;
    net_wr16(t, sport);
    net_wr16(t + 2, dport);
    net_wr32(t + 4, seq);
    net_wr32(t + 8, ack);
    t[12] = (uint8_t)(((NET_TCP_HLEN + optlen) / 4) << 4);
    t[13] = flags;
    net_wr16(t + 14, wnd);
    net_wr16(t + 16, 0);
    net_wr16(t + 18, 0);
    return f;
}

/* IPv4 header, TCP checksum (or the pseudo-header sum for offload), send. */
static void tcp_finish(struct net_stack *s, uint8_t *f, uint32_t dst_ip, uint32_t tcp_len)
{
    uint8_t *t = f + NET_ETH_HLEN + NET_IPV4_HLEN;
    uint32_t ph = net_cksum_pseudo(s->cfg.ifc.ip, dst_ip, NET_IP_PROTO_TCP, (uint16_t)tcp_len);
    if (s->cfg.tx_cksum_offload)
        net_wr16(t + 16, (uint16_t)~net_cksum_fold(ph));
    else
        net_wr16(t + 16, net_cksum_fold(net_cksum_add(ph, t, tcp_len)));
    net_ipv4_write(s, f + NET_ETH_HLEN, dst_ip, NET_IP_PROTO_TCP, (uint16_t)tcp_len);
    net_eth_send(s, f, NET_IPV4_HLEN + tcp_len);
}

/* Advertised window field; moves the advertised right edge (rcv_adv)
 * forward, never back (RFC 9293 3.8.6.2.2: do not shrink the window). */
uint16_t net_tcp_rcv_wnd_field(struct net_stack *s, struct net_tcp_conn *c)
{
    uint32_t space = c->detached ? s->cfg.rcv_space_bytes : c->rcv_space;
    uint32_t adv = SEQ_GT(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
    uint32_t wnd = BASE_MAX(space, adv);
    uint32_t field = BASE_MIN(wnd >> c->rcv_wscale, 0xffffu);
    uint32_t edge = c->rcv_nxt + (field << c->rcv_wscale);
    if (SEQ_GT(edge, c->rcv_adv))
        c->rcv_adv = edge;
    return (uint16_t)field;
}

/* One segment of connection c: `len` payload bytes from the send buffer at
 * sequence `seq`. Any segment carries the ACK, so pending ACKs are done. */
static void conn_emit(struct net_stack *s, struct net_tcp_conn *c, uint32_t seq, uint8_t flags,
                      uint32_t len)
{
    uint16_t wnd = net_tcp_rcv_wnd_field(s, c);
    uint8_t *f =
        tcp_alloc(s, c->peer_mac, c->local_port, c->peer_port, seq, c->rcv_nxt, flags, wnd, 0, len);
    if (f == NULL)
        return;
    if (len > 0) {
        uint32_t cap = s->cfg.snd_buf_bytes;
        uint32_t pos = (uint32_t)(((uint64_t)c->snd_head + (seq - c->snd_una)) % cap);
        uint32_t first = BASE_MIN(len, cap - pos);
        uint8_t *p = f + NET_ETH_HLEN + NET_IPV4_HLEN + NET_TCP_HLEN;
        memcpy(p, c->snd_buf + pos, first);
        memcpy(p + first, c->snd_buf, len - first);
        s->stats.tcp_tx_bytes += len;
    }
    if (flags & NET_TCP_ACK) {
        c->ack_now = false;
        c->ack_pending = 0;
        c->delack_at = 0;
    }
    tcp_finish(s, f, c->peer_ip, NET_TCP_HLEN + len);
}

void net_tcp_send_ack(struct net_stack *s, struct net_tcp_conn *c)
{
    conn_emit(s, c, c->snd_nxt, NET_TCP_ACK, 0);
}

void net_tcp_send_rst(struct net_stack *s, struct net_tcp_conn *c)
{
    s->stats.tcp_resets_tx++;
    conn_emit(s, c, c->snd_nxt, NET_TCP_RST | NET_TCP_ACK, 0);
}

/* RFC 9293 3.8.4: SEG.SEQ = SND.UNA - 1 makes the peer answer with an ACK. */
void net_tcp_send_keepalive(struct net_stack *s, struct net_tcp_conn *c)
{
    conn_emit(s, c, c->snd_una - 1, NET_TCP_ACK, 0);
}

/* Send what the windows allow; with `probe`, at least one byte even into a
 * zero window (persist probe, RFC 9293 3.8.6.1). Arms the retransmission
 * timer while anything is unacknowledged or waiting for the window. */
void net_tcp_output(struct net_stack *s, struct net_tcp_conn *c, bool probe)
{
    switch (c->state) {
    case NET_TCP_ESTABLISHED:
    case NET_TCP_CLOSE_WAIT:
    case NET_TCP_FIN_WAIT_1:
    case NET_TCP_CLOSING:
    case NET_TCP_LAST_ACK:
        break;
    default:
        return;
    }
    uint32_t data_end = c->snd_una + c->snd_len;
    for (;;) {
        uint32_t unsent = SEQ_LT(c->snd_nxt, data_end) ? data_end - c->snd_nxt : 0;
        uint32_t in_flight = c->snd_nxt - c->snd_una;
        uint32_t wnd = BASE_MIN(c->snd_wnd, c->cwnd);
        uint32_t avail = wnd > in_flight ? wnd - in_flight : 0;
        uint32_t n = BASE_MIN(BASE_MIN(unsent, (uint32_t)c->mss), avail);
        if (n == 0 && unsent > 0 && probe)
            n = 1;
        probe = false;
        /* FIN rides on the segment that sends the last byte (window-free). */
        bool fin = c->fin_queued && !c->fin_acked && c->snd_nxt + n == data_end;
        if (n == 0 && !fin)
            break;
        uint8_t flags = NET_TCP_ACK;
        if (n > 0 && n == unsent)
            flags |= NET_TCP_PSH;
        if (fin)
            flags |= NET_TCP_FIN;
        conn_emit(s, c, c->snd_nxt, flags, n);
        if (n > 0 && !c->rtt_active && c->snd_nxt == c->snd_max) {
            c->rtt_active = true;
            c->rtt_seq = c->snd_nxt;
            c->rtt_start_us = s->now_us;
        }
        c->snd_nxt += n + (fin ? 1u : 0u);
        if (SEQ_GT(c->snd_nxt, c->snd_max))
            c->snd_max = c->snd_nxt;
        if (fin)
            break;
    }
    bool outstanding = c->snd_len > 0 || (c->fin_queued && !c->fin_acked);
    if (outstanding && c->rto_at == 0)
        c->rto_at = s->now_us + c->rto_us;
}

/* RFC 6298 2.2/2.3: SRTT/RTTVAR, RTO = SRTT + max(G, 4 RTTVAR), clamped. */
void net_tcp_update_rtt(struct net_stack *s, struct net_tcp_conn *c, uint64_t r)
{
    if (!c->srtt_valid) {
        c->srtt_us = r;
        c->rttvar_us = r / 2;
        c->srtt_valid = true;
    } else {
        uint64_t diff = c->srtt_us > r ? c->srtt_us - r : r - c->srtt_us;
        c->rttvar_us = (3 * c->rttvar_us + diff) / 4;
        c->srtt_us = (7 * c->srtt_us + r) / 8;
    }
    uint64_t rto = c->srtt_us + BASE_MAX(s->cfg.timer_tick_us, 4 * c->rttvar_us);
    c->rto_us = BASE_MIN(BASE_MAX(rto, s->cfg.rto_min_us), s->cfg.rto_max_us);
}

/* RFC 6298 5.4-5.7: resend from SND.UNA with a doubled RTO; after
 * max_retries expiries in a row, abort with RST. RFC 5681 3.1: the loss
 * window is one segment. */
void net_tcp_rto_expired(struct net_stack *s, struct net_tcp_conn *c)
{
    bool outstanding = c->snd_len > 0 || (c->fin_queued && !c->fin_acked);
    if (!outstanding)
        return;
    if (c->retries >= s->cfg.max_retries) {
        s->stats.tcp_rto_aborts++;
        net_tcp_send_rst(s, c);
        net_tcp_conn_drop(s, c, NET_TCP_CLOSE_RETRANSMIT);
        return;
    }
    c->retries++;
    c->rto_us = BASE_MIN(c->rto_us * 2, s->cfg.rto_max_us);
    uint32_t in_flight = c->snd_nxt - c->snd_una;
    if (in_flight > 0)
        s->stats.tcp_retransmits++;
    c->ssthresh = BASE_MAX(in_flight / 2, 2u * c->mss);
    c->cwnd = c->mss;
    c->snd_nxt = c->snd_una;
    c->rtt_active = false; /* Karn: no sample from retransmitted data */
    net_tcp_output(s, c, true);
    c->rto_at = s->now_us + c->rto_us;
}

/* RFC 9293 3.10.7.1: answer a segment that has no connection. */
void net_tcp_reply_rst(struct net_stack *s, const struct net_tcp_seg *g)
{
    uint32_t seq = 0, ack = 0;
    uint8_t flags = NET_TCP_RST;
    if (g->flags & NET_TCP_ACK) {
        seq = g->ack;
    } else {
        ack = g->seq + g->len + ((g->flags & NET_TCP_SYN) ? 1u : 0u) +
              ((g->flags & NET_TCP_FIN) ? 1u : 0u);
        flags |= NET_TCP_ACK;
    }
    uint8_t *f = tcp_alloc(s, g->src_mac, g->dport, g->sport, seq, ack, flags, 0, 0, 0);
    if (f == NULL)
        return;
    s->stats.tcp_resets_tx++;
    tcp_finish(s, f, g->saddr, NET_TCP_HLEN);
}

/* SYN-ACK with MSS and, when the peer offered it, window scale (RFC 7323
 * 2.2: the window of a SYN segment is never scaled). */
void net_tcp_send_synack(struct net_stack *s, const struct net_tcp_seg *g, uint32_t iss,
                         uint16_t mss, int8_t wscale)
{
    (void)mss;
    uint32_t optlen = wscale >= 0 ? 8 : 4;
    uint16_t wnd = (uint16_t)BASE_MIN(s->cfg.rcv_space_bytes, 0xffffu);
    uint8_t *f = tcp_alloc(s, g->src_mac, g->dport, g->sport, iss, g->seq + 1,
                           NET_TCP_SYN | NET_TCP_ACK, wnd, optlen, 0);
    if (f == NULL)
        return;
    uint8_t *o = f + NET_ETH_HLEN + NET_IPV4_HLEN + NET_TCP_HLEN;
    o[0] = 2;
    o[1] = 4;
    net_wr16(o + 2, s->our_mss);
    if (wscale >= 0) {
        o[4] = 1;
        o[5] = 3;
        o[6] = 3;
        o[7] = s->cfg.rcv_wscale;
    }
    s->stats.tcp_syncookies_tx++;
    tcp_finish(s, f, g->saddr, NET_TCP_HLEN + optlen);
}
