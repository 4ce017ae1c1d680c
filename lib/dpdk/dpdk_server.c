/* SPDX-License-Identifier: Apache-2.0 */
/* DPDK worker lcores: rx burst -> userspace TCP/IP stack -> receiver
 * (OTLP/HTTP on receiver.http_port, OTLP/gRPC on receiver.grpc_port) ->
 * responses through the stack -> tx burst; timers, batch ageing, timeouts
 * and back-pressure (HTTP: a receive window closed while the pipeline is
 * full; gRPC: HTTP/2 flow control, see docs/dpdk.md). With receiver.tls the
 * bytes pass through lib/tls over memory BIOs between the stack and the
 * receivers (tls_input, conn_seal). Each lcore owns its
 * queue pair, stack, connection table and scratch; nothing is shared but
 * the pipeline rings and the mbuf pool. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>

#include "dpdk/dpdk_internal.h"
#include "memlimit/memlimit.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "pipeline/pipeline.h"

#define DPDK_OUT_INIT 2048 /* response buffer per connection slot, grows when needed */
/* A slot keeps its response buffer across connections up to this size; a
 * gRPC connection can grow it to GRPC_OUT_HIGH_WATER + a frame. */
#define DPDK_OUT_KEEP (16 * 1024)

/* ---- transmit: net_tx_ops over mbufs ---- */

static void tx_flush(struct dpdk_worker *w)
{
    unsigned n = w->n_tx;
    if (n == 0)
        return;
    uint16_t sent = rte_eth_tx_burst(w->s->port, (uint16_t)w->id, w->tx, (uint16_t)n);
    if (unlikely(sent < n)) /* one more try: the NIC may have freed descriptors */
        sent = (uint16_t)(sent + rte_eth_tx_burst(w->s->port, (uint16_t)w->id, w->tx + sent,
                                                  (uint16_t)(n - sent)));
    if (unlikely(sent < n)) {
        /* TCP retransmits what was lost here. */
        dpdk_stat_add(&w->st.drops[DPDK_DROP_TX_FULL], n - sent);
        rte_pktmbuf_free_bulk(w->tx + sent, n - sent);
    }
    w->n_tx = 0;
}

/* The mbuf pointer sits in the headroom just before the frame, so send()
 * finds it again without a lookup. */
static uint8_t *tx_alloc(void *ctx, size_t len)
{
    struct dpdk_worker *w = ctx;
    struct rte_mbuf *m = rte_pktmbuf_alloc(w->s->pool);
    if (unlikely(m == NULL))
        return NULL; /* counted by the stack as tx_alloc */
    if (unlikely(len > rte_pktmbuf_tailroom(m) || rte_pktmbuf_headroom(m) < sizeof(m))) {
        dpdk_stat_add(&w->st.drops[DPDK_DROP_TX_TOO_LONG], 1);
        rte_pktmbuf_free(m);
        return NULL;
    }
    uint8_t *p = rte_pktmbuf_mtod(m, uint8_t *);
    memcpy(p - sizeof(m), &m, sizeof(m));
    return p;
}

static void tx_send(void *ctx, uint8_t *frame, size_t len)
{
    struct dpdk_worker *w = ctx;
    struct rte_mbuf *m;
    memcpy(&m, frame - sizeof(m), sizeof(m));
    if (len < RTE_ETHER_MIN_LEN - RTE_ETHER_CRC_LEN) { /* pad to 60 bytes */
        memset(frame + len, 0, RTE_ETHER_MIN_LEN - RTE_ETHER_CRC_LEN - len);
        len = RTE_ETHER_MIN_LEN - RTE_ETHER_CRC_LEN;
    }
    m->data_len = (uint16_t)len;
    m->pkt_len = (uint32_t)len;
    w->tx[w->n_tx++] = m;
    if (w->n_tx == DPDK_BURST)
        tx_flush(w);
}

/* ---- connections ---- */

static void conn_release(struct dpdk_worker *w, struct dpdk_conn *c)
{
    if (c->grpc) {
        grpc_conn_fini(&c->gc);
        if (c->grpc_prev != NULL)
            c->grpc_prev->grpc_next = c->grpc_next;
        else
            w->grpc_conns = c->grpc_next;
        if (c->grpc_next != NULL)
            c->grpc_next->grpc_prev = c->grpc_prev;
        c->grpc_prev = c->grpc_next = NULL;
        c->grpc = false;
        w->n_grpc--;
    } else {
        receiver_conn_fini(&c->rc);
    }
    tls_conn_fini(&c->tls); /* no-op for plain TCP; conn_close sent close_notify */
    c->sealed = 0;
    buf_reset(&c->out);
    if (c->out.cap > DPDK_OUT_KEEP) {
        /* Idle slots stay small; on ENOMEM the buffer starts empty and grows on use. */
        buf_free(&c->out);
        (void)buf_init(&c->out, DPDK_OUT_INIT, 0);
    }
    c->out_off = 0;
    c->tc = NULL;
    if (c->throttled)
        w->n_throttled--;
    c->throttled = false;
    c->want_close = false;
    /* A pending entry is dropped lazily by flush_pending (tc == NULL). */
    c->next_free = w->free_list;
    w->free_list = c;
    w->n_conns--;
    dpdk_stat_add(&w->st.conns, (uint64_t)-1);
    obs_gauge_add(w->s->reg, w->id, w->s->m_conns + w->id, -1);
}

/* Our side is done: FIN after the queued response, slot freed now (the
 * stack finishes the close on its own). */
