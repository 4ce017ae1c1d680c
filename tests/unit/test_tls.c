/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for lib/tls: the server context (creation, bad files, reload good
 * and bad), handshakes and I/O over a real non-blocking socketpair against
 * an OpenSSL client (fed whole and byte by byte), mTLS, ALPN, versions,
 * close_notify, failure counters, the key permission warning, bearer
 * tokens and the constant-time compare. Certificates are made at start by
 * the openssl CLI in a temporary directory. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "base/base.h"
#include "config/config.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "tls/tls.h"

/* ------------------------------------------------------------------------ */
/* Certificates                                                              */
/* ------------------------------------------------------------------------ */

static char dir[64];

/* A CA, a second (untrusted) CA, two server certificates for
 * 127.0.0.1/localhost with known serials, a client certificate, one from
 * the untrusted CA and an expired one. EC P-256 keys: fast to make. */
static const char gen_script[] =
    "set -e; cd \"$1\"\n"
    "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out \"$1\"; }\n"
    "mkca() { key $1.key; openssl req -x509 -new -key $1.key -out $1.pem -days 30 "
    "  -subj \"/CN=$2\" -addext basicConstraints=critical,CA:TRUE "
    "  -addext keyUsage=critical,keyCertSign,cRLSign; }\n"
    "leaf() { key $1.key; openssl req -new -key $1.key -out $1.csr -subj \"/CN=$1\"; "
    "  printf '%s\\n' \"$5\" > $1.ext; "
    "  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -set_serial $3 -days $4 "
    "  -extfile $1.ext -out $1.pem; }\n"
    "SRV='subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'\n"
    "mkca ca 'otlp test CA'\n"
    "mkca other 'untrusted CA'\n"
    "leaf server ca 0x1001 30 \"$SRV\"\n"
    "leaf server2 ca 0x2002 30 \"$SRV\"\n"
    "leaf client ca 0x3003 30 extendedKeyUsage=clientAuth\n"
    "leaf untrusted other 0x4004 30 extendedKeyUsage=clientAuth\n"
    "leaf expired ca 0x5005 -1 extendedKeyUsage=clientAuth\n"
    "printf 'not a certificate\\n' > garbage.pem\n"
    "chmod 600 *.key\n";

/* dir/name in one of a few rotating static buffers. */
static char *P(const char *name)
{
    static char ring[16][160];
    static unsigned i;
    char *p = ring[i++ % 16];
    snprintf(p, sizeof(ring[0]), "%s/%s", dir, name);
    return p;
}

static void copy_file(const char *from, const char *to)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 600 '%s'", P(from), P(to), P(to));
    assert_int_equal(system(cmd), 0);
}

