/* SPDX-License-Identifier: Apache-2.0 */
/* The memory limiter (memory_limiter config section): a thread measures the
 * process's resident memory every check_interval_ms and publishes a state
 * (ok / soft / hard) and a per-worker allocation allowance. The receivers
 * read both with relaxed loads before admitting a request or growing a
 * buffer, so no syscall or lock is on the hot path. Above the soft limit new
 * requests are refused (503 / UNAVAILABLE, retryable); request bodies and
 * decompression buffers are reserved against the hard limit before they are
 * allocated. Like the OpenTelemetry Collector's memory_limiter processor,
 * but in front of the pipeline instead of inside it. */
#ifndef OTLP_MEMLIMIT_H
#define OTLP_MEMLIMIT_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"
#include "config/config.h"

struct obs_registry;

/* X(name, label): the states, in order of pressure. */
#define MEMLIMIT_STATES(X)                                                                         \
    X(OK, ok)     /* below the soft limit: admit */                                                \
    X(SOFT, soft) /* soft limit reached: refuse new requests */                                    \
    X(HARD, hard) /* hard limit reached: refuse, and trim caches (malloc_trim) */

enum memlimit_state {
#define X(n, l) MEMLIMIT_##n,
    MEMLIMIT_STATES(X)
#undef X
        MEMLIMIT_STATE_COUNT
};

/* Who refused: the label of otlp_memory_limiter_refused_total. */
enum memlimit_proto { MEMLIMIT_PROTO_HTTP = 0, MEMLIMIT_PROTO_GRPC = 1, MEMLIMIT_PROTO_COUNT };

/* Effective limits in bytes; hard_bytes 0: no limit. */
struct memlimit_limits {
    uint64_t hard_bytes;
    uint64_t soft_bytes; /* < hard_bytes when hard_bytes != 0 */
    uint32_t check_interval_ms;
};

/* One worker's reservations. Written only by its worker, read by the
 * measuring thread; `allowance` the other way round. */
struct memlimit_worker {
    _Alignas(BASE_CACHE_LINE) _Atomic uint64_t reserved; /* bytes held by this worker */
    _Atomic uint64_t allowance;                          /* most it may hold until next check */
};

struct memlimit {
    _Atomic int state;           /* enum memlimit_state */
    _Atomic uint64_t hard_bytes; /* limits, replaced by memlimit_set_limits() */
    _Atomic uint64_t soft_bytes;
    _Atomic uint32_t check_interval_ms;
    _Atomic uint64_t used_bytes; /* last measurement */
    _Atomic uint64_t peak_bytes; /* highest measurement */
    unsigned n_workers;
    struct memlimit_worker *workers;
    /* the measuring thread and the source of measurements */
    uint64_t (*measure)(void *arg);
    void *measure_arg;
    int statm_fd;
    bool started;
    _Atomic bool stop;
    unsigned long thread; /* pthread_t */
    /* metrics */
    struct obs_registry *reg;
    uint32_t m_refused;                                 /* + proto * OTLP_SIGNAL_COUNT + signal */
    _Atomic uint64_t transitions[MEMLIMIT_STATE_COUNT]; /* times each state was entered */
    uint64_t checks;
};

/*
 * Derive the effective limits from the memory_limiter section: limit_mib 0
 * takes 80% of `cgroup_max_bytes` (0: none, so no limit), spike_limit_mib 0
 * takes 20% of the limit. Returns 0, or -EINVAL (spike not below the limit).
 */
int memlimit_limits_from_config(const struct memory_limiter_config *c, uint64_t cgroup_max_bytes,
                                struct memlimit_limits *out);

/* The memory limit of this process's cgroup (v2 memory.max, v1
 * memory.limit_in_bytes); 0 when there is none or it cannot be read. */
uint64_t memlimit_cgroup_max(void);

/* Resident set size of this process in bytes from /proc/self/statm (pages
 * of hugetlbfs mappings, i.e. DPDK's hugepage pools, are not in it); 0 when
 * it cannot be read. `fd` is an open /proc/self/statm or -1. */
uint64_t memlimit_read_rss(int fd);

/*
 * The state for a measurement of `used_bytes`. Pure; the state machine the
 * measuring thread applies: hard from hard_bytes on, soft from soft_bytes
 * on, else ok; leaving soft for ok needs used below soft_bytes minus 1/16 of
 * the spike headroom (hysteresis: no flapping at the threshold).
 */
enum memlimit_state memlimit_next_state(enum memlimit_state cur, uint64_t used_bytes,
                                        const struct memlimit_limits *l);

