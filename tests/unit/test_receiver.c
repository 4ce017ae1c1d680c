/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for lib/receiver: OTLP/HTTP requests go in as bytes (whole, byte by
 * byte and split at every offset), and the test checks both what is answered
 * and what reaches the pipeline (batches decoded with protobuf-c). The stack
 * is the real one: config defaults, metrics registry, pipeline, receiver. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>
#include <zstd.h>

#include "base/base.h"
#include "compress/compress.h"
#include "config/config.h"
#include "obs/metrics.h"
#include "pipeline/pipeline.h"
#include "receiver/receiver.h"

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans ResourceSpans;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans ScopeSpans;
typedef Opentelemetry__Proto__Trace__V1__Span Span;
typedef Opentelemetry__Proto__Metrics__V1__ResourceMetrics ResourceMetrics;
typedef Opentelemetry__Proto__Metrics__V1__ScopeMetrics ScopeMetrics;
typedef Opentelemetry__Proto__Metrics__V1__Metric Metric;
typedef Opentelemetry__Proto__Metrics__V1__Gauge Gauge;
typedef Opentelemetry__Proto__Metrics__V1__Sum Sum;
typedef Opentelemetry__Proto__Metrics__V1__NumberDataPoint NumberDP;
typedef Opentelemetry__Proto__Logs__V1__ResourceLogs ResourceLogs;
typedef Opentelemetry__Proto__Logs__V1__ScopeLogs ScopeLogs;
typedef Opentelemetry__Proto__Logs__V1__LogRecord LogRecord;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest TraceReq;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest MetricsReq;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest LogsReq;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse TraceResp;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceResponse MetricsResp;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceResponse LogsResp;

#define CT_PB "application/x-protobuf"
#define CT_JSON "application/json"

/* ------------------------------------------------------------------------ */
/* Arena: everything a test builds is freed by the teardown                  */
/* ------------------------------------------------------------------------ */

static void **arena;
static size_t arena_n, arena_cap;

static void *A(size_t n)
{
    if (arena_n == arena_cap) {
        arena_cap = arena_cap ? arena_cap * 2 : 1024;
        arena = realloc(arena, arena_cap * sizeof(*arena));
        assert_non_null(arena);
    }
    void *p = calloc(1, n ? n : 1);
    assert_non_null(p);
    arena[arena_n++] = p;
    return p;
}

static void arena_free(void)
{
    for (size_t i = 0; i < arena_n; i++)
        free(arena[i]);
    free(arena);
    arena = NULL;
    arena_n = arena_cap = 0;
}

static void *dup_mem(const void *p, size_t n)
{
    void *d = A(n);
    if (n > 0)
        memcpy(d, p, n);
    return d;
}

static void *ptrs(size_t n, ...)
{
    void **a = A(n * sizeof(void *));
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        a[i] = va_arg(ap, void *);
    va_end(ap);
    return a;
}

/* ------------------------------------------------------------------------ */
/* OTLP request builders (protobuf-c)                                       */
/* ------------------------------------------------------------------------ */

static const uint8_t TRACE_ID[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t SPAN_ID[8] = {0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18};

static ProtobufCBinaryData bin(const uint8_t *p, size_t n)
{
    ProtobufCBinaryData b = {n, (uint8_t *)p};
    return b;
}

static KeyValue *kv_str(const char *k, const char *v)
{
    AnyValue *a = A(sizeof(*a));
    opentelemetry__proto__common__v1__any_value__init(a);
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    a->string_value = (char *)v;
    KeyValue *x = A(sizeof(*x));
    opentelemetry__proto__common__v1__key_value__init(x);
    x->key = (char *)k;
    x->value = a;
    return x;
}

static Resource *make_resource(const char *service)
{
    Resource *r = A(sizeof(*r));
    opentelemetry__proto__resource__v1__resource__init(r);
    r->n_attributes = 2;
    r->attributes = ptrs(2, kv_str("service.name", service), kv_str("host.name", "node-1"));
    return r;
}

static char *fmt(const char *f, unsigned i)
{
    char *s = A(32);
    snprintf(s, 32, f, i);
    return s;
}

static Span *make_span(unsigned i, size_t trace_id_len)
{
    Span *s = A(sizeof(*s));
    opentelemetry__proto__trace__v1__span__init(s);
    s->trace_id = bin(TRACE_ID, trace_id_len);
    s->span_id = bin(SPAN_ID, 8);
    s->name = fmt("op-%u", i);
    s->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER;
    s->start_time_unix_nano = 1000 + i;
    s->end_time_unix_nano = 2000 + i;
    s->n_attributes = 1;
    s->attributes = ptrs(1, kv_str("i", i % 2 ? "odd" : "even"));
    return s;
}

/* R ResourceSpans of N spans each; span j of resource r is "op-<r*100+j>". */
static TraceReq *traces_msg(unsigned R, unsigned N)
{
    TraceReq *req = A(sizeof(*req));
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(req);
    req->n_resource_spans = R;
    req->resource_spans = A(R * sizeof(void *));
    for (unsigned r = 0; r < R; r++) {
        ScopeSpans *ss = A(sizeof(*ss));
        opentelemetry__proto__trace__v1__scope_spans__init(ss);
        ss->n_spans = N;
        ss->spans = A(N * sizeof(void *));
        for (unsigned j = 0; j < N; j++)
            ss->spans[j] = make_span(r * 100 + j, 16);
        ResourceSpans *rs = A(sizeof(*rs));
        opentelemetry__proto__trace__v1__resource_spans__init(rs);
        rs->resource = make_resource(fmt("svc-%u", r));
        rs->n_scope_spans = 1;
        rs->scope_spans = ptrs(1, ss);
        rs->schema_url = "https://opentelemetry.io/schemas/1.21.0";
        req->resource_spans[r] = rs;
    }
    return req;
}

/* R ResourceMetrics, each with a gauge of P points and a sum of 1 point. */
static MetricsReq *metrics_msg(unsigned R, unsigned P)
{
    MetricsReq *req = A(sizeof(*req));
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__init(req);
    req->n_resource_metrics = R;
    req->resource_metrics = A(R * sizeof(void *));
    for (unsigned r = 0; r < R; r++) {
        Gauge *g = A(sizeof(*g));
        opentelemetry__proto__metrics__v1__gauge__init(g);
        g->n_data_points = P;
        g->data_points = A(P * sizeof(void *));
        for (unsigned i = 0; i < P; i++) {
            NumberDP *d = A(sizeof(*d));
            opentelemetry__proto__metrics__v1__number_data_point__init(d);
            d->value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT;
            d->as_int = (int64_t)(r * 100 + i);
            d->time_unix_nano = 5000 + i;
            g->data_points[i] = d;
        }
        Metric *mg = A(sizeof(*mg));
        opentelemetry__proto__metrics__v1__metric__init(mg);
        mg->name = "queue.depth";
        mg->unit = "1";
        mg->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE;
        mg->gauge = g;

        NumberDP *sd = A(sizeof(*sd));
        opentelemetry__proto__metrics__v1__number_data_point__init(sd);
        sd->value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_DOUBLE;
        sd->as_double = 2.5;
        Sum *s = A(sizeof(*s));
        opentelemetry__proto__metrics__v1__sum__init(s);
        s->n_data_points = 1;
        s->data_points = ptrs(1, sd);
        s->is_monotonic = 1;
        s->aggregation_temporality =
            OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_CUMULATIVE;
        Metric *ms = A(sizeof(*ms));
        opentelemetry__proto__metrics__v1__metric__init(ms);
        ms->name = "requests";
        ms->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM;
        ms->sum = s;

        ScopeMetrics *sm = A(sizeof(*sm));
        opentelemetry__proto__metrics__v1__scope_metrics__init(sm);
        sm->n_metrics = 2;
        sm->metrics = ptrs(2, mg, ms);
        ResourceMetrics *rm = A(sizeof(*rm));
        opentelemetry__proto__metrics__v1__resource_metrics__init(rm);
        rm->resource = make_resource(fmt("svc-%u", r));
        rm->n_scope_metrics = 1;
        rm->scope_metrics = ptrs(1, sm);
        req->resource_metrics[r] = rm;
    }
    return req;
}

/* R ResourceLogs of N records; record j of resource r has body "log <r*100+j>". */
static LogsReq *logs_msg(unsigned R, unsigned N)
{
    LogsReq *req = A(sizeof(*req));
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__init(req);
    req->n_resource_logs = R;
    req->resource_logs = A(R * sizeof(void *));
    for (unsigned r = 0; r < R; r++) {
        ScopeLogs *sl = A(sizeof(*sl));
        opentelemetry__proto__logs__v1__scope_logs__init(sl);
        sl->n_log_records = N;
        sl->log_records = A(N * sizeof(void *));
        for (unsigned j = 0; j < N; j++) {
            AnyValue *body = A(sizeof(*body));
            opentelemetry__proto__common__v1__any_value__init(body);
            body->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
            body->string_value = fmt("log %u", r * 100 + j);
            LogRecord *l = A(sizeof(*l));
            opentelemetry__proto__logs__v1__log_record__init(l);
            l->time_unix_nano = 7000 + j;
            l->severity_number =
                OPENTELEMETRY__PROTO__LOGS__V1__SEVERITY_NUMBER__SEVERITY_NUMBER_WARN;
            l->severity_text = "WARN";
            l->body = body;
            l->trace_id = bin(TRACE_ID, 16);
            l->span_id = bin(SPAN_ID, 8);
            sl->log_records[j] = l;
        }
        ResourceLogs *rl = A(sizeof(*rl));
        opentelemetry__proto__logs__v1__resource_logs__init(rl);
        rl->resource = make_resource(fmt("svc-%u", r));
        rl->n_scope_logs = 1;
        rl->scope_logs = ptrs(1, sl);
        req->resource_logs[r] = rl;
    }
    return req;
}

static uint8_t *pack(const void *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = A(*len);
    assert_int_equal(protobuf_c_message_pack(m, b), *len);
    return b;
}

/* ------------------------------------------------------------------------ */
/* HTTP request builders                                                    */
/* ------------------------------------------------------------------------ */

struct req {
    uint8_t *data;
    size_t len;
};

/* Copy `b` into the arena and free it. */
static struct req take(struct buf *b)
{
    struct req r = {dup_mem(b->data, b->len), b->len};
    buf_free(b);
    return r;
}

/* POST `path` HTTP/1.1 with Host, Content-Type (when ctype != NULL), the
 * `extra` header lines (each ending in CRLF), Content-Length and the body. */
static struct req post(const char *path, const char *ctype, const char *extra, const void *body,
                       size_t len)
{
    struct buf b;
    assert_int_equal(buf_init(&b, 256 + len, 0), 0);
    buf_printf(&b, "POST %s HTTP/1.1\r\nHost: collector:4318\r\n", path);
    if (ctype != NULL)
        buf_printf(&b, "Content-Type: %s\r\n", ctype);
    if (extra != NULL)
        buf_append_str(&b, extra);
    buf_printf(&b, "Content-Length: %zu\r\n\r\n", len);
    assert_int_equal(buf_append(&b, body, len), 0);
    return take(&b);
}

/* As post() with a chunked body in chunks of `chunk` bytes (with an
 * extension on the first and a trailer field at the end). */
static struct req post_chunked(const char *path, const char *ctype, const void *body, size_t len,
                               size_t chunk)
{
    struct buf b;
    assert_int_equal(buf_init(&b, 256 + 2 * len, 0), 0);
    buf_printf(&b,
               "POST %s HTTP/1.1\r\nHost: collector\r\nContent-Type: %s\r\n"
               "Transfer-Encoding: chunked\r\n\r\n",
               path, ctype);
    const uint8_t *p = body;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = BASE_MIN(chunk, len - off);
        buf_printf(&b, off == 0 ? "%zx;ext=1\r\n" : "%zX\r\n", n);
        buf_append(&b, p + off, n);
        buf_append_str(&b, "\r\n");
    }
    buf_append_str(&b, "0\r\nX-Trailer: t\r\n\r\n");
    return take(&b);
}