static void write_file(const char *name, const char *text, mode_t mode)
{
    int fd = open(P(name), O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/otlp-test-tls-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    char cmd[512];
    /* The script goes through the environment: no quoting trouble. */
    setenv("OTLP_TLS_GEN", gen_script, 1);
    snprintf(cmd, sizeof(cmd), "sh -c \"$OTLP_TLS_GEN\" sh '%s' >'%s/gen.log' 2>&1", dir, dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "certificate generation failed, see %s/gen.log\n", dir);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Fixture: a registry and a server config                                   */
/* ------------------------------------------------------------------------ */

struct fix {
    struct obs_registry *reg;
    struct receiver_tls_config cfg;
    struct tls_ctx *t;
    struct tls_worker *tw;
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    if (f == NULL || obs_registry_create(2, 4096, &f->reg) < 0)
        return -1;
    f->cfg.enabled = true;
    f->cfg.cert_file = strdup(P("server.pem"));
    f->cfg.key_file = strdup(P("server.key"));
    f->cfg.ca_file = strdup(P("ca.pem"));
    f->cfg.ciphers = strdup("");
    f->cfg.client_auth = TLS_CLIENT_AUTH_NONE;
    f->cfg.min_version = TLS_MIN_VERSION_1_2;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    tls_worker_destroy(f->tw);
    tls_ctx_destroy(f->t);
    obs_registry_destroy(f->reg);
    free(f->cfg.cert_file);
    free(f->cfg.key_file);
    free(f->cfg.ca_file);
    free(f->cfg.ciphers);
    free(f);
    ERR_clear_error();
    return 0;
}

static void set_path(char **field, const char *name)
{
    free(*field);
    *field = strdup(P(name));
}

static void make_ctx(struct fix *f)
{
    assert_int_equal(tls_ctx_create(&f->cfg, f->reg, 2, &f->t), 0);
    assert_int_equal(tls_worker_create(f->t, 0, &f->tw), 0);
}

/* Value of one series on /metrics, -1 when absent. */
static double metric(struct fix *f, const char *series)
{
    struct buf b;
    assert_int_equal(buf_init(&b, 8192, 1 << 20), 0);
    assert_int_equal(obs_render_prometheus(f->reg, &b), 0);
    assert_int_equal(buf_append(&b, "", 1), 0);
    double v = -1;
    size_t n = strlen(series);
    for (const char *p = (const char *)b.data; p != NULL && *p; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    }
    buf_free(&b);
    return v;
}

static double failures(struct fix *f, const char *reason)
{
    char s[96];
    snprintf(s, sizeof(s), "otlp_tls_handshake_failures_total{reason=\"%s\"}", reason);
    return metric(f, s);
}

/* ------------------------------------------------------------------------ */
/* A client: OpenSSL on memory BIOs, bytes moved to a socketpair by hand so  */
/* the test decides how they are split                                      */
/* ------------------------------------------------------------------------ */

struct client {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio, *wbio;
    int fd;     /* client end of the socketpair */
    int srv_fd; /* server end */
    bool done, failed;
};

struct client_opts {
    const char *cert, *key;   /* client certificate, or NULL */
    const char *alpn;         /* wire format, or NULL for none */
    size_t alpn_len;
    int max_version;          /* 0: TLS 1.3 */
};

static void client_open(struct client *cl, const struct client_opts *o)
{
    memset(cl, 0, sizeof(*cl));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    cl->fd = sv[0];
    cl->srv_fd = sv[1];
    cl->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cl->ctx);
    SSL_CTX_set_verify(cl->ctx, SSL_VERIFY_PEER, NULL);
    assert_int_equal(SSL_CTX_load_verify_locations(cl->ctx, P("ca.pem"), NULL), 1);
    if (o != NULL && o->cert != NULL) {
        assert_int_equal(SSL_CTX_use_certificate_file(cl->ctx, P(o->cert), SSL_FILETYPE_PEM), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(cl->ctx, P(o->key), SSL_FILETYPE_PEM), 1);
    }
    if (o != NULL && o->max_version != 0)
        SSL_CTX_set_max_proto_version(cl->ctx, o->max_version);
    cl->ssl = SSL_new(cl->ctx);
    assert_non_null(cl->ssl);
    if (o != NULL && o->alpn != NULL)
        assert_int_equal(SSL_set_alpn_protos(cl->ssl, (const unsigned char *)o->alpn,
                                             (unsigned)o->alpn_len),
                         0);
    assert_int_equal(SSL_set1_host(cl->ssl, "localhost"), 1);
    cl->rbio = BIO_new(BIO_s_mem());
    cl->wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(cl->ssl, cl->rbio, cl->wbio);
    SSL_set_connect_state(cl->ssl);
}

static void client_close(struct client *cl)
{
    SSL_free(cl->ssl);
    SSL_CTX_free(cl->ctx);
    if (cl->fd >= 0)
        close(cl->fd);
    if (cl->srv_fd >= 0)
        close(cl->srv_fd);
    ERR_clear_error();
}

/* What the server read during client_io(). */
struct sink {
    uint8_t *buf;
    size_t len, cap;
    size_t step;       /* bytes per tls_conn_read() */
    bool saw_pending;  /* tls_conn_pending() was true at some point */
};

static void drain(struct tls_conn *srv, struct sink *k)
{
    while (k->len < k->cap) {
        ssize_t r = tls_conn_read(srv, k->buf + k->len, BASE_MIN(k->step, k->cap - k->len));
        if (r == -EAGAIN)
            return;
        assert_true(r > 0);
        k->len += (size_t)r;
        k->saw_pending |= tls_conn_pending(srv);
    }
}

/* Client output -> socket, `chunk` bytes at a time; after each chunk the
 * server handshake is advanced when `srv` is given (so it sees every
 * split), or the server reads into `sink` once established. Then
 * socket -> client input. */
static void client_io_sink(struct client *cl, size_t chunk, struct tls_conn *srv,
                           struct sink *sink)
{
    uint8_t buf[16384];
    int n;
    while ((n = BIO_read(cl->wbio, buf, sizeof(buf))) > 0) {
        for (int off = 0; off < n;) {
            size_t k = BASE_MIN(chunk, (size_t)(n - off));
            assert_int_equal(write(cl->fd, buf + off, k), (ssize_t)k);
            off += (int)k;
            if (srv != NULL && srv->ssl != NULL && !srv->established && !srv->failed)
                assert_int_not_equal(tls_conn_handshake(srv), 0 - EINVAL);
            else if (srv != NULL && sink != NULL)
                drain(srv, sink);
        }
    }
    ssize_t r;
    while ((r = read(cl->fd, buf, sizeof(buf))) > 0)
        assert_int_equal(BIO_write(cl->rbio, buf, (int)r), (int)r);
}

static void client_io(struct client *cl, size_t chunk, struct tls_conn *srv)
{
    client_io_sink(cl, chunk, srv, NULL);
}

static void client_step(struct client *cl)
{
    if (cl->done || cl->failed)
        return;
    ERR_clear_error();
    int r = SSL_do_handshake(cl->ssl);
    if (r == 1) {
        cl->done = true;
        return;
    }
    int e = SSL_get_error(cl->ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        cl->failed = true;
    ERR_clear_error();
}

/* Run both sides until the server's handshake ends. Returns its result. */
static int handshake(struct client *cl, struct tls_conn *srv, size_t chunk)
{
    int rc = -EAGAIN;
    for (int i = 0; i < 100 && rc == -EAGAIN; i++) {
        client_step(cl);
        client_io(cl, chunk, srv);
        rc = tls_conn_handshake(srv);
        client_io(cl, chunk, NULL);
        if (cl->failed && rc == -EAGAIN) {
            client_io(cl, chunk, NULL); /* the client's alert */
            rc = tls_conn_handshake(srv);
            break;
        }
    }
    /* TLS 1.3: the client finishes only when it reads the server's last
     * flight (and, with a client certificate refused, learns of it). */
    client_step(cl);
    client_io(cl, chunk, NULL);
    return rc;
}

static void server_conn(struct fix *f, struct client *cl, struct tls_conn *srv, enum tls_alpn a)
{
    assert_int_equal(tls_conn_init(srv, f->tw, cl->srv_fd, a), 0);
    assert_non_null(srv->ssl);
}

/* Serial of the certificate the client got, as hex. */
static void peer_serial(struct client *cl, char *out, size_t cap)
{
    X509 *x = SSL_get1_peer_certificate(cl->ssl);
    assert_non_null(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = BN_bn2hex(bn);
    snprintf(out, cap, "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    X509_free(x);
}

/* Everything `len` bytes long the server can read now. */
static size_t server_read_all(struct tls_conn *srv, uint8_t *buf, size_t len, size_t step)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = tls_conn_read(srv, buf + got, BASE_MIN(step, len - got));
        if (n == -EAGAIN)
            break;
        assert_true(n > 0);
        got += (size_t)n;
    }
    return got;
}

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

static void test_ctx_create(void **state)
{
    struct fix *f = *state;
    make_ctx(f);
    char serial[64];
    assert_int_equal(tls_ctx_cert_serial(f->t, serial, sizeof(serial)), 0);
    assert_string_equal(serial, "1001");
    assert_int_equal(tls_ctx_generation(f->t), 0);
    assert_int_equal(tls_ctx_cert_serial(f->t, serial, 3), -ENOSPC);
    assert_true(metric(f, "otlp_tls_certificate_expiry_timestamp_seconds") > 1e9);
    assert_true(metric(f, "otlp_tls_connections_total{listener=\"http\"}") == 0);
    assert_true(failures(f, "timeout") == 0);
    /* a second worker; out of range refused */
    struct tls_worker *w1, *bad;
    assert_int_equal(tls_worker_create(f->t, 1, &w1), 0);
    assert_int_equal(tls_worker_create(f->t, 2, &bad), -EINVAL);
    tls_worker_destroy(w1);
    tls_worker_destroy(NULL);
    tls_ctx_destroy(NULL);
}

static void test_ctx_create_bad(void **state)
{
    struct fix *f = *state;
    struct tls_ctx *t = NULL;
    /* not enabled, no files, require without CA */
    f->cfg.enabled = false;
    assert_int_equal(tls_ctx_create(&f->cfg, f->reg, 2, &t), -EINVAL);
    f->cfg.enabled = true;
    assert_int_equal(tls_ctx_create(&f->cfg, NULL, 2, &t), -EINVAL);
    assert_int_equal(tls_ctx_create(&f->cfg, f->reg, 0, &t), -EINVAL);
    char *ca = f->cfg.ca_file;
    f->cfg.ca_file = (char *)"";
    f->cfg.client_auth = TLS_CLIENT_AUTH_REQUIRE;
    assert_int_equal(tls_ctx_create(&f->cfg, f->reg, 2, &t), -EINVAL);
    f->cfg.ca_file = ca;
    f->cfg.client_auth = TLS_CLIENT_AUTH_NONE;

    /* each bad file: missing, garbage, a key of another certificate */
    static const char *const bad[][2] = {
        {"missing.pem", "server.key"},
        {"garbage.pem", "server.key"},
        {"server.pem", "missing.key"},
        {"server.pem", "garbage.pem"},
        {"server.pem", "server2.key"},
    };
    for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
        set_path(&f->cfg.cert_file, bad[i][0]);
        set_path(&f->cfg.key_file, bad[i][1]);
        assert_int_equal(tls_ctx_create(&f->cfg, f->reg, 2, &t), -EINVAL);
    }
    set_path(&f->cfg.cert_file, "server.pem");
    set_path(&f->cfg.key_file, "server.key");
    /* a CA file that is not one; a cipher list OpenSSL does not know */
    f->cfg.client_auth = TLS_CLIENT_AUTH_REQUEST;
    set_path(&f->cfg.ca_file, "garbage.pem");
    assert_int_equal(tls_ctx_create(&f->cfg, f->reg, 2, &t), -EINVAL);
    set_path(&f->cfg.ca_file, "ca.pem");
    f->cfg.client_auth = TLS_CLIENT_AUTH_NONE;
    free(f->cfg.ciphers);
    f->cfg.ciphers = strdup("NO-SUCH-CIPHER");
    assert_int_equal(tls_ctx_create(&f->cfg, f->reg, 2, &t), -EINVAL);
    assert_null(t);
    /* nothing was registered by the failures: a good one still works */
    free(f->cfg.ciphers);
    f->cfg.ciphers = strdup("ECDHE+AESGCM");
    make_ctx(f);
}

/* reload: good files swap in for new connections, an open connection
 * keeps its certificate; bad files leave everything as it was. */
static void test_ctx_reload(void **state)
{
    struct fix *f = *state;
    copy_file("server.pem", "live.pem");
    copy_file("server.key", "live.key");
    set_path(&f->cfg.cert_file, "live.pem");
    set_path(&f->cfg.key_file, "live.key");
    make_ctx(f);

    struct client a;
    struct tls_conn sa;
    char serial[64];
    client_open(&a, NULL);
    server_conn(f, &a, &sa, TLS_ALPN_HTTP1);
    assert_int_equal(handshake(&a, &sa, 1 << 20), 0);
    peer_serial(&a, serial, sizeof(serial));
    assert_string_equal(serial, "1001");

    copy_file("server2.pem", "live.pem");
    copy_file("server2.key", "live.key");
    assert_int_equal(tls_ctx_reload(f->t), 0);
    assert_int_equal(tls_ctx_generation(f->t), 1);
    assert_int_equal(tls_ctx_cert_serial(f->t, serial, sizeof(serial)), 0);
    assert_string_equal(serial, "2002");
    assert_true(metric(f, "otlp_tls_reloads_total{result=\"ok\"}") == 1);

    struct client b;
    struct tls_conn sb;
    client_open(&b, NULL);
    server_conn(f, &b, &sb, TLS_ALPN_HTTP1);
    assert_int_equal(handshake(&b, &sb, 1 << 20), 0);
    peer_serial(&b, serial, sizeof(serial));
    assert_string_equal(serial, "2002");

    /* the old connection still carries traffic both ways */
    assert_int_equal(SSL_write(a.ssl, "ping", 4), 4);
    client_io(&a, 1 << 20, NULL);
    uint8_t buf[16];
    assert_int_equal(server_read_all(&sa, buf, 4, sizeof(buf)), 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(tls_conn_write(&sa, (const uint8_t *)"pong", 4), 4);
    client_io(&a, 1 << 20, NULL);
    assert_int_equal(SSL_read(a.ssl, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "pong", 4);

    /* bad: garbage certificate; a certificate without its key */
    write_file("live.pem", "junk\n", 0600);
    assert_int_equal(tls_ctx_reload(f->t), -EINVAL);
    copy_file("server.pem", "live.pem"); /* live.key is still server2's */
    assert_int_equal(tls_ctx_reload(f->t), -EINVAL);
    assert_int_equal(tls_ctx_generation(f->t), 1);
    assert_int_equal(tls_ctx_cert_serial(f->t, serial, sizeof(serial)), 0);
    assert_string_equal(serial, "2002");
    assert_true(metric(f, "otlp_tls_reloads_total{result=\"error\"}") == 2);

    /* and new connections still get the last good one */
    struct client c;
    struct tls_conn sc;
    client_open(&c, NULL);
    server_conn(f, &c, &sc, TLS_ALPN_HTTP1);
    assert_int_equal(handshake(&c, &sc, 1 << 20), 0);
    peer_serial(&c, serial, sizeof(serial));
    assert_string_equal(serial, "2002");
    assert_true(metric(f, "otlp_tls_connections_total{listener=\"http\"}") == 3);

    tls_conn_fini(&sa);
    tls_conn_fini(&sb);
    tls_conn_fini(&sc);
    client_close(&a);
    client_close(&b);
    client_close(&c);
}

/* ------------------------------------------------------------------------ */
/* Handshake and I/O                                                         */
/* ------------------------------------------------------------------------ */

/* The same exchange with the client's bytes arriving whole, in 7-byte
 * pieces and one byte at a time; TLS 1.2 and 1.3. */
static void test_io_splits(void **state)
{
    struct fix *f = *state;
    make_ctx(f);
    static const size_t chunks[] = {1 << 20, 7, 1};
    static const int versions[] = {TLS1_3_VERSION, TLS1_2_VERSION};
    static uint8_t msg[40000], got[40000];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)(i * 31 + 7);
    double expect = 0;
    for (unsigned v = 0; v < ARRAY_SIZE(versions); v++) {
        for (unsigned k = 0; k < ARRAY_SIZE(chunks); k++) {
            struct client cl;
            struct tls_conn s;
            struct client_opts o = {.max_version = versions[v]};
            client_open(&cl, &o);
            server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
            assert_int_equal(handshake(&cl, &s, chunks[k]), 0);
            assert_true(s.established);
            assert_int_equal(SSL_version(cl.ssl), versions[v]);
            expect++;
            /* client -> server, several records; the server reads in
             * small steps so OpenSSL holds the rest (tls_conn_pending) */
            size_t len = sizeof(msg);
            assert_int_equal(SSL_write(cl.ssl, msg, (int)len), (int)len);
            struct sink sk = {.buf = got, .cap = len, .step = 1000};
            client_io_sink(&cl, chunks[k], &s, &sk);
            drain(&s, &sk);
            assert_int_equal(sk.len, len);
            assert_memory_equal(got, msg, len);
            assert_true(sk.saw_pending);
            assert_int_equal(tls_conn_read(&s, got, sizeof(got)), -EAGAIN);
            assert_false(tls_conn_pending(&s));
            /* server -> client, the socket filling up on the way */
            size_t off = 0, cn = 0;
            for (int tries = 0; tries < 10000 && cn < len; tries++) {
                if (off < len) {
                    ssize_t w = tls_conn_write(&s, msg + off, len - off);
                    assert_true(w > 0 || w == -EAGAIN);
                    if (w > 0)
                        off += (size_t)w;
                    else
                        assert_true(s.want_write);
                }
                client_io(&cl, chunks[k], NULL);
                int r = SSL_read(cl.ssl, got + cn, (int)(len - cn));
                if (r > 0)
                    cn += (size_t)r;
            }
            assert_int_equal(cn, len);
            assert_memory_equal(got, msg, len);
            /* close_notify on fini; the client reads a clean EOF */
            tls_conn_fini(&s);
            assert_null(s.ssl);
            tls_conn_fini(&s); /* twice is fine */
            client_io(&cl, chunks[k], NULL);
            assert_int_equal(SSL_read(cl.ssl, got, 1), 0);
            assert_int_equal(SSL_get_error(cl.ssl, 0), SSL_ERROR_ZERO_RETURN);
            client_close(&cl);
        }
    }
    assert_true(metric(f, "otlp_tls_connections_total{listener=\"http\"}") == expect);
}

/* Memory-BIO mode (lib/dpdk over the userspace TCP stack): no socket; the
 * test moves the client's records into tls_conn_feed() in 1-byte, 7-byte
 * and whole pieces and the server's out through tls_conn_take_output().
 * Handshake, 40 KB each way, and close_notify. */
static void mem_client_to_server(struct client *cl, struct tls_conn *s, size_t chunk)
{
    uint8_t buf[16384];
    int n;
    while ((n = BIO_read(cl->wbio, buf, sizeof(buf))) > 0)
        for (int off = 0; off < n;) {
            size_t k = BASE_MIN(chunk, (size_t)(n - off));
            assert_int_equal(tls_conn_feed(s, buf + off, k), 0);
            off += (int)k;
            if (!s->established && !s->failed)
                (void)tls_conn_handshake(s);
        }
}

static void mem_server_to_client(struct client *cl, struct tls_conn *s)
{
    uint8_t buf[4096];
    size_t n;
    while (tls_conn_output_pending(s) > 0) {
        n = tls_conn_take_output(s, buf, sizeof(buf));
        assert_true(n > 0);
        assert_int_equal(BIO_write(cl->rbio, buf, (int)n), (int)n);
    }
}

static void test_mem_bio(void **state)
{
    struct fix *f = *state;
    make_ctx(f);
    static const size_t chunks[] = {1 << 20, 7, 1};
    static uint8_t msg[40000], got[40000];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)(i * 17 + 3);
    for (unsigned k = 0; k < ARRAY_SIZE(chunks); k++) {
        struct client cl;
        struct tls_conn s;
        client_open(&cl, NULL);
        assert_int_equal(tls_conn_init_mem(&s, f->tw, TLS_ALPN_HTTP1), 0);
        assert_true(s.mem);
        assert_int_equal(tls_conn_handshake(&s), -EAGAIN); /* nothing fed yet */
        for (int i = 0; i < 20 && !(s.established && cl.done); i++) {
            client_step(&cl);
            mem_client_to_server(&cl, &s, chunks[k]);
            if (!s.established)
                assert_int_equal(tls_conn_handshake(&s), -EAGAIN);
            mem_server_to_client(&cl, &s);
        }
        assert_true(s.established && cl.done);
        assert_false(s.want_write);
        /* client -> server */
        assert_int_equal(SSL_write(cl.ssl, msg, (int)sizeof(msg)), (int)sizeof(msg));
        mem_client_to_server(&cl, &s, chunks[k]);
        size_t len = 0;
        ssize_t r;
        while ((r = tls_conn_read(&s, got + len, sizeof(got) - len)) > 0)
            len += (size_t)r;
        assert_int_equal(r, -EAGAIN);
        assert_int_equal(len, sizeof(msg));
        assert_memory_equal(got, msg, len);
        /* server -> client: the output BIO never says "full" (partial
         * writes of a record each, as with a socket) */
        for (size_t off = 0; off < sizeof(msg);) {
            ssize_t w = tls_conn_write(&s, msg + off, sizeof(msg) - off);
            assert_true(w > 0);
            off += (size_t)w;
        }
        assert_true(tls_conn_output_pending(&s) > sizeof(msg));
        mem_server_to_client(&cl, &s);
        size_t cn = 0;
        int n;
        while (cn < sizeof(msg) && (n = SSL_read(cl.ssl, got + cn, (int)(sizeof(msg) - cn))) > 0)
            cn += (size_t)n;
        assert_int_equal(cn, sizeof(msg));
        assert_memory_equal(got, msg, cn);
        /* close_notify leaves through the output BIO */
        tls_conn_shutdown(&s);
        mem_server_to_client(&cl, &s);
        assert_int_equal(SSL_read(cl.ssl, got, 1), 0);
        assert_int_equal(SSL_get_error(cl.ssl, 0), SSL_ERROR_ZERO_RETURN);
        tls_conn_fini(&s);
        assert_null(s.ssl);
        assert_int_equal(tls_conn_take_output(&s, got, 1), 0);
        client_close(&cl);
    }
    /* a socket connection refuses the memory-BIO calls */
    struct client cl;
    struct tls_conn s;
    client_open(&cl, NULL);
    server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
    assert_int_equal(tls_conn_feed(&s, msg, 1), -EINVAL);
    assert_int_equal(tls_conn_output_pending(&s), 0);
    tls_conn_fini(&s);
    client_close(&cl);
    assert_true(metric(f, "otlp_tls_connections_total{listener=\"http\"}") == 3);
}

/* The client closes: data before close_notify is delivered, then EOF. */
static void test_peer_close(void **state)
{
    struct fix *f = *state;
    make_ctx(f);
    struct client cl;
    struct tls_conn s;
    client_open(&cl, NULL);
    server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
    assert_int_equal(handshake(&cl, &s, 1 << 20), 0);
    assert_int_equal(SSL_write(cl.ssl, "last", 4), 4);
    assert_true(SSL_shutdown(cl.ssl) >= 0);
    client_io(&cl, 1 << 20, NULL);
    uint8_t buf[16];
    assert_int_equal(tls_conn_read(&s, buf, sizeof(buf)), 4);
    assert_true(s.peer_closed);
    assert_int_equal(tls_conn_read(&s, buf, sizeof(buf)), 0);
    tls_conn_fini(&s);
    client_close(&cl);

    /* TCP EOF without close_notify reads as EOF too */
    client_open(&cl, NULL);
    server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
    assert_int_equal(handshake(&cl, &s, 1 << 20), 0);
    shutdown(cl.fd, SHUT_WR);
    assert_int_equal(tls_conn_read(&s, buf, sizeof(buf)), 0);
    tls_conn_fini(&s);
    client_close(&cl);
}

/* ALPN: h2 on the gRPC listener, http/1.1 on the HTTP one; a client that
 * offers only the other protocol is refused; no ALPN at all is served. */
static void test_alpn(void **state)
{
    struct fix *f = *state;
    make_ctx(f);
    static const char both[] = "\x02h2\x08http/1.1", h2[] = "\x02h2";
    struct {
        const char *offer;
        size_t len;
        enum tls_alpn listener;
        const char *expect; /* NULL: refused */
    } cases[] = {
        {both, sizeof(both) - 1, TLS_ALPN_H2, "h2"},
        {both, sizeof(both) - 1, TLS_ALPN_HTTP1, "http/1.1"},
        {h2, sizeof(h2) - 1, TLS_ALPN_HTTP1, NULL},
        {NULL, 0, TLS_ALPN_H2, ""},
    };
    for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
        struct client cl;
        struct tls_conn s;
        struct client_opts o = {.alpn = cases[i].offer, .alpn_len = cases[i].len};
        client_open(&cl, &o);
        server_conn(f, &cl, &s, cases[i].listener);
        int rc = handshake(&cl, &s, 1 << 20);
        if (cases[i].expect == NULL) {
            assert_int_equal(rc, -EPROTO);
        } else {
            assert_int_equal(rc, 0);
            const unsigned char *sel;
            unsigned sl;
            SSL_get0_alpn_selected(cl.ssl, &sel, &sl);
            assert_int_equal(sl, strlen(cases[i].expect));
            assert_memory_equal(sel, cases[i].expect, sl);
        }
        tls_conn_fini(&s);
        client_close(&cl);
    }
    assert_true(failures(f, "no_application_protocol") == 1);
    assert_true(metric(f, "otlp_tls_connections_total{listener=\"grpc\"}") == 2);
}

