/* SPDX-License-Identifier: Apache-2.0 */
/* OTLP/HTTP request handling over any byte transport: route, decompress,
 * convert JSON, validate in place, admit, batch, acknowledge. */
#include "receiver/receiver.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress/compress.h"
#include "memlimit/memlimit.h"
#include "otlp/otlp_metrics.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "otlp/otlp.h"
#include "otlp/otlp_batch.h"
#include "otlp/otlp_json.h"
#include "otlp/otlp_response.h"
#include "otlp/otlp_scan.h"
#include "otlp/otlp_wire.h"
#include "pipeline/pipeline.h"
#include "tls/tls.h"

/* Paths for the http_requests_total{path} label; the last one is "other". */
enum { PATH_OTHER = OTLP_SIGNAL_COUNT, PATH_COUNT };
static const char *const path_labels[PATH_COUNT] = {"/v1/traces", "/v1/metrics", "/v1/logs",
                                                    "other"};
static const int status_codes[] = {200, 400, 401, 404, 405, 408, 411, 413, 414, 415,
                                   429, 431, 500, 501, 503, 505};
#define N_CODES ARRAY_SIZE(status_codes)

static const char *const receiver_reasons[] = {
#define X(n, s, r, m) #r,
    RECEIVER_ERRORS(X)
#undef X
};
static const int receiver_status[] = {
#define X(n, s, r, m) s,
    RECEIVER_ERRORS(X)
#undef X
};
static const char *const receiver_messages[] = {
#define X(n, s, r, m) m,
    RECEIVER_ERRORS(X)
#undef X
};

struct receiver {
    const struct svc_config *cfg;
    struct pipeline *pipeline;
    struct obs_registry *reg;
    struct otlp_attrs attrs;
    struct otlp_limits limits;
    struct http_limits http_limits;
    _Atomic(struct tls_tokens *) tokens; /* NULL: no bearer token required */
    struct tls_tokens *retired[RECEIVER_TOKENS_RETIRED]; /* replaced by reloads, freed later */
    unsigned n_retired;
    struct memlimit *ml; /* NULL: no memory limiter */
    _Atomic bool draining;
    /* metric ids; series are indexed as noted */
    uint32_t m_received, m_accepted, m_refused, m_rejected; /* + signal */
    uint32_t m_http_requests;                               /* + path * N_CODES + code */
    uint32_t m_http_duration;                               /* + path */
    uint32_t m_errors;                                      /* + http err | receiver err */
    uint32_t m_worker_requests;                             /* + worker */
    uint32_t m_bytes;                                       /* + signal */
};

struct receiver_worker {
    struct receiver *r;
    unsigned w;
    struct compress_ctx *cz;
    struct buf inflated;        /* decompressed body */
    struct buf converted;       /* JSON converted to protobuf */
    struct buf resp;            /* response body */
    uint64_t scratch_held;      /* inflated + converted capacity reserved with the limiter */
    char errmsg[256];
};

/* ---- metrics ---- */

static int register_signal_counter(struct obs_registry *reg, const char *what, const char *help,
                                   uint32_t *id)
{
    return otlp_register_item_counters(reg, what, help, "protocol=\"http\"", id);
}