static struct req raw(const char *s)
{
    struct req r = {dup_mem(s, strlen(s)), strlen(s)};
    return r;
}

static struct req concat(struct req a, struct req b)
{
    struct req r = {A(a.len + b.len), a.len + b.len};
    memcpy(r.data, a.data, a.len);
    memcpy(r.data + a.len, b.data, b.len);
    return r;
}

static struct req gzip_of(const void *p, size_t n)
{
    struct compress_ctx *cz;
    assert_int_equal(compress_ctx_create(&cz), 0);
    struct buf b;
    assert_int_equal(buf_init(&b, 0, 0), 0);
    assert_int_equal(compress_gzip(cz, p, n, &b, 6), 0);
    compress_ctx_destroy(cz);
    return take(&b);
}

static struct req zstd_of(const void *p, size_t n)
{
    size_t cap = ZSTD_compressBound(n);
    uint8_t *d = A(cap);
    size_t z = ZSTD_compress(d, cap, p, n, 3);
    assert_false(ZSTD_isError(z));
    struct req r = {d, z};
    return r;
}

/* ------------------------------------------------------------------------ */
/* Fixture                                                                  */
/* ------------------------------------------------------------------------ */

struct fx {
    struct svc_config cfg;
    struct obs_registry *reg;
    struct pipeline *p;
    struct receiver *r;
    struct receiver_worker *rw;
    struct receiver_conn conn;
    bool conn_live;
    struct buf out;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    config_defaults(&f->cfg);
    assert_int_equal(buf_init(&f->out, 4096, 0), 0);
    *state = f;
    return 0;
}

/* Build the stack from f->cfg (tests adjust the config first). */
static void start(struct fx *f)
{
    assert_int_equal(obs_registry_create(1, 4096, &f->reg), 0);
    assert_int_equal(pipeline_create(&f->cfg, 1, &f->p), 0);
    assert_int_equal(receiver_create(&f->cfg, f->p, f->reg, 1, &f->r), 0);
    assert_int_equal(receiver_worker_create(f->r, 0, &f->rw), 0);
    assert_int_equal(receiver_conn_init(&f->conn, f->rw), 0);
    f->conn_live = true;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->conn_live)
        receiver_conn_fini(&f->conn);
    receiver_worker_destroy(f->rw);
    receiver_destroy(f->r);
    pipeline_destroy(f->p);
    obs_registry_destroy(f->reg);
    config_free(&f->cfg);
    buf_free(&f->out);
    free(f);
    arena_free();
    return 0;
}

/* A new connection on the same worker; `out` emptied. */
static void new_conn(struct fx *f)
{
    receiver_conn_fini(&f->conn);
    assert_int_equal(receiver_conn_init(&f->conn, f->rw), 0);
    buf_reset(&f->out);
}

static int feed(struct fx *f, struct req r)
{
    return receiver_conn_input(&f->conn, r.data, r.len, &f->out);
}

/* ---- responses ---- */

struct resp {
    int status;
    char head[1024]; /* status line and header fields, NUL-terminated */
    const uint8_t *body;
    size_t body_len;
};

#define MAX_RESP 8

/* Split `out` into complete HTTP/1.1 responses; fails on anything else. */
static size_t parse_responses(const struct buf *out, struct resp *r, size_t max)
{
    size_t n = 0, off = 0;
    while (off < out->len) {
        assert_true(n < max);
        const char *s = (const char *)out->data + off;
        size_t left = out->len - off;
        assert_true(left >= 9 && memcmp(s, "HTTP/1.1 ", 9) == 0);
        const char *end = memmem(s, left, "\r\n\r\n", 4);
        assert_non_null(end);
        size_t hlen = (size_t)(end - s) + 2;
        assert_true(hlen < sizeof(r[n].head));
        memcpy(r[n].head, s, hlen);
        r[n].head[hlen] = '\0';
        r[n].status = atoi(s + 9);
        size_t blen = 0;
        const char *cl = strstr(r[n].head, "\r\nContent-Length: ");
        if (r[n].status >= 200)
            assert_non_null(cl);
        if (cl != NULL)
            blen = strtoul(cl + 18, NULL, 10);
        off += hlen + 2;
        assert_true(off + blen <= out->len);
        r[n].body = out->data + off;
        r[n].body_len = blen;
        off += blen;
        n++;
    }
    return n;
}

/* Exactly one response in f->out; returns it. */
static struct resp *one_resp(struct fx *f)
{
    struct resp *r = A(sizeof(*r) * MAX_RESP);
    assert_int_equal(parse_responses(&f->out, r, MAX_RESP), 1);
    return r;
}

static bool has_header(const struct resp *r, const char *line)
{
    char want[256];
    snprintf(want, sizeof(want), "\r\n%s\r\n", line);
    return strstr(r->head, want) != NULL;
}

/* google.rpc.Status{code = 1, message = 2} from a protobuf error body. */
static void decode_status(const uint8_t *p, size_t n, int *code, char *msg, size_t cap)
{
    *code = -1;
    msg[0] = '\0';
    size_t i = 0;
    while (i < n) {
        uint64_t key = 0, v = 0;
        for (unsigned sh = 0;; sh += 7) {
            assert_true(i < n && sh < 64);
            key |= (uint64_t)(p[i] & 0x7f) << sh;
            if (!(p[i++] & 0x80))
                break;
        }
        for (unsigned sh = 0;; sh += 7) {
            assert_true(i < n && sh < 64);
            v |= (uint64_t)(p[i] & 0x7f) << sh;
            if (!(p[i++] & 0x80))
                break;
        }
        if (key == 0x08) {
            *code = (int)v;
        } else if (key == 0x12) {
            assert_true(v <= n - i && v < cap);
            memcpy(msg, p + i, v);
            msg[v] = '\0';
            i += v;
        } else {
            fail_msg("unexpected field key %llu in google.rpc.Status", (unsigned long long)key);
        }
    }
}

/* A protobuf error response: `status`, google.rpc.Status with `code` (-1:
 * any non-OK code) and a message. */
static void assert_proto_status(const struct resp *r, int status, int code)
{
    assert_int_equal(r->status, status);
    assert_true(has_header(r, "Content-Type: " CT_PB));
    int c;
    char msg[1100];
    decode_status(r->body, r->body_len, &c, msg, sizeof(msg));
    if (code >= 0)
        assert_int_equal(c, code);
    else
        assert_true(c > 0);
    assert_true(strlen(msg) > 0);
}

static json_t *json_body(const struct resp *r)
{
    json_error_t e;
    json_t *j = json_loadb((const char *)r->body, r->body_len, 0, &e);
    if (j == NULL)
        fail_msg("response body is not JSON: %s", e.text);
    return j;
}

/* ---- batches ---- */

struct got {
    enum otlp_signal sig;
    uint64_t items;
    uint32_t requests;
    uint8_t *body;
    size_t len;
};

#define MAX_GOT 32

/* Flush every open batch and take (copy, then release) every ready one. */
static unsigned drain(struct fx *f, struct got *g, unsigned max)
{
    pipeline_tick(f->p, 0, base_now_ms(), true);
    unsigned n = 0;
    struct batch *b;
    while ((b = pipeline_dequeue(f->p)) != NULL) {
        assert_true(n < max);
        g[n].sig = b->signal;
        g[n].items = b->items;
        g[n].requests = b->requests;
        g[n].body = dup_mem(b->body.data, b->body.len);
        g[n].len = b->body.len;
        n++;
        pipeline_release(f->p, b);
    }
    return n;
}

/* Exactly one batch of `sig` with `items`; returns it. */
static struct got *one_batch(struct fx *f, enum otlp_signal sig, uint64_t items)
{
    struct got *g = A(sizeof(*g) * MAX_GOT);
    assert_int_equal(drain(f, g, MAX_GOT), 1);
    assert_int_equal(g->sig, sig);
    assert_int_equal(g->items, items);
    return g;
}

static TraceReq *unpack_traces(const struct got *g)
{
    TraceReq *t = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
        NULL, g->len, g->body);
    assert_non_null(t);
    return t;
}

