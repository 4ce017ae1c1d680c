/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC-over-HTTP/2 details the OTLP/gRPC receiver needs beside nghttp2:
 * status codes, grpc-timeout parsing, grpc-message percent-encoding and the
 * grpc-status-details-bin value (google.rpc.Status with a RetryInfo, base64).
 * Spec: github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md. No state. */
#ifndef OTLP_GRPC_WIRE_H
#define OTLP_GRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* gRPC status codes: X(enum suffix, value, name as grpc-go and the
 * Prometheus gRPC exporters spell it). */
#define GRPC_STATUS_CODES(X)                                                                       \
    X(OK, 0, "OK")                                                                                 \
    X(CANCELLED, 1, "Canceled")                                                                    \
    X(UNKNOWN, 2, "Unknown")                                                                       \
    X(INVALID_ARGUMENT, 3, "InvalidArgument")                                                      \
    X(DEADLINE_EXCEEDED, 4, "DeadlineExceeded")                                                    \
    X(NOT_FOUND, 5, "NotFound")                                                                    \
    X(ALREADY_EXISTS, 6, "AlreadyExists")                                                          \
    X(PERMISSION_DENIED, 7, "PermissionDenied")                                                    \
    X(RESOURCE_EXHAUSTED, 8, "ResourceExhausted")                                                  \
    X(FAILED_PRECONDITION, 9, "FailedPrecondition")                                                \
    X(ABORTED, 10, "Aborted")                                                                      \
    X(OUT_OF_RANGE, 11, "OutOfRange")                                                              \
    X(UNIMPLEMENTED, 12, "Unimplemented")                                                          \
    X(INTERNAL, 13, "Internal")                                                                    \
    X(UNAVAILABLE, 14, "Unavailable")                                                              \
    X(DATA_LOSS, 15, "DataLoss")                                                                   \
    X(UNAUTHENTICATED, 16, "Unauthenticated")

enum grpc_status {
#define X(e, v, n) GRPC_STATUS_##e = v,
    GRPC_STATUS_CODES(X)
#undef X
    GRPC_STATUS_COUNT
};

/* "OK", "ResourceExhausted", ...; "Unknown" for values out of range. */
const char *grpc_status_name(int code);

/* Length-prefixed message framing: 1 flag byte (bit 0: compressed), then
 * the message length as 4 bytes big-endian. */
#define GRPC_FRAME_HDR 5
#define GRPC_FLAG_COMPRESSED 0x01

/*
 * Parse a grpc-timeout value: 1 to 8 ASCII digits and a unit, H M S m u n
 * (hours .. nanoseconds). v[0..len) is borrowed; no NUL needed.
 * Returns 0 and *ns_out (saturated at UINT64_MAX), or -EINVAL.
 */
int grpc_timeout_parse(const uint8_t *v, size_t len, uint64_t *ns_out);

/*
 * Percent-encode `msg` for the grpc-message header: bytes outside
 * 0x20..0x7E and '%' become %XX. Writes at most cap-1 bytes and a NUL
 * (cap > 0), never splitting an escape. Returns the length written.
 */
size_t grpc_percent_encode(const char *msg, char *out, size_t cap);

/* Base64 (RFC 4648 section 4 alphabet) without padding, as gRPC sends
 * -bin header values. Writes a NUL. Returns the length, or -EMSGSIZE when
 * cap is too small (needs 4 * ceil(len / 3) + 1). */
int grpc_base64_encode(const uint8_t *in, size_t len, char *out, size_t cap);

/*
 * Append google.rpc.Status{code, message, details} to `out`, details
 * holding one google.protobuf.Any with a google.rpc.RetryInfo
 * {retry_delay: Duration{seconds: retry_delay_s}} when `retry` is set
 * (OTLP spec: RESOURCE_EXHAUSTED is retryable only with RetryInfo).
 * Returns 0, -EMSGSIZE, -ENOMEM (as buf_append).
 */
int grpc_status_details_encode(int code, const char *message, bool retry, uint32_t retry_delay_s,
                               struct buf *out);

#endif