static int register_metrics(struct receiver *r, unsigned n_workers)
{
    struct obs_registry *reg = r->reg;
    int rc;
    if ((rc = register_signal_counter(reg, "received", "Items received in well-formed requests",
                                      &r->m_received)) < 0 ||
        (rc = register_signal_counter(reg, "accepted", "Items acknowledged into a batch",
                                      &r->m_accepted)) < 0 ||
        (rc = register_signal_counter(reg, "refused",
                                      "Items refused with 429/503 under pressure (client retries)",
                                      &r->m_refused)) < 0 ||
        (rc = register_signal_counter(reg, "rejected",
                                      "Items rejected as invalid (partial success)",
                                      &r->m_rejected)) < 0)
        return rc;

    const char *lbl[PATH_COUNT * N_CODES];
    static char lbl_store[PATH_COUNT * N_CODES][48];
    for (unsigned p = 0; p < PATH_COUNT; p++)
        for (unsigned c = 0; c < N_CODES; c++) {
            unsigned i = p * (unsigned)N_CODES + c;
            snprintf(lbl_store[i], sizeof(lbl_store[i]), "path=\"%s\",code=\"%d\"", path_labels[p],
                     status_codes[c]);
            lbl[i] = lbl_store[i];
        }
    if ((rc = obs_counter_register(reg, "http_requests_total", "OTLP/HTTP requests by path and status",
                                   lbl, PATH_COUNT * N_CODES, &r->m_http_requests)) < 0)
        return rc;

    static char path_store[PATH_COUNT][32];
    const char *plbl[PATH_COUNT];
    for (unsigned p = 0; p < PATH_COUNT; p++) {
        snprintf(path_store[p], sizeof(path_store[p]), "path=\"%s\"", path_labels[p]);
        plbl[p] = path_store[p];
    }
    if ((rc = obs_histogram_register(reg, "http_request_duration_seconds",
                                     "Time from the first byte of a request to its response",
                                     plbl, PATH_COUNT, OBS_LATENCY_BUCKETS, OBS_LATENCY_BUCKETS_COUNT,
                                     &r->m_http_duration)) < 0)
        return rc;

    static char err_store[HTTP_ERR_COUNT + RECEIVER_ERR_COUNT][64];
    const char *elbl[HTTP_ERR_COUNT + RECEIVER_ERR_COUNT];
    for (int i = 0; i < HTTP_ERR_COUNT; i++) {
        snprintf(err_store[i], sizeof(err_store[i]), "protocol=\"http\",reason=\"%s\"",
                 http_error_reason(-(HTTP_ERR_FIRST + i)));
        elbl[i] = err_store[i];
    }
    for (int i = 0; i < RECEIVER_ERR_COUNT; i++) {
        snprintf(err_store[HTTP_ERR_COUNT + i], sizeof(err_store[0]),
                 "protocol=\"http\",reason=\"%s\"", receiver_reasons[i]);
        elbl[HTTP_ERR_COUNT + i] = err_store[HTTP_ERR_COUNT + i];
    }
    if ((rc = obs_counter_register(reg, "otlp_receiver_errors_total",
                                   "Requests answered with an error, by reason", elbl,
                                   HTTP_ERR_COUNT + RECEIVER_ERR_COUNT, &r->m_errors)) < 0)
        return rc;

    static char wstore[CONFIG_MAX_CORES][24];
    const char *wlbl[CONFIG_MAX_CORES];
    for (unsigned w = 0; w < n_workers && w < CONFIG_MAX_CORES; w++) {
        snprintf(wstore[w], sizeof(wstore[w]), "worker=\"%u\"", w);
        wlbl[w] = wstore[w];
    }
    if ((rc = obs_counter_register(reg, "otlp_worker_requests_total", "Requests handled per worker",
                                   wlbl, n_workers, &r->m_worker_requests)) < 0)
        return rc;
    return register_signal_counter(reg, "received_bytes",
                                   "Request body bytes received (before decompression)", &r->m_bytes);
}

/* ---- set-up ---- */

int receiver_create(const struct svc_config *cfg, struct pipeline *p, struct obs_registry *reg,
                    unsigned n_workers, struct receiver **out)
{
    if (n_workers == 0 || n_workers > CONFIG_MAX_CORES)
        return -EINVAL;
    struct receiver *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->cfg = cfg;
    r->pipeline = p;
    r->reg = reg;
    r->limits.max_depth = cfg->receiver.max_nesting_depth;
    r->http_limits.max_header_bytes = cfg->receiver.max_header_bytes;
    r->http_limits.max_headers = cfg->receiver.max_headers;
    r->http_limits.max_body_bytes = cfg->receiver.max_body_bytes;

    const char *keys[CONFIG_MAX_KV], *vals[CONFIG_MAX_KV];
    const struct config_kv_list *kv = &cfg->resources.attributes;
    for (unsigned i = 0; i < kv->n; i++) {
        keys[i] = kv->items[i].key;
        vals[i] = kv->items[i].value;
    }
    int rc = otlp_attrs_init(&r->attrs, keys, vals, kv->n);
    if (rc < 0)
        goto fail;
    struct tls_tokens *tokens = NULL;
    if ((rc = tls_tokens_load(&cfg->receiver.auth, &tokens)) < 0)
        goto fail;
    atomic_store(&r->tokens, tokens);
    if (tokens != NULL)
        log_info("bearer-token authentication on", "receiver=http tokens=%u",
                 tls_tokens_count(tokens));
    if ((rc = register_metrics(r, n_workers)) < 0)
        goto fail;
    *out = r;
    return 0;
fail:
    receiver_destroy(r);
    return rc;
}

