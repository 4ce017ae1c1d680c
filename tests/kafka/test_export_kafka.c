/* SPDX-License-Identifier: Apache-2.0 */
/* Tests of lib/export/export_kafka.c against librdkafka's mock cluster
 * (in-process, 3 brokers on loopback), read back with a librdkafka consumer:
 * splitting by trace id and by size, keys and partitions as the Collector's
 * Kafka exporter makes them, the resource-attribute hash, JSON encoding, and
 * the mapping of delivery errors to export results. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <xxhash.h>

#include "base/base.h"
#include "config/config.h"
#include "export/exporter.h"
#include "obs/metrics.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "otlp/otlp.h"

/* lib/export/export_kafka.c, for tests */
int export_kafka_resource_hash(const uint8_t *pb, size_t len, uint8_t out[16]);

#define PARTITIONS 6

typedef Opentelemetry__Proto__Common__V1__KeyValue KV;
typedef Opentelemetry__Proto__Common__V1__AnyValue AV;
typedef Opentelemetry__Proto__Resource__V1__Resource RES;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope SCOPE;
typedef Opentelemetry__Proto__Trace__V1__Span SPAN;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans SS;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans RS;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest TREQ;

struct env {
    rd_kafka_t *anchor;
    rd_kafka_mock_cluster_t *mc;
    const char *bootstrap;
    struct svc_config cfg;
    struct exporter ex;
    struct obs_registry *reg;
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "2", errstr, sizeof(errstr));
    e->anchor = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(e->anchor);
    e->mc = rd_kafka_mock_cluster_new(e->anchor, 3);
    assert_non_null(e->mc);
    e->bootstrap = rd_kafka_mock_cluster_bootstraps(e->mc);
    const char *topics[] = {"otlp_spans", "otlp_metrics", "otlp_logs"};
    for (size_t i = 0; i < ARRAY_SIZE(topics); i++)
        assert_int_equal(rd_kafka_mock_topic_create(e->mc, topics[i], PARTITIONS, 3), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    exporter_destroy(&e->ex);
    obs_registry_destroy(e->reg);
    config_free(&e->cfg);
    rd_kafka_mock_cluster_destroy(e->mc);
    rd_kafka_destroy(e->anchor);
    free(e);
    return 0;
}

/* Create the exporter with exporter.kafka settings `extra` (YAML lines
 * indented by four spaces) and exporter.timeout_ms `timeout_ms`. */
static void start(struct env *e, const char *extra, unsigned timeout_ms)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "service:\n  log_level: warn\n"
             "batch:\n  max_concurrent_exports: 2\n"
             "exporter:\n  protocol: kafka\n  timeout_ms: %u\n  kafka:\n"
             "    brokers: \"%s\"\n    statistics_interval_ms: 100\n%s",
             timeout_ms, e->bootstrap, extra ? extra : "");
    struct buf errs = {0};
    int rc = config_load_buffer("t.yaml", yaml, strlen(yaml), &e->cfg, &errs);
    if (rc != 0)
        fprintf(stderr, "%.*s\n", (int)errs.len, (const char *)errs.data);
    buf_free(&errs);
    assert_int_equal(rc, 0);
    assert_int_equal(exporter_create(&e->cfg, &e->ex), 0);
    assert_int_equal(obs_registry_create(1, 1024, &e->reg), 0);
    assert_non_null(e->ex.ops->register_metrics);
    assert_int_equal(e->ex.ops->register_metrics(e->ex.state, e->reg), 0);
}

struct done_rec {
    int n;
    struct export_result r;
    struct batch *b;
};

static void on_done(void *arg, struct batch *b, const struct export_result *r)
{
    struct done_rec *d = arg;
    d->n++;
    d->r = *r;
    d->b = b;
}

/* Submit one batch and poll until its result; returns it. */
static struct export_result export_one(struct env *e, struct batch *b)
{
    struct done_rec d = {0};
    assert_int_equal(e->ex.ops->submit(e->ex.state, b), 0);
    uint64_t deadline = base_now_ms() + 30000;
    while (d.n == 0 && base_now_ms() < deadline)
        assert_true(e->ex.ops->poll(e->ex.state, 50, on_done, &d) >= 0);
    assert_int_equal(d.n, 1);
    assert_ptr_equal(d.b, b);
    return d.r;
}

