/* SPDX-License-Identifier: Apache-2.0 */
/* OTLP/gRPC exporter: each batch is one unary Export call on a persistent
 * HTTP/2 connection (nghttp2 client session over a non-blocking socket; h2c
 * with prior knowledge, or TLS with ALPN h2 through OpenSSL memory BIOs), up
 * to batch.max_concurrent_exports streams at once, and each call's outcome is
 * mapped to an export_result as the OTLP specification says for gRPC. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base/base.h"
#include "compress/compress.h"
#include "export/exporter.h"
#include "obs/log.h"
#include "otlp/otlp.h"
#include "otlp/otlp_split.h"
#include "otlp_version.h"

#define GRPC_EXP_USER_AGENT "otlp-service/" OTLP_SERVICE_VERSION
#define GRPC_EXP_MSG_HDR 5            /* gRPC message prefix: flag + 4-byte length */
#define GRPC_EXP_RESP_MAX 16384       /* response bytes kept (partial success) */
#define GRPC_EXP_DETAILS_MAX 4096     /* grpc-status-details-bin, decoded */
#define GRPC_EXP_OUT_HIGH (64 * 1024) /* stop pulling frames from nghttp2 above this */
#define GRPC_EXP_RECV_CHUNK 16384     /* one recv() */
#define GRPC_EXP_RECV_BURST 16        /* recv() calls per readiness event */
#define GRPC_EXP_WINDOW (1 << 20)     /* our stream and connection receive window */
#define GRPC_EXP_RETRY_DELAY_MAX_MS (24u * 3600u * 1000u)
#define GRPC_EXP_META_MAX 16          /* our own request headers */
#define GRPC_EXP_PING_TIMEOUT_MS 5000 /* PING answer expected within (capped by timeout) */

/* gRPC status codes (grpc/doc/statuscodes.md) with the OTLP retry rule
 * (OTLP spec, "OTLP/gRPC Response"): X(code, reason suffix, retry). */
enum grpc_exp_retry { RETRY_NEVER, RETRY_ALWAYS, RETRY_WITH_INFO };
#define GRPC_EXP_CODES(X)                                                                          \
    X(0, ok, RETRY_NEVER)                                                                          \
    X(1, cancelled, RETRY_ALWAYS)                                                                  \
    X(2, unknown, RETRY_NEVER)                                                                     \
    X(3, invalid_argument, RETRY_NEVER)                                                            \
    X(4, deadline_exceeded, RETRY_ALWAYS)                                                          \
    X(5, not_found, RETRY_NEVER)                                                                   \
    X(6, already_exists, RETRY_NEVER)                                                              \
    X(7, permission_denied, RETRY_NEVER)                                                           \
    X(8, resource_exhausted, RETRY_WITH_INFO)                                                      \
    X(9, failed_precondition, RETRY_NEVER)                                                         \
    X(10, aborted, RETRY_ALWAYS)                                                                   \
    X(11, out_of_range, RETRY_ALWAYS)                                                              \
    X(12, unimplemented, RETRY_NEVER)                                                              \
    X(13, internal, RETRY_NEVER)                                                                   \
    X(14, unavailable, RETRY_ALWAYS)                                                               \
    X(15, data_loss, RETRY_ALWAYS)                                                                 \
    X(16, unauthenticated, RETRY_NEVER)

/* clang-format off */
enum {
#define X(c, n, r) GRPC_EXP_##n = c,
    GRPC_EXP_CODES(X)
#undef X
    GRPC_EXP_CODE_COUNT
};
/* clang-format on */

static const char *const grpc_code_names[] = {
#define X(c, n, r) [c] = #n,
    GRPC_EXP_CODES(X)
#undef X
};

static const uint8_t grpc_code_retry[] = {
#define X(c, n, r) [c] = r,
    GRPC_EXP_CODES(X)
#undef X
};

#define GRPC_STATUS_NONE (-1)      /* no grpc-status header */
#define GRPC_STATUS_MALFORMED (-2) /* grpc-status not a number: UNKNOWN */

enum call_state {
    CALL_FREE = 0,
    CALL_WAITING, /* submitted; waits for a ready connection */
    CALL_OPEN,    /* request submitted to the HTTP/2 session */
    CALL_DONE,    /* result ready, reported by the next report() */
};

/* One export in flight: a slot of the fixed table (batch.max_concurrent_exports). */
struct grpc_call {
    enum call_state state;
    struct batch *b;
    int32_t stream_id;    /* 0 until submitted to the session */
    bool headers_sent;    /* our HEADERS reached the wire: the server may have seen it */
    bool restarted;       /* already moved to a new stream once (refused, never processed) */
    uint64_t deadline_ms; /* submit time + exporter.timeout_ms */
    uint8_t prefix[GRPC_EXP_MSG_HDR];
    const uint8_t *msg; /* batch body or gz; borrowed */
    size_t msg_len;
    size_t off;      /* bytes of prefix + msg handed to nghttp2 */
    struct buf gz;   /* compressed message of this attempt */
    struct buf resp; /* response DATA (gRPC-framed), at most GRPC_EXP_RESP_MAX */
    /* response */
    int http_status;
    int grpc_status;
    bool grpc_ctype;   /* content-type application/grpc[+proto] */
    bool resp_gzip;    /* grpc-encoding: gzip */
    bool resp_enc_bad; /* grpc-encoding we cannot decode */
    bool has_retry_info;
    uint32_t retry_delay_ms;
    char grpc_message[256];
    char ctype[64];
    struct export_result r;
    /* A batch above exporter.grpc_max_msg_bytes goes out as several calls,
     * one after the other on this slot, each holding units [part_a, part_b)
     * of the split (regrouped under their Resource and Scope). */
    bool split_active;
    struct otlp_split *split; /* NULL until a batch first needs it */
    struct buf part;          /* the current part's request */
    size_t part_a, part_b, n_units;
    uint64_t part_items;
    uint64_t delivered, rejected; /* over the parts that finished OK */
};

enum conn_state { CONN_NONE, CONN_CONNECTING, CONN_HANDSHAKE, CONN_READY };

struct grpc_meta {
    char *name; /* lower case */
    char *value;
};

struct grpc_exp {
    /* configuration */
    char *host; /* as connect() needs it: no brackets */
    char *port;
    char *authority; /* :authority, host[:port] */
    char *tls_name;  /* SNI and verified name; NULL for h2c */
    bool tls;
    bool insecure;
    bool tls_name_is_ip;
    uint32_t timeout_ms;
    uint64_t max_msg; /* exporter.grpc_max_msg_bytes (uncompressed) */
    char endpoint_shown[256];
    const char *paths[OTLP_SIGNAL_COUNT];
    struct grpc_meta meta[CONFIG_MAX_KV];
    unsigned n_meta;
    bool own_user_agent;     /* no user-agent among the configured headers */
    struct compress_ctx *cz; /* request gzip and response inflate; NULL until needed */
    bool gzip;
    SSL_CTX *ssl_ctx;
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    /* the connection */
    enum conn_state cs;
    int fd;
    struct addrinfo *ai_list, *ai_next;
    int last_connect_errno;
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    nghttp2_session *sess;
    bool goaway;
    uint64_t last_recv_ms;     /* bytes last arrived */
    uint64_t ping_deadline_ms; /* PING sent after a silent timeout; 0: none */
    bool closing;              /* ignore nghttp2 callbacks while the session is deleted */
    struct buf out;            /* bytes for the socket */
    size_t out_off;
    struct buf inflated; /* scratch for a compressed response */
    /* calls */
    struct grpc_call *calls;
    unsigned n_calls;
    unsigned in_flight;
    int efd; /* wakeup() */
    uint8_t rbuf[GRPC_EXP_RECV_CHUNK];
};

static void grpc_destroy(void *state);

static bool set(const char *s)
{
    return s != NULL && *s != '\0';
}

/* ---- small decoders for response headers ---- */

