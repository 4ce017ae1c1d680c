/* SPDX-License-Identifier: Apache-2.0 */
/* Tests lib/otlp/otlp_json.c: OTLP JSON as the OpenTelemetry JS SDK sends it ->
 * protobuf (checked field by field after protobuf-c unpack) -> JSON (checked
 * against canonical JSON with jansson), error paths, wire-level semantics and
 * round trips. OTLP_JSON_BENCH=1 also prints ingest throughput. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "otlp/otlp_json.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest TraceReq;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest MetricsReq;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest LogsReq;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
#define TRACE_REQ_DESC                                                                             \
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor
#define METRICS_REQ_DESC                                                                           \
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__descriptor
#define LOGS_REQ_DESC                                                                              \
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__descriptor
#define BUF_STR(b) ((b)->data != NULL ? (const char *)(b)->data : "")
#define AV(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_##x

/* ------------------------------------------------------------------------ */
/* Samples shaped like @opentelemetry/exporter-*-otlp-http output: zeros and
 * empty arrays spelled out, timestamps as strings, intValue as numbers. */

static const char trace_json[] =
    "{\"resourceSpans\":[{\"resource\":{\"attributes\":["
    "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"checkout-web\"}},"
    "{\"key\":\"telemetry.sdk.language\",\"value\":{\"stringValue\":\"webjs\"}},"
    "{\"key\":\"telemetry.sdk.name\",\"value\":{\"stringValue\":\"opentelemetry\"}},"
    "{\"key\":\"telemetry.sdk.version\",\"value\":{\"stringValue\":\"1.25.1\"}}],"
    "\"droppedAttributesCount\":0},"
    "\"scopeSpans\":[{\"scope\":{\"name\":\"@opentelemetry/instrumentation-fetch\","
    "\"version\":\"0.52.1\"},\"spans\":[{"
    "\"traceId\":\"5B8EFFF798038103D269B633813FC60C\",\"spanId\":\"EEE19B7EC3C1B174\","
    "\"parentSpanId\":\"eee19b7ec3c1b173\",\"traceState\":\"\",\"name\":\"HTTP GET\",\"kind\":2,"
    "\"startTimeUnixNano\":\"1700000000000000000\",\"endTimeUnixNano\":\"1700000000123456789\","
    "\"attributes\":["
    "{\"key\":\"http.method\",\"value\":{\"stringValue\":\"GET\"}},"
    "{\"key\":\"http.status_code\",\"value\":{\"intValue\":200}},"
    "{\"key\":\"http.response_content_length\",\"value\":{\"intValue\":\"-9223372036854775808\"}},"
    "{\"key\":\"cached\",\"value\":{\"boolValue\":false}},"
    "{\"key\":\"ratio\",\"value\":{\"doubleValue\":0.25}},"
    "{\"key\":\"payload\",\"value\":{\"bytesValue\":\"aGVsbG8=\"}},"
    "{\"key\":\"tags\",\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"},"
    "{\"intValue\":\"7\"},{\"doubleValue\":\"NaN\"}]}}},"
    "{\"key\":\"ctx\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":\"k\",\"value\":"
    "{\"stringValue\":\"v\"}},{\"key\":\"empty\",\"value\":{}}]}}}],"
    "\"droppedAttributesCount\":3,"
    "\"events\":[{\"timeUnixNano\":\"1700000000050000000\",\"name\":\"fetchStart\","
    "\"attributes\":[{\"key\":\"n\",\"value\":{\"intValue\":1}}],\"droppedAttributesCount\":0}],"
    "\"droppedEventsCount\":0,"
    "\"status\":{\"code\":2,\"message\":\"boom\"},"
    "\"links\":[{\"traceId\":\"0af7651916cd43dd8448eb211c80319c\",\"spanId\":\"b7ad6b7169203331\","
    "\"attributes\":[],\"droppedAttributesCount\":0}],"
    "\"droppedLinksCount\":0,\"flags\":257}]}]}]}";

static const char trace_canon[] =
    "{\"resourceSpans\":[{\"resource\":{\"attributes\":["
    "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"checkout-web\"}},"
    "{\"key\":\"telemetry.sdk.language\",\"value\":{\"stringValue\":\"webjs\"}},"
    "{\"key\":\"telemetry.sdk.name\",\"value\":{\"stringValue\":\"opentelemetry\"}},"
    "{\"key\":\"telemetry.sdk.version\",\"value\":{\"stringValue\":\"1.25.1\"}}]},"
    "\"scopeSpans\":[{\"scope\":{\"name\":\"@opentelemetry/instrumentation-fetch\","
    "\"version\":\"0.52.1\"},\"spans\":[{"
    "\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b174\","
    "\"parentSpanId\":\"eee19b7ec3c1b173\",\"name\":\"HTTP GET\",\"kind\":2,"
    "\"startTimeUnixNano\":\"1700000000000000000\",\"endTimeUnixNano\":\"1700000000123456789\","
    "\"attributes\":["
    "{\"key\":\"http.method\",\"value\":{\"stringValue\":\"GET\"}},"
    "{\"key\":\"http.status_code\",\"value\":{\"intValue\":\"200\"}},"
    "{\"key\":\"http.response_content_length\",\"value\":{\"intValue\":\"-9223372036854775808\"}},"
    "{\"key\":\"cached\",\"value\":{\"boolValue\":false}},"
    "{\"key\":\"ratio\",\"value\":{\"doubleValue\":0.25}},"
    "{\"key\":\"payload\",\"value\":{\"bytesValue\":\"aGVsbG8=\"}},"
    "{\"key\":\"tags\",\"value\":{\"arrayValue\":{\"values\":[{\"stringValue\":\"a\"},"
    "{\"intValue\":\"7\"},{\"doubleValue\":\"NaN\"}]}}},"
    "{\"key\":\"ctx\",\"value\":{\"kvlistValue\":{\"values\":[{\"key\":\"k\",\"value\":"
    "{\"stringValue\":\"v\"}},{\"key\":\"empty\",\"value\":{}}]}}}],"
    "\"droppedAttributesCount\":3,"
    "\"events\":[{\"timeUnixNano\":\"1700000000050000000\",\"name\":\"fetchStart\","
    "\"attributes\":[{\"key\":\"n\",\"value\":{\"intValue\":\"1\"}}]}],"
    "\"status\":{\"code\":2,\"message\":\"boom\"},"
    "\"links\":[{\"traceId\":\"0af7651916cd43dd8448eb211c80319c\",\"spanId\":\"b7ad6b7169203331\"}]"
    ","
    "\"flags\":257}]}]}]}";

static const char metrics_json[] =
    "{\"resourceMetrics\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
    "\"value\":{\"stringValue\":\"api\"}}],\"droppedAttributesCount\":0},"
    "\"scopeMetrics\":[{\"scope\":{\"name\":\"meter\",\"version\":\"\"},\"metrics\":["
    "{\"name\":\"cpu.temp\",\"description\":\"\",\"unit\":\"Cel\",\"gauge\":{\"dataPoints\":["
    "{\"attributes\":[{\"key\":\"core\",\"value\":{\"intValue\":0}}],"
    "\"startTimeUnixNano\":\"0\",\"timeUnixNano\":\"1700000000000000000\",\"asDouble\":71.5}]}},"
    "{\"name\":\"requests\",\"description\":\"count\",\"unit\":\"1\",\"sum\":{\"dataPoints\":["
    "{\"attributes\":[],\"startTimeUnixNano\":\"1699999990000000000\","
    "\"timeUnixNano\":\"1700000000000000000\",\"asInt\":\"42\",\"exemplars\":[{"
    "\"filteredAttributes\":[{\"key\":\"user\",\"value\":{\"stringValue\":\"u1\"}}],"
    "\"timeUnixNano\":\"1699999995000000000\",\"asInt\":\"3\","
    "\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b174\"}]},"
    "{\"timeUnixNano\":\"1700000000000000000\",\"asInt\":0}],"
    "\"aggregationTemporality\":2,\"isMonotonic\":true}},"
    "{\"name\":\"latency\",\"unit\":\"ms\",\"histogram\":{\"dataPoints\":[{"
    "\"startTimeUnixNano\":\"1699999990000000000\",\"timeUnixNano\":\"1700000000000000000\","
    "\"count\":\"6\",\"sum\":123.5,\"bucketCounts\":[\"1\",\"2\",\"0\",\"3\"],"
    "\"explicitBounds\":[10,50,100.5],\"min\":0.5,\"max\":99,\"flags\":0}],"
    "\"aggregationTemporality\":1}},"
    "{\"name\":\"size\",\"exponentialHistogram\":{\"dataPoints\":[{"
    "\"timeUnixNano\":\"1700000000000000000\",\"count\":\"10\",\"sum\":0,\"scale\":-3,"
    "\"zeroCount\":\"1\",\"zeroThreshold\":1e-9,"
    "\"positive\":{\"offset\":5,\"bucketCounts\":[\"1\",\"2\",\"3\"]},"
    "\"negative\":{\"offset\":-2,\"bucketCounts\":[\"4\"]},\"min\":-3.25,\"max\":1e300}],"
    "\"aggregationTemporality\":\"AGGREGATION_TEMPORALITY_DELTA\"}},"
    "{\"name\":\"rt\",\"summary\":{\"dataPoints\":[{\"timeUnixNano\":\"1700000000000000000\","
    "\"count\":\"4\",\"sum\":10,\"quantileValues\":[{\"quantile\":0,\"value\":1},"
    "{\"quantile\":0.5,\"value\":2.5},{\"quantile\":1,\"value\":4}]}]}}"
    "]}]}]}";

static const char metrics_canon[] =
    "{\"resourceMetrics\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
    "\"value\":{\"stringValue\":\"api\"}}]},"
    "\"scopeMetrics\":[{\"scope\":{\"name\":\"meter\"},\"metrics\":["
    "{\"name\":\"cpu.temp\",\"unit\":\"Cel\",\"gauge\":{\"dataPoints\":["
    "{\"attributes\":[{\"key\":\"core\",\"value\":{\"intValue\":\"0\"}}],"
    "\"timeUnixNano\":\"1700000000000000000\",\"asDouble\":71.5}]}},"
    "{\"name\":\"requests\",\"description\":\"count\",\"unit\":\"1\",\"sum\":{\"dataPoints\":["
    "{\"startTimeUnixNano\":\"1699999990000000000\","
    "\"timeUnixNano\":\"1700000000000000000\",\"asInt\":\"42\",\"exemplars\":[{"
    "\"filteredAttributes\":[{\"key\":\"user\",\"value\":{\"stringValue\":\"u1\"}}],"
    "\"timeUnixNano\":\"1699999995000000000\",\"asInt\":\"3\","
    "\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b174\"}]},"
    "{\"timeUnixNano\":\"1700000000000000000\",\"asInt\":\"0\"}],"
    "\"aggregationTemporality\":2,\"isMonotonic\":true}},"
    "{\"name\":\"latency\",\"unit\":\"ms\",\"histogram\":{\"dataPoints\":[{"
    "\"startTimeUnixNano\":\"1699999990000000000\",\"timeUnixNano\":\"1700000000000000000\","
    "\"count\":\"6\",\"sum\":123.5,\"bucketCounts\":[\"1\",\"2\",\"0\",\"3\"],"
    "\"explicitBounds\":[10,50,100.5],\"min\":0.5,\"max\":99}],"
    "\"aggregationTemporality\":1}},"
    "{\"name\":\"size\",\"exponentialHistogram\":{\"dataPoints\":[{"
    "\"timeUnixNano\":\"1700000000000000000\",\"count\":\"10\",\"sum\":0,\"scale\":-3,"
    "\"zeroCount\":\"1\",\"zeroThreshold\":1e-9,"
    "\"positive\":{\"offset\":5,\"bucketCounts\":[\"1\",\"2\",\"3\"]},"
    "\"negative\":{\"offset\":-2,\"bucketCounts\":[\"4\"]},\"min\":-3.25,\"max\":1e300}],"
    "\"aggregationTemporality\":1}},"
    "{\"name\":\"rt\",\"summary\":{\"dataPoints\":[{\"timeUnixNano\":\"1700000000000000000\","
    "\"count\":\"4\",\"sum\":10,\"quantileValues\":[{\"value\":1},"
    "{\"quantile\":0.5,\"value\":2.5},{\"quantile\":1,\"value\":4}]}]}}"
    "]}]}]}";

