/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for lib/export/export_grpc.c: the OTLP/gRPC exporter against a real
 * gRPC server (grpc_upstream.py on python3-grpcio) for content, gzip,
 * metadata, concurrency, status mapping, deadlines, reconnects and TLS, and
 * against a tiny hand-written HTTP/2 responder for what a gRPC server never
 * sends (non-200 HTTP status, non-gRPC content, refused streams, a response
 * trickled one byte per write). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "config/config.h"
#include "export/exporter.h"
#include "obs/log.h"
#include "otlp/otlp.h"
#include "otlp_version.h"

/* ------------------------------------------------------------------ */
/* helpers                                                              */
/* ------------------------------------------------------------------ */

static void set_str(char **field, const char *v)
{
    free(*field);
    *field = strdup(v);
    assert_non_null(*field);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    struct buf b;
    assert_int_equal(buf_init(&b, 4096, 0), 0);
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        assert_int_equal(buf_append(&b, tmp, n), 0);
    fclose(f);
    assert_int_equal(buf_append(&b, "", 1), 0);
    if (len)
        *len = b.len - 1;
    return (char *)b.data;
}

/* --- protobuf encoding of test requests --- */

static void pb_varint(struct buf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    do {
        t[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            t[n] |= 0x80;
        n++;
    } while (v);
    assert_int_equal(buf_append(b, t, n), 0);
}

static void pb_bytes(struct buf *b, unsigned field, const void *p, size_t n)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    assert_int_equal(buf_append(b, p, n), 0);
}

static void pb_sub(struct buf *b, unsigned field, struct buf *sub)
{
    pb_bytes(b, field, sub->data, sub->len);
    buf_free(sub);
}

/* An Export<sig>ServiceRequest with one Resource* holding `items` items,
 * each with `pad` bytes of attribute text (to make large messages). */
static void make_request(enum otlp_signal sig, unsigned items, size_t pad, struct buf *out)
{
    struct buf res, kv, any, scope, rs;
    assert_int_equal(buf_init(out, 256, 0), 0);
    assert_int_equal(buf_init(&any, 64, 0), 0);
    pb_bytes(&any, 1, "svc", 3);
    assert_int_equal(buf_init(&kv, 64, 0), 0);
    pb_bytes(&kv, 1, "service.name", 12);
    pb_sub(&kv, 2, &any);
    assert_int_equal(buf_init(&res, 64, 0), 0);
    pb_sub(&res, 1, &kv);
    assert_int_equal(buf_init(&scope, 256, 0), 0);
    char *text = malloc(pad + 1);
    assert_non_null(text);
    for (size_t i = 0; i < pad; i++)
        text[i] = (char)('a' + i % 26);
    for (unsigned i = 0; i < items; i++) {
        struct buf item, attr, val;
        assert_int_equal(buf_init(&item, 64, 0), 0);
        assert_int_equal(buf_init(&attr, 64, 0), 0);
        assert_int_equal(buf_init(&val, 64, 0), 0);
        pb_bytes(&val, 1, text, pad);
        pb_bytes(&attr, 1, "pad", 3);
        pb_sub(&attr, 2, &val);
        if (sig == OTLP_TRACES) {
            uint8_t tid[16], sid[8];
            memset(tid, 0x11, sizeof(tid));
            memset(sid, 0x22, sizeof(sid));
            sid[7] = (uint8_t)i;
            pb_bytes(&item, 1, tid, 16);
            pb_bytes(&item, 2, sid, 8);
            pb_bytes(&item, 5, "op", 2);
            pb_sub(&item, 9, &attr);
        } else if (sig == OTLP_METRICS) {
            struct buf gauge, dp;
            assert_int_equal(buf_init(&dp, 16, 0), 0);
            pb_varint(&dp, 4 << 3 | 1); /* as_double, fixed64 */
            double v = 1.5 + i;
            assert_int_equal(buf_append(&dp, &v, 8), 0);
            pb_sub(&dp, 7, &attr);
            assert_int_equal(buf_init(&gauge, 16, 0), 0);
            pb_sub(&gauge, 1, &dp);
            pb_bytes(&item, 1, "m", 1);
            pb_sub(&item, 5, &gauge);
        } else {
            struct buf body;
            assert_int_equal(buf_init(&body, 16, 0), 0);
            pb_bytes(&body, 1, "hello", 5);
            pb_sub(&item, 5, &body);
            pb_sub(&item, 6, &attr);
        }
        pb_sub(&scope, 2, &item);
    }
    free(text);
    assert_int_equal(buf_init(&rs, 256, 0), 0);
    pb_sub(&rs, 1, &res);
    pb_sub(&rs, 2, &scope);
    pb_sub(out, 1, &rs);
}

static void make_batch(struct batch *b, enum otlp_signal sig, unsigned items)
{
    memset(b, 0, sizeof(*b));
    b->signal = sig;
    b->items = items;
    make_request(sig, items, 8, &b->body);
}

/* --- completions --- */

struct done_log {
    unsigned n;
    struct batch *b[64];
    struct export_result r[64];
};

static void on_done(void *arg, struct batch *b, const struct export_result *r)
{
    struct done_log *l = arg;
    assert_true(l->n < 64);
    l->b[l->n] = b;
    l->r[l->n] = *r;
    l->n++;
}

static void drive(struct exporter *e, struct done_log *l, unsigned want, unsigned max_ms)
{
    uint64_t end = base_now_ms() + max_ms;
    while (l->n < want && base_now_ms() < end)
        assert_true(e->ops->poll(e->state, 50, on_done, l) >= 0);
}

static const struct export_result *result_of(struct done_log *l, struct batch *b)
{
    for (unsigned i = 0; i < l->n; i++) {
        if (l->b[i] == b)
            return &l->r[i];
    }
    fail_msg("batch not reported");
    return NULL;
}

/* ------------------------------------------------------------------ */
/* grpc_upstream.py                                                     */
/* ------------------------------------------------------------------ */

struct up {
    pid_t pid;
    int port;
    char dir[64];
    char url[96];
};

static pid_t up_pids[8];

