/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for lib/otlp/otlp_scan.c (and the otlp_wire.h helpers): real
 * requests built with protobuf-c for all three signals, every truncation,
 * corruption cross-checked against protobuf-c, UTF-8, depth, semantic
 * rejection. Set OTLP_SCAN_CORPUS_DIR to also write the fuzz seed corpus. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "otlp/otlp_scan.h"
#include "otlp/otlp_wire.h"

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__ArrayValue ArrayValue;
typedef Opentelemetry__Proto__Common__V1__KeyValueList KeyValueList;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope Scope;
typedef Opentelemetry__Proto__Common__V1__EntityRef EntityRef;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans ResourceSpans;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans ScopeSpans;
typedef Opentelemetry__Proto__Trace__V1__Span Span;
typedef Opentelemetry__Proto__Trace__V1__Span__Event Event;
typedef Opentelemetry__Proto__Trace__V1__Span__Link Link;
typedef Opentelemetry__Proto__Trace__V1__Status Status;
typedef Opentelemetry__Proto__Metrics__V1__ResourceMetrics ResourceMetrics;
typedef Opentelemetry__Proto__Metrics__V1__ScopeMetrics ScopeMetrics;
typedef Opentelemetry__Proto__Metrics__V1__Metric Metric;
typedef Opentelemetry__Proto__Metrics__V1__Gauge Gauge;
typedef Opentelemetry__Proto__Metrics__V1__Sum Sum;
typedef Opentelemetry__Proto__Metrics__V1__Histogram Histogram;
typedef Opentelemetry__Proto__Metrics__V1__ExponentialHistogram ExpHistogram;
typedef Opentelemetry__Proto__Metrics__V1__Summary Summary;
typedef Opentelemetry__Proto__Metrics__V1__NumberDataPoint NumberDP;
typedef Opentelemetry__Proto__Metrics__V1__HistogramDataPoint HistogramDP;
typedef Opentelemetry__Proto__Metrics__V1__ExponentialHistogramDataPoint ExpHistogramDP;
typedef Opentelemetry__Proto__Metrics__V1__ExponentialHistogramDataPoint__Buckets Buckets;
typedef Opentelemetry__Proto__Metrics__V1__SummaryDataPoint SummaryDP;
typedef Opentelemetry__Proto__Metrics__V1__SummaryDataPoint__ValueAtQuantile Quantile;
typedef Opentelemetry__Proto__Metrics__V1__Exemplar Exemplar;
typedef Opentelemetry__Proto__Logs__V1__ResourceLogs ResourceLogs;
typedef Opentelemetry__Proto__Logs__V1__ScopeLogs ScopeLogs;
typedef Opentelemetry__Proto__Logs__V1__LogRecord LogRecord;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest TraceReq;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest MetricsReq;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest LogsReq;

/* ------------------------------------------------------------------------ */
/* Arena for test messages: everything is freed after each test.            */
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

