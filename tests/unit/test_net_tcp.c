/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for lib/net TCP: the cookie handshake, in-order, out-of-order,
 * duplicate and overlapping data, receive window, sending with
 * segmentation, retransmission with backoff and abort, every close path,
 * RST and SYN validation (RFC 5961), SYN flood, table churn, keepalive and
 * timers. A scripted peer builds the frames; time only moves by h_advance. */
#include "test_net_harness.c"

#define F_FIN 0x01
#define F_SYN 0x02
#define F_RST 0x04
#define F_PSH 0x08
#define F_ACK 0x10

/* MSS 1460, SACK permitted, NOP, NOP, NOP, window scale 7 */
static const uint8_t opts_ws[] = {2, 4, 0x05, 0xb4, 4, 2, 1, 1, 1, 3, 3, 7};
static const uint8_t opts_mss[] = {2, 4, 0x05, 0xb4};

struct peer {
    uint32_t src; /* 0: PEER_IP */
    uint16_t port;
    uint32_t seq; /* next sequence number we send */
    uint32_t ack; /* next sequence number expected from the stack */
    uint16_t wnd;
    bool no_ws;
};

static uint8_t pattern[1 << 15];

static void fill_pattern(void)
{
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (uint8_t)('a' + (i * 7 + i / 26) % 26);
}

static void p_raw(struct h *h, struct peer *p, uint32_t seq, uint8_t flags, const void *d, size_t n)
{
    h_seg(h, &(struct seg){.src = p->src,
                           .sport = p->port,
                           .seq = seq,
                           .ack = p->ack,
                           .flags = flags,
                           .wnd = p->wnd,
                           .data = d,
                           .len = n});
}

/* Send in sequence (ACK set) and advance the peer's seq. */
static void p_send(struct h *h, struct peer *p, uint8_t flags, const void *d, size_t n)
{
    p_raw(h, p, p->seq, (uint8_t)(flags | F_ACK), d, n);
    p->seq += (uint32_t)n + ((flags & F_FIN) ? 1u : 0u);
}

static struct tx_tcp p_syn(struct h *h, struct peer *p)
{
    unsigned before = h->n_tx;
    h_seg(h, &(struct seg){.src = p->src,
                           .sport = p->port,
                           .seq = p->seq,
                           .flags = F_SYN,
                           .wnd = 65535,
                           .opt = p->no_ws ? opts_mss : opts_ws,
                           .optlen = p->no_ws ? sizeof(opts_mss) : sizeof(opts_ws)});
    assert_int_equal(h->n_tx, before + 1);
    struct tx_tcp t = tx_last(h);
    assert_int_equal(t.flags, F_SYN | F_ACK);
    assert_int_equal(t.ack, p->seq + 1);
    assert_int_equal(t.sport, PORT);
    assert_int_equal(t.dport, p->port);
    p->seq++;
    p->ack = t.seq + 1;
    return t;
}

static struct net_tcp_conn *p_connect(struct h *h, struct peer *p)
{
    if (p->wnd == 0 && !p->no_ws)
        p->wnd = 512; /* x 128 */
    unsigned acc = h->accepts;
    p_syn(h, p);
    unsigned before = h->n_tx;
    p_send(h, p, 0, NULL, 0);
    assert_int_equal(h->accepts, acc + 1);
    assert_int_equal(h->n_tx, before);
    assert_non_null(h->conn);
    assert_int_equal(net_tcp_conn_state(h->conn), NET_TCP_ESTABLISHED);
    return h->conn;
}

static struct peer peer_at(uint16_t port)
{
    return (struct peer){.port = port, .seq = 1000};
}

/* ---- handshake ---- */

static void test_handshake(void **state)
{
    (void)state;
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    struct tx_tcp t = p_syn(h, &p);
    assert_int_equal(t.optlen, 8);
    const uint8_t want[] = {2, 4, 0x05, 0xb4, 1, 3, 3, 4};
    assert_memory_equal(t.opt, want, 8);
    assert_int_equal(t.wnd, 65535);
    assert_int_equal(t.dst, PEER_IP);
    assert_int_equal(net_stack_conn_count(h->s), 0); /* stateless until the ACK */
    assert_int_equal(st(h)->tcp_syncookies_tx, 1);

    unsigned before = h->n_tx;
    p.wnd = 512;
    p_send(h, &p, 0, NULL, 0);
    assert_int_equal(h->accepts, 1);
    assert_int_equal(h->n_tx, before);
    assert_int_equal(net_stack_conn_count(h->s), 1);
    uint32_t ip;
    uint16_t port;
    net_tcp_conn_peer(h->conn, &ip, &port);
    assert_int_equal(ip, PEER_IP);
    assert_int_equal(port, 40000);
    assert_int_equal(net_tcp_conn_local_port(h->conn), PORT);

    /* without window scale the SYN-ACK has MSS only */
    struct peer q = peer_at(40001);
    q.no_ws = true;
    t = p_syn(h, &q);
    assert_int_equal(t.optlen, 4);
    assert_memory_equal(t.opt, opts_mss, 4);
    h_free(h);
}

static void test_handshake_data_on_ack(void **state)
{
    (void)state;
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    p.wnd = 512;
    p_syn(h, &p);
    p_send(h, &p, F_PSH, "GET", 3); /* the handshake ACK carries data */
    assert_int_equal(h->accepts, 1);
    assert_int_equal(h->rx_len, 3);
    assert_memory_equal(h->rx, "GET", 3);
    h_free(h);
}