static const char logs_json[] =
    "{\"resourceLogs\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
    "\"value\":{\"stringValue\":\"worker\"}}],\"droppedAttributesCount\":0},"
    "\"scopeLogs\":[{\"scope\":{\"name\":\"logger\",\"version\":\"1.0\"},\"logRecords\":["
    "{\"timeUnixNano\":\"1700000000000000001\",\"observedTimeUnixNano\":\"1700000000000000002\","
    "\"severityNumber\":9,\"severityText\":\"INFO\","
    "\"body\":{\"stringValue\":\"user logged in \\u00e9\\ud83d\\ude00\\n\\\"q\\\"\"},"
    "\"attributes\":[{\"key\":\"user.id\",\"value\":{\"intValue\":\"12345\"}}],"
    "\"droppedAttributesCount\":0,\"flags\":1,"
    "\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b174\","
    "\"eventName\":\"user.login\"},"
    "{\"timeUnixNano\":\"1700000000000000003\",\"observedTimeUnixNano\":\"1700000000000000004\","
    "\"severityNumber\":\"SEVERITY_NUMBER_ERROR\",\"severityText\":\"ERROR\","
    "\"body\":{\"kvlistValue\":{\"values\":[{\"key\":\"msg\",\"value\":{\"stringValue\":\"failed\"}"
    "},"
    "{\"key\":\"code\",\"value\":{\"intValue\":500}},{\"key\":\"nested\",\"value\":{"
    "\"kvlistValue\":"
    "{\"values\":[{\"key\":\"a\",\"value\":{\"arrayValue\":{\"values\":[{\"boolValue\":true}]}}}]}}"
    "}]}},"
    "\"attributes\":[],\"traceId\":\"\",\"spanId\":\"\"}"
    "]}]}]}";

static const char logs_canon[] =
    "{\"resourceLogs\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
    "\"value\":{\"stringValue\":\"worker\"}}]},"
    "\"scopeLogs\":[{\"scope\":{\"name\":\"logger\",\"version\":\"1.0\"},\"logRecords\":["
    "{\"timeUnixNano\":\"1700000000000000001\",\"observedTimeUnixNano\":\"1700000000000000002\","
    "\"severityNumber\":9,\"severityText\":\"INFO\","
    "\"body\":{\"stringValue\":\"user logged in \\u00e9\\ud83d\\ude00\\n\\\"q\\\"\"},"
    "\"attributes\":[{\"key\":\"user.id\",\"value\":{\"intValue\":\"12345\"}}],"
    "\"flags\":1,"
    "\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b174\","
    "\"eventName\":\"user.login\"},"
    "{\"timeUnixNano\":\"1700000000000000003\",\"observedTimeUnixNano\":\"1700000000000000004\","
    "\"severityNumber\":17,\"severityText\":\"ERROR\","
    "\"body\":{\"kvlistValue\":{\"values\":[{\"key\":\"msg\",\"value\":{\"stringValue\":\"failed\"}"
    "},"
    "{\"key\":\"code\",\"value\":{\"intValue\":\"500\"}},{\"key\":\"nested\",\"value\":{"
    "\"kvlistValue\":"
    "{\"values\":[{\"key\":\"a\",\"value\":{\"arrayValue\":{\"values\":[{\"boolValue\":true}]}}}]}}"
    "}]}}}"
    "]}]}]}";

static const uint8_t trace_id[16] = {0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03,
                                     0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c};
static const uint8_t span_id[8] = {0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74};

/* ------------------------------------------------------------------------ */
/* Helpers */

static struct buf pb_out, json_out;

static int setup(void **state)
{
    (void)state;
    assert_int_equal(buf_init(&pb_out, 0, 0), 0);
    assert_int_equal(buf_init(&json_out, 0, 0), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    buf_free(&pb_out);
    buf_free(&json_out);
    return 0;
}

static char errbuf[512];

static void to_proto_ok(enum otlp_signal sig, const char *json, size_t len)
{
    buf_reset(&pb_out);
    errbuf[0] = '\0';
    int rc = otlp_json_to_proto(sig, json, len, &pb_out, errbuf, sizeof(errbuf));
    if (rc != 0)
        print_error("otlp_json_to_proto: %d %s\n", rc, errbuf);
    assert_int_equal(rc, 0);
    assert_string_equal(errbuf, "");
}

/* The error must be `rc` and the message must contain `msg`. */
static void to_proto_err(enum otlp_signal sig, const char *json, size_t len, int rc,
                         const char *msg)
{
    buf_reset(&pb_out);
    buf_append(&pb_out, "keep", 4);
    errbuf[0] = '\0';
    int got = otlp_json_to_proto(sig, json, len, &pb_out, errbuf, sizeof(errbuf));
    if (got != rc || (msg != NULL && strstr(errbuf, msg) == NULL))
        print_error("json %.200s\n -> rc %d err \"%s\", want %d \"%s\"\n", json, got, errbuf, rc,
                    msg ? msg : "");
    assert_int_equal(got, rc);
    if (msg != NULL)
        assert_non_null(strstr(errbuf, msg));
    assert_int_equal(pb_out.len, 4); /* output restored */
    assert_memory_equal(pb_out.data, "keep", 4);
}

#define TO_PROTO_OK(sig, s) to_proto_ok((sig), (s), strlen(s))
#define TO_PROTO_ERR(sig, s, rc, msg) to_proto_err((sig), (s), strlen(s), (rc), (msg))

/* json_out must hold JSON equal (as values) to `expected`. */
static void assert_json_equal(const struct buf *got, const char *expected)
{
    json_error_t e1, e2;
    json_t *a = json_loadb((const char *)got->data, got->len, JSON_ALLOW_NUL, &e1);
    json_t *b = json_loads(expected, JSON_ALLOW_NUL, &e2);
    if (a == NULL)
        print_error("output is not JSON (%s): %.*s\n", e1.text, (int)got->len, BUF_STR(got));
    assert_non_null(a);
    if (b == NULL)
        print_error("expected is not JSON: %s at %d\n", e2.text, e2.position);
    assert_non_null(b);
    if (!json_equal(a, b))
        print_error("got:  %.*s\nwant: %s\n", (int)got->len, BUF_STR(got), expected);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
}

static void to_json_ok(enum otlp_signal sig, const uint8_t *pb, size_t len)
{
    buf_reset(&json_out);
    int rc = otlp_proto_to_json(sig, pb, len, &json_out);
    assert_int_equal(rc, 0);
    assert_null(memchr(json_out.data, '\n', json_out.len));
}

static void assert_json_str(const struct buf *got, const char *want)
{
    if (got->len != strlen(want) || memcmp(got->data, want, got->len) != 0)
        print_error("got:  %.*s\nwant: %s\n", (int)got->len, BUF_STR(got),
                    want != NULL ? want : "");
    assert_int_equal(got->len, strlen(want));
    assert_memory_equal(got->data, want, got->len);
}

static void assert_contains(const struct buf *b, const char *s)
{
    if (memmem(b->data, b->len, s, strlen(s)) == NULL)
        print_error("\"%s\" not in %.*s\n", s, (int)b->len, BUF_STR(b));
    assert_non_null(memmem(b->data, b->len, s, strlen(s)));
}

static const KeyValue *find_attr(KeyValue **kv, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i]->key, key) == 0)
            return kv[i];
    fail_msg("attribute %s missing", key);
    return NULL;
}

/* protobuf-c pack of `m`, then proto -> JSON -> proto must give the same bytes. */
static void assert_pack_roundtrip(enum otlp_signal sig, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *packed = malloc(n ? n : 1);
    assert_non_null(packed);
    assert_int_equal(protobuf_c_message_pack(m, packed), n);
    to_json_ok(sig, packed, n);
    to_proto_ok(sig, (const char *)json_out.data, json_out.len);
    if (pb_out.len != n || memcmp(pb_out.data, packed, n) != 0)
        print_error("roundtrip differs: %zu vs %zu bytes; json %.*s\n", pb_out.len, n,
                    (int)json_out.len, BUF_STR(&json_out));
    assert_int_equal(pb_out.len, n);
    assert_memory_equal(pb_out.data, packed, n);
    free(packed);
}

/* JSON -> proto -> JSON -> proto: the two protobufs are identical. */
static void assert_json_roundtrip(enum otlp_signal sig, const char *json)
{
    TO_PROTO_OK(sig, json);
    struct buf first;
    assert_int_equal(buf_init(&first, 0, 0), 0);
    assert_int_equal(buf_append(&first, pb_out.data, pb_out.len), 0);
    to_json_ok(sig, first.data, first.len);
    to_proto_ok(sig, (const char *)json_out.data, json_out.len);
    assert_int_equal(pb_out.len, first.len);
    assert_memory_equal(pb_out.data, first.data, first.len);
    buf_free(&first);
}

/* ------------------------------------------------------------------------ */
/* Traces */

