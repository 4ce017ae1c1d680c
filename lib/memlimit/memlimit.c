/* SPDX-License-Identifier: Apache-2.0 */
/* The memory limiter's measuring thread and state machine: RSS from
 * /proc/self/statm every check_interval_ms -> state and per-worker
 * allowances the receivers read (memlimit.h). */
#include "memlimit/memlimit.h"

#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "obs/log.h"
#include "obs/metrics.h"
#include "otlp/otlp.h"

#define MIB_BYTES (1024ull * 1024ull)

static const char *const state_names[] = {
#define X(n, l) #l,
    MEMLIMIT_STATES(X)
#undef X
};

const char *memlimit_state_name(enum memlimit_state s)
{
    return (unsigned)s < MEMLIMIT_STATE_COUNT ? state_names[s] : "unknown";
}

int memlimit_limits_from_config(const struct memory_limiter_config *c, uint64_t cgroup_max_bytes,
                                struct memlimit_limits *out)
{
    uint64_t hard = (uint64_t)c->limit_mib * MIB_BYTES;
    if (c->limit_mib == 0)
        hard = cgroup_max_bytes / 10 * 8; /* 0 when there is no cgroup limit */
    uint64_t spike = (uint64_t)c->spike_limit_mib * MIB_BYTES;
    if (c->spike_limit_mib == 0)
        spike = hard / 5;
    if (hard != 0 && spike >= hard)
        return -EINVAL;
    out->hard_bytes = hard;
    out->soft_bytes = hard - (hard != 0 ? spike : 0);
    out->check_interval_ms = c->check_interval_ms ? c->check_interval_ms : 100;
    return 0;
}

/* A small number from a file: "max" and unreadable give 0. */
static uint64_t read_u64_file(const char *path)
{
    char buf[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf)
        return 0;
    return (uint64_t)v;
}

uint64_t memlimit_cgroup_max(void)
{
    /* cgroup v2 (the process's own cgroup is mounted at the root inside a
     * container; on a host, /proc/self/cgroup names it). */
    char path[512] = "/sys/fs/cgroup/memory.max";
    char line[400];
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (f != NULL) {
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "0::", 3) == 0) {
                line[strcspn(line, "\n")] = '\0';
                char cand[512];
                snprintf(cand, sizeof(cand), "/sys/fs/cgroup%s/memory.max",
                         strcmp(line + 3, "/") == 0 ? "" : line + 3);
                if (access(cand, R_OK) == 0)
                    snprintf(path, sizeof(path), "%s", cand);
            }
        }
        fclose(f);
    }
    uint64_t v = read_u64_file(path);
    if (v == 0)
        v = read_u64_file("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    /* v1 writes "no limit" as a huge number */
    return v >= (UINT64_C(1) << 60) ? 0 : v;
}

uint64_t memlimit_read_rss(int fd)
{
    char buf[128];
    ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf) - 1, 0) : -1;
    if (n <= 0) {
        int f = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
        if (f < 0)
            return 0;
        n = read(f, buf, sizeof(buf) - 1);
        close(f);
        if (n <= 0)
            return 0;
    }
    buf[n] = '\0';
    unsigned long long size, resident;
    if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return 0;
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

enum memlimit_state memlimit_next_state(enum memlimit_state cur, uint64_t used_bytes,
                                        const struct memlimit_limits *l)
{
    if (l->hard_bytes == 0)
        return MEMLIMIT_OK;
    if (used_bytes >= l->hard_bytes)
        return MEMLIMIT_HARD;
    if (used_bytes >= l->soft_bytes)
        return MEMLIMIT_SOFT;
    uint64_t hyst = (l->hard_bytes - l->soft_bytes) / 16;
    if (cur != MEMLIMIT_OK && used_bytes + hyst >= l->soft_bytes)
        return MEMLIMIT_SOFT;
    return MEMLIMIT_OK;
}

static uint64_t measure_rss(void *arg)
{
    return memlimit_read_rss(*(int *)arg);
}

static void load_limits(const struct memlimit *ml, struct memlimit_limits *l)
{
    struct memlimit *m = (struct memlimit *)ml;
    l->hard_bytes = atomic_load_explicit(&m->hard_bytes, memory_order_relaxed);
    l->soft_bytes = atomic_load_explicit(&m->soft_bytes, memory_order_relaxed);
    l->check_interval_ms = atomic_load_explicit(&m->check_interval_ms, memory_order_relaxed);
    if (l->soft_bytes > l->hard_bytes)
        l->soft_bytes = l->hard_bytes;
}

/* Split what is left below the hard limit evenly between the workers, on
 * top of what each holds now (that is inside `used` already). */