static int b64_val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Base64 as gRPC sends -bin values (padding optional; the URL-safe alphabet
 * accepted too). Returns the decoded length, or -EINVAL / -EMSGSIZE. */
static ssize_t b64_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    while (len > 0 && in[len - 1] == '=')
        len--;
    size_t n = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_val(in[i]);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= cap)
                return -EMSGSIZE;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return (ssize_t)n;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* grpc-message is percent-encoded (PROTOCOL-HTTP2.md); decode it and
 * replace control characters by '?'. */
static void percent_decode(const uint8_t *v, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap; i++) {
        uint8_t c = v[i];
        if (c == '%' && i + 2 < len && hexval(v[i + 1]) >= 0 && hexval(v[i + 2]) >= 0) {
            c = (uint8_t)(hexval(v[i + 1]) << 4 | hexval(v[i + 2]));
            i += 2;
        }
        out[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    out[n] = '\0';
}

/* A protobuf field reader just big enough for google.rpc.Status. */
struct pbf {
    uint32_t num;
    unsigned wt;
    uint64_t v;
    const uint8_t *p;
    size_t len;
};

static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            return -EINVAL;
        uint8_t c = *(*p)++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -EINVAL;
}

static int pb_field(const uint8_t **p, const uint8_t *end, struct pbf *f)
{
    uint64_t key;
    if (pb_varint(p, end, &key) < 0 || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
        return -EINVAL;
    f->num = (uint32_t)(key >> 3);
    f->wt = (unsigned)(key & 7);
    switch (f->wt) {
    case 0:
        return pb_varint(p, end, &f->v);
    case 1:
    case 5: {
        size_t n = f->wt == 1 ? 8 : 4;
        if ((size_t)(end - *p) < n)
            return -EINVAL;
        *p += n;
        return 0;
    }
    case 2:
        if (pb_varint(p, end, &f->v) < 0 || f->v > (uint64_t)(end - *p))
            return -EINVAL;
        f->p = *p;
        f->len = (size_t)f->v;
        *p += f->len;
        return 0;
    default:
        return -EINVAL;
    }
}

/* google.rpc.RetryInfo { google.protobuf.Duration retry_delay = 1; } */
static int parse_retry_info(const uint8_t *p, const uint8_t *end, uint32_t *ms)
{
    uint64_t secs = 0, nanos = 0;
    while (p < end) {
        struct pbf f;
        if (pb_field(&p, end, &f) < 0)
            return -EINVAL;
        if (f.num != 1 || f.wt != 2)
            continue;
        const uint8_t *q = f.p, *qend = f.p + f.len;
        while (q < qend) {
            struct pbf g;
            if (pb_field(&q, qend, &g) < 0)
                return -EINVAL;
            if (g.num == 1 && g.wt == 0)
                secs = g.v;
            else if (g.num == 2 && g.wt == 0)
                nanos = g.v;
        }
    }
    if ((int64_t)secs < 0 || (int32_t)nanos < 0) {
        *ms = 0;
        return 0;
    }
    uint64_t total = secs * 1000u + (uint32_t)nanos / 1000000u;
    if (secs > GRPC_EXP_RETRY_DELAY_MAX_MS / 1000u || total > GRPC_EXP_RETRY_DELAY_MAX_MS)
        total = GRPC_EXP_RETRY_DELAY_MAX_MS;
    *ms = (uint32_t)total;
    return 0;
}

/* grpc-status-details-bin: google.rpc.Status { int32 code = 1; string
 * message = 2; repeated google.protobuf.Any details = 3; }. Takes the
 * message when grpc-message gave none, and a google.rpc.RetryInfo detail. */
static void parse_status_details(struct grpc_call *c, const uint8_t *v, size_t len)
{
    uint8_t raw[GRPC_EXP_DETAILS_MAX];
    ssize_t n = b64_decode(v, len, raw, sizeof(raw));
    if (n < 0) {
        log_debug("grpc exporter: undecodable grpc-status-details-bin", "bytes=%zu", len);
        return;
    }
    static const char retry_type[] = "type.googleapis.com/google.rpc.RetryInfo";
    const uint8_t *p = raw, *end = raw + n;
    while (p < end) {
        struct pbf f;
        if (pb_field(&p, end, &f) < 0)
            return;
        if (f.num == 2 && f.wt == 2 && c->grpc_message[0] == '\0') {
            percent_decode(f.p, f.len, c->grpc_message, sizeof(c->grpc_message));
        } else if (f.num == 3 && f.wt == 2) {
            const uint8_t *q = f.p, *qend = f.p + f.len;
            bool is_retry = false;
            const uint8_t *val = NULL;
            size_t vlen = 0;
            while (q < qend) {
                struct pbf g;
                if (pb_field(&q, qend, &g) < 0)
                    return;
                if (g.num == 1 && g.wt == 2)
                    is_retry =
                        g.len == sizeof(retry_type) - 1 && memcmp(g.p, retry_type, g.len) == 0;
                else if (g.num == 2 && g.wt == 2)
                    val = g.p, vlen = g.len;
            }
            uint32_t ms;
            if (is_retry && parse_retry_info(val, val + vlen, &ms) == 0) {
                c->has_retry_info = true;
                c->retry_delay_ms = ms;
            }
        }
    }
}

/* ---- result mapping ---- */

/* gRPC doc/http-grpc-status-mapping.md: for a response without grpc-status. */
static int http_to_grpc(int http_status)
{
    switch (http_status) {
    case 400:
        return GRPC_EXP_internal;
    case 401:
        return GRPC_EXP_unauthenticated;
    case 403:
        return GRPC_EXP_permission_denied;
    case 404:
        return GRPC_EXP_unimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
        return GRPC_EXP_unavailable;
    default:
        return GRPC_EXP_unknown;
    }
}

/* RST_STREAM error codes (gRPC PROTOCOL-HTTP2.md, "Errors"). */
static int h2_error_to_grpc(uint32_t err)
{
    switch (err) {
    case NGHTTP2_REFUSED_STREAM:
        return GRPC_EXP_unavailable;
    case NGHTTP2_CANCEL:
        return GRPC_EXP_cancelled;
    case NGHTTP2_ENHANCE_YOUR_CALM:
        return GRPC_EXP_resource_exhausted;
    case NGHTTP2_INADEQUATE_SECURITY:
        return GRPC_EXP_permission_denied;
    default:
        return GRPC_EXP_internal;
    }
}

/* Decode the response message of an OK call into partial success. */
static void ok_result(struct grpc_exp *h, struct grpc_call *c, struct export_result *r)
{
    r->status = EXPORT_OK;
    const uint8_t *d = c->resp.data;
    size_t n = c->resp.len;
    if (n == 0)
        return; /* no message: nothing rejected */
    if (n < GRPC_EXP_MSG_HDR) {
        log_debug("grpc exporter: truncated response message", "bytes=%zu", n);
        return;
    }
    uint32_t mlen = (uint32_t)d[1] << 24 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 8 | d[4];
    if ((size_t)mlen > n - GRPC_EXP_MSG_HDR) {
        log_debug("grpc exporter: response message larger than kept", "bytes=%" PRIu32, mlen);
        return;
    }
    const uint8_t *m = d + GRPC_EXP_MSG_HDR;
    if (d[0] & 1) {
        if (!c->resp_gzip || (h->cz == NULL && compress_ctx_create(&h->cz) < 0) ||
            compress_inflate(h->cz, COMPRESS_GZIP, m, mlen, &h->inflated, GRPC_EXP_RESP_MAX) < 0) {
            log_debug("grpc exporter: undecodable compressed response", "bytes=%" PRIu32, mlen);
            return;
        }
        m = h->inflated.data;
        mlen = (uint32_t)h->inflated.len;
    }
    if (export_parse_partial_success(m, mlen, &r->rejected_items, r->message, sizeof(r->message)) <
        0) {
        r->rejected_items = 0;
        r->message[0] = '\0';
        log_debug("grpc exporter: response is not an Export*ServiceResponse", "bytes=%" PRIu32,
                  mlen);
    }
    if (r->rejected_items > 0)
        snprintf(r->reason, sizeof(r->reason), "partial_success");
}

/*
 * OTLP spec, "OTLP/gRPC Response": OK is success (maybe partial); CANCELLED,
 * DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS are
 * retryable, RESOURCE_EXHAUSTED only with a RetryInfo; the rest permanent.
 * A RetryInfo's delay is the minimum wait. Without grpc-status the HTTP
 * status (gRPC's HTTP-to-status table) or the RST_STREAM code decides.
 */
static void call_result(struct grpc_exp *h, struct grpc_call *c, uint32_t h2_error)
{
    struct export_result *r = &c->r;
    memset(r, 0, sizeof(*r));
    r->http_status = c->http_status;
    int code;
    char http_reason[16] = "";
    const char *detail = c->grpc_message;
    char why[160] = "";
    if (c->grpc_status >= 0) {
        code = c->grpc_status;
    } else if (c->grpc_status == GRPC_STATUS_MALFORMED) {
        code = GRPC_EXP_unknown;
        snprintf(why, sizeof(why), "malformed grpc-status");
    } else if (c->http_status != 0 && c->http_status != 200) {
        code = http_to_grpc(c->http_status);
        snprintf(http_reason, sizeof(http_reason), "http_%d", c->http_status);
        snprintf(why, sizeof(why), "HTTP status %d without grpc-status", c->http_status);
    } else if (h2_error != NGHTTP2_NO_ERROR) {
        code = h2_error_to_grpc(h2_error);
        snprintf(why, sizeof(why), "stream reset by the server: %s",
                 nghttp2_http2_strerror(h2_error));
    } else if (c->http_status == 200 && !c->grpc_ctype) {
        code = GRPC_EXP_unknown;
        snprintf(why, sizeof(why), "response is not gRPC (content-type '%s')", c->ctype);
    } else {
        code = GRPC_EXP_internal;
        snprintf(why, sizeof(why), "server closed the stream without grpc-status");
    }
    if (code == GRPC_EXP_ok && c->resp_enc_bad) {
        code = GRPC_EXP_internal;
        snprintf(why, sizeof(why), "response grpc-encoding not supported");
    }
    if (code == GRPC_EXP_ok) {
        ok_result(h, c, r);
        return;
    }
    enum grpc_exp_retry rule = code < GRPC_EXP_CODE_COUNT ? grpc_code_retry[code] : RETRY_NEVER;
    bool retryable = rule == RETRY_ALWAYS || (rule == RETRY_WITH_INFO && c->has_retry_info);
    r->status = retryable ? EXPORT_RETRYABLE : EXPORT_PERMANENT;
    if (retryable && c->has_retry_info)
        r->retry_after_ms = c->retry_delay_ms;
    if (http_reason[0] != '\0')
        snprintf(r->reason, sizeof(r->reason), "%s", http_reason);
    else if (code < GRPC_EXP_CODE_COUNT)
        snprintf(r->reason, sizeof(r->reason), "grpc_%s", grpc_code_names[code]);
    else
        snprintf(r->reason, sizeof(r->reason), "grpc_code_%d", code);
    snprintf(r->message, sizeof(r->message), "%s", detail[0] != '\0' ? detail : why);
}

/* A call ends without a gRPC answer (transport, deadline). */
static void call_fail(struct grpc_call *c, enum export_status st, const char *reason,
                      const char *msg)
{
    memset(&c->r, 0, sizeof(c->r));
    c->r.status = st;
    c->r.http_status = c->http_status;
    snprintf(c->r.reason, sizeof(c->r.reason), "%s", reason);
    snprintf(c->r.message, sizeof(c->r.message), "%s", msg);
    c->state = CALL_DONE;
    c->stream_id = 0;
}

static void call_clear_response(struct grpc_call *c)
{
    c->http_status = 0;
    c->grpc_status = GRPC_STATUS_NONE;
    c->grpc_ctype = c->resp_gzip = c->resp_enc_bad = c->has_retry_info = false;
    c->retry_delay_ms = 0;
    c->grpc_message[0] = c->ctype[0] = '\0';
    buf_reset(&c->resp);
}

/* Back to the waiting list for a new stream: the server never processed
 * the request (refused stream, GOAWAY above its id, connection lost before
 * our HEADERS left). Once per call; the second time it is an error. */
static bool call_restart(struct grpc_call *c)
{
    if (c->restarted)
        return false;
    c->restarted = true;
    c->state = CALL_WAITING;
    c->stream_id = 0;
    c->headers_sent = false;
    c->off = 0;
    call_clear_response(c);
    return true;
}

/* ---- nghttp2 callbacks: they only record; completions are reported later ---- */

static struct grpc_call *call_of(struct grpc_exp *h, nghttp2_session *s, int32_t id)
{
    if (h->closing)
        return NULL;
    struct grpc_call *c = nghttp2_session_get_stream_user_data(s, id);
    return (c != NULL && c->state == CALL_OPEN && c->stream_id == id) ? c : NULL;
}

static struct grpc_call *call_by_id(struct grpc_exp *h, int32_t id)
{
    for (unsigned i = 0; i < h->n_calls; i++) {
        if (h->calls[i].state == CALL_OPEN && h->calls[i].stream_id == id)
            return &h->calls[i];
    }
    return NULL;
}

static bool name_is(const uint8_t *n, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(n, lit, len) == 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *arg)
{
    (void)flags;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct grpc_call *c = call_of(arg, s, f->hd.stream_id);
    if (c == NULL)
        return 0;
    if (name_is(name, namelen, ":status")) {
        int st = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            st = st * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
        if (st >= 200) /* 1xx are interim */
            c->http_status = st;
    } else if (name_is(name, namelen, "content-type")) {
        size_t k = BASE_MIN(valuelen, sizeof(c->ctype) - 1);
        for (size_t i = 0; i < k; i++)
            c->ctype[i] = (value[i] < 0x20 || value[i] >= 0x7f) ? '?' : (char)value[i];
        c->ctype[k] = '\0';
        c->grpc_ctype = valuelen >= 16 &&
                        strncasecmp((const char *)value, "application/grpc", 16) == 0 &&
                        (valuelen == 16 || value[16] == '+' || value[16] == ';');
    } else if (name_is(name, namelen, "grpc-status")) {
        int st = 0;
        bool ok = valuelen > 0 && valuelen <= 5;
        for (size_t i = 0; ok && i < valuelen; i++) {
            ok = value[i] >= '0' && value[i] <= '9';
            st = st * 10 + (value[i] - '0');
        }
        c->grpc_status = ok ? st : GRPC_STATUS_MALFORMED;
    } else if (name_is(name, namelen, "grpc-message")) {
        percent_decode(value, valuelen, c->grpc_message, sizeof(c->grpc_message));
    } else if (name_is(name, namelen, "grpc-status-details-bin")) {
        parse_status_details(c, value, valuelen);
    } else if (name_is(name, namelen, "grpc-encoding")) {
        c->resp_gzip = name_is(value, valuelen, "gzip");
        c->resp_enc_bad = !c->resp_gzip && !name_is(value, valuelen, "identity");
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *arg)
{
    (void)flags;
    struct grpc_call *c = call_of(arg, s, id);
    if (c == NULL)
        return 0;
    size_t room = GRPC_EXP_RESP_MAX > c->resp.len ? GRPC_EXP_RESP_MAX - c->resp.len : 0;
    if (room > 0)
        (void)buf_append(&c->resp, data, BASE_MIN(room, len)); /* -ENOMEM: no partial success */
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *arg)
{
    struct grpc_exp *h = arg;
    struct grpc_call *c = call_of(h, s, id);
    if (c == NULL)
        return 0;
    if (c->grpc_status == GRPC_STATUS_NONE && c->http_status == 0 &&
        error_code == NGHTTP2_REFUSED_STREAM && call_restart(c))
        return 0; /* RFC 9113 8.7: refused streams were not processed; retry at once */
    call_result(h, c, error_code);
    c->state = CALL_DONE;
    c->stream_id = 0;
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    (void)s;
    struct grpc_exp *h = arg;
    if (f->hd.type == NGHTTP2_HEADERS && !h->closing) {
        struct grpc_call *c = call_by_id(h, f->hd.stream_id);
        if (c != NULL)
            c->headers_sent = true;
    }
    return 0;
}

/* A request that never left (GOAWAY arrived first): not processed. */
static int on_frame_not_send(nghttp2_session *s, const nghttp2_frame *f, int lib_error, void *arg)
{
    (void)s;
    struct grpc_exp *h = arg;
    if (f->hd.type != NGHTTP2_HEADERS || h->closing)
        return 0;
    struct grpc_call *c = call_by_id(h, f->hd.stream_id);
    if (c != NULL && !call_restart(c))
        call_fail(c, EXPORT_RETRYABLE, "connection_error", nghttp2_strerror(lib_error));
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    (void)s;
    struct grpc_exp *h = arg;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        h->goaway = true; /* no new streams here; nghttp2 refuses those above last_stream_id */
        log_debug("grpc exporter: GOAWAY from upstream", "error=%s last_stream_id=%d",
                  nghttp2_http2_strerror(f->goaway.error_code), f->goaway.last_stream_id);
    }
    return 0;
}

/* Serve prefix + message to nghttp2 as DATA. The call is looked up by the
 * stream id so a stream abandoned after its deadline never reads a reused slot. */
static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *out, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *arg)
{
    (void)s, (void)arg;
    struct grpc_call *c = src->ptr;
    if (c == NULL || c->state != CALL_OPEN || c->stream_id != id)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream only */
    size_t total = GRPC_EXP_MSG_HDR + c->msg_len, n = 0;
    while (n < len && c->off < total) {
        size_t k;
        if (c->off < GRPC_EXP_MSG_HDR) {
            k = BASE_MIN(len - n, GRPC_EXP_MSG_HDR - c->off);
            memcpy(out + n, c->prefix + c->off, k);
        } else {
            size_t mo = c->off - GRPC_EXP_MSG_HDR;
            k = BASE_MIN(len - n, c->msg_len - mo);
            memcpy(out + n, c->msg + mo, k);
        }
        n += k;
        c->off += k;
    }
    if (c->off == total)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ---- the connection ---- */

/*
 * Tear the connection down. Calls on it end RETRYABLE with `reason`, except
 * those whose HEADERS never left, which go back to waiting for the next
 * connection; waiting calls end too when `fail_waiting` (the connection
 * could not be made: they would only try the same again).
 */
static void conn_close(struct grpc_exp *h, const char *reason, const char *msg, bool fail_waiting)
{
    if (h->sess != NULL) {
        h->closing = true;
        nghttp2_session_del(h->sess);
        h->sess = NULL;
        h->closing = false;
    }
    if (h->ssl != NULL) {
        SSL_free(h->ssl); /* frees the BIOs */
        h->ssl = NULL;
        h->rbio = h->wbio = NULL;
    }
    if (h->fd >= 0) {
        close(h->fd);
        h->fd = -1;
    }
    if (h->ai_list != NULL) {
        freeaddrinfo(h->ai_list);
        h->ai_list = h->ai_next = NULL;
    }
    buf_reset(&h->out);
    h->out_off = 0;
    h->goaway = false;
    h->ping_deadline_ms = 0;
    h->cs = CONN_NONE;
    for (unsigned i = 0; i < h->n_calls; i++) {
        struct grpc_call *c = &h->calls[i];
        if (c->state == CALL_OPEN) {
            if (c->headers_sent || !call_restart(c))
                call_fail(c, EXPORT_RETRYABLE, reason, msg);
        } else if (c->state == CALL_WAITING && fail_waiting) {
            call_fail(c, EXPORT_RETRYABLE, reason, msg);
        }
    }
}

static void conn_fail(struct grpc_exp *h, const char *reason, const char *msg)
{
    bool before_ready = h->cs != CONN_READY;
    log_debug("grpc exporter: connection failed", "endpoint=%s reason=%s error=%s",
              h->endpoint_shown, reason, msg);
    conn_close(h, reason, msg, before_ready);
}

static void tls_fail(struct grpc_exp *h, const char *what)
{
    char msg[200];
    long vr = h->ssl != NULL ? SSL_get_verify_result(h->ssl) : X509_V_OK;
    unsigned long e = ERR_get_error();
    if (vr != X509_V_OK)
        snprintf(msg, sizeof(msg), "%s: certificate verify failed: %s", what,
                 X509_verify_cert_error_string(vr));
    else if (e != 0)
        snprintf(msg, sizeof(msg), "%s: %s", what, ERR_reason_error_string(e));
    else
        snprintf(msg, sizeof(msg), "%s", what);
    ERR_clear_error();
    conn_fail(h, "tls_error", msg);
}

/* Move what OpenSSL wrote into its memory BIO to the socket buffer. */
static int tls_drain(struct grpc_exp *h)
{
    size_t pending;
    while ((pending = BIO_ctrl_pending(h->wbio)) > 0) {
        if (buf_reserve(&h->out, pending) < 0)
            return -ENOMEM;
        int k = BIO_read(h->wbio, h->out.data + h->out.len, (int)pending);
        if (k <= 0)
            break;
        h->out.len += (size_t)k;
    }
    return 0;
}

static int session_start(struct grpc_exp *h)
{
    int rv = nghttp2_session_client_new2(&h->sess, h->cbs, h, h->opt);
    if (rv != 0) {
        h->sess = NULL;
        return -ENOMEM;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, GRPC_EXP_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 65536},
    };
    if (nghttp2_submit_settings(h->sess, NGHTTP2_FLAG_NONE, iv, ARRAY_SIZE(iv)) != 0 ||
        nghttp2_session_set_local_window_size(h->sess, NGHTTP2_FLAG_NONE, 0, GRPC_EXP_WINDOW) != 0)
        return -ENOMEM;
    h->cs = CONN_READY;
    log_debug("grpc exporter: connected", "endpoint=%s tls=%d", h->endpoint_shown, h->tls);
    return 0;
}