static void test_traces_sample(void **state)
{
    (void)state;
    TO_PROTO_OK(OTLP_TRACES, trace_json);
    TraceReq *req =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
            NULL, pb_out.len, pb_out.data);
    assert_non_null(req);
    assert_int_equal(req->n_resource_spans, 1);
    Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = req->resource_spans[0];
    assert_non_null(rs->resource);
    assert_int_equal(rs->resource->n_attributes, 4);
    assert_string_equal(rs->resource->attributes[0]->key, "service.name");
    assert_int_equal(rs->resource->attributes[0]->value->value_case, AV(STRING_VALUE));
    assert_string_equal(rs->resource->attributes[0]->value->string_value, "checkout-web");
    assert_int_equal(rs->resource->dropped_attributes_count, 0);
    assert_int_equal(rs->n_scope_spans, 1);
    Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = rs->scope_spans[0];
    assert_string_equal(ss->scope->name, "@opentelemetry/instrumentation-fetch");
    assert_string_equal(ss->scope->version, "0.52.1");
    assert_int_equal(ss->n_spans, 1);
    Opentelemetry__Proto__Trace__V1__Span *sp = ss->spans[0];
    assert_int_equal(sp->trace_id.len, 16);
    assert_memory_equal(sp->trace_id.data, trace_id, 16);
    assert_int_equal(sp->span_id.len, 8);
    assert_memory_equal(sp->span_id.data, span_id, 8);
    assert_int_equal(sp->parent_span_id.len, 8);
    assert_int_equal(sp->parent_span_id.data[7], 0x73);
    assert_string_equal(sp->trace_state, "");
    assert_string_equal(sp->name, "HTTP GET");
    assert_int_equal(sp->kind, OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER);
    assert_true(sp->start_time_unix_nano == 1700000000000000000ull);
    assert_true(sp->end_time_unix_nano == 1700000000123456789ull);
    assert_int_equal(sp->flags, 257);
    assert_int_equal(sp->dropped_attributes_count, 3);
    assert_int_equal(sp->n_attributes, 8);
    const AnyValue *v = find_attr(sp->attributes, sp->n_attributes, "http.status_code")->value;
    assert_int_equal(v->value_case, AV(INT_VALUE));
    assert_true(v->int_value == 200);
    v = find_attr(sp->attributes, sp->n_attributes, "http.response_content_length")->value;
    assert_true(v->int_value == INT64_MIN);
    v = find_attr(sp->attributes, sp->n_attributes, "cached")->value;
    assert_int_equal(v->value_case, AV(BOOL_VALUE)); /* false, but present */
    assert_false(v->bool_value);
    v = find_attr(sp->attributes, sp->n_attributes, "ratio")->value;
    assert_int_equal(v->value_case, AV(DOUBLE_VALUE));
    assert_true(v->double_value == 0.25);
    v = find_attr(sp->attributes, sp->n_attributes, "payload")->value;
    assert_int_equal(v->value_case, AV(BYTES_VALUE));
    assert_int_equal(v->bytes_value.len, 5);
    assert_memory_equal(v->bytes_value.data, "hello", 5);
    v = find_attr(sp->attributes, sp->n_attributes, "tags")->value;
    assert_int_equal(v->value_case, AV(ARRAY_VALUE));
    assert_int_equal(v->array_value->n_values, 3);
    assert_string_equal(v->array_value->values[0]->string_value, "a");
    assert_true(v->array_value->values[1]->int_value == 7);
    assert_true(isnan(v->array_value->values[2]->double_value));
    v = find_attr(sp->attributes, sp->n_attributes, "ctx")->value;
    assert_int_equal(v->value_case, AV(KVLIST_VALUE));
    assert_int_equal(v->kvlist_value->n_values, 2);
    assert_string_equal(v->kvlist_value->values[0]->value->string_value, "v");
    assert_non_null(v->kvlist_value->values[1]->value); /* {} is an empty AnyValue */
    assert_int_equal(v->kvlist_value->values[1]->value->value_case, AV(_NOT_SET));
    assert_int_equal(sp->n_events, 1);
    assert_string_equal(sp->events[0]->name, "fetchStart");
    assert_true(sp->events[0]->time_unix_nano == 1700000000050000000ull);
    assert_int_equal(sp->events[0]->n_attributes, 1);
    assert_int_equal(sp->n_links, 1);
    assert_int_equal(sp->links[0]->trace_id.len, 16);
    assert_int_equal(sp->links[0]->trace_id.data[0], 0x0a);
    assert_int_equal(sp->links[0]->span_id.len, 8);
    assert_int_equal(sp->links[0]->n_attributes, 0);
    assert_non_null(sp->status);
    assert_int_equal(sp->status->code,
                     OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR);
    assert_string_equal(sp->status->message, "boom");

    /* back to JSON, from our bytes and from protobuf-c's own packing */
    to_json_ok(OTLP_TRACES, pb_out.data, pb_out.len);
    assert_json_equal(&json_out, trace_canon);
    assert_pack_roundtrip(OTLP_TRACES, &req->base);
    assert_json_equal(&json_out, trace_canon);
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req,
                                                                                            NULL);
    assert_json_roundtrip(OTLP_TRACES, trace_json);
}

/* Compact output is exact: key order of the wire, lowerCamelCase, no spaces. */
static void test_traces_exact_output(void **state)
{
    (void)state;
    TO_PROTO_OK(
        OTLP_TRACES,
        "{ \"resourceSpans\" : [ { \"scopeSpans\" : [ { \"spans\" : [ {\n"
        "\t\"name\" : \"a\\u0001\\\\\\/\", \"traceId\" : \"000102030405060708090A0B0C0D0E0F\","
        " \"kind\" : \"SPAN_KIND_CLIENT\", \"droppedLinksCount\" : 4294967295,"
        " \"status\" : { } } ] } ] } ] }\r\n");
    to_json_ok(OTLP_TRACES, pb_out.data, pb_out.len);
    assert_json_str(&json_out,
                    "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"name\":\"a\\u0001\\\\/\","
                    "\"traceId\":\"000102030405060708090a0b0c0d0e0f\",\"kind\":3,"
                    "\"droppedLinksCount\":4294967295,\"status\":{}}]}]}]}");
    TO_PROTO_OK(OTLP_TRACES, "{}");
    assert_int_equal(pb_out.len, 0);
    to_json_ok(OTLP_TRACES, pb_out.data, 0);
    assert_json_str(&json_out, "{}");
}

/* snake_case keys, unknown keys (any shape) and nulls. */
static void test_traces_lenient_input(void **state)
{
    (void)state;
    TO_PROTO_OK(OTLP_TRACES,
                "{\"resource_spans\":[{\"schemaUrl\":null,\"futureField\":{\"a\":[1,{\"b\":null},"
                "\"x\",true,false,-1.5e3]},\"scope_spans\":[{\"spans\":[{\"trace_id\":"
                "\"5b8efff798038103d269b633813fc60c\",\"span_id\":\"eee19b7ec3c1b174\","
                "\"parent_span_id\":\"\",\"start_time_unix_nano\":1700000000000000000,"
                "\"end_time_unix_nano\":\"1.7e18\",\"dropped_attributes_count\":\"5\","
                "\"kind\":\"SPAN_KIND_PRODUCER\",\"status\":{\"code\":\"STATUS_CODE_OK\"},"
                "\"trace\\u0053tate\":\"k=v\",\"unknown\":null,\"links\":null,\"name\":null,"
                "\"attributes\":[{\"key\":\"x\",\"value\":{\"int_value\":1.0e2,\"extra\":[]}},"
                "{\"key\":\"big\",\"value\":{\"intValue\":9.2e18}}]}]}]}]}");
    TraceReq *req =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
            NULL, pb_out.len, pb_out.data);
    assert_non_null(req);
    Opentelemetry__Proto__Trace__V1__Span *sp = req->resource_spans[0]->scope_spans[0]->spans[0];
    assert_memory_equal(sp->trace_id.data, trace_id, 16);
    assert_int_equal(sp->parent_span_id.len, 0);
    assert_true(sp->start_time_unix_nano == 1700000000000000000ull);
    assert_true(sp->end_time_unix_nano == 1700000000000000000ull);
    assert_int_equal(sp->dropped_attributes_count, 5);
    assert_int_equal(sp->kind, 4);
    assert_int_equal(sp->status->code, 1);
    assert_string_equal(sp->trace_state, "k=v");
    assert_string_equal(sp->name, "");
    assert_true(sp->attributes[0]->value->int_value == 100);
    assert_true(sp->attributes[1]->value->int_value == 9200000000000000000ll);
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req,
                                                                                            NULL);
}

/* Values at the edges of each type, surrogate pairs and NUL in strings. */
static void test_value_edges(void **state)
{
    (void)state;
    TO_PROTO_OK(OTLP_TRACES,
                "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{"
                "\"startTimeUnixNano\":\"18446744073709551615\",\"endTimeUnixNano\":0,"
                "\"droppedEventsCount\":\"4294967295\",\"flags\":4294967295,"
                "\"name\":\"\\ud834\\udd1e nul:\\u0000 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\","
                "\"attributes\":["
                "{\"key\":\"max\",\"value\":{\"intValue\":9223372036854775807}},"
                "{\"key\":\"min\",\"value\":{\"intValue\":-9223372036854775808}},"
                "{\"key\":\"negzero\",\"value\":{\"doubleValue\":-0.0}},"
                "{\"key\":\"zero\",\"value\":{\"doubleValue\":0}},"
                "{\"key\":\"inf\",\"value\":{\"doubleValue\":\"Infinity\"}},"
                "{\"key\":\"ninf\",\"value\":{\"doubleValue\":\"-Infinity\"}},"
                "{\"key\":\"str\",\"value\":{\"doubleValue\":\"1.5\"}},"
                "{\"key\":\"tiny\",\"value\":{\"doubleValue\":5e-324}},"
                "{\"key\":\"pi\",\"value\":{\"doubleValue\":3.141592653589793}},"
                "{\"key\":\"tenth\",\"value\":{\"doubleValue\":0.1}},"
                "{\"key\":\"e\",\"value\":{\"stringValue\":\"\"}},"
                "{\"key\":\"b\",\"value\":{\"bytesValue\":\"\"}},"
                "{\"key\":\"b64url\",\"value\":{\"bytesValue\":\"-_8\"}},"
                "{\"key\":\"b64\",\"value\":{\"bytesValue\":\"+/8=\"}}"
                "]}]}]}]}");
    TraceReq *req =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
            NULL, pb_out.len, pb_out.data);
    assert_non_null(req);
    Opentelemetry__Proto__Trace__V1__Span *sp = req->resource_spans[0]->scope_spans[0]->spans[0];
    assert_true(sp->start_time_unix_nano == UINT64_MAX);
    assert_true(sp->dropped_events_count == UINT32_MAX);
    assert_true(sp->flags == UINT32_MAX);
    static const char name[] = "\xf0\x9d\x84\x9e nul:\0 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    /* protobuf-c stops the C string at the NUL; check the wire copy instead */
    assert_non_null(memmem(pb_out.data, pb_out.len, name, sizeof(name) - 1));
    KeyValue **a = sp->attributes;
    assert_true(a[0]->value->int_value == INT64_MAX);
    assert_true(a[1]->value->int_value == INT64_MIN);
    assert_true(a[2]->value->double_value == 0 && signbit(a[2]->value->double_value));
    assert_int_equal(a[3]->value->value_case, AV(DOUBLE_VALUE));
    assert_true(isinf(a[4]->value->double_value) && a[4]->value->double_value > 0);
    assert_true(isinf(a[5]->value->double_value) && a[5]->value->double_value < 0);
    assert_true(a[6]->value->double_value == 1.5);
    assert_true(a[7]->value->double_value == 5e-324);
    assert_int_equal(a[10]->value->value_case, AV(STRING_VALUE));
    assert_int_equal(a[11]->value->value_case, AV(BYTES_VALUE));
    assert_int_equal(a[11]->value->bytes_value.len, 0);
    assert_int_equal(a[12]->value->bytes_value.len, 2);
    assert_memory_equal(a[12]->value->bytes_value.data, "\xfb\xff", 2);
    assert_memory_equal(a[13]->value->bytes_value.data, "\xfb\xff", 2);
    to_json_ok(OTLP_TRACES, pb_out.data, pb_out.len);
    assert_json_equal(
        &json_out, "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{"
                   "\"startTimeUnixNano\":\"18446744073709551615\","
                   "\"droppedEventsCount\":4294967295,\"flags\":4294967295,"
                   "\"name\":\"\\ud834\\udd1e nul:\\u0000 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\","
                   "\"attributes\":["
                   "{\"key\":\"max\",\"value\":{\"intValue\":\"9223372036854775807\"}},"
                   "{\"key\":\"min\",\"value\":{\"intValue\":\"-9223372036854775808\"}},"
                   "{\"key\":\"negzero\",\"value\":{\"doubleValue\":-0}},"
                   "{\"key\":\"zero\",\"value\":{\"doubleValue\":0}},"
                   "{\"key\":\"inf\",\"value\":{\"doubleValue\":\"Infinity\"}},"
                   "{\"key\":\"ninf\",\"value\":{\"doubleValue\":\"-Infinity\"}},"
                   "{\"key\":\"str\",\"value\":{\"doubleValue\":1.5}},"
                   "{\"key\":\"tiny\",\"value\":{\"doubleValue\":5e-324}},"
                   "{\"key\":\"pi\",\"value\":{\"doubleValue\":3.141592653589793}},"
                   "{\"key\":\"tenth\",\"value\":{\"doubleValue\":0.1}},"
                   "{\"key\":\"e\",\"value\":{\"stringValue\":\"\"}},"
                   "{\"key\":\"b\",\"value\":{\"bytesValue\":\"\"}},"
                   "{\"key\":\"b64url\",\"value\":{\"bytesValue\":\"+/8=\"}},"
                   "{\"key\":\"b64\",\"value\":{\"bytesValue\":\"+/8=\"}}"
                   "]}]}]}]}");
    /* shortest round-tripping forms, -0 kept, NUL escaped */
    assert_contains(&json_out, "\"doubleValue\":0.1}");
    assert_contains(&json_out, "\"doubleValue\":-0}");
    assert_contains(&json_out, "nul:\\u0000");
    assert_pack_roundtrip(OTLP_TRACES, &req->base);
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req,
                                                                                            NULL);
}

