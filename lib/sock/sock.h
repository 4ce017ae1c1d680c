/* SPDX-License-Identifier: Apache-2.0 */
/* Kernel-socket transport: one pinned worker thread per core, each with its
 * own SO_REUSEPORT listener, epoll set and connection table, driving the
 * transport-independent receiver. Plus the control-plane server on 8080
 * (health probes and /metrics), which always runs over kernel sockets. */
#ifndef OTLP_SOCK_H
#define OTLP_SOCK_H

#include <stdint.h>

#include "config/config.h"

struct receiver;
struct grpc_receiver;
struct pipeline;
struct obs_registry;
struct sock_server;
struct control_server;
struct tls_ctx;

/*
 * Prepare `n_workers` workers (registry shards 0..n_workers-1) serving
 * OTLP/HTTP on cfg->receiver.host:http_port and, when `gr` is not NULL,
 * OTLP/gRPC on grpc_port. Borrows everything passed in.
 * Returns 0, -EINVAL, -ENOMEM.
 */
int sock_server_create(const struct svc_config *cfg, struct receiver *r, struct grpc_receiver *gr,
                       struct pipeline *p, struct obs_registry *reg, unsigned n_workers,
                       struct sock_server **out);

/*
 * Serve both listeners over TLS with `tls` (lib/tls): call after
 * sock_server_create() and before sock_server_start(). Borrows tls until
 * sock_server_destroy(); tls_ctx_reload() may run meanwhile from another
 * thread (new connections pick up the new certificates). The process must
 * ignore SIGPIPE (OpenSSL writes with write(2)).
 * Returns 0, -EINVAL (NULL, or set twice), -ENOMEM.
 */
int sock_server_set_tls(struct sock_server *s, struct tls_ctx *tls);

/* Bind the listeners and start the worker threads. Returns 0 or -errno of
 * the failing bind/listen/thread start (nothing keeps running then). */
int sock_server_start(struct sock_server *s);

/*
 * Graceful stop: stop accepting, close idle connections, let requests in
 * progress finish until `deadline_ms` (monotonic), flush every open batch
 * into the export queue, join the workers.
 */
void sock_server_stop(struct sock_server *s, uint64_t deadline_ms);
void sock_server_destroy(struct sock_server *s);

/* The bound ports (useful when configured as 0); gRPC: 0 when not served. */
uint16_t sock_server_port(const struct sock_server *s);
uint16_t sock_server_grpc_port(const struct sock_server *s);

/*
 * Control plane: GET /health/live, /health/ready, /health/startup, /metrics
 * on cfg->control.host:port, one thread, registry shard `shard`.
 * Returns 0, -errno.
 */
int control_server_create(const struct svc_config *cfg, struct obs_registry *reg, unsigned shard,
                          struct control_server **out);
int control_server_start(struct control_server *c);
void control_server_stop(struct control_server *c);
void control_server_destroy(struct control_server *c);
uint16_t control_server_port(const struct control_server *c);

/* Open a listening TCP socket (SO_REUSEADDR, optionally SO_REUSEPORT,
 * non-blocking). Returns the fd or -errno. */
int sock_listen(const char *host, uint16_t port, int backlog, bool reuseport);

#endif
