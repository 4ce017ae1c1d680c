/* SPDX-License-Identifier: Apache-2.0 */
/* Tests lib/grpc: a real nghttp2 client session in the test talks to
 * grpc_conn_input() through memory (whole, byte by byte, odd splits), and
 * what reached the pipeline is compared with what was sent. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <nghttp2/nghttp2.h>
#include <zstd.h>

#include "base/base.h"
#include "compress/compress.h"
#include "config/config.h"
#include "grpc/grpc_receiver.h"
#include "grpc/grpc_wire.h"
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
typedef Opentelemetry__Proto__Metrics__V1__NumberDataPoint NumberDP;
typedef Opentelemetry__Proto__Logs__V1__ResourceLogs ResourceLogs;
typedef Opentelemetry__Proto__Logs__V1__ScopeLogs ScopeLogs;
typedef Opentelemetry__Proto__Logs__V1__LogRecord LogRecord;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest TraceReq;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse TraceResp;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest MetricsReq;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest LogsReq;

#define TRACES_PATH "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
#define METRICS_PATH "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
#define LOGS_PATH "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

/* ------------------------------------------------------------------------ */
/* Arena and OTLP builders                                                  */
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

static const uint8_t TRACE_ID[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t SPAN_ID[8] = {1, 2, 3, 4, 5, 6, 7, 8};

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

static Resource *make_resource(void)
{
    Resource *r = A(sizeof(*r));
    opentelemetry__proto__resource__v1__resource__init(r);
    r->n_attributes = 1;
    r->attributes = A(sizeof(void *));
    r->attributes[0] = kv_str("service.name", "checkout");
    return r;
}

/* R entries of N spans each; `attr`, when set, is added to every span. A
 * span id length of `bad_entry` + 1 == r makes entry r invalid. */
static TraceReq *traces_msg(unsigned R, unsigned N, const char *attr, unsigned bad_entry)
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
        for (unsigned i = 0; i < N; i++) {
            Span *s = A(sizeof(*s));
            opentelemetry__proto__trace__v1__span__init(s);
            s->trace_id.data = (uint8_t *)TRACE_ID;
            s->trace_id.len = 16;
            s->span_id.data = (uint8_t *)SPAN_ID;
            s->span_id.len = bad_entry == r + 1 ? 3 : 8;
            s->name = "op";
            s->start_time_unix_nano = 1000 + i;
            s->end_time_unix_nano = 2000 + i;
            if (attr != NULL) {
                s->n_attributes = 1;
                s->attributes = A(sizeof(void *));
                s->attributes[0] = kv_str("payload", attr);
            }
            ss->spans[i] = s;
        }
        ResourceSpans *rs = A(sizeof(*rs));
        opentelemetry__proto__trace__v1__resource_spans__init(rs);
        rs->resource = make_resource();
        rs->n_scope_spans = 1;
        rs->scope_spans = A(sizeof(void *));
        rs->scope_spans[0] = ss;
        req->resource_spans[r] = rs;
    }
    return req;
}

static MetricsReq *metrics_msg(unsigned R)
{
    MetricsReq *req = A(sizeof(*req));
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__init(req);
    req->n_resource_metrics = R;
    req->resource_metrics = A(R * sizeof(void *));
    for (unsigned r = 0; r < R; r++) {
        NumberDP *d = A(sizeof(*d));
        opentelemetry__proto__metrics__v1__number_data_point__init(d);
        d->value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT;
        d->as_int = r;
        Gauge *g = A(sizeof(*g));
        opentelemetry__proto__metrics__v1__gauge__init(g);
        g->n_data_points = 3;
        g->data_points = A(3 * sizeof(void *));
        g->data_points[0] = g->data_points[1] = g->data_points[2] = d;
        Metric *m = A(sizeof(*m));
        opentelemetry__proto__metrics__v1__metric__init(m);
        m->name = "queue.depth";
        m->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE;
        m->gauge = g;
        ScopeMetrics *sm = A(sizeof(*sm));
        opentelemetry__proto__metrics__v1__scope_metrics__init(sm);
        sm->n_metrics = 1;
        sm->metrics = A(sizeof(void *));
        sm->metrics[0] = m;
        ResourceMetrics *rm = A(sizeof(*rm));
        opentelemetry__proto__metrics__v1__resource_metrics__init(rm);
        rm->resource = make_resource();
        rm->n_scope_metrics = 1;
        rm->scope_metrics = A(sizeof(void *));
        rm->scope_metrics[0] = sm;
        req->resource_metrics[r] = rm;
    }
    return req;
}

static LogsReq *logs_msg(unsigned R)
{
    LogsReq *req = A(sizeof(*req));
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__init(req);
    req->n_resource_logs = R;
    req->resource_logs = A(R * sizeof(void *));
    for (unsigned r = 0; r < R; r++) {
        LogRecord *l = A(sizeof(*l));
        opentelemetry__proto__logs__v1__log_record__init(l);
        l->severity_text = "WARN";
        ScopeLogs *sl = A(sizeof(*sl));
        opentelemetry__proto__logs__v1__scope_logs__init(sl);
        sl->n_log_records = 2;
        sl->log_records = A(2 * sizeof(void *));
        sl->log_records[0] = sl->log_records[1] = l;
        ResourceLogs *rl = A(sizeof(*rl));
        opentelemetry__proto__logs__v1__resource_logs__init(rl);
        rl->resource = make_resource();
        rl->n_scope_logs = 1;
        rl->scope_logs = A(sizeof(void *));
        rl->scope_logs[0] = sl;
        req->resource_logs[r] = rl;
    }
    return req;
}

struct bytes {
    uint8_t *data;
    size_t len;
};

static struct bytes pack(const ProtobufCMessage *m)
{
    struct bytes b;
    b.len = protobuf_c_message_get_packed_size(m);
    b.data = A(b.len);
    assert_int_equal(protobuf_c_message_pack(m, b.data), b.len);
    return b;
}

/* gRPC length-prefixed message. */
static struct bytes frame(const uint8_t *msg, size_t len, uint8_t flag)
{
    struct bytes b = {A(len + 5), len + 5};
    b.data[0] = flag;
    b.data[1] = (uint8_t)(len >> 24);
    b.data[2] = (uint8_t)(len >> 16);
    b.data[3] = (uint8_t)(len >> 8);
    b.data[4] = (uint8_t)len;
    memcpy(b.data + 5, msg, len);
    return b;
}

static struct bytes concat(struct bytes a, struct bytes b)
{
    struct bytes c = {A(a.len + b.len), a.len + b.len};
    if (a.len > 0)
        memcpy(c.data, a.data, a.len);
    if (b.len > 0)
        memcpy(c.data + a.len, b.data, b.len);
    return c;
}

/* ------------------------------------------------------------------------ */
/* Environment: config, pipeline, registry, receiver, one worker            */
/* ------------------------------------------------------------------------ */

static struct svc_config cfg;
static struct pipeline *pl;
static struct obs_registry *reg;
static struct grpc_receiver *gr;
static struct grpc_worker *gw;

static int setup(void **state)
{
    (void)state;
    config_defaults(&cfg);
    cfg.batch.max_queue_size = 10000;
    cfg.batch.max_export_batch_size = 5000;
    cfg.receiver.grpc_max_recv_msg_bytes = 64 * 1024;
    cfg.receiver.max_decompressed_bytes = 256 * 1024;
    cfg.receiver.retry_after_s = 7;
    return 0;
}

