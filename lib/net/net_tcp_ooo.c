/* SPDX-License-Identifier: Apache-2.0 */
/* In-order delivery and the bounded out-of-order queue. Segments ahead of
 * RCV.NXT are copied into a reassembly buffer taken from a shared pool
 * (net_config.ooo_bufs buffers of ooo_buf_bytes, a power of two) and
 * indexed by sequence number modulo its size, so it covers
 * [RCV.NXT, RCV.NXT + ooo_buf_bytes); bytes beyond are dropped and counted.
 * Up to NET_TCP_OOO_RANGES disjoint ranges are tracked; overlaps merge. The
 * buffer goes back to the pool as soon as no range is held. */
#include "net/net_internal.h"

void net_tcp_deliver(struct net_stack *s, struct net_tcp_conn *c, const uint8_t *data, uint32_t len)
{
    s->stats.tcp_rx_bytes += len;
    if (c->detached) {
        net_drop(s, NET_DROP_TCP_AFTER_CLOSE);
        return;
    }
    c->rcv_space -= BASE_MIN(len, c->rcv_space);
    c->busy++;
    s->app.on_data(s->app_ctx, c, c->app, data, len);
    c->busy--;
}

void net_tcp_ooo_reset(struct net_stack *s, struct net_tcp_conn *c)
{
    c->n_ooo = 0;
    if (c->ooo_buf != NULL) {
        s->ooo_free[s->ooo_free_n++] = c->ooo_slot;
        c->ooo_buf = NULL;
    }
}

int net_tcp_ooo_insert(struct net_stack *s, struct net_tcp_conn *c, uint32_t seq,
                       const uint8_t *data, uint32_t len)
{
    uint32_t size = s->ooo_buf_bytes;
    int cut = 0;
    if (size == 0)
        return NET_DROP_TCP_OOO_FULL;
    uint32_t limit = c->rcv_nxt + size;
    if (SEQ_GEQ(seq, limit))
        return NET_DROP_TCP_OOO_FULL;
    if (SEQ_GT(seq + len, limit)) {
        len = limit - seq;
        cut = NET_DROP_TCP_OOO_FULL;
    }
    uint32_t end = seq + len;

    /* Merge [seq, end) into the sorted disjoint ranges. */
    struct net_tcp_ooo_range out[NET_TCP_OOO_RANGES + 1];
    uint32_t n = 0, nstart = seq, nend = end;
    bool placed = false;
    for (uint32_t i = 0; i < c->n_ooo; i++) {
        struct net_tcp_ooo_range r = c->ooo[i];
        if (SEQ_LT(r.end, nstart)) {
            out[n++] = r;
        } else if (SEQ_GT(r.start, nend)) {
            if (!placed) {
                out[n++] = (struct net_tcp_ooo_range){nstart, nend};
                placed = true;
            }
            if (n > NET_TCP_OOO_RANGES)
                return NET_DROP_TCP_OOO_FULL;
            out[n++] = r;
        } else {
            if (SEQ_LT(r.start, nstart))
                nstart = r.start;
            if (SEQ_GT(r.end, nend))
                nend = r.end;
        }
        if (n > NET_TCP_OOO_RANGES)
            return NET_DROP_TCP_OOO_FULL;
    }
    if (!placed)
        out[n++] = (struct net_tcp_ooo_range){nstart, nend};
    if (n > NET_TCP_OOO_RANGES)
        return NET_DROP_TCP_OOO_FULL;

    if (c->ooo_buf == NULL) {
        if (s->ooo_free_n == 0)
            return NET_DROP_TCP_OOO_NO_BUF;
        c->ooo_slot = s->ooo_free[--s->ooo_free_n];
        c->ooo_buf = s->ooo_arena + (size_t)c->ooo_slot * size;
    }
    uint32_t pos = seq & (size - 1);
    uint32_t first = BASE_MIN(len, size - pos);
    memcpy(c->ooo_buf + pos, data, first);
    memcpy(c->ooo_buf, data + first, len - first);
    memcpy(c->ooo, out, n * sizeof(out[0]));
    c->n_ooo = n;
    return cut;
}

void net_tcp_ooo_pull(struct net_stack *s, struct net_tcp_conn *c)
{
    uint32_t size = s->ooo_buf_bytes;
    while (c->n_ooo > 0 && SEQ_LEQ(c->ooo[0].start, c->rcv_nxt) && c->state != NET_TCP_CLOSED) {
        uint32_t end = c->ooo[0].end;
        c->n_ooo--;
        memmove(&c->ooo[0], &c->ooo[1], c->n_ooo * sizeof(c->ooo[0]));
        while (SEQ_LT(c->rcv_nxt, end) && c->state != NET_TCP_CLOSED) {
            uint32_t pos = c->rcv_nxt & (size - 1);
            uint32_t piece = BASE_MIN(end - c->rcv_nxt, size - pos);
            c->rcv_nxt += piece;
            net_tcp_deliver(s, c, c->ooo_buf + pos, piece);
        }
    }
    if (c->n_ooo == 0)
        net_tcp_ooo_reset(s, c);
}