/* ------------------------------------------------------------------------ */
/* Metrics */

static void test_metrics_sample(void **state)
{
    (void)state;
    TO_PROTO_OK(OTLP_METRICS, metrics_json);
    MetricsReq *req =
        opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__unpack(
            NULL, pb_out.len, pb_out.data);
    assert_non_null(req);
    assert_int_equal(req->n_resource_metrics, 1);
    Opentelemetry__Proto__Metrics__V1__ScopeMetrics *sm =
        req->resource_metrics[0]->scope_metrics[0];
    assert_string_equal(sm->scope->name, "meter");
    assert_int_equal(sm->n_metrics, 5);
    Opentelemetry__Proto__Metrics__V1__Metric **m = sm->metrics;

    assert_string_equal(m[0]->name, "cpu.temp");
    assert_string_equal(m[0]->unit, "Cel");
    assert_int_equal(m[0]->data_case, OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE);
    Opentelemetry__Proto__Metrics__V1__NumberDataPoint *np = m[0]->gauge->data_points[0];
    assert_int_equal(np->value_case,
                     OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_DOUBLE);
    assert_true(np->as_double == 71.5);
    assert_true(np->time_unix_nano == 1700000000000000000ull);
    assert_true(np->start_time_unix_nano == 0);
    assert_true(np->attributes[0]->value->int_value == 0);
    assert_int_equal(np->attributes[0]->value->value_case, AV(INT_VALUE));

    assert_int_equal(m[1]->data_case, OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM);
    assert_string_equal(m[1]->description, "count");
    assert_int_equal(m[1]->sum->aggregation_temporality, 2);
    assert_true(m[1]->sum->is_monotonic);
    assert_int_equal(m[1]->sum->n_data_points, 2);
    np = m[1]->sum->data_points[0];
    assert_int_equal(np->value_case,
                     OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT);
    assert_true(np->as_int == 42);
    assert_true(np->start_time_unix_nano == 1699999990000000000ull);
    assert_int_equal(np->n_exemplars, 1);
    Opentelemetry__Proto__Metrics__V1__Exemplar *ex = np->exemplars[0];
    assert_true(ex->as_int == 3);
    assert_true(ex->time_unix_nano == 1699999995000000000ull);
    assert_memory_equal(ex->trace_id.data, trace_id, 16);
    assert_memory_equal(ex->span_id.data, span_id, 8);
    assert_string_equal(ex->filtered_attributes[0]->value->string_value, "u1");
    np = m[1]->sum->data_points[1];
    assert_int_equal(np->value_case,
                     OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT);
    assert_true(np->as_int == 0); /* oneof: zero is present */

    assert_int_equal(m[2]->data_case, OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM);
    assert_int_equal(m[2]->histogram->aggregation_temporality, 1);
    Opentelemetry__Proto__Metrics__V1__HistogramDataPoint *hp = m[2]->histogram->data_points[0];
    assert_true(hp->count == 6);
    assert_int_equal(hp->_sum_case,
                     OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT___SUM_SUM);
    assert_true(hp->sum == 123.5);
    assert_int_equal(hp->n_bucket_counts, 4);
    assert_true(hp->bucket_counts[0] == 1 && hp->bucket_counts[1] == 2 &&
                hp->bucket_counts[2] == 0 && hp->bucket_counts[3] == 3);
    assert_int_equal(hp->n_explicit_bounds, 3);
    assert_true(hp->explicit_bounds[0] == 10 && hp->explicit_bounds[2] == 100.5);
    assert_int_equal(hp->_min_case,
                     OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT___MIN_MIN);
    assert_true(hp->min == 0.5);
    assert_int_equal(hp->_max_case,
                     OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT___MAX_MAX);
    assert_true(hp->max == 99);
    assert_int_equal(hp->flags, 0);

    assert_int_equal(m[3]->data_case,
                     OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_EXPONENTIAL_HISTOGRAM);
    assert_int_equal(m[3]->exponential_histogram->aggregation_temporality, 1);
    Opentelemetry__Proto__Metrics__V1__ExponentialHistogramDataPoint *ep =
        m[3]->exponential_histogram->data_points[0];
    assert_true(ep->count == 10);
    assert_int_equal(ep->_sum_case,
                     OPENTELEMETRY__PROTO__METRICS__V1__EXPONENTIAL_HISTOGRAM_DATA_POINT___SUM_SUM);
    assert_true(ep->sum == 0);
    assert_int_equal(ep->scale, -3);
    assert_true(ep->zero_count == 1);
    assert_true(ep->zero_threshold == 1e-9);
    assert_int_equal(ep->positive->offset, 5);
    assert_int_equal(ep->positive->n_bucket_counts, 3);
    assert_true(ep->positive->bucket_counts[2] == 3);
    assert_int_equal(ep->negative->offset, -2);
    assert_int_equal(ep->negative->n_bucket_counts, 1);
    assert_true(ep->negative->bucket_counts[0] == 4);
    assert_true(ep->min == -3.25);
    assert_true(ep->max == 1e300);

    assert_int_equal(m[4]->data_case, OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUMMARY);
    Opentelemetry__Proto__Metrics__V1__SummaryDataPoint *sp = m[4]->summary->data_points[0];
    assert_true(sp->count == 4);
    assert_true(sp->sum == 10);
    assert_int_equal(sp->n_quantile_values, 3);
    assert_true(sp->quantile_values[0]->quantile == 0 && sp->quantile_values[0]->value == 1);
    assert_true(sp->quantile_values[1]->quantile == 0.5 && sp->quantile_values[1]->value == 2.5);

    to_json_ok(OTLP_METRICS, pb_out.data, pb_out.len);
    assert_json_equal(&json_out, metrics_canon);
    assert_pack_roundtrip(OTLP_METRICS, &req->base);
    assert_json_equal(&json_out, metrics_canon);
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__free_unpacked(
        req, NULL);
    assert_json_roundtrip(OTLP_METRICS, metrics_json);
}

/* Repeated numbers are packed like protobuf-c packs them. */
static void test_metrics_packed_wire(void **state)
{
    (void)state;
    TO_PROTO_OK(OTLP_METRICS,
                "{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[{\"histogram\":"
                "{\"dataPoints\":[{\"bucketCounts\":[\"1\",2],\"explicitBounds\":[]}]}}]}]}]}");
    static const uint8_t want[] = {
        0x0a, 0x1a, /* resource_metrics */
        0x12, 0x18, /* scope_metrics */
        0x12, 0x16, /* metrics */
        0x4a, 0x14, /* histogram (9) */
        0x0a, 0x12, /* data_points */
        0x32, 0x10, /* bucket_counts (6), packed fixed64 */
        1,    0,    0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
    };
    assert_int_equal(pb_out.len, sizeof(want));
    assert_memory_equal(pb_out.data, want, sizeof(want));
}

/* ------------------------------------------------------------------------ */
/* Logs */

static void test_logs_sample(void **state)
{
    (void)state;
    TO_PROTO_OK(OTLP_LOGS, logs_json);
    LogsReq *req = opentelemetry__proto__collector__logs__v1__export_logs_service_request__unpack(
        NULL, pb_out.len, pb_out.data);
    assert_non_null(req);
    Opentelemetry__Proto__Logs__V1__ScopeLogs *sl = req->resource_logs[0]->scope_logs[0];
    assert_string_equal(sl->scope->version, "1.0");
    assert_int_equal(sl->n_log_records, 2);
    Opentelemetry__Proto__Logs__V1__LogRecord *lr = sl->log_records[0];
    assert_true(lr->time_unix_nano == 1700000000000000001ull);
    assert_true(lr->observed_time_unix_nano == 1700000000000000002ull);
    assert_int_equal(lr->severity_number, 9);
    assert_string_equal(lr->severity_text, "INFO");
    assert_int_equal(lr->body->value_case, AV(STRING_VALUE));
    assert_string_equal(lr->body->string_value, "user logged in \xc3\xa9\xf0\x9f\x98\x80\n\"q\"");
    assert_true(lr->attributes[0]->value->int_value == 12345);
    assert_int_equal(lr->flags, 1);
    assert_memory_equal(lr->trace_id.data, trace_id, 16);
    assert_memory_equal(lr->span_id.data, span_id, 8);
    assert_string_equal(lr->event_name, "user.login");
    lr = sl->log_records[1];
    assert_int_equal(lr->severity_number, 17);
    assert_int_equal(lr->trace_id.len, 0);
    assert_int_equal(lr->span_id.len, 0);
    assert_int_equal(lr->body->value_case, AV(KVLIST_VALUE));
    Opentelemetry__Proto__Common__V1__KeyValueList *kv = lr->body->kvlist_value;
    assert_int_equal(kv->n_values, 3);
    assert_string_equal(kv->values[0]->value->string_value, "failed");
    assert_true(kv->values[1]->value->int_value == 500);
    assert_int_equal(kv->values[2]->value->value_case, AV(KVLIST_VALUE));
    AnyValue *arr = kv->values[2]->value->kvlist_value->values[0]->value;
    assert_int_equal(arr->value_case, AV(ARRAY_VALUE));
    assert_true(arr->array_value->values[0]->bool_value);

    to_json_ok(OTLP_LOGS, pb_out.data, pb_out.len);
    assert_json_equal(&json_out, logs_canon);
    assert_pack_roundtrip(OTLP_LOGS, &req->base);
    assert_json_equal(&json_out, logs_canon);
    opentelemetry__proto__collector__logs__v1__export_logs_service_request__free_unpacked(req,
                                                                                          NULL);
    assert_json_roundtrip(OTLP_LOGS, logs_json);
}