static void env_up(void)
{
    assert_int_equal(pipeline_create(&cfg, 1, &pl), 0);
    assert_int_equal(obs_registry_create(1, 8192, &reg), 0);
    assert_int_equal(grpc_receiver_create(&cfg, pl, reg, 1, &gr), 0);
    assert_int_equal(grpc_worker_create(gr, 0, &gw), 0);
}

static int teardown(void **state)
{
    (void)state;
    grpc_worker_destroy(gw);
    grpc_receiver_destroy(gr);
    obs_registry_destroy(reg);
    pipeline_destroy(pl);
    gw = NULL;
    gr = NULL;
    reg = NULL;
    pl = NULL;
    config_free(&cfg);
    arena_free();
    return 0;
}

/* Every batch of `sig` that reached the pipeline, concatenated. */
static struct bytes drain_batches(enum otlp_signal sig, uint64_t *items)
{
    struct bytes all = {NULL, 0};
    *items = 0;
    pipeline_tick(pl, 0, base_now_ms(), true);
    struct batch *b;
    while ((b = pipeline_dequeue(pl)) != NULL) {
        assert_int_equal(b->signal, sig);
        struct bytes part = {b->body.data, b->body.len};
        all = concat(all, part);
        *items += b->items;
        pipeline_release(pl, b);
    }
    return all;
}

static uint64_t err_count(const char *reason)
{
    struct buf page;
    buf_init(&page, 0, 0);
    assert_int_equal(obs_render_prometheus(reg, &page), 0);
    buf_append(&page, "", 1);
    char key[128];
    snprintf(key, sizeof(key), "otlp_receiver_errors_total{protocol=\"grpc\",reason=\"%s\"} ",
             reason);
    const char *p = strstr((const char *)page.data, key);
    assert_non_null(p);
    uint64_t v = strtoull(p + strlen(key), NULL, 10);
    buf_free(&page);
    return v;
}

/* ------------------------------------------------------------------------ */
/* The test client: an nghttp2 client session wired to grpc_conn_input()    */
/* ------------------------------------------------------------------------ */

struct result {
    int32_t id;
    struct bytes req; /* framed request body to send */
    size_t off;
    size_t chunk;    /* most bytes per DATA frame */
    size_t defer_at; /* stop sending here (0: never) */
    bool deferred;
    int http_status;
    int grpc_status; /* -1 until seen */
    char grpc_message[512];
    char details[1024];
    char content_type[64];
    int header_blocks; /* response HEADERS frames (2: headers + trailers) */
    bool trailers_only;
    struct buf body;
    bool closed;
    uint32_t close_code;
    bool rst_received;
    uint32_t rst_code;
};

enum feed { FEED_WHOLE, FEED_BYTES, FEED_ODD };

struct tclient {
    nghttp2_session *s;
    struct grpc_conn conn;
    struct buf out;
    enum feed feed;
    bool server_closed;
    bool goaway_received;
    struct result res[32];
    unsigned n_res;
};

static struct result *find(struct tclient *t, int32_t id)
{
    for (unsigned i = 0; i < t->n_res; i++)
        if (t->res[i].id == id)
            return &t->res[i];
    return NULL;
}

static int c_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                       size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                       void *ud)
{
    (void)s;
    (void)flags;
    struct result *r = find(ud, f->hd.stream_id);
    if (r == NULL)
        return 0;
    char v[1024];
    size_t n = valuelen < sizeof(v) - 1 ? valuelen : sizeof(v) - 1;
    memcpy(v, value, n);
    v[n] = '\0';
    if (namelen == 7 && memcmp(name, ":status", 7) == 0)
        r->http_status = atoi(v);
    else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0)
        r->grpc_status = atoi(v);
    else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0)
        snprintf(r->grpc_message, sizeof(r->grpc_message), "%.511s", v);
    else if (namelen == 23 && memcmp(name, "grpc-status-details-bin", 23) == 0)
        snprintf(r->details, sizeof(r->details), "%.1023s", v);
    else if (namelen == 12 && memcmp(name, "content-type", 12) == 0)
        snprintf(r->content_type, sizeof(r->content_type), "%.63s", v);
    return 0;
}

static int c_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    struct tclient *t = ud;
    if (f->hd.type == NGHTTP2_GOAWAY)
        t->goaway_received = true;
    struct result *r = find(t, f->hd.stream_id);
    if (r == NULL)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS) {
        r->header_blocks++;
        if (r->header_blocks == 1 && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            r->trailers_only = true;
    } else if (f->hd.type == NGHTTP2_RST_STREAM) {
        r->rst_received = true;
        r->rst_code = f->rst_stream.error_code;
    }
    return 0;
}

static int c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                     void *ud)
{
    (void)s;
    (void)flags;
    struct result *r = find(ud, id);
    if (r != NULL)
        assert_int_equal(buf_append(&r->body, data, len), 0);
    return 0;
}

static int c_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)s;
    struct result *r = find(ud, id);
    if (r != NULL) {
        r->closed = true;
        r->close_code = code;
    }
    return 0;
}