static const uint8_t TRACE_ID[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                                     0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
static const uint8_t SPAN_ID[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
static const uint8_t PARENT_ID[8] = {0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8};

static ProtobufCBinaryData bin(const uint8_t *p, size_t n)
{
    ProtobufCBinaryData b = {n, (uint8_t *)p};
    return b;
}

/* ---- common ---- */

static AnyValue *av(void)
{
    AnyValue *v = A(sizeof(*v));
    opentelemetry__proto__common__v1__any_value__init(v);
    return v;
}
static AnyValue *av_str(const char *s)
{
    AnyValue *v = av();
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    v->string_value = (char *)s;
    return v;
}
static AnyValue *av_int(int64_t i)
{
    AnyValue *v = av();
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    v->int_value = i;
    return v;
}
static AnyValue *av_dbl(double d)
{
    AnyValue *v = av();
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
    v->double_value = d;
    return v;
}
static AnyValue *av_bool(int b)
{
    AnyValue *v = av();
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
    v->bool_value = b;
    return v;
}
static AnyValue *av_bytes(const uint8_t *p, size_t n)
{
    AnyValue *v = av();
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE;
    v->bytes_value = bin(p, n);
    return v;
}
static AnyValue *av_array(size_t n, AnyValue **vals)
{
    ArrayValue *a = A(sizeof(*a));
    opentelemetry__proto__common__v1__array_value__init(a);
    a->n_values = n;
    a->values = vals;
    AnyValue *v = av();
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
    v->array_value = a;
    return v;
}
static AnyValue *av_kvlist(size_t n, KeyValue **kvs)
{
    KeyValueList *l = A(sizeof(*l));
    opentelemetry__proto__common__v1__key_value_list__init(l);
    l->n_values = n;
    l->values = kvs;
    AnyValue *v = av();
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE;
    v->kvlist_value = l;
    return v;
}
static KeyValue *kv(const char *k, AnyValue *v)
{
    KeyValue *x = A(sizeof(*x));
    opentelemetry__proto__common__v1__key_value__init(x);
    x->key = (char *)k;
    x->value = v;
    return x;
}

static Resource *make_resource(void)
{
    Resource *r = A(sizeof(*r));
    opentelemetry__proto__resource__v1__resource__init(r);
    r->n_attributes = 4;
    r->attributes = ptrs(4, kv("service.name", av_str("checkout")),
                         kv("service.version", av_str("1.4.2")),
                         kv("host.name", av_str("node-17.eu-west")),
                         kv("telemetry.sdk.language", av_str("go")));
    r->dropped_attributes_count = 1;
    EntityRef *e = A(sizeof(*e));
    opentelemetry__proto__common__v1__entity_ref__init(e);
    e->type = "service";
    e->schema_url = "https://opentelemetry.io/schemas/1.26.0";
    e->n_id_keys = 1;
    e->id_keys = ptrs(1, "service.name");
    e->n_description_keys = 2;
    e->description_keys = ptrs(2, "service.version", "host.name");
    r->n_entity_refs = 1;
    r->entity_refs = ptrs(1, e);
    return r;
}

static Scope *make_scope(void)
{
    Scope *s = A(sizeof(*s));
    opentelemetry__proto__common__v1__instrumentation_scope__init(s);
    s->name = "io.opentelemetry.contrib.http";
    s->version = "0.42.0";
    s->n_attributes = 1;
    s->attributes = ptrs(1, kv("scope.attr", av_bool(1)));
    s->dropped_attributes_count = 2;
    return s;
}

/* ---- traces ---- */

static Span *make_span(unsigned i, int rich)
{
    Span *s = A(sizeof(*s));
    opentelemetry__proto__trace__v1__span__init(s);
    s->trace_id = bin(TRACE_ID, 16);
    s->span_id = bin(SPAN_ID, 8);
    s->parent_span_id = bin(PARENT_ID, 8);
    s->trace_state = "rojo=00f067aa0ba902b7";
    s->name = "GET /api/v1/users/{id}";
    s->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER;
    s->start_time_unix_nano = 1700000000000000000ull + i;
    s->end_time_unix_nano = 1700000000000500000ull + i;
    s->flags = 0x301;
    s->n_attributes = 5;
    s->attributes = ptrs(5, kv("http.request.method", av_str("GET")),
                         kv("http.response.status_code", av_int(200 + (int)(i % 5))),
                         kv("url.full", av_str("https://shop.example.com/api/v1/users/42")),
                         kv("server.duration", av_dbl(0.0123)),
                         kv("user_agent.original", av_str("Mozilla/5.0 \xc3\xa9t\xc3\xa9 \xe2\x82\xac")));
    s->dropped_attributes_count = 0;
    if (rich) {
        static const uint8_t blob[3] = {0, 0xff, 0x80};
        s->n_attributes = 8;
        s->attributes = ptrs(8, s->attributes[0], s->attributes[1], s->attributes[2],
                             s->attributes[3], s->attributes[4],
                             kv("tags", av_array(3, ptrs(3, av_str("a"), av_int(-1),
                                                         av_array(1, ptrs(1, av_bool(0)))))),
                             kv("nested", av_kvlist(2, ptrs(2, kv("k1", av_str("v1")),
                                                           kv("k2", av_kvlist(1, ptrs(1, kv("deep", av_bytes(blob, 3)))))))),
                             kv("empty", av()));
        Event *e = A(sizeof(*e));
        opentelemetry__proto__trace__v1__span__event__init(e);
        e->time_unix_nano = 1700000000000100000ull;
        e->name = "exception";
        e->n_attributes = 2;
        e->attributes = ptrs(2, kv("exception.type", av_str("IOError")),
                             kv("exception.message", av_str("connection reset")));
        e->dropped_attributes_count = 1;
        s->n_events = 2;
        s->events = ptrs(2, e, e);
        Link *l = A(sizeof(*l));
        opentelemetry__proto__trace__v1__span__link__init(l);
        l->trace_id = bin(TRACE_ID, 16);
        l->span_id = bin(PARENT_ID, 8);
        l->trace_state = "x=1";
        l->n_attributes = 1;
        l->attributes = ptrs(1, kv("link.kind", av_str("follows")));
        l->flags = 1;
        s->n_links = 1;
        s->links = ptrs(1, l);
        s->dropped_events_count = 3;
        s->dropped_links_count = 4;
        Status *st = A(sizeof(*st));
        opentelemetry__proto__trace__v1__status__init(st);
        st->code = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
        st->message = "upstream timeout";
        s->status = st;
    }
    return s;
}

static TraceReq *traces_msg(unsigned R, unsigned S, unsigned N, int rich)
{
    TraceReq *req = A(sizeof(*req));
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(req);
    req->n_resource_spans = R;
    req->resource_spans = A(R * sizeof(void *));
    for (unsigned r = 0; r < R; r++) {
        ResourceSpans *rs = A(sizeof(*rs));
        opentelemetry__proto__trace__v1__resource_spans__init(rs);
        rs->resource = make_resource();
        rs->schema_url = "https://opentelemetry.io/schemas/1.26.0";
        rs->n_scope_spans = S;
        rs->scope_spans = A(S * sizeof(void *));
        for (unsigned s = 0; s < S; s++) {
            ScopeSpans *ss = A(sizeof(*ss));
            opentelemetry__proto__trace__v1__scope_spans__init(ss);
            ss->scope = make_scope();
            ss->n_spans = N;
            ss->spans = A(N * sizeof(void *));
            for (unsigned i = 0; i < N; i++)
                ss->spans[i] = make_span(i, rich);
            rs->scope_spans[s] = ss;
        }
        req->resource_spans[r] = rs;
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

static uint8_t *traces_req(unsigned R, unsigned S, unsigned N, int rich, size_t *len)
{
    return pack(&traces_msg(R, S, N, rich)->base, len);
}

/* ---- metrics ---- */

static Exemplar *make_exemplar(int with_ids)
{
    Exemplar *e = A(sizeof(*e));
    opentelemetry__proto__metrics__v1__exemplar__init(e);
    e->time_unix_nano = 1700000000000000000ull;
    e->value_case = OPENTELEMETRY__PROTO__METRICS__V1__EXEMPLAR__VALUE_AS_DOUBLE;
    e->as_double = 3.5;
    if (with_ids) {
        e->trace_id = bin(TRACE_ID, 16);
        e->span_id = bin(SPAN_ID, 8);
    }
    e->n_filtered_attributes = 1;
    e->filtered_attributes = ptrs(1, kv("client", av_str("a")));
    return e;
}

static NumberDP *make_ndp(int as_int)
{
    NumberDP *d = A(sizeof(*d));
    opentelemetry__proto__metrics__v1__number_data_point__init(d);
    d->n_attributes = 2;
    d->attributes = ptrs(2, kv("method", av_str("GET")), kv("code", av_int(200)));
    d->start_time_unix_nano = 1;
    d->time_unix_nano = 2;
    if (as_int) {
        d->value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT;
        d->as_int = -42;
    } else {
        d->value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_DOUBLE;
        d->as_double = 1.5;
    }
    d->n_exemplars = 1;
    d->exemplars = ptrs(1, make_exemplar(1));
    d->flags = 1;
    return d;
}

static Metric *make_metric(const char *name)
{
    Metric *m = A(sizeof(*m));
    opentelemetry__proto__metrics__v1__metric__init(m);
    m->name = (char *)name;
    m->description = "a metric";
    m->unit = "ms";
    m->n_metadata = 1;
    m->metadata = ptrs(1, kv("meta", av_str("x")));
    return m;
}

static MetricsReq *metrics_msg(unsigned R, uint64_t *points)
{
    static uint64_t buckets[5] = {1, 2, 3, 4, 5};
    static double bounds[4] = {0.1, 1, 10, 100};
    static uint64_t ebuckets[3] = {7, 300, 70000};
    MetricsReq *req = A(sizeof(*req));
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__init(req);
    req->n_resource_metrics = R;
    req->resource_metrics = A(R * sizeof(void *));
    *points = 0;
    for (unsigned r = 0; r < R; r++) {
        Metric *g = make_metric("gauge");
        Gauge *gg = A(sizeof(*gg));
        opentelemetry__proto__metrics__v1__gauge__init(gg);
        gg->n_data_points = 2;
        gg->data_points = ptrs(2, make_ndp(0), make_ndp(1));
        g->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE;
        g->gauge = gg;

        Metric *s = make_metric("sum");
        Sum *ss = A(sizeof(*ss));
        opentelemetry__proto__metrics__v1__sum__init(ss);
        ss->n_data_points = 3;
        ss->data_points = ptrs(3, make_ndp(1), make_ndp(0), make_ndp(1));
        ss->aggregation_temporality =
            OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_CUMULATIVE;
        ss->is_monotonic = 1;
        s->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM;
        s->sum = ss;

        Metric *h = make_metric("histogram");
        Histogram *hh = A(sizeof(*hh));
        opentelemetry__proto__metrics__v1__histogram__init(hh);
        HistogramDP *hd = A(sizeof(*hd));
        opentelemetry__proto__metrics__v1__histogram_data_point__init(hd);
        hd->n_attributes = 1;
        hd->attributes = ptrs(1, kv("route", av_str("/x")));
        hd->count = 15;
        hd->_sum_case = OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT___SUM_SUM;
        hd->sum = 99.5;
        hd->_min_case = OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT___MIN_MIN;
        hd->min = 0.01;
        hd->_max_case = OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT___MAX_MAX;
        hd->max = 120;
        hd->n_bucket_counts = 5;
        hd->bucket_counts = buckets;
        hd->n_explicit_bounds = 4;
        hd->explicit_bounds = bounds;
        hd->n_exemplars = 2;
        hd->exemplars = ptrs(2, make_exemplar(1), make_exemplar(0));
        hh->n_data_points = 1;
        hh->data_points = ptrs(1, hd);
        hh->aggregation_temporality = 1;
        h->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM;
        h->histogram = hh;

        Metric *e = make_metric("exp_histogram");
        ExpHistogram *eh = A(sizeof(*eh));
        opentelemetry__proto__metrics__v1__exponential_histogram__init(eh);
        ExpHistogramDP *ed = A(sizeof(*ed));
        opentelemetry__proto__metrics__v1__exponential_histogram_data_point__init(ed);
        ed->count = 70310;
        ed->scale = -3;
        ed->zero_count = 3;
        ed->zero_threshold = 1e-9;
        Buckets *pos = A(sizeof(*pos)), *neg = A(sizeof(*neg));
        opentelemetry__proto__metrics__v1__exponential_histogram_data_point__buckets__init(pos);
        opentelemetry__proto__metrics__v1__exponential_histogram_data_point__buckets__init(neg);
        pos->offset = -5;
        pos->n_bucket_counts = 3;
        pos->bucket_counts = ebuckets;
        neg->offset = 2;
        ed->positive = pos;
        ed->negative = neg;
        ed->n_exemplars = 1;
        ed->exemplars = ptrs(1, make_exemplar(1));
        ed->_sum_case = OPENTELEMETRY__PROTO__METRICS__V1__EXPONENTIAL_HISTOGRAM_DATA_POINT___SUM_SUM;
        ed->sum = 12;
        eh->n_data_points = 2;
        eh->data_points = ptrs(2, ed, ed);
        e->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_EXPONENTIAL_HISTOGRAM;
        e->exponential_histogram = eh;

        Metric *m = make_metric("summary");
        Summary *sm = A(sizeof(*sm));
        opentelemetry__proto__metrics__v1__summary__init(sm);
        SummaryDP *sd = A(sizeof(*sd));
        opentelemetry__proto__metrics__v1__summary_data_point__init(sd);
        sd->count = 10;
        sd->sum = 5;
        Quantile *q1 = A(sizeof(*q1)), *q2 = A(sizeof(*q2));
        opentelemetry__proto__metrics__v1__summary_data_point__value_at_quantile__init(q1);
        opentelemetry__proto__metrics__v1__summary_data_point__value_at_quantile__init(q2);
        q1->quantile = 0.5;
        q1->value = 1;
        q2->quantile = 0.99;
        q2->value = 9;
        sd->n_quantile_values = 2;
        sd->quantile_values = ptrs(2, q1, q2);
        sm->n_data_points = 1;
        sm->data_points = ptrs(1, sd);
        m->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUMMARY;
        m->summary = sm;

        Metric *none = make_metric("no_data"); /* counts 0 */

        ScopeMetrics *sc = A(sizeof(*sc));
        opentelemetry__proto__metrics__v1__scope_metrics__init(sc);
        sc->scope = make_scope();
        sc->n_metrics = 6;
        sc->metrics = ptrs(6, g, s, h, e, m, none);
        sc->schema_url = "s";
        ResourceMetrics *rm = A(sizeof(*rm));
        opentelemetry__proto__metrics__v1__resource_metrics__init(rm);
        rm->resource = make_resource();
        rm->n_scope_metrics = 1;
        rm->scope_metrics = ptrs(1, sc);
        req->resource_metrics[r] = rm;
        *points += 2 + 3 + 1 + 2 + 1;
    }
    return req;
}

static uint8_t *metrics_req(unsigned R, size_t *len, uint64_t *points)
{
    return pack(&metrics_msg(R, points)->base, len);
}

/* ---- logs ---- */

static LogRecord *make_log(unsigned i, int with_ids)
{
    LogRecord *l = A(sizeof(*l));
    opentelemetry__proto__logs__v1__log_record__init(l);
    l->time_unix_nano = 1700000000000000000ull + i;
    l->observed_time_unix_nano = 1700000000000000001ull + i;
    l->severity_number = OPENTELEMETRY__PROTO__LOGS__V1__SEVERITY_NUMBER__SEVERITY_NUMBER_INFO;
    l->severity_text = "INFO";
    l->body = (i % 2) ? av_str("user logged in: \xe6\x97\xa5\xe6\x9c\xac")
                      : av_kvlist(2, ptrs(2, kv("msg", av_str("structured")),
                                          kv("vals", av_array(2, ptrs(2, av_int(1), av_dbl(2))))));
    l->n_attributes = 2;
    l->attributes = ptrs(2, kv("log.file.name", av_str("app.log")), kv("thread.id", av_int(7)));
    l->dropped_attributes_count = 1;
    l->flags = 1;
    if (with_ids) {
        l->trace_id = bin(TRACE_ID, 16);
        l->span_id = bin(SPAN_ID, 8);
    }
    l->event_name = "login";
    return l;
}

static LogsReq *logs_msg(unsigned R, unsigned N)
{
    LogsReq *req = A(sizeof(*req));
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__init(req);
    req->n_resource_logs = R;
    req->resource_logs = A(R * sizeof(void *));
    for (unsigned r = 0; r < R; r++) {
        ScopeLogs *sl = A(sizeof(*sl));
        opentelemetry__proto__logs__v1__scope_logs__init(sl);
        sl->scope = make_scope();
        sl->n_log_records = N;
        sl->log_records = A(N * sizeof(void *));
        for (unsigned i = 0; i < N; i++)
            sl->log_records[i] = make_log(i, i % 3 != 0);
        ResourceLogs *rl = A(sizeof(*rl));
        opentelemetry__proto__logs__v1__resource_logs__init(rl);
        rl->resource = make_resource();
        rl->n_scope_logs = 2;
        rl->scope_logs = ptrs(2, sl, sl);
        rl->schema_url = "x";
        req->resource_logs[r] = rl;
    }
    return req;
}

static uint8_t *logs_req(unsigned R, unsigned N, size_t *len)
{
    return pack(&logs_msg(R, N)->base, len);
}

/* ------------------------------------------------------------------------ */
/* protobuf-c as the reference decoder                                      */
/* ------------------------------------------------------------------------ */

/* Unpack buf as `sig` and count items; false when protobuf-c refuses it. */
static bool ref_count(enum otlp_signal sig, const uint8_t *buf, size_t len, uint64_t *items)
{
    *items = 0;
    if (sig == OTLP_TRACES) {
        TraceReq *r =
            opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(NULL, len, buf);
        if (r == NULL)
            return false;
        for (size_t i = 0; i < r->n_resource_spans; i++)
            for (size_t j = 0; j < r->resource_spans[i]->n_scope_spans; j++)
                *items += r->resource_spans[i]->scope_spans[j]->n_spans;
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(r, NULL);
    } else if (sig == OTLP_METRICS) {
        MetricsReq *r =
            opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__unpack(NULL, len, buf);
        if (r == NULL)
            return false;
        for (size_t i = 0; i < r->n_resource_metrics; i++)
            for (size_t j = 0; j < r->resource_metrics[i]->n_scope_metrics; j++) {
                ScopeMetrics *sm = r->resource_metrics[i]->scope_metrics[j];
                for (size_t k = 0; k < sm->n_metrics; k++) {
                    Metric *m = sm->metrics[k];
                    switch (m->data_case) {
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE:
                        *items += m->gauge->n_data_points;
                        break;
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM:
                        *items += m->sum->n_data_points;
                        break;
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM:
                        *items += m->histogram->n_data_points;
                        break;
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_EXPONENTIAL_HISTOGRAM:
                        *items += m->exponential_histogram->n_data_points;
                        break;
                    case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUMMARY:
                        *items += m->summary->n_data_points;
                        break;
                    default:
                        break;
                    }
                }
            }
        opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__free_unpacked(r, NULL);
    } else {
        LogsReq *r =
            opentelemetry__proto__collector__logs__v1__export_logs_service_request__unpack(NULL, len, buf);
        if (r == NULL)
            return false;
        for (size_t i = 0; i < r->n_resource_logs; i++)
            for (size_t j = 0; j < r->resource_logs[i]->n_scope_logs; j++)
                *items += r->resource_logs[i]->scope_logs[j]->n_log_records;
        opentelemetry__proto__collector__logs__v1__export_logs_service_request__free_unpacked(r, NULL);
    }
    return true;
}

/* Scan and, on success, require protobuf-c to agree on the item count. */
static int scan_checked(enum otlp_signal sig, const uint8_t *buf, size_t len,
                        struct otlp_scan_result *res)
{
    int rc = otlp_scan(sig, buf, len, NULL, res);
    if (rc == 0) {
        uint64_t ref;
        if (!ref_count(sig, buf, len, &ref))
            fail_msg("scan accepted what protobuf-c refuses (sig %d, len %zu)", sig, len);
        assert_int_equal(ref, res->items + res->rejected_items);
    } else {
        assert_true(rc < 0 && -rc < OTLP_SCAN_E_COUNT);
        assert_true(res->error[0] != '\0');
    }
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Raw writer for inputs protobuf-c cannot produce                          */
/* ------------------------------------------------------------------------ */

struct wb {
    uint8_t d[1 << 16];
    size_t n;
};

static struct wb *wb_new(void)
{
    struct wb *b = A(sizeof(*b));
    return b;
}
static void wb_raw(struct wb *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof(b->d));
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void wb_varint(struct wb *b, uint64_t v)
{
    uint8_t t[10];
    wb_raw(b, t, (size_t)(otlp_wire_put_varint(t, v) - t));
}
static void wb_key(struct wb *b, uint32_t f, unsigned wt)
{
    wb_varint(b, ((uint64_t)f << 3) | wt);
}
static void wb_bytes(struct wb *b, uint32_t f, const void *p, size_t n)
{
    wb_key(b, f, OTLP_WIRE_LEN);
    wb_varint(b, n);
    wb_raw(b, p, n);
}
static void wb_msg(struct wb *b, uint32_t f, const struct wb *c)
{
    wb_bytes(b, f, c->d, c->n);
}
static void wb_str(struct wb *b, uint32_t f, const char *s)
{
    wb_bytes(b, f, s, strlen(s));
}
static void wb_fixed64(struct wb *b, uint32_t f, uint64_t v)
{
    uint8_t t[8];
    wb_key(b, f, OTLP_WIRE_I64);
    otlp_wire_put_fixed64(t, v);
    wb_raw(b, t, 8);
}
static void wb_uint(struct wb *b, uint32_t f, uint64_t v)
{
    wb_key(b, f, OTLP_WIRE_VARINT);
    wb_varint(b, v);
}

/* A minimal valid span (ids, name) with `extra` appended raw. */
static struct wb *raw_span(const struct wb *extra)
{
    struct wb *s = wb_new();
    wb_bytes(s, 1, TRACE_ID, 16);
    wb_bytes(s, 2, SPAN_ID, 8);
    wb_str(s, 5, "op");
    if (extra != NULL)
        wb_raw(s, extra->d, extra->n);
    return s;
}

/* Request{ResourceSpans{ScopeSpans{spans...}}} around raw spans. */
static struct wb *raw_traces(unsigned n, struct wb **spans)
{
    struct wb *ss = wb_new(), *rs = wb_new(), *req = wb_new();
    for (unsigned i = 0; i < n; i++)
        wb_msg(ss, 2, spans[i]);
    wb_msg(rs, 2, ss);
    wb_msg(req, 1, rs);
    return req;
}

/* ------------------------------------------------------------------------ */
/* Tests: wire helpers                                                      */
/* ------------------------------------------------------------------------ */

static void test_wire_varint(void **state)
{
    (void)state;
    static const uint64_t vals[] = {0, 1, 127, 128, 16383, 16384, 2097151, 2097152,
                                    UINT32_MAX, (1ull << 35), (1ull << 56) - 1, (1ull << 63),
                                    UINT64_MAX};
    for (size_t i = 0; i < ARRAY_SIZE(vals); i++) {
        uint8_t b[16];
        uint8_t *e = otlp_wire_put_varint(b, vals[i]);
        assert_int_equal((size_t)(e - b), otlp_wire_varint_size(vals[i]));
        const uint8_t *p = b;
        uint64_t v = 0;
        assert_int_equal(otlp_wire_varint(&p, e, &v), 0);
        assert_true(v == vals[i]);
        assert_ptr_equal(p, e);
        p = b;
        assert_int_equal(otlp_wire_skip_varint(&p, e), 0);
        assert_ptr_equal(p, e);
        /* every shorter input is truncated */
        for (const uint8_t *t = b; t < e; t++) {
            p = b;
            assert_int_equal(otlp_wire_varint(&p, t, &v), OTLP_WIRE_ERR_TRUNC);
            assert_ptr_equal(p, b);
        }
    }
    assert_int_equal(otlp_wire_varint_size(0), 1);
    assert_int_equal(otlp_wire_varint_size(UINT64_MAX), 10);

    /* 11 bytes, and 10 bytes overflowing 64 bits */
    uint8_t big[11];
    memset(big, 0x80, sizeof(big));
    big[10] = 0;
    const uint8_t *p = big;
    uint64_t v;
    assert_int_equal(otlp_wire_varint(&p, big + 11, &v), OTLP_WIRE_ERR_VARINT);
    assert_int_equal(otlp_wire_skip_varint(&p, big + 11), OTLP_WIRE_ERR_VARINT);
    big[9] = 0x02;
    assert_int_equal(otlp_wire_varint(&p, big + 10, &v), OTLP_WIRE_ERR_VARINT);
    assert_int_equal(otlp_wire_skip_varint(&p, big + 10), OTLP_WIRE_ERR_VARINT);
    big[9] = 0x01;
    assert_int_equal(otlp_wire_varint(&p, big + 10, &v), 0);
    assert_true(v == 1ull << 63);
}

static void test_wire_key_len(void **state)
{
    (void)state;
    uint8_t b[16];
    uint32_t fn;
    unsigned wt;
    const uint8_t *p;
    uint8_t *e = otlp_wire_put_key(b, OTLP_WIRE_MAX_FIELD, OTLP_WIRE_I32);
    assert_int_equal(e - b, 5);
    p = b;
    assert_int_equal(otlp_wire_key(&p, e, &fn, &wt), 0);
    assert_int_equal(fn, OTLP_WIRE_MAX_FIELD);
    assert_int_equal(wt, OTLP_WIRE_I32);
    /* field number 0, one byte and padded to two bytes */
    b[0] = 0x02;
    p = b;
    assert_int_equal(otlp_wire_key(&p, b + 1, &fn, &wt), OTLP_WIRE_ERR_FIELD);
    b[0] = 0x82;
    b[1] = 0x00;
    p = b;
    assert_int_equal(otlp_wire_key(&p, b + 2, &fn, &wt), OTLP_WIRE_ERR_FIELD);
    /* 6-byte key */
    memcpy(b, "\x88\x80\x80\x80\x80\x00", 6);
    p = b;
    assert_int_equal(otlp_wire_key(&p, b + 6, &fn, &wt), OTLP_WIRE_ERR_VARINT);
    /* 5th byte above 0x0f: beyond 32 bits */
    memcpy(b, "\x88\x80\x80\x80\x10", 5);
    p = b;
    assert_int_equal(otlp_wire_key(&p, b + 5, &fn, &wt), OTLP_WIRE_ERR_FIELD);

    /* length prefix bounds */
    b[0] = 3;
    p = b;
    size_t n;
    assert_int_equal(otlp_wire_len(&p, b + 4, &n), 0);
    assert_int_equal(n, 3);
    p = b;
    assert_int_equal(otlp_wire_len(&p, b + 3, &n), OTLP_WIRE_ERR_LEN);
    memcpy(b, "\x80\x80\x80\x80\x80\x01", 6);
    p = b;
    assert_int_equal(otlp_wire_len(&p, b + 6, &n), OTLP_WIRE_ERR_VARINT);
    memcpy(b, "\xff\xff\xff\xff\x0f", 5); /* 2^32-1 */
    p = b;
    assert_int_equal(otlp_wire_len(&p, b + 5, &n), OTLP_WIRE_ERR_LEN);

    /* skip */
    p = b;
    b[0] = 1;
    assert_int_equal(otlp_wire_skip(&p, b + 1, OTLP_WIRE_SGROUP), OTLP_WIRE_ERR_GROUP);
    assert_int_equal(otlp_wire_skip(&p, b + 1, OTLP_WIRE_EGROUP), OTLP_WIRE_ERR_GROUP);
    assert_int_equal(otlp_wire_skip(&p, b + 1, 6), OTLP_WIRE_ERR_WIRE);
    assert_int_equal(otlp_wire_skip(&p, b + 1, OTLP_WIRE_I64), OTLP_WIRE_ERR_TRUNC);
    assert_int_equal(otlp_wire_skip(&p, b + 3, OTLP_WIRE_I32), OTLP_WIRE_ERR_TRUNC);
    assert_int_equal(otlp_wire_skip(&p, b + 4, OTLP_WIRE_I32), 0);
    assert_ptr_equal(p, b + 4);
}

static void test_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"", true},
        {"plain ascii", true},
        {"exactly8", true},
        {"0123456789abcdef0123456789", true},
        {"caf\xc3\xa9", true},
        {"\xe2\x82\xac euro", true},
        {"\xf0\x9f\x98\x80 emoji", true},
        {"\xf4\x8f\xbf\xbf", true},            /* U+10FFFF */
        {"\xed\x9f\xbf", true},                /* U+D7FF */
        {"\xee\x80\x80", true},                /* U+E000 */
        {"long ascii prefix then \xc3\xa9", true},
        {"\x80", false},                       /* lone continuation */
        {"\xc0\xaf", false},                   /* overlong '/' */
        {"\xc1\xbf", false},                   /* overlong */
        {"\xe0\x80\xaf", false},               /* overlong 3-byte */
        {"\xf0\x80\x80\xaf", false},           /* overlong 4-byte */
        {"\xed\xa0\x80", false},               /* surrogate U+D800 */
        {"\xed\xbf\xbf", false},               /* surrogate U+DFFF */
        {"\xf4\x90\x80\x80", false},           /* above U+10FFFF */
        {"\xf5\x80\x80\x80", false},
        {"\xff", false},
        {"\xc3", false},                       /* truncated */
        {"abc\xe2\x82", false},                /* truncated at end */
        {"0123456789abcdef\xc3(", false},      /* bad continuation after ASCII run */
        {"\xc3\xa9\xc3", false},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const uint8_t *s = (const uint8_t *)cases[i].s;
        size_t n = strlen(cases[i].s);
        if (otlp_utf8_valid(s, n) != cases[i].ok)
            fail_msg("case %zu: expected %d", i, cases[i].ok);
        assert_int_equal(otlp_utf8_valid_prefix(s, n) == n, cases[i].ok);
    }
    /* embedded NUL is valid UTF-8 */
    assert_true(otlp_utf8_valid((const uint8_t *)"a\0b", 3));
    assert_int_equal(otlp_utf8_valid_prefix((const uint8_t *)"ab\xc3\xa9\xff", 5), 4);
}

/* ------------------------------------------------------------------------ */
/* Tests: valid requests                                                    */
/* ------------------------------------------------------------------------ */

static void test_traces_counts(void **state)
{
    (void)state;
    struct otlp_scan_result res;
    size_t len;
    uint8_t *req = traces_req(3, 2, 7, 1, &len);
    assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), 0);
    assert_int_equal(res.items, 3 * 2 * 7);
    assert_int_equal(res.resources, 3);
    assert_int_equal(res.rejected_items, 0);
    assert_int_equal(res.rejected_resources, 0);
    assert_int_equal(res.n_rejected, 0);
    assert_string_equal(res.error, "");

    req = traces_req(1, 1, 100, 0, &len);
    assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), 0);
    assert_int_equal(res.items, 100);

    /* empty request and empty entries */
    assert_int_equal(otlp_scan(OTLP_TRACES, NULL, 0, NULL, &res), 0);
    assert_int_equal(res.items, 0);
    req = traces_req(2, 0, 0, 0, &len);
    assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), 0);
    assert_int_equal(res.items, 0);
    assert_int_equal(res.resources, 2);
}

