/* SPDX-License-Identifier: Apache-2.0 */
/* TLS and authentication for the OTLP listeners: the OpenSSL server context
 * (certificates, client verification, ALPN, reload on SIGHUP), the
 * per-connection TLS layer the socket transport reads and writes through
 * (between the kernel socket and lib/receiver / lib/grpc), and the bearer
 * tokens both receivers check. No OpenSSL types leak out of this header. */
#ifndef OTLP_TLS_H
#define OTLP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"

struct obs_registry;
struct tls_ctx;
struct tls_worker;
struct tls_tokens;
struct ssl_st;

/*
 * Why a handshake failed: X(name, metric reason label, message for the log).
 * Each failure increments otlp_tls_handshake_failures_total{reason}.
 */
#define TLS_HANDSHAKE_FAILURES(X)                                                                  \
    X(TIMEOUT, timeout, "handshake not complete within receiver.request_timeout_ms")             \
    X(CLOSED, closed, "peer closed the connection during the handshake")                          \
    X(NOT_TLS, not_tls, "plain HTTP or other non-TLS bytes on a TLS port")                        \
    X(VERSION, protocol_version, "no TLS version in common (see receiver.tls.min_version)")      \
    X(CIPHER, no_shared_cipher, "no cipher suite in common")                                      \
    X(ALPN, no_application_protocol, "client offered no ALPN protocol this port speaks")          \
    X(NO_CLIENT_CERT, client_cert_missing, "client sent no certificate (client_auth: require)")  \
    X(BAD_CLIENT_CERT, client_cert_invalid, "client certificate did not verify")                 \
    X(PEER_ALERT, peer_alert, "peer aborted with an alert (does it trust our certificate?)")     \
    X(OTHER, other, "TLS protocol error")

enum tls_fail {
#define X(n, r, m) TLS_FAIL_##n,
    TLS_HANDSHAKE_FAILURES(X)
#undef X
    TLS_FAIL_COUNT
};

/* The application protocol a listener speaks, offered in ALPN (RFC 7301). */
enum tls_alpn {
    TLS_ALPN_HTTP1 = 0, /* "http/1.1": OTLP/HTTP port */
    TLS_ALPN_H2 = 1,    /* "h2": OTLP/gRPC port */
};

/* One connection's TLS state. Embed it in the transport's connection
 * struct (its address must stay put while the connection lives); all
 * fields are private except `ssl`, which is NULL for a plain connection. */
struct tls_conn {
    struct ssl_st *ssl;
    struct tls_worker *tw;
    uint8_t alpn;     /* enum tls_alpn */
    bool established; /* handshake complete */
    bool want_write;  /* the last call stopped because the socket is not writable */
    bool peer_closed; /* close_notify (or EOF) seen */
    bool failed;      /* fatal error: no close_notify, no more I/O */
    bool shut;        /* close_notify sent */
    bool plain_http;  /* the failed handshake began like a plain HTTP request */
    bool mem;         /* memory BIOs (tls_conn_init_mem) */
};

/* ---- server context ---- */

/*
 * Build the server context from `cfg` (receiver.tls, must be enabled):
 * certificate chain and key (checked against each other), TLS 1.2+ or 1.3
 * only, optional TLS 1.2 cipher list, client verification against ca_file
 * per client_auth, ALPN, and the metric families (registered in `reg`; the
 * per-connection counters use shard = worker index, so `reg` needs at least
 * n_workers shards). Logs a warning when key_file is readable by group or
 * others, and when the certificate has expired or expires within 30 days.
 * Borrows cfg and reg for its lifetime (tls_ctx_reload() rereads cfg's paths).
 * Returns 0; -EINVAL when cfg is not usable or a file cannot be read or
 * parsed, or the key does not match (the reason is logged); -ENOMEM; an
 * obs_*_register() error.
 */
int tls_ctx_create(const struct receiver_tls_config *cfg, struct obs_registry *reg,
                   unsigned n_workers, struct tls_ctx **out);

/* NULL is a no-op. Every tls_worker must be destroyed first; connections
 * still open keep their own reference to the OpenSSL context. */
void tls_ctx_destroy(struct tls_ctx *t);

/*
 * Reread cert_file, key_file and ca_file and swap the new context in
 * atomically: connections accepted afterwards use it, connections already
 * open keep theirs. Call from one thread at a time (the main thread on
 * SIGHUP); workers keep running. On failure the old context stays in use.
 * Returns 0; -EINVAL (files bad, reason logged); -ENOMEM.
 */
int tls_ctx_reload(struct tls_ctx *t);

/* Incremented by every successful tls_ctx_reload() (0 after create). */
uint64_t tls_ctx_generation(const struct tls_ctx *t);

/* The current server certificate's serial number as upper-case hex (as
 * `openssl x509 -serial` prints it) into out[cap]. Returns 0, -ENOSPC. */
int tls_ctx_cert_serial(struct tls_ctx *t, char *out, size_t cap);

/*
 * Warn (one log line) when `path` -- a private key or a token file -- is
 * readable or writable by group or others (looser than 0600).
 * Returns 0 when the permissions are fine, 1 when a warning was logged, or
 * -errno when the file cannot be stat'ed.
 */
int tls_check_key_permissions(const char *path, const char *what);

/* ---- per worker ---- */

/* A worker's handle on the context: its metric shard `w` and its own
 * reference to the current OpenSSL context, refreshed after a reload on the
 * next accepted connection (no lock on the connection path otherwise).
 * Used only by worker `w`. Returns 0, -EINVAL, -ENOMEM. */