static ssize_t c_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                      nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)id;
    (void)ud;
    struct result *r = src->ptr;
    size_t end = r->req.len;
    if (r->defer_at != 0 && r->defer_at < end) {
        end = r->defer_at;
        if (r->off == end) {
            r->deferred = true;
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    size_t n = end - r->off;
    if (n > length)
        n = length;
    if (r->chunk != 0 && n > r->chunk)
        n = r->chunk;
    memcpy(buf, r->req.data + r->off, n);
    r->off += n;
    if (r->off == r->req.len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void client_open(struct tclient *t, enum feed feed)
{
    memset(t, 0, sizeof(*t));
    t->feed = feed;
    nghttp2_session_callbacks *cb;
    assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
    nghttp2_session_callbacks_set_on_header_callback(cb, c_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, c_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, c_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, c_on_close);
    assert_int_equal(nghttp2_session_client_new(&t->s, cb, t), 0);
    nghttp2_session_callbacks_del(cb);
    assert_int_equal(nghttp2_submit_settings(t->s, NGHTTP2_FLAG_NONE, NULL, 0), 0);
    assert_int_equal(grpc_conn_init(&t->conn, gw), 0);
    assert_int_equal(buf_init(&t->out, 0, 0), 0);
}

static void client_close(struct tclient *t)
{
    grpc_conn_fini(&t->conn);
    nghttp2_session_del(t->s);
    buf_free(&t->out);
    for (unsigned i = 0; i < t->n_res; i++)
        buf_free(&t->res[i].body);
}

/* Feed `len` bytes to the server the way t->feed says. */
static void feed_server(struct tclient *t, const uint8_t *p, size_t len)
{
    size_t step = t->feed == FEED_BYTES ? 1 : t->feed == FEED_ODD ? 13 : len;
    for (size_t off = 0; off < len && !t->server_closed; off += step) {
        size_t n = len - off < step ? len - off : step;
        if (grpc_conn_input(&t->conn, p + off, n, &t->out) == GRPC_CLOSE)
            t->server_closed = true;
    }
}

/* Move bytes both ways until neither side has anything to say. */
static void pump(struct tclient *t)
{
    struct buf tmp;
    buf_init(&tmp, 0, 0);
    for (int round = 0; round < 100000; round++) {
        bool progress = false;
        buf_reset(&tmp);
        const uint8_t *p;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(t->s, &p)) > 0)
            buf_append(&tmp, p, (size_t)n);
        assert_true(n >= 0);
        if (tmp.len > 0 && !t->server_closed) {
            feed_server(t, tmp.data, tmp.len);
            progress = true;
        } else if (!t->server_closed && grpc_conn_want_write(&t->conn)) {
            if (grpc_conn_output(&t->conn, &t->out) == GRPC_CLOSE)
                t->server_closed = true;
        }
        if (t->out.len > 0) {
            ssize_t rv = nghttp2_session_mem_recv(t->s, t->out.data, t->out.len);
            assert_int_equal(rv, (ssize_t)t->out.len);
            buf_reset(&t->out);
            progress = true;
        }
        if (!progress)
            break;
    }
    buf_free(&tmp);
}

static struct result *submit(struct tclient *t, const char *path, struct bytes body, size_t chunk,
                             const char *encoding, const char *timeout, const char *ctype)
{
    assert_true(t->n_res < ARRAY_SIZE(t->res));
    struct result *r = &t->res[t->n_res++];
    memset(r, 0, sizeof(*r));
    r->req = body;
    r->chunk = chunk;
    r->grpc_status = -1;
    buf_init(&r->body, 0, 0);
    nghttp2_nv nva[8];
    size_t n = 0;
#define ADD(k, v)                                                                                  \
    nva[n++] =                                                                                     \
        (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), NGHTTP2_NV_FLAG_NONE}
    ADD(":method", "POST");
    ADD(":scheme", "http");
    ADD(":path", path);
    ADD(":authority", "localhost:4317");
    ADD("content-type", ctype != NULL ? ctype : "application/grpc");
    ADD("te", "trailers");
    if (encoding != NULL)
        ADD("grpc-encoding", encoding);
    if (timeout != NULL)
        ADD("grpc-timeout", timeout);
#undef ADD
    nghttp2_data_provider prd = {.source.ptr = r, .read_callback = c_read};
    r->id = nghttp2_submit_request(t->s, NULL, nva, n, body.data != NULL ? &prd : NULL, r);
    assert_true(r->id > 0);
    return r;
}

/* Export and check the answer is OK with an empty (or partial) response. */
static void expect_ok(const struct result *r)
{
    if (r->grpc_status != 0)
        fail_msg("grpc-status %d: %s", r->grpc_status, r->grpc_message);
    assert_int_equal(r->http_status, 200);
    assert_string_equal(r->content_type, "application/grpc");
    assert_int_equal(r->header_blocks, 2); /* headers, then trailers */
    assert_false(r->trailers_only);
    assert_true(r->closed);
    assert_int_equal(r->close_code, NGHTTP2_NO_ERROR);
    assert_true(r->body.len >= 5);
    assert_int_equal(r->body.data[0], 0);
    uint32_t len = (uint32_t)r->body.data[1] << 24 | (uint32_t)r->body.data[2] << 16 |
                   (uint32_t)r->body.data[3] << 8 | r->body.data[4];
    assert_int_equal(len + 5, r->body.len);
}

static void expect_status(const struct result *r, int grpc_status, const char *msg_part)
{
    assert_true(r->closed);
    assert_int_equal(r->grpc_status, grpc_status);
    assert_true(r->trailers_only);
    assert_int_equal(r->body.len, 0);
    if (msg_part != NULL && strstr(r->grpc_message, msg_part) == NULL)
        fail_msg("grpc-message '%s' lacks '%s'", r->grpc_message, msg_part);
}

/* ------------------------------------------------------------------------ */
/* Helpers under test                                                       */
/* ------------------------------------------------------------------------ */

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static size_t b64decode(const char *s, uint8_t *out)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (; *s != '\0' && *s != '='; s++) {
        int v = b64val(*s);
        assert_true(v >= 0);
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}

/* Minimal protobuf reader: next field of p[*off..len). Returns the field
 * number, sets wire type and either *v (varint) or *sub and *sublen. */
static unsigned pb_next(const uint8_t *p, size_t len, size_t *off, unsigned *wt, uint64_t *v,
                        const uint8_t **sub, size_t *sublen)
{
    uint64_t key = 0;
    int shift = 0;
    while (*off < len) {
        uint8_t b = p[(*off)++];
        key |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80))
            break;
    }
    *wt = key & 7;
    uint64_t x = 0;
    shift = 0;
    while (*off < len) {
        uint8_t b = p[(*off)++];
        x |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80))
            break;
    }
    if (*wt == 0) {
        *v = x;
    } else {
        assert_int_equal(*wt, 2);
        assert_true(*off + x <= len);
        *sub = p + *off;
        *sublen = (size_t)x;
        *off += (size_t)x;
    }
    return (unsigned)(key >> 3);
}

/* google.rpc.Status in base64: check code, message and RetryInfo delay. */
static void check_details(const char *b64, int code, const char *msg_part, uint64_t delay_s)
{
    uint8_t raw[1024];
    size_t len = b64decode(b64, raw);
    size_t off = 0;
    unsigned wt;
    uint64_t v = 0;
    const uint8_t *sub = NULL;
    size_t sublen = 0;
    bool got_code = false, got_msg = false, got_retry = false;
    while (off < len) {
        unsigned f = pb_next(raw, len, &off, &wt, &v, &sub, &sublen);
        if (f == 1) {
            assert_int_equal(v, (uint64_t)code);
            got_code = true;
        } else if (f == 2) {
            char m[512];
            snprintf(m, sizeof(m), "%.*s", (int)sublen, (const char *)sub);
            assert_non_null(strstr(m, msg_part));
            got_msg = true;
        } else if (f == 3) { /* Any */
            const uint8_t *any = sub;
            size_t any_len = sublen, aoff = 0;
            bool right_type = false;
            while (aoff < any_len) {
                unsigned af = pb_next(any, any_len, &aoff, &wt, &v, &sub, &sublen);
                if (af == 1) {
                    const char *t = "type.googleapis.com/google.rpc.RetryInfo";
                    assert_int_equal(sublen, strlen(t));
                    assert_memory_equal(sub, t, sublen);
                    right_type = true;
                } else if (af == 2) { /* RetryInfo */
                    size_t roff = 0;
                    const uint8_t *ri = sub;
                    size_t ri_len = sublen;
                    assert_int_equal(pb_next(ri, ri_len, &roff, &wt, &v, &sub, &sublen), 1);
                    const uint8_t *dur = sub;
                    size_t dur_len = sublen, doff = 0;
                    assert_int_equal(pb_next(dur, dur_len, &doff, &wt, &v, &sub, &sublen), 1);
                    assert_int_equal(wt, 0);
                    assert_int_equal(v, delay_s);
                    got_retry = true;
                }
            }
            assert_true(right_type);
        }
    }
    assert_true(got_code);
    assert_true(got_msg);
    assert_true(got_retry);
}

