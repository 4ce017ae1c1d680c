/* SPDX-License-Identifier: Apache-2.0 */
/* One-pass, allocation-free validation of OTLP protobuf requests against a
 * compact static schema (one table per message type of the OTLP v1 protos),
 * with an explicit stack instead of recursion. Sits between HTTP body
 * decompression and otlp_batch_append() in the worker's hot path. */
#include "otlp/otlp_scan.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "otlp/otlp_wire.h"

/* ------------------------------------------------------------------------ */
/* Schema tables                                                            */
/* ------------------------------------------------------------------------ */

/* What a field number stands for in a message. */
enum field_kind {
    F_UNKNOWN = 0,   /* not in the schema: skipped by wire type */
    F_FIELD0,        /* field number 0: always invalid */
    F_VARINT,        /* int32/64, uint32/64, sint32/64, bool, enum */
    F_I64,           /* fixed64, sfixed64, double */
    F_I32,           /* fixed32, sfixed32, float */
    F_STRING,        /* length-delimited, UTF-8 checked */
    F_BYTES,         /* length-delimited */
    F_ID,            /* bytes holding a trace or span id; arg = enum id_rule */
    F_MSG,           /* embedded message; arg = enum msg_id */
    F_PACKED_I64,    /* repeated fixed64/double: packed (LEN) or not (I64) */
    F_PACKED_VARINT, /* repeated uint64: packed (LEN) or not (VARINT) */
};

#define FF_REP 1 /* repeated: error paths print an index */

struct scan_field {
    uint8_t kind;
    uint8_t arg;
    uint8_t flags;
};

/* What happens when a message of this type is entered or left. */
enum msg_hook {
    H_NONE = 0,
    H_ENTRY,  /* top-level Resource* entry: unit of acceptance */
    H_SPAN,   /* one item; trace_id and span_id required */
    H_LINK,   /* trace_id and span_id required */
    H_LOG,    /* one item */
    H_METRIC, /* items = data points of its last data field */
    H_DATA,   /* gauge/sum/...: a later data field replaces an earlier one */
    H_POINT,  /* one data point of the current data field */
};

struct scan_msg {
    const struct scan_field *fields; /* indexed by field number */
    const char *const *names;        /* same index; for error messages only */
    uint8_t nfields;                 /* highest field number + 1 */
    uint8_t hook;
};

enum msg_id {
    M_TRACES_REQ,
    M_METRICS_REQ,
    M_LOGS_REQ,
    M_RESOURCE,
    M_KEY_VALUE,
    M_ANY_VALUE,
    M_ARRAY_VALUE,
    M_KEY_VALUE_LIST,
    M_SCOPE,
    M_ENTITY_REF,
    M_RESOURCE_SPANS,
    M_SCOPE_SPANS,
    M_SPAN,
    M_EVENT,
    M_LINK,
    M_STATUS,
    M_RESOURCE_METRICS,
    M_SCOPE_METRICS,
    M_METRIC,
    M_GAUGE,
    M_SUM,
    M_HISTOGRAM,
    M_EXP_HISTOGRAM,
    M_SUMMARY,
    M_NUMBER_DP,
    M_HISTOGRAM_DP,
    M_EXP_HISTOGRAM_DP,
    M_BUCKETS,
    M_SUMMARY_DP,
    M_QUANTILE,
    M_EXEMPLAR,
    M_RESOURCE_LOGS,
    M_SCOPE_LOGS,
    M_LOG_RECORD,
    M_COUNT
};

/* Rules for id fields (OTLP spec, trace.proto / logs.proto / metrics.proto). */
enum id_rule { ID_SPAN_TRACE, ID_SPAN_SPAN, ID_SPAN_PARENT, ID_LINK_TRACE, ID_LINK_SPAN,
               ID_OPT_TRACE, ID_OPT_SPAN };

/* Bits of scan.ids: which required ids the open Span / Link has. */
#define IDS_SPAN_TRACE 1
#define IDS_SPAN_SPAN 2
#define IDS_LINK_TRACE 4
#define IDS_LINK_SPAN 8

static const struct id_rule_def {
    uint8_t size;     /* the only legal non-empty length */
    uint8_t optional; /* empty is fine */
    uint8_t nonzero;  /* all-zero is invalid (OTLP: "an ID with all zeroes ... is invalid") */
    uint8_t bit;      /* IDS_* set when valid */
} id_rules[] = {
    [ID_SPAN_TRACE] = {16, 0, 1, IDS_SPAN_TRACE},
    [ID_SPAN_SPAN] = {8, 0, 1, IDS_SPAN_SPAN},
    [ID_SPAN_PARENT] = {8, 1, 0, 0},
    [ID_LINK_TRACE] = {16, 0, 0, IDS_LINK_TRACE},
    [ID_LINK_SPAN] = {8, 0, 0, IDS_LINK_SPAN},
    [ID_OPT_TRACE] = {16, 1, 0, 0},
    [ID_OPT_SPAN] = {8, 1, 0, 0},
};

/*
 * Field lists: X(number, name, kind, arg, flags). Numbers and types are
 * those of the OTLP v1 protos in proto/; reserved numbers are left out and
 * so are skipped as unknown.
 */
#define TRACES_REQ_FIELDS(X) X(1, resource_spans, F_MSG, M_RESOURCE_SPANS, FF_REP)
#define METRICS_REQ_FIELDS(X) X(1, resource_metrics, F_MSG, M_RESOURCE_METRICS, FF_REP)
#define LOGS_REQ_FIELDS(X) X(1, resource_logs, F_MSG, M_RESOURCE_LOGS, FF_REP)

