/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for lib/otlp/otlp_batch.c (batching and resource attribute
 * splicing) and lib/otlp/otlp_response.c, checked by decoding the output
 * with protobuf-c (and jansson for JSON). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "otlp/otlp_batch.h"
#include "otlp/otlp_response.h"
#include "otlp/otlp_scan.h"
#include "otlp/otlp_wire.h"

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Common__V1__EntityRef EntityRef;
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
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest MetricsReq;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest LogsReq;

/* ------------------------------------------------------------------------ */
/* Arena and builders                                                       */
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

static int arena_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < arena_n; i++)
        free(arena[i]);
    arena_n = 0;
    return 0;
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

static const uint8_t TRACE_ID[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t SPAN_ID[8] = {1, 2, 3, 4, 5, 6, 7, 8};

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

static Resource *make_resource(void)
{
    Resource *r = A(sizeof(*r));
    opentelemetry__proto__resource__v1__resource__init(r);
    r->n_attributes = 4;
    r->attributes = ptrs(4, kv_str("service.name", "checkout"), kv_str("host.name", "node-1"),
                         kv_str("service.version", "1.2.3"), kv_str("os.type", "linux"));
    r->dropped_attributes_count = 7;
    EntityRef *e = A(sizeof(*e));
    opentelemetry__proto__common__v1__entity_ref__init(e);
    e->type = "host";
    e->n_id_keys = 1;
    e->id_keys = ptrs(1, "host.name");
    r->n_entity_refs = 1;
    r->entity_refs = ptrs(1, e);
    return r;
}

static Span *make_span(unsigned i)
{
    Span *s = A(sizeof(*s));
    opentelemetry__proto__trace__v1__span__init(s);
    s->trace_id = bin(TRACE_ID, 16);
    s->span_id = bin(SPAN_ID, 8);
    s->name = "op";
    s->start_time_unix_nano = 1000 + i;
    s->end_time_unix_nano = 2000 + i;
    s->n_attributes = 1;
    s->attributes = ptrs(1, kv_str("i", i % 2 ? "odd" : "even"));
    return s;
}

/* R entries of N spans; resource may be omitted. */
static TraceReq *traces_msg(unsigned R, unsigned N, int with_resource)
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
        for (unsigned i = 0; i < N; i++)
            ss->spans[i] = make_span(i + r);
        ss->schema_url = "scope-schema";
        ResourceSpans *rs = A(sizeof(*rs));
        opentelemetry__proto__trace__v1__resource_spans__init(rs);
        rs->resource = with_resource ? make_resource() : NULL;
        rs->n_scope_spans = 1;
        rs->scope_spans = ptrs(1, ss);
        rs->schema_url = "resource-schema";
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
        g->data_points = ptrs(3, d, d, d);
        Metric *m = A(sizeof(*m));
        opentelemetry__proto__metrics__v1__metric__init(m);
        m->name = "queue.depth";
        m->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE;
        m->gauge = g;
        ScopeMetrics *sm = A(sizeof(*sm));
        opentelemetry__proto__metrics__v1__scope_metrics__init(sm);
        sm->n_metrics = 1;
        sm->metrics = ptrs(1, m);
        ResourceMetrics *rm = A(sizeof(*rm));
        opentelemetry__proto__metrics__v1__resource_metrics__init(rm);
        rm->resource = r % 2 ? make_resource() : NULL;
        rm->n_scope_metrics = 1;
        rm->scope_metrics = ptrs(1, sm);
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
        l->n_attributes = 1;
        l->attributes = ptrs(1, kv_str("a", "b"));
        ScopeLogs *sl = A(sizeof(*sl));
        opentelemetry__proto__logs__v1__scope_logs__init(sl);
        sl->n_log_records = 2;
        sl->log_records = ptrs(2, l, l);
        ResourceLogs *rl = A(sizeof(*rl));
        opentelemetry__proto__logs__v1__resource_logs__init(rl);
        rl->resource = make_resource();
        rl->n_scope_logs = 1;
        rl->scope_logs = ptrs(1, sl);
        req->resource_logs[r] = rl;
    }
    return req;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = A(*len);
    assert_int_equal(protobuf_c_message_pack(m, b), *len);
    return b;
}

static void scan_ok(enum otlp_signal sig, const uint8_t *req, size_t len,
                    struct otlp_scan_result *res)
{
    int rc = otlp_scan(sig, req, len, NULL, res);
    if (rc != 0)
        fail_msg("scan: %d %s", rc, res->error);
}

static TraceReq *unpack_traces(const struct buf *b)
{
    TraceReq *t = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
        NULL, b->len, b->data);
    assert_non_null(t);
    return t;
}

static void free_traces(TraceReq *t)
{
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(t, NULL);
}

/* Every configured key occurs exactly once in r, with its value, and after
 * every other attribute (appended). */