static void test_metrics_counts(void **state)
{
    (void)state;
    struct otlp_scan_result res;
    size_t len;
    uint64_t points;
    uint8_t *req = metrics_req(3, &len, &points);
    assert_int_equal(scan_checked(OTLP_METRICS, req, len, &res), 0);
    assert_int_equal(res.items, points);
    assert_int_equal(points, 3 * 9);
    assert_int_equal(res.resources, 3);
    assert_int_equal(res.rejected_resources, 0);
}

static void test_logs_counts(void **state)
{
    (void)state;
    struct otlp_scan_result res;
    size_t len;
    uint8_t *req = logs_req(2, 5, &len);
    assert_int_equal(scan_checked(OTLP_LOGS, req, len, &res), 0);
    assert_int_equal(res.items, 2 * 2 * 5);
    assert_int_equal(res.resources, 2);
}

/* Scanning as the wrong signal must fail or at least never crash: the
 * shapes differ from depth 2 on. */
static void test_wrong_signal(void **state)
{
    (void)state;
    struct otlp_scan_result res;
    size_t len;
    uint8_t *req = traces_req(1, 1, 3, 1, &len);
    (void)scan_checked(OTLP_METRICS, req, len, &res);
    (void)scan_checked(OTLP_LOGS, req, len, &res);
    assert_int_equal(otlp_scan((enum otlp_signal)7, req, len, NULL, &res),
                     -OTLP_SCAN_E_INVALID_ARGUMENT);
    assert_int_equal(otlp_scan(OTLP_TRACES, NULL, 5, NULL, &res), -OTLP_SCAN_E_INVALID_ARGUMENT);
    assert_int_equal(otlp_scan(OTLP_TRACES, req, len, NULL, NULL), -OTLP_SCAN_E_INVALID_ARGUMENT);
}

