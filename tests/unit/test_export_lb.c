/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for the load-balancing exporter's routing (lib/export/export_lb_ring.c)
 * and the batch split it relies on (lib/otlp/otlp_split.c): the ring's balance
 * and how few keys move when an endpoint joins or leaves, routing of spans by
 * trace id and of metrics and logs by service.name, and the parts written
 * back, checked by decoding them with protobuf-c. */
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
#include "export/export_lb.h"
#include "otlp/otlp_split.h"

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope Scope;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans ResourceSpans;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans ScopeSpans;
typedef Opentelemetry__Proto__Trace__V1__Span Span;
typedef Opentelemetry__Proto__Logs__V1__ResourceLogs ResourceLogs;
typedef Opentelemetry__Proto__Logs__V1__ScopeLogs ScopeLogs;
typedef Opentelemetry__Proto__Logs__V1__LogRecord LogRecord;
typedef Opentelemetry__Proto__Metrics__V1__ResourceMetrics ResourceMetrics;
typedef Opentelemetry__Proto__Metrics__V1__ScopeMetrics ScopeMetrics;
typedef Opentelemetry__Proto__Metrics__V1__Metric Metric;
typedef Opentelemetry__Proto__Metrics__V1__Gauge Gauge;
typedef Opentelemetry__Proto__Metrics__V1__NumberDataPoint NumberDP;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest TraceReq;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest LogsReq;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest MetricsReq;

/* ---- helpers ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Everything a test allocates, freed at its end. */
static void *garbage[65536];
static size_t n_garbage;

static void *A(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    assert_non_null(p);
    assert_true(n_garbage < ARRAY_SIZE(garbage));
    garbage[n_garbage++] = p;
    return p;
}