static void test_wire(void **state)
{
    (void)state;
    uint64_t ns;
    assert_int_equal(grpc_timeout_parse((const uint8_t *)"10S", 3, &ns), 0);
    assert_int_equal(ns, 10000000000ull);
    assert_int_equal(grpc_timeout_parse((const uint8_t *)"250m", 4, &ns), 0);
    assert_int_equal(ns, 250000000ull);
    assert_int_equal(grpc_timeout_parse((const uint8_t *)"99999999H", 9, &ns), 0);
    assert_int_equal(ns, UINT64_MAX); /* saturated */
    assert_int_equal(grpc_timeout_parse((const uint8_t *)"99999999S", 9, &ns), 0);
    assert_int_equal(ns, 99999999ull * 1000000000ull);
    assert_int_equal(grpc_timeout_parse((const uint8_t *)"0n", 2, &ns), 0);
    assert_int_equal(ns, 0);
    assert_int_equal(grpc_timeout_parse((const uint8_t *)"123456789S", 10, &ns), -EINVAL);
    assert_int_equal(grpc_timeout_parse((const uint8_t *)"S", 1, &ns), -EINVAL);
    assert_int_equal(grpc_timeout_parse((const uint8_t *)"1x", 2, &ns), -EINVAL);
    assert_int_equal(grpc_timeout_parse((const uint8_t *)"-1S", 3, &ns), -EINVAL);

    char out[32];
    assert_int_equal(grpc_percent_encode("a b%c\n\xc3\xa9", out, sizeof(out)), 16);
    assert_string_equal(out, "a b%25c%0A%C3%A9");
    assert_int_equal(grpc_percent_encode("%%%%", out, 8), 6); /* no half escape */
    assert_string_equal(out, "%25%25");

    char b[16];
    assert_int_equal(grpc_base64_encode((const uint8_t *)"foob", 4, b, sizeof(b)), 6);
    assert_string_equal(b, "Zm9vYg");
    assert_int_equal(grpc_base64_encode((const uint8_t *)"fooba", 5, b, sizeof(b)), 7);
    assert_string_equal(b, "Zm9vYmE");
    assert_int_equal(grpc_base64_encode((const uint8_t *)"foobar", 6, b, sizeof(b)), 8);
    assert_string_equal(b, "Zm9vYmFy");
    assert_int_equal(grpc_base64_encode((const uint8_t *)"foobar", 6, b, 8), -EMSGSIZE);

    struct buf d;
    buf_init(&d, 0, 0);
    assert_int_equal(grpc_status_details_encode(8, "queue full", true, 300, &d), 0);
    char enc[512];
    assert_true(grpc_base64_encode(d.data, d.len, enc, sizeof(enc)) > 0);
    check_details(enc, 8, "queue full", 300);
    buf_free(&d);

    assert_string_equal(grpc_status_name(8), "ResourceExhausted");
    assert_string_equal(grpc_status_name(99), "Unknown");
    assert_string_equal(grpc_signal_path(OTLP_LOGS), LOGS_PATH);
}

/* ------------------------------------------------------------------------ */
/* Exports                                                                  */
/* ------------------------------------------------------------------------ */

static void export_one(enum otlp_signal sig, enum feed feed, size_t chunk)
{
    struct bytes msg;
    const char *path;
    uint64_t want_items;
    if (sig == OTLP_TRACES) {
        msg = pack(&traces_msg(2, 3, NULL, 0)->base);
        path = TRACES_PATH;
        want_items = 6;
    } else if (sig == OTLP_METRICS) {
        msg = pack(&metrics_msg(3)->base);
        path = METRICS_PATH;
        want_items = 9;
    } else {
        msg = pack(&logs_msg(2)->base);
        path = LOGS_PATH;
        want_items = 4;
    }
    struct tclient t;
    client_open(&t, feed);
    struct result *r = submit(&t, path, frame(msg.data, msg.len, 0), chunk, NULL, "10S", NULL);
    pump(&t);
    expect_ok(r);
    assert_int_equal(r->body.len, 5); /* empty Export*ServiceResponse */
    assert_false(grpc_conn_busy(&t.conn));
    uint64_t items;
    struct bytes got = drain_batches(sig, &items);
    assert_int_equal(items, want_items);
    assert_int_equal(got.len, msg.len);
    assert_memory_equal(got.data, msg.data, msg.len);
    client_close(&t);
}

static void test_export_signals(void **state)
{
    (void)state;
    env_up();
    for (int f = FEED_WHOLE; f <= FEED_ODD; f++)
        for (int s = 0; s < OTLP_SIGNAL_COUNT; s++)
            export_one((enum otlp_signal)s, (enum feed)f, 0);
    /* a message in many small DATA frames, fed whole and byte by byte */
    export_one(OTLP_TRACES, FEED_WHOLE, 7);
    export_one(OTLP_TRACES, FEED_BYTES, 1);
    export_one(OTLP_METRICS, FEED_ODD, 3);
    struct buf page;
    buf_init(&page, 0, 0);
    assert_int_equal(obs_render_prometheus(reg, &page), 0);
    buf_append(&page, "", 1);
    assert_non_null(strstr((char *)page.data,
                           "grpc_requests_total{method=\"opentelemetry.proto.collector.trace.v1."
                           "TraceService/Export\",grpc_status=\"OK\"} 5\n"));
    assert_non_null(strstr((char *)page.data, "otlp_spans_accepted_total{protocol=\"grpc\"} 30\n"));
    assert_non_null(
        strstr((char *)page.data, "otlp_metric_points_received_total{protocol=\"grpc\"} 36\n"));
    buf_free(&page);
}

/* Several requests on one connection, in flight together, frames interleaved. */
static void test_concurrent_streams(void **state)
{
    (void)state;
    env_up();
    struct tclient t;
    client_open(&t, FEED_ODD);
    struct bytes msgs[6];
    struct result *rs[6];
    for (int i = 0; i < 6; i++) {
        msgs[i] = pack(&traces_msg(1, (unsigned)i + 1, NULL, 0)->base);
        rs[i] = submit(&t, TRACES_PATH, frame(msgs[i].data, msgs[i].len, 0), 11, NULL, NULL, NULL);
    }
    pump(&t);
    struct bytes want = {NULL, 0};
    for (int i = 0; i < 6; i++) {
        expect_ok(rs[i]);
        want = concat(want, msgs[i]);
    }
    uint64_t items;
    struct bytes got = drain_batches(OTLP_TRACES, &items);
    assert_int_equal(items, 21);
    /* all six entries arrived; the order is the order requests completed */
    assert_int_equal(got.len, want.len);
    TraceReq *u = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
        NULL, got.len, got.data);
    assert_non_null(u);
    assert_int_equal(u->n_resource_spans, 6);
    size_t spans = 0;
    for (size_t i = 0; i < u->n_resource_spans; i++)
        spans += u->resource_spans[i]->scope_spans[0]->n_spans;
    assert_int_equal(spans, 21);
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(u,
                                                                                            NULL);
    client_close(&t);
}

static struct bytes zstd_bytes(const uint8_t *p, size_t len)
{
    size_t cap = ZSTD_compressBound(len);
    struct bytes b = {A(cap), 0};
    b.len = ZSTD_compress(b.data, cap, p, len, 3);
    assert_false(ZSTD_isError(b.len));
    return b;
}