static void conn_close(struct dpdk_worker *w, struct dpdk_conn *c)
{
    if (c->tls.ssl != NULL && c->tls.established) {
        /* close_notify ahead of our FIN, best effort (it is sent when the
         * send buffer has room for it, as lib/sock's one try). */
        uint8_t rec[128];
        tls_conn_shutdown(&c->tls);
        size_t n = tls_conn_take_output(&c->tls, rec, sizeof(rec));
        if (n > 0 && net_tcp_conn_snd_free(c->tc) >= n)
            (void)net_tcp_send(c->tc, rec, n);
    }
    net_tcp_close(c->tc);
    conn_release(w, c);
}

/*
 * receiver.tls: turn the plaintext the receivers appended to `out` behind
 * `sealed` into TLS records (SSL_write into the memory BIO, the plaintext
 * dropped, the records appended in its place), and append any records
 * OpenSSL produced on its own (handshake, tickets, alerts). Before the
 * handshake completes no plaintext may leave: it is discarded (nothing
 * writes any then). Returns false on a fatal TLS error or ENOMEM: the
 * caller aborts the connection.
 */
static bool conn_seal(struct dpdk_conn *c)
{
    if (c->tls.ssl == NULL)
        return true;
    if (c->sealed < c->out.len) {
        for (size_t off = c->sealed; c->tls.established && off < c->out.len;) {
            ssize_t n = tls_conn_write(&c->tls, c->out.data + off, c->out.len - off);
            if (n <= 0)
                return false;
            off += (size_t)n;
        }
        c->out.len = c->sealed;
    }
    size_t pend;
    while ((pend = tls_conn_output_pending(&c->tls)) > 0) {
        if (buf_reserve(&c->out, pend) < 0)
            return false;
        c->out.len += tls_conn_take_output(&c->tls, c->out.data + c->out.len, pend);
    }
    c->sealed = c->out.len;
    return true;
}

static void pending_add(struct dpdk_worker *w, struct dpdk_conn *c)
{
    if (!c->pending) {
        c->pending = true;
        c->next_pending = w->pending;
        w->pending = c;
    }
}

/*
 * Hand pending response bytes to the TCP send buffer as far as it has
 * room (net_tcp_send is all-or-nothing, so in pieces of the free space).
 * The rest waits on the pending list until ACKs free space. For gRPC,
 * once `out` is drained and the send buffer has room again, the next slice
 * of the frames nghttp2 holds back (grpc_conn_want_write(): it stops at
 * GRPC_OUT_HIGH_WATER) is pulled with grpc_conn_output(), so nghttp2's
 * queue drains at the pace the peer acknowledges. Closes the connection
 * when `want_close` (or grpc_conn_want_close()) and everything was queued.
 * Returns false when the connection is gone.
 */
static bool conn_flush(struct dpdk_worker *w, struct dpdk_conn *c)
{
    for (;;) {
        if (unlikely(!conn_seal(c))) {
            net_tcp_abort(c->tc);
            conn_release(w, c);
            return false;
        }
        size_t off0 = c->out_off;
        while (c->out_off < c->out.len) {
            size_t room = net_tcp_conn_snd_free(c->tc);
            size_t n = c->out.len - c->out_off;
            if (n > room)
                n = room;
            if (n == 0)
                break;
            int rc = net_tcp_send(c->tc, c->out.data + c->out_off, n);
            if (rc == -ENOBUFS)
                break;
            if (rc < 0) { /* -EPIPE: the connection no longer sends */
                net_tcp_abort(c->tc);
                conn_release(w, c);
                return false;
            }
            c->out_off += n;
        }
        if (c->grpc && c->out_off != off0)
            c->last_active_ms = w->now_ms; /* the peer reads: not stuck */
        if (c->out_off < c->out.len) {
            pending_add(w, c);
            return true;
        }
        buf_reset(&c->out);
        c->out_off = 0;
        c->sealed = 0;
        /* (nghttp2's frames wait for the end of a TLS handshake) */
        if (!c->grpc || !grpc_conn_want_write(&c->gc) ||
            (c->tls.ssl != NULL && !c->tls.established))
            break;
        if (net_tcp_conn_snd_free(c->tc) == 0) {
            pending_add(w, c); /* nghttp2 holds more: pull it once ACKs make room */
            return true;
        }
        if (grpc_conn_output(&c->gc, &c->out) == GRPC_CLOSE)
            c->want_close = true;
        if (c->out.len == 0)
            break;
    }
    if (c->grpc && grpc_conn_want_close(&c->gc))
        c->want_close = true;
    if (c->want_close) {
        conn_close(w, c);
        return false;
    }
    return true;
}

/* Retry the connections whose responses did not fit, and gRPC connections
 * whose nghttp2 queue waits for send buffer space (cheap: the list is
 * usually empty). */
static void flush_pending(struct dpdk_worker *w)
{
    struct dpdk_conn *c = w->pending;
    w->pending = NULL;
    while (c != NULL) {
        struct dpdk_conn *next = c->next_pending;
        c->pending = false;
        /* (A slot released and reused meanwhile is flushed harmlessly.) */
        if (c->tc != NULL)
            conn_flush(w, c);
        c = next;
    }
}

/* Can this worker take more data? When the queue budget or the batch pool
 * is exhausted, closing the receive window pushes back on the clients
 * instead of reading requests we would answer with 429/503. */
