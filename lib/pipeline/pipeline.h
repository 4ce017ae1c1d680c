/* SPDX-License-Identifier: Apache-2.0 */
/* The hand-off between workers and the export side: a pool of batches
 * allocated at start, one open batch per worker and signal, and one
 * single-producer/single-consumer ring per worker towards the exporter.
 * Workers never block and never lock; when the item budget
 * (batch.max_queue_size) or the pool is exhausted they get -ENOBUFS and
 * answer 429/503 to the client. With spool.durability: spool each worker
 * also appends every request to its own write-ahead log (lib/spool/wal.h)
 * before pipeline_ingest() returns. */
#ifndef OTLP_PIPELINE_H
#define OTLP_PIPELINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "otlp/otlp.h"
#include "pipeline/batch.h"

struct pipeline;

/* Why a worker could not take a request. */
#define PIPELINE_FULL_REASONS(X)       \
    X(QUEUE_FULL, "queue_full")        \
    X(POOL_EXHAUSTED, "pool_exhausted")

/*
 * Allocate the batch pool and rings for `n_workers` workers, sized from
 * cfg->batch (and cfg->receiver.max_decompressed_bytes, the largest request
 * a batch must be able to hold). With spool.durability: spool, also open
 * the write-ahead log of each worker in <spool dir>/wal-<worker>, and every
 * other wal-<n> a previous run with more workers left (recovery only).
 * Returns 0, -EINVAL, -ENOMEM, what wal_open() returns (-EBUSY: another
 * process uses the directory, -EACCES...).
 */
int pipeline_create(const struct svc_config *cfg, unsigned n_workers, struct pipeline **out);

/*
 * Where the pipeline's rings and batch bodies come from, so a transport can
 * put them on its own memory (lib/dpdk: rte_rings and hugepage bodies)
 * without lib/pipeline depending on it. Every hand-off of a batch costs one
 * indirect call (per batch, never per packet).
 */
struct pipeline_ring_ops {
    /* A ring of at least `cap` pointers with one producer and one consumer
     * thread, used by worker `worker`; `name` is unique in the pipeline
     * (at most 23 characters). Returns 0 and *out, -ENOMEM, -EEXIST... */
    int (*create)(void *arg, const char *name, unsigned worker, unsigned cap, void **out);
    void (*destroy)(void *arg, void *ring); /* NULL is a no-op */
    /* Producer only. Returns 0, -ENOBUFS when full. */
    int (*enqueue)(void *ring, void *obj);
    /* Consumer only. The oldest pointer, NULL when empty. */
    void *(*dequeue)(void *ring);
    /* Any thread; approximate. */
    unsigned (*count)(const void *ring);
};

struct pipeline_mem_ops {
    /* Storage for one batch body of exactly `bytes`, near worker `worker`;
     * NULL when there is not enough. Called only by pipeline_create_env(). */
    void *(*alloc)(void *arg, unsigned worker, size_t bytes);
    void (*free)(void *arg, void *storage); /* NULL is a no-op */
};

struct pipeline_env {
    const char *name;                    /* for logs, e.g. "dpdk" */
    const struct pipeline_ring_ops *ring; /* NULL: lib/pipeline's SPSC rings (ring.h) */
    /* NULL: malloc'd bodies that grow on first use up to the largest request
     * and shrink under memory pressure. Else every body is allocated here at
     * create time with the fixed capacity pipeline_fixed_batch_bytes() and
     * never grows: pipeline_ingest() splits a request whose accepted
     * entries do not fit one batch over several. */
    const struct pipeline_mem_ops *mem;
    /* With mem: the most the bodies may take; fewer batches than the queue
     * budget needs when they would take more (but at least
     * PIPELINE_MIN_BATCHES per worker). 0: no cap. */
    uint64_t mem_max_bytes;
    void *arg;                           /* passed to create/destroy/alloc/free */
};

/* Fewest batches per worker: one open per signal, one on its way to the
 * exporter and one to refill. */
