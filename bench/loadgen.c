/* SPDX-License-Identifier: Apache-2.0 */
/* otlp-loadgen: keep-alive HTTP/1.1 OTLP load generator for any OTLP/HTTP
 * receiver. Replays pre-encoded request files (bench/otlp_traffic.py index)
 * round robin over N connections (epoll, one or more threads, one request in
 * flight per connection), closed loop or at a fixed rate with latency taken
 * from the scheduled send time (coordinated omission corrected), and reports
 * accepted items/s, the status mix and ack latency from a log-linear
 * histogram. One JSON line on stdout, a human table on stderr. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LG_MAX_THREADS 64
#define LG_RX_INIT 16384
#define LG_RX_MAX (4u << 20) /* largest response we accept */
#define LG_HOUSEKEEP_NS 50000000ull
#define LG_RECONNECT_NS 100000000ull
#define LG_N_STATUS 600

/* ------------------------------------------------------------------ histogram */

/* Log-linear histogram of nanosecond values, HdrHistogram-style: values below
 * 256 exactly, above that 128 linear sub-buckets per power of two, so every
 * bucket is at most 1/128 (0.78%) of its value wide. Range up to 2^44 ns
 * (4.9 h); larger values are clamped into the top bucket (max is exact). */
#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_EXP 43
#define HIST_BUCKETS (2 * HIST_SUB + (HIST_MAX_EXP - HIST_SUB_BITS) * HIST_SUB)

struct hist {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
    uint64_t min;
    double sum;
};

static unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    if (e > HIST_MAX_EXP) {
        e = HIST_MAX_EXP;
        v = (1ull << (HIST_MAX_EXP + 1)) - 1;
    }
    unsigned shift = e - HIST_SUB_BITS;
    unsigned sub = (unsigned)(v >> shift);
    return 2 * HIST_SUB + (shift - 1) * HIST_SUB + (sub - HIST_SUB);
}

/* Highest value that lands in bucket `i`. */
static uint64_t hist_upper(unsigned i)
{
    if (i < 2 * HIST_SUB)
        return i;
    unsigned shift = (i - 2 * HIST_SUB) / HIST_SUB + 1;
    uint64_t sub = (i - 2 * HIST_SUB) % HIST_SUB + HIST_SUB;
    return (sub << shift) + (1ull << shift) - 1;
}

static void hist_record(struct hist *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    h->total++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
    if (h->total == 1 || v < h->min)
        h->min = v;
}

static void hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    if (src->total && (dst->total == 0 || src->min < dst->min))
        dst->min = src->min;
    dst->total += src->total;
    dst->sum += src->sum;
    if (src->max > dst->max)
        dst->max = src->max;
}

/* Value at percentile p (0..100]: the highest value of the bucket holding the
 * ceil(p% * total)-th sample, never above the exact maximum. */
static uint64_t hist_percentile(const struct hist *h, double p)
{
    if (h->total == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->total);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t u = hist_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

/* ------------------------------------------------------------------ requests */

enum lg_signal { SIG_TRACES, SIG_METRICS, SIG_LOGS, SIG_N };
static const char *const signal_names[SIG_N] = {"traces", "metrics", "logs"};
static const char *const item_names[SIG_N] = {"spans", "metric_points", "log_records"};

struct lg_request {
    uint8_t *wire; /* request line + headers + body, ready to send */
    size_t wire_len;
    size_t body_len;
    uint64_t items;
    enum lg_signal signal;
};

struct lg_target {
    char host[256];
    char port[16];
    char path[512]; /* empty: /v1/<signal> */
    struct sockaddr_storage addr;
    socklen_t addr_len;
};

struct lg_opts {
    const char *url;
    const char *index;
    unsigned conns;
    unsigned threads;
    double duration_s;
    double warmup_s;
    double rate; /* requests/s for the whole run; 0 = closed loop */
    double timeout_s;
    const char *content_type;
    const char *label;
};

static struct lg_opts g_opts = {.conns = 32,
                                .threads = 1,
                                .duration_s = 10,
                                .warmup_s = 0,
                                .rate = 0,
                                .timeout_s = 30,
                                .content_type = "application/x-protobuf",
                                .label = ""};
static struct lg_target g_target;
static struct lg_request *g_reqs;
static size_t g_n_reqs;
static atomic_bool g_stop;

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "otlp-loadgen: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(2);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        die("cannot open %s", path);
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || st.st_size < 0)
        die("cannot stat %s", path);
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL)
        die("out of memory reading %s", path);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    if (n != (size_t)st.st_size)
        die("short read on %s", path);
    fclose(f);
    *len = n;
    return buf;
}