static int free_all(void **state)
{
    (void)state;
    for (size_t i = 0; i < n_garbage; i++)
        free(garbage[i]);
    n_garbage = 0;
    return 0;
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

static KeyValue *kv_int(const char *k, int64_t v)
{
    AnyValue *a = A(sizeof(*a));
    opentelemetry__proto__common__v1__any_value__init(a);
    a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    a->int_value = v;
    KeyValue *x = A(sizeof(*x));
    opentelemetry__proto__common__v1__key_value__init(x);
    x->key = (char *)k;
    x->value = a;
    return x;
}

/* A Resource with service.name `svc` (none when NULL) and host.name. */
static Resource *resource(const char *svc)
{
    Resource *r = A(sizeof(*r));
    opentelemetry__proto__resource__v1__resource__init(r);
    r->attributes = A(2 * sizeof(void *));
    r->attributes[r->n_attributes++] = kv_str("host.name", "node-1");
    if (svc != NULL)
        r->attributes[r->n_attributes++] = kv_str("service.name", svc);
    return r;
}

static Scope *scope(const char *name)
{
    Scope *s = A(sizeof(*s));
    opentelemetry__proto__common__v1__instrumentation_scope__init(s);
    s->name = (char *)name;
    s->version = "1.0";
    return s;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = A(*len);
    assert_int_equal(protobuf_c_message_pack(m, b), *len);
    return b;
}

static const char *const URLS4[] = {"http://10.0.0.1:4318", "http://10.0.0.2:4318",
                                    "http://10.0.0.3:4318", "http://10.0.0.4:4318"};

/* ---- the ring ---- */

/* The endpoint URL of key `h` on a ring of urls. */
static const char *owner(const struct export_lb_ring *ring, const char *const *urls, uint64_t h)
{
    uint32_t e = export_lb_ring_lookup(ring, h);
    assert_true(e < ring->n_endpoints);
    return urls[e];
}

#define N_KEYS 100000

/* 3 endpoints share the keys evenly; a 4th takes about a quarter, every one
 * of them from the others and nothing moves between the old three; removing
 * one moves exactly its keys. */
static void test_ring_moves_about_one_nth(void **state)
{
    (void)state;
    struct export_lb_ring r3 = {0}, r4 = {0}, r3b = {0}, rev = {0};
    assert_int_equal(export_lb_ring_build(&r3, URLS4, 3), 0);
    assert_int_equal(export_lb_ring_build(&r4, URLS4, 4), 0);
    /* the 4 without the second one */
    const char *const minus[] = {URLS4[0], URLS4[2], URLS4[3]};
    assert_int_equal(export_lb_ring_build(&r3b, minus, 3), 0);
    /* the order of the list does not matter */
    const char *const reversed[] = {URLS4[2], URLS4[1], URLS4[0]};
    assert_int_equal(export_lb_ring_build(&rev, reversed, 3), 0);
    assert_int_equal(r4.n_points, 4 * EXPORT_LB_VNODES);

    unsigned per3[3] = {0}, moved_add = 0, moved_rm = 0, moved_wrong = 0;
    for (unsigned k = 0; k < N_KEYS; k++) {
        uint8_t id[16];
        uint64_t a = rnd(), b = rnd();
        memcpy(id, &a, 8);
        memcpy(id + 8, &b, 8);
        uint64_t h = export_lb_hash(id, 16);
        const char *o3 = owner(&r3, URLS4, h), *o4 = owner(&r4, URLS4, h);
        const char *o3b = owner(&r3b, minus, h);
        assert_string_equal(owner(&rev, reversed, h), o3);
        per3[export_lb_ring_lookup(&r3, h)]++;
        if (strcmp(o3, o4) != 0) {
            moved_add++;
            if (strcmp(o4, URLS4[3]) != 0)
                moved_wrong++; /* moved between two old endpoints */
        }
        if (strcmp(o4, o3b) != 0) {
            moved_rm++;
            if (strcmp(o4, URLS4[1]) != 0)
                moved_wrong++; /* moved though its endpoint stayed */
        }
    }
    for (unsigned e = 0; e < 3; e++) {
        double share = (double)per3[e] / N_KEYS;
        if (share < 0.27 || share > 0.40)
            fail_msg("endpoint %u owns %.3f of the keys", e, share);
    }
    double add = (double)moved_add / N_KEYS, rm = (double)moved_rm / N_KEYS;
    print_message("moved: add %.3f, remove %.3f (ideal 0.25)\n", add, rm);
    assert_int_equal(moved_wrong, 0);
    if (add < 0.18 || add > 0.32 || rm < 0.18 || rm > 0.32)
        fail_msg("keys moved: %.3f on add, %.3f on remove; expected about 1/4", add, rm);
    export_lb_ring_free(&r3);
    export_lb_ring_free(&r4);
    export_lb_ring_free(&r3b);
    export_lb_ring_free(&rev);
}

static void test_ring_edges(void **state)
{
    (void)state;
    struct export_lb_ring r = {0};
    assert_int_equal(export_lb_ring_lookup(&r, 42), UINT32_MAX);
    assert_int_equal(export_lb_ring_build(&r, NULL, 0), 0);
    assert_int_equal(export_lb_ring_lookup(&r, 42), UINT32_MAX);
    assert_int_equal(export_lb_ring_build(NULL, URLS4, 1), -EINVAL);
    assert_int_equal(export_lb_ring_build(&r, URLS4, EXPORT_LB_MAX_ENDPOINTS + 1), -EINVAL);
    assert_int_equal(export_lb_ring_build(&r, URLS4, 1), 0);
    assert_int_equal(export_lb_ring_lookup(&r, 0), 0);
    assert_int_equal(export_lb_ring_lookup(&r, UINT64_MAX), 0); /* wraps */
    export_lb_ring_free(&r);
    export_lb_ring_free(&r);
    export_lb_ring_free(NULL);
    /* stable across versions: a fleet of gateways must agree */
    assert_true(export_lb_hash("", 0) != 0xcbf29ce484222325ull); /* finalised */
    assert_true(export_lb_hash("a", 1) != export_lb_hash("b", 1));
}

/* ---- traces: split by trace id ---- */

#define N_TRACES 40

/* Two resources, two scopes each, spans of N_TRACES traces spread over all
 * of them; span i has trace i % N_TRACES and attribute seq = i. */
static TraceReq *trace_batch(unsigned n_spans, uint8_t ids[N_TRACES][16])
{
    for (unsigned t = 0; t < N_TRACES; t++) {
        uint64_t a = rnd(), b = rnd();
        memcpy(ids[t], &a, 8);
        memcpy(ids[t] + 8, &b, 8);
    }
    TraceReq *req = A(sizeof(*req));
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(req);
    req->n_resource_spans = 2;
    req->resource_spans = A(2 * sizeof(void *));
    unsigned seq = 0;
    for (unsigned r = 0; r < 2; r++) {
        ResourceSpans *rs = A(sizeof(*rs));
        opentelemetry__proto__trace__v1__resource_spans__init(rs);
        rs->resource = resource(r == 0 ? "checkout" : "cart");
        rs->schema_url = "https://opentelemetry.io/schemas/1.21.0";
        rs->n_scope_spans = 2;
        rs->scope_spans = A(2 * sizeof(void *));
        for (unsigned s = 0; s < 2; s++) {
            ScopeSpans *ss = A(sizeof(*ss));
            opentelemetry__proto__trace__v1__scope_spans__init(ss);
            ss->scope = scope(s == 0 ? "http" : "db");
            ss->n_spans = n_spans / 4;
            ss->spans = A(ss->n_spans * sizeof(void *));
            for (unsigned i = 0; i < ss->n_spans; i++, seq++) {
                Span *sp = A(sizeof(*sp));
                opentelemetry__proto__trace__v1__span__init(sp);
                sp->trace_id.len = 16;
                sp->trace_id.data = ids[seq % N_TRACES];
                sp->span_id.len = 8;
                sp->span_id.data = A(8);
                memcpy(sp->span_id.data, &seq, sizeof(seq));
                sp->name = "op";
                sp->n_attributes = 1;
                sp->attributes = A(sizeof(void *));
                sp->attributes[0] = kv_int("seq", seq);
                ss->spans[i] = sp;
            }
            rs->scope_spans[s] = ss;
        }
        req->resource_spans[r] = rs;
    }
    return req;
}

static const char *res_service(const Resource *r)
{
    for (size_t i = 0; r != NULL && i < r->n_attributes; i++) {
        if (strcmp(r->attributes[i]->key, "service.name") == 0)
            return r->attributes[i]->value->string_value;
    }
    return "";
}

/* Each part holds exactly the spans routed to its endpoint, each under the
 * resource and scope it had, every span once, and no part (nor the parts of
 * any subset) is larger than the batch. */
static void test_traces_split_by_trace_id(void **state)
{
    (void)state;
    uint8_t ids[N_TRACES][16];
    const unsigned n_spans = 400;
    TraceReq *req = trace_batch(n_spans, ids);
    size_t len;
    uint8_t *body = pack(&req->base, &len);

    struct export_lb_ring ring = {0};
    assert_int_equal(export_lb_ring_build(&ring, URLS4, 3), 0);
    struct otlp_split *s;
    assert_int_equal(otlp_split_create(&s), 0);
    assert_int_equal(otlp_split_parse(s, OTLP_TRACES, body, len), 0);
    assert_int_equal(otlp_split_n_units(s), n_spans);
    assert_int_equal(otlp_split_n_resources(s), 2);
    uint32_t *ep = A(n_spans * sizeof(*ep));
    assert_int_equal(export_lb_route(&ring, s, OTLP_TRACES, LB_ROUTING_TRACE_ID, ep), 0);
    assert_int_equal(otlp_split_group_ids(s, ep, 3), 0);
    assert_int_equal(otlp_split_n_groups(s), 3);

    unsigned seen[400] = {0}, total = 0;
    int trace_ep[N_TRACES];
    memset(trace_ep, 0xff, sizeof(trace_ep));
    struct buf out;
    assert_int_equal(buf_init(&out, 0, 0), 0);
    for (uint32_t g = 0; g < 3; g++) {
        size_t first, end;
        otlp_split_group_at(s, g, &first, &end, NULL);
        buf_reset(&out);
        assert_int_equal(otlp_split_write(s, first, end, &out), 0);
        assert_true(out.len <= len);
        assert_int_equal(otlp_split_items(s, first, end), end - first);
        TraceReq *part =
            opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
                NULL, out.len, out.data);
        assert_non_null(part);
        unsigned in_part = 0;
        /* regrouped: at most one entry per original resource and scope */
        assert_true(part->n_resource_spans <= 2);
        for (size_t r = 0; r < part->n_resource_spans; r++) {
            ResourceSpans *rs = part->resource_spans[r];
            assert_string_equal(rs->schema_url, "https://opentelemetry.io/schemas/1.21.0");
            assert_true(rs->n_scope_spans <= 2);
            for (size_t k = 0; k < rs->n_scope_spans; k++) {
                ScopeSpans *ss = rs->scope_spans[k];
                for (size_t i = 0; i < ss->n_spans; i++) {
                    Span *sp = ss->spans[i];
                    unsigned seq = (unsigned)sp->attributes[0]->value->int_value;
                    assert_true(seq < n_spans);
                    seen[seq]++;
                    in_part++;
                    /* same trace id, resource and scope as in the batch */
                    assert_memory_equal(sp->trace_id.data, ids[seq % N_TRACES], 16);
                    assert_string_equal(res_service(rs->resource),
                                        seq < n_spans / 2 ? "checkout" : "cart");
                    assert_string_equal(ss->scope->name,
                                        (seq % (n_spans / 2)) < n_spans / 4 ? "http" : "db");
                    /* the whole trace on this endpoint */
                    int t = (int)(seq % N_TRACES);
                    if (trace_ep[t] < 0)
                        trace_ep[t] = (int)g;
                    assert_int_equal(trace_ep[t], (int)g);
                    assert_int_equal(export_lb_ring_lookup(&ring, export_lb_hash(ids[t], 16)), g);
                }
            }
        }
        assert_int_equal(in_part, end - first);
        total += in_part;
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
            part, NULL);
    }
    assert_int_equal(total, n_spans);
    for (unsigned i = 0; i < n_spans; i++)
        assert_int_equal(seen[i], 1);

    /* the rest after parts 0 and 2 were delivered: exactly part 1 */
    uint32_t *failed = A(n_spans * sizeof(*failed));
    for (unsigned i = 0; i < n_spans; i++)
        failed[i] = ep[i] == 1;
    assert_int_equal(otlp_split_group_ids(s, failed, 2), 0);
    size_t first, end;
    otlp_split_group_at(s, 1, &first, &end, NULL);
    buf_reset(&out);
    assert_int_equal(otlp_split_write(s, first, end, &out), 0);
    assert_true(out.len < len);
    TraceReq *rest =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
            NULL, out.len, out.data);
    assert_non_null(rest);
    size_t n_rest = 0;
    for (size_t r = 0; r < rest->n_resource_spans; r++)
        for (size_t k = 0; k < rest->resource_spans[r]->n_scope_spans; k++)
            n_rest += rest->resource_spans[r]->scope_spans[k]->n_spans;
    assert_int_equal(n_rest, end - first);
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(rest,
                                                                                            NULL);
    /* ids out of range are refused */
    failed[0] = 2;
    assert_int_equal(otlp_split_group_ids(s, failed, 2), -EINVAL);
    buf_free(&out);
    otlp_split_destroy(s);
    export_lb_ring_free(&ring);
}