static void handshake_step(struct grpc_exp *h)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(h->ssl);
    if (tls_drain(h) < 0) {
        conn_fail(h, "transport_error", "out of memory");
        return;
    }
    if (rc != 1) {
        int err = SSL_get_error(h->ssl, rc);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
            tls_fail(h, "TLS handshake failed");
        return;
    }
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(h->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        conn_fail(h, "tls_error", "server did not negotiate HTTP/2 (ALPN h2)");
        return;
    }
    if (session_start(h) < 0)
        conn_fail(h, "transport_error", "cannot create HTTP/2 session");
}

static int tls_begin(struct grpc_exp *h)
{
    h->ssl = SSL_new(h->ssl_ctx);
    BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
    if (h->ssl == NULL || r == NULL || w == NULL) {
        BIO_free(r);
        BIO_free(w);
        return -ENOMEM;
    }
    SSL_set_bio(h->ssl, r, w);
    h->rbio = r;
    h->wbio = w;
    SSL_set_connect_state(h->ssl);
    if (!h->tls_name_is_ip && !SSL_set_tlsext_host_name(h->ssl, h->tls_name))
        return -ENOMEM;
    if (!h->insecure) {
        int ok = h->tls_name_is_ip
                     ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(h->ssl), h->tls_name)
                     : SSL_set1_host(h->ssl, h->tls_name);
        if (!ok)
            return -ENOMEM;
    }
    h->cs = CONN_HANDSHAKE;
    handshake_step(h);
    return 0;
}