/*
 * Create the limiter for `n_workers` workers (their ids index the
 * reservations), registering otlp_memory_limiter_* metrics in `reg` (NULL:
 * none). `measure` (NULL: memlimit_read_rss of this process) returns the
 * bytes in use; tests pass their own. One measurement is taken before this
 * returns. Borrows reg. Returns 0, -EINVAL, -ENOMEM, or a registry error.
 */
int memlimit_create(const struct memlimit_limits *l, unsigned n_workers, struct obs_registry *reg,
                    uint64_t (*measure)(void *arg), void *measure_arg, struct memlimit **out);
/* Stops the thread if running. NULL is a no-op. */
void memlimit_destroy(struct memlimit *ml);

/* Start / stop the measuring thread. start returns 0 or -errno. */
int memlimit_start(struct memlimit *ml);
void memlimit_stop(struct memlimit *ml);

/* Replace the limits (SIGHUP); the next check applies them. Any thread. */
void memlimit_set_limits(struct memlimit *ml, const struct memlimit_limits *l);

/* Measure now (outside `ok`, after malloc_trim(0) so freed buffers leave
 * the RSS), publish the state and the allowances; what the thread does
 * every check_interval_ms. Returns the new state. One caller at a time. */
enum memlimit_state memlimit_check(struct memlimit *ml);

/* Current state; a relaxed load, for the hot path. NULL: ok. */
static inline enum memlimit_state memlimit_state(const struct memlimit *ml)
{
    if (ml == NULL)
        return MEMLIMIT_OK;
    return (enum memlimit_state)atomic_load_explicit(&((struct memlimit *)ml)->state,
                                                     memory_order_relaxed);
}

/* Bytes worker `w` may still reserve until the next check. NULL: unlimited. */
static inline uint64_t memlimit_headroom(const struct memlimit *ml, unsigned w)
{
    if (ml == NULL)
        return UINT64_MAX;
    struct memlimit_worker *mw = &ml->workers[w];
    uint64_t r = atomic_load_explicit(&mw->reserved, memory_order_relaxed);
    uint64_t a = atomic_load_explicit(&mw->allowance, memory_order_relaxed);
    return a > r ? a - r : 0;
}

/*
 * Worker `w` is about to allocate `bytes` (a request body, a decompression
 * buffer): account them, or refuse when that would take the process past
 * the hard limit. Only worker w calls this (no atomic read-modify-write).
 * Returns 0, or -ENOMEM (nothing reserved). NULL ml: always 0.
 */
static inline int memlimit_reserve(struct memlimit *ml, unsigned w, uint64_t bytes)
{
    if (ml == NULL || bytes == 0)
        return 0;
    if (unlikely(bytes > memlimit_headroom(ml, w)))
        return -ENOMEM;
    struct memlimit_worker *mw = &ml->workers[w];
    uint64_t r = atomic_load_explicit(&mw->reserved, memory_order_relaxed);
    atomic_store_explicit(&mw->reserved, r + bytes, memory_order_relaxed);
    return 0;
}

/* Worker `w` freed `bytes` it had reserved. NULL ml: no-op. */
static inline void memlimit_release(struct memlimit *ml, unsigned w, uint64_t bytes)
{
    if (ml == NULL || bytes == 0)
        return;
    struct memlimit_worker *mw = &ml->workers[w];
    uint64_t r = atomic_load_explicit(&mw->reserved, memory_order_relaxed);
    atomic_store_explicit(&mw->reserved, r > bytes ? r - bytes : 0, memory_order_relaxed);
}

/* Worker `w` has allocated `bytes` already (a buffer grew within
 * memlimit_headroom()): account them without refusing. NULL ml: no-op. */
static inline void memlimit_charge(struct memlimit *ml, unsigned w, uint64_t bytes)
{
    if (ml == NULL || bytes == 0)
        return;
    struct memlimit_worker *mw = &ml->workers[w];
    uint64_t r = atomic_load_explicit(&mw->reserved, memory_order_relaxed);
    atomic_store_explicit(&mw->reserved, r + bytes, memory_order_relaxed);
}

/* Move worker w's reservation for one buffer from *held to `bytes` (grow:
 * reserve, may fail; shrink: release). Returns 0 or -ENOMEM (*held kept). */
static inline int memlimit_account(struct memlimit *ml, unsigned w, uint64_t *held, uint64_t bytes)
{
    if (bytes > *held) {
        if (memlimit_reserve(ml, w, bytes - *held) < 0)
            return -ENOMEM;
    } else {
        memlimit_release(ml, w, *held - bytes);
    }
    *held = bytes;
    return 0;
}

/* Count one request refused by the limiter (worker w's metric shard). */
void memlimit_count_refused(struct memlimit *ml, unsigned w, enum memlimit_proto proto,
                            unsigned signal);

/* Name of a state ("ok", "soft", "hard"). */
const char *memlimit_state_name(enum memlimit_state s);

#endif
