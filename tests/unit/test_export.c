/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for lib/export: backoff and Retry-After math, response decoding, the
 * OTLP/HTTP exporter against a real upstream process (upstream_stub.py), the
 * file exporter on a real directory, and the runner on a real pipeline. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <libdeflate.h>
#include <netinet/in.h>
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
#include "export/export.h"
#include "export/exporter.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "otlp_version.h"
#include "pipeline/pipeline.h"

/* ------------------------------------------------------------------ */
/* small helpers                                                        */
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

/* An Export<sig>ServiceRequest with one Resource* holding `items` items. */
static void make_request(enum otlp_signal sig, unsigned items, struct buf *out)
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
    for (unsigned i = 0; i < items; i++) {
        struct buf item;
        assert_int_equal(buf_init(&item, 64, 0), 0);
        if (sig == OTLP_TRACES) {
            uint8_t tid[16], sid[8];
            memset(tid, 0x11, sizeof(tid));
            memset(sid, 0x22, sizeof(sid));
            sid[7] = (uint8_t)i;
            pb_bytes(&item, 1, tid, 16);
            pb_bytes(&item, 2, sid, 8);
            pb_bytes(&item, 5, "op", 2);
            pb_sub(&scope, 2, &item);
        } else if (sig == OTLP_METRICS) {
            struct buf gauge, dp;
            assert_int_equal(buf_init(&dp, 16, 0), 0);
            pb_varint(&dp, 4 << 3 | 1); /* as_double, fixed64 */
            double v = 1.5 + i;
            assert_int_equal(buf_append(&dp, &v, 8), 0);
            assert_int_equal(buf_init(&gauge, 16, 0), 0);
            pb_sub(&gauge, 1, &dp);
            pb_bytes(&item, 1, "m", 1);
            pb_sub(&item, 5, &gauge);
            pb_sub(&scope, 2, &item);
        } else {
            struct buf body;
            assert_int_equal(buf_init(&body, 16, 0), 0);
            pb_bytes(&body, 1, "hello", 5);
            pb_sub(&item, 5, &body);
            pb_sub(&scope, 2, &item);
        }
    }
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
    make_request(sig, items, &b->body);
}

/* --- completions --- */

struct done_log {
    unsigned n;
    struct batch *b[32];
    struct export_result r[32];
};

static void on_done(void *arg, struct batch *b, const struct export_result *r)
{
    struct done_log *l = arg;
    assert_true(l->n < 32);
    l->b[l->n] = b;
    l->r[l->n] = *r;
    l->n++;
}

/* Poll until `want` completions arrived or max_ms passed. */
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
/* backoff, Retry-After, response decoding                              */
/* ------------------------------------------------------------------ */

static void test_backoff_growth_and_cap(void **state)
{
    (void)state;
    struct retry_config rc = {.enabled = true,
                              .initial_interval_ms = 1000,
                              .max_interval_ms = 30000,
                              .max_elapsed_ms = 300000,
                              .multiplier = 1.5,
                              .randomization = 0};
    assert_int_equal(export_backoff_ms(&rc, 0, 0.5), 1000);
    assert_int_equal(export_backoff_ms(&rc, 1, 0.5), 1000);
    assert_int_equal(export_backoff_ms(&rc, 2, 0.5), 1500);
    assert_int_equal(export_backoff_ms(&rc, 3, 0.5), 2250);
    assert_int_equal(export_backoff_ms(&rc, 4, 0.5), 3375);
    assert_int_equal(export_backoff_ms(&rc, 9, 0.5), 25629); /* 1000 * 1.5^8 */
    assert_int_equal(export_backoff_ms(&rc, 10, 0.5), 30000);
    assert_int_equal(export_backoff_ms(&rc, UINT32_MAX, 0.5), 30000); /* no overflow, no hang */
    rc.multiplier = 10;
    assert_int_equal(export_backoff_ms(&rc, 1000, 0.0), 30000);
    /* initial above max: max */
    rc.initial_interval_ms = 60000;
    assert_int_equal(export_backoff_ms(&rc, 1, 0.5), 30000);
}

static void test_backoff_jitter_range(void **state)
{
    (void)state;
    struct retry_config rc = {.enabled = true,
                              .initial_interval_ms = 1000,
                              .max_interval_ms = 30000,
                              .max_elapsed_ms = 300000,
                              .multiplier = 2,
                              .randomization = 0.5};
    assert_int_equal(export_backoff_ms(&rc, 1, 0.0), 500);
    assert_int_equal(export_backoff_ms(&rc, 1, 0.5), 1000);
    assert_in_range(export_backoff_ms(&rc, 1, 0.999999), 1499, 1500);
    /* jitter applies after the cap: [15000, 45000] at the top */
    assert_int_equal(export_backoff_ms(&rc, 50, 0.0), 15000);
    assert_in_range(export_backoff_ms(&rc, 50, 0.9999999), 44999, 45000);
    /* out-of-range u is clamped */
    assert_int_equal(export_backoff_ms(&rc, 1, -3.0), 500);
    assert_int_equal(export_backoff_ms(&rc, 1, 7.0), 1500);
    srand(7);
    unsigned lo = UINT32_MAX, hi = 0;
    for (int i = 0; i < 10000; i++) {
        double u = (double)rand() / ((double)RAND_MAX + 1.0);
        unsigned d = export_backoff_ms(&rc, 3, u); /* base 4000 */
        assert_in_range(d, 2000, 6000);
        lo = BASE_MIN(lo, d);
        hi = BASE_MAX(hi, d);
    }
    assert_true(lo < 2200 && hi > 5800); /* the whole range is used */
    rc.randomization = 1.0;
    assert_int_equal(export_backoff_ms(&rc, 1, 0.0), 0);
}

static void test_retry_after_precedence(void **state)
{
    (void)state;
    struct retry_config rc = {.enabled = true,
                              .initial_interval_ms = 1000,
                              .max_interval_ms = 30000,
                              .max_elapsed_ms = 300000,
                              .multiplier = 1.5,
                              .randomization = 0};
    assert_int_equal(export_retry_delay_ms(&rc, 1, 0, 0.5), 1000);
    assert_int_equal(export_retry_delay_ms(&rc, 1, 7000, 0.5), 7000);    /* server wins */
    assert_int_equal(export_retry_delay_ms(&rc, 3, 100, 0.5), 2250);     /* backoff is longer */
    assert_int_equal(export_retry_delay_ms(&rc, 20, 60000, 0.5), 60000); /* above max_interval */
}

static void test_retry_after_parse(void **state)
{
    (void)state;
    uint32_t ms = 12345;
    const int64_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
#define RA_OK(s, want)                                                                             \
    do {                                                                                           \
        ms = 12345;                                                                                \
        assert_int_equal(export_parse_retry_after(s, strlen(s), now, &ms), 0);                     \
        assert_int_equal(ms, want);                                                                \
    } while (0)
#define RA_BAD(s) assert_int_equal(export_parse_retry_after(s, strlen(s), now, &ms), -EINVAL)
    RA_OK("0", 0);
    RA_OK("120", 120000);
    RA_OK("  5 \t", 5000);
    RA_OK("99999999999999999999", 24u * 3600 * 1000); /* capped, no overflow */
    RA_OK("Sun, 06 Nov 1994 08:49:47 GMT", 10000);
    RA_OK("Sun, 06 Nov 1994 08:49:37 GMT", 0);
    RA_OK("Sun, 06 Nov 1994 08:40:00 GMT", 0);      /* past */
    RA_OK("Sunday, 06-Nov-94 08:50:37 GMT", 60000); /* RFC 850 */
    RA_OK("Sun Nov  6 08:49:57 1994", 20000);       /* asctime */
    RA_OK("Mon, 07 Nov 1994 08:49:37 GMT", 86400000);
    RA_BAD("");
    RA_BAD("   ");
    RA_BAD("-1");
    RA_BAD("1.5");
    RA_BAD("5s");
    RA_BAD("soon");
    RA_BAD("Sun, 06 Nov 1994 25:49:37 GMT");
    RA_BAD("Sun, 32 Nov 1994 08:49:37 GMT");
    RA_BAD("Sun, 06 Foo 1994 08:49:37 GMT");
    RA_BAD("Sun, 06 Nov 1994 08:49:37 UTC");
    RA_BAD("Sun, 06 Nov 1994 08:49:37 GMT x");
    RA_BAD("Sun, 6 Nov 1994 08:49:37 GMT");
    /* not NUL-terminated: only len bytes count */
    assert_int_equal(export_parse_retry_after("30xyz", 2, now, &ms), 0);
    assert_int_equal(ms, 30000);
#undef RA_OK
#undef RA_BAD
}