static void test_bad_cookie_and_refusal(void **state)
{
    (void)state;
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    p_syn(h, &p);
    p.ack += 12345; /* wrong cookie */
    p_send(h, &p, 0, NULL, 0);
    struct tx_tcp t = tx_last(h);
    assert_int_equal(t.flags, F_RST);
    assert_int_equal(t.seq, p.ack);
    assert_int_equal(drops(h, NET_DROP_TCP_NO_CONN), 1);
    assert_int_equal(h->accepts, 0);
    /* wrong peer ISN (seq) fails too */
    struct peer q = peer_at(40001);
    p_syn(h, &q);
    q.seq += 1;
    p_send(h, &q, 0, NULL, 0);
    assert_int_equal(drops(h, NET_DROP_TCP_NO_CONN), 2);
    /* an expired cookie: two minutes later */
    struct peer r = peer_at(40002);
    p_syn(h, &r);
    h->now += 2 * 67108864ull;
    p_send(h, &r, 0, NULL, 0);
    assert_int_equal(drops(h, NET_DROP_TCP_NO_CONN), 3);

    h->refuse = true;
    struct peer s2 = peer_at(40003);
    p_syn(h, &s2);
    p_send(h, &s2, 0, NULL, 0);
    t = tx_last(h);
    assert_true(t.flags & F_RST);
    assert_int_equal(drops(h, NET_DROP_TCP_REFUSED), 1);
    assert_int_equal(net_stack_conn_count(h->s), 0);
    assert_int_equal(h->closes, 0);
    h_free(h);
}

static void test_no_listener_and_checksum(void **state)
{
    (void)state;
    struct h *h = h_new();
    h_seg(h, &(struct seg){.sport = 5555, .dport = 80, .seq = 77, .flags = F_SYN, .wnd = 100});
    struct tx_tcp t = tx_last(h);
    assert_int_equal(t.flags, F_RST | F_ACK);
    assert_int_equal(t.seq, 0);
    assert_int_equal(t.ack, 78);
    assert_int_equal(t.sport, 80);
    assert_int_equal(drops(h, NET_DROP_TCP_NO_LISTENER), 1);

    uint8_t f[256];
    size_t n = build_tcp(
        f, &(struct seg){
               .sport = 5555, .seq = 77, .flags = F_SYN, .wnd = 100, .data = "xy", .len = 2});
    f[n - 1] ^= 0x10;
    unsigned before = h->n_tx;
    h_input(h, f, n);
    assert_int_equal(drops(h, NET_DROP_TCP_CHECKSUM), 1);
    assert_int_equal(h->n_tx, before);
    /* NIC says the L4 checksum is good: accepted */
    net_stack_input_flags(h->s, f, n, NET_RX_L4_CKSUM_GOOD, h->now);
    assert_int_equal(h->n_tx, before + 1);
    /* header length beyond the segment; truncated header */
    n = build_tcp(f, &(struct seg){.sport = 5555, .seq = 77, .flags = F_SYN});
    f[34 + 12] = 0xf0;
    net_stack_input_flags(h->s, f, n, NET_RX_L4_CKSUM_GOOD, h->now);
    assert_int_equal(drops(h, NET_DROP_TCP_HDR_LEN), 1);
    build_ip(f, PEER_IP, OUR_IP, 6, 10, 0);
    h_input(h, f, 44);
    assert_int_equal(drops(h, NET_DROP_TCP_SHORT), 1);
    /* RST for nothing, plain segment without ACK */
    h_seg(h, &(struct seg){.sport = 5555, .seq = 77, .flags = F_RST});
    assert_int_equal(drops(h, NET_DROP_TCP_NO_CONN_RST), 1);
    h_seg(h, &(struct seg){.sport = 5555, .seq = 77, .flags = F_FIN});
    h_seg(h, &(struct seg){.sport = 5555, .seq = 77, .flags = F_SYN | F_FIN});
    assert_int_equal(drops(h, NET_DROP_TCP_FLAGS), 2);
    h_free(h);
}

/* ---- receiving ---- */

static void test_data_in_order_and_delack(void **state)
{
    (void)state;
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    p_connect(h, &p);
    unsigned before = h->n_tx;
    p_send(h, &p, 0, "he", 2);
    /* the app's budget (256 KiB) is far above the SYN-ACK's 64 KiB: the
     * first ACK is a window update, sent at once */
    assert_int_equal(h->n_tx, before + 1);
    struct tx_tcp t = tx_last(h);
    assert_int_equal(t.wnd, (256 * 1024) >> 4);
    assert_int_equal(t.ack, p.seq);
    before = h->n_tx;
    p_send(h, &p, 0, "llo ", 4);
    assert_int_equal(h->rx_len, 6);
    assert_int_equal(h->n_tx, before); /* ACK delayed */
    p_send(h, &p, F_PSH, "world", 5);
    assert_int_equal(h->rx_len, 11);
    assert_memory_equal(h->rx, "hello world", 11);
    assert_int_equal(h->n_tx, before + 1); /* every second segment */
    t = tx_last(h);
    assert_int_equal(t.flags, F_ACK);
    assert_int_equal(t.ack, p.seq);
    assert_int_equal(t.seq, p.ack);
    assert_int_equal(t.wnd, (256 * 1024) >> 4);

    p_send(h, &p, 0, "!", 1);
    assert_int_equal(h->n_tx, before + 1);
    h_advance(h, 39000);
    assert_int_equal(h->n_tx, before + 1);
    h_advance(h, 1000);
    assert_int_equal(h->n_tx, before + 2);
    assert_int_equal(tx_last(h).ack, p.seq);
    assert_int_equal(st(h)->tcp_rx_bytes, 12);
    assert_int_equal(h->rx_len, 12);

    /* an echo app answers at once: the response carries the ACK */
    h->echo = true;
    p_send(h, &p, 0, "ping", 4);
    assert_int_equal(h->n_tx, before + 3);
    t = tx_last(h);
    assert_int_equal(t.len, 4);
    assert_int_equal(t.ack, p.seq);
    h_advance(h, 50000); /* no extra delayed ACK */
    assert_int_equal(h->n_tx, before + 3);
    h_free(h);
}

