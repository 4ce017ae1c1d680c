/* SPDX-License-Identifier: Apache-2.0 */
/* Copying scanned requests into batch buffers, splicing the configured
 * resource attributes into each Resource on the way (see otlp_batch.h and
 * DESIGN.md "Why batching can be cheap"). */
#include "otlp/otlp_batch.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "otlp/otlp_wire.h"

#define ATTR_MAX_STRING (1u << 20)

/* Field numbers shared by ResourceSpans/ResourceMetrics/ResourceLogs and the
 * messages below them (OTLP v1 protos). */
#define REQ_RESOURCE_ENTRY 1 /* Export*ServiceRequest.resource_{spans,metrics,logs} */
#define ENTRY_RESOURCE 1     /* Resource{Spans,Metrics,Logs}.resource */
#define RESOURCE_ATTRIBUTES 1
#define KEY_VALUE_KEY 1
#define KEY_VALUE_VALUE 2
#define ANY_VALUE_STRING 1

/* ------------------------------------------------------------------------ */
/* Attributes                                                               */
/* ------------------------------------------------------------------------ */

void otlp_attrs_free(struct otlp_attrs *a)
{
    if (a == NULL)
        return;
    free(a->encoded);
    free(a->keys);
    memset(a, 0, sizeof(*a));
}

static uint64_t len_bit(size_t len)
{
    return 1ull << (len < 63 ? len : 63);
}

int otlp_attrs_init(struct otlp_attrs *a, const char *const *keys, const char *const *values,
                    unsigned n)
{
    if (a == NULL)
        return -EINVAL;
    memset(a, 0, sizeof(*a));
    if (n == 0)
        return 0;
    if (keys == NULL || values == NULL)
        return -EINVAL;

    size_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        if (keys[i] == NULL || values[i] == NULL)
            return -EINVAL;
        size_t kl = strlen(keys[i]), vl = strlen(values[i]);
        if (kl == 0 || kl > ATTR_MAX_STRING || vl > ATTR_MAX_STRING ||
            !otlp_utf8_valid((const uint8_t *)keys[i], kl) ||
            !otlp_utf8_valid((const uint8_t *)values[i], vl))
            return -EINVAL;
        for (unsigned j = 0; j < i; j++)
            if (strcmp(keys[i], keys[j]) == 0)
                return -EINVAL;
        size_t av = otlp_wire_len_field_size(ANY_VALUE_STRING, vl);
        size_t kv = otlp_wire_len_field_size(KEY_VALUE_KEY, kl) +
                    otlp_wire_len_field_size(KEY_VALUE_VALUE, av);
        total += otlp_wire_len_field_size(RESOURCE_ATTRIBUTES, kv);
    }

    a->encoded = malloc(total);
    a->keys = calloc(n, sizeof(*a->keys));
    if (a->encoded == NULL || a->keys == NULL) {
        otlp_attrs_free(a);
        return -ENOMEM;
    }
    uint8_t *d = a->encoded;
    for (unsigned i = 0; i < n; i++) {
        size_t kl = strlen(keys[i]), vl = strlen(values[i]);
        size_t av = otlp_wire_len_field_size(ANY_VALUE_STRING, vl);
        size_t kv = otlp_wire_len_field_size(KEY_VALUE_KEY, kl) +
                    otlp_wire_len_field_size(KEY_VALUE_VALUE, av);
        d = otlp_wire_put_len_hdr(d, RESOURCE_ATTRIBUTES, kv);
        d = otlp_wire_put_len_hdr(d, KEY_VALUE_KEY, kl);
        a->keys[i].off = (uint32_t)(d - a->encoded);
        a->keys[i].len = (uint32_t)kl;
        memcpy(d, keys[i], kl);
        d += kl;
        d = otlp_wire_put_len_hdr(d, KEY_VALUE_VALUE, av);
        d = otlp_wire_put_bytes(d, ANY_VALUE_STRING, values[i], vl);
        a->len_mask |= len_bit(kl);
    }
    a->encoded_len = (size_t)(d - a->encoded);
    a->n = n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Splicing                                                                 */
/* ------------------------------------------------------------------------ */