/* mTLS: require refuses no certificate, an untrusted and an expired one. */
static void test_client_auth(void **state)
{
    struct fix *f = *state;
    f->cfg.client_auth = TLS_CLIENT_AUTH_REQUIRE;
    make_ctx(f);
    struct {
        const char *cert, *key;
        int rc;
    } cases[] = {
        {"client.pem", "client.key", 0},
        {NULL, NULL, -EPROTO},
        {"untrusted.pem", "untrusted.key", -EPROTO},
        {"expired.pem", "expired.key", -EPROTO},
    };
    for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
        struct client cl;
        struct tls_conn s;
        struct client_opts o = {.cert = cases[i].cert, .key = cases[i].key};
        client_open(&cl, &o);
        server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
        assert_int_equal(handshake(&cl, &s, 1 << 20), cases[i].rc);
        if (cases[i].rc == 0) {
            X509 *peer = SSL_get1_peer_certificate(s.ssl);
            assert_non_null(peer);
            X509_free(peer);
        } else {
            /* the client learns of it: its next read fails */
            uint8_t b[8];
            assert_true(SSL_read(cl.ssl, b, sizeof(b)) <= 0);
            assert_int_equal(tls_conn_read(&s, b, sizeof(b)), -EIO);
            assert_int_equal(tls_conn_write(&s, b, sizeof(b)), -EPIPE);
        }
        tls_conn_fini(&s);
        client_close(&cl);
    }
    assert_true(failures(f, "client_cert_missing") == 1);
    assert_true(failures(f, "client_cert_invalid") == 2);
}