/* SIGTERM, and SIGKILL when it has not exited after 10 s. */
static void terminate(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int i = 0; i < 1000; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void up_kill_all(void)
{
    for (unsigned i = 0; i < ARRAY_SIZE(up_pids); i++) {
        if (up_pids[i] > 0) {
            terminate(up_pids[i]);
            up_pids[i] = 0;
        }
    }
}

static void up_track(pid_t pid, pid_t replace)
{
    for (unsigned i = 0; i < ARRAY_SIZE(up_pids); i++) {
        if (up_pids[i] == replace) {
            up_pids[i] = pid;
            return;
        }
    }
}

/* The Debian python3 has python3-grpcio; one earlier on PATH may not. */
static const char *python(void)
{
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

struct up_opts {
    const char *const *specs;
    const char *cert, *key;
    int port;        /* 0: any */
    int max_streams; /* 0: grpcio's default */
    bool identity_only;
};

/* Start grpc_upstream.py in a fresh record directory (reused when `keep_dir`). */
static void up_start_in(struct up *u, const struct up_opts *o, bool keep_dir)
{
    if (!keep_dir) {
        memset(u, 0, sizeof(*u));
        snprintf(u->dir, sizeof(u->dir), "/tmp/otlp-grpcup-XXXXXX");
        assert_non_null(mkdtemp(u->dir));
        char rec[128];
        snprintf(rec, sizeof(rec), "%s/rec", u->dir);
        assert_int_equal(mkdir(rec, 0755), 0);
    }
    char port_file[128], rec[128], port[16], streams[16];
    snprintf(port_file, sizeof(port_file), "%s/port", u->dir);
    snprintf(rec, sizeof(rec), "%s/rec", u->dir);
    unlink(port_file);
    snprintf(port, sizeof(port), "%d", o->port);
    snprintf(streams, sizeof(streams), "%d", o->max_streams);
    const char *argv[64];
    unsigned n = 0;
    argv[n++] = python();
    argv[n++] = "grpc_upstream.py";
    argv[n++] = "--port-file";
    argv[n++] = port_file;
    argv[n++] = "--record-dir";
    argv[n++] = rec;
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--lifetime";
    argv[n++] = "120";
    if (o->max_streams > 0) {
        argv[n++] = "--max-streams";
        argv[n++] = streams;
    }
    if (o->identity_only)
        argv[n++] = "--identity-only";
    for (unsigned i = 0; o->specs != NULL && o->specs[i] != NULL && n < 56; i++) {
        argv[n++] = "--respond";
        argv[n++] = o->specs[i];
    }
    if (o->cert != NULL) {
        argv[n++] = "--tls";
        argv[n++] = o->cert;
        argv[n++] = o->key;
    }
    argv[n] = NULL;
    u->pid = fork();
    assert_true(u->pid >= 0);
    if (u->pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 1); /* the JSON ready line */
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    up_track(u->pid, 0);
    u->port = 0;
    for (int i = 0; i < 2000; i++) {
        FILE *f = fopen(port_file, "r");
        if (f != NULL) {
            int ok = fscanf(f, "%d", &u->port);
            fclose(f);
            if (ok == 1)
                break;
        }
        int st;
        if (waitpid(u->pid, &st, WNOHANG) == u->pid) {
            up_track(0, u->pid);
            u->pid = 0;
            if (WIFEXITED(st) && WEXITSTATUS(st) == 3) {
                print_message("grpc_upstream.py cannot run (python3-grpcio or protoc missing)\n");
                skip();
            }
            fail_msg("grpc_upstream.py exited early (status %d)", st);
        }
        sleep_ms(10);
    }
    assert_true(u->port > 0);
    snprintf(u->url, sizeof(u->url), "%s://127.0.0.1:%d", o->cert ? "https" : "http", u->port);
}

static void up_start(struct up *u, const char *const *specs)
{
    struct up_opts o = {.specs = specs};
    up_start_in(u, &o, false);
}

static void up_kill(struct up *u)
{
    if (u->pid > 0) {
        terminate(u->pid);
        up_track(0, u->pid);
        u->pid = 0;
    }
}

static void up_stop(struct up *u)
{
    up_kill(u);
    rm_rf(u->dir);
}

static unsigned up_count(struct up *u)
{
    unsigned n = 0;
    char path[160];
    for (;; n++) {
        snprintf(path, sizeof(path), "%s/rec/%04u.meta", u->dir, n);
        if (access(path, F_OK) < 0)
            return n;
    }
}

static char *up_call(struct up *u, unsigned n, char **body, size_t *body_len)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/rec/%04u.meta", u->dir, n);
    char *meta = read_whole(path, NULL);
    assert_non_null(meta);
    snprintf(path, sizeof(path), "%s/rec/%04u.body", u->dir, n);
    *body = read_whole(path, body_len);
    assert_non_null(*body);
    return meta;
}

static int up_max_concurrent(struct up *u)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/rec/max_concurrent", u->dir);
    char *t = read_whole(path, NULL);
    assert_non_null(t);
    int v = atoi(t);
    free(t);
    return v;
}

/* The value of meta line "<key> <value>" (static buffer). */
static const char *meta_get(const char *meta, const char *key)
{
    static char val[512];
    size_t kl = strlen(key);
    for (const char *p = meta; *p;) {
        const char *nl = strchr(p, '\n');
        size_t ll = nl ? (size_t)(nl - p) : strlen(p);
        if (ll > kl && strncmp(p, key, kl) == 0 && p[kl] == ' ') {
            size_t vl = BASE_MIN(ll - kl - 1, sizeof(val) - 1);
            memcpy(val, p + kl + 1, vl);
            val[vl] = '\0';
            return val;
        }
        p += ll + (nl ? 1 : 0);
    }
    return NULL;
}

static void grpc_cfg(struct svc_config *cfg, const char *url)
{
    config_defaults(cfg);
    cfg->exporter.protocol = EXPORTER_GRPC;
    set_str(&cfg->exporter.endpoint, url);
    cfg->exporter.timeout_ms = 5000;
    cfg->exporter.compression = COMPRESSION_NONE;
    cfg->batch.max_concurrent_exports = 4;
}

static void add_header(struct svc_config *cfg, const char *k, const char *v)
{
    unsigned i = cfg->exporter.headers.n++;
    cfg->exporter.headers.items[i].key = strdup(k);
    cfg->exporter.headers.items[i].value = strdup(v);
}

/* One export of `b` through `e`; returns its result. */
static struct export_result export_one(struct exporter *e, struct batch *b)
{
    struct done_log l = {0};
    assert_int_equal(e->ops->submit(e->state, b), 0);
    drive(e, &l, 1, 15000);
    assert_int_equal(l.n, 1);
    assert_ptr_equal(l.b[0], b);
    return l.r[0];
}

/* ------------------------------------------------------------------ */
/* set-up                                                               */
/* ------------------------------------------------------------------ */