#define RESOURCE_FIELDS(X)                                  \
    X(1, attributes, F_MSG, M_KEY_VALUE, FF_REP)            \
    X(2, dropped_attributes_count, F_VARINT, 0, 0)          \
    X(3, entity_refs, F_MSG, M_ENTITY_REF, FF_REP)

#define KEY_VALUE_FIELDS(X)                                 \
    X(1, key, F_STRING, 0, 0)                               \
    X(2, value, F_MSG, M_ANY_VALUE, 0)

#define ANY_VALUE_FIELDS(X)                                 \
    X(1, string_value, F_STRING, 0, 0)                      \
    X(2, bool_value, F_VARINT, 0, 0)                        \
    X(3, int_value, F_VARINT, 0, 0)                         \
    X(4, double_value, F_I64, 0, 0)                         \
    X(5, array_value, F_MSG, M_ARRAY_VALUE, 0)              \
    X(6, kvlist_value, F_MSG, M_KEY_VALUE_LIST, 0)          \
    X(7, bytes_value, F_BYTES, 0, 0)

#define ARRAY_VALUE_FIELDS(X) X(1, values, F_MSG, M_ANY_VALUE, FF_REP)
#define KEY_VALUE_LIST_FIELDS(X) X(1, values, F_MSG, M_KEY_VALUE, FF_REP)

#define SCOPE_FIELDS(X)                                     \
    X(1, name, F_STRING, 0, 0)                              \
    X(2, version, F_STRING, 0, 0)                           \
    X(3, attributes, F_MSG, M_KEY_VALUE, FF_REP)            \
    X(4, dropped_attributes_count, F_VARINT, 0, 0)

#define ENTITY_REF_FIELDS(X)                                \
    X(1, schema_url, F_STRING, 0, 0)                        \
    X(2, type, F_STRING, 0, 0)                              \
    X(3, id_keys, F_STRING, 0, FF_REP)                      \
    X(4, description_keys, F_STRING, 0, FF_REP)

#define RESOURCE_SPANS_FIELDS(X)                            \
    X(1, resource, F_MSG, M_RESOURCE, 0)                    \
    X(2, scope_spans, F_MSG, M_SCOPE_SPANS, FF_REP)         \
    X(3, schema_url, F_STRING, 0, 0)

#define SCOPE_SPANS_FIELDS(X)                               \
    X(1, scope, F_MSG, M_SCOPE, 0)                          \
    X(2, spans, F_MSG, M_SPAN, FF_REP)                      \
    X(3, schema_url, F_STRING, 0, 0)

#define SPAN_FIELDS(X)                                      \
    X(1, trace_id, F_ID, ID_SPAN_TRACE, 0)                  \
    X(2, span_id, F_ID, ID_SPAN_SPAN, 0)                    \
    X(3, trace_state, F_STRING, 0, 0)                       \
    X(4, parent_span_id, F_ID, ID_SPAN_PARENT, 0)           \
    X(5, name, F_STRING, 0, 0)                              \
    X(6, kind, F_VARINT, 0, 0)                              \
    X(7, start_time_unix_nano, F_I64, 0, 0)                 \
    X(8, end_time_unix_nano, F_I64, 0, 0)                   \
    X(9, attributes, F_MSG, M_KEY_VALUE, FF_REP)            \
    X(10, dropped_attributes_count, F_VARINT, 0, 0)         \
    X(11, events, F_MSG, M_EVENT, FF_REP)                   \
    X(12, dropped_events_count, F_VARINT, 0, 0)             \
    X(13, links, F_MSG, M_LINK, FF_REP)                     \
    X(14, dropped_links_count, F_VARINT, 0, 0)              \
    X(15, status, F_MSG, M_STATUS, 0)                       \
    X(16, flags, F_I32, 0, 0)

#define EVENT_FIELDS(X)                                     \
    X(1, time_unix_nano, F_I64, 0, 0)                       \
    X(2, name, F_STRING, 0, 0)                              \
    X(3, attributes, F_MSG, M_KEY_VALUE, FF_REP)            \
    X(4, dropped_attributes_count, F_VARINT, 0, 0)

#define LINK_FIELDS(X)                                      \
    X(1, trace_id, F_ID, ID_LINK_TRACE, 0)                  \
    X(2, span_id, F_ID, ID_LINK_SPAN, 0)                    \
    X(3, trace_state, F_STRING, 0, 0)                       \
    X(4, attributes, F_MSG, M_KEY_VALUE, FF_REP)            \
    X(5, dropped_attributes_count, F_VARINT, 0, 0)          \
    X(6, flags, F_I32, 0, 0)

#define STATUS_FIELDS(X)                                    \
    X(2, message, F_STRING, 0, 0)                           \
    X(3, code, F_VARINT, 0, 0)

#define RESOURCE_METRICS_FIELDS(X)                          \
    X(1, resource, F_MSG, M_RESOURCE, 0)                    \
    X(2, scope_metrics, F_MSG, M_SCOPE_METRICS, FF_REP)     \
    X(3, schema_url, F_STRING, 0, 0)

#define SCOPE_METRICS_FIELDS(X)                             \
    X(1, scope, F_MSG, M_SCOPE, 0)                          \
    X(2, metrics, F_MSG, M_METRIC, FF_REP)                  \
    X(3, schema_url, F_STRING, 0, 0)