static void check_attrs(const Resource *r, unsigned n, const char *const *keys,
                        const char *const *vals)
{
    assert_non_null(r);
    assert_true(r->n_attributes >= n);
    for (unsigned i = 0; i < n; i++) {
        unsigned found = 0;
        for (size_t j = 0; j < r->n_attributes; j++) {
            if (strcmp(r->attributes[j]->key, keys[i]) != 0)
                continue;
            found++;
            assert_int_equal(j, r->n_attributes - n + i);
            assert_int_equal(r->attributes[j]->value->value_case,
                             OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE);
            assert_string_equal(r->attributes[j]->value->string_value, vals[i]);
        }
        assert_int_equal(found, 1);
    }
}

/* Fields of an entry other than the Resource, as raw bytes in order. */
static size_t entry_rest(const uint8_t *e, size_t n, uint8_t *out)
{
    const uint8_t *p = e, *end = e + n;
    size_t o = 0;
    while (p < end) {
        const uint8_t *f = p;
        uint32_t fn = 0;
        unsigned wt = 0;
        assert_int_equal(otlp_wire_key(&p, end, &fn, &wt), 0);
        assert_int_equal(otlp_wire_skip(&p, end, wt), 0);
        if (fn != 1) {
            memcpy(out + o, f, (size_t)(p - f));
            o += (size_t)(p - f);
        }
    }
    return o;
}

/* i-th top-level entry payload of a request. */
static const uint8_t *nth_entry(const uint8_t *req, size_t len, unsigned i, size_t *n)
{
    const uint8_t *p = req, *end = req + len;
    for (unsigned k = 0; p < end; k++) {
        uint32_t fn = 0;
        unsigned wt = 0;
        assert_int_equal(otlp_wire_key(&p, end, &fn, &wt), 0);
        assert_int_equal(fn, 1);
        assert_int_equal(otlp_wire_len(&p, end, n), 0);
        if (k == i)
            return p;
        p += *n;
    }
    fail_msg("no entry %u", i);
    return NULL;
}

static const char *const K2[] = {"deployment.environment", "service.instance.id"};
static const char *const V2[] = {"prod", "i-0abc"};

/* ------------------------------------------------------------------------ */
/* Batching                                                                 */
/* ------------------------------------------------------------------------ */

/* Without attributes the batch is the byte concatenation of the requests. */
static void test_concat(void **state)
{
    (void)state;
    struct buf b, expect;
    assert_int_equal(buf_init(&b, 1 << 20, 1 << 20), 0);
    assert_int_equal(buf_init(&expect, 0, 0), 0);
    struct otlp_scan_result res;
    uint64_t items = 0;
    for (unsigned i = 0; i < 6; i++) {
        size_t len;
        uint8_t *req = pack(&traces_msg(1 + i % 3, 1 + i, i % 2)->base, &len);
        scan_ok(OTLP_TRACES, req, len, &res);
        items += res.items;
        assert_int_equal(otlp_batch_append(&b, req, len, &res, NULL), 0);
        assert_int_equal(buf_append(&expect, req, len), 0);
    }
    assert_int_equal(b.len, expect.len);
    assert_memory_equal(b.data, expect.data, b.len);
    scan_ok(OTLP_TRACES, b.data, b.len, &res);
    assert_int_equal(res.items, items);

    TraceReq *t = unpack_traces(&b);
    assert_int_equal(t->n_resource_spans, 1 + 2 + 3 + 1 + 2 + 3);
    free_traces(t);

    /* an empty attribute set is the same as none */
    struct otlp_attrs none;
    assert_int_equal(otlp_attrs_init(&none, NULL, NULL, 0), 0);
    buf_reset(&b);
    size_t len;
    uint8_t *req = pack(&traces_msg(2, 2, 1)->base, &len);
    scan_ok(OTLP_TRACES, req, len, &res);
    assert_int_equal(otlp_batch_append(&b, req, len, &res, &none), 0);
    assert_int_equal(b.len, len);
    assert_memory_equal(b.data, req, len);
    otlp_attrs_free(&none);
    buf_free(&b);
    buf_free(&expect);
}

