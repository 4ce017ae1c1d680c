/* SPDX-License-Identifier: Apache-2.0 */
/* OTLP/gRPC over any byte transport: nghttp2 server session callbacks,
 * gRPC message framing, decompress, validate in place, admit, batch,
 * answer with trailers. Flow control is manual so that a full pipeline
 * pushes back through HTTP/2 windows. */
#include "grpc/grpc_receiver.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "compress/compress.h"
#include "memlimit/memlimit.h"
#include "otlp/otlp_metrics.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "otlp/otlp.h"
#include "otlp/otlp_batch.h"
#include "otlp/otlp_response.h"
#include "otlp/otlp_scan.h"
#include "pipeline/pipeline.h"
#include "tls/tls.h"

/* Methods for the grpc_*{method} labels; the last one is "other". */
enum { METHOD_OTHER = OTLP_SIGNAL_COUNT, METHOD_COUNT };
static const char *const grpc_paths[OTLP_SIGNAL_COUNT] = {
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
};
_Static_assert(OTLP_TRACES == 0 && OTLP_METRICS == 1 && OTLP_LOGS == 2, "grpc_paths order");

static const int err_grpc[] = {
#define X(n, g, h, r, l, m) g,
    GRPC_ERRORS(X)
#undef X
};
static const int err_http[] = {
#define X(n, g, h, r, l, m) h,
    GRPC_ERRORS(X)
#undef X
};
static const bool err_retry[] = {
#define X(n, g, h, r, l, m) r,
    GRPC_ERRORS(X)
#undef X
};
static const char *const err_reason[] = {
#define X(n, g, h, r, l, m) #l,
    GRPC_ERRORS(X)
#undef X
};
static const char *const err_message[] = {
#define X(n, g, h, r, l, m) m,
    GRPC_ERRORS(X)
#undef X
};

/* Flow control. The stream window lets a typical OTLP message (tens to
 * hundreds of KiB) arrive in one round trip; the connection window lets a
 * few of them arrive at once. */
#define GRPC_STREAM_WINDOW_MAX (1u << 20)
#define GRPC_CONN_WINDOW_STREAMS 4
/* Message buffers larger than this are released when the request ends, so
 * the pooled stream states stay small; the pool keeps at most
 * GRPC_POOL_MAX_FREE idle states per worker (16 MiB with their buffers). */
#define GRPC_KEEP_MSG_CAP (64 * 1024)
#define GRPC_POOL_MAX_FREE 256
/* Room for the framed Export*ServiceResponse (partial_success with an
 * error message of at most sizeof(otlp_scan_result.error)). */
#define GRPC_RESP_MAX 256

enum stream_state {
    ST_HEADERS, /* request headers arriving */
    ST_BODY,    /* headers accepted, message arriving */
    ST_DONE,    /* answered (or dropped); further DATA is discarded */
};

/* One request/response exchange. Pooled per worker (no allocation per
 * request after warm-up); lives from the request HEADERS until nghttp2
 * closes the stream. */
/* The decompression buffer is freed above this size under memory pressure. */
#define GRPC_TRIM_SCRATCH_CAP (1024 * 1024)

struct grpc_stream {
    struct grpc_conn *c;
    struct grpc_stream *next, *prev; /* conn->active list, or free list (next) */
    int32_t id;
    uint8_t state;
    uint8_t method; /* signal, METHOD_OTHER */
    uint8_t codec;  /* enum compress_codec of grpc-encoding */
    bool post;
    bool content_type_ok;
    bool remote_done;        /* the client ended its side (END_STREAM) */
    bool rst_after_response; /* answered early: reset if the client still sends */
    bool in_msg;             /* message header parsed, payload arriving */
    bool compressed;
    bool auth_ok;    /* an authorization header carried an accepted bearer token */
    int8_t head_err; /* first error found in the headers, -1 none */
    uint8_t hdr_got;
    uint8_t hdr[GRPC_FRAME_HDR];
    uint32_t n_msgs;
    uint32_t header_bytes;
    uint32_t n_headers;
    uint32_t msg_len;     /* payload length announced by the frame header */
    uint32_t held_stream; /* received, stream window not yet given back */
    uint32_t held_conn;   /* received, connection window not yet given back */
    uint64_t start_ns;
    uint64_t deadline_ns; /* from grpc-timeout, 0 none */
    struct buf msg;       /* message payload, limit grpc_max_recv_msg_bytes */
    uint64_t mem_held;    /* msg bytes reserved with the memory limiter */
    uint16_t resp_len, resp_off;
    uint8_t resp[GRPC_FRAME_HDR + GRPC_RESP_MAX];
};

struct grpc_receiver {
    const struct svc_config *cfg;
    struct pipeline *pipeline;
    struct obs_registry *reg;
    struct otlp_attrs attrs;
    struct otlp_limits limits;
    nghttp2_session_callbacks *cbs;
    nghttp2_option *opt;
    uint32_t msg_limit;     /* one message as received */
    uint64_t inflate_limit; /* after grpc-encoding */
    uint32_t stream_window;
    uint32_t conn_window;
    uint64_t conn_budget; /* message bytes a connection may buffer */
    uint64_t request_timeout_ns;
    _Atomic(struct tls_tokens *) tokens; /* NULL: no bearer token required */
    struct tls_tokens *retired[GRPC_TOKENS_RETIRED]; /* replaced by reloads, freed later */
    unsigned n_retired;
    struct memlimit *ml;           /* NULL: no memory limiter */
    char *details[GRPC_ERR_COUNT]; /* grpc-status-details-bin values, NULL none */
    _Atomic bool draining;
    /* metric ids; series are indexed as noted */
    uint32_t m_received, m_accepted, m_refused, m_rejected, m_bytes; /* + signal */
    uint32_t m_requests; /* + method * GRPC_STATUS_COUNT + status */
    uint32_t m_duration; /* + method */
    uint32_t m_errors;   /* + grpc_err */
};

struct grpc_worker {
    struct grpc_receiver *gr;
    unsigned w;
    struct compress_ctx *cz;
    struct buf inflated;              /* decompressed message */
    struct buf resp;                  /* response message */
    struct grpc_stream *free_streams; /* idle stream states, reused */
    unsigned n_free;
    uint64_t inflated_held; /* inflated capacity reserved with the memory limiter */
};

