/* SPDX-License-Identifier: Apache-2.0 */
/* Control plane on 8080: health probes and Prometheus /metrics. One thread,
 * kernel sockets in both data planes, so it stays reachable when the data
 * plane is busy or not yet up. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "base/base.h"
#include "http/http.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "sock/sock.h"

#define CONTROL_MAX_CONNS 64
#define CONTROL_IDLE_MS 30000

struct control_conn {
    int fd;
    uint64_t last_ms;
    struct http_parser parser;
    struct buf out;
    size_t out_off;
    bool close_after;
};

struct control_server {
    const struct svc_config *cfg;
    struct obs_registry *reg;
    unsigned shard;
    int listen_fd, ep, wake_fd;
    uint16_t port;
    pthread_t thread;
    bool started;
    _Atomic int stop;
    struct buf scratch;
    struct control_conn conns[CONTROL_MAX_CONNS];
    uint32_t m_requests; /* + path */
};

enum { CP_LIVE, CP_READY, CP_STARTUP, CP_METRICS, CP_OTHER, CP_COUNT };
static const char *const cp_paths[CP_COUNT] = {"/health/live", "/health/ready", "/health/startup",
                                               "/metrics", "other"};

int control_server_create(const struct svc_config *cfg, struct obs_registry *reg, unsigned shard,
                          struct control_server **out)
{
    struct control_server *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->cfg = cfg;
    c->reg = reg;
    c->shard = shard;
    c->listen_fd = c->ep = c->wake_fd = -1;
    c->port = cfg->control.port;
    for (int i = 0; i < CONTROL_MAX_CONNS; i++)
        c->conns[i].fd = -1;
    static char store[CP_COUNT][32];
    const char *lbl[CP_COUNT];
    for (int i = 0; i < CP_COUNT; i++) {
        snprintf(store[i], sizeof(store[i]), "path=\"%s\"", cp_paths[i]);
        lbl[i] = store[i];
    }
    int rc = buf_init(&c->scratch, 64 * 1024, 0);
    if (rc == 0)
        rc = obs_counter_register(reg, "otlp_control_requests_total",
                                  "Control-plane requests by path", lbl, CP_COUNT, &c->m_requests);
    if (rc < 0) {
        control_server_destroy(c);
        return rc;
    }
    *out = c;
    return 0;
}

uint16_t control_server_port(const struct control_server *c)
{
    return c->port;
}

static void cconn_close(struct control_server *c, struct control_conn *k)
{
    epoll_ctl(c->ep, EPOLL_CTL_DEL, k->fd, NULL);
    close(k->fd);
    k->fd = -1;
    buf_free(&k->out);
}

/* Answer one control request into k->out. */
static void control_handle(struct control_server *c, struct control_conn *k)
{
    const struct http_req *req = http_parser_req(&k->parser);
    int idx = CP_OTHER;
    for (int i = 0; i < CP_OTHER; i++)
        if (strcmp(req->path, cp_paths[i]) == 0)
            idx = i;
    obs_counter_inc(c->reg, c->shard, c->m_requests + (uint32_t)idx);
    bool head = req->method == HTTP_HEAD;
    int status = 200;
    const char *ctype = "application/json";
    struct buf *b = &c->scratch;
    buf_reset(b);
    if (req->method != HTTP_GET && !head) {
        status = 405;
        buf_append_str(b, "{\"error\":\"method not allowed\"}");
    } else {
        switch (idx) {
        case CP_LIVE:
            status = health_live() ? 200 : 503;
            buf_printf(b, "{\"status\":\"%s\"}", status == 200 ? "live" : "dead");
            break;
        case CP_READY:
            status = health_ready() ? 200 : 503;
            health_render_json(b);
            break;
        case CP_STARTUP:
            status = health_started() ? 200 : 503;
            buf_printf(b, "{\"status\":\"%s\"}", status == 200 ? "started" : "starting");
            break;
        case CP_METRICS:
            ctype = "text/plain; version=0.0.4; charset=utf-8";
            if (obs_render_prometheus(c->reg, b) < 0)
                status = 500;
            break;
        default:
            status = 404;
            buf_append_str(b, "{\"error\":\"not found\"}");
        }
    }
    bool keep = req->keep_alive;
    if (head)
        http_response_write_head(&k->out, status, ctype, b->len, keep, 0,
                                 status == 405 ? "Allow: GET, HEAD\r\n" : NULL);
    else
        http_response_write(&k->out, status, ctype, b->data, b->len, keep, 0,
                            status == 405 ? "Allow: GET, HEAD\r\n" : NULL);
    if (!keep)
        k->close_after = true;
}

static void cconn_flush(struct control_server *c, struct control_conn *k)
{
    while (k->out_off < k->out.len) {
        ssize_t n = send(k->fd, k->out.data + k->out_off, k->out.len - k->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            k->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = k};
            epoll_ctl(c->ep, EPOLL_CTL_MOD, k->fd, &ev);
            return;
        }
        cconn_close(c, k);
        return;
    }
    k->out.len = k->out_off = 0;
    if (k->close_after) {
        shutdown(k->fd, SHUT_WR);
        cconn_close(c, k);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = k};
    epoll_ctl(c->ep, EPOLL_CTL_MOD, k->fd, &ev);
}