static void test_out_of_order(void **state)
{
    (void)state;
    fill_pattern();
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    p_connect(h, &p);
    uint32_t base = p.seq;
    unsigned before = h->n_tx;
    p_raw(h, &p, base + 5, F_ACK, pattern + 5, 5);
    assert_int_equal(h->rx_len, 0);
    assert_int_equal(h->n_tx, before + 1); /* duplicate ACK */
    assert_int_equal(tx_last(h).ack, base);
    assert_int_equal(st(h)->tcp_ooo_segments, 1);
    p_raw(h, &p, base + 15, F_ACK, pattern + 15, 5);
    assert_int_equal(h->n_tx, before + 2);
    p_raw(h, &p, base, F_ACK, pattern, 5); /* fills the first gap */
    assert_int_equal(h->rx_len, 10);
    assert_int_equal(tx_last(h).ack, base + 10);
    p_raw(h, &p, base + 10, F_ACK, pattern + 10, 5);
    assert_int_equal(h->rx_len, 20);
    assert_memory_equal(h->rx, pattern, 20);
    assert_int_equal(tx_last(h).ack, base + 20);

    /* a FIN that arrives before the data in front of it */
    p_raw(h, &p, base + 25, F_ACK | F_FIN, pattern + 25, 5);
    assert_false(h->eof);
    p_raw(h, &p, base + 20, F_ACK, pattern + 20, 5);
    assert_int_equal(h->rx_len, 30);
    assert_memory_equal(h->rx, pattern, 30);
    assert_true(h->eof);
    assert_int_equal(net_tcp_conn_state(h->conn), NET_TCP_CLOSE_WAIT);
    assert_int_equal(tx_last(h).ack, base + 31);
    h_free(h);
}

static void test_duplicates_and_overlaps(void **state)
{
    (void)state;
    fill_pattern();
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    p_connect(h, &p);
    uint32_t b = p.seq;
    p_raw(h, &p, b, F_ACK, pattern, 10);
    p_raw(h, &p, b + 5, F_ACK, pattern + 5, 10); /* overlaps 5 */
    assert_int_equal(h->rx_len, 15);
    assert_memory_equal(h->rx, pattern, 15);
    assert_int_equal(st(h)->tcp_dup_bytes, 5);
    unsigned before = h->n_tx;
    p_raw(h, &p, b, F_ACK, pattern, 15); /* full duplicate: ACK at once */
    assert_int_equal(h->rx_len, 15);
    assert_int_equal(drops(h, NET_DROP_TCP_DUPLICATE), 1);
    assert_int_equal(h->n_tx, before + 1);
    assert_int_equal(tx_last(h).ack, b + 15);

    /* overlapping out-of-order pieces merge */
    p_raw(h, &p, b + 20, F_ACK, pattern + 20, 10);
    p_raw(h, &p, b + 25, F_ACK, pattern + 25, 10);
    p_raw(h, &p, b + 40, F_ACK, pattern + 40, 5);
    p_raw(h, &p, b + 50, F_ACK, pattern + 50, 5);
    p_raw(h, &p, b + 42, F_ACK, pattern + 42, 10); /* bridges 40..55 */
    p_raw(h, &p, b + 34, F_ACK, pattern + 34, 7);
    assert_int_equal(h->rx_len, 15);
    p_raw(h, &p, b + 10, F_ACK, pattern + 10, 12); /* overlaps delivered and held */
    assert_int_equal(h->rx_len, 55);
    assert_memory_equal(h->rx, pattern, 55);
    assert_int_equal(tx_last(h).ack, b + 55);

    /* out-of-order beyond the reassembly buffer is dropped and counted */
    p_raw(h, &p, b + 55 + 70000, F_ACK, pattern, 100);
    assert_int_equal(drops(h, NET_DROP_TCP_OOO_FULL), 1);
    /* more ranges than tracked */
    for (unsigned i = 0; i < 9; i++)
        p_raw(h, &p, b + 100 + 10 * i, F_ACK, pattern, 2);
    assert_int_equal(drops(h, NET_DROP_TCP_OOO_FULL), 2);
    h_free(h);
}

static void test_zero_window(void **state)
{
    (void)state;
    fill_pattern();
    struct h *h = calloc(1, sizeof(*h));
    h_config(&h->cfg);
    h->cfg.rcv_space_bytes = 1000;
    h_new_cfg(h);
    h->refill = false;
    struct peer p = peer_at(40000);
    p.no_ws = true;
    p.wnd = 8000;
    struct tx_tcp t = p_syn(h, &p);
    assert_int_equal(t.wnd, 1000);
    p_send(h, &p, 0, NULL, 0);
    struct net_tcp_conn *c = h->conn;
    p_send(h, &p, 0, pattern, 600);
    p_send(h, &p, 0, pattern + 600, 400);
    assert_int_equal(h->rx_len, 1000);
    t = tx_last(h);
    assert_int_equal(t.ack, p.seq);
    assert_int_equal(t.wnd, 0);

    unsigned before = h->n_tx;
    p_raw(h, &p, p.seq, F_ACK, pattern + 1000, 1); /* zero-window probe */
    assert_int_equal(h->rx_len, 1000);
    assert_int_equal(drops(h, NET_DROP_TCP_OUT_OF_WINDOW), 1);
    assert_int_equal(h->n_tx, before + 1);
    assert_int_equal(tx_last(h).wnd, 0);
    assert_int_equal(tx_last(h).ack, p.seq);

    net_tcp_set_rcv_space(c, 100); /* below the update threshold: silent */
    assert_int_equal(h->n_tx, before + 1);
    net_tcp_set_rcv_space(c, 1000); /* window update */
    assert_int_equal(h->n_tx, before + 2);
    assert_int_equal(tx_last(h).wnd, 1000);
    p_send(h, &p, 0, pattern + 1000, 1);
    assert_int_equal(h->rx_len, 1001);
    assert_memory_equal(h->rx, pattern, 1001);
    /* beyond the window: trimmed to it */
    p_send(h, &p, 0, pattern + 1001, 1200);
    assert_int_equal(h->rx_len, 2000);
    h_free(h);
}