const char *grpc_signal_path(int sig)
{
    return sig >= 0 && sig < OTLP_SIGNAL_COUNT ? grpc_paths[sig] : "";
}

/* ---- metrics ---- */

static int register_signal_counter(struct obs_registry *reg, const char *what, const char *help,
                                   uint32_t *id)
{
    return otlp_register_item_counters(reg, what, help, "protocol=\"grpc\"", id);
}

static const char *method_label(unsigned m)
{
    return m < OTLP_SIGNAL_COUNT ? grpc_paths[m] + 1 : "other";
}

static int register_metrics(struct grpc_receiver *gr)
{
    struct obs_registry *reg = gr->reg;
    int rc;
    if ((rc = register_signal_counter(reg, "received", "Items received in well-formed requests",
                                      &gr->m_received)) < 0 ||
        (rc = register_signal_counter(reg, "accepted", "Items acknowledged into a batch",
                                      &gr->m_accepted)) < 0 ||
        (rc = register_signal_counter(reg, "refused",
                                      "Items refused with 429/503 under pressure (client retries)",
                                      &gr->m_refused)) < 0 ||
        (rc =
             register_signal_counter(reg, "rejected", "Items rejected as invalid (partial success)",
                                     &gr->m_rejected)) < 0 ||
        (rc = register_signal_counter(reg, "received_bytes",
                                      "Request body bytes received (before decompression)",
                                      &gr->m_bytes)) < 0)
        return rc;

    enum { N = METHOD_COUNT * GRPC_STATUS_COUNT };
    static char store[N][112];
    const char *lbl[N];
    for (unsigned m = 0; m < METHOD_COUNT; m++)
        for (unsigned s = 0; s < GRPC_STATUS_COUNT; s++) {
            unsigned i = m * GRPC_STATUS_COUNT + s;
            snprintf(store[i], sizeof(store[i]), "method=\"%s\",grpc_status=\"%s\"",
                     method_label(m), grpc_status_name((int)s));
            lbl[i] = store[i];
        }
    if ((rc = obs_counter_register(reg, "grpc_requests_total",
                                   "OTLP/gRPC requests by method and gRPC status", lbl, N,
                                   &gr->m_requests)) < 0)
        return rc;

    static char mstore[METHOD_COUNT][96];
    const char *mlbl[METHOD_COUNT];
    for (unsigned m = 0; m < METHOD_COUNT; m++) {
        snprintf(mstore[m], sizeof(mstore[m]), "method=\"%s\"", method_label(m));
        mlbl[m] = mstore[m];
    }
    if ((rc = obs_histogram_register(reg, "grpc_request_duration_seconds",
                                     "Time from a gRPC request's HEADERS to its response", mlbl,
                                     METHOD_COUNT, OBS_LATENCY_BUCKETS, OBS_LATENCY_BUCKETS_COUNT,
                                     &gr->m_duration)) < 0)
        return rc;

    static char estore[GRPC_ERR_COUNT][64];
    const char *elbl[GRPC_ERR_COUNT];
    for (unsigned i = 0; i < GRPC_ERR_COUNT; i++) {
        snprintf(estore[i], sizeof(estore[i]), "protocol=\"grpc\",reason=\"%s\"", err_reason[i]);
        elbl[i] = estore[i];
    }
    return obs_counter_register(reg, "otlp_receiver_errors_total",
                                "Requests answered with an error, by reason", elbl, GRPC_ERR_COUNT,
                                &gr->m_errors);
}