/* client_auth request: no certificate is fine, a bad one is not. */
static void test_client_auth_request(void **state)
{
    struct fix *f = *state;
    f->cfg.client_auth = TLS_CLIENT_AUTH_REQUEST;
    make_ctx(f);
    struct client cl;
    struct tls_conn s;
    client_open(&cl, NULL);
    server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
    assert_int_equal(handshake(&cl, &s, 1 << 20), 0);
    tls_conn_fini(&s);
    client_close(&cl);
    struct client_opts o = {.cert = "untrusted.pem", .key = "untrusted.key"};
    client_open(&cl, &o);
    server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
    assert_int_equal(handshake(&cl, &s, 1 << 20), -EPROTO);
    tls_conn_fini(&s);
    client_close(&cl);
    assert_true(failures(f, "client_cert_invalid") == 1);
}

/* Failure reasons: plain HTTP on the TLS port, a version below the
 * minimum, a client that does not trust us, EOF, the timeout. */
static void test_failure_reasons(void **state)
{
    struct fix *f = *state;
    f->cfg.min_version = TLS_MIN_VERSION_1_3;
    make_ctx(f);
    struct client cl;
    struct tls_conn s;

    client_open(&cl, NULL);
    server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
    static const char http[] = "POST /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(write(cl.fd, http, sizeof(http) - 1), (ssize_t)(sizeof(http) - 1));
    assert_int_equal(tls_conn_handshake(&s), -EPROTO);
    assert_int_equal(tls_conn_handshake(&s), -EPROTO); /* sticky */
    assert_true(s.plain_http);
    assert_int_equal(strncmp(tls_plain_http_response, "HTTP/1.1 400 ", 13), 0);
    const char *body = strstr(tls_plain_http_response, "\r\n\r\n");
    assert_non_null(body);
    assert_non_null(strstr(tls_plain_http_response, "Content-Length: 50\r\n"));
    assert_int_equal(strlen(body + 4), 50);
    tls_conn_fini(&s);
    client_close(&cl);
    assert_true(failures(f, "not_tls") == 1);

    struct client_opts o12 = {.max_version = TLS1_2_VERSION};
    client_open(&cl, &o12);
    server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
    assert_int_equal(handshake(&cl, &s, 1 << 20), -EPROTO);
    tls_conn_fini(&s);
    client_close(&cl);
    assert_true(failures(f, "protocol_version") == 1);

    /* a client with another CA aborts with an alert */
    client_open(&cl, NULL);
    X509_STORE *empty = X509_STORE_new();
    SSL_set0_verify_cert_store(cl.ssl, empty);
    server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
    assert_int_equal(handshake(&cl, &s, 1 << 20), -EPROTO);
    tls_conn_fini(&s);
    client_close(&cl);
    assert_true(failures(f, "peer_alert") == 1);

    /* EOF in the middle of the handshake */
    client_open(&cl, NULL);
    server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
    client_step(&cl);
    uint8_t hello[64];
    int n = BIO_read(cl.wbio, hello, sizeof(hello));
    assert_true(n > 10);
    assert_int_equal(write(cl.fd, hello, 10), 10);
    assert_int_equal(tls_conn_handshake(&s), -EAGAIN);
    shutdown(cl.fd, SHUT_WR);
    assert_int_equal(tls_conn_handshake(&s), -EPROTO);
    tls_conn_fini(&s);
    client_close(&cl);
    assert_true(failures(f, "closed") == 1);

    /* the transport's timeout */
    client_open(&cl, NULL);
    server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
    assert_int_equal(tls_conn_handshake(&s), -EAGAIN);
    tls_conn_handshake_timeout(&s);
    assert_int_equal(tls_conn_handshake(&s), -EPROTO);
    tls_conn_handshake_timeout(&s); /* counted once */
    tls_conn_fini(&s);
    client_close(&cl);
    assert_true(failures(f, "timeout") == 1);
    assert_true(failures(f, "other") == 0);
}