static void test_response_decoding(void **state)
{
    (void)state;
    uint64_t rej = 99;
    char msg[16];
    /* empty response: full success */
    assert_int_equal(export_parse_partial_success((const uint8_t *)"", 0, &rej, msg, sizeof(msg)),
                     0);
    assert_int_equal(rej, 0);
    assert_string_equal(msg, "");
    /* partial_success { rejected 5, "too old\n" } plus an unknown field 7 */
    struct buf ps, resp;
    assert_int_equal(buf_init(&ps, 64, 0), 0);
    pb_varint(&ps, 1 << 3);
    pb_varint(&ps, 5);
    pb_bytes(&ps, 2, "too old\n", 8);
    assert_int_equal(buf_init(&resp, 64, 0), 0);
    pb_varint(&resp, 7 << 3);
    pb_varint(&resp, 300);
    pb_sub(&resp, 1, &ps);
    assert_int_equal(export_parse_partial_success(resp.data, resp.len, &rej, msg, sizeof(msg)), 0);
    assert_int_equal(rej, 5);
    assert_string_equal(msg, "too old?");
    /* truncated */
    assert_int_equal(export_parse_partial_success(resp.data, resp.len - 1, &rej, msg, sizeof(msg)),
                     -EINVAL);
    /* message longer than the buffer is cut */
    buf_reset(&resp);
    assert_int_equal(buf_init(&ps, 64, 0), 0);
    pb_bytes(&ps, 2, "abcdefghijklmnopqrstuvwxyz", 26);
    pb_sub(&resp, 1, &ps);
    assert_int_equal(export_parse_partial_success(resp.data, resp.len, &rej, msg, sizeof(msg)), 0);
    assert_int_equal(rej, 0);
    assert_string_equal(msg, "abcdefghijklmno");
    /* google.rpc.Status */
    buf_reset(&resp);
    pb_varint(&resp, 1 << 3);
    pb_varint(&resp, 3);
    pb_bytes(&resp, 2, "bad span", 8);
    assert_int_equal(export_parse_status_message(resp.data, resp.len, msg, sizeof(msg)), 0);
    assert_string_equal(msg, "bad span");
    assert_int_equal(export_parse_status_message(resp.data, 2, msg, sizeof(msg)), -EINVAL);
    assert_int_equal(export_parse_status_message((const uint8_t *)"\xff", 1, msg, sizeof(msg)),
                     -EINVAL);
    buf_free(&resp);
}

static void test_exporter_table(void **state)
{
    (void)state;
    char dir[] = "/tmp/otlp-export-tbl-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct svc_config cfg;
    config_defaults(&cfg);
    set_str(&cfg.exporter.file.path, dir);
    struct exporter e = {0};
    assert_int_equal(exporter_create(&cfg, &e), 0);
    assert_string_equal(e.ops->name, "file");
    exporter_destroy(&e);
    assert_null(e.ops);
    exporter_destroy(&e); /* no-op */

    cfg.exporter.protocol = EXPORTER_OTLP_HTTP;
    assert_int_equal(exporter_create(&cfg, &e), -EINVAL); /* no endpoint */
    set_str(&cfg.exporter.endpoint, "ftp://x");
    assert_int_equal(exporter_create(&cfg, &e), -EINVAL);
    set_str(&cfg.exporter.endpoint, "http://127.0.0.1:1");
    set_str(&cfg.exporter.tls.cert_file, "/x.pem"); /* without key_file */
    assert_int_equal(exporter_create(&cfg, &e), -EINVAL);
    set_str(&cfg.exporter.tls.cert_file, "");
    assert_int_equal(exporter_create(&cfg, &e), 0);
    assert_string_equal(e.ops->name, "otlp_http");
    exporter_destroy(&e);
    /* credentials in the endpoint never reach the log */
    FILE *logf = tmpfile();
    assert_non_null(logf);
    log_set_fd(fileno(logf));
    set_str(&cfg.exporter.endpoint, "http://user:s3cret@127.0.0.1:1/v1/traces?key=s3cret");
    assert_int_equal(exporter_create(&cfg, &e), 0);
    exporter_destroy(&e);
    log_set_fd(2);
    size_t log_len;
    rewind(logf);
    char logbuf[4096];
    log_len = fread(logbuf, 1, sizeof(logbuf) - 1, logf);
    logbuf[log_len] = '\0';
    fclose(logf);
    assert_null(strstr(logbuf, "s3cret"));
    assert_non_null(strstr(logbuf, "http://***@127.0.0.1:1/v1/traces/v1/traces\""));
    assert_non_null(strstr(logbuf, "already ends with a signal path"));
    cfg.exporter.protocol = (enum exporter_protocol)77;
    assert_int_equal(exporter_create(&cfg, &e), -ENOTSUP);
    config_free(&cfg);
    rm_rf(dir);
}

/* ------------------------------------------------------------------ */
/* the upstream stub process                                            */
/* ------------------------------------------------------------------ */

struct stub {
    pid_t pid;
    int port;
    char dir[64];
    char url[96];
};

#define STUB_MAX_ARGS 48

/* Stubs still running; a failed assertion skips stub_stop(), so the rest
 * are killed at exit (an orphan would keep meson's output pipe open). */
static pid_t stub_pids[8];

static void stub_kill_all(void)
{
    for (unsigned i = 0; i < ARRAY_SIZE(stub_pids); i++) {
        if (stub_pids[i] > 0) {
            kill(stub_pids[i], SIGTERM);
            waitpid(stub_pids[i], NULL, 0);
            stub_pids[i] = 0;
        }
    }
}

static void stub_track(pid_t pid, pid_t replace)
{
    for (unsigned i = 0; i < ARRAY_SIZE(stub_pids); i++) {
        if (stub_pids[i] == replace) {
            stub_pids[i] = pid;
            return;
        }
    }
}

static void stub_start(struct stub *s, const char *const *specs, const char *cert, const char *key)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/otlp-stub-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    char port_file[128], rec[128];
    snprintf(port_file, sizeof(port_file), "%s/port", s->dir);
    snprintf(rec, sizeof(rec), "%s/rec", s->dir);
    assert_int_equal(mkdir(rec, 0755), 0);
    const char *argv[STUB_MAX_ARGS];
    unsigned n = 0;
    argv[n++] = "python3";
    argv[n++] = "upstream_stub.py";
    argv[n++] = "--port-file";
    argv[n++] = port_file;
    argv[n++] = "--record-dir";
    argv[n++] = rec;
    for (unsigned i = 0; specs != NULL && specs[i] != NULL && n < STUB_MAX_ARGS - 6; i++) {
        argv[n++] = "--respond";
        argv[n++] = specs[i];
    }
    if (cert != NULL) {
        argv[n++] = "--tls";
        argv[n++] = cert;
        argv[n++] = key;
    }
    argv[n] = NULL;
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        execvp("python3", (char *const *)argv);
        _exit(127);
    }
    stub_track(s->pid, 0);
    for (int i = 0; i < 1000; i++) {
        FILE *f = fopen(port_file, "r");
        if (f != NULL) {
            int ok = fscanf(f, "%d", &s->port);
            fclose(f);
            if (ok == 1)
                break;
        }
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid)
            fail_msg("upstream_stub.py exited early (status %d)", st);
        sleep_ms(10);
    }
    assert_true(s->port > 0);
    snprintf(s->url, sizeof(s->url), "%s://127.0.0.1:%d", cert ? "https" : "http", s->port);
}

static void stub_stop(struct stub *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        stub_track(0, s->pid);
        s->pid = 0;
    }
    rm_rf(s->dir);
}

static unsigned stub_count(struct stub *s)
{
    unsigned n = 0;
    char path[160];
    for (;; n++) {
        snprintf(path, sizeof(path), "%s/rec/%04u.meta", s->dir, n);
        if (access(path, F_OK) < 0)
            return n;
    }
}