void receiver_destroy(struct receiver *r)
{
    if (r == NULL)
        return;
    otlp_attrs_free(&r->attrs);
    tls_tokens_destroy(atomic_load(&r->tokens));
    for (unsigned i = 0; i < r->n_retired && i < RECEIVER_TOKENS_RETIRED; i++)
        tls_tokens_destroy(r->retired[i]);
    free(r);
}

void receiver_set_memlimit(struct receiver *r, struct memlimit *ml)
{
    r->ml = ml;
}

struct memlimit *receiver_memlimit(const struct receiver *r)
{
    return r != NULL ? r->ml : NULL;
}

int receiver_reload_auth(struct receiver *r, const struct receiver_auth_config *auth,
                         unsigned *count)
{
    struct tls_tokens *t = NULL;
    int rc = tls_tokens_load(auth, &t);
    if (rc < 0)
        return rc;
    if (count != NULL)
        *count = t != NULL ? tls_tokens_count(t) : 0;
    struct tls_tokens *old = atomic_exchange(&r->tokens, t);
    unsigned slot = r->n_retired % RECEIVER_TOKENS_RETIRED;
    if (r->n_retired >= RECEIVER_TOKENS_RETIRED)
        tls_tokens_destroy(r->retired[slot]); /* replaced 16 reloads ago: long unused */
    r->retired[slot] = old;
    r->n_retired++;
    return 0;
}

void receiver_set_draining(struct receiver *r, bool draining)
{
    atomic_store(&r->draining, draining);
}

int receiver_worker_create(struct receiver *r, unsigned w, struct receiver_worker **out)
{
    struct receiver_worker *rw = calloc(1, sizeof(*rw));
    if (rw == NULL)
        return -ENOMEM;
    rw->r = r;
    rw->w = w;
    size_t lim = (size_t)r->cfg->receiver.max_decompressed_bytes;
    int rc = compress_ctx_create(&rw->cz);
    if (rc < 0)
        goto fail;
    /* Scratch grows to the largest request seen and is kept (flat after warm-up). */
    if ((rc = buf_init(&rw->inflated, 64 * 1024, lim)) < 0 ||
        (rc = buf_init(&rw->converted, 64 * 1024, lim)) < 0 ||
        (rc = buf_init(&rw->resp, 1024, 64 * 1024)) < 0)
        goto fail;
    *out = rw;
    return 0;
fail:
    receiver_worker_destroy(rw);
    return rc;
}

void receiver_worker_destroy(struct receiver_worker *rw)
{
    if (rw == NULL)
        return;
    memlimit_release(rw->r->ml, rw->w, rw->scratch_held);
    compress_ctx_destroy(rw->cz);
    buf_free(&rw->inflated);
    buf_free(&rw->converted);
    buf_free(&rw->resp);
    free(rw);
}

/* Bodies larger than this are not kept on an idle connection. */
#define RECEIVER_KEEP_BODY_CAP (256 * 1024)

int receiver_conn_init(struct receiver_conn *c, struct receiver_worker *rw)
{
    c->rw = rw;
    c->req_start_ns = 0;
    c->mem_held = 0;
    c->discard = false;
    c->closing = false;
    int rc = buf_init(&c->body, 0, (size_t)rw->r->cfg->receiver.max_body_bytes);
    if (rc < 0)
        return rc;
    http_parser_init(&c->parser, &rw->r->http_limits, &c->body);
    return 0;
}

void receiver_conn_fini(struct receiver_conn *c)
{
    if (c->rw != NULL)
        memlimit_release(c->rw->r->ml, c->rw->w, c->mem_held);
    c->mem_held = 0;
    buf_free(&c->body);
}