/* Build the full HTTP request for one index row. Takes ownership of body. */
static void request_build(struct lg_request *r, uint8_t *body, size_t body_len,
                          const char *encoding)
{
    char head[2048];
    const char *path = g_target.path[0] ? g_target.path : NULL;
    char def_path[32];
    if (path == NULL) {
        snprintf(def_path, sizeof(def_path), "/v1/%s", signal_names[r->signal]);
        path = def_path;
    }
    bool gz = strcmp(encoding, "identity") != 0;
    int n =
        snprintf(head, sizeof(head),
                 "POST %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: otlp-loadgen/1\r\n"
                 "Content-Type: %s\r\n%s%s%sContent-Length: %zu\r\n\r\n",
                 path, g_target.host, g_target.port, g_opts.content_type,
                 gz ? "Content-Encoding: " : "", gz ? encoding : "", gz ? "\r\n" : "", body_len);
    if (n < 0 || (size_t)n >= sizeof(head))
        die("request head too long for %s", path);
    r->wire_len = (size_t)n + body_len;
    r->wire = malloc(r->wire_len);
    if (r->wire == NULL)
        die("out of memory for %s", "request");
    memcpy(r->wire, head, (size_t)n);
    memcpy(r->wire + n, body, body_len);
    r->body_len = body_len;
    free(body);
}

/* Index: "file<TAB>signal<TAB>encoding<TAB>items[<TAB>...]" per line, '#'
 * comments; file names relative to the index's directory. */
static void load_index(const char *index)
{
    FILE *f = fopen(index, "r");
    if (f == NULL)
        die("cannot open index %s", index);
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", index);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[1] = '\0';
    else
        dir[0] = '\0';
    size_t cap = 0;
    char line[8192];
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *save = NULL;
        char *file = strtok_r(line, "\t\n", &save);
        char *sig = strtok_r(NULL, "\t\n", &save);
        char *enc = strtok_r(NULL, "\t\n", &save);
        char *items = strtok_r(NULL, "\t\n", &save);
        if (!file || !sig || !enc || !items)
            die("malformed index line in %s", index);
        if (g_n_reqs == cap) {
            cap = cap ? 2 * cap : 64;
            g_reqs = realloc(g_reqs, cap * sizeof(*g_reqs));
            if (g_reqs == NULL)
                die("out of memory for %s", "index");
        }
        struct lg_request *r = &g_reqs[g_n_reqs];
        memset(r, 0, sizeof(*r));
        r->signal = SIG_N;
        for (int s = 0; s < SIG_N; s++)
            if (strcmp(sig, signal_names[s]) == 0)
                r->signal = (enum lg_signal)s;
        if (r->signal == SIG_N)
            die("unknown signal %s in index", sig);
        r->items = strtoull(items, NULL, 10);
        char path[8192];
        if (file[0] == '/')
            snprintf(path, sizeof(path), "%s", file);
        else
            snprintf(path, sizeof(path), "%s%s", dir, file);
        size_t len;
        uint8_t *body = read_file(path, &len);
        request_build(r, body, len, enc);
        g_n_reqs++;
    }
    fclose(f);
    if (g_n_reqs == 0)
        die("no requests in %s", index);
}

static void parse_url(const char *url)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0)
        die("only http:// URLs are supported: %s", url);
    p += 7;
    const char *host_end;
    const char *host_start = p;
    if (*p == '[') {
        host_start = p + 1;
        host_end = strchr(p, ']');
        if (host_end == NULL)
            die("bad IPv6 literal in %s", url);
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        p = host_end;
    }
    size_t hl = (size_t)(host_end - host_start);
    if (hl == 0 || hl >= sizeof(g_target.host))
        die("bad host in %s", url);
    memcpy(g_target.host, host_start, hl);
    g_target.host[hl] = '\0';
    if (*p == ':') {
        p++;
        size_t pl = strcspn(p, "/");
        if (pl == 0 || pl >= sizeof(g_target.port))
            die("bad port in %s", url);
        memcpy(g_target.port, p, pl);
        g_target.port[pl] = '\0';
        p += pl;
    } else {
        snprintf(g_target.port, sizeof(g_target.port), "80");
    }
    if (*p && strcmp(p, "/") != 0)
        snprintf(g_target.path, sizeof(g_target.path), "%s", p);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(g_target.host, g_target.port, &hints, &res);
    if (rc != 0 || res == NULL)
        die("cannot resolve %s", g_target.host);
    memcpy(&g_target.addr, res->ai_addr, res->ai_addrlen);
    g_target.addr_len = res->ai_addrlen;
    freeaddrinfo(res);
}

/* ------------------------------------------------------------------ connections */

enum conn_state { CS_CLOSED, CS_CONNECTING, CS_IDLE, CS_BUSY };

struct lg_conn {
    int fd;
    enum conn_state state;
    bool want_out; /* EPOLLOUT registered */
    const struct lg_request *req;
    size_t sent;          /* bytes of req->wire written */
    uint64_t sched_ns;    /* when the request was due (open loop) or sent (closed) */
    uint64_t retry_at_ns; /* CS_CLOSED: reconnect not before */
    uint8_t *rx;
    size_t rx_len, rx_cap;
};