/* ---- building requests ---- */

static KV *kv_str(const char *k, const char *v)
{
    KV *kv = calloc(1, sizeof(*kv));
    AV *av = calloc(1, sizeof(*av));
    opentelemetry__proto__common__v1__key_value__init(kv);
    opentelemetry__proto__common__v1__any_value__init(av);
    kv->key = strdup(k);
    av->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    av->string_value = strdup(v);
    kv->value = av;
    return kv;
}

static KV *kv_int(const char *k, int64_t v)
{
    KV *kv = kv_str(k, "");
    free(kv->value->string_value);
    kv->value->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    kv->value->int_value = v;
    return kv;
}

static void trace_id_of(unsigned t, uint8_t id[16])
{
    for (unsigned i = 0; i < 16; i++)
        id[i] = (uint8_t)(0x10 * (i % 16) + t + 1);
}

/*
 * An ExportTraceServiceRequest: n_res resources ("svc-<r>") x 2 scopes
 * ("scope-<s>"), n_spans spans in total dealt round-robin over the
 * (resource, scope) pairs; span i belongs to trace i % n_traces, its span id
 * holds i, its name is padded to `name_len` bytes.
 */
static void make_traces(struct buf *out, unsigned n_res, unsigned n_spans, unsigned n_traces,
                        size_t name_len)
{
    TREQ req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    req.n_resource_spans = n_res;
    req.resource_spans = calloc(n_res, sizeof(RS *));
    unsigned n_pairs = n_res * 2;
    for (unsigned r = 0; r < n_res; r++) {
        RS *rs = calloc(1, sizeof(*rs));
        opentelemetry__proto__trace__v1__resource_spans__init(rs);
        rs->resource = calloc(1, sizeof(RES));
        opentelemetry__proto__resource__v1__resource__init(rs->resource);
        char name[32];
        snprintf(name, sizeof(name), "svc-%u", r);
        rs->resource->n_attributes = 2;
        rs->resource->attributes = calloc(2, sizeof(KV *));
        rs->resource->attributes[0] = kv_str("service.name", name);
        rs->resource->attributes[1] = kv_int("n", r);
        rs->schema_url = strdup("https://opentelemetry.io/schemas/1.21.0");
        rs->n_scope_spans = 2;
        rs->scope_spans = calloc(2, sizeof(SS *));
        for (unsigned s = 0; s < 2; s++) {
            SS *ss = calloc(1, sizeof(*ss));
            opentelemetry__proto__trace__v1__scope_spans__init(ss);
            ss->scope = calloc(1, sizeof(SCOPE));
            opentelemetry__proto__common__v1__instrumentation_scope__init(ss->scope);
            snprintf(name, sizeof(name), "scope-%u", s);
            ss->scope->name = strdup(name);
            unsigned pair = r * 2 + s;
            unsigned cnt = n_spans / n_pairs + (pair < n_spans % n_pairs ? 1 : 0);
            ss->n_spans = 0;
            ss->spans = calloc(cnt + 1, sizeof(SPAN *));
            rs->scope_spans[s] = ss;
        }
        req.resource_spans[r] = rs;
    }
    for (unsigned i = 0; i < n_spans; i++) {
        unsigned pair = i % n_pairs;
        SS *ss = req.resource_spans[pair / 2]->scope_spans[pair % 2];
        SPAN *sp = calloc(1, sizeof(*sp));
        opentelemetry__proto__trace__v1__span__init(sp);
        sp->trace_id.len = 16;
        sp->trace_id.data = malloc(16);
        trace_id_of(i % n_traces, sp->trace_id.data);
        sp->span_id.len = 8;
        sp->span_id.data = calloc(1, 8);
        memcpy(sp->span_id.data, &i, sizeof(i));
        sp->name = malloc(name_len + 1);
        memset(sp->name, 'x', name_len);
        sp->name[name_len] = '\0';
        sp->start_time_unix_nano = 1000 + i;
        sp->end_time_unix_nano = 2000 + i;
        ss->spans[ss->n_spans++] = sp;
    }
    size_t n =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
            &req);
    assert_int_equal(buf_init(out, n, 0), 0);
    out->len = opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(
        &req, out->data);
    /* free what we allocated: pack it, unpack it, free that (same shape) */
    for (unsigned r = 0; r < n_res; r++) {
        RS *rs = req.resource_spans[r];
        for (unsigned a = 0; a < rs->resource->n_attributes; a++) {
            KV *kv = rs->resource->attributes[a];
            if (kv->value->value_case ==
                OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE)
                free(kv->value->string_value);
            free(kv->value);
            free(kv->key);
            free(kv);
        }
        free(rs->resource->attributes);
        free(rs->resource);
        free(rs->schema_url);
        for (unsigned s = 0; s < rs->n_scope_spans; s++) {
            SS *ss = rs->scope_spans[s];
            for (unsigned k = 0; k < ss->n_spans; k++) {
                free(ss->spans[k]->trace_id.data);
                free(ss->spans[k]->span_id.data);
                free(ss->spans[k]->name);
                free(ss->spans[k]);
            }
            free(ss->spans);
            free(ss->scope->name);
            free(ss->scope);
            free(ss);
        }
        free(rs->scope_spans);
        free(rs);
    }
    free(req.resource_spans);
}