/* ---- responses ---- */

static unsigned code_index(int status)
{
    for (unsigned i = 0; i < N_CODES; i++)
        if (status_codes[i] == status)
            return i;
    return code_index(500);
}

static void count_response(struct receiver_conn *c, unsigned path, int status)
{
    struct receiver *r = c->rw->r;
    unsigned w = c->rw->w;
    obs_counter_inc(r->reg, w, r->m_http_requests + path * (uint32_t)N_CODES + code_index(status));
    obs_counter_inc(r->reg, w, r->m_worker_requests + w);
    if (c->req_start_ns != 0) {
        double s = (double)(base_now_ns() - c->req_start_ns) / 1e9;
        obs_histogram_observe(r->reg, w, r->m_http_duration + path, s);
    }
}

/* google.rpc.Status{code, message} as the OTLP spec asks for error bodies,
 * encoded like the request. */
/* Copy `msg` (at most 1000 bytes) into `out` as valid UTF-8: a proto3 string
 * and a JSON string must be, and error messages may quote client bytes.
 * Invalid bytes become U+FFFD in JSON and '?' in protobuf; JSON escapes too. */
static void append_clean_text(struct buf *out, const char *msg, bool json)
{
    const uint8_t *s = (const uint8_t *)msg;
    size_t n = strlen(msg);
    if (n > 1000)
        n = 1000;
    while (n > 0) {
        size_t ok = otlp_utf8_valid_prefix(s, n);
        for (size_t i = 0; i < ok; i++) {
            uint8_t ch = s[i];
            if (json && (ch == '"' || ch == '\\'))
                buf_printf(out, "\\%c", ch);
            else if (json && ch < 0x20)
                buf_printf(out, "\\u%04x", ch);
            else
                buf_append(out, &ch, 1);
        }
        s += ok;
        n -= ok;
        if (n > 0) { /* one invalid byte */
            buf_append_str(out, json ? "\\ufffd" : "?");
            s++;
            n--;
        }
    }
}

/* google.rpc.Status{code, message} as the OTLP spec asks for error bodies,
 * encoded like the request. */
static void encode_status(struct buf *out, bool json, int grpc_code, const char *msg)
{
    buf_reset(out);
    if (json) {
        buf_printf(out, "{\"code\":%d,\"message\":\"", grpc_code);
        append_clean_text(out, msg, true);
        buf_append_str(out, "\"}");
        return;
    }
    /* field 1 (code, varint), then field 2 (message) whose length we know
     * only after cleaning: clean into place after a 2-byte length slot. */
    uint8_t hdr[2] = {0x08, (uint8_t)grpc_code};
    buf_append(out, hdr, 2);
    size_t tag_at = out->len;
    buf_append(out, "\x12\x00\x00", 3); /* tag + up to a 2-byte varint length */
    size_t text_at = out->len;
    append_clean_text(out, msg, false);
    size_t tlen = out->len - text_at; /* <= 1000, fits two varint bytes */
    out->data[tag_at + 1] = (uint8_t)(tlen | 0x80);
    out->data[tag_at + 2] = (uint8_t)(tlen >> 7);
}

static int grpc_code_for(int status)
{
    switch (status) {
    case 400: return 3;  /* INVALID_ARGUMENT */
    case 401: return 16; /* UNAUTHENTICATED */
    case 404: return 12; /* UNIMPLEMENTED */
    case 413: return 8;  /* RESOURCE_EXHAUSTED */
    case 429: return 8;
    case 503: return 14; /* UNAVAILABLE */
    default: return 2;   /* UNKNOWN */
    }
}

/* HTTP/1.0 clients keep the connection only when told so explicitly. */
static const char *keep_alive_header(const struct http_req *req, bool keep)
{
    return keep && req->http_minor == 0 ? "Connection: keep-alive\r\n" : NULL;
}

/* Queue an error response. `keep` says whether the request framing is intact
 * (the whole body was read), so the connection can carry on. */
