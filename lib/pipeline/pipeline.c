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
#include "otlp/otlp_wire.h"
#include "obs/log.h"
#include "pipeline/ring.h"
#include "spool/wal.h"

_Static_assert(ENOBUFS == 105, "ring.h hard-codes -ENOBUFS");

struct pipeline_worker {
    _Alignas(BASE_CACHE_LINE) struct batch *open[OTLP_SIGNAL_COUNT];
    struct wal *wal;            /* durability: spool; NULL otherwise */
    void *ready;                /* worker -> exporter (ring ops) */
    void *free;                 /* exporter -> worker (ring ops) */
    /* Fixed bodies: a request split over several batches takes them all
     * first (pieces, batches_per_worker slots); when it is refused after
     * all they wait on `spare` (the worker cannot put them back on `free`,
     * whose only producer is the exporter) and are taken before the ring. */
    struct batch **pieces;
    struct batch *spare;
    _Atomic unsigned n_spare;   /* written by the worker */
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
    const struct pipeline_ring_ops *ring; /* env->ring or the SPSC rings of ring.h */
    struct pipeline_env env;    /* copy of what pipeline_create_env() got */
    size_t fixed_bytes;         /* env.mem: capacity of every body; 0: malloc'd bodies */
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

/* ---- default ring ops: ring.h's SPSC rings on malloc ---- */

static int spsc_create(void *arg, const char *name, unsigned worker, unsigned cap, void **out)
{
    (void)arg;
    (void)name;
    (void)worker;
    struct spsc_ring *r;
    if (posix_memalign((void **)&r, BASE_CACHE_LINE, sizeof(*r)) != 0)
        return -ENOMEM;
    int rc = spsc_ring_init(r, cap);
    if (rc < 0) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

static void spsc_destroy(void *arg, void *ring)
{
    (void)arg;
    if (ring == NULL)
        return;
    spsc_ring_fini(ring);
    free(ring);
}

static int spsc_enqueue(void *ring, void *obj)
{
    return spsc_ring_push(ring, obj);
}

static void *spsc_dequeue(void *ring)
{
    return spsc_ring_pop(ring);
}

static unsigned spsc_count(const void *ring)
{
    return (unsigned)spsc_ring_count(ring);
}

static const struct pipeline_ring_ops spsc_ops = {
    .create = spsc_create,
    .destroy = spsc_destroy,
    .enqueue = spsc_enqueue,
    .dequeue = spsc_dequeue,
    .count = spsc_count,
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

size_t pipeline_fixed_batch_bytes(const struct svc_config *cfg)
{
    return (size_t)(cfg->batch.max_batch_bytes + cfg->batch.max_batch_bytes / 8 + 4096);
}

/* Batches per worker: enough for a full queue of full batches twice over
 * (partially filled batches flushed by age), the exports in flight and
 * every worker's open batches; with fixed bodies no more than fit
 * env->mem_max_bytes. *capped tells whether that cut the count. */
static unsigned batches_per_worker(const struct svc_config *cfg, unsigned n_workers,
                                   const struct pipeline_env *env, bool *capped)
{
    uint64_t per_batch = cfg->batch.max_export_batch_size;
    uint64_t queued = (cfg->batch.max_queue_size + per_batch - 1) / per_batch;
    uint64_t total = 2 * queued + cfg->batch.max_concurrent_exports;
    uint64_t per = (total + n_workers - 1) / n_workers + OTLP_SIGNAL_COUNT + 1;
    *capped = false;
    if (env != NULL && env->mem != NULL && env->mem_max_bytes != 0) {
        uint64_t fit = env->mem_max_bytes / pipeline_fixed_batch_bytes(cfg) / n_workers;
        fit = BASE_MAX(fit, (uint64_t)PIPELINE_MIN_BATCHES);
        *capped = fit < per;
        per = BASE_MIN(per, fit);
    }
    return (unsigned)BASE_MIN(per, (uint64_t)UINT32_MAX / 2 / n_workers);
}

unsigned pipeline_pool_batches(const struct svc_config *cfg, unsigned n_workers,
                               const struct pipeline_env *env)
{
    bool capped;
    if (n_workers == 0 || cfg->batch.max_export_batch_size == 0)
        return 0;
    return batches_per_worker(cfg, n_workers, env, &capped) * n_workers;
}

/* Storage of batch `b` of worker `w`: fixed from env.mem, or malloc'd on
 * first use up to `limit` and kept, so memory is flat after warm-up. */
static int body_init(struct pipeline *p, struct batch *b, unsigned w, size_t limit)
{
    if (p->fixed_bytes == 0)
        return buf_init(&b->body, 0, limit);
    void *mem = p->env.mem->alloc(p->env.arg, w, p->fixed_bytes);
    if (mem == NULL)
        return -ENOMEM;
    buf_init_fixed(&b->body, mem, p->fixed_bytes);
    return 0;
}

/* The worker's two rings, filled with its batches. */
static int worker_init(struct pipeline *p, unsigned w, size_t limit)
{
    struct pipeline_worker *pw = &p->workers[w];
    unsigned per = p->batches_per_worker;
    char name[24];
    int rc;
    if (p->fixed_bytes != 0 && (pw->pieces = calloc(per, sizeof(*pw->pieces))) == NULL)
        return -ENOMEM;
    snprintf(name, sizeof(name), "otlp_ready_%u", w);
    if ((rc = p->ring->create(p->env.arg, name, w, per, &pw->ready)) < 0)
        return rc;
    snprintf(name, sizeof(name), "otlp_free_%u", w);
    if ((rc = p->ring->create(p->env.arg, name, w, per, &pw->free)) < 0)
        return rc;
    for (unsigned i = 0; i < per; i++) {
        struct batch *b = &p->batches[(size_t)w * per + i];
        b->worker = (uint16_t)w;
        if ((rc = body_init(p, b, w, limit)) < 0)
            return rc;
        if ((rc = p->ring->enqueue(pw->free, b)) < 0)
            return rc;
    }
    return 0;
}

int pipeline_create(const struct svc_config *cfg, unsigned n_workers, struct pipeline **out)
{
    return pipeline_create_env(cfg, n_workers, NULL, out);
}

int pipeline_create_env(const struct svc_config *cfg, unsigned n_workers,
                        const struct pipeline_env *env, struct pipeline **out)
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
    if (env != NULL)
        p->env = *env;
    p->ring = p->env.ring != NULL ? p->env.ring : &spsc_ops;
    if (p->env.mem != NULL)
        p->fixed_bytes = pipeline_fixed_batch_bytes(cfg);
    bool capped;
    unsigned per = batches_per_worker(cfg, n_workers, env, &capped);
    p->batches_per_worker = per;
    if (capped)
        log_warn("batch pool capped by its memory budget: fewer batches than the queue needs",
                 "batches=%u batch_bytes=%zu budget_bytes=%llu detail=%s", per * n_workers,
                 p->fixed_bytes, (unsigned long long)p->env.mem_max_bytes,
                 "503 pool_exhausted may come before batch.max_queue_size is reached; raise "
                 "dataplane.dpdk.batch_pool_bytes (and -m / hugepages) or lower "
                 "batch.max_batch_bytes");
    /* A malloc'd batch holds at least one maximal request plus splice
     * overhead. */
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
        if ((rc = worker_init(p, w, limit)) < 0)
            goto fail;
    }
    if (p->fixed_bytes != 0)
        log_info("batch pool allocated", "memory=%s batches=%u batch_bytes=%zu total_bytes=%llu",
                 p->env.name ? p->env.name : "env", per * n_workers, p->fixed_bytes,
                 (unsigned long long)p->fixed_bytes * per * n_workers);
    if (cfg->spool.durability == SPOOL_DURABILITY_SPOOL) {
        p->durable = true;
        if ((rc = open_wals(p, cfg)) < 0)
            goto fail;
    }
    *out = p;
    return 0;
fail:
    if (p->fixed_bytes != 0 && rc == -ENOMEM)
        log_error("cannot allocate the batch pool",
                  "memory=%s batches=%u batch_bytes=%zu total_bytes=%llu hint=%s",
                  p->env.name ? p->env.name : "env", per * n_workers, p->fixed_bytes,
                  (unsigned long long)p->fixed_bytes * per * n_workers,
                  "give the EAL more memory (-m / hugepages) or lower batch.max_batch_bytes, "
                  "batch.max_queue_size or batch.max_concurrent_exports");
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
            p->ring->destroy(p->env.arg, p->workers[w].ready);
            p->ring->destroy(p->env.arg, p->workers[w].free);
            free(p->workers[w].pieces);
        }
    }
    close_orphans(p);
    if (p->batches != NULL) {
        for (size_t i = 0; i < (size_t)p->batches_per_worker * p->n_workers; i++) {
            struct buf *body = &p->batches[i].body;
            if (body->external)
                p->env.mem->free(p->env.arg, body->data);
            buf_free(body);
        }
    }
    free(p->batches);
    free(p->workers);
    free(p);
}

