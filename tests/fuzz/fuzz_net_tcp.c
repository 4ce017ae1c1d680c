/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for lib/net: a sequence of records drives one stack with
 * an echo application, time moving forward only. Records (big-endian len):
 *   u8 kind, u8 dt, u16 len, len bytes
 *   time advances by dt ms first (dt * 1 s when kind bit 7 is set).
 *   kind & 3 == 0: raw Ethernet frame; bit 2: NIC says checksums good.
 *   kind & 3 == 1: a TCP segment from one of 8 peer ports, wrapped in valid
 *                  Ethernet/IPv4 with a correct checksum:
 *                  [port, flags, seq delta(4), ack delta(4), wnd(2), optlen,
 *                   options, payload]; seq is relative to the peer's next
 *                  sequence number, ack to the stack's last one on that port.
 *   kind & 3 == 2: an application call on that port's connection:
 *                  [port, op, arg...] op: send, close, abort, rcv space, deadline.
 *   kind & 3 == 3: run the timers.
 * Inputs of odd length run with net_config.replay_isn (the benchmark mode:
 * fixed public ISNs, a SYN replaces the connection of its 4-tuple).
 * Invariants: no crash or sanitizer report, connections <= table size, the
 * gauge matches, every frame sent is well formed with valid checksums and
 * segments within the MSS, callbacks only for live application connections,
 * and destroy reports every connection the application still holds. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_stack.h"

#define OUR_IP 0xc6120001u
#define PEER_IP 0xc6120002u
#define PORT 4318
#define NPORTS 8
#define MAX_CONNS 4

static const uint8_t our_mac[6] = {0x02, 0, 0, 0, 0, 0x01};
static const uint8_t peer_mac[6] = {0x02, 0, 0, 0, 0, 0x02};

struct app_conn {
    bool live;
    struct net_tcp_conn *conn;
};