/* TCP is up: TLS or straight to HTTP/2 (prior knowledge). */
static void conn_established(struct grpc_exp *h)
{
    int one = 1;
    (void)setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(h->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    freeaddrinfo(h->ai_list);
    h->ai_list = h->ai_next = NULL;
    if (h->tls) {
        if (tls_begin(h) < 0)
            conn_fail(h, "tls_error", "cannot set up TLS");
    } else if (session_start(h) < 0) {
        conn_fail(h, "transport_error", "cannot create HTTP/2 session");
    }
}

/* Non-blocking connect() to the next resolved address. */
static void connect_next(struct grpc_exp *h)
{
    while (h->ai_next != NULL) {
        struct addrinfo *a = h->ai_next;
        h->ai_next = a->ai_next;
        int fd =
            socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            h->last_connect_errno = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            h->fd = fd;
            conn_established(h);
            return;
        }
        if (errno == EINPROGRESS) {
            h->fd = fd;
            h->cs = CONN_CONNECTING;
            return;
        }
        h->last_connect_errno = errno;
        close(fd);
    }
    char msg[200];
    snprintf(msg, sizeof(msg), "connect to %s:%s: %s", h->host, h->port,
             strerror(h->last_connect_errno ? h->last_connect_errno : ECONNREFUSED));
    h->cs = CONN_CONNECTING; /* so conn_fail() fails the waiting calls */
    conn_fail(h, "connect_failed", msg);
}