/* ---- reading back ---- */

struct got {
    int32_t partition;
    uint8_t *key; /* NULL: no key */
    size_t key_len;
    uint8_t *value;
    size_t len;
};

/* Every message of `topic`, read from the beginning until `want` arrived,
 * or nothing more came for a second, or 10 s passed. */
static unsigned consume(struct env *e, const char *topic, struct got *out, unsigned want)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", e->bootstrap, errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", "test", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(c);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(PARTITIONS);
    for (int p = 0; p < PARTITIONS; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(c, parts), 0);
    rd_kafka_topic_partition_list_destroy(parts);
    unsigned n = 0;
    uint64_t deadline = base_now_ms() + 10000, last = base_now_ms();
    while (n < want && base_now_ms() < deadline && (n == 0 || base_now_ms() - last < 1000)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (m == NULL)
            continue;
        last = base_now_ms();
        if (m->err == 0) {
            struct got *g = &out[n++];
            g->partition = m->partition;
            g->key = m->key ? malloc(m->key_len + 1) : NULL;
            if (g->key)
                memcpy(g->key, m->key, m->key_len);
            g->key_len = m->key_len;
            g->value = malloc(m->len + 1);
            memcpy(g->value, m->payload, m->len);
            g->len = m->len;
        }
        rd_kafka_message_destroy(m);
    }
    /* nothing more than expected */
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 500);
    if (m != NULL) {
        assert_int_not_equal(m->err, 0);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return n;
}

static void got_free(struct got *g, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        free(g[i].key);
        free(g[i].value);
    }
}

/* Sarama's hash partitioner (the Collector's default): FNV-1a 32 as int32,
 * modulo, absolute value. */
static int32_t sarama_partition(const uint8_t *key, size_t n, int32_t partitions)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= key[i];
        h *= 16777619u;
    }
    int32_t p = (int32_t)h % partitions;
    return p < 0 ? -p : p;
}

/* ---- tests ---- */

/* A batch with 5 traces over 3 resources x 2 scopes becomes 5 messages,
 * each holding exactly one trace's spans under their own Resource and
 * Scope, keyed by the trace id in hex, on the partition Sarama's
 * partitioner picks. */