/* Export*ServiceResponse through the generic entry points. */
static void test_response_desc(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = otlp_json_response_descriptor(OTLP_TRACES);
    assert_non_null(d);
    assert_null(otlp_json_response_descriptor(OTLP_SIGNAL_COUNT));
    assert_null(otlp_json_request_descriptor((enum otlp_signal) - 1));
    static const char js[] =
        "{\"partialSuccess\":{\"rejectedSpans\":\"3\",\"errorMessage\":\"bad span\"}}";
    buf_reset(&pb_out);
    assert_int_equal(otlp_json_to_proto_desc(d, js, strlen(js), &pb_out, errbuf, sizeof(errbuf)),
                     0);
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse *r =
        opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
            NULL, pb_out.len, pb_out.data);
    assert_non_null(r);
    assert_true(r->partial_success->rejected_spans == 3);
    assert_string_equal(r->partial_success->error_message, "bad span");
    opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(r,
                                                                                             NULL);
    buf_reset(&json_out);
    assert_int_equal(otlp_proto_to_json_desc(d, pb_out.data, pb_out.len, &json_out), 0);
    assert_json_str(&json_out, js);
    /* an empty partial_success still shows: presence of a message */
    static const uint8_t empty_ps[] = {0x0a, 0x00};
    buf_reset(&json_out);
    d = otlp_json_response_descriptor(OTLP_LOGS);
    assert_int_equal(otlp_proto_to_json_desc(d, empty_ps, 2, &json_out), 0);
    assert_json_str(&json_out, "{\"partialSuccess\":{}}");
    /* not a message descriptor */
    buf_reset(&json_out);
    assert_int_equal(otlp_proto_to_json_desc(
                         (const ProtobufCMessageDescriptor
                              *)&opentelemetry__proto__trace__v1__status__status_code__descriptor,
                         empty_ps, 2, &json_out),
                     -EINVAL);
    assert_int_equal(otlp_json_to_proto_desc(NULL, "{}", 2, &pb_out, errbuf, sizeof(errbuf)),
                     -EINVAL);
    assert_int_equal(
        otlp_json_to_proto((enum otlp_signal)7, "{}", 2, &pb_out, errbuf, sizeof(errbuf)), -EINVAL);
    assert_int_equal(otlp_proto_to_json((enum otlp_signal)7, empty_ps, 0, &json_out), -EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Errors */

#define SPAN(x) "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{" x "}]}]}]}"
#define ATTR(v) SPAN("\"attributes\":[{\"key\":\"k\",\"value\":{" v "}}]")
#define SPAN_PATH "resourceSpans[0].scopeSpans[0].spans[0]."
#define ATTR_PATH SPAN_PATH "attributes[0].value."

static void test_errors_types(void **state)
{
    (void)state;
    const enum otlp_signal T = OTLP_TRACES;
    TO_PROTO_ERR(T, SPAN("\"traceId\":\"5b8efff798038103d269b633813fc6c\""), -EINVAL,
                 SPAN_PATH "traceId: expected 32 hex characters");
    /* Even-length hex of the wrong size converts; otlp_scan then rejects the
     * entry (partial success), exactly as for protobuf input. */
    {
        const char *js = SPAN("\"traceId\":\"5b8efff798038103d269b633813fc6\"");
        buf_reset(&pb_out);
        char e[128];
        assert_int_equal(otlp_json_to_proto(T, js, strlen(js), &pb_out, e, sizeof(e)), 0);
    }
    TO_PROTO_ERR(T,
                 "{\"resourceSpans\":[{},{\"scopeSpans\":[{},{},{\"spans\":[{},{},{},"
                 "{\"traceId\":\"abc\"}]}]}]}",
                 -EINVAL,
                 "resourceSpans[1].scopeSpans[2].spans[3].traceId: expected 32 hex characters");
    TO_PROTO_ERR(T, SPAN("\"spanId\":\"eee19b7ec3c1b17g\""), -EINVAL,
                 SPAN_PATH "spanId: invalid hex character");
    TO_PROTO_ERR(T, SPAN("\"parentSpanId\":\"eee19b7ec3c1b1e\""), -EINVAL,
                 SPAN_PATH "parentSpanId: expected 16 hex characters");
    TO_PROTO_ERR(T, SPAN("\"traceId\":5"), -EINVAL, "traceId: expected a string");
    TO_PROTO_ERR(T, ATTR("\"bytesValue\":\"a\""), -EINVAL,
                 ATTR_PATH "bytesValue: invalid base64 length");
    TO_PROTO_ERR(T, ATTR("\"bytesValue\":\"ab=c\""), -EINVAL, "invalid base64 character");
    TO_PROTO_ERR(T, ATTR("\"bytesValue\":\"abc==\""), -EINVAL, "invalid base64 length");
    TO_PROTO_ERR(T, ATTR("\"bytesValue\":\"a b=\""), -EINVAL, "invalid base64 character");
    TO_PROTO_ERR(T, SPAN("\"kind\":2.5"), -EINVAL,
                 SPAN_PATH "kind: expected an integer, got a fraction");
    TO_PROTO_ERR(T, SPAN("\"kind\":\"SPAN_KIND_NOPE\""), -EINVAL,
                 "kind: unknown SpanKind value \"SPAN_KIND_NOPE\"");
    TO_PROTO_ERR(T, SPAN("\"kind\":2147483648"), -EINVAL, "kind: integer out of range for enum");
    TO_PROTO_ERR(T, SPAN("\"kind\":true"), -EINVAL, "kind: expected an integer");
    TO_PROTO_ERR(T, SPAN("\"droppedAttributesCount\":-1"), -EINVAL,
                 "integer out of range for uint32");
    TO_PROTO_ERR(T, SPAN("\"droppedAttributesCount\":4294967296"), -EINVAL,
                 "out of range for uint32");
    TO_PROTO_ERR(T, SPAN("\"droppedAttributesCount\":1e10"), -EINVAL, "out of range for uint32");
    TO_PROTO_ERR(T, SPAN("\"droppedAttributesCount\":\"1.5\""), -EINVAL, "got a fraction");
    TO_PROTO_ERR(T, SPAN("\"droppedAttributesCount\":\" 1\""), -EINVAL, "expected an integer");
    TO_PROTO_ERR(T, SPAN("\"droppedAttributesCount\":\"\""), -EINVAL, "expected an integer");
    TO_PROTO_ERR(T, SPAN("\"droppedAttributesCount\":\"0x10\""), -EINVAL, "expected an integer");
    TO_PROTO_ERR(T, SPAN("\"startTimeUnixNano\":\"18446744073709551616\""), -EINVAL,
                 "startTimeUnixNano: integer out of range for uint64");
    TO_PROTO_ERR(T, SPAN("\"startTimeUnixNano\":\"-1\""), -EINVAL, "out of range for uint64");
    TO_PROTO_ERR(T, SPAN("\"startTimeUnixNano\":1.5"), -EINVAL, "got a fraction");
    TO_PROTO_ERR(T, SPAN("\"startTimeUnixNano\":1e-1"), -EINVAL, "got a fraction");
    TO_PROTO_ERR(T, SPAN("\"startTimeUnixNano\":1e99999999999"), -EINVAL, "out of range");
    TO_PROTO_ERR(T, SPAN("\"startTimeUnixNano\":[]"), -EINVAL, "expected an integer");
    TO_PROTO_ERR(T, ATTR("\"intValue\":\"9223372036854775808\""), -EINVAL,
                 ATTR_PATH "intValue: integer out of range for int64");
    TO_PROTO_ERR(T, ATTR("\"intValue\":-9223372036854775809"), -EINVAL, "out of range for int64");
    TO_PROTO_ERR(T, ATTR("\"doubleValue\":1e400"), -EINVAL, "out of range for double");
    TO_PROTO_ERR(T, ATTR("\"doubleValue\":\"nan\""), -EINVAL, "expected a number");
    TO_PROTO_ERR(T, ATTR("\"doubleValue\":\"Infinity \""), -EINVAL, "expected a number");
    TO_PROTO_ERR(T, ATTR("\"doubleValue\":true"), -EINVAL, "expected a number");
    TO_PROTO_ERR(T, ATTR("\"boolValue\":\"true\""), -EINVAL, "boolValue: expected true or false");
    TO_PROTO_ERR(T, ATTR("\"boolValue\":1"), -EINVAL, "expected true or false");
    TO_PROTO_ERR(T, ATTR("\"stringValue\":5"), -EINVAL, "stringValue: expected a string");
    TO_PROTO_ERR(T, ATTR("\"arrayValue\":[]"), -EINVAL, "arrayValue: expected an object");
    TO_PROTO_ERR(T, ATTR("\"arrayValue\":{\"values\":{}}"), -EINVAL,
                 ATTR_PATH "arrayValue.values: expected an array");
    TO_PROTO_ERR(T, ATTR("\"arrayValue\":{\"values\":[null]}"), -EINVAL,
                 "values[0]: null is not allowed");
    TO_PROTO_ERR(T, ATTR("\"stringValue\":\"a\",\"intValue\":1"), -EINVAL,
                 "intValue: oneof already set by \"stringValue\"");
    TO_PROTO_ERR(T, SPAN("\"name\":\"a\",\"name\":\"b\""), -EINVAL,
                 SPAN_PATH "name: duplicate field");
    TO_PROTO_ERR(T, SPAN("\"traceId\":\"\",\"trace_id\":\"\""), -EINVAL,
                 "trace_id: duplicate field");
    TO_PROTO_ERR(T, SPAN("\"status\":\"x\""), -EINVAL, "status: expected an object");
    TO_PROTO_ERR(T, "{\"resourceSpans\":{}}", -EINVAL, "resourceSpans: expected an array");
    TO_PROTO_ERR(T, "{\"resourceSpans\":[5]}", -EINVAL, "resourceSpans[0]: expected an object");
}

static void test_errors_syntax(void **state)
{
    (void)state;
    const enum otlp_signal T = OTLP_TRACES;
    TO_PROTO_ERR(T, "", -EINVAL, "invalid JSON at offset 0: empty body");
    TO_PROTO_ERR(T, "   ", -EINVAL, "invalid JSON at offset 3: empty body");
    TO_PROTO_ERR(T, "[]", -EINVAL, "expected a JSON object");
    TO_PROTO_ERR(T, "null", -EINVAL, "expected a JSON object");
    TO_PROTO_ERR(T, "{", -EINVAL, "invalid JSON at offset 1");
    TO_PROTO_ERR(T, "{\"resourceSpans\"", -EINVAL, "expected ':'");
    TO_PROTO_ERR(T, "{\"resourceSpans\":", -EINVAL, "expected a value");
    TO_PROTO_ERR(T, "{\"resourceSpans\":[", -EINVAL, "unterminated array");
    TO_PROTO_ERR(T, "{\"resourceSpans\":[],}", -EINVAL, "expected a key string");
    TO_PROTO_ERR(T, "{\"resourceSpans\":[{},]}", -EINVAL, "expected an object");
    TO_PROTO_ERR(T, "{\"resourceSpans\":[] \"x\":1}", -EINVAL, "expected ',' or '}'");
    TO_PROTO_ERR(T, "{\"resourceSpans\":[{} {}]}", -EINVAL, "expected ',' or ']'");
    TO_PROTO_ERR(T, "{} {}", -EINVAL, "trailing characters");
    TO_PROTO_ERR(T, "{}x", -EINVAL, "invalid JSON at offset 2: trailing characters");
    TO_PROTO_ERR(T, "{'a':1}", -EINVAL, "expected a key string");
    TO_PROTO_ERR(T, "{\"x\":tru}", -EINVAL, "x: invalid JSON at offset 5: invalid literal");
    TO_PROTO_ERR(T, "{\"x\":nul}", -EINVAL, "invalid literal");
    TO_PROTO_ERR(T, "{\"x\":01}", -EINVAL, "expected ',' or '}'");
    TO_PROTO_ERR(T, "{\"x\":1.}", -EINVAL, "invalid value");
    TO_PROTO_ERR(T, "{\"x\":-}", -EINVAL, "invalid value");
    TO_PROTO_ERR(T, "{\"x\":+1}", -EINVAL, "invalid value");
    TO_PROTO_ERR(T, "{\"x\":.5}", -EINVAL, "invalid value");
    TO_PROTO_ERR(T, "{\"x\":1e}", -EINVAL, "invalid value");
    TO_PROTO_ERR(T, "{\"x\":NaN}", -EINVAL, "invalid value");
    TO_PROTO_ERR(T, SPAN("\"droppedLinksCount\":01"), -EINVAL, "expected ',' or '}'");
    TO_PROTO_ERR(T, SPAN("\"droppedLinksCount\":-"), -EINVAL, "invalid number");
    TO_PROTO_ERR(T, "{\"x\":\"abc}", -EINVAL, "unterminated string");
    TO_PROTO_ERR(T, "{\"x\":\"a\\qb\"}", -EINVAL, "invalid escape");
    TO_PROTO_ERR(T, "{\"x\":\"a\\u12\"}", -EINVAL, "invalid \\u escape");
    TO_PROTO_ERR(T, "{\"x\":\"\\ud800\"}", -EINVAL, "lone UTF-16 surrogate");
    TO_PROTO_ERR(T, "{\"x\":\"\\ud800\\u0041\"}", -EINVAL, "lone UTF-16 surrogate");
    TO_PROTO_ERR(T, "{\"x\":\"\\udc00\\ud800\"}", -EINVAL, "lone UTF-16 surrogate");
    TO_PROTO_ERR(T, "{\"x\":\"a\tb\"}", -EINVAL, "control character in string");
    TO_PROTO_ERR(T, "{\"x\":\"\xff\"}", -EINVAL, "invalid UTF-8");
    TO_PROTO_ERR(T, "{\"x\":\"\xc0\xaf\"}", -EINVAL, "invalid UTF-8");         /* overlong '/' */
    TO_PROTO_ERR(T, "{\"x\":\"\xe0\x80\xaf\"}", -EINVAL, "invalid UTF-8");     /* overlong */
    TO_PROTO_ERR(T, "{\"x\":\"\xed\xa0\x80\"}", -EINVAL, "invalid UTF-8");     /* surrogate */
    TO_PROTO_ERR(T, "{\"x\":\"\xf4\x90\x80\x80\"}", -EINVAL, "invalid UTF-8"); /* > U+10FFFF */
    TO_PROTO_ERR(T, "{\"x\":\"\xe2\x82\"}", -EINVAL, "invalid UTF-8");         /* truncated */
    TO_PROTO_ERR(T, SPAN("\"name\":\"ok\xe2\x82\""), -EINVAL, SPAN_PATH "name: invalid JSON");
    TO_PROTO_ERR(T, "{\"\xff\":1}", -EINVAL, "invalid UTF-8");
    /* NUL inside the buffer is data, not the end */
    to_proto_err(T, "{\"x\":1}\0", 8, -EINVAL, "trailing characters");
    to_proto_err(T, "{\"x\":\"\0\"}", 9, -EINVAL, "control character");
}

/* A path that does not fit the error buffer is cut, never overrun. */
static void test_errors_small_buffer(void **state)
{
    (void)state;
    char small[16];
    memset(small, 'z', sizeof(small));
    buf_reset(&pb_out);
    const char *js = SPAN("\"traceId\":\"abc\"");
    assert_int_equal(otlp_json_to_proto(OTLP_TRACES, js, strlen(js), &pb_out, small, 8), -EINVAL);
    assert_int_equal(strlen(small), 7);
    assert_int_equal(small[8], 'z');
    assert_int_equal(otlp_json_to_proto(OTLP_TRACES, js, strlen(js), &pb_out, NULL, 0), -EINVAL);
    assert_int_equal(otlp_json_to_proto(OTLP_TRACES, js, strlen(js), &pb_out, small, 0), -EINVAL);
    assert_int_equal(small[0], 'r');
}

static char *repeat(const char *head, const char *unit, size_t n, const char *mid,
                    const char *unit_close, const char *tail)
{
    size_t len =
        strlen(head) + n * (strlen(unit) + strlen(unit_close)) + strlen(mid) + strlen(tail) + 1;
    char *s = malloc(len), *p = s;
    assert_non_null(s);
    p = stpcpy(p, head);
    for (size_t i = 0; i < n; i++)
        p = stpcpy(p, unit);
    p = stpcpy(p, mid);
    for (size_t i = 0; i < n; i++)
        p = stpcpy(p, unit_close);
    stpcpy(p, tail);
    return s;
}

static void test_depth_limit(void **state)
{
    (void)state;
    /* n nested arrayValues reach depth 9 + 3n + 1: 18 is the most that fits */
    char *s =
        repeat("{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"attributes\":[{\"key\":"
               "\"k\",\"value\":",
               "{\"arrayValue\":{\"values\":[", 18, "{\"intValue\":\"1\"}", "]}}", "}]}]}]}]}");
    TO_PROTO_OK(OTLP_TRACES, s);
    to_json_ok(OTLP_TRACES, pb_out.data, pb_out.len);
    assert_json_str(&json_out, s);
    free(s);
    s = repeat("{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"attributes\":[{\"key\":"
               "\"k\",\"value\":",
               "{\"arrayValue\":{\"values\":[", 19, "{\"intValue\":1}", "]}}", "}]}]}]}]}");
    TO_PROTO_ERR(OTLP_TRACES, s, -EINVAL, "nesting deeper than 64 levels");
    free(s);
    /* unknown values are bounded too: no recursion without a limit */
    s = repeat("{\"x\":", "[", 100000, "", "]", "}");
    TO_PROTO_ERR(OTLP_TRACES, s, -EINVAL, "x: nesting deeper than 64 levels");
    free(s);
    s = repeat("{\"x\":", "{\"a\":", 100000, "1", "}", "}");
    TO_PROTO_ERR(OTLP_TRACES, s, -EINVAL, "nesting deeper than 64 levels");
    free(s);
    /* a protobuf nested deeper than JSON may go is refused on output:
     * 22 levels of AnyValue{arrayValue{values[...]}} are 66 JSON levels */
    enum { LEVELS = 22 };
    AnyValue av[LEVELS + 1];
    Opentelemetry__Proto__Common__V1__ArrayValue arr[LEVELS];
    AnyValue *avp[LEVELS + 1];
    for (int i = 0; i <= LEVELS; i++) {
        opentelemetry__proto__common__v1__any_value__init(&av[i]);
        avp[i] = &av[i];
    }
    for (int i = 0; i < LEVELS; i++) {
        opentelemetry__proto__common__v1__array_value__init(&arr[i]);
        arr[i].n_values = 1;
        arr[i].values = &avp[i + 1];
        av[i].value_case = AV(ARRAY_VALUE);
        av[i].array_value = &arr[i];
    }
    av[LEVELS].value_case = AV(INT_VALUE);
    av[LEVELS].int_value = 1;
    for (int levels = 21; levels <= LEVELS; levels++) {
        uint8_t wire[512];
        size_t n = opentelemetry__proto__common__v1__any_value__pack(&av[LEVELS - levels], wire);
        buf_reset(&json_out);
        int rc = otlp_proto_to_json_desc(&opentelemetry__proto__common__v1__any_value__descriptor,
                                         wire, n, &json_out);
        /* 21 levels: 63 + the innermost {}: exactly 64 */
        assert_int_equal(rc, levels == 21 ? 0 : -EINVAL);
        if (rc == 0) {
            struct buf back;
            assert_int_equal(buf_init(&back, 0, 0), 0);
            assert_int_equal(
                otlp_json_to_proto_desc(&opentelemetry__proto__common__v1__any_value__descriptor,
                                        (char *)json_out.data, json_out.len, &back, errbuf,
                                        sizeof(errbuf)),
                0);
            assert_int_equal(back.len, n);
            assert_memory_equal(back.data, wire, n);
            buf_free(&back);
        } else {
            assert_int_equal(json_out.len, 0);
        }
    }
}

static void test_huge_arrays_and_limits(void **state)
{
    (void)state;
    /* 100k attributes convert; a 64 KiB output limit stops them cleanly */
    char *s = repeat("{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"attributes\":[",
                     "{\"key\":\"k\",\"value\":{\"intValue\":1}},", 100000,
                     "{\"key\":\"last\",\"value\":{\"boolValue\":true}}", "", "]}]}]}]}");
    TO_PROTO_OK(OTLP_TRACES, s);
    TraceReq *req =
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
            NULL, pb_out.len, pb_out.data);
    assert_non_null(req);
    assert_int_equal(req->resource_spans[0]->scope_spans[0]->spans[0]->n_attributes, 100001);
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req,
                                                                                            NULL);
    struct buf lim;
    assert_int_equal(buf_init(&lim, 0, 65536), 0);
    assert_int_equal(buf_append(&lim, "ab", 2), 0);
    assert_int_equal(otlp_json_to_proto(OTLP_TRACES, s, strlen(s), &lim, errbuf, sizeof(errbuf)),
                     -EMSGSIZE);
    assert_non_null(strstr(errbuf, "exceeds 65536 bytes"));
    assert_int_equal(lim.len, 2);
    assert_int_equal(otlp_proto_to_json(OTLP_TRACES, pb_out.data, pb_out.len, &lim), -EMSGSIZE);
    assert_int_equal(lim.len, 2);
    buf_free(&lim);
    free(s);
    /* a packed array of 200k numbers */
    s = repeat("{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[{\"histogram\":{"
               "\"dataPoints\":[{\"bucketCounts\":[",
               "7,", 200000, "8", "", "]}]}}]}]}]}");
    TO_PROTO_OK(OTLP_METRICS, s);
    MetricsReq *m =
        opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__unpack(
            NULL, pb_out.len, pb_out.data);
    assert_non_null(m);
    Opentelemetry__Proto__Metrics__V1__HistogramDataPoint *hp =
        m->resource_metrics[0]->scope_metrics[0]->metrics[0]->histogram->data_points[0];
    assert_int_equal(hp->n_bucket_counts, 200001);
    assert_true(hp->bucket_counts[200000] == 8);
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__free_unpacked(
        m, NULL);
    free(s);
}