/* Meta text and body of request n (caller frees both). */
static char *stub_request(struct stub *s, unsigned n, char **body, size_t *body_len)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/rec/%04u.meta", s->dir, n);
    char *meta = read_whole(path, NULL);
    assert_non_null(meta);
    snprintf(path, sizeof(path), "%s/rec/%04u.body", s->dir, n);
    *body = read_whole(path, body_len);
    assert_non_null(*body);
    return meta;
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

static void http_cfg(struct svc_config *cfg, const char *url)
{
    config_defaults(cfg);
    cfg->exporter.protocol = EXPORTER_OTLP_HTTP;
    set_str(&cfg->exporter.endpoint, url);
    cfg->exporter.timeout_ms = 5000;
    cfg->batch.max_concurrent_exports = 4;
}

/* One batch through a fresh exporter against a stub answering `specs`. */
static struct export_result one_export(const char *const *specs, struct stub *s, bool keep)
{
    stub_start(s, specs, NULL, NULL);
    struct svc_config cfg;
    http_cfg(&cfg, s->url);
    struct exporter e;
    assert_int_equal(export_otlp_http_create(&cfg, &e), 0);
    struct batch b;
    make_batch(&b, OTLP_TRACES, 4);
    struct done_log l = {0};
    assert_int_equal(e.ops->submit(e.state, &b), 0);
    drive(&e, &l, 1, 10000);
    assert_int_equal(l.n, 1);
    assert_ptr_equal(l.b[0], &b);
    struct export_result r = l.r[0];
    exporter_destroy(&e);
    buf_free(&b.body);
    config_free(&cfg);
    if (!keep)
        stub_stop(s);
    return r;
}

/* ------------------------------------------------------------------ */
/* OTLP/HTTP exporter                                                   */
/* ------------------------------------------------------------------ */

static void test_http_paths_headers_gzip(void **state)
{
    (void)state;
    struct stub s;
    stub_start(&s, NULL, NULL, NULL);
    struct svc_config cfg;
    char url[128];
    snprintf(url, sizeof(url), "%s/otlp/?tenant=a", s.url); /* base path, slash, query */
    http_cfg(&cfg, url);
    cfg.exporter.compression = COMPRESSION_GZIP;
    cfg.exporter.headers.items[0].key = strdup("X-Api-Key");
    cfg.exporter.headers.items[0].value = strdup("s3cret");
    cfg.exporter.headers.items[1].key = strdup("X-Empty");
    cfg.exporter.headers.items[1].value = strdup("");
    cfg.exporter.headers.items[2].key = strdup("Content-Type"); /* ignored */
    cfg.exporter.headers.items[2].value = strdup("text/plain");
    cfg.exporter.headers.n = 3;

    struct exporter e;
    assert_int_equal(export_otlp_http_create(&cfg, &e), 0);
    struct batch b[OTLP_SIGNAL_COUNT + 1];
    for (unsigned i = 0; i < OTLP_SIGNAL_COUNT; i++)
        make_batch(&b[i], (enum otlp_signal)i, 3 + i);
    struct done_log l = {0};
    for (unsigned i = 0; i < OTLP_SIGNAL_COUNT; i++)
        assert_int_equal(e.ops->submit(e.state, &b[i]), 0);
    drive(&e, &l, OTLP_SIGNAL_COUNT, 10000);
    assert_int_equal(l.n, OTLP_SIGNAL_COUNT);
    for (unsigned i = 0; i < l.n; i++) {
        assert_int_equal(l.r[i].status, EXPORT_OK);
        assert_int_equal(l.r[i].http_status, 200);
        assert_int_equal(l.r[i].rejected_items, 0);
    }
    /* a fourth export rides on one of the kept-alive connections */
    make_batch(&b[3], OTLP_TRACES, 1);
    assert_int_equal(e.ops->submit(e.state, &b[3]), 0);
    drive(&e, &l, OTLP_SIGNAL_COUNT + 1, 10000);
    assert_int_equal(l.n, OTLP_SIGNAL_COUNT + 1);
    assert_int_equal(l.r[3].status, EXPORT_OK);
    assert_int_equal(stub_count(&s), 4);

    bool seen[OTLP_SIGNAL_COUNT] = {false};
    char ports[3][16];
    struct libdeflate_decompressor *dz = libdeflate_alloc_decompressor();
    for (unsigned n = 0; n < 4; n++) {
        char *body;
        size_t blen;
        char *meta = stub_request(&s, n, &body, &blen);
        assert_string_equal(meta_get(meta, "method"), "POST");
        const char *path = meta_get(meta, "path");
        int sig = -1;
        for (unsigned i = 0; i < OTLP_SIGNAL_COUNT; i++) {
            char want[64];
            snprintf(want, sizeof(want), "/otlp%s?tenant=a", otlp_signal_paths[i]);
            if (strcmp(path, want) == 0)
                sig = (int)i;
        }
        assert_true(sig >= 0);
        assert_string_equal(meta_get(meta, "h content-type:"), "application/x-protobuf");
        assert_string_equal(meta_get(meta, "h content-encoding:"), "gzip");
        assert_string_equal(meta_get(meta, "h user-agent:"), "otlp-service/" OTLP_SERVICE_VERSION);
        assert_string_equal(meta_get(meta, "h x-api-key:"), "s3cret");
        assert_non_null(strstr(meta, "h x-empty:"));
        assert_null(strstr(meta, "text/plain"));
        assert_null(meta_get(meta, "h expect:"));
        struct batch *want = n < 3 ? NULL : &b[3];
        if (want == NULL) {
            seen[sig] = true;
            want = &b[sig];
            snprintf(ports[n], sizeof(ports[n]), "%s", meta_get(meta, "client_port"));
        } else {
            const char *port = meta_get(meta, "client_port");
            assert_true(strcmp(port, ports[0]) == 0 || strcmp(port, ports[1]) == 0 ||
                        strcmp(port, ports[2]) == 0);
        }
        uint8_t out[4096];
        size_t out_len = 0;
        assert_int_equal(libdeflate_gzip_decompress(dz, body, blen, out, sizeof(out), &out_len),
                         LIBDEFLATE_SUCCESS);
        assert_int_equal(out_len, want->body.len);
        assert_memory_equal(out, want->body.data, out_len);
        free(meta);
        free(body);
    }
    libdeflate_free_decompressor(dz);
    for (unsigned i = 0; i < OTLP_SIGNAL_COUNT; i++)
        assert_true(seen[i]);
    exporter_destroy(&e);
    for (unsigned i = 0; i < 4; i++)
        buf_free(&b[i].body);
    config_free(&cfg);
    stub_stop(&s);
}

static void test_http_no_compression_exact_body(void **state)
{
    (void)state;
    struct stub s;
    stub_start(&s, NULL, NULL, NULL);
    struct svc_config cfg;
    http_cfg(&cfg, s.url);
    cfg.exporter.compression = COMPRESSION_NONE;
    struct exporter e;
    assert_int_equal(export_otlp_http_create(&cfg, &e), 0);
    struct batch b;
    make_batch(&b, OTLP_LOGS, 2);
    struct done_log l = {0};
    assert_int_equal(e.ops->submit(e.state, &b), 0);
    drive(&e, &l, 1, 10000);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.r[0].status, EXPORT_OK);
    char *body;
    size_t blen;
    char *meta = stub_request(&s, 0, &body, &blen);
    assert_string_equal(meta_get(meta, "path"), "/v1/logs");
    assert_null(meta_get(meta, "h content-encoding:"));
    assert_int_equal(blen, b.body.len);
    assert_memory_equal(body, b.body.data, blen);
    free(meta);
    free(body);
    exporter_destroy(&e);
    buf_free(&b.body);
    config_free(&cfg);
    stub_stop(&s);
}

static void test_http_partial_success(void **state)
{
    (void)state;
    struct stub s;
    const char *specs[] = {"200;partial=3;msg=3 spans too old", NULL};
    struct export_result r = one_export(specs, &s, false);
    assert_int_equal(r.status, EXPORT_OK);
    assert_int_equal(r.http_status, 200);
    assert_int_equal(r.rejected_items, 3);
    assert_string_equal(r.message, "3 spans too old");
}