/* Rejected entries and unknown top-level fields stay out of the batch. */
static void test_skip_rejected(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 0, 0), 0);
    struct otlp_scan_result res;
    size_t len;
    TraceReq *t = traces_msg(4, 3, 1);
    t->resource_spans[1]->scope_spans[0]->spans[2]->span_id = bin(TRACE_ID, 16);
    t->resource_spans[3]->scope_spans[0]->spans[0]->trace_id = bin(NULL, 0);
    uint8_t *req = pack(&t->base, &len);
    /* append an unknown top-level field */
    uint8_t *req2 = A(len + 3);
    memcpy(req2, req, len);
    memcpy(req2 + len, "\x10\x96\x01", 3); /* field 2 varint 150 */
    scan_ok(OTLP_TRACES, req2, len + 3, &res);
    assert_int_equal(res.items, 6);
    assert_int_equal(res.rejected_items, 6);
    assert_int_equal(res.n_rejected, 2);
    assert_int_equal(otlp_batch_append(&b, req2, len + 3, &res, NULL), 0);

    size_t n0, n2;
    const uint8_t *e0 = nth_entry(req, len, 0, &n0), *e2 = nth_entry(req, len, 2, &n2);
    const uint8_t *s0 = e0 - otlp_wire_varint_size(n0) - 1;
    const uint8_t *s2 = e2 - otlp_wire_varint_size(n2) - 1;
    size_t l0 = (size_t)(e0 + n0 - s0), l2 = (size_t)(e2 + n2 - s2);
    assert_int_equal(b.len, l0 + l2);
    assert_memory_equal(b.data, s0, l0);
    assert_memory_equal(b.data + l0, s2, l2);

    scan_ok(OTLP_TRACES, b.data, b.len, &res);
    assert_int_equal(res.items, 6);
    assert_int_equal(res.rejected_resources, 0);

    /* rejected_all: nothing goes in */
    struct otlp_scan_result all = res;
    all.rejected_all = 1;
    size_t before = b.len;
    assert_int_equal(otlp_batch_append(&b, req, len, &all, NULL), 0);
    assert_int_equal(b.len, before);
    buf_free(&b);
}

static void test_batch_errors(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 64, 0), 0);
    struct otlp_scan_result res;
    memset(&res, 0, sizeof(res));
    assert_int_equal(buf_append(&b, "keep", 4), 0);
    static const uint8_t garbage[] = {0x0a, 0x05, 0x01};
    assert_int_equal(otlp_batch_append(&b, garbage, sizeof(garbage), &res, NULL), -EINVAL);
    static const uint8_t wrong_wt[] = {0x08, 0x01};
    assert_int_equal(otlp_batch_append(&b, wrong_wt, sizeof(wrong_wt), &res, NULL), -EINVAL);
    /* a valid first entry, then garbage: rolled back */
    static const uint8_t half[] = {0x0a, 0x00, 0x0a, 0x09};
    assert_int_equal(otlp_batch_append(&b, half, sizeof(half), &res, NULL), -EINVAL);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "keep", 4);
    assert_int_equal(otlp_batch_append(NULL, half, 2, &res, NULL), -EINVAL);
    assert_int_equal(otlp_batch_append(&b, half, 2, NULL, NULL), -EINVAL);
    assert_int_equal(otlp_batch_append(&b, NULL, 2, &res, NULL), -EINVAL);
    assert_int_equal(otlp_batch_append(&b, NULL, 0, &res, NULL), 0);
    /* malformed Resource inside an entry when splicing */
    struct otlp_attrs a;
    assert_int_equal(otlp_attrs_init(&a, K2, V2, 2), 0);
    static const uint8_t bad_res[] = {0x0a, 0x04, 0x0a, 0x02, 0x0a, 0x05};
    assert_int_equal(otlp_batch_append(&b, bad_res, sizeof(bad_res), &res, &a), -EINVAL);
    assert_int_equal(b.len, 4);
    otlp_attrs_free(&a);
    buf_free(&b);
}

/* -EMSGSIZE leaves the batch untouched; a batch sized exactly fits. */
static void test_emsgsize_rollback(void **state)
{
    (void)state;
    struct otlp_scan_result res;
    struct otlp_attrs a;
    assert_int_equal(otlp_attrs_init(&a, K2, V2, 2), 0);
    size_t len;
    uint8_t *req = pack(&traces_msg(3, 4, 1)->base, &len);
    scan_ok(OTLP_TRACES, req, len, &res);

    for (int with_attrs = 0; with_attrs <= 1; with_attrs++) {
        const struct otlp_attrs *ap = with_attrs ? &a : NULL;
        /* exact size of one append */
        struct buf probe;
        assert_int_equal(buf_init(&probe, 0, 0), 0);
        assert_int_equal(otlp_batch_append(&probe, req, len, &res, ap), 0);
        size_t one = probe.len;
        buf_free(&probe);

        struct buf b;
        assert_int_equal(buf_init(&b, 2 * one + one / 2, 2 * one + one / 2), 0);
        assert_int_equal(otlp_batch_append(&b, req, len, &res, ap), 0);
        assert_int_equal(otlp_batch_append(&b, req, len, &res, ap), 0);
        assert_int_equal(b.len, 2 * one);
        uint8_t *snap = A(b.len);
        memcpy(snap, b.data, b.len);
        /* the third does not fit, even though its first entry would */
        assert_int_equal(otlp_batch_append(&b, req, len, &res, ap), -EMSGSIZE);
        assert_int_equal(b.len, 2 * one);
        assert_memory_equal(b.data, snap, b.len);
        buf_free(&b);

        /* exactly the size needed: fits, growing from a small allocation */
        assert_int_equal(buf_init(&b, 16, one), 0);
        assert_int_equal(otlp_batch_append(&b, req, len, &res, ap), 0);
        assert_int_equal(b.len, one);
        assert_int_equal(otlp_batch_append(&b, req, len, &res, ap), -EMSGSIZE);
        assert_int_equal(b.len, one);
        buf_free(&b);
    }
    otlp_attrs_free(&a);
}

