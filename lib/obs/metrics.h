/* SPDX-License-Identifier: Apache-2.0 */
/* Prometheus metrics registry. Every worker (thread or lcore) owns a shard of
 * counter slots and updates it with plain loads and stores, no locks and no
 * atomic read-modify-write; the /metrics scraper sums the shards. */
#ifndef OTLP_OBS_METRICS_H
#define OTLP_OBS_METRICS_H

#include <stdint.h>

#include "base/base.h"

/*
 * The registry. Only the hot-path fields are visible here, for the inline
 * update functions below; everything else is private to metrics.c.
 *
 * Threading: register everything at start (registration and rendering take a
 * mutex, so a late registration from another thread is safe, but the ids must
 * reach the worker through some synchronisation, e.g. the thread start).
 * Each shard has exactly one writer thread at a time; give every thread that
 * updates metrics (workers, exporter, control plane) its own shard.
 */
struct obs_registry {
    uint64_t *slots;       /* n_shards * shard_stride slots, each shard cache aligned */
    uint32_t shard_stride; /* slots per shard, padded so shards share no cache line */
    uint32_t n_shards;
    struct obs_registry_meta *meta; /* families, histogram layout, lock */
};

/* Largest number of label sets per registration call and of histogram bounds. */
#define OBS_MAX_SERIES 4096
#define OBS_MAX_BOUNDS 64

/* Latency buckets in seconds, 100 us .. 10 s in 1-2.5-5 steps: sub-ms ingest
 * acks at the low end, slow upstream exports at the top. */
#define OBS_LATENCY_BUCKETS_COUNT 16
extern const double OBS_LATENCY_BUCKETS[OBS_LATENCY_BUCKETS_COUNT];

/*
 * Create a registry with n_shards shards of max_slots 64-bit slots each,
 * allocated once here. A counter or gauge series takes one slot, a histogram
 * series n_bounds + 2.
 * Returns 0 and *out, or -EINVAL (n_shards or max_slots 0 or too large),
 * -ENOMEM. Caller frees with obs_registry_destroy().
 */
int obs_registry_create(unsigned n_shards, unsigned max_slots, struct obs_registry **out);

/* Free the registry. NULL is a no-op. No thread may use it any more. */
void obs_registry_destroy(struct obs_registry *r);

/*
 * Register a counter family `name` with n_series label sets.
 * labels[i] is the preformatted label set of series i, exactly as it goes
 * between the braces: `reason="queue_full"`, `path="/v1/traces",code="200"`,
 * or "" / NULL for none (labels may be NULL only when n_series == 1).
 * Label values are escaped by the caller (\\, \", \n). Series i is updated
 * with id *id_out + i.
 * Registering again under the same name (same kind) adds series to the same
 * family; the first help text stays.
 * Returns 0, or
 *   -EINVAL  bad metric name (must match [a-zA-Z_:][a-zA-Z0-9_:]*), bad label
 *            syntax, label name starting with "__", repeated label name,
 *            n_series 0 or > OBS_MAX_SERIES, help NULL
 *   -EEXIST  the name is taken by another kind, or the name+labels exists
 *            (also within this call)
 *   -ENOSPC  not enough slots left
 *   -ENOMEM
 * Nothing is registered when it fails.
 */
int obs_counter_register(struct obs_registry *r, const char *name, const char *help,
                         const char *const *labels, unsigned n_series, uint32_t *id_out);

/* Like obs_counter_register() for gauges: signed values, one per shard, summed
 * on scrape (e.g. each worker's queue depth). Same return values. */
int obs_gauge_register(struct obs_registry *r, const char *name, const char *help,
                       const char *const *labels, unsigned n_series, uint32_t *id_out);

/*
 * A gauge computed at scrape time by fn(arg) (process RSS, a queue length read
 * from the pipeline). label is one preformatted label set or NULL/"".
 * Calls with the same name and different labels form one family. fn runs on
 * the scraping thread with the registry lock held: it must be thread-safe and
 * must not call back into the registry. arg is borrowed for the registry's
 * lifetime. Returns 0, -EINVAL, -EEXIST, -ENOMEM (as obs_counter_register).
 */