static void test_http_permanent_statuses(void **state)
{
    (void)state;
    struct stub s;
    struct export_result r;
    const char *s400[] = {"400;msg=invalid trace id", NULL};
    r = one_export(s400, &s, false);
    assert_int_equal(r.status, EXPORT_PERMANENT);
    assert_int_equal(r.http_status, 400);
    assert_string_equal(r.reason, "http_400");
    assert_string_equal(r.message, "invalid trace id");
    /* OTLP spec: only 429, 502, 503, 504 are retryable */
    const char *const codes[] = {"401;text=unauthorized", "403", "404", "413", "500", NULL};
    const int want[] = {401, 403, 404, 413, 500};
    for (unsigned i = 0; codes[i]; i++) {
        const char *spec[] = {codes[i], NULL};
        r = one_export(spec, &s, false);
        assert_int_equal(r.status, EXPORT_PERMANENT);
        assert_int_equal(r.http_status, want[i]);
        char reason[16];
        snprintf(reason, sizeof(reason), "http_%d", want[i]);
        assert_string_equal(r.reason, reason);
        assert_int_equal(r.retry_after_ms, 0);
    }
    const char *s401[] = {"401;text=unauthorized", NULL};
    r = one_export(s401, &s, false);
    assert_string_equal(r.message, "unauthorized");
}

static void test_http_retryable_statuses(void **state)
{
    (void)state;
    struct stub s;
    struct export_result r;
    const char *s503[] = {"503;retry-after=7", NULL};
    r = one_export(s503, &s, false);
    assert_int_equal(r.status, EXPORT_RETRYABLE);
    assert_int_equal(r.http_status, 503);
    assert_string_equal(r.reason, "http_503");
    assert_int_equal(r.retry_after_ms, 7000);

    /* 429 with an HTTP-date about 30 s ahead */
    char spec429[96], date[40];
    time_t t = time(NULL) + 30;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(spec429, sizeof(spec429), "429;retry-after=%s", date);
    const char *s429[] = {spec429, NULL};
    r = one_export(s429, &s, false);
    assert_int_equal(r.status, EXPORT_RETRYABLE);
    assert_int_equal(r.http_status, 429);
    assert_in_range(r.retry_after_ms, 28000, 30000);

    const char *s502[] = {"502", NULL};
    r = one_export(s502, &s, false);
    assert_int_equal(r.status, EXPORT_RETRYABLE);
    assert_int_equal(r.retry_after_ms, 0);
    const char *s504[] = {"504;retry-after=garbage", NULL};
    r = one_export(s504, &s, false);
    assert_int_equal(r.status, EXPORT_RETRYABLE);
    assert_string_equal(r.reason, "http_504");
    assert_int_equal(r.retry_after_ms, 0);
}

static void test_http_connection_refused(void **state)
{
    (void)state;
    /* a bound socket that does not listen: connect() is refused */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(a.sin_port));
    struct svc_config cfg;
    http_cfg(&cfg, url);
    struct exporter e;
    assert_int_equal(export_otlp_http_create(&cfg, &e), 0);
    struct batch b;
    make_batch(&b, OTLP_METRICS, 1);
    struct done_log l = {0};
    assert_int_equal(e.ops->submit(e.state, &b), 0);
    drive(&e, &l, 1, 10000);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.r[0].status, EXPORT_RETRYABLE);
    assert_int_equal(l.r[0].http_status, 0);
    assert_string_equal(l.r[0].reason, "connect_failed");
    assert_true(l.r[0].message[0] != '\0');
    exporter_destroy(&e);
    buf_free(&b.body);
    config_free(&cfg);
    close(fd);
}

static void test_http_timeout(void **state)
{
    (void)state;
    struct stub s;
    const char *specs[] = {"200;delay=5", NULL};
    stub_start(&s, specs, NULL, NULL);
    struct svc_config cfg;
    http_cfg(&cfg, s.url);
    cfg.exporter.timeout_ms = 300;
    struct exporter e;
    assert_int_equal(export_otlp_http_create(&cfg, &e), 0);
    struct batch b;
    make_batch(&b, OTLP_TRACES, 1);
    struct done_log l = {0};
    uint64_t t0 = base_now_ms();
    assert_int_equal(e.ops->submit(e.state, &b), 0);
    drive(&e, &l, 1, 10000);
    uint64_t took = base_now_ms() - t0;
    assert_int_equal(l.n, 1);
    assert_int_equal(l.r[0].status, EXPORT_RETRYABLE);
    assert_string_equal(l.r[0].reason, "timeout");
    assert_in_range(took, 250, 3000);
    exporter_destroy(&e);
    buf_free(&b.body);
    config_free(&cfg);
    stub_stop(&s);
}

static void test_http_concurrency_and_busy(void **state)
{
    (void)state;
    struct stub s;
    const char *specs[] = {"200;delay=0.4", NULL};
    stub_start(&s, specs, NULL, NULL);
    struct svc_config cfg;
    http_cfg(&cfg, s.url);
    cfg.batch.max_concurrent_exports = 3;
    struct exporter e;
    assert_int_equal(export_otlp_http_create(&cfg, &e), 0);
    struct batch b[4];
    for (unsigned i = 0; i < 4; i++)
        make_batch(&b[i], OTLP_TRACES, 1);
    uint64_t t0 = base_now_ms();
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(e.ops->submit(e.state, &b[i]), 0);
    assert_int_equal(e.ops->submit(e.state, &b[3]), -EBUSY);
    struct done_log l = {0};
    drive(&e, &l, 3, 10000);
    assert_int_equal(l.n, 3);
    /* in parallel: well under 3 x 0.4 s */
    assert_true(base_now_ms() - t0 < 1100);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(result_of(&l, &b[i])->status, EXPORT_OK);
    exporter_destroy(&e);
    for (unsigned i = 0; i < 4; i++)
        buf_free(&b[i].body);
    config_free(&cfg);
    stub_stop(&s);
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

/* poll() ends early on wakeup() from another thread, and a wakeup before
 * poll() is not lost. */
static void check_wakeup(struct exporter *e)
{
    struct done_log l = {0};
    e->ops->wakeup(e->state);
    uint64_t t0 = base_now_ms();
    assert_int_equal(e->ops->poll(e->state, 5000, on_done, &l), 0);
    assert_true(base_now_ms() - t0 < 1000);

    pthread_t th;
    struct wake_arg w = {e, 100};
    t0 = base_now_ms();
    assert_int_equal(pthread_create(&th, NULL, wake_thread, &w), 0);
    assert_int_equal(e->ops->poll(e->state, 5000, on_done, &l), 0);
    uint64_t took = base_now_ms() - t0;
    pthread_join(th, NULL);
    assert_true(took < 2000);
    /* and a plain timeout still waits */
    t0 = base_now_ms();
    assert_int_equal(e->ops->poll(e->state, 150, on_done, &l), 0);
    assert_true(base_now_ms() - t0 >= 100);
}

static void test_http_wakeup(void **state)
{
    (void)state;
    struct svc_config cfg;
    http_cfg(&cfg, "http://127.0.0.1:9");
    struct exporter e;
    assert_int_equal(export_otlp_http_create(&cfg, &e), 0);
    check_wakeup(&e);
    exporter_destroy(&e);
    config_free(&cfg);
}

/* Destroy with a transfer in flight: no done(), no leak (ASan). */
static void test_http_destroy_in_flight(void **state)
{
    (void)state;
    struct stub s;
    const char *specs[] = {"200;delay=3", NULL};
    stub_start(&s, specs, NULL, NULL);
    struct svc_config cfg;
    http_cfg(&cfg, s.url);
    cfg.exporter.compression = COMPRESSION_GZIP;
    struct exporter e;
    assert_int_equal(export_otlp_http_create(&cfg, &e), 0);
    struct batch b;
    make_batch(&b, OTLP_TRACES, 1);
    struct done_log l = {0};
    assert_int_equal(e.ops->submit(e.state, &b), 0);
    drive(&e, &l, 1, 200);
    assert_int_equal(l.n, 0);
    exporter_destroy(&e);
    buf_free(&b.body);
    config_free(&cfg);
    stub_stop(&s);
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

static void test_http_tls(void **state)
{
    (void)state;
    char dir[] = "/tmp/otlp-export-tls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cert[128], key[128];
    if (make_cert(dir, cert, key, sizeof(cert)) != 0) {
        rm_rf(dir);
        skip();
    }
    struct stub s;
    stub_start(&s, NULL, cert, key);
    struct batch b;
    make_batch(&b, OTLP_TRACES, 2);
    struct {
        const char *server_name;
        bool insecure;
        enum export_status want;
        const char *reason;
    } cases[] = {
        {"upstream.test", false, EXPORT_OK, ""},    /* SNI + verification by name */
        {"", false, EXPORT_RETRYABLE, "tls_error"}, /* 127.0.0.1 is not in the cert */
        {"", true, EXPORT_OK, ""},                  /* insecure skips verification */
    };
    for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
        struct svc_config cfg;
        http_cfg(&cfg, s.url);
        set_str(&cfg.exporter.tls.ca_file, cert);
        set_str(&cfg.exporter.tls.server_name, cases[i].server_name);
        cfg.exporter.tls.insecure = cases[i].insecure;
        struct exporter e;
        assert_int_equal(export_otlp_http_create(&cfg, &e), 0);
        struct done_log l = {0};
        assert_int_equal(e.ops->submit(e.state, &b), 0);
        drive(&e, &l, 1, 10000);
        assert_int_equal(l.n, 1);
        assert_int_equal(l.r[0].status, cases[i].want);
        assert_string_equal(l.r[0].reason, cases[i].reason);
        exporter_destroy(&e);
        config_free(&cfg);
    }
    /* the first request carried SNI upstream.test and Host upstream.test */
    char *body;
    size_t blen;
    char *meta = stub_request(&s, 0, &body, &blen);
    assert_string_equal(meta_get(meta, "sni"), "upstream.test");
    char host[64];
    snprintf(host, sizeof(host), "upstream.test:%d", s.port);
    assert_string_equal(meta_get(meta, "h host:"), host);
    assert_true(blen > 0);
    free(meta);
    free(body);
    buf_free(&b.body);
    stub_stop(&s);
    rm_rf(dir);
}

/* ------------------------------------------------------------------ */
/* file exporter                                                        */
/* ------------------------------------------------------------------ */

static void file_cfg(struct svc_config *cfg, const char *path)
{
    config_defaults(cfg);
    set_str(&cfg->exporter.file.path, path);
    cfg->batch.max_concurrent_exports = 4;
}

static unsigned count_lines_json(const char *path, const char *key)
{
    char *text = read_whole(path, NULL);
    assert_non_null(text);
    unsigned n = 0;
    for (char *line = text, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        assert_non_null(nl); /* every line is complete */
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)(nl - line), 0, &err);
        if (j == NULL)
            fail_msg("invalid JSON line in %s: %s", path, err.text);
        assert_non_null(json_object_get(j, key));
        json_decref(j);
        n++;
    }
    free(text);
    return n;
}