/* ------------------------------------------------------------------------ */
/* Splicing                                                                 */
/* ------------------------------------------------------------------------ */

static void test_splice_add(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 0, 0), 0);
    struct otlp_attrs a;
    assert_int_equal(otlp_attrs_init(&a, K2, V2, 2), 0);
    struct otlp_scan_result res;
    size_t len;
    uint8_t *req = pack(&traces_msg(3, 2, 1)->base, &len);
    scan_ok(OTLP_TRACES, req, len, &res);
    assert_int_equal(otlp_batch_append(&b, req, len, &res, &a), 0);

    TraceReq *t = unpack_traces(&b);
    assert_int_equal(t->n_resource_spans, 3);
    for (size_t i = 0; i < 3; i++) {
        Resource *r = t->resource_spans[i]->resource;
        assert_int_equal(r->n_attributes, 6);
        assert_string_equal(r->attributes[0]->key, "service.name");
        assert_string_equal(r->attributes[1]->key, "host.name");
        assert_string_equal(r->attributes[2]->key, "service.version");
        assert_string_equal(r->attributes[3]->key, "os.type");
        check_attrs(r, 2, K2, V2);
        assert_int_equal(r->dropped_attributes_count, 7);
        assert_int_equal(r->n_entity_refs, 1);
        assert_string_equal(r->entity_refs[0]->type, "host");
        assert_string_equal(t->resource_spans[i]->schema_url, "resource-schema");
        assert_int_equal(t->resource_spans[i]->scope_spans[0]->n_spans, 2);
    }
    free_traces(t);

    /* everything but the Resource is byte for byte the original */
    size_t n_in, n_out;
    uint8_t *r1 = A(len), *r2 = A(b.len);
    for (unsigned i = 0; i < 3; i++) {
        const uint8_t *in = nth_entry(req, len, i, &n_in);
        const uint8_t *out = nth_entry(b.data, b.len, i, &n_out);
        size_t l1 = entry_rest(in, n_in, r1), l2 = entry_rest(out, n_out, r2);
        assert_int_equal(l1, l2);
        assert_memory_equal(r1, r2, l1);
    }
    scan_ok(OTLP_TRACES, b.data, b.len, &res);
    assert_int_equal(res.items, 6);
    otlp_attrs_free(&a);
    buf_free(&b);
}

static void test_splice_overwrite(void **state)
{
    (void)state;
    static const char *const k[] = {"host.name", "service.name", "new.key"};
    static const char *const v[] = {"override-host", "", "\xc3\xa9t\xc3\xa9"};
    struct buf b;
    assert_int_equal(buf_init(&b, 0, 0), 0);
    struct otlp_attrs a;
    assert_int_equal(otlp_attrs_init(&a, k, v, 3), 0);
    struct otlp_scan_result res;
    size_t len;
    uint8_t *req = pack(&traces_msg(2, 1, 1)->base, &len);
    scan_ok(OTLP_TRACES, req, len, &res);
    assert_int_equal(otlp_batch_append(&b, req, len, &res, &a), 0);
    /* splicing twice (a batch of batches) stays idempotent */
    struct otlp_scan_result res2;
    scan_ok(OTLP_TRACES, b.data, b.len, &res2);
    struct buf b2;
    assert_int_equal(buf_init(&b2, 0, 0), 0);
    assert_int_equal(otlp_batch_append(&b2, b.data, b.len, &res2, &a), 0);
    assert_int_equal(b2.len, b.len);
    assert_memory_equal(b2.data, b.data, b.len);

    TraceReq *t = unpack_traces(&b);
    for (size_t i = 0; i < 2; i++) {
        Resource *r = t->resource_spans[i]->resource;
        assert_int_equal(r->n_attributes, 5);
        assert_string_equal(r->attributes[0]->key, "service.version");
        assert_string_equal(r->attributes[1]->key, "os.type");
        check_attrs(r, 3, k, v);
    }
    free_traces(t);
    otlp_attrs_free(&a);
    buf_free(&b);
    buf_free(&b2);
}

