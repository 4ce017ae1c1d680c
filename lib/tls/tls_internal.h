/* SPDX-License-Identifier: Apache-2.0 */
/* Private to lib/tls: the context and worker structs shared by tls_ctx.c
 * (context, reload, metrics) and tls_conn.c (per-connection I/O). */
#ifndef OTLP_TLS_INTERNAL_H
#define OTLP_TLS_INTERNAL_H

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>

#include <openssl/ssl.h>

#include "obs/log.h"
#include "tls/tls.h"

#define TLS_SERIAL_MAX 96 /* hex of a serial number (RFC 5280: at most 20 octets) */

struct tls_ctx {
    const struct receiver_tls_config *cfg;
    struct obs_registry *reg;
    unsigned n_workers;
    pthread_mutex_t lock; /* guards cur and serial; taken on reload and once per
                           * reload per worker, never per connection */
    bool lock_ok;
    SSL_CTX *cur;
    char serial[TLS_SERIAL_MAX];
    _Atomic uint64_t gen; /* bumped when cur changes */
    _Atomic int64_t not_after_s;
    _Atomic uint64_t reloads_ok, reloads_failed;
    uint32_t m_fail;  /* + enum tls_fail */
    uint32_t m_conns; /* + enum tls_alpn */
};

struct tls_worker {
    struct tls_ctx *t;
    unsigned w;   /* metric shard */
    SSL_CTX *ctx; /* our reference to the context of generation `gen` */
    uint64_t gen;
    struct log_ratelimit rl; /* handshake failure log lines */
};

/* Take a reference to the current context if a reload happened. */
void tls_worker_refresh(struct tls_worker *tw);
/* Count (and log, rate-limited) a failed handshake. */
void tls_count_failure(struct tls_worker *tw, enum tls_fail f, const char *detail);
/* Count a completed handshake. */
void tls_count_established(struct tls_worker *tw, enum tls_alpn alpn);

#endif