int tls_worker_create(struct tls_ctx *t, unsigned w, struct tls_worker **out);
/* NULL is a no-op. Every connection of the worker must be finished first. */
void tls_worker_destroy(struct tls_worker *tw);

/* ---- per connection ---- */

/*
 * Start server-side TLS on accepted, non-blocking socket `fd` (borrowed:
 * the caller still closes it). `alpn` is what the listener speaks.
 * Returns 0, -ENOMEM (nothing to release then).
 */
int tls_conn_init(struct tls_conn *c, struct tls_worker *tw, int fd, enum tls_alpn alpn);

/*
 * Advance the handshake. Returns 0 when it is complete (counted in
 * otlp_tls_connections_total), -EAGAIN when it waits for the socket
 * (readable, or writable when c->want_write), -EPROTO when it failed
 * (counted with its reason, logged rate-limited): close the connection.
 */
int tls_conn_handshake(struct tls_conn *c);

/* The body a transport may send, unencrypted, to a client whose handshake
 * failed with c->plain_http (an http:// URL pointed at the TLS port), so it
 * sees why instead of a reset: a complete HTTP/1.1 400 response. */
extern const char tls_plain_http_response[];

/* The handshake did not finish in time: count it (reason timeout). */
void tls_conn_handshake_timeout(struct tls_conn *c);

/*
 * Read and decrypt up to `len` bytes into buf (several records when
 * available). Returns the number of bytes (> 0); 0 when the peer closed
 * (close_notify or TCP EOF) and nothing is left; -EAGAIN when nothing is
 * readable now (c->want_write: retry once the socket is writable);
 * -EIO on a fatal error (close the connection).
 * After a positive return, c->peer_closed may say that the peer closed
 * after the data.
 */
ssize_t tls_conn_read(struct tls_conn *c, uint8_t *buf, size_t len);

/* Bytes decrypted and buffered inside OpenSSL that no socket event will
 * announce: call tls_conn_read() again while this is true. */
bool tls_conn_pending(const struct tls_conn *c);

/*
 * Encrypt and send bytes from buf (borrowed until return). Returns the
 * number written (> 0, possibly fewer than len); -EAGAIN when the socket is
 * full (c->want_write) or, rarely, when OpenSSL must read first
 * (!c->want_write); -EPIPE on a fatal error. After -EAGAIN call again with
 * the same bytes at the same offset (more may follow them).
 */
ssize_t tls_conn_write(struct tls_conn *c, const uint8_t *buf, size_t len);

/* ---- per connection, without a socket (memory BIOs) ----
 * For a transport that owns the TCP bytes itself (lib/dpdk over the
 * userspace stack): the transport hands received ciphertext in with
 * tls_conn_feed() and sends what tls_conn_take_output() gives out after
 * every call that can produce records (handshake, write, shutdown). The
 * handshake, read and write functions above work unchanged; -EAGAIN then
 * means "feed more ciphertext" (c->want_write is never set: the output
 * BIO has no limit). */

/* Start server-side TLS over memory BIOs. Returns 0, -ENOMEM (nothing to
 * release then). */
int tls_conn_init_mem(struct tls_conn *c, struct tls_worker *tw, enum tls_alpn alpn);

/* Append `len` bytes received from the peer (borrowed until return).
 * Returns 0, -ENOMEM, -EINVAL (not a memory-BIO connection). */
int tls_conn_feed(struct tls_conn *c, const uint8_t *data, size_t len);

/* Bytes of records waiting to be sent. */
size_t tls_conn_output_pending(const struct tls_conn *c);

/* Move up to `cap` bytes of waiting records into buf. Returns the count
 * (0: nothing waits). */
size_t tls_conn_take_output(struct tls_conn *c, uint8_t *buf, size_t cap);

/* Send close_notify once, best effort (never blocks), when the handshake
 * completed and no fatal error happened. The socket stays open. */
void tls_conn_shutdown(struct tls_conn *c);

/* tls_conn_shutdown(), then release the connection's TLS state; c->ssl is
 * NULL afterwards. Safe on a zeroed or already finished tls_conn. */
void tls_conn_fini(struct tls_conn *c);

/* ---- bearer tokens ---- */

/*
 * Load the accepted bearer tokens: cfg->bearer_tokens (comma-separated)
 * and the lines of cfg->token_file (blank and '#' lines skipped). Only a
 * SHA-256 of each token is kept. *out is NULL when no token is configured
 * (authentication off). Never logs a token; warns when token_file is
 * readable by group or others.
 * Returns 0; -EINVAL (a malformed token, or an empty token_file); -errno when
 * token_file cannot be read; -ENOMEM.
 */
int tls_tokens_load(const struct receiver_auth_config *cfg, struct tls_tokens **out);
void tls_tokens_destroy(struct tls_tokens *t);
/* Number of tokens loaded. */
unsigned tls_tokens_count(const struct tls_tokens *t);

/*
 * Does an Authorization header value `v` (len bytes, not NUL-terminated,
 * surrounding blanks allowed) carry "Bearer <one of the tokens>"? The scheme
 * is case-insensitive (RFC 9110 11.1). The time taken does not depend on
 * which token matched, or on how much of one did: the presented token is
 * hashed and compared with every stored hash in constant time.
 */
bool tls_tokens_check(const struct tls_tokens *t, const char *v, size_t len);

/* Constant-time equality of two byte strings: the time depends only on the
 * lengths, never on where they differ. Different lengths are unequal. */
bool tls_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