static void test_file_lines_are_otlp_json(void **state)
{
    (void)state;
    char dir[] = "/tmp/otlp-export-file-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[128];
    snprintf(sub, sizeof(sub), "%s/a/b/", dir); /* created with parents */
    struct svc_config cfg;
    file_cfg(&cfg, sub);
    struct exporter e;
    assert_int_equal(export_file_create(&cfg, &e), 0);
    struct batch b[OTLP_SIGNAL_COUNT * 2];
    struct done_log l = {0};
    for (unsigned round = 0; round < 2; round++) {
        for (unsigned i = 0; i < OTLP_SIGNAL_COUNT; i++) {
            struct batch *x = &b[round * OTLP_SIGNAL_COUNT + i];
            make_batch(x, (enum otlp_signal)i, 2);
            assert_int_equal(e.ops->submit(e.state, x), 0);
        }
        drive(&e, &l, (round + 1) * OTLP_SIGNAL_COUNT, 2000);
    }
    assert_int_equal(l.n, 2 * OTLP_SIGNAL_COUNT);
    for (unsigned i = 0; i < l.n; i++)
        assert_int_equal(l.r[i].status, EXPORT_OK);
    static const char *const keys[] = {"resourceSpans", "resourceMetrics", "resourceLogs"};
    for (unsigned i = 0; i < OTLP_SIGNAL_COUNT; i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/a/b/%s.jsonl", dir, otlp_signal_names[i]);
        assert_int_equal(count_lines_json(path, keys[i]), 2);
    }
    /* spot-check the content: hex ids as the OTLP JSON encoding wants */
    char path[256];
    snprintf(path, sizeof(path), "%s/a/b/traces.jsonl", dir);
    char *text = read_whole(path, NULL);
    assert_non_null(strstr(text, "\"traceId\":\"11111111111111111111111111111111\""));
    assert_non_null(strstr(text, "\"service.name\""));
    free(text);

    /* a body that is not protobuf: permanent */
    struct batch bad = {.signal = OTLP_TRACES, .items = 1};
    assert_int_equal(buf_init(&bad.body, 8, 0), 0);
    assert_int_equal(buf_append(&bad.body, "\x0a\xff\xff", 3), 0);
    assert_int_equal(e.ops->submit(e.state, &bad), 0);
    drive(&e, &l, l.n + 1, 2000);
    assert_int_equal(l.r[l.n - 1].status, EXPORT_PERMANENT);
    assert_string_equal(l.r[l.n - 1].reason, "encode_error");
    assert_int_equal(count_lines_json(path, keys[0]), 2); /* nothing written */
    struct batch badsig = {.signal = (enum otlp_signal)9};
    assert_int_equal(e.ops->submit(e.state, &badsig), -EINVAL);

    check_wakeup(&e);
    exporter_destroy(&e);
    for (unsigned i = 0; i < ARRAY_SIZE(b); i++)
        buf_free(&b[i].body);
    buf_free(&bad.body);
    config_free(&cfg);
    rm_rf(dir);
}

static void test_file_busy(void **state)
{
    (void)state;
    char dir[] = "/tmp/otlp-export-file-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct svc_config cfg;
    file_cfg(&cfg, dir);
    cfg.batch.max_concurrent_exports = 2;
    struct exporter e;
    assert_int_equal(export_file_create(&cfg, &e), 0);
    struct batch b[3];
    for (unsigned i = 0; i < 3; i++)
        make_batch(&b[i], OTLP_LOGS, 1);
    assert_int_equal(e.ops->submit(e.state, &b[0]), 0);
    assert_int_equal(e.ops->submit(e.state, &b[1]), 0);
    assert_int_equal(e.ops->submit(e.state, &b[2]), -EBUSY);
    struct done_log l = {0};
    /* completions come on the next poll, without waiting */
    uint64_t t0 = base_now_ms();
    assert_int_equal(e.ops->poll(e.state, 5000, on_done, &l), 2);
    assert_true(base_now_ms() - t0 < 1000);
    assert_ptr_equal(l.b[0], &b[0]);
    assert_ptr_equal(l.b[1], &b[1]);
    exporter_destroy(&e);
    for (unsigned i = 0; i < 3; i++)
        buf_free(&b[i].body);
    config_free(&cfg);
    rm_rf(dir);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Rotated files of `sig` in dir, sorted (caller frees). */
static unsigned list_rotated(const char *dir, const char *sig, char **names, unsigned max)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    unsigned n = 0;
    struct dirent *de;
    size_t sl = strlen(sig);
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, sig, sl) == 0 && de->d_name[sl] == '-') {
            assert_true(n < max);
            names[n++] = strdup(de->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_str);
    return n;
}