static void test_split_by_trace_id(void **state)
{
    struct env *e = *state;
    start(e, NULL, 5000);
    struct batch b = {.signal = OTLP_TRACES, .items = 60};
    make_traces(&b.body, 3, 60, 5, 8);
    struct export_result r = export_one(e, &b);
    assert_int_equal(r.status, EXPORT_OK);
    assert_int_equal(r.rejected_items, 0);

    struct got g[16] = {0};
    unsigned n = consume(e, "otlp_spans", g, 5);
    assert_int_equal(n, 5);
    unsigned spans = 0, seen_traces = 0;
    for (unsigned i = 0; i < n; i++) {
        assert_non_null(g[i].key);
        assert_int_equal(g[i].key_len, 32);
        assert_int_equal(g[i].partition, sarama_partition(g[i].key, 32, PARTITIONS));
        TREQ *q = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
            NULL, g[i].len, g[i].value);
        assert_non_null(q);
        for (size_t r2 = 0; r2 < q->n_resource_spans; r2++) {
            RS *rs = q->resource_spans[r2];
            assert_non_null(rs->resource);
            assert_string_equal(rs->schema_url, "https://opentelemetry.io/schemas/1.21.0");
            const char *svc = rs->resource->attributes[0]->value->string_value;
            for (size_t s = 0; s < rs->n_scope_spans; s++) {
                SS *ss = rs->scope_spans[s];
                assert_true(ss->n_spans > 0);
                for (size_t k = 0; k < ss->n_spans; k++) {
                    SPAN *sp = ss->spans[k];
                    unsigned idx;
                    memcpy(&idx, sp->span_id.data, sizeof(idx));
                    /* the key is this span's trace id */
                    uint8_t id[16];
                    trace_id_of(idx % 5, id);
                    char hex[33];
                    for (int j = 0; j < 16; j++)
                        snprintf(hex + 2 * j, 3, "%02x", id[j]);
                    assert_memory_equal(g[i].key, hex, 32);
                    /* under its own resource and scope */
                    char want[32];
                    unsigned pair = idx % 6;
                    snprintf(want, sizeof(want), "svc-%u", pair / 2);
                    assert_string_equal(svc, want);
                    snprintf(want, sizeof(want), "scope-%u", pair % 2);
                    assert_string_equal(ss->scope->name, want);
                    spans++;
                }
            }
        }
        seen_traces++;
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
            q, NULL);
    }
    assert_int_equal(spans, 60);
    assert_int_equal(seen_traces, 5);
    got_free(g, n);
    buf_free(&b.body);
}

/* Without partitioning a batch that fits is one message, the batch bytes
 * as they are, without a key. */
static void test_unkeyed_batch_is_one_message(void **state)
{
    struct env *e = *state;
    start(e, "    partition_traces_by_id: false\n", 5000);
    struct batch b = {.signal = OTLP_TRACES, .items = 40};
    make_traces(&b.body, 2, 40, 7, 8);
    struct export_result r = export_one(e, &b);
    assert_int_equal(r.status, EXPORT_OK);
    struct got g[4] = {0};
    assert_int_equal(consume(e, "otlp_spans", g, 1), 1);
    assert_null(g[0].key);
    assert_int_equal(g[0].len, b.body.len);
    assert_memory_equal(g[0].value, b.body.data, b.body.len);
    got_free(g, 1);
    buf_free(&b.body);
}

/* One trace bigger than max_message_bytes is split into several messages
 * under the limit, all with the trace's key (so on one partition). */
static void test_split_by_size(void **state)
{
    struct env *e = *state;
    start(e, "    max_message_bytes: 4096\n", 5000);
    struct batch b = {.signal = OTLP_TRACES, .items = 100};
    make_traces(&b.body, 1, 100, 1, 200);
    struct export_result r = export_one(e, &b);
    assert_int_equal(r.status, EXPORT_OK);
    struct got g[64] = {0};
    unsigned n = consume(e, "otlp_spans", g, 64);
    assert_true(n >= 6);
    unsigned spans = 0;
    for (unsigned i = 0; i < n; i++) {
        assert_true(g[i].len <= 4096);
        assert_int_equal(g[i].key_len, 32);
        assert_memory_equal(g[i].key, g[0].key, 32);
        assert_int_equal(g[i].partition, g[0].partition);
        TREQ *q = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
            NULL, g[i].len, g[i].value);
        assert_non_null(q);
        for (size_t a = 0; a < q->n_resource_spans; a++)
            for (size_t s = 0; s < q->resource_spans[a]->n_scope_spans; s++)
                spans += (unsigned)q->resource_spans[a]->scope_spans[s]->n_spans;
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
            q, NULL);
    }
    assert_int_equal(spans, 100);
    got_free(g, n);
    buf_free(&b.body);
}