/* receiver.tls.ciphers limits TLS 1.2; no overlap is its own reason. */
static void test_ciphers(void **state)
{
    struct fix *f = *state;
    free(f->cfg.ciphers);
    f->cfg.ciphers = strdup("ECDHE-ECDSA-AES128-GCM-SHA256");
    make_ctx(f);
    struct client_opts o12 = {.max_version = TLS1_2_VERSION};
    struct client cl;
    struct tls_conn s;
    client_open(&cl, &o12);
    server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
    assert_int_equal(handshake(&cl, &s, 1 << 20), 0);
    assert_string_equal(SSL_get_cipher_name(s.ssl), "ECDHE-ECDSA-AES128-GCM-SHA256");
    tls_conn_fini(&s);
    client_close(&cl);
    client_open(&cl, &o12);
    assert_int_equal(SSL_set_cipher_list(cl.ssl, "ECDHE-ECDSA-AES256-GCM-SHA384"), 1);
    server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
    assert_int_equal(handshake(&cl, &s, 1 << 20), -EPROTO);
    tls_conn_fini(&s);
    client_close(&cl);
    assert_true(failures(f, "no_shared_cipher") == 1);
    /* TLS 1.3 is not affected by the list */
    client_open(&cl, NULL);
    server_conn(f, &cl, &s, TLS_ALPN_HTTP1);
    assert_int_equal(handshake(&cl, &s, 1 << 20), 0);
    tls_conn_fini(&s);
    client_close(&cl);
}

