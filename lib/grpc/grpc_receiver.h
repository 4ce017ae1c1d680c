/* SPDX-License-Identifier: Apache-2.0 */
/* The OTLP/gRPC receiver (port 4317), independent of the transport like
 * lib/receiver: bytes of one connection in, bytes to send out. In between:
 * HTTP/2 (nghttp2, server side), gRPC message framing, grpc-encoding
 * decompression, in-place OTLP validation, admission against the pipeline
 * and batching -- the same pipeline path as the OTLP/HTTP receiver. */
#ifndef OTLP_GRPC_RECEIVER_H
#define OTLP_GRPC_RECEIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"
#include "config/config.h"
#include "grpc/grpc_wire.h"

struct pipeline;
struct obs_registry;
struct memlimit;
struct grpc_receiver;
struct grpc_worker;
struct grpc_stream;
struct nghttp2_session;

/*
 * Why a request was answered with an error (or dropped without answer):
 * X(name, gRPC status or -1 for "no response", HTTP :status, RetryInfo in
 *   grpc-status-details-bin, metric reason label, message for the client).
 * OTLP spec: RESOURCE_EXHAUSTED is retried by clients only with RetryInfo,
 * so only the transient pressure cases carry it; UNAVAILABLE is always
 * retryable. PROTOCOL-HTTP2.md: a non-gRPC content-type gets HTTP 415.
 */
#define GRPC_ERRORS(X)                                                                             \
    X(UNAUTHENTICATED, 16, 200, 0, unauthenticated, "missing or invalid bearer token")             \
    X(HEADERS_TOO_LARGE, 8, 200, 0, headers_too_large, "request header list exceeds the limit")    \
    X(HTTP_METHOD, 12, 405, 0, method_not_allowed, "only POST is allowed")                         \
    X(CONTENT_TYPE, 13, 415, 0, unsupported_media_type,                                            \
      "content-type must be application/grpc or application/grpc+proto")                           \
    X(UNKNOWN_METHOD, 12, 200, 0, unknown_method,                                                  \
      "unknown method; use opentelemetry.proto.collector.{trace,metrics,logs}.v1."                 \
      "{Trace,Metrics,Logs}Service/Export")                                                        \
    X(ENCODING, 12, 200, 0, unsupported_encoding,                                                  \
      "grpc-encoding must be identity, gzip, deflate or zstd")                                     \
    X(BAD_TIMEOUT, 13, 200, 0, invalid_timeout, "malformed grpc-timeout")                          \
    X(SHUTDOWN, 14, 200, 1, shutting_down, "shutting down")                                        \
    X(BAD_FLAG, 13, 200, 0, bad_message_flag, "invalid message flags")                             \
    X(COMPRESSED_FLAG, 13, 200, 0, compressed_without_encoding,                                    \
      "compressed message flag set without grpc-encoding")                                         \
    X(TOO_LARGE, 8, 200, 0, message_too_large, "received message larger than max")                 \
    X(EXTRA_MESSAGE, 13, 200, 0, extra_message, "unary call with more than one request message")   \
    X(NO_MESSAGE, 13, 200, 0, missing_message, "request ended without a complete message")         \
    X(NO_MEMORY, 14, 200, 1, no_memory, "out of memory, retry later")                              \
    X(DECOMPRESS, 13, 200, 0, bad_compressed_message, "message could not be decompressed")         \
    X(BOMB, 8, 200, 0, decompressed_too_large, "decompressed message exceeds the limit")           \
    X(PROTOBUF, 3, 200, 0, invalid_protobuf, "invalid OTLP protobuf")                              \
    X(QUEUE_FULL, 8, 200, 1, queue_full, "export queue is full, retry later")                      \
    X(POOL, 14, 200, 1, pool_exhausted, "no batch buffer free, retry later")                       \
    X(MEMORY_LIMIT, 14, 200, 1, memory_limit, "memory limit reached, retry later")                 \
    X(BATCH_TOO_LARGE, 8, 200, 0, batch_too_large, "request does not fit into a batch")            \
    X(DEADLINE, 4, 200, 0, deadline_exceeded, "deadline exceeded before the request was handled")  \
    X(TIMEOUT, 4, 200, 0, request_timeout, "request not completed in time")                        \
    X(STREAM_RESET, -1, 0, 0, stream_reset, "stream reset before the request was complete")        \
    X(CONN_CLOSED, -1, 0, 0, connection_closed,                                                    \
      "connection closed before the request was complete")                                         \
    X(REFUSED, -1, 0, 0, too_many_streams, "stream refused: too many concurrent streams")          \
    X(HTTP2, -1, 0, 0, http2_protocol_error, "HTTP/2 protocol error, connection closed")           \
    X(FLOOD, -1, 0, 0, http2_flood, "HTTP/2 flood (pings, settings, resets), connection closed")