/* otlp_json: each message is the OTLP JSON of an ExportTraceServiceRequest
 * (hex ids), split by trace as with protobuf. */
static void test_json_encoding(void **state)
{
    struct env *e = *state;
    start(e, "    encoding: otlp_json\n", 5000);
    struct batch b = {.signal = OTLP_TRACES, .items = 12};
    make_traces(&b.body, 1, 12, 3, 8);
    assert_int_equal(export_one(e, &b).status, EXPORT_OK);
    struct got g[8] = {0};
    unsigned n = consume(e, "otlp_spans", g, 3);
    assert_int_equal(n, 3);
    unsigned spans = 0;
    for (unsigned i = 0; i < n; i++) {
        json_error_t err;
        json_t *j = json_loadb((const char *)g[i].value, g[i].len, 0, &err);
        assert_non_null(j);
        json_t *rss = json_object_get(j, "resourceSpans");
        assert_true(json_is_array(rss));
        size_t ri;
        json_t *rs;
        json_array_foreach(rss, ri, rs)
        {
            size_t si;
            json_t *ss;
            json_array_foreach(json_object_get(rs, "scopeSpans"), si, ss)
            {
                size_t k;
                json_t *sp;
                json_array_foreach(json_object_get(ss, "spans"), k, sp)
                {
                    const char *tid = json_string_value(json_object_get(sp, "traceId"));
                    assert_non_null(tid);
                    assert_memory_equal(tid, g[i].key, 32);
                    spans++;
                }
            }
        }
        json_decref(j);
    }
    assert_int_equal(spans, 12);
    got_free(g, n);
    buf_free(&b.body);
}

/* The Collector's pdatautil.MapHash, from its definition: sorted keys,
 * 0xf4 key, 0xfa int64 LE / 0xf7 string, then XXH64 twice. */
static void test_resource_hash(void **state)
{
    (void)state;
    RES r = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
    KV *kvs[2] = {kv_str("b", "x"), kv_int("a", 1)};
    r.n_attributes = 2;
    r.attributes = kvs;
    uint8_t pb[256];
    size_t n = opentelemetry__proto__resource__v1__resource__pack(&r, pb);
    uint8_t got[16];
    assert_int_equal(export_kafka_resource_hash(pb, n, got), 0);
    const uint8_t ser[] = {0xf4, 'a', 0xfa, 1, 0, 0, 0, 0, 0, 0, 0, 0xf4, 'b', 0xf7, 'x', 0xf3};
    uint64_t h1 = XXH64(ser, sizeof(ser) - 1, 0), h2 = XXH64(ser, sizeof(ser), 0);
    uint8_t want[16];
    for (int i = 0; i < 8; i++) {
        want[i] = (uint8_t)(h1 >> (8 * i));
        want[8 + i] = (uint8_t)(h2 >> (8 * i));
    }
    assert_memory_equal(got, want, 16);
    /* order of the attributes does not matter */
    KV *swapped[2] = {kvs[1], kvs[0]};
    r.attributes = swapped;
    n = opentelemetry__proto__resource__v1__resource__pack(&r, pb);
    uint8_t got2[16];
    assert_int_equal(export_kafka_resource_hash(pb, n, got2), 0);
    assert_memory_equal(got2, want, 16);
    /* no attributes: 16 zero bytes */
    static const uint8_t zero[16];
    assert_int_equal(export_kafka_resource_hash(NULL, 0, got), 0);
    assert_memory_equal(got, zero, 16);
    for (int i = 0; i < 2; i++) {
        free(kvs[i]->key);
        if (kvs[i]->value->value_case ==
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE)
            free(kvs[i]->value->string_value);
        free(kvs[i]->value);
        free(kvs[i]);
    }
}

/* A broker error the producer does not retry (authorization) fails the
 * batch for good, with the error's name as the reason. */
