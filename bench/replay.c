/* SPDX-License-Identifier: Apache-2.0 */
/* otlp-replay: the worker lcore's ingest path in one thread, without a NIC,
 * so its cost per span can be measured and a regression located by layer:
 *   net   Ethernet frames of a pcap (bench/otlp_traffic.py pcap) into the
 *         userspace stack (lib/net) -> receiver -> pipeline, the way the DPDK
 *         worker does it (same libraries, same glue shape as lib/dpdk);
 *   http  the same requests as HTTP/1.1 bytes into receiver_conn_input();
 *   scan  inflate (gzip sets) + otlp_scan + pipeline_ingest: validate + batch.
 * Batches go to the discard exporter on its own thread, as in the service.
 * The SYN cookie ISN of the stack cannot be known by a pcap, so in `net` the
 * client's ACK numbers are rebased on the ISN the stack actually sent. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "compress/compress.h"
#include "config/config.h"
#include "export/export.h"
#include "net/net_stack.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "otlp/otlp.h"
#include "otlp/otlp_scan.h"
#include "pipeline/pipeline.h"
#include "receiver/receiver.h"

#define RP_BURST 32
#define RP_MAX_CONNS 4096

enum rp_layer { RP_NET, RP_HTTP, RP_SCAN };

/* ---- input ---- */

struct rp_req { /* one index row */
    enum otlp_signal sig;
    enum compress_codec codec;
    uint8_t *body;
    size_t body_len;
    uint8_t *http; /* request line + headers + body */
    size_t http_len;
    uint64_t items;
};

struct rp_frame { /* one client -> server frame of the pcap */
    uint8_t *data;
    uint32_t len;
    uint32_t flow;
    uint32_t orig_ack;
    uint16_t orig_csum;
    bool rebase; /* carries an ACK of the server's sequence space */
};

struct rp_flow {
    uint32_t ip;
    uint16_t port;
    uint32_t assumed_isn; /* the server ISN the pcap was written with */
    uint32_t delta;       /* real ISN - assumed, from the latest SYN-ACK */
    bool assumed_set;
};

static struct rp_req *g_reqs;
static size_t g_n_reqs;
static struct rp_frame *g_frames;
static size_t g_n_frames;
static struct rp_flow *g_flows;
static size_t g_n_flows;
static uint8_t g_mac[6];
static uint32_t g_ip;
static uint16_t g_port;

static void die(const char *what, const char *arg)
{
    fprintf(stderr, "otlp-replay: %s%s%s\n", what, arg ? ": " : "", arg ? arg : "");
    exit(2);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        die("cannot open", path);
    size_t cap = 1 << 20, n = 0;
    uint8_t *b = malloc(cap);
    for (;;) {
        if (b == NULL)
            die("out of memory", path);
        n += fread(b + n, 1, cap - n, f);
        if (n < cap)
            break;
        cap *= 2;
        b = realloc(b, cap);
    }
    fclose(f);
    *len = n;
    return b;
}

static void load_index(const char *index)
{
    FILE *f = fopen(index, "r");
    if (f == NULL)
        die("cannot open index", index);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", index);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[1] = '\0';
    else
        dir[0] = '\0';
    char line[8192];
    size_t cap = 0;
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *save = NULL;
        char *file = strtok_r(line, "\t\n", &save);
        char *sig = strtok_r(NULL, "\t\n", &save);
        char *enc = strtok_r(NULL, "\t\n", &save);
        char *items = strtok_r(NULL, "\t\n", &save);
        if (!file || !sig || !enc || !items)
            die("malformed index line", index);
        if (g_n_reqs == cap) {
            cap = cap ? cap * 2 : 64;
            g_reqs = realloc(g_reqs, cap * sizeof(*g_reqs));
            if (g_reqs == NULL)
                die("out of memory", NULL);
        }
        struct rp_req *r = &g_reqs[g_n_reqs++];
        memset(r, 0, sizeof(*r));
        if (strcmp(sig, "traces") == 0)
            r->sig = OTLP_TRACES;
        else if (strcmp(sig, "metrics") == 0)
            r->sig = OTLP_METRICS;
        else if (strcmp(sig, "logs") == 0)
            r->sig = OTLP_LOGS;
        else
            die("unknown signal", sig);
        if (compress_codec_parse(strcmp(enc, "identity") == 0 ? NULL : enc, &r->codec) < 0)
            die("unknown encoding", enc);
        r->items = strtoull(items, NULL, 10);
        char path[8192];
        snprintf(path, sizeof(path), "%s%s", file[0] == '/' ? "" : dir, file);
        r->body = slurp(path, &r->body_len);
        char head[512];
        int n = snprintf(head, sizeof(head),
                         "POST /v1/%s HTTP/1.1\r\nHost: 198.18.0.2:4318\r\nUser-Agent: "
                         "OTel-OTLP-Exporter-Go/1.33.0\r\nContent-Type: application/x-protobuf\r\n"
                         "%s%s%sContent-Length: %zu\r\n\r\n",
                         sig, r->codec != COMPRESS_NONE ? "Content-Encoding: " : "",
                         r->codec != COMPRESS_NONE ? enc : "",
                         r->codec != COMPRESS_NONE ? "\r\n" : "", r->body_len);
        r->http_len = (size_t)n + r->body_len;
        r->http = malloc(r->http_len);
        if (r->http == NULL)
            die("out of memory", NULL);
        memcpy(r->http, head, (size_t)n);
        memcpy(r->http + n, r->body, r->body_len);
    }
    fclose(f);
    if (g_n_reqs == 0)
        die("no requests in", index);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}