static bool pipeline_has_room(struct dpdk_worker *w)
{
    /* ... and above the memory limiter's soft limit (memory_limiter). */
    return pipeline_admit(w->s->p, w->id, 1) == 0 && pipeline_free_batches(w->s->p) > 0 &&
           memlimit_state(receiver_memlimit(w->s->r)) == MEMLIMIT_OK;
}

static void conn_window(struct dpdk_worker *w, struct dpdk_conn *c)
{
    if (pipeline_has_room(w)) {
        net_tcp_set_rcv_space(c->tc, w->s->cfg->dataplane.dpdk.rcv_space_bytes);
        if (c->throttled) {
            c->throttled = false;
            w->n_throttled--;
        }
    } else {
        net_tcp_set_rcv_space(c->tc, 0);
        if (!c->throttled) {
            c->throttled = true;
            c->throttled_ms = w->now_ms;
            w->n_throttled++;
            dpdk_stat_add(&w->st.throttles, 1);
        }
    }
}

/* Reopen the windows once the exporter made room. (HTTP connections only:
 * gRPC connections are never throttled here, see app_data.) */
static void unthrottle(struct dpdk_worker *w)
{
    if (w->n_throttled == 0 || !pipeline_has_room(w))
        return;
    for (unsigned i = 0; i < w->max_conns && w->n_throttled > 0; i++) {
        struct dpdk_conn *c = &w->conns[i];
        if (c->tc != NULL && c->throttled)
            conn_window(w, c);
    }
}

/* ---- net_app_ops ---- */

static void *app_accept(void *ctx, struct net_tcp_conn *tc)
{
    struct dpdk_worker *w = ctx;
    struct dpdk_conn *c = w->free_list;
    if (c == NULL || atomic_load_explicit(&w->s->stopping, memory_order_relaxed)) {
        obs_counter_inc(w->s->reg, w->id, w->s->m_refused + w->id);
        dpdk_stat_add(&w->st.refused, 1);
        return NULL; /* the stack answers RST */
    }
    /* The stack listens on both ports; the local port says which receiver. */
    bool grpc = w->gw != NULL && net_tcp_conn_local_port(tc) == w->s->grpc_port;
    if (w->tw != NULL &&
        tls_conn_init_mem(&c->tls, w->tw, grpc ? TLS_ALPN_H2 : TLS_ALPN_HTTP1) < 0) {
        dpdk_stat_add(&w->st.refused, 1);
        return NULL;
    }
    if ((grpc ? grpc_conn_init(&c->gc, w->gw) : receiver_conn_init(&c->rc, w->rw)) < 0) {
        tls_conn_fini(&c->tls);
        dpdk_stat_add(&w->st.refused, 1);
        return NULL;
    }
    w->free_list = c->next_free;
    c->tc = tc;
    c->grpc = grpc;
    c->want_close = false;
    c->throttled = false;
    c->out_off = 0;
    c->sealed = 0;
    buf_reset(&c->out);
    c->last_active_ms = c->accepted_ms = w->now_ms;
    w->n_conns++;
    dpdk_stat_add(&w->st.conns, 1);
    dpdk_stat_add(&w->st.accepted, 1);
    obs_counter_inc(w->s->reg, w->id, w->s->m_accepted + w->id);
    obs_gauge_add(w->s->reg, w->id, w->s->m_conns + w->id, 1);
    if (grpc) {
        c->grpc_prev = NULL;
        c->grpc_next = w->grpc_conns;
        if (w->grpc_conns != NULL)
            w->grpc_conns->grpc_prev = c;
        w->grpc_conns = c;
        w->n_grpc++;
        /* The server SETTINGS go first. They leave from the pending list in
         * this loop iteration: inside on_accept the connection is not the
         * application's yet, so nothing here may close it. Client bytes
         * carried by the handshake's ACK are appended behind them. Over
         * TLS they follow the handshake instead (tls_input). */
        if (c->tls.ssl == NULL) {
            if (grpc_conn_output(&c->gc, &c->out) == GRPC_CLOSE)
                c->want_close = true;
            pending_add(w, c);
        }
    }
    return c;
}

/* In-order application bytes (decrypted when TLS) into the receiver; the
 * response is flushed. Returns false when the connection is gone. */
static bool conn_input(struct dpdk_worker *w, struct dpdk_conn *c, const uint8_t *data,
                       size_t len)
{
    if (c->want_close) {
        /* An error response is queued and we close after it: discard. */
        net_tcp_set_rcv_space(c->tc, w->s->cfg->dataplane.dpdk.rcv_space_bytes);
        return true;
    }
    if (c->grpc) {
        /* grpc_conn_input() takes every byte (nghttp2 buffers what a stream
         * has not completed), so the TCP budget goes straight back to full:
         * back-pressure for gRPC is HTTP/2 flow control (the receiver
         * withholds WINDOW_UPDATE while the pipeline is full; the 50 ms
         * scan hands the credit back). Closing the TCP window as well would
         * also hold back the client's PING, SETTINGS and WINDOW_UPDATE
         * frames and fight the receiver's own resumption. */
        if (grpc_conn_input(&c->gc, data, len, &c->out) == GRPC_CLOSE)
            c->want_close = true;
        if (!conn_flush(w, c))
            return false;
        net_tcp_set_rcv_space(c->tc, w->s->cfg->dataplane.dpdk.rcv_space_bytes);
        return true;
    }
    if (receiver_conn_input(&c->rc, data, len, &c->out) == RECEIVER_CLOSE)
        c->want_close = true;
    if (!conn_flush(w, c))
        return false;
    conn_window(w, c);
    return true;
}