/* Unknown fields of every wire type are skipped; packed and unpacked
 * repeated scalars are both accepted. */
static void test_unknown_and_packed(void **state)
{
    (void)state;
    struct otlp_scan_result res;
    struct wb *extra = wb_new();
    wb_uint(extra, 100, 5);
    wb_fixed64(extra, 101, 7);
    wb_str(extra, 102, "\xff not checked: unknown bytes");
    wb_key(extra, 103, OTLP_WIRE_I32);
    wb_raw(extra, "abcd", 4);
    wb_uint(extra, OTLP_WIRE_MAX_FIELD, 1);
    struct wb *spans[2] = {raw_span(extra), raw_span(NULL)};
    struct wb *req = raw_traces(2, spans);
    wb_uint(req, 9, 1); /* unknown top-level field */
    assert_int_equal(scan_checked(OTLP_TRACES, req->d, req->n, &res), 0);
    assert_int_equal(res.items, 2);

    /* HistogramDataPoint: bucket_counts unpacked (I64 each) and packed,
     * explicit_bounds packed; Buckets.bucket_counts unpacked varints and
     * packed varints */
    struct wb *hdp = wb_new(), *buckets = wb_new(), *packed = wb_new(), *edp = wb_new();
    wb_fixed64(hdp, 6, 1);
    wb_fixed64(hdp, 6, 2);
    uint8_t eight[16] = {0};
    wb_bytes(hdp, 6, eight, 16);
    wb_bytes(hdp, 7, eight, 8);
    wb_bytes(hdp, 7, eight, 0);
    wb_uint(buckets, 2, 5);
    wb_uint(buckets, 2, 300);
    wb_varint(packed, 1);
    wb_varint(packed, 70000);
    wb_varint(packed, UINT64_MAX);
    wb_msg(buckets, 2, packed);
    wb_msg(edp, 8, buckets);
    struct wb *hist = wb_new(), *ehist = wb_new(), *m1 = wb_new(), *m2 = wb_new();
    wb_msg(hist, 1, hdp);
    wb_msg(hist, 1, hdp);
    wb_msg(ehist, 1, edp);
    wb_str(m1, 1, "h");
    wb_msg(m1, 9, hist);
    wb_str(m2, 1, "e");
    wb_msg(m2, 10, ehist);
    struct wb *sm = wb_new(), *rm = wb_new(), *mreq = wb_new();
    wb_msg(sm, 2, m1);
    wb_msg(sm, 2, m2);
    wb_msg(rm, 2, sm);
    wb_msg(mreq, 1, rm);
    assert_int_equal(scan_checked(OTLP_METRICS, mreq->d, mreq->n, &res), 0);
    assert_int_equal(res.items, 3);

    /* packed fixed64 not a multiple of 8 */
    struct wb *bad = wb_new();
    wb_bytes(bad, 6, eight, 7);
    struct wb *h2 = wb_new(), *m3 = wb_new(), *sm2 = wb_new(), *rm2 = wb_new(), *r2 = wb_new();
    wb_msg(h2, 1, bad);
    wb_msg(m3, 9, h2);
    wb_msg(sm2, 2, m3);
    wb_msg(rm2, 2, sm2);
    wb_msg(r2, 1, rm2);
    assert_int_equal(scan_checked(OTLP_METRICS, r2->d, r2->n, &res), -OTLP_SCAN_E_BAD_PACKED);

    /* packed varints with a truncated last element */
    struct wb *bb = wb_new(), *e2 = wb_new(), *eh2 = wb_new(), *m4 = wb_new(), *sm3 = wb_new(),
              *rm3 = wb_new(), *r3 = wb_new();
    wb_bytes(bb, 2, "\x01\x80", 2);
    wb_msg(e2, 9, bb);
    wb_msg(eh2, 1, e2);
    wb_msg(m4, 10, eh2);
    wb_msg(sm3, 2, m4);
    wb_msg(rm3, 2, sm3);
    wb_msg(r3, 1, rm3);
    assert_int_equal(scan_checked(OTLP_METRICS, r3->d, r3->n, &res), -OTLP_SCAN_E_BAD_PACKED);
}