enum grpc_err {
#define X(n, g, h, r, l, m) GRPC_ERR_##n,
    GRPC_ERRORS(X)
#undef X
    GRPC_ERR_COUNT
};

/* grpc_conn_input() / _output() results */
#define GRPC_KEEP 0  /* keep the connection */
#define GRPC_CLOSE 1 /* write `out`, then close */

/* HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS we announce. */
#define GRPC_MAX_STREAMS 100
/* grpc_conn_input()/_output() stop pulling frames out of nghttp2 once `out`
 * holds this much; the rest stays queued (grpc_conn_want_write()). `out`
 * must be able to hold GRPC_OUT_HIGH_WATER + 32 KiB (or be unlimited). */
#define GRPC_OUT_HIGH_WATER (64 * 1024)

/* Per connection state. Embed it in the transport's connection struct. */
struct grpc_conn {
    struct grpc_worker *gw;
    struct nghttp2_session *session;
    struct grpc_stream *active; /* streams nghttp2 has open, newest first */
    unsigned n_active;
    unsigned n_receiving;    /* requests whose message is still arriving */
    uint64_t buffered_bytes; /* message bytes held by this connection's streams */
    uint64_t held_bytes;     /* received bytes not yet given back (WINDOW_UPDATE) */
    uint64_t conn_release;   /* bytes of closed streams to give back, connection level */
    bool stalled;            /* window credit withheld: the pipeline is full */
    bool goaway_sent;
    bool dead; /* fatal error: close without further output */
};

/*
 * Build the shared receiver: nghttp2 callbacks and options, limits,
 * pre-encoded resource attributes, pre-encoded grpc-status-details-bin
 * values and the metric families (registered in `reg`, one shard per
 * worker). Limits: cfg->receiver.grpc_max_recv_msg_bytes caps one gRPC message as
 * received, max_decompressed_bytes after grpc-encoding; max_header_bytes
 * and max_headers cap the request header list. When cfg->receiver.auth
 * names bearer tokens, a request without `authorization: Bearer <token>`
 * metadata is answered UNAUTHENTICATED (16).
 * Borrows cfg, p and reg for its lifetime. Returns 0, -EINVAL (also for a
 * malformed or empty token_file), -ENOMEM, -errno when token_file cannot be
 * read, or an obs_*_register() error (-EEXIST when called twice on one
 * registry).
 */
int grpc_receiver_create(const struct svc_config *cfg, struct pipeline *p, struct obs_registry *reg,
                         unsigned n_workers, struct grpc_receiver **out);
/* NULL is a no-op. Every worker and connection must be gone. */
void grpc_receiver_destroy(struct grpc_receiver *gr);

/* Per-worker scratch (decompression buffer and context, response buffer,
 * the pool of stream states shared by the worker's connections), used only
 * by worker `w` (also its metrics shard). Returns 0, -EINVAL, -ENOMEM. */
int grpc_worker_create(struct grpc_receiver *gr, unsigned w, struct grpc_worker **out);
/* NULL is a no-op. Every connection of the worker must be finished first. */
void grpc_worker_destroy(struct grpc_worker *gw);

/*
 * Answer new requests UNAVAILABLE (14, with RetryInfo) while the memory
 * limiter `ml` (borrowed; NULL: none) is above its soft limit, and reserve
 * each message buffer (its announced length) and the decompression buffer
 * against the hard limit before it is allocated. Call before the workers
 * start.
 */
void grpc_receiver_set_memlimit(struct grpc_receiver *gr, struct memlimit *ml);

