/* SPDX-License-Identifier: Apache-2.0 */
/* OTLP JSON <-> protobuf wire bytes, driven by the protobuf-c descriptors. The
 * receiver turns application/json bodies into protobuf before scanning them; the
 * file exporter and JSON responses turn protobuf back into OTLP JSON. */
#ifndef OTLP_OTLP_JSON_H
#define OTLP_OTLP_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "base/base.h"
#include "otlp/otlp.h"

/* Deepest JSON nesting (objects plus arrays) accepted on input and produced on
 * output. ExportLogsServiceRequest reaches a log body at depth 8; each further
 * kvlistValue level costs 4, so bodies nest 14 levels deep. */
#define OTLP_JSON_MAX_DEPTH 64
/* Most fields a message descriptor may have (OTLP's largest, Span, has 15). */
#define OTLP_JSON_MAX_FIELDS 64

/*
 * Encoding rules (OTLP spec, "JSON Protobuf Encoding", on top of the proto3
 * JSON mapping):
 * - keys are lowerCamelCase field names on output; input accepts lowerCamelCase
 *   and the original snake_case name; unknown keys are skipped (still checked
 *   for JSON syntax); `null` means the field is absent;
 * - bytes fields named trace_id, span_id and parent_span_id (Span, Link,
 *   LogRecord, Exemplar) are hex: 32/16 characters, either case on input,
 *   lowercase on output, "" means absent; other bytes fields are base64
 *   (standard or URL alphabet, padding optional on input; standard, padded on
 *   output);
 * - enums are integers on output; input takes an integer or the value's name;
 * - int64/uint64/sint64/fixed64/sfixed64 are decimal strings on output; input
 *   takes a number or a string for every integer type; "1.0" or "1e3" are
 *   integers, "1.5" is not;
 * - double is a number or "NaN", "Infinity", "-Infinity";
 * - oneof members by their own name ({"stringValue": "x"}, {"asInt": "3"},
 *   {"sum": 1.5} for the synthetic `_sum` oneof); a member present on the wire
 *   is emitted even when it holds the default value; setting two members of
 *   one oneof in one JSON object is an error, as is a duplicate key;
 * - singular scalars without presence are omitted on output when they hold the
 *   default value, and not encoded on input when given the default value, so
 *   JSON -> protobuf -> JSON -> protobuf is byte-identical, and so is
 *   protobuf -> JSON -> protobuf for messages packed by protobuf-c;
 *   a double of -0 is not the default (its sign bit is set) and is kept;
 * - repeated numeric fields are written packed when the descriptor says so
 *   (proto3), and read both packed and unpacked;
 * - output strings are UTF-8 with only '"', '\\' and control characters
 *   escaped; doubles use the shortest form that reads back exactly.
 * The functions keep no state and may run concurrently. They allocate nothing
 * but `out`'s growth, except in rare cases: an escaped base64 string over 256
 * bytes, a number over 63 characters, a repeated singular message.
 * Both directions use C-locale number formatting: the process must not switch
 * LC_NUMERIC away from "C".
 */

/* The Export<Signal>ServiceRequest / Export<Signal>ServiceResponse descriptor
 * for `sig`, or NULL for an out-of-range signal. */
const ProtobufCMessageDescriptor *otlp_json_request_descriptor(enum otlp_signal sig);
const ProtobufCMessageDescriptor *otlp_json_response_descriptor(enum otlp_signal sig);

/*
 * Parse the JSON object `json` (`len` bytes, need not be NUL-terminated) as an
 * Export<sig>ServiceRequest and append its protobuf encoding to `out`. Fields
 * come out in the order of the JSON keys; nested lengths are minimal varints.
 * Borrows `json` until return. On failure `out` is restored to its length on
 * entry and, if `err` is not NULL, `err` (err_len bytes, always NUL-terminated)
 * names the JSON path and the reason, e.g.
 * "resourceSpans[0].scopeSpans[0].spans[3].traceId: expected 32 hex characters".
 * Returns:
 *   0          success
 *   -EINVAL    malformed JSON (including invalid UTF-8, lone surrogates, nesting
 *              deeper than OTLP_JSON_MAX_DEPTH, trailing bytes), a value of the
 *              wrong type, bad hex or base64, an integer out of range or with a
 *              fractional part, an unknown enum name, a duplicate key, two
 *              members of one oneof, or an invalid `sig`
 *   -EMSGSIZE  `out` would grow beyond its limit
 *   -ENOMEM    growing `out` failed
 */
int otlp_json_to_proto(enum otlp_signal sig, const char *json, size_t len, struct buf *out,
                       char *err, size_t err_len);

/* Same as otlp_json_to_proto() for any message type `d` (e.g. an
 * Export*ServiceResponse); also -EINVAL if `d` is not a message descriptor or a
 * message type reached from it has more than OTLP_JSON_MAX_FIELDS fields. */
int otlp_json_to_proto_desc(const ProtobufCMessageDescriptor *d, const char *json, size_t len,
                            struct buf *out, char *err, size_t err_len);

/*
 * Walk the protobuf wire bytes `pb` (`len` bytes) of an Export<sig>ServiceRequest
 * and append compact one-line JSON (no trailing newline) to `out`. Keys appear in
 * the order of each field's first occurrence on the wire; all occurrences of a
 * repeated field (packed or not) form one array; for a singular field the last
 * occurrence wins and occurrences of a singular message are merged, as a
 * protobuf parser would; for a oneof the member seen last wins. Unknown fields,
 * and known field numbers with an unexpected wire type, are skipped. Borrows `pb`
 * until return; on failure `out` is restored to its length on entry.
 * Returns:
 *   0          success
 *   -EINVAL    truncated or malformed wire data (bad varint, length past the
 *              end, group or reserved wire types, field number 0), a string
 *              that is not valid UTF-8, a trace/span id that is not 16/8 bytes,
 *              nesting deeper than OTLP_JSON_MAX_DEPTH, or an invalid `sig`
 *   -EMSGSIZE  `out` would grow beyond its limit, `len` is 4 GiB or more, or
 *              merging repeated occurrences of singular messages would hold
 *              copies of more than `len` bytes at once (only non-canonical
 *              input repeats a singular message)
 *   -ENOMEM    growing `out` (or copying occurrences to merge) failed
 */
int otlp_proto_to_json(enum otlp_signal sig, const uint8_t *pb, size_t len, struct buf *out);

/* Same as otlp_proto_to_json() for any message type `d`; also -EINVAL if `d` is
 * not a message descriptor or a type reached from it has more than
 * OTLP_JSON_MAX_FIELDS fields. */
int otlp_proto_to_json_desc(const ProtobufCMessageDescriptor *d, const uint8_t *pb, size_t len,
                            struct buf *out);

#endif