static void test_compressed(void **state)
{
    (void)state;
    env_up();
    struct compress_ctx *cz;
    assert_int_equal(compress_ctx_create(&cz), 0);
    struct bytes msg = pack(&traces_msg(3, 4, "some attribute value", 0)->base);
    struct buf gz;
    buf_init(&gz, 0, 0);
    assert_int_equal(compress_gzip(cz, msg.data, msg.len, &gz, 6), 0);
    struct bytes z = zstd_bytes(msg.data, msg.len);

    for (int f = FEED_WHOLE; f <= FEED_BYTES; f++) {
        struct tclient t;
        client_open(&t, (enum feed)f);
        struct result *a =
            submit(&t, TRACES_PATH, frame(gz.data, gz.len, 1), 0, "gzip", NULL, NULL);
        struct result *b = submit(&t, TRACES_PATH, frame(z.data, z.len, 1), 0, "zstd", NULL, NULL);
        /* grpc-encoding set, this message not compressed: fine */
        struct result *c =
            submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, "gzip", NULL, NULL);
        pump(&t);
        expect_ok(a);
        expect_ok(b);
        expect_ok(c);
        uint64_t items;
        struct bytes got = drain_batches(OTLP_TRACES, &items);
        assert_int_equal(items, 36);
        assert_int_equal(got.len, 3 * msg.len);
        for (int i = 0; i < 3; i++)
            assert_memory_equal(got.data + i * msg.len, msg.data, msg.len);
        client_close(&t);
    }
    /* corrupt gzip -> INTERNAL; unknown encoding -> UNIMPLEMENTED */
    struct tclient t;
    client_open(&t, FEED_WHOLE);
    gz.data[gz.len / 2] ^= 0xff;
    gz.data[gz.len - 5] ^= 0xff;
    struct result *bad = submit(&t, TRACES_PATH, frame(gz.data, gz.len, 1), 0, "gzip", NULL, NULL);
    struct result *unk =
        submit(&t, TRACES_PATH, frame(gz.data, gz.len, 1), 0, "snappy", NULL, NULL);
    pump(&t);
    expect_status(bad, GRPC_STATUS_INTERNAL, "could not be decompressed");
    expect_status(unk, GRPC_STATUS_UNIMPLEMENTED, "grpc-encoding");
    uint64_t items;
    assert_int_equal(drain_batches(OTLP_TRACES, &items).len, 0);
    client_close(&t);
    buf_free(&gz);
    compress_ctx_destroy(cz);
}

static void test_partial_success(void **state)
{
    (void)state;
    env_up();
    struct tclient t;
    client_open(&t, FEED_WHOLE);
    struct bytes msg = pack(&traces_msg(3, 2, NULL, 2)->base); /* entry 1 invalid */
    struct result *r = submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, NULL, NULL);
    pump(&t);
    expect_ok(r);
    TraceResp *resp =
        opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
            NULL, r->body.len - 5, r->body.data + 5);
    assert_non_null(resp);
    assert_non_null(resp->partial_success);
    assert_int_equal(resp->partial_success->rejected_spans, 2);
    assert_non_null(strstr(resp->partial_success->error_message, "span_id"));
    opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(resp,
                                                                                             NULL);
    uint64_t items;
    struct bytes got = drain_batches(OTLP_TRACES, &items);
    assert_int_equal(items, 4);
    TraceReq *u = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
        NULL, got.len, got.data);
    assert_non_null(u);
    assert_int_equal(u->n_resource_spans, 2);
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(u,
                                                                                            NULL);
    client_close(&t);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

static void test_errors(void **state)
{
    (void)state;
    cfg.receiver.grpc_max_recv_msg_bytes = 1024;
    env_up();
    struct bytes msg = pack(&traces_msg(1, 2, NULL, 0)->base);
    char *blob = A(2001);
    memset(blob, '.', 2000);
    struct bytes big = pack(&traces_msg(1, 1, blob, 0)->base);
    uint8_t junk[] = {0x0a, 0x05, 0x0a, 0x03, 0xff, 0xff}; /* length past the end */
    uint8_t oversize_hdr[5] = {0, 0, 0x10, 0, 1};          /* 1 MiB + 1 announced */

    for (int f = FEED_WHOLE; f <= FEED_BYTES; f++) {
        struct tclient t;
        client_open(&t, (enum feed)f);
        struct result *unknown = submit(
            &t, "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
            frame(msg.data, msg.len, 0), 0, NULL, NULL, NULL);
        struct result *flag =
            submit(&t, TRACES_PATH, frame(msg.data, msg.len, 1), 0, NULL, NULL, NULL);
        struct result *bad_flag =
            submit(&t, TRACES_PATH, frame(msg.data, msg.len, 2), 0, NULL, NULL, NULL);
        struct result *malformed =
            submit(&t, TRACES_PATH, frame(junk, sizeof(junk), 0), 0, NULL, NULL, NULL);
        struct result *too_big =
            submit(&t, TRACES_PATH, frame(big.data, big.len, 0), 0, NULL, NULL, NULL);
        struct bytes hdr_only = {oversize_hdr, 5};
        struct result *announced = submit(&t, TRACES_PATH, hdr_only, 0, NULL, NULL, NULL);
        struct result *two = submit(
            &t, TRACES_PATH, concat(frame(msg.data, msg.len, 0), frame(msg.data, msg.len, 0)), 0,
            NULL, NULL, NULL);
        struct bytes half = frame(msg.data, msg.len, 0);
        half.len -= 3;
        struct result *truncated = submit(&t, TRACES_PATH, half, 0, NULL, NULL, NULL);
        struct bytes none = {NULL, 0};
        struct result *empty = submit(&t, TRACES_PATH, none, 0, NULL, NULL, NULL);
        struct result *ctype =
            submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, NULL, "application/json");
        struct result *grpc_json = submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL,
                                          NULL, "application/grpc+json");
        struct result *expired =
            submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, "0n", NULL);
        struct result *bad_timeout =
            submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, "soon", NULL);
        struct result *ok = submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, NULL,
                                   "application/grpc+proto");
        pump(&t);
        expect_status(unknown, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
        assert_int_equal(unknown->http_status, 200);
        expect_status(flag, GRPC_STATUS_INTERNAL,
                      "compressed message flag set without grpc-encoding");
        expect_status(bad_flag, GRPC_STATUS_INTERNAL, "flags");
        expect_status(malformed, GRPC_STATUS_INVALID_ARGUMENT, "invalid OTLP protobuf");
        expect_status(too_big, GRPC_STATUS_RESOURCE_EXHAUSTED, "larger than max");
        assert_int_equal(too_big->details[0], '\0'); /* not retryable: no RetryInfo */
        expect_status(announced, GRPC_STATUS_RESOURCE_EXHAUSTED, "1048577 vs. 1024");
        expect_status(two, GRPC_STATUS_INTERNAL, "more than one");
        expect_status(truncated, GRPC_STATUS_INTERNAL, "truncated");
        expect_status(empty, GRPC_STATUS_INTERNAL, "without a complete message");
        expect_status(ctype, GRPC_STATUS_INTERNAL, "content-type");
        assert_int_equal(ctype->http_status, 415);
        expect_status(grpc_json, GRPC_STATUS_INTERNAL, "content-type");
        expect_status(expired, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline");
        expect_status(bad_timeout, GRPC_STATUS_INTERNAL, "grpc-timeout");
        expect_ok(ok);
        /* the connection survived every stream error */
        assert_false(t.server_closed);
        assert_false(grpc_conn_busy(&t.conn));
        assert_int_equal(t.conn.n_active, 0);
        assert_int_equal(t.conn.buffered_bytes, 0);
        uint64_t items;
        struct bytes got = drain_batches(OTLP_TRACES, &items);
        assert_int_equal(items, 2);
        assert_int_equal(got.len, msg.len);
        client_close(&t);
    }
    assert_int_equal(err_count("unknown_method"), 2);
    assert_int_equal(err_count("invalid_protobuf"), 2);
    assert_int_equal(err_count("message_too_large"), 4);
}