/* ---- sending ---- */

static void test_send_segmentation(void **state)
{
    (void)state;
    fill_pattern();
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    struct net_tcp_conn *c = p_connect(h, &p);
    unsigned before = h->n_tx;
    assert_int_equal(net_tcp_send(c, pattern, 4000), 0);
    assert_int_equal(h->n_tx, before + 3);
    const size_t want[] = {1460, 1460, 1080};
    uint32_t seq = p.ack;
    for (unsigned i = 0; i < 3; i++) {
        struct tx_tcp t = tx_tcp(h, before + i);
        assert_int_equal(t.len, want[i]);
        assert_int_equal(t.seq, seq);
        assert_int_equal(t.ack, p.seq);
        assert_int_equal(t.flags, i == 2 ? (F_ACK | F_PSH) : F_ACK);
        assert_memory_equal(t.data, pattern + (seq - p.ack), want[i]);
        seq += (uint32_t)want[i];
    }
    assert_int_equal(net_tcp_conn_snd_queued(c), 4000);
    assert_int_equal(net_tcp_send(c, pattern, h->cfg.snd_buf_bytes), -ENOBUFS);
    assert_int_equal(net_tcp_send(c, NULL, 1), -EINVAL);
    p.ack += 2920;
    p_send(h, &p, 0, NULL, 0);
    assert_int_equal(net_tcp_conn_snd_queued(c), 1080);
    p.ack += 1080;
    p_send(h, &p, 0, NULL, 0);
    assert_int_equal(net_tcp_conn_snd_queued(c), 0);
    assert_int_equal(net_tcp_conn_snd_free(c), h->cfg.snd_buf_bytes);
    assert_int_equal(h->n_tx, before + 3);
    /* an ACK above what we sent is answered and dropped */
    p.ack += 10;
    p_send(h, &p, 0, NULL, 0);
    assert_int_equal(drops(h, NET_DROP_TCP_ACK_INVALID), 1);
    assert_int_equal(h->n_tx, before + 4);
    p.ack -= 10;
    /* the ring wraps: many sends of odd sizes */
    for (unsigned i = 0; i < 40; i++) {
        size_t n = 1000 + i * 37;
        unsigned b2 = h->n_tx;
        assert_int_equal(net_tcp_send(c, pattern + i, n), 0);
        size_t got = 0;
        for (unsigned k = b2; k < h->n_tx; k++) {
            struct tx_tcp t = tx_tcp(h, k);
            assert_memory_equal(t.data, pattern + i + got, t.len);
            got += t.len;
        }
        assert_int_equal(got, n);
        p.ack += (uint32_t)n;
        p_send(h, &p, 0, NULL, 0);
        if (h->n_tx > MAX_TX - 16)
            h->n_tx = 0;
    }
    h_free(h);
}

static void test_send_window(void **state)
{
    (void)state;
    fill_pattern();
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    p.no_ws = true;
    p.wnd = 2000;
    struct net_tcp_conn *c = p_connect(h, &p);
    unsigned before = h->n_tx;
    assert_int_equal(net_tcp_send(c, pattern, 4000), 0);
    assert_int_equal(h->n_tx, before + 2);
    assert_int_equal(tx_tcp(h, before).len, 1460);
    assert_int_equal(tx_tcp(h, before + 1).len, 540);
    p.ack += 1460;
    p_send(h, &p, 0, NULL, 0);
    assert_int_equal(h->n_tx, before + 3);
    assert_int_equal(tx_last(h).len, 1460);
    assert_int_equal(tx_last(h).seq, p.ack + 540);
    h_free(h);
}

static void test_persist_probe(void **state)
{
    (void)state;
    fill_pattern();
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    p.no_ws = true;
    p.wnd = 1; /* SYN */
    p_syn(h, &p);
    p.wnd = 0;
    p_send(h, &p, 0, NULL, 0);
    struct net_tcp_conn *c = h->conn;
    unsigned before = h->n_tx;
    assert_int_equal(net_tcp_send(c, pattern, 10), 0);
    assert_int_equal(h->n_tx, before);
    h_advance(h, 1000000);
    assert_int_equal(h->n_tx, before + 1);
    struct tx_tcp t = tx_last(h);
    assert_int_equal(t.len, 1);
    assert_int_equal(t.seq, p.ack);
    p.wnd = 1000; /* window opens, probe byte not taken yet */
    p_send(h, &p, 0, NULL, 0);
    assert_int_equal(h->n_tx, before + 2);
    t = tx_last(h);
    assert_int_equal(t.len, 9);
    assert_int_equal(t.seq, p.ack + 1);
    h_free(h);
}