/* ---- set-up ---- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data);
static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data);
static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data);
static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data);
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data);
static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data);

static int build_details(struct grpc_receiver *gr)
{
    struct buf b;
    int rc = buf_init(&b, 256, 4096);
    if (rc < 0)
        return rc;
    for (unsigned e = 0; e < GRPC_ERR_COUNT && rc == 0; e++) {
        if (!err_retry[e])
            continue;
        buf_reset(&b);
        rc = grpc_status_details_encode(err_grpc[e], err_message[e], true,
                                        gr->cfg->receiver.retry_after_s, &b);
        size_t cap = (b.len + 2) / 3 * 4 + 1;
        if (rc == 0 && (gr->details[e] = malloc(cap)) == NULL)
            rc = -ENOMEM;
        if (rc == 0 && grpc_base64_encode(b.data, b.len, gr->details[e], cap) < 0)
            rc = -EINVAL;
    }
    buf_free(&b);
    return rc;
}

int grpc_receiver_create(const struct svc_config *cfg, struct pipeline *p, struct obs_registry *reg,
                         unsigned n_workers, struct grpc_receiver **out)
{
    if (cfg == NULL || p == NULL || reg == NULL || out == NULL || n_workers == 0 ||
        n_workers > CONFIG_MAX_CORES || cfg->receiver.grpc_max_recv_msg_bytes == 0 ||
        cfg->receiver.grpc_max_recv_msg_bytes > UINT32_MAX - GRPC_FRAME_HDR)
        return -EINVAL;
    struct grpc_receiver *gr = calloc(1, sizeof(*gr));
    if (gr == NULL)
        return -ENOMEM;
    gr->cfg = cfg;
    gr->pipeline = p;
    gr->reg = reg;
    gr->limits.max_depth = cfg->receiver.max_nesting_depth;
    gr->msg_limit = (uint32_t)cfg->receiver.grpc_max_recv_msg_bytes;
    gr->inflate_limit = cfg->receiver.max_decompressed_bytes;
    /* A stream window of one whole message (up to 1 MiB) lets the typical
     * request arrive without waiting for a WINDOW_UPDATE. */
    uint64_t sw = (uint64_t)gr->msg_limit + GRPC_FRAME_HDR;
    if (sw > GRPC_STREAM_WINDOW_MAX)
        sw = GRPC_STREAM_WINDOW_MAX;
    if (sw < NGHTTP2_INITIAL_WINDOW_SIZE)
        sw = NGHTTP2_INITIAL_WINDOW_SIZE;
    gr->stream_window = (uint32_t)sw;
    gr->conn_window = (uint32_t)(sw * GRPC_CONN_WINDOW_STREAMS);
    /* One maximal message besides what the windows let in. */
    gr->conn_budget = (uint64_t)gr->msg_limit + GRPC_FRAME_HDR;
    gr->request_timeout_ns = (uint64_t)cfg->receiver.request_timeout_ms * 1000000u;

    const char *keys[CONFIG_MAX_KV], *vals[CONFIG_MAX_KV];
    const struct config_kv_list *kv = &cfg->resources.attributes;
    for (unsigned i = 0; i < kv->n; i++) {
        keys[i] = kv->items[i].key;
        vals[i] = kv->items[i].value;
    }
    int rc = otlp_attrs_init(&gr->attrs, keys, vals, kv->n);
    if (rc < 0)
        goto fail;
    struct tls_tokens *tokens = NULL;
    if ((rc = tls_tokens_load(&cfg->receiver.auth, &tokens)) < 0)
        goto fail;
    atomic_store(&gr->tokens, tokens);
    if (tokens != NULL)
        log_info("bearer-token authentication on", "receiver=grpc tokens=%u",
                 tls_tokens_count(tokens));
    rc = -ENOMEM;
    if (nghttp2_session_callbacks_new(&gr->cbs) != 0 || nghttp2_option_new(&gr->opt) != 0)
        goto fail;
    nghttp2_session_callbacks_set_on_begin_headers_callback(gr->cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(gr->cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(gr->cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_frame_recv_callback(gr->cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(gr->cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(gr->cbs, on_stream_close);
    /* We give window credit back ourselves (see credit()). */
    nghttp2_option_set_no_auto_window_update(gr->opt, 1);
    /* Flood limits: queued SETTINGS/PING acks, SETTINGS entries per frame,
     * CONTINUATION frames per header block, RST_STREAM rate (rapid reset). */
    nghttp2_option_set_max_outbound_ack(gr->opt, 256);
    nghttp2_option_set_max_settings(gr->opt, 32);
#ifdef GRPC_HAVE_NGHTTP2_CONTINUATIONS
    nghttp2_option_set_max_continuations(gr->opt, 8);
#endif
#ifdef GRPC_HAVE_NGHTTP2_RESET_RATELIM
    nghttp2_option_set_stream_reset_rate_limit(gr->opt, 1000, 33);
#endif
    /* No RFC 7540 priority tree: closed streams need not be kept. */
    nghttp2_option_set_no_closed_streams(gr->opt, 1);
    nghttp2_option_set_max_send_header_block_length(gr->opt, 16384);

    if ((rc = build_details(gr)) < 0 || (rc = register_metrics(gr)) < 0)
        goto fail;
    *out = gr;
    return 0;
fail:
    grpc_receiver_destroy(gr);
    return rc;
}

void grpc_receiver_destroy(struct grpc_receiver *gr)
{
    if (gr == NULL)
        return;
    for (unsigned e = 0; e < GRPC_ERR_COUNT; e++)
        free(gr->details[e]);
    nghttp2_session_callbacks_del(gr->cbs);
    nghttp2_option_del(gr->opt);
    otlp_attrs_free(&gr->attrs);
    tls_tokens_destroy(atomic_load(&gr->tokens));
    for (unsigned i = 0; i < gr->n_retired && i < GRPC_TOKENS_RETIRED; i++)
        tls_tokens_destroy(gr->retired[i]);
    free(gr);
}

void grpc_receiver_set_memlimit(struct grpc_receiver *gr, struct memlimit *ml)
{
    gr->ml = ml;
}

int grpc_receiver_reload_auth(struct grpc_receiver *gr, const struct receiver_auth_config *auth,
                              unsigned *count)
{
    struct tls_tokens *t = NULL;
    int rc = tls_tokens_load(auth, &t);
    if (rc < 0)
        return rc;
    if (count != NULL)
        *count = t != NULL ? tls_tokens_count(t) : 0;
    struct tls_tokens *old = atomic_exchange(&gr->tokens, t);
    unsigned slot = gr->n_retired % GRPC_TOKENS_RETIRED;
    if (gr->n_retired >= GRPC_TOKENS_RETIRED)
        tls_tokens_destroy(gr->retired[slot]); /* replaced 16 reloads ago: long unused */
    gr->retired[slot] = old;
    gr->n_retired++;
    return 0;
}

/* The current bearer tokens; NULL: none required. */
static const struct tls_tokens *tokens_now(const struct grpc_receiver *gr)
{
    return atomic_load_explicit(&((struct grpc_receiver *)gr)->tokens, memory_order_acquire);
}

void grpc_receiver_set_draining(struct grpc_receiver *gr, bool draining)
{
    atomic_store(&gr->draining, draining);
}

static bool draining(const struct grpc_receiver *gr)
{
    return atomic_load_explicit(&((struct grpc_receiver *)gr)->draining, memory_order_relaxed);
}

int grpc_worker_create(struct grpc_receiver *gr, unsigned w, struct grpc_worker **out)
{
    if (gr == NULL || out == NULL)
        return -EINVAL;
    struct grpc_worker *gw = calloc(1, sizeof(*gw));
    if (gw == NULL)
        return -ENOMEM;
    gw->gr = gr;
    gw->w = w;
    int rc = compress_ctx_create(&gw->cz);
    if (rc < 0)
        goto fail;
    /* Scratch grows to the largest message seen and is kept. */
    if ((rc = buf_init(&gw->inflated, 64 * 1024, (size_t)gr->inflate_limit)) < 0 ||
        (rc = buf_init(&gw->resp, GRPC_RESP_MAX, GRPC_RESP_MAX)) < 0)
        goto fail;
    *out = gw;
    return 0;
fail:
    grpc_worker_destroy(gw);
    return rc;
}

void grpc_worker_destroy(struct grpc_worker *gw)
{
    if (gw == NULL)
        return;
    compress_ctx_destroy(gw->cz);
    buf_free(&gw->inflated);
    buf_free(&gw->resp);
    /* Every connection is finished, so every stream state is idle. */
    memlimit_release(gw->gr->ml, gw->w, gw->inflated_held);
    for (struct grpc_stream *s = gw->free_streams, *n; s != NULL; s = n) {
        n = s->next;
        memlimit_release(gw->gr->ml, gw->w, s->mem_held);
        buf_free(&s->msg);
        free(s);
    }
    free(gw);
}

/* ---- streams ---- */

static struct grpc_stream *stream_get(struct grpc_conn *c, int32_t id)
{
    struct grpc_worker *gw = c->gw;
    struct grpc_stream *s = gw->free_streams;
    if (s != NULL) {
        gw->free_streams = s->next;
        gw->n_free--;
    } else {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return NULL;
        if (buf_init(&s->msg, 0, gw->gr->msg_limit) < 0) {
            free(s);
            return NULL;
        }
    }
    struct buf msg = s->msg;
    memset(s, 0, offsetof(struct grpc_stream, resp));
    s->msg = msg;
    s->msg.len = 0;
    s->c = c;
    s->id = id;
    s->state = ST_HEADERS;
    s->method = METHOD_OTHER;
    s->codec = COMPRESS_NONE;
    s->head_err = -1;
    s->start_ns = base_now_ns();
    s->next = c->active;
    if (c->active != NULL)
        c->active->prev = s;
    c->active = s;
    c->n_active++;
    c->n_receiving++;
    return s;
}

/* The message buffer is no longer needed (answered, or stream gone). */
static void stream_drop_msg(struct grpc_stream *s)
{
    s->c->buffered_bytes -= s->msg.len;
    s->msg.len = 0;
    struct memlimit *ml = s->c->gw->gr->ml;
    if (s->msg.cap > GRPC_KEEP_MSG_CAP ||
        (s->msg.cap > 0 && memlimit_state(ml) != MEMLIMIT_OK)) {
        size_t lim = s->msg.limit;
        buf_free(&s->msg);
        buf_init(&s->msg, 0, lim);
    }
    memlimit_account(ml, s->c->gw->w, &s->mem_held, s->msg.cap);
}

/* The request is no longer arriving (answered, reset or expired). */
static void stream_finish(struct grpc_stream *s)
{
    if (s->state != ST_DONE) {
        s->state = ST_DONE;
        s->c->n_receiving--;
    }
    stream_drop_msg(s);
}

static void stream_put(struct grpc_conn *c, struct grpc_stream *s)
{
    stream_finish(s);
    c->held_bytes -= s->held_conn > s->held_stream ? s->held_conn : s->held_stream;
    c->conn_release += s->held_conn;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        c->active = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    c->n_active--;
    struct grpc_worker *gw = c->gw;
    if (gw->n_free >= GRPC_POOL_MAX_FREE) {
        memlimit_release(gw->gr->ml, gw->w, s->mem_held);
        buf_free(&s->msg);
        free(s);
        return;
    }
    s->c = NULL;
    s->id = 0;
    s->next = gw->free_streams;
    gw->free_streams = s;
    gw->n_free++;
}

/* ---- responses ---- */

static void count_request(struct grpc_conn *c, struct grpc_stream *s, int status)
{
    struct grpc_receiver *gr = c->gw->gr;
    unsigned w = c->gw->w;
    if (status < 0 || status >= GRPC_STATUS_COUNT)
        status = GRPC_STATUS_UNKNOWN;
    obs_counter_inc(gr->reg, w,
                    gr->m_requests + s->method * (uint32_t)GRPC_STATUS_COUNT + (uint32_t)status);
    double secs = (double)(base_now_ns() - s->start_ns) / 1e9;
    obs_histogram_observe(gr->reg, w, gr->m_duration + s->method, secs);
}

/* A header field: `name` is a literal (not copied), nghttp2 copies `value`. */
static nghttp2_nv nv(const char *name, const char *value)
{
    nghttp2_nv h = {(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                    NGHTTP2_NV_FLAG_NO_COPY_NAME};
    return h;
}

/* Submitting failed (out of memory): the client must not wait forever. */
static void submit_failed(struct grpc_conn *c, struct grpc_stream *s)
{
    nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
}

/*
 * Answer with an error in a Trailers-Only response (one HEADERS frame with
 * END_STREAM: :status, content-type, grpc-status, grpc-message and, for the
 * retryable pressure cases, grpc-status-details-bin with RetryInfo). When
 * the client is still sending once it is sent, the stream is then reset
 * with NO_ERROR (RFC 9113 8.1: stop sending, the response is complete).
 */
static void respond_error(struct grpc_conn *c, struct grpc_stream *s, enum grpc_err e,
                          const char *detail)
{
    struct grpc_receiver *gr = c->gw->gr;
    obs_counter_inc(gr->reg, c->gw->w, gr->m_errors + e);
    stream_finish(s);
    int code = err_grpc[e];
    if (code < 0)
        return;
    char status_str[12], http_str[8], msg[600];
    snprintf(status_str, sizeof(status_str), "%d", code);
    snprintf(http_str, sizeof(http_str), "%d", err_http[e]);
    char raw[400];
    if (detail != NULL && detail[0] != '\0')
        snprintf(raw, sizeof(raw), "%s: %s", err_message[e], detail);
    else
        snprintf(raw, sizeof(raw), "%s", err_message[e]);
    grpc_percent_encode(raw, msg, sizeof(msg));
    nghttp2_nv nva[7];
    size_t n = 0;
    nva[n++] = nv(":status", http_str);
    nva[n++] = nv("content-type", "application/grpc");
    nva[n++] = nv("grpc-status", status_str);
    nva[n++] = nv("grpc-message", msg);
    if (gr->details[e] != NULL)
        nva[n++] = nv("grpc-status-details-bin", gr->details[e]);
    if (e == GRPC_ERR_ENCODING)
        nva[n++] = nv("grpc-accept-encoding", "identity,gzip,deflate,zstd");
    if (err_http[e] == 405)
        nva[n++] = nv("allow", "POST");
    if (nghttp2_submit_response(c->session, s->id, nva, n, NULL) != 0)
        submit_failed(c, s);
    s->rst_after_response = true; /* decided in on_frame_send() */
    count_request(c, s, code);
    log_debug("grpc request refused", "status=%d reason=%s msg=%s", code, err_reason[e], raw);
}

static ssize_t resp_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    (void)user_data;
    struct grpc_stream *s = source->ptr;
    size_t n = (size_t)(s->resp_len - s->resp_off);
    if (n > length)
        n = length;
    memcpy(buf, s->resp + s->resp_off, n);
    s->resp_off = (uint16_t)(s->resp_off + n);
    if (s->resp_off == s->resp_len) {
        /* Trailers end the stream (PROTOCOL-HTTP2.md: Response). */
        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv tr = nv("grpc-status", "0");
        if (nghttp2_submit_trailer(session, stream_id, &tr, 1) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

/* HEADERS(:status 200), DATA(framed Export*ServiceResponse), trailers
 * (grpc-status 0). partial_success when items were rejected. */
static void respond_ok(struct grpc_conn *c, struct grpc_stream *s, enum otlp_signal sig,
                       uint64_t rejected, const char *errmsg)
{
    struct grpc_worker *gw = c->gw;
    stream_finish(s);
    buf_reset(&gw->resp);
    if (otlp_response_encode_proto(sig, rejected, errmsg, &gw->resp) < 0) {
        buf_reset(&gw->resp);
        otlp_response_encode_proto(sig, rejected, NULL, &gw->resp);
    }
    size_t len = gw->resp.len;
    s->resp[0] = 0;
    s->resp[1] = (uint8_t)(len >> 24);
    s->resp[2] = (uint8_t)(len >> 16);
    s->resp[3] = (uint8_t)(len >> 8);
    s->resp[4] = (uint8_t)len;
    memcpy(s->resp + GRPC_FRAME_HDR, gw->resp.data, len);
    s->resp_len = (uint16_t)(GRPC_FRAME_HDR + len);
    s->resp_off = 0;
    nghttp2_nv nva[3];
    nva[0] = nv(":status", "200");
    nva[1] = nv("content-type", "application/grpc");
    nva[2] = nv("grpc-accept-encoding", "identity,gzip,deflate,zstd");
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = resp_read};
    if (nghttp2_submit_response(c->session, s->id, nva, ARRAY_SIZE(nva), &prd) != 0)
        submit_failed(c, s);
    count_request(c, s, GRPC_STATUS_OK);
}

/* ---- request handling ---- */

/* Validate, admit, batch. The same steps as lib/receiver's handle_request()
 * from otlp_scan() on, calling the same lower-level functions. */
static void handle_message(struct grpc_conn *c, struct grpc_stream *s)
{
    struct grpc_worker *gw = c->gw;
    struct grpc_receiver *gr = gw->gr;
    enum otlp_signal sig = (enum otlp_signal)s->method;
    const uint8_t *body = s->msg.data;
    size_t body_len = s->msg.len;
    obs_counter_add(gr->reg, gw->w, gr->m_bytes + sig, body_len);

    /* 1. decompress (per message: the flag, not grpc-encoding, decides) */
    if (s->compressed) {
        /* The scratch buffer grows only as far as the memory allowance. */
        size_t cfg_lim = (size_t)gr->inflate_limit;
        uint64_t room = memlimit_headroom(gr->ml, gw->w);
        size_t lim = room < cfg_lim - BASE_MIN(cfg_lim, gw->inflated.cap)
                         ? gw->inflated.cap + (size_t)room
                         : cfg_lim;
        gw->inflated.limit = lim;
        int rc = compress_inflate(gw->cz, (enum compress_codec)s->codec, body, body_len,
                                  &gw->inflated, lim);
        gw->inflated.limit = cfg_lim;
        if (gw->inflated.cap > gw->inflated_held)
            memlimit_charge(gr->ml, gw->w, gw->inflated.cap - gw->inflated_held);
        gw->inflated_held = gw->inflated.cap;
        if (rc == -EMSGSIZE && lim < cfg_lim) {
            memlimit_count_refused(gr->ml, gw->w, MEMLIMIT_PROTO_GRPC, sig);
            respond_error(c, s, GRPC_ERR_MEMORY_LIMIT, NULL);
            return;
        }
        if (rc == -EMSGSIZE) {
            respond_error(c, s, GRPC_ERR_BOMB, NULL);
            return;
        }
        if (rc < 0) {
            respond_error(c, s, GRPC_ERR_DECOMPRESS, compress_error_message(rc));
            return;
        }
        body = gw->inflated.data;
        body_len = gw->inflated.len;
    }

    /* 2. validate in place and count */
    struct otlp_scan_result res;
    int rc = otlp_scan(sig, body, body_len, &gr->limits, &res);
    if (rc < 0) {
        respond_error(c, s, GRPC_ERR_PROTOBUF, res.error[0] ? res.error : otlp_scan_message(rc));
        return;
    }
    obs_counter_add(gr->reg, gw->w, gr->m_received + sig, res.items + res.rejected_items);
    if (res.rejected_items > 0)
        obs_counter_add(gr->reg, gw->w, gr->m_rejected + sig, res.rejected_items);

    /* 3. admit and batch */
    rc = pipeline_ingest(gr->pipeline, gw->w, sig, body, body_len, &res, &gr->attrs);
    if (rc < 0) {
        obs_counter_add(gr->reg, gw->w, gr->m_refused + sig, res.items);
        respond_error(c, s,
                      rc == -ENOBUFS    ? GRPC_ERR_QUEUE_FULL
                      : rc == -EMSGSIZE ? GRPC_ERR_BATCH_TOO_LARGE
                                        : GRPC_ERR_POOL,
                      NULL);
        return;
    }
    obs_counter_add(gr->reg, gw->w, gr->m_accepted + sig, res.items);

    /* 4. acknowledge */
    respond_ok(c, s, sig, res.rejected_items, res.rejected_items > 0 ? res.error : NULL);
}

/* The client ended its side of the stream. */
static void request_complete(struct grpc_conn *c, struct grpc_stream *s)
{
    if (s->state != ST_BODY)
        return;
    if (s->in_msg || s->hdr_got > 0) {
        respond_error(c, s, GRPC_ERR_NO_MESSAGE, "message truncated");
        return;
    }
    if (s->n_msgs == 0) {
        respond_error(c, s, GRPC_ERR_NO_MESSAGE, NULL);
        return;
    }
    if (s->deadline_ns != 0 && base_now_ns() >= s->deadline_ns) {
        respond_error(c, s, GRPC_ERR_DEADLINE, NULL);
        return;
    }
    handle_message(c, s);
    struct grpc_worker *gw = c->gw;
    if (memlimit_state(gw->gr->ml) != MEMLIMIT_OK && gw->inflated.cap > GRPC_TRIM_SCRATCH_CAP) {
        /* Under memory pressure: give the large scratch buffer back. */
        size_t lim = gw->inflated.limit;
        buf_free(&gw->inflated);
        buf_init(&gw->inflated, 64 * 1024, lim);
        memlimit_release(gw->gr->ml, gw->w, gw->inflated_held - BASE_MIN(gw->inflated_held,
                                                                          gw->inflated.cap));
        gw->inflated_held = BASE_MIN(gw->inflated_held, gw->inflated.cap);
    }
}

/* The request headers are complete: route and check them before the body
 * arrives, so a client is told early. */
static void head_complete(struct grpc_conn *c, struct grpc_stream *s)
{
    struct grpc_receiver *gr = c->gw->gr;
    /* Authentication first: an unauthenticated client learns nothing else
     * (but a header list cut off at the limit may have lost the token). */
    if (tokens_now(gr) != NULL && !s->auth_ok && s->head_err != GRPC_ERR_HEADERS_TOO_LARGE)
        s->head_err = GRPC_ERR_UNAUTHENTICATED;
    if (s->head_err < 0) {
        if (!s->post)
            s->head_err = GRPC_ERR_HTTP_METHOD;
        else if (!s->content_type_ok)
            s->head_err = GRPC_ERR_CONTENT_TYPE;
        else if (s->method == METHOD_OTHER)
            s->head_err = GRPC_ERR_UNKNOWN_METHOD;
        else if (draining(gr))
            s->head_err = GRPC_ERR_SHUTDOWN;
        else if (memlimit_state(gr->ml) != MEMLIMIT_OK) {
            s->head_err = GRPC_ERR_MEMORY_LIMIT;
            memlimit_count_refused(gr->ml, c->gw->w, MEMLIMIT_PROTO_GRPC, s->method);
        }
        else if (s->deadline_ns != 0 && s->deadline_ns <= s->start_ns)
            s->head_err = GRPC_ERR_DEADLINE;
    }
    if (s->head_err >= 0) {
        respond_error(c, s, (enum grpc_err)s->head_err, NULL);
        return;
    }
    s->state = ST_BODY;
}

static bool value_is(const uint8_t *v, size_t len, const char *s)
{
    size_t n = strlen(s);
    return len == n && memcmp(v, s, n) == 0;
}

static bool grpc_content_type(const uint8_t *v, size_t len)
{
    /* PROTOCOL-HTTP2.md: "application/grpc" [("+proto" / "+json" / {custom})];
     * we read protobuf only. Parameters (";...") are tolerated. */
    static const char base[] = "application/grpc";
    size_t n = sizeof(base) - 1;
    if (len < n || memcmp(v, base, n) != 0)
        return false;
    if (len == n || v[n] == ';')
        return true;
    static const char proto[] = "+proto";
    size_t p = sizeof(proto) - 1;
    return len >= n + p && memcmp(v + n, proto, p) == 0 && (len == n + p || v[n + p] == ';');
}

static void set_head_err(struct grpc_stream *s, enum grpc_err e)
{
    if (s->head_err < 0)
        s->head_err = (int8_t)e;
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct grpc_conn *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct grpc_stream *s = NULL;
    if (c->n_active < GRPC_MAX_STREAMS)
        s = stream_get(c, frame->hd.stream_id);
    if (s == NULL) {
        struct grpc_receiver *gr = c->gw->gr;
        obs_counter_inc(gr->reg, c->gw->w, gr->m_errors + GRPC_ERR_REFUSED);
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    (void)flags;
    struct grpc_conn *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers from the client carry nothing we use */
    struct grpc_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s == NULL || s->state != ST_HEADERS)
        return 0;
    const struct svc_config *cfg = c->gw->gr->cfg;
    /* RFC 9113 6.5.2: the size of a header list counts 32 bytes per field. */
    uint64_t hb = (uint64_t)s->header_bytes + namelen + valuelen + 32;
    s->header_bytes = hb > UINT32_MAX ? UINT32_MAX : (uint32_t)hb;
    s->n_headers++;
    if (s->header_bytes > cfg->receiver.max_header_bytes ||
        s->n_headers > cfg->receiver.max_headers) {
        set_head_err(s, GRPC_ERR_HEADERS_TOO_LARGE);
        return 0;
    }
    if (value_is(name, namelen, ":method")) {
        s->post = value_is(value, valuelen, "POST");
    } else if (value_is(name, namelen, ":path")) {
        s->method = METHOD_OTHER;
        for (unsigned m = 0; m < OTLP_SIGNAL_COUNT; m++)
            if (value_is(value, valuelen, grpc_paths[m]))
                s->method = (uint8_t)m;
    } else if (value_is(name, namelen, "content-type")) {
        s->content_type_ok = grpc_content_type(value, valuelen);
    } else if (value_is(name, namelen, "authorization")) {
        struct grpc_receiver *gr = c->gw->gr;
        const struct tls_tokens *tokens = tokens_now(gr);
        if (tokens != NULL && tls_tokens_check(tokens, (const char *)value, valuelen))
            s->auth_ok = true;
    } else if (value_is(name, namelen, "grpc-encoding")) {
        char v[32];
        enum compress_codec codec;
        if (valuelen >= sizeof(v)) {
            set_head_err(s, GRPC_ERR_ENCODING);
            return 0;
        }
        memcpy(v, value, valuelen);
        v[valuelen] = '\0';
        if (compress_codec_parse(v, &codec) < 0)
            set_head_err(s, GRPC_ERR_ENCODING);
        else
            s->codec = (uint8_t)codec;
    } else if (value_is(name, namelen, "grpc-timeout")) {
        uint64_t ns;
        if (grpc_timeout_parse(value, valuelen, &ns) < 0)
            set_head_err(s, GRPC_ERR_BAD_TIMEOUT);
        else
            s->deadline_ns = ns > UINT64_MAX - s->start_ns ? UINT64_MAX : s->start_ns + ns;
    }
    return 0;
}

/* Parse gRPC framing out of DATA payload and collect the message. */
static void stream_data(struct grpc_conn *c, struct grpc_stream *s, const uint8_t *data, size_t len)
{
    struct grpc_receiver *gr = c->gw->gr;
    while (len > 0 && s->state == ST_BODY) {
        if (!s->in_msg) {
            size_t n = BASE_MIN(len, (size_t)(GRPC_FRAME_HDR - s->hdr_got));
            memcpy(s->hdr + s->hdr_got, data, n);
            s->hdr_got = (uint8_t)(s->hdr_got + n);
            data += n;
            len -= n;
            if (s->hdr_got < GRPC_FRAME_HDR)
                return;
            uint8_t flag = s->hdr[0];
            uint32_t mlen = (uint32_t)s->hdr[1] << 24 | (uint32_t)s->hdr[2] << 16 |
                            (uint32_t)s->hdr[3] << 8 | s->hdr[4];
            if (s->n_msgs > 0) {
                respond_error(c, s, GRPC_ERR_EXTRA_MESSAGE, NULL);
                return;
            }
            if (flag & ~GRPC_FLAG_COMPRESSED) {
                respond_error(c, s, GRPC_ERR_BAD_FLAG, NULL);
                return;
            }
            /* PROTOCOL-HTTP2.md: a compressed flag without grpc-encoding
             * is INTERNAL. */
            if ((flag & GRPC_FLAG_COMPRESSED) && s->codec == COMPRESS_NONE) {
                respond_error(c, s, GRPC_ERR_COMPRESSED_FLAG, NULL);
                return;
            }
            if (mlen > gr->msg_limit) {
                char d[64];
                snprintf(d, sizeof(d), "%u vs. %u bytes", mlen, gr->msg_limit);
                respond_error(c, s, GRPC_ERR_TOO_LARGE, d);
                return;
            }
            /* Reserve the whole message against the memory limit and
             * allocate it in one piece before any of it is buffered. */
            struct memlimit *ml = gr->ml;
            if (ml != NULL && mlen > s->msg.cap) {
                if (memlimit_account(ml, c->gw->w, &s->mem_held, mlen) < 0) {
                    memlimit_count_refused(ml, c->gw->w, MEMLIMIT_PROTO_GRPC, s->method);
                    respond_error(c, s, GRPC_ERR_MEMORY_LIMIT, NULL);
                    return;
                }
                size_t lim = s->msg.limit;
                buf_free(&s->msg);
                if (buf_init(&s->msg, mlen, lim) < 0) {
                    buf_init(&s->msg, 0, lim);
                    memlimit_account(ml, c->gw->w, &s->mem_held, 0);
                    respond_error(c, s, GRPC_ERR_NO_MEMORY, NULL);
                    return;
                }
            }
            s->compressed = (flag & GRPC_FLAG_COMPRESSED) != 0;
            s->msg_len = mlen;
            s->in_msg = true;
        }
        size_t n = BASE_MIN(len, (size_t)(s->msg_len - s->msg.len));
        if (n > 0) {
            if (buf_append(&s->msg, data, n) < 0) {
                respond_error(c, s, GRPC_ERR_NO_MEMORY, NULL);
                return;
            }
            c->buffered_bytes += n;
            data += n;
            len -= n;
        }
        if (s->msg.len == s->msg_len) {
            s->in_msg = false;
            s->hdr_got = 0;
            s->n_msgs++;
        }
    }
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user_data)
{
    (void)flags;
    struct grpc_conn *c = user_data;
    struct grpc_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (s == NULL) {
        /* a refused stream: give the connection window back */
        c->conn_release += len;
        return 0;
    }
    /* Window credit is given back in credit(), after this mem_recv. */
    uint32_t before = BASE_MAX(s->held_conn, s->held_stream);
    s->held_conn += (uint32_t)len;
    s->held_stream += (uint32_t)len;
    c->held_bytes += BASE_MAX(s->held_conn, s->held_stream) - before;
    stream_data(c, s, data, len);
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct grpc_conn *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    struct grpc_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        s->remote_done = true;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST &&
        s->state == ST_HEADERS)
        head_complete(c, s);
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
        request_complete(c, s);
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct grpc_conn *c = user_data;
    if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct grpc_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (s != NULL && s->rst_after_response && !s->remote_done)
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    }
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
        struct grpc_receiver *gr = c->gw->gr;
        obs_counter_inc(gr->reg, c->gw->w, gr->m_errors + GRPC_ERR_HTTP2);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    (void)error_code;
    struct grpc_conn *c = user_data;
    struct grpc_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (s == NULL)
        return 0;
    if (s->state != ST_DONE) {
        /* Reset (or closed by GOAWAY) before the request was complete:
         * nothing was acknowledged, the client retries. */
        struct grpc_receiver *gr = c->gw->gr;
        obs_counter_inc(gr->reg, c->gw->w, gr->m_errors + GRPC_ERR_STREAM_RESET);
        count_request(c, s, GRPC_STATUS_CANCELLED);
    }
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    stream_put(c, s);
    return 0;
}

/* ---- connection ---- */

int grpc_conn_init(struct grpc_conn *c, struct grpc_worker *gw)
{
    struct grpc_receiver *gr = gw->gr;
    memset(c, 0, sizeof(*c));
    c->gw = gw;
    nghttp2_session *ss;
    if (nghttp2_session_server_new2(&ss, gr->cbs, c, gr->opt) != 0)
        return -ENOMEM;
    c->session = ss;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, GRPC_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, gr->stream_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, gr->cfg->receiver.max_header_bytes},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    if (nghttp2_submit_settings(ss, NGHTTP2_FLAG_NONE, iv, ARRAY_SIZE(iv)) != 0 ||
        nghttp2_session_set_local_window_size(ss, NGHTTP2_FLAG_NONE, 0, (int32_t)gr->conn_window) !=
            0) {
        grpc_conn_fini(c);
        return -ENOMEM;
    }
    return 0;
}

void grpc_conn_fini(struct grpc_conn *c)
{
    if (c->session == NULL)
        return;
    struct grpc_receiver *gr = c->gw->gr;
    while (c->active != NULL) {
        struct grpc_stream *s = c->active;
        if (s->state != ST_DONE) {
            obs_counter_inc(gr->reg, c->gw->w, gr->m_errors + GRPC_ERR_CONN_CLOSED);
            count_request(c, s, GRPC_STATUS_CANCELLED);
        }
        stream_put(c, s);
    }
    nghttp2_session_del(c->session);
    c->session = NULL;
}

/*
 * Give window credit back for received bytes. Bytes of answered streams
 * are dropped and always credited. Otherwise credit waits while the
 * pipeline has no room (the client stalls on its window: back-pressure
 * instead of buffering or refusing). When the connection buffers more than
 * its budget, connection-level credit continues (so no stream can block
 * the others) but only the oldest request still arriving gets stream-level
 * credit, so it completes and frees its buffer; the others wait.
 */
static void credit(struct grpc_conn *c)
{
    nghttp2_session *ss = c->session;
    struct grpc_receiver *gr = c->gw->gr;
    if (c->conn_release > 0) {
        nghttp2_session_consume_connection(ss, (size_t)c->conn_release);
        c->conn_release = 0;
    }
    c->stalled = false;
    if (c->held_bytes == 0)
        return;
    bool room = pipeline_admit(gr->pipeline, c->gw->w, 1) == 0;
    bool over = c->buffered_bytes > gr->conn_budget;
    struct grpc_stream *head = NULL;
    if (over)
        for (struct grpc_stream *s = c->active; s != NULL; s = s->next)
            if (s->state == ST_BODY && (head == NULL || s->id < head->id))
                head = s;
    for (struct grpc_stream *s = c->active; s != NULL; s = s->next) {
        if (s->held_conn == 0 && s->held_stream == 0)
            continue;
        bool done = s->state == ST_DONE;
        if (!done && !room) {
            c->stalled = true;
            continue;
        }
        uint32_t before = BASE_MAX(s->held_conn, s->held_stream);
        if (s->held_conn > 0) {
            nghttp2_session_consume_connection(ss, s->held_conn);
            s->held_conn = 0;
        }
        if (s->held_stream > 0 && (done || !over || s == head)) {
            nghttp2_session_consume_stream(ss, s->id, s->held_stream);
            s->held_stream = 0;
        }
        c->held_bytes -= before - BASE_MAX(s->held_conn, s->held_stream);
    }
}

/* Pull frames out of nghttp2 into `out` up to the high-water mark. */
static int send_pending(struct grpc_conn *c, struct buf *out)
{
    nghttp2_session *ss = c->session;
    while (out->len < GRPC_OUT_HIGH_WATER) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(ss, &p);
        if (n < 0)
            return -EPROTO;
        if (n == 0)
            break;
        if (buf_append(out, p, (size_t)n) < 0)
            return -EMSGSIZE;
    }
    return 0;
}

static int fatal(struct grpc_conn *c, enum grpc_err e)
{
    struct grpc_receiver *gr = c->gw->gr;
    obs_counter_inc(gr->reg, c->gw->w, gr->m_errors + e);
    c->dead = true;
    return GRPC_CLOSE;
}

bool grpc_conn_want_write(const struct grpc_conn *c)
{
    return !c->dead && c->session != NULL && nghttp2_session_want_write(c->session);
}

bool grpc_conn_want_close(const struct grpc_conn *c)
{
    if (c->dead || c->session == NULL)
        return true;
    nghttp2_session *ss = c->session;
    return !nghttp2_session_want_read(ss) && !nghttp2_session_want_write(ss);
}

int grpc_conn_output(struct grpc_conn *c, struct buf *out)
{
    if (c->dead || c->session == NULL)
        return GRPC_CLOSE;
    nghttp2_session *ss = c->session;
    if (!c->goaway_sent && draining(c->gw->gr)) {
        /* Graceful: streams up to the last one seen complete; the client
         * opens new ones on another connection. */
        nghttp2_submit_goaway(ss, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(ss),
                              NGHTTP2_NO_ERROR, NULL, 0);
        c->goaway_sent = true;
    }
    credit(c);
    if (send_pending(c, out) < 0) {
        c->dead = true;
        return GRPC_CLOSE;
    }
    return grpc_conn_want_close(c) ? GRPC_CLOSE : GRPC_KEEP;
}

int grpc_conn_input(struct grpc_conn *c, const uint8_t *data, size_t len, struct buf *out)
{
    if (c->dead || c->session == NULL)
        return GRPC_CLOSE;
    if (len > 0) {
        ssize_t rv = nghttp2_session_mem_recv(c->session, data, len);
        if (rv < 0) {
            log_debug("grpc connection error", "error=%s", nghttp2_strerror((int)rv));
            return fatal(c, rv == NGHTTP2_ERR_FLOODED ? GRPC_ERR_FLOOD : GRPC_ERR_HTTP2);
        }
    }
    return grpc_conn_output(c, out);
}

uint64_t grpc_conn_deadline_ns(const struct grpc_conn *c)
{
    const struct grpc_receiver *gr = c->gw->gr;
    uint64_t best = 0;
    for (const struct grpc_stream *s = c->active; s != NULL; s = s->next) {
        if (s->state == ST_DONE)
            continue;
        uint64_t d = s->start_ns + gr->request_timeout_ns;
        if (s->deadline_ns != 0 && s->deadline_ns < d)
            d = s->deadline_ns;
        if (best == 0 || d < best)
            best = d;
    }
    return best;
}

int grpc_conn_expire(struct grpc_conn *c, uint64_t now_ns, struct buf *out)
{
    if (c->dead || c->session == NULL)
        return GRPC_CLOSE;
    const struct grpc_receiver *gr = c->gw->gr;
    for (struct grpc_stream *s = c->active; s != NULL; s = s->next) {
        if (s->state == ST_DONE)
            continue;
        if (s->deadline_ns != 0 && now_ns >= s->deadline_ns)
            respond_error(c, s, GRPC_ERR_DEADLINE, NULL);
        else if (now_ns >= s->start_ns + gr->request_timeout_ns)
            respond_error(c, s, GRPC_ERR_TIMEOUT, NULL);
    }
    return grpc_conn_output(c, out);
}

int grpc_conn_shutdown(struct grpc_conn *c, struct buf *out)
{
    if (c->dead || c->session == NULL)
        return GRPC_CLOSE;
    if (!c->goaway_sent) {
        nghttp2_session *ss = c->session;
        nghttp2_submit_goaway(ss, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(ss),
                              NGHTTP2_NO_ERROR, NULL, 0);
        c->goaway_sent = true;
    }
    return grpc_conn_output(c, out);
}