struct fz {
    struct net_stack *s;
    uint8_t frame[16384];
    bool frame_out;
    struct app_conn apps[MAX_CONNS * 4];
    unsigned n_live;
    uint32_t peer_next[NPORTS]; /* next seq the peer sends */
    uint32_t our_next[NPORTS];  /* next seq the stack sends (from its frames) */
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

/* ---- tx: check every frame ---- */

static uint8_t *fz_alloc(void *ctx, size_t len)
{
    struct fz *f = ctx;
    if (f->frame_out || len > sizeof(f->frame))
        abort();
    f->frame_out = true;
    return f->frame;
}

static void fz_send(void *ctx, uint8_t *fr, size_t len)
{
    struct fz *f = ctx;
    if (fr != f->frame || !f->frame_out || len < 14)
        abort();
    f->frame_out = false;
    uint16_t type = rd16(fr + 12);
    if (type == 0x0806) {
        if (len != 42)
            abort();
        return;
    }
    if (type != 0x0800 || len < 34)
        abort();
    const uint8_t *ip = fr + 14;
    if (ip[0] != 0x45 || csum_fold(csum_add(0, ip, 20)) != 0 || rd16(ip + 2) + 14u != len)
        abort();
    if (ip[9] != 6)
        return;
    size_t tl = len - 34;
    const uint8_t *t = ip + 20;
    uint32_t dst = rd32(ip + 16);
    uint32_t ph =
        (OUR_IP >> 16) + (OUR_IP & 0xffff) + (dst >> 16) + (dst & 0xffff) + 6 + (uint32_t)tl;
    if (tl < 20 || csum_fold(csum_add(ph, t, tl)) != 0)
        abort();
    size_t doff = (size_t)(t[12] >> 4) * 4;
    if (doff < 20 || doff > tl || tl - doff > 1460)
        abort();
    uint16_t dport = rd16(t + 2);
    if (dport >= 40000 && dport < 40000 + NPORTS) {
        uint32_t end = rd32(t + 4) + (uint32_t)(tl - doff) + ((t[13] & 0x02) ? 1u : 0u) +
                       ((t[13] & 0x01) ? 1u : 0u);
        f->our_next[dport - 40000] = end;
    }
}

/* ---- echo application ---- */

static struct app_conn *app_of(struct fz *f, void *app)
{
    struct app_conn *a = app;
    if (a < f->apps || a >= f->apps + MAX_CONNS * 4 || !a->live)
        abort();
    return a;
}

static void *on_accept(void *ctx, struct net_tcp_conn *c)
{
    struct fz *f = ctx;
    for (unsigned i = 0; i < MAX_CONNS * 4; i++) {
        if (!f->apps[i].live) {
            f->apps[i] = (struct app_conn){true, c};
            f->n_live++;
            return &f->apps[i];
        }
    }
    abort(); /* more live connections than the table holds */
}

static void on_data(void *ctx, struct net_tcp_conn *c, void *app, const uint8_t *d, size_t n)
{
    struct fz *f = ctx;
    struct app_conn *a = app_of(f, app);
    if (a->conn != c)
        abort();
    if (n == 0) {
        a->live = false;
        f->n_live--;
        net_tcp_close(c);
        return;
    }
    (void)net_tcp_send(c, d, n);
    net_tcp_set_rcv_space(c, 8192);
}

static void on_closed(void *ctx, struct net_tcp_conn *c, void *app, enum net_tcp_close_reason r)
{
    struct fz *f = ctx;
    struct app_conn *a = app_of(f, app);
    (void)r;
    if (a->conn != c)
        abort();
    a->live = false;
    f->n_live--;
}

static void on_timeout(void *ctx, struct net_tcp_conn *c, void *app)
{
    struct fz *f = ctx;
    struct app_conn *a = app_of(f, app);
    if (a->conn != c)
        abort();
    (void)net_tcp_send(c, "HTTP/1.1 408\r\n\r\n", 16);
    a->live = false;
    f->n_live--;
    net_tcp_close(c);
}

static struct app_conn *conn_for_port(struct fz *f, uint16_t port)
{
    for (unsigned i = 0; i < MAX_CONNS * 4; i++) {
        struct app_conn *a = &f->apps[i];
        uint16_t p;
        if (!a->live)
            continue;
        net_tcp_conn_peer(a->conn, NULL, &p);
        if (p == port)
            return a;
    }
    return NULL;
}

static void check(struct fz *f)
{
    uint32_t n = net_stack_conn_count(f->s);
    if (n > MAX_CONNS || net_stack_stats(f->s)->tcp_active != n || f->n_live > n || f->frame_out)
        abort();
}

static void send_segment(struct fz *f, const uint8_t *d, size_t len, uint64_t now)
{
    if (len < 13)
        return;
    unsigned pi = d[0] % NPORTS;
    uint8_t flags = d[1];
    uint32_t seq = f->peer_next[pi] + rd32(d + 2);
    uint32_t ack = f->our_next[pi] + rd32(d + 6);
    uint16_t wnd = rd16(d + 10);
    size_t optlen = (size_t)(d[12] & 0x3c);
    if (optlen > 40) /* the data offset field holds at most 60 header bytes */
        optlen = 40;
    const uint8_t *rest = d + 13;
    size_t rest_len = len - 13;
    if (optlen > rest_len)
        optlen = rest_len & ~(size_t)3;
    size_t plen = rest_len - optlen;
    if (plen > 9000)
        plen = 9000;
    static uint8_t fr[9100];
    size_t tl = 20 + optlen + plen;
    memcpy(fr, our_mac, 6);
    memcpy(fr + 6, peer_mac, 6);
    wr16(fr + 12, 0x0800);
    uint8_t *ip = fr + 14;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    wr16(ip + 2, (uint16_t)(20 + tl));
    ip[8] = 64;
    ip[9] = 6;
    wr32(ip + 12, PEER_IP);
    wr32(ip + 16, OUR_IP);
    wr16(ip + 10, csum_fold(csum_add(0, ip, 20)));
    uint8_t *t = ip + 20;
    wr16(t, (uint16_t)(40000 + pi));
    wr16(t + 2, PORT);
    wr32(t + 4, seq);
    wr32(t + 8, ack);
    t[12] = (uint8_t)(((20 + optlen) / 4) << 4);
    t[13] = flags;
    wr16(t + 14, wnd);
    wr16(t + 16, 0);
    wr16(t + 18, 0);
    memcpy(t + 20, rest, optlen + plen);
    uint32_t ph = (PEER_IP >> 16) + (PEER_IP & 0xffff) + (OUR_IP >> 16) + (OUR_IP & 0xffff) + 6 +
                  (uint32_t)tl;
    wr16(t + 16, csum_fold(csum_add(ph, t, tl)));
    f->peer_next[pi] =
        seq + (uint32_t)plen + ((flags & 0x02) ? 1u : 0u) + ((flags & 0x01) ? 1u : 0u);
    net_stack_input(f->s, fr, 34 + tl, now);
}

static void app_call(struct fz *f, const uint8_t *d, size_t len, uint64_t now)
{
    if (len < 2)
        return;
    struct app_conn *a = conn_for_port(f, (uint16_t)(40000 + d[0] % NPORTS));
    if (a == NULL)
        return;
    struct net_tcp_conn *c = a->conn;
    switch (d[1] % 5) {
    case 0:
        (void)net_tcp_send(c, d + 2, len - 2);
        break;
    case 1:
        a->live = false;
        f->n_live--;
        net_tcp_close(c);
        break;
    case 2:
        a->live = false;
        f->n_live--;
        net_tcp_abort(c);
        break;
    case 3:
        net_tcp_set_rcv_space(c, len >= 4 ? rd16(d + 2) : 0);
        break;
    case 4:
        net_tcp_set_app_deadline(c, len >= 3 ? now + d[2] * 1000u : 0);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fz f;
    memset(&f, 0, sizeof(f));
    struct net_config cfg;
    net_config_defaults(&cfg);
    memcpy(cfg.ifc.mac, our_mac, 6);
    cfg.ifc.ip = OUR_IP;
    cfg.ifc.netmask = 0xffffff00u;
    cfg.ifc.gateway = 0xc61200feu;
    cfg.listen_ports[0] = PORT;
    cfg.n_listen_ports = 1;
    cfg.max_conns = MAX_CONNS;
    cfg.snd_buf_bytes = 4096;
    cfg.rcv_space_bytes = 8192;
    cfg.ooo_buf_bytes = 4096;
    cfg.ooo_bufs = 2;
    cfg.max_retries = 4;
    cfg.time_wait_us = 100000;
    cfg.fin_wait2_timeout_us = 2000000;
    cfg.keepalive_idle_us = 5000000;
    cfg.keepalive_intvl_us = 1000000;
    cfg.keepalive_probes = 2;
    cfg.secret_set = true;
    cfg.replay_isn = (size & 1) != 0;
    static const struct net_tx_ops tx = {fz_alloc, fz_send};
    static const struct net_app_ops app = {on_accept, on_data, on_closed, on_timeout};
    if (net_stack_create(&cfg, &tx, &f, &app, &f, &f.s) != 0)
        abort();

    uint64_t now = 1000000000ull;
    size_t i = 0;
    while (i + 4 <= size) {
        uint8_t kind = data[i];
        uint64_t dt = data[i + 1];
        size_t len = rd16(data + i + 2);
        i += 4;
        if (len > size - i)
            len = size - i;
        const uint8_t *d = data + i;
        i += len;
        now += dt * ((kind & 0x80) ? 1000000u : 1000u);
        switch (kind & 3) {
        case 0:
            net_stack_input_flags(
                f.s, d, len, (kind & 4) ? NET_RX_IP_CKSUM_GOOD | NET_RX_L4_CKSUM_GOOD : 0, now);
            break;
        case 1:
            send_segment(&f, d, len, now);
            break;
        case 2:
            app_call(&f, d, len, now);
            break;
        case 3:
            net_stack_timers(f.s, now);
            break;
        }
        check(&f);
    }
    /* Let every timer run out: all connections must end. */
    for (int k = 0; k < 40; k++) {
        now += 10000000;
        net_stack_timers(f.s, now);
        check(&f);
    }
    if (getenv("FUZZ_NET_DEBUG")) {
        const struct net_stats *st = net_stack_stats(f.s);
        fprintf(stderr, "accepted %llu closed %llu rx %llu tx %llu retrans %llu ooo %llu\n",
                (unsigned long long)st->tcp_accepted, (unsigned long long)st->tcp_closed,
                (unsigned long long)st->tcp_rx_bytes, (unsigned long long)st->tcp_tx_bytes,
                (unsigned long long)st->tcp_retransmits, (unsigned long long)st->tcp_ooo_segments);
    }
    if (net_stack_conn_count(f.s) != 0)
        abort(); /* a connection that never ends: a timer leak */
    net_stack_destroy(f.s);
    if (f.n_live != 0)
        abort();
    return 0;
}
