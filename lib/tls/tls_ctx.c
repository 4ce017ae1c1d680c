/* SPDX-License-Identifier: Apache-2.0 */
/* The OpenSSL server context of the OTLP listeners: built from receiver.tls,
 * swapped atomically by tls_ctx_reload() (SIGHUP), handed to the workers
 * through a per-worker reference that is refreshed only after a reload. */
#include "tls/tls_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "base/base.h"
#include "obs/log.h"
#include "obs/metrics.h"

/* Certificates expiring sooner than this get a warning at load. */
#define TLS_EXPIRY_WARN_S (30 * 24 * 3600)
/* Longest chain accepted from a client: leaf, intermediates, root. */
#define TLS_VERIFY_DEPTH 8

static const char *const fail_labels[] = {
#define X(n, r, m) #r,
    TLS_HANDSHAKE_FAILURES(X)
#undef X
};

/* The most specific reason OpenSSL has queued, for a log line. */
static const char *ssl_error_text(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        return "unknown error";
    const char *r = ERR_reason_error_string(e);
    if (r != NULL)
        snprintf(buf, cap, "%s", r);
    else
        ERR_error_string_n(e, buf, cap);
    return buf;
}

int tls_check_key_permissions(const char *path, const char *what)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) == 0)
        return 0;
    log_warn("secret file is accessible by group or others; chmod 600 it",
             "file=%s what=%s mode=%04o", path, what, (unsigned)(st.st_mode & 07777));
    return 1;
}

/* RFC 7301: pick the one protocol the connection's listener speaks, or
 * refuse the handshake (no_application_protocol) when the client offers
 * ALPN without it. Clients that send no ALPN at all are served. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)arg;
    static const unsigned char h2[] = "\x02h2", h1[] = "\x08http/1.1";
    const struct tls_conn *c = SSL_get_app_data(ssl);
    const unsigned char *want = c != NULL && c->alpn == TLS_ALPN_H2 ? h2 : h1;
    for (unsigned i = 0; i < inlen;) {
        unsigned l = in[i];
        if (l == 0 || i + 1 + l > inlen)
            break;
        if (l == want[0] && memcmp(in + i + 1, want + 1, l) == 0) {
            *out = want + 1;
            *outlen = want[0];
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Expiry facts of the loaded certificate; warn when it is not (or soon
 * not) valid: clients would refuse it. */