static void test_create_errors(void **state)
{
    (void)state;
    struct svc_config cfg;
    struct exporter e = {0};
    grpc_cfg(&cfg, "");
    assert_int_equal(export_grpc_create(&cfg, &e), -EINVAL); /* no endpoint */
    const char *bad[] = {"ftp://h:1",    "h:4317",      "http://",
                         "http://:4317", "http://h:0",  "http://h:65536",
                         "http://h:12x", "http://[::1", "http://[::1]x"};
    for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
        set_str(&cfg.exporter.endpoint, bad[i]);
        if (export_grpc_create(&cfg, &e) != -EINVAL)
            fail_msg("endpoint %s accepted", bad[i]);
    }
    set_str(&cfg.exporter.endpoint, "http://127.0.0.1:1");
    set_str(&cfg.exporter.tls.cert_file, "/x.pem"); /* without key_file */
    assert_int_equal(export_grpc_create(&cfg, &e), -EINVAL);
    set_str(&cfg.exporter.tls.cert_file, "");
    set_str(&cfg.exporter.endpoint, "https://127.0.0.1:1");
    set_str(&cfg.exporter.tls.ca_file, "/nonexistent/ca.pem");
    assert_int_equal(export_grpc_create(&cfg, &e), -EINVAL);
    set_str(&cfg.exporter.tls.ca_file, "");
    /* the table finds it; IPv6 literal, default port, path ignored */
    const char *good[] = {"https://127.0.0.1:1", "http://[::1]:4317", "http://localhost",
                          "http://localhost:4317/ignored/path"};
    for (unsigned i = 0; i < ARRAY_SIZE(good); i++) {
        set_str(&cfg.exporter.endpoint, good[i]);
        assert_int_equal(exporter_create(&cfg, &e), 0);
        assert_string_equal(e.ops->name, "grpc");
        exporter_destroy(&e);
    }
    struct batch b = {.signal = OTLP_SIGNAL_COUNT};
    assert_int_equal(exporter_create(&cfg, &e), 0);
    assert_int_equal(e.ops->submit(e.state, &b), -EINVAL);
    assert_int_equal(e.ops->submit(e.state, NULL), -EINVAL);
    exporter_destroy(&e);
    config_free(&cfg);

    /* the configuration accepts the protocol name */
    struct buf errs;
    assert_int_equal(buf_init(&errs, 256, 0), 0);
    const char *y = "exporter:\n  protocol: grpc\n  endpoint: http://127.0.0.1:4317\n"
                    "  tls:\n    insecure: true\n";
    assert_int_equal(config_load_buffer("t.yaml", y, strlen(y), &cfg, &errs), 0);
    assert_int_equal(cfg.exporter.protocol, EXPORTER_GRPC);
    assert_string_equal(config_exporter_protocol_name(cfg.exporter.protocol), "grpc");
    config_free(&cfg);
    buf_free(&errs);
}

/* ------------------------------------------------------------------ */
/* against grpcio                                                       */
/* ------------------------------------------------------------------ */

static const char *const service_path[OTLP_SIGNAL_COUNT] = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
};

/* Every signal arrives byte-identical at the right method, with our
 * metadata; calls after the first reuse the connection. */
static void check_signals(bool gzip)
{
    struct up u;
    up_start(&u, NULL);
    struct svc_config cfg;
    grpc_cfg(&cfg, u.url);
    cfg.exporter.compression = gzip ? COMPRESSION_GZIP : COMPRESSION_NONE;
    add_header(&cfg, "X-Api-Key", "s3cret");
    add_header(&cfg, "Authorization", "Bearer t0k3n");
    add_header(&cfg, "x-empty", "");
    add_header(&cfg, "Bad Header", "x");     /* not a metadata name: skipped */
    add_header(&cfg, "content-type", "x/y"); /* reserved: skipped */
    add_header(&cfg, "grpc-timeout", "1S");  /* reserved: skipped */
    add_header(&cfg, "x-ctl", "a\x01z");     /* not printable ASCII: skipped */
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);

    enum { N = 6 };
    struct batch b[N];
    for (unsigned i = 0; i < N; i++)
        make_batch(&b[i], (enum otlp_signal)(i % OTLP_SIGNAL_COUNT), 2 + i);
    /* a big one: many DATA frames, flow control */
    buf_free(&b[N - 1].body);
    make_request(OTLP_LOGS, 300, 3000, &b[N - 1].body);
    b[N - 1].signal = OTLP_LOGS;
    b[N - 1].items = 300;
    struct done_log l = {0};
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(e.ops->submit(e.state, &b[i]), 0);
    drive(&e, &l, 3, 15000);
    for (unsigned i = 3; i < N; i++)
        assert_int_equal(e.ops->submit(e.state, &b[i]), 0);
    drive(&e, &l, N, 15000);
    assert_int_equal(l.n, N);
    for (unsigned i = 0; i < N; i++) {
        const struct export_result *r = result_of(&l, &b[i]);
        if (r->status != EXPORT_OK)
            fail_msg("batch %u: status %d reason %s: %s", i, r->status, r->reason, r->message);
        assert_int_equal(r->http_status, 200);
        assert_int_equal(r->rejected_items, 0);
        assert_string_equal(r->reason, "");
    }
    assert_int_equal(up_count(&u), N);
    bool seen[N] = {false};
    for (unsigned n = 0; n < N; n++) {
        char *body;
        size_t blen;
        char *meta = up_call(&u, n, &body, &blen);
        /* which batch: same bytes (grpcio undid the gzip) */
        int which = -1;
        for (unsigned i = 0; i < N; i++) {
            if (!seen[i] && blen == b[i].body.len && memcmp(body, b[i].body.data, blen) == 0)
                which = (int)i;
        }
        if (which < 0)
            fail_msg("call %u: body (%zu bytes) matches no batch", n, blen);
        seen[which] = true;
        struct batch *want = &b[which];
        assert_string_equal(meta_get(meta, "method"), service_path[want->signal]);
        assert_int_equal(atoi(meta_get(meta, "items")), (int)want->items);
        int left = atoi(meta_get(meta, "timeout_ms"));
        assert_in_range(left, 1000, 5000); /* grpc-timeout from exporter.timeout_ms */
        assert_string_equal(meta_get(meta, "m x-api-key"), "s3cret");
        assert_string_equal(meta_get(meta, "m authorization"), "Bearer t0k3n");
        assert_non_null(strstr(meta, "m x-empty"));
        assert_null(strstr(meta, "bad"));
        assert_null(strstr(meta, "x/y"));
        assert_null(strstr(meta, "x-ctl"));
        const char *ua = meta_get(meta, "m user-agent");
        assert_non_null(ua);
        assert_non_null(strstr(ua, "otlp-service/" OTLP_SERVICE_VERSION));
        free(meta);
        free(body);
    }
    exporter_destroy(&e);
    for (unsigned i = 0; i < N; i++)
        buf_free(&b[i].body);
    config_free(&cfg);
    up_stop(&u);
}