static void test_retransmit_backoff_abort(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    h_config(&h->cfg);
    h->cfg.max_retries = 3;
    h_new_cfg(h);
    struct peer p = peer_at(40000);
    struct net_tcp_conn *c = p_connect(h, &p);
    unsigned before = h->n_tx;
    assert_int_equal(net_tcp_send(c, "response", 8), 0);
    assert_int_equal(h->n_tx, before + 1);
    uint64_t rto = 1000000;
    for (unsigned i = 0; i < 3; i++) {
        h_advance(h, rto - 1000);
        assert_int_equal(h->n_tx, before + 1 + i);
        h_advance(h, 1000);
        assert_int_equal(h->n_tx, before + 2 + i);
        struct tx_tcp t = tx_last(h);
        assert_int_equal(t.seq, p.ack);
        assert_int_equal(t.len, 8);
        assert_memory_equal(t.data, "response", 8);
        rto *= 2;
    }
    assert_int_equal(st(h)->tcp_retransmits, 3);
    h_advance(h, rto);
    struct tx_tcp t = tx_last(h);
    assert_int_equal(t.flags, F_RST | F_ACK);
    assert_int_equal(h->closes, 1);
    assert_int_equal(h->last_reason, NET_TCP_CLOSE_RETRANSMIT);
    assert_int_equal(net_stack_conn_count(h->s), 0);
    assert_int_equal(st(h)->tcp_rto_aborts, 1);
    h_free(h);
}

static void test_rtt_sets_rto(void **state)
{
    (void)state;
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    struct net_tcp_conn *c = p_connect(h, &p);
    assert_int_equal(net_tcp_send(c, "a", 1), 0);
    h_advance(h, 50000);
    p.ack += 1;
    p_send(h, &p, 0, NULL, 0); /* RTT 50 ms: RTO = max(200 ms, 50 + 4 * 25) */
    unsigned before = h->n_tx;
    assert_int_equal(net_tcp_send(c, "b", 1), 0);
    h_advance(h, 199000);
    assert_int_equal(h->n_tx, before + 1);
    h_advance(h, 1000);
    assert_int_equal(h->n_tx, before + 2);
    assert_int_equal(tx_last(h).seq, p.ack);
    /* the retransmission is acked: no more */
    p.ack += 1;
    p_send(h, &p, 0, NULL, 0);
    h_advance(h, 5000000);
    assert_int_equal(h->n_tx, before + 2);
    h_free(h);
}

/* ---- closing ---- */

static void test_peer_closes_first(void **state)
{
    (void)state;
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    struct net_tcp_conn *c = p_connect(h, &p);
    p_send(h, &p, F_FIN, "last", 4);
    assert_true(h->eof);
    assert_int_equal(h->rx_len, 4);
    struct tx_tcp t = tx_last(h);
    assert_int_equal(t.ack, p.seq); /* FIN acked at once */
    assert_int_equal(net_tcp_conn_state(c), NET_TCP_CLOSE_WAIT);
    assert_int_equal(net_tcp_send(c, "bye", 3), 0); /* CLOSE_WAIT still sends */
    net_tcp_close(c);                               /* LAST_ACK */
    t = tx_last(h);
    assert_int_equal(t.flags, F_ACK | F_FIN);
    assert_int_equal(t.seq, p.ack + 3);
    assert_int_equal(net_stack_conn_count(h->s), 1);
    p.ack += 4;
    p_send(h, &p, 0, NULL, 0);
    assert_int_equal(net_stack_conn_count(h->s), 0);
    assert_int_equal(h->closes, 0); /* the app closed it itself */
    h_free(h);
}

static void test_we_close_first(void **state)
{
    (void)state;
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    struct net_tcp_conn *c = p_connect(h, &p);
    assert_int_equal(net_tcp_send(c, "resp", 4), 0);
    net_tcp_close(c); /* FIN_WAIT_1 */
    struct tx_tcp t = tx_last(h);
    assert_int_equal(t.flags, F_ACK | F_FIN);
    assert_int_equal(t.seq, p.ack + 4);
    p.ack += 5;
    p_send(h, &p, 0, NULL, 0); /* FIN_WAIT_2 */
    unsigned before = h->n_tx;
    p_send(h, &p, 0, "late", 4); /* data after our close: acked, discarded */
    assert_int_equal(h->rx_len, 0);
    assert_int_equal(drops(h, NET_DROP_TCP_AFTER_CLOSE), 1);
    p_send(h, &p, F_FIN, NULL, 0); /* TIME_WAIT */
    assert_int_equal(h->n_tx, before + 1);
    assert_int_equal(tx_last(h).ack, p.seq);
    assert_int_equal(net_stack_conn_count(h->s), 1);
    /* a retransmitted FIN is acked again */
    p_raw(h, &p, p.seq - 1, F_ACK | F_FIN, NULL, 0);
    assert_int_equal(h->n_tx, before + 2);
    h_advance(h, h->cfg.time_wait_us - 1000);
    assert_int_equal(net_stack_conn_count(h->s), 1);
    h_advance(h, 1000);
    assert_int_equal(net_stack_conn_count(h->s), 0);
    assert_int_equal(h->closes, 0);
    h_free(h);
}

