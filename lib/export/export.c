/* SPDX-License-Identifier: Apache-2.0 */
/* The export thread: pipeline rings -> exporter, with a bounded number of
 * exports in flight, a retry list ordered by due time, the disk spool for
 * what cannot wait in memory (spool.enabled), and the exported / dropped
 * accounting that /metrics and the health probe show. */
#include "export/export.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "otlp/otlp.h"
#include "pipeline/pipeline.h"
#include "spool/spool.h"
#include "spool/wal.h"

const char *const export_drop_reasons[EXPORT_DROP_COUNT] = {
#define EXPORT_DROP_STR_(e, s) [EXPORT_DROP_##e] = s,
    EXPORT_DROP_REASONS(EXPORT_DROP_STR_)
#undef EXPORT_DROP_STR_
};

static const char *const export_result_labels[EXPORT_RESULT_COUNT] = {
#define EXPORT_RESULT_STR_(e, s) [EXPORT_RESULT_##e] = s,
    EXPORT_RESULTS(EXPORT_RESULT_STR_)
#undef EXPORT_RESULT_STR_
};

/* Longest poll, so the loop notices due retries and the stop flag even
 * when an exporter misses a wakeup. */
#define EXPORT_POLL_MAX_MS 100
/* With the spool enabled, batches waiting in memory (retries, ready batches)
 * go to the spool while the items held in memory exceed this share of
 * batch.max_queue_size, or while a worker has less than a quarter of its
 * batch pool free, so clients keep getting 200 during an outage. */
#define EXPORT_SPILL_QUEUE_PERCENT 80
/* After the spool refused an append or failed a read, leave it alone this
 * long (the batch stays in memory meanwhile). */
#define EXPORT_SPOOL_BACKOFF_MS 250
/* Longest poll while the queue is above half the spill mark. */
#define EXPORT_SPOOL_WATCH_MS 10

struct in_flight {
    struct batch *b;
    uint64_t start_ns;
};

struct export_runner {
    struct pipeline *p;
    struct obs_registry *reg;
    unsigned shard;
    struct exporter ex;
    struct retry_config retry;
    /* SIGHUP: a new exporter.retry, taken by the export thread at its next
     * loop turn (export_runner_set_retry). */
    pthread_mutex_t retry_mu;
    struct retry_config retry_next;
    _Atomic bool retry_pending;
    unsigned max_in_flight;

    pthread_t thread;
    bool started, joined;
    void (*join)(void *arg); /* external thread (export_runner_start_external) */
    void *join_arg;
    _Atomic bool stopping;
    _Atomic uint64_t deadline_ms;

    struct in_flight *in_flight; /* max_in_flight entries, n_in_flight used */
    unsigned n_in_flight;
    struct batch *retry_head; /* ordered by next_attempt_ms, linked by batch->next */
    unsigned n_retry;
    uint64_t rng;

    unsigned consecutive_drops;
    bool healthy;
    struct log_ratelimit rl_drop, rl_retry, rl_partial, rl_spool;

    /* disk spool (spool.enabled); NULL when off */
    struct spool *spool;
    struct batch *replay; /* max_in_flight batches read back from the spool */
    uint64_t *replay_seq; /* spool sequence of replay[i] */
    bool *replay_busy;    /* replay[i] holds a record not yet acknowledged */
    unsigned n_replay_busy;
    uint64_t spill_mark;          /* queued items above which waiting batches are spooled */
    unsigned pool_low_mark;       /* ... or free batches of a worker below which */
    uint64_t spool_retry_ms;      /* no spool access before (after an error) */
    bool outage;                  /* the last attempt failed retryably, no success since */
    bool turn_spool;              /* fill(): spool and pipeline take turns */
    uint64_t replayed;            /* spooled batches the upstream accepted */
    struct spool_stats spool_pub; /* counters as last published */
    uint64_t replayed_pub;

    /* metric ids */
    uint32_t m_exported[OTLP_SIGNAL_COUNT];
    uint32_t m_dropped[OTLP_SIGNAL_COUNT]; /* + enum export_drop_reason */
    uint32_t m_requests;                   /* + sig * EXPORT_RESULT_COUNT + result */
    uint32_t m_duration;                   /* + sig */
    uint32_t m_in_flight, m_retry_queue;
    uint32_t m_spool_bytes, m_spool_records, m_spool_segments, m_spool_capacity;
    uint32_t m_spool_appends, m_spool_replayed, m_spool_corrupt, m_spool_full, m_spool_io_errors;
    /* write-ahead logs (spool.durability: spool), summed over the workers */
    bool durable;
    struct wal_stats wal_pub;
    uint32_t m_wal_bytes, m_wal_segments, m_wal_capacity, m_wal_appends, m_wal_fsyncs, m_wal_full,
        m_wal_io_errors, m_wal_corrupt, m_wal_replayed;
};

/* ---- backoff ---- */

uint32_t export_backoff_ms(const struct retry_config *rc, uint32_t attempt, double u)
{
    double mx = rc->max_interval_ms;
    double base = BASE_MIN((double)rc->initial_interval_ms, mx);
    double mult = rc->multiplier < 1.0 ? 1.0 : rc->multiplier;
    for (uint32_t i = 1; i < attempt && base < mx; i++)
        base *= mult;
    if (base > mx)
        base = mx;
    double rnd = rc->randomization < 0.0 ? 0.0 : rc->randomization > 1.0 ? 1.0 : rc->randomization;
    if (!(u >= 0.0)) /* also NaN */
        u = 0.0;
    if (u >= 1.0)
        u = 1.0;
    double d = base * (1.0 + rnd * (2.0 * u - 1.0));
    if (d <= 0.0)
        return 0;
    if (d >= (double)UINT32_MAX)
        return UINT32_MAX;
    return (uint32_t)(d + 0.5);
}

