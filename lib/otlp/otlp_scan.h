/* SPDX-License-Identifier: Apache-2.0 */
/* In-place validation of Export{Trace,Metrics,Logs}ServiceRequest protobuf
 * bodies: the receiver calls otlp_scan() on every decompressed request, then
 * otlp_batch_append() copies the accepted Resource* entries into a batch.
 * Nothing is decoded into structs and nothing is allocated. */
#ifndef OTLP_OTLP_SCAN_H
#define OTLP_OTLP_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "otlp/otlp.h"

/*
 * Why a request is malformed as a whole (HTTP 400, not retryable).
 * X(enum suffix, reason label for metrics, message)
 */
#define OTLP_SCAN_ERRORS(X)                                                  \
    X(TRUNCATED, truncated, "message truncated")                             \
    X(BAD_VARINT, bad_varint, "malformed varint")                            \
    X(BAD_WIRE_TYPE, bad_wire_type, "wrong wire type for field")             \
    X(LENGTH_OVERFLOW, length_overflow, "length exceeds enclosing message")  \
    X(TOO_DEEP, too_deep, "nesting too deep")                                \
    X(BAD_UTF8, bad_utf8, "invalid UTF-8 in string field")                   \
    X(GROUP, group, "group wire type not supported")                         \
    X(FIELD_ZERO, field_zero, "invalid field number")                        \
    X(BAD_PACKED, bad_packed, "malformed packed repeated field")             \
    X(TOO_LARGE, too_large, "request of 2 GiB or more")                      \
    X(INVALID_ARGUMENT, invalid_argument, "invalid argument")

/* Reason codes; otlp_scan() returns them negated. */
enum otlp_scan_err {
    OTLP_SCAN_OK = 0,
#define X(e, r, m) OTLP_SCAN_E_##e,
    OTLP_SCAN_ERRORS(X)
#undef X
    OTLP_SCAN_E_COUNT
};

/* Default and ceiling for otlp_limits.max_depth. */
#define OTLP_SCAN_DEFAULT_DEPTH 32
#define OTLP_SCAN_MAX_DEPTH 100
/* How many rejected top-level entries one result can list. */
#define OTLP_SCAN_MAX_REJECTED 64

struct otlp_limits {
    /* Deepest message nesting below the request itself (ResourceSpans is
     * depth 1, a Span 3, an attribute's AnyValue 5; every nested
     * ArrayValue/KeyValueList adds 2). 0 means OTLP_SCAN_DEFAULT_DEPTH;
     * values above OTLP_SCAN_MAX_DEPTH are clamped to it. */
    uint32_t max_depth;
};

/* Where a rejected top-level Resource* entry sits in the request: from its
 * field key to the end of its payload. */
struct otlp_scan_range {
    uint32_t off;
    uint32_t len;
};

struct otlp_scan_result {
    uint64_t items;              /* spans / data points / log records accepted */
    uint64_t rejected_items;     /* items inside rejected entries */
    uint32_t resources;          /* top-level Resource* entries accepted */
    uint32_t rejected_resources; /* top-level Resource* entries rejected */
    /* Rejected entries in request order, for otlp_batch_append(). When more
     * than OTLP_SCAN_MAX_REJECTED entries are rejected, `rejected_all` is
     * set: every entry counts as rejected (items and resources move to the
     * rejected counters) and nothing of the request goes into a batch. */
    uint32_t n_rejected;
    uint32_t rejected_all;
    struct otlp_scan_range rejected[OTLP_SCAN_MAX_REJECTED];
    /* Why the request failed (return < 0) or, when entries were rejected,
     * why the first one was: "resource_spans[2].scope_spans[0].spans[5]
     * .trace_id: must be 16 bytes, got 3". Empty otherwise. */
    char error[160];
};

/*
 * Validate an Export*ServiceRequest of signal `sig` in buf[0..len) and count
 * its items.
 *
 * Structure is checked against the OTLP v1 schema: every key, varint and
 * length; the wire type of every known field (packed and unpacked repeated
 * scalars both accepted); UTF-8 of every `string` field; nesting depth.
 * Unknown fields are skipped after bounds checks (forward compatibility).
 * A structural error fails the whole request.
 *
 * Semantics (OTLP spec; partial success): Span.trace_id must be 16 bytes and
 * Span.span_id 8, both non-zero; parent_span_id empty or 8 bytes; Link
 * trace_id/span_id 16/8; LogRecord and Exemplar trace_id/span_id empty or
 * 16/8. An entry violating this is rejected whole (the smallest unit that
 * can be dropped without rewriting) and listed in res->rejected; the others
 * are accepted. Forwarding such an id would make upstream collectors refuse
 * the whole batch.
 *
 * Counting: spans (ScopeSpans.spans), metric data points (data_points of a
 * Metric's gauge/sum/histogram/exponential_histogram/summary; the last data
 * field of a Metric wins, as in the protobuf oneof), log records
 * (ScopeLogs.log_records).
 *
 * `lim` may be NULL (defaults). `buf` is borrowed until return; `res` is
 * filled in all cases. Cost: one pass, no allocation, about 2 KiB of stack.
 *
 * Returns 0 (check res->rejected_resources for partial rejection), or the
 * negated otlp_scan_err reason: -OTLP_SCAN_E_TRUNCATED, _BAD_VARINT,
 * _BAD_WIRE_TYPE, _LENGTH_OVERFLOW, _TOO_DEEP, _BAD_UTF8, _GROUP,
 * _FIELD_ZERO, _BAD_PACKED, _TOO_LARGE, _INVALID_ARGUMENT (bad `sig`, NULL
 * `res`, or NULL `buf` with len > 0).
 */
int otlp_scan(enum otlp_signal sig, const uint8_t *buf, size_t len,
              const struct otlp_limits *lim, struct otlp_scan_result *res);

/* Reason label for metrics ("bad_utf8"); accepts err or -err; "unknown"
 * for codes outside the list, "ok" for 0. */
const char *otlp_scan_reason(int err);
/* Human-readable message for err or -err. */
const char *otlp_scan_message(int err);

#endif