/* ------------------------------------------------------------------------ */
/* Key permissions                                                           */
/* ------------------------------------------------------------------------ */

static char *read_log(int fd)
{
    static char text[8192];
    off_t end = lseek(fd, 0, SEEK_END);
    assert_true(end >= 0 && end < (off_t)sizeof(text));
    assert_int_equal(pread(fd, text, (size_t)end, 0), end);
    text[end] = '\0';
    return text;
}

static void test_key_permissions(void **state)
{
    struct fix *f = *state;
    copy_file("server.key", "perm.key");
    char logname[] = "/tmp/otlp-test-tls-log-XXXXXX";
    int lfd = mkstemp(logname);
    assert_true(lfd >= 0);
    unlink(logname);
    log_set_fd(lfd);

    assert_int_equal(tls_check_key_permissions(P("perm.key"), "test"), 0);
    assert_null(strstr(read_log(lfd), "chmod 600"));
    assert_int_equal(chmod(P("perm.key"), 0644), 0);
    assert_int_equal(tls_check_key_permissions(P("perm.key"), "test"), 1);
    assert_non_null(strstr(read_log(lfd), "chmod 600"));
    assert_non_null(strstr(read_log(lfd), "\"mode\":\"0644\""));
    assert_int_equal(chmod(P("perm.key"), 0640), 0);
    assert_int_equal(tls_check_key_permissions(P("perm.key"), "test"), 1);
    assert_int_equal(tls_check_key_permissions(P("missing.key"), "test"), -ENOENT);

    /* the context warns at start -- and still starts */
    assert_int_equal(ftruncate(lfd, 0), 0);
    assert_int_equal(lseek(lfd, 0, SEEK_SET), 0);
    set_path(&f->cfg.key_file, "perm.key");
    make_ctx(f);
    char *text = read_log(lfd);
    assert_non_null(strstr(text, "chmod 600"));
    assert_non_null(strstr(text, "perm.key"));
    /* the key itself never reaches the log */
    assert_null(strstr(text, "PRIVATE KEY"));
    log_set_fd(2);
    close(lfd);
}

