/* SPDX-License-Identifier: Apache-2.0 */
/* What dpdk mode gives the layers above the transport: the pipeline's
 * worker -> exporter hand-off on SP/SC rte_rings and its batch pool in EAL
 * (hugepage) memory (a struct pipeline_env), and the export runner's loop on
 * its own EAL lcore, off the polling cores. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_ring.h>

#include "dpdk/dpdk_internal.h"
#include "export/export.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "pipeline/pipeline.h"

/* The rings the pipeline created, per worker, for /metrics. */
struct env_rings {
    struct rte_ring *ready; /* worker -> exporter */
    struct rte_ring *free;  /* exporter -> worker */
};

static struct env_rings env_rings[CONFIG_MAX_CORES];
/* EAL memory the batch bodies take: they all have one size. */
static _Atomic uint64_t env_pool_bodies, env_pool_body_bytes;
static _Atomic int export_lcore = -1; /* -1: the runner's pthread */

/* The EAL lcore of worker `w`: the w-th worker lcore, as dpdk_server_create()
 * assigns them. RTE_MAX_LCORE when there are fewer. */
static unsigned worker_lcore(unsigned w)
{
    unsigned lc, n = 0;
    RTE_LCORE_FOREACH_WORKER(lc) {
        if (n++ == w)
            return lc;
    }
    return RTE_MAX_LCORE;
}

/* NUMA socket of worker `w`'s lcore (any socket when unknown). */
static int worker_socket(unsigned w)
{
    unsigned lc = worker_lcore(w);
    return lc < RTE_MAX_LCORE ? (int)rte_lcore_to_socket_id(lc) : SOCKET_ID_ANY;
}

/* ---- pipeline_ring_ops on rte_ring ---- */