struct lg_stats {
    struct hist lat;
    uint64_t status[LG_N_STATUS];
    uint64_t status_other;
    uint64_t responses;
    uint64_t items_ok[SIG_N];
    uint64_t items_rejected[SIG_N]; /* partial_success.rejected_* */
    uint64_t items_refused[SIG_N];  /* items of non-2xx answers */
    uint64_t bytes_sent;            /* request bytes (head + body) of answered requests */
    uint64_t body_bytes;
    uint64_t err_connect, err_reset, err_timeout, err_parse;
    uint64_t unfinished; /* open loop: due before the end but not answered */
    uint64_t sent;
    /* The loadgen's own stalls: how much later than asked a timed wait
     * returned (descheduled). In open loop such a delay is charged to the
     * latency like any other, so it is reported to tell it apart. */
    struct hist oversleep;
};

struct lg_thread {
    pthread_t tid;
    unsigned idx;
    int ep;
    struct lg_conn *conns;
    unsigned n_conns;
    unsigned *idle; /* stack of idle connection indexes */
    unsigned n_idle;
    size_t rr;
    double interval_ns; /* open loop: between two sends of this thread */
    double offset_ns;
    uint64_t next_k;
    struct lg_stats st;
};

static uint64_t g_t0, g_warm_end, g_t_end;
static pthread_barrier_t g_barrier;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void conn_close(struct lg_thread *t, struct lg_conn *c, uint64_t now)
{
    if (c->fd >= 0) {
        epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    if (c->state == CS_IDLE) {
        for (unsigned i = 0; i < t->n_idle; i++)
            if (&t->conns[t->idle[i]] == c) {
                t->idle[i] = t->idle[--t->n_idle];
                break;
            }
    }
    c->fd = -1;
    c->state = CS_CLOSED;
    c->want_out = false;
    c->req = NULL;
    c->rx_len = 0;
    c->retry_at_ns = now + LG_RECONNECT_NS;
}

static int conn_open(struct lg_thread *t, struct lg_conn *c)
{
    int fd = socket(g_target.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&g_target.addr, g_target.addr_len) < 0 &&
        errno != EINPROGRESS) {
        int e = -errno;
        close(fd);
        return e;
    }
    c->fd = fd;
    c->state = CS_CONNECTING;
    c->want_out = true;
    c->rx_len = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP,
                             .data.u32 = (uint32_t)(c - t->conns)};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = -errno;
        close(fd);
        c->fd = -1;
        c->state = CS_CLOSED;
        return e;
    }
    return 0;
}

static void conn_want_out(struct lg_thread *t, struct lg_conn *c, bool on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0u),
                             .data.u32 = (uint32_t)(c - t->conns)};
    epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

/* Write what the socket takes. Returns 0, or -1 when the connection failed. */
static int conn_flush(struct lg_thread *t, struct lg_conn *c, uint64_t now)
{
    while (c->sent < c->req->wire_len) {
        ssize_t n = send(c->fd, c->req->wire + c->sent, c->req->wire_len - c->sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->sent += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            conn_want_out(t, c, true);
            return 0;
        }
        if (n < 0 && errno == EINTR)
            continue;
        t->st.err_reset++;
        conn_close(t, c, now);
        return -1;
    }
    conn_want_out(t, c, false);
    return 0;
}

static void conn_send(struct lg_thread *t, struct lg_conn *c, uint64_t sched, uint64_t now)
{
    c->req = &g_reqs[t->rr++ % g_n_reqs];
    c->sent = 0;
    c->sched_ns = sched;
    c->state = CS_BUSY;
    t->st.sent++;
    conn_flush(t, c, now);
}

static void idle_push(struct lg_thread *t, struct lg_conn *c)
{
    c->state = CS_IDLE;
    t->idle[t->n_idle++] = (unsigned)(c - t->conns);
}

/* partial_success (field 1) .rejected_* (field 1) of an Export*ServiceResponse. */
static uint64_t pb_rejected(const uint8_t *p, size_t len)
{
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t key = 0, v = 0;
        for (unsigned s = 0; p < end && s < 64; s += 7) {
            key |= (uint64_t)(*p & 0x7f) << s;
            if (!(*p++ & 0x80))
                break;
        }
        unsigned wt = (unsigned)(key & 7);
        if (wt == 0) {
            for (unsigned s = 0; p < end && s < 64; s += 7) {
                v |= (uint64_t)(*p & 0x7f) << s;
                if (!(*p++ & 0x80))
                    break;
            }
            if (key >> 3 == 1)
                return v;
        } else if (wt == 2) {
            for (unsigned s = 0; p < end && s < 64; s += 7) {
                v |= (uint64_t)(*p & 0x7f) << s;
                if (!(*p++ & 0x80))
                    break;
            }
            if (v > (uint64_t)(end - p))
                return 0;
            if (key >> 3 == 1)
                return pb_rejected(p, (size_t)v);
            p += v;
        } else if (wt == 1) {
            p += 8;
        } else if (wt == 5) {
            p += 4;
        } else {
            return 0;
        }
    }
    return 0;
}

static bool header_is(const char *line, size_t len, const char *name, const char **val)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return false;
    const char *v = line + nl + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    *val = v;
    return true;
}