/* A Metric's data is a oneof: the last data field wins (protobuf-c and the
 * collector's decoder agree), so only its points count. */
static void test_metric_oneof_last_wins(void **state)
{
    (void)state;
    struct otlp_scan_result res;
    struct wb *dp = wb_new();
    wb_fixed64(dp, 3, 1);
    wb_fixed64(dp, 4, 0);
    struct wb *g3 = wb_new(), *s2 = wb_new(), *g1 = wb_new();
    for (int i = 0; i < 3; i++)
        wb_msg(g3, 1, dp);
    for (int i = 0; i < 2; i++)
        wb_msg(s2, 1, dp);
    wb_msg(g1, 1, dp);
    struct wb *m = wb_new(), *m2 = wb_new();
    wb_msg(m, 5, g3);
    wb_str(m, 1, "n");
    wb_msg(m, 7, s2); /* sum replaces gauge: 2 */
    wb_msg(m2, 5, g3);
    wb_msg(m2, 5, g1); /* gauge again: last occurrence only: 1 */
    struct wb *sm = wb_new(), *rm = wb_new(), *req = wb_new();
    wb_msg(sm, 2, m);
    wb_msg(sm, 2, m2);
    wb_msg(rm, 2, sm);
    wb_msg(req, 1, rm);
    assert_int_equal(scan_checked(OTLP_METRICS, req->d, req->n, &res), 0);
    assert_int_equal(res.items, 3);
}

/* ------------------------------------------------------------------------ */
/* Tests: malformed input                                                   */
/* ------------------------------------------------------------------------ */