static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static size_t flow_find(uint32_t ip, uint16_t port)
{
    for (size_t i = 0; i < g_n_flows; i++) /* load time and SYN-ACKs only */
        if (g_flows[i].ip == ip && g_flows[i].port == port)
            return i;
    return SIZE_MAX;
}

/* Classic pcap, Ethernet. The server is the destination of the first frame;
 * frames from the server (written with --responses) are skipped. */
static void load_pcap(const char *path)
{
    size_t len;
    uint8_t *p = slurp(path, &len);
    if (len < 24 || (p[0] != 0xd4 || p[1] != 0xc3 || p[2] != 0xb2 || p[3] != 0xa1))
        die("not a little-endian microsecond pcap", path);
    size_t off = 24, cap = 0;
    while (off + 16 <= len) {
        uint32_t incl = (uint32_t)p[off + 8] | (uint32_t)p[off + 9] << 8 |
                        (uint32_t)p[off + 10] << 16 | (uint32_t)p[off + 11] << 24;
        off += 16;
        if (off + incl > len)
            break;
        uint8_t *fr = p + off;
        off += incl;
        if (incl < 54 || rd16(fr + 12) != 0x0800 || fr[23] != 6)
            continue;
        unsigned ihl = (fr[14] & 15u) * 4u;
        uint8_t *tcp = fr + 14 + ihl;
        if (g_n_frames == 0) {
            memcpy(g_mac, fr, 6);
            g_ip = rd32(fr + 30);
            g_port = rd16(tcp + 2);
        }
        if (rd32(fr + 30) != g_ip || rd16(tcp + 2) != g_port)
            continue; /* server -> client */
        uint32_t sip = rd32(fr + 26);
        uint16_t sport = rd16(tcp);
        size_t fl = flow_find(sip, sport);
        if (fl == SIZE_MAX) {
            g_flows = realloc(g_flows, (g_n_flows + 1) * sizeof(*g_flows));
            if (g_flows == NULL)
                die("out of memory", NULL);
            fl = g_n_flows++;
            memset(&g_flows[fl], 0, sizeof(g_flows[fl]));
            g_flows[fl].ip = sip;
            g_flows[fl].port = sport;
        }
        uint8_t flags = tcp[13];
        if (g_n_frames == cap) {
            cap = cap ? cap * 2 : 4096;
            g_frames = realloc(g_frames, cap * sizeof(*g_frames));
            if (g_frames == NULL)
                die("out of memory", NULL);
        }
        struct rp_frame *f = &g_frames[g_n_frames++];
        f->data = fr;
        f->len = incl;
        f->flow = (uint32_t)fl;
        f->orig_ack = rd32(tcp + 8);
        f->orig_csum = rd16(tcp + 16);
        f->rebase = (flags & 0x10) && !(flags & 0x02);
        if (f->rebase && !g_flows[fl].assumed_set) {
            g_flows[fl].assumed_isn = f->orig_ack - 1; /* the handshake's ACK */
            g_flows[fl].assumed_set = true;
        }
    }
    if (g_n_frames == 0)
        die("no TCP frames in", path);
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') over the two words of the ack. */
static void frame_rebase(struct rp_frame *f, uint32_t delta)
{
    uint8_t *tcp = f->data + 14 + (f->data[14] & 15u) * 4u;
    uint32_t a = f->orig_ack, b = a + delta;
    uint32_t sum = (uint16_t)~f->orig_csum;
    sum += (uint16_t) ~(a >> 16) + (b >> 16);
    sum += (uint16_t) ~(a & 0xffff) + (b & 0xffff);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    wr32(tcp + 8, b);
    wr16(tcp + 16, (uint16_t)~sum);
}

/* ---- the worker: stack + receiver glue (as lib/dpdk) ---- */

struct rp_conn {
    struct receiver_conn rc;
    struct net_tcp_conn *tc;
    struct buf out;
    size_t out_off;
    bool want_close;
    struct rp_conn *next_free;
};

struct rp_worker {
    struct net_stack *stack;
    struct receiver_worker *rw;
    struct rp_conn *conns;
    struct rp_conn *free_list;
    uint8_t txbuf[16384];
    uint64_t tx_frames, tx_bytes, synacks, accepts;
    uint32_t rcv_space;
};

static uint8_t *tx_alloc(void *ctx, size_t len)
{
    struct rp_worker *w = ctx;
    return len <= sizeof(w->txbuf) ? w->txbuf : NULL;
}

static void tx_send(void *ctx, uint8_t *frame, size_t len)
{
    struct rp_worker *w = ctx;
    w->tx_frames++;
    w->tx_bytes += len;
    if (len < 54 || rd16(frame + 12) != 0x0800 || frame[23] != 6)
        return;
    uint8_t *tcp = frame + 14 + (frame[14] & 15u) * 4u;
    if ((tcp[13] & 0x12) == 0x12) { /* SYN-ACK: learn the ISN for the flow */
        size_t fl = flow_find(rd32(frame + 30), rd16(tcp + 2));
        if (fl != SIZE_MAX)
            g_flows[fl].delta = rd32(tcp + 4) - g_flows[fl].assumed_isn;
        w->synacks++;
    }
}

static void conn_release(struct rp_worker *w, struct rp_conn *c)
{
    receiver_conn_fini(&c->rc);
    buf_reset(&c->out);
    c->out_off = 0;
    c->tc = NULL;
    c->want_close = false;
    c->next_free = w->free_list;
    w->free_list = c;
}

static bool conn_flush(struct rp_worker *w, struct rp_conn *c)
{
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
        if (rc < 0) {
            net_tcp_abort(c->tc);
            conn_release(w, c);
            return false;
        }
        c->out_off += n;
    }
    if (c->out_off < c->out.len)
        return true; /* rare here: the pcap's client acks every response */
    buf_reset(&c->out);
    c->out_off = 0;
    if (c->want_close) {
        net_tcp_close(c->tc);
        conn_release(w, c);
        return false;
    }
    return true;
}