static void test_signals_identity(void **state)
{
    (void)state;
    check_signals(false);
}

static void test_signals_gzip(void **state)
{
    (void)state;
    check_signals(true);
}

/* A server that refuses compressed messages answers UNIMPLEMENTED: proof
 * the request really went out with grpc-encoding gzip (and the flag). */
static void test_gzip_really_sent(void **state)
{
    (void)state;
    struct up u;
    struct up_opts o = {.identity_only = true};
    up_start_in(&u, &o, false);
    struct svc_config cfg;
    grpc_cfg(&cfg, u.url);
    struct batch b;
    make_batch(&b, OTLP_TRACES, 3);
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0); /* compression none: accepted */
    struct export_result r = export_one(&e, &b);
    assert_int_equal(r.status, EXPORT_OK);
    exporter_destroy(&e);
    cfg.exporter.compression = COMPRESSION_GZIP;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    r = export_one(&e, &b);
    assert_int_equal(r.status, EXPORT_PERMANENT);
    assert_string_equal(r.reason, "grpc_unimplemented");
    assert_non_null(strstr(r.message, "gzip"));
    exporter_destroy(&e);
    buf_free(&b.body);
    config_free(&cfg);
    up_stop(&u);
}

static void test_partial_success(void **state)
{
    (void)state;
    struct up u;
    const char *specs[] = {"ok;partial=3;msg=3 spans too old", "ok", NULL};
    up_start(&u, specs);
    struct svc_config cfg;
    grpc_cfg(&cfg, u.url);
    cfg.exporter.compression = COMPRESSION_GZIP;
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    struct batch b;
    make_batch(&b, OTLP_TRACES, 4);
    struct export_result r = export_one(&e, &b);
    assert_int_equal(r.status, EXPORT_OK);
    assert_int_equal(r.rejected_items, 3);
    assert_string_equal(r.reason, "partial_success");
    assert_string_equal(r.message, "3 spans too old");
    r = export_one(&e, &b);
    assert_int_equal(r.status, EXPORT_OK);
    assert_int_equal(r.rejected_items, 0);
    assert_string_equal(r.reason, "");
    exporter_destroy(&e);
    buf_free(&b.body);
    config_free(&cfg);
    up_stop(&u);
}

/* OTLP spec, "OTLP/gRPC Response": which codes are retryable. One server
 * answers the specs in order on one connection. */
static void test_status_mapping(void **state)
{
    (void)state;
    static const struct {
        const char *spec;
        enum export_status want;
        const char *reason;
        uint32_t retry_after_ms;
    } cases[] = {
        {"unavailable", EXPORT_RETRYABLE, "grpc_unavailable", 0},
        {"unavailable;retry=1.5", EXPORT_RETRYABLE, "grpc_unavailable", 1500},
        {"resource_exhausted", EXPORT_PERMANENT, "grpc_resource_exhausted", 0},
        {"resource_exhausted;retry=2.25", EXPORT_RETRYABLE, "grpc_resource_exhausted", 2250},
        {"resource_exhausted;retry=0", EXPORT_RETRYABLE, "grpc_resource_exhausted", 0},
        {"cancelled", EXPORT_RETRYABLE, "grpc_cancelled", 0},
        {"deadline_exceeded", EXPORT_RETRYABLE, "grpc_deadline_exceeded", 0},
        {"aborted;retry=3", EXPORT_RETRYABLE, "grpc_aborted", 3000},
        {"out_of_range", EXPORT_RETRYABLE, "grpc_out_of_range", 0},
        {"data_loss", EXPORT_RETRYABLE, "grpc_data_loss", 0},
        {"invalid_argument;msg=bad span id", EXPORT_PERMANENT, "grpc_invalid_argument", 0},
        {"invalid_argument;retry=5", EXPORT_PERMANENT, "grpc_invalid_argument", 0},
        {"unknown", EXPORT_PERMANENT, "grpc_unknown", 0},
        {"not_found", EXPORT_PERMANENT, "grpc_not_found", 0},
        {"already_exists", EXPORT_PERMANENT, "grpc_already_exists", 0},
        {"permission_denied", EXPORT_PERMANENT, "grpc_permission_denied", 0},
        {"failed_precondition", EXPORT_PERMANENT, "grpc_failed_precondition", 0},
        {"unimplemented", EXPORT_PERMANENT, "grpc_unimplemented", 0},
        {"internal", EXPORT_PERMANENT, "grpc_internal", 0},
        {"unauthenticated;msg=no t\xc3\xb6ken%", EXPORT_PERMANENT, "grpc_unauthenticated", 0},
        {"ok", EXPORT_OK, "", 0},
    };
    const char *specs[ARRAY_SIZE(cases) + 1];
    for (unsigned i = 0; i < ARRAY_SIZE(cases); i++)
        specs[i] = cases[i].spec;
    specs[ARRAY_SIZE(cases)] = NULL;
    struct up u;
    up_start(&u, specs);
    struct svc_config cfg;
    grpc_cfg(&cfg, u.url);
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    struct batch b;
    make_batch(&b, OTLP_METRICS, 2);
    for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
        struct export_result r = export_one(&e, &b);
        if (r.status != cases[i].want || strcmp(r.reason, cases[i].reason) != 0 ||
            r.retry_after_ms != cases[i].retry_after_ms)
            fail_msg("%s: status %d reason %s retry_after_ms %u (%s)", cases[i].spec, r.status,
                     r.reason, r.retry_after_ms, r.message);
        if (cases[i].want != EXPORT_OK)
            assert_int_equal(r.http_status, 200);
    }
    assert_int_equal(up_count(&u), ARRAY_SIZE(cases));
    exporter_destroy(&e);
    /* the messages: grpc-message percent-decoding */
    const char *one[] = {"invalid_argument;msg=bad span id", NULL};
    up_stop(&u);
    up_start(&u, one);
    set_str(&cfg.exporter.endpoint, u.url);
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    struct export_result r = export_one(&e, &b);
    assert_string_equal(r.message, "bad span id");
    exporter_destroy(&e);
    up_stop(&u);
    const char *two[] = {"unauthenticated;msg=no t\xc3\xb6ken 100%", NULL};
    up_start(&u, two);
    set_str(&cfg.exporter.endpoint, u.url);
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    r = export_one(&e, &b);
    assert_string_equal(r.message, "no t\xc3\xb6ken 100%");
    exporter_destroy(&e);
    up_stop(&u);
    buf_free(&b.body);
    config_free(&cfg);
}

/* UNAVAILABLE for the first calls, then OK: the same exporter and
 * connection keep working (the runner retries; here the test does). */