static void free_traces(TraceReq *t)
{
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(t,
                                                                                            NULL);
}

static const char *attr(const Resource *r, const char *key)
{
    const char *v = NULL;
    for (size_t i = 0; r != NULL && i < r->n_attributes; i++)
        if (strcmp(r->attributes[i]->key, key) == 0) {
            assert_null(v); /* keys are unique */
            assert_non_null(r->attributes[i]->value);
            v = r->attributes[i]->value->string_value;
        }
    return v;
}

/* Span-by-span comparison of what the client sent and what was batched. */
static void assert_same_traces(const TraceReq *a, const TraceReq *b)
{
    assert_int_equal(a->n_resource_spans, b->n_resource_spans);
    for (size_t r = 0; r < a->n_resource_spans; r++) {
        const ResourceSpans *x = a->resource_spans[r], *y = b->resource_spans[r];
        assert_string_equal(attr(x->resource, "service.name"), attr(y->resource, "service.name"));
        assert_string_equal(x->schema_url, y->schema_url);
        assert_int_equal(x->n_scope_spans, y->n_scope_spans);
        for (size_t s = 0; s < x->n_scope_spans; s++) {
            assert_int_equal(x->scope_spans[s]->n_spans, y->scope_spans[s]->n_spans);
            for (size_t i = 0; i < x->scope_spans[s]->n_spans; i++) {
                const Span *p = x->scope_spans[s]->spans[i], *q = y->scope_spans[s]->spans[i];
                assert_string_equal(p->name, q->name);
                assert_int_equal(p->trace_id.len, q->trace_id.len);
                assert_memory_equal(p->trace_id.data, q->trace_id.data, p->trace_id.len);
                assert_memory_equal(p->span_id.data, q->span_id.data, 8);
                assert_int_equal(p->start_time_unix_nano, q->start_time_unix_nano);
                assert_int_equal(p->end_time_unix_nano, q->end_time_unix_nano);
                assert_int_equal(p->kind, q->kind);
                assert_int_equal(p->n_attributes, q->n_attributes);
            }
        }
    }
}

/* ---- metrics ---- */

/* Value of one series in the Prometheus page, e.g.
 * `http_requests_total{path="/v1/traces",code="200"}`; -1 when absent. */
static double metric(struct fx *f, const char *series)
{
    struct buf page;
    assert_int_equal(buf_init(&page, 65536, 0), 0);
    assert_int_equal(obs_render_prometheus(f->reg, &page), 0);
    buf_append(&page, "", 1);
    double v = -1;
    size_t sl = strlen(series);
    for (const char *l = (const char *)page.data; *l != '\0';) {
        const char *nl = strchr(l, '\n');
        if (strncmp(l, series, sl) == 0 && l[sl] == ' ') {
            v = strtod(l + sl + 1, NULL);
            break;
        }
        if (nl == NULL)
            break;
        l = nl + 1;
    }
    buf_free(&page);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Accepted requests                                                        */
/* ------------------------------------------------------------------------ */

static void test_traces_proto(void **state)
{
    struct fx *f = *state;
    start(f);
    size_t len;
    TraceReq *msg = traces_msg(2, 3);
    uint8_t *pb = pack(msg, &len);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pb, len)), RECEIVER_KEEP);

    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 200);
    assert_true(has_header(r, "Content-Type: " CT_PB));
    assert_false(has_header(r, "Connection: close"));
    TraceResp *tr =
        opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
            NULL, r->body_len, r->body);
    assert_non_null(tr);
    assert_null(tr->partial_success); /* empty message */
    opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(tr,
                                                                                             NULL);
    assert_int_equal(r->body_len, 0);
    assert_false(receiver_conn_busy(&f->conn));

    struct got *g = one_batch(f, OTLP_TRACES, 6);
    assert_int_equal(g->requests, 1);
    /* No resource attributes configured: the entries are copied verbatim. */
    assert_int_equal(g->len, len);
    assert_memory_equal(g->body, pb, len);
    TraceReq *t = unpack_traces(g);
    assert_same_traces(msg, t);
    assert_string_equal(t->resource_spans[1]->scope_spans[0]->spans[2]->name, "op-102");
    free_traces(t);
}

static void test_metrics_proto(void **state)
{
    struct fx *f = *state;
    start(f);
    size_t len;
    uint8_t *pb = pack(metrics_msg(2, 4), &len);
    /* "application/protobuf" is accepted as well */
    assert_int_equal(feed(f, post("/v1/metrics", "application/protobuf", NULL, pb, len)),
                     RECEIVER_KEEP);
    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 200);
    assert_true(has_header(r, "Content-Type: " CT_PB));
    assert_int_equal(r->body_len, 0);

    struct got *g = one_batch(f, OTLP_METRICS, 2 * (4 + 1));
    assert_memory_equal(g->body, pb, len);
    MetricsReq *m =
        opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__unpack(
            NULL, g->len, g->body);
    assert_non_null(m);
    assert_int_equal(m->n_resource_metrics, 2);
    const Metric *gm = m->resource_metrics[1]->scope_metrics[0]->metrics[0];
    assert_string_equal(gm->name, "queue.depth");
    assert_int_equal(gm->data_case, OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE);
    assert_int_equal(gm->gauge->n_data_points, 4);
    assert_int_equal(gm->gauge->data_points[3]->as_int, 103);
    const Metric *sm = m->resource_metrics[1]->scope_metrics[0]->metrics[1];
    assert_int_equal(sm->data_case, OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM);
    assert_true(sm->sum->data_points[0]->as_double == 2.5);
    assert_string_equal(attr(m->resource_metrics[1]->resource, "service.name"), "svc-1");
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__free_unpacked(
        m, NULL);
}

static void test_logs_proto(void **state)
{
    struct fx *f = *state;
    start(f);
    size_t len;
    uint8_t *pb = pack(logs_msg(3, 2), &len);
    assert_int_equal(feed(f, post("/v1/logs", CT_PB, NULL, pb, len)), RECEIVER_KEEP);
    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body_len, 0);

    struct got *g = one_batch(f, OTLP_LOGS, 6);
    assert_memory_equal(g->body, pb, len);
    LogsReq *l = opentelemetry__proto__collector__logs__v1__export_logs_service_request__unpack(
        NULL, g->len, g->body);
    assert_non_null(l);
    assert_int_equal(l->n_resource_logs, 3);
    const LogRecord *rec = l->resource_logs[2]->scope_logs[0]->log_records[1];
    assert_string_equal(rec->body->string_value, "log 201");
    assert_string_equal(rec->severity_text, "WARN");
    assert_int_equal(rec->trace_id.len, 16);
    assert_memory_equal(rec->trace_id.data, TRACE_ID, 16);
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__free_unpacked(l, NULL);
}

static const char JSON_TRACES[] =
    "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
    "\"value\":{\"stringValue\":\"json-svc\"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"lib\","
    "\"version\":\"1.0\"},\"spans\":[{\"traceId\":\"0102030405060708090A0B0C0D0E0F10\","
    "\"spanId\":\"1112131415161718\",\"parentSpanId\":\"\",\"name\":\"GET /x\",\"kind\":2,"
    "\"startTimeUnixNano\":\"1700000000000000000\",\"endTimeUnixNano\":\"1700000000500000000\","
    "\"attributes\":[{\"key\":\"http.status_code\",\"value\":{\"intValue\":\"200\"}}],"
    "\"status\":{\"code\":1}},{\"traceId\":\"0102030405060708090a0b0c0d0e0f10\","
    "\"spanId\":\"2122232425262728\",\"parentSpanId\":\"1112131415161718\",\"name\":\"db\","
    "\"kind\":\"SPAN_KIND_CLIENT\",\"startTimeUnixNano\":1700000000100000000}]}]}]}";

static const char JSON_METRICS[] =
    "{\"resourceMetrics\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
    "\"value\":{\"stringValue\":\"m\"}}]},\"scopeMetrics\":[{\"metrics\":[{\"name\":\"cpu\","
    "\"unit\":\"1\",\"gauge\":{\"dataPoints\":[{\"asDouble\":0.25,\"timeUnixNano\":\"1\"},"
    "{\"asInt\":\"7\",\"timeUnixNano\":\"2\"}]}}]}]}]}";

static const char JSON_LOGS[] =
    "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"timeUnixNano\":\"42\","
    "\"severityNumber\":9,\"severityText\":\"INFO\",\"body\":{\"stringValue\":\"hello\"},"
    "\"traceId\":\"0102030405060708090a0b0c0d0e0f10\",\"spanId\":\"1112131415161718\"}]}]}]}";

static struct req json_post(const char *path, const char *json)
{
    return post(path, CT_JSON, NULL, json, strlen(json));
}

static void assert_json_ok(struct fx *f)
{
    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 200);
    assert_true(has_header(r, "Content-Type: " CT_JSON));
    assert_int_equal(r->body_len, 2);
    assert_memory_equal(r->body, "{}", 2);
}