/*
 * receiver.tls: TLS records from the peer. The handshake runs on the
 * memory BIOs and its records leave through conn_flush(); a failed one is
 * counted by lib/tls, its alert sent, the connection closed (an http:// URL
 * on the TLS port gets lib/tls's plain 400 instead). Decrypted bytes go to
 * conn_input() one record batch at a time; close_notify counts as FIN.
 */
static void tls_input(struct dpdk_worker *w, struct dpdk_conn *c, const uint8_t *data,
                      size_t len)
{
    if (unlikely(tls_conn_feed(&c->tls, data, len) < 0)) {
        net_tcp_abort(c->tc);
        conn_release(w, c);
        return;
    }
    if (!c->tls.established) {
        int rc = tls_conn_handshake(&c->tls);
        if (rc == -EAGAIN) {
            conn_flush(w, c); /* our handshake records */
            return;
        }
        if (rc < 0) {
            c->want_close = true;
            if (c->tls.plain_http && !c->grpc) {
                uint8_t drop[256]; /* no alert: the client reads plain text */
                while (tls_conn_take_output(&c->tls, drop, sizeof(drop)) > 0)
                    ;
                buf_reset(&c->out);
                c->out_off = 0;
                (void)buf_append(&c->out, tls_plain_http_response,
                                 strlen(tls_plain_http_response));
                c->sealed = c->out.len; /* wire bytes as they are */
            }
            conn_flush(w, c);
            return;
        }
        if (c->grpc && grpc_conn_output(&c->gc, &c->out) == GRPC_CLOSE) /* server SETTINGS */
            c->want_close = true;
    }
    for (;;) {
        ssize_t n = tls_conn_read(&c->tls, w->tls_buf, DPDK_TLS_BUF);
        if (n > 0) {
            if (!conn_input(w, c, w->tls_buf, (size_t)n))
                return;
            continue;
        }
        if (n == -EAGAIN)
            break;
        if (n == 0) { /* close_notify: answer what is answered, then close */
            c->want_close = true;
            break;
        }
        net_tcp_abort(c->tc); /* -EIO: a bad record */
        conn_release(w, c);
        return;
    }
    conn_flush(w, c);
}

static void app_data(void *ctx, struct net_tcp_conn *tc, void *app_conn, const uint8_t *data,
                     size_t len)
{
    struct dpdk_worker *w = ctx;
    struct dpdk_conn *c = app_conn;
    (void)tc;
    c->last_active_ms = w->now_ms;
    if (len == 0) {
        /* Peer FIN: it sends nothing more. Answer what is answered (gRPC:
         * also the frames nghttp2 still holds), then close; a request cut
         * short gets no response. */
        c->want_close = true;
        conn_flush(w, c);
        return;
    }
    if (c->tls.ssl != NULL)
        tls_input(w, c, data, len);
    else
        conn_input(w, c, data, len);
}

static void app_closed(void *ctx, struct net_tcp_conn *tc, void *app_conn,
                       enum net_tcp_close_reason reason)
{
    struct dpdk_worker *w = ctx;
    struct dpdk_conn *c = app_conn;
    (void)tc;
    (void)reason;
    if (c != NULL && c->tc != NULL)
        conn_release(w, c);
}

/* ---- the lcore loop ---- */

/* Idle and slow-client timeouts of HTTP connections (as lib/sock); when
 * stopping, close idle connections. gRPC connections: scan_grpc(). */
static void scan_timeouts(struct dpdk_worker *w, uint64_t now_ms, bool stopping)
{
    const struct svc_config *cfg = w->s->cfg;
    for (unsigned i = 0; i < w->max_conns; i++) {
        struct dpdk_conn *c = &w->conns[i];
        if (c->tc == NULL || c->want_close)
            continue;
        if (c->tls.ssl != NULL && !c->tls.established) { /* both protocols */
            uint64_t age = now_ms > c->accepted_ms ? now_ms - c->accepted_ms : 0;
            if (age >= cfg->receiver.request_timeout_ms) {
                tls_conn_handshake_timeout(&c->tls);
                obs_counter_inc(w->s->reg, w->id, w->s->m_timeouts + w->id);
                dpdk_stat_add(&w->st.timeouts, 1);
                conn_close(w, c);
            } else if (stopping) {
                conn_close(w, c);
            }
            continue;
        }
        if (c->grpc)
            continue;
        bool req = receiver_conn_busy(&c->rc);
        bool busy = req || c->out_off < c->out.len;
        if (stopping && !busy) {
            conn_close(w, c);
            continue;
        }
        bool held_long = c->throttled &&
                         now_ms - c->throttled_ms >= cfg->dataplane.dpdk.throttle_timeout_ms;
        if (!req && held_long) {
            /* Between requests behind a closed window: let the next request
             * in, so it is answered (503 memory_limit at its head, 429 when
             * the queue is still full) instead of waiting unanswered until
             * the client gives up. conn_window() closes it again after. */
            net_tcp_set_rcv_space(c->tc, cfg->dataplane.dpdk.rcv_space_bytes);
            c->throttled = false;
            w->n_throttled--;
        }
        uint64_t start = req ? c->rc.req_start_ns / 1000000u : c->last_active_ms;
        uint64_t age = now_ms > start ? now_ms - start : 0;
        uint64_t limit = busy ? cfg->receiver.request_timeout_ms : cfg->receiver.idle_timeout_ms;
        /* A request our closed window holds back gets a 503 + Retry-After
         * (retried; a 408 would be dropped) after throttle_timeout_ms: an
         * SDK's export timeout (10 s by default) is shorter than
         * request_timeout_ms, and it would give up without an answer. */
        bool held = req && held_long;
        if (age < limit && !held)
            continue;
        if (age >= limit) {
            obs_counter_inc(w->s->reg, w->id, w->s->m_timeouts + w->id);
            dpdk_stat_add(&w->st.timeouts, 1);
        }
        if (req) {
            if (c->throttled)
                receiver_conn_throttle_timeout(&c->rc, &c->out);
            else
                receiver_conn_timeout(&c->rc, &c->out);
            c->want_close = true;
            conn_flush(w, c);
        } else if (c->out_off < c->out.len) {
            net_tcp_abort(c->tc); /* the peer does not read its response */
            conn_release(w, c);
        } else {
            conn_close(w, c);
        }
    }
}