/* Resolve and start connecting. getaddrinfo() blocks the export thread for
 * the resolver's time; a literal address or /etc/hosts name does not. */
static void conn_start(struct grpc_exp *h)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    int rc = getaddrinfo(h->host, h->port, &hints, &h->ai_list);
    if (rc != 0) {
        h->ai_list = NULL;
        char msg[200];
        snprintf(msg, sizeof(msg), "resolve %s: %s", h->host, gai_strerror(rc));
        h->cs = CONN_CONNECTING;
        conn_fail(h, "resolve_failed", msg);
        return;
    }
    h->ai_next = h->ai_list;
    h->last_connect_errno = 0;
    connect_next(h);
}

static void connect_check(struct grpc_exp *h)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == 0) {
        conn_established(h);
        return;
    }
    h->last_connect_errno = err;
    close(h->fd);
    h->fd = -1;
    connect_next(h);
}

/* Start the stream of a waiting call on the ready session. */
static void call_start(struct grpc_exp *h, struct grpc_call *c, uint64_t now)
{
    char timeout[24];
    uint64_t left = c->deadline_ms > now ? c->deadline_ms - now : 1;
    snprintf(timeout, sizeof(timeout), "%" PRIu64 "m",
             left); /* <= 8 digits: timeout_ms <= 600000 */
    const char *path = h->paths[c->b->signal];
    nghttp2_nv nv[GRPC_EXP_META_MAX + CONFIG_MAX_KV];
    size_t n = 0;
#define NV(nm, val)                                                                                \
    nv[n++] = (nghttp2_nv){(uint8_t *)(nm), (uint8_t *)(val), strlen(nm), strlen(val),             \
                           NGHTTP2_NV_FLAG_NONE}
    NV(":method", "POST");
    NV(":scheme", h->tls ? "https" : "http");
    NV(":path", path);
    NV(":authority", h->authority);
    NV("content-type", "application/grpc");
    NV("te", "trailers");
    NV("grpc-timeout", timeout);
    NV("grpc-accept-encoding", "identity,gzip");
    if (h->gzip)
        NV("grpc-encoding", "gzip");
    if (h->own_user_agent)
        NV("user-agent", GRPC_EXP_USER_AGENT);
    for (unsigned i = 0; i < h->n_meta; i++)
        NV(h->meta[i].name, h->meta[i].value);
#undef NV
    nghttp2_data_provider prd = {.source.ptr = c, .read_callback = read_body};
    c->state = CALL_OPEN;
    c->off = 0;
    c->headers_sent = false;
    int32_t id = nghttp2_submit_request(h->sess, NULL, nv, n, &prd, c);
    if (id < 0) {
        call_fail(c, EXPORT_RETRYABLE, "transport_error", nghttp2_strerror(id));
        return;
    }
    c->stream_id = id;
}

/* Pull frames from nghttp2 and write what the socket takes. */
static void conn_flush(struct grpc_exp *h)
{
    for (;;) {
        while (h->cs == CONN_READY && h->out.len - h->out_off < GRPC_EXP_OUT_HIGH) {
            const uint8_t *data;
            ssize_t k = nghttp2_session_mem_send(h->sess, &data);
            if (k < 0) {
                conn_fail(h, "connection_error", nghttp2_strerror((int)k));
                return;
            }
            if (k == 0)
                break;
            if (h->tls) {
                ERR_clear_error();
                if (SSL_write(h->ssl, data, (int)k) != (int)k) {
                    tls_fail(h, "TLS write failed");
                    return;
                }
                if (tls_drain(h) < 0) {
                    conn_fail(h, "transport_error", "out of memory");
                    return;
                }
            } else if (buf_append(&h->out, data, (size_t)k) < 0) {
                conn_fail(h, "transport_error", "out of memory");
                return;
            }
        }
        if (h->fd < 0 || h->cs == CONN_CONNECTING || h->out_off == h->out.len)
            return;
        ssize_t w = send(h->fd, h->out.data + h->out_off, h->out.len - h->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            conn_fail(h, "connection_error", strerror(errno));
            return;
        }
        h->out_off += (size_t)w;
        if (h->out_off == h->out.len) {
            buf_reset(&h->out);
            h->out_off = 0;
        } else {
            return; /* the socket is full: wait for POLLOUT */
        }
    }
}

/* Bytes from the socket into TLS and/or nghttp2. */
static void conn_feed(struct grpc_exp *h, const uint8_t *data, size_t n)
{
    if (h->tls) {
        if (BIO_write(h->rbio, data, (int)n) != (int)n) {
            conn_fail(h, "transport_error", "out of memory");
            return;
        }
        if (h->cs == CONN_HANDSHAKE) {
            handshake_step(h);
            if (h->cs != CONN_READY)
                return;
        }
        for (;;) {
            ERR_clear_error();
            int k = SSL_read(h->ssl, h->rbuf, sizeof(h->rbuf));
            if (k <= 0) {
                int err = SSL_get_error(h->ssl, k);
                if (tls_drain(h) < 0) {
                    conn_fail(h, "transport_error", "out of memory");
                } else if (err == SSL_ERROR_ZERO_RETURN) {
                    conn_fail(h, "connection_error", "connection closed by the server");
                } else if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
                    tls_fail(h, "TLS read failed");
                }
                return;
            }
            ssize_t rv = nghttp2_session_mem_recv(h->sess, h->rbuf, (size_t)k);
            if (rv < 0) {
                conn_fail(h, "connection_error", nghttp2_strerror((int)rv));
                return;
            }
        }
    } else {
        ssize_t rv = nghttp2_session_mem_recv(h->sess, data, n);
        if (rv < 0)
            conn_fail(h, "connection_error", nghttp2_strerror((int)rv));
    }
}

static void conn_read(struct grpc_exp *h)
{
    for (unsigned i = 0; i < GRPC_EXP_RECV_BURST && h->fd >= 0; i++) {
        uint8_t buf[GRPC_EXP_RECV_CHUNK];
        ssize_t k = recv(h->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return;
            conn_fail(h, "connection_error", strerror(errno));
            return;
        }
        if (k == 0) {
            conn_fail(h, "connection_error", "connection closed by the server");
            return;
        }
        h->last_recv_ms = base_now_ms();
        h->ping_deadline_ms = 0;
        conn_feed(h, buf, (size_t)k);
        if ((size_t)k < sizeof(buf))
            return;
    }
}

static bool any_call(const struct grpc_exp *h, enum call_state st)
{
    for (unsigned i = 0; i < h->n_calls; i++) {
        if (h->calls[i].state == st)
            return true;
    }
    return false;
}

/* Everything that needs no waiting: connect for waiting calls, start their
 * streams, write, and retire a connection that is finished (GOAWAY, closed). */