#define METRIC_FIELDS(X)                                    \
    X(1, name, F_STRING, 0, 0)                              \
    X(2, description, F_STRING, 0, 0)                       \
    X(3, unit, F_STRING, 0, 0)                              \
    X(5, gauge, F_MSG, M_GAUGE, 0)                          \
    X(7, sum, F_MSG, M_SUM, 0)                              \
    X(9, histogram, F_MSG, M_HISTOGRAM, 0)                  \
    X(10, exponential_histogram, F_MSG, M_EXP_HISTOGRAM, 0) \
    X(11, summary, F_MSG, M_SUMMARY, 0)                     \
    X(12, metadata, F_MSG, M_KEY_VALUE, FF_REP)

#define GAUGE_FIELDS(X) X(1, data_points, F_MSG, M_NUMBER_DP, FF_REP)

#define SUM_FIELDS(X)                                       \
    X(1, data_points, F_MSG, M_NUMBER_DP, FF_REP)           \
    X(2, aggregation_temporality, F_VARINT, 0, 0)           \
    X(3, is_monotonic, F_VARINT, 0, 0)

#define HISTOGRAM_FIELDS(X)                                 \
    X(1, data_points, F_MSG, M_HISTOGRAM_DP, FF_REP)        \
    X(2, aggregation_temporality, F_VARINT, 0, 0)

#define EXP_HISTOGRAM_FIELDS(X)                             \
    X(1, data_points, F_MSG, M_EXP_HISTOGRAM_DP, FF_REP)    \
    X(2, aggregation_temporality, F_VARINT, 0, 0)

#define SUMMARY_FIELDS(X) X(1, data_points, F_MSG, M_SUMMARY_DP, FF_REP)

#define NUMBER_DP_FIELDS(X)                                 \
    X(2, start_time_unix_nano, F_I64, 0, 0)                 \
    X(3, time_unix_nano, F_I64, 0, 0)                       \
    X(4, as_double, F_I64, 0, 0)                            \
    X(5, exemplars, F_MSG, M_EXEMPLAR, FF_REP)              \
    X(6, as_int, F_I64, 0, 0)                               \
    X(7, attributes, F_MSG, M_KEY_VALUE, FF_REP)            \
    X(8, flags, F_VARINT, 0, 0)

#define HISTOGRAM_DP_FIELDS(X)                              \
    X(2, start_time_unix_nano, F_I64, 0, 0)                 \
    X(3, time_unix_nano, F_I64, 0, 0)                       \
    X(4, count, F_I64, 0, 0)                                \
    X(5, sum, F_I64, 0, 0)                                  \
    X(6, bucket_counts, F_PACKED_I64, 0, FF_REP)            \
    X(7, explicit_bounds, F_PACKED_I64, 0, FF_REP)          \
    X(8, exemplars, F_MSG, M_EXEMPLAR, FF_REP)              \
    X(9, attributes, F_MSG, M_KEY_VALUE, FF_REP)            \
    X(10, flags, F_VARINT, 0, 0)                            \
    X(11, min, F_I64, 0, 0)                                 \
    X(12, max, F_I64, 0, 0)

#define EXP_HISTOGRAM_DP_FIELDS(X)                          \
    X(1, attributes, F_MSG, M_KEY_VALUE, FF_REP)            \
    X(2, start_time_unix_nano, F_I64, 0, 0)                 \
    X(3, time_unix_nano, F_I64, 0, 0)                       \
    X(4, count, F_I64, 0, 0)                                \
    X(5, sum, F_I64, 0, 0)                                  \
    X(6, scale, F_VARINT, 0, 0)                             \
    X(7, zero_count, F_I64, 0, 0)                           \
    X(8, positive, F_MSG, M_BUCKETS, 0)                     \
    X(9, negative, F_MSG, M_BUCKETS, 0)                     \
    X(10, flags, F_VARINT, 0, 0)                            \
    X(11, exemplars, F_MSG, M_EXEMPLAR, FF_REP)             \
    X(12, min, F_I64, 0, 0)                                 \
    X(13, max, F_I64, 0, 0)                                 \
    X(14, zero_threshold, F_I64, 0, 0)

#define BUCKETS_FIELDS(X)                                   \
    X(1, offset, F_VARINT, 0, 0)                            \
    X(2, bucket_counts, F_PACKED_VARINT, 0, FF_REP)

#define SUMMARY_DP_FIELDS(X)                                \
    X(2, start_time_unix_nano, F_I64, 0, 0)                 \
    X(3, time_unix_nano, F_I64, 0, 0)                       \
    X(4, count, F_I64, 0, 0)                                \
    X(5, sum, F_I64, 0, 0)                                  \
    X(6, quantile_values, F_MSG, M_QUANTILE, FF_REP)        \
    X(7, attributes, F_MSG, M_KEY_VALUE, FF_REP)            \
    X(8, flags, F_VARINT, 0, 0)

#define QUANTILE_FIELDS(X)                                  \
    X(1, quantile, F_I64, 0, 0)                             \
    X(2, value, F_I64, 0, 0)

#define EXEMPLAR_FIELDS(X)                                  \
    X(2, time_unix_nano, F_I64, 0, 0)                       \
    X(3, as_double, F_I64, 0, 0)                            \
    X(4, span_id, F_ID, ID_OPT_SPAN, 0)                     \
    X(5, trace_id, F_ID, ID_OPT_TRACE, 0)                   \
    X(6, as_int, F_I64, 0, 0)                               \
    X(7, filtered_attributes, F_MSG, M_KEY_VALUE, FF_REP)

#define RESOURCE_LOGS_FIELDS(X)                             \
    X(1, resource, F_MSG, M_RESOURCE, 0)                    \
    X(2, scope_logs, F_MSG, M_SCOPE_LOGS, FF_REP)           \
    X(3, schema_url, F_STRING, 0, 0)