static void test_unavailable_then_ok(void **state)
{
    (void)state;
    struct up u;
    const char *specs[] = {"unavailable", "unavailable", "ok", NULL};
    up_start(&u, specs);
    struct svc_config cfg;
    grpc_cfg(&cfg, u.url);
    cfg.exporter.compression = COMPRESSION_GZIP;
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    struct batch b;
    make_batch(&b, OTLP_LOGS, 5);
    unsigned attempts = 0;
    struct export_result r;
    do {
        r = export_one(&e, &b);
        attempts++;
    } while (r.status == EXPORT_RETRYABLE && attempts < 5);
    assert_int_equal(r.status, EXPORT_OK);
    assert_int_equal(attempts, 3);
    assert_int_equal(up_count(&u), 3);
    char *body;
    size_t blen;
    char *meta = up_call(&u, 2, &body, &blen);
    assert_int_equal(blen, b.body.len);
    assert_memory_equal(body, b.body.data, blen);
    free(meta);
    free(body);
    exporter_destroy(&e);
    buf_free(&b.body);
    config_free(&cfg);
    up_stop(&u);
}

/* Past exporter.timeout_ms: RETRYABLE, whether our deadline fires first
 * ("timeout") or grpcio's, from our grpc-timeout ("grpc_deadline_exceeded");
 * the connection stays usable. */
static void test_deadline(void **state)
{
    (void)state;
    struct up u;
    const char *specs[] = {"ok;delay=3", "ok", NULL};
    up_start(&u, specs);
    struct svc_config cfg;
    grpc_cfg(&cfg, u.url);
    cfg.exporter.timeout_ms = 400;
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    struct batch b;
    make_batch(&b, OTLP_TRACES, 1);
    uint64_t t0 = base_now_ms();
    struct export_result r = export_one(&e, &b);
    uint64_t took = base_now_ms() - t0;
    assert_int_equal(r.status, EXPORT_RETRYABLE);
    if (strcmp(r.reason, "timeout") != 0 && strcmp(r.reason, "grpc_deadline_exceeded") != 0)
        fail_msg("reason %s", r.reason);
    assert_in_range(took, 300, 2500);
    cfg.exporter.timeout_ms = 5000;
    r = export_one(&e, &b);
    assert_int_equal(r.status, EXPORT_OK);
    exporter_destroy(&e);
    buf_free(&b.body);
    config_free(&cfg);
    up_stop(&u);
}