/* ------------------------------------------------------------------------ */
/* Bearer tokens                                                             */
/* ------------------------------------------------------------------------ */

static void test_ct_equal(void **state)
{
    (void)state;
    assert_true(tls_ct_equal("abc", 3, "abc", 3));
    assert_true(tls_ct_equal("", 0, "", 0));
    assert_false(tls_ct_equal("abc", 3, "abd", 3));
    assert_false(tls_ct_equal("xbc", 3, "abc", 3));
    assert_false(tls_ct_equal("abc", 3, "abcd", 4));
    assert_false(tls_ct_equal("abcd", 4, "abc", 3));
    assert_false(tls_ct_equal("a", 1, "", 0));
    uint8_t a[600], b[600];
    memset(a, 0x5a, sizeof(a));
    memcpy(b, a, sizeof(b));
    assert_true(tls_ct_equal(a, sizeof(a), b, sizeof(b)));
    b[599] ^= 0x80;
    assert_false(tls_ct_equal(a, sizeof(a), b, sizeof(b)));
    b[599] ^= 0x80;
    b[0] ^= 1;
    assert_false(tls_ct_equal(a, sizeof(a), b, sizeof(b)));
}

static bool check(const struct tls_tokens *t, const char *v)
{
    return tls_tokens_check(t, v, strlen(v));
}