static void test_json(void **state)
{
    struct fx *f = *state;
    start(f);

    /* traces */
    assert_int_equal(feed(f, json_post("/v1/traces", JSON_TRACES)), RECEIVER_KEEP);
    assert_json_ok(f);
    struct got *g = one_batch(f, OTLP_TRACES, 2);
    TraceReq *t = unpack_traces(g);
    assert_int_equal(t->n_resource_spans, 1);
    assert_string_equal(attr(t->resource_spans[0]->resource, "service.name"), "json-svc");
    const ScopeSpans *ss = t->resource_spans[0]->scope_spans[0];
    assert_string_equal(ss->scope->name, "lib");
    assert_string_equal(ss->scope->version, "1.0");
    assert_int_equal(ss->n_spans, 2);
    const Span *s0 = ss->spans[0], *s1 = ss->spans[1];
    static const uint8_t tid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    assert_int_equal(s0->trace_id.len, 16);
    assert_memory_equal(s0->trace_id.data, tid, 16);
    assert_int_equal(s0->span_id.len, 8);
    assert_memory_equal(s0->span_id.data, SPAN_ID, 8);
    assert_int_equal(s0->parent_span_id.len, 0);
    assert_string_equal(s0->name, "GET /x");
    assert_int_equal(s0->kind, OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER);
    assert_int_equal(s0->start_time_unix_nano, 1700000000000000000ull);
    assert_int_equal(s0->end_time_unix_nano, 1700000000500000000ull);
    assert_int_equal(s0->n_attributes, 1);
    assert_string_equal(s0->attributes[0]->key, "http.status_code");
    assert_int_equal(s0->attributes[0]->value->value_case,
                     OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE);
    assert_int_equal(s0->attributes[0]->value->int_value, 200);
    assert_non_null(s0->status);
    assert_int_equal(s0->status->code, 1);
    assert_string_equal(s1->name, "db");
    assert_int_equal(s1->kind, OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT);
    assert_memory_equal(s1->parent_span_id.data, SPAN_ID, 8);
    assert_int_equal(s1->start_time_unix_nano, 1700000000100000000ull);
    free_traces(t);

    /* metrics */
    buf_reset(&f->out);
    assert_int_equal(feed(f, json_post("/v1/metrics", JSON_METRICS)), RECEIVER_KEEP);
    assert_json_ok(f);
    g = one_batch(f, OTLP_METRICS, 2);
    MetricsReq *m =
        opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__unpack(
            NULL, g->len, g->body);
    assert_non_null(m);
    const Metric *cpu = m->resource_metrics[0]->scope_metrics[0]->metrics[0];
    assert_string_equal(cpu->name, "cpu");
    assert_int_equal(cpu->data_case, OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE);
    assert_int_equal(cpu->gauge->n_data_points, 2);
    assert_true(cpu->gauge->data_points[0]->as_double == 0.25);
    assert_int_equal(cpu->gauge->data_points[1]->value_case,
                     OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT);
    assert_int_equal(cpu->gauge->data_points[1]->as_int, 7);
    assert_int_equal(cpu->gauge->data_points[1]->time_unix_nano, 2);
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__free_unpacked(
        m, NULL);

    /* logs */
    buf_reset(&f->out);
    assert_int_equal(feed(f, json_post("/v1/logs", JSON_LOGS)), RECEIVER_KEEP);
    assert_json_ok(f);
    g = one_batch(f, OTLP_LOGS, 1);
    LogsReq *l = opentelemetry__proto__collector__logs__v1__export_logs_service_request__unpack(
        NULL, g->len, g->body);
    assert_non_null(l);
    const LogRecord *rec = l->resource_logs[0]->scope_logs[0]->log_records[0];
    assert_int_equal(rec->time_unix_nano, 42);
    assert_int_equal(rec->severity_number, 9);
    assert_string_equal(rec->severity_text, "INFO");
    assert_string_equal(rec->body->string_value, "hello");
    assert_memory_equal(rec->span_id.data, SPAN_ID, 8);
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__free_unpacked(l, NULL);
}

static void test_gzip_zstd(void **state)
{
    struct fx *f = *state;
    start(f);
    size_t len;
    uint8_t *pb = pack(traces_msg(2, 5), &len);

    struct req gz = gzip_of(pb, len);
    assert_int_equal(
        feed(f, post("/v1/traces", CT_PB, "Content-Encoding: gzip\r\n", gz.data, gz.len)),
        RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 200);
    struct got *g = one_batch(f, OTLP_TRACES, 10);
    assert_int_equal(g->len, len);
    assert_memory_equal(g->body, pb, len);

    buf_reset(&f->out);
    struct req zs = zstd_of(pb, len);
    assert_int_equal(
        feed(f, post("/v1/traces", CT_PB, "Content-Encoding: ZSTD\r\n", zs.data, zs.len)),
        RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 200);
    g = one_batch(f, OTLP_TRACES, 10);
    assert_int_equal(g->len, len);
    assert_memory_equal(g->body, pb, len);

    /* gzip'ed JSON */
    buf_reset(&f->out);
    gz = gzip_of(JSON_LOGS, strlen(JSON_LOGS));
    assert_int_equal(
        feed(f, post("/v1/logs", CT_JSON, "Content-Encoding: gzip\r\n", gz.data, gz.len)),
        RECEIVER_KEEP);
    assert_json_ok(f);
    one_batch(f, OTLP_LOGS, 1);

    /* identity is no encoding */
    buf_reset(&f->out);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, "Content-Encoding: identity\r\n", pb, len)),
                     RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 200);
    one_batch(f, OTLP_TRACES, 10);

    /* gzip that is not gzip: 400 bad_compressed_body, connection kept */
    buf_reset(&f->out);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, "Content-Encoding: gzip\r\n", pb, len)),
                     RECEIVER_KEEP);
    assert_proto_status(one_resp(f), 400, 3);
    struct got gg[MAX_GOT];
    assert_int_equal(drain(f, gg, MAX_GOT), 0);
}

static void test_chunked(void **state)
{
    struct fx *f = *state;
    start(f);
    size_t len;
    uint8_t *pb = pack(traces_msg(1, 4), &len);
    assert_int_equal(feed(f, post_chunked("/v1/traces", CT_PB, pb, len, 7)), RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 200);
    struct got *g = one_batch(f, OTLP_TRACES, 4);
    assert_int_equal(g->len, len);
    assert_memory_equal(g->body, pb, len);

    buf_reset(&f->out);
    assert_int_equal(
        feed(f, post_chunked("/v1/metrics", CT_JSON, JSON_METRICS, strlen(JSON_METRICS), 1)),
        RECEIVER_KEEP);
    assert_json_ok(f);
    one_batch(f, OTLP_METRICS, 2);
}

/* Three requests in one buffer are answered in order, and the connection
 * stays usable. */
static void test_pipelined(void **state)
{
    struct fx *f = *state;
    start(f);
    size_t tl, ll;
    uint8_t *tp = pack(traces_msg(1, 2), &tl);
    uint8_t *lp = pack(logs_msg(1, 3), &ll);
    struct req all = concat(
        concat(post("/v1/traces", CT_PB, NULL, tp, tl), json_post("/v1/metrics", JSON_METRICS)),
        post("/v1/logs", CT_PB, NULL, lp, ll));
    assert_int_equal(feed(f, all), RECEIVER_KEEP);
    struct resp r[MAX_RESP];
    assert_int_equal(parse_responses(&f->out, r, MAX_RESP), 3);
    assert_int_equal(r[0].status, 200);
    assert_true(has_header(&r[0], "Content-Type: " CT_PB));
    assert_int_equal(r[1].status, 200);
    assert_true(has_header(&r[1], "Content-Type: " CT_JSON));
    assert_memory_equal(r[1].body, "{}", 2);
    assert_int_equal(r[2].status, 200);
    assert_true(has_header(&r[2], "Content-Type: " CT_PB));

    struct got g[MAX_GOT];
    assert_int_equal(drain(f, g, MAX_GOT), 3);
    uint64_t items[OTLP_SIGNAL_COUNT] = {0};
    for (int i = 0; i < 3; i++)
        items[g[i].sig] += g[i].items;
    assert_int_equal(items[OTLP_TRACES], 2);
    assert_int_equal(items[OTLP_METRICS], 2);
    assert_int_equal(items[OTLP_LOGS], 3);

    /* An error in the middle (answered, framing intact) does not stop the rest. */
    buf_reset(&f->out);
    all = concat(concat(post("/v1/traces", CT_PB, NULL, tp, tl), raw("GET /v1/logs HTTP/1.1\r\n"
                                                                     "Host: x\r\n\r\n")),
                 post("/v1/logs", CT_PB, NULL, lp, ll));
    assert_int_equal(feed(f, all), RECEIVER_KEEP);
    assert_int_equal(parse_responses(&f->out, r, MAX_RESP), 3);
    assert_int_equal(r[0].status, 200);
    assert_int_equal(r[1].status, 405);
    assert_int_equal(r[2].status, 200);
    assert_int_equal(drain(f, g, MAX_GOT), 2);
}

static void test_expect_continue(void **state)
{
    struct fx *f = *state;
    start(f);
    size_t len;
    uint8_t *pb = pack(traces_msg(1, 1), &len);
    struct req rq = post("/v1/traces", CT_PB, "Expect: 100-continue\r\n", pb, len);
    size_t head = rq.len - len;

    assert_int_equal(receiver_conn_input(&f->conn, rq.data, head, &f->out), RECEIVER_KEEP);
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    assert_int_equal(f->out.len, strlen(cont));
    assert_memory_equal(f->out.data, cont, strlen(cont));
    assert_true(receiver_conn_busy(&f->conn));

    assert_int_equal(receiver_conn_input(&f->conn, rq.data + head, len, &f->out), RECEIVER_KEEP);
    struct resp r[MAX_RESP];
    assert_int_equal(parse_responses(&f->out, r, MAX_RESP), 2);
    assert_int_equal(r[0].status, 100);
    assert_int_equal(r[1].status, 200);
    one_batch(f, OTLP_TRACES, 1);

    /* Refused at the head: no 100 Continue, the error, and close. */
    new_conn(f);
    rq = post("/v1/traces", "text/plain", "Expect: 100-continue\r\n", pb, len);
    assert_int_equal(receiver_conn_input(&f->conn, rq.data, rq.len - len, &f->out), RECEIVER_CLOSE);
    assert_int_equal(one_resp(f)->status, 415);
}

/* ------------------------------------------------------------------------ */
/* Split invariance: every request fed whole, byte by byte and cut at every */
/* offset gives the same responses, result and batches.                    */
/* ------------------------------------------------------------------------ */

struct outcome {
    struct buf out;
    struct buf batches;
    int rc;
};

/* Feed `rq` on a fresh connection in pieces ending at cuts[] (then the rest),
 * stopping at RECEIVER_CLOSE as a transport would; then drain the pipeline. */