uint32_t export_retry_delay_ms(const struct retry_config *rc, uint32_t attempt,
                               uint32_t retry_after_ms, double u)
{
    return BASE_MAX(retry_after_ms, export_backoff_ms(rc, attempt, u));
}

/* xorshift64*: jitter only, no need for anything better. */
static double rng_uniform(struct export_runner *r)
{
    uint64_t x = r->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->rng = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

/* ---- metrics ---- */

static int register_metrics(struct export_runner *r)
{
    struct obs_registry *reg = r->reg;
    int rc;
    char name[96], help[160];
    const char *drop_labels[EXPORT_DROP_COUNT];
    char drop_buf[EXPORT_DROP_COUNT][48];
    for (unsigned i = 0; i < EXPORT_DROP_COUNT; i++) {
        snprintf(drop_buf[i], sizeof(drop_buf[i]), "reason=\"%s\"", export_drop_reasons[i]);
        drop_labels[i] = drop_buf[i];
    }
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        const char *items = otlp_signal_items[s];
        snprintf(name, sizeof(name), "otlp_%s_exported_total", items);
        snprintf(help, sizeof(help), "Items (%s) the upstream accepted.", items);
        if ((rc = obs_counter_register(reg, name, help, NULL, 1, &r->m_exported[s])) < 0)
            return rc;
        snprintf(name, sizeof(name), "otlp_%s_dropped_total", items);
        snprintf(help, sizeof(help), "Items (%s) dropped, by reason.", items);
        if ((rc = obs_counter_register(reg, name, help, drop_labels, EXPORT_DROP_COUNT,
                                       &r->m_dropped[s])) < 0)
            return rc;
    }

    const char *req_labels[OTLP_SIGNAL_COUNT * EXPORT_RESULT_COUNT];
    char req_buf[OTLP_SIGNAL_COUNT * EXPORT_RESULT_COUNT][64];
    const char *sig_labels[OTLP_SIGNAL_COUNT];
    char sig_buf[OTLP_SIGNAL_COUNT][32];
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        snprintf(sig_buf[s], sizeof(sig_buf[s]), "signal=\"%s\"", otlp_signal_names[s]);
        sig_labels[s] = sig_buf[s];
        for (unsigned k = 0; k < EXPORT_RESULT_COUNT; k++) {
            unsigned i = s * EXPORT_RESULT_COUNT + k;
            snprintf(req_buf[i], sizeof(req_buf[i]), "signal=\"%s\",result=\"%s\"",
                     otlp_signal_names[s], export_result_labels[k]);
            req_labels[i] = req_buf[i];
        }
    }
    if ((rc = obs_counter_register(reg, "otlp_export_requests_total",
                                   "Export attempts by signal and result.", req_labels,
                                   OTLP_SIGNAL_COUNT * EXPORT_RESULT_COUNT, &r->m_requests)) < 0 ||
        (rc = obs_histogram_register(reg, "otlp_export_duration_seconds",
                                     "Duration of export attempts.", sig_labels, OTLP_SIGNAL_COUNT,
                                     OBS_LATENCY_BUCKETS, OBS_LATENCY_BUCKETS_COUNT,
                                     &r->m_duration)) < 0 ||
        (rc = obs_gauge_register(reg, "otlp_export_in_flight", "Export requests in flight.", NULL,
                                 1, &r->m_in_flight)) < 0 ||
        (rc = obs_gauge_register(reg, "otlp_export_retry_queue", "Batches waiting for a retry.",
                                 NULL, 1, &r->m_retry_queue)) < 0)
        return rc;
    return 0;
}

/* The spool's figures (spool.enabled only, so a build without the spool
 * configured shows none). */
static int register_spool_metrics(struct export_runner *r)
{
    struct obs_registry *reg = r->reg;
    int rc;
    if ((rc = obs_gauge_register(reg, "otlp_spool_bytes", "Bytes of spool segment files on disk.",
                                 NULL, 1, &r->m_spool_bytes)) < 0 ||
        (rc = obs_gauge_register(reg, "otlp_spool_records",
                                 "Batches in the spool not yet delivered.", NULL, 1,
                                 &r->m_spool_records)) < 0 ||
        (rc = obs_gauge_register(reg, "otlp_spool_segments", "Spool segment files.", NULL, 1,
                                 &r->m_spool_segments)) < 0 ||
        (rc = obs_gauge_register(reg, "otlp_spool_capacity_bytes", "spool.max_bytes", NULL, 1,
                                 &r->m_spool_capacity)) < 0 ||
        (rc = obs_counter_register(reg, "otlp_spool_appends_total", "Batches written to the spool.",
                                   NULL, 1, &r->m_spool_appends)) < 0 ||
        (rc = obs_counter_register(reg, "otlp_spool_replayed_total",
                                   "Spooled batches the upstream accepted.", NULL, 1,
                                   &r->m_spool_replayed)) < 0 ||
        (rc = obs_counter_register(reg, "otlp_spool_corrupt_records_total",
                                   "Torn or damaged spool records (or regions) skipped.", NULL, 1,
                                   &r->m_spool_corrupt)) < 0 ||
        (rc = obs_counter_register(reg, "otlp_spool_full_total",
                                   "Spool appends refused: spool.max_bytes reached or disk full "
                                   "(the batch stayed in memory).",
                                   NULL, 1, &r->m_spool_full)) < 0 ||
        (rc = obs_counter_register(reg, "otlp_spool_io_errors_total",
                                   "Spool writes, reads or fsyncs that failed.", NULL, 1,
                                   &r->m_spool_io_errors)) < 0)
        return rc;
    return 0;
}

