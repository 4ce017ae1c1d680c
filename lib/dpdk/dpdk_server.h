/* SPDX-License-Identifier: Apache-2.0 */
/* DPDK transport: the EAL, one port with one rx/tx queue pair per worker
 * lcore, and per lcore the userspace TCP/IP stack (lib/net) driving the
 * transport-independent receiver (lib/receiver). Same shape as lib/sock:
 * the receiver, pipeline and exporters above it are shared. */
#ifndef OTLP_DPDK_SERVER_H
#define OTLP_DPDK_SERVER_H

#include <stdint.h>

#include "config/config.h"

struct receiver;
struct grpc_receiver;
struct pipeline;
struct obs_registry;
struct dpdk_server;
struct tls_ctx;

struct pipeline_env;
struct export_runner;

/*
 * Initialise the EAL from cfg->dataplane.dpdk.eal_args (prepended with the
 * program name; --file-prefix otlp-<pid> added unless given; -l/--lcores
 * generated unless given: the main lcore, `n_workers` worker lcores and one
 * export lcore). First thing in dpdk mode: the pipeline's rings and batch
 * pool (dpdk_pipeline_env) live in EAL memory. The EAL can be initialised
 * once per process. Returns 0; -EINVAL (bad arguments, n_workers 0 or
 * above CONFIG_MAX_CORES, rte_eal_init failed); -EALREADY; -ENOMEM.
 */
int dpdk_eal_start(const struct svc_config *cfg, unsigned n_workers);

/* rte_eal_cleanup(): the very last step, after the server, the exporter and
 * the pipeline are destroyed. A no-op without dpdk_eal_start(). */
void dpdk_eal_stop(void);

/*
 * The pipeline environment of dpdk mode (for pipeline_create_env()): SP/SC
 * rte_rings on the socket of the worker lcore that fills them, and batch
 * bodies allocated once with rte_malloc_socket() from EAL (hugepage)
 * memory, at most cfg->dataplane.dpdk.batch_pool_bytes of them. NULL
 * before dpdk_eal_start(). Static storage, one per process.
 */
const struct pipeline_env *dpdk_pipeline_env(const struct svc_config *cfg);

/*
 * Run the export runner's loop on its own EAL lcore: the first worker
 * lcore after the `n_workers` data-plane ones (rte_eal_remote_launch;
 * export_runner_stop() waits for it with rte_eal_wait_lcore). Without a
 * spare lcore it starts the runner's pthread instead and logs a warning.
 * Registers otlp_dpdk_export_lcore on `reg` (the lcore id, -1 on a
 * pthread). Returns 0, what export_runner_start() returns, -ENOTSUP
 * (built without libdpdk).
 */
int dpdk_export_start(struct export_runner *r, unsigned n_workers, struct obs_registry *reg);

/*
 * Create the mbuf pool, configure and start the port with `n_workers`
 * queue pairs, and prepare one stack and connection table per worker
 * (registry shards 0..n_workers-1). The stacks listen on
 * cfg->receiver.http_port (OTLP/HTTP through `r`) and, when `gr` is not
 * NULL, on cfg->receiver.grpc_port (OTLP/gRPC through `gr`; NULL when
 * grpc_port is 0, as for sock_server_create()); the protocol of a
 * connection follows from its local port. Registers the port, lcore and stack
 * metrics in `reg`. Borrows everything passed in for the server's lifetime.
 * dpdk_eal_start() must have run.
 * Returns 0 and *out, or
 *   -EINVAL  n_workers 0 or above CONFIG_MAX_CORES, EAL not started, no
 *            such port, fewer worker lcores than n_workers, mbufs too few,
 *            `gr` given with grpc_port 0 or equal to http_port,
 *   -ENOMEM  allocation failed (pool, stacks, tables),
 *   -EIO     the port refused its configuration or did not start.
 * On failure nothing is left running (the EAL stays initialised).
 */
int dpdk_server_create(const struct svc_config *cfg, struct receiver *r, struct grpc_receiver *gr,
                       struct pipeline *p, struct obs_registry *reg, unsigned n_workers,
                       struct dpdk_server **out);

/*
 * Serve both listeners over TLS with `tls` (lib/tls over memory BIOs: the
 * records travel through the userspace TCP stack): call after
 * dpdk_server_create() and before dpdk_server_start(). Borrows tls until
 * dpdk_server_destroy(); tls_ctx_reload() may run meanwhile from another
 * thread (new connections pick up the new certificates).
 * Returns 0, -EINVAL (NULL, set twice, or already started), -ENOMEM.
 */
int dpdk_server_set_tls(struct dpdk_server *s, struct tls_ctx *tls);

/* Launch the worker loops on their lcores. Returns 0, or -EBUSY when an
 * lcore is not free (nothing keeps running then). */
int dpdk_server_start(struct dpdk_server *s);

/*
 * Graceful stop: refuse new connections, close idle ones, let requests in
 * progress finish until `deadline_ms` (monotonic, base_now_ms()), flush
 * every open batch into the export queue, wait for the lcores, then stop
 * and close the port. Metrics keep their last values afterwards. NULL is a
 * no-op; calling it twice is fine.
 */
void dpdk_server_stop(struct dpdk_server *s, uint64_t deadline_ms);

/* Free everything (dpdk_eal_stop() cleans up the EAL). Stops first when
 * still running.
 * Destroy it after the control plane (its metric functions read the
 * server). NULL is a no-op; a half-built server is fine. */
void dpdk_server_destroy(struct dpdk_server *s);

#endif