static void run_pieces(struct fx *f, struct req rq, const size_t *cuts, size_t ncuts,
                       struct outcome *o)
{
    new_conn(f);
    int rc = RECEIVER_KEEP;
    size_t at = 0;
    for (size_t k = 0; k <= ncuts && rc == RECEIVER_KEEP; k++) {
        size_t end = k < ncuts ? cuts[k] : rq.len;
        rc = receiver_conn_input(&f->conn, rq.data + at, end - at, &f->out);
        assert_true(rc == RECEIVER_KEEP || rc == RECEIVER_CLOSE);
        at = end;
    }
    o->rc = rc;
    buf_reset(&o->out);
    buf_append(&o->out, f->out.data, f->out.len);
    buf_reset(&o->batches);
    struct got g[MAX_GOT];
    unsigned n = drain(f, g, MAX_GOT);
    for (unsigned i = 0; i < n; i++) {
        buf_printf(&o->batches, "[%d %llu %u %zu]", (int)g[i].sig, (unsigned long long)g[i].items,
                   g[i].requests, g[i].len);
        buf_append(&o->batches, g[i].body, g[i].len);
    }
}

static void assert_same_outcome(const struct outcome *a, const struct outcome *b, const char *what,
                                size_t at)
{
    if (a->rc != b->rc || a->out.len != b->out.len ||
        memcmp(a->out.data, b->out.data, a->out.len) != 0 || a->batches.len != b->batches.len ||
        memcmp(a->batches.data, b->batches.data, a->batches.len) != 0)
        fail_msg("%s: split at %zu differs from the whole request (rc %d/%d, out %zu/%zu, "
                 "batches %zu/%zu)",
                 what, at, a->rc, b->rc, a->out.len, b->out.len, a->batches.len, b->batches.len);
}

static void check_splits(struct fx *f, const char *what, struct req rq, int want_rc,
                         size_t want_responses, size_t want_batches_min)
{
    struct outcome whole, part;
    assert_int_equal(buf_init(&whole.out, 1024, 0), 0);
    assert_int_equal(buf_init(&whole.batches, 1024, 0), 0);
    assert_int_equal(buf_init(&part.out, 1024, 0), 0);
    assert_int_equal(buf_init(&part.batches, 1024, 0), 0);

    run_pieces(f, rq, NULL, 0, &whole);
    assert_int_equal(whole.rc, want_rc);
    struct resp r[MAX_RESP];
    assert_int_equal(parse_responses(&whole.out, r, MAX_RESP), want_responses);
    assert_true(whole.batches.len >= want_batches_min);

    for (size_t cut = 1; cut < rq.len; cut++) {
        run_pieces(f, rq, &cut, 1, &part);
        assert_same_outcome(&whole, &part, what, cut);
    }
    size_t *every = malloc(rq.len * sizeof(size_t));
    assert_non_null(every);
    for (size_t i = 0; i + 1 < rq.len; i++)
        every[i] = i + 1;
    run_pieces(f, rq, every, rq.len - 1, &part);
    free(every);
    assert_same_outcome(&whole, &part, what, (size_t)1);

    buf_free(&whole.out);
    buf_free(&whole.batches);
    buf_free(&part.out);
    buf_free(&part.batches);
}

static void test_splits(void **state)
{
    struct fx *f = *state;
    /* resource attributes on, so the splicing path is covered as well */
    f->cfg.resources.attributes.items[0].key = strdup("deployment.environment");
    f->cfg.resources.attributes.items[0].value = strdup("test");
    f->cfg.resources.attributes.n = 1;
    start(f);
    size_t tl, ml, ll;
    uint8_t *tp = pack(traces_msg(2, 3), &tl);
    uint8_t *mp = pack(metrics_msg(1, 2), &ml);
    uint8_t *lp = pack(logs_msg(2, 1), &ll);
    struct req gz = gzip_of(lp, ll);
    struct req zs = zstd_of(tp, tl);

    TraceReq *bad = traces_msg(2, 1);
    bad->resource_spans[0]->scope_spans[0]->spans[0]->trace_id.len = 3;
    size_t bl;
    uint8_t *bp = pack(bad, &bl);

    check_splits(f, "traces", post("/v1/traces", CT_PB, NULL, tp, tl), RECEIVER_KEEP, 1, 1);
    check_splits(f, "metrics", post("/v1/metrics", CT_PB, NULL, mp, ml), RECEIVER_KEEP, 1, 1);
    check_splits(f, "json", json_post("/v1/traces", JSON_TRACES), RECEIVER_KEEP, 1, 1);
    check_splits(f, "gzip", post("/v1/logs", CT_PB, "Content-Encoding: gzip\r\n", gz.data, gz.len),
                 RECEIVER_KEEP, 1, 1);
    check_splits(f, "zstd",
                 post("/v1/traces", CT_PB, "Content-Encoding: zstd\r\n", zs.data, zs.len),
                 RECEIVER_KEEP, 1, 1);
    check_splits(f, "chunked", post_chunked("/v1/traces", CT_PB, tp, tl, 50), RECEIVER_KEEP, 1, 1);
    check_splits(f, "expect", post("/v1/metrics", CT_PB, "Expect: 100-continue\r\n", mp, ml),
                 RECEIVER_KEEP, 2, 1);
    check_splits(
        f, "pipelined",
        concat(concat(post("/v1/traces", CT_PB, NULL, tp, tl), json_post("/v1/logs", JSON_LOGS)),
               post("/v1/metrics", CT_PB, "Connection: close\r\n", mp, ml)),
        RECEIVER_CLOSE, 3, 3);
    check_splits(f, "partial", post("/v1/traces", CT_PB, NULL, bp, bl), RECEIVER_KEEP, 1, 1);
    check_splits(f, "http/1.0",
                 raw("POST /v1/logs HTTP/1.0\r\nContent-Type: application/json\r\n"
                     "Content-Length: 2\r\n\r\n{}"),
                 RECEIVER_CLOSE, 1, 0);
    check_splits(f, "404 with body", post("/v2/traces", CT_PB, NULL, tp, tl), RECEIVER_CLOSE, 1, 0);
    check_splits(f, "415", post("/v1/traces", "text/plain", NULL, tp, tl), RECEIVER_CLOSE, 1, 0);
    check_splits(f, "bad protobuf", post("/v1/traces", CT_PB, NULL, "\x0a\x05\x01", 3),
                 RECEIVER_KEEP, 1, 0);
    check_splits(f, "bad json", json_post("/v1/traces", "{\"resourceSpans\":[}"), RECEIVER_KEEP, 1,
                 0);
    check_splits(f, "parse error",
                 raw("POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 1"
                     "\r\nContent-Length: 2\r\n\r\nab"),
                 RECEIVER_CLOSE, 1, 0);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

static void test_not_found(void **state)
{
    struct fx *f = *state;
    start(f);
    /* with a body: refused at the head, the body is never read -> close */
    assert_int_equal(feed(f, post("/v1/trace", CT_PB, NULL, "\x0a\x00", 2)), RECEIVER_CLOSE);
    struct resp *r = one_resp(f);
    assert_proto_status(r, 404, 12);
    assert_true(has_header(r, "Connection: close"));

    /* without a body: the framing is intact, the connection stays */
    new_conn(f);
    assert_int_equal(feed(f, raw("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")), RECEIVER_KEEP);
    r = one_resp(f);
    assert_int_equal(r->status, 404);
    assert_false(has_header(r, "Connection: close"));

    /* the query string does not change the route */
    new_conn(f);
    assert_int_equal(feed(f, post("/v1/logs?x=1", CT_JSON, NULL, "{}", 2)), RECEIVER_KEEP);
    assert_json_ok(f);
}

static void test_method_not_allowed(void **state)
{
    struct fx *f = *state;
    start(f);
    assert_int_equal(feed(f, raw("GET /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n")), RECEIVER_KEEP);
    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 405);
    assert_true(has_header(r, "Allow: POST"));

    /* PUT with a body: refused before the body, close */
    new_conn(f);
    assert_int_equal(feed(f, raw("PUT /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                 "application/json\r\nContent-Length: 2\r\n\r\n{}")),
                     RECEIVER_CLOSE);
    r = one_resp(f);
    assert_int_equal(r->status, 405);
    assert_true(has_header(r, "Allow: POST"));
    assert_true(has_header(r, "Content-Type: " CT_JSON));
    json_t *j = json_body(r);
    assert_true(json_integer_value(json_object_get(j, "code")) > 0);
    assert_non_null(json_string_value(json_object_get(j, "message")));
    json_decref(j);
}

static void test_unsupported_media_type(void **state)
{
    struct fx *f = *state;
    start(f);
    size_t len;
    uint8_t *pb = pack(traces_msg(1, 1), &len);
    struct req rq = post("/v1/traces", "text/plain", NULL, pb, len);
    /* answered as soon as the head is in, before the body is sent */
    assert_int_equal(receiver_conn_input(&f->conn, rq.data, rq.len - len, &f->out), RECEIVER_CLOSE);
    struct resp *r = one_resp(f);
    assert_proto_status(r, 415, -1);
    assert_true(has_header(r, "Connection: close"));
    /* further input is ignored */
    size_t before = f->out.len;
    assert_int_equal(receiver_conn_input(&f->conn, pb, len, &f->out), RECEIVER_CLOSE);
    assert_int_equal(f->out.len, before);

    /* no Content-Type at all */
    new_conn(f);
    assert_int_equal(feed(f, post("/v1/traces", NULL, NULL, pb, len)), RECEIVER_CLOSE);
    assert_int_equal(one_resp(f)->status, 415);

    /* media type parameters are fine */
    new_conn(f);
    assert_int_equal(feed(f, post("/v1/logs", "Application/JSON; charset=utf-8", NULL, "{}", 2)),
                     RECEIVER_KEEP);
    assert_json_ok(f);

    /* unknown Content-Encoding */
    new_conn(f);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, "Content-Encoding: br\r\n", pb, len)),
                     RECEIVER_CLOSE);
    r = one_resp(f);
    assert_proto_status(r, 415, -1);
    new_conn(f);
    assert_int_equal(
        feed(f, post("/v1/traces", CT_PB, "Content-Encoding: gzip, zstd\r\n", pb, len)),
        RECEIVER_CLOSE);
    assert_int_equal(one_resp(f)->status, 415);
    struct got g[MAX_GOT];
    assert_int_equal(drain(f, g, MAX_GOT), 0);
}

