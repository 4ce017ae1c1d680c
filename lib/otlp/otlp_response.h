/* SPDX-License-Identifier: Apache-2.0 */
/* Export{Trace,Metrics,Logs}ServiceResponse encoding, protobuf and OTLP/JSON:
 * the body of the 200 the receiver sends once a request is batched, with
 * partial_success when items were rejected (OTLP spec, "Partial Success"). */
#ifndef OTLP_OTLP_RESPONSE_H
#define OTLP_OTLP_RESPONSE_H

#include <stdint.h>

#include "base/base.h"
#include "otlp/otlp.h"

/*
 * Append the protobuf Export*ServiceResponse for `sig` to `out`: nothing
 * (the empty message) when rejected == 0 and error_message is NULL or
 * empty; else partial_success (field 1) holding rejected_spans /
 * rejected_data_points / rejected_log_records (int64, field 1; clamped to
 * INT64_MAX) and error_message (field 2). Bytes of error_message that are
 * not valid UTF-8 are replaced by '?' (proto3 strings must be UTF-8).
 * Returns 0, -EINVAL (bad sig, NULL out), -EMSGSIZE, -ENOMEM; on error
 * out->len is unchanged.
 */
int otlp_response_encode_proto(enum otlp_signal sig, uint64_t rejected,
                               const char *error_message, struct buf *out);

/*
 * Append the OTLP/JSON form to `out`: "{}" or
 * {"partialSuccess":{"rejectedSpans":"3","errorMessage":"..."}} (the member
 * is rejectedDataPoints / rejectedLogRecords for metrics / logs; int64 as a
 * JSON string per proto3 JSON mapping; zero values omitted). The message is
 * JSON-escaped; invalid UTF-8 becomes U+FFFD.
 * Returns 0, -EINVAL, -EMSGSIZE, -ENOMEM; on error out->len is unchanged.
 */
int otlp_response_encode_json(enum otlp_signal sig, uint64_t rejected, const char *error_message,
                              struct buf *out);

#endif