static void test_file_rotation(void **state)
{
    (void)state;
    char dir[] = "/tmp/otlp-export-rot-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct svc_config cfg;
    file_cfg(&cfg, dir);
    cfg.batch.max_concurrent_exports = 1;
    cfg.exporter.file.max_files = 3;
    struct exporter e;
    /* measure one line */
    struct batch b;
    make_batch(&b, OTLP_TRACES, 3);
    {
        char probe[160];
        snprintf(probe, sizeof(probe), "%s/probe", dir);
        struct svc_config pc;
        file_cfg(&pc, probe);
        assert_int_equal(export_file_create(&pc, &e), 0);
        struct done_log l = {0};
        assert_int_equal(e.ops->submit(e.state, &b), 0);
        drive(&e, &l, 1, 1000);
        exporter_destroy(&e);
        config_free(&pc);
        char path[200];
        snprintf(path, sizeof(path), "%s/traces.jsonl", probe);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        cfg.exporter.file.max_file_bytes = (uint64_t)st.st_size * 2 + st.st_size / 2;
        rm_rf(probe);
    }
    /* a leftover from an earlier run is appended to, and a file that is not
     * ours is never deleted */
    char path[200];
    snprintf(path, sizeof(path), "%s/traces-notes.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);

    assert_int_equal(export_file_create(&cfg, &e), 0);
    struct done_log l = {0};
    const unsigned total = 11; /* 2 lines per file: 5 full files + 1 line */
    for (unsigned i = 0; i < total; i++) {
        assert_int_equal(e.ops->submit(e.state, &b), 0);
        drive(&e, &l, i + 1, 1000);
        assert_int_equal(l.r[i].status, EXPORT_OK);
    }
    snprintf(path, sizeof(path), "%s/traces.jsonl", dir);
    assert_int_equal(count_lines_json(path, "resourceSpans"), 1);
    char *names[32];
    unsigned n = list_rotated(dir, "traces", names, 32);
    /* 3 rotated .jsonl files + the foreign file */
    assert_int_equal(n, 4);
    assert_string_equal(names[3], "traces-notes.txt");
    for (unsigned i = 0; i < 3; i++) {
        /* traces-YYYYmmddTHHMMSS.mmmZ.jsonl */
        assert_int_equal(strlen(names[i]), strlen("traces-20240101T000000.000Z.jsonl"));
        assert_int_equal(names[i][15], 'T');
        assert_string_equal(names[i] + strlen(names[i]) - 7, "Z.jsonl");
        char rp[256];
        snprintf(rp, sizeof(rp), "%s/%s", dir, names[i]);
        assert_int_equal(count_lines_json(rp, "resourceSpans"), 2);
        if (i > 0)
            assert_true(strcmp(names[i - 1], names[i]) < 0);
    }
    for (unsigned i = 0; i < n; i++)
        free(names[i]);
    exporter_destroy(&e);

    /* a restart appends to the existing current file */
    assert_int_equal(export_file_create(&cfg, &e), 0);
    struct done_log l2 = {0};
    assert_int_equal(e.ops->submit(e.state, &b), 0);
    drive(&e, &l2, 1, 1000);
    assert_int_equal(count_lines_json(path, "resourceSpans"), 2);
    exporter_destroy(&e);
    buf_free(&b.body);
    config_free(&cfg);
    rm_rf(dir);
}

static void test_file_io_errors(void **state)
{
    (void)state;
    char dir[] = "/tmp/otlp-export-io-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct svc_config cfg;
    /* data_dir default: <data_dir>/export */
    config_defaults(&cfg);
    set_str(&cfg.exporter.file.path, "");
    set_str(&cfg.service.data_dir, dir);
    struct exporter e;
    assert_int_equal(export_file_create(&cfg, &e), 0);
    char exp_dir[160];
    snprintf(exp_dir, sizeof(exp_dir), "%s/export", dir);
    struct stat st;
    assert_int_equal(stat(exp_dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));

    /* the directory turns into a regular file: io_error, retryable */
    assert_int_equal(rmdir(exp_dir), 0);
    FILE *f = fopen(exp_dir, "w");
    assert_non_null(f);
    fclose(f);
    struct batch b;
    make_batch(&b, OTLP_METRICS, 2);
    struct done_log l = {0};
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(e.ops->submit(e.state, &b), 0);
        drive(&e, &l, i + 1, 1000);
        assert_int_equal(l.r[i].status, EXPORT_RETRYABLE);
        assert_string_equal(l.r[i].reason, "io_error");
    }
    /* removed altogether: recreated on the next write */
    assert_int_equal(unlink(exp_dir), 0);
    assert_int_equal(e.ops->submit(e.state, &b), 0);
    drive(&e, &l, 4, 1000);
    assert_int_equal(l.r[3].status, EXPORT_OK);
    char path[200];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", exp_dir);
    assert_int_equal(count_lines_json(path, "resourceMetrics"), 1);
    exporter_destroy(&e);

    /* create fails: a path below a regular file; no path and no data_dir */
    char bad[200];
    snprintf(bad, sizeof(bad), "%s/export/metrics.jsonl/x", dir);
    set_str(&cfg.exporter.file.path, bad);
    assert_int_equal(export_file_create(&cfg, &e), -ENOTDIR);
    set_str(&cfg.exporter.file.path, "");
    set_str(&cfg.service.data_dir, "");
    assert_int_equal(export_file_create(&cfg, &e), -EINVAL);
    buf_free(&b.body);
    config_free(&cfg);
    rm_rf(dir);
}

/* ------------------------------------------------------------------ */
/* runner on a real pipeline                                            */
/* ------------------------------------------------------------------ */

/* A scripted exporter: completes every submitted batch on the next poll
 * with the next status of its script (the last one repeats), or never when
 * `hang`. */
struct fake {
    enum export_status script[16];
    unsigned n_script, pos;
    uint32_t retry_after_ms;
    uint64_t rejected;
    bool hang;
    struct batch *pending[16];
    unsigned n_pending;
    _Atomic unsigned submits;
    _Atomic unsigned destroyed;
};

static int fake_submit(void *st, struct batch *b)
{
    struct fake *f = st;
    if (f->n_pending == 16)
        return -EBUSY;
    f->pending[f->n_pending++] = b;
    f->submits++;
    return 0;
}

static int fake_poll(void *st, int timeout_ms, export_done_fn done, void *arg)
{
    struct fake *f = st;
    if (f->hang || f->n_pending == 0) {
        sleep_ms((unsigned)BASE_MIN(timeout_ms, 2));
        return 0;
    }
    unsigned n = f->n_pending;
    struct batch *b[16];
    memcpy(b, f->pending, n * sizeof(*b));
    f->n_pending = 0;
    for (unsigned i = 0; i < n; i++) {
        struct export_result r = {0};
        r.status = f->script[BASE_MIN(f->pos, f->n_script - 1)];
        f->pos++;
        if (r.status == EXPORT_OK) {
            r.http_status = 200;
            r.rejected_items = f->rejected;
        } else {
            r.http_status = r.status == EXPORT_RETRYABLE ? 503 : 400;
            r.retry_after_ms = f->retry_after_ms;
            snprintf(r.reason, sizeof(r.reason), "http_%d", r.http_status);
        }
        done(arg, b[i], &r);
    }
    return (int)n;
}

static void fake_wakeup(void *st)
{
    (void)st;
}

static void fake_destroy(void *st)
{
    struct fake *f = st;
    f->destroyed++;
}

static const struct exporter_ops fake_ops = {
    .name = "fake",
    .submit = fake_submit,
    .poll = fake_poll,
    .wakeup = fake_wakeup,
    .destroy = fake_destroy,
};

struct rig {
    struct svc_config cfg;
    struct pipeline *p;
    struct obs_registry *reg;
    struct export_runner *r;
    struct fake fake;
    struct buf req[OTLP_SIGNAL_COUNT];
};

static void rig_setup(struct rig *g)
{
    memset(g, 0, sizeof(*g));
    config_defaults(&g->cfg);
    g->cfg.batch.max_concurrent_exports = 2;
    g->cfg.batch.max_queue_size = 1000;
    g->cfg.batch.max_export_batch_size = 100;
    g->cfg.receiver.max_decompressed_bytes = 64 * 1024;
    g->cfg.batch.max_batch_bytes = 64 * 1024;
    g->cfg.exporter.retry.initial_interval_ms = 5;
    g->cfg.exporter.retry.max_interval_ms = 20;
    g->cfg.exporter.retry.randomization = 0;
    g->cfg.exporter.retry.max_elapsed_ms = 10000;
    assert_int_equal(pipeline_create(&g->cfg, 1, &g->p), 0);
    assert_int_equal(obs_registry_create(2, 4096, &g->reg), 0);
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++)
        make_request((enum otlp_signal)s, 1, &g->req[s]);
    health_reset();
}

static void rig_fake_runner(struct rig *g, enum export_status st)
{
    g->fake.script[0] = st;
    g->fake.n_script = 1;
    struct exporter ex = {&fake_ops, &g->fake};
    assert_int_equal(export_runner_create_with(&g->cfg, g->p, g->reg, 1, &ex, &g->r), 0);
    assert_null(ex.ops); /* ownership moved */
}

/* A worker's part: one batch of `sig` holding `n` requests of one item. */
static void produce(struct rig *g, enum otlp_signal sig, unsigned n)
{
    struct batch *b = pipeline_open_batch(g->p, 0, sig);
    assert_non_null(b);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(pipeline_admit(g->p, 0, 1), 0);
        assert_int_equal(buf_append(&b->body, g->req[sig].data, g->req[sig].len), 0);
        pipeline_commit(g->p, 0, sig, 1);
    }
    pipeline_flush(g->p, 0, sig);
}