/* Every proper prefix of a valid body is an error, never a crash. */
static void test_truncated_inputs(void **state)
{
    (void)state;
    const char *samples[] = {trace_json, metrics_json, logs_json};
    for (int sig = 0; sig < 3; sig++) {
        size_t n = strlen(samples[sig]);
        for (size_t i = 0; i < n; i++) {
            buf_reset(&pb_out);
            int rc = otlp_json_to_proto((enum otlp_signal)sig, samples[sig], i, &pb_out, errbuf,
                                        sizeof(errbuf));
            assert_int_equal(rc, -EINVAL);
            assert_int_equal(pb_out.len, 0);
        }
        /* protobuf prefixes: valid or -EINVAL, never more */
        TO_PROTO_OK((enum otlp_signal)sig, samples[sig]);
        struct buf pb;
        assert_int_equal(buf_init(&pb, 0, 0), 0);
        assert_int_equal(buf_append(&pb, pb_out.data, pb_out.len), 0);
        for (size_t i = 0; i < pb.len; i++) {
            buf_reset(&json_out);
            int rc = otlp_proto_to_json((enum otlp_signal)sig, pb.data, i, &json_out);
            assert_true(rc == 0 || rc == -EINVAL);
            if (rc == 0) /* whatever converts converts back */
                to_proto_ok((enum otlp_signal)sig, (const char *)json_out.data, json_out.len);
        }
        buf_free(&pb);
    }
}