/* The status message is percent-encoded and details from the scan pass. */
static void test_message_encoding(void **state)
{
    (void)state;
    env_up();
    /* a span name that is not UTF-8 */
    TraceReq *req = traces_msg(1, 1, NULL, 0);
    req->resource_spans[0]->scope_spans[0]->spans[0]->name = "\xc3\x28 bad";
    struct bytes msg = pack(&req->base);
    struct tclient t;
    client_open(&t, FEED_WHOLE);
    struct result *r = submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, NULL, NULL);
    pump(&t);
    expect_status(r, GRPC_STATUS_INVALID_ARGUMENT, "invalid OTLP protobuf: ");
    for (const char *p = r->grpc_message; *p; p++)
        assert_true(*p >= 0x20 && *p <= 0x7e);
    client_close(&t);
}

static void test_queue_full(void **state)
{
    (void)state;
    cfg.batch.max_queue_size = 10;
    cfg.batch.max_export_batch_size = 10;
    env_up();
    struct tclient t;
    client_open(&t, FEED_WHOLE);
    struct bytes m8 = pack(&traces_msg(1, 8, NULL, 0)->base);
    struct bytes m5 = pack(&traces_msg(1, 5, NULL, 0)->base);
    struct result *a = submit(&t, TRACES_PATH, frame(m8.data, m8.len, 0), 0, NULL, NULL, NULL);
    pump(&t);
    expect_ok(a);
    struct result *b = submit(&t, TRACES_PATH, frame(m5.data, m5.len, 0), 0, NULL, NULL, NULL);
    pump(&t);
    expect_status(b, GRPC_STATUS_RESOURCE_EXHAUSTED, "queue is full");
    assert_true(b->details[0] != '\0');
    check_details(b->details, GRPC_STATUS_RESOURCE_EXHAUSTED, "queue is full", 7);
    uint64_t items;
    struct bytes got = drain_batches(OTLP_TRACES, &items);
    assert_int_equal(items, 8);
    assert_int_equal(got.len, m8.len);
    assert_memory_equal(got.data, m8.data, m8.len);
    /* room again: the retry goes through */
    struct result *c = submit(&t, TRACES_PATH, frame(m5.data, m5.len, 0), 0, NULL, NULL, NULL);
    pump(&t);
    expect_ok(c);
    got = drain_batches(OTLP_TRACES, &items);
    assert_int_equal(items, 5);
    assert_int_equal(err_count("queue_full"), 1);
    client_close(&t);
}

/* A full pipeline withholds WINDOW_UPDATE: a message larger than the
 * stream window stalls until the pipeline has room again. */
static void test_flow_control(void **state)
{
    (void)state;
    cfg.batch.max_queue_size = 10;
    cfg.batch.max_export_batch_size = 10;
    cfg.receiver.grpc_max_recv_msg_bytes = 4 * 1024 * 1024;
    cfg.receiver.max_decompressed_bytes = 4 * 1024 * 1024;
    env_up();
    char *blob = A(600 * 1024 + 1);
    memset(blob, 'x', 600 * 1024);
    struct bytes large = pack(&traces_msg(1, 3, blob, 0)->base); /* ~1.8 MiB */
    assert_true(large.len > 1536 * 1024);
    struct bytes fill = pack(&traces_msg(1, 10, NULL, 0)->base);

    struct tclient t;
    client_open(&t, FEED_WHOLE);
    struct result *a = submit(&t, TRACES_PATH, frame(fill.data, fill.len, 0), 0, NULL, NULL, NULL);
    pump(&t);
    expect_ok(a); /* the queue is now full (10 of 10) */
    struct result *b =
        submit(&t, TRACES_PATH, frame(large.data, large.len, 0), 0, NULL, NULL, NULL);
    pump(&t);
    assert_false(b->closed);
    assert_true(grpc_conn_busy(&t.conn));
    assert_true(grpc_conn_stalled(&t.conn));
    assert_int_equal(nghttp2_session_get_stream_remote_window_size(t.s, b->id), 0);
    assert_true(b->off < large.len);
    /* polling changes nothing while the queue is full */
    assert_int_equal(grpc_conn_output(&t.conn, &t.out), GRPC_KEEP);
    pump(&t);
    assert_false(b->closed);

    /* the exporter takes the first batch: credit flows, the request completes */
    uint64_t items;
    struct bytes got = drain_batches(OTLP_TRACES, &items);
    assert_int_equal(items, 10);
    assert_int_equal(grpc_conn_output(&t.conn, &t.out), GRPC_KEEP);
    pump(&t);
    expect_ok(b);
    assert_false(grpc_conn_stalled(&t.conn));
    got = drain_batches(OTLP_TRACES, &items);
    assert_int_equal(items, 3);
    assert_int_equal(got.len, large.len);
    assert_memory_equal(got.data, large.data, large.len);
    assert_int_equal(t.conn.buffered_bytes, 0);
    assert_int_equal(t.conn.held_bytes, 0);
    client_close(&t);
}

/* Many requests larger than the stream window at once: once the
 * connection buffers more than its budget only the oldest one gets stream
 * credit, yet every request completes (no deadlock between streams). */
static void test_conn_budget(void **state)
{
    (void)state;
    cfg.receiver.grpc_max_recv_msg_bytes = 4 * 1024 * 1024;
    cfg.receiver.max_decompressed_bytes = 4 * 1024 * 1024;
    env_up();
    char *blob = A(1100 * 1024 + 1);
    memset(blob, 'y', 1100 * 1024);
    struct bytes m = pack(&traces_msg(1, 3, blob, 0)->base); /* ~3.2 MiB */
    struct tclient t;
    client_open(&t, FEED_WHOLE);
    enum { N = 4 };
    struct result *rs[N];
    for (int i = 0; i < N; i++)
        rs[i] = submit(&t, TRACES_PATH, frame(m.data, m.len, 0), 16384, NULL, NULL, NULL);
    uint64_t peak = 0;
    for (int round = 0; round < 100000; round++) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(t.s, &p);
        assert_true(n >= 0);
        if (n > 0) {
            assert_int_not_equal(grpc_conn_input(&t.conn, p, (size_t)n, &t.out), GRPC_CLOSE);
            if (t.conn.buffered_bytes > peak)
                peak = t.conn.buffered_bytes;
        }
        if (t.out.len > 0) {
            assert_int_equal(nghttp2_session_mem_recv(t.s, t.out.data, t.out.len),
                             (ssize_t)t.out.len);
            buf_reset(&t.out);
        } else if (n == 0) {
            break;
        }
    }
    for (int i = 0; i < N; i++)
        expect_ok(rs[i]);
    /* budget (one message) + the head request + a stream window per other */
    assert_true(peak < (uint64_t)N * m.len);
    assert_true(peak <= 2 * (4 * 1024 * 1024 + 5) + (N - 1) * (1 << 20));
    uint64_t items;
    struct bytes got = drain_batches(OTLP_TRACES, &items);
    assert_int_equal(items, 3 * N);
    assert_int_equal(got.len, N * m.len);
    client_close(&t);
}