#define SCOPE_LOGS_FIELDS(X)                                \
    X(1, scope, F_MSG, M_SCOPE, 0)                          \
    X(2, log_records, F_MSG, M_LOG_RECORD, FF_REP)          \
    X(3, schema_url, F_STRING, 0, 0)

#define LOG_RECORD_FIELDS(X)                                \
    X(1, time_unix_nano, F_I64, 0, 0)                       \
    X(2, severity_number, F_VARINT, 0, 0)                   \
    X(3, severity_text, F_STRING, 0, 0)                     \
    X(5, body, F_MSG, M_ANY_VALUE, 0)                       \
    X(6, attributes, F_MSG, M_KEY_VALUE, FF_REP)            \
    X(7, dropped_attributes_count, F_VARINT, 0, 0)          \
    X(8, flags, F_I32, 0, 0)                                \
    X(9, trace_id, F_ID, ID_OPT_TRACE, 0)                   \
    X(10, span_id, F_ID, ID_OPT_SPAN, 0)                    \
    X(11, observed_time_unix_nano, F_I64, 0, 0)             \
    X(12, event_name, F_STRING, 0, 0)

#define FIELD_ENTRY(num, nm, kind, arg, fl) [num] = {kind, arg, fl},
#define FIELD_NAME(num, nm, kind, arg, fl) [num] = #nm,
#define FIELD_TABLE(LIST) ((const struct scan_field[]){[0] = {F_FIELD0, 0, 0}, LIST(FIELD_ENTRY)})
#define MSG_DEF(LIST, hk)                                                           \
    {                                                                               \
        .fields = FIELD_TABLE(LIST),                                                \
        .names = (const char *const[]){[0] = NULL, LIST(FIELD_NAME)},               \
        .nfields = sizeof(FIELD_TABLE(LIST)) / sizeof(struct scan_field), .hook = hk \
    }

static const struct scan_msg msgs[M_COUNT] = {
    [M_TRACES_REQ] = MSG_DEF(TRACES_REQ_FIELDS, H_NONE),
    [M_METRICS_REQ] = MSG_DEF(METRICS_REQ_FIELDS, H_NONE),
    [M_LOGS_REQ] = MSG_DEF(LOGS_REQ_FIELDS, H_NONE),
    [M_RESOURCE] = MSG_DEF(RESOURCE_FIELDS, H_NONE),
    [M_KEY_VALUE] = MSG_DEF(KEY_VALUE_FIELDS, H_NONE),
    [M_ANY_VALUE] = MSG_DEF(ANY_VALUE_FIELDS, H_NONE),
    [M_ARRAY_VALUE] = MSG_DEF(ARRAY_VALUE_FIELDS, H_NONE),
    [M_KEY_VALUE_LIST] = MSG_DEF(KEY_VALUE_LIST_FIELDS, H_NONE),
    [M_SCOPE] = MSG_DEF(SCOPE_FIELDS, H_NONE),
    [M_ENTITY_REF] = MSG_DEF(ENTITY_REF_FIELDS, H_NONE),
    [M_RESOURCE_SPANS] = MSG_DEF(RESOURCE_SPANS_FIELDS, H_ENTRY),
    [M_SCOPE_SPANS] = MSG_DEF(SCOPE_SPANS_FIELDS, H_NONE),
    [M_SPAN] = MSG_DEF(SPAN_FIELDS, H_SPAN),
    [M_EVENT] = MSG_DEF(EVENT_FIELDS, H_NONE),
    [M_LINK] = MSG_DEF(LINK_FIELDS, H_LINK),
    [M_STATUS] = MSG_DEF(STATUS_FIELDS, H_NONE),
    [M_RESOURCE_METRICS] = MSG_DEF(RESOURCE_METRICS_FIELDS, H_ENTRY),
    [M_SCOPE_METRICS] = MSG_DEF(SCOPE_METRICS_FIELDS, H_NONE),
    [M_METRIC] = MSG_DEF(METRIC_FIELDS, H_METRIC),
    [M_GAUGE] = MSG_DEF(GAUGE_FIELDS, H_DATA),
    [M_SUM] = MSG_DEF(SUM_FIELDS, H_DATA),
    [M_HISTOGRAM] = MSG_DEF(HISTOGRAM_FIELDS, H_DATA),
    [M_EXP_HISTOGRAM] = MSG_DEF(EXP_HISTOGRAM_FIELDS, H_DATA),
    [M_SUMMARY] = MSG_DEF(SUMMARY_FIELDS, H_DATA),
    [M_NUMBER_DP] = MSG_DEF(NUMBER_DP_FIELDS, H_POINT),
    [M_HISTOGRAM_DP] = MSG_DEF(HISTOGRAM_DP_FIELDS, H_POINT),
    [M_EXP_HISTOGRAM_DP] = MSG_DEF(EXP_HISTOGRAM_DP_FIELDS, H_POINT),
    [M_BUCKETS] = MSG_DEF(BUCKETS_FIELDS, H_NONE),
    [M_SUMMARY_DP] = MSG_DEF(SUMMARY_DP_FIELDS, H_POINT),
    [M_QUANTILE] = MSG_DEF(QUANTILE_FIELDS, H_NONE),
    [M_EXEMPLAR] = MSG_DEF(EXEMPLAR_FIELDS, H_NONE),
    [M_RESOURCE_LOGS] = MSG_DEF(RESOURCE_LOGS_FIELDS, H_ENTRY),
    [M_SCOPE_LOGS] = MSG_DEF(SCOPE_LOGS_FIELDS, H_NONE),
    [M_LOG_RECORD] = MSG_DEF(LOG_RECORD_FIELDS, H_LOG),
};