static void test_permanent_error(void **state)
{
    struct env *e = *state;
    start(e, "    partition_traces_by_id: false\n", 5000);
    rd_kafka_resp_err_t errs[16];
    for (int i = 0; i < 16; i++)
        errs[i] = RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
    rd_kafka_mock_push_request_errors_array(e->mc, 0 /* Produce */, 16, errs);
    struct batch b = {.signal = OTLP_TRACES, .items = 10};
    make_traces(&b.body, 1, 10, 2, 8);
    struct export_result r = export_one(e, &b);
    assert_int_equal(r.status, EXPORT_PERMANENT);
    assert_string_equal(r.reason, "kafka_topic_authorization_failed");
    rd_kafka_mock_clear_request_errors(e->mc, 0);
    buf_free(&b.body);
}

/* All brokers down past exporter.timeout_ms: retryable (message timed out);
 * once they are back the same batch is delivered. */
static void test_brokers_down_then_retry(void **state)
{
    struct env *e = *state;
    start(e, NULL, 1000);
    for (int id = 1; id <= 3; id++)
        assert_int_equal(rd_kafka_mock_broker_set_down(e->mc, id), 0);
    struct batch b = {.signal = OTLP_TRACES, .items = 10};
    make_traces(&b.body, 1, 10, 2, 8);
    struct export_result r = export_one(e, &b);
    assert_int_equal(r.status, EXPORT_RETRYABLE);
    assert_string_equal(r.reason, "kafka_msg_timed_out");
    for (int id = 1; id <= 3; id++)
        assert_int_equal(rd_kafka_mock_broker_set_up(e->mc, id), 0);
    /* retried as the runner would, while librdkafka reconnects (backoff) */
    uint64_t deadline = base_now_ms() + 20000;
    do {
        r = export_one(e, &b);
    } while (r.status == EXPORT_RETRYABLE && base_now_ms() < deadline);
    assert_int_equal(r.status, EXPORT_OK);
    /* The two traces arrived; a retry that followed a timed-out attempt the
     * broker had stored in fact writes them again (at least once). */
    struct got g[16] = {0};
    unsigned n = consume(e, "otlp_spans", g, 16);
    assert_true(n >= 2);
    unsigned distinct = 0;
    for (unsigned i = 0; i < n; i++) {
        bool seen = false;
        for (unsigned j = 0; j < i; j++)
            seen |= memcmp(g[i].key, g[j].key, 32) == 0;
        distinct += !seen;
    }
    assert_int_equal(distinct, 2);
    got_free(g, n);
    /* the per-broker series exist once statistics came in */
    struct buf page = {0};
    for (int i = 0; i < 20; i++) {
        e->ex.ops->poll(e->ex.state, 50, on_done, NULL);
        buf_reset(&page);
        assert_int_equal(obs_render_prometheus(e->reg, &page), 0);
        assert_int_equal(buf_append(&page, "", 1), 0);
        if (strstr((char *)page.data, "otlp_kafka_broker_up{") != NULL)
            break;
    }
    assert_non_null(strstr((char *)page.data, "otlp_kafka_broker_rtt_avg_seconds{broker="));
    assert_non_null(strstr((char *)page.data, "otlp_kafka_messages_delivered_total "));
    buf_free(&page);
    buf_free(&b.body);
}

/* A span too large for any message is rejected alone; the other traces of
 * the batch are delivered: OK with rejected items. */
static void test_oversized_item_is_rejected_alone(void **state)
{
    struct env *e = *state;
    start(e, "    max_message_bytes: 2048\n", 5000);
    struct batch b = {.signal = OTLP_TRACES};
    /* 3 traces; span names of 3000 bytes would not fit, so: 2 small traces
     * and one of a single huge span */
    struct buf small = {0}, big = {0};
    make_traces(&small, 1, 4, 2, 8);
    make_traces(&big, 1, 1, 1, 3000);
    /* the big request's trace id equals trace 0 of the small one: change it */
    uint8_t id0[16];
    trace_id_of(0, id0);
    uint8_t *p = memmem(big.data, big.len, id0, 16);
    assert_non_null(p);
    p[0] ^= 0xff;
    assert_int_equal(buf_init(&b.body, small.len + big.len, 0), 0);
    buf_append(&b.body, small.data, small.len);
    buf_append(&b.body, big.data, big.len);
    b.items = 5;
    struct export_result r = export_one(e, &b);
    assert_int_equal(r.status, EXPORT_OK);
    assert_int_equal(r.rejected_items, 1);
    assert_string_equal(r.reason, "partial_success");
    assert_non_null(strstr(r.message, "kafka_msg_size_too_large"));
    struct got g[8] = {0};
    assert_int_equal(consume(e, "otlp_spans", g, 2), 2);
    got_free(g, 2);
    buf_free(&small);
    buf_free(&big);
    buf_free(&b.body);
}