static int respond_error(struct receiver_conn *c, struct buf *out, unsigned path, int status,
                         uint32_t err_series, const char *msg, bool json, bool keep)
{
    struct receiver_worker *rw = c->rw;
    struct receiver *r = rw->r;
    obs_counter_inc(r->reg, rw->w, r->m_errors + err_series);
    encode_status(&rw->resp, json, grpc_code_for(status), msg);
    uint32_t retry = (status == 429 || status == 503) ? r->cfg->receiver.retry_after_s : 0;
    const struct http_req *req = http_parser_req(&c->parser);
    keep = keep && req->keep_alive && !c->closing;
    char extra[128];
    /* RFC 6750 3: the challenge; error="invalid_token" when one was sent. */
    const char *challenge = status != 401            ? ""
                            : req->authorization[0] ? "WWW-Authenticate: Bearer realm=\"otlp\", "
                                                       "error=\"invalid_token\"\r\n"
                                                     : "WWW-Authenticate: Bearer realm=\"otlp\"\r\n";
    snprintf(extra, sizeof(extra), "%s%s%s", status == 405 ? "Allow: POST\r\n" : "", challenge,
             keep && req->http_minor == 0 ? "Connection: keep-alive\r\n" : "");
    const char *ctype = json ? "application/json" : "application/x-protobuf";
    if (req->method == HTTP_HEAD) /* RFC 9110 9.3.2: the head only */
        http_response_write_head(out, status, ctype, rw->resp.len, keep, retry,
                                 extra[0] ? extra : NULL);
    else
        http_response_write(out, status, ctype, rw->resp.data, rw->resp.len, keep, retry,
                            extra[0] ? extra : NULL);
    count_response(c, path, status);
    log_debug("request refused", "status=%d reason=%s msg=%s", status,
              err_series < HTTP_ERR_COUNT ? "http" : receiver_reasons[err_series - HTTP_ERR_COUNT],
              msg);
    if (!keep)
        c->closing = true;
    return keep ? RECEIVER_KEEP : RECEIVER_CLOSE;
}

static int respond_receiver_error(struct receiver_conn *c, struct buf *out, unsigned path,
                                  enum receiver_err e, const char *detail, bool json, bool keep)
{
    const char *msg = receiver_messages[e];
    char tmp[320];
    if (detail != NULL && detail[0] != '\0') {
        snprintf(tmp, sizeof(tmp), "%s: %s", msg, detail);
        msg = tmp;
    }
    return respond_error(c, out, path, receiver_status[e], HTTP_ERR_COUNT + (uint32_t)e, msg, json,
                         keep);
}

/* ---- request handling ---- */

/* Which signal does the path name? PATH_OTHER when none. */
static unsigned route(const struct http_req *req)
{
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++)
        if (strcmp(req->path, otlp_signal_paths[s]) == 0)
            return s;
    return PATH_OTHER;
}

static bool is_json(const struct http_req *req)
{
    return strcmp(req->content_type, "application/json") == 0;
}

static bool is_proto(const struct http_req *req)
{
    return strcmp(req->content_type, "application/x-protobuf") == 0 ||
           strcmp(req->content_type, "application/protobuf") == 0;
}

/* Checks that need only the head, done before the body arrives so a client
 * is told early (and does not upload a body for nothing). Returns -1 when
 * all is well, else the receiver error. */
static int check_head(const struct receiver *r, const struct http_req *req, unsigned path)
{
    /* Authentication first: an unauthenticated client learns nothing else. */
    const struct tls_tokens *tokens =
        atomic_load_explicit(&((struct receiver *)r)->tokens, memory_order_acquire);
    if (tokens != NULL &&
        !tls_tokens_check(tokens, req->authorization, strlen(req->authorization)))
        return RECEIVER_ERR_UNAUTHORIZED;
    if (path == PATH_OTHER)
        return RECEIVER_ERR_NOT_FOUND;
    if (req->method != HTTP_POST)
        return RECEIVER_ERR_METHOD;
    if (!is_json(req) && !is_proto(req))
        return RECEIVER_ERR_MEDIA_TYPE;
    enum compress_codec codec;
    if (compress_codec_parse(req->content_encoding, &codec) < 0)
        return RECEIVER_ERR_ENCODING;
    if (atomic_load_explicit(&((struct receiver *)r)->draining, memory_order_relaxed))
        return RECEIVER_ERR_SHUTDOWN;
    return -1;
}