/* As receiver_reload_auth() (SIGHUP): re-read the bearer tokens, switch
 * atomically, free the replaced set GRPC_TOKENS_RETIRED reloads later.
 * Returns 0 or tls_tokens_load()'s error (old tokens kept). */
#define GRPC_TOKENS_RETIRED 16
int grpc_receiver_reload_auth(struct grpc_receiver *gr, const struct receiver_auth_config *auth,
                              unsigned *count);

/* Answer new requests UNAVAILABLE and send GOAWAY on each connection's
 * next grpc_conn_input()/_output() (graceful stop). Any thread. */
void grpc_receiver_set_draining(struct grpc_receiver *gr, bool draining);

/*
 * Prepare a connection: an nghttp2 server session with our SETTINGS
 * (100 concurrent streams, header list limit, stream and connection
 * windows) queued as the server preface. Call grpc_conn_output() right
 * away to send it, or let the first grpc_conn_input() do so.
 * Returns 0, -ENOMEM.
 */
int grpc_conn_init(struct grpc_conn *c, struct grpc_worker *gw);
/* Release the session and every stream; requests still arriving are
 * counted as connection_closed. Safe on a zeroed or already finished conn. */
void grpc_conn_fini(struct grpc_conn *c);

/*
 * Feed bytes received on the connection (the first must be the HTTP/2
 * client preface). Complete requests are handled (acknowledged into a
 * batch or refused) before this returns, and everything nghttp2 wants to
 * send is appended to `out` (responses, SETTINGS/PING acks, WINDOW_UPDATE,
 * GOAWAY), up to GRPC_OUT_HIGH_WATER. Borrows data until return.
 * Returns GRPC_KEEP, or GRPC_CLOSE: write `out`, then close (protocol
 * error, flood, GOAWAY exchanged and nothing left in flight).
 */
int grpc_conn_input(struct grpc_conn *c, const uint8_t *data, size_t len, struct buf *out);

/*
 * Produce output without new input: frames nghttp2 still holds (after a
 * call stopped at the high-water mark), WINDOW_UPDATEs withheld while the
 * pipeline was full (the transport calls this periodically while
 * grpc_conn_stalled()), the GOAWAY when draining. Returns as
 * grpc_conn_input().
 */
int grpc_conn_output(struct grpc_conn *c, struct buf *out);

/* Is a request's message still arriving? (Like receiver_conn_busy(): the
 * transport applies idle_timeout_ms only when not busy; request timeouts
 * are per stream, see grpc_conn_deadline_ns().) */
static inline bool grpc_conn_busy(const struct grpc_conn *c)
{
    return c->n_receiving > 0;
}

/* Does nghttp2 have frames queued that did not fit into `out`? Call
 * grpc_conn_output() once `out` has been written. */
bool grpc_conn_want_write(const struct grpc_conn *c);

/* Is flow-control credit withheld because the pipeline is full? The client
 * may be blocked on it, so nothing arrives to trigger grpc_conn_input():
 * call grpc_conn_output() every few tens of ms while this is true. */
static inline bool grpc_conn_stalled(const struct grpc_conn *c)
{
    return c->stalled;
}

/* Nothing more will be read or written (GOAWAY exchanged and no stream in
 * flight, or a fatal error): close once `out` is written. */
bool grpc_conn_want_close(const struct grpc_conn *c);

/* Monotonic ns at which the earliest request in progress expires
 * (receiver.request_timeout_ms after its HEADERS, or its grpc-timeout when
 * sooner); 0 when no request is in progress. */
uint64_t grpc_conn_deadline_ns(const struct grpc_conn *c);

/* Answer every request in progress that has expired at `now_ns` with
 * DEADLINE_EXCEEDED (the stream is reset; other streams carry on).
 * Returns as grpc_conn_input(). */
int grpc_conn_expire(struct grpc_conn *c, uint64_t now_ns, struct buf *out);

/* Graceful close (idle timeout, stop): send GOAWAY; requests already
 * started complete, then grpc_conn_want_close() turns true. Returns as
 * grpc_conn_input(). */
int grpc_conn_shutdown(struct grpc_conn *c, struct buf *out);

/* The request path of signal `sig`: "/opentelemetry.proto.collector.
 * trace.v1.TraceService/Export" etc. */
const char *grpc_signal_path(int sig);

#endif