static void test_bad_protobuf(void **state)
{
    struct fx *f = *state;
    start(f);
    /* ResourceSpans claiming 5 bytes with 1 present */
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, "\x0a\x05\x01", 3)), RECEIVER_KEEP);
    struct resp *r = one_resp(f);
    assert_proto_status(r, 400, 3);
    assert_false(has_header(r, "Connection: close"));

    /* invalid UTF-8 in a span name */
    size_t len;
    TraceReq *m = traces_msg(1, 1);
    m->resource_spans[0]->scope_spans[0]->spans[0]->name = "\xff\xfe";
    uint8_t *pb = pack(m, &len);
    buf_reset(&f->out);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pb, len)), RECEIVER_KEEP);
    r = one_resp(f);
    assert_proto_status(r, 400, 3);
    int code;
    char msg[1100];
    decode_status(r->body, r->body_len, &code, msg, sizeof(msg));
    assert_non_null(strstr(msg, "UTF-8"));

    /* a valid request afterwards on the same connection */
    buf_reset(&f->out);
    pb = pack(traces_msg(1, 1), &len);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pb, len)), RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 200);
    one_batch(f, OTLP_TRACES, 1);
}

static void test_bad_json(void **state)
{
    struct fx *f = *state;
    start(f);
    assert_int_equal(feed(f, json_post("/v1/traces", "{\"resourceSpans\": [}")), RECEIVER_KEEP);
    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 400);
    assert_true(has_header(r, "Content-Type: " CT_JSON));
    json_t *j = json_body(r);
    assert_int_equal(json_integer_value(json_object_get(j, "code")), 3);
    const char *msg = json_string_value(json_object_get(j, "message"));
    assert_non_null(msg);
    assert_true(strlen(msg) > 0);
    json_decref(j);

    /* well-formed JSON, bad OTLP: the message names the field */
    buf_reset(&f->out);
    assert_int_equal(
        feed(f, json_post("/v1/traces", "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{"
                                        "\"traceId\":\"xyz\"}]}]}]}")),
        RECEIVER_KEEP);
    r = one_resp(f);
    assert_int_equal(r->status, 400);
    j = json_body(r);
    assert_int_equal(json_integer_value(json_object_get(j, "code")), 3);
    assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "traceId"));
    json_decref(j);
    struct got g[MAX_GOT];
    assert_int_equal(drain(f, g, MAX_GOT), 0);
}

static void test_body_too_large(void **state)
{
    struct fx *f = *state;
    f->cfg.receiver.max_body_bytes = 1024;
    start(f);
    static uint8_t big[2000];
    /* Content-Length over the limit: refused at the head */
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, big, sizeof(big))), RECEIVER_CLOSE);
    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 413);
    assert_true(has_header(r, "Connection: close"));

    /* chunked body growing past the limit */
    new_conn(f);
    assert_int_equal(feed(f, post_chunked("/v1/traces", CT_PB, big, sizeof(big), 500)),
                     RECEIVER_CLOSE);
    assert_int_equal(one_resp(f)->status, 413);

    /* exactly the limit is fine (and answered 400: zeros are no protobuf) */
    new_conn(f);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, big, 1024)), RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 400);
}

static void test_gzip_bomb(void **state)
{
    struct fx *f = *state;
    f->cfg.receiver.max_decompressed_bytes = 64 * 1024;
    start(f);
    size_t n = 1024 * 1024;
    uint8_t *zeros = A(n);
    struct req gz = gzip_of(zeros, n);
    assert_true(gz.len < 8192);
    assert_int_equal(
        feed(f, post("/v1/traces", CT_PB, "Content-Encoding: gzip\r\n", gz.data, gz.len)),
        RECEIVER_KEEP);
    struct resp *r = one_resp(f);
    assert_proto_status(r, 413, 8);

    buf_reset(&f->out);
    struct req zs = zstd_of(zeros, n);
    assert_int_equal(
        feed(f, post("/v1/traces", CT_JSON, "Content-Encoding: zstd\r\n", zs.data, zs.len)),
        RECEIVER_KEEP);
    r = one_resp(f);
    assert_int_equal(r->status, 413);
    json_t *j = json_body(r);
    assert_int_equal(json_integer_value(json_object_get(j, "code")), 8);
    json_decref(j);
    assert_true(
        metric(f,
               "otlp_receiver_errors_total{protocol=\"http\",reason=\"decompressed_too_large\"}") ==
        2);
}

static void test_header_limits(void **state)
{
    struct fx *f = *state;
    f->cfg.receiver.max_headers = 4;
    f->cfg.receiver.max_header_bytes = 1024;
    start(f);
    assert_int_equal(feed(f, raw("POST /v1/traces HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n"
                                 "C: 3\r\nD: 4\r\nContent-Length: 0\r\n\r\n")),
                     RECEIVER_CLOSE);
    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 431);
    assert_true(has_header(r, "Connection: close"));
    assert_true(
        metric(f, "otlp_receiver_errors_total{protocol=\"http\",reason=\"too_many_headers\"}") ==
        1);

    new_conn(f);
    char big[1200];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char *hdr = A(1400);
    snprintf(hdr, 1400, "POST /v1/traces HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big);
    assert_int_equal(feed(f, raw(hdr)), RECEIVER_CLOSE);
    assert_int_equal(one_resp(f)->status, 431);
}

static void test_length_required(void **state)
{
    struct fx *f = *state;
    start(f);
    assert_int_equal(feed(f, raw("POST /v1/traces HTTP/1.1\r\nHost: x\r\n"
                                 "Content-Type: application/x-protobuf\r\n\r\n")),
                     RECEIVER_CLOSE);
    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 411);
    assert_true(has_header(r, "Connection: close"));
}

/* ------------------------------------------------------------------------ */
/* Partial success, back-pressure, draining                                 */
/* ------------------------------------------------------------------------ */

static void test_partial_success(void **state)
{
    struct fx *f = *state;
    start(f);
    TraceReq *m = traces_msg(2, 3);
    /* resource 0: one span with a 3-byte trace id -> its whole entry is rejected */
    m->resource_spans[0]->scope_spans[0]->spans[1]->trace_id.len = 3;
    size_t len;
    uint8_t *pb = pack(m, &len);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pb, len)), RECEIVER_KEEP);
    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 200);
    TraceResp *tr =
        opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
            NULL, r->body_len, r->body);
    assert_non_null(tr);
    assert_non_null(tr->partial_success);
    assert_int_equal(tr->partial_success->rejected_spans, 3);
    assert_non_null(tr->partial_success->error_message);
    assert_non_null(strstr(tr->partial_success->error_message, "trace_id"));
    opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(tr,
                                                                                             NULL);
    struct got *g = one_batch(f, OTLP_TRACES, 3);
    TraceReq *t = unpack_traces(g);
    assert_int_equal(t->n_resource_spans, 1);
    assert_string_equal(attr(t->resource_spans[0]->resource, "service.name"), "svc-1");
    assert_string_equal(t->resource_spans[0]->scope_spans[0]->spans[0]->name, "op-100");
    free_traces(t);
    assert_true(metric(f, "otlp_spans_rejected_total{protocol=\"http\"}") == 3);
    assert_true(metric(f, "otlp_spans_accepted_total{protocol=\"http\"}") == 3);
    assert_true(metric(f, "otlp_spans_received_total{protocol=\"http\"}") == 6);

    /* JSON: same in the JSON response */
    buf_reset(&f->out);
    assert_int_equal(
        feed(f, json_post("/v1/traces", "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{"
                                        "\"traceId\":\"00000000000000000000000000000000\","
                                        "\"spanId\":\"1112131415161718\"}]}]}]}")),
        RECEIVER_KEEP);
    r = one_resp(f);
    assert_int_equal(r->status, 200);
    json_t *j = json_body(r);
    json_t *ps = json_object_get(j, "partialSuccess");
    assert_non_null(ps);
    assert_string_equal(json_string_value(json_object_get(ps, "rejectedSpans")), "1");
    assert_true(strlen(json_string_value(json_object_get(ps, "errorMessage"))) > 0);
    json_decref(j);
    struct got gg[MAX_GOT];
    assert_int_equal(drain(f, gg, MAX_GOT), 0);
}

static void test_queue_full(void **state)
{
    struct fx *f = *state;
    f->cfg.batch.max_queue_size = 10;
    f->cfg.batch.max_export_batch_size = 100;
    f->cfg.receiver.retry_after_s = 7;
    start(f);
    size_t len;
    uint8_t *pb = pack(traces_msg(1, 4), &len);
    size_t l1;
    uint8_t *p1 = pack(traces_msg(1, 1), &l1);
    struct req rq = post("/v1/traces", CT_PB, NULL, pb, len);
    assert_int_equal(feed(f, rq), RECEIVER_KEEP);
    assert_int_equal(feed(f, rq), RECEIVER_KEEP); /* 8 of 10 queued */
    assert_int_equal(feed(f, rq), RECEIVER_KEEP); /* 12 > 10: refused */
    struct resp r[MAX_RESP];
    assert_int_equal(parse_responses(&f->out, r, MAX_RESP), 3);
    assert_int_equal(r[0].status, 200);
    assert_int_equal(r[1].status, 200);
    assert_proto_status(&r[2], 429, 8);
    assert_true(has_header(&r[2], "Retry-After: 7"));
    assert_false(has_header(&r[2], "Connection: close"));
    assert_int_equal(pipeline_queued_items(f->p), 8);
    assert_true(metric(f, "otlp_spans_refused_total{protocol=\"http\"}") == 4);

    /* nothing of the refused request went into the batch */
    struct got *g = one_batch(f, OTLP_TRACES, 8);
    assert_int_equal(g->requests, 2);
    assert_int_equal(g->len, 2 * len);
    /* released by drain(): accepted again */
    buf_reset(&f->out);
    assert_int_equal(pipeline_queued_items(f->p), 0);
    assert_int_equal(feed(f, rq), RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 200);
    one_batch(f, OTLP_TRACES, 4);

    /* JSON clients get the JSON status */
    buf_reset(&f->out);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pb, len)), RECEIVER_KEEP);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pb, len)), RECEIVER_KEEP);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, p1, l1)), RECEIVER_KEEP);
    assert_int_equal(feed(f, json_post("/v1/traces", JSON_TRACES)), RECEIVER_KEEP); /* 9 + 2 */
    assert_int_equal(parse_responses(&f->out, r, MAX_RESP), 4);
    assert_int_equal(r[2].status, 200);
    assert_int_equal(r[3].status, 429);
    json_t *j = json_body(&r[3]);
    assert_int_equal(json_integer_value(json_object_get(j, "code")), 8);
    json_decref(j);
}