static void test_splice_no_resource(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 0, 0), 0);
    struct otlp_attrs a;
    assert_int_equal(otlp_attrs_init(&a, K2, V2, 2), 0);
    struct otlp_scan_result res;
    size_t len;
    uint8_t *req = pack(&traces_msg(2, 3, 0)->base, &len);
    scan_ok(OTLP_TRACES, req, len, &res);
    assert_int_equal(otlp_batch_append(&b, req, len, &res, &a), 0);
    TraceReq *t = unpack_traces(&b);
    for (size_t i = 0; i < 2; i++) {
        Resource *r = t->resource_spans[i]->resource;
        assert_int_equal(r->n_attributes, 2);
        check_attrs(r, 2, K2, V2);
        assert_int_equal(t->resource_spans[i]->scope_spans[0]->n_spans, 3);
    }
    free_traces(t);

    /* an empty entry gets a Resource too */
    static const uint8_t empty[] = {0x0a, 0x00};
    scan_ok(OTLP_TRACES, empty, 2, &res);
    buf_reset(&b);
    assert_int_equal(otlp_batch_append(&b, empty, 2, &res, &a), 0);
    t = unpack_traces(&b);
    assert_int_equal(t->n_resource_spans, 1);
    check_attrs(t->resource_spans[0]->resource, 2, K2, V2);
    free_traces(t);
    otlp_attrs_free(&a);
    buf_free(&b);
}

/* Append a length-delimited field to a raw buffer. */
static size_t put_len(uint8_t *d, uint32_t field, const void *p, size_t n)
{
    return (size_t)(otlp_wire_put_bytes(d, field, p, n) - d);
}

/* Unknown fields in the Resource and around it, and several Resource
 * fields in one entry (protobuf merges them). */
static void test_splice_unknown_and_merge(void **state)
{
    (void)state;
    static const char *const k[] = {"host.name"};
    static const char *const v[] = {"gw"};
    struct otlp_attrs a;
    assert_int_equal(otlp_attrs_init(&a, k, v, 1), 0);

    /* Resource #1: host.name=a (with an unknown field inside the KeyValue),
     * service.name; Resource #2: host.name=b (value before key), unknown
     * field 99, x=y. (protobuf-c keeps only the last Resource's unknown
     * fields when merging.) */
    uint8_t kv1[64], kv2[64], kv3[64], kv4[64], r1[256], r2[256], ent[1024], req[1200];
    uint8_t any[32];
    size_t an = put_len(any, 1, "a", 1);
    size_t k1 = put_len(kv1, 1, "host.name", 9);
    k1 += put_len(kv1 + k1, 2, any, an);
    k1 += put_len(kv1 + k1, 15, "zz", 2); /* unknown in KeyValue */
    an = put_len(any, 1, "svc", 3);
    size_t k2 = put_len(kv2, 1, "service.name", 12);
    k2 += put_len(kv2 + k2, 2, any, an);
    an = put_len(any, 1, "b", 1);
    size_t k3 = put_len(kv3, 2, any, an); /* value before key */
    k3 += put_len(kv3 + k3, 1, "host.name", 9);
    an = put_len(any, 1, "y", 1);
    size_t k4 = put_len(kv4, 1, "x", 1);
    k4 += put_len(kv4 + k4, 2, any, an);
    size_t n1 = put_len(r1, 1, kv1, k1);
    n1 += put_len(r1 + n1, 1, kv2, k2);
    size_t n2 = put_len(r2, 1, kv3, k3);
    uint8_t *d = otlp_wire_put_key(r2 + n2, 99, OTLP_WIRE_VARINT);
    d = otlp_wire_put_varint(d, 12345);
    n2 = (size_t)(d - r2);
    n2 += put_len(r2 + n2, 1, kv4, k4);
    size_t en = put_len(ent, 1, r1, n1);
    en += put_len(ent + en, 3, "schema", 6);
    en += put_len(ent + en, 1, r2, n2);
    en += put_len(ent + en, 77, "unknown-entry-field", 19);
    size_t rn = put_len(req, 1, ent, en);

    struct otlp_scan_result res;
    scan_ok(OTLP_TRACES, req, rn, &res);
    struct buf b;
    assert_int_equal(buf_init(&b, 0, 0), 0);
    assert_int_equal(otlp_batch_append(&b, req, rn, &res, &a), 0);
    scan_ok(OTLP_TRACES, b.data, b.len, &res);

    TraceReq *t = unpack_traces(&b);
    assert_int_equal(t->n_resource_spans, 1);
    ResourceSpans *rs = t->resource_spans[0];
    Resource *r = rs->resource;
    /* merged: service.name, x, host.name=gw */
    assert_int_equal(r->n_attributes, 3);
    assert_string_equal(r->attributes[0]->key, "service.name");
    assert_string_equal(r->attributes[1]->key, "x");
    check_attrs(r, 1, k, v);
    assert_int_equal(r->base.n_unknown_fields, 1);
    assert_int_equal(r->base.unknown_fields[0].tag, 99);
    assert_string_equal(rs->schema_url, "schema");
    assert_int_equal(rs->base.n_unknown_fields, 1);
    assert_int_equal(rs->base.unknown_fields[0].tag, 77);
    free_traces(t);

    /* the unknown Resource field is byte-identical in the output */
    static const uint8_t unk[] = {0x98, 0x06, 0xb9, 0x60};
    assert_non_null(memmem(b.data, b.len, unk, sizeof(unk)));
    otlp_attrs_free(&a);
    buf_free(&b);
}