/* Parse a complete response at the start of c->rx. Returns its length (0:
 * need more bytes, -1: malformed). Sets status, body range, close flag. */
static long resp_parse(const struct lg_conn *c, int *status, size_t *body_off, size_t *body_len,
                       bool *close_after)
{
    const char *b = (const char *)c->rx;
    size_t n = c->rx_len;
    const char *hend = memmem(b, n, "\r\n\r\n", 4);
    if (hend == NULL)
        return n > 65536 ? -1 : 0;
    size_t hl = (size_t)(hend - b) + 4;
    if (n < 12 || strncmp(b, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi(b + 9);
    *close_after = b[7] == '0';
    long long clen = -1;
    bool chunked = false;
    const char *line = memchr(b, '\n', hl);
    while (line && (size_t)(line + 1 - b) < hl - 2) {
        line++;
        const char *eol = memchr(line, '\r', hl - (size_t)(line - b));
        if (eol == NULL)
            break;
        const char *v;
        size_t ll = (size_t)(eol - line);
        if (header_is(line, ll, "content-length", &v))
            clen = atoll(v);
        else if (header_is(line, ll, "transfer-encoding", &v))
            chunked = strncasecmp(v, "chunked", 7) == 0;
        else if (header_is(line, ll, "connection", &v))
            *close_after = strncasecmp(v, "close", 5) == 0         ? true
                           : strncasecmp(v, "keep-alive", 10) == 0 ? false
                                                                   : *close_after;
        line = memchr(eol, '\n', hl - (size_t)(eol - b));
    }
    if (chunked) {
        /* body bytes are only skipped: partial_success is not read from chunks */
        size_t p = hl;
        for (;;) {
            const char *crlf = memmem(b + p, n - p, "\r\n", 2);
            if (crlf == NULL)
                return 0;
            unsigned long long sz = strtoull(b + p, NULL, 16);
            p = (size_t)(crlf - b) + 2;
            if (sz == 0) {
                const char *tend = memmem(b + p - 2, n - (p - 2), "\r\n\r\n", 4);
                if (tend == NULL)
                    return 0;
                *body_off = hl;
                *body_len = 0;
                return (long)((size_t)(tend - b) + 4);
            }
            if (sz > LG_RX_MAX)
                return -1;
            if (n - p < sz + 2)
                return 0;
            p += sz + 2;
        }
    }
    if (clen < 0) {
        if (*status == 204 || *status == 304 || (*status >= 100 && *status < 200))
            clen = 0;
        else
            return -1; /* read-until-close bodies are not supported */
    }
    if ((unsigned long long)clen > LG_RX_MAX)
        return -1;
    if (n < hl + (size_t)clen)
        return 0;
    *body_off = hl;
    *body_len = (size_t)clen;
    return (long)(hl + (size_t)clen);
}

static void record(struct lg_thread *t, struct lg_conn *c, int status, const uint8_t *body,
                   size_t body_len, uint64_t now)
{
    struct lg_stats *st = &t->st;
    /* latency only for requests due after warm-up; throughput for answers inside the window */
    if (c->sched_ns >= g_warm_end)
        hist_record(&st->lat, now - c->sched_ns);
    if (now < g_warm_end || now > g_t_end)
        return;
    st->responses++;
    if (status >= 0 && status < LG_N_STATUS)
        st->status[status]++;
    else
        st->status_other++;
    const struct lg_request *r = c->req;
    st->bytes_sent += r->wire_len;
    st->body_bytes += r->body_len;
    if (status >= 200 && status < 300) {
        uint64_t rej = body_len ? pb_rejected(body, body_len) : 0;
        if (rej > r->items)
            rej = r->items;
        st->items_ok[r->signal] += r->items - rej;
        st->items_rejected[r->signal] += rej;
    } else {
        st->items_refused[r->signal] += r->items;
    }
}

/* Read and handle the responses on c; sends the next request in closed loop. */
static void conn_read(struct lg_thread *t, struct lg_conn *c, uint64_t now, bool closed_loop)
{
    bool eof = false;
    for (;;) {
        if (c->rx_cap - c->rx_len < 4096) {
            size_t nc = c->rx_cap ? 2 * c->rx_cap : LG_RX_INIT;
            if (nc > LG_RX_MAX + 65536) {
                t->st.err_parse++;
                conn_close(t, c, now);
                return;
            }
            uint8_t *nb = realloc(c->rx, nc);
            if (nb == NULL) {
                t->st.err_parse++;
                conn_close(t, c, now);
                return;
            }
            c->rx = nb;
            c->rx_cap = nc;
        }
        ssize_t n = recv(c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, MSG_DONTWAIT);
        if (n > 0) {
            c->rx_len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        eof = true; /* EOF or error: answer what arrived, then close */
        break;
    }
    while (c->rx_len > 0) {
        int status = 0;
        size_t boff = 0, blen = 0;
        bool close_after = false;
        long used = resp_parse(c, &status, &boff, &blen, &close_after);
        if (used == 0)
            break;
        if (used < 0 || c->state != CS_BUSY) {
            t->st.err_parse++;
            conn_close(t, c, now);
            return;
        }
        if (status >= 100 && status < 200) { /* 100 Continue and friends: not the answer */
            memmove(c->rx, c->rx + used, c->rx_len - (size_t)used);
            c->rx_len -= (size_t)used;
            continue;
        }
        record(t, c, status, c->rx + boff, blen, now);
        memmove(c->rx, c->rx + used, c->rx_len - (size_t)used);
        c->rx_len -= (size_t)used;
        c->req = NULL;
        if (close_after || eof) {
            conn_close(t, c, now);
            c->retry_at_ns = now; /* reconnect at once: the server chose to close */
            return;
        }
        if (closed_loop && now < g_t_end)
            conn_send(t, c, now, now);
        else
            idle_push(t, c);
        return;
    }
    if (eof) {
        if (c->state == CS_BUSY) /* the request in flight got no answer */
            t->st.err_reset++;
        conn_close(t, c, now);
    }
}

static void conn_event(struct lg_thread *t, struct lg_conn *c, uint32_t events, uint64_t now,
                       bool closed_loop)
{
    if (c->state == CS_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        if ((events & (EPOLLERR | EPOLLHUP)) ||
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
            t->st.err_connect++;
            conn_close(t, c, now);
            return;
        }
        if (!(events & EPOLLOUT))
            return;
        conn_want_out(t, c, false);
        if (closed_loop && now >= g_t0 && now < g_t_end)
            conn_send(t, c, now, now);
        else
            idle_push(t, c);
        return;
    }
    if ((events & EPOLLOUT) && c->state == CS_BUSY && c->req && c->sent < c->req->wire_len) {
        if (conn_flush(t, c, now) < 0)
            return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
        conn_read(t, c, now, closed_loop);
}

static uint64_t sched_at(const struct lg_thread *t, uint64_t k)
{
    return g_t0 + (uint64_t)(t->offset_ns + (double)k * t->interval_ns);
}

static void housekeep(struct lg_thread *t, uint64_t now, bool closed_loop)
{
    uint64_t timeout_ns = (uint64_t)(g_opts.timeout_s * 1e9);
    for (unsigned i = 0; i < t->n_conns; i++) {
        struct lg_conn *c = &t->conns[i];
        if (c->state == CS_BUSY && now - c->sched_ns > timeout_ns && now > c->sched_ns) {
            t->st.err_timeout++;
            conn_close(t, c, now);
        }
        if (c->state == CS_CLOSED && now >= c->retry_at_ns && now < g_t_end) {
            if (conn_open(t, c) < 0) {
                t->st.err_connect++;
                c->retry_at_ns = now + LG_RECONNECT_NS;
            }
        }
    }
    (void)closed_loop;
}

static void *thread_main(void *arg)
{
    struct lg_thread *t = arg;
    bool closed_loop = g_opts.rate <= 0;
    prctl(PR_SET_TIMERSLACK, 1ul, 0, 0, 0); /* 1 ns: sends leave on time */
    for (unsigned i = 0; i < t->n_conns; i++) {
        t->conns[i].fd = -1;
        if (conn_open(t, &t->conns[i]) < 0)
            t->st.err_connect++;
    }
    /* wait until every connection is up (or failed) before the clock starts */
    uint64_t until = now_ns() + 2000000000ull;
    struct epoll_event evs[256];
    for (;;) {
        unsigned pending = 0;
        for (unsigned i = 0; i < t->n_conns; i++)
            pending += t->conns[i].state == CS_CONNECTING;
        if (pending == 0 || now_ns() > until)
            break;
        int n = epoll_wait(t->ep, evs, 256, 10);
        for (int i = 0; i < n; i++) {
            struct lg_conn *c = &t->conns[evs[i].data.u32];
            if (c->state != CS_CONNECTING)
                continue;
            int err = 0;
            socklen_t el = sizeof(err);
            if ((evs[i].events & (EPOLLERR | EPOLLHUP)) ||
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
                t->st.err_connect++;
                conn_close(t, c, now_ns());
            } else if (evs[i].events & EPOLLOUT) {
                conn_want_out(t, c, false);
                idle_push(t, c);
            }
        }
    }
    pthread_barrier_wait(&g_barrier); /* main sets g_t0 */
    pthread_barrier_wait(&g_barrier);
    while (now_ns() < g_t0)
        ;
    uint64_t now = now_ns();
    if (closed_loop) {
        while (t->n_idle > 0)
            conn_send(t, &t->conns[t->idle[--t->n_idle]], now, now);
    }
    uint64_t next_house = now + LG_HOUSEKEEP_NS;
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        now = now_ns();
        if (now >= g_t_end)
            break;
        if (!closed_loop) {
            uint64_t s;
            while (t->n_idle > 0 && (s = sched_at(t, t->next_k)) <= now && s < g_t_end) {
                struct lg_conn *c = &t->conns[t->idle[--t->n_idle]];
                t->next_k++;
                conn_send(t, c, s, now);
            }
        } else {
            while (t->n_idle > 0) /* reconnected connections */
                conn_send(t, &t->conns[t->idle[--t->n_idle]], now, now);
        }
        if (now >= next_house) {
            housekeep(t, now, closed_loop);
            next_house = now + LG_HOUSEKEEP_NS;
        }
        uint64_t wake = next_house < g_t_end ? next_house : g_t_end;
        if (!closed_loop && t->n_idle > 0) {
            uint64_t s = sched_at(t, t->next_k);
            if (s < wake)
                wake = s;
        }
        uint64_t wait = wake > now ? wake - now : 0;
        struct timespec ts = {.tv_sec = (time_t)(wait / 1000000000ull),
                              .tv_nsec = (long)(wait % 1000000000ull)};
        uint64_t asked = now + wait;
        int n = epoll_pwait2(t->ep, evs, 256, &ts, NULL);
        if (n < 0 && errno != EINTR) {
            perror("epoll_pwait2");
            break;
        }
        now = now_ns();
        if (n == 0 && now >= g_warm_end)
            hist_record(&t->st.oversleep, now > asked ? now - asked : 0);
        if (now >= g_t_end)
            break; /* answers after the end are not counted; open loop: unfinished */
        for (int i = 0; i < n; i++)
            conn_event(t, &t->conns[evs[i].data.u32], evs[i].events, now, closed_loop);
    }
    /* Open loop, coordinated omission: whatever was due before the end and not
     * answered waited at least until the end; count it at that lower bound. */
    if (!closed_loop) {
        uint64_t end = now < g_t_end ? now : g_t_end; /* earlier when interrupted */
        for (unsigned i = 0; i < t->n_conns; i++) {
            struct lg_conn *c = &t->conns[i];
            if (c->state == CS_BUSY && c->sched_ns >= g_warm_end && c->sched_ns < end) {
                hist_record(&t->st.lat, end - c->sched_ns);
                t->st.unfinished++;
            }
        }
        for (uint64_t s; (s = sched_at(t, t->next_k)) < end; t->next_k++) {
            if (s >= g_warm_end) {
                hist_record(&t->st.lat, end - s);
                t->st.unfinished++;
            }
        }
    }
    for (unsigned i = 0; i < t->n_conns; i++) {
        if (t->conns[i].fd >= 0)
            close(t->conns[i].fd);
        free(t->conns[i].rx);
    }
    return NULL;
}

/* ------------------------------------------------------------------ main */

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&g_stop, true);
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: otlp-loadgen --index FILE [options] URL\n"
        "  URL                 http://host:port (requests go to /v1/<signal> of each file)\n"
        "                      or http://host:port/path (every request to that path)\n"
        "  -i, --index FILE    index written by bench/otlp_traffic.py requests\n"
        "  -c, --connections N keep-alive connections (default 32), one request in flight each\n"
        "  -t, --threads N     threads (default 1); connections are split between them\n"
        "  -d, --duration S    measured seconds (default 10), after the warm-up\n"
        "  -w, --warmup S      seconds not counted (default 0)\n"
        "  -R, --rate N        open loop: N requests/s in total, latency from the scheduled\n"
        "                      send time; 0 (default): closed loop, as fast as possible\n"
        "      --timeout S     per request (default 30); the connection is closed\n"
        "      --content-type T  (default application/x-protobuf)\n"
        "      --label TEXT    copied into the JSON output\n"
        "Output: one JSON line on stdout, a table on stderr.\n");
    exit(2);
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {{"index", required_argument, NULL, 'i'},
                                          {"connections", required_argument, NULL, 'c'},
                                          {"threads", required_argument, NULL, 't'},
                                          {"duration", required_argument, NULL, 'd'},
                                          {"warmup", required_argument, NULL, 'w'},
                                          {"rate", required_argument, NULL, 'R'},
                                          {"timeout", required_argument, NULL, 'T'},
                                          {"content-type", required_argument, NULL, 'C'},
                                          {"label", required_argument, NULL, 'L'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "i:c:t:d:w:R:h", lopts, NULL)) != -1) {
        switch (o) {
        case 'i':
            g_opts.index = optarg;
            break;
        case 'c':
            g_opts.conns = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 't':
            g_opts.threads = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'd':
            g_opts.duration_s = strtod(optarg, NULL);
            break;
        case 'w':
            g_opts.warmup_s = strtod(optarg, NULL);
            break;
        case 'R':
            g_opts.rate = strtod(optarg, NULL);
            break;
        case 'T':
            g_opts.timeout_s = strtod(optarg, NULL);
            break;
        case 'C':
            g_opts.content_type = optarg;
            break;
        case 'L':
            g_opts.label = optarg;
            break;
        default:
            usage();
        }
    }
    if (optind != argc - 1 || g_opts.index == NULL)
        usage();
    g_opts.url = argv[optind];
    if (g_opts.threads < 1 || g_opts.threads > LG_MAX_THREADS || g_opts.conns < g_opts.threads ||
        g_opts.duration_s <= 0 || g_opts.warmup_s < 0 || g_opts.rate < 0 || g_opts.timeout_s <= 0)
        usage();
    parse_url(g_opts.url);
    load_index(g_opts.index);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    unsigned nt = g_opts.threads;
    struct lg_thread *th = calloc(nt, sizeof(*th));
    if (th == NULL || pthread_barrier_init(&g_barrier, NULL, nt + 1) != 0)
        die("cannot allocate %s", "threads");
    for (unsigned i = 0; i < nt; i++) {
        struct lg_thread *t = &th[i];
        t->idx = i;
        t->n_conns = g_opts.conns / nt + (i < g_opts.conns % nt ? 1 : 0);
        t->conns = calloc(t->n_conns, sizeof(*t->conns));
        t->idle = calloc(t->n_conns, sizeof(*t->idle));
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        if (t->conns == NULL || t->idle == NULL || t->ep < 0)
            die("cannot set up %s", "thread");
        t->rr = i * g_n_reqs / nt;
        if (g_opts.rate > 0) {
            t->interval_ns = 1e9 * nt / g_opts.rate;
            t->offset_ns = t->interval_ns * i / nt;
        }
        if (pthread_create(&t->tid, NULL, thread_main, t) != 0)
            die("cannot start %s", "thread");
    }
    pthread_barrier_wait(&g_barrier);
    g_t0 = now_ns() + 1000000ull;
    g_warm_end = g_t0 + (uint64_t)(g_opts.warmup_s * 1e9);
    g_t_end = g_warm_end + (uint64_t)(g_opts.duration_s * 1e9);
    pthread_barrier_wait(&g_barrier);
    struct lg_stats *tot = calloc(1, sizeof(*tot));
    if (tot == NULL)
        die("cannot allocate %s", "stats");
    for (unsigned i = 0; i < nt; i++) {
        pthread_join(th[i].tid, NULL);
        struct lg_stats *s = &th[i].st;
        hist_merge(&tot->lat, &s->lat);
        hist_merge(&tot->oversleep, &s->oversleep);
        for (unsigned k = 0; k < LG_N_STATUS; k++)
            tot->status[k] += s->status[k];
        tot->status_other += s->status_other;
        tot->responses += s->responses;
        for (unsigned k = 0; k < SIG_N; k++) {
            tot->items_ok[k] += s->items_ok[k];
            tot->items_rejected[k] += s->items_rejected[k];
            tot->items_refused[k] += s->items_refused[k];
        }
        tot->bytes_sent += s->bytes_sent;
        tot->body_bytes += s->body_bytes;
        tot->err_connect += s->err_connect;
        tot->err_reset += s->err_reset;
        tot->err_timeout += s->err_timeout;
        tot->err_parse += s->err_parse;
        tot->unfinished += s->unfinished;
        tot->sent += s->sent;
    }
    uint64_t end = now_ns() < g_t_end ? now_ns() : g_t_end; /* interrupted early */
    double secs = (double)(end - g_warm_end) / 1e9;
    if (secs <= 0)
        secs = 1e-9;
    uint64_t items = 0, non2xx = 0;
    for (unsigned k = 0; k < SIG_N; k++)
        items += tot->items_ok[k];
    for (unsigned k = 0; k < LG_N_STATUS; k++)
        if (k < 200 || k >= 300)
            non2xx += tot->status[k];
    non2xx += tot->status_other;
    const struct hist *h = &tot->lat;
    double p50 = ms(hist_percentile(h, 50)), p90 = ms(hist_percentile(h, 90));
    double p99 = ms(hist_percentile(h, 99)), p999 = ms(hist_percentile(h, 99.9));
    double p95 = ms(hist_percentile(h, 95)), mx = ms(h->max);
    double mean = h->total ? h->sum / (double)h->total / 1e6 : 0;

    /* JSON on stdout */
    printf("{\"label\":\"%s\",\"url\":\"%s\",\"index\":\"%s\",\"mode\":\"%s\",\"rate_target\":%.1f,"
           "\"connections\":%u,\"threads\":%u,\"duration_s\":%.3f,\"warmup_s\":%.3f,"
           "\"requests\":%" PRIu64 ",\"requests_per_s\":%.1f,\"items_per_s\":%.1f",
           g_opts.label, g_opts.url, g_opts.index, g_opts.rate > 0 ? "open" : "closed", g_opts.rate,
           g_opts.conns, nt, secs, g_opts.warmup_s, tot->responses, (double)tot->responses / secs,
           (double)items / secs);
    for (unsigned k = 0; k < SIG_N; k++)
        printf(",\"%s_per_s\":%.1f", item_names[k], (double)tot->items_ok[k] / secs);
    printf(",\"accepted\":{");
    for (unsigned k = 0; k < SIG_N; k++)
        printf("%s\"%s\":%" PRIu64, k ? "," : "", item_names[k], tot->items_ok[k]);
    printf("},\"rejected_partial\":{");
    for (unsigned k = 0; k < SIG_N; k++)
        printf("%s\"%s\":%" PRIu64, k ? "," : "", item_names[k], tot->items_rejected[k]);
    printf("},\"refused_non2xx\":{");
    for (unsigned k = 0; k < SIG_N; k++)
        printf("%s\"%s\":%" PRIu64, k ? "," : "", item_names[k], tot->items_refused[k]);
    printf("},\"request_mbit_per_s\":%.1f,\"body_mbit_per_s\":%.1f,\"status\":{",
           (double)tot->bytes_sent * 8 / secs / 1e6, (double)tot->body_bytes * 8 / secs / 1e6);
    bool first = true;
    for (unsigned k = 0; k < LG_N_STATUS; k++)
        if (tot->status[k]) {
            printf("%s\"%u\":%" PRIu64, first ? "" : ",", k, tot->status[k]);
            first = false;
        }
    if (tot->status_other)
        printf("%s\"other\":%" PRIu64, first ? "" : ",", tot->status_other);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("},\"loadgen_cpu_s\":%.3f,\"loadgen_oversleep_ms\":{\"samples\":%" PRIu64
           ",\"p99\":%.4f,\"max\":%.4f}",
           cpu_s, tot->oversleep.total, ms(hist_percentile(&tot->oversleep, 99)),
           ms(tot->oversleep.max));
    printf(",\"non2xx\":%" PRIu64 ",\"errors\":{\"connect\":%" PRIu64 ",\"reset\":%" PRIu64
           ",\"timeout\":%" PRIu64 ",\"parse\":%" PRIu64 "},\"unfinished\":%" PRIu64
           ",\"latency_ms\":{\"samples\":%" PRIu64 ",\"min\":%.4f,\"mean\":%.4f,\"p50\":%.4f,"
           "\"p90\":%.4f,\"p95\":%.4f,\"p99\":%.4f,\"p99_9\":%.4f,\"max\":%.4f}}\n",
           non2xx, tot->err_connect, tot->err_reset, tot->err_timeout, tot->err_parse,
           tot->unfinished, h->total, ms(h->min), mean, p50, p90, p95, p99, p999, mx);
    fflush(stdout);

    /* table on stderr */
    fprintf(stderr, "otlp-loadgen %s  %s  %u conns  %u threads  %.1f s%s\n", g_opts.url,
            g_opts.rate > 0 ? "open loop" : "closed loop", g_opts.conns, nt, secs,
            g_opts.warmup_s > 0 ? " (after warm-up)" : "");
    if (g_opts.rate > 0)
        fprintf(stderr, "  target rate       %12.0f req/s (latency from the scheduled time)\n",
                g_opts.rate);
    fprintf(stderr,
            "  requests          %12.0f req/s   %" PRIu64 " answered, %" PRIu64 " non-2xx\n",
            (double)tot->responses / secs, tot->responses, non2xx);
    for (unsigned k = 0; k < SIG_N; k++)
        if (tot->items_ok[k] || tot->items_refused[k])
            fprintf(stderr,
                    "  %-17s %12.0f /s      %" PRIu64 " accepted, %" PRIu64 " refused, %" PRIu64
                    " rejected\n",
                    item_names[k], (double)tot->items_ok[k] / secs, tot->items_ok[k],
                    tot->items_refused[k], tot->items_rejected[k]);
    fprintf(stderr, "  request bytes     %12.1f Mbit/s\n",
            (double)tot->bytes_sent * 8 / secs / 1e6);
    fprintf(stderr, "  status           ");
    for (unsigned k = 0; k < LG_N_STATUS; k++)
        if (tot->status[k])
            fprintf(stderr, " %u:%" PRIu64, k, tot->status[k]);
    fprintf(stderr,
            "\n  errors             connect %" PRIu64 ", reset %" PRIu64 ", timeout %" PRIu64
            ", parse %" PRIu64 ", unfinished %" PRIu64 "\n",
            tot->err_connect, tot->err_reset, tot->err_timeout, tot->err_parse, tot->unfinished);
    fprintf(stderr,
            "  latency ms         p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  "
            "(mean %.3f, %" PRIu64 " samples)\n",
            p50, p90, p99, p999, mx, mean, h->total);
    if (g_opts.rate > 0)
        fprintf(stderr,
                "  loadgen stalls     timed waits returned late by p99 %.3f ms, max %.3f ms "
                "(%" PRIu64 " waits)\n",
                ms(hist_percentile(&tot->oversleep, 99)), ms(tot->oversleep.max),
                tot->oversleep.total);
    for (unsigned i = 0; i < nt; i++) {
        close(th[i].ep);
        free(th[i].conns);
        free(th[i].idle);
    }
    for (size_t i = 0; i < g_n_reqs; i++)
        free(g_reqs[i].wire);
    free(g_reqs);
    free(th);
    int rc = tot->responses == 0 ? 1 : 0;
    free(tot);
    return rc;
}