static void test_simultaneous_close_and_fin_wait2_timeout(void **state)
{
    (void)state;
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    struct net_tcp_conn *c = p_connect(h, &p);
    net_tcp_close(c);
    p_send(h, &p, F_FIN, NULL, 0); /* FIN crossing ours: CLOSING */
    assert_int_equal(tx_last(h).ack, p.seq);
    p.ack += 1;
    p_send(h, &p, 0, NULL, 0); /* TIME_WAIT */
    assert_int_equal(net_stack_conn_count(h->s), 1);
    h_advance(h, h->cfg.time_wait_us);
    assert_int_equal(net_stack_conn_count(h->s), 0);

    struct peer q = peer_at(40001);
    c = p_connect(h, &q);
    net_tcp_close(c);
    q.ack += 1;
    p_send(h, &q, 0, NULL, 0); /* FIN_WAIT_2, peer never closes */
    h_advance(h, h->cfg.fin_wait2_timeout_us);
    assert_int_equal(net_stack_conn_count(h->s), 0);
    assert_int_equal(tx_last(h).flags, F_RST | F_ACK);
    assert_int_equal(st(h)->tcp_fin_wait2_timeouts, 1);

    /* FIN retransmitted when not acked (LAST_ACK path) */
    struct peer r = peer_at(40002);
    h->close_on_eof = true;
    p_connect(h, &r);
    p_send(h, &r, F_FIN, NULL, 0); /* app closes in on_data(EOF) */
    struct tx_tcp t = tx_last(h);
    assert_int_equal(t.flags, F_ACK | F_FIN); /* ACK of FIN rides on our FIN */
    assert_int_equal(t.ack, r.seq);
    unsigned before = h->n_tx;
    h_advance(h, 1000000);
    assert_int_equal(h->n_tx, before + 1);
    assert_int_equal(tx_last(h).flags, F_ACK | F_FIN);
    assert_int_equal(tx_last(h).seq, r.ack);
    r.ack += 1;
    p_send(h, &r, 0, NULL, 0);
    assert_int_equal(net_stack_conn_count(h->s), 0);
    h_free(h);
}

static void test_time_wait_reopen(void **state)
{
    (void)state;
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    struct net_tcp_conn *c = p_connect(h, &p);
    net_tcp_close(c);
    p.ack += 1;
    p_send(h, &p, F_FIN, NULL, 0);
    assert_int_equal(net_stack_conn_count(h->s), 1); /* TIME_WAIT */
    /* an old SYN gets an ACK; a new one (higher seq) reopens */
    unsigned before = h->n_tx;
    h_seg(h, &(struct seg){.sport = p.port, .seq = p.seq - 100, .flags = F_SYN, .wnd = 1000});
    assert_int_equal(h->n_tx, before + 1);
    assert_int_equal(tx_last(h).flags, F_ACK);
    assert_int_equal(net_stack_conn_count(h->s), 1);
    p.seq += 100000;
    p_syn(h, &p);
    assert_int_equal(net_stack_conn_count(h->s), 0);
    p_send(h, &p, 0, NULL, 0);
    assert_int_equal(h->accepts, 2);
    assert_int_equal(net_stack_conn_count(h->s), 1);
    h_free(h);
}

/* The checksum (summed as native 32-bit words, RFC 1071 2(B)) against the
 * harness's byte-wise reference: every payload length 0..1500, odd ones
 * included, passes; one flipped bit at each offset of a segment fails. */
static void test_checksum_every_length(void **state)
{
    (void)state;
    struct h *h = h_new();
    h->cfg.rcv_space_bytes = 1u << 20;
    struct peer p = peer_at(40000);
    p_connect(h, &p);
    uint64_t rx0 = st(h)->tcp_rx_bytes;
    uint64_t want = 0;
    for (size_t n = 0; n <= 1460; n++) {
        p_send(h, &p, F_PSH, pattern + (n * 13) % 4096, n);
        want += n;
        h->rx_len = 0;
    }
    assert_int_equal(st(h)->tcp_rx_bytes - rx0, want);
    assert_int_equal(drops(h, NET_DROP_TCP_CHECKSUM), 0);
    for (size_t off = 0; off < 20 + 61; off++) {
        if (off == 12) /* the data offset: checked before the checksum */
            continue;
        uint8_t f[FRAME_MAX];
        size_t n = build_tcp(f, &(struct seg){.sport = p.port, .seq = p.seq, .ack = p.ack,
                                              .flags = F_ACK, .wnd = p.wnd, .data = pattern,
                                              .len = 61});
        f[34 + off] ^= (uint8_t)(1u << (off % 8));
        h_input(h, f, n);
    }
    assert_int_equal(drops(h, NET_DROP_TCP_CHECKSUM), 20 + 61 - 1);
    h_free(h);
}

/* replay_isn (benchmarks): the ISN is the cookie keyed with the public
 * NET_REPLAY_ISN_KEY at clock 0; the expected values come from
 * bench/otlp_traffic.py replay_isn(), so the pcap generator and the stack
 * cannot drift. A SYN replayed on a live or TIME_WAIT 4-tuple reopens it. */
static void test_replay_isn(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    h_config(&h->cfg);
    h->cfg.replay_isn = true;
    h_new_cfg(h);
    h_advance(h, 3600ull * 1000000u); /* the clock does not matter */
    struct peer p = peer_at(40000);
    assert_int_equal(p_syn(h, &p).seq, 3811786086u);
    struct peer q = peer_at(40001);
    q.no_ws = true;
    assert_int_equal(p_syn(h, &q).seq, 1746397967u);

    /* a pass: connect, data, then the same SYN again replaces the connection */
    p = peer_at(40000);
    struct net_tcp_conn *c = p_connect(h, &p);
    p_send(h, &p, F_PSH, "abc", 3);
    assert_int_equal(net_stack_conn_count(h->s), 1);
    h_advance(h, 200ull * 1000000u);
    p = peer_at(40000);
    assert_int_equal(p_syn(h, &p).seq, 3811786086u);
    assert_int_equal(h->last_reason, NET_TCP_CLOSE_REPLACED);
    assert_int_equal(net_stack_conn_count(h->s), 0);
    assert_int_equal(st(h)->tcp_reopened, 1);
    p_send(h, &p, 0, NULL, 0);
    assert_int_equal(h->accepts, 2);
    c = h->conn;

    /* TIME_WAIT (we closed first) is reopened by the same, older ISN too */
    net_tcp_close(c);
    p.ack += 1;
    p_send(h, &p, F_FIN, NULL, 0);
    assert_int_equal(net_tcp_conn_state(c), NET_TCP_TIME_WAIT);
    p = peer_at(40000);
    p_syn(h, &p);
    assert_int_equal(st(h)->tcp_reopened, 2);
    assert_int_equal(net_stack_conn_count(h->s), 0);
    p_send(h, &p, 0, NULL, 0);
    assert_int_equal(h->accepts, 3);
    h_free(h);
}

