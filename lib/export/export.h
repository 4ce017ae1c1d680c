/* SPDX-License-Identifier: Apache-2.0 */
/* The export runner: one thread that takes full batches from the pipeline,
 * hands them to the configured exporter (exporter.h) with at most
 * batch.max_concurrent_exports in flight, retries retryable failures with
 * exponential backoff, writes what cannot wait in memory to the disk spool
 * (lib/spool, spool.enabled) and replays it, and counts every exported and
 * every dropped item. docs/spool.md describes the spool's rules. */
#ifndef OTLP_EXPORT_H
#define OTLP_EXPORT_H

#include <stdint.h>

#include "config/config.h"
#include "export/exporter.h"

struct pipeline;
struct obs_registry;
struct export_runner;

/*
 * Why the export side drops items: X(enum suffix, reason label value).
 * These are the `reason` values of otlp_spans_dropped_total,
 * otlp_metric_points_dropped_total and otlp_log_records_dropped_total that
 * the runner registers (the receiver registers its own reasons into the same
 * families).
 */
#define EXPORT_DROP_REASONS(X)                                                                     \
    X(UPSTREAM_REJECTED, "upstream_rejected") /* permanent failure (e.g. HTTP 400, 401) */         \
    X(UPSTREAM_PARTIAL, "upstream_partial")   /* partial_success.rejected_* of a 2xx */            \
    X(RETRIES_EXHAUSTED, "retries_exhausted") /* retry.max_elapsed_ms passed, no spool */          \
    X(RETRY_DISABLED, "retry_disabled")       /* retryable failure, retry.enabled false */         \
    X(SHUTDOWN, "shutdown")                   /* left at the stop deadline, not spooled */

/* clang-format off */
enum export_drop_reason {
#define EXPORT_DROP_ENUM_(e, s) EXPORT_DROP_##e,
    EXPORT_DROP_REASONS(EXPORT_DROP_ENUM_)
#undef EXPORT_DROP_ENUM_
    EXPORT_DROP_COUNT
};
/* clang-format on */

/* Label values, index = enum export_drop_reason. */
extern const char *const export_drop_reasons[EXPORT_DROP_COUNT];

/* result label values of otlp_export_requests_total: one per attempt. */
#define EXPORT_RESULTS(X)                                                                          \
    X(SUCCESS, "success") /* 2xx, written (maybe partially accepted) */                            \
    X(RETRY, "retry")     /* failed, scheduled again */                                            \
    X(FAILED, "failed")   /* failed, batch dropped */

/* clang-format off */
enum export_result_label {
#define EXPORT_RESULT_ENUM_(e, s) EXPORT_RESULT_##e,
    EXPORT_RESULTS(EXPORT_RESULT_ENUM_)
#undef EXPORT_RESULT_ENUM_
    EXPORT_RESULT_COUNT
};
/* clang-format on */

/* Consecutive dropped batches (permanent failures, exhausted or disabled
 * retries, no success in between) after which HEALTH_EXPORTER turns not ok. */
#define EXPORT_UNHEALTHY_AFTER_DROPS 3

/*
 * Create the runner with the exporter cfg->exporter.protocol names
 * (exporter_create()) and register its metrics on `reg`:
 *   otlp_spans_exported_total, otlp_metric_points_exported_total,
 *   otlp_log_records_exported_total                      counters
 *   otlp_<items>_dropped_total{reason=<EXPORT_DROP_REASONS>} counters
 *   otlp_export_requests_total{signal,result}            counter
 *   otlp_export_duration_seconds{signal}                 histogram
 *   otlp_export_in_flight, otlp_export_retry_queue       gauges (batches)
 * and, with cfg->spool.enabled, opens the spool (spool.dir, default
 * <service.data_dir>/spool; existing segments are checked and replayed once
 * the thread runs) and registers
 *   otlp_spool_bytes, otlp_spool_records, otlp_spool_segments,
 *   otlp_spool_capacity_bytes                             gauges
 *   otlp_spool_appends_total, otlp_spool_replayed_total,
 *   otlp_spool_corrupt_records_total, otlp_spool_full_total,
 *   otlp_spool_io_errors_total                            counters
 * all updated on registry shard `shard`, which only the export thread may
 * write. Installs the pipeline's wakeup (pipeline_set_wakeup), so call it
 * before workers start. `cfg`, `p` and `reg` are borrowed for the runner's
 * lifetime.
 * Returns 0 and *out; -EINVAL (NULL argument, shard out of range); what the
 * exporter constructor returns; what metric registration returns (-EEXIST
 * when a second runner registers on the same registry); what spool_open()
 * returns (-EBUSY: another process uses the spool directory; -EACCES...);
 * -ENOMEM.
 */