static void conn_advance(struct grpc_exp *h)
{
    for (unsigned round = 0; round < 2; round++) {
        if (h->cs == CONN_NONE && any_call(h, CALL_WAITING))
            conn_start(h);
        if (h->cs == CONN_READY && !h->goaway) {
            uint64_t now = base_now_ms();
            for (unsigned i = 0; i < h->n_calls; i++) {
                if (h->calls[i].state == CALL_WAITING)
                    call_start(h, &h->calls[i], now);
            }
        }
        conn_flush(h);
        if (h->cs != CONN_READY || h->out_off != h->out.len)
            return;
        bool finished = !nghttp2_session_want_read(h->sess) && !nghttp2_session_want_write(h->sess);
        if (!finished && !(h->goaway && !any_call(h, CALL_OPEN)))
            return;
        log_debug("grpc exporter: connection finished", "endpoint=%s goaway=%d", h->endpoint_shown,
                  h->goaway);
        conn_close(h, "connection_error", "connection closed", false);
    }
}

/* Calls past their deadline end as "timeout"; their stream is cancelled. */
static void expire(struct grpc_exp *h, uint64_t now)
{
    for (unsigned i = 0; i < h->n_calls; i++) {
        struct grpc_call *c = &h->calls[i];
        if ((c->state != CALL_WAITING && c->state != CALL_OPEN) || c->deadline_ms > now)
            continue;
        char msg[160];
        const char *what = h->cs == CONN_CONNECTING  ? "connect"
                           : h->cs == CONN_HANDSHAKE ? "TLS handshake"
                                                     : "response";
        snprintf(msg, sizeof(msg), "no %s within exporter.timeout_ms (%" PRIu32 " ms)", what,
                 h->timeout_ms);
        if (c->state == CALL_OPEN && h->sess != NULL && c->stream_id > 0 &&
            h->last_recv_ms < c->deadline_ms - h->timeout_ms && h->ping_deadline_ms == 0 &&
            nghttp2_submit_ping(h->sess, NGHTTP2_FLAG_NONE, NULL) == 0) {
            /* nothing heard since the call started: is the connection alive? */
            h->ping_deadline_ms = now + BASE_MIN(h->timeout_ms, GRPC_EXP_PING_TIMEOUT_MS);
        }
        if (c->state == CALL_OPEN && h->sess != NULL && c->stream_id > 0) {
            (void)nghttp2_submit_rst_stream(h->sess, NGHTTP2_FLAG_NONE, c->stream_id,
                                            NGHTTP2_CANCEL);
            (void)nghttp2_session_set_stream_user_data(h->sess, c->stream_id, NULL);
        }
        call_fail(c, EXPORT_RETRYABLE, "timeout", msg);
    }
    if (h->ping_deadline_ms != 0 && now >= h->ping_deadline_ms) {
        conn_fail(h, "timeout", "no answer to PING: connection presumed dead");
        return;
    }
    /* a connection attempt nobody waits for any more is abandoned */
    if ((h->cs == CONN_CONNECTING || h->cs == CONN_HANDSHAKE) && !any_call(h, CALL_WAITING) &&
        !any_call(h, CALL_OPEN))
        conn_close(h, "timeout", "", false);
}

static uint64_t next_deadline(const struct grpc_exp *h)
{
    uint64_t d = UINT64_MAX;
    for (unsigned i = 0; i < h->n_calls; i++) {
        const struct grpc_call *c = &h->calls[i];
        if ((c->state == CALL_WAITING || c->state == CALL_OPEN) && c->deadline_ms < d)
            d = c->deadline_ms;
    }
    if (h->ping_deadline_ms != 0 && h->ping_deadline_ms < d)
        d = h->ping_deadline_ms;
    return d;
}

/* Report finished calls; done() may submit again, into any free slot. */
/* Frame (and with gzip compress) `msg` as the call's next request and put
 * the call on the waiting list with a fresh deadline. */
static int call_prepare(struct grpc_exp *h, struct grpc_call *c, const uint8_t *msg, size_t len)
{
    uint8_t flag = 0;
    if (h->gzip) {
        /* per attempt, like the HTTP exporter: the batch stays untouched */
        int rc = compress_gzip(h->cz, msg, len, &c->gz, 0);
        if (rc < 0)
            return rc == -EMSGSIZE ? -ENOMEM : rc;
        msg = c->gz.data;
        len = c->gz.len;
        flag = 1;
    }
    if (len > UINT32_MAX)
        return -EINVAL;
    c->prefix[0] = flag;
    c->prefix[1] = (uint8_t)(len >> 24);
    c->prefix[2] = (uint8_t)(len >> 16);
    c->prefix[3] = (uint8_t)(len >> 8);
    c->prefix[4] = (uint8_t)len;
    c->msg = msg;
    c->msg_len = len;
    c->restarted = false;
    c->stream_id = 0;
    c->headers_sent = false;
    c->off = 0;
    call_clear_response(c);
    c->state = CALL_WAITING;
    c->deadline_ms = base_now_ms() + h->timeout_ms;
    return 0;
}

/* Write units [part_a, the most that fit max_msg) into c->part. */
static int write_part(struct grpc_exp *h, struct grpc_call *c)
{
    c->part_b = otlp_split_fit(c->split, c->part_a, c->n_units, h->max_msg);
    c->part_items = otlp_split_items(c->split, c->part_a, c->part_b);
    buf_reset(&c->part);
    return otlp_split_write(c->split, c->part_a, c->part_b, &c->part);
}

/* A batch above max_msg: parse it into units and write the first part.
 * Returns 0; -EINVAL (not splittable); -ENOMEM. */
static int split_begin(struct grpc_exp *h, struct grpc_call *c, struct batch *b)
{
    int rc;
    if (c->split == NULL && (rc = otlp_split_create(&c->split)) < 0)
        return rc;
    if ((rc = otlp_split_parse(c->split, b->signal, b->body.data, b->body.len)) < 0 ||
        (rc = otlp_split_group(c->split, OTLP_SPLIT_ALL, NULL)) < 0)
        return rc;
    c->n_units = otlp_split_n_units(c->split);
    if (c->n_units < 2)
        return -EINVAL; /* one item: nothing to split */
    c->part_a = 0;
    if ((rc = write_part(h, c)) < 0)
        return rc;
    c->split_active = true;
    log_debug("grpc exporter: batch above grpc_max_msg_bytes sent in parts", "bytes=%zu units=%zu",
              b->body.len, c->n_units);
    return 0;
}

/*
 * A part of a split batch finished. OK with parts left: start the next one
 * and return true. Otherwise fold the parts into the batch's result and
 * return false: the last OK part reports the rejected items of all parts; a
 * failed part reports what the earlier parts delivered (delivered_items,
 * rejected_items) and leaves b->body holding the units not yet delivered,
 * which the runner retries, spools or drops as for any batch.
 */
static bool next_part_after(struct grpc_exp *h, struct grpc_call *c)
{
    struct export_result *r = &c->r;
    if (r->status == EXPORT_OK) {
        uint64_t rej = BASE_MIN(r->rejected_items, c->part_items);
        c->delivered += c->part_items - rej;
        c->rejected += rej;
        if (c->part_b < c->n_units) {
            c->part_a = c->part_b;
            if (write_part(h, c) == 0 && call_prepare(h, c, c->part.data, c->part.len) == 0)
                return true;
            call_fail(c, EXPORT_RETRYABLE, "encode_error", "cannot write the next part");
        } else {
            r->rejected_items = c->rejected;
            if (c->rejected > 0)
                snprintf(r->reason, sizeof(r->reason), "partial_success");
            c->split_active = false;
            return false;
        }
    }
    /* r failed for units [part_a, n_units): the batch shrinks to them. */
    c->split_active = false;
    buf_reset(&c->part);
    if (otlp_split_write(c->split, c->part_a, c->n_units, &c->part) < 0 ||
        (buf_reset(&c->b->body), buf_append(&c->b->body, c->part.data, c->part.len) < 0)) {
        /* the whole batch stays as it was: all of it is retried */
        log_warn("grpc exporter: cannot keep the undelivered rest of a split batch; it is sent "
                 "again whole",
                 "");
        return false;
    }
    r->delivered_items = c->delivered;
    r->rejected_items += c->rejected;
    return false;
}