/*
 * Length prefixes crossing varint size boundaries (127/128 and
 * 16383/16384 bytes), both growing (attributes added) and shrinking (a big
 * attribute replaced by a small one).
 */
static void test_splice_varint_boundaries(void **state)
{
    (void)state;
    static const char *const k[] = {"big", "k"};
    static const char *const v[] = {"s", "v"};
    struct otlp_attrs a;
    assert_int_equal(otlp_attrs_init(&a, k, v, 2), 0);
    char *pad = A(17000);
    static const size_t ranges[][2] = {{60, 140}, {16250, 16420}};
    unsigned crossings = 0;
    for (size_t r = 0; r < ARRAY_SIZE(ranges); r++) {
        for (size_t plen = ranges[r][0]; plen < ranges[r][1]; plen++) {
            for (int shrink = 0; shrink <= 1; shrink++) {
                memset(pad, 'p', plen);
                pad[plen] = '\0';
                /* Resource{attributes: (shrink ? big=pad : other=pad)} */
                TraceReq *t = traces_msg(1, 0, 0);
                Resource *res_msg = A(sizeof(*res_msg));
                opentelemetry__proto__resource__v1__resource__init(res_msg);
                res_msg->n_attributes = 1;
                res_msg->attributes = ptrs(1, kv_str(shrink ? "big" : "other", pad));
                t->resource_spans[0]->resource = res_msg;
                t->resource_spans[0]->n_scope_spans = 0;
                t->resource_spans[0]->schema_url = "";
                size_t len;
                uint8_t *req = pack(&t->base, &len);
                struct otlp_scan_result res;
                scan_ok(OTLP_TRACES, req, len, &res);
                struct buf b;
                assert_int_equal(buf_init(&b, 0, 0), 0);
                assert_int_equal(otlp_batch_append(&b, req, len, &res, &a), 0);
                /* prefixes are minimal: compare with protobuf-c's own encoding */
                TraceReq *o = unpack_traces(&b);
                Resource *ro = o->resource_spans[0]->resource;
                check_attrs(ro, 2, k, v);
                assert_int_equal(ro->n_attributes, shrink ? 2 : 3);
                size_t repacked_len;
                uint8_t *repacked = pack(&o->base, &repacked_len);
                assert_int_equal(repacked_len, b.len);
                assert_memory_equal(repacked, b.data, b.len);
                if (otlp_wire_varint_size(b.len) != otlp_wire_varint_size(len))
                    crossings++;
                free_traces(o);
                buf_free(&b);
            }
        }
    }
    assert_true(crossings >= 4); /* both boundaries, both directions */
    otlp_attrs_free(&a);
}

/* Metrics and logs batches with attributes, several requests. */
static void test_metrics_logs(void **state)
{
    (void)state;
    struct otlp_attrs a;
    assert_int_equal(otlp_attrs_init(&a, K2, V2, 2), 0);
    struct otlp_scan_result res;
    struct buf b;
    assert_int_equal(buf_init(&b, 0, 0), 0);
    uint64_t items = 0;
    for (unsigned i = 1; i <= 3; i++) {
        size_t len;
        uint8_t *req = pack(&metrics_msg(i)->base, &len);
        scan_ok(OTLP_METRICS, req, len, &res);
        items += res.items;
        assert_int_equal(otlp_batch_append(&b, req, len, &res, &a), 0);
    }
    MetricsReq *m = opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__unpack(
        NULL, b.len, b.data);
    assert_non_null(m);
    assert_int_equal(m->n_resource_metrics, 6);
    uint64_t points = 0;
    for (size_t i = 0; i < m->n_resource_metrics; i++) {
        check_attrs(m->resource_metrics[i]->resource, 2, K2, V2);
        points += m->resource_metrics[i]->scope_metrics[0]->metrics[0]->gauge->n_data_points;
    }
    assert_int_equal(points, items);
    assert_int_equal(items, 18);
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__free_unpacked(m, NULL);

    buf_reset(&b);
    size_t len;
    uint8_t *req = pack(&logs_msg(4)->base, &len);
    scan_ok(OTLP_LOGS, req, len, &res);
    assert_int_equal(otlp_batch_append(&b, req, len, &res, &a), 0);
    assert_int_equal(otlp_batch_append(&b, req, len, &res, &a), 0);
    LogsReq *l = opentelemetry__proto__collector__logs__v1__export_logs_service_request__unpack(
        NULL, b.len, b.data);
    assert_non_null(l);
    assert_int_equal(l->n_resource_logs, 8);
    for (size_t i = 0; i < l->n_resource_logs; i++) {
        check_attrs(l->resource_logs[i]->resource, 2, K2, V2);
        assert_int_equal(l->resource_logs[i]->scope_logs[0]->n_log_records, 2);
    }
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__free_unpacked(l, NULL);
    otlp_attrs_free(&a);
    buf_free(&b);
}