int export_runner_create(const struct svc_config *cfg, struct pipeline *p, struct obs_registry *reg,
                         unsigned shard, struct export_runner **out);

/* Same with a ready exporter, whose ownership passes to the runner (also on
 * failure: it is destroyed then). For exporters outside the protocol table
 * and for tests. */
int export_runner_create_with(const struct svc_config *cfg, struct pipeline *p,
                              struct obs_registry *reg, unsigned shard, struct exporter *ex,
                              struct export_runner **out);

/* Start the export thread. Returns 0; -EALREADY; -EAGAIN/-ENOMEM from
 * pthread_create. */
int export_runner_start(struct export_runner *r);

/*
 * Run the export loop on the calling thread, a thread the caller owns (a
 * DPDK lcore: lib/dpdk's dpdk_export_start()), until export_runner_stop()
 * ends it. Announce the thread with export_runner_start_external() once it
 * is launched (the loop reads nothing that call sets).
 * Returns 0 when stopped; -EINVAL (NULL, or already stopped).
 */
int export_runner_run(struct export_runner *r);

/*
 * Instead of export_runner_start(): the caller runs export_runner_run() on
 * its own thread, described by `where` for the log (e.g. "lcore 2"), and
 * export_runner_stop() waits for it with `join(join_arg)` (e.g.
 * rte_eal_wait_lcore) instead of pthread_join. Call from the thread that
 * will call export_runner_stop(), once the loop's thread is launched.
 * Returns 0; -EINVAL (NULL r or join); -EALREADY.
 */
int export_runner_start_external(struct export_runner *r, const char *where,
                                 void (*join)(void *arg), void *join_arg);

/*
 * Graceful stop, called after the workers flushed their last batches: keep
 * exporting (retries included) until nothing is queued, in flight or due
 * before `deadline_ms` (monotonic, base_now_ms()), or until the deadline
 * passes; whatever is left then (in-flight batches included) goes to the
 * spool when it is enabled, else (or when the spool refuses it) it is
 * counted dropped with reason "shutdown". With the spool enabled and the
 * upstream failing, waiting batches are spooled at once instead of being
 * retried until the deadline. Joins the thread (the external one through its
 * join function). Without a started thread the same loop runs on the
 * caller's thread. Calling it twice is a no-op.
 */
void export_runner_stop(struct export_runner *r, uint64_t deadline_ms);

/*
 * Replace the retry settings (SIGHUP reload of exporter.retry.*): the export
 * thread takes them at its next loop turn; batches already waiting keep
 * their scheduled attempt, later waits and the give-up time
 * (max_elapsed_ms, from each batch's first attempt) follow the new values.
 * Any thread. NULL arguments are a no-op.
 */
void export_runner_set_retry(struct export_runner *r, const struct retry_config *rc);

/*
 * Stop at once if still running (deadline now), destroy the exporter
 * (aborting transfers), give batches that were in flight back to the
 * pipeline, close the spool (records not delivered stay for the next start),
 * clear the pipeline's wakeup and free everything. The workers must be
 * stopped. NULL is a no-op.
 */
void export_runner_destroy(struct export_runner *r);

/*
 * Backoff before retry number `attempt` (1 = the wait after the first failed
 * attempt): min(initial * multiplier^(attempt-1), max_interval), then
 * randomised by +/- randomization: base * (1 + randomization * (2u - 1)),
 * with `u` uniform in [0, 1). attempt 0 counts as 1. Never overflows.
 */
uint32_t export_backoff_ms(const struct retry_config *rc, uint32_t attempt, double u);

/* The wait before the next attempt: the server's Retry-After wins over a
 * shorter backoff: max(retry_after_ms, export_backoff_ms(rc, attempt, u)). */
uint32_t export_retry_delay_ms(const struct retry_config *rc, uint32_t attempt,
                               uint32_t retry_after_ms, double u);

#endif