/* Is the KeyValue kv[0..n) one whose key is configured? The last key field
 * counts (protobuf: last one wins). A malformed KeyValue is kept as is. */
static bool kv_configured(const struct otlp_attrs *a, const uint8_t *kv, size_t n)
{
    const uint8_t *p = kv, *end = kv + n, *key = NULL;
    size_t klen = 0;
    while (p < end) {
        uint32_t fn;
        unsigned wt;
        if (otlp_wire_key(&p, end, &fn, &wt) < 0)
            return false;
        if (fn == KEY_VALUE_KEY && wt == OTLP_WIRE_LEN) {
            if (otlp_wire_len(&p, end, &klen) < 0)
                return false;
            key = p;
            p += klen;
        } else if (otlp_wire_skip(&p, end, wt) < 0) {
            return false;
        }
    }
    if (key == NULL || !(a->len_mask & len_bit(klen)))
        return false;
    for (unsigned i = 0; i < a->n; i++)
        if (a->keys[i].len == klen && memcmp(a->encoded + a->keys[i].off, key, klen) == 0)
            return true;
    return false;
}

/*
 * Walk the Resource r[0..n) and keep every field except attributes with a
 * configured key. Returns the kept size; when dst is set also writes the
 * kept bytes there (runs of kept fields in one memcpy each). Returns
 * (size_t)-1 when the Resource does not parse.
 */
static size_t resource_filter(const struct otlp_attrs *a, const uint8_t *r, size_t n,
                              uint8_t *dst)
{
    const uint8_t *p = r, *end = r + n, *run = r;
    size_t kept = 0;
    while (p < end) {
        const uint8_t *field = p;
        uint32_t fn;
        unsigned wt;
        if (otlp_wire_key(&p, end, &fn, &wt) < 0)
            return (size_t)-1;
        if (fn == RESOURCE_ATTRIBUTES && wt == OTLP_WIRE_LEN) {
            size_t kvn;
            if (otlp_wire_len(&p, end, &kvn) < 0)
                return (size_t)-1;
            bool drop = kv_configured(a, p, kvn);
            p += kvn;
            if (!drop)
                continue;
            /* flush the run before the dropped attribute */
            size_t rl = (size_t)(field - run);
            if (dst != NULL && rl > 0) {
                memcpy(dst + kept, run, rl);
            }
            kept += rl;
            run = p;
        } else if (otlp_wire_skip(&p, end, wt) < 0) {
            return (size_t)-1;
        }
    }
    size_t rl = (size_t)(end - run);
    if (dst != NULL && rl > 0)
        memcpy(dst + kept, run, rl);
    return kept + rl;
}

/*
 * Append one entry (payload c[0..n)) with its Resource rewritten. Two
 * passes: the first computes the exact output size so that the batch needs
 * no slack and the length prefixes are written once; the second writes.
 */