/* Zero-item requests pass the queue budget; when every batch of the pool is
 * waiting for the exporter the worker answers 503. */
static void test_pool_exhausted(void **state)
{
    struct fx *f = *state;
    f->cfg.batch.max_queue_size = 1;
    f->cfg.batch.max_export_batch_size = 1;
    f->cfg.batch.max_concurrent_exports = 1;
    f->cfg.batch.max_batch_bytes = 1024; /* every request below closes its batch */
    start(f);
    char *big = A(1100);
    memset(big, 'v', 1099);
    Resource *res = make_resource("pool");
    res->attributes[1] = kv_str("big", big);
    ResourceSpans *rs = A(sizeof(*rs));
    opentelemetry__proto__trace__v1__resource_spans__init(rs);
    rs->resource = res;
    TraceReq *m = A(sizeof(*m));
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(m);
    m->n_resource_spans = 1;
    m->resource_spans = ptrs(1, rs);
    size_t len;
    uint8_t *pb = pack(m, &len);
    struct req rq = post("/v1/traces", CT_PB, NULL, pb, len);

    unsigned pool = pipeline_free_batches(f->p);
    assert_true(pool > 0 && pool < 64);
    for (unsigned i = 0; i < pool; i++) {
        buf_reset(&f->out);
        assert_int_equal(feed(f, rq), RECEIVER_KEEP);
        assert_int_equal(one_resp(f)->status, 200);
    }
    assert_int_equal(pipeline_free_batches(f->p), 0);
    buf_reset(&f->out);
    assert_int_equal(feed(f, rq), RECEIVER_KEEP);
    struct resp *r = one_resp(f);
    assert_proto_status(r, 503, 14);
    assert_true(has_header(r, "Retry-After: 1"));

    struct got g[MAX_GOT];
    assert_int_equal(drain(f, g, MAX_GOT), pool);
    buf_reset(&f->out);
    assert_int_equal(feed(f, rq), RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 200);
}

static void test_draining(void **state)
{
    struct fx *f = *state;
    start(f);
    size_t len;
    uint8_t *pb = pack(traces_msg(1, 1), &len);
    receiver_set_draining(f->r, true);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pb, len)), RECEIVER_CLOSE);
    struct resp *r = one_resp(f);
    assert_proto_status(r, 503, 14);
    assert_true(has_header(r, "Retry-After: 1"));
    struct got g[MAX_GOT];
    assert_int_equal(drain(f, g, MAX_GOT), 0);

    receiver_set_draining(f->r, false);
    new_conn(f);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pb, len)), RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 200);
    one_batch(f, OTLP_TRACES, 1);
}

/* ------------------------------------------------------------------------ */
/* Resource attributes, metrics, timeouts, connection handling              */
/* ------------------------------------------------------------------------ */

static void test_resource_attributes(void **state)
{
    struct fx *f = *state;
    struct config_kv_list *kv = &f->cfg.resources.attributes;
    kv->items[0].key = strdup("service.name");
    kv->items[0].value = strdup("gateway");
    kv->items[1].key = strdup("deployment.environment");
    kv->items[1].value = strdup("prod");
    kv->n = 2;
    start(f);

    TraceReq *m = traces_msg(2, 2);
    m->resource_spans[1]->resource = NULL; /* gets a Resource */
    size_t len;
    uint8_t *pb = pack(m, &len);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pb, len)), RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 200);
    struct got *g = one_batch(f, OTLP_TRACES, 4);
    TraceReq *t = unpack_traces(g);
    assert_int_equal(t->n_resource_spans, 2);
    const Resource *r0 = t->resource_spans[0]->resource, *r1 = t->resource_spans[1]->resource;
    assert_non_null(r0);
    assert_non_null(r1);
    assert_int_equal(r0->n_attributes, 3);
    assert_string_equal(attr(r0, "service.name"), "gateway"); /* overwritten */
    assert_string_equal(attr(r0, "host.name"), "node-1");     /* kept */
    assert_string_equal(attr(r0, "deployment.environment"), "prod");
    assert_int_equal(r1->n_attributes, 2);
    assert_string_equal(attr(r1, "service.name"), "gateway");
    assert_string_equal(attr(r1, "deployment.environment"), "prod");
    /* the spans are untouched */
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(t->resource_spans[i]->scope_spans[0]->n_spans, 2);
        for (size_t j = 0; j < 2; j++)
            assert_string_equal(t->resource_spans[i]->scope_spans[0]->spans[j]->name,
                                m->resource_spans[i]->scope_spans[0]->spans[j]->name);
    }
    free_traces(t);

    /* logs and metrics carry them too */
    buf_reset(&f->out);
    assert_int_equal(feed(f, json_post("/v1/logs", JSON_LOGS)), RECEIVER_KEEP);
    assert_json_ok(f);
    g = one_batch(f, OTLP_LOGS, 1);
    LogsReq *l = opentelemetry__proto__collector__logs__v1__export_logs_service_request__unpack(
        NULL, g->len, g->body);
    assert_non_null(l);
    assert_string_equal(attr(l->resource_logs[0]->resource, "deployment.environment"), "prod");
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__free_unpacked(l, NULL);
}

static void test_metrics(void **state)
{
    struct fx *f = *state;
    f->cfg.batch.max_queue_size = 5;
    start(f);
    size_t l2, l4, lp;
    uint8_t *p2 = pack(traces_msg(1, 2), &l2);
    uint8_t *p4 = pack(traces_msg(1, 4), &l4);
    TraceReq *pm = traces_msg(2, 1);
    pm->resource_spans[1]->scope_spans[0]->spans[0]->span_id.len = 0;
    uint8_t *pp = pack(pm, &lp);

    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, p2, l2)), RECEIVER_KEEP); /* 200 */
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pp, lp)),
                     RECEIVER_KEEP); /* 200, 1 rej */
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, p4, l4)), RECEIVER_KEEP);    /* 429 */
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, "\x0a", 1)), RECEIVER_KEEP); /* 400 */
    assert_int_equal(feed(f, raw("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")),
                     RECEIVER_KEEP);                                            /* 404 */
    assert_int_equal(feed(f, json_post("/v1/logs", JSON_LOGS)), RECEIVER_KEEP); /* 200 */
    struct resp r[MAX_RESP];
    assert_int_equal(parse_responses(&f->out, r, MAX_RESP), 6);
    int want[] = {200, 200, 429, 400, 404, 200};
    for (int i = 0; i < 6; i++)
        assert_int_equal(r[i].status, want[i]);

    assert_true(metric(f, "http_requests_total{path=\"/v1/traces\",code=\"200\"}") == 2);
    assert_true(metric(f, "http_requests_total{path=\"/v1/traces\",code=\"429\"}") == 1);
    assert_true(metric(f, "http_requests_total{path=\"/v1/traces\",code=\"400\"}") == 1);
    assert_true(metric(f, "http_requests_total{path=\"other\",code=\"404\"}") == 1);
    assert_true(metric(f, "http_requests_total{path=\"/v1/logs\",code=\"200\"}") == 1);
    assert_true(metric(f, "http_requests_total{path=\"/v1/metrics\",code=\"200\"}") == 0);
    assert_true(metric(f, "otlp_spans_received_total{protocol=\"http\"}") == 2 + 2 + 4);
    assert_true(metric(f, "otlp_spans_accepted_total{protocol=\"http\"}") == 3);
    assert_true(metric(f, "otlp_spans_refused_total{protocol=\"http\"}") == 4);
    assert_true(metric(f, "otlp_spans_rejected_total{protocol=\"http\"}") == 1);
    assert_true(metric(f, "otlp_log_records_accepted_total{protocol=\"http\"}") == 1);
    assert_true(metric(f, "otlp_receiver_errors_total{protocol=\"http\",reason=\"queue_full\"}") ==
                1);
    assert_true(
        metric(f, "otlp_receiver_errors_total{protocol=\"http\",reason=\"invalid_protobuf\"}") ==
        1);
    assert_true(metric(f, "otlp_receiver_errors_total{protocol=\"http\",reason=\"not_found\"}") ==
                1);
    assert_true(metric(f, "otlp_worker_requests_total{worker=\"0\"}") == 6);
    assert_true(metric(f, "http_request_duration_seconds_count{path=\"/v1/traces\"}") == 4);
    assert_true(metric(f, "otlp_spans_received_bytes_total{protocol=\"http\"}") ==
                (double)(l2 + lp + l4 + 1));
}