static void publish_allowances(struct memlimit *ml, uint64_t used, const struct memlimit_limits *l)
{
    uint64_t share = UINT64_MAX;
    if (l->hard_bytes != 0)
        share = (l->hard_bytes > used ? l->hard_bytes - used : 0) / ml->n_workers;
    for (unsigned w = 0; w < ml->n_workers; w++) {
        struct memlimit_worker *mw = &ml->workers[w];
        uint64_t r = atomic_load_explicit(&mw->reserved, memory_order_relaxed);
        uint64_t a = share > UINT64_MAX - r ? UINT64_MAX : r + share;
        atomic_store_explicit(&mw->allowance, a, memory_order_relaxed);
    }
}

enum memlimit_state memlimit_check(struct memlimit *ml)
{
    struct memlimit_limits l;
    load_limits(ml, &l);
    uint64_t used = ml->measure(ml->measure_arg);
    enum memlimit_state cur = memlimit_state(ml);
    enum memlimit_state next = memlimit_next_state(cur, used, &l);
    if (next != MEMLIMIT_OK && ml->measure == measure_rss) {
        /* What the Collector does with a forced GC: give freed heap (the
         * buffers trimmed under pressure) back to the kernel, look again. */
        malloc_trim(0);
        used = ml->measure(ml->measure_arg);
        next = memlimit_next_state(cur, used, &l);
    }
    ml->checks++;
    atomic_store_explicit(&ml->used_bytes, used, memory_order_relaxed);
    if (used > atomic_load_explicit(&ml->peak_bytes, memory_order_relaxed))
        atomic_store_explicit(&ml->peak_bytes, used, memory_order_relaxed);
    publish_allowances(ml, used, &l);
    if (next != cur) {
        atomic_store_explicit(&ml->state, (int)next, memory_order_relaxed);
        atomic_fetch_add_explicit(&ml->transitions[next], 1, memory_order_relaxed);
        if (next == MEMLIMIT_OK)
            log_info("memory limiter: below the soft limit, accepting data again",
                     "used_bytes=%" PRIu64 " soft_limit_bytes=%" PRIu64, used, l.soft_bytes);
        else
            log_warn("memory limiter: refusing new data",
                     "state=%s used_bytes=%" PRIu64 " soft_limit_bytes=%" PRIu64
                     " hard_limit_bytes=%" PRIu64,
                     memlimit_state_name(next), used, l.soft_bytes, l.hard_bytes);
    }
    return next;
}

static void *limiter_main(void *arg)
{
    struct memlimit *ml = arg;
    while (!atomic_load(&ml->stop)) {
        uint32_t ms = atomic_load_explicit(&ml->check_interval_ms, memory_order_relaxed);
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        memlimit_check(ml);
    }
    return NULL;
}

/* ---- metrics (read at scrape time) ---- */

static double state_fn(void *arg)
{
    return (double)memlimit_state(arg);
}

static double used_fn(void *arg)
{
    return (double)atomic_load_explicit(&((struct memlimit *)arg)->used_bytes,
                                        memory_order_relaxed);
}

static double peak_fn(void *arg)
{
    return (double)atomic_load_explicit(&((struct memlimit *)arg)->peak_bytes,
                                        memory_order_relaxed);
}

static double hard_fn(void *arg)
{
    return (double)atomic_load_explicit(&((struct memlimit *)arg)->hard_bytes,
                                        memory_order_relaxed);
}

static double soft_fn(void *arg)
{
    return (double)atomic_load_explicit(&((struct memlimit *)arg)->soft_bytes,
                                        memory_order_relaxed);
}

static double reserved_fn(void *arg)
{
    struct memlimit *ml = arg;
    uint64_t sum = 0;
    for (unsigned w = 0; w < ml->n_workers; w++)
        sum += atomic_load_explicit(&ml->workers[w].reserved, memory_order_relaxed);
    return (double)sum;
}

static double transitions_fn(void *arg)
{
    return (double)atomic_load_explicit((_Atomic uint64_t *)arg, memory_order_relaxed);
}