/* The write-ahead logs' figures (spool.durability: spool only). */
static int register_wal_metrics(struct export_runner *r)
{
    struct obs_registry *reg = r->reg;
    int rc;
    if ((rc = obs_gauge_register(reg, "otlp_wal_bytes",
                                 "Bytes of write-ahead log segment files on disk (all workers).",
                                 NULL, 1, &r->m_wal_bytes)) < 0 ||
        (rc = obs_gauge_register(reg, "otlp_wal_segments", "Write-ahead log segment files.", NULL,
                                 1, &r->m_wal_segments)) < 0 ||
        (rc = obs_gauge_register(reg, "otlp_wal_capacity_bytes", "spool.wal_max_bytes", NULL, 1,
                                 &r->m_wal_capacity)) < 0 ||
        (rc = obs_counter_register(reg, "otlp_wal_appends_total",
                                   "Requests appended to a write-ahead log before their 200.", NULL,
                                   1, &r->m_wal_appends)) < 0 ||
        (rc = obs_counter_register(reg, "otlp_wal_fsyncs_total",
                                   "fdatasync calls on write-ahead log segments.", NULL, 1,
                                   &r->m_wal_fsyncs)) < 0 ||
        (rc = obs_counter_register(reg, "otlp_wal_full_total",
                                   "Requests refused with 503: a worker's share of "
                                   "spool.wal_max_bytes reached or the disk full.",
                                   NULL, 1, &r->m_wal_full)) < 0 ||
        (rc = obs_counter_register(reg, "otlp_wal_io_errors_total",
                                   "Write-ahead log appends, fsyncs or deletes that failed.", NULL,
                                   1, &r->m_wal_io_errors)) < 0 ||
        (rc = obs_counter_register(reg, "otlp_wal_corrupt_records_total",
                                   "Torn or damaged write-ahead log records found at start.", NULL,
                                   1, &r->m_wal_corrupt)) < 0 ||
        (rc = obs_counter_register(reg, "otlp_wal_replayed_total",
                                   "Write-ahead log records of a previous run moved into the "
                                   "spool for replay at start.",
                                   NULL, 1, &r->m_wal_replayed)) < 0)
        return rc;
    return 0;
}

static void count_request(struct export_runner *r, enum otlp_signal s, enum export_result_label k)
{
    obs_counter_inc(r->reg, r->shard, r->m_requests + (uint32_t)s * EXPORT_RESULT_COUNT + k);
}

static void count_drop(struct export_runner *r, enum otlp_signal s, enum export_drop_reason why,
                       uint64_t items)
{
    obs_counter_add(r->reg, r->shard, r->m_dropped[s] + (uint32_t)why, items);
}

static void set_healthy(struct export_runner *r, bool ok, const char *reason)
{
    if (r->healthy == ok)
        return;
    r->healthy = ok;
    health_set(HEALTH_EXPORTER, ok, reason);
}

/* ---- retry list ---- */

static void retry_insert(struct export_runner *r, struct batch *b)
{
    struct batch **pp = &r->retry_head;
    while (*pp != NULL && (*pp)->next_attempt_ms <= b->next_attempt_ms)
        pp = &(*pp)->next;
    b->next = *pp;
    *pp = b;
    r->n_retry++;
}

static struct batch *retry_pop(struct export_runner *r)
{
    struct batch *b = r->retry_head;
    r->retry_head = b->next;
    b->next = NULL;
    r->n_retry--;
    return b;
}

/* Unlink *pp from the retry list and return it. */
static struct batch *retry_unlink(struct export_runner *r, struct batch **pp)
{
    struct batch *b = *pp;
    *pp = b->next;
    b->next = NULL;
    r->n_retry--;
    return b;
}

/* ---- spool ---- */

/* A batch read back from the spool (one of r->replay) rather than a pipeline
 * batch. */
static bool is_replay(const struct export_runner *r, const struct batch *b)
{
    return r->replay != NULL && b >= r->replay && b < r->replay + r->max_in_flight;
}

/* Done with a batch: a pipeline batch goes back to the pool (its items leave
 * the queue budget), a replay batch frees its slot. The spool record of a
 * replay batch is acknowledged separately, only once it was delivered or
 * rejected for good; without that it stays on disk for the next start. */
static void release_batch(struct export_runner *r, struct batch *b)
{
    if (is_replay(r, b)) {
        size_t i = (size_t)(b - r->replay);
        if (r->replay_busy[i]) {
            r->replay_busy[i] = false;
            r->n_replay_busy--;
        }
        b->body.len = 0;
        b->items = 0;
        return;
    }
    pipeline_release(r->p, b);
}

/* Acknowledge the spool record of a replay batch (delivered or rejected). */
static void ack_replay(struct export_runner *r, struct batch *b)
{
    size_t i = (size_t)(b - r->replay);
    int rc = spool_ack(r->spool, r->replay_seq[i]);
    if (rc < 0 && log_ratelimit(&r->rl_spool, 1000, 5))
        log_error("spool: acknowledgement failed", "seq=%" PRIu64 " error=%s suppressed=%u",
                  r->replay_seq[i], strerror(-rc), r->rl_spool.suppressed);
}

/* Memory is about to refuse clients: the items held are above the spill
 * mark (-> 429 queue_full soon), or a worker's batch pool runs low (many
 * small batches waiting -> 503 pool_exhausted soon). */
static bool under_pressure(const struct export_runner *r)
{
    return pipeline_queued_items(r->p) > r->spill_mark ||
           pipeline_free_batches_min(r->p) < r->pool_low_mark;
}

/*
 * Write pipeline batch `b` to the spool and give it back to the pool.
 * Returns true when it is in the spool; false when the spool is off, `b` is
 * a replay batch, or the spool refused it (full, I/O error: the caller still
 * owns `b`, and the spool is left alone for EXPORT_SPOOL_BACKOFF_MS).
 */
