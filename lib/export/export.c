/* SPDX-License-Identifier: Apache-2.0 */
/* The export thread: pipeline rings -> exporter, with a bounded number of
 * exports in flight, a retry list ordered by due time, and the exported /
 * dropped accounting that /metrics and the health probe show. */
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
    unsigned max_in_flight;

    pthread_t thread;
    bool started, joined;
    _Atomic bool stopping;
    _Atomic uint64_t deadline_ms;

    struct in_flight *in_flight; /* max_in_flight entries, n_in_flight used */
    unsigned n_in_flight;
    struct batch *retry_head; /* ordered by next_attempt_ms, linked by batch->next */
    unsigned n_retry;
    uint64_t rng;

    unsigned consecutive_drops;
    bool healthy;
    struct log_ratelimit rl_drop, rl_retry, rl_partial;

    /* metric ids */
    uint32_t m_exported[OTLP_SIGNAL_COUNT];
    uint32_t m_dropped[OTLP_SIGNAL_COUNT]; /* + enum export_drop_reason */
    uint32_t m_requests;                   /* + sig * EXPORT_RESULT_COUNT + result */
    uint32_t m_duration;                   /* + sig */
    uint32_t m_in_flight, m_retry_queue;
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

/* ---- completion ---- */

/* Drop a batch for good: count it, log (rate-limited), release. */
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
    pipeline_release(r->p, b);
}

static void handle_result(struct export_runner *r, struct batch *b, const struct export_result *res)
{
    enum otlp_signal s = b->signal;
    uint64_t now = base_now_ms();
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
        set_healthy(r, true, NULL);
        pipeline_release(r->p, b);
        return;
    }
    case EXPORT_RETRYABLE: {
        if (!r->retry.enabled) {
            drop_batch(r, b, EXPORT_DROP_RETRY_DISABLED, res);
            return;
        }
        uint32_t delay =
            export_retry_delay_ms(&r->retry, b->attempts, res->retry_after_ms, rng_uniform(r));
        delay = BASE_MAX(delay, 1u);
        if (now + delay - b->first_attempt_ms > r->retry.max_elapsed_ms) {
            drop_batch(r, b, EXPORT_DROP_RETRIES_EXHAUSTED, res);
            return;
        }
        count_request(r, s, EXPORT_RESULT_RETRY);
        b->next_attempt_ms = now + delay;
        retry_insert(r, b);
        if (log_ratelimit(&r->rl_retry, 1000, 5))
            log_info("export failed, will retry",
                     "signal=%s error=%s http_status=%d attempt=%u retry_in_ms=%u message=%s "
                     "suppressed=%u",
                     otlp_signal_names[s], res->reason, res->http_status, b->attempts, delay,
                     res->message, r->rl_retry.suppressed);
        return;
    }
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
 * then new batches. Returns true when the pipeline had nothing more. */
static bool fill(struct export_runner *r, uint64_t now)
{
    while (r->n_in_flight < r->max_in_flight) {
        struct batch *b;
        if (r->retry_head != NULL && r->retry_head->next_attempt_ms <= now) {
            b = retry_pop(r);
        } else if ((b = pipeline_dequeue(r->p)) == NULL) {
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
}

/* After the stop deadline: count everything not exported as dropped. The
 * in-flight batches stay referenced by the exporter; destroy releases them. */
static void drop_leftovers(struct export_runner *r)
{
    uint64_t batches = 0, items = 0;
    struct batch *b;
    while (r->retry_head != NULL) {
        b = retry_pop(r);
        batches++;
        items += b->items;
        count_drop(r, b->signal, EXPORT_DROP_SHUTDOWN, b->items);
        pipeline_release(r->p, b);
    }
    while ((b = pipeline_dequeue(r->p)) != NULL) {
        batches++;
        items += b->items;
        count_drop(r, b->signal, EXPORT_DROP_SHUTDOWN, b->items);
        pipeline_release(r->p, b);
    }
    for (unsigned i = 0; i < r->n_in_flight; i++) {
        b = r->in_flight[i].b;
        batches++;
        items += b->items;
        count_drop(r, b->signal, EXPORT_DROP_SHUTDOWN, b->items);
    }
    update_gauges(r);
    if (batches > 0)
        log_warn("export stopped with data left, dropped", "batches=%" PRIu64 " items=%" PRIu64,
                 batches, items);
}

static void *runner_main(void *arg)
{
    struct export_runner *r = arg;
    for (;;) {
        uint64_t now = base_now_ms();
        bool stopping = atomic_load_explicit(&r->stopping, memory_order_acquire);
        uint64_t deadline = atomic_load_explicit(&r->deadline_ms, memory_order_relaxed);
        if (stopping && now >= deadline)
            break;
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
        update_gauges(r);
        int rc = r->ex.ops->poll(r->ex.state, (int)wait, on_done, r);
        if (rc < 0 && log_ratelimit(&r->rl_retry, 1000, 5))
            log_error("exporter poll failed", "exporter=%s error=%d", r->ex.ops->name, rc);
        update_gauges(r);
    }
    drop_leftovers(r);
    return NULL;
}

/* The pipeline calls this from worker threads when a batch is ready. */
static void runner_wakeup(void *arg)
{
    struct export_runner *r = arg;
    r->ex.ops->wakeup(r->ex.state);
}

/* ---- lifecycle ---- */

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
    r->max_in_flight = BASE_MAX(cfg->batch.max_concurrent_exports, 1u);
    r->in_flight = calloc(r->max_in_flight, sizeof(*r->in_flight));
    if (r->in_flight == NULL)
        goto fail;
    r->rng = (base_now_ns() ^ (uint64_t)(uintptr_t)r) | 1;
    if ((rc = register_metrics(r)) < 0) {
        log_error("export: metric registration failed", "error=%d", rc);
        goto fail;
    }
    atomic_init(&r->stopping, false);
    atomic_init(&r->deadline_ms, 0);
    r->healthy = true;
    health_set(HEALTH_EXPORTER, true, NULL);
    pipeline_set_wakeup(p, runner_wakeup, r);
    *out = r;
    return 0;
fail:
    exporter_destroy(&r->ex);
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
    log_info("export runner started", "exporter=%s concurrency=%u", r->ex.ops->name,
             r->max_in_flight);
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
        pthread_join(r->thread, NULL);
    } else {
        runner_main(r);
    }
    r->joined = true;
}

void export_runner_destroy(struct export_runner *r)
{
    if (r == NULL)
        return;
    export_runner_stop(r, base_now_ms());
    pipeline_set_wakeup(r->p, NULL, NULL);
    exporter_destroy(&r->ex);
    for (unsigned i = 0; i < r->n_in_flight; i++)
        pipeline_release(r->p, r->in_flight[i].b);
    free(r->in_flight);
    free(r);
}