static int listen_any(int *port, bool do_listen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    if (do_listen)
        assert_int_equal(listen(fd, 16), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A server that accepts TCP and never says a word: our deadline, then the
 * PING check retires the connection. */
static void test_silent_server_timeout(void **state)
{
    (void)state;
    int port;
    int fd = listen_any(&port, true);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    struct svc_config cfg;
    grpc_cfg(&cfg, url);
    cfg.exporter.timeout_ms = 300;
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    struct batch b;
    make_batch(&b, OTLP_TRACES, 1);
    uint64_t t0 = base_now_ms();
    struct export_result r = export_one(&e, &b);
    assert_int_equal(r.status, EXPORT_RETRYABLE);
    assert_string_equal(r.reason, "timeout");
    assert_in_range(base_now_ms() - t0, 250, 2000);
    /* the second call on the presumed-dead connection ends as well */
    r = export_one(&e, &b);
    assert_int_equal(r.status, EXPORT_RETRYABLE);
    assert_string_equal(r.reason, "timeout");
    exporter_destroy(&e);
    buf_free(&b.body);
    config_free(&cfg);
    close(fd);
}

static void test_connection_refused(void **state)
{
    (void)state;
    int port;
    int fd = listen_any(&port, false); /* bound, not listening: refused */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
    struct svc_config cfg;
    grpc_cfg(&cfg, url);
    cfg.batch.max_concurrent_exports = 2;
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    struct batch b[2];
    make_batch(&b[0], OTLP_METRICS, 1);
    make_batch(&b[1], OTLP_LOGS, 1);
    struct done_log l = {0};
    assert_int_equal(e.ops->submit(e.state, &b[0]), 0);
    assert_int_equal(e.ops->submit(e.state, &b[1]), 0);
    drive(&e, &l, 2, 5000);
    assert_int_equal(l.n, 2);
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(l.r[i].status, EXPORT_RETRYABLE);
        assert_int_equal(l.r[i].http_status, 0);
        assert_string_equal(l.r[i].reason, "connect_failed");
        assert_non_null(strstr(l.r[i].message, "refused"));
    }
    exporter_destroy(&e);
    buf_free(&b[0].body);
    buf_free(&b[1].body);
    config_free(&cfg);
    close(fd);
}

/* Up to max_concurrent_exports streams at once on the one connection; the
 * server's SETTINGS_MAX_CONCURRENT_STREAMS is respected (calls queue, not
 * fail). */
static void test_concurrency(void **state)
{
    (void)state;
    /* the server holds every answer until three calls are in progress */
    const char *specs[] = {"ok", "ok;barrier=3", NULL};
    struct up u;
    up_start(&u, specs);
    struct svc_config cfg;
    grpc_cfg(&cfg, u.url);
    cfg.batch.max_concurrent_exports = 3;
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    struct batch b[4];
    for (unsigned i = 0; i < 4; i++)
        make_batch(&b[i], OTLP_TRACES, 1);
    /* warm the connection so the server's SETTINGS are in */
    assert_int_equal(export_one(&e, &b[0]).status, EXPORT_OK);
    uint64_t t0 = base_now_ms();
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(e.ops->submit(e.state, &b[i]), 0);
    assert_int_equal(e.ops->submit(e.state, &b[3]), -EBUSY);
    struct done_log l = {0};
    drive(&e, &l, 3, 10000);
    assert_int_equal(l.n, 3);
    assert_true(base_now_ms() - t0 < 4500); /* the barrier opened: not its 5 s timeout */
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(result_of(&l, &b[i])->status, EXPORT_OK);
    assert_int_equal(up_max_concurrent(&u), 3);
    exporter_destroy(&e);
    up_stop(&u);

    /* the server allows one stream: the three go one after the other */
    const char *slow[] = {"ok;delay=1", NULL};
    struct up_opts o = {.specs = slow, .max_streams = 1};
    up_start_in(&u, &o, false);
    set_str(&cfg.exporter.endpoint, u.url);
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    assert_int_equal(export_one(&e, &b[0]).status, EXPORT_OK);
    t0 = base_now_ms();
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(e.ops->submit(e.state, &b[i]), 0);
    memset(&l, 0, sizeof(l));
    drive(&e, &l, 3, 10000);
    assert_int_equal(l.n, 3);
    assert_true(base_now_ms() - t0 >= 2900);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(result_of(&l, &b[i])->status, EXPORT_OK);
    assert_int_equal(up_max_concurrent(&u), 1);
    exporter_destroy(&e);
    up_stop(&u);
    for (unsigned i = 0; i < 4; i++)
        buf_free(&b[i].body);
    config_free(&cfg);
}

/* The server goes away and comes back on the same port: a call in between
 * is RETRYABLE, the next after the restart is delivered. */
static void test_server_restart(void **state)
{
    (void)state;
    struct up u;
    up_start(&u, NULL);
    struct svc_config cfg;
    grpc_cfg(&cfg, u.url);
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    struct batch b;
    make_batch(&b, OTLP_TRACES, 2);
    assert_int_equal(export_one(&e, &b).status, EXPORT_OK);
    up_kill(&u);
    struct done_log l = {0};
    assert_int_equal(e.ops->poll(e.state, 100, on_done, &l), 0); /* sees GOAWAY / close */
    struct export_result r = export_one(&e, &b);
    assert_int_equal(r.status, EXPORT_RETRYABLE);
    if (strcmp(r.reason, "connect_failed") != 0 && strcmp(r.reason, "connection_error") != 0)
        fail_msg("reason %s: %s", r.reason, r.message);
    struct up_opts o = {.port = u.port};
    up_start_in(&u, &o, true);
    unsigned attempts = 0;
    do {
        r = export_one(&e, &b);
        attempts++;
    } while (r.status == EXPORT_RETRYABLE && attempts < 3);
    if (r.status != EXPORT_OK)
        fail_msg("after restart: %s: %s", r.reason, r.message);
    /* the restarted server numbers its records from 0000 again: one call */
    assert_int_equal(up_count(&u), 1);
    /* a restart while idle, with the exporter not polled in between */
    up_kill(&u);
    up_start_in(&u, &o, true);
    attempts = 0;
    do {
        r = export_one(&e, &b);
        attempts++;
    } while (r.status == EXPORT_RETRYABLE && attempts < 3);
    assert_int_equal(r.status, EXPORT_OK);
    exporter_destroy(&e);
    buf_free(&b.body);
    config_free(&cfg);
    up_stop(&u);
}

struct wake_arg {
    struct exporter *e;
    unsigned delay_ms;
};

static void *wake_thread(void *arg)
{
    struct wake_arg *w = arg;
    sleep_ms(w->delay_ms);
    w->e->ops->wakeup(w->e->state);
    return NULL;
}

static void test_wakeup(void **state)
{
    (void)state;
    struct svc_config cfg;
    grpc_cfg(&cfg, "http://127.0.0.1:9");
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    struct done_log l = {0};
    e.ops->wakeup(e.state); /* before poll: not lost */
    uint64_t t0 = base_now_ms();
    assert_int_equal(e.ops->poll(e.state, 5000, on_done, &l), 0);
    assert_true(base_now_ms() - t0 < 1000);
    pthread_t th;
    struct wake_arg w = {&e, 100};
    t0 = base_now_ms();
    assert_int_equal(pthread_create(&th, NULL, wake_thread, &w), 0);
    assert_int_equal(e.ops->poll(e.state, 5000, on_done, &l), 0);
    uint64_t took = base_now_ms() - t0;
    pthread_join(th, NULL);
    assert_true(took < 2000);
    t0 = base_now_ms();
    assert_int_equal(e.ops->poll(e.state, 150, on_done, &l), 0);
    assert_true(base_now_ms() - t0 >= 140);
    assert_int_equal(e.ops->poll(e.state, 0, on_done, &l), 0);
    exporter_destroy(&e);
    config_free(&cfg);
}

/* Destroy with calls in flight and waiting: no done(), no leak (ASan). */
static void test_destroy_in_flight(void **state)
{
    (void)state;
    struct up u;
    const char *specs[] = {"ok;delay=3", NULL};
    up_start(&u, specs);
    struct svc_config cfg;
    grpc_cfg(&cfg, u.url);
    cfg.exporter.compression = COMPRESSION_GZIP;
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    struct batch b[2];
    make_batch(&b[0], OTLP_TRACES, 1);
    make_batch(&b[1], OTLP_LOGS, 1);
    struct done_log l = {0};
    assert_int_equal(e.ops->submit(e.state, &b[0]), 0);
    drive(&e, &l, 1, 300);
    assert_int_equal(e.ops->submit(e.state, &b[1]), 0);
    assert_int_equal(l.n, 0);
    exporter_destroy(&e);
    buf_free(&b[0].body);
    buf_free(&b[1].body);
    config_free(&cfg);
    up_stop(&u);
}

static int make_cert(const char *dir, char *cert, char *key, size_t n)
{
    snprintf(cert, n, "%s/cert.pem", dir);
    snprintf(key, n, "%s/key.pem", dir);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 2 "
             "-subj /CN=upstream.test -addext subjectAltName=DNS:upstream.test "
             ">/dev/null 2>&1",
             key, cert);
    return system(cmd);
}

static void test_tls(void **state)
{
    (void)state;
    char dir[] = "/tmp/otlp-grpc-tls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cert[128], key[128];
    if (make_cert(dir, cert, key, sizeof(cert)) != 0) {
        rm_rf(dir);
        print_message("openssl CLI not available\n");
        skip();
    }
    struct up u;
    struct up_opts o = {.cert = cert, .key = key};
    up_start_in(&u, &o, false);
    struct batch b;
    make_batch(&b, OTLP_TRACES, 2);
    struct {
        const char *server_name;
        const char *ca;
        bool insecure;
        enum export_status want;
        const char *reason;
    } cases[] = {
        {"upstream.test", cert, false, EXPORT_OK, ""},    /* SNI + verification by name */
        {"", cert, false, EXPORT_RETRYABLE, "tls_error"}, /* 127.0.0.1 is not in the cert */
        {"other.test", cert, false, EXPORT_RETRYABLE, "tls_error"},
        {"upstream.test", "", false, EXPORT_RETRYABLE, "tls_error"}, /* system CAs */
        {"", "", true, EXPORT_OK, ""}, /* insecure skips verification */
    };
    for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
        struct svc_config cfg;
        grpc_cfg(&cfg, u.url);
        cfg.exporter.compression = COMPRESSION_GZIP;
        set_str(&cfg.exporter.tls.ca_file, cases[i].ca);
        set_str(&cfg.exporter.tls.server_name, cases[i].server_name);
        cfg.exporter.tls.insecure = cases[i].insecure;
        struct exporter e;
        assert_int_equal(export_grpc_create(&cfg, &e), 0);
        struct export_result r = export_one(&e, &b);
        if (r.status != cases[i].want || strcmp(r.reason, cases[i].reason) != 0)
            fail_msg("case %u: status %d reason %s: %s", i, r.status, r.reason, r.message);
        if (r.status == EXPORT_OK) /* and again on the same TLS connection */
            assert_int_equal(export_one(&e, &b).status, EXPORT_OK);
        else
            assert_non_null(strstr(r.message, "verify"));
        exporter_destroy(&e);
        config_free(&cfg);
    }
    assert_int_equal(up_count(&u), 4);
    char *body;
    size_t blen;
    char *meta = up_call(&u, 0, &body, &blen);
    assert_int_equal(blen, b.body.len);
    assert_memory_equal(body, b.body.data, blen);
    free(meta);
    free(body);
    /* h2c against a TLS server: the server hangs up on the preface */
    struct svc_config cfg;
    char url[96];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", u.port);
    grpc_cfg(&cfg, url);
    cfg.exporter.timeout_ms = 2000;
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    struct export_result r = export_one(&e, &b);
    assert_int_equal(r.status, EXPORT_RETRYABLE);
    exporter_destroy(&e);
    config_free(&cfg);
    buf_free(&b.body);
    up_stop(&u);
    rm_rf(dir);
}