/* ------------------------------------------------------------------------ */
/* protobuf -> JSON on hand-made wire bytes */

struct wire {
    uint8_t b[512];
    size_t n;
};

static void w_varint(struct wire *w, uint64_t v)
{
    while (v >= 0x80) {
        w->b[w->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    w->b[w->n++] = (uint8_t)v;
}

static void w_tag(struct wire *w, unsigned num, unsigned wt)
{
    w_varint(w, (uint64_t)num << 3 | wt);
}

static void w_bytes(struct wire *w, unsigned num, const void *p, size_t n)
{
    w_tag(w, num, 2);
    w_varint(w, n);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void w_str(struct wire *w, unsigned num, const char *s)
{
    w_bytes(w, num, s, strlen(s));
}

static void span_to_json(const struct wire *span, const char *want)
{
    struct wire ss = {0}, rs = {0}, req = {0};
    w_bytes(&ss, 2, span->b, span->n);
    w_bytes(&rs, 2, ss.b, ss.n);
    w_bytes(&req, 1, rs.b, rs.n);
    to_json_ok(OTLP_TRACES, req.b, req.n);
    char full[2048];
    snprintf(full, sizeof(full), "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[%s]}]}]}", want);
    assert_json_str(&json_out, full);
    /* and it reads back to the same JSON */
    to_proto_ok(OTLP_TRACES, (const char *)json_out.data, json_out.len);
    to_json_ok(OTLP_TRACES, pb_out.data, pb_out.len);
    assert_json_str(&json_out, full);
}

static int span_to_json_rc(const struct wire *span)
{
    struct wire ss = {0}, rs = {0}, req = {0};
    w_bytes(&ss, 2, span->b, span->n);
    w_bytes(&rs, 2, ss.b, ss.n);
    w_bytes(&req, 1, rs.b, rs.n);
    buf_reset(&json_out);
    buf_append(&json_out, "x", 1);
    int rc = otlp_proto_to_json(OTLP_TRACES, req.b, req.n, &json_out);
    if (rc != 0)
        assert_int_equal(json_out.len, 1);
    return rc;
}

/* Merge rules of a protobuf parser: last scalar wins, repeated fields gather,
 * messages merge, last oneof member wins, unknown fields and wrong wire types
 * are skipped, packed and unpacked both read. */
static void test_wire_semantics(void **state)
{
    (void)state;
    struct wire sp = {0}, kv = {0}, av = {0}, st = {0};
    w_str(&sp, 5, "first");
    /* attribute 1 */
    w_str(&av, 1, "s");
    w_tag(&av, 3, 0); /* int_value after string_value: int wins */
    w_varint(&av, (uint64_t)-5);
    w_str(&kv, 1, "a");
    w_bytes(&kv, 2, av.b, av.n);
    w_bytes(&sp, 9, kv.b, kv.n);
    /* status in two parts */
    w_str(&st, 2, "msg");
    w_bytes(&sp, 15, st.b, st.n);
    st.n = 0;
    w_tag(&st, 3, 0);
    w_varint(&st, 2);
    w_bytes(&sp, 15, st.b, st.n);
    /* unknown field 100 of each wire type; kind with the wrong wire type */
    w_tag(&sp, 100, 0);
    w_varint(&sp, 1);
    w_tag(&sp, 101, 1);
    memset(sp.b + sp.n, 0, 8);
    sp.n += 8;
    w_str(&sp, 102, "zz");
    w_tag(&sp, 103, 5);
    memset(sp.b + sp.n, 0, 4);
    sp.n += 4;
    w_str(&sp, 6, "not a varint");
    /* attribute 2, after other fields */
    kv.n = 0;
    av.n = 0;
    w_tag(&av, 2, 0);
    w_varint(&av, 7); /* any non-zero bool is true */
    w_str(&kv, 1, "b");
    w_bytes(&kv, 2, av.b, av.n);
    w_bytes(&sp, 9, kv.b, kv.n);
    w_str(&sp, 5, "second");
    /* int32-ish fields from 10-byte varints: dropped_attributes_count */
    w_tag(&sp, 10, 0);
    w_varint(&sp, 0xffffffff00000003ull);
    span_to_json(
        &sp, "{\"name\":\"second\",\"attributes\":[{\"key\":\"a\",\"value\":{\"intValue\":\"-5\"}},"
             "{\"key\":\"b\",\"value\":{\"boolValue\":true}}],"
             "\"status\":{\"message\":\"msg\",\"code\":2},\"droppedAttributesCount\":3}");

    /* oneof: a message member, replaced, then set again: only the last part */
    sp.n = 0;
    kv.n = 0;
    av.n = 0;
    struct wire arr = {0}, one = {0};
    w_tag(&one, 3, 0);
    w_varint(&one, 1);
    w_bytes(&arr, 1, one.b, one.n);
    w_bytes(&av, 5, arr.b, arr.n); /* arrayValue [1] */
    w_str(&av, 1, "gone");         /* replaced by a string */
    w_bytes(&av, 5, arr.b, arr.n); /* arrayValue [1] again */
    w_bytes(&av, 5, arr.b, arr.n); /* merged: [1, 1] */
    w_str(&kv, 1, "k");
    w_bytes(&kv, 2, av.b, av.n);
    w_bytes(&sp, 9, kv.b, kv.n);
    span_to_json(&sp, "{\"attributes\":[{\"key\":\"k\",\"value\":{\"arrayValue\":{\"values\":"
                      "[{\"intValue\":\"1\"},{\"intValue\":\"1\"}]}}}]}");

    /* defaults without presence vanish; present oneof zeros stay */
    sp.n = 0;
    w_tag(&sp, 6, 0);
    w_varint(&sp, 0);
    w_str(&sp, 5, "");
    w_bytes(&sp, 1, "", 0);
    w_tag(&sp, 7, 1);
    memset(sp.b + sp.n, 0, 8);
    sp.n += 8;
    kv.n = 0;
    av.n = 0;
    w_str(&av, 1, "");
    w_bytes(&kv, 2, av.b, av.n);
    w_bytes(&sp, 9, kv.b, kv.n);
    span_to_json(&sp, "{\"attributes\":[{\"value\":{\"stringValue\":\"\"}}]}");

    /* malformed */
    struct wire bad = {0};
    w_bytes(&bad, 1, "\x01\x02\x03", 3); /* short id: written as hex, the validator judges */
    assert_int_equal(span_to_json_rc(&bad), 0);
    bad.n = 0;
    w_bytes(&bad, 1, "0123456789abcdef0123456789abcdef0", 33); /* longer than any id */
    assert_int_equal(span_to_json_rc(&bad), -EINVAL);
    bad.n = 0;
    w_str(&bad, 5, "\xc3\x28"); /* invalid UTF-8 */
    assert_int_equal(span_to_json_rc(&bad), -EINVAL);
    bad.n = 0;
    w_tag(&bad, 5, 2);
    w_varint(&bad, 100); /* past the end */
    assert_int_equal(span_to_json_rc(&bad), -EINVAL);
    bad.n = 0;
    w_tag(&bad, 0, 0); /* field 0 */
    w_varint(&bad, 1);
    assert_int_equal(span_to_json_rc(&bad), -EINVAL);
    bad.n = 0;
    w_tag(&bad, 5, 3); /* group */
    assert_int_equal(span_to_json_rc(&bad), -EINVAL);
    bad.n = 0;
    w_tag(&bad, 5, 7);
    assert_int_equal(span_to_json_rc(&bad), -EINVAL);
    bad.n = 0;
    w_tag(&bad, 10, 0);
    memcpy(bad.b + bad.n, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11); /* 11-byte varint */
    bad.n += 11;
    assert_int_equal(span_to_json_rc(&bad), -EINVAL);
    bad.n = 0;
    w_tag(&bad, 7, 1);
    bad.b[bad.n++] = 0; /* truncated fixed64 */
    assert_int_equal(span_to_json_rc(&bad), -EINVAL);
    /* an unknown field's contents are never looked at, only its framing */
    bad.n = 0;
    w_str(&bad, 99, "\xff\xfe");
    assert_int_equal(span_to_json_rc(&bad), 0);
}

static void test_wire_packed_unpacked(void **state)
{
    (void)state;
    struct wire dp = {0}, h = {0}, m = {0}, sm = {0}, rm = {0}, req = {0};
    uint8_t le[16] = {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0};
    w_bytes(&dp, 6, le, 16); /* bucket_counts packed [1,2] */
    w_tag(&dp, 6, 1);        /* then one unpacked 3 */
    uint8_t three[8] = {3};
    memcpy(dp.b + dp.n, three, 8);
    dp.n += 8;
    w_bytes(&dp, 6, "", 0); /* empty packed run */
    w_bytes(&dp, 7, "", 0); /* explicit_bounds: empty packed run only */
    w_bytes(&h, 1, dp.b, dp.n);
    w_bytes(&m, 9, h.b, h.n);
    w_bytes(&sm, 2, m.b, m.n);
    w_bytes(&rm, 2, sm.b, sm.n);
    w_bytes(&req, 1, rm.b, rm.n);
    to_json_ok(OTLP_METRICS, req.b, req.n);
    assert_json_str(&json_out,
                    "{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[{\"histogram\":"
                    "{\"dataPoints\":[{\"bucketCounts\":[\"1\",\"2\",\"3\"]}]}}]}]}]}");
    /* a packed run whose length is not a multiple of 8 */
    dp.n = 0;
    w_bytes(&dp, 6, le, 9);
    h.n = m.n = sm.n = rm.n = req.n = 0;
    w_bytes(&h, 1, dp.b, dp.n);
    w_bytes(&m, 9, h.b, h.n);
    w_bytes(&sm, 2, m.b, m.n);
    w_bytes(&rm, 2, sm.b, sm.n);
    w_bytes(&req, 1, rm.b, rm.n);
    buf_reset(&json_out);
    assert_int_equal(otlp_proto_to_json(OTLP_METRICS, req.b, req.n, &json_out), -EINVAL);
}

/* Repeated occurrences of a singular message merge through copies; nested
 * merges may not hold more than the input size at once. */
static void test_wire_merge_limit(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &opentelemetry__proto__common__v1__any_value__descriptor;
    struct wire inner = {0}, x = {0}, dup = {0}, l1 = {0}, top = {0};
    w_tag(&inner, 3, 0);
    w_varint(&inner, 1);              /* AnyValue{int_value: 1} */
    w_bytes(&x, 1, inner.b, inner.n); /* ArrayValue{values: [inner]} */
    w_bytes(&dup, 5, x.b, x.n);       /* AnyValue{array_value: x, array_value: x} */
    w_bytes(&dup, 5, x.b, x.n);
    w_bytes(&l1, 1, dup.b, dup.n); /* ArrayValue{values: [dup]} */
    w_bytes(&top, 5, l1.b, l1.n);  /* one level of merging: fine */
    buf_reset(&json_out);
    assert_int_equal(otlp_proto_to_json_desc(d, top.b, top.n, &json_out), 0);
    assert_json_str(&json_out, "{\"arrayValue\":{\"values\":[{\"arrayValue\":{\"values\":"
                               "[{\"intValue\":\"1\"},{\"intValue\":\"1\"}]}}]}}");
    w_bytes(&top, 5, l1.b, l1.n); /* merged copies inside merged copies */
    buf_reset(&json_out);
    assert_int_equal(otlp_proto_to_json_desc(d, top.b, top.n, &json_out), -EMSGSIZE);
    assert_int_equal(json_out.len, 0);
}

/* Messages built in C and packed by protobuf-c round-trip byte for byte. */
static void test_pack_roundtrip_built(void **state)
{
    (void)state;
    Opentelemetry__Proto__Common__V1__AnyValue vals[6];
    Opentelemetry__Proto__Common__V1__KeyValue kvs[6];
    Opentelemetry__Proto__Common__V1__KeyValue *kvp[6];
    for (int i = 0; i < 6; i++) {
        opentelemetry__proto__common__v1__any_value__init(&vals[i]);
        opentelemetry__proto__common__v1__key_value__init(&kvs[i]);
        kvs[i].value = &vals[i];
        kvp[i] = &kvs[i];
    }
    kvs[0].key = "i";
    vals[0].value_case = AV(INT_VALUE);
    vals[0].int_value = -1;
    kvs[1].key = "d";
    vals[1].value_case = AV(DOUBLE_VALUE);
    vals[1].double_value = -1.0 / 3.0;
    kvs[2].key = "s";
    vals[2].value_case = AV(STRING_VALUE);
    vals[2].string_value = "tab\there \"quoted\" \\ \x7f \xe2\x80\xa8";
    kvs[3].key = "b";
    vals[3].value_case = AV(BYTES_VALUE);
    vals[3].bytes_value.data = (uint8_t *)"\x00\xff\x10\x20";
    vals[3].bytes_value.len = 4;
    kvs[4].key = "";
    vals[4].value_case = AV(BOOL_VALUE);
    vals[4].bool_value = 1;
    kvs[5].key = "none"; /* AnyValue with nothing set */

    Opentelemetry__Proto__Trace__V1__Span span;
    opentelemetry__proto__trace__v1__span__init(&span);
    span.trace_id.data = (uint8_t *)trace_id;
    span.trace_id.len = 16;
    span.span_id.data = (uint8_t *)span_id;
    span.span_id.len = 8;
    span.name = "built";
    span.kind = 5;
    span.start_time_unix_nano = 1;
    span.end_time_unix_nano = UINT64_MAX;
    span.n_attributes = 6;
    span.attributes = kvp;
    span.dropped_links_count = 9;
    span.flags = 0x300;
    Opentelemetry__Proto__Trace__V1__ScopeSpans ss;
    opentelemetry__proto__trace__v1__scope_spans__init(&ss);
    Opentelemetry__Proto__Trace__V1__Span *spp = &span;
    ss.n_spans = 1;
    ss.spans = &spp;
    ss.schema_url = "https://opentelemetry.io/schemas/1.24.0";
    Opentelemetry__Proto__Trace__V1__ResourceSpans rs;
    opentelemetry__proto__trace__v1__resource_spans__init(&rs);
    Opentelemetry__Proto__Trace__V1__ScopeSpans *ssp = &ss;
    rs.n_scope_spans = 1;
    rs.scope_spans = &ssp;
    Opentelemetry__Proto__Resource__V1__Resource res;
    opentelemetry__proto__resource__v1__resource__init(&res);
    rs.resource = &res; /* empty but present */
    TraceReq req;
    opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(&req);
    Opentelemetry__Proto__Trace__V1__ResourceSpans *rsp = &rs;
    req.n_resource_spans = 1;
    req.resource_spans = &rsp;
    assert_pack_roundtrip(OTLP_TRACES, &req.base);
    assert_contains(&json_out, "\"resource\":{}");
    assert_contains(&json_out, "\"doubleValue\":-0.3333333333333333}");
    assert_contains(&json_out, "\"bytesValue\":\"AP8QIA==\"");
    assert_contains(&json_out, "{\"key\":\"none\",\"value\":{}}");

    /* an entity ref: repeated strings, unpacked, empty elements kept */
    Opentelemetry__Proto__Common__V1__EntityRef er;
    opentelemetry__proto__common__v1__entity_ref__init(&er);
    char *ids[] = {"a", "", "c"};
    er.n_id_keys = 3;
    er.id_keys = ids;
    er.type = "service";
    Opentelemetry__Proto__Common__V1__EntityRef *erp = &er;
    res.n_entity_refs = 1;
    res.entity_refs = &erp;
    assert_pack_roundtrip(OTLP_TRACES, &req.base);
    assert_contains(&json_out, "\"idKeys\":[\"a\",\"\",\"c\"]");
}

/* ------------------------------------------------------------------------ */
/* Throughput (OTLP_JSON_BENCH=1): a 100-span request as the JS SDK sends it. */

static void test_bench(void **state)
{
    (void)state;
    if (getenv("OTLP_JSON_BENCH") == NULL)
        skip();
    struct buf js;
    assert_int_equal(buf_init(&js, 0, 0), 0);
    buf_append_str(&js,
                   "{\"resourceSpans\":[{\"resource\":{\"attributes\":["
                   "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"checkout-web\"}},"
                   "{\"key\":\"telemetry.sdk.language\",\"value\":{\"stringValue\":\"webjs\"}},"
                   "{\"key\":\"telemetry.sdk.version\",\"value\":{\"stringValue\":\"1.25.1\"}}],"
                   "\"droppedAttributesCount\":0},\"scopeSpans\":[{\"scope\":{\"name\":"
                   "\"@opentelemetry/instrumentation-fetch\",\"version\":\"0.52.1\"},\"spans\":[");
    for (int i = 0; i < 100; i++)
        buf_printf(
            &js,
            "%s{\"traceId\":\"5b8efff798038103d269b633813fc60c\",\"spanId\":\"eee19b7ec3c1b%03x\","
            "\"parentSpanId\":\"eee19b7ec3c1b173\",\"name\":\"HTTP GET /api/items/%d\",\"kind\":3,"
            "\"startTimeUnixNano\":\"17000000000%08d\",\"endTimeUnixNano\":\"17000000001%08d\","
            "\"attributes\":[{\"key\":\"http.method\",\"value\":{\"stringValue\":\"GET\"}},"
            "{\"key\":\"http.url\",\"value\":{\"stringValue\":\"https://shop.example.com/api/items/"
            "%d?x=1\"}},"
            "{\"key\":\"http.status_code\",\"value\":{\"intValue\":200}},"
            "{\"key\":\"http.response_content_length\",\"value\":{\"intValue\":%d}},"
            "{\"key\":\"component\",\"value\":{\"stringValue\":\"fetch\"}},"
            "{\"key\":\"http.user_agent\",\"value\":{\"stringValue\":\"Mozilla/5.0 (X11; Linux "
            "x86_64)\"}}],"
            "\"droppedAttributesCount\":0,\"events\":[{\"attributes\":[],\"name\":\"fetchStart\","
            "\"timeUnixNano\":\"17000000000%08d\",\"droppedAttributesCount\":0},"
            "{\"attributes\":[],\"name\":\"responseEnd\",\"timeUnixNano\":\"17000000001%08d\","
            "\"droppedAttributesCount\":0}],\"droppedEventsCount\":0,\"status\":{\"code\":0},"
            "\"links\":[],\"droppedLinksCount\":0}",
            i ? "," : "", i, i, i, i, i, i * 37, i, i);
    buf_append_str(&js, "]}]}]}");
    struct buf pb;
    assert_int_equal(buf_init(&pb, 1 << 20, 0), 0);
    assert_int_equal(otlp_json_to_proto(OTLP_TRACES, (char *)js.data, js.len, &pb, NULL, 0), 0);
    /* best of 5 runs: the numbers are for a quiet core */
    int iters = 4000;
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        uint64_t t0 = base_now_ns();
        for (int i = 0; i < iters; i++) {
            buf_reset(&pb);
            otlp_json_to_proto(OTLP_TRACES, (char *)js.data, js.len, &pb, NULL, 0);
        }
        best = BASE_MIN(best, (double)(base_now_ns() - t0) / 1e9);
    }
    printf("json->proto: %zu B JSON -> %zu B protobuf, %.0f MB/s, %.2f M spans/s\n", js.len, pb.len,
           (double)js.len * iters / best / 1e6, 100.0 * iters / best / 1e6);
    struct buf out;
    assert_int_equal(buf_init(&out, 1 << 20, 0), 0);
    best = 1e9;
    for (int r = 0; r < 5; r++) {
        uint64_t t0 = base_now_ns();
        for (int i = 0; i < iters; i++) {
            buf_reset(&out);
            otlp_proto_to_json(OTLP_TRACES, pb.data, pb.len, &out);
        }
        best = BASE_MIN(best, (double)(base_now_ns() - t0) / 1e9);
    }
    printf("proto->json: %.0f MB/s of JSON out, %.2f M spans/s\n",
           (double)out.len * iters / best / 1e6, 100.0 * iters / best / 1e6);
    uint64_t t0;
    double s;
    t0 = base_now_ns();
    for (int i = 0; i < iters / 4; i++) {
        json_t *j = json_loadb((char *)js.data, js.len, 0, NULL);
        json_decref(j);
    }
    s = (double)(base_now_ns() - t0) / 1e9;
    printf("for reference, jansson json_loadb alone: %.0f MB/s\n",
           (double)js.len * (iters / 4) / s / 1e6);
    buf_free(&out);
    buf_free(&pb);
    buf_free(&js);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traces_sample),
        cmocka_unit_test(test_traces_exact_output),
        cmocka_unit_test(test_traces_lenient_input),
        cmocka_unit_test(test_value_edges),
        cmocka_unit_test(test_metrics_sample),
        cmocka_unit_test(test_metrics_packed_wire),
        cmocka_unit_test(test_logs_sample),
        cmocka_unit_test(test_response_desc),
        cmocka_unit_test(test_errors_types),
        cmocka_unit_test(test_errors_syntax),
        cmocka_unit_test(test_errors_small_buffer),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_huge_arrays_and_limits),
        cmocka_unit_test(test_truncated_inputs),
        cmocka_unit_test(test_wire_semantics),
        cmocka_unit_test(test_wire_packed_unpacked),
        cmocka_unit_test(test_wire_merge_limit),
        cmocka_unit_test(test_pack_roundtrip_built),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
