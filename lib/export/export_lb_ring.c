/* SPDX-License-Identifier: Apache-2.0 */
/* Consistent hashing for the load-balancing exporter (export_lb.h): the ring
 * of endpoint points and the endpoint of each item of a batch, by trace id
 * or by the service.name of its resource. */
#include "export/export_lb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* MurmurHash3 fmix64. */
static uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

uint64_t export_lb_hash(const void *data, size_t len)
{
    return fmix64(fnv1a(FNV_OFFSET, data, len));
}

static int point_cmp(const void *a, const void *b)
{
    const struct export_lb_point *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    /* A collision: the lower index wins the position (callers sort their
     * endpoint lists, so every gateway agrees). */
    return x->endpoint < y->endpoint ? -1 : x->endpoint > y->endpoint;
}

int export_lb_ring_build(struct export_lb_ring *ring, const char *const *endpoints, unsigned n)
{
    if (ring == NULL || (endpoints == NULL && n > 0) || n > EXPORT_LB_MAX_ENDPOINTS)
        return -EINVAL;
    struct export_lb_point *pts = NULL;
    if (n > 0) {
        pts = calloc((size_t)n * EXPORT_LB_VNODES, sizeof(*pts));
        if (pts == NULL)
            return -ENOMEM;
    }
    for (unsigned e = 0; e < n; e++) {
        uint64_t base = fnv1a(FNV_OFFSET, endpoints[e], strlen(endpoints[e]));
        for (uint32_t i = 0; i < EXPORT_LB_VNODES; i++) {
            uint8_t le[4] = {(uint8_t)i, (uint8_t)(i >> 8), (uint8_t)(i >> 16), (uint8_t)(i >> 24)};
            struct export_lb_point *pt = &pts[(size_t)e * EXPORT_LB_VNODES + i];
            pt->hash = fmix64(fnv1a(base, le, sizeof(le)));
            pt->endpoint = e;
        }
    }
    if (n > 0)
        qsort(pts, (size_t)n * EXPORT_LB_VNODES, sizeof(*pts), point_cmp);
    free(ring->points);
    ring->points = pts;
    ring->n_points = n * EXPORT_LB_VNODES;
    ring->n_endpoints = n;
    return 0;
}

void export_lb_ring_free(struct export_lb_ring *ring)
{
    if (ring == NULL)
        return;
    free(ring->points);
    memset(ring, 0, sizeof(*ring));
}

uint32_t export_lb_ring_lookup(const struct export_lb_ring *ring, uint64_t key_hash)
{
    if (ring->n_points == 0)
        return UINT32_MAX;
    /* lower bound: first point with hash >= key_hash */
    uint32_t lo = 0, hi = ring->n_points;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ring->points[mid].hash < key_hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    return ring->points[lo == ring->n_points ? 0 : lo].endpoint;
}

/* The endpoint of a resource entry's service.name. */
static int route_service(const struct export_lb_ring *ring, const struct otlp_split *s, size_t r,
                         uint32_t *ep)
{
    const uint8_t *pb, *v = NULL;
    size_t len, vlen = 0;
    otlp_split_resource(s, r, &pb, &len);
    int rc = otlp_resource_string_attr(pb, len, "service.name", &v, &vlen);
    if (rc == -EINVAL)
        return rc;
    if (rc < 0)
        vlen = 0; /* no service.name: all such resources go to one endpoint */
    *ep = export_lb_ring_lookup(ring, export_lb_hash(v, vlen));
    return 0;
}

int export_lb_route(const struct export_lb_ring *ring, const struct otlp_split *s,
                    enum otlp_signal sig, enum lb_routing_key key, uint32_t *unit_endpoint)
{
    if (ring == NULL || s == NULL || ring->n_points == 0 ||
        (unit_endpoint == NULL && otlp_split_n_units(s) > 0))
        return -EINVAL;
    size_t nu = otlp_split_n_units(s);
    if (sig == OTLP_TRACES && key == LB_ROUTING_TRACE_ID) {
        for (size_t i = 0; i < nu; i++) {
            const struct otlp_split_unit *u = otlp_split_unit_at(s, i);
            unit_endpoint[i] = export_lb_ring_lookup(ring, export_lb_hash(u->trace_id, 16));
        }
        return 0;
    }
    /* By service.name: once per resource entry; units come in resource order. */
    uint32_t last_r = UINT32_MAX, ep = 0;
    for (size_t i = 0; i < nu; i++) {
        const struct otlp_split_unit *u = otlp_split_unit_at(s, i);
        if (u->resource != last_r) {
            int rc = route_service(ring, s, u->resource, &ep);
            if (rc < 0)
                return rc;
            last_r = u->resource;
        }
        unit_endpoint[i] = ep;
    }
    return 0;
}
