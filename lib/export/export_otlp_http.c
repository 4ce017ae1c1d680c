/* SPDX-License-Identifier: Apache-2.0 */
/* OTLP/HTTP exporter: POSTs batches as Export*ServiceRequest protobuf to
 * <endpoint>/v1/<signal> over libcurl's multi interface, a fixed pool of easy
 * handles (one per concurrent export) on persistent connections, and maps
 * each response to an export_result as the OTLP specification says. */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"
#include "compress/compress.h"
#include "export/exporter.h"
#include "obs/log.h"
#include "otlp/otlp.h"
#include "otlp_version.h"

/* Response bodies are short (partial success, google.rpc.Status); keep at
 * most this much and discard the rest. */
#define HTTP_RESP_MAX 16384
#define HTTP_USER_AGENT "otlp-service/" OTLP_SERVICE_VERSION

struct http_slot {
    CURL *easy;
    struct batch *b;       /* in flight; NULL when the slot is free */
    struct buf gz;         /* gzip body of the current attempt */
    struct buf resp;       /* response body, at most HTTP_RESP_MAX */
    char retry_after[64];  /* Retry-After value of the final response */
    char content_type[64]; /* Content-Type of the final response */
    char errbuf[CURL_ERROR_SIZE];
};

struct otlp_http {
    CURLM *multi;
    struct curl_slist *headers;    /* shared by all easy handles */
    struct curl_slist *connect_to; /* tls.server_name: connect to the real host */
    char *urls[OTLP_SIGNAL_COUNT];
    struct compress_ctx *cz; /* NULL without compression */
    struct http_slot *slots;
    unsigned n_slots;
    unsigned in_flight;
    struct http_done {
        struct http_slot *slot;
        CURLcode cc;
    } * done; /* scratch for one poll's completions */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void http_destroy(void *state);

/* ---- libcurl callbacks ---- */

/* Keep the headers the result mapping needs. Called for every header of every
 * response (also 100 Continue); a status line starts a new response. */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct http_slot *s = arg;
    size_t len = size * n;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        s->retry_after[0] = '\0';
        s->content_type[0] = '\0';
        buf_reset(&s->resp);
        return len;
    }
    struct {
        const char *name;
        char *dst;
        size_t size;
    } keep[] = {
        {"retry-after:", s->retry_after, sizeof(s->retry_after)},
        {"content-type:", s->content_type, sizeof(s->content_type)},
    };
    for (size_t i = 0; i < ARRAY_SIZE(keep); i++) {
        size_t nl = strlen(keep[i].name);
        if (len < nl || strncasecmp(data, keep[i].name, nl) != 0)
            continue;
        const char *v = data + nl, *end = data + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
            end--;
        size_t k = BASE_MIN((size_t)(end - v), keep[i].size - 1);
        memcpy(keep[i].dst, v, k);
        keep[i].dst[k] = '\0';
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct http_slot *s = arg;
    size_t len = size * n;
    size_t room = HTTP_RESP_MAX > s->resp.len ? HTTP_RESP_MAX - s->resp.len : 0;
    if (room > 0)
        (void)buf_append(&s->resp, data, BASE_MIN(room, len)); /* -ENOMEM: shorter message */
    return len; /* the rest is discarded, not an error */
}

/* ---- set-up ---- */

/* `url` for logs: user:password@ in the authority becomes ***@ and any query
 * is cut, so credentials in the endpoint never reach the log. */
static void redact_url(const char *url, char *out, size_t n)
{
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    size_t alen = strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', alen);
    if (at != NULL)
        snprintf(out, n, "%.*s***%.*s", (int)(auth - url), url, (int)strcspn(at, "?#"), at);
    else
        snprintf(out, n, "%.*s", (int)strcspn(url, "?#"), url);
}

static int slist_add(struct curl_slist **l, const char *s)
{
    struct curl_slist *n = curl_slist_append(*l, s);
    if (n == NULL)
        return -ENOMEM;
    *l = n;
    return 0;
}

/* The request headers: ours, then the configured ones (minus those that
 * would contradict the body we send). */