/* ---- RST and SYN validation (RFC 5961) ---- */

static void test_rst_established(void **state)
{
    (void)state;
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    p_connect(h, &p);
    unsigned before = h->n_tx;
    p_raw(h, &p, p.seq + 100000000, F_RST, NULL, 0); /* out of window: ignored */
    assert_int_equal(h->n_tx, before);
    assert_int_equal(drops(h, NET_DROP_TCP_RST_OUT_OF_WINDOW), 1);
    p_raw(h, &p, p.seq + 10, F_RST, NULL, 0); /* in window, not exact: challenge */
    assert_int_equal(h->n_tx, before + 1);
    assert_int_equal(tx_last(h).flags, F_ACK);
    assert_int_equal(tx_last(h).ack, p.seq);
    assert_int_equal(st(h)->tcp_challenge_acks, 1);
    assert_int_equal(net_stack_conn_count(h->s), 1);
    /* SYN on the connection: challenge ACK */
    p_raw(h, &p, p.seq, F_SYN, NULL, 0);
    assert_int_equal(h->n_tx, before + 2);
    assert_int_equal(drops(h, NET_DROP_TCP_SYN_CHALLENGED), 1);
    /* segment without ACK */
    p_raw(h, &p, p.seq, 0, "x", 1);
    assert_int_equal(drops(h, NET_DROP_TCP_NO_ACK), 1);
    /* exact: reset */
    p_raw(h, &p, p.seq, F_RST, NULL, 0);
    assert_int_equal(h->closes, 1);
    assert_int_equal(h->last_reason, NET_TCP_CLOSE_RESET);
    assert_int_equal(net_stack_conn_count(h->s), 0);
    assert_int_equal(h->n_tx, before + 2);
    h_free(h);
}

enum rst_when { RST_CLOSE_WAIT, RST_FIN_WAIT_1, RST_FIN_WAIT_2, RST_LAST_ACK, RST_TIME_WAIT };

static void rst_in_state(enum rst_when w)
{
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    struct net_tcp_conn *c = p_connect(h, &p);
    switch (w) {
    case RST_CLOSE_WAIT:
        p_send(h, &p, F_FIN, NULL, 0);
        assert_int_equal(net_tcp_conn_state(c), NET_TCP_CLOSE_WAIT);
        break;
    case RST_FIN_WAIT_1:
        net_tcp_close(c);
        break;
    case RST_FIN_WAIT_2:
        net_tcp_close(c);
        p.ack += 1;
        p_send(h, &p, 0, NULL, 0);
        break;
    case RST_LAST_ACK:
        p_send(h, &p, F_FIN, NULL, 0);
        net_tcp_close(c);
        break;
    case RST_TIME_WAIT:
        net_tcp_close(c);
        p.ack += 1;
        p_send(h, &p, F_FIN, NULL, 0);
        break;
    }
    assert_int_equal(net_stack_conn_count(h->s), 1);
    p_raw(h, &p, p.seq + 5, F_RST, NULL, 0);
    assert_int_equal(net_stack_conn_count(h->s), 1);
    p_raw(h, &p, p.seq, F_RST, NULL, 0);
    assert_int_equal(net_stack_conn_count(h->s), 0);
    assert_int_equal(h->closes, w == RST_CLOSE_WAIT ? 1 : 0);
    assert_int_equal(st(h)->tcp_active, 0);
    h_free(h);
}

static void test_rst_every_state(void **state)
{
    (void)state;
    rst_in_state(RST_CLOSE_WAIT);
    rst_in_state(RST_FIN_WAIT_1);
    rst_in_state(RST_FIN_WAIT_2);
    rst_in_state(RST_LAST_ACK);
    rst_in_state(RST_TIME_WAIT);
}

/* ---- load ---- */

static void test_syn_flood(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    h_config(&h->cfg);
    h->cfg.max_conns = 16;
    h_new_cfg(h);
    for (unsigned i = 0; i < 160; i++) {
        h_seg(h, &(struct seg){.src = 0x0a000000u + i + 1,
                               .sport = (uint16_t)(1024 + i),
                               .seq = i * 1000003u,
                               .flags = F_SYN,
                               .wnd = 1000});
        if (h->n_tx == MAX_TX)
            h->n_tx = 0;
    }
    assert_int_equal(st(h)->tcp_syncookies_tx, 160);
    assert_int_equal(net_stack_conn_count(h->s), 0);
    h->n_tx = 0;
    /* legitimate clients still connect, up to the table size */
    for (unsigned i = 0; i < 16; i++) {
        struct peer p = peer_at((uint16_t)(50000 + i));
        p_connect(h, &p);
    }
    assert_int_equal(net_stack_conn_count(h->s), 16);
    struct peer p = peer_at(60000);
    p_syn(h, &p);
    p_send(h, &p, 0, NULL, 0);
    assert_true(tx_last(h).flags & F_RST);
    assert_int_equal(drops(h, NET_DROP_TCP_TABLE_FULL), 1);
    assert_int_equal(net_stack_conn_count(h->s), 16);
    h_free(h);
}