/*
 * gRPC connection timers (as lib/sock's grpc_timers): resume clients stalled
 * on flow control, expire streams past their deadline, GOAWAY when idle or
 * stopping; requests already started finish and grpc_conn_want_close() then
 * says when to close. Beyond lib/sock: a peer that has not read for
 * request_timeout_ms while we have output is aborted, and a connection
 * still open an idle period after its idle GOAWAY is closed.
 */
static void grpc_timers(struct dpdk_worker *w, struct dpdk_conn *c, uint64_t now_ms,
                        uint64_t now_ns, bool stopping)
{
    const struct svc_config *cfg = w->s->cfg;
    struct grpc_conn *g = &c->gc;
    bool drained = c->out_off == c->out.len;
    uint64_t idle = now_ms > c->last_active_ms ? now_ms - c->last_active_ms : 0;
    if (!drained && idle >= cfg->receiver.request_timeout_ms) {
        obs_counter_inc(w->s->reg, w->id, w->s->m_timeouts + w->id);
        dpdk_stat_add(&w->st.timeouts, 1);
        net_tcp_abort(c->tc); /* the peer does not read */
        conn_release(w, c);
        return;
    }
    int r = GRPC_KEEP;
    if (stopping && !g->goaway_sent)
        r = grpc_conn_shutdown(g, &c->out);
    else if (grpc_conn_stalled(g) && drained) /* output paced: only once out is sent */
        r = grpc_conn_output(g, &c->out);
    uint64_t deadline = grpc_conn_deadline_ns(g);
    if (r == GRPC_KEEP && deadline != 0 && now_ns >= deadline)
        r = grpc_conn_expire(g, now_ns, &c->out);
    if (r == GRPC_KEEP && !stopping && !grpc_conn_busy(g) && drained &&
        idle >= cfg->receiver.idle_timeout_ms) {
        obs_counter_inc(w->s->reg, w->id, w->s->m_timeouts + w->id);
        dpdk_stat_add(&w->st.timeouts, 1);
        if (g->goaway_sent) { /* GOAWAY an idle period ago and still open */
            conn_close(w, c);
            return;
        }
        r = grpc_conn_shutdown(g, &c->out);
        c->last_active_ms = now_ms;
    }
    if (r == GRPC_CLOSE || grpc_conn_want_close(g))
        c->want_close = true;
    if (c->out.len > c->out_off || c->want_close || grpc_conn_want_write(g))
        conn_flush(w, c);
}

static void scan_grpc(struct dpdk_worker *w, uint64_t now_ms, bool stopping)
{
    uint64_t now_ns = base_now_ns();
    struct dpdk_conn *c = w->grpc_conns;
    while (c != NULL) {
        struct dpdk_conn *next = c->grpc_next; /* c may be released */
        if (!c->want_close && (c->tls.ssl == NULL || c->tls.established))
            grpc_timers(w, c, now_ms, now_ns, stopping);
        c = next;
    }
}

static inline void rx_one(struct dpdk_worker *w, struct rte_mbuf *m, uint64_t now_us)
{
    uint32_t flags = 0;
    if (w->s->rx_cksum) {
        uint64_t ip = m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;
        uint64_t l4 = m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;
        if (unlikely(ip == RTE_MBUF_F_RX_IP_CKSUM_BAD)) {
            dpdk_stat_add(&w->st.drops[DPDK_DROP_NIC_IP_CKSUM], 1);
            return;
        }
        if (unlikely(l4 == RTE_MBUF_F_RX_L4_CKSUM_BAD)) {
            dpdk_stat_add(&w->st.drops[DPDK_DROP_NIC_L4_CKSUM], 1);
            return;
        }
        if (ip == RTE_MBUF_F_RX_IP_CKSUM_GOOD)
            flags |= NET_RX_IP_CKSUM_GOOD;
        if (l4 == RTE_MBUF_F_RX_L4_CKSUM_GOOD)
            flags |= NET_RX_L4_CKSUM_GOOD;
    }
    uint32_t len = rte_pktmbuf_pkt_len(m);
    const uint8_t *frame;
    if (likely(m->nb_segs == 1)) {
        frame = rte_pktmbuf_mtod(m, const uint8_t *);
    } else {
        if (unlikely(len > DPDK_MAX_FRAME)) {
            dpdk_stat_add(&w->st.drops[DPDK_DROP_RX_TOO_LONG], 1);
            return;
        }
        frame = rte_pktmbuf_read(m, 0, len, w->scratch);
    }
    net_stack_input_flags(w->stack, frame, len, flags, now_us);
}