static void *app_accept(void *ctx, struct net_tcp_conn *tc)
{
    struct rp_worker *w = ctx;
    struct rp_conn *c = w->free_list;
    if (c == NULL || receiver_conn_init(&c->rc, w->rw) < 0)
        return NULL;
    w->free_list = c->next_free;
    c->tc = tc;
    c->want_close = false;
    c->out_off = 0;
    buf_reset(&c->out);
    w->accepts++;
    return c;
}

static void app_data(void *ctx, struct net_tcp_conn *tc, void *app_conn, const uint8_t *data,
                     size_t len)
{
    struct rp_worker *w = ctx;
    struct rp_conn *c = app_conn;
    (void)tc;
    if (len == 0) {
        c->want_close = true;
        conn_flush(w, c);
        return;
    }
    if (c->want_close)
        return;
    if (receiver_conn_input(&c->rc, data, len, &c->out) == RECEIVER_CLOSE)
        c->want_close = true;
    if (!conn_flush(w, c))
        return;
    net_tcp_set_rcv_space(c->tc, w->rcv_space);
}

static void app_closed(void *ctx, struct net_tcp_conn *tc, void *app_conn,
                       enum net_tcp_close_reason reason)
{
    (void)tc;
    (void)reason;
    struct rp_conn *c = app_conn;
    if (c != NULL && c->tc != NULL)
        conn_release(ctx, c);
}