static int splice_entry(struct buf *batch, const struct otlp_attrs *a, const uint8_t *c,
                        size_t n)
{
    const uint8_t *p, *end = c + n;
    size_t out = 0, pending = 0;
    size_t kept_cache[4]; /* kept sizes of the first Resources, saving pass 2 a walk */
    unsigned n_res = 0;

    /* pass 1: size */
    for (p = c; p < end;) {
        const uint8_t *field = p;
        uint32_t fn;
        unsigned wt;
        if (otlp_wire_key(&p, end, &fn, &wt) < 0)
            return -EINVAL;
        if (fn == ENTRY_RESOURCE && wt == OTLP_WIRE_LEN) {
            size_t rn;
            if (otlp_wire_len(&p, end, &rn) < 0)
                return -EINVAL;
            if (n_res > 0)
                out += otlp_wire_len_field_size(ENTRY_RESOURCE, pending);
            pending = resource_filter(a, p, rn, NULL);
            if (pending == (size_t)-1)
                return -EINVAL;
            if (n_res < ARRAY_SIZE(kept_cache))
                kept_cache[n_res] = pending;
            n_res++;
            p += rn;
        } else {
            if (otlp_wire_skip(&p, end, wt) < 0)
                return -EINVAL;
            out += (size_t)(p - field);
        }
    }
    /* the last (or a new) Resource gets the configured attributes */
    out += otlp_wire_len_field_size(ENTRY_RESOURCE, pending + a->encoded_len);

    size_t total = otlp_wire_len_field_size(REQ_RESOURCE_ENTRY, out);
    int rc = buf_reserve(batch, total);
    if (rc < 0)
        return rc;

    /* pass 2: write */
    uint8_t *d = batch->data + batch->len;
    uint8_t *const d0 = d;
    d = otlp_wire_put_len_hdr(d, REQ_RESOURCE_ENTRY, out);
    if (n_res == 0) {
        d = otlp_wire_put_len_hdr(d, ENTRY_RESOURCE, a->encoded_len);
        memcpy(d, a->encoded, a->encoded_len);
        d += a->encoded_len;
    }
    unsigned seen = 0;
    const uint8_t *run = c;
    for (p = c; p < end;) {
        const uint8_t *field = p;
        uint32_t fn = 0;
        unsigned wt = 0;
        (void)otlp_wire_key(&p, end, &fn, &wt); /* parsed in pass 1 */
        if (fn == ENTRY_RESOURCE && wt == OTLP_WIRE_LEN) {
            size_t rn = 0;
            (void)otlp_wire_len(&p, end, &rn);
            size_t rl = (size_t)(field - run);
            if (rl > 0)
                memcpy(d, run, rl);
            d += rl;
            size_t kept = seen < ARRAY_SIZE(kept_cache) ? kept_cache[seen]
                                                         : resource_filter(a, p, rn, NULL);
            bool last = ++seen == n_res;
            d = otlp_wire_put_len_hdr(d, ENTRY_RESOURCE, kept + (last ? a->encoded_len : 0));
            d += resource_filter(a, p, rn, d);
            if (last) {
                memcpy(d, a->encoded, a->encoded_len);
                d += a->encoded_len;
            }
            p += rn;
            run = p;
        } else {
            (void)otlp_wire_skip(&p, end, wt);
        }
    }
    size_t rl = (size_t)(end - run);
    if (rl > 0)
        memcpy(d, run, rl);
    d += rl;
    batch->len += (size_t)(d - d0);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Append                                                                   */
/* ------------------------------------------------------------------------ */

int otlp_batch_append(struct buf *batch, const uint8_t *req, size_t len,
                      const struct otlp_scan_result *res, const struct otlp_attrs *attrs)
{
    if (batch == NULL || res == NULL || (req == NULL && len > 0))
        return -EINVAL;
    if (res->rejected_all || len == 0)
        return 0;

    const size_t saved = batch->len;
    const bool splice = attrs != NULL && attrs->n > 0;
    const uint8_t *p = req, *end = req + len;
    const uint8_t *run = NULL, *run_end = NULL; /* pending plain copy */
    uint32_t k = 0;                             /* next rejected entry */
    int rc = 0;

    while (p < end) {
        const uint8_t *field = p;
        uint32_t fn;
        unsigned wt;
        size_t n;
        if (otlp_wire_key(&p, end, &fn, &wt) < 0) {
            rc = -EINVAL;
            goto fail;
        }
        if (fn != REQ_RESOURCE_ENTRY || wt != OTLP_WIRE_LEN) {
            if (fn == REQ_RESOURCE_ENTRY || otlp_wire_skip(&p, end, wt) < 0) {
                rc = -EINVAL;
                goto fail;
            }
            continue; /* unknown top-level field: not part of the batch */
        }
        if (otlp_wire_len(&p, end, &n) < 0) {
            rc = -EINVAL;
            goto fail;
        }
        const uint8_t *next = p + n;
        if (k < res->n_rejected && res->rejected[k].off == (uint32_t)(field - req)) {
            k++;
        } else if (!splice) {
            if (run_end != field) {
                if (run != NULL && (rc = buf_append(batch, run, (size_t)(run_end - run))) < 0)
                    goto fail;
                run = field;
            }
            run_end = next;
        } else if ((rc = splice_entry(batch, attrs, p, n)) < 0) {
            goto fail;
        }
        p = next;
    }
    if (run != NULL && (rc = buf_append(batch, run, (size_t)(run_end - run))) < 0)
        goto fail;
    return 0;

fail:
    batch->len = saved;
    return rc;
}