/* Offsets where a top-level field ends: the only prefixes that are valid. */
static bool top_boundary(const uint8_t *buf, size_t len, size_t at)
{
    const uint8_t *p = buf, *end = buf + len;
    if (at == 0)
        return true;
    while (p < end) {
        uint32_t fn = 0;
        unsigned wt = 0;
        assert_int_equal(otlp_wire_key(&p, end, &fn, &wt), 0);
        assert_int_equal(otlp_wire_skip(&p, end, wt), 0);
        if ((size_t)(p - buf) == at)
            return true;
    }
    return false;
}

static void check_all_prefixes(enum otlp_signal sig, const uint8_t *req, size_t len)
{
    struct otlp_scan_result res;
    for (size_t n = 0; n < len; n++) {
        /* a private copy so that ASan sees any read past the prefix */
        uint8_t *copy = malloc(n ? n : 1);
        assert_non_null(copy);
        memcpy(copy, req, n);
        int rc = scan_checked(sig, copy, n, &res);
        if (top_boundary(req, len, n)) {
            assert_int_equal(rc, 0);
        } else {
            if (rc == 0)
                fail_msg("prefix %zu of %zu accepted", n, len);
            assert_int_equal(rc, -OTLP_SCAN_E_TRUNCATED);
            assert_non_null(strstr(res.error, "at offset"));
        }
        free(copy);
    }
}

static void test_truncation(void **state)
{
    (void)state;
    size_t len;
    uint64_t points;
    uint8_t *req = traces_req(2, 1, 2, 1, &len);
    check_all_prefixes(OTLP_TRACES, req, len);
    req = metrics_req(2, &len, &points);
    check_all_prefixes(OTLP_METRICS, req, len);
    req = logs_req(2, 2, &len);
    check_all_prefixes(OTLP_LOGS, req, len);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Every single-byte corruption with a few patterns, then random multi-byte
 * ones: never a crash, and whatever is accepted protobuf-c decodes with the
 * same number of items. */
static void corrupt(enum otlp_signal sig, const uint8_t *req, size_t len)
{
    static const uint8_t pat[] = {0x00, 0xff, 0x80, 0x7f, 0x01};
    struct otlp_scan_result res;
    uint8_t *c = malloc(len);
    assert_non_null(c);
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k <= ARRAY_SIZE(pat); k++) {
            memcpy(c, req, len);
            c[i] = k < ARRAY_SIZE(pat) ? pat[k] : (uint8_t)(c[i] ^ 0x08);
            for (int s = 0; s < OTLP_SIGNAL_COUNT; s++)
                (void)scan_checked((enum otlp_signal)s, c, len, &res);
        }
    }
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(c, req, len);
        unsigned flips = 1 + (unsigned)(rng() % 4);
        for (unsigned f = 0; f < flips; f++)
            c[rng() % len] = (uint8_t)rng();
        (void)scan_checked(sig, c, len, &res);
    }
    free(c);
}

static void test_corruption(void **state)
{
    (void)state;
    size_t len;
    uint64_t points;
    uint8_t *req = traces_req(2, 1, 2, 1, &len);
    corrupt(OTLP_TRACES, req, len);
    req = metrics_req(1, &len, &points);
    corrupt(OTLP_METRICS, req, len);
    req = logs_req(1, 3, &len);
    corrupt(OTLP_LOGS, req, len);
}

static void expect_err(const struct wb *req, int err, const char *msg_part)
{
    struct otlp_scan_result res;
    int rc = scan_checked(OTLP_TRACES, req->d, req->n, &res);
    if (rc != -err)
        fail_msg("expected %s, got %d (%s)", otlp_scan_reason(err), rc, res.error);
    if (msg_part != NULL && strstr(res.error, msg_part) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", res.error, msg_part);
}

static void test_wire_errors(void **state)
{
    (void)state;
    struct wb *r;

    /* group wire type, at top level and inside a span */
    r = wb_new();
    wb_key(r, 1, OTLP_WIRE_SGROUP);
    expect_err(r, OTLP_SCAN_E_GROUP, "group");
    struct wb *x = wb_new();
    wb_key(x, 77, OTLP_WIRE_EGROUP);
    struct wb *sp[1] = {raw_span(x)};
    expect_err(raw_traces(1, sp), OTLP_SCAN_E_GROUP, "resource_spans[0].scope_spans[0].spans[0]");

    /* wire types 6 and 7 */
    r = wb_new();
    wb_key(r, 50, 6);
    expect_err(r, OTLP_SCAN_E_BAD_WIRE_TYPE, NULL);

    /* field number 0 */
    r = wb_new();
    wb_raw(r, "\x00\x00", 2);
    expect_err(r, OTLP_SCAN_E_FIELD_ZERO, NULL);
    x = wb_new();
    wb_raw(x, "\x80\x00\x01", 3); /* padded key for field 0 */
    sp[0] = raw_span(x);
    expect_err(raw_traces(1, sp), OTLP_SCAN_E_FIELD_ZERO, NULL);

    /* varint of 11 bytes in a known varint field (Span.kind) */
    x = wb_new();
    wb_key(x, 6, OTLP_WIRE_VARINT);
    wb_raw(x, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);
    sp[0] = raw_span(x);
    expect_err(raw_traces(1, sp), OTLP_SCAN_E_BAD_VARINT, "spans[0].kind");

    /* string field (Span.name) sent as varint; message field as i64 */
    x = wb_new();
    wb_uint(x, 5, 1);
    sp[0] = raw_span(x);
    expect_err(raw_traces(1, sp), OTLP_SCAN_E_BAD_WIRE_TYPE,
               "resource_spans[0].scope_spans[0].spans[0].name: wire type varint, expected len");
    x = wb_new();
    wb_fixed64(x, 9, 0);
    sp[0] = raw_span(x);
    expect_err(raw_traces(1, sp), OTLP_SCAN_E_BAD_WIRE_TYPE, "attributes[0]");
    /* fixed64 field as varint, fixed32 as fixed64, varint as len */
    x = wb_new();
    wb_uint(x, 7, 0);
    sp[0] = raw_span(x);
    expect_err(raw_traces(1, sp), OTLP_SCAN_E_BAD_WIRE_TYPE, "start_time_unix_nano");
    x = wb_new();
    wb_fixed64(x, 16, 0);
    sp[0] = raw_span(x);
    expect_err(raw_traces(1, sp), OTLP_SCAN_E_BAD_WIRE_TYPE, "flags");
    x = wb_new();
    wb_str(x, 10, "");
    sp[0] = raw_span(x);
    expect_err(raw_traces(1, sp), OTLP_SCAN_E_BAD_WIRE_TYPE, "dropped_attributes_count");

    /* nested length beyond its parent (but inside the buffer) */
    struct wb *ss = wb_new(), *rs = wb_new();
    wb_key(ss, 2, OTLP_WIRE_LEN);
    wb_varint(ss, 40); /* span claims 40 bytes, scope_spans holds 2 */
    wb_raw(ss, "\x0a\x00", 2);
    wb_msg(rs, 2, ss);
    r = wb_new();
    wb_msg(r, 1, rs);
    wb_raw(r, "0123456789012345678901234567890123456789012345", 46);
    expect_err(r, OTLP_SCAN_E_LENGTH_OVERFLOW, "scope_spans[0].spans[0]");

    /* fixed64 cut by the end of its message */
    x = wb_new();
    wb_key(x, 7, OTLP_WIRE_I64);
    wb_raw(x, "\x01\x02\x03", 3);
    sp[0] = raw_span(x);
    r = raw_traces(1, sp);
    expect_err(r, OTLP_SCAN_E_TRUNCATED, NULL); /* the span is at the end of the buffer */
    wb_uint(r, 99, 0);
    expect_err(r, OTLP_SCAN_E_LENGTH_OVERFLOW, "spans[0].start_time_unix_nano");

    /* length prefix of 6 bytes */
    r = wb_new();
    wb_key(r, 1, OTLP_WIRE_LEN);
    wb_raw(r, "\x80\x80\x80\x80\x80\x00", 6);
    expect_err(r, OTLP_SCAN_E_BAD_VARINT, NULL);

    /* too large */
    struct otlp_scan_result res;
    assert_int_equal(otlp_scan(OTLP_TRACES, r->d, (size_t)1 << 31, NULL, &res),
                     -OTLP_SCAN_E_TOO_LARGE);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    struct otlp_scan_result res;
    size_t len;
    TraceReq *t = traces_msg(1, 1, 3, 0);
    t->resource_spans[0]->scope_spans[0]->spans[1]->name = "bad \xc3\x28 name";
    uint8_t *req = pack(&t->base, &len);
    assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), -OTLP_SCAN_E_BAD_UTF8);
    assert_non_null(strstr(res.error, "resource_spans[0].scope_spans[0].spans[1].name: invalid UTF-8 at offset"));
    assert_string_equal(otlp_scan_reason(-OTLP_SCAN_E_BAD_UTF8), "bad_utf8");

    /* attribute key, nested kvlist string value, scope name, resource attribute */
    t = traces_msg(2, 1, 2, 1);
    t->resource_spans[1]->scope_spans[0]->spans[1]->attributes[2]->key = "\xed\xa0\x80";
    req = pack(&t->base, &len);
    assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), -OTLP_SCAN_E_BAD_UTF8);
    assert_non_null(strstr(res.error, "resource_spans[1].scope_spans[0].spans[1].attributes[2].key"));

    t = traces_msg(1, 1, 1, 1);
    t->resource_spans[0]->scope_spans[0]->spans[0]->attributes[6]->value->kvlist_value->values[0]
        ->value->string_value = "\xf4\x90\x80\x80";
    req = pack(&t->base, &len);
    assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), -OTLP_SCAN_E_BAD_UTF8);
    assert_non_null(strstr(res.error, "spans[0].attributes[6].value.kvlist_value.values[0].value.string_value"));

    t = traces_msg(1, 1, 1, 0);
    t->resource_spans[0]->resource->attributes[3]->value->string_value = "go\xff";
    req = pack(&t->base, &len);
    assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), -OTLP_SCAN_E_BAD_UTF8);
    assert_non_null(strstr(res.error, "resource_spans[0].resource.attributes[3].value.string_value"));

    /* bytes fields are not UTF-8 checked */
    static const uint8_t junk[4] = {0xff, 0xfe, 0xc0, 0x80};
    t = traces_msg(1, 1, 1, 0);
    t->resource_spans[0]->scope_spans[0]->spans[0]->attributes[0]->value = av_bytes(junk, 4);
    req = pack(&t->base, &len);
    assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), 0);

    /* logs: body and severity_text; metrics: metric name */
    LogsReq *l = logs_msg(1, 2);
    l->resource_logs[0]->scope_logs[0]->log_records[1]->body = av_str("\xe0\x80\x80");
    req = pack(&l->base, &len);
    assert_int_equal(scan_checked(OTLP_LOGS, req, len, &res), -OTLP_SCAN_E_BAD_UTF8);
    assert_non_null(strstr(res.error, "log_records[1].body.string_value"));
    uint64_t points;
    MetricsReq *m = metrics_msg(1, &points);
    m->resource_metrics[0]->scope_metrics[0]->metrics[3]->unit = "\xc0";
    req = pack(&m->base, &len);
    assert_int_equal(scan_checked(OTLP_METRICS, req, len, &res), -OTLP_SCAN_E_BAD_UTF8);
    assert_non_null(strstr(res.error, "resource_metrics[0].scope_metrics[0].metrics[3].unit"));
}

