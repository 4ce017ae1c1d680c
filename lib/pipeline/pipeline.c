/* SPDX-License-Identifier: Apache-2.0 */
/* Batches between workers and the export thread: per-worker pools, open
 * batches and SPSC rings, so a worker never locks or blocks; with
 * spool.durability: spool, each worker's write-ahead log (lib/spool/wal.h). */
#include "pipeline/pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otlp/otlp_batch.h"
#include "otlp/otlp_scan.h"
#include "obs/log.h"
#include "pipeline/ring.h"
#include "spool/wal.h"

_Static_assert(ENOBUFS == 105, "ring.h hard-codes -ENOBUFS");

struct pipeline_worker {
    _Alignas(BASE_CACHE_LINE) struct batch *open[OTLP_SIGNAL_COUNT];
    struct wal *wal;            /* durability: spool; NULL otherwise */
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
    const _Atomic int *pressure; /* memory limiter state, != 0: free released batches */
    bool durable;               /* spool.durability: spool */
    struct wal **orphans;       /* logs of workers >= n_workers a previous run left */
    unsigned n_orphans;
    struct wal_stats orphan_stats; /* their figures, kept after they are closed */
};

/* <root>/wal-<n> */
static int wal_dir(const char *root, unsigned n, char **out)
{
    return asprintf(out, "%s/wal-%u", root, n) < 0 ? -ENOMEM : 0;
}

/* Open wal-<n> under `root` with worker options `o` (dir is set here). */
static int wal_open_n(const char *root, unsigned n, struct wal_options *o, struct wal **out)
{
    char *dir;
    if (wal_dir(root, n, &dir) < 0)
        return -ENOMEM;
    o->dir = dir;
    int rc = wal_open(o, out);
    if (rc < 0)
        log_error("pipeline: cannot open the write-ahead log", "dir=%s error=%s", dir,
                  strerror(-rc));
    free(dir);
    return rc;
}

/* Open every worker's write-ahead log, and the logs of workers beyond
 * n_workers found in the spool directory (a previous run had more), which
 * are only recovered. */
static int open_wals(struct pipeline *p, const struct svc_config *cfg)
{
    const struct spool_config *sc = &cfg->spool;
    char *root;
    if (spool_config_dir(cfg, &root) < 0)
        return -ENOMEM;
    struct wal_options o = {
        .max_bytes = BASE_MAX(sc->wal_max_bytes / p->n_workers, (uint64_t)65536),
        .segment_bytes = sc->wal_segment_bytes,
        .segment_ms = BASE_MAX(sc->wal_segment_ms, 1u),
        .fsync = sc->fsync,
        .fsync_interval_ms = BASE_MAX(sc->fsync_interval_ms, 1u),
    };
    int rc = 0;
    for (unsigned w = 0; w < p->n_workers && rc == 0; w++)
        rc = wal_open_n(root, w, &o, &p->workers[w].wal);
    DIR *d = rc == 0 ? opendir(root) : NULL;
    struct dirent *e;
    while (d != NULL && rc == 0 && (e = readdir(d)) != NULL) {
        unsigned n;
        char tail;
        if (sscanf(e->d_name, "wal-%u%c", &n, &tail) != 1 || n < p->n_workers)
            continue;
        struct wal **grown = realloc(p->orphans, (p->n_orphans + 1) * sizeof(*grown));
        if (grown == NULL) {
            rc = -ENOMEM;
            break;
        }
        p->orphans = grown;
        if ((rc = wal_open_n(root, n, &o, &p->orphans[p->n_orphans])) == 0)
            p->n_orphans++;
    }
    if (d != NULL)
        closedir(d);
    free(root);
    return rc;
}

static void add_stats(struct wal_stats *sum, const struct wal_stats *st)
{
    sum->bytes += st->bytes;
    sum->segments += st->segments;
    sum->appends_total += st->appends_total;
    sum->fsyncs_total += st->fsyncs_total;
    sum->full_total += st->full_total;
    sum->io_errors_total += st->io_errors_total;
    sum->corrupt_records_total += st->corrupt_records_total;
    sum->recovered_total += st->recovered_total;
}

static void close_orphans(struct pipeline *p)
{
    for (unsigned i = 0; i < p->n_orphans; i++) {
        struct wal_stats st;
        wal_get_stats(p->orphans[i], &st);
        st.bytes = st.segments = 0;
        add_stats(&p->orphan_stats, &st);
        wal_close(p->orphans[i]);
    }
    free(p->orphans);
    p->orphans = NULL;
    p->n_orphans = 0;
}

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
    if (cfg->spool.durability == SPOOL_DURABILITY_SPOOL) {
        p->durable = true;
        if ((rc = open_wals(p, cfg)) < 0)
            goto fail;
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
            wal_close(p->workers[w].wal);
            spsc_ring_fini(&p->workers[w].ready);
            spsc_ring_fini(&p->workers[w].free);
        }
    }
    close_orphans(p);
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
    b->wal_n = 0;
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