static void test_churn_no_leaks(void **state)
{
    (void)state;
    fill_pattern();
    struct h *h = calloc(1, sizeof(*h));
    h_config(&h->cfg);
    h->cfg.max_conns = 8;
    h->cfg.ooo_bufs = 2;
    h_new_cfg(h);
    for (unsigned i = 0; i < 300; i++) {
        h->n_tx = 0;
        h->rx_len = 0;
        h->eof = false;
        struct peer p = peer_at((uint16_t)(20000 + i));
        p.seq = i * 7919u;
        struct net_tcp_conn *c = p_connect(h, &p);
        /* out of order then in order: takes and returns a reassembly buffer */
        p_raw(h, &p, p.seq + 50, F_ACK, pattern + 50, 50);
        p_send(h, &p, 0, pattern, 50);
        p.seq += 50;
        assert_int_equal(h->rx_len, 100);
        assert_int_equal(drops(h, NET_DROP_TCP_OOO_NO_BUF), 0);
        switch (i % 4) {
        case 0: /* peer closes, app closes on EOF */
            h->close_on_eof = true;
            p_send(h, &p, F_FIN, NULL, 0);
            h->close_on_eof = false;
            p.ack += 1;
            p_send(h, &p, 0, NULL, 0);
            break;
        case 1: /* we close, TIME_WAIT expires */
            net_tcp_close(c);
            p.ack += 1;
            p_send(h, &p, F_FIN, NULL, 0);
            h_advance(h, h->cfg.time_wait_us);
            break;
        case 2: /* peer resets */
            p_raw(h, &p, p.seq, F_RST, NULL, 0);
            break;
        case 3: /* app aborts */
            net_tcp_abort(c);
            assert_int_equal(tx_last(h).flags, F_RST | F_ACK);
            break;
        }
        assert_int_equal(net_stack_conn_count(h->s), 0);
    }
    assert_int_equal(st(h)->tcp_accepted, 300);
    assert_int_equal(st(h)->tcp_closed, 300);
    assert_int_equal(st(h)->tcp_active, 0);
    assert_int_equal(h->closes, 75);
    h_free(h);
}

/* ---- timers ---- */

static void test_keepalive(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    h_config(&h->cfg);
    h->cfg.keepalive_idle_us = 10000000;
    h->cfg.keepalive_intvl_us = 1000000;
    h->cfg.keepalive_probes = 2;
    h_new_cfg(h);
    struct peer p = peer_at(40000);
    p_connect(h, &p);
    unsigned before = h->n_tx;
    h_advance(h, 10000000);
    assert_int_equal(h->n_tx, before + 1);
    struct tx_tcp t = tx_last(h);
    assert_int_equal(t.seq, p.ack - 1);
    assert_int_equal(t.len, 0);
    p_send(h, &p, 0, NULL, 0); /* the peer is alive */
    h_advance(h, 1000000);
    assert_int_equal(h->n_tx, before + 1);
    h_advance(h, 9000000);
    assert_int_equal(h->n_tx, before + 2);
    h_advance(h, 1000000);
    assert_int_equal(h->n_tx, before + 3);
    assert_int_equal(h->closes, 0);
    h_advance(h, 1000000);
    assert_int_equal(h->closes, 1);
    assert_int_equal(h->last_reason, NET_TCP_CLOSE_KEEPALIVE);
    assert_int_equal(tx_last(h).flags, F_RST | F_ACK);
    assert_int_equal(net_stack_conn_count(h->s), 0);
    h_free(h);
}

static void test_app_deadline_and_destroy(void **state)
{
    (void)state;
    struct h *h = h_new();
    struct peer p = peer_at(40000);
    struct net_tcp_conn *c = p_connect(h, &p);
    net_tcp_set_app_deadline(c, h->now + 5000);
    h_advance(h, 4000);
    assert_int_equal(h->timeouts, 0);
    h_advance(h, 1000);
    assert_int_equal(h->timeouts, 1);
    h_advance(h, 100000);
    assert_int_equal(h->timeouts, 1);
    /* a deadline far beyond one wheel turn */
    net_tcp_set_app_deadline(c, h->now + 5000000);
    for (unsigned i = 0; i < 49; i++)
        h_advance(h, 100000);
    assert_int_equal(h->timeouts, 1);
    h_advance(h, 100000);
    assert_int_equal(h->timeouts, 2);
    /* destroy reports connections the app still holds */
    net_stack_destroy(h->s);
    h->s = NULL;
    assert_int_equal(h->closes, 1);
    assert_int_equal(h->last_reason, NET_TCP_CLOSE_DESTROY);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_handshake_data_on_ack),
        cmocka_unit_test(test_bad_cookie_and_refusal),
        cmocka_unit_test(test_no_listener_and_checksum),
        cmocka_unit_test(test_data_in_order_and_delack),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_duplicates_and_overlaps),
        cmocka_unit_test(test_zero_window),
        cmocka_unit_test(test_send_segmentation),
        cmocka_unit_test(test_send_window),
        cmocka_unit_test(test_persist_probe),
        cmocka_unit_test(test_retransmit_backoff_abort),
        cmocka_unit_test(test_rtt_sets_rto),
        cmocka_unit_test(test_peer_closes_first),
        cmocka_unit_test(test_we_close_first),
        cmocka_unit_test(test_simultaneous_close_and_fin_wait2_timeout),
        cmocka_unit_test(test_time_wait_reopen),
        cmocka_unit_test(test_replay_isn),
        cmocka_unit_test(test_checksum_every_length),
        cmocka_unit_test(test_rst_established),
        cmocka_unit_test(test_rst_every_state),
        cmocka_unit_test(test_syn_flood),
        cmocka_unit_test(test_churn_no_leaks),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_app_deadline_and_destroy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