static double metric(struct rig *g, const char *series)
{
    struct buf out;
    assert_int_equal(buf_init(&out, 1 << 16, 0), 0);
    assert_int_equal(obs_render_prometheus(g->reg, &out), 0);
    assert_int_equal(buf_append(&out, "", 1), 0);
    double v = -1;
    size_t sl = strlen(series);
    for (char *line = (char *)out.data; line && *line;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, series, sl) == 0 && line[sl] == ' ') {
            v = strtod(line + sl + 1, NULL);
            break;
        }
        line = nl ? nl + 1 : NULL;
    }
    buf_free(&out);
    return v;
}

static bool wait_metric(struct rig *g, const char *series, double want, unsigned max_ms)
{
    uint64_t end = base_now_ms() + max_ms;
    do {
        if (metric(g, series) == want)
            return true;
        sleep_ms(5);
    } while (base_now_ms() < end);
    return false;
}

static bool exporter_healthy(void)
{
    struct buf out;
    assert_int_equal(buf_init(&out, 4096, 0), 0);
    assert_int_equal(health_render_json(&out), 0);
    assert_int_equal(buf_append(&out, "", 1), 0);
    json_t *j = json_loads((const char *)out.data, 0, NULL);
    assert_non_null(j);
    json_t *ok =
        json_object_get(json_object_get(json_object_get(j, "components"), "exporter"), "ok");
    assert_non_null(ok);
    bool v = json_is_true(ok);
    json_decref(j);
    buf_free(&out);
    return v;
}

static void rig_teardown(struct rig *g)
{
    export_runner_destroy(g->r);
    /* every batch went back to the pool */
    assert_int_equal(pipeline_queued_items(g->p), 0);
    pipeline_destroy(g->p);
    obs_registry_destroy(g->reg);
    config_free(&g->cfg);
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++)
        buf_free(&g->req[s]);
}

static void test_runner_file_end_to_end(void **state)
{
    (void)state;
    struct rig g;
    rig_setup(&g);
    char dir[] = "/tmp/otlp-export-run-XXXXXX";
    assert_non_null(mkdtemp(dir));
    set_str(&g.cfg.exporter.file.path, dir);
    assert_int_equal(export_runner_create(&g.cfg, g.p, g.reg, 1, &g.r), 0);
    assert_true(exporter_healthy());
    assert_int_equal(export_runner_start(g.r), 0);
    assert_int_equal(export_runner_start(g.r), -EALREADY);
    produce(&g, OTLP_TRACES, 5);
    produce(&g, OTLP_METRICS, 3);
    produce(&g, OTLP_LOGS, 2);
    assert_true(wait_metric(&g, "otlp_spans_exported_total", 5, 5000));
    assert_true(wait_metric(&g, "otlp_log_records_exported_total", 2, 5000));
    produce(&g, OTLP_TRACES, 4); /* queued right before stop: still exported */
    export_runner_stop(g.r, base_now_ms() + 5000);
    assert_int_equal(metric(&g, "otlp_spans_exported_total"), 9);
    assert_int_equal(metric(&g, "otlp_metric_points_exported_total"), 3);
    assert_int_equal(metric(&g, "otlp_log_records_exported_total"), 2);
    assert_int_equal(metric(&g, "otlp_export_requests_total{signal=\"traces\",result=\"success\"}"),
                     2);
    assert_int_equal(metric(&g, "otlp_export_duration_seconds_count{signal=\"traces\"}"), 2);
    assert_int_equal(metric(&g, "otlp_spans_dropped_total{reason=\"shutdown\"}"), 0);
    assert_int_equal(metric(&g, "otlp_export_in_flight"), 0);
    assert_int_equal(metric(&g, "otlp_export_retry_queue"), 0);
    char path[160];
    snprintf(path, sizeof(path), "%s/traces.jsonl", dir);
    assert_int_equal(count_lines_json(path, "resourceSpans"), 2);
    export_runner_stop(g.r, 0); /* twice: no-op */
    rig_teardown(&g);
    rm_rf(dir);
}

static void test_runner_retry_then_success(void **state)
{
    (void)state;
    struct rig g;
    rig_setup(&g);
    g.fake.script[0] = EXPORT_RETRYABLE;
    g.fake.script[1] = EXPORT_RETRYABLE;
    g.fake.script[2] = EXPORT_OK;
    g.fake.n_script = 3;
    g.fake.rejected = 1;
    struct exporter ex = {&fake_ops, &g.fake};
    assert_int_equal(export_runner_create_with(&g.cfg, g.p, g.reg, 1, &ex, &g.r), 0);
    assert_int_equal(export_runner_start(g.r), 0);
    produce(&g, OTLP_TRACES, 4);
    assert_true(wait_metric(&g, "otlp_spans_exported_total", 3, 5000));
    export_runner_stop(g.r, base_now_ms() + 1000);
    assert_int_equal(g.fake.submits, 3);
    assert_int_equal(metric(&g, "otlp_export_requests_total{signal=\"traces\",result=\"retry\"}"),
                     2);
    assert_int_equal(metric(&g, "otlp_export_requests_total{signal=\"traces\",result=\"success\"}"),
                     1);
    assert_int_equal(metric(&g, "otlp_spans_dropped_total{reason=\"upstream_partial\"}"), 1);
    assert_true(exporter_healthy());
    rig_teardown(&g);
    assert_int_equal(g.fake.destroyed, 1);
}

static void test_runner_retry_after_honoured(void **state)
{
    (void)state;
    struct rig g;
    rig_setup(&g);
    g.fake.script[0] = EXPORT_RETRYABLE;
    g.fake.script[1] = EXPORT_OK;
    g.fake.n_script = 2;
    g.fake.retry_after_ms = 300; /* far above the 5 ms backoff */
    struct exporter ex = {&fake_ops, &g.fake};
    assert_int_equal(export_runner_create_with(&g.cfg, g.p, g.reg, 1, &ex, &g.r), 0);
    assert_int_equal(export_runner_start(g.r), 0);
    uint64_t t0 = base_now_ms();
    produce(&g, OTLP_LOGS, 1);
    assert_true(wait_metric(&g, "otlp_export_retry_queue", 1, 2000));
    assert_true(wait_metric(&g, "otlp_log_records_exported_total", 1, 5000));
    assert_true(base_now_ms() - t0 >= 290);
    rig_teardown(&g);
}

static void test_runner_permanent_and_health(void **state)
{
    (void)state;
    struct rig g;
    rig_setup(&g);
    rig_fake_runner(&g, EXPORT_PERMANENT);
    assert_int_equal(export_runner_start(g.r), 0);
    for (unsigned i = 0; i < EXPORT_UNHEALTHY_AFTER_DROPS - 1; i++)
        produce(&g, OTLP_METRICS, 2);
    assert_true(wait_metric(&g, "otlp_metric_points_dropped_total{reason=\"upstream_rejected\"}",
                            2 * (EXPORT_UNHEALTHY_AFTER_DROPS - 1), 5000));
    assert_true(exporter_healthy());
    produce(&g, OTLP_METRICS, 2);
    assert_true(wait_metric(&g, "otlp_metric_points_dropped_total{reason=\"upstream_rejected\"}",
                            2 * EXPORT_UNHEALTHY_AFTER_DROPS, 5000));
    assert_false(exporter_healthy());
    assert_int_equal(g.fake.submits, EXPORT_UNHEALTHY_AFTER_DROPS); /* never retried */
    assert_int_equal(metric(&g, "otlp_export_requests_total{signal=\"metrics\",result=\"failed\"}"),
                     EXPORT_UNHEALTHY_AFTER_DROPS);
    /* the next success makes it healthy again */
    g.fake.script[0] = EXPORT_OK; /* fake is only touched by the export thread in poll */
    produce(&g, OTLP_METRICS, 1);
    assert_true(wait_metric(&g, "otlp_metric_points_exported_total", 1, 5000));
    assert_true(exporter_healthy());
    rig_teardown(&g);
}