/*
 * durability: spool: append what the request added to batch `b` (bytes
 * [before, len): its accepted entries with attributes spliced, a valid
 * Export*ServiceRequest by itself) to worker w's log and take a reference
 * on the segment for the batch. On failure the batch is cut back.
 */
static int wal_log(struct pipeline *p, unsigned w, struct batch *b, size_t before, uint64_t items)
{
    struct wal *wal = p->workers[w].wal;
    uint32_t seg;
    int rc = wal_append(wal, b->signal, items, b->body.data + before, b->body.len - before, &seg);
    if (unlikely(rc < 0)) {
        b->body.len = before;
        return rc == -EMSGSIZE ? -ENOSPC : rc;
    }
    /* A batch is filled by one worker whose segments only move forward, so
     * its references are one range; segments between are covered too. */
    if (b->wal_n == 0) {
        b->wal_lo = seg;
        b->wal_n = 1;
        wal_ref(wal, seg);
    }
    while (seg - b->wal_lo >= b->wal_n) {
        wal_ref(wal, b->wal_lo + b->wal_n);
        b->wal_n++;
    }
    return 0;
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
    size_t before = b->body.len;
    int rc = otlp_batch_append(&b->body, req, len, res, attrs);
    if (rc == -EMSGSIZE && b->body.len > 0) {
        /* Splicing made it larger than estimated: retry in an empty batch. */
        pipeline_flush(p, w, sig);
        b = pipeline_open_batch(p, w, sig);
        if (b == NULL)
            return -EAGAIN;
        before = 0;
        rc = otlp_batch_append(&b->body, req, len, res, attrs);
    }
    if (rc < 0)
        return rc == -EMSGSIZE ? -EMSGSIZE : -EAGAIN;
    if (unlikely(p->durable) && (rc = wal_log(p, w, b, before, res->items)) < 0)
        return rc;
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
    if (unlikely(pw->wal != NULL))
        next = wal_tick(pw->wal, now_ms);
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
    if (b->wal_n > 0) {
        for (uint32_t i = 0; i < b->wal_n; i++)
            wal_unref(pw->wal, b->wal_lo + i);
        b->wal_n = 0;
    }
    atomic_store_explicit(&pw->released,
                          atomic_load_explicit(&pw->released, memory_order_relaxed) + b->items,
                          memory_order_release);
    b->items = 0;
    b->body.len = 0;
    if (p->pressure != NULL && atomic_load_explicit(p->pressure, memory_order_relaxed) != 0 &&
        b->body.cap > PIPELINE_TRIM_BATCH_BYTES) {
        /* Memory pressure: give the storage back instead of keeping it
         * for reuse; it grows again on next use. */
        size_t lim = b->body.limit;
        buf_free(&b->body);
        buf_init(&b->body, 0, lim);
    }
    spsc_ring_push(&pw->free, b);
}

void pipeline_set_pressure(struct pipeline *p, const _Atomic int *pressure)
{
    p->pressure = pressure;
}

void pipeline_release_items(struct pipeline *p, struct batch *b, uint64_t n)
{
    struct pipeline_worker *pw = &p->workers[b->worker];
    n = BASE_MIN(n, b->items);
    atomic_store_explicit(&pw->released,
                          atomic_load_explicit(&pw->released, memory_order_relaxed) + n,
                          memory_order_release);
    b->items -= n;
}

void pipeline_set_wakeup(struct pipeline *p, void (*fn)(void *arg), void *arg)
{
    p->wakeup = fn;
    p->wakeup_arg = arg;
}

void pipeline_keep_in_wal(struct pipeline *p, struct batch *b)
{
    (void)p;
    b->wal_n = 0; /* the references stay taken: the segments outlive the process */
}

bool pipeline_durable(const struct pipeline *p)
{
    return p->durable;
}

int pipeline_wal_recover(struct pipeline *p, struct spool *dst, uint64_t *moved)
{
    int first = 0;
    uint64_t total = 0;
    for (unsigned i = 0; p->durable && i < p->n_workers + p->n_orphans; i++) {
        struct wal *wal = i < p->n_workers ? p->workers[i].wal : p->orphans[i - p->n_workers];
        uint64_t n = 0;
        int rc = wal_recover(wal, dst, &n);
        total += n;
        if (rc < 0 && first == 0)
            first = rc;
    }
    close_orphans(p);
    if (moved != NULL)
        *moved = total;
    return first;
}

void pipeline_wal_stats(const struct pipeline *p, struct wal_stats *st)
{
    *st = p->orphan_stats;
    for (unsigned w = 0; p->durable && w < p->n_workers; w++) {
        struct wal_stats one;
        wal_get_stats(p->workers[w].wal, &one);
        add_stats(st, &one);
    }
}