static void test_attrs_init(void **state)
{
    (void)state;
    struct otlp_attrs a;
    static const char *const dup[] = {"a", "a"};
    static const char *const vals[] = {"1", "2"};
    static const char *const empty_key[] = {""};
    static const char *const bad_utf8[] = {"\xff"};
    static const char *const ok[] = {"k"};
    static const char *const null_key[] = {NULL};
    assert_int_equal(otlp_attrs_init(NULL, ok, ok, 1), -EINVAL);
    assert_int_equal(otlp_attrs_init(&a, dup, vals, 2), -EINVAL);
    assert_int_equal(a.n, 0);
    assert_int_equal(otlp_attrs_init(&a, empty_key, ok, 1), -EINVAL);
    assert_int_equal(otlp_attrs_init(&a, bad_utf8, ok, 1), -EINVAL);
    assert_int_equal(otlp_attrs_init(&a, ok, bad_utf8, 1), -EINVAL);
    assert_int_equal(otlp_attrs_init(&a, null_key, ok, 1), -EINVAL);
    assert_int_equal(otlp_attrs_init(&a, ok, NULL, 1), -EINVAL);
    assert_int_equal(otlp_attrs_init(&a, NULL, NULL, 0), 0);
    assert_int_equal(a.n, 0);
    otlp_attrs_free(&a);

    /* the encoding is Resource.attributes fields protobuf-c can read */
    assert_int_equal(otlp_attrs_init(&a, K2, V2, 2), 0);
    Resource *r = opentelemetry__proto__resource__v1__resource__unpack(NULL, a.encoded_len, a.encoded);
    assert_non_null(r);
    assert_int_equal(r->n_attributes, 2);
    check_attrs(r, 2, K2, V2);
    opentelemetry__proto__resource__v1__resource__free_unpacked(r, NULL);
    assert_int_equal(a.keys[1].len, strlen(K2[1]));
    assert_memory_equal(a.encoded + a.keys[1].off, K2[1], a.keys[1].len);
    otlp_attrs_free(&a);
    otlp_attrs_free(&a); /* twice is fine */
    otlp_attrs_free(NULL);

    /* a long value (multi-byte length prefixes) */
    char *longv = A(70000);
    memset(longv, 'x', 69999);
    const char *lk[] = {"long"};
    const char *lv[] = {longv};
    assert_int_equal(otlp_attrs_init(&a, lk, lv, 1), 0);
    r = opentelemetry__proto__resource__v1__resource__unpack(NULL, a.encoded_len, a.encoded);
    assert_non_null(r);
    assert_int_equal(strlen(r->attributes[0]->value->string_value), 69999);
    opentelemetry__proto__resource__v1__resource__free_unpacked(r, NULL);
    otlp_attrs_free(&a);
}

/* ------------------------------------------------------------------------ */
/* Responses                                                                */
/* ------------------------------------------------------------------------ */

static void test_response_proto(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 0, 0), 0);

    /* full success: the empty message */
    for (int s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        assert_int_equal(otlp_response_encode_proto((enum otlp_signal)s, 0, NULL, &b), 0);
        assert_int_equal(otlp_response_encode_proto((enum otlp_signal)s, 0, "", &b), 0);
    }
    assert_int_equal(b.len, 0);

    assert_int_equal(otlp_response_encode_proto(OTLP_TRACES, 3, "resource_spans[1]: bad", &b), 0);
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse *tr =
        opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(NULL, b.len, b.data);
    assert_non_null(tr);
    assert_non_null(tr->partial_success);
    assert_int_equal(tr->partial_success->rejected_spans, 3);
    assert_string_equal(tr->partial_success->error_message, "resource_spans[1]: bad");
    opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(tr, NULL);

    buf_reset(&b);
    assert_int_equal(otlp_response_encode_proto(OTLP_METRICS, UINT64_MAX, NULL, &b), 0);
    Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceResponse *mr =
        opentelemetry__proto__collector__metrics__v1__export_metrics_service_response__unpack(NULL, b.len, b.data);
    assert_non_null(mr);
    assert_int_equal(mr->partial_success->rejected_data_points, INT64_MAX);
    assert_string_equal(mr->partial_success->error_message, "");
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_response__free_unpacked(mr, NULL);

    /* warning only, with invalid UTF-8 sanitised */
    buf_reset(&b);
    assert_int_equal(otlp_response_encode_proto(OTLP_LOGS, 0, "a\xff" "b\xc3", &b), 0);
    Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceResponse *lr =
        opentelemetry__proto__collector__logs__v1__export_logs_service_response__unpack(NULL, b.len, b.data);
    assert_non_null(lr);
    assert_int_equal(lr->partial_success->rejected_log_records, 0);
    assert_string_equal(lr->partial_success->error_message, "a?b?");
    opentelemetry__proto__collector__logs__v1__export_logs_service_response__free_unpacked(lr, NULL);

    /* a long message: two-byte length prefixes */
    char *msg = A(300);
    memset(msg, 'm', 299);
    buf_reset(&b);
    assert_int_equal(otlp_response_encode_proto(OTLP_TRACES, 1, msg, &b), 0);
    tr = opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(NULL, b.len, b.data);
    assert_non_null(tr);
    assert_string_equal(tr->partial_success->error_message, msg);
    opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(tr, NULL);

    assert_int_equal(otlp_response_encode_proto((enum otlp_signal)9, 1, NULL, &b), -EINVAL);
    assert_int_equal(otlp_response_encode_proto(OTLP_TRACES, 1, NULL, NULL), -EINVAL);
    buf_free(&b);

    /* no room: -EMSGSIZE, nothing written */
    assert_int_equal(buf_init(&b, 4, 4), 0);
    assert_int_equal(otlp_response_encode_proto(OTLP_TRACES, 1, "too long for four bytes", &b),
                     -EMSGSIZE);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static char *as_str(struct buf *b)
{
    char *s = A(b->len + 1);
    memcpy(s, b->data, b->len);
    return s;
}

