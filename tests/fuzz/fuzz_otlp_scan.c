/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for lib/otlp/otlp_scan.c and otlp_batch.c: the input is
 * scanned as each signal; whatever the scanner accepts must decode with
 * protobuf-c with the same item count, and the batch built from it (with
 * resource attributes spliced in) must decode too, hold exactly the
 * accepted items, carry every configured attribute once, and scan clean. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "otlp/otlp_batch.h"
#include "otlp/otlp_scan.h"

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                               \
        }                                                                          \
    } while (0)

static const char *const attr_keys[] = {"host.name", "service.instance.id"};
static const char *const attr_vals[] = {"gw-1", "\xc3\xa9-42"};
#define N_ATTRS 2

typedef Opentelemetry__Proto__Resource__V1__Resource Resource;

/* Each configured attribute exactly once, with its value. A NULL resource
 * is a failure when attributes are spliced (one must have been added). */
static void check_resource(const Resource *r)
{
    CHECK(r != NULL);
    for (unsigned i = 0; i < N_ATTRS; i++) {
        unsigned found = 0;
        for (size_t j = 0; j < r->n_attributes; j++) {
            const Opentelemetry__Proto__Common__V1__KeyValue *kv = r->attributes[j];
            if (strcmp(kv->key, attr_keys[i]) != 0)
                continue;
            found++;
            CHECK(kv->value != NULL);
            CHECK(kv->value->value_case ==
                  OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE);
            CHECK(strcmp(kv->value->string_value, attr_vals[i]) == 0);
        }
        CHECK(found == 1);
    }
}

static bool all_zero(const ProtobufCBinaryData *b)
{
    for (size_t i = 0; i < b->len; i++)
        if (b->data[i] != 0)
            return false;
    return true;
}

/*
 * Decode buf as `sig`, count items and resources. With `batch` set, also
 * check what only holds for a batch: the spliced attributes and the id
 * rules (rejected entries never get in). Returns false when protobuf-c
 * refuses the bytes.
 */
static bool decode(enum otlp_signal sig, const uint8_t *buf, size_t len, bool batch,
                   uint64_t *items, uint64_t *resources)
{
    *items = *resources = 0;
    if (sig == OTLP_TRACES) {
        Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *r =
            opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
                NULL, len, buf);
        if (r == NULL)
            return false;
        *resources = r->n_resource_spans;
        for (size_t i = 0; i < r->n_resource_spans; i++) {
            const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = r->resource_spans[i];
            if (batch)
                check_resource(rs->resource);
            for (size_t j = 0; j < rs->n_scope_spans; j++) {
                const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = rs->scope_spans[j];
                *items += ss->n_spans;
                for (size_t k = 0; batch && k < ss->n_spans; k++) {
                    const Opentelemetry__Proto__Trace__V1__Span *s = ss->spans[k];
                    CHECK(s->trace_id.len == 16 && !all_zero(&s->trace_id));
                    CHECK(s->span_id.len == 8 && !all_zero(&s->span_id));
                    CHECK(s->parent_span_id.len == 0 || s->parent_span_id.len == 8);
                    for (size_t l = 0; l < s->n_links; l++)
                        CHECK(s->links[l]->trace_id.len == 16 && s->links[l]->span_id.len == 8);
                }
            }
        }
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(r, NULL);
    } else if (sig == OTLP_METRICS) {
        Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest *r =
            opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__unpack(
                NULL, len, buf);
        if (r == NULL)
            return false;
        *resources = r->n_resource_metrics;
        for (size_t i = 0; i < r->n_resource_metrics; i++) {
            const Opentelemetry__Proto__Metrics__V1__ResourceMetrics *rm = r->resource_metrics[i];
            if (batch)
                check_resource(rm->resource);
            for (size_t j = 0; j < rm->n_scope_metrics; j++) {
                const Opentelemetry__Proto__Metrics__V1__ScopeMetrics *sm = rm->scope_metrics[j];
                for (size_t k = 0; k < sm->n_metrics; k++) {
                    const Opentelemetry__Proto__Metrics__V1__Metric *m = sm->metrics[k];
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
        }
        opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__free_unpacked(r, NULL);
    } else {
        Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest *r =
            opentelemetry__proto__collector__logs__v1__export_logs_service_request__unpack(
                NULL, len, buf);
        if (r == NULL)
            return false;
        *resources = r->n_resource_logs;
        for (size_t i = 0; i < r->n_resource_logs; i++) {
            const Opentelemetry__Proto__Logs__V1__ResourceLogs *rl = r->resource_logs[i];
            if (batch)
                check_resource(rl->resource);
            for (size_t j = 0; j < rl->n_scope_logs; j++) {
                const Opentelemetry__Proto__Logs__V1__ScopeLogs *sl = rl->scope_logs[j];
                *items += sl->n_log_records;
                for (size_t k = 0; batch && k < sl->n_log_records; k++) {
                    const Opentelemetry__Proto__Logs__V1__LogRecord *l = sl->log_records[k];
                    CHECK(l->trace_id.len == 0 || l->trace_id.len == 16);
                    CHECK(l->span_id.len == 0 || l->span_id.len == 8);
                }
            }
        }
        opentelemetry__proto__collector__logs__v1__export_logs_service_request__free_unpacked(r, NULL);
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct otlp_attrs attrs;
    static bool ready;
    if (!ready) {
        CHECK(otlp_attrs_init(&attrs, attr_keys, attr_vals, N_ATTRS) == 0);
        ready = true;
    }

    for (int s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        enum otlp_signal sig = (enum otlp_signal)s;
        struct otlp_scan_result res;
        int rc = otlp_scan(sig, data, size, NULL, &res);
        CHECK(memchr(res.error, '\0', sizeof(res.error)) != NULL);
        if (rc < 0) {
            CHECK(-rc > 0 && -rc < OTLP_SCAN_E_COUNT);
            CHECK(res.error[0] != '\0');
            CHECK(strcmp(otlp_scan_reason(rc), "unknown") != 0);
            continue;
        }
        CHECK(rc == 0);
        CHECK(res.n_rejected <= OTLP_SCAN_MAX_REJECTED);
        CHECK((res.rejected_resources == 0) == (res.error[0] == '\0'));

        /* accepted input decodes, with the same counts */
        uint64_t items, resources;
        CHECK(decode(sig, data, size, false, &items, &resources));
        CHECK(items == res.items + res.rejected_items);
        CHECK(resources == (uint64_t)res.resources + res.rejected_resources);

        /* the batch (with and without splicing) */
        for (int splice = 0; splice <= 1; splice++) {
            struct buf b;
            CHECK(buf_init(&b, 0, 0) == 0);
            CHECK(buf_append(&b, "", 0) == 0);
            CHECK(otlp_batch_append(&b, data, size, &res, splice ? &attrs : NULL) == 0);
            if (!splice)
                CHECK(b.len <= size);
            uint64_t bitems, bres;
            CHECK(decode(sig, b.data, b.len, splice, &bitems, &bres));
            CHECK(bitems == res.items);
            CHECK(bres == res.resources);
            struct otlp_scan_result again;
            CHECK(otlp_scan(sig, b.data, b.len, NULL, &again) == 0);
            CHECK(again.items == res.items && again.rejected_resources == 0);
            buf_free(&b);
        }
    }
    return 0;
}