static int ring_create(void *arg, const char *name, unsigned worker, unsigned cap, void **out)
{
    (void)arg;
    /* One producer and one consumer thread per ring; EXACT_SZ: `cap`
     * usable slots without rounding the caller's count. */
    struct rte_ring *r = rte_ring_create(name, cap, worker_socket(worker),
                                         RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
    if (r == NULL) {
        log_error("cannot create rte_ring", "name=%s size=%u error=%s", name, cap,
                  rte_strerror(rte_errno));
        return rte_errno == EEXIST ? -EEXIST : -ENOMEM;
    }
    if (worker < CONFIG_MAX_CORES) {
        /* The pipeline creates the ready ring of a worker first. */
        struct env_rings *er = &env_rings[worker];
        *(er->ready == NULL ? &er->ready : &er->free) = r;
    }
    *out = r;
    return 0;
}

static void ring_destroy(void *arg, void *ring)
{
    (void)arg;
    for (unsigned w = 0; ring != NULL && w < CONFIG_MAX_CORES; w++) {
        if (env_rings[w].ready == ring)
            env_rings[w].ready = NULL;
        if (env_rings[w].free == ring)
            env_rings[w].free = NULL;
    }
    rte_ring_free(ring);
}

static int ring_enqueue(void *ring, void *obj)
{
    return rte_ring_sp_enqueue(ring, obj) == 0 ? 0 : -ENOBUFS;
}

static void *ring_dequeue(void *ring)
{
    void *obj;
    return rte_ring_sc_dequeue(ring, &obj) == 0 ? obj : NULL;
}

static unsigned ring_count(const void *ring)
{
    return rte_ring_count(ring);
}

static const struct pipeline_ring_ops dpdk_ring_ops = {
    .create = ring_create,
    .destroy = ring_destroy,
    .enqueue = ring_enqueue,
    .dequeue = ring_dequeue,
    .count = ring_count,
};

/* ---- pipeline_mem_ops on rte_malloc ---- */

static void *mem_alloc(void *arg, unsigned worker, size_t bytes)
{
    (void)arg;
    /* On hugepages the EAL backs the memory when it maps the pages for
     * this allocation, so the pool is committed now; on --no-huge
     * (anonymous memory, tests) pages are faulted in as batches first fill,
     * up to the same bound. */
    void *p = rte_malloc_socket("otlp_batch", bytes, RTE_CACHE_LINE_SIZE, worker_socket(worker));
    if (p != NULL) {
        env_pool_body_bytes = bytes;
        env_pool_bodies++;
    }
    return p;
}

static void mem_free(void *arg, void *storage)
{
    (void)arg;
    if (storage == NULL)
        return;
    env_pool_bodies--;
    rte_free(storage);
}

static const struct pipeline_mem_ops dpdk_mem_ops = {.alloc = mem_alloc, .free = mem_free};

static struct pipeline_env dpdk_env = {
    .name = "dpdk",
    .ring = &dpdk_ring_ops,
    .mem = &dpdk_mem_ops,
};

const struct pipeline_env *dpdk_pipeline_env(const struct svc_config *cfg)
{
    if (!dpdk_eal_ready() || cfg == NULL)
        return NULL;
    dpdk_env.mem_max_bytes = cfg->dataplane.dpdk.batch_pool_bytes;
    return &dpdk_env;
}

/* ---- the export lcore ---- */

static int export_lcore_main(void *arg)
{
    pthread_setname_np(pthread_self(), "otlp-export");
    return export_runner_run(arg);
}

static void export_lcore_join(void *arg)
{
    rte_eal_wait_lcore((unsigned)(uintptr_t)arg);
}

static double export_lcore_fn(void *arg)
{
    (void)arg;
    return export_lcore;
}

static double pool_bytes_fn(void *arg)
{
    (void)arg;
    return (double)env_pool_bodies * (double)env_pool_body_bytes;
}

/* arg: worker * 2, + 1 for its free ring. */
static double ring_count_fn(void *arg)
{
    uintptr_t a = (uintptr_t)arg;
    const struct env_rings *er = &env_rings[a / 2];
    const struct rte_ring *r = a % 2 ? er->free : er->ready;
    return r != NULL ? rte_ring_count(r) : 0;
}

/* otlp_dpdk_export_lcore, otlp_dpdk_batch_pool_bytes and the occupancy of
 * each worker's rings. */
static int register_env_metrics(struct obs_registry *reg, unsigned n_workers)
{
    int rc;
    if ((rc = obs_gauge_func_register(reg, "otlp_dpdk_export_lcore",
                                      "EAL lcore running the exporter (-1: a plain thread)", "",
                                      export_lcore_fn, NULL)) < 0 ||
        (rc = obs_gauge_func_register(reg, "otlp_dpdk_batch_pool_bytes",
                                      "EAL memory taken by the batch pool", "", pool_bytes_fn,
                                      NULL)) < 0)
        return rc;
    for (uintptr_t i = 0; i < 2u * BASE_MIN(n_workers, CONFIG_MAX_CORES); i++) {
        char lbl[48];
        snprintf(lbl, sizeof(lbl), "worker=\"%u\",ring=\"%s\"", (unsigned)(i / 2),
                 i % 2 ? "free" : "ready");
        if ((rc = obs_gauge_func_register(reg, "otlp_dpdk_ring_batches",
                                          "Batches in each worker's rte_ring (ready: towards "
                                          "the exporter, free: back to the worker)",
                                          lbl, ring_count_fn, (void *)i)) < 0)
            return rc;
    }
    return 0;
}

int dpdk_export_start(struct export_runner *r, unsigned n_workers, struct obs_registry *reg)
{
    int rc = register_env_metrics(reg, n_workers);
    if (rc < 0)
        return rc;
    unsigned lc = worker_lcore(n_workers);
    if (lc >= RTE_MAX_LCORE || rte_eal_get_lcore_state(lc) != WAIT) {
        log_warn("no EAL lcore for the exporter: it runs on a plain thread", "workers=%u hint=%s",
                 n_workers,
                 "give the EAL one lcore more than dataplane.workers (e.g. "
                 "--lcores with main, worker and export lcores) or let the service generate "
                 "the lcore list (no -l/--lcores in dataplane.dpdk.eal_args)");
        return export_runner_start(r);
    }
    if ((rc = rte_eal_remote_launch(export_lcore_main, r, lc)) != 0) {
        log_error("cannot launch the export lcore", "lcore=%u error=%s", lc, strerror(-rc));
        return -EBUSY;
    }
    char where[32];
    snprintf(where, sizeof(where), "lcore %u", lc);
    export_lcore = (int)lc;
    return export_runner_start_external(r, where, export_lcore_join, (void *)(uintptr_t)lc);
}