/* Free batches of worker `pw`: its free ring and its spares. */
static unsigned free_count(const struct pipeline *p, struct pipeline_worker *pw)
{
    return p->ring->count(pw->free) + atomic_load_explicit(&pw->n_spare, memory_order_relaxed);
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
        sum += p->ring->count(p->workers[w].ready);
    return sum;
}

unsigned pipeline_free_batches(const struct pipeline *p)
{
    unsigned sum = 0;
    for (unsigned w = 0; w < p->n_workers; w++)
        sum += free_count(p, &p->workers[w]);
    return sum;
}

unsigned pipeline_free_batches_min(const struct pipeline *p)
{
    unsigned min = p->batches_per_worker;
    for (unsigned w = 0; w < p->n_workers; w++)
        min = BASE_MIN(min, free_count(p, &p->workers[w]));
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

/* A free batch of worker `pw`, spares first; NULL when none. Worker only. */
static struct batch *take_free(struct pipeline *p, struct pipeline_worker *pw)
{
    struct batch *b = pw->spare;
    if (unlikely(b != NULL)) {
        pw->spare = b->next;
        atomic_store_explicit(&pw->n_spare,
                              atomic_load_explicit(&pw->n_spare, memory_order_relaxed) - 1,
                              memory_order_relaxed);
        return b;
    }
    return p->ring->dequeue(pw->free);
}

/* Give batch `b`, taken by worker `pw` and not handed on, back as a spare. */
static void put_spare(struct pipeline_worker *pw, struct batch *b)
{
    b->next = pw->spare;
    pw->spare = b;
    atomic_store_explicit(&pw->n_spare,
                          atomic_load_explicit(&pw->n_spare, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void batch_reset(struct batch *b, enum otlp_signal sig)
{
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
}

struct batch *pipeline_open_batch(struct pipeline *p, unsigned w, enum otlp_signal sig)
{
    struct pipeline_worker *pw = &p->workers[w];
    struct batch *b = pw->open[sig];
    if (b != NULL)
        return b;
    b = take_free(p, pw);
    if (unlikely(b == NULL))
        return NULL;
    batch_reset(b, sig);
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
    p->ring->enqueue(pw->ready, b);
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

/* ---- a request larger than one fixed batch: split at entry boundaries ---- */

/* Consecutive top-level fields of a scanned request, cut into pieces whose
 * accepted entries fit one fixed batch each. */
struct piece_iter {
    const uint8_t *req, *p, *end;
    const struct otlp_scan_result *res;
    uint32_t k;   /* next rejected entry */
    size_t cap;   /* batch capacity */
    size_t extra; /* most an entry can grow by splicing the resource attributes */
};

static void piece_iter_init(struct piece_iter *it, const uint8_t *req, size_t len,
                            const struct otlp_scan_result *res, size_t cap, size_t extra)
{
    *it = (struct piece_iter){
        .req = req, .p = req, .end = req + len, .res = res, .cap = cap, .extra = extra};
}

/*
 * The next piece [*start, *stop): as many fields as fit, cut before the
 * accepted entry that would overflow the batch (rejected entries and unknown
 * fields go along: otlp_batch_append() skips them). Greedy, so the same
 * request always gives the same pieces. Returns 1; 0 at the end (what is
 * left holds no accepted entry); -EMSGSIZE one entry alone is larger than
 * a batch; -EINVAL the request does not parse (it was scanned: a bug).
 */
static int next_piece(struct piece_iter *it, const uint8_t **start, const uint8_t **stop)
{
    size_t used = 0;
    bool any = false;
    *start = it->p;
    while (it->p < it->end) {
        const uint8_t *field = it->p, *q = it->p;
        uint32_t fn;
        unsigned wt;
        size_t n;
        if (otlp_wire_key(&q, it->end, &fn, &wt) < 0)
            return -EINVAL;
        bool entry = fn == 1 && wt == OTLP_WIRE_LEN;
        if (entry ? otlp_wire_len(&q, it->end, &n) < 0 : otlp_wire_skip(&q, it->end, wt) < 0)
            return -EINVAL;
        if (entry)
            q += n;
        bool rejected = entry && it->k < it->res->n_rejected &&
                        it->res->rejected[it->k].off == (uint32_t)(field - it->req);
        if (entry && !rejected) {
            size_t need = (size_t)(q - field) + it->extra;
            if (need > it->cap)
                return -EMSGSIZE;
            if (any && used + need > it->cap)
                break;
            used += need;
            any = true;
        }
        it->k += rejected;
        it->p = q;
    }
    *stop = it->p;
    return any ? 1 : 0;
}

/* Drop batch b's write-ahead log references (a refused piece). */
static void wal_unref_batch(struct pipeline_worker *pw, struct batch *b)
{
    for (uint32_t i = 0; i < b->wal_n; i++)
        wal_unref(pw->wal, b->wal_lo + i);
    b->wal_n = 0;
}

/* Fill pw->pieces[0..k) with the pieces of the request, each scanned again
 * on its own (a run of whole entries is a valid request) for its items and
 * its rejected entries, and logged. Leaves b->items = the piece's items. */
static int fill_pieces(struct pipeline *p, unsigned w, enum otlp_signal sig, struct piece_iter *it,
                       unsigned k, const struct otlp_attrs *attrs)
{
    struct pipeline_worker *pw = &p->workers[w];
    static const struct otlp_limits deep = {.max_depth = OTLP_SCAN_MAX_DEPTH};
    struct otlp_scan_result sub;
    const uint8_t *a, *z;
    for (unsigned i = 0; i < k; i++) {
        struct batch *b = pw->pieces[i];
        batch_reset(b, sig);
        int rc = next_piece(it, &a, &z);
        if (rc <= 0 || otlp_scan(sig, a, (size_t)(z - a), &deep, &sub) < 0)
            return -EINVAL;
        if ((rc = otlp_batch_append(&b->body, a, (size_t)(z - a), &sub, attrs)) < 0)
            return rc;
        if (unlikely(p->durable) && (rc = wal_log(p, w, b, 0, sub.items)) < 0)
            return rc;
        b->items = sub.items;
    }
    return 0;
}

/*
 * Fixed bodies (pipeline_env.mem): put a request whose accepted entries do
 * not fit one batch into several, cut at top-level entry boundaries. All or
 * nothing: the batches are counted and taken first, and the pieces are
 * committed only when every one is copied (and logged). A refused request
 * leaves the write-ahead log records of the pieces logged before the
 * failure (replayed after a crash: at-least-once).
 */
static int ingest_split(struct pipeline *p, unsigned w, enum otlp_signal sig, const uint8_t *req,
                        size_t len, const struct otlp_scan_result *res,
                        const struct otlp_attrs *attrs)
{
    struct pipeline_worker *pw = &p->workers[w];
    /* Splicing removes the configured keys and adds them once, and may
     * lengthen the entry's and its Resource's length prefixes (or add a
     * Resource header): 16 bytes cover those. */
    size_t extra = attrs != NULL && attrs->n > 0 ? attrs->encoded_len + 16 : 0;
    struct piece_iter it;
    const uint8_t *a, *z;
    unsigned k = 0;
    int rc;
    /* The empty batch the first attempt opened counts as free. */
    struct batch *open = pw->open[sig];
    if (open != NULL && open->body.len == 0) {
        pw->open[sig] = NULL;
        put_spare(pw, open);
    }
    piece_iter_init(&it, req, len, res, p->fixed_bytes, extra);
    while ((rc = next_piece(&it, &a, &z)) > 0)
        k++;
    if (rc < 0)
        return rc == -EMSGSIZE ? -EMSGSIZE : -EAGAIN;
    /* More than a worker can ever have free at once (its other signals
     * may each hold an open batch): never. */
    if (k > p->batches_per_worker - OTLP_SIGNAL_COUNT)
        return -EMSGSIZE;
    if (free_count(p, pw) < k)
        return -EAGAIN;
    for (unsigned i = 0; i < k; i++)
        pw->pieces[i] = take_free(p, pw);
    piece_iter_init(&it, req, len, res, p->fixed_bytes, extra);
    if ((rc = fill_pieces(p, w, sig, &it, k, attrs)) < 0) {
        for (unsigned i = 0; i < k; i++) {
            wal_unref_batch(pw, pw->pieces[i]);
            put_spare(pw, pw->pieces[i]);
        }
        return rc == -EINVAL ? -EAGAIN : rc; /* -EMSGSIZE, or the log's error */
    }
    /* Each piece is a batch of its own, behind the open one. */
    pipeline_flush(p, w, sig);
    for (unsigned i = 0; i < k; i++) {
        struct batch *b = pw->pieces[i];
        uint64_t items = b->items;
        b->items = 0;
        pw->open[sig] = b;
        pipeline_commit(p, w, sig, items);
        if (i + 1 < k)
            pipeline_flush(p, w, sig);
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
    if (rc == -EMSGSIZE && p->fixed_bytes != 0)
        return ingest_split(p, w, sig, req, len, res, attrs);
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
        struct batch *b = p->ring->dequeue(p->workers[w].ready);
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
    wal_unref_batch(pw, b);
    atomic_store_explicit(&pw->released,
                          atomic_load_explicit(&pw->released, memory_order_relaxed) + b->items,
                          memory_order_release);
    b->items = 0;
    b->body.len = 0;
    if (p->pressure != NULL && atomic_load_explicit(p->pressure, memory_order_relaxed) != 0 &&
        b->body.cap > PIPELINE_TRIM_BATCH_BYTES && !b->body.external) {
        /* Memory pressure: give the storage back instead of keeping it
         * for reuse; it grows again on next use. */
        size_t lim = b->body.limit;
        buf_free(&b->body);
        buf_init(&b->body, 0, lim);
    }
    p->ring->enqueue(pw->free, b);
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