/* ---- main ---- */

/* Backpressure as the DPDK worker applies it (it closes the TCP windows):
 * wait, without spending CPU, until the exporter made room for `items`, so
 * the figure is the cost of accepted work, not of 429s. */
static uint64_t g_waits;
static void wait_for_room(struct pipeline *p, uint64_t items)
{
    while (pipeline_admit(p, 0, items) < 0 || pipeline_free_batches(p) < 2) {
        struct timespec ts = {0, 20000};
        pipeline_tick(p, 0, base_now_ns() / 1000000u, false);
        nanosleep(&ts, NULL);
        g_waits++;
    }
}

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double loadavg1(void)
{
    double l = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = 0;
        fclose(f);
    }
    return l;
}

static double cpu_mhz(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    double mhz = 0;
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "cpu MHz", 7) == 0) {
            char *colon = strchr(line, ':');
            mhz = colon ? atof(colon + 1) : 0;
            break;
        }
    if (f)
        fclose(f);
    return mhz;
}

/* Sum of the series of `name` in a Prometheus rendering. */
static double prom_sum(const struct buf *b, const char *name)
{
    double s = 0;
    size_t nl = strlen(name);
    const char *p = (const char *)b->data, *end = p + b->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if (*p != '#' && (size_t)(eol - p) > nl && strncmp(p, name, nl) == 0 &&
            (p[nl] == ' ' || p[nl] == '{')) {
            const char *sp = eol;
            while (sp > p && sp[-1] != ' ')
                sp--;
            s += strtod(sp, NULL);
        }
        p = eol + 1;
    }
    return s;
}

static void usage(void)
{
    fprintf(stderr, "usage: otlp-replay --layer net --pcap FILE [--seconds S] [--label L]\n"
                    "       otlp-replay --layer http|scan --index FILE [--seconds S] [--label L]\n"
                    "One JSON line on stdout; a summary on stderr.\n");
    exit(2);
}