static int register_metrics(struct memlimit *ml)
{
    struct obs_registry *reg = ml->reg;
    static const char *const protos[MEMLIMIT_PROTO_COUNT] = {"http", "grpc"};
    static char store[MEMLIMIT_PROTO_COUNT * OTLP_SIGNAL_COUNT][64];
    const char *lbl[MEMLIMIT_PROTO_COUNT * OTLP_SIGNAL_COUNT];
    for (unsigned p = 0; p < MEMLIMIT_PROTO_COUNT; p++)
        for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++) {
            unsigned i = p * OTLP_SIGNAL_COUNT + s;
            snprintf(store[i], sizeof(store[i]), "protocol=\"%s\",signal=\"%s\"", protos[p],
                     otlp_signal_names[s]);
            lbl[i] = store[i];
        }
    int rc;
    for (unsigned s = 0; s < MEMLIMIT_STATE_COUNT; s++) {
        char tl[32];
        snprintf(tl, sizeof(tl), "state=\"%s\"", state_names[s]);
        if ((rc = obs_counter_func_register(reg, "otlp_memory_limiter_transitions_total",
                                            "Times the memory limiter entered each state", tl,
                                            transitions_fn, &ml->transitions[s])) < 0)
            return rc;
    }
    if ((rc = obs_counter_register(reg, "otlp_memory_limiter_refused_total",
                                   "Requests refused because the memory limiter was above its soft "
                                   "limit or a buffer would pass the hard limit",
                                   lbl, MEMLIMIT_PROTO_COUNT * OTLP_SIGNAL_COUNT, &ml->m_refused)) <
            0 ||
        (rc = obs_gauge_func_register(reg, "otlp_memory_limiter_state",
                                      "Memory limiter state: 0 ok, 1 soft (refusing), 2 hard", "",
                                      state_fn, ml)) < 0 ||
        (rc = obs_gauge_func_register(reg, "otlp_process_memory_bytes",
                                      "Resident memory at the last memory limiter check", "",
                                      used_fn, ml)) < 0 ||
        (rc = obs_gauge_func_register(reg, "otlp_process_memory_peak_bytes",
                                      "Highest resident memory the memory limiter measured", "",
                                      peak_fn, ml)) < 0 ||
        (rc = obs_gauge_func_register(reg, "otlp_memory_limiter_limit_bytes",
                                      "Memory limiter limits (0: no limit)", "limit=\"hard\"",
                                      hard_fn, ml)) < 0 ||
        (rc = obs_gauge_func_register(reg, "otlp_memory_limiter_limit_bytes",
                                      "Memory limiter limits (0: no limit)", "limit=\"soft\"",
                                      soft_fn, ml)) < 0 ||
        (rc = obs_gauge_func_register(reg, "otlp_memory_limiter_reserved_bytes",
                                      "Request buffers the workers hold against the hard limit", "",
                                      reserved_fn, ml)) < 0)
        return rc;
    return 0;
}

void memlimit_count_refused(struct memlimit *ml, unsigned w, enum memlimit_proto proto,
                            unsigned signal)
{
    if (ml == NULL || ml->reg == NULL || signal >= OTLP_SIGNAL_COUNT)
        return;
    obs_counter_inc(ml->reg, w, ml->m_refused + (uint32_t)proto * OTLP_SIGNAL_COUNT + signal);
}

/* ---- life cycle ---- */

void memlimit_set_limits(struct memlimit *ml, const struct memlimit_limits *l)
{
    atomic_store(&ml->soft_bytes, l->soft_bytes);
    atomic_store(&ml->hard_bytes, l->hard_bytes);
    atomic_store(&ml->check_interval_ms, l->check_interval_ms ? l->check_interval_ms : 100);
}

int memlimit_create(const struct memlimit_limits *l, unsigned n_workers, struct obs_registry *reg,
                    uint64_t (*measure)(void *arg), void *measure_arg, struct memlimit **out)
{
    if (l == NULL || out == NULL || n_workers == 0 ||
        (l->hard_bytes != 0 && l->soft_bytes > l->hard_bytes))
        return -EINVAL;
    struct memlimit *ml = calloc(1, sizeof(*ml));
    if (ml == NULL)
        return -ENOMEM;
    ml->statm_fd = -1;
    ml->n_workers = n_workers;
    int rc = -ENOMEM;
    if (posix_memalign((void **)&ml->workers, BASE_CACHE_LINE, n_workers * sizeof(*ml->workers)) !=
        0) {
        ml->workers = NULL;
        goto fail;
    }
    memset(ml->workers, 0, n_workers * sizeof(*ml->workers));
    if (measure == NULL) {
        ml->statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
        measure = measure_rss;
        measure_arg = &ml->statm_fd;
    }
    ml->measure = measure;
    ml->measure_arg = measure_arg;
    memlimit_set_limits(ml, l);
    ml->reg = reg;
    if (reg != NULL && (rc = register_metrics(ml)) < 0)
        goto fail;
    memlimit_check(ml);
    *out = ml;
    return 0;
fail:
    memlimit_destroy(ml);
    return rc;
}

int memlimit_start(struct memlimit *ml)
{
    pthread_t t;
    atomic_store(&ml->stop, false);
    int rc = pthread_create(&t, NULL, limiter_main, ml);
    if (rc != 0)
        return -rc;
    ml->thread = (unsigned long)t;
    ml->started = true;
    return 0;
}

void memlimit_stop(struct memlimit *ml)
{
    if (ml == NULL || !ml->started)
        return;
    atomic_store(&ml->stop, true);
    pthread_join((pthread_t)ml->thread, NULL);
    ml->started = false;
}

void memlimit_destroy(struct memlimit *ml)
{
    if (ml == NULL)
        return;
    memlimit_stop(ml);
    if (ml->statm_fd >= 0)
        close(ml->statm_fd);
    free(ml->workers);
    free(ml);
}