/* ---- memory limiter ---- */

/* Scratch buffers larger than this are freed while the limiter refuses. */
#define RECEIVER_TRIM_SCRATCH_CAP (1024 * 1024)

/*
 * Memory admission of a request whose head is complete: refuse it above the
 * soft limit; else reserve its body (Content-Length, or max_body_bytes when
 * chunked) against the hard limit and allocate it in one piece, so the body
 * cannot grow past what was reserved. A body whole in the `avail` bytes
 * that follow the head needs neither: the parser points into the input.
 * Returns 0, or -ENOMEM (refused, counted: answer 503 memory_limit).
 */
static int admit_body(struct receiver_conn *c, const struct http_req *req, unsigned path,
                      size_t avail)
{
    struct receiver_worker *rw = c->rw;
    struct memlimit *ml = rw->r->ml;
    if (ml == NULL)
        return 0;
    if (!req->chunked && req->content_length >= 0 && (uint64_t)req->content_length <= avail &&
        memlimit_state(ml) == MEMLIMIT_OK)
        return 0; /* the whole body is in this input: the parser points at it, no buffer */
    uint64_t need = c->body.limit;
    if (!req->chunked && req->content_length >= 0 && (uint64_t)req->content_length < need)
        need = (uint64_t)req->content_length;
    if (need < c->body.cap)
        need = c->body.cap;
    if (memlimit_state(ml) != MEMLIMIT_OK ||
        memlimit_account(ml, rw->w, &c->mem_held, need) < 0) {
        memlimit_count_refused(ml, rw->w, MEMLIMIT_PROTO_HTTP, path);
        return -ENOMEM;
    }
    if (!req->chunked && c->body.len == 0 && c->body.cap < need) {
        size_t lim = c->body.limit;
        buf_free(&c->body);
        if (buf_init(&c->body, (size_t)need, lim) < 0) {
            buf_init(&c->body, 0, lim);
            memlimit_account(ml, rw->w, &c->mem_held, 0);
            memlimit_count_refused(ml, rw->w, MEMLIMIT_PROTO_HTTP, path);
            return -ENOMEM;
        }
    }
    return 0;
}

/* Let scratch buffer `b` (limit `cfg_limit`) grow only as far as the
 * worker's memory allowance; returns the limit to pass along. */
static size_t scratch_begin(struct receiver_worker *rw, struct buf *b, size_t cfg_limit)
{
    uint64_t room = memlimit_headroom(rw->r->ml, rw->w);
    uint64_t lim = b->cap + room < b->cap ? UINT64_MAX : b->cap + room;
    b->limit = lim < cfg_limit ? (size_t)lim : cfg_limit;
    return b->limit;
}

/* Restore the limit and account what the scratch buffers hold now. */
static void scratch_end(struct receiver_worker *rw, struct buf *b, size_t cfg_limit)
{
    b->limit = cfg_limit;
    uint64_t now = rw->inflated.cap + rw->converted.cap;
    if (now > rw->scratch_held)
        memlimit_charge(rw->r->ml, rw->w, now - rw->scratch_held);
    else
        memlimit_release(rw->r->ml, rw->w, rw->scratch_held - now);
    rw->scratch_held = now;
}

/* Above the soft limit: give large scratch buffers back. */
static void scratch_trim(struct receiver_worker *rw)
{
    size_t lim = (size_t)rw->r->cfg->receiver.max_decompressed_bytes;
    struct buf *bufs[] = {&rw->inflated, &rw->converted};
    for (unsigned i = 0; i < ARRAY_SIZE(bufs); i++) {
        if (bufs[i]->cap > RECEIVER_TRIM_SCRATCH_CAP) {
            buf_free(bufs[i]);
            buf_init(bufs[i], 64 * 1024, lim);
        }
    }
    scratch_end(rw, &rw->inflated, lim);
}