static int build_headers(struct otlp_http *h, const struct exporter_config *ec)
{
    static const char *const reserved[] = {"content-type", "content-encoding", "content-length",
                                           "transfer-encoding", "expect"};
    if (slist_add(&h->headers, "Content-Type: application/x-protobuf") < 0 ||
        (ec->compression == COMPRESSION_GZIP &&
         slist_add(&h->headers, "Content-Encoding: gzip") < 0) ||
        slist_add(&h->headers, "Expect:") < 0) /* no 100-continue round trip */
        return -ENOMEM;
    for (unsigned i = 0; i < ec->headers.n; i++) {
        const struct config_kv *kv = &ec->headers.items[i];
        bool skip = kv->key == NULL || kv->key[0] == '\0' || strpbrk(kv->key, ":\r\n") ||
                    (kv->value != NULL && strpbrk(kv->value, "\r\n"));
        for (size_t j = 0; !skip && j < ARRAY_SIZE(reserved); j++)
            skip = strcasecmp(kv->key, reserved[j]) == 0;
        if (skip) {
            log_warn("exporter header ignored", "header=%s", kv->key ? kv->key : "");
            continue;
        }
        const char *v = kv->value ? kv->value : "";
        size_t n = strlen(kv->key) + strlen(v) + 3;
        char *line = malloc(n);
        if (line == NULL)
            return -ENOMEM;
        /* curl: "Name;" sends an empty value, "Name:" would remove the header */
        if (*v == '\0')
            snprintf(line, n, "%s;", kv->key);
        else
            snprintf(line, n, "%s: %s", kv->key, v);
        int rc = slist_add(&h->headers, line);
        free(line);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/*
 * URLs per signal. The OTLP exporter spec: the endpoint is a base URL and
 * /v1/<signal> is appended. With tls.server_name the URL names that host
 * (so SNI, certificate verification and Host use it) and CURLOPT_CONNECT_TO
 * sends the connection to the configured host.
 */
static int build_urls(struct otlp_http *h, const struct exporter_config *ec)
{
    const char *ep = ec->endpoint;
    char *base = NULL, *host = NULL, *port = NULL, *scheme = NULL;
    CURLU *u = curl_url();
    int rc = -ENOMEM;
    if (u == NULL)
        goto out;
    rc = -EINVAL;
    if (curl_url_set(u, CURLUPART_URL, ep, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        char shown[256];
        redact_url(ep, shown, sizeof(shown));
        log_error("exporter endpoint is not an http(s) URL", "endpoint=%s", shown);
        goto out;
    }
    const char *sni = ec->tls.server_name;
    if (sni != NULL && *sni != '\0') {
        if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_HOST, sni, 0) != CURLUE_OK) {
            log_error("exporter tls.server_name is not a valid host", "server_name=%s", sni);
            goto out;
        }
        char ct[600];
        if ((size_t)snprintf(ct, sizeof(ct), "%s:%s:%s:%s", sni, port, host, port) >= sizeof(ct))
            goto out;
        rc = -ENOMEM;
        if (slist_add(&h->connect_to, ct) < 0)
            goto out;
        rc = -EINVAL;
    }
    /* the signal path goes after the base path, before any ?query */
    if (curl_url_get(u, CURLUPART_PATH, &base, 0) != CURLUE_OK)
        goto out;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        size_t pl = strlen(otlp_signal_paths[s]);
        if (bl >= pl && memcmp(base + bl - pl, otlp_signal_paths[s], pl) == 0) {
            char shown[256];
            redact_url(ep, shown, sizeof(shown));
            log_warn("exporter endpoint already ends with a signal path; it is a base URL and "
                     "/v1/<signal> is appended",
                     "endpoint=%s", shown);
        }
        char path[2048];
        char *full = NULL;
        rc = -EINVAL;
        if ((size_t)snprintf(path, sizeof(path), "%.*s%s", (int)bl, base, otlp_signal_paths[s]) >=
                sizeof(path) ||
            curl_url_set(u, CURLUPART_PATH, path, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK)
            goto out;
        h->urls[s] = strdup(full);
        curl_free(full);
        rc = -ENOMEM;
        if (h->urls[s] == NULL)
            goto out;
    }
    rc = 0;
out:
    curl_free(base);
    curl_free(host);
    curl_free(port);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc;
}

#define SETOPT(e, opt, val)                                                                        \
    do {                                                                                           \
        if (curl_easy_setopt((e), (opt), (val)) != CURLE_OK) {                                     \
            log_error("exporter: curl option refused", "option=%s", #opt);                         \
            return -EINVAL;                                                                        \
        }                                                                                          \
    } while (0)

static bool set(const char *s)
{
    return s != NULL && *s != '\0';
}

static int slot_init(struct otlp_http *h, struct http_slot *s, const struct exporter_config *ec)
{
    if (buf_init(&s->gz, 0, 0) < 0 || buf_init(&s->resp, 1024, HTTP_RESP_MAX) < 0)
        return -ENOMEM;
    s->easy = curl_easy_init();
    if (s->easy == NULL)
        return -ENOMEM;
    CURL *e = s->easy;
    SETOPT(e, CURLOPT_PRIVATE, (void *)s);
    SETOPT(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    SETOPT(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SETOPT(e, CURLOPT_POST, 1L);
    SETOPT(e, CURLOPT_HTTPHEADER, h->headers);
    SETOPT(e, CURLOPT_USERAGENT, HTTP_USER_AGENT);
    SETOPT(e, CURLOPT_TIMEOUT_MS, (long)ec->timeout_ms);
    SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ec->timeout_ms);
    SETOPT(e, CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(e, CURLOPT_TCP_NODELAY, 1L);
    SETOPT(e, CURLOPT_FOLLOWLOCATION, 0L); /* a 3xx is a permanent failure, not a hop */
    SETOPT(e, CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(e, CURLOPT_HEADERDATA, (void *)s);
    SETOPT(e, CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(e, CURLOPT_WRITEDATA, (void *)s);
    SETOPT(e, CURLOPT_ERRORBUFFER, s->errbuf);
    if (h->connect_to != NULL)
        SETOPT(e, CURLOPT_CONNECT_TO, h->connect_to);
    const struct tls_client_config *t = &ec->tls;
    SETOPT(e, CURLOPT_SSL_VERIFYPEER, t->insecure ? 0L : 1L);
    SETOPT(e, CURLOPT_SSL_VERIFYHOST, t->insecure ? 0L : 2L);
    if (set(t->ca_file))
        SETOPT(e, CURLOPT_CAINFO, t->ca_file);
    if (set(t->cert_file)) {
        SETOPT(e, CURLOPT_SSLCERT, t->cert_file);
        SETOPT(e, CURLOPT_SSLKEY, t->key_file);
    }
    return 0;
}

/* ---- result mapping ---- */

static bool ctype_is(const char *ct, const char *what)
{
    size_t n = strlen(what);
    return strncasecmp(ct, what, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* A printable prefix of a non-protobuf error body (text/plain, JSON...). */
static void body_text(const struct buf *b, char *msg, size_t msg_len)
{
    size_t k = BASE_MIN(b->len, msg_len - 1);
    for (size_t i = 0; i < k; i++) {
        uint8_t c = b->data[i];
        msg[i] = (c < 0x20 || c >= 0x7f) ? ' ' : (char)c;
    }
    while (k > 0 && msg[k - 1] == ' ')
        k--;
    msg[k] = '\0';
}

static void transport_result(CURLcode cc, const char *errbuf, struct export_result *r)
{
    const char *reason;
    r->status = EXPORT_RETRYABLE; /* connection problems are retryable (OTLP spec) */
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        reason = "timeout";
        break;
    case CURLE_COULDNT_CONNECT:
        reason = "connect_failed";
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        reason = "resolve_failed";
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        reason = "tls_error";
        break;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        reason = "connection_error";
        break;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        reason = "bad_endpoint";
        r->status = EXPORT_PERMANENT;
        break;
    default:
        reason = "transport_error";
        break;
    }
    snprintf(r->reason, sizeof(r->reason), "%s", reason);
    snprintf(r->message, sizeof(r->message), "%s",
             errbuf[0] != '\0' ? errbuf : curl_easy_strerror(cc));
}

/* OTLP spec, "OTLP/HTTP Response": 2xx success (maybe partial); 429, 502,
 * 503, 504 retryable (Retry-After honoured); every other status permanent. */
static void http_result(struct http_slot *s, long code, struct export_result *r)
{
    r->http_status = (int)code;
    const char *ct = s->content_type;
    bool pb = ctype_is(ct, "application/x-protobuf") || ctype_is(ct, "application/protobuf");
    if (code >= 200 && code < 300) {
        r->status = EXPORT_OK;
        if (s->resp.len > 0 && (pb || ct[0] == '\0')) {
            if (export_parse_partial_success(s->resp.data, s->resp.len, &r->rejected_items,
                                             r->message, sizeof(r->message)) < 0) {
                r->rejected_items = 0;
                r->message[0] = '\0';
                log_debug("export response body is not an Export*ServiceResponse",
                          "status=%ld bytes=%zu", code, s->resp.len);
            }
        }
        if (r->rejected_items > 0)
            snprintf(r->reason, sizeof(r->reason), "partial_success");
        return;
    }
    bool retryable = code == 429 || code == 502 || code == 503 || code == 504;
    r->status = retryable ? EXPORT_RETRYABLE : EXPORT_PERMANENT;
    snprintf(r->reason, sizeof(r->reason), "http_%ld", code);
    if (retryable && s->retry_after[0] != '\0') {
        uint32_t ms;
        if (export_parse_retry_after(s->retry_after, strlen(s->retry_after),
                                     (int64_t)(base_wall_ns() / 1000000000ull), &ms) == 0)
            r->retry_after_ms = ms;
    }
    if (s->resp.len > 0) {
        if (!pb || export_parse_status_message(s->resp.data, s->resp.len, r->message,
                                               sizeof(r->message)) < 0)
            body_text(&s->resp, r->message, sizeof(r->message));
    }
}

/* ---- ops ---- */

static int http_submit(void *state, struct batch *b)
{
    struct otlp_http *h = state;
    if (b == NULL || (unsigned)b->signal >= OTLP_SIGNAL_COUNT)
        return -EINVAL;
    struct http_slot *s = NULL;
    for (unsigned i = 0; i < h->n_slots; i++) {
        if (h->slots[i].b == NULL) {
            s = &h->slots[i];
            break;
        }
    }
    if (s == NULL)
        return -EBUSY;

    const uint8_t *body = b->body.data;
    size_t len = b->body.len;
    if (h->cz != NULL) {
        /* Compressed per attempt: retries are rare, and the batch stays
         * untouched for the runner and other exporters. */
        int rc = compress_gzip(h->cz, body, len, &s->gz, 0);
        if (rc < 0)
            return rc == -EMSGSIZE ? -ENOMEM : rc;
        body = s->gz.data;
        len = s->gz.len;
    }
    static const uint8_t empty[1];
    if (body == NULL)
        body = empty;
    s->errbuf[0] = '\0';
    s->retry_after[0] = '\0';
    s->content_type[0] = '\0';
    buf_reset(&s->resp);
    if (curl_easy_setopt(s->easy, CURLOPT_URL, h->urls[b->signal]) != CURLE_OK ||
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) != CURLE_OK ||
        curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, (const void *)body) != CURLE_OK)
        return -ENOMEM;
    CURLMcode mc = curl_multi_add_handle(h->multi, s->easy);
    if (mc != CURLM_OK) {
        log_error("exporter: curl_multi_add_handle failed", "error=%s", curl_multi_strerror(mc));
        return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
    }
    s->b = b;
    h->in_flight++;
    return 0;
}

/* Collect finished transfers, then report them (done() may submit again). */
static int reap(struct otlp_http *h, export_done_fn done, void *arg)
{
    unsigned n = 0;
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct http_slot *s = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        CURLcode cc = m->data.result;
        curl_multi_remove_handle(h->multi, m->easy_handle); /* m is invalid from here */
        if (s == NULL || s->b == NULL)
            continue;
        s->errbuf[CURL_ERROR_SIZE - 1] = '\0';
        h->done[n].slot = s;
        h->done[n].cc = cc;
        n++;
    }
    for (unsigned i = 0; i < n; i++) {
        struct http_slot *s = h->done[i].slot;
        CURLcode cc = h->done[i].cc;
        struct export_result r = {0};
        if (cc == CURLE_OK) {
            long code = 0;
            curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
            http_result(s, code, &r);
        } else {
            transport_result(cc, s->errbuf, &r);
        }
        struct batch *b = s->b;
        s->b = NULL;
        h->in_flight--;
        done(arg, b, &r);
    }
    return (int)n;
}

static int http_poll(void *state, int timeout_ms, export_done_fn done, void *arg)
{
    struct otlp_http *h = state;
    int running;
    CURLMcode mc = curl_multi_perform(h->multi, &running);
    int n = reap(h, done, arg);
    if (n > 0 || timeout_ms <= 0)
        return n;
    /* Waits even with no transfer in flight; curl_multi_wakeup() ends it. */
    mc = curl_multi_poll(h->multi, NULL, 0, timeout_ms, NULL);
    if (mc != CURLM_OK) {
        log_error("exporter: curl_multi_poll failed", "error=%s", curl_multi_strerror(mc));
        return -EIO;
    }
    curl_multi_perform(h->multi, &running);
    return reap(h, done, arg);
}

static void http_wakeup(void *state)
{
    struct otlp_http *h = state;
    curl_multi_wakeup(h->multi);
}

static void http_destroy(void *state)
{
    struct otlp_http *h = state;
    if (h == NULL)
        return;
    for (unsigned i = 0; h->slots != NULL && i < h->n_slots; i++) {
        struct http_slot *s = &h->slots[i];
        if (s->easy != NULL) {
            if (s->b != NULL && h->multi != NULL)
                curl_multi_remove_handle(h->multi, s->easy);
            curl_easy_cleanup(s->easy);
        }
        buf_free(&s->gz);
        buf_free(&s->resp);
    }
    free(h->slots);
    free(h->done);
    if (h->multi != NULL)
        curl_multi_cleanup(h->multi);
    curl_slist_free_all(h->headers);
    curl_slist_free_all(h->connect_to);
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++)
        free(h->urls[s]);
    compress_ctx_destroy(h->cz);
    free(h);
}

static const struct exporter_ops otlp_http_ops = {
    .name = "otlp_http",
    .submit = http_submit,
    .poll = http_poll,
    .wakeup = http_wakeup,
    .destroy = http_destroy,
};

int export_otlp_http_create(const struct svc_config *cfg, struct exporter *out)
{
    if (cfg == NULL || out == NULL)
        return -EINVAL;
    const struct exporter_config *ec = &cfg->exporter;
    if (!set(ec->endpoint)) {
        log_error("exporter.endpoint is required for otlp_http", "");
        return -EINVAL;
    }
    if (set(ec->tls.cert_file) != set(ec->tls.key_file)) {
        log_error("exporter.tls.cert_file and key_file go together", "");
        return -EINVAL;
    }
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return -EIO;

    int rc = -ENOMEM;
    struct otlp_http *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    h->n_slots = BASE_MAX(cfg->batch.max_concurrent_exports, 1u);
    h->slots = calloc(h->n_slots, sizeof(*h->slots));
    h->done = calloc(h->n_slots, sizeof(*h->done));
    h->multi = curl_multi_init();
    if (h->slots == NULL || h->done == NULL || h->multi == NULL)
        goto fail;
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)h->n_slots);
    if (ec->compression == COMPRESSION_GZIP && (rc = compress_ctx_create(&h->cz)) < 0)
        goto fail;
    if ((rc = build_headers(h, ec)) < 0 || (rc = build_urls(h, ec)) < 0)
        goto fail;
    for (unsigned i = 0; i < h->n_slots; i++) {
        if ((rc = slot_init(h, &h->slots[i], ec)) < 0)
            goto fail;
    }
    char shown[256];
    redact_url(h->urls[0], shown, sizeof(shown));
    log_info("otlp_http exporter ready", "url=%s concurrency=%u compression=%s", shown, h->n_slots,
             ec->compression == COMPRESSION_GZIP ? "gzip" : "none");
    out->ops = &otlp_http_ops;
    out->state = h;
    return 0;
fail:
    http_destroy(h);
    return rc;
}