#define PIPELINE_MIN_BATCHES (OTLP_SIGNAL_COUNT + 2)

/* The fixed capacity of one batch body with env->mem: batch.max_batch_bytes
 * plus room for the resource attributes spliced in and for the entry that
 * crosses max_batch_bytes (an eighth of it plus 4 KiB). */
size_t pipeline_fixed_batch_bytes(const struct svc_config *cfg);

/* Batches pipeline_create_env() allocates for `n_workers` (all workers)
 * with `env` (NULL: as pipeline_create()). 0 for a config it refuses. */
unsigned pipeline_pool_batches(const struct svc_config *cfg, unsigned n_workers,
                               const struct pipeline_env *env);

/*
 * pipeline_create() on rings and memory from `env` (borrowed for the
 * pipeline's lifetime; NULL: as pipeline_create()). With env->mem every
 * body is allocated once here (a log line says how much); failing that
 * returns -ENOMEM with an error logged. Also returns what env->ring->create
 * returns.
 */
int pipeline_create_env(const struct svc_config *cfg, unsigned n_workers,
                        const struct pipeline_env *env, struct pipeline **out);
/* Free everything; NULL is a no-op. Batches still queued are discarded. */
void pipeline_destroy(struct pipeline *p);

/* --- worker side (called only by worker `w`) --- */

/*
 * Can worker `w` take `items` more items of `sig` right now? Returns 0,
 * -ENOBUFS when the queue budget or the pool is exhausted.
 */
int pipeline_admit(struct pipeline *p, unsigned w, uint64_t items);

/*
 * The open batch of worker `w` for `sig`, taken from the pool if none is
 * open. The caller appends to batch->body and then calls pipeline_commit().
 * Returns NULL when the pool is empty (-> 503).
 */
struct batch *pipeline_open_batch(struct pipeline *p, unsigned w, enum otlp_signal sig);

/*
 * The open batch of worker `w` for `sig` with room for one more request of
 * `items` items and about `bytes` bytes: when the open batch is not empty
 * and the request would take it past max_export_batch_size or
 * max_batch_bytes, that batch is flushed first and a fresh one opened. A
 * request larger than a whole batch still gets a batch of its own.
 * Returns NULL when the pool is empty (-> 503).
 */
struct batch *pipeline_batch_for(struct pipeline *p, unsigned w, enum otlp_signal sig,
                                 uint64_t items, size_t bytes);

struct otlp_scan_result;
struct otlp_attrs;

/*
 * The whole worker-side hand-off of one validated request, shared by every
 * receiver (OTLP/HTTP, OTLP/gRPC): admit its items against the queue
 * budget, find a batch with room, copy the accepted top-level entries in
 * (splicing `attrs` into each Resource), with spool.durability: spool append
 * the copied entries to the worker's write-ahead log, commit. With fixed
 * bodies (pipeline_env.mem) a request whose accepted entries do not fit one
 * batch goes into several, cut at top-level entry boundaries (each piece a
 * valid request, logged on its own), when enough free batches exist for all
 * of them. Nothing is changed on failure (except write-ahead log records of
 * pieces logged before a log failure). Returns 0 (also when no entry was
 * accepted: nothing to batch); -ENOBUFS the queue budget is used up
 * (-> 429); -EAGAIN no free batch, or too few for every piece (-> 503);
 * -EMSGSIZE the request does not fit even an empty batch, with fixed
 * bodies: one top-level entry alone does not, or the pieces would need more
 * batches than a worker has (-> 413); -ENOSPC the write-ahead log is full (wal_max_bytes or disk
 * full), -EIO or another negative errno the append failed (-> 503).
 */
int pipeline_ingest(struct pipeline *p, unsigned w, enum otlp_signal sig, const uint8_t *req,
                    size_t len, const struct otlp_scan_result *res, const struct otlp_attrs *attrs);

