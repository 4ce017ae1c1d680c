/* SPDX-License-Identifier: Apache-2.0 */
/* Batching scanned OTLP requests without decoding them: the accepted
 * top-level Resource* entries of a request are copied into a batch buffer
 * (concatenated field-1 entries are a valid Export*ServiceRequest), with the
 * configured resource attributes spliced into each entry's Resource.
 * Called by the worker after otlp_scan(); the batch goes to the exporter. */
#ifndef OTLP_OTLP_BATCH_H
#define OTLP_OTLP_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "otlp/otlp_scan.h"

/* Where a configured key sits inside otlp_attrs.encoded. */
struct otlp_attr_key {
    uint32_t off;
    uint32_t len;
};

/*
 * Resource attributes to upsert into every batched entry (config
 * resources.attributes), pre-encoded once at start. A zeroed struct is a
 * valid empty set.
 */
struct otlp_attrs {
    unsigned n;                 /* number of attributes */
    uint64_t len_mask;          /* bit min(key length, 63) of every key: a cheap pre-filter */
    uint8_t *encoded;           /* n Resource.attributes fields (key, length, KeyValue{key,
                                 * AnyValue{string_value}}) back to back */
    size_t encoded_len;
    struct otlp_attr_key *keys; /* keys[i]: bytes of key i inside `encoded` */
};

/*
 * Pre-encode n attributes keys[i] = values[i] (string values). Keys must be
 * non-empty, distinct and valid UTF-8; values valid UTF-8 (may be empty);
 * each at most 1 MiB. The strings are copied; `a` owns its memory until
 * otlp_attrs_free(). n == 0 gives an empty set (no allocation).
 * Returns 0, -EINVAL (a or arrays NULL, bad key or value), -ENOMEM.
 * On error `a` is left empty.
 */
int otlp_attrs_init(struct otlp_attrs *a, const char *const *keys, const char *const *values,
                    unsigned n);

/* Free what otlp_attrs_init() allocated and empty `a`; NULL, a zeroed or an
 * already freed struct are fine. */
void otlp_attrs_free(struct otlp_attrs *a);

/*
 * Append the accepted top-level entries (field 1: ResourceSpans,
 * ResourceMetrics or ResourceLogs) of req[0..len) to `batch`, skipping the
 * entries `res` lists as rejected. `res` must be the result of a successful
 * otlp_scan() of exactly these bytes; nothing is appended when
 * res->rejected_all is set. Top-level fields other than 1 are dropped.
 *
 * With `attrs` non-empty, each copied entry's Resource (entry field 1) is
 * rewritten: attributes whose key equals a configured key are removed and
 * the configured attributes appended (upsert), other Resource fields
 * (dropped_attributes_count, entity_refs, unknown fields) and all other
 * entry fields are kept byte for byte, an entry without a Resource gets
 * one, and the entry's length prefix is recomputed. When an entry holds
 * several Resource fields (protobuf merges them) configured keys are
 * removed from all and the attributes appended to the last. `attrs` may be
 * NULL (plain copy: one memcpy per run of consecutive accepted entries).
 *
 * Writes straight into `batch` with no temporary allocation; the buffer
 * grows up to its limit only if it has not been allocated at full size.
 * `req`, `res` and `attrs` are borrowed until return.
 *
 * Returns 0; -EMSGSIZE when `batch` would exceed its limit; -ENOMEM when it
 * cannot grow; -EINVAL when batch/res is NULL or `req` does not parse as
 * a scanned request. On error batch->len is restored (nothing appended).
 */
int otlp_batch_append(struct buf *batch, const uint8_t *req, size_t len,
                      const struct otlp_scan_result *res, const struct otlp_attrs *attrs);

#endif