int obs_gauge_func_register(struct obs_registry *r, const char *name, const char *help,
                            const char *label, double (*fn)(void *arg), void *arg);

/* A counter computed at scrape time (e.g. read from an exporter library's
 * stats); fn must be monotonic. Same rules as obs_gauge_func_register(). */
int obs_counter_func_register(struct obs_registry *r, const char *name, const char *help,
                              const char *label, double (*fn)(void *arg), void *arg);

/*
 * Register a histogram family with n_series label sets (as counters; the
 * label name "le" is reserved) and n_bounds upper bounds, finite and strictly
 * increasing (copied; +Inf is implicit). Series i is observed with id
 * *id_out + i; histogram ids are their own id space (not counter slots).
 * Adding series to an existing histogram needs the same bounds.
 * Returns 0, or -EINVAL (also: bounds not increasing, not finite, NULL with
 * n_bounds > 0, n_bounds > OBS_MAX_BOUNDS), -EEXIST, -ENOSPC, -ENOMEM.
 */
int obs_histogram_register(struct obs_registry *r, const char *name, const char *help,
                           const char *const *labels, unsigned n_series, const double *bounds,
                           unsigned n_bounds, uint32_t *id_out);

/* Record v in histogram series id, on the caller's shard. v lands in the
 * first bucket whose bound is >= v (Prometheus "le"); NaN goes to +Inf. */
void obs_histogram_observe(struct obs_registry *r, unsigned shard, uint32_t id, double v);

/*
 * Render every family in registration order in the Prometheus text
 * exposition format 0.0.4 (Content-Type: text/plain; version=0.0.4), slot
 * series summed over shards, histogram buckets cumulative. Appends to out
 * (borrowed). Returns 0, -EMSGSIZE (out's limit reached; out holds a partial
 * page), -ENOMEM. Safe to call from any thread while workers update.
 */
int obs_render_prometheus(struct obs_registry *r, struct buf *out);

/* Sum of counter/gauge slot id over all shards (tests, health checks). */
uint64_t obs_counter_read(const struct obs_registry *r, uint32_t id);
int64_t obs_gauge_read(const struct obs_registry *r, uint32_t id);

/*
 * Process metrics as the Prometheus client libraries export them:
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_cpu_seconds_total, process_open_fds, process_max_fds,
 * process_start_time_seconds; read from /proc and getrusage at scrape time.
 * Returns 0, or an error of obs_gauge_func_register() (-EEXIST when called
 * twice on one registry).
 */
int obs_register_process_metrics(struct obs_registry *r);

/* log_lines_dropped_total: JSON log lines lost because the log fd would not
 * take them (log_dropped_total()). Returns 0 or as obs_counter_func_register(). */
int obs_register_log_metrics(struct obs_registry *r);

/* ---- hot path: static inline, one load + add + store on the own shard ---- */

static inline uint64_t *obs_slot_(struct obs_registry *r, unsigned shard, uint32_t id)
{
    return &r->slots[(size_t)shard * r->shard_stride + id];
}

/* Add n to counter id on shard `shard`. Only the shard's owner thread may call
 * this; the relaxed atomics make the scraper's concurrent reads well-defined
 * without a locked instruction. */
static inline void obs_counter_add(struct obs_registry *r, unsigned shard, uint32_t id, uint64_t n)
{
    uint64_t *p = obs_slot_(r, shard, id);
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

static inline void obs_counter_inc(struct obs_registry *r, unsigned shard, uint32_t id)
{
    obs_counter_add(r, shard, id, 1);
}

/* Set this shard's part of gauge id; the scrape shows the sum over shards. */
static inline void obs_gauge_set(struct obs_registry *r, unsigned shard, uint32_t id, int64_t v)
{
    __atomic_store_n(obs_slot_(r, shard, id), (uint64_t)v, __ATOMIC_RELAXED);
}

static inline void obs_gauge_add(struct obs_registry *r, unsigned shard, uint32_t id, int64_t delta)
{
    uint64_t *p = obs_slot_(r, shard, id);
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + (uint64_t)delta, __ATOMIC_RELAXED);
}

#endif