static void test_runner_retries_exhausted(void **state)
{
    (void)state;
    struct rig g;
    rig_setup(&g);
    g.cfg.exporter.retry.max_elapsed_ms = 60;
    rig_fake_runner(&g, EXPORT_RETRYABLE);
    assert_int_equal(export_runner_start(g.r), 0);
    produce(&g, OTLP_TRACES, 3);
    assert_true(wait_metric(&g, "otlp_spans_dropped_total{reason=\"retries_exhausted\"}", 3, 5000));
    /* 5, 10, 20, 20 ms... within 60 ms: a handful of attempts */
    assert_in_range(g.fake.submits, 3, 8);
    assert_int_equal(metric(&g, "otlp_export_requests_total{signal=\"traces\",result=\"failed\"}"),
                     1);
    rig_teardown(&g);
}

static void test_runner_retry_disabled(void **state)
{
    (void)state;
    struct rig g;
    rig_setup(&g);
    g.cfg.exporter.retry.enabled = false;
    rig_fake_runner(&g, EXPORT_RETRYABLE);
    assert_int_equal(export_runner_start(g.r), 0);
    produce(&g, OTLP_LOGS, 2);
    assert_true(
        wait_metric(&g, "otlp_log_records_dropped_total{reason=\"retry_disabled\"}", 2, 5000));
    assert_int_equal(g.fake.submits, 1);
    rig_teardown(&g);
}

static void test_runner_shutdown_deadline(void **state)
{
    (void)state;
    struct rig g;
    rig_setup(&g);
    rig_fake_runner(&g, EXPORT_OK);
    g.fake.hang = true; /* nothing ever completes */
    assert_int_equal(export_runner_start(g.r), 0);
    for (unsigned i = 0; i < 5; i++)
        produce(&g, OTLP_TRACES, 2);
    assert_true(wait_metric(&g, "otlp_export_in_flight", 2, 5000));
    uint64_t t0 = base_now_ms();
    export_runner_stop(g.r, t0 + 150);
    uint64_t took = base_now_ms() - t0;
    assert_in_range(took, 140, 1000);
    /* 2 in flight + 3 queued, 2 spans each */
    assert_int_equal(metric(&g, "otlp_spans_dropped_total{reason=\"shutdown\"}"), 10);
    assert_int_equal(metric(&g, "otlp_spans_exported_total"), 0);
    rig_teardown(&g); /* releases the in-flight ones after destroying the exporter */
}

/* Runner + OTLP/HTTP exporter + upstream process: a 503 is retried, the
 * retry lands, both requests carry the same body. */
static void test_runner_http_end_to_end(void **state)
{
    (void)state;
    struct rig g;
    rig_setup(&g);
    struct stub s;
    const char *specs[] = {"503;retry-after=0", "200", NULL};
    stub_start(&s, specs, NULL, NULL);
    g.cfg.exporter.protocol = EXPORTER_OTLP_HTTP;
    set_str(&g.cfg.exporter.endpoint, s.url);
    g.cfg.exporter.compression = COMPRESSION_NONE;
    assert_int_equal(export_runner_create(&g.cfg, g.p, g.reg, 1, &g.r), 0);
    assert_int_equal(export_runner_start(g.r), 0);
    produce(&g, OTLP_TRACES, 3);
    assert_true(wait_metric(&g, "otlp_spans_exported_total", 3, 10000));
    export_runner_stop(g.r, base_now_ms() + 2000);
    assert_int_equal(metric(&g, "otlp_export_requests_total{signal=\"traces\",result=\"retry\"}"),
                     1);
    assert_int_equal(stub_count(&s), 2);
    char *b0, *b1;
    size_t l0, l1;
    char *m0 = stub_request(&s, 0, &b0, &l0);
    char *m1 = stub_request(&s, 1, &b1, &l1);
    assert_int_equal(l0, 3 * g.req[OTLP_TRACES].len);
    assert_int_equal(l0, l1);
    assert_memory_equal(b0, b1, l0);
    free(m0);
    free(m1);
    free(b0);
    free(b1);
    rig_teardown(&g);
    stub_stop(&s);
}

/* Stopping while a retry is due after the deadline does not wait for it. */
static void test_runner_stop_skips_late_retry(void **state)
{
    (void)state;
    struct rig g;
    rig_setup(&g);
    g.cfg.exporter.retry.initial_interval_ms = 5000;
    g.cfg.exporter.retry.max_interval_ms = 5000;
    g.cfg.exporter.retry.max_elapsed_ms = 60000;
    rig_fake_runner(&g, EXPORT_RETRYABLE);
    assert_int_equal(export_runner_start(g.r), 0);
    produce(&g, OTLP_TRACES, 1);
    assert_true(wait_metric(&g, "otlp_export_retry_queue", 1, 5000));
    uint64_t t0 = base_now_ms();
    export_runner_stop(g.r, t0 + 2000);
    assert_true(base_now_ms() - t0 < 500);
    assert_int_equal(metric(&g, "otlp_spans_dropped_total{reason=\"shutdown\"}"), 1);
    rig_teardown(&g);
}

/* stop() without start() exports on the caller's thread. */
static void test_runner_stop_without_start(void **state)
{
    (void)state;
    struct rig g;
    rig_setup(&g);
    rig_fake_runner(&g, EXPORT_OK);
    produce(&g, OTLP_TRACES, 3);
    produce(&g, OTLP_LOGS, 1);
    export_runner_stop(g.r, base_now_ms() + 2000);
    assert_int_equal(metric(&g, "otlp_spans_exported_total"), 3);
    assert_int_equal(metric(&g, "otlp_log_records_exported_total"), 1);
    assert_int_equal(export_runner_start(g.r), -EALREADY);
    rig_teardown(&g);
}

static void test_runner_create_errors(void **state)
{
    (void)state;
    struct rig g;
    rig_setup(&g);
    struct exporter ex = {&fake_ops, &g.fake};
    /* shard out of range: the exporter is destroyed all the same */
    assert_int_equal(export_runner_create_with(&g.cfg, g.p, g.reg, 2, &ex, &g.r), -EINVAL);
    assert_int_equal(g.fake.destroyed, 1);
    g.cfg.exporter.protocol = EXPORTER_OTLP_HTTP; /* no endpoint */
    assert_int_equal(export_runner_create(&g.cfg, g.p, g.reg, 1, &g.r), -EINVAL);
    /* the drop reason table and the X-macro agree */
    assert_string_equal(export_drop_reasons[EXPORT_DROP_SHUTDOWN], "shutdown");
    assert_string_equal(export_drop_reasons[EXPORT_DROP_UPSTREAM_PARTIAL], "upstream_partial");
    g.r = NULL;
    export_runner_destroy(NULL);
    rig_teardown(&g);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    atexit(stub_kill_all);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_growth_and_cap),
        cmocka_unit_test(test_backoff_jitter_range),
        cmocka_unit_test(test_retry_after_precedence),
        cmocka_unit_test(test_retry_after_parse),
        cmocka_unit_test(test_response_decoding),
        cmocka_unit_test(test_exporter_table),
        cmocka_unit_test(test_http_paths_headers_gzip),
        cmocka_unit_test(test_http_no_compression_exact_body),
        cmocka_unit_test(test_http_partial_success),
        cmocka_unit_test(test_http_permanent_statuses),
        cmocka_unit_test(test_http_retryable_statuses),
        cmocka_unit_test(test_http_connection_refused),
        cmocka_unit_test(test_http_timeout),
        cmocka_unit_test(test_http_concurrency_and_busy),
        cmocka_unit_test(test_http_wakeup),
        cmocka_unit_test(test_http_destroy_in_flight),
        cmocka_unit_test(test_http_tls),
        cmocka_unit_test(test_file_lines_are_otlp_json),
        cmocka_unit_test(test_file_busy),
        cmocka_unit_test(test_file_rotation),
        cmocka_unit_test(test_file_io_errors),
        cmocka_unit_test(test_runner_file_end_to_end),
        cmocka_unit_test(test_runner_retry_then_success),
        cmocka_unit_test(test_runner_retry_after_honoured),
        cmocka_unit_test(test_runner_permanent_and_health),
        cmocka_unit_test(test_runner_retries_exhausted),
        cmocka_unit_test(test_runner_retry_disabled),
        cmocka_unit_test(test_runner_shutdown_deadline),
        cmocka_unit_test(test_runner_http_end_to_end),
        cmocka_unit_test(test_runner_stop_skips_late_retry),
        cmocka_unit_test(test_runner_stop_without_start),
        cmocka_unit_test(test_runner_create_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
