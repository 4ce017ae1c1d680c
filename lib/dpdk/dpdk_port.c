/* SPDX-License-Identifier: Apache-2.0 */
/* Start-up of the DPDK data plane: EAL arguments from the configuration,
 * the mbuf pool (allocated once, sized from the queues), and the port with
 * one rx/tx queue pair per worker lcore. */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>

#include "dpdk/dpdk_internal.h"
#include "obs/log.h"

#define EAL_MAX_ARGS 128

static bool has_opt(char **argv, unsigned argc, const char *const *names)
{
    for (unsigned i = 0; i < argc; i++) {
        for (const char *const *n = names; *n; n++) {
            size_t l = strlen(*n);
            if (strncmp(argv[i], *n, l) != 0)
                continue;
            /* "--lcores", "--lcores=..." and short "-l4" forms */
            if (argv[i][l] == '\0' || argv[i][l] == '=' || (*n)[1] != '-')
                return true;
        }
    }
    return false;
}

/* Append "a,b,c" of the CPUs we may run on (minus `skip`, when that leaves
 * any) to `out`. */
static void cpu_list(char *out, size_t len, const unsigned *skip, unsigned n_skip)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        CPU_SET(0, &set);
    cpu_set_t rest = set;
    for (unsigned i = 0; i < n_skip; i++)
        CPU_CLR(skip[i], &rest);
    if (CPU_COUNT(&rest) > 0)
        set = rest;
    size_t o = strlen(out);
    bool first = true;
    for (unsigned c = 0; c < RTE_MAX_LCORE && c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &set))
            continue;
        int n = snprintf(out + o, len - o, "%s%u", first ? "" : ",", c);
        if (n < 0 || (size_t)n >= len - o)
            break;
        o += (size_t)n;
        first = false;
    }
}

/* Append "(a,b,c)": cpu_list() as an EAL CPU group. */
static void cpu_group(char *out, size_t len, const unsigned *skip, unsigned n_skip)
{
    size_t o = strlen(out);
    snprintf(out + o, len - o, "(");
    cpu_list(out, len, skip, n_skip);
    o = strlen(out);
    snprintf(out + o, len - o, ")");
}

/* Set once rte_eal_init() succeeded; cleared by dpdk_eal_stop(). */
static bool eal_ready;

bool dpdk_eal_ready(void)
{
    return eal_ready;
}

/*
 * Build argv: "otlp-service", the configured words, --file-prefix unless
 * given, and --lcores unless -l/-c/--lcores is given. Generated lcores: the
 * main lcore 0, workers 1..n and the export lcore n+1 (dpdk_export_start).
 * With dataplane.cores, worker i runs on cores[i % n] and the main and
 * export lcores on the remaining CPUs (the exporter sleeps in poll(), it
 * does not spin); without, every lcore floats over the CPUs we may use.
 */
int dpdk_eal_start(const struct svc_config *cfg, unsigned n_workers)
{
    if (cfg == NULL || n_workers == 0 || n_workers > CONFIG_MAX_CORES)
        return -EINVAL;
    if (eal_ready)
        return -EALREADY;
    const struct dpdk_config *d = &cfg->dataplane.dpdk;
    const char *args = d->eal_args ? d->eal_args : "";
    size_t store_len = strlen(args) + 1;
    char *store = malloc(store_len);
    char *argv[EAL_MAX_ARGS + 8];
    char prefix[48], lcores[4096];
    unsigned argc = 0;
    const char *why = NULL;
    int rc = -ENOMEM;
    if (store == NULL)
        return -ENOMEM;
    argv[0] = (char *)"otlp-service";
    if (config_split_args(args, store, store_len, argv + 1, EAL_MAX_ARGS, &argc, &why) < 0) {
        log_error("dataplane.dpdk.eal_args", "error=%s", why);
        rc = -EINVAL;
        goto out;
    }
    argc++;
    static const char *const prefix_opts[] = {"--file-prefix", NULL};
    static const char *const lcore_opts[] = {"-l", "-c", "--lcores", NULL};
    if (!has_opt(argv, argc, prefix_opts)) {
        snprintf(prefix, sizeof(prefix), "--file-prefix=otlp-%ld", (long)getpid());
        argv[argc++] = prefix;
    }
    if (!has_opt(argv, argc, lcore_opts)) {
        unsigned cores[CONFIG_MAX_CORES], n_cores = 0;
        const char *cl = cfg->dataplane.cores;
        if (cl != NULL && *cl != '\0' &&
            config_parse_cores(cl, cores, CONFIG_MAX_CORES, &n_cores) < 0)
            n_cores = 0;
        if (n_cores > 0) {
            snprintf(lcores, sizeof(lcores), "--lcores=0@");
            cpu_group(lcores, sizeof(lcores), cores, n_cores);
            for (unsigned w = 0; w < n_workers; w++) {
                size_t o = strlen(lcores);
                snprintf(lcores + o, sizeof(lcores) - o, ",%u@%u", w + 1, cores[w % n_cores]);
            }
            size_t o = strlen(lcores);
            snprintf(lcores + o, sizeof(lcores) - o, ",%u@", n_workers + 1);
            cpu_group(lcores, sizeof(lcores), cores, n_cores);
        } else {
            snprintf(lcores, sizeof(lcores), "--lcores=(0-%u)@", n_workers + 1);
            cpu_group(lcores, sizeof(lcores), NULL, 0);
        }
        argv[argc++] = lcores;
    }
    argv[argc] = NULL;

    char line[1024] = "";
    for (unsigned i = 1; i < argc; i++) {
        size_t o = strlen(line);
        snprintf(line + o, sizeof(line) - o, "%s%s", i > 1 ? " " : "", argv[i]);
    }
    log_info("starting DPDK EAL", "args=%s", line);
    char *copy[EAL_MAX_ARGS + 8]; /* rte_eal_init permutes argv */
    memcpy(copy, argv, sizeof(copy[0]) * (argc + 1));
    int n = rte_eal_init((int)argc, copy);
    if (n < 0) {
        rc = rte_errno == EALREADY ? -EALREADY : -EINVAL;
        log_error("rte_eal_init failed", "error=%s", rte_strerror(rte_errno));
        goto out;
    }
    eal_ready = true;
    rc = 0;
out:
    free(store);
    return rc;
}

