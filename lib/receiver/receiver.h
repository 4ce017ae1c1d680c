/* SPDX-License-Identifier: Apache-2.0 */
/* The OTLP/HTTP receiver, independent of the transport: bytes of one
 * connection in, response bytes out. In between: HTTP/1.1 framing, routing,
 * decompression, JSON conversion, in-place OTLP validation, admission
 * against the pipeline and batching. lib/sock (kernel sockets) and later the
 * DPDK TCP stack both drive it through receiver_conn_input(). */
#ifndef OTLP_RECEIVER_H
#define OTLP_RECEIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"
#include "config/config.h"
#include "http/http.h"

struct pipeline;
struct obs_registry;
struct memlimit;
struct receiver;
struct receiver_worker;

/*
 * Request-level failures the receiver answers itself:
 * X(name, HTTP status, metric reason label, message for the client).
 */
#define RECEIVER_ERRORS(X)                                                                    \
    X(UNAUTHORIZED, 401, unauthorized, "missing or invalid bearer token")                     \
    X(NOT_FOUND, 404, not_found, "unknown path; use /v1/traces, /v1/metrics or /v1/logs")     \
    X(METHOD, 405, method_not_allowed, "only POST is allowed")                                \
    X(MEDIA_TYPE, 415, unsupported_media_type,                                                \
      "Content-Type must be application/x-protobuf or application/json")                      \
    X(ENCODING, 415, unsupported_encoding, "Content-Encoding must be gzip, zstd or identity")  \
    X(DECOMPRESS, 400, bad_compressed_body, "body could not be decompressed")                 \
    X(BOMB, 413, decompressed_too_large, "decompressed body exceeds the limit")               \
    X(JSON, 400, invalid_json, "invalid OTLP JSON")                                           \
    X(PROTOBUF, 400, invalid_protobuf, "invalid OTLP protobuf")                               \
    X(QUEUE_FULL, 429, queue_full, "export queue is full, retry later")                       \
    X(POOL, 503, pool_exhausted, "no batch buffer free, retry later")                         \
    X(MEMORY_LIMIT, 503, memory_limit, "memory limit reached, retry later")                   \
    X(BATCH_TOO_LARGE, 413, batch_too_large, "request does not fit into a batch")             \
    X(TIMEOUT, 408, request_timeout, "request not completed in time")                         \
    X(THROTTLED, 503, throttled,                                                              \
      "request held back by backpressure (queue or memory) too long, retry later")            \
    X(SHUTDOWN, 503, shutting_down, "shutting down")

enum receiver_err {
#define X(n, s, r, m) RECEIVER_ERR_##n,
    RECEIVER_ERRORS(X)
#undef X
    RECEIVER_ERR_COUNT
};

/* receiver_conn_input() results */
#define RECEIVER_KEEP 0   /* keep the connection */
#define RECEIVER_CLOSE 1  /* write `out`, then close */

/* Per connection state. Embed it in the transport's connection struct. */
struct receiver_conn {
    struct receiver_worker *rw;
    struct http_parser parser;
    struct buf body;            /* request body as received, limit max_body_bytes */
    uint64_t req_start_ns;      /* first byte of the request in progress, 0 when idle */
    uint64_t mem_held;          /* body bytes reserved with the memory limiter */
    bool discard;               /* memory limit: body read and dropped, then 503 */
    bool closing;               /* an error response was queued; ignore further input */
};

/*
 * Build the shared receiver: limits, pre-encoded resource attributes, the
 * bearer tokens of cfg->receiver.auth (when any is set, every request needs
 * `Authorization: Bearer <token>` or gets 401) and the metric families
 * (registered in `reg`, one shard per worker).
 * Borrows cfg, p and reg for its lifetime. Returns 0, -EINVAL (also for a
 * malformed or empty token_file, logged), -ENOMEM, or -errno when
 * token_file cannot be read.
 */
int receiver_create(const struct svc_config *cfg, struct pipeline *p, struct obs_registry *reg,
                    unsigned n_workers, struct receiver **out);
void receiver_destroy(struct receiver *r);

/* Per-worker scratch (decompression and conversion buffers, compressor
 * context), used only by worker `w`. Returns 0, -ENOMEM. */
int receiver_worker_create(struct receiver *r, unsigned w, struct receiver_worker **out);
void receiver_worker_destroy(struct receiver_worker *rw);

/*
 * Admit requests only while the memory limiter `ml` (borrowed; NULL: none)
 * is below its soft limit (else 503 memory_limit, Retry-After), and reserve
 * each body and decompression buffer against its hard limit before it is
 * allocated. Call before the workers start.
 */
void receiver_set_memlimit(struct receiver *r, struct memlimit *ml);
/* The limiter set above, NULL when none (the DPDK transport reads it). */
struct memlimit *receiver_memlimit(const struct receiver *r);

/*
 * Re-read the bearer tokens of `auth` (SIGHUP) and switch the workers to
 * them atomically; requests already past authentication are not affected.
 * On failure the old tokens stay. The replaced set is freed only after
 * RECEIVER_TOKENS_RETIRED further reloads (a worker may still be reading
 * it), or at destroy. Main thread only. Returns 0, or tls_tokens_load()'s
 * -EINVAL / -ENOMEM / -errno; *count (may be NULL) gets the token count.
 */
#define RECEIVER_TOKENS_RETIRED 16
int receiver_reload_auth(struct receiver *r, const struct receiver_auth_config *auth,
                         unsigned *count);

/* Refuse new requests with 503 from now on (graceful stop). Any thread. */
void receiver_set_draining(struct receiver *r, bool draining);

/* Prepare / release a connection's state. init returns 0, -ENOMEM. */
int receiver_conn_init(struct receiver_conn *c, struct receiver_worker *rw);
void receiver_conn_fini(struct receiver_conn *c);

/*
 * Feed bytes received on the connection. Every complete request is handled
 * (acknowledged into a batch or refused) and its response appended to `out`
 * (pipelined requests answer in order). Returns RECEIVER_KEEP or
 * RECEIVER_CLOSE (write out, then close). Borrows data until return.
 */
int receiver_conn_input(struct receiver_conn *c, const uint8_t *data, size_t len, struct buf *out);

/* Is a request partly received? (The transport applies request_timeout_ms
 * then, idle_timeout_ms otherwise.) */
static inline bool receiver_conn_busy(const struct receiver_conn *c)
{
    return c->req_start_ns != 0;
}

/* The request timed out: append a 408 and return RECEIVER_CLOSE. */
int receiver_conn_timeout(struct receiver_conn *c, struct buf *out);

/* The request timed out while the transport held it back (a receive window
 * closed for backpressure): not the client's fault, so append a 503 with
 * Retry-After, which OTLP clients retry (a 408 they would drop), and
 * return RECEIVER_CLOSE. */
int receiver_conn_throttle_timeout(struct receiver_conn *c, struct buf *out);

#endif