static int worker_main(void *arg)
{
    struct dpdk_worker *w = arg;
    struct dpdk_server *s = w->s;
    const uint64_t hz = s->tsc_hz;
    const double us_per_tsc = 1e6 / (double)hz;
    /* The stack and batch ages run on the TSC, anchored to the monotonic
     * clock the receiver uses, so no clock call per iteration. */
    const uint64_t tsc0 = rte_rdtsc();
    const uint64_t mono0_us = base_now_ns() / 1000u;
    uint64_t next_scan_ms = 0, next_grpc_ms = 0, win_start = tsc0, busy_tsc = 0, polls = 0;
    uint64_t stop_done_ms = 0;
    struct rte_mbuf *pkts[DPDK_BURST];

    log_info("dpdk worker running", "worker=%u lcore=%u queue=%u socket=%u", w->id, w->lcore,
             w->id, rte_socket_id());
    for (;;) {
        uint64_t t0 = rte_rdtsc();
        uint64_t now_us = mono0_us + (uint64_t)((double)(t0 - tsc0) * us_per_tsc);
        uint64_t now_ms = now_us / 1000u;
        w->now_ms = now_ms;
        uint16_t nb = rte_eth_rx_burst(s->port, (uint16_t)w->id, pkts, DPDK_BURST);
        for (uint16_t i = 0; i < nb; i++) {
            if (i + 1 < nb)
                rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void *));
            rx_one(w, pkts[i], now_us);
        }
        if (nb > 0)
            rte_pktmbuf_free_bulk(pkts, nb);
        net_stack_timers(w->stack, now_us);
        if (w->pending != NULL)
            flush_pending(w);
        if (w->n_throttled > 0)
            unthrottle(w);
        pipeline_tick(s->p, w->id, now_ms, false);
        bool did_work = nb > 0 || w->n_tx > 0;
        tx_flush(w);

        bool stopping = atomic_load_explicit(&s->stopping, memory_order_relaxed) != 0;
        if (now_ms >= next_scan_ms || stopping) {
            scan_timeouts(w, now_ms, stopping);
            next_scan_ms = now_ms + DPDK_SCAN_MS;
            tx_flush(w);
        }
        if (w->n_grpc > 0 && (now_ms >= next_grpc_ms || stopping)) {
            scan_grpc(w, now_ms, stopping);
            next_grpc_ms = now_ms + DPDK_GRPC_SCAN_MS;
            tx_flush(w);
        }
        polls++;
        uint64_t t1 = rte_rdtsc();
        if (did_work)
            busy_tsc += t1 - t0;
        if (t1 - win_start >= hz / (1000 / DPDK_STATS_MS)) {
            double ratio = (double)busy_tsc / (double)(t1 - win_start);
            uint64_t bits;
            memcpy(&bits, &ratio, sizeof(bits));
            __atomic_store_n(&w->st.busy_ratio_bits, bits, __ATOMIC_RELAXED);
            dpdk_stat_add(&w->st.polls, polls);
            polls = 0;
            busy_tsc = 0;
            win_start = t1;
        }
        if (stopping) {
            /* Application connections finish (or hit the deadline); then a
             * short grace so FINs and their ACKs go out. */
            uint64_t deadline = atomic_load(&s->deadline_ms);
            if (stop_done_ms == 0 && (w->n_conns == 0 || base_now_ms() >= deadline))
                stop_done_ms = now_ms + 200;
            if (stop_done_ms != 0 &&
                (now_ms >= stop_done_ms || net_stack_conn_count(w->stack) == 0))
                break;
        }
    }
    for (unsigned i = 0; i < w->max_conns; i++)
        if (w->conns[i].tc != NULL) {
            net_tcp_abort(w->conns[i].tc);
            conn_release(w, &w->conns[i]);
        }
    tx_flush(w);
    dpdk_stat_add(&w->st.polls, polls);
    pipeline_tick(s->p, w->id, base_now_ms(), true);
    log_info("dpdk worker stopped", "worker=%u lcore=%u", w->id, w->lcore);
    return 0;
}

/* ---- create / start / stop / destroy ---- */

static int stack_create(struct dpdk_server *s, struct dpdk_worker *w, const uint8_t secret[16])
{
    const struct dpdk_config *d = &s->cfg->dataplane.dpdk;
    struct net_config nc;
    net_config_defaults(&nc);
    memcpy(nc.ifc.mac, s->mac.addr_bytes, NET_ETH_ALEN);
    if (config_parse_ipv4(d->ip, &nc.ifc.ip) < 0 ||
        config_parse_ipv4(d->netmask, &nc.ifc.netmask) < 0)
        return -EINVAL;
    if (d->gateway != NULL && *d->gateway != '\0' &&
        config_parse_ipv4(d->gateway, &nc.ifc.gateway) < 0)
        return -EINVAL;
    nc.ifc.mtu = d->mtu;
    nc.listen_ports[0] = s->cfg->receiver.http_port;
    nc.n_listen_ports = 1;
    if (s->gr != NULL) /* app_accept tells the two apart by the local port */
        nc.listen_ports[nc.n_listen_ports++] = s->grpc_port;
    nc.max_conns = d->max_conns_per_lcore;
    nc.snd_buf_bytes = d->snd_buf_bytes;
    nc.rcv_space_bytes = d->rcv_space_bytes;
    /* Window scale so that the whole receive budget can be advertised. */
    nc.rcv_wscale = 0;
    while (nc.rcv_wscale < 14 && (d->rcv_space_bytes >> nc.rcv_wscale) > 65535)
        nc.rcv_wscale++;
    nc.ooo_buf_bytes = d->ooo_buf_bytes;
    if (nc.ooo_buf_bytes) {
        nc.ooo_bufs = d->max_conns_per_lcore / 8;
        if (nc.ooo_bufs < 16)
            nc.ooo_bufs = 16;
        if (nc.ooo_bufs > 512)
            nc.ooo_bufs = 512;
    }
    nc.time_wait_us = (uint64_t)d->time_wait_ms * 1000u;
    nc.keepalive_idle_us = (uint64_t)s->cfg->receiver.idle_timeout_ms * 1000u + 1000000u;
    nc.tx_cksum_offload = false; /* checksums in software: works on every PMD */
    nc.secret_set = true;
    memcpy(nc.secret, secret, sizeof(nc.secret));
    nc.replay_isn = d->replay_isn; /* checked in dpdk_server_create() */
    static const struct net_tx_ops tx = {.alloc = tx_alloc, .send = tx_send};
    static const struct net_app_ops app = {
        .on_accept = app_accept, .on_data = app_data, .on_closed = app_closed};
    return net_stack_create(&nc, &tx, w, &app, w, &w->stack);
}