/* Metrics keyed by resource: the same attributes in another order give the
 * same key (one message), another resource its own. */
static void test_metrics_by_resource(void **state)
{
    struct env *e = *state;
    start(e, "    partition_metrics_by_resource_attributes: true\n", 5000);
    typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest MREQ;
    typedef Opentelemetry__Proto__Metrics__V1__ResourceMetrics RM;
    typedef Opentelemetry__Proto__Metrics__V1__ScopeMetrics SM;
    typedef Opentelemetry__Proto__Metrics__V1__Metric MET;
    typedef Opentelemetry__Proto__Metrics__V1__Gauge GAUGE;
    typedef Opentelemetry__Proto__Metrics__V1__NumberDataPoint DP;
    MREQ req = OPENTELEMETRY__PROTO__COLLECTOR__METRICS__V1__EXPORT_METRICS_SERVICE_REQUEST__INIT;
    RM rm[3];
    RES res[3];
    KV *attrs[3][2] = {{kv_str("service.name", "a"), kv_int("k", 1)},
                       {kv_int("k", 1), kv_str("service.name", "a")},
                       {kv_str("service.name", "b"), kv_int("k", 1)}};
    SM sm;
    MET met;
    GAUGE gauge;
    DP dp[2];
    DP *dps[2] = {&dp[0], &dp[1]};
    opentelemetry__proto__metrics__v1__scope_metrics__init(&sm);
    opentelemetry__proto__metrics__v1__metric__init(&met);
    opentelemetry__proto__metrics__v1__gauge__init(&gauge);
    for (int i = 0; i < 2; i++) {
        opentelemetry__proto__metrics__v1__number_data_point__init(&dp[i]);
        dp[i].value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT;
        dp[i].as_int = i;
    }
    gauge.n_data_points = 2;
    gauge.data_points = dps;
    met.name = "m";
    met.data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE;
    met.gauge = &gauge;
    MET *mets[1] = {&met};
    sm.n_metrics = 1;
    sm.metrics = mets;
    SM *sms[1] = {&sm};
    RM *rms[3];
    for (int i = 0; i < 3; i++) {
        opentelemetry__proto__metrics__v1__resource_metrics__init(&rm[i]);
        opentelemetry__proto__resource__v1__resource__init(&res[i]);
        res[i].n_attributes = 2;
        res[i].attributes = attrs[i];
        rm[i].resource = &res[i];
        rm[i].n_scope_metrics = 1;
        rm[i].scope_metrics = sms;
        rms[i] = &rm[i];
    }
    req.n_resource_metrics = 3;
    req.resource_metrics = rms;
    struct batch b = {.signal = OTLP_METRICS, .items = 6};
    size_t n =
        opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__get_packed_size(
            &req);
    assert_int_equal(buf_init(&b.body, n, 0), 0);
    b.body.len = opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__pack(
        &req, b.body.data);
    assert_int_equal(export_one(e, &b).status, EXPORT_OK);
    struct got g[8] = {0};
    unsigned got_n = consume(e, "otlp_metrics", g, 2);
    assert_int_equal(got_n, 2);
    uint8_t ka[16], kb[16];
    uint8_t pb[256];
    n = opentelemetry__proto__resource__v1__resource__pack(&res[0], pb);
    assert_int_equal(export_kafka_resource_hash(pb, n, ka), 0);
    n = opentelemetry__proto__resource__v1__resource__pack(&res[2], pb);
    assert_int_equal(export_kafka_resource_hash(pb, n, kb), 0);
    for (unsigned i = 0; i < got_n; i++) {
        assert_int_equal(g[i].key_len, 16);
        MREQ *q =
            opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__unpack(
                NULL, g[i].len, g[i].value);
        assert_non_null(q);
        if (memcmp(g[i].key, ka, 16) == 0) {
            assert_int_equal(q->n_resource_metrics, 2);
        } else {
            assert_memory_equal(g[i].key, kb, 16);
            assert_int_equal(q->n_resource_metrics, 1);
        }
        opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__free_unpacked(
            q, NULL);
    }
    got_free(g, got_n);
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 2; j++) {
            KV *kv = attrs[i][j];
            if (kv->value->value_case ==
                OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE)
                free(kv->value->string_value);
            free(kv->value);
            free(kv->key);
            free(kv);
        }
    }
    buf_free(&b.body);
}