static void test_tokens(void **state)
{
    (void)state;
    struct tls_tokens *t = NULL;
    struct receiver_auth_config a = {.bearer_tokens = (char *)"", .token_file = (char *)""};
    /* none configured: authentication off */
    assert_int_equal(tls_tokens_load(&a, &t), 0);
    assert_null(t);
    assert_false(check(NULL, "Bearer x"));

    a.bearer_tokens = (char *)"alpha, be.ta-_~+/ ,gamma==";
    assert_int_equal(tls_tokens_load(&a, &t), 0);
    assert_int_equal(tls_tokens_count(t), 3);
    assert_true(check(t, "Bearer alpha"));
    assert_true(check(t, "bearer be.ta-_~+/"));
    assert_true(check(t, "BEARER gamma=="));
    assert_true(check(t, "  Bearer   alpha  "));
    assert_false(check(t, "Bearer alph"));
    assert_false(check(t, "Bearer alphaa"));
    assert_false(check(t, "Bearer gamma"));
    assert_false(check(t, "Bearer Alpha"));
    assert_false(check(t, "Basic alpha"));
    assert_false(check(t, "Bearer"));
    assert_false(check(t, "Bearer "));
    assert_false(check(t, "Beareralpha"));
    assert_false(check(t, ""));
    assert_false(check(t, "alpha"));
    char big[700];
    memset(big, 'a', sizeof(big));
    memcpy(big, "Bearer ", 7);
    big[sizeof(big) - 1] = '\0';
    assert_false(check(t, big));
    /* not NUL-terminated: only len bytes count */
    assert_true(tls_tokens_check(t, "Bearer alphaXYZ", 12));
    tls_tokens_destroy(t);
    tls_tokens_destroy(NULL);

    /* malformed in the list */
    a.bearer_tokens = (char *)"good,bad token";
    assert_int_equal(tls_tokens_load(&a, &t), -EINVAL);
    assert_null(t);
}

static void test_token_file(void **state)
{
    (void)state;
    struct tls_tokens *t = NULL;
    struct receiver_auth_config a = {.bearer_tokens = (char *)"inline"};
    write_file("tokens", "# comment\n\n  file-one  \r\nfile-two\n# file-three\n", 0600);
    a.token_file = P("tokens");
    assert_int_equal(tls_tokens_load(&a, &t), 0);
    assert_int_equal(tls_tokens_count(t), 3);
    assert_true(check(t, "Bearer inline"));
    assert_true(check(t, "Bearer file-one"));
    assert_true(check(t, "Bearer file-two"));
    assert_false(check(t, "Bearer file-three"));
    assert_false(check(t, "Bearer # comment"));
    tls_tokens_destroy(t);

    /* empty (only comments), malformed line, missing file */
    write_file("tokens", "# nothing\n\n", 0600);
    assert_int_equal(tls_tokens_load(&a, &t), -EINVAL);
    write_file("tokens", "ok\nnot ok\n", 0600);
    assert_int_equal(tls_tokens_load(&a, &t), -EINVAL);
    a.token_file = P("no-such-file");
    assert_int_equal(tls_tokens_load(&a, &t), -ENOENT);
    assert_null(t);

    /* group-readable token file: loads, with the warning, token not logged */
    char logname[] = "/tmp/otlp-test-tls-log-XXXXXX";
    int lfd = mkstemp(logname);
    assert_true(lfd >= 0);
    unlink(logname);
    log_set_fd(lfd);
    write_file("tokens", "s3cret-token\n", 0644);
    a.token_file = P("tokens");
    assert_int_equal(tls_tokens_load(&a, &t), 0);
    char *text = read_log(lfd);
    assert_non_null(strstr(text, "chmod 600"));
    assert_null(strstr(text, "s3cret"));
    tls_tokens_destroy(t);
    /* a bad token line is reported by line number, not by content */
    write_file("tokens", "fine\nsup3r secret\n", 0600);
    assert_int_equal(tls_tokens_load(&a, &t), -EINVAL);
    text = read_log(lfd);
    assert_non_null(strstr(text, "\"line\":2"));
    assert_null(strstr(text, "sup3r"));
    log_set_fd(2);
    close(lfd);
}

int main(void)
{
    /* The suite writes to sockets whose peer may be gone. */
    signal(SIGPIPE, SIG_IGN);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_ctx_create),
        T(test_ctx_create_bad),
        T(test_ctx_reload),
        T(test_io_splits),
        T(test_mem_bio),
        T(test_peer_close),
        T(test_alpn),
        T(test_client_auth),
        T(test_client_auth_request),
        T(test_failure_reasons),
        T(test_ciphers),
        T(test_key_permissions),
        cmocka_unit_test(test_ct_equal),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_token_file),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