static const enum msg_id signal_msg[OTLP_SIGNAL_COUNT] = {
    [OTLP_TRACES] = M_TRACES_REQ,
    [OTLP_METRICS] = M_METRICS_REQ,
    [OTLP_LOGS] = M_LOGS_REQ,
};

/* ------------------------------------------------------------------------ */
/* Reasons                                                                  */
/* ------------------------------------------------------------------------ */

static const char *const scan_reasons[OTLP_SCAN_E_COUNT] = {
    [OTLP_SCAN_OK] = "ok",
#define X(e, r, m) [OTLP_SCAN_E_##e] = #r,
    OTLP_SCAN_ERRORS(X)
#undef X
};

static const char *const scan_messages[OTLP_SCAN_E_COUNT] = {
    [OTLP_SCAN_OK] = "ok",
#define X(e, r, m) [OTLP_SCAN_E_##e] = m,
    OTLP_SCAN_ERRORS(X)
#undef X
};

const char *otlp_scan_reason(int err)
{
    unsigned e = err < 0 ? (unsigned)-err : (unsigned)err;
    return e < OTLP_SCAN_E_COUNT ? scan_reasons[e] : "unknown";
}

const char *otlp_scan_message(int err)
{
    unsigned e = err < 0 ? (unsigned)-err : (unsigned)err;
    return e < OTLP_SCAN_E_COUNT ? scan_messages[e] : "unknown error";
}

/* ------------------------------------------------------------------------ */
/* Scanner state                                                            */
/* ------------------------------------------------------------------------ */

/* An outer message saved while a nested one is scanned. */
struct scan_frame {
    const uint8_t *end;         /* end of the outer message */
    const uint8_t *key;         /* key of the field that opened the nested one */
    const struct scan_msg *msg; /* type of the outer message */
};

struct scan {
    const uint8_t *base;
    const uint8_t *buf_end;
    struct otlp_scan_result *res;
    /* the open top-level entry */
    const uint8_t *entry_key;
    uint64_t entry_items;
    uint64_t points; /* data points of the open Metric's current data field */
    uint8_t ids;     /* IDS_* of the open Span and Link */
    bool entry_rejected;
    struct scan_frame stack[OTLP_SCAN_MAX_DEPTH];
};

/* ------------------------------------------------------------------------ */
/* Error messages (cold paths only)                                         */
/* ------------------------------------------------------------------------ */

/* Content start of the message opened by the LEN field whose key is at
 * `key` (already validated while scanning). */
static const uint8_t *payload_of(const uint8_t *key, const uint8_t *end)
{
    uint32_t fn;
    unsigned wt;
    size_t n;
    if (otlp_wire_key(&key, end, &fn, &wt) < 0 || otlp_wire_len(&key, end, &n) < 0)
        return NULL;
    return key;
}

/*
 * Append "name[index]" for the field whose key is at `key`, in the message
 * of type `m` whose content is [start, end). Fields before `key` were
 * validated already, so re-walking them to count the index is safe.
 */
static size_t path_component(char *out, size_t cap, size_t o, const struct scan_msg *m,
                             const uint8_t *start, const uint8_t *end, const uint8_t *key)
{
    uint32_t fn;
    unsigned wt;
    const uint8_t *q = key;
    if (otlp_wire_key(&q, end, &fn, &wt) < 0)
        return o;
    const char *name = fn < m->nfields ? m->names[fn] : NULL;
    bool rep = name == NULL || (m->fields[fn].flags & FF_REP);
    int w;
    if (name != NULL)
        w = snprintf(out + o, cap - o, "%s%s", o ? "." : "", name);
    else
        w = snprintf(out + o, cap - o, "%s#%u", o ? "." : "", fn);
    if (w < 0 || (size_t)w >= cap - o)
        return cap - 1;
    o += (size_t)w;
    if (!rep)
        return o;
    unsigned idx = 0;
    q = start;
    while (q < key) {
        uint32_t f2;
        unsigned wt2;
        if (otlp_wire_key(&q, end, &f2, &wt2) < 0 || otlp_wire_skip(&q, end, wt2) < 0)
            break;
        if (f2 == fn)
            idx++;
    }
    w = snprintf(out + o, cap - o, "[%u]", idx);
    if (w < 0 || (size_t)w >= cap - o)
        return cap - 1;
    return o + (size_t)w;
}

/* The path from the request down to the current message (`depth`, type `m`,
 * ending at `end`) and, when `leaf` is set, the field whose key is there. */
static void scan_path(const struct scan *s, unsigned depth, const struct scan_msg *m,
                      const uint8_t *end, const uint8_t *leaf, char *out, size_t cap)
{
    size_t o = 0;
    const uint8_t *start = s->base;
    out[0] = '\0';
    for (unsigned k = 0; k < depth && start != NULL; k++) {
        const struct scan_frame *f = &s->stack[k];
        o = path_component(out, cap, o, f->msg, start, f->end, f->key);
        start = payload_of(f->key, f->end);
    }
    if (leaf != NULL && start != NULL)
        o = path_component(out, cap, o, m, start, end, leaf);
    (void)o;
}

/* res->error = "<path>: <detail>[ at offset N]", keeping the end of an
 * over-long path. */