/* The client resets a stream mid-message: no answer, nothing batched, the
 * state is released, the connection carries on. */
static void test_rst_mid_message(void **state)
{
    (void)state;
    env_up();
    struct bytes msg = pack(&traces_msg(2, 5, "abcdef", 0)->base);
    for (int f = FEED_WHOLE; f <= FEED_BYTES; f++) {
        struct tclient t;
        client_open(&t, (enum feed)f);
        struct result *r =
            submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 10, NULL, NULL, NULL);
        r->defer_at = msg.len / 2;
        pump(&t);
        assert_true(r->deferred);
        assert_true(grpc_conn_busy(&t.conn));
        assert_true(t.conn.buffered_bytes > 0);
        assert_true(grpc_conn_deadline_ns(&t.conn) > base_now_ns());
        assert_int_equal(nghttp2_submit_rst_stream(t.s, NGHTTP2_FLAG_NONE, r->id, NGHTTP2_CANCEL),
                         0);
        pump(&t);
        assert_true(r->closed);
        assert_int_equal(r->header_blocks, 0);
        assert_int_equal(r->grpc_status, -1);
        assert_false(grpc_conn_busy(&t.conn));
        assert_int_equal(t.conn.n_active, 0);
        assert_int_equal(t.conn.buffered_bytes, 0);
        assert_int_equal(t.conn.held_bytes, 0);
        assert_int_equal(grpc_conn_deadline_ns(&t.conn), 0);
        struct result *ok =
            submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, NULL, NULL);
        pump(&t);
        expect_ok(ok);
        uint64_t items;
        struct bytes got = drain_batches(OTLP_TRACES, &items);
        assert_int_equal(items, 10);
        assert_int_equal(got.len, msg.len);
        client_close(&t);
    }
    assert_int_equal(err_count("stream_reset"), 2);
}

/* A request that trickles in is answered DEADLINE_EXCEEDED once its time is
 * up; a connection closed mid-request counts it. */
static void test_expire_and_close(void **state)
{
    (void)state;
    env_up();
    struct bytes msg = pack(&traces_msg(1, 2, NULL, 0)->base);
    struct tclient t;
    client_open(&t, FEED_WHOLE);
    struct result *slow = submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, "5S", NULL);
    slow->defer_at = 3;
    struct result *slower =
        submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, NULL, NULL);
    slower->defer_at = 7;
    pump(&t);
    uint64_t dl = grpc_conn_deadline_ns(&t.conn);
    assert_true(dl > base_now_ns() && dl <= base_now_ns() + 5000000000ull);
    assert_int_equal(grpc_conn_expire(&t.conn, base_now_ns(), &t.out), GRPC_KEEP);
    assert_int_equal(grpc_conn_deadline_ns(&t.conn), dl); /* nothing due yet */
    assert_int_equal(grpc_conn_expire(&t.conn, dl, &t.out), GRPC_KEEP);
    pump(&t);
    expect_status(slow, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline");
    assert_false(slower->closed);
    assert_true(grpc_conn_busy(&t.conn));
    uint64_t later = base_now_ns() + (uint64_t)cfg.receiver.request_timeout_ms * 1000000u;
    assert_int_equal(grpc_conn_expire(&t.conn, later, &t.out), GRPC_KEEP);
    pump(&t);
    expect_status(slower, GRPC_STATUS_DEADLINE_EXCEEDED, "not completed in time");
    assert_false(grpc_conn_busy(&t.conn));

    struct result *cut = submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, NULL, NULL);
    cut->defer_at = 9;
    pump(&t);
    assert_true(grpc_conn_busy(&t.conn));
    client_close(&t);
    assert_int_equal(err_count("connection_closed"), 1);
    assert_int_equal(err_count("request_timeout"), 1);
    uint64_t items;
    assert_int_equal(drain_batches(OTLP_TRACES, &items).len, 0);
}

/* ------------------------------------------------------------------------ */
/* Connection level                                                         */
/* ------------------------------------------------------------------------ */

static void test_goaway_from_client(void **state)
{
    (void)state;
    env_up();
    struct bytes msg = pack(&logs_msg(1)->base);
    struct tclient t;
    client_open(&t, FEED_WHOLE);
    struct result *r = submit(&t, LOGS_PATH, frame(msg.data, msg.len, 0), 0, NULL, NULL, NULL);
    pump(&t);
    expect_ok(r);
    assert_false(t.server_closed);
    assert_false(grpc_conn_want_close(&t.conn));
    assert_int_equal(nghttp2_session_terminate_session(t.s, NGHTTP2_NO_ERROR), 0);
    pump(&t);
    assert_true(t.server_closed);
    assert_true(grpc_conn_want_close(&t.conn));
    client_close(&t);
}

static void test_draining(void **state)
{
    (void)state;
    env_up();
    struct bytes msg = pack(&traces_msg(1, 1, NULL, 0)->base);
    struct tclient t;
    client_open(&t, FEED_WHOLE);
    struct result *r1 = submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, NULL, NULL);
    pump(&t);
    expect_ok(r1);
    grpc_receiver_set_draining(gr, true);
    struct result *r2 = submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, NULL, NULL);
    pump(&t);
    assert_true(t.goaway_received);
    /* the GOAWAY names the last stream seen: r2 was answered UNAVAILABLE
     * (when it arrived before the GOAWAY) or never processed */
    if (r2->grpc_status >= 0) {
        expect_status(r2, GRPC_STATUS_UNAVAILABLE, "shutting down");
        check_details(r2->details, GRPC_STATUS_UNAVAILABLE, "shutting down", 7);
    }
    assert_true(grpc_conn_want_close(&t.conn));
    client_close(&t);

    /* a new connection while draining: UNAVAILABLE + GOAWAY */
    client_open(&t, FEED_WHOLE);
    struct result *r3 = submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, NULL, NULL);
    pump(&t);
    expect_status(r3, GRPC_STATUS_UNAVAILABLE, "shutting down");
    assert_true(t.goaway_received);
    client_close(&t);
    grpc_receiver_set_draining(gr, false);
    uint64_t items;
    drain_batches(OTLP_TRACES, &items);
    assert_int_equal(items, 1);
}

static void test_shutdown_idle(void **state)
{
    (void)state;
    env_up();
    struct tclient t;
    client_open(&t, FEED_WHOLE);
    pump(&t);
    assert_false(grpc_conn_want_close(&t.conn));
    assert_int_equal(grpc_conn_shutdown(&t.conn, &t.out), GRPC_CLOSE);
    pump(&t);
    assert_true(t.goaway_received);
    client_close(&t);
}

static void test_bad_preface(void **state)
{
    (void)state;
    env_up();
    struct grpc_conn c;
    struct buf out;
    buf_init(&out, 0, 0);
    assert_int_equal(grpc_conn_init(&c, gw), 0);
    const char *h1 = "POST /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(grpc_conn_input(&c, (const uint8_t *)h1, strlen(h1), &out), GRPC_CLOSE);
    assert_true(grpc_conn_want_close(&c));
    assert_int_equal(grpc_conn_input(&c, (const uint8_t *)h1, 1, &out), GRPC_CLOSE);
    grpc_conn_fini(&c);
    grpc_conn_fini(&c); /* twice is fine */
    buf_free(&out);
    assert_int_equal(err_count("http2_protocol_error"), 1);
}