static bool spill(struct export_runner *r, struct batch *b, uint64_t now)
{
    if (r->spool == NULL || is_replay(r, b) || now < r->spool_retry_ms)
        return false;
    int rc = spool_append(r->spool, b->signal, b->items, b->body.data, b->body.len);
    if (rc < 0) {
        r->spool_retry_ms = now + EXPORT_SPOOL_BACKOFF_MS;
        if (log_ratelimit(&r->rl_spool, 1000, 5))
            log_warn(rc == -ENOSPC ? "spool full (spool.max_bytes or disk), batch kept in memory"
                                   : "spool append failed, batch kept in memory",
                     "signal=%s items=%" PRIu64 " error=%s suppressed=%u",
                     otlp_signal_names[b->signal], b->items, strerror(-rc), r->rl_spool.suppressed);
        return false;
    }
    pipeline_release(r->p, b);
    return true;
}

/*
 * While the items in memory are above the spill mark, move batches that
 * only wait (retries, earliest due first, then ready batches from the
 * rings) to the spool, so workers keep admitting. Stops when the spool
 * refuses; a ring batch it could not take waits in the retry list, due now.
 */
static void relieve_pressure(struct export_runner *r, uint64_t now)
{
    if (r->spool == NULL)
        return;
    while (now >= r->spool_retry_ms && under_pressure(r)) {
        struct batch **pp = &r->retry_head;
        while (*pp != NULL && is_replay(r, *pp))
            pp = &(*pp)->next;
        struct batch *b;
        if (*pp != NULL) {
            b = retry_unlink(r, pp);
            if (!spill(r, b, now)) {
                retry_insert(r, b);
                return;
            }
            continue;
        }
        if ((b = pipeline_dequeue(r->p)) == NULL)
            return;
        if (!spill(r, b, now)) {
            b->next_attempt_ms = now;
            retry_insert(r, b);
            return;
        }
    }
}

/*
 * The next spooled batch to replay, read into a free replay slot. NULL when
 * the spool is off or empty, every slot is taken, the runner is stopping, or
 * the upstream is failing while something else is pending (during an outage
 * a spooled batch is only tried as the single probe when memory holds
 * nothing to try).
 */
static struct batch *replay_next(struct export_runner *r, uint64_t now)
{
    if (r->spool == NULL || r->n_replay_busy == r->max_in_flight || now < r->spool_retry_ms ||
        atomic_load_explicit(&r->stopping, memory_order_relaxed))
        return NULL;
    if (r->outage && (r->n_in_flight > 0 || r->retry_head != NULL))
        return NULL;
    if (spool_unread(r->spool) == 0)
        return NULL;
    unsigned i = 0;
    while (r->replay_busy[i])
        i++;
    struct batch *b = &r->replay[i];
    struct spool_record rec;
    int rc = spool_read(r->spool, &rec, &b->body);
    if (rc < 0) {
        if (rc != -ENOENT) {
            r->spool_retry_ms = now + EXPORT_SPOOL_BACKOFF_MS;
            if (log_ratelimit(&r->rl_spool, 1000, 5))
                log_error("spool read failed", "error=%s suppressed=%u", strerror(-rc),
                          r->rl_spool.suppressed);
        }
        return NULL;
    }
    b->signal = rec.signal;
    b->items = rec.items;
    b->requests = 0;
    b->created_ms = now;
    b->attempts = 0;
    b->first_attempt_ms = 0;
    b->next_attempt_ms = 0;
    b->next = NULL;
    r->replay_seq[i] = rec.seq;
    r->replay_busy[i] = true;
    r->n_replay_busy++;
    return b;
}

/* ---- completion ---- */

/* Drop a batch for good: count it, log (rate-limited), release (a replay
 * batch's record is acknowledged: it would fail the same way again). */
static void drop_batch(struct export_runner *r, struct batch *b, enum export_drop_reason why,
                       const struct export_result *res)
{
    count_request(r, b->signal, EXPORT_RESULT_FAILED);
    count_drop(r, b->signal, why, b->items);
    if (log_ratelimit(&r->rl_drop, 1000, 5))
        log_warn("export failed, batch dropped",
                 "signal=%s reason=%s error=%s http_status=%d attempts=%u items=%" PRIu64
                 " message=%s suppressed=%u",
                 otlp_signal_names[b->signal], export_drop_reasons[why], res->reason,
                 res->http_status, b->attempts, b->items, res->message, r->rl_drop.suppressed);
    if (++r->consecutive_drops >= EXPORT_UNHEALTHY_AFTER_DROPS)
        set_healthy(r, false,
                    why == EXPORT_DROP_UPSTREAM_REJECTED
                        ? "upstream failing permanently"
                        : "upstream unreachable, retries exhausted");
    if (is_replay(r, b))
        ack_replay(r, b);
    release_batch(r, b);
}

static void schedule_retry(struct export_runner *r, struct batch *b, uint32_t delay,
                           const struct export_result *res, uint64_t now)
{
    count_request(r, b->signal, EXPORT_RESULT_RETRY);
    b->next_attempt_ms = now + delay;
    retry_insert(r, b);
    if (log_ratelimit(&r->rl_retry, 1000, 5))
        log_info("export failed, will retry",
                 "signal=%s error=%s http_status=%d attempt=%u retry_in_ms=%u spooled=%s "
                 "message=%s suppressed=%u",
                 otlp_signal_names[b->signal], res->reason, res->http_status, b->attempts, delay,
                 is_replay(r, b) ? "true" : "false", res->message, r->rl_retry.suppressed);
}

/*
 * A retryable failure. Without the spool: retry with backoff until
 * retry.max_elapsed_ms, then drop. With it: a replay batch is retried
 * without a time limit (it is safe on disk); a pipeline batch goes to the
 * spool when its retries are exhausted (or disabled) or memory is under
 * pressure, and stays in memory for the next retry when the spool refuses
 * it (full: the queue fills and clients get 429/503 instead of losing data).
 */