/* Span attribute whose value is `levels` nested single-element arrays. */
static uint8_t *nested_attr_req(unsigned levels, size_t *len)
{
    AnyValue *v = av_str("leaf");
    for (unsigned i = 0; i < levels; i++)
        v = av_array(1, ptrs(1, v));
    TraceReq *t = traces_msg(1, 1, 1, 0);
    t->resource_spans[0]->scope_spans[0]->spans[0]->attributes[0]->value = v;
    return pack(&t->base, len);
}

static void test_depth(void **state)
{
    (void)state;
    struct otlp_scan_result res;
    size_t len;
    /* Request > ResourceSpans(1) > ScopeSpans(2) > Span(3) > KeyValue(4) >
     * AnyValue(5), and each array level adds 2: 5 + 2 * 13 = 31 */
    uint8_t *req = nested_attr_req(13, &len);
    assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), 0);
    req = nested_attr_req(14, &len);
    assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), -OTLP_SCAN_E_TOO_DEEP);
    assert_non_null(strstr(res.error, "array_value.values[0]"));

    struct otlp_limits lim = {.max_depth = 33};
    assert_int_equal(otlp_scan(OTLP_TRACES, req, len, &lim, &res), 0);
    lim.max_depth = 4; /* too shallow for attributes' AnyValue */
    req = nested_attr_req(0, &len);
    assert_int_equal(otlp_scan(OTLP_TRACES, req, len, &lim, &res), -OTLP_SCAN_E_TOO_DEEP);
    assert_string_equal(otlp_scan_reason(-OTLP_SCAN_E_TOO_DEEP), "too_deep");

    /* limits above the ceiling are clamped: 5 + 2 * 47 = 99 fits 100 */
    lim.max_depth = 100000;
    req = nested_attr_req(47, &len);
    assert_int_equal(otlp_scan(OTLP_TRACES, req, len, &lim, &res), 0);
    req = nested_attr_req(48, &len);
    assert_int_equal(otlp_scan(OTLP_TRACES, req, len, &lim, &res), -OTLP_SCAN_E_TOO_DEEP);

    /* 100000 levels built raw, inside out: no recursion anywhere */
    const unsigned levels = 100000;
    size_t cap = (size_t)levels * 12 + 64;
    uint8_t *b = malloc(cap);
    assert_non_null(b);
    size_t pos = cap, inner = 0;
    for (unsigned i = 0; i < 2 * levels; i++) {
        /* alternately ArrayValue.values(1) and AnyValue.array_value(5) */
        uint8_t tmp[12], *t2 = otlp_wire_put_len_hdr(tmp, i % 2 ? 5 : 1, inner);
        pos -= (size_t)(t2 - tmp);
        memcpy(b + pos, tmp, (size_t)(t2 - tmp));
        inner = cap - pos;
    }
    /* wrap: KeyValue{value(2)} > Span attributes(9) > ScopeSpans spans(2) >
     * ResourceSpans scope_spans(2) > request resource_spans(1) */
    static const uint32_t wrap[] = {2, 9, 2, 2, 1};
    for (size_t i = 0; i < ARRAY_SIZE(wrap); i++) {
        uint8_t tmp[12], *t2 = otlp_wire_put_len_hdr(tmp, wrap[i], inner);
        pos -= (size_t)(t2 - tmp);
        memcpy(b + pos, tmp, (size_t)(t2 - tmp));
        inner = cap - pos;
    }
    lim.max_depth = 0;
    assert_int_equal(otlp_scan(OTLP_TRACES, b + pos, inner, &lim, &res), -OTLP_SCAN_E_TOO_DEEP);
    assert_int_equal(otlp_scan(OTLP_TRACES, b + pos, inner, NULL, &res), -OTLP_SCAN_E_TOO_DEEP);
    free(b);
}

/* ------------------------------------------------------------------------ */
/* Tests: semantic rejection (partial success)                              */
/* ------------------------------------------------------------------------ */

static void test_reject_bad_trace_id(void **state)
{
    (void)state;
    struct otlp_scan_result res;
    size_t len;
    static const uint8_t short_id[3] = {1, 2, 3};
    TraceReq *t = traces_msg(3, 2, 4, 1);
    t->resource_spans[1]->scope_spans[1]->spans[2]->trace_id = bin(short_id, 3);
    uint8_t *req = pack(&t->base, &len);
    assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), 0);
    assert_int_equal(res.items, 2 * 2 * 4);
    assert_int_equal(res.rejected_items, 2 * 4);
    assert_int_equal(res.resources, 2);
    assert_int_equal(res.rejected_resources, 1);
    assert_int_equal(res.n_rejected, 1);
    assert_int_equal(res.rejected_all, 0);
    assert_string_equal(res.error,
                        "resource_spans[1].scope_spans[1].spans[2].trace_id: must be 16 bytes, got 3");
    /* the recorded range is exactly the second top-level entry */
    const uint8_t *p = req, *end = req + len;
    uint32_t fn;
    unsigned wt;
    size_t n = 0;
    assert_int_equal(otlp_wire_key(&p, end, &fn, &wt), 0);
    assert_int_equal(otlp_wire_len(&p, end, &n), 0);
    p += n;
    assert_int_equal(res.rejected[0].off, (uint32_t)(p - req));
    assert_int_equal(otlp_wire_key(&p, end, &fn, &wt), 0);
    assert_int_equal(otlp_wire_len(&p, end, &n), 0);
    assert_int_equal(res.rejected[0].off + res.rejected[0].len, (uint32_t)(p + n - req));
}