static int register_conn_metrics(struct dpdk_server *s)
{
    static char store[CONFIG_MAX_CORES][24];
    const char *lbl[CONFIG_MAX_CORES];
    for (unsigned w = 0; w < s->n_workers; w++) {
        snprintf(store[w], sizeof(store[w]), "worker=\"%u\"", w);
        lbl[w] = store[w];
    }
    int rc;
    if ((rc = obs_gauge_register(s->reg, "otlp_worker_connections",
                                 "Open OTLP connections per worker", lbl, s->n_workers,
                                 &s->m_conns)) < 0 ||
        (rc = obs_counter_register(s->reg, "otlp_worker_connections_accepted_total",
                                   "Connections accepted per worker", lbl, s->n_workers,
                                   &s->m_accepted)) < 0 ||
        (rc = obs_counter_register(s->reg, "otlp_worker_connections_refused_total",
                                   "Connections refused (table full or stopping)", lbl,
                                   s->n_workers, &s->m_refused)) < 0 ||
        (rc = obs_counter_register(s->reg, "otlp_worker_timeouts_total",
                                   "Connections closed for idle or request timeout", lbl,
                                   s->n_workers, &s->m_timeouts)) < 0)
        return rc;
    return 0;
}

int dpdk_server_create(const struct svc_config *cfg, struct receiver *r, struct grpc_receiver *gr,
                       struct pipeline *p, struct obs_registry *reg, unsigned n_workers,
                       struct dpdk_server **out)
{
    if (cfg == NULL || r == NULL || p == NULL || reg == NULL || out == NULL || n_workers == 0 ||
        n_workers > CONFIG_MAX_CORES)
        return -EINVAL;
    if (gr != NULL &&
        (cfg->receiver.grpc_port == 0 || cfg->receiver.grpc_port == cfg->receiver.http_port))
        return -EINVAL;
    /* replay_isn makes every ISN public: only for pcap files replayed by
     * net_pcap (benchmarks, tests), never on a port that faces a network:
     * no net_pcap on a live interface (iface=, rx_iface=, tx_iface=), and
     * dpdk_port_init() checks that the port's driver is net_pcap. */
    if (cfg->dataplane.dpdk.replay_isn) {
        const char *ea = cfg->dataplane.dpdk.eal_args;
        if (ea == NULL || strstr(ea, "rx_pcap=") == NULL || strstr(ea, "iface=") != NULL) {
            log_error("dataplane.dpdk.replay_isn is for pcap replay only", "reason=%s",
                      "eal_args needs a net_pcap vdev reading rx_pcap= files and no live "
                      "interface; replay_isn makes every TCP ISN predictable");
            return -EINVAL;
        }
        log_warn("dataplane.dpdk.replay_isn is on: INSECURE, benchmarks only", "detail=%s",
                 "TCP ISNs are a public function of the 4-tuple; a SYN replaces a connection");
    }
    struct dpdk_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->cfg = cfg;
    s->r = r;
    s->gr = gr;
    s->grpc_port = cfg->receiver.grpc_port;
    s->p = p;
    s->reg = reg;
    s->n_workers = n_workers;
    s->port = cfg->dataplane.dpdk.port;
    s->stopped = true; /* nothing launched yet */
    pthread_mutex_init(&s->stats_lock, NULL);
    int rc = -ENOMEM;
    if (posix_memalign((void **)&s->workers, BASE_CACHE_LINE, n_workers * sizeof(*s->workers)))
        goto fail;
    memset(s->workers, 0, n_workers * sizeof(*s->workers));

    if (!dpdk_eal_ready()) { /* dpdk_eal_start() comes first */
        rc = -EINVAL;
        goto fail;
    }
    s->eal_ready = true;
    s->tsc_hz = rte_get_tsc_hz();
    /* Worker i runs on the i-th worker lcore. */
    unsigned lc, n = 0;
    RTE_LCORE_FOREACH_WORKER(lc) {
        if (n < n_workers)
            s->workers[n].lcore = lc;
        n++;
    }
    if (n < n_workers) {
        log_error("fewer worker lcores than workers", "lcores=%u workers=%u", n, n_workers);
        rc = -EINVAL;
        goto fail;
    }
    if ((rc = dpdk_port_init(s)) < 0)
        goto fail;

