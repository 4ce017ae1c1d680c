/* SPDX-License-Identifier: Apache-2.0 */
/* Per-connection TLS between a non-blocking kernel socket (or, for the
 * userspace TCP stack of lib/dpdk, a pair of memory BIOs) and the receivers:
 * handshake, read, write and close_notify, with OpenSSL's WANT_READ /
 * WANT_WRITE turned into -EAGAIN plus the direction the transport must wait
 * for, and handshake failures counted by reason. */
#include "tls/tls_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "base/base.h"

#define TLS_PLAIN_MSG "this port speaks TLS (receiver.tls): use https://\n"
const char tls_plain_http_response[] = "HTTP/1.1 400 Bad Request\r\n"
                                       "Content-Type: text/plain\r\n"
                                       "Content-Length: 50\r\n"
                                       "Connection: close\r\n\r\n" TLS_PLAIN_MSG;
_Static_assert(sizeof(TLS_PLAIN_MSG) - 1 == 50, "Content-Length of tls_plain_http_response");

int tls_conn_init(struct tls_conn *c, struct tls_worker *tw, int fd, enum tls_alpn alpn)
{
    memset(c, 0, sizeof(*c));
    tls_worker_refresh(tw);
    ERR_clear_error();
    SSL *ssl = SSL_new(tw->ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, fd)) { /* the socket BIO does not close fd */
        SSL_free(ssl);
        ERR_clear_error();
        return -ENOMEM;
    }
    SSL_set_accept_state(ssl);
    SSL_set_app_data(ssl, c); /* for the ALPN callback */
    c->ssl = ssl;
    c->tw = tw;
    c->alpn = (uint8_t)alpn;
    return 0;
}

int tls_conn_init_mem(struct tls_conn *c, struct tls_worker *tw, enum tls_alpn alpn)
{
    memset(c, 0, sizeof(*c));
    tls_worker_refresh(tw);
    ERR_clear_error();
    SSL *ssl = SSL_new(tw->ctx);
    BIO *rb = BIO_new(BIO_s_mem());
    BIO *wb = BIO_new(BIO_s_mem());
    if (ssl == NULL || rb == NULL || wb == NULL) {
        SSL_free(ssl);
        BIO_free(rb);
        BIO_free(wb);
        ERR_clear_error();
        return -ENOMEM;
    }
    BIO_set_mem_eof_return(rb, -1); /* empty means "retry", not EOF */
    SSL_set_bio(ssl, rb, wb);      /* the SSL owns both from here */
    SSL_set_accept_state(ssl);
    SSL_set_app_data(ssl, c);
    c->ssl = ssl;
    c->tw = tw;
    c->alpn = (uint8_t)alpn;
    c->mem = true;
    return 0;
}

