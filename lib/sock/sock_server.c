/* SPDX-License-Identifier: Apache-2.0 */
/* Socket-mode workers: accept, read, feed the receiver, write responses,
 * enforce connection limits and timeouts, flush aged batches. With
 * receiver.tls every byte goes through lib/tls between the socket and the
 * receivers (conn_recv / conn_send). Each worker owns everything it
 * touches; nothing is shared but the pipeline rings. */
#include "sock/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/base.h"
#include "grpc/grpc_receiver.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "pipeline/pipeline.h"
#include "receiver/receiver.h"
#include "tls/tls.h"

#define SOCK_READ_CHUNK (64 * 1024)
#define SOCK_MAX_EVENTS 64
#define SOCK_OUT_HIGH_WATER (256 * 1024) /* stop reading while this much is unsent */
#define SOCK_TIMER_MS 250
#define SOCK_GRPC_TIMER_MS 50 /* resume stalled gRPC clients this often */

struct sock_conn {
    int fd;
    bool in_use;
    bool want_close;            /* close once `out` is written */
    bool epollout;              /* currently waiting for EPOLLOUT */
    bool grpc;                  /* accepted on the gRPC port: `gc`, else `rc` */
    uint64_t last_active_ms;    /* TLS: accept time until the handshake completes */
    size_t out_off;
    struct buf out;
    struct tls_conn tls;        /* tls.ssl NULL: plain TCP */
    union {
        struct receiver_conn rc;
        struct grpc_conn gc;
    };
    struct sock_conn *next_free;
};

struct sock_worker {
    _Alignas(BASE_CACHE_LINE) struct sock_server *s;
    unsigned id;
    int core;                   /* -1: not pinned */
    int ep;
    int listen_fd;
    int grpc_listen_fd;         /* -1 when receiver.grpc_port is 0 */
    int wake_fd;
    pthread_t thread;
    bool started;
    struct receiver_worker *rw;
    struct grpc_worker *gw;
    struct tls_worker *tw;      /* NULL: plain TCP */
    unsigned n_grpc;            /* gRPC connections open */
    struct sock_conn *conns;
    struct sock_conn *free_list;
    unsigned n_conns;
    unsigned max_conns;
    uint8_t *rbuf;
};

struct sock_server {
    const struct svc_config *cfg;
    struct receiver *r;
    struct grpc_receiver *gr;   /* NULL: no gRPC listener */
    struct tls_ctx *tls;        /* NULL: plain TCP */
    struct pipeline *p;
    struct obs_registry *reg;
    unsigned n_workers;
    uint16_t port;
    uint16_t grpc_port;
    _Atomic int stopping;       /* 1: stop accepting and drain */
    _Atomic uint64_t deadline_ms;
    struct sock_worker *workers;
    uint32_t m_conns, m_accepted, m_limit, m_timeouts; /* + worker */
};

int sock_listen(const char *host, uint16_t port, int backlog, bool reuseport)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", port);
    int rc = getaddrinfo(host && host[0] ? host : NULL, portstr, &hints, &ai);
    if (rc != 0)
        return -EADDRNOTAVAIL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        rc = -errno;
        goto fail;
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
        rc = -errno;
        goto fail;
    }
    rc = fd;
    goto out;
fail:
    close(fd);
out:
    freeaddrinfo(ai);
    return rc;
}

static int register_metrics(struct sock_server *s)
{
    static char store[CONFIG_MAX_CORES][24];
    const char *lbl[CONFIG_MAX_CORES];
    for (unsigned w = 0; w < s->n_workers; w++) {
        snprintf(store[w], sizeof(store[w]), "worker=\"%u\"", w);
        lbl[w] = store[w];
    }
    int rc;
    if ((rc = obs_gauge_register(s->reg, "otlp_worker_connections", "Open OTLP connections per worker",
                                 lbl, s->n_workers, &s->m_conns)) < 0 ||
        (rc = obs_counter_register(s->reg, "otlp_worker_connections_accepted_total",
                                   "Connections accepted per worker", lbl, s->n_workers,
                                   &s->m_accepted)) < 0 ||
        (rc = obs_counter_register(s->reg, "otlp_worker_connections_refused_total",
                                   "Connections closed at once because the limit was reached",
                                   lbl, s->n_workers, &s->m_limit)) < 0 ||
        (rc = obs_counter_register(s->reg, "otlp_worker_timeouts_total",
                                   "Connections closed for idle or request timeout", lbl,
                                   s->n_workers, &s->m_timeouts)) < 0)
        return rc;
    return 0;
}