static void test_response_json(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 0, 0), 0);
    assert_int_equal(otlp_response_encode_json(OTLP_TRACES, 0, NULL, &b), 0);
    assert_string_equal(as_str(&b), "{}");

    buf_reset(&b);
    assert_int_equal(otlp_response_encode_json(OTLP_TRACES, 3, "bad ids", &b), 0);
    assert_string_equal(as_str(&b),
                        "{\"partialSuccess\":{\"rejectedSpans\":\"3\",\"errorMessage\":\"bad ids\"}}");
    buf_reset(&b);
    assert_int_equal(otlp_response_encode_json(OTLP_METRICS, 12, NULL, &b), 0);
    assert_string_equal(as_str(&b), "{\"partialSuccess\":{\"rejectedDataPoints\":\"12\"}}");
    buf_reset(&b);
    assert_int_equal(otlp_response_encode_json(OTLP_LOGS, 1, "", &b), 0);
    assert_string_equal(as_str(&b), "{\"partialSuccess\":{\"rejectedLogRecords\":\"1\"}}");
    buf_reset(&b);
    assert_int_equal(otlp_response_encode_json(OTLP_LOGS, 0, "warn", &b), 0);
    assert_string_equal(as_str(&b), "{\"partialSuccess\":{\"errorMessage\":\"warn\"}}");

    /* escaping; the output parses and round-trips */
    const char *nasty = "q\"b\\s/\n\r\t\b\f\x01\x1f caf\xc3\xa9 \xff end";
    buf_reset(&b);
    assert_int_equal(otlp_response_encode_json(OTLP_TRACES, UINT64_MAX, nasty, &b), 0);
    json_error_t jerr;
    json_t *j = json_loadb((const char *)b.data, b.len, 0, &jerr);
    if (j == NULL)
        fail_msg("json: %s in %s", jerr.text, as_str(&b));
    json_t *ps = json_object_get(j, "partialSuccess");
    assert_string_equal(json_string_value(json_object_get(ps, "rejectedSpans")),
                        "9223372036854775807");
    assert_string_equal(json_string_value(json_object_get(ps, "errorMessage")),
                        "q\"b\\s/\n\r\t\b\f\x01\x1f caf\xc3\xa9 \xef\xbf\xbd end");
    json_decref(j);

    assert_int_equal(otlp_response_encode_json((enum otlp_signal)-1, 0, NULL, &b), -EINVAL);
    buf_free(&b);

    /* no room: -EMSGSIZE, nothing written */
    assert_int_equal(buf_init(&b, 8, 8), 0);
    assert_int_equal(otlp_response_encode_json(OTLP_TRACES, 5, "x", &b), -EMSGSIZE);
    assert_int_equal(b.len, 0);
    assert_int_equal(otlp_response_encode_json(OTLP_TRACES, 0, NULL, &b), 0);
    assert_int_equal(b.len, 2);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_concat, arena_teardown),
        cmocka_unit_test_teardown(test_skip_rejected, arena_teardown),
        cmocka_unit_test_teardown(test_batch_errors, arena_teardown),
        cmocka_unit_test_teardown(test_emsgsize_rollback, arena_teardown),
        cmocka_unit_test_teardown(test_splice_add, arena_teardown),
        cmocka_unit_test_teardown(test_splice_overwrite, arena_teardown),
        cmocka_unit_test_teardown(test_splice_no_resource, arena_teardown),
        cmocka_unit_test_teardown(test_splice_unknown_and_merge, arena_teardown),
        cmocka_unit_test_teardown(test_splice_varint_boundaries, arena_teardown),
        cmocka_unit_test_teardown(test_metrics_logs, arena_teardown),
        cmocka_unit_test_teardown(test_attrs_init, arena_teardown),
        cmocka_unit_test_teardown(test_response_proto, arena_teardown),
        cmocka_unit_test_teardown(test_response_json, arena_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(arena);
    return rc;
}
