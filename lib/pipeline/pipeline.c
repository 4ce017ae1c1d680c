/* SPDX-License-Identifier: Apache-2.0 */
/* Batches between workers and the export thread: per-worker pools, open
 * batches and SPSC rings, so a worker never locks or blocks. */
#include "pipeline/pipeline.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "otlp/otlp_batch.h"
#include "otlp/otlp_scan.h"
#include "pipeline/ring.h"

_Static_assert(ENOBUFS == 105, "ring.h hard-codes -ENOBUFS");

struct pipeline_worker {
    _Alignas(BASE_CACHE_LINE) struct batch *open[OTLP_SIGNAL_COUNT];
    struct spsc_ring ready;     /* worker -> exporter */
    struct spsc_ring free;      /* exporter -> worker */
    _Alignas(BASE_CACHE_LINE) _Atomic uint64_t admitted;  /* written by the worker */
    _Alignas(BASE_CACHE_LINE) _Atomic uint64_t released;  /* written by the exporter */
};

struct pipeline {
    unsigned n_workers;
    unsigned batches_per_worker;
    uint64_t max_queue_items;
    uint64_t max_batch_items;
    uint64_t max_batch_bytes;
    uint32_t batch_timeout_ms;
    unsigned next_dequeue;      /* exporter's round-robin cursor */
    struct batch *batches;      /* all of them, one allocation */
    struct pipeline_worker *workers;
    void (*wakeup)(void *arg);
    void *wakeup_arg;
};

int pipeline_create(const struct svc_config *cfg, unsigned n_workers, struct pipeline **out)
{
    if (n_workers == 0 || cfg->batch.max_export_batch_size == 0 || cfg->batch.max_queue_size == 0)
        return -EINVAL;
    struct pipeline *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->n_workers = n_workers;
    p->max_queue_items = cfg->batch.max_queue_size;
    p->max_batch_items = cfg->batch.max_export_batch_size;
    p->max_batch_bytes = cfg->batch.max_batch_bytes;
    p->batch_timeout_ms = cfg->batch.batch_timeout_ms;

    /* Enough batches for a full queue of full batches twice over (partially
     * filled batches flushed by age), the exports in flight and every
     * worker's open batches. */
    uint64_t queued = (p->max_queue_items + p->max_batch_items - 1) / p->max_batch_items;
    uint64_t total = 2 * queued + cfg->batch.max_concurrent_exports;
    unsigned per = (unsigned)((total + n_workers - 1) / n_workers) + OTLP_SIGNAL_COUNT + 1;
    p->batches_per_worker = per;
    /* A batch holds at least one maximal request plus splice overhead. */
    size_t limit = (size_t)(cfg->batch.max_batch_bytes + cfg->receiver.max_decompressed_bytes +
                            cfg->receiver.max_decompressed_bytes / 4 + 65536);

    int rc = -ENOMEM;
    p->batches = calloc((size_t)per * n_workers, sizeof(*p->batches));
    if (posix_memalign((void **)&p->workers, BASE_CACHE_LINE, n_workers * sizeof(*p->workers)))
        p->workers = NULL;
    if (p->batches == NULL || p->workers == NULL)
        goto fail;
    memset(p->workers, 0, n_workers * sizeof(*p->workers));
    for (unsigned w = 0; w < n_workers; w++) {
        struct pipeline_worker *pw = &p->workers[w];
        if ((rc = spsc_ring_init(&pw->ready, per)) < 0 || (rc = spsc_ring_init(&pw->free, per)) < 0)
            goto fail;
        for (unsigned i = 0; i < per; i++) {
            struct batch *b = &p->batches[(size_t)w * per + i];
            /* Storage grows on first use up to `limit` and is kept, so
             * memory is flat after warm-up. */
            buf_init(&b->body, 0, limit);
            b->worker = (uint16_t)w;
            spsc_ring_push(&pw->free, b);
        }
    }
    *out = p;
    return 0;
fail:
    pipeline_destroy(p);
    return rc;
}

void pipeline_destroy(struct pipeline *p)
{
    if (p == NULL)
        return;
    if (p->workers != NULL) {
        for (unsigned w = 0; w < p->n_workers; w++) {
            spsc_ring_fini(&p->workers[w].ready);
            spsc_ring_fini(&p->workers[w].free);
        }
    }
    if (p->batches != NULL) {
        for (size_t i = 0; i < (size_t)p->batches_per_worker * p->n_workers; i++)
            buf_free(&p->batches[i].body);
    }
    free(p->batches);
    free(p->workers);
    free(p);
}

uint64_t pipeline_queued_items(const struct pipeline *p)
{
    uint64_t sum = 0;
    for (unsigned w = 0; w < p->n_workers; w++) {
        struct pipeline_worker *pw = &p->workers[w];
        uint64_t rel = atomic_load_explicit(&pw->released, memory_order_acquire);
        uint64_t adm = atomic_load_explicit(&pw->admitted, memory_order_acquire);
        sum += adm >= rel ? adm - rel : 0;
    }
    return sum;
}

uint64_t pipeline_capacity_items(const struct pipeline *p)
{
    return p->max_queue_items;
}

uint64_t pipeline_queued_batches(const struct pipeline *p)
{
    uint64_t sum = 0;
    for (unsigned w = 0; w < p->n_workers; w++)
        sum += spsc_ring_count(&p->workers[w].ready);
    return sum;
}

unsigned pipeline_free_batches(const struct pipeline *p)
{
    unsigned sum = 0;
    for (unsigned w = 0; w < p->n_workers; w++)
        sum += (unsigned)spsc_ring_count(&p->workers[w].free);
    return sum;
}