/* A complete request: validate, admit, batch, answer. */
static int handle_request(struct receiver_conn *c, struct buf *out)
{
    struct receiver_worker *rw = c->rw;
    struct receiver *r = rw->r;
    const struct http_req *req = http_parser_req(&c->parser);
    unsigned path = route(req);
    bool json = is_json(req);

    int e = check_head(r, req, path);
    if (e >= 0)
        return respond_receiver_error(c, out, path, (enum receiver_err)e, NULL, json, true);
    enum otlp_signal sig = (enum otlp_signal)path;
    obs_counter_add(r->reg, rw->w, r->m_bytes + sig, req->body_len);

    /* 1. decompress */
    const uint8_t *body = req->body;
    size_t body_len = req->body_len;
    enum compress_codec codec;
    compress_codec_parse(req->content_encoding, &codec);
    if (codec != COMPRESS_NONE) {
        size_t cfg_lim = (size_t)r->cfg->receiver.max_decompressed_bytes;
        size_t lim = scratch_begin(rw, &rw->inflated, cfg_lim);
        int rc = compress_inflate(rw->cz, codec, body, body_len, &rw->inflated, lim);
        scratch_end(rw, &rw->inflated, cfg_lim);
        if (rc == -EMSGSIZE && lim < cfg_lim) { /* the memory limit, not the bomb limit */
            memlimit_count_refused(r->ml, rw->w, MEMLIMIT_PROTO_HTTP, sig);
            return respond_receiver_error(c, out, path, RECEIVER_ERR_MEMORY_LIMIT, NULL, json,
                                          true);
        }
        if (rc == -EMSGSIZE)
            return respond_receiver_error(c, out, path, RECEIVER_ERR_BOMB, NULL, json, true);
        if (rc < 0)
            return respond_receiver_error(c, out, path, RECEIVER_ERR_DECOMPRESS, NULL, json, true);
        body = rw->inflated.data;
        body_len = rw->inflated.len;
    }

    /* 2. JSON -> protobuf */
    if (json) {
        buf_reset(&rw->converted);
        size_t cfg_lim = (size_t)r->cfg->receiver.max_decompressed_bytes;
        size_t lim = scratch_begin(rw, &rw->converted, cfg_lim);
        int rc = otlp_json_to_proto(sig, (const char *)body, body_len, &rw->converted, rw->errmsg,
                                    sizeof(rw->errmsg));
        scratch_end(rw, &rw->converted, cfg_lim);
        if (rc == -EMSGSIZE && lim < cfg_lim) {
            memlimit_count_refused(r->ml, rw->w, MEMLIMIT_PROTO_HTTP, sig);
            return respond_receiver_error(c, out, path, RECEIVER_ERR_MEMORY_LIMIT, NULL, json,
                                          true);
        }
        if (rc == -EMSGSIZE)
            return respond_receiver_error(c, out, path, RECEIVER_ERR_BOMB, NULL, json, true);
        if (rc < 0)
            return respond_receiver_error(c, out, path, RECEIVER_ERR_JSON, rw->errmsg, json, true);
        body = rw->converted.data;
        body_len = rw->converted.len;
    }

    /* 3. validate in place and count */
    struct otlp_scan_result res;
    int rc = otlp_scan(sig, body, body_len, &r->limits, &res);
    if (rc < 0)
        return respond_receiver_error(c, out, path, RECEIVER_ERR_PROTOBUF,
                                      res.error[0] ? res.error : otlp_scan_message(rc), json, true);
    obs_counter_add(r->reg, rw->w, r->m_received + sig, res.items + res.rejected_items);
    if (res.rejected_items > 0)
        obs_counter_add(r->reg, rw->w, r->m_rejected + sig, res.rejected_items);

    /* 4. admit and batch */
    rc = pipeline_ingest(r->pipeline, rw->w, sig, body, body_len, &res, &r->attrs);
    if (rc < 0) {
        obs_counter_add(r->reg, rw->w, r->m_refused + sig, res.items);
        enum receiver_err re = rc == -ENOBUFS    ? RECEIVER_ERR_QUEUE_FULL
                               : rc == -EMSGSIZE ? RECEIVER_ERR_BATCH_TOO_LARGE
                                                 : RECEIVER_ERR_POOL;
        return respond_receiver_error(c, out, path, re, NULL, json, true);
    }
    obs_counter_add(r->reg, rw->w, r->m_accepted + sig, res.items);

    /* 5. acknowledge, encoded like the request */
    buf_reset(&rw->resp);
    const char *msg = res.rejected_items > 0 ? res.error : NULL;
    if (json)
        otlp_response_encode_json(sig, res.rejected_items, msg, &rw->resp);
    else
        otlp_response_encode_proto(sig, res.rejected_items, msg, &rw->resp);
    http_response_write(out, 200, json ? "application/json" : "application/x-protobuf",
                        rw->resp.data, rw->resp.len, req->keep_alive, 0,
                        keep_alive_header(req, req->keep_alive));
    count_response(c, path, 200);
    if (!req->keep_alive)
        c->closing = true;
    return req->keep_alive ? RECEIVER_KEEP : RECEIVER_CLOSE;
}