static void test_ping_flood(void **state)
{
    (void)state;
    env_up();
    struct buf in, out;
    buf_init(&in, 0, 0);
    buf_init(&out, 0, 0);
    buf_append_str(&in, NGHTTP2_CLIENT_MAGIC);
    const uint8_t settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    buf_append(&in, settings, sizeof(settings));
    for (int i = 0; i < 2000; i++) {
        const uint8_t ping[17] = {0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, (uint8_t)i};
        buf_append(&in, ping, sizeof(ping));
    }
    struct grpc_conn c;
    assert_int_equal(grpc_conn_init(&c, gw), 0);
    assert_int_equal(grpc_conn_input(&c, in.data, in.len, &out), GRPC_CLOSE);
    grpc_conn_fini(&c);
    assert_int_equal(err_count("http2_flood"), 1);

    /* pings that are read back in between are fine */
    assert_int_equal(grpc_conn_init(&c, gw), 0);
    size_t hdr = strlen(NGHTTP2_CLIENT_MAGIC) + 9;
    assert_int_equal(grpc_conn_input(&c, in.data, hdr, &out), GRPC_KEEP);
    for (size_t off = hdr; off < in.len; off += 17 * 100) {
        size_t n = in.len - off < 17 * 100 ? in.len - off : 17 * 100;
        buf_reset(&out);
        assert_int_equal(grpc_conn_input(&c, in.data + off, n, &out), GRPC_KEEP);
        assert_true(out.len >= 17 * 100);
    }
    grpc_conn_fini(&c);
    buf_free(&in);
    buf_free(&out);
}

/* Output beyond the high-water mark stays in nghttp2 until asked for. */
static void test_output_high_water(void **state)
{
    (void)state;
    env_up();
    struct buf in, out;
    buf_init(&in, 0, 0);
    buf_init(&out, 0, GRPC_OUT_HIGH_WATER + 32 * 1024);
    buf_append_str(&in, NGHTTP2_CLIENT_MAGIC);
    const uint8_t settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    buf_append(&in, settings, sizeof(settings));
    for (int i = 0; i < 200; i++) { /* 200 acks, within the flood limit */
        const uint8_t ping[17] = {0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, (uint8_t)i};
        buf_append(&in, ping, sizeof(ping));
    }
    struct grpc_conn c;
    assert_int_equal(grpc_conn_init(&c, gw), 0);
    assert_int_equal(buf_reserve(&out, GRPC_OUT_HIGH_WATER), 0);
    memset(out.data, 0, GRPC_OUT_HIGH_WATER);
    out.len = GRPC_OUT_HIGH_WATER - 100; /* the transport has not written yet */
    assert_int_equal(grpc_conn_input(&c, in.data, in.len, &out), GRPC_KEEP);
    assert_true(grpc_conn_want_write(&c));
    size_t total = out.len - (GRPC_OUT_HIGH_WATER - 100);
    while (grpc_conn_want_write(&c)) {
        buf_reset(&out);
        assert_int_equal(grpc_conn_output(&c, &out), GRPC_KEEP);
        total += out.len;
    }
    /* server SETTINGS + WINDOW_UPDATE + SETTINGS ack + 200 PING acks */
    assert_true(total >= 200 * 17 + 9);
    grpc_conn_fini(&c);
    buf_free(&in);
    buf_free(&out);
}

/* Both receivers' series share the otlp_* families; one HELP/TYPE each. */
static void test_metrics_families(void **state)
{
    (void)state;
    env_up();
    struct receiver *r;
    assert_int_equal(receiver_create(&cfg, pl, reg, 1, &r), 0);
    struct bytes msg = pack(&traces_msg(1, 3, NULL, 0)->base);
    struct tclient t;
    client_open(&t, FEED_WHOLE);
    submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, NULL, NULL);
    pump(&t);
    client_close(&t);
    struct buf page;
    buf_init(&page, 0, 0);
    assert_int_equal(obs_render_prometheus(reg, &page), 0);
    buf_append(&page, "", 1);
    const char *s = (const char *)page.data;
    const char *fam = strstr(s, "# TYPE otlp_spans_received_total counter\n");
    assert_non_null(fam);
    assert_null(strstr(fam + 1, "# TYPE otlp_spans_received_total"));
    assert_non_null(strstr(s, "\notlp_spans_received_total{protocol=\"http\"} 0\n"));
    assert_non_null(strstr(s, "\notlp_spans_received_total{protocol=\"grpc\"} 3\n"));
    assert_non_null(
        strstr(s, "otlp_receiver_errors_total{protocol=\"grpc\",reason=\"queue_full\"} 0"));
    assert_non_null(
        strstr(s, "otlp_receiver_errors_total{protocol=\"http\",reason=\"queue_full\"} 0"));
    assert_non_null(strstr(s, "grpc_request_duration_seconds_count{method=\"opentelemetry.proto."
                              "collector.trace.v1.TraceService/Export\"} 1\n"));
    buf_free(&page);
    receiver_destroy(r);
    uint64_t items;
    drain_batches(OTLP_TRACES, &items);
    assert_int_equal(items, 3);
}

static void test_resource_attributes(void **state)
{
    (void)state;
    cfg.resources.attributes.items[0].key = strdup("deployment.environment");
    cfg.resources.attributes.items[0].value = strdup("prod");
    cfg.resources.attributes.n = 1;
    env_up();
    struct bytes msg = pack(&traces_msg(2, 1, NULL, 0)->base);
    struct tclient t;
    client_open(&t, FEED_WHOLE);
    struct result *r = submit(&t, TRACES_PATH, frame(msg.data, msg.len, 0), 0, NULL, NULL, NULL);
    pump(&t);
    expect_ok(r);
    uint64_t items;
    struct bytes got = drain_batches(OTLP_TRACES, &items);
    TraceReq *u = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
        NULL, got.len, got.data);
    assert_non_null(u);
    assert_int_equal(u->n_resource_spans, 2);
    for (size_t i = 0; i < 2; i++) {
        Resource *res = u->resource_spans[i]->resource;
        assert_int_equal(res->n_attributes, 2);
        assert_string_equal(res->attributes[1]->key, "deployment.environment");
        assert_string_equal(res->attributes[1]->value->string_value, "prod");
    }
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(u,
                                                                                            NULL);
    client_close(&t);
}

static void test_create_errors(void **state)
{
    (void)state;
    assert_int_equal(pipeline_create(&cfg, 1, &pl), 0);
    assert_int_equal(obs_registry_create(1, 8192, &reg), 0);
    struct grpc_receiver *x;
    assert_int_equal(grpc_receiver_create(&cfg, pl, reg, 0, &x), -EINVAL);
    assert_int_equal(grpc_receiver_create(NULL, pl, reg, 1, &x), -EINVAL);
    assert_int_equal(grpc_receiver_create(&cfg, pl, reg, 1, &gr), 0);
    assert_int_equal(grpc_receiver_create(&cfg, pl, reg, 1, &x), -EEXIST);
    grpc_receiver_destroy(NULL);
    grpc_worker_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_wire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_signals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compressed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_encoding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flow_control, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conn_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rst_mid_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire_and_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_goaway_from_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_draining, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_preface, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_flood, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_high_water, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_families, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resource_attributes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
