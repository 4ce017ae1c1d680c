/* SPDX-License-Identifier: Apache-2.0 */
/* A single-producer/single-consumer ring of pointers (the socket-mode
 * stand-in for an SP/SC rte_ring). Capacity is a power of two fixed at init. */
#ifndef OTLP_RING_H
#define OTLP_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct spsc_ring {
    _Alignas(BASE_CACHE_LINE) _Atomic uint64_t head; /* written by the producer */
    _Alignas(BASE_CACHE_LINE) _Atomic uint64_t tail; /* written by the consumer */
    _Alignas(BASE_CACHE_LINE) uint64_t mask;
    void **slots;
};

/* `cap` is rounded up to a power of two. Returns 0, -ENOMEM. */
int spsc_ring_init(struct spsc_ring *r, size_t cap);
void spsc_ring_fini(struct spsc_ring *r);

/* Producer only. Returns 0, -ENOBUFS when full. */
static inline int spsc_ring_push(struct spsc_ring *r, void *p)
{
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (unlikely(h - t > r->mask))
        return -105; /* -ENOBUFS without pulling errno.h into every user */
    r->slots[h & r->mask] = p;
    atomic_store_explicit(&r->head, h + 1, memory_order_release);
    return 0;
}

/* Consumer only. Returns the oldest pointer or NULL when empty. */
static inline void *spsc_ring_pop(struct spsc_ring *r)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    if (t == h)
        return NULL;
    void *p = r->slots[t & r->mask];
    atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    return p;
}

/* Any thread; approximate. */
static inline uint64_t spsc_ring_count(const struct spsc_ring *r)
{
    uint64_t h = atomic_load_explicit(&((struct spsc_ring *)r)->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&((struct spsc_ring *)r)->tail, memory_order_acquire);
    return h - t;
}

#endif
