/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for lib/net below TCP: Ethernet filtering, ARP replies, learning
 * and resolution, IPv4 header checks with their drop counters, ICMP echo,
 * and the configuration checks of net_stack_create(). */
#include "test_net_harness.c"

static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static size_t build_arp(uint8_t *f, uint16_t op, const uint8_t *sha, uint32_t spa, uint32_t tpa)
{
    build_eth(f, op == 1 ? bcast : our_mac, 0x0806);
    uint8_t *a = f + 14;
    wr16(a, 1);
    wr16(a + 2, 0x0800);
    a[4] = 6;
    a[5] = 4;
    wr16(a + 6, op);
    memcpy(a + 8, sha, 6);
    wr32(a + 14, spa);
    memset(a + 18, 0, 6);
    wr32(a + 24, tpa);
    return 14 + 28;
}

static void test_arp_request_reply(void **state)
{
    (void)state;
    struct h *h = h_new();
    uint8_t f[64];
    size_t n = build_arp(f, 1, peer_mac, PEER_IP, OUR_IP);
    h_input(h, f, n);
    assert_int_equal(h->n_tx, 1);
    const uint8_t *r = h->tx[0];
    assert_int_equal(h->tx_len[0], 42);
    assert_memory_equal(r, peer_mac, 6);
    assert_memory_equal(r + 6, our_mac, 6);
    assert_int_equal(rd16(r + 12), 0x0806);
    assert_int_equal(rd16(r + 14 + 6), 2);
    assert_memory_equal(r + 14 + 8, our_mac, 6);
    assert_int_equal(rd32(r + 14 + 14), OUR_IP);
    assert_memory_equal(r + 14 + 18, peer_mac, 6);
    assert_int_equal(rd32(r + 14 + 24), PEER_IP);
    assert_int_equal(st(h)->arp_replies_tx, 1);

    /* learnt from the request */
    uint8_t mac[6];
    assert_int_equal(net_stack_arp_resolve(h->s, PEER_IP, h->now, mac), 0);
    assert_memory_equal(mac, peer_mac, 6);
    assert_int_equal(h->n_tx, 1);

    /* request for someone else: counted, no answer */
    n = build_arp(f, 1, peer_mac, PEER_IP, OUR_IP + 5);
    h_input(h, f, n);
    assert_int_equal(h->n_tx, 1);
    assert_int_equal(drops(h, NET_DROP_ARP_NOT_US), 1);
    /* truncated and malformed */
    h_input(h, f, 30);
    assert_int_equal(drops(h, NET_DROP_ARP_SHORT), 1);
    n = build_arp(f, 9, peer_mac, PEER_IP, OUR_IP);
    h_input(h, f, n);
    assert_int_equal(drops(h, NET_DROP_ARP_FORMAT), 1);
    h_free(h);
}

static void test_arp_resolve(void **state)
{
    (void)state;
    struct h *h = h_new();
    const uint32_t other = OUR_IP + 2;
    const uint8_t other_mac[6] = {0x02, 0, 0, 0, 0, 0x03};
    uint8_t mac[6];
    assert_int_equal(net_stack_arp_resolve(h->s, other, h->now, mac), -EAGAIN);
    assert_int_equal(h->n_tx, 1);
    assert_memory_equal(h->tx[0], bcast, 6);
    assert_int_equal(rd16(h->tx[0] + 14 + 6), 1);
    assert_int_equal(rd32(h->tx[0] + 14 + 24), other);
    /* no second request within a second */
    assert_int_equal(net_stack_arp_resolve(h->s, other, h->now + 1000, mac), -EAGAIN);
    assert_int_equal(h->n_tx, 1);
    assert_int_equal(net_stack_arp_resolve(h->s, other, h->now + 1000000, mac), -EAGAIN);
    assert_int_equal(h->n_tx, 2);
    h->now += 1000000;

    /* the reply resolves it */
    uint8_t f[64];
    size_t n = build_arp(f, 2, other_mac, other, OUR_IP);
    h_input(h, f, n);
    assert_int_equal(h->n_tx, 2);
    assert_int_equal(net_stack_arp_resolve(h->s, other, h->now, mac), 0);
    assert_memory_equal(mac, other_mac, 6);
    /* and expires */
    assert_int_equal(net_stack_arp_resolve(h->s, other, h->now + h->cfg.arp_timeout_us, mac),
                     -EAGAIN);
    assert_int_equal(h->n_tx, 3);

    /* off-subnet goes via the gateway */
    assert_int_equal(net_stack_arp_resolve(h->s, 0x0a000001u, h->now, mac), -EAGAIN);
    assert_int_equal(rd32(h->tx[h->n_tx - 1] + 14 + 24), GW_IP);
    h_free(h);

    h = calloc(1, sizeof(*h));
    h_config(&h->cfg);
    h->cfg.ifc.gateway = 0;
    h_new_cfg(h);
    assert_int_equal(net_stack_arp_resolve(h->s, 0x0a000001u, h->now, mac), -ENETUNREACH);
    h_free(h);
}