static void handle_retryable(struct export_runner *r, struct batch *b,
                             const struct export_result *res, uint64_t now)
{
    r->outage = true;
    uint32_t delay =
        export_retry_delay_ms(&r->retry, b->attempts, res->retry_after_ms, rng_uniform(r));
    delay = BASE_MAX(delay, 1u);
    if (is_replay(r, b)) {
        schedule_retry(r, b, delay, res, now);
        return;
    }
    bool exhausted =
        !r->retry.enabled || now + delay - b->first_attempt_ms > r->retry.max_elapsed_ms;
    if (r->spool != NULL && (exhausted || under_pressure(r))) {
        enum otlp_signal s = b->signal;
        uint64_t items = b->items;
        if (spill(r, b, now)) {
            count_request(r, s, EXPORT_RESULT_RETRY);
            if (log_ratelimit(&r->rl_retry, 1000, 5))
                log_info("export failed, batch spooled for later",
                         "signal=%s error=%s http_status=%d items=%" PRIu64 " message=%s "
                         "suppressed=%u",
                         otlp_signal_names[s], res->reason, res->http_status, items, res->message,
                         r->rl_retry.suppressed);
            return;
        }
        if (r->retry.enabled) {
            /* Kept in memory; past max_elapsed_ms it is retried at the
             * longest interval until the spool takes it or it is delivered. */
            schedule_retry(r, b, exhausted ? BASE_MAX(delay, r->retry.max_interval_ms) : delay, res,
                           now);
            return;
        }
    }
    if (!r->retry.enabled) {
        drop_batch(r, b, EXPORT_DROP_RETRY_DISABLED, res);
        return;
    }
    if (exhausted) {
        drop_batch(r, b, EXPORT_DROP_RETRIES_EXHAUSTED, res);
        return;
    }
    schedule_retry(r, b, delay, res, now);
}

static void handle_result(struct export_runner *r, struct batch *b, const struct export_result *res)
{
    enum otlp_signal s = b->signal;
    uint64_t now = base_now_ms();
    if (res->status != EXPORT_OK && (res->delivered_items > 0 || res->rejected_items > 0)) {
        /* Part of the batch went through (an exporter that splits batches);
         * `b` now holds only the rest, which is retried or dropped below. */
        obs_counter_add(r->reg, r->shard, r->m_exported[s], res->delivered_items);
        if (res->rejected_items > 0)
            count_drop(r, s, EXPORT_DROP_UPSTREAM_PARTIAL, res->rejected_items);
        uint64_t settled = BASE_MIN(res->delivered_items + res->rejected_items, b->items);
        if (is_replay(r, b))
            b->items -= settled;
        else
            pipeline_release_items(r->p, b, settled);
    }
    switch (res->status) {
    case EXPORT_OK: {
        uint64_t rejected = BASE_MIN(res->rejected_items, b->items);
        count_request(r, s, EXPORT_RESULT_SUCCESS);
        obs_counter_add(r->reg, r->shard, r->m_exported[s], b->items - rejected);
        if (rejected > 0) {
            count_drop(r, s, EXPORT_DROP_UPSTREAM_PARTIAL, rejected);
            if (log_ratelimit(&r->rl_partial, 1000, 5))
                log_warn("upstream rejected part of a batch",
                         "signal=%s rejected=%" PRIu64 " items=%" PRIu64
                         " message=%s suppressed=%u",
                         otlp_signal_names[s], rejected, b->items, res->message,
                         r->rl_partial.suppressed);
        }
        r->consecutive_drops = 0;
        r->outage = false;
        set_healthy(r, true, NULL);
        if (is_replay(r, b)) {
            ack_replay(r, b);
            r->replayed++;
        }
        release_batch(r, b);
        return;
    }
    case EXPORT_RETRYABLE:
        handle_retryable(r, b, res, now);
        return;
    case EXPORT_PERMANENT:
    default:
        drop_batch(r, b, EXPORT_DROP_UPSTREAM_REJECTED, res);
        return;
    }
}

static void on_done(void *arg, struct batch *b, const struct export_result *res)
{
    struct export_runner *r = arg;
    for (unsigned i = 0; i < r->n_in_flight; i++) {
        if (r->in_flight[i].b != b)
            continue;
        double secs = (double)(base_now_ns() - r->in_flight[i].start_ns) * 1e-9;
        obs_histogram_observe(r->reg, r->shard, r->m_duration + (uint32_t)b->signal, secs);
        r->in_flight[i] = r->in_flight[--r->n_in_flight];
        handle_result(r, b, res);
        return;
    }
    log_error("exporter reported a batch that is not in flight", "exporter=%s", r->ex.ops->name);
}

static void submit(struct export_runner *r, struct batch *b, uint64_t now)
{
    if (b->attempts == 0)
        b->first_attempt_ms = now;
    b->attempts++;
    b->next = NULL;
    int rc = r->ex.ops->submit(r->ex.state, b);
    if (rc == 0) {
        r->in_flight[r->n_in_flight].b = b;
        r->in_flight[r->n_in_flight].start_ns = base_now_ns();
        r->n_in_flight++;
        return;
    }
    struct export_result res = {.status = EXPORT_RETRYABLE};
    snprintf(res.reason, sizeof(res.reason), "submit_failed");
    snprintf(res.message, sizeof(res.message), "%s", strerror(-rc));
    if (rc == -EINVAL)
        res.status = EXPORT_PERMANENT;
    handle_result(r, b, &res);
}

/* Start exports up to the concurrency limit: due retries first, in order,
 * then new batches and spooled ones taking turns. Returns true when the
 * pipeline had nothing more. */