/* ------------------------------------------------------------------ */
/* a hand-written HTTP/2 responder                                      */
/* ------------------------------------------------------------------ */

enum raw_mode {
    RAW_STATUS,      /* HEADERS(:status N[, content-type]) END_STREAM */
    RAW_REFUSE,      /* RST_STREAM(REFUSED_STREAM) */
    RAW_TRICKLE_OK,  /* a full gRPC answer with partial success, one byte per write */
    RAW_NO_STATUS,   /* 200 application/grpc, END_STREAM without grpc-status */
    RAW_GOAWAY_ZERO, /* GOAWAY(last_stream_id 0) before answering: the request is retried */
};

struct raw_server {
    int lfd;
    int port;
    pthread_t th;
    enum raw_mode mode;
    int status;
    const char *ctype;
    unsigned requests; /* HEADERS frames seen */
    unsigned conns;
    volatile bool stop;
};

static void raw_send(int fd, const void *p, size_t n, bool trickle)
{
    const uint8_t *d = p;
    for (size_t i = 0; i < n;) {
        size_t k = trickle ? 1 : n - i;
        ssize_t w = send(fd, d + i, k, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        i += (size_t)w;
        if (trickle)
            sleep_ms(1);
    }
}

static size_t frame_hdr(uint8_t *o, size_t len, uint8_t type, uint8_t flags, uint32_t sid)
{
    o[0] = (uint8_t)(len >> 16);
    o[1] = (uint8_t)(len >> 8);
    o[2] = (uint8_t)len;
    o[3] = type;
    o[4] = flags;
    o[5] = (uint8_t)(sid >> 24);
    o[6] = (uint8_t)(sid >> 16);
    o[7] = (uint8_t)(sid >> 8);
    o[8] = (uint8_t)sid;
    return 9;
}

/* HPACK literal without indexing, new name (RFC 7541 6.2.2), short strings. */
static size_t hpack_lit(uint8_t *o, const char *name, const char *value)
{
    size_t n = 0, nl = strlen(name), vl = strlen(value);
    o[n++] = 0x00;
    o[n++] = (uint8_t)nl;
    memcpy(o + n, name, nl);
    n += nl;
    o[n++] = (uint8_t)vl;
    memcpy(o + n, value, vl);
    return n + vl;
}

/* Answer one request on stream `sid` as the mode says. */
static void raw_answer(struct raw_server *s, int fd, uint32_t sid)
{
    uint8_t out[512], blk[256];
    size_t n = 0, bl = 0;
    char st[8];
    switch (s->mode) {
    case RAW_STATUS:
    case RAW_NO_STATUS:
        snprintf(st, sizeof(st), "%d", s->status);
        bl += hpack_lit(blk + bl, ":status", st);
        if (s->ctype != NULL)
            bl += hpack_lit(blk + bl, "content-type", s->ctype);
        n += frame_hdr(out + n, bl, 1, 0x5, sid);
        memcpy(out + n, blk, bl);
        n += bl;
        raw_send(fd, out, n, false);
        return;
    case RAW_REFUSE: {
        n += frame_hdr(out + n, 4, 3, 0, sid);
        uint8_t code[4] = {0, 0, 0, 7};
        memcpy(out + n, code, 4);
        n += 4;
        raw_send(fd, out, n, false);
        return;
    }
    case RAW_GOAWAY_ZERO:
        if (s->requests == 1) { /* the first request on the first connection only */
            n += frame_hdr(out + n, 8, 7, 0, 0);
            memset(out + n, 0, 8);
            n += 8;
            raw_send(fd, out, n, false);
            return;
        }
        __attribute__((fallthrough)); /* later requests: answer normally */
    case RAW_TRICKLE_OK: {
        bl += hpack_lit(blk + bl, ":status", "200");
        bl += hpack_lit(blk + bl, "content-type", "application/grpc");
        n += frame_hdr(out + n, bl, 1, 0x4, sid);
        memcpy(out + n, blk, bl);
        n += bl;
        /* ExportTraceServiceResponse{partial_success{rejected_spans: 2, error_message: "x"}} */
        static const uint8_t msg[] = {0x0a, 0x05, 0x08, 0x02, 0x12, 0x01, 'x'};
        n += frame_hdr(out + n, 5 + sizeof(msg), 0, 0, sid);
        uint8_t pre[5] = {0, 0, 0, 0, sizeof(msg)};
        memcpy(out + n, pre, 5);
        n += 5;
        memcpy(out + n, msg, sizeof(msg));
        n += sizeof(msg);
        bl = hpack_lit(blk, "grpc-status", "0");
        n += frame_hdr(out + n, bl, 1, 0x5, sid);
        memcpy(out + n, blk, bl);
        n += bl;
        raw_send(fd, out, n, s->mode == RAW_TRICKLE_OK);
        return;
    }
    }
}

static void raw_conn(struct raw_server *s, int fd)
{
    struct timeval tv = {0, 100 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    uint8_t out[64];
    size_t n = frame_hdr(out, 0, 4, 0, 0); /* our SETTINGS (empty) */
    raw_send(fd, out, n, false);
    uint8_t in[1 << 16];
    size_t have = 0;
    bool preface = false;
    while (!s->stop) {
        ssize_t k = recv(fd, in + have, sizeof(in) - have, 0);
        if (k == 0)
            break;
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                continue;
            break;
        }
        have += (size_t)k;
        if (!preface) {
            if (have < 24)
                continue;
            preface = true;
            memmove(in, in + 24, have - 24);
            have -= 24;
        }
        while (have >= 9) {
            size_t len = (size_t)in[0] << 16 | (size_t)in[1] << 8 | in[2];
            if (have < 9 + len)
                break;
            uint8_t type = in[3], flags = in[4];
            uint32_t sid =
                ((uint32_t)in[5] << 24 | (uint32_t)in[6] << 16 | (uint32_t)in[7] << 8 | in[8]) &
                0x7fffffff;
            if (type == 4 && !(flags & 1)) { /* SETTINGS: ACK */
                n = frame_hdr(out, 0, 4, 1, 0);
                raw_send(fd, out, n, false);
            }
            if (type == 1)
                s->requests++;
            if ((type == 0 || type == 1) && (flags & 1)) /* END_STREAM: the request is in */
                raw_answer(s, fd, sid);
            memmove(in, in + 9 + len, have - 9 - len);
            have -= 9 + len;
        }
    }
    close(fd);
}

static void *raw_thread(void *arg)
{
    struct raw_server *s = arg;
    while (!s->stop) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        s->conns++;
        raw_conn(s, fd);
    }
    return NULL;
}