int receiver_conn_input(struct receiver_conn *c, const uint8_t *data, size_t len, struct buf *out)
{
    while (len > 0 && !c->closing) {
        if (c->req_start_ns == 0)
            c->req_start_ns = base_now_ns();
        size_t used = 0;
        int rc = http_parser_feed(&c->parser, data, len, &used);
        data += used;
        len -= used;
        if (rc == HTTP_AGAIN)
            return RECEIVER_KEEP;
        const struct http_req *req = http_parser_req(&c->parser);
        if (rc < 0) {
            unsigned path = route(req);
            return respond_error(c, out, path, http_error_status(rc),
                                 (uint32_t)(-rc - HTTP_ERR_FIRST), http_error_message(rc),
                                 is_json(req), false);
        }
        if (rc == HTTP_HEADERS_COMPLETE) {
            unsigned path = route(req);
            int e = check_head(c->rw->r, req, path);
            if (e < 0 && admit_body(c, req, path, len) < 0) {
                if (!req->expect_continue) {
                    /* Read the body into nothing, then answer 503: the
                     * client gets the answer (not a reset) and the
                     * connection stays usable. */
                    c->discard = true;
                    c->parser.body_buf = NULL;
                    continue;
                }
                e = RECEIVER_ERR_MEMORY_LIMIT;
            }
            if (e >= 0) /* the body will not be read: close after answering */
                return respond_receiver_error(c, out, path, (enum receiver_err)e, NULL,
                                              is_json(req), false);
            if (req->expect_continue)
                http_response_continue(out);
            continue;
        }
        /* HTTP_DONE */
        int res;
        if (unlikely(c->discard)) {
            c->discard = false;
            c->parser.body_buf = &c->body;
            res = respond_receiver_error(c, out, route(req), RECEIVER_ERR_MEMORY_LIMIT, NULL,
                                         is_json(req), true);
        } else {
            res = handle_request(c, out);
        }
        c->req_start_ns = 0;
        http_parser_reset(&c->parser);
        struct memlimit *ml = c->rw->r->ml;
        if (c->body.cap > RECEIVER_KEEP_BODY_CAP ||
            (c->body.cap > 0 && memlimit_state(ml) != MEMLIMIT_OK)) {
            size_t lim = c->body.limit;
            buf_free(&c->body);
            buf_init(&c->body, 0, lim);
        }
        if (ml != NULL) {
            memlimit_account(ml, c->rw->w, &c->mem_held, c->body.cap);
            if (memlimit_state(ml) != MEMLIMIT_OK)
                scratch_trim(c->rw);
        }
        if (res == RECEIVER_CLOSE)
            return RECEIVER_CLOSE;
    }
    return c->closing ? RECEIVER_CLOSE : RECEIVER_KEEP;
}

int receiver_conn_throttle_timeout(struct receiver_conn *c, struct buf *out)
{
    const struct http_req *req = http_parser_req(&c->parser);
    respond_receiver_error(c, out, route(req), RECEIVER_ERR_THROTTLED, NULL, is_json(req), false);
    c->closing = true;
    return RECEIVER_CLOSE;
}

int receiver_conn_timeout(struct receiver_conn *c, struct buf *out)
{
    const struct http_req *req = http_parser_req(&c->parser);
    respond_receiver_error(c, out, route(req), RECEIVER_ERR_TIMEOUT, NULL, is_json(req), false);
    c->closing = true;
    return RECEIVER_CLOSE;
}
