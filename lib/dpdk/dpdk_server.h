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

/*
 * Initialise the EAL from cfg->dataplane.dpdk.eal_args (prepended with the
 * program name; --file-prefix otlp-<pid> added unless given; -l/--lcores
 * generated for `n_workers` worker lcores plus the main lcore unless given),
 * create the mbuf pool, configure and start the port with `n_workers`
 * queue pairs, and prepare one stack and connection table per worker
 * (registry shards 0..n_workers-1). The stacks listen on
 * cfg->receiver.http_port (OTLP/HTTP through `r`) and, when `gr` is not
 * NULL, on cfg->receiver.grpc_port (OTLP/gRPC through `gr`; NULL when
 * grpc_port is 0, as for sock_server_create()); the protocol of a
 * connection follows from its local port. Registers the port, lcore and stack
 * metrics in `reg`. Borrows everything passed in for the server's lifetime.
 * The EAL can be initialised once per process: a second create fails.
 * Returns 0 and *out, or
 *   -EINVAL  n_workers 0 or above CONFIG_MAX_CORES, bad EAL arguments, no
 *            such port, fewer worker lcores than n_workers, mbufs too few,
 *            `gr` given with grpc_port 0 or equal to http_port,
 *   -EALREADY  the EAL was initialised before,
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

/* Free everything and clean up the EAL. Stops first when still running.
 * Destroy it after the control plane (its metric functions read the
 * server). NULL is a no-op; a half-built server is fine. */
void dpdk_server_destroy(struct dpdk_server *s);

#endif