static size_t build_echo(uint8_t *f, uint32_t dst, const char *payload)
{
    size_t pl = strlen(payload);
    build_eth(f, our_mac, 0x0800);
    build_ip(f, PEER_IP, dst, 1, 8 + pl, 0);
    uint8_t *ic = f + 34;
    ic[0] = 8;
    ic[1] = 0;
    wr16(ic + 2, 0);
    wr16(ic + 4, 0x1234);
    wr16(ic + 6, 7);
    memcpy(ic + 8, payload, pl);
    wr16(ic + 2, csum_fold(csum_add(0, ic, 8 + pl)));
    return 34 + 8 + pl;
}

static void test_icmp_echo(void **state)
{
    (void)state;
    struct h *h = h_new();
    uint8_t f[128];
    size_t n = build_echo(f, OUR_IP, "ping payload!");
    h_input(h, f, n);
    assert_int_equal(h->n_tx, 1);
    const uint8_t *r = h->tx[0];
    assert_int_equal(h->tx_len[0], n);
    assert_memory_equal(r, peer_mac, 6);
    const uint8_t *ip = r + 14;
    assert_int_equal(csum_fold(csum_add(0, ip, 20)), 0);
    assert_int_equal(rd32(ip + 12), OUR_IP);
    assert_int_equal(rd32(ip + 16), PEER_IP);
    assert_int_equal(ip[9], 1);
    const uint8_t *ic = ip + 20;
    assert_int_equal(ic[0], 0);
    assert_int_equal(csum_fold(csum_add(0, ic, n - 34)), 0);
    assert_int_equal(rd16(ic + 4), 0x1234);
    assert_int_equal(rd16(ic + 6), 7);
    assert_memory_equal(ic + 8, "ping payload!", 13);
    assert_int_equal(st(h)->icmp_echo_replies, 1);

    /* bad ICMP checksum, other type */
    f[34 + 9] ^= 1;
    h_input(h, f, n);
    assert_int_equal(drops(h, NET_DROP_ICMP_CHECKSUM), 1);
    n = build_echo(f, OUR_IP, "x");
    f[34] = 13; /* timestamp */
    wr16(f + 36, 0);
    wr16(f + 36, csum_fold(csum_add(0, f + 34, 9)));
    h_input(h, f, n);
    assert_int_equal(drops(h, NET_DROP_ICMP_TYPE), 1);
    assert_int_equal(h->n_tx, 1);
    h_free(h);
}

static void test_ipv4_drops(void **state)
{
    (void)state;
    struct h *h = h_new();
    uint8_t f[128];
    size_t n;

    n = build_echo(f, OUR_IP, "abc");
    f[14 + 10] ^= 0x40; /* header checksum */
    h_input(h, f, n);
    assert_int_equal(drops(h, NET_DROP_IP_CHECKSUM), 1);

    n = build_echo(f, OUR_IP, "abc");
    build_ip(f, PEER_IP, OUR_IP, 1, n - 34, 0x2000); /* MF */
    h_input(h, f, n);
    build_ip(f, PEER_IP, OUR_IP, 1, n - 34, 0x0010); /* offset */
    h_input(h, f, n);
    assert_int_equal(drops(h, NET_DROP_IP_FRAGMENT), 2);

    n = build_echo(f, OUR_IP + 1, "abc");
    h_input(h, f, n);
    assert_int_equal(drops(h, NET_DROP_IP_DST), 1);

    n = build_echo(f, OUR_IP, "abc");
    build_ip(f, 0, OUR_IP, 1, n - 34, 0);
    h_input(h, f, n);
    build_ip(f, 0xe0000001u, OUR_IP, 1, n - 34, 0);
    h_input(h, f, n);
    assert_int_equal(drops(h, NET_DROP_IP_SRC), 2);

    n = build_echo(f, OUR_IP, "abc");
    build_ip(f, PEER_IP, OUR_IP, 17, n - 34, 0);
    h_input(h, f, n);
    assert_int_equal(drops(h, NET_DROP_IP_PROTO), 1);

    n = build_echo(f, OUR_IP, "abc");
    h_input(h, f, 14 + 19);
    assert_int_equal(drops(h, NET_DROP_IP_SHORT), 1);
    h_input(h, f, n - 1); /* total length beyond the frame */
    assert_int_equal(drops(h, NET_DROP_IP_TOTAL_LEN), 1);
    f[14] = 0x65;
    h_input(h, f, n);
    assert_int_equal(drops(h, NET_DROP_IP_VERSION), 1);
    f[14] = 0x44;
    h_input(h, f, n);
    assert_int_equal(drops(h, NET_DROP_IP_HDR_LEN), 1);

    /* Ethernet */
    h_input(h, f, 10);
    assert_int_equal(drops(h, NET_DROP_ETH_SHORT), 1);
    n = build_echo(f, OUR_IP, "abc");
    f[0] = 0x04;
    h_input(h, f, n);
    assert_int_equal(drops(h, NET_DROP_ETH_DST), 1);
    n = build_echo(f, OUR_IP, "abc");
    wr16(f + 12, 0x86dd);
    h_input(h, f, n);
    assert_int_equal(drops(h, NET_DROP_ETH_TYPE), 1);

    /* padding after total length is ignored: a padded echo still works */
    n = build_echo(f, OUR_IP, "abc");
    memset(f + n, 0xee, 20);
    h_input(h, f, n + 20);
    assert_int_equal(st(h)->icmp_echo_replies, 1);
    assert_int_equal(h->n_tx, 1);
    assert_int_equal(h->tx_len[0], n);

    /* NIC-verified checksum flag skips the software check */
    n = build_echo(f, OUR_IP, "abc");
    f[14 + 10] ^= 0x40;
    net_stack_input_flags(h->s, f, n, NET_RX_IP_CKSUM_GOOD, h->now);
    assert_int_equal(st(h)->icmp_echo_replies, 2);
    assert_int_equal(drops(h, NET_DROP_IP_CHECKSUM), 1);
    assert_int_equal(st(h)->rx_frames, 16);
    h_free(h);
}