static void cconn_read(struct control_server *c, struct control_conn *k)
{
    uint8_t rbuf[8192];
    ssize_t n = recv(k->fd, rbuf, sizeof(rbuf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        cconn_close(c, k);
        return;
    }
    if (n < 0)
        return;
    k->last_ms = base_now_ms();
    size_t off = 0;
    while (off < (size_t)n && !k->close_after) {
        size_t used = 0;
        int rc = http_parser_feed(&k->parser, rbuf + off, (size_t)n - off, &used);
        off += used;
        if (rc == HTTP_AGAIN)
            break;
        if (rc == HTTP_HEADERS_COMPLETE)
            continue;
        if (rc < 0) {
            const char *m = http_error_message(rc);
            http_response_write(&k->out, http_error_status(rc), "text/plain", m, strlen(m), false,
                                0, NULL);
            k->close_after = true;
            break;
        }
        control_handle(c, k);
        http_parser_reset(&k->parser);
    }
    cconn_flush(c, k);
}

static void control_accept(struct control_server *c)
{
    for (;;) {
        int fd = accept4(c->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct control_conn *k = NULL;
        uint64_t now = base_now_ms();
        for (int i = 0; i < CONTROL_MAX_CONNS; i++) {
            if (c->conns[i].fd < 0) {
                k = &c->conns[i];
                break;
            }
        }
        if (k == NULL) {
            close(fd);
            continue;
        }
        k->fd = fd;
        k->last_ms = now;
        k->out_off = 0;
        k->close_after = false;
        buf_init(&k->out, 0, 0);
        /* Control requests carry no body worth keeping. */
        struct http_limits lim = {.max_header_bytes = 8192, .max_headers = 64, .max_body_bytes = 4096};
        http_parser_init(&k->parser, &lim, NULL);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = k};
        if (epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            k->fd = -1;
        }
    }
}

static void *control_main(void *arg)
{
    struct control_server *c = arg;
    pthread_setname_np(pthread_self(), "otlp-control");
    struct epoll_event evs[16];
    while (!atomic_load(&c->stop)) {
        int n = epoll_wait(c->ep, evs, 16, 1000);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &c->listen_fd) {
                control_accept(c);
            } else if (p == &c->wake_fd) {
                uint64_t v;
                if (read(c->wake_fd, &v, sizeof(v)) < 0)
                    (void)0;
            } else {
                struct control_conn *k = p;
                if (k->fd < 0)
                    continue;
                if (evs[i].events & EPOLLOUT)
                    cconn_flush(c, k);
                else
                    cconn_read(c, k);
            }
        }
        uint64_t now = base_now_ms();
        for (int i = 0; i < CONTROL_MAX_CONNS; i++)
            if (c->conns[i].fd >= 0 && now - c->conns[i].last_ms > CONTROL_IDLE_MS)
                cconn_close(c, &c->conns[i]);
    }
    return NULL;
}

int control_server_start(struct control_server *c)
{
    c->listen_fd = sock_listen(c->cfg->control.host, c->port, 128, false);
    if (c->listen_fd < 0) {
        log_error("cannot listen", "host=%s port=%u error=%s", c->cfg->control.host,
                  (unsigned)c->port, strerror(-c->listen_fd));
        return c->listen_fd;
    }
    if (c->port == 0) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        getsockname(c->listen_fd, (struct sockaddr *)&ss, &sl);
        c->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    }
    c->ep = epoll_create1(EPOLL_CLOEXEC);
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->ep < 0 || c->wake_fd < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->listen_fd};
    struct epoll_event wev = {.events = EPOLLIN, .data.ptr = &c->wake_fd};
    if (epoll_ctl(c->ep, EPOLL_CTL_ADD, c->listen_fd, &ev) < 0 ||
        epoll_ctl(c->ep, EPOLL_CTL_ADD, c->wake_fd, &wev) < 0)
        return -errno;
    int rc = pthread_create(&c->thread, NULL, control_main, c);
    if (rc != 0)
        return -rc;
    c->started = true;
    log_info("control plane listening", "host=%s port=%u", c->cfg->control.host,
             (unsigned)c->port);
    return 0;
}

void control_server_stop(struct control_server *c)
{
    if (c == NULL || !c->started)
        return;
    atomic_store(&c->stop, 1);
    uint64_t one = 1;
    if (write(c->wake_fd, &one, sizeof(one)) < 0)
        (void)0;
    pthread_join(c->thread, NULL);
    c->started = false;
}

void control_server_destroy(struct control_server *c)
{
    if (c == NULL)
        return;
    control_server_stop(c);
    for (int i = 0; i < CONTROL_MAX_CONNS; i++)
        if (c->conns[i].fd >= 0) {
            close(c->conns[i].fd);
            buf_free(&c->conns[i].out);
        }
    if (c->listen_fd >= 0)
        close(c->listen_fd);
    if (c->ep >= 0)
        close(c->ep);
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    buf_free(&c->scratch);
    free(c);
}