static int report(struct grpc_exp *h, export_done_fn done, void *arg)
{
    int n = 0;
    for (unsigned i = 0; i < h->n_calls; i++) {
        struct grpc_call *c = &h->calls[i];
        if (c->state != CALL_DONE)
            continue;
        if (c->split_active && next_part_after(h, c))
            continue; /* the next part waits for a stream; nothing to report yet */
        struct export_result r = c->r;
        struct batch *b = c->b;
        c->b = NULL;
        c->state = CALL_FREE;
        c->stream_id = 0;
        h->in_flight--;
        done(arg, b, &r);
        n++;
    }
    return n;
}

/* ---- ops ---- */

static int grpc_submit(void *state, struct batch *b)
{
    struct grpc_exp *h = state;
    if (b == NULL || (unsigned)b->signal >= OTLP_SIGNAL_COUNT)
        return -EINVAL;
    struct grpc_call *c = NULL;
    for (unsigned i = 0; i < h->n_calls; i++) {
        if (h->calls[i].state == CALL_FREE) {
            c = &h->calls[i];
            break;
        }
    }
    if (c == NULL)
        return -EBUSY;
    static const uint8_t empty[1];
    const uint8_t *msg = b->body.data != NULL ? b->body.data : empty;
    size_t len = b->body.len;
    c->split_active = false;
    c->delivered = c->rejected = 0;
    if (len > h->max_msg) {
        int rc = split_begin(h, c, b);
        if (rc == 0) {
            msg = c->part.data;
            len = c->part.len;
        } else if (rc != -EINVAL) {
            return rc;
        } /* not splittable (malformed): sent whole, the server decides */
    }
    int rc = call_prepare(h, c, msg, len);
    if (rc < 0)
        return rc;
    c->b = b;
    h->in_flight++;
    return 0;
}

static int grpc_poll(void *state, int timeout_ms, export_done_fn done, void *arg)
{
    struct grpc_exp *h = state;
    uint64_t end = base_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    int n = 0;
    bool woke = false, polled = false;
    for (;;) {
        conn_advance(h);
        uint64_t now = base_now_ms();
        expire(h, now);
        n += report(h, done, arg);
        if (n > 0 || woke || (polled && now >= end))
            return n;
        uint64_t until = BASE_MIN(end, next_deadline(h));
        int wait = until > now ? (int)BASE_MIN(until - now, (uint64_t)INT32_MAX) : 0;
        struct pollfd pfd[2] = {{.fd = h->efd, .events = POLLIN}, {.fd = -1}};
        nfds_t nfds = 1;
        if (h->fd >= 0) {
            short ev = h->cs == CONN_CONNECTING ? POLLOUT : POLLIN;
            if (h->out_off != h->out.len)
                ev |= POLLOUT;
            pfd[1] = (struct pollfd){.fd = h->fd, .events = ev};
            nfds = 2;
        }
        int rc = poll(pfd, nfds, wait);
        polled = true;
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            log_error("grpc exporter: poll failed", "error=%s", strerror(err));
            return n > 0 ? n : -err;
        }
        if (pfd[0].revents & POLLIN) {
            uint64_t v;
            while (read(h->efd, &v, sizeof(v)) == (ssize_t)sizeof(v))
                ;
            woke = true;
        }
        if (nfds == 2 && pfd[1].revents != 0 && h->fd == pfd[1].fd) {
            if (h->cs == CONN_CONNECTING)
                connect_check(h);
            else if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))
                conn_read(h);
        }
    }
}

static void grpc_wakeup(void *state)
{
    struct grpc_exp *h = state;
    uint64_t one = 1;
    ssize_t w = write(h->efd, &one, sizeof(one)); /* EAGAIN: a wakeup is already pending */
    (void)w;
}

static void grpc_destroy(void *state)
{
    struct grpc_exp *h = state;
    if (h == NULL)
        return;
    h->closing = true;
    if (h->sess != NULL)
        nghttp2_session_del(h->sess);
    h->sess = NULL;
    SSL_free(h->ssl);
    if (h->fd >= 0)
        close(h->fd);
    if (h->ai_list != NULL)
        freeaddrinfo(h->ai_list);
    for (unsigned i = 0; h->calls != NULL && i < h->n_calls; i++) {
        buf_free(&h->calls[i].gz);
        buf_free(&h->calls[i].resp);
        buf_free(&h->calls[i].part);
        otlp_split_destroy(h->calls[i].split);
    }
    free(h->calls);
    for (unsigned i = 0; i < h->n_meta; i++) {
        free(h->meta[i].name);
        free(h->meta[i].value);
    }
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++)
        free((char *)h->paths[s]);
    buf_free(&h->out);
    buf_free(&h->inflated);
    if (h->efd >= 0)
        close(h->efd);
    if (h->cbs != NULL)
        nghttp2_session_callbacks_del(h->cbs);
    if (h->opt != NULL)
        nghttp2_option_del(h->opt);
    SSL_CTX_free(h->ssl_ctx);
    compress_ctx_destroy(h->cz);
    free(h->host);
    free(h->port);
    free(h->authority);
    free(h->tls_name);
    free(h);
}

static const struct exporter_ops grpc_ops = {
    .name = "grpc",
    .submit = grpc_submit,
    .poll = grpc_poll,
    .wakeup = grpc_wakeup,
    .destroy = grpc_destroy,
};

/* ---- set-up ---- */

/*
 * http://host[:port][/...] or https://...; IPv6 literals in brackets. The
 * OTLP/gRPC endpoint names a host and port only: a path, user info or query
 * is ignored with a warning. Default ports are the scheme's (80, 443).
 */