static void raw_start(struct raw_server *s)
{
    s->lfd = listen_any(&s->port, true);
    assert_int_equal(pthread_create(&s->th, NULL, raw_thread, s), 0);
}

static void raw_stop(struct raw_server *s)
{
    s->stop = true;
    pthread_join(s->th, NULL);
    close(s->lfd);
}

static struct export_result raw_export(struct raw_server *s, unsigned timeout_ms)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", s->port);
    struct svc_config cfg;
    grpc_cfg(&cfg, url);
    cfg.exporter.timeout_ms = timeout_ms;
    struct exporter e;
    assert_int_equal(export_grpc_create(&cfg, &e), 0);
    struct batch b;
    make_batch(&b, OTLP_TRACES, 1);
    struct export_result r = export_one(&e, &b);
    exporter_destroy(&e);
    buf_free(&b.body);
    config_free(&cfg);
    return r;
}

/* gRPC doc/http-grpc-status-mapping.md for answers without grpc-status,
 * then the OTLP retry rule on the mapped code. */
static void test_http_status_mapping(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *ctype;
        enum export_status want;
        const char *reason;
    } cases[] = {
        {503, "text/plain", EXPORT_RETRYABLE, "http_503"}, /* UNAVAILABLE */
        {429, NULL, EXPORT_RETRYABLE, "http_429"},         /* UNAVAILABLE */
        {502, NULL, EXPORT_RETRYABLE, "http_502"},
        {504, NULL, EXPORT_RETRYABLE, "http_504"},
        {400, NULL, EXPORT_PERMANENT, "http_400"}, /* INTERNAL */
        {401, NULL, EXPORT_PERMANENT, "http_401"}, /* UNAUTHENTICATED */
        {403, NULL, EXPORT_PERMANENT, "http_403"}, /* PERMISSION_DENIED */
        {404, NULL, EXPORT_PERMANENT, "http_404"}, /* UNIMPLEMENTED */
        {500, NULL, EXPORT_PERMANENT, "http_500"}, /* UNKNOWN */
        {200, "text/html", EXPORT_PERMANENT, "grpc_unknown"},
    };
    for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
        struct raw_server s = {
            .mode = RAW_STATUS, .status = cases[i].status, .ctype = cases[i].ctype};
        raw_start(&s);
        struct export_result r = raw_export(&s, 3000);
        raw_stop(&s);
        if (r.status != cases[i].want || strcmp(r.reason, cases[i].reason) != 0 ||
            r.http_status != cases[i].status)
            fail_msg("HTTP %d: status %d reason %s http %d: %s", cases[i].status, r.status,
                     r.reason, r.http_status, r.message);
    }
    /* gRPC content type but no grpc-status: INTERNAL, permanent */
    struct raw_server s = {.mode = RAW_NO_STATUS, .status = 200, .ctype = "application/grpc"};
    raw_start(&s);
    struct export_result r = raw_export(&s, 3000);
    raw_stop(&s);
    assert_int_equal(r.status, EXPORT_PERMANENT);
    assert_string_equal(r.reason, "grpc_internal");
}

/* REFUSED_STREAM: not processed, so tried once more at once; refused again,
 * it is UNAVAILABLE (retryable). */
static void test_refused_stream(void **state)
{
    (void)state;
    struct raw_server s = {.mode = RAW_REFUSE};
    raw_start(&s);
    struct export_result r = raw_export(&s, 3000);
    raw_stop(&s);
    assert_int_equal(r.status, EXPORT_RETRYABLE);
    assert_string_equal(r.reason, "grpc_unavailable");
    assert_int_equal(s.requests, 2);
}

/* GOAWAY(last_stream_id 0) before the answer: the request was not
 * processed; it goes out again on a new connection and succeeds. */
static void test_goaway_retried(void **state)
{
    (void)state;
    struct raw_server s = {.mode = RAW_GOAWAY_ZERO};
    raw_start(&s);
    struct export_result r = raw_export(&s, 3000);
    raw_stop(&s);
    if (r.status != EXPORT_OK)
        fail_msg("status %d reason %s: %s", r.status, r.reason, r.message);
    assert_int_equal(r.rejected_items, 2);
    assert_int_equal(s.requests, 2);
}

/* A complete answer written one byte at a time. */
static void test_trickled_response(void **state)
{
    (void)state;
    struct raw_server s = {.mode = RAW_TRICKLE_OK};
    raw_start(&s);
    struct export_result r = raw_export(&s, 5000);
    raw_stop(&s);
    if (r.status != EXPORT_OK)
        fail_msg("status %d reason %s: %s", r.status, r.reason, r.message);
    assert_int_equal(r.rejected_items, 2);
    assert_string_equal(r.message, "x");
    assert_string_equal(r.reason, "partial_success");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_WARN);
    atexit(up_kill_all);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_signals_identity),
        cmocka_unit_test(test_signals_gzip),
        cmocka_unit_test(test_gzip_really_sent),
        cmocka_unit_test(test_partial_success),
        cmocka_unit_test(test_status_mapping),
        cmocka_unit_test(test_unavailable_then_ok),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_silent_server_timeout),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_server_restart),
        cmocka_unit_test(test_wakeup),
        cmocka_unit_test(test_destroy_in_flight),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_http_status_mapping),
        cmocka_unit_test(test_refused_stream),
        cmocka_unit_test(test_goaway_retried),
        cmocka_unit_test(test_trickled_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