    /* All lcores share the SYN cookie / ISN key. */
    uint8_t secret[16];
    if (getrandom(secret, sizeof(secret), 0) != (ssize_t)sizeof(secret)) {
        rc = -EIO;
        goto fail;
    }
    unsigned per = cfg->dataplane.dpdk.max_conns_per_lcore;
    for (unsigned i = 0; i < n_workers; i++) {
        struct dpdk_worker *w = &s->workers[i];
        w->s = s;
        w->id = i;
        w->max_conns = per;
        rc = -ENOMEM;
        w->conns = calloc(per, sizeof(*w->conns));
        w->scratch = malloc(DPDK_MAX_FRAME);
        if (w->conns == NULL || w->scratch == NULL)
            goto fail;
        for (unsigned k = per; k-- > 0;) {
            struct dpdk_conn *c = &w->conns[k];
            if (buf_init(&c->out, DPDK_OUT_INIT, 0) < 0)
                goto fail;
            c->next_free = w->free_list;
            w->free_list = c;
        }
        if ((rc = receiver_worker_create(r, i, &w->rw)) < 0)
            goto fail;
        if (gr != NULL && (rc = grpc_worker_create(gr, i, &w->gw)) < 0)
            goto fail;
        if ((rc = stack_create(s, w, secret)) < 0) {
            log_error("cannot create the TCP/IP stack", "worker=%u error=%s", i, strerror(-rc));
            goto fail;
        }
    }
    if ((rc = register_conn_metrics(s)) < 0 || (rc = dpdk_metrics_register(s)) < 0) {
        log_error("cannot register dpdk metrics", "error=%s", strerror(-rc));
        goto fail;
    }
    *out = s;
    return 0;
fail:
    dpdk_server_destroy(s);
    return rc;
}

int dpdk_server_set_tls(struct dpdk_server *s, struct tls_ctx *tls)
{
    if (s == NULL || tls == NULL || s->tls != NULL || !s->stopped)
        return -EINVAL;
    for (unsigned i = 0; i < s->n_workers; i++) {
        struct dpdk_worker *w = &s->workers[i];
        int rc = tls_worker_create(tls, i, &w->tw);
        if (rc == 0 && (w->tls_buf = malloc(DPDK_TLS_BUF)) == NULL)
            rc = -ENOMEM;
        if (rc < 0) {
            for (unsigned k = 0; k <= i; k++) {
                tls_worker_destroy(s->workers[k].tw);
                s->workers[k].tw = NULL;
                free(s->workers[k].tls_buf);
                s->workers[k].tls_buf = NULL;
            }
            return rc;
        }
    }
    s->tls = tls;
    return 0;
}

int dpdk_server_start(struct dpdk_server *s)
{
    atomic_store(&s->stopping, 0);
    s->stopped = false;
    for (unsigned i = 0; i < s->n_workers; i++) {
        struct dpdk_worker *w = &s->workers[i];
        int rc = rte_eal_remote_launch(worker_main, w, w->lcore);
        if (rc != 0) {
            log_error("cannot launch worker lcore", "worker=%u lcore=%u error=%s", i, w->lcore,
                      strerror(-rc));
            dpdk_server_stop(s, base_now_ms());
            return -EBUSY;
        }
        w->launched = true;
    }
    const struct dpdk_config *d = &s->cfg->dataplane.dpdk;
    log_info("otlp/http receiver listening (dpdk)",
             "ip=%s port=%u dpdk_port=%u workers=%u tls=%s", d->ip,
             (unsigned)s->cfg->receiver.http_port, (unsigned)s->port, s->n_workers,
             s->tls ? "true" : "false");
    if (s->gr != NULL)
        log_info("otlp/grpc receiver listening (dpdk)",
                 "ip=%s port=%u dpdk_port=%u workers=%u tls=%s", d->ip, (unsigned)s->grpc_port,
                 (unsigned)s->port, s->n_workers, s->tls ? "true" : "false");
    return 0;
}

void dpdk_server_stop(struct dpdk_server *s, uint64_t deadline_ms)
{
    if (s == NULL || s->stopped)
        return;
    atomic_store(&s->deadline_ms, deadline_ms);
    atomic_store(&s->stopping, 1);
    for (unsigned i = 0; i < s->n_workers; i++) {
        struct dpdk_worker *w = &s->workers[i];
        if (w->launched) {
            rte_eal_wait_lcore(w->lcore);
            w->launched = false;
        }
    }
    s->stopped = true;
    dpdk_port_close(s);
}

void dpdk_server_destroy(struct dpdk_server *s)
{
    if (s == NULL)
        return;
    dpdk_server_stop(s, base_now_ms());
    if (s->eal_ready)
        dpdk_port_close(s);
    if (s->workers != NULL) {
        for (unsigned i = 0; i < s->n_workers; i++) {
            struct dpdk_worker *w = &s->workers[i];
            net_stack_destroy(w->stack); /* on_closed for connections still held */
            receiver_worker_destroy(w->rw);
            grpc_worker_destroy(w->gw); /* after the stack: its connections are finished */
            tls_worker_destroy(w->tw);
            free(w->tls_buf);
            if (w->conns != NULL)
                for (unsigned k = 0; k < w->max_conns; k++)
                    buf_free(&w->conns[k].out);
            free(w->conns);
            free(w->scratch);
        }
    }
    dpdk_metrics_free(s);
    if (s->pool != NULL)
        rte_mempool_free(s->pool);
    pthread_mutex_destroy(&s->stats_lock);
    free(s->workers);
    free(s);
}