static int parse_endpoint(struct grpc_exp *h, const char *ep)
{
    const char *p;
    if (strncmp(ep, "http://", 7) == 0) {
        p = ep + 7;
    } else if (strncmp(ep, "https://", 8) == 0) {
        p = ep + 8;
        h->tls = true;
    } else {
        return -EINVAL;
    }
    size_t alen = strcspn(p, "/?#");
    const char *at = memchr(p, '@', alen);
    if (at != NULL) {
        log_warn("grpc exporter: user info in exporter.endpoint is ignored", "");
        alen -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    if (p[alen] != '\0' && strcmp(p + alen, "/") != 0)
        log_warn("grpc exporter: exporter.endpoint path/query ignored; OTLP/gRPC uses "
                 "/opentelemetry.proto.collector.<signal>.v1.<Service>/Export",
                 "");
    const char *host = p, *hend, *port = NULL;
    size_t plen = 0;
    if (alen > 0 && *p == '[') {
        const char *rb = memchr(p, ']', alen);
        if (rb == NULL)
            return -EINVAL;
        host = p + 1;
        hend = rb;
        if (rb + 1 < p + alen) {
            if (rb[1] != ':')
                return -EINVAL;
            port = rb + 2;
            plen = (size_t)(p + alen - port);
        }
    } else {
        const char *colon = memchr(p, ':', alen);
        hend = colon ? colon : p + alen;
        if (colon) {
            port = colon + 1;
            plen = (size_t)(p + alen - port);
        }
    }
    if (hend == host)
        return -EINVAL;
    unsigned long pn = h->tls ? 443 : 80;
    if (port != NULL) {
        if (plen == 0 || plen > 5)
            return -EINVAL;
        pn = 0;
        for (size_t i = 0; i < plen; i++) {
            if (port[i] < '0' || port[i] > '9')
                return -EINVAL;
            pn = pn * 10 + (unsigned long)(port[i] - '0');
        }
        if (pn == 0 || pn > 65535)
            return -EINVAL;
    }
    char pbuf[8];
    snprintf(pbuf, sizeof(pbuf), "%lu", pn);
    h->host = strndup(host, (size_t)(hend - host));
    h->port = strdup(pbuf);
    if (h->host == NULL || h->port == NULL)
        return -ENOMEM;
    bool v6 = strchr(h->host, ':') != NULL;
    snprintf(h->endpoint_shown, sizeof(h->endpoint_shown), "%s://%s%s%s:%s",
             h->tls ? "https" : "http", v6 ? "[" : "", h->host, v6 ? "]" : "", h->port);
    return 0;
}

static bool is_ip_literal(const char *s)
{
    unsigned char tmp[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

/* :authority is the name the server is addressed by: tls.server_name when
 * set (as the HTTP exporter sends it as Host), else the endpoint's host. */
static int build_authority(struct grpc_exp *h, const struct tls_client_config *t)
{
    const char *name = set(t->server_name) ? t->server_name : h->host;
    bool v6 = strchr(name, ':') != NULL;
    size_t n = strlen(name) + strlen(h->port) + 4;
    h->authority = malloc(n);
    if (h->authority == NULL)
        return -ENOMEM;
    snprintf(h->authority, n, "%s%s%s:%s", v6 ? "[" : "", name, v6 ? "]" : "", h->port);
    if (h->tls) {
        h->tls_name = strdup(name);
        if (h->tls_name == NULL)
            return -ENOMEM;
        h->tls_name_is_ip = is_ip_literal(name);
    }
    return 0;
}

static bool meta_name_ok(const char *k)
{
    if (*k == '\0')
        return false;
    for (const char *p = k; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

/* exporter.headers as gRPC metadata: names lower-cased (HTTP/2 requires
 * it); names gRPC or HTTP/2 reserve, and values that are not printable
 * ASCII, are skipped with a warning. A configured user-agent replaces ours. */
static int build_metadata(struct grpc_exp *h, const struct exporter_config *ec)
{
    static const char *const reserved[] = {"content-type",      "te",         "host",
                                           "connection",        "keep-alive", "proxy-connection",
                                           "transfer-encoding", "upgrade",    "content-length",
                                           "content-encoding"};
    h->own_user_agent = true;
    for (unsigned i = 0; i < ec->headers.n; i++) {
        const struct config_kv *kv = &ec->headers.items[i];
        const char *v = kv->value ? kv->value : "";
        char *name = strdup(kv->key ? kv->key : "");
        if (name == NULL)
            return -ENOMEM;
        for (char *p = name; *p; p++) {
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        }
        bool skip = !meta_name_ok(name) || strncmp(name, "grpc-", 5) == 0;
        for (size_t j = 0; !skip && j < ARRAY_SIZE(reserved); j++)
            skip = strcmp(name, reserved[j]) == 0;
        for (const char *p = v; !skip && *p; p++)
            skip = (unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e;
        if (skip) {
            log_warn("grpc exporter: header not usable as gRPC metadata, ignored", "header=%s",
                     kv->key ? kv->key : "");
            free(name);
            continue;
        }
        char *value = strdup(v);
        if (value == NULL) {
            free(name);
            return -ENOMEM;
        }
        if (strcmp(name, "user-agent") == 0)
            h->own_user_agent = false;
        h->meta[h->n_meta].name = name;
        h->meta[h->n_meta].value = value;
        h->n_meta++;
    }
    return 0;
}

static int build_paths(struct grpc_exp *h)
{
    static const char *const svc[OTLP_SIGNAL_COUNT] = {
        [OTLP_TRACES] = "trace.v1.TraceService",
        [OTLP_METRICS] = "metrics.v1.MetricsService",
        [OTLP_LOGS] = "logs.v1.LogsService",
    };
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        char p[128];
        snprintf(p, sizeof(p), "/opentelemetry.proto.collector.%s/Export", svc[s]);
        h->paths[s] = strdup(p);
        if (h->paths[s] == NULL)
            return -ENOMEM;
    }
    return 0;
}

static int tls_setup(struct grpc_exp *h, const struct tls_client_config *t)
{
    h->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (h->ssl_ctx == NULL)
        return -ENOMEM;
    SSL_CTX *ctx = h->ssl_ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3) != 0)
        return -ENOMEM;
    h->insecure = t->insecure;
    if (!t->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = set(t->ca_file) ? SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL)
                                 : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            log_error("grpc exporter: cannot load CA certificates", "ca_file=%s",
                      set(t->ca_file) ? t->ca_file : "(system)");
            return -EINVAL;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (set(t->cert_file)) {
        if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            log_error("grpc exporter: cannot load the client certificate and key",
                      "cert_file=%s key_file=%s", t->cert_file, t->key_file);
            return -EINVAL;
        }
    }
    ERR_clear_error();
    return 0;
}

static int nghttp2_setup(struct grpc_exp *h)
{
    if (nghttp2_session_callbacks_new(&h->cbs) != 0 || nghttp2_option_new(&h->opt) != 0)
        return -ENOMEM;
    nghttp2_session_callbacks_set_on_header_callback(h->cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h->cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(h->cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(h->cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(h->cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(h->cbs, on_frame_not_send);
    /* Until the server's SETTINGS arrive, open one stream only: the others
     * wait in nghttp2 for its SETTINGS_MAX_CONCURRENT_STREAMS instead of
     * being refused. */
    nghttp2_option_set_peer_max_concurrent_streams(h->opt, 1);
    return 0;
}

int export_grpc_create(const struct svc_config *cfg, struct exporter *out)
{
    if (cfg == NULL || out == NULL)
        return -EINVAL;
    const struct exporter_config *ec = &cfg->exporter;
    if (!set(ec->endpoint)) {
        log_error("exporter.endpoint is required for grpc", "");
        return -EINVAL;
    }
    if (set(ec->tls.cert_file) != set(ec->tls.key_file)) {
        log_error("exporter.tls.cert_file and key_file go together", "");
        return -EINVAL;
    }
    struct grpc_exp *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    h->fd = -1;
    h->efd = -1;
    int rc = parse_endpoint(h, ec->endpoint);
    if (rc == -EINVAL)
        log_error("exporter endpoint is not an http(s)://host[:port] URL", "");
    if (rc < 0)
        goto fail;
    h->timeout_ms = ec->timeout_ms;
    h->max_msg = ec->grpc_max_msg_bytes != 0 ? ec->grpc_max_msg_bytes : UINT32_MAX;
    h->gzip = ec->compression == COMPRESSION_GZIP;
    h->n_calls = BASE_MAX(cfg->batch.max_concurrent_exports, 1u);
    rc = -ENOMEM;
    h->calls = calloc(h->n_calls, sizeof(*h->calls));
    if (h->calls == NULL || buf_init(&h->out, GRPC_EXP_OUT_HIGH + GRPC_EXP_RECV_CHUNK, 0) < 0)
        goto fail;
    for (unsigned i = 0; i < h->n_calls; i++) {
        if (buf_init(&h->calls[i].gz, 0, 0) < 0 || buf_init(&h->calls[i].part, 0, 0) < 0 ||
            buf_init(&h->calls[i].resp, 256, GRPC_EXP_RESP_MAX) < 0)
            goto fail;
    }
    h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (h->efd < 0) {
        rc = -errno;
        goto fail;
    }
    if ((h->gzip && (rc = compress_ctx_create(&h->cz)) < 0) || (rc = build_paths(h)) < 0 ||
        (rc = build_authority(h, &ec->tls)) < 0 || (rc = build_metadata(h, ec)) < 0 ||
        (rc = nghttp2_setup(h)) < 0 || (h->tls && (rc = tls_setup(h, &ec->tls)) < 0))
        goto fail;
    log_info("grpc exporter ready", "endpoint=%s concurrency=%u compression=%s tls=%s",
             h->endpoint_shown, h->n_calls, h->gzip ? "gzip" : "none",
             !h->tls       ? "off"
             : h->insecure ? "insecure"
                           : "verify");
    out->ops = &grpc_ops;
    out->state = h;
    return 0;
fail:
    grpc_destroy(h);
    return rc;
}