unsigned pipeline_free_batches_min(const struct pipeline *p)
{
    unsigned min = p->batches_per_worker;
    for (unsigned w = 0; w < p->n_workers; w++)
        min = BASE_MIN(min, (unsigned)spsc_ring_count(&p->workers[w].free));
    return min;
}

unsigned pipeline_batches_per_worker(const struct pipeline *p)
{
    return p->batches_per_worker;
}

int pipeline_admit(struct pipeline *p, unsigned w, uint64_t items)
{
    if (pipeline_queued_items(p) + items > p->max_queue_items)
        return -ENOBUFS;
    (void)w;
    return 0;
}

struct batch *pipeline_open_batch(struct pipeline *p, unsigned w, enum otlp_signal sig)
{
    struct pipeline_worker *pw = &p->workers[w];
    struct batch *b = pw->open[sig];
    if (b != NULL)
        return b;
    b = spsc_ring_pop(&pw->free);
    if (unlikely(b == NULL))
        return NULL;
    b->signal = sig;
    b->body.len = 0;
    b->items = 0;
    b->requests = 0;
    b->attempts = 0;
    b->first_attempt_ms = 0;
    b->next_attempt_ms = 0;
    b->next = NULL;
    b->created_ms = base_now_ms();
    pw->open[sig] = b;
    return b;
}

void pipeline_flush(struct pipeline *p, unsigned w, enum otlp_signal sig)
{
    struct pipeline_worker *pw = &p->workers[w];
    struct batch *b = pw->open[sig];
    if (b == NULL || b->body.len == 0)
        return;
    pw->open[sig] = NULL;
    /* The ready ring holds every batch of this worker, so it cannot be full. */
    spsc_ring_push(&pw->ready, b);
    if (p->wakeup != NULL)
        p->wakeup(p->wakeup_arg);
}

struct batch *pipeline_batch_for(struct pipeline *p, unsigned w, enum otlp_signal sig,
                                 uint64_t items, size_t bytes)
{
    struct batch *b = p->workers[w].open[sig];
    if (b != NULL && b->body.len > 0 &&
        (b->items + items > p->max_batch_items || b->body.len + bytes > p->max_batch_bytes))
        pipeline_flush(p, w, sig);
    return pipeline_open_batch(p, w, sig);
}

int pipeline_ingest(struct pipeline *p, unsigned w, enum otlp_signal sig, const uint8_t *req,
                    size_t len, const struct otlp_scan_result *res, const struct otlp_attrs *attrs)
{
    if (res->resources == 0) /* any accepted entry, with or without items */
        return 0;
    if (pipeline_admit(p, w, res->items) < 0)
        return -ENOBUFS;
    struct batch *b = pipeline_batch_for(p, w, sig, res->items, len);
    if (b == NULL)
        return -EAGAIN;
    int rc = otlp_batch_append(&b->body, req, len, res, attrs);
    if (rc == -EMSGSIZE && b->body.len > 0) {
        /* Splicing made it larger than estimated: retry in an empty batch. */
        pipeline_flush(p, w, sig);
        b = pipeline_open_batch(p, w, sig);
        if (b == NULL)
            return -EAGAIN;
        rc = otlp_batch_append(&b->body, req, len, res, attrs);
    }
    if (rc < 0)
        return rc == -EMSGSIZE ? -EMSGSIZE : -EAGAIN;
    pipeline_commit(p, w, sig, res->items);
    return 0;
}

void pipeline_commit(struct pipeline *p, unsigned w, enum otlp_signal sig, uint64_t items)
{
    struct pipeline_worker *pw = &p->workers[w];
    struct batch *b = pw->open[sig];
    b->items += items;
    b->requests++;
    atomic_store_explicit(&pw->admitted,
                          atomic_load_explicit(&pw->admitted, memory_order_relaxed) + items,
                          memory_order_release);
    if (b->items >= p->max_batch_items || b->body.len >= p->max_batch_bytes)
        pipeline_flush(p, w, sig);
}

int pipeline_tick(struct pipeline *p, unsigned w, uint64_t now_ms, bool all)
{
    struct pipeline_worker *pw = &p->workers[w];
    int next = -1;
    for (int s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        struct batch *b = pw->open[s];
        if (b == NULL || b->body.len == 0)
            continue;
        uint64_t due = b->created_ms + p->batch_timeout_ms;
        if (all || now_ms >= due) {
            pipeline_flush(p, w, (enum otlp_signal)s);
            continue;
        }
        int left = (int)(due - now_ms);
        if (next < 0 || left < next)
            next = left;
    }
    return next;
}

struct batch *pipeline_dequeue(struct pipeline *p)
{
    for (unsigned i = 0; i < p->n_workers; i++) {
        unsigned w = (p->next_dequeue + i) % p->n_workers;
        struct batch *b = spsc_ring_pop(&p->workers[w].ready);
        if (b != NULL) {
            p->next_dequeue = (w + 1) % p->n_workers;
            return b;
        }
    }
    return NULL;
}

void pipeline_release(struct pipeline *p, struct batch *b)
{
    struct pipeline_worker *pw = &p->workers[b->worker];
    atomic_store_explicit(&pw->released,
                          atomic_load_explicit(&pw->released, memory_order_relaxed) + b->items,
                          memory_order_release);
    b->items = 0;
    b->body.len = 0;
    spsc_ring_push(&pw->free, b);
}

void pipeline_set_wakeup(struct pipeline *p, void (*fn)(void *arg), void *arg)
{
    p->wakeup = fn;
    p->wakeup_arg = arg;
}
