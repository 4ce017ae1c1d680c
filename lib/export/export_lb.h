/* SPDX-License-Identifier: Apache-2.0 */
/* The routing of the load-balancing exporter (exporter.protocol:
 * loadbalancing, export_lb.c): a consistent-hash ring over the endpoint
 * URLs and the choice of an endpoint for every item of a batch. Public for
 * the unit tests and for anyone who must predict where a trace goes. */
#ifndef OTLP_EXPORT_LB_H
#define OTLP_EXPORT_LB_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "otlp/otlp.h"
#include "otlp/otlp_split.h"

/* Points on the ring per endpoint: with 160, each of n endpoints owns
 * 1/n of the keys within a few percent. */
#define EXPORT_LB_VNODES 160
/* Most endpoints at once (more are ignored, with a warning). */
#define EXPORT_LB_MAX_ENDPOINTS 64

struct export_lb_point {
    uint64_t hash;
    uint32_t endpoint; /* index into the endpoint list the ring was built from */
};

/* A ring: points sorted by hash. A zeroed struct is an empty ring. */
struct export_lb_ring {
    struct export_lb_point *points;
    uint32_t n_points;
    uint32_t n_endpoints;
};

/* 64-bit hash of the ring and of the routing keys (FNV-1a, then the
 * MurmurHash3 finaliser so that close inputs land far apart). Stable
 * across versions and processes: every gateway of a fleet routes a trace
 * to the same endpoint. */
uint64_t export_lb_hash(const void *data, size_t len);

/*
 * Build the ring of endpoints[0..n) (n <= EXPORT_LB_MAX_ENDPOINTS): point i
 * of endpoint e is export_lb_hash(url) mixed with i, so a point depends only
 * on its own URL and adding or removing one endpoint moves about 1/n of the
 * keys. Replaces what `ring` held. n == 0 gives an empty ring.
 * Returns 0; -EINVAL (NULL, n too large); -ENOMEM (ring unchanged).
 */
int export_lb_ring_build(struct export_lb_ring *ring, const char *const *endpoints, unsigned n);

/* Free the points; the ring is empty afterwards. NULL is a no-op. */
void export_lb_ring_free(struct export_lb_ring *ring);

/* The endpoint owning `key_hash`: the first point at or after it, wrapping.
 * UINT32_MAX for an empty ring. */
uint32_t export_lb_ring_lookup(const struct export_lb_ring *ring, uint64_t key_hash);

/*
 * The endpoint of every unit of the parsed split `s` (signal `sig`):
 * spans by trace id (routing_key traceID) or by their resource's
 * service.name (routing_key service); metric and log units always by
 * service.name ("" when the resource has none). unit_endpoint gets
 * otlp_split_n_units(s) entries.
 * Returns 0; -EINVAL (empty ring, malformed Resource); -ENOMEM.
 */
int export_lb_route(const struct export_lb_ring *ring, const struct otlp_split *s,
                    enum otlp_signal sig, enum lb_routing_key key, uint32_t *unit_endpoint);

#endif