int main(int argc, char **argv)
{
    enum rp_layer layer = RP_NET;
    const char *pcap = NULL, *index = NULL, *label = "";
    double seconds = 5;
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--layer") == 0 && v) {
            layer = strcmp(v, "net") == 0 ? RP_NET : strcmp(v, "http") == 0 ? RP_HTTP : RP_SCAN;
            if (strcmp(v, "net") && strcmp(v, "http") && strcmp(v, "scan"))
                usage();
        } else if (strcmp(a, "--pcap") == 0 && v) {
            pcap = v;
        } else if (strcmp(a, "--index") == 0 && v) {
            index = v;
        } else if (strcmp(a, "--seconds") == 0 && v) {
            seconds = atof(v);
        } else if (strcmp(a, "--label") == 0 && v) {
            label = v;
        } else {
            usage();
        }
    }
    if ((layer == RP_NET && pcap == NULL) || (layer != RP_NET && index == NULL) || seconds <= 0)
        usage();
    if (layer == RP_NET)
        load_pcap(pcap);
    else
        load_index(index);
    log_set_level(LOG_WARN);

    struct svc_config cfg;
    config_defaults(&cfg);
    cfg.exporter.protocol = EXPORTER_DISCARD;
    cfg.batch.max_queue_size = 65536;
    cfg.batch.max_export_batch_size = 8192;
    cfg.receiver.http_port = layer == RP_NET ? g_port : 4318;

    struct obs_registry *reg = NULL;
    struct pipeline *pipe = NULL;
    struct receiver *recv = NULL;
    struct export_runner *exp = NULL;
    struct rp_worker *w = calloc(1, sizeof(*w));
    struct compress_ctx *cz = NULL;
    struct buf inflated = {0};
    if (w == NULL || obs_registry_create(3, 8192, &reg) < 0 ||
        pipeline_create(&cfg, 1, &pipe) < 0 || receiver_create(&cfg, pipe, reg, 1, &recv) < 0 ||
        receiver_worker_create(recv, 0, &w->rw) < 0 ||
        export_runner_create(&cfg, pipe, reg, 1, &exp) < 0 || export_runner_start(exp) < 0 ||
        compress_ctx_create(&cz) < 0 || buf_init(&inflated, 1 << 20, 0) < 0)
        die("cannot build the pipeline", NULL);

    if (layer == RP_NET) {
        struct net_config nc;
        net_config_defaults(&nc);
        memcpy(nc.ifc.mac, g_mac, 6);
        nc.ifc.ip = g_ip;
        nc.ifc.netmask = 0xfffe0000u; /* 198.18.0.0/15 */
        nc.ifc.mtu = 1500;
        nc.listen_ports[0] = g_port;
        nc.n_listen_ports = 1;
        nc.max_conns = RP_MAX_CONNS;
        nc.snd_buf_bytes = 16384;
        nc.rcv_space_bytes = 256 * 1024;
        nc.rcv_wscale = 2;
        nc.ooo_buf_bytes = 64 * 1024;
        nc.ooo_bufs = 64;
        nc.time_wait_us = 2000000;
        w->rcv_space = nc.rcv_space_bytes;
        static const struct net_tx_ops tx = {.alloc = tx_alloc, .send = tx_send};
        static const struct net_app_ops app = {
            .on_accept = app_accept, .on_data = app_data, .on_closed = app_closed};
        w->conns = calloc(RP_MAX_CONNS, sizeof(*w->conns));
        if (w->conns == NULL || net_stack_create(&nc, &tx, w, &app, w, &w->stack) < 0)
            die("cannot create the stack", NULL);
        for (int i = RP_MAX_CONNS - 1; i >= 0; i--) {
            w->conns[i].next_free = w->free_list;
            w->free_list = &w->conns[i];
        }
    }

    double la0 = loadavg1();
    uint64_t t0 = base_now_ns(), t_end = t0 + (uint64_t)(seconds * 1e9);
    double c0 = thread_cpu_s();
    uint64_t loops = 0, fed = 0, http_bytes = 0, now = t0;
    struct receiver_conn hc;
    struct buf out = {0};
    if (layer == RP_HTTP && (receiver_conn_init(&hc, w->rw) < 0 || buf_init(&out, 4096, 0) < 0))
        die("cannot create a connection", NULL);
    struct otlp_scan_result *res = calloc(1, sizeof(*res));
    if (res == NULL)
        die("out of memory", NULL);
    uint64_t scan_refused = 0;
    while (now < t_end) {
        if (layer == RP_NET) {
            for (size_t i = 0; i < g_n_frames; i += RP_BURST) {
                wait_for_room(pipe, 8192); /* a burst carries at most ~500 spans */
                uint64_t now_us = base_now_ns() / 1000u;
                size_t n = g_n_frames - i < RP_BURST ? g_n_frames - i : RP_BURST;
                for (size_t k = i; k < i + n; k++) {
                    struct rp_frame *f = &g_frames[k];
                    if (f->rebase)
                        frame_rebase(f, g_flows[f->flow].delta);
                    net_stack_input(w->stack, f->data, f->len, now_us);
                    http_bytes += f->len;
                }
                net_stack_timers(w->stack, now_us);
                pipeline_tick(pipe, 0, now_us / 1000u, false);
            }
            fed += g_n_frames;
        } else {
            for (size_t i = 0; i < g_n_reqs; i++) {
                struct rp_req *r = &g_reqs[i];
                wait_for_room(pipe, r->items);
                if (layer == RP_HTTP) {
                    receiver_conn_input(&hc, r->http, r->http_len, &out);
                    buf_reset(&out);
                    http_bytes += r->http_len;
                } else {
                    const uint8_t *body = r->body;
                    size_t blen = r->body_len;
                    if (r->codec != COMPRESS_NONE) {
                        if (compress_inflate(cz, r->codec, r->body, r->body_len, &inflated,
                                             cfg.receiver.max_decompressed_bytes) < 0)
                            die("inflate failed", NULL);
                        body = inflated.data;
                        blen = inflated.len;
                    }
                    if (otlp_scan(r->sig, body, blen, NULL, res) < 0)
                        die("scan failed", NULL);
                    int rc = pipeline_ingest(pipe, 0, r->sig, body, blen, res, NULL);
                    if (rc < 0)
                        scan_refused += res->items;
                    http_bytes += r->body_len;
                }
                if ((i & 15) == 15)
                    pipeline_tick(pipe, 0, base_now_ns() / 1000000u, false);
            }
            fed += g_n_reqs;
        }
        loops++;
        now = base_now_ns();
    }
    double cpu = thread_cpu_s() - c0;
    double wall = (double)(now - t0) / 1e9;
    double la1 = loadavg1();

    struct buf prom = {0};
    buf_init(&prom, 1 << 16, 0);
    obs_render_prometheus(reg, &prom);
    double spans = prom_sum(&prom, "otlp_spans_accepted_total");
    double items = spans + prom_sum(&prom, "otlp_metric_points_accepted_total") +
                   prom_sum(&prom, "otlp_log_records_accepted_total");
    double reqs = prom_sum(&prom, "http_requests_total");
    double refused = prom_sum(&prom, "otlp_spans_refused_total") + (double)scan_refused;
    if (layer == RP_SCAN) {
        /* pipeline_ingest bypasses the receiver's counters: count from the index */
        uint64_t it = 0;
        for (size_t i = 0; i < g_n_reqs; i++)
            it += g_reqs[i].items;
        items = spans = (double)(it * loops - scan_refused);
        reqs = (double)(g_n_reqs * loops);
    }
    const struct net_stats *ns = w->stack ? net_stack_stats(w->stack) : NULL;
    uint64_t drops = 0;
    char drop_json[1024] = "";
    size_t dj = 0;
    if (ns)
        for (unsigned d = 0; d < NET_DROP_COUNT; d++)
            if (ns->drops[d]) {
                drops += ns->drops[d];
                dj += (size_t)snprintf(drop_json + dj, sizeof(drop_json) - dj, "%s\"%s\":%" PRIu64,
                                       dj ? "," : "", net_drop_reason_name(d), ns->drops[d]);
                if (dj >= sizeof(drop_json))
                    break;
            }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double mhz = cpu_mhz();
    static const char *const names[] = {"net", "http", "scan"};
    printf(
        "{\"kind\":\"inproc\",\"label\":\"%s\",\"layer\":\"%s\",\"input\":\"%s\",\"duration_s\":%."
        "3f,"
        "\"loops\":%" PRIu64 ",\"requests_per_s\":%.1f,\"spans_per_s\":%.1f,\"items_per_s\":%.1f,"
        "\"input_mbit_per_s\":%.1f,\"cpu_cores\":%.3f,\"spans_per_cpu_s\":%.1f,"
        "\"cycles_per_span\":%.1f,\"cycles_per_request\":%.1f,\"refused\":%.0f,\"waits\":%" PRIu64
        ",\"net_drops\":%" PRIu64 ",\"drops\":{%s},\"synacks\":%" PRIu64 ",\"accepts\":%" PRIu64
        ",\"tx_frames\":%" PRIu64 ",\"peak_rss_kb\":%ld,\"load_start\":%.2f,\"load_end\":%.2f}\n",
        label, names[layer], layer == RP_NET ? pcap : index, wall, loops, reqs / wall, spans / wall,
        items / wall, (double)http_bytes * 8 / wall / 1e6, cpu / wall, cpu > 0 ? items / cpu : 0,
        items > 0 ? cpu * mhz * 1e6 / items : 0, reqs > 0 ? cpu * mhz * 1e6 / reqs : 0, refused,
        g_waits, drops, drop_json, w->synacks, w->accepts, w->tx_frames, ru.ru_maxrss, la0, la1);
    fprintf(stderr,
            "otlp-replay %s %s: %.0f req/s, %.0f items/s on %.2f CPU (%.0f items per CPU-s, "
            "%.0f cycles/item), %.0f Mbit/s in, %" PRIu64 " drops, %.0f refused\n",
            names[layer], label, reqs / wall, items / wall, cpu / wall, cpu > 0 ? items / cpu : 0,
            items > 0 ? cpu * mhz * 1e6 / items : 0, (double)http_bytes * 8 / wall / 1e6, drops,
            refused);
    (void)fed;

    export_runner_stop(exp, base_now_ms() + 1000);
    export_runner_destroy(exp);
    if (layer == RP_HTTP)
        receiver_conn_fini(&hc);
    net_stack_destroy(w->stack);
    receiver_worker_destroy(w->rw);
    receiver_destroy(recv);
    pipeline_destroy(pipe);
    obs_registry_destroy(reg);
    compress_ctx_destroy(cz);
    buf_free(&inflated);
    buf_free(&out);
    buf_free(&prom);
    config_free(&cfg);
    free(res);
    free(w->conns);
    free(w);
    return 0;
}