static void inspect_cert(SSL_CTX *ctx, const char *path, int64_t *not_after, char *serial,
                         size_t serial_cap)
{
    *not_after = 0;
    snprintf(serial, serial_cap, "?");
    X509 *x = SSL_CTX_get0_certificate(ctx);
    if (x == NULL)
        return;
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    if (hex != NULL)
        snprintf(serial, serial_cap, "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    struct tm tm;
    const ASN1_TIME *na = X509_get0_notAfter(x);
    if (ASN1_TIME_to_tm(na, &tm) == 1)
        *not_after = (int64_t)timegm(&tm);
    time_t now = time(NULL);
    if (X509_cmp_time(X509_get0_notBefore(x), &now) > 0)
        log_warn("TLS certificate is not valid yet", "file=%s serial=%s", path, serial);
    if (*not_after != 0 && *not_after <= (int64_t)now)
        log_warn("TLS certificate has expired; clients will refuse it", "file=%s serial=%s",
                 path, serial);
    else if (*not_after != 0 && *not_after - (int64_t)now < TLS_EXPIRY_WARN_S)
        log_warn("TLS certificate expires soon", "file=%s serial=%s days_left=%" PRId64, path,
                 serial, (*not_after - (int64_t)now) / 86400);
    ERR_clear_error();
}

/* A complete server context from the files named in cfg, or NULL with the
 * reason logged. */
static SSL_CTX *build_ctx(const struct receiver_tls_config *cfg, int64_t *not_after, char *serial,
                          size_t serial_cap)
{
    char why[256];
    const char *step = "create context";
    const char *file = "";
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        goto fail;
    step = "set protocol versions";
    int min = cfg->min_version == TLS_MIN_VERSION_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (!SSL_CTX_set_min_proto_version(ctx, min) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
        goto fail;
    /* No renegotiation (a CPU DoS vector in 1.2), server cipher order, a
     * TCP close without close_notify is a plain EOF. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Partial writes from a buffer that may move between retries (the
     * connection's output buf grows); read/write buffers released while a
     * connection is idle, so 10k idle TLS connections stay small. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char sid_ctx[] = "otlp-service";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    if (cfg->ciphers != NULL && cfg->ciphers[0] != '\0') {
        step = "set ciphers";
        if (!SSL_CTX_set_cipher_list(ctx, cfg->ciphers))
            goto fail;
    }
    step = "load cert_file";
    file = cfg->cert_file;
    if (!SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file))
        goto fail;
    step = "load key_file";
    file = cfg->key_file;
    if (!SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM))
        goto fail;
    step = "match key_file with cert_file";
    if (!SSL_CTX_check_private_key(ctx))
        goto fail;
    if (cfg->client_auth != TLS_CLIENT_AUTH_NONE) {
        step = "load ca_file";
        file = cfg->ca_file;
        if (!SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL))
            goto fail;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
        if (names == NULL)
            goto fail;
        SSL_CTX_set_client_CA_list(ctx, names); /* takes ownership */
        int mode = SSL_VERIFY_PEER;
        if (cfg->client_auth == TLS_CLIENT_AUTH_REQUIRE)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
        SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    inspect_cert(ctx, cfg->cert_file, not_after, serial, serial_cap);
    ERR_clear_error();
    return ctx;
fail:
    log_error("cannot set up TLS", "step=%s file=%s error=%s", step, file,
              ssl_error_text(why, sizeof(why)));
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

static double reloads_ok_fn(void *arg)
{
    const struct tls_ctx *t = arg;
    return (double)atomic_load_explicit(&t->reloads_ok, memory_order_relaxed);
}

static double reloads_failed_fn(void *arg)
{
    const struct tls_ctx *t = arg;
    return (double)atomic_load_explicit(&t->reloads_failed, memory_order_relaxed);
}

static double not_after_fn(void *arg)
{
    const struct tls_ctx *t = arg;
    return (double)atomic_load_explicit(&t->not_after_s, memory_order_relaxed);
}

static int register_metrics(struct tls_ctx *t)
{
    static char store[TLS_FAIL_COUNT][48];
    const char *lbl[TLS_FAIL_COUNT];
    for (unsigned i = 0; i < TLS_FAIL_COUNT; i++) {
        snprintf(store[i], sizeof(store[i]), "reason=\"%s\"", fail_labels[i]);
        lbl[i] = store[i];
    }
    static const char *const conn_lbl[] = {"listener=\"http\"", "listener=\"grpc\""};
    int rc;
    if ((rc = obs_counter_register(t->reg, "otlp_tls_handshake_failures_total",
                                   "TLS handshakes that failed, by reason", lbl, TLS_FAIL_COUNT,
                                   &t->m_fail)) < 0 ||
        (rc = obs_counter_register(t->reg, "otlp_tls_connections_total",
                                   "TLS connections whose handshake completed, by listener",
                                   conn_lbl, 2, &t->m_conns)) < 0 ||
        (rc = obs_counter_func_register(t->reg, "otlp_tls_reloads_total",
                                        "Certificate reloads (SIGHUP), by result", "result=\"ok\"",
                                        reloads_ok_fn, t)) < 0 ||
        (rc = obs_counter_func_register(t->reg, "otlp_tls_reloads_total",
                                        "Certificate reloads (SIGHUP), by result",
                                        "result=\"error\"", reloads_failed_fn, t)) < 0 ||
        (rc = obs_gauge_func_register(t->reg, "otlp_tls_certificate_expiry_timestamp_seconds",
                                      "notAfter of the served certificate (Unix time)", "",
                                      not_after_fn, t)) < 0)
        return rc;
    return 0;
}

int tls_ctx_create(const struct receiver_tls_config *cfg, struct obs_registry *reg,
                   unsigned n_workers, struct tls_ctx **out)
{
    if (cfg == NULL || reg == NULL || out == NULL || n_workers == 0 || !cfg->enabled ||
        cfg->cert_file == NULL || cfg->key_file == NULL || cfg->cert_file[0] == '\0' ||
        cfg->key_file[0] == '\0' ||
        (cfg->client_auth != TLS_CLIENT_AUTH_NONE &&
         (cfg->ca_file == NULL || cfg->ca_file[0] == '\0')))
        return -EINVAL;
    struct tls_ctx *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->cfg = cfg;
    t->reg = reg;
    t->n_workers = n_workers;
    int rc = -ENOMEM;
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        free(t);
        return -ENOMEM;
    }
    t->lock_ok = true;
    tls_check_key_permissions(cfg->key_file, "receiver.tls.key_file");
    int64_t na;
    t->cur = build_ctx(cfg, &na, t->serial, sizeof(t->serial));
    if (t->cur == NULL) {
        rc = -EINVAL;
        goto fail;
    }
    atomic_store(&t->not_after_s, na);
    if ((rc = register_metrics(t)) < 0)
        goto fail;
    log_info("TLS enabled", "cert_file=%s serial=%s min_version=%s client_auth=%s",
             cfg->cert_file, t->serial, cfg->min_version == TLS_MIN_VERSION_1_3 ? "1.3" : "1.2",
             cfg->client_auth == TLS_CLIENT_AUTH_REQUIRE   ? "require"
             : cfg->client_auth == TLS_CLIENT_AUTH_REQUEST ? "request"
                                                           : "none");
    *out = t;
    return 0;
fail:
    tls_ctx_destroy(t);
    return rc;
}

void tls_ctx_destroy(struct tls_ctx *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->cur);
    if (t->lock_ok)
        pthread_mutex_destroy(&t->lock);
    free(t);
}

int tls_ctx_reload(struct tls_ctx *t)
{
    if (t == NULL)
        return -EINVAL;
    tls_check_key_permissions(t->cfg->key_file, "receiver.tls.key_file");
    int64_t na;
    char serial[TLS_SERIAL_MAX];
    SSL_CTX *n = build_ctx(t->cfg, &na, serial, sizeof(serial));
    if (n == NULL) {
        atomic_fetch_add(&t->reloads_failed, 1);
        log_error("TLS reload failed; the current certificates stay in use", "serial=%s",
                  t->serial);
        return -EINVAL;
    }
    pthread_mutex_lock(&t->lock);
    SSL_CTX *old = t->cur;
    t->cur = n;
    memcpy(t->serial, serial, sizeof(serial));
    atomic_fetch_add_explicit(&t->gen, 1, memory_order_release);
    pthread_mutex_unlock(&t->lock);
    /* Workers and open connections hold their own references to `old`. */
    SSL_CTX_free(old);
    atomic_store(&t->not_after_s, na);
    atomic_fetch_add(&t->reloads_ok, 1);
    log_info("TLS certificates reloaded", "cert_file=%s serial=%s not_after=%" PRId64,
             t->cfg->cert_file, serial, na);
    return 0;
}

uint64_t tls_ctx_generation(const struct tls_ctx *t)
{
    return atomic_load_explicit(&((struct tls_ctx *)t)->gen, memory_order_acquire);
}

int tls_ctx_cert_serial(struct tls_ctx *t, char *out, size_t cap)
{
    pthread_mutex_lock(&t->lock);
    int n = snprintf(out, cap, "%s", t->serial);
    pthread_mutex_unlock(&t->lock);
    return n < 0 || (size_t)n >= cap ? -ENOSPC : 0;
}

/* ---- per worker ---- */

int tls_worker_create(struct tls_ctx *t, unsigned w, struct tls_worker **out)
{
    if (t == NULL || out == NULL || w >= t->n_workers)
        return -EINVAL;
    struct tls_worker *tw = calloc(1, sizeof(*tw));
    if (tw == NULL)
        return -ENOMEM;
    tw->t = t;
    tw->w = w;
    tls_worker_refresh(tw);
    *out = tw;
    return 0;
}

void tls_worker_destroy(struct tls_worker *tw)
{
    if (tw == NULL)
        return;
    SSL_CTX_free(tw->ctx);
    free(tw);
}

void tls_worker_refresh(struct tls_worker *tw)
{
    struct tls_ctx *t = tw->t;
    if (tw->ctx != NULL && atomic_load_explicit(&t->gen, memory_order_acquire) == tw->gen)
        return;
    /* Once per reload per worker: take a reference to the new context. */
    pthread_mutex_lock(&t->lock);
    SSL_CTX *n = t->cur;
    SSL_CTX_up_ref(n);
    uint64_t gen = atomic_load_explicit(&t->gen, memory_order_relaxed);
    pthread_mutex_unlock(&t->lock);
    SSL_CTX_free(tw->ctx);
    tw->ctx = n;
    tw->gen = gen;
}

void tls_count_failure(struct tls_worker *tw, enum tls_fail f, const char *detail)
{
    struct tls_ctx *t = tw->t;
    obs_counter_inc(t->reg, tw->w, t->m_fail + (uint32_t)f);
    if (log_ratelimit(&tw->rl, 1000, 5))
        log_warn("TLS handshake failed", "worker=%u reason=%s detail=%s suppressed=%u", tw->w,
                 fail_labels[f], detail, tw->rl.suppressed);
}

void tls_count_established(struct tls_worker *tw, enum tls_alpn alpn)
{
    struct tls_ctx *t = tw->t;
    obs_counter_inc(t->reg, tw->w, t->m_conns + (uint32_t)alpn);
}