/* Split by trace id within the split module itself (Kafka's keys). */
static void test_split_group_by_trace(void **state)
{
    (void)state;
    uint8_t ids[N_TRACES][16];
    TraceReq *req = trace_batch(80, ids);
    size_t len;
    uint8_t *body = pack(&req->base, &len);
    struct otlp_split *s;
    assert_int_equal(otlp_split_create(&s), 0);
    assert_int_equal(otlp_split_parse(s, OTLP_TRACES, body, len), 0);
    assert_int_equal(otlp_split_group(s, OTLP_SPLIT_TRACE_ID, NULL), 0);
    assert_int_equal(otlp_split_n_groups(s), N_TRACES);
    for (uint32_t g = 0; g < N_TRACES; g++) {
        size_t first, end;
        const uint8_t *key;
        otlp_split_group_at(s, g, &first, &end, &key);
        assert_int_equal(end - first, 2); /* 80 spans over 40 traces */
        assert_memory_equal(key, ids[g], 16);
        for (size_t i = first; i < end; i++)
            assert_true(otlp_split_fit(s, i, i + 1, 1) == i + 1); /* one unit always fits */
    }
    assert_int_equal(otlp_split_group(s, OTLP_SPLIT_ALL, NULL), 0);
    assert_int_equal(otlp_split_n_groups(s), 1);
    size_t first, end;
    otlp_split_group_at(s, 0, &first, &end, NULL);
    assert_int_equal(end - first, 80);
    /* a limit splits the run; each piece fits */
    size_t e = otlp_split_fit(s, 0, 80, 600);
    assert_true(e > 1 && e < 80);
    /* malformed bodies are refused */
    assert_int_equal(otlp_split_parse(s, OTLP_TRACES, body, len - 1), -EINVAL);
    static const uint8_t junk[] = {0x0a, 0x05, 0x12, 0x10};
    assert_int_equal(otlp_split_parse(s, OTLP_TRACES, junk, sizeof(junk)), -EINVAL);
    assert_int_equal(otlp_split_parse(s, OTLP_TRACES, NULL, 0), 0);
    assert_int_equal(otlp_split_n_units(s), 0);
    otlp_split_destroy(s);
    otlp_split_destroy(NULL);
}