/* Every compression codec librdkafka was built with round-trips (the
 * consumer decompresses). */
static void test_compression_codecs(void **state)
{
    struct env *e = *state;
    static const char *const codecs[] = {"gzip", "snappy", "lz4", "zstd"};
    struct batch b = {.signal = OTLP_TRACES, .items = 20};
    make_traces(&b.body, 1, 20, 4, 64);
    for (size_t i = 0; i < ARRAY_SIZE(codecs); i++) {
        char extra[96];
        snprintf(extra, sizeof(extra), "    partition_traces_by_id: false\n    compression: %s\n",
                 codecs[i]);
        start(e, extra, 5000);
        assert_int_equal(export_one(e, &b).status, EXPORT_OK);
        exporter_destroy(&e->ex);
        obs_registry_destroy(e->reg);
        e->reg = NULL;
        config_free(&e->cfg);
    }
    struct got g[8] = {0};
    assert_int_equal(consume(e, "otlp_spans", g, 4), 4);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(g[i].len, b.body.len);
        assert_memory_equal(g[i].value, b.body.data, b.body.len);
    }
    got_free(g, 4);
    buf_free(&b.body);
}

/* An error that breaks the idempotent producer's sequence (a fatal error
 * in librdkafka: "kafka producer fatal error, re-creating the producer" in
 * the log) fails the batch as retryable; the exporter then re-creates its
 * producer and the retry is delivered. */
static void test_fatal_producer_is_recreated(void **state)
{
    struct env *e = *state;
    start(e, "    partition_traces_by_id: false\n", 5000);
    struct batch b = {.signal = OTLP_TRACES, .items = 10};
    make_traces(&b.body, 1, 10, 2, 8);
    assert_int_equal(export_one(e, &b).status, EXPORT_OK);
    rd_kafka_resp_err_t errs[4];
    for (int i = 0; i < 4; i++)
        errs[i] = RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
    rd_kafka_mock_push_request_errors_array(e->mc, 0 /* Produce */, 4, errs);
    struct export_result r = export_one(e, &b);
    assert_int_equal(r.status, EXPORT_RETRYABLE);
    assert_string_equal(r.reason, "kafka_out_of_order_sequence_number");
    rd_kafka_mock_clear_request_errors(e->mc, 0);
    /* retried until delivered, as the runner would */
    uint64_t deadline = base_now_ms() + 20000;
    while (r.status != EXPORT_OK && base_now_ms() < deadline)
        r = export_one(e, &b);
    assert_int_equal(r.status, EXPORT_OK);
    buf_free(&b.body);
}

/* A body that is not a request fails for good as encode_error. */
static void test_malformed_batch(void **state)
{
    struct env *e = *state;
    start(e, NULL, 5000);
    struct batch b = {.signal = OTLP_TRACES, .items = 1};
    assert_int_equal(buf_init(&b.body, 16, 0), 0);
    buf_append(&b.body, "\x0a\x7f\x01", 3); /* length past the end */
    struct export_result r = export_one(e, &b);
    assert_int_equal(r.status, EXPORT_PERMANENT);
    assert_string_equal(r.reason, "encode_error");
    buf_free(&b.body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resource_hash),
        cmocka_unit_test_setup_teardown(test_split_by_trace_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unkeyed_batch_is_one_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_by_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_encoding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_by_resource, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permanent_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_brokers_down_then_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_item_is_rejected_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compression_codecs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fatal_producer_is_recreated, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