static void format_error(struct otlp_scan_result *res, const char *path, const char *detail,
                         long off)
{
    char tail[128];
    int tl = off >= 0 ? snprintf(tail, sizeof(tail), "%s at offset %ld", detail, off)
                      : snprintf(tail, sizeof(tail), "%s", detail);
    size_t tlen = tl < 0 ? 0 : BASE_MIN((size_t)tl, sizeof(tail) - 1);
    size_t plen = strlen(path);
    size_t cap = sizeof(res->error) - 1, o = 0;
    if (plen > 0) {
        size_t room = cap > tlen + 2 ? cap - tlen - 2 : 0;
        if (plen > room) { /* keep the most specific end of the path */
            size_t keep = room > 3 ? room - 3 : 0;
            memcpy(res->error, "...", 3);
            memcpy(res->error + 3, path + plen - keep, keep);
            o = 3 + keep;
        } else {
            memcpy(res->error, path, plen);
            o = plen;
        }
        memcpy(res->error + o, ": ", 2);
        o += 2;
    }
    size_t n = BASE_MIN(tlen, cap - o);
    memcpy(res->error + o, tail, n);
    res->error[o + n] = '\0';
}

/* A structural error: the whole request fails. `leaf` is the key of the
 * offending field (NULL when the key itself is broken), `at` the byte. */
__attribute__((cold, noinline)) static int scan_fail(struct scan *s, int code, unsigned depth,
                                                     const struct scan_msg *m,
                                                     const uint8_t *end, const uint8_t *leaf,
                                                     const uint8_t *at, const char *detail)
{
    char path[512];
    scan_path(s, depth, m, end, leaf, path, sizeof(path));
    format_error(s->res, path, detail ? detail : scan_messages[code], (long)(at - s->base));
    return -code;
}

/* Map an otlp_wire error to a reason: running off the request is
 * truncation, running off an enclosing message is a length error. */
static int wire_reason(int rc, const uint8_t *end, const uint8_t *buf_end)
{
    switch (rc) {
    case OTLP_WIRE_ERR_VARINT:
        return OTLP_SCAN_E_BAD_VARINT;
    case OTLP_WIRE_ERR_FIELD:
        return OTLP_SCAN_E_FIELD_ZERO;
    case OTLP_WIRE_ERR_GROUP:
        return OTLP_SCAN_E_GROUP;
    case OTLP_WIRE_ERR_WIRE:
        return OTLP_SCAN_E_BAD_WIRE_TYPE;
    default: /* ETRUNC, ELEN */
        return end == buf_end ? OTLP_SCAN_E_TRUNCATED : OTLP_SCAN_E_LENGTH_OVERFLOW;
    }
}

__attribute__((cold, noinline)) static int fail_wire(struct scan *s, int rc, unsigned depth,
                                                     const struct scan_msg *m,
                                                     const uint8_t *end, const uint8_t *leaf,
                                                     const uint8_t *at)
{
    int code = wire_reason(rc, end, s->buf_end);
    const char *detail = NULL;
    if (code == OTLP_SCAN_E_GROUP)
        detail = "group wire type (3/4) not supported";
    else if (rc == OTLP_WIRE_ERR_WIRE)
        detail = "invalid wire type (6/7)";
    else if (rc == OTLP_WIRE_ERR_FIELD)
        detail = "field number 0 or above 2^29-1";
    else if (leaf == NULL && code != OTLP_SCAN_E_TRUNCATED)
        detail = "malformed field key";
    return scan_fail(s, code, depth, m, end, leaf, at, detail);
}

__attribute__((cold, noinline)) static int fail_wire_type(struct scan *s, unsigned depth,
                                                          const struct scan_msg *m,
                                                          const uint8_t *end,
                                                          const uint8_t *leaf, unsigned wt)
{
    static const char *const wt_names[8] = {"varint", "i64", "len", "sgroup",
                                            "egroup", "i32", "6", "7"};
    uint32_t fn;
    unsigned wt2;
    const uint8_t *q = leaf;
    if (wt == (unsigned)OTLP_WIRE_SGROUP || wt == (unsigned)OTLP_WIRE_EGROUP)
        return scan_fail(s, OTLP_SCAN_E_GROUP, depth, m, end, leaf, leaf,
                         "group wire type (3/4) not supported");
    otlp_wire_key(&q, end, &fn, &wt2);
    enum field_kind k = (enum field_kind)m->fields[fn].kind;
    const char *want = k == F_VARINT ? "varint"
                       : k == F_I64   ? "i64"
                       : k == F_I32   ? "i32"
                       : k == F_PACKED_I64 ? "i64 or len"
                       : k == F_PACKED_VARINT ? "varint or len"
                       : "len";
    char detail[64];
    snprintf(detail, sizeof(detail), "wire type %s, expected %s", wt_names[wt & 7], want);
    return scan_fail(s, OTLP_SCAN_E_BAD_WIRE_TYPE, depth, m, end, leaf, leaf, detail);
}