void dpdk_eal_stop(void)
{
    if (!eal_ready)
        return;
    rte_eal_cleanup();
    eal_ready = false;
}

/* Pool: every rx descriptor may hold an mbuf, every tx descriptor one in
 * flight, plus a tx burst being built and the per-lcore caches. */
static unsigned pool_min(const struct dpdk_server *s, uint16_t rxd, uint16_t txd)
{
    return s->n_workers * ((unsigned)rxd + txd + 2 * DPDK_BURST + DPDK_POOL_CACHE * 3 / 2) + 512;
}

int dpdk_port_init(struct dpdk_server *s)
{
    const struct dpdk_config *d = &s->cfg->dataplane.dpdk;
    uint16_t port = s->port;
    if (!rte_eth_dev_is_valid_port(port)) {
        log_error("no such DPDK port", "port=%u ports=%u", port, rte_eth_dev_count_avail());
        return -EINVAL;
    }
    struct rte_eth_dev_info info;
    int rc = rte_eth_dev_info_get(port, &info);
    if (rc != 0) {
        log_error("rte_eth_dev_info_get failed", "port=%u error=%s", port, rte_strerror(-rc));
        return -EIO;
    }
    if (s->n_workers > info.max_rx_queues || s->n_workers > info.max_tx_queues) {
        log_error("port has too few queues for the workers", "port=%u driver=%s rx=%u tx=%u "
                  "workers=%u", port, info.driver_name, info.max_rx_queues, info.max_tx_queues,
                  s->n_workers);
        return -EINVAL;
    }

    uint16_t rxd = d->rx_desc, txd = d->tx_desc;
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    conf.rxmode.mtu = d->mtu;
    if (info.max_mtu != 0 && d->mtu > info.max_mtu) {
        log_error("mtu above what the port supports", "port=%u mtu=%u max=%u", port, d->mtu,
                  info.max_mtu);
        return -EINVAL;
    }
    /* RSS on IPv4/TCP spreads flows over the queues; every packet of a flow
     * lands on one queue, so each lcore's stack sees whole connections.
     * net_tap does RSS only through rte_flow (eBPF); there the kernel's tun
     * queue selection (by flow hash) already keeps a flow on one queue. */
    /* replay_isn (public ISNs) only on a pcap file, never a live port. */
    if (s->cfg->dataplane.dpdk.replay_isn && strcmp(info.driver_name, "net_pcap") != 0) {
        log_error("dataplane.dpdk.replay_isn is for pcap replay only", "port=%u driver=%s", port,
                  info.driver_name);
        return -EINVAL;
    }
    bool is_tap = strcmp(info.driver_name, "net_tap") == 0;
    uint64_t rss = info.flow_type_rss_offloads &
                   (RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_IPV4);
    if (s->n_workers > 1 && !is_tap) {
        if (rss == 0) {
            log_warn("port has no IPv4/TCP RSS: flows may reach the wrong lcore",
                     "port=%u driver=%s", port, info.driver_name);
        } else {
            conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_key = NULL; /* the PMD's default key */
            conf.rx_adv_conf.rss_conf.rss_hf = rss;
        }
    }
    uint64_t want_rx = RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_TCP_CKSUM;
    if ((info.rx_offload_capa & want_rx) == want_rx) {
        conf.rxmode.offloads |= want_rx;
        s->rx_cksum = true;
    }
    if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)
        conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;

    rc = rte_eth_dev_configure(port, (uint16_t)s->n_workers, (uint16_t)s->n_workers, &conf);
    if (rc != 0) {
        log_error("rte_eth_dev_configure failed", "port=%u driver=%s error=%s", port,
                  info.driver_name, rte_strerror(-rc));
        return -EIO;
    }
    s->port_open = true;
    if ((rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd)) != 0) {
        log_error("rte_eth_dev_adjust_nb_rx_tx_desc failed", "error=%s", rte_strerror(-rc));
        return -EIO;
    }

    int socket = rte_eth_dev_socket_id(port);
    if (socket < 0)
        socket = (int)rte_socket_id();
    unsigned need = pool_min(s, rxd, txd);
    unsigned n_mbufs = d->mbufs ? d->mbufs : need;
    if (n_mbufs < need) {
        log_error("dataplane.dpdk.mbufs too small for the queues", "mbufs=%u need=%u",
                  n_mbufs, need);
        return -EINVAL;
    }
    /* Room for the largest frame in one segment, so no rx chaining at our MTU. */
    unsigned room = (unsigned)d->mtu + NET_ETH_HLEN + 4 + 4;
    if (room < RTE_MBUF_DEFAULT_DATAROOM)
        room = RTE_MBUF_DEFAULT_DATAROOM;
    room += RTE_PKTMBUF_HEADROOM;
    char name[RTE_MEMPOOL_NAMESIZE];
    snprintf(name, sizeof(name), "otlp_mbuf_p%u", port);
    s->pool = rte_pktmbuf_pool_create(name, n_mbufs, DPDK_POOL_CACHE, 0, (uint16_t)room, socket);
    if (s->pool == NULL) {
        log_error("cannot create the mbuf pool", "mbufs=%u room=%u socket=%d error=%s", n_mbufs,
                  room, socket, rte_strerror(rte_errno));
        return -ENOMEM;
    }
    for (unsigned q = 0; q < s->n_workers; q++) {
        struct rte_eth_rxconf rxq = info.default_rxconf;
        rxq.offloads = conf.rxmode.offloads;
        struct rte_eth_txconf txq = info.default_txconf;
        txq.offloads = conf.txmode.offloads;
        if ((rc = rte_eth_rx_queue_setup(port, (uint16_t)q, rxd, (unsigned)socket, &rxq,
                                         s->pool)) != 0 ||
            (rc = rte_eth_tx_queue_setup(port, (uint16_t)q, txd, (unsigned)socket, &txq)) != 0) {
            log_error("queue setup failed", "port=%u queue=%u error=%s", port, q,
                      rte_strerror(-rc));
            return -EIO;
        }
    }
    if ((rc = rte_eth_dev_start(port)) != 0) {
        log_error("rte_eth_dev_start failed", "port=%u error=%s", port, rte_strerror(-rc));
        return -EIO;
    }
    s->port_started = true;
    rte_eth_macaddr_get(port, &s->mac);
    struct rte_eth_link link;
    memset(&link, 0, sizeof(link));
    rte_eth_link_get_nowait(port, &link);
    log_info("DPDK port started",
             "port=%u driver=%s mac=%02x:%02x:%02x:%02x:%02x:%02x queues=%u rxd=%u txd=%u "
             "mbufs=%u rx_cksum_offload=%s rss=%s link=%s",
             port, info.driver_name, s->mac.addr_bytes[0], s->mac.addr_bytes[1],
             s->mac.addr_bytes[2], s->mac.addr_bytes[3], s->mac.addr_bytes[4],
             s->mac.addr_bytes[5], s->n_workers, rxd, txd, n_mbufs, s->rx_cksum ? "on" : "off",
             conf.rxmode.mq_mode == RTE_ETH_MQ_RX_RSS ? "ipv4_tcp"
                                                      : (is_tap && s->n_workers > 1 ? "kernel"
                                                                                    : "off"),
             link.link_status ? "up" : "down");
    return 0;
}

/* Stop and close the port, keeping the last counters for /metrics. */
void dpdk_port_close(struct dpdk_server *s)
{
    pthread_mutex_lock(&s->stats_lock);
    if (s->port_open) {
        rte_eth_stats_get(s->port, &s->last_stats);
        if (s->port_started)
            rte_eth_dev_stop(s->port);
        rte_eth_dev_close(s->port);
        s->port_started = false;
        s->port_open = false;
        s->link_up = 0;
    }
    pthread_mutex_unlock(&s->stats_lock);
}