static void test_tx_alloc_failure(void **state)
{
    (void)state;
    struct h *h = h_new();
    uint8_t f[128];
    size_t n = build_echo(f, OUR_IP, "abc");
    h->tx_fail = true;
    h_input(h, f, n);
    assert_int_equal(h->n_tx, 0);
    assert_int_equal(drops(h, NET_DROP_TX_ALLOC), 1);
    h_free(h);
}

static void test_names(void **state)
{
    (void)state;
    for (int i = 0; i < NET_DROP_COUNT; i++) {
        const char *a = net_drop_reason_name((enum net_drop_reason)i);
        assert_non_null(a);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(a, net_drop_reason_name((enum net_drop_reason)j));
    }
    assert_null(net_drop_reason_name(NET_DROP_COUNT));
    assert_string_equal(net_tcp_state_name(NET_TCP_TIME_WAIT), "time_wait");
    assert_string_equal(net_tcp_close_reason_name(NET_TCP_CLOSE_RESET), "reset");
}

static void test_create_checks(void **state)
{
    (void)state;
    struct net_config cfg;
    struct net_stack *s = NULL;
    h_config(&cfg);
    assert_int_equal(net_stack_create(&cfg, &h_tx, NULL, &h_app, NULL, &s), 0);
    net_stack_destroy(s);
    net_stack_destroy(NULL);

    struct net_config bad = cfg;
    bad.ifc.ip = 0;
    assert_int_equal(net_stack_create(&bad, &h_tx, NULL, &h_app, NULL, &s), -EINVAL);
    bad = cfg;
    bad.n_listen_ports = 0;
    assert_int_equal(net_stack_create(&bad, &h_tx, NULL, &h_app, NULL, &s), -EINVAL);
    bad = cfg;
    bad.max_conns = 0;
    assert_int_equal(net_stack_create(&bad, &h_tx, NULL, &h_app, NULL, &s), -EINVAL);
    bad = cfg;
    bad.ifc.mtu = 100;
    assert_int_equal(net_stack_create(&bad, &h_tx, NULL, &h_app, NULL, &s), -EINVAL);
    bad = cfg;
    bad.rto_min_us = bad.rto_max_us + 1;
    assert_int_equal(net_stack_create(&bad, &h_tx, NULL, &h_app, NULL, &s), -EINVAL);
    bad = cfg;
    bad.rcv_wscale = 15;
    assert_int_equal(net_stack_create(&bad, &h_tx, NULL, &h_app, NULL, &s), -EINVAL);
    struct net_app_ops no_data = h_app;
    no_data.on_data = NULL;
    assert_int_equal(net_stack_create(&cfg, &h_tx, NULL, &no_data, NULL, &s), -EINVAL);
    assert_int_equal(net_stack_create(NULL, &h_tx, NULL, &h_app, NULL, &s), -EINVAL);
    /* random key when none is set */
    cfg.secret_set = false;
    assert_int_equal(net_stack_create(&cfg, &h_tx, NULL, &h_app, NULL, &s), 0);
    net_stack_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arp_request_reply), cmocka_unit_test(test_arp_resolve),
        cmocka_unit_test(test_icmp_echo),         cmocka_unit_test(test_ipv4_drops),
        cmocka_unit_test(test_tx_alloc_failure),  cmocka_unit_test(test_names),
        cmocka_unit_test(test_create_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