/* Semantic problem: reject the open top-level entry (first reason kept). */
__attribute__((cold, noinline)) static void scan_reject(struct scan *s, unsigned depth,
                                                        const struct scan_msg *m,
                                                        const uint8_t *end,
                                                        const uint8_t *leaf,
                                                        const char *fmt, ...)
{
    if (s->entry_rejected)
        return;
    s->entry_rejected = true;
    if (s->res->error[0] != '\0')
        return;
    char path[512], detail[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    scan_path(s, depth, m, end, leaf, path, sizeof(path));
    format_error(s->res, path, detail, -1);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

__attribute__((cold, noinline)) static void bad_id(struct scan *s, unsigned depth,
                                                   const struct scan_msg *m, const uint8_t *end,
                                                   const uint8_t *leaf, const struct id_rule_def *r,
                                                   size_t n)
{
    if (n == r->size)
        scan_reject(s, depth, m, end, leaf, "all-zero id is invalid");
    else
        scan_reject(s, depth, m, end, leaf, "must be %s%u bytes, got %zu",
                    r->optional ? "empty or " : "", r->size, n);
}

/* ------------------------------------------------------------------------ */
/* Hooks                                                                    */
/* ------------------------------------------------------------------------ */

static void hook_push(struct scan *s, unsigned hook, const uint8_t *key)
{
    switch (hook) {
    case H_ENTRY:
        s->entry_key = key;
        s->entry_items = 0;
        s->entry_rejected = false;
        break;
    case H_SPAN:
        s->entry_items++;
        s->ids = 0;
        break;
    case H_LINK:
        s->ids &= (uint8_t)~(IDS_LINK_TRACE | IDS_LINK_SPAN);
        break;
    case H_LOG:
        s->entry_items++;
        break;
    case H_METRIC:
    case H_DATA:
        s->points = 0;
        break;
    case H_POINT:
        s->points++;
        break;
    }
}

static void hook_pop(struct scan *s, unsigned depth, const struct scan_msg *m,
                     const uint8_t *end)
{
    struct otlp_scan_result *res = s->res;
    switch (m->hook) {
    case H_ENTRY:
        if (likely(!s->entry_rejected)) {
            res->items += s->entry_items;
            res->resources++;
            break;
        }
        res->rejected_items += s->entry_items;
        res->rejected_resources++;
        if (res->n_rejected < OTLP_SCAN_MAX_REJECTED) {
            struct otlp_scan_range *r = &res->rejected[res->n_rejected++];
            r->off = (uint32_t)(s->entry_key - s->base);
            r->len = (uint32_t)(end - s->entry_key);
        } else {
            res->rejected_all = 1;
        }
        break;
    case H_SPAN:
        if (unlikely((s->ids & (IDS_SPAN_TRACE | IDS_SPAN_SPAN)) !=
                     (IDS_SPAN_TRACE | IDS_SPAN_SPAN)))
            scan_reject(s, depth, m, end, NULL, "%s missing",
                        (s->ids & IDS_SPAN_TRACE) ? "span_id" : "trace_id");
        break;
    case H_LINK:
        if (unlikely((s->ids & (IDS_LINK_TRACE | IDS_LINK_SPAN)) !=
                     (IDS_LINK_TRACE | IDS_LINK_SPAN)))
            scan_reject(s, depth, m, end, NULL, "%s missing",
                        (s->ids & IDS_LINK_TRACE) ? "span_id" : "trace_id");
        break;
    case H_METRIC:
        s->entry_items += s->points;
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* The scan loop                                                            */
/* ------------------------------------------------------------------------ */

static int scan_run(struct scan *s, const struct scan_msg *m, unsigned max_depth)
{
    const uint8_t *p = s->base;
    const uint8_t *end = s->buf_end;
    unsigned depth = 0;
    size_t n;
    int rc;

    for (;;) {
        while (p < end) {
            const uint8_t *key = p;
            uint32_t fn;
            unsigned wt;
            if (likely(*p < 0x80)) {
                fn = *p >> 3;
                wt = *p & 7;
                p++;
            } else {
                rc = otlp_wire_key(&p, end, &fn, &wt);
                if (unlikely(rc < 0))
                    return fail_wire(s, rc, depth, m, end, NULL, key);
            }
            static const struct scan_field unknown = {F_UNKNOWN, 0, 0};
            const struct scan_field f = likely(fn < m->nfields) ? m->fields[fn] : unknown;

            switch ((enum field_kind)f.kind) {
            case F_VARINT:
                if (unlikely(wt != OTLP_WIRE_VARINT))
                    return fail_wire_type(s, depth, m, end, key, wt);
                rc = otlp_wire_skip_varint(&p, end);
                if (unlikely(rc < 0))
                    return fail_wire(s, rc, depth, m, end, key, p);
                break;
            case F_I64:
                if (unlikely(wt != OTLP_WIRE_I64))
                    return fail_wire_type(s, depth, m, end, key, wt);
                if (unlikely(end - p < 8))
                    return fail_wire(s, OTLP_WIRE_ERR_TRUNC, depth, m, end, key, p);
                p += 8;
                break;
            case F_I32:
                if (unlikely(wt != OTLP_WIRE_I32))
                    return fail_wire_type(s, depth, m, end, key, wt);
                if (unlikely(end - p < 4))
                    return fail_wire(s, OTLP_WIRE_ERR_TRUNC, depth, m, end, key, p);
                p += 4;
                break;
            case F_STRING:
                if (unlikely(wt != OTLP_WIRE_LEN))
                    return fail_wire_type(s, depth, m, end, key, wt);
                rc = otlp_wire_len(&p, end, &n);
                if (unlikely(rc < 0))
                    return fail_wire(s, rc, depth, m, end, key, p);
                if (unlikely(!otlp_utf8_valid(p, n)))
                    return scan_fail(s, OTLP_SCAN_E_BAD_UTF8, depth, m, end, key,
                                     p + otlp_utf8_valid_prefix(p, n), "invalid UTF-8");
                p += n;
                break;
            case F_BYTES:
                if (unlikely(wt != OTLP_WIRE_LEN))
                    return fail_wire_type(s, depth, m, end, key, wt);
                rc = otlp_wire_len(&p, end, &n);
                if (unlikely(rc < 0))
                    return fail_wire(s, rc, depth, m, end, key, p);
                p += n;
                break;
            case F_ID: {
                if (unlikely(wt != OTLP_WIRE_LEN))
                    return fail_wire_type(s, depth, m, end, key, wt);
                rc = otlp_wire_len(&p, end, &n);
                if (unlikely(rc < 0))
                    return fail_wire(s, rc, depth, m, end, key, p);
                const struct id_rule_def *r = &id_rules[f.arg];
                if (likely(n == r->size && !(r->nonzero && all_zero(p, n))))
                    s->ids |= r->bit;
                else if (!(n == 0 && r->optional))
                    bad_id(s, depth, m, end, key, r, n);
                p += n;
                break;
            }
            case F_MSG:
                if (unlikely(wt != OTLP_WIRE_LEN))
                    return fail_wire_type(s, depth, m, end, key, wt);
                rc = otlp_wire_len(&p, end, &n);
                if (unlikely(rc < 0))
                    return fail_wire(s, rc, depth, m, end, key, p);
                if (unlikely(depth >= max_depth))
                    return scan_fail(s, OTLP_SCAN_E_TOO_DEEP, depth, m, end, key, key, NULL);
                s->stack[depth].end = end;
                s->stack[depth].key = key;
                s->stack[depth].msg = m;
                depth++;
                end = p + n;
                m = &msgs[f.arg];
                if (m->hook != H_NONE)
                    hook_push(s, m->hook, key);
                break;
            case F_PACKED_I64:
                if (wt == OTLP_WIRE_I64) {
                    if (unlikely(end - p < 8))
                        return fail_wire(s, OTLP_WIRE_ERR_TRUNC, depth, m, end, key, p);
                    p += 8;
                } else if (likely(wt == OTLP_WIRE_LEN)) {
                    rc = otlp_wire_len(&p, end, &n);
                    if (unlikely(rc < 0))
                        return fail_wire(s, rc, depth, m, end, key, p);
                    if (unlikely(n % 8 != 0))
                        return scan_fail(s, OTLP_SCAN_E_BAD_PACKED, depth, m, end, key, p,
                                         "packed fixed64/double length not a multiple of 8");
                    p += n;
                } else {
                    return fail_wire_type(s, depth, m, end, key, wt);
                }
                break;
            case F_PACKED_VARINT:
                if (wt == OTLP_WIRE_VARINT) {
                    rc = otlp_wire_skip_varint(&p, end);
                    if (unlikely(rc < 0))
                        return fail_wire(s, rc, depth, m, end, key, p);
                } else if (likely(wt == OTLP_WIRE_LEN)) {
                    rc = otlp_wire_len(&p, end, &n);
                    if (unlikely(rc < 0))
                        return fail_wire(s, rc, depth, m, end, key, p);
                    const uint8_t *q = p, *qe = p + n;
                    while (q < qe) {
                        if (unlikely(otlp_wire_skip_varint(&q, qe) < 0))
                            return scan_fail(s, OTLP_SCAN_E_BAD_PACKED, depth, m, end, key, q,
                                             "malformed varint in packed field");
                    }
                    p = qe;
                } else {
                    return fail_wire_type(s, depth, m, end, key, wt);
                }
                break;
            case F_FIELD0:
                return scan_fail(s, OTLP_SCAN_E_FIELD_ZERO, depth, m, end, NULL, key,
                                 "field number 0");
            case F_UNKNOWN:
            default:
                rc = otlp_wire_skip(&p, end, wt);
                if (unlikely(rc < 0))
                    return fail_wire(s, rc, depth, m, end, key, p);
                break;
            }
        }
        /* p == end: the current message is complete */
        if (depth == 0)
            return 0;
        if (m->hook != H_NONE)
            hook_pop(s, depth, m, end);
        depth--;
        end = s->stack[depth].end;
        m = s->stack[depth].msg;
    }
}

int otlp_scan(enum otlp_signal sig, const uint8_t *buf, size_t len,
              const struct otlp_limits *lim, struct otlp_scan_result *res)
{
    struct scan s;

    if (res == NULL)
        return -OTLP_SCAN_E_INVALID_ARGUMENT;
    res->items = res->rejected_items = 0;
    res->resources = res->rejected_resources = 0;
    res->n_rejected = res->rejected_all = 0;
    res->error[0] = '\0';
    if ((unsigned)sig >= OTLP_SIGNAL_COUNT || (buf == NULL && len > 0)) {
        snprintf(res->error, sizeof(res->error), "invalid argument");
        return -OTLP_SCAN_E_INVALID_ARGUMENT;
    }
    if (len > OTLP_WIRE_MAX_LEN) {
        snprintf(res->error, sizeof(res->error), "request of %zu bytes: 2 GiB or more", len);
        return -OTLP_SCAN_E_TOO_LARGE;
    }
    if (len == 0)
        return 0;

    unsigned max_depth = lim != NULL && lim->max_depth != 0 ? lim->max_depth
                                                            : OTLP_SCAN_DEFAULT_DEPTH;
    if (max_depth > OTLP_SCAN_MAX_DEPTH)
        max_depth = OTLP_SCAN_MAX_DEPTH;

    s.base = buf;
    s.buf_end = buf + len;
    s.res = res;
    s.entry_key = buf;
    s.entry_items = 0;
    s.points = 0;
    s.ids = 0;
    s.entry_rejected = false;

    int rc = scan_run(&s, &msgs[signal_msg[sig]], max_depth);
    if (rc < 0)
        return rc;
    if (res->rejected_all) {
        res->rejected_items += res->items;
        res->rejected_resources += res->resources;
        res->items = 0;
        res->resources = 0;
    }
    return 0;
}