/* ---- metrics and logs: by service.name ---- */

static const char *const SERVICES[] = {"checkout", "cart", "payment", "shipping", NULL, "cart"};
#define N_RES ARRAY_SIZE(SERVICES)

static void check_by_service(const struct export_lb_ring *ring, const struct otlp_split *s,
                             const uint32_t *ep, unsigned per_resource)
{
    size_t nu = otlp_split_n_units(s);
    assert_int_equal(nu, N_RES * per_resource);
    for (size_t i = 0; i < nu; i++) {
        const struct otlp_split_unit *u = otlp_split_unit_at(s, i);
        const char *svc = SERVICES[u->resource];
        size_t n = svc != NULL ? strlen(svc) : 0;
        assert_int_equal(ep[i], export_lb_ring_lookup(ring, export_lb_hash(svc ? svc : "", n)));
    }
    /* the two "cart" resources go to the same endpoint */
    assert_int_equal(ep[1 * per_resource], ep[5 * per_resource]);
}

static void test_logs_and_metrics_by_service(void **state)
{
    (void)state;
    struct export_lb_ring ring = {0};
    assert_int_equal(export_lb_ring_build(&ring, URLS4, 4), 0);
    struct otlp_split *s;
    assert_int_equal(otlp_split_create(&s), 0);

    LogsReq *lr = A(sizeof(*lr));
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__init(lr);
    lr->n_resource_logs = N_RES;
    lr->resource_logs = A(N_RES * sizeof(void *));
    for (unsigned r = 0; r < N_RES; r++) {
        LogRecord *l = A(sizeof(*l));
        opentelemetry__proto__logs__v1__log_record__init(l);
        l->severity_text = "INFO";
        ScopeLogs *sl = A(sizeof(*sl));
        opentelemetry__proto__logs__v1__scope_logs__init(sl);
        sl->n_log_records = 3;
        sl->log_records = A(3 * sizeof(void *));
        sl->log_records[0] = sl->log_records[1] = sl->log_records[2] = l;
        ResourceLogs *rl = A(sizeof(*rl));
        opentelemetry__proto__logs__v1__resource_logs__init(rl);
        rl->resource = resource(SERVICES[r]);
        rl->n_scope_logs = 1;
        rl->scope_logs = A(sizeof(void *));
        rl->scope_logs[0] = sl;
        lr->resource_logs[r] = rl;
    }
    size_t len;
    uint8_t *body = pack(&lr->base, &len);
    assert_int_equal(otlp_split_parse(s, OTLP_LOGS, body, len), 0);
    uint32_t ep[64];
    assert_int_equal(export_lb_route(&ring, s, OTLP_LOGS, LB_ROUTING_TRACE_ID, ep), 0);
    check_by_service(&ring, s, ep, 3);

    MetricsReq *mr = A(sizeof(*mr));
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__init(mr);
    mr->n_resource_metrics = N_RES;
    mr->resource_metrics = A(N_RES * sizeof(void *));
    for (unsigned r = 0; r < N_RES; r++) {
        NumberDP *dp = A(sizeof(*dp));
        opentelemetry__proto__metrics__v1__number_data_point__init(dp);
        dp->value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT;
        dp->as_int = r;
        Gauge *g = A(sizeof(*g));
        opentelemetry__proto__metrics__v1__gauge__init(g);
        g->n_data_points = 2;
        g->data_points = A(2 * sizeof(void *));
        g->data_points[0] = g->data_points[1] = dp;
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
        rm->resource = resource(SERVICES[r]);
        rm->n_scope_metrics = 1;
        rm->scope_metrics = A(sizeof(void *));
        rm->scope_metrics[0] = sm;
        mr->resource_metrics[r] = rm;
    }
    body = pack(&mr->base, &len);
    assert_int_equal(otlp_split_parse(s, OTLP_METRICS, body, len), 0);
    assert_int_equal(export_lb_route(&ring, s, OTLP_METRICS, LB_ROUTING_TRACE_ID, ep), 0);
    check_by_service(&ring, s, ep, 1);
    assert_int_equal(otlp_split_unit_at(s, 0)->items, 2); /* data points, not metrics */

    /* traces with routing_key service: by service.name too */
    uint8_t ids[N_TRACES][16];
    TraceReq *tr = trace_batch(40, ids);
    body = pack(&tr->base, &len);
    assert_int_equal(otlp_split_parse(s, OTLP_TRACES, body, len), 0);
    assert_int_equal(export_lb_route(&ring, s, OTLP_TRACES, LB_ROUTING_SERVICE, ep), 0);
    for (size_t i = 0; i < 40; i++) {
        const char *svc = i < 20 ? "checkout" : "cart";
        assert_int_equal(ep[i], export_lb_ring_lookup(&ring, export_lb_hash(svc, strlen(svc))));
    }
    /* an empty ring cannot route */
    struct export_lb_ring empty = {0};
    assert_int_equal(export_lb_route(&empty, s, OTLP_TRACES, LB_ROUTING_SERVICE, ep), -EINVAL);
    otlp_split_destroy(s);
    export_lb_ring_free(&ring);
}