int tls_conn_feed(struct tls_conn *c, const uint8_t *data, size_t len)
{
    if (c->ssl == NULL || !c->mem)
        return -EINVAL;
    while (len > 0) {
        int n = BIO_write(SSL_get_rbio(c->ssl), data, (int)BASE_MIN(len, (size_t)INT_MAX));
        if (n <= 0) {
            ERR_clear_error();
            return -ENOMEM;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

size_t tls_conn_output_pending(const struct tls_conn *c)
{
    if (c->ssl == NULL || !c->mem)
        return 0;
    return BIO_ctrl_pending(SSL_get_wbio(c->ssl));
}

size_t tls_conn_take_output(struct tls_conn *c, uint8_t *buf, size_t cap)
{
    if (c->ssl == NULL || !c->mem || cap == 0)
        return 0;
    int n = BIO_read(SSL_get_wbio(c->ssl), buf, (int)BASE_MIN(cap, (size_t)INT_MAX));
    return n > 0 ? (size_t)n : 0;
}

/* Map a failed handshake to its reason; `detail` gets OpenSSL's words (or
 * the certificate verification error) for the log. */
static enum tls_fail classify(struct tls_conn *c, int err, int saved_errno, char *detail,
                              size_t cap)
{
    if (err == SSL_ERROR_ZERO_RETURN) {
        snprintf(detail, cap, "EOF");
        return TLS_FAIL_CLOSED;
    }
    unsigned long e = ERR_peek_error();
    if (e == 0) {
        snprintf(detail, cap, "%s", saved_errno != 0 ? strerror(saved_errno) : "EOF");
        return err == SSL_ERROR_SYSCALL ? TLS_FAIL_CLOSED : TLS_FAIL_OTHER;
    }
    const char *rs = ERR_reason_error_string(e);
    snprintf(detail, cap, "%s", rs != NULL ? rs : "unknown");
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return TLS_FAIL_OTHER;
    int reason = ERR_GET_REASON(e);
    switch (reason) {
    case SSL_R_HTTP_REQUEST:
        c->plain_http = true;
        return TLS_FAIL_NOT_TLS;
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
        return TLS_FAIL_NOT_TLS;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
        return TLS_FAIL_VERSION;
    case SSL_R_NO_SHARED_CIPHER:
        return TLS_FAIL_CIPHER;
    case SSL_R_NO_APPLICATION_PROTOCOL:
        return TLS_FAIL_ALPN;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return TLS_FAIL_NO_CLIENT_CERT;
    case SSL_R_CERTIFICATE_VERIFY_FAILED: {
        long v = SSL_get_verify_result(c->ssl);
        snprintf(detail, cap, "%s", X509_verify_cert_error_string(v));
        return TLS_FAIL_BAD_CLIENT_CERT;
    }
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return TLS_FAIL_CLOSED;
    default:
        /* SSL_R_*_ALERT_*: the alert the peer sent, offset by 1000. */
        if (reason >= SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256)
            return TLS_FAIL_PEER_ALERT;
        return TLS_FAIL_OTHER;
    }
}

int tls_conn_handshake(struct tls_conn *c)
{
    if (c->established)
        return 0;
    if (c->failed)
        return -EPROTO;
    ERR_clear_error();
    errno = 0;
    c->want_write = false;
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->established = true;
        tls_count_established(c->tw, (enum tls_alpn)c->alpn);
        log_debug("TLS handshake complete", "version=%s cipher=%s alpn=%s",
                  SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl),
                  c->alpn == TLS_ALPN_H2 ? "h2" : "http/1.1");
        return 0;
    }
    int saved_errno = errno;
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ)
        return -EAGAIN;
    if (err == SSL_ERROR_WANT_WRITE) {
        c->want_write = true;
        return -EAGAIN;
    }
    char detail[160];
    enum tls_fail f = classify(c, err, saved_errno, detail, sizeof(detail));
    ERR_clear_error();
    c->failed = true;
    tls_count_failure(c->tw, f, detail);
    return -EPROTO;
}

void tls_conn_handshake_timeout(struct tls_conn *c)
{
    if (c->ssl == NULL || c->established || c->failed)
        return;
    c->failed = true;
    tls_count_failure(c->tw, TLS_FAIL_TIMEOUT, "receiver.request_timeout_ms elapsed");
}

ssize_t tls_conn_read(struct tls_conn *c, uint8_t *buf, size_t len)
{
    if (c->failed)
        return -EIO;
    size_t got = 0;
    c->want_write = false;
    /* Several records per call (one SSL_read returns at most one). */
    while (got < len && !c->peer_closed) {
        size_t want = BASE_MIN(len - got, (size_t)INT_MAX);
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf + got, (int)want);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_READ)
            break;
        if (err == SSL_ERROR_WANT_WRITE) {
            c->want_write = true;
            break;
        }
        if (err == SSL_ERROR_ZERO_RETURN) { /* close_notify, or EOF (IGNORE_UNEXPECTED_EOF) */
            c->peer_closed = true;
            break;
        }
        ERR_clear_error();
        c->failed = true;
        if (got > 0) /* hand over what came before; the next call fails */
            break;
        return -EIO;
    }
    if (got > 0)
        return (ssize_t)got;
    return c->peer_closed ? 0 : -EAGAIN;
}

bool tls_conn_pending(const struct tls_conn *c)
{
    return c->ssl != NULL && !c->failed && SSL_pending(c->ssl) > 0;
}

ssize_t tls_conn_write(struct tls_conn *c, const uint8_t *buf, size_t len)
{
    if (c->failed)
        return -EPIPE;
    if (len == 0)
        return 0;
    c->want_write = false;
    ERR_clear_error();
    int n = SSL_write(c->ssl, buf, (int)BASE_MIN(len, (size_t)INT_MAX));
    if (n > 0)
        return n;
    int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_WRITE) {
        c->want_write = true;
        return -EAGAIN;
    }
    if (err == SSL_ERROR_WANT_READ)
        return -EAGAIN;
    ERR_clear_error();
    c->failed = true;
    return -EPIPE;
}

void tls_conn_shutdown(struct tls_conn *c)
{
    if (c->ssl == NULL || c->shut || c->failed || !c->established)
        return;
    c->shut = true;
    ERR_clear_error();
    /* One non-blocking attempt: close_notify goes out now or never; we do
     * not wait for the peer's. */
    if (SSL_shutdown(c->ssl) < 0)
        ERR_clear_error();
}

void tls_conn_fini(struct tls_conn *c)
{
    if (c->ssl == NULL)
        return;
    tls_conn_shutdown(c);
    SSL_free(c->ssl);
    memset(c, 0, sizeof(*c));
}