static bool fill(struct export_runner *r, uint64_t now)
{
    while (r->n_in_flight < r->max_in_flight) {
        struct batch *b = NULL;
        if (r->retry_head != NULL && r->retry_head->next_attempt_ms <= now) {
            b = retry_pop(r);
        } else {
            if (r->turn_spool)
                b = replay_next(r, now);
            if (b == NULL)
                b = pipeline_dequeue(r->p);
            if (b == NULL && !r->turn_spool)
                b = replay_next(r, now);
            r->turn_spool = !r->turn_spool;
            if (b == NULL)
                return true;
        }
        submit(r, b, now);
    }
    return false;
}

static void update_gauges(struct export_runner *r)
{
    obs_gauge_set(r->reg, r->shard, r->m_in_flight, (int64_t)r->n_in_flight);
    obs_gauge_set(r->reg, r->shard, r->m_retry_queue, (int64_t)r->n_retry);
    if (r->spool == NULL)
        return;
    struct spool_stats st;
    spool_get_stats(r->spool, &st);
    struct spool_stats *pub = &r->spool_pub;
    obs_gauge_set(r->reg, r->shard, r->m_spool_bytes, (int64_t)st.bytes);
    obs_gauge_set(r->reg, r->shard, r->m_spool_records, (int64_t)st.records);
    obs_gauge_set(r->reg, r->shard, r->m_spool_segments, (int64_t)st.segments);
    obs_counter_add(r->reg, r->shard, r->m_spool_appends, st.appends_total - pub->appends_total);
    obs_counter_add(r->reg, r->shard, r->m_spool_corrupt,
                    st.corrupt_records_total - pub->corrupt_records_total);
    obs_counter_add(r->reg, r->shard, r->m_spool_full, st.full_total - pub->full_total);
    obs_counter_add(r->reg, r->shard, r->m_spool_io_errors,
                    st.io_errors_total - pub->io_errors_total);
    obs_counter_add(r->reg, r->shard, r->m_spool_replayed, r->replayed - r->replayed_pub);
    *pub = st;
    r->replayed_pub = r->replayed;
    if (!r->durable)
        return;
    struct wal_stats ws;
    pipeline_wal_stats(r->p, &ws);
    struct wal_stats *wp = &r->wal_pub;
    obs_gauge_set(r->reg, r->shard, r->m_wal_bytes, (int64_t)ws.bytes);
    obs_gauge_set(r->reg, r->shard, r->m_wal_segments, (int64_t)ws.segments);
    obs_counter_add(r->reg, r->shard, r->m_wal_appends, ws.appends_total - wp->appends_total);
    obs_counter_add(r->reg, r->shard, r->m_wal_fsyncs, ws.fsyncs_total - wp->fsyncs_total);
    obs_counter_add(r->reg, r->shard, r->m_wal_full, ws.full_total - wp->full_total);
    obs_counter_add(r->reg, r->shard, r->m_wal_io_errors, ws.io_errors_total - wp->io_errors_total);
    obs_counter_add(r->reg, r->shard, r->m_wal_corrupt,
                    ws.corrupt_records_total - wp->corrupt_records_total);
    obs_counter_add(r->reg, r->shard, r->m_wal_replayed, ws.recovered_total - wp->recovered_total);
    *wp = ws;
}

/*
 * Stopping with the spool on: replay batches waiting for a retry are let go
 * (their records stay in the spool for the next start); during an outage
 * everything else that waits goes to the spool at once rather than being
 * retried until the deadline.
 */
static void stop_with_spool(struct export_runner *r, uint64_t now)
{
    if (r->spool == NULL)
        return;
    struct batch *list = r->retry_head, *b;
    r->retry_head = NULL;
    r->n_retry = 0;
    while ((b = list) != NULL) {
        list = b->next;
        b->next = NULL;
        if (is_replay(r, b))
            release_batch(r, b);
        else if (!r->outage || !spill(r, b, now))
            retry_insert(r, b);
    }
    if (!r->outage)
        return;
    while (now >= r->spool_retry_ms && (b = pipeline_dequeue(r->p)) != NULL) {
        if (!spill(r, b, now)) {
            b->next_attempt_ms = now;
            retry_insert(r, b);
        }
    }
}

/*
 * After the stop deadline: what was not exported goes to the spool when it
 * is on (in-flight batches too: if the upstream got one after all, it
 * arrives twice), else it is counted dropped with reason "shutdown".
 * Spooled replay batches are left in the spool. In-flight batches stay
 * referenced by the exporter; destroy releases them.
 */
static void finish_leftovers(struct export_runner *r)
{
    uint64_t dropped = 0, dropped_items = 0, spooled = 0, spooled_items = 0;
    uint64_t kept = 0, kept_items = 0;
    uint64_t now = base_now_ms();
    r->spool_retry_ms = 0; /* last chance: try the spool whatever happened before */
    struct batch *b;
    for (;;) {
        if (r->retry_head != NULL)
            b = retry_pop(r);
        else if ((b = pipeline_dequeue(r->p)) == NULL)
            break;
        if (is_replay(r, b)) {
            release_batch(r, b);
            continue;
        }
        uint64_t items = b->items;
        enum otlp_signal s = b->signal;
        if (spill(r, b, now)) {
            spooled++;
            spooled_items += items;
            continue;
        }
        if (r->durable) {
            /* Still in the write-ahead log: replayed at the next start. */
            kept++;
            kept_items += items;
            pipeline_keep_in_wal(r->p, b);
            pipeline_release(r->p, b);
            continue;
        }
        dropped++;
        dropped_items += items;
        count_drop(r, s, EXPORT_DROP_SHUTDOWN, items);
        pipeline_release(r->p, b);
    }
    for (unsigned i = 0; i < r->n_in_flight; i++) {
        b = r->in_flight[i].b;
        if (is_replay(r, b))
            continue;
        if (r->spool != NULL &&
            spool_append(r->spool, b->signal, b->items, b->body.data, b->body.len) == 0) {
            spooled++;
            spooled_items += b->items;
            continue;
        }
        if (r->durable) {
            kept++;
            kept_items += b->items;
            pipeline_keep_in_wal(r->p, b);
            continue;
        }
        dropped++;
        dropped_items += b->items;
        count_drop(r, b->signal, EXPORT_DROP_SHUTDOWN, b->items);
    }
    if (r->spool != NULL)
        (void)spool_sync(r->spool, now, true);
    update_gauges(r);
    if (spooled > 0)
        log_info("export stopped, undelivered data kept in the spool",
                 "batches=%" PRIu64 " items=%" PRIu64, spooled, spooled_items);
    if (kept > 0)
        log_info("export stopped, undelivered data kept in the write-ahead log",
                 "batches=%" PRIu64 " items=%" PRIu64, kept, kept_items);
    if (dropped > 0)
        log_warn("export stopped with data left, dropped", "batches=%" PRIu64 " items=%" PRIu64,
                 dropped, dropped_items);
}

