/* SPDX-License-Identifier: Apache-2.0 */
/* Shared harness of test_net_ip.c and test_net_tcp.c (#included, not a test
 * itself): a stack with captured tx frames, a recording application, and a
 * builder for the frames a peer would send. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/net_stack.h"

/* Not every test file uses every helper. */
#pragma GCC diagnostic ignored "-Wunused-function"

#define OUR_IP 0xc6120001u  /* 198.18.0.1/24 */
#define PEER_IP 0xc6120002u /* 198.18.0.2 */
#define GW_IP 0xc61200feu
#define PORT 4318
#define T0 1000000000ull /* arbitrary start of time, us */
#define MAX_TX 512
#define FRAME_MAX 2048

static const uint8_t our_mac[6] = {0x02, 0, 0, 0, 0, 0x01};
static const uint8_t peer_mac[6] = {0x02, 0, 0, 0, 0, 0x02};

struct h {
    struct net_stack *s;
    struct net_config cfg;
    uint64_t now;
    uint8_t tx[MAX_TX][FRAME_MAX];
    size_t tx_len[MAX_TX];
    unsigned n_tx;
    bool tx_fail;
    /* application */
    bool refuse, refill, echo, close_on_eof;
    unsigned accepts, closes, timeouts;
    int last_reason;
    struct net_tcp_conn *conn;
    int token;
    uint8_t rx[1 << 16];
    size_t rx_len;
    bool eof;
};

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static void wr32(uint8_t *p, uint32_t v)
{
    wr16(p, (uint16_t)(v >> 16));
    wr16(p + 2, (uint16_t)v);
}

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1)
        sum += (uint32_t)p[n - 1] << 8;
    return sum;
}
static uint16_t csum_fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}
static uint32_t pseudo(uint32_t src, uint32_t dst, uint16_t len)
{
    return (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + 6 + len;
}

/* ---- tx capture ---- */

static uint8_t *h_alloc(void *ctx, size_t len)
{
    struct h *h = ctx;
    if (h->tx_fail || h->n_tx >= MAX_TX || len > FRAME_MAX)
        return NULL;
    return h->tx[h->n_tx];
}

static void h_send(void *ctx, uint8_t *frame, size_t len)
{
    struct h *h = ctx;
    assert_ptr_equal(frame, h->tx[h->n_tx]);
    h->tx_len[h->n_tx++] = len;
}

/* ---- application ---- */

static void *app_accept(void *ctx, struct net_tcp_conn *c)
{
    struct h *h = ctx;
    if (h->refuse)
        return NULL;
    h->accepts++;
    h->conn = c;
    return &h->token;
}

static void app_data(void *ctx, struct net_tcp_conn *c, void *app, const uint8_t *d, size_t n)
{
    struct h *h = ctx;
    assert_ptr_equal(app, &h->token);
    if (n == 0) {
        assert_null(d);
        h->eof = true;
        if (h->close_on_eof)
            net_tcp_close(c);
        return;
    }
    assert_true(h->rx_len + n <= sizeof(h->rx));
    memcpy(h->rx + h->rx_len, d, n);
    h->rx_len += n;
    if (h->echo)
        assert_int_equal(net_tcp_send(c, d, n), 0);
    if (h->refill)
        net_tcp_set_rcv_space(c, h->cfg.rcv_space_bytes);
}

static void app_closed(void *ctx, struct net_tcp_conn *c, void *app, enum net_tcp_close_reason r)
{
    struct h *h = ctx;
    assert_ptr_equal(app, &h->token);
    h->closes++;
    h->last_reason = (int)r;
    if (h->conn == c)
        h->conn = NULL;
}

static void app_timeout(void *ctx, struct net_tcp_conn *c, void *app)
{
    struct h *h = ctx;
    (void)c;
    (void)app;
    h->timeouts++;
}

static const struct net_tx_ops h_tx = {h_alloc, h_send};
static const struct net_app_ops h_app = {app_accept, app_data, app_closed, app_timeout};

static void h_config(struct net_config *cfg)
{
    net_config_defaults(cfg);
    memcpy(cfg->ifc.mac, our_mac, 6);
    cfg->ifc.ip = OUR_IP;
    cfg->ifc.netmask = 0xffffff00u;
    cfg->ifc.gateway = GW_IP;
    cfg->listen_ports[0] = PORT;
    cfg->n_listen_ports = 1;
    cfg->max_conns = 64;
    cfg->ooo_bufs = 8;
    cfg->ooo_buf_bytes = 64 * 1024; /* the cases below are sized for 64 KiB */
    cfg->secret_set = true;
    memset(cfg->secret, 0x5a, sizeof(cfg->secret));
}

/* Create the stack from h->cfg (call h_config first, then tweak). */
static struct h *h_new_cfg(struct h *h)
{
    h->now = T0;
    h->refill = true;
    assert_int_equal(net_stack_create(&h->cfg, &h_tx, h, &h_app, h, &h->s), 0);
    return h;
}

static struct h *h_new(void)
{
    struct h *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    h_config(&h->cfg);
    return h_new_cfg(h);
}

static void h_free(struct h *h)
{
    net_stack_destroy(h->s);
    free(h);
}

static const struct net_stats *st(struct h *h)
{
    return net_stack_stats(h->s);
}
static uint64_t drops(struct h *h, enum net_drop_reason r)
{
    return st(h)->drops[r];
}

/* ---- frame builders ---- */

static size_t build_eth(uint8_t *f, const uint8_t *dst, uint16_t type)
{
    memcpy(f, dst, 6);
    memcpy(f + 6, peer_mac, 6);
    wr16(f + 12, type);
    return 14;
}

/* IPv4 header at f + 14 for `payload` bytes; returns the header length. */
static size_t build_ip(uint8_t *f, uint32_t src, uint32_t dst, uint8_t proto, size_t payload,
                       uint16_t frag)
{
    uint8_t *ip = f + 14;
    ip[0] = 0x45;
    ip[1] = 0;
    wr16(ip + 2, (uint16_t)(20 + payload));
    wr16(ip + 4, 7);
    wr16(ip + 6, frag);
    ip[8] = 64;
    ip[9] = proto;
    wr16(ip + 10, 0);
    wr32(ip + 12, src);
    wr32(ip + 16, dst);
    wr16(ip + 10, csum_fold(csum_add(0, ip, 20)));
    return 20;
}

struct seg {
    uint32_t src;
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint8_t flags;
    uint16_t wnd;
    const uint8_t *opt;
    size_t optlen;
    const void *data;
    size_t len;
};

static size_t build_tcp(uint8_t *f, const struct seg *g)
{
    size_t tl = 20 + g->optlen + g->len;
    build_eth(f, our_mac, 0x0800);
    build_ip(f, g->src ? g->src : PEER_IP, OUR_IP, 6, tl, 0x4000);
    uint8_t *t = f + 34;
    wr16(t, g->sport);
    wr16(t + 2, g->dport ? g->dport : PORT);
    wr32(t + 4, g->seq);
    wr32(t + 8, g->ack);
    t[12] = (uint8_t)(((20 + g->optlen) / 4) << 4);
    t[13] = g->flags;
    wr16(t + 14, g->wnd);
    wr16(t + 16, 0);
    wr16(t + 18, 0);
    if (g->optlen)
        memcpy(t + 20, g->opt, g->optlen);
    if (g->len)
        memcpy(t + 20 + g->optlen, g->data, g->len);
    uint32_t sum = pseudo(g->src ? g->src : PEER_IP, OUR_IP, (uint16_t)tl);
    wr16(t + 16, csum_fold(csum_add(sum, t, tl)));
    return 34 + tl;
}

static void h_input(struct h *h, const uint8_t *f, size_t len)
{
    net_stack_input(h->s, f, len, h->now);
}

static void h_seg(struct h *h, const struct seg *g)
{
    uint8_t f[FRAME_MAX + 9000];
    size_t n = build_tcp(f, g);
    h_input(h, f, n);
}

static void h_advance(struct h *h, uint64_t us)
{
    h->now += us;
    net_stack_timers(h->s, h->now);
}

/* ---- parsed tx frames ---- */

struct tx_tcp {
    uint32_t dst;
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint8_t flags;
    uint16_t wnd;
    const uint8_t *opt;
    size_t optlen;
    const uint8_t *data;
    size_t len;
};

/* Parse tx frame i as TCP/IPv4 and verify both checksums. */
static struct tx_tcp tx_tcp(struct h *h, unsigned i)
{
    assert_true(i < h->n_tx);
    const uint8_t *f = h->tx[i];
    size_t len = h->tx_len[i];
    assert_true(len >= 54);
    assert_memory_equal(f, peer_mac, 6);
    assert_memory_equal(f + 6, our_mac, 6);
    assert_int_equal(rd16(f + 12), 0x0800);
    const uint8_t *ip = f + 14;
    assert_int_equal(ip[0], 0x45);
    assert_int_equal(csum_fold(csum_add(0, ip, 20)), 0);
    assert_int_equal(ip[9], 6);
    assert_int_equal(rd32(ip + 12), OUR_IP);
    size_t tl = rd16(ip + 2) - 20u;
    assert_int_equal(tl + 34, len);
    const uint8_t *t = ip + 20;
    assert_int_equal(csum_fold(csum_add(pseudo(OUR_IP, rd32(ip + 16), (uint16_t)tl), t, tl)), 0);
    struct tx_tcp r = {
        .dst = rd32(ip + 16),
        .sport = rd16(t),
        .dport = rd16(t + 2),
        .seq = rd32(t + 4),
        .ack = rd32(t + 8),
        .flags = t[13],
        .wnd = rd16(t + 14),
    };
    size_t doff = (size_t)(t[12] >> 4) * 4;
    r.opt = t + 20;
    r.optlen = doff - 20;
    r.data = t + doff;
    r.len = tl - doff;
    return r;
}

static struct tx_tcp tx_last(struct h *h)
{
    assert_true(h->n_tx > 0);
    return tx_tcp(h, h->n_tx - 1);
}