static void test_resource_string_attr(void **state)
{
    (void)state;
    Resource *r = A(sizeof(*r));
    opentelemetry__proto__resource__v1__resource__init(r);
    r->n_attributes = 3;
    r->attributes = A(3 * sizeof(void *));
    r->attributes[0] = kv_int("pid", 42);
    r->attributes[1] = kv_str("host.name", "node-1");
    r->attributes[2] = kv_str("service.name", "checkout");
    size_t len;
    uint8_t *pb = pack(&r->base, &len);
    const uint8_t *v;
    size_t vlen;
    assert_int_equal(otlp_resource_string_attr(pb, len, "service.name", &v, &vlen), 0);
    assert_int_equal(vlen, 8);
    assert_memory_equal(v, "checkout", 8);
    assert_int_equal(otlp_resource_string_attr(pb, len, "host.name", &v, &vlen), 0);
    assert_int_equal(otlp_resource_string_attr(pb, len, "pid", &v, &vlen), -ENOENT);
    assert_int_equal(otlp_resource_string_attr(pb, len, "service", &v, &vlen), -ENOENT);
    assert_int_equal(otlp_resource_string_attr(NULL, 0, "service.name", &v, &vlen), -ENOENT);
    assert_int_equal(otlp_resource_string_attr(pb, len - 1, "service.name", &v, &vlen), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ring_moves_about_one_nth, free_all),
        cmocka_unit_test_teardown(test_ring_edges, free_all),
        cmocka_unit_test_teardown(test_traces_split_by_trace_id, free_all),
        cmocka_unit_test_teardown(test_split_group_by_trace, free_all),
        cmocka_unit_test_teardown(test_logs_and_metrics_by_service, free_all),
        cmocka_unit_test_teardown(test_resource_string_attr, free_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