static void *runner_main(void *arg)
{
    struct export_runner *r = arg;
    for (;;) {
        uint64_t now = base_now_ms();
        if (atomic_load_explicit(&r->retry_pending, memory_order_acquire)) {
            pthread_mutex_lock(&r->retry_mu);
            r->retry = r->retry_next;
            atomic_store_explicit(&r->retry_pending, false, memory_order_relaxed);
            pthread_mutex_unlock(&r->retry_mu);
        }
        bool stopping = atomic_load_explicit(&r->stopping, memory_order_acquire);
        uint64_t deadline = atomic_load_explicit(&r->deadline_ms, memory_order_relaxed);
        if (stopping && now >= deadline)
            break;
        if (stopping)
            stop_with_spool(r, now);
        relieve_pressure(r, now);
        bool drained = fill(r, now);
        /* Stopping and nothing left that could finish before the deadline. */
        if (stopping && drained && r->n_in_flight == 0 &&
            (r->retry_head == NULL || r->retry_head->next_attempt_ms >= deadline))
            break;
        uint64_t wait = EXPORT_POLL_MAX_MS;
        if (r->retry_head != NULL && r->n_in_flight < r->max_in_flight)
            wait = r->retry_head->next_attempt_ms > now ? r->retry_head->next_attempt_ms - now : 0;
        if (stopping)
            wait = BASE_MIN(wait, deadline - now);
        wait = BASE_MIN(wait, (uint64_t)EXPORT_POLL_MAX_MS);
        /* Workers only wake us when a batch closes: look at the queue more
         * often while it approaches the spill mark. */
        if (r->spool != NULL && (pipeline_queued_items(r->p) > r->spill_mark / 2 ||
                                 pipeline_free_batches_min(r->p) < 2 * r->pool_low_mark))
            wait = BASE_MIN(wait, (uint64_t)EXPORT_SPOOL_WATCH_MS);
        if (r->spool != NULL)
            (void)spool_sync(r->spool, now, false);
        update_gauges(r);
        int rc = r->ex.ops->poll(r->ex.state, (int)wait, on_done, r);
        if (rc < 0 && log_ratelimit(&r->rl_retry, 1000, 5))
            log_error("exporter poll failed", "exporter=%s error=%d", r->ex.ops->name, rc);
        update_gauges(r);
    }
    finish_leftovers(r);
    return NULL;
}

/* The pipeline calls this from worker threads when a batch is ready. */
static void runner_wakeup(void *arg)
{
    struct export_runner *r = arg;
    r->ex.ops->wakeup(r->ex.state);
}

/* ---- lifecycle ---- */

/* Open the spool of cfg->spool (directory default <data_dir>/spool) and the
 * replay slots. Returns 0, -ENOMEM, what spool_open() returns. */
static int open_spool(struct export_runner *r, const struct svc_config *cfg)
{
    const struct spool_config *sc = &cfg->spool;
    char *dir = NULL;
    if (spool_config_dir(cfg, &dir) < 0)
        return -ENOMEM;
    struct spool_options o = {
        .dir = dir,
        .max_bytes = sc->max_bytes,
        .segment_bytes = sc->segment_bytes,
        .fsync = sc->fsync,
        .fsync_interval_ms = BASE_MAX(sc->fsync_interval_ms, 1u),
    };
    int rc = spool_open(&o, &r->spool);
    if (rc < 0)
        log_error("export: cannot open the spool", "dir=%s error=%s", dir, strerror(-rc));
    free(dir);
    if (rc < 0)
        return rc;
    r->replay = calloc(r->max_in_flight, sizeof(*r->replay));
    r->replay_seq = calloc(r->max_in_flight, sizeof(*r->replay_seq));
    r->replay_busy = calloc(r->max_in_flight, sizeof(*r->replay_busy));
    if (r->replay == NULL || r->replay_seq == NULL || r->replay_busy == NULL)
        return -ENOMEM;
    /* Bodies grow to the largest record replayed and are kept. */
    for (unsigned i = 0; i < r->max_in_flight; i++)
        buf_init(&r->replay[i].body, 0, 0);
    uint64_t cap = pipeline_capacity_items(r->p);
    r->spill_mark = cap * EXPORT_SPILL_QUEUE_PERCENT / 100;
    r->pool_low_mark = BASE_MAX(2u, pipeline_batches_per_worker(r->p) / 4);
    if ((rc = register_spool_metrics(r)) < 0)
        return rc;
    obs_gauge_set(r->reg, r->shard, r->m_spool_capacity, (int64_t)sc->max_bytes);
    if (!pipeline_durable(r->p))
        return 0;
    /* durability: spool: what previous runs acknowledged and did not
     * deliver is in the workers' logs; into the spool with it, replayed
     * like any spooled batch. A failure leaves the rest in the logs for the
     * next start (logged); this run goes on. */
    r->durable = true;
    if ((rc = register_wal_metrics(r)) < 0)
        return rc;
    obs_gauge_set(r->reg, r->shard, r->m_wal_capacity, (int64_t)sc->wal_max_bytes);
    (void)pipeline_wal_recover(r->p, r->spool, NULL);
    update_gauges(r);
    return 0;
}