static void test_reject_id_rules(void **state)
{
    (void)state;
    struct otlp_scan_result res;
    size_t len;
    static const uint8_t zero16[16] = {0}, zero8[8] = {0}, four[4] = {1, 2, 3, 4};
    static const struct {
        int what;
        const char *msg;
    } cases[] = {
        {0, "spans[0]: trace_id missing"},
        {1, "spans[0]: span_id missing"},
        {2, "spans[0].trace_id: all-zero id is invalid"},
        {3, "spans[0].span_id: all-zero id is invalid"},
        {4, "spans[0].parent_span_id: must be empty or 8 bytes, got 4"},
        {5, "spans[0].links[0].trace_id: must be 16 bytes, got 4"},
        {6, "spans[0].links[0]: span_id missing"},
        {7, "spans[0].span_id: must be 8 bytes, got 16"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        TraceReq *t = traces_msg(2, 1, 2, 1);
        Span *s = t->resource_spans[0]->scope_spans[0]->spans[0];
        switch (cases[i].what) {
        case 0: s->trace_id = bin(NULL, 0); break;
        case 1: s->span_id = bin(NULL, 0); break;
        case 2: s->trace_id = bin(zero16, 16); break;
        case 3: s->span_id = bin(zero8, 8); break;
        case 4: s->parent_span_id = bin(four, 4); break;
        case 5: s->links[0]->trace_id = bin(four, 4); break;
        case 6: s->links[0]->span_id = bin(NULL, 0); break;
        case 7: s->span_id = bin(TRACE_ID, 16); break;
        }
        uint8_t *req = pack(&t->base, &len);
        assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), 0);
        assert_int_equal(res.items, 2);
        assert_int_equal(res.rejected_items, 2);
        assert_int_equal(res.rejected_resources, 1);
        if (strstr(res.error, cases[i].msg) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, res.error, cases[i].msg);
    }

    /* empty parent_span_id and all-zero link ids are fine */
    TraceReq *t = traces_msg(1, 1, 1, 1);
    t->resource_spans[0]->scope_spans[0]->spans[0]->parent_span_id = bin(NULL, 0);
    uint8_t *req = pack(&t->base, &len);
    assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), 0);
    assert_int_equal(res.rejected_resources, 0);

    /* logs: ids optional, else 16 / 8 */
    LogsReq *l = logs_msg(3, 3);
    l->resource_logs[2]->scope_logs[0]->log_records[1]->span_id = bin(four, 4);
    req = pack(&l->base, &len);
    assert_int_equal(scan_checked(OTLP_LOGS, req, len, &res), 0);
    assert_int_equal(res.items, 2 * 2 * 3);
    assert_int_equal(res.rejected_items, 2 * 3);
    assert_non_null(strstr(res.error, "resource_logs[2].scope_logs[0].log_records[1].span_id: must be empty or 8 bytes, got 4"));

    /* metrics: exemplar ids */
    uint64_t points;
    MetricsReq *m = metrics_msg(2, &points);
    m->resource_metrics[0]->scope_metrics[0]->metrics[2]->histogram->data_points[0]->exemplars[0]
        ->trace_id = bin(zero8, 8);
    req = pack(&m->base, &len);
    assert_int_equal(scan_checked(OTLP_METRICS, req, len, &res), 0);
    assert_int_equal(res.items, 9);
    assert_int_equal(res.rejected_items, 9);
    assert_non_null(strstr(res.error, "metrics[2].histogram.data_points[0].exemplars[0].trace_id"));
}

/* More rejected entries than res can list: everything is rejected. */
static void test_reject_overflow(void **state)
{
    (void)state;
    struct otlp_scan_result res;
    size_t len;
    const unsigned R = OTLP_SCAN_MAX_REJECTED + 6;
    TraceReq *t = traces_msg(R, 1, 1, 0);
    for (unsigned r = 0; r < R - 3; r++)
        t->resource_spans[r]->scope_spans[0]->spans[0]->span_id = bin(NULL, 0);
    uint8_t *req = pack(&t->base, &len);
    assert_int_equal(scan_checked(OTLP_TRACES, req, len, &res), 0);
    assert_int_equal(res.rejected_all, 1);
    assert_int_equal(res.items, 0);
    assert_int_equal(res.resources, 0);
    assert_int_equal(res.rejected_items, R);
    assert_int_equal(res.rejected_resources, R);
    assert_int_equal(res.n_rejected, OTLP_SCAN_MAX_REJECTED);
}

static void test_reasons(void **state)
{
    (void)state;
    assert_string_equal(otlp_scan_reason(0), "ok");
    assert_string_equal(otlp_scan_reason(-OTLP_SCAN_E_TRUNCATED), "truncated");
    assert_string_equal(otlp_scan_reason(OTLP_SCAN_E_GROUP), "group");
    assert_string_equal(otlp_scan_reason(-1000), "unknown");
    assert_string_equal(otlp_scan_message(-OTLP_SCAN_E_BAD_WIRE_TYPE), "wrong wire type for field");
    assert_string_equal(otlp_scan_message(12345), "unknown error");
    for (int e = 1; e < OTLP_SCAN_E_COUNT; e++) {
        assert_non_null(otlp_scan_reason(-e));
        assert_true(strlen(otlp_scan_message(-e)) > 0);
    }
}

/* With OTLP_SCAN_CORPUS_DIR set, write seed inputs for fuzz_otlp_scan. */
static void test_write_fuzz_corpus(void **state)
{
    (void)state;
    const char *dir = getenv("OTLP_SCAN_CORPUS_DIR");
    if (dir == NULL)
        skip();
    struct {
        const char *name;
        uint8_t *data;
        size_t len;
    } seeds[8];
    uint64_t points;
    size_t n = 0;
    seeds[n].name = "traces_rich";
    seeds[n].data = traces_req(2, 1, 2, 1, &seeds[n].len);
    n++;
    seeds[n].name = "traces_plain";
    seeds[n].data = traces_req(1, 2, 3, 0, &seeds[n].len);
    n++;
    seeds[n].name = "metrics_all_types";
    seeds[n].data = metrics_req(1, &seeds[n].len, &points);
    n++;
    seeds[n].name = "logs";
    seeds[n].data = logs_req(2, 2, &seeds[n].len);
    n++;
    TraceReq *t = traces_msg(3, 1, 1, 0);
    t->resource_spans[1]->scope_spans[0]->spans[0]->trace_id = bin(SPAN_ID, 8);
    seeds[n].name = "traces_partial_reject";
    seeds[n].data = pack(&t->base, &seeds[n].len);
    n++;
    seeds[n].name = "traces_nested_attr";
    seeds[n].data = nested_attr_req(6, &seeds[n].len);
    n++;
    for (size_t i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s.bin", dir, seeds[i].name);
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(seeds[i].data, 1, seeds[i].len, f), seeds[i].len);
        fclose(f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_wire_varint, arena_teardown),
        cmocka_unit_test_teardown(test_wire_key_len, arena_teardown),
        cmocka_unit_test_teardown(test_utf8, arena_teardown),
        cmocka_unit_test_teardown(test_traces_counts, arena_teardown),
        cmocka_unit_test_teardown(test_metrics_counts, arena_teardown),
        cmocka_unit_test_teardown(test_logs_counts, arena_teardown),
        cmocka_unit_test_teardown(test_wrong_signal, arena_teardown),
        cmocka_unit_test_teardown(test_unknown_and_packed, arena_teardown),
        cmocka_unit_test_teardown(test_metric_oneof_last_wins, arena_teardown),
        cmocka_unit_test_teardown(test_truncation, arena_teardown),
        cmocka_unit_test_teardown(test_corruption, arena_teardown),
        cmocka_unit_test_teardown(test_wire_errors, arena_teardown),
        cmocka_unit_test_teardown(test_invalid_utf8, arena_teardown),
        cmocka_unit_test_teardown(test_depth, arena_teardown),
        cmocka_unit_test_teardown(test_reject_bad_trace_id, arena_teardown),
        cmocka_unit_test_teardown(test_reject_id_rules, arena_teardown),
        cmocka_unit_test_teardown(test_reject_overflow, arena_teardown),
        cmocka_unit_test_teardown(test_reasons, arena_teardown),
        cmocka_unit_test_teardown(test_write_fuzz_corpus, arena_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(arena);
    return rc;
}