static void test_timeout(void **state)
{
    struct fx *f = *state;
    start(f);
    assert_false(receiver_conn_busy(&f->conn));
    assert_int_equal(
        feed(f, raw("POST /v1/traces HTTP/1.1\r\nHost: x\r\n"
                    "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"re")),
        RECEIVER_KEEP);
    assert_int_equal(f->out.len, 0);
    assert_true(receiver_conn_busy(&f->conn));
    assert_int_equal(receiver_conn_timeout(&f->conn, &f->out), RECEIVER_CLOSE);
    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 408);
    assert_true(has_header(r, "Connection: close"));
    assert_true(has_header(r, "Content-Type: " CT_JSON));
    /* late bytes are ignored */
    size_t before = f->out.len;
    assert_int_equal(feed(f, raw("sourceSpans\":[]}")), RECEIVER_CLOSE);
    assert_int_equal(f->out.len, before);
    assert_true(
        metric(f, "otlp_receiver_errors_total{protocol=\"http\",reason=\"request_timeout\"}") == 1);

    /* half a head */
    new_conn(f);
    assert_int_equal(feed(f, raw("POST /v1/tr")), RECEIVER_KEEP);
    assert_true(receiver_conn_busy(&f->conn));
    assert_int_equal(receiver_conn_timeout(&f->conn, &f->out), RECEIVER_CLOSE);
    assert_int_equal(one_resp(f)->status, 408);
}

static void test_keep_alive(void **state)
{
    struct fx *f = *state;
    start(f);
    size_t len;
    uint8_t *pb = pack(traces_msg(1, 1), &len);

    /* HTTP/1.0 without keep-alive: answer, then close */
    char *h = A(256);
    snprintf(h, 256,
             "POST /v1/traces HTTP/1.0\r\nContent-Type: application/x-protobuf\r\n"
             "Content-Length: %zu\r\n\r\n",
             len);
    assert_int_equal(feed(f, concat(raw(h), (struct req){pb, len})), RECEIVER_CLOSE);
    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 200);
    assert_true(has_header(r, "Connection: close"));

    /* HTTP/1.1 Connection: close */
    new_conn(f);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, "Connection: close\r\n", pb, len)),
                     RECEIVER_CLOSE);
    r = one_resp(f);
    assert_int_equal(r->status, 200);
    assert_true(has_header(r, "Connection: close"));

    /* Connection: close on an error response too */
    new_conn(f);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, "Connection: close\r\n", "\x0a", 1)),
                     RECEIVER_CLOSE);
    r = one_resp(f);
    assert_int_equal(r->status, 400);
    assert_true(has_header(r, "Connection: close"));

    /* a request after Connection: close in the same buffer is not answered */
    new_conn(f);
    assert_int_equal(feed(f, concat(post("/v1/traces", CT_PB, "Connection: close\r\n", pb, len),
                                    post("/v1/traces", CT_PB, NULL, pb, len))),
                     RECEIVER_CLOSE);
    assert_int_equal(one_resp(f)->status, 200);
    struct got g[MAX_GOT];
    assert_int_equal(drain(f, g, MAX_GOT), 1);
    assert_int_equal(g[0].items, 3);
}

/* An HTTP/1.0 client that asked for keep-alive is told the connection stays.
 * BUG (lib/receiver/receiver.c respond_error, after 806edb3): the extra
 * header is either "Allow: POST" (405) or "Connection: keep-alive", so a 405
 * to an HTTP/1.0 keep-alive client lacks the latter while the connection is
 * kept. Left failing for the lead. */
static void test_http10_keep_alive(void **state)
{
    struct fx *f = *state;
    start(f);
    size_t len;
    uint8_t *pb = pack(traces_msg(1, 1), &len);
    char *h = A(256);
    snprintf(h, 256,
             "POST /v1/traces HTTP/1.0\r\nConnection: keep-alive\r\n"
             "Content-Type: application/x-protobuf\r\nContent-Length: %zu\r\n\r\n",
             len);
    assert_int_equal(feed(f, concat(raw(h), (struct req){pb, len})), RECEIVER_KEEP);
    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 200);
    assert_false(has_header(r, "Connection: close"));
    assert_true(has_header(r, "Connection: keep-alive"));
    buf_reset(&f->out);
    assert_int_equal(feed(f, raw("GET /v1/logs HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")),
                     RECEIVER_KEEP);
    r = one_resp(f);
    assert_int_equal(r->status, 405);
    assert_true(has_header(r, "Connection: keep-alive"));
    assert_true(has_header(r, "Allow: POST"));
}

/* A body above 256 KiB is not kept on the idle connection. */
static void test_large_body(void **state)
{
    struct fx *f = *state;
    start(f);
    TraceReq *m = traces_msg(1, 1);
    size_t n = 400 * 1024;
    char *name = A(n + 1);
    memset(name, 'n', n);
    m->resource_spans[0]->scope_spans[0]->spans[0]->name = name;
    size_t len;
    uint8_t *pb = pack(m, &len);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pb, len)), RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 200);
    assert_true(f->conn.body.cap <= 256 * 1024);
    struct got *g = one_batch(f, OTLP_TRACES, 1);
    assert_int_equal(g->len, len);
    assert_memory_equal(g->body, pb, len);

    buf_reset(&f->out);
    pb = pack(traces_msg(1, 2), &len);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pb, len)), RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 200);
    one_batch(f, OTLP_TRACES, 2);
}

/* Many tiny entries, each given a Resource with the configured attributes,
 * grow past what any batch can hold: 413, nothing queued. */
static void test_batch_too_large(void **state)
{
    struct fx *f = *state;
    f->cfg.receiver.max_decompressed_bytes = 64 * 1024;
    f->cfg.batch.max_batch_bytes = 1024;
    struct config_kv_list *kv = &f->cfg.resources.attributes;
    kv->items[0].key = strdup("a.rather.long.resource.attribute.key");
    kv->items[0].value = strdup("and a value that is not short either, to blow it up");
    kv->n = 1;
    start(f);
    size_t n = 30000;
    uint8_t *body = A(2 * n);
    for (size_t i = 0; i < n; i++) {
        body[2 * i] = 0x0a; /* ResourceSpans, empty */
        body[2 * i + 1] = 0x00;
    }
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, body, 2 * n)), RECEIVER_KEEP);
    struct resp *r = one_resp(f);
    assert_proto_status(r, 413, 8);
    struct got g[MAX_GOT];
    assert_int_equal(drain(f, g, MAX_GOT), 0);
}

/* Error messages quote the client's JSON keys: they must still be valid
 * UTF-8, or the JSON error body is not JSON.
 * BUG (lib/otlp/otlp_json.c jfail_rc cuts each path key at 128 bytes, and
 * the whole message at err_len, without regard to UTF-8; lib/receiver/
 * receiver.c encode_status copies the bytes unchecked): here the key is 127
 * 'a' + U+00E9 and the body carries a lone 0xC3. Left failing for the lead. */
static void test_error_message_utf8(void **state)
{
    struct fx *f = *state;
    start(f);
    char key[200];
    memset(key, 'a', 127);
    memcpy(key + 127, "\xc3\xa9", 3); /* U+00E9 split by a 128-byte cut */
    char *js = A(400);
    snprintf(js, 400, "{\"%s\": [}", key);
    assert_int_equal(feed(f, json_post("/v1/traces", js)), RECEIVER_KEEP);
    struct resp *r = one_resp(f);
    assert_int_equal(r->status, 400);
    json_t *j = json_body(r);
    json_decref(j);
}

/* RFC 9110 9.3.2: a response to HEAD carries no content (Content-Length
 * still says how long it would be). A body after the head would be read by
 * the client as the start of the next response.
 * BUG (lib/receiver/receiver.c respond_error): the 405/404 to HEAD is written
 * with http_response_write(), body included, instead of
 * http_response_write_head(). Left failing for the lead. */
static void test_head_request(void **state)
{
    struct fx *f = *state;
    start(f);
    assert_int_equal(feed(f, raw("HEAD /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n")), RECEIVER_KEEP);
    assert_true(f->out.len > 12);
    assert_memory_equal(f->out.data, "HTTP/1.1 405", 12);
    const uint8_t *end = memmem(f->out.data, f->out.len, "\r\n\r\n", 4);
    assert_non_null(end);
    assert_int_equal((size_t)(end + 4 - f->out.data), f->out.len);
}

/* An entry without items is batched like any other accepted entry, also
 * when another entry of the same request is rejected. (Was: handle_request
 * batched only when res.resources > res.rejected_resources, so one accepted
 * empty entry next to one rejected entry was dropped unreported.) */
static void test_empty_entry_with_rejection(void **state)
{
    struct fx *f = *state;
    start(f);
    TraceReq *m = traces_msg(3, 1);
    m->resource_spans[0]->scope_spans[0]->n_spans = 0;               /* accepted, no spans */
    m->resource_spans[1]->scope_spans[0]->spans[0]->span_id.len = 5; /* rejected */
    m->resource_spans[2]->scope_spans[0]->n_spans = 0;               /* accepted, no spans */
    size_t len;
    uint8_t *pb = pack(m, &len);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pb, len)), RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 200);
    struct got *g = one_batch(f, OTLP_TRACES, 0);
    TraceReq *t = unpack_traces(g);
    assert_int_equal(t->n_resource_spans, 2);
    free_traces(t);

    /* one accepted empty entry, one rejected: the empty one is kept too */
    buf_reset(&f->out);
    m->n_resource_spans = 2;
    pb = pack(m, &len);
    assert_int_equal(feed(f, post("/v1/traces", CT_PB, NULL, pb, len)), RECEIVER_KEEP);
    assert_int_equal(one_resp(f)->status, 200);
    g = one_batch(f, OTLP_TRACES, 0);
    t = unpack_traces(g);
    assert_int_equal(t->n_resource_spans, 1);
    assert_string_equal(attr(t->resource_spans[0]->resource, "service.name"), "svc-0");
    free_traces(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_traces_proto),
        T(test_metrics_proto),
        T(test_logs_proto),
        T(test_json),
        T(test_gzip_zstd),
        T(test_chunked),
        T(test_pipelined),
        T(test_expect_continue),
        T(test_splits),
        T(test_not_found),
        T(test_method_not_allowed),
        T(test_unsupported_media_type),
        T(test_bad_protobuf),
        T(test_bad_json),
        T(test_body_too_large),
        T(test_gzip_bomb),
        T(test_header_limits),
        T(test_length_required),
        T(test_partial_success),
        T(test_queue_full),
        T(test_pool_exhausted),
        T(test_draining),
        T(test_resource_attributes),
        T(test_metrics),
        T(test_timeout),
        T(test_keep_alive),
        T(test_http10_keep_alive),
        T(test_large_body),
        T(test_batch_too_large),
        T(test_error_message_utf8),
        T(test_head_request),
        T(test_empty_entry_with_rejection),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