static void free_spool(struct export_runner *r)
{
    spool_close(r->spool);
    r->spool = NULL;
    if (r->replay != NULL) {
        for (unsigned i = 0; i < r->max_in_flight; i++)
            buf_free(&r->replay[i].body);
    }
    free(r->replay);
    free(r->replay_seq);
    free(r->replay_busy);
    r->replay = NULL;
}

int export_runner_create_with(const struct svc_config *cfg, struct pipeline *p,
                              struct obs_registry *reg, unsigned shard, struct exporter *ex,
                              struct export_runner **out)
{
    if (cfg == NULL || p == NULL || reg == NULL || ex == NULL || ex->ops == NULL || out == NULL ||
        shard >= reg->n_shards) {
        exporter_destroy(ex);
        return -EINVAL;
    }
    int rc = -ENOMEM;
    struct export_runner *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        exporter_destroy(ex);
        return -ENOMEM;
    }
    r->ex = *ex;
    ex->ops = NULL;
    ex->state = NULL;
    r->p = p;
    r->reg = reg;
    r->shard = shard;
    r->retry = cfg->exporter.retry;
    pthread_mutex_init(&r->retry_mu, NULL);
    r->max_in_flight = BASE_MAX(cfg->batch.max_concurrent_exports, 1u);
    r->in_flight = calloc(r->max_in_flight, sizeof(*r->in_flight));
    if (r->in_flight == NULL)
        goto fail;
    r->rng = (base_now_ns() ^ (uint64_t)(uintptr_t)r) | 1;
    if ((rc = register_metrics(r)) < 0) {
        log_error("export: metric registration failed", "error=%d", rc);
        goto fail;
    }
    if (r->ex.ops->register_metrics != NULL &&
        (rc = r->ex.ops->register_metrics(r->ex.state, reg)) < 0) {
        log_error("export: exporter metric registration failed", "exporter=%s error=%d",
                  r->ex.ops->name, rc);
        goto fail;
    }
    if ((cfg->spool.enabled || pipeline_durable(p)) && (rc = open_spool(r, cfg)) < 0)
        goto fail;
    atomic_init(&r->stopping, false);
    atomic_init(&r->deadline_ms, 0);
    r->healthy = true;
    health_set(HEALTH_EXPORTER, true, NULL);
    pipeline_set_wakeup(p, runner_wakeup, r);
    *out = r;
    return 0;
fail:
    exporter_destroy(&r->ex);
    free_spool(r);
    free(r->in_flight);
    free(r);
    return rc;
}

int export_runner_create(const struct svc_config *cfg, struct pipeline *p, struct obs_registry *reg,
                         unsigned shard, struct export_runner **out)
{
    if (cfg == NULL || out == NULL)
        return -EINVAL;
    struct exporter ex = {0};
    int rc = exporter_create(cfg, &ex);
    if (rc < 0)
        return rc;
    return export_runner_create_with(cfg, p, reg, shard, &ex, out);
}

static void log_started(const struct export_runner *r, const char *where)
{
    log_info("export runner started", "exporter=%s concurrency=%u spool=%s durability=%s thread=%s",
             r->ex.ops->name, r->max_in_flight, r->spool != NULL ? "on" : "off",
             r->durable ? "spool" : "memory", where);
}

int export_runner_start(struct export_runner *r)
{
    if (r == NULL)
        return -EINVAL;
    if (r->started || r->joined)
        return -EALREADY;
    int rc = pthread_create(&r->thread, NULL, runner_main, r);
    if (rc != 0)
        return -rc;
    pthread_setname_np(r->thread, "otlp-export");
    r->started = true;
    log_started(r, "pthread");
    return 0;
}

int export_runner_start_external(struct export_runner *r, const char *where,
                                 void (*join)(void *arg), void *join_arg)
{
    if (r == NULL || join == NULL)
        return -EINVAL;
    if (r->started || r->joined)
        return -EALREADY;
    r->join = join;
    r->join_arg = join_arg;
    r->started = true;
    log_started(r, where != NULL ? where : "external");
    return 0;
}

int export_runner_run(struct export_runner *r)
{
    if (r == NULL || r->joined)
        return -EINVAL;
    runner_main(r);
    return 0;
}

void export_runner_stop(struct export_runner *r, uint64_t deadline_ms)
{
    if (r == NULL || r->joined)
        return;
    atomic_store_explicit(&r->deadline_ms, deadline_ms, memory_order_relaxed);
    atomic_store_explicit(&r->stopping, true, memory_order_release);
    if (r->started) {
        r->ex.ops->wakeup(r->ex.state);
        if (r->join != NULL)
            r->join(r->join_arg);
        else
            pthread_join(r->thread, NULL);
    } else {
        runner_main(r);
    }
    r->joined = true;
}

void export_runner_set_retry(struct export_runner *r, const struct retry_config *rc)
{
    if (r == NULL || rc == NULL)
        return;
    pthread_mutex_lock(&r->retry_mu);
    r->retry_next = *rc;
    atomic_store_explicit(&r->retry_pending, true, memory_order_release);
    pthread_mutex_unlock(&r->retry_mu);
    r->ex.ops->wakeup(r->ex.state); /* take it now rather than at the next poll timeout */
}

void export_runner_destroy(struct export_runner *r)
{
    if (r == NULL)
        return;
    export_runner_stop(r, base_now_ms());
    pipeline_set_wakeup(r->p, NULL, NULL);
    exporter_destroy(&r->ex);
    for (unsigned i = 0; i < r->n_in_flight; i++)
        release_batch(r, r->in_flight[i].b);
    free_spool(r);
    free(r->in_flight);
    pthread_mutex_destroy(&r->retry_mu);
    free(r);
}