/* Account `items` from one request appended to the open batch; flushes it to
 * the exporter ring when it reached max_export_batch_size or max_batch_bytes. */
void pipeline_commit(struct pipeline *p, unsigned w, enum otlp_signal sig, uint64_t items);

/* Close and enqueue the open batch of `sig` now (e.g. it cannot take the
 * next request). */
void pipeline_flush(struct pipeline *p, unsigned w, enum otlp_signal sig);

/* Flush open batches older than batch_timeout_ms (all of them when `all`).
 * Returns ms until the next open batch is due (or -1 when none is open), so
 * the worker can bound its poll timeout. */
int pipeline_tick(struct pipeline *p, unsigned w, uint64_t now_ms, bool all);

/* --- export side (one exporter thread) --- */

/* Next ready batch from any worker, round robin; NULL when none.
 * The caller owns it until pipeline_release(). */
struct batch *pipeline_dequeue(struct pipeline *p);

/* Give an exported (or dropped, or spooled) batch back to the pool; its
 * items leave the queue budget and its write-ahead log references are
 * dropped (its segments may be deleted). */
void pipeline_release(struct pipeline *p, struct batch *b);

/* `n` items of `b` (at most b->items) left it early: an exporter that splits
 * batches delivered or refused them and rewrote the body to the rest. They
 * leave the queue budget now; b->items drops by n. */
void pipeline_release_items(struct pipeline *p, struct batch *b, uint64_t n);

/* The batch was neither delivered nor spooled and the process is stopping:
 * keep its write-ahead log segments for the next start (its references are
 * never dropped). Call before pipeline_release(). */
void pipeline_keep_in_wal(struct pipeline *p, struct batch *b);

/* --- write-ahead log (spool.durability: spool) --- */

struct spool;
struct wal_stats;

/* Is the write-ahead log on? */
bool pipeline_durable(const struct pipeline *p);

/*
 * Start-up, before the workers run: move what previous runs left in the
 * write-ahead logs into `dst` (wal_recover() of every log). *moved gets the
 * number of records. Returns 0 or the first error (the rest stays on disk).
 */
int pipeline_wal_recover(struct pipeline *p, struct spool *dst, uint64_t *moved);

/* The logs' figures summed (any thread). */
void pipeline_wal_stats(const struct pipeline *p, struct wal_stats *st);

/* Called (from a worker thread) whenever a batch is enqueued; lets the
 * exporter sleep in its own poll loop. Set before workers start. */
void pipeline_set_wakeup(struct pipeline *p, void (*fn)(void *arg), void *arg);

/* --- observation (any thread, tolerant reads) --- */
/* Released batches larger than this give their storage back under memory
 * pressure (pipeline_set_pressure). */
#define PIPELINE_TRIM_BATCH_BYTES (256 * 1024)
/* While *pressure (the memory limiter's state, lib/memlimit) is non-zero,
 * pipeline_release() frees batch storage above PIPELINE_TRIM_BATCH_BYTES
 * instead of keeping it for reuse (malloc'd bodies only: fixed bodies from
 * pipeline_env.mem are kept). Borrowed; NULL: never. Set before the
 * workers start. */
void pipeline_set_pressure(struct pipeline *p, const _Atomic int *pressure);

uint64_t pipeline_queued_items(const struct pipeline *p);   /* items admitted, not yet released */
uint64_t pipeline_capacity_items(const struct pipeline *p); /* batch.max_queue_size */
uint64_t pipeline_queued_batches(const struct pipeline *p); /* in rings, not yet dequeued */
unsigned pipeline_free_batches(const struct pipeline *p);
/* Free batches of the worker that has fewest (the one closest to answering
 * 503 pool_exhausted), and the pool size of each worker. The export runner
 * spools waiting batches when the first drops low (docs/spool.md). */
unsigned pipeline_free_batches_min(const struct pipeline *p);
unsigned pipeline_batches_per_worker(const struct pipeline *p);

#endif
