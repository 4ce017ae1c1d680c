/* SPDX-License-Identifier: Apache-2.0 */
/* Taking a batch (an Export*ServiceRequest body) apart into its items
 * (spans, metrics, log records) and writing subsets of them back as valid
 * requests, each item regrouped under its own Resource and Scope entry. The
 * exporters that route or key items separately use it: Kafka (one message per
 * trace or resource) and load balancing (one part per endpoint). */
#ifndef OTLP_OTLP_SPLIT_H
#define OTLP_OTLP_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "otlp/otlp.h"

/* Scratch state, reused batch after batch; it grows to the largest batch
 * seen and keeps its memory. Not thread-safe: one per exporter thread. */
struct otlp_split;

/* One item of the parsed body. */
struct otlp_split_unit {
    uint32_t resource;    /* index of its ResourceX entry */
    uint32_t scope;       /* index of its ScopeX entry (over all resources) */
    uint32_t off, len;    /* the item's message bytes in the body (no key, no length) */
    uint32_t items;       /* 1, or a Metric's data points */
    uint32_t next;        /* private: grouping link */
    uint8_t trace_id[16]; /* spans: field 1; all zeros when absent or not 16 bytes */
};

/* How otlp_split_group() orders the units. */
enum otlp_split_by {
    OTLP_SPLIT_ALL = 0,      /* one group, batch order */
    OTLP_SPLIT_TRACE_ID,     /* one group per trace id (spans) */
    OTLP_SPLIT_RESOURCE_KEY, /* one group per distinct resource key (caller's 16 bytes) */
};

/* Returns 0 and *out; -EINVAL (out NULL); -ENOMEM. */
int otlp_split_create(struct otlp_split **out);

/* Free everything. NULL is a no-op. */
void otlp_split_destroy(struct otlp_split *s);

/*
 * Parse `body` (`len` bytes) of signal `sig` into units, resources and
 * scopes, replacing what an earlier parse held. The split keeps byte ranges
 * into `body`: it is borrowed until the next parse or until the last
 * otlp_split_write() that reads it. Top-level fields other than 1 are
 * dropped; unknown fields of ResourceX and ScopeX are kept (written back in
 * canonical order: fields below 2, the children, fields above 2).
 * Returns 0; -EINVAL (not valid protobuf of the expected shape); -ENOMEM.
 */
int otlp_split_parse(struct otlp_split *s, enum otlp_signal sig, const uint8_t *body, size_t len);

/* Units (items) of the last parse, in batch order; index < otlp_split_n_units(). */
size_t otlp_split_n_units(const struct otlp_split *s);
const struct otlp_split_unit *otlp_split_unit_at(const struct otlp_split *s, size_t i);

/* ResourceX entries of the last parse, and the Resource message (field 1) of
 * entry r: *pb NULL and *len 0 when the entry has none. */
size_t otlp_split_n_resources(const struct otlp_split *s);
void otlp_split_resource(const struct otlp_split *s, size_t r, const uint8_t **pb, size_t *len);

/*
 * Order the units in groups: every unit once, the units of a group next to
 * each other, groups in order of first appearance, units of a group in batch
 * order. `resource_keys` (OTLP_SPLIT_RESOURCE_KEY only) holds one 16-byte key
 * per resource entry; borrowed until return.
 * Returns 0; -EINVAL (RESOURCE_KEY without keys); -ENOMEM.
 */
int otlp_split_group(struct otlp_split *s, enum otlp_split_by by,
                     const uint8_t (*resource_keys)[16]);

/*
 * Order the units by a small id the caller chose per unit (e.g. the endpoint
 * a load balancer routes it to): group g holds the units with
 * unit_ids[i] == g in batch order; there are exactly n_ids groups, some
 * maybe empty. Ids must be < n_ids.
 * Returns 0; -EINVAL (an id out of range, n_ids 0); -ENOMEM.
 */
int otlp_split_group_ids(struct otlp_split *s, const uint32_t *unit_ids, uint32_t n_ids);

/* Groups of the last otlp_split_group*(), and group g's positions
 * [*first, *end) in the grouped order; *key (may be NULL) gets its 16-byte
 * trace id or resource key (all zeros after group_ids and SPLIT_ALL). */
uint32_t otlp_split_n_groups(const struct otlp_split *s);
void otlp_split_group_at(const struct otlp_split *s, uint32_t g, size_t *first, size_t *end,
                         const uint8_t **key);

/* Items (spans, data points, log records) of positions [a, b) of the grouped order. */
uint64_t otlp_split_items(const struct otlp_split *s, size_t a, size_t b);

/* The end e of the longest run [a, e) of the grouped order (a < e <= b) whose
 * request is at most max_bytes; a single unit larger than that gives a + 1. */
size_t otlp_split_fit(const struct otlp_split *s, size_t a, size_t b, uint64_t max_bytes);

/*
 * Append the Export*ServiceRequest holding positions [a, b) of the grouped
 * order to `out`: consecutive units of one resource entry (and of one scope)
 * share one ResourceX (ScopeX) entry, so the units of any subset written in
 * batch order take no more bytes than they did in the body.
 * Returns 0; -ENOMEM (out->len may have grown; reset it to retry).
 */
int otlp_split_write(const struct otlp_split *s, size_t a, size_t b, struct buf *out);

/*
 * The string value of attribute `key` in a Resource message (pb, len bytes):
 * *val and *vlen point into pb. Returns 0; -ENOENT (no such attribute, or
 * not a string); -EINVAL (malformed protobuf).
 */
int otlp_resource_string_attr(const uint8_t *pb, size_t len, const char *key, const uint8_t **val,
                              size_t *vlen);

#endif