int sock_server_create(const struct svc_config *cfg, struct receiver *r, struct grpc_receiver *gr,
                       struct pipeline *p, struct obs_registry *reg, unsigned n_workers,
                       struct sock_server **out)
{
    if (n_workers == 0 || n_workers > CONFIG_MAX_CORES)
        return -EINVAL;
    struct sock_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->cfg = cfg;
    s->r = r;
    s->gr = gr;
    s->grpc_port = cfg->receiver.grpc_port;
    s->p = p;
    s->reg = reg;
    s->n_workers = n_workers;
    s->port = cfg->receiver.http_port;
    int rc = -ENOMEM;
    if (posix_memalign((void **)&s->workers, BASE_CACHE_LINE, n_workers * sizeof(*s->workers)))
        goto fail;
    memset(s->workers, 0, n_workers * sizeof(*s->workers));

    unsigned cores[CONFIG_MAX_CORES];
    unsigned n_cores = 0;
    if (cfg->dataplane.cores && cfg->dataplane.cores[0] &&
        config_parse_cores(cfg->dataplane.cores, cores, CONFIG_MAX_CORES, &n_cores) < 0)
        n_cores = 0;

    unsigned per = (cfg->receiver.max_connections + n_workers - 1) / n_workers;
    if (per == 0)
        per = 1;
    for (unsigned w = 0; w < n_workers; w++) {
        struct sock_worker *wk = &s->workers[w];
        wk->s = s;
        wk->id = w;
        wk->core = n_cores ? (int)cores[w % n_cores] : -1;
        wk->ep = wk->listen_fd = wk->grpc_listen_fd = wk->wake_fd = -1;
        wk->max_conns = per;
        /* The connection table is allocated once; per-connection buffers
         * start empty and grow with use. */
        wk->conns = calloc(per, sizeof(*wk->conns));
        wk->rbuf = malloc(SOCK_READ_CHUNK);
        if (wk->conns == NULL || wk->rbuf == NULL)
            goto fail;
        for (unsigned i = per; i-- > 0;) {
            wk->conns[i].fd = -1;
            wk->conns[i].next_free = wk->free_list;
            wk->free_list = &wk->conns[i];
        }
        if ((rc = receiver_worker_create(r, w, &wk->rw)) < 0)
            goto fail;
        if (gr != NULL && (rc = grpc_worker_create(gr, w, &wk->gw)) < 0)
            goto fail;
        rc = -ENOMEM;
    }
    if ((rc = register_metrics(s)) < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    sock_server_destroy(s);
    return rc;
}

int sock_server_set_tls(struct sock_server *s, struct tls_ctx *tls)
{
    if (s == NULL || tls == NULL || s->tls != NULL)
        return -EINVAL;
    for (unsigned w = 0; w < s->n_workers; w++) {
        int rc = tls_worker_create(tls, w, &s->workers[w].tw);
        if (rc < 0) {
            while (w-- > 0) {
                tls_worker_destroy(s->workers[w].tw);
                s->workers[w].tw = NULL;
            }
            return rc;
        }
    }
    s->tls = tls;
    return 0;
}

uint16_t sock_server_port(const struct sock_server *s)
{
    return s->port;
}

uint16_t sock_server_grpc_port(const struct sock_server *s)
{
    return s->gr != NULL ? s->grpc_port : 0;
}

/* ---- connections ---- */

static void conn_close(struct sock_worker *wk, struct sock_conn *c)
{
    epoll_ctl(wk->ep, EPOLL_CTL_DEL, c->fd, NULL);
    tls_conn_fini(&c->tls); /* close_notify first, when the handshake completed */
    close(c->fd);
    c->fd = -1;
    c->in_use = false;
    if (c->grpc) {
        grpc_conn_fini(&c->gc);
        wk->n_grpc--;
    } else {
        receiver_conn_fini(&c->rc);
    }
    buf_free(&c->out);
    c->next_free = wk->free_list;
    wk->free_list = c;
    wk->n_conns--;
    obs_gauge_add(wk->s->reg, wk->id, wk->s->m_conns + wk->id, -1);
}

static void conn_set_events(struct sock_worker *wk, struct sock_conn *c, bool want_out)
{
    if (c->epollout == want_out)
        return;
    struct epoll_event ev = {.events = want_out ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    epoll_ctl(wk->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->epollout = want_out;
}

/* The data path's one read: plain recv() or TLS. Returns > 0 bytes, 0 at
 * EOF, -EAGAIN when nothing is there, another negative errno: close. */
static ssize_t conn_recv(struct sock_conn *c, uint8_t *buf, size_t len)
{
    if (c->tls.ssl != NULL)
        return tls_conn_read(&c->tls, buf, len);
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* The data path's one write: plain send() or TLS. Returns > 0 bytes
 * written, -EAGAIN when the socket is full (TLS: or must be read first),
 * another negative errno: close. */
static ssize_t conn_send(struct sock_conn *c, const uint8_t *buf, size_t len)
{
    if (c->tls.ssl != NULL)
        return tls_conn_write(&c->tls, buf, len);
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            return n;
        if (n == 0)
            return -EPIPE;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

/* Write what is pending. Returns false when the connection was closed. */
static bool conn_flush(struct sock_worker *wk, struct sock_conn *c)
{
    if (unlikely(c->tls.ssl != NULL && !c->tls.established)) {
        /* Nothing goes out before the handshake (the gRPC SETTINGS wait). */
        if (!c->want_close)
            return true;
        conn_close(wk, c);
        return false;
    }
    while (c->out_off < c->out.len) {
        ssize_t n = conn_send(c, c->out.data + c->out_off, c->out.len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n == -EAGAIN) {
            /* TLS that must read before it can write waits for readable. */
            conn_set_events(wk, c, c->tls.ssl == NULL || c->tls.want_write);
            return true;
        }
        conn_close(wk, c);
        return false;
    }
    c->out.len = 0;
    c->out_off = 0;
    if (c->grpc && !c->want_close && grpc_conn_want_write(&c->gc)) {
        /* nghttp2 held frames back at the high-water mark: next slice */
        if (grpc_conn_output(&c->gc, &c->out) == GRPC_CLOSE)
            c->want_close = true;
        if (c->out.len > 0)
            return conn_flush(wk, c);
    }
    if (c->grpc && grpc_conn_want_close(&c->gc))
        c->want_close = true;
    if (c->want_close) {
        /* Half-close so the client reads the whole response before the reset;
         * over TLS, close_notify first. */
        tls_conn_shutdown(&c->tls);
        shutdown(c->fd, SHUT_WR);
        conn_close(wk, c);
        return false;
    }
    conn_set_events(wk, c, false);
    return true;
}

static void conn_readable(struct sock_worker *wk, struct sock_conn *c, uint64_t now_ms)
{
    /* Over TLS, OpenSSL may hold decrypted bytes no socket event will
     * announce: read on while it does and the output is not stalled. */
    do {
        ssize_t n = conn_recv(c, wk->rbuf, SOCK_READ_CHUNK);
        if (n == -EAGAIN) {
            if (c->tls.ssl != NULL && c->tls.want_write) /* TLS must write first */
                conn_set_events(wk, c, true);
            return;
        }
        if (n <= 0) {
            conn_close(wk, c);
            return;
        }
        c->last_active_ms = now_ms;
        if (c->grpc) {
            if (grpc_conn_input(&c->gc, wk->rbuf, (size_t)n, &c->out) == GRPC_CLOSE)
                c->want_close = true;
        } else if (receiver_conn_input(&c->rc, wk->rbuf, (size_t)n, &c->out) == RECEIVER_CLOSE) {
            c->want_close = true;
        }
        if (unlikely(c->tls.peer_closed)) /* close_notify after the data: answer, then close */
            c->want_close = true;
        if ((c->out.len > c->out_off || c->want_close) && !conn_flush(wk, c))
            return;
    } while (unlikely(tls_conn_pending(&c->tls)) && !c->epollout && !c->want_close);
}

/* http:// pointed at the TLS port: say so in plain HTTP (best effort, one
 * non-blocking send) rather than reset the connection. The request is read
 * and dropped first so that close() does not turn into a reset. */
static void refuse_plain_http(struct sock_worker *wk, struct sock_conn *c)
{
    for (int i = 0; i < 4 && recv(c->fd, wk->rbuf, SOCK_READ_CHUNK, MSG_DONTWAIT) > 0; i++)
        ;
    size_t len = strlen(tls_plain_http_response);
    if (send(c->fd, tls_plain_http_response, len, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)len)
        shutdown(c->fd, SHUT_WR);
}

/* Drive a TLS handshake; once complete, send what was queued (the gRPC
 * server preface) and read what may have come with the client's Finished. */
static void conn_handshake(struct sock_worker *wk, struct sock_conn *c, uint64_t now_ms)
{
    int rc = tls_conn_handshake(&c->tls);
    if (rc == -EAGAIN) {
        conn_set_events(wk, c, c->tls.want_write);
        return;
    }
    if (rc < 0) {
        if (c->tls.plain_http && !c->grpc)
            refuse_plain_http(wk, c);
        conn_close(wk, c);
        return;
    }
    c->last_active_ms = now_ms;
    conn_set_events(wk, c, false);
    if (c->out.len > c->out_off && !conn_flush(wk, c))
        return;
    if (!c->epollout)
        conn_readable(wk, c, now_ms);
}

static void conn_event(struct sock_worker *wk, struct sock_conn *c, uint32_t events,
                       uint64_t now_ms)
{
    if (unlikely(c->tls.ssl != NULL && !c->tls.established)) {
        conn_handshake(wk, c, now_ms);
        return;
    }
    if (events & EPOLLOUT) {
        if (!conn_flush(wk, c))
            return;
        /* TLS: a read that had to write first, or records OpenSSL holds. */
        if (c->tls.ssl != NULL && !c->epollout)
            conn_readable(wk, c, now_ms);
    } else if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        conn_readable(wk, c, now_ms);
    }
}

static void accept_all(struct sock_worker *wk, int listen_fd, bool grpc, uint64_t now_ms)
{
    struct sock_server *s = wk->s;
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            return; /* EAGAIN, or EMFILE and friends: try again on the next event */
        }
        struct sock_conn *c = wk->free_list;
        if (c == NULL || atomic_load(&s->stopping)) {
            obs_counter_inc(s->reg, wk->id, s->m_limit + wk->id);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        int irc = grpc ? grpc_conn_init(&c->gc, wk->gw) : receiver_conn_init(&c->rc, wk->rw);
        if (irc < 0) {
            close(fd);
            continue;
        }
        if (wk->tw != NULL &&
            tls_conn_init(&c->tls, wk->tw, fd, grpc ? TLS_ALPN_H2 : TLS_ALPN_HTTP1) < 0) {
            if (grpc)
                grpc_conn_fini(&c->gc);
            else
                receiver_conn_fini(&c->rc);
            close(fd);
            continue;
        }
        c->grpc = grpc;
        wk->free_list = c->next_free;
        c->fd = fd;
        c->in_use = true;
        c->want_close = false;
        c->epollout = false;
        c->out_off = 0;
        buf_init(&c->out, 0, 0);
        c->last_active_ms = now_ms;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(wk->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            if (grpc)
                grpc_conn_fini(&c->gc);
            else
                receiver_conn_fini(&c->rc);
            tls_conn_fini(&c->tls);
            close(fd);
            c->fd = -1;
            c->in_use = false;
            c->next_free = wk->free_list;
            wk->free_list = c;
            continue;
        }
        wk->n_conns++;
        obs_counter_inc(s->reg, wk->id, s->m_accepted + wk->id);
        obs_gauge_add(s->reg, wk->id, s->m_conns + wk->id, 1);
        if (grpc) {
            wk->n_grpc++;
            /* the server SETTINGS go first */
            if (grpc_conn_output(&c->gc, &c->out) == GRPC_CLOSE)
                c->want_close = true;
            conn_flush(wk, c);
        }
    }
}

/* gRPC connection timers: resume clients stalled on flow control, expire
 * streams past their deadline, GOAWAY on idle or stop. Requests already
 * started finish; grpc_conn_want_close() then says when to close. */
static void grpc_timers(struct sock_worker *wk, struct sock_conn *c, uint64_t now_ms, bool stopping)
{
    struct grpc_conn *g = &c->gc;
    int r = GRPC_KEEP;
    if (stopping) {
        r = grpc_conn_shutdown(g, &c->out);
    } else {
        if (grpc_conn_stalled(g))
            r = grpc_conn_output(g, &c->out);
        uint64_t deadline = grpc_conn_deadline_ns(g);
        uint64_t now_ns = base_now_ns();
        if (r == GRPC_KEEP && deadline != 0 && now_ns >= deadline)
            r = grpc_conn_expire(g, now_ns, &c->out);
        if (r == GRPC_KEEP && !grpc_conn_busy(g) && c->out.len == c->out_off &&
            now_ms - c->last_active_ms >= wk->s->cfg->receiver.idle_timeout_ms) {
            obs_counter_inc(wk->s->reg, wk->id, wk->s->m_timeouts + wk->id);
            r = grpc_conn_shutdown(g, &c->out);
        }
    }
    if (r == GRPC_CLOSE || grpc_conn_want_close(g))
        c->want_close = true;
    if (c->out.len > c->out_off || c->want_close)
        conn_flush(wk, c);
}

/* Idle and slow-client timeouts; when stopping, close idle connections. */
static void scan_timeouts(struct sock_worker *wk, uint64_t now_ms, bool stopping)
{
    const struct svc_config *cfg = wk->s->cfg;
    for (unsigned i = 0; i < wk->max_conns; i++) {
        struct sock_conn *c = &wk->conns[i];
        if (!c->in_use || c->want_close)
            continue;
        if (unlikely(c->tls.ssl != NULL && !c->tls.established)) {
            /* The handshake counts as the start of a request: it must
             * complete within request_timeout_ms of the accept. */
            if (!stopping && now_ms - c->last_active_ms < cfg->receiver.request_timeout_ms)
                continue;
            if (!stopping) {
                tls_conn_handshake_timeout(&c->tls);
                obs_counter_inc(wk->s->reg, wk->id, wk->s->m_timeouts + wk->id);
            }
            conn_close(wk, c);
            continue;
        }
        if (c->grpc) {
            grpc_timers(wk, c, now_ms, stopping);
            continue;
        }
        bool busy = receiver_conn_busy(&c->rc) || c->out.len > c->out_off;
        if (stopping && !busy) {
            conn_close(wk, c);
            continue;
        }
        /* A request must complete within request_timeout_ms of its first
         * byte however slowly it trickles (slowloris); an idle keep-alive
         * connection lives idle_timeout_ms after its last activity. */
        /* Start times may be taken after `now_ms` (a read later in the same
         * loop): never let the unsigned difference wrap into a timeout. */
        uint64_t since = busy && receiver_conn_busy(&c->rc) ? c->rc.req_start_ns / 1000000u
                                                             : c->last_active_ms;
        uint64_t age = now_ms > since ? now_ms - since : 0;
        uint64_t limit = busy ? cfg->receiver.request_timeout_ms : cfg->receiver.idle_timeout_ms;
        if (age < limit)
            continue;
        obs_counter_inc(wk->s->reg, wk->id, wk->s->m_timeouts + wk->id);
        if (receiver_conn_busy(&c->rc)) {
            receiver_conn_timeout(&c->rc, &c->out);
            c->want_close = true;
            conn_flush(wk, c);
        } else {
            conn_close(wk, c);
        }
    }
}

static void *worker_main(void *arg)
{
    struct sock_worker *wk = arg;
    struct sock_server *s = wk->s;
    if (wk->core >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(wk->core, &set);
        if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
            log_warn("cannot pin worker", "worker=%u core=%d", wk->id, wk->core);
    }
    char name[16];
    snprintf(name, sizeof(name), "otlp-w%u", wk->id);
    pthread_setname_np(pthread_self(), name);

    struct epoll_event evs[SOCK_MAX_EVENTS];
    uint64_t next_scan = base_now_ms() + SOCK_TIMER_MS;
    bool listening = true;
    for (;;) {
        uint64_t now = base_now_ms();
        int due = pipeline_tick(s->p, wk->id, now, false);
        int timeout = (int)(next_scan > now ? next_scan - now : 0);
        if (due >= 0 && due < timeout)
            timeout = due;
        int n = epoll_wait(wk->ep, evs, SOCK_MAX_EVENTS, timeout);
        now = base_now_ms();
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &wk->listen_fd) {
                accept_all(wk, wk->listen_fd, false, now);
            } else if (ptr == &wk->grpc_listen_fd) {
                accept_all(wk, wk->grpc_listen_fd, true, now);
            } else if (ptr == &wk->wake_fd) {
                uint64_t v;
                if (read(wk->wake_fd, &v, sizeof(v)) < 0)
                    (void)0;
            } else {
                struct sock_conn *c = ptr;
                if (!c->in_use)
                    continue;
                conn_event(wk, c, evs[i].events, now);
            }
        }
        bool stopping = atomic_load(&s->stopping) != 0;
        if (stopping && listening) {
            epoll_ctl(wk->ep, EPOLL_CTL_DEL, wk->listen_fd, NULL);
            close(wk->listen_fd);
            wk->listen_fd = -1;
            if (wk->grpc_listen_fd >= 0) {
                epoll_ctl(wk->ep, EPOLL_CTL_DEL, wk->grpc_listen_fd, NULL);
                close(wk->grpc_listen_fd);
                wk->grpc_listen_fd = -1;
            }
            listening = false;
        }
        if (now >= next_scan || stopping) {
            scan_timeouts(wk, now, stopping);
            next_scan = now + (wk->n_grpc > 0 ? SOCK_GRPC_TIMER_MS : SOCK_TIMER_MS);
        }
        if (stopping && (wk->n_conns == 0 || now >= atomic_load(&s->deadline_ms)))
            break;
    }
    for (unsigned i = 0; i < wk->max_conns; i++)
        if (wk->conns[i].in_use)
            conn_close(wk, &wk->conns[i]);
    pipeline_tick(s->p, wk->id, base_now_ms(), true);
    return NULL;
}

/* The port a listening socket got (for port 0 in the config). */
static uint16_t bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return 0;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

int sock_server_start(struct sock_server *s)
{
    int rc = 0;
    for (unsigned w = 0; w < s->n_workers; w++) {
        struct sock_worker *wk = &s->workers[w];
        wk->listen_fd = sock_listen(s->cfg->receiver.host, s->port, 4096, true);
        if (wk->listen_fd < 0) {
            rc = wk->listen_fd;
            log_error("cannot listen", "host=%s port=%u error=%s", s->cfg->receiver.host,
                      (unsigned)s->port, strerror(-rc));
            goto fail;
        }
        if (s->port == 0) /* an ephemeral port: the other workers join the same one */
            s->port = bound_port(wk->listen_fd);
        wk->ep = epoll_create1(EPOLL_CLOEXEC);
        wk->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (wk->ep < 0 || wk->wake_fd < 0) {
            rc = -errno;
            goto fail;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &wk->listen_fd};
        struct epoll_event wev = {.events = EPOLLIN, .data.ptr = &wk->wake_fd};
        if (epoll_ctl(wk->ep, EPOLL_CTL_ADD, wk->listen_fd, &ev) < 0 ||
            epoll_ctl(wk->ep, EPOLL_CTL_ADD, wk->wake_fd, &wev) < 0) {
            rc = -errno;
            goto fail;
        }
        if (s->gr != NULL) {
            wk->grpc_listen_fd = sock_listen(s->cfg->receiver.host, s->grpc_port, 4096, true);
            if (wk->grpc_listen_fd < 0) {
                rc = wk->grpc_listen_fd;
                log_error("cannot listen", "host=%s port=%u error=%s", s->cfg->receiver.host,
                          (unsigned)s->grpc_port, strerror(-rc));
                goto fail;
            }
            if (s->grpc_port == 0)
                s->grpc_port = bound_port(wk->grpc_listen_fd);
            struct epoll_event gev = {.events = EPOLLIN, .data.ptr = &wk->grpc_listen_fd};
            if (epoll_ctl(wk->ep, EPOLL_CTL_ADD, wk->grpc_listen_fd, &gev) < 0) {
                rc = -errno;
                goto fail;
            }
        }
    }
    for (unsigned w = 0; w < s->n_workers; w++) {
        struct sock_worker *wk = &s->workers[w];
        if ((rc = -pthread_create(&wk->thread, NULL, worker_main, wk)) < 0)
            goto fail;
        wk->started = true;
    }
    log_info("otlp/http receiver listening", "host=%s port=%u workers=%u tls=%s",
             s->cfg->receiver.host, (unsigned)s->port, s->n_workers, s->tls ? "true" : "false");
    if (s->gr != NULL)
        log_info("otlp/grpc receiver listening", "host=%s port=%u workers=%u tls=%s",
                 s->cfg->receiver.host, (unsigned)s->grpc_port, s->n_workers,
                 s->tls ? "true" : "false");
    return 0;
fail:
    sock_server_stop(s, base_now_ms());
    return rc;
}

void sock_server_stop(struct sock_server *s, uint64_t deadline_ms)
{
    if (s == NULL)
        return;
    atomic_store(&s->deadline_ms, deadline_ms);
    atomic_store(&s->stopping, 1);
    for (unsigned w = 0; w < s->n_workers; w++) {
        struct sock_worker *wk = &s->workers[w];
        if (wk->wake_fd >= 0) {
            uint64_t one = 1;
            if (write(wk->wake_fd, &one, sizeof(one)) < 0)
                (void)0;
        }
    }
    for (unsigned w = 0; w < s->n_workers; w++) {
        struct sock_worker *wk = &s->workers[w];
        if (wk->started) {
            pthread_join(wk->thread, NULL);
            wk->started = false;
        }
    }
}

void sock_server_destroy(struct sock_server *s)
{
    if (s == NULL)
        return;
    if (s->workers != NULL) {
        for (unsigned w = 0; w < s->n_workers; w++) {
            struct sock_worker *wk = &s->workers[w];
            if (wk->conns != NULL)
                for (unsigned i = 0; i < wk->max_conns; i++)
                    if (wk->conns[i].in_use) {
                        tls_conn_fini(&wk->conns[i].tls);
                        close(wk->conns[i].fd);
                        if (wk->conns[i].grpc)
                            grpc_conn_fini(&wk->conns[i].gc);
                        else
                            receiver_conn_fini(&wk->conns[i].rc);
                        buf_free(&wk->conns[i].out);
                    }
            if (wk->listen_fd >= 0)
                close(wk->listen_fd);
            if (wk->grpc_listen_fd >= 0)
                close(wk->grpc_listen_fd);
            if (wk->ep >= 0)
                close(wk->ep);
            if (wk->wake_fd >= 0)
                close(wk->wake_fd);
            receiver_worker_destroy(wk->rw);
            grpc_worker_destroy(wk->gw);
            tls_worker_destroy(wk->tw);
            free(wk->conns);
            free(wk->rbuf);
        }
    }
    free(s->workers);
    free(s);
}
