/* SPDX-License-Identifier: Apache-2.0 */
/* NATS JetStream exporter: each batch becomes one JetStream message (the
 * Export*ServiceRequest protobuf) on its signal's subject, published
 * asynchronously with a Nats-Msg-Id that stays the same for every retry of the
 * batch, so the stream stores it once. libnats reports acknowledgements on its
 * own threads; they reach poll() on the export thread through a completion
 * list under a mutex and an eventfd. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <nats/nats.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "base/base.h"
#include "export/exporter.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "otlp/otlp.h"

/* libnats reports a publish without acknowledgement as NATS_TIMEOUT after
 * exporter.timeout_ms (jsPubOptions.MaxWait). Should that report never come
 * (a library bug, a connection torn down under it), poll() gives up on the
 * publish this much later and reports it retryable itself. */
#define NATS_LOST_ACK_GRACE_MS 2000
/* Stream look-up / creation is retried this often until it succeeds. */
#define NATS_STREAM_RETRY_MS 2000
/* nats-server's default duplicate window; a created stream gets at least this. */
#define NATS_MIN_DUP_WINDOW_MS 120000u
/* How long destroy() waits for libnats's threads to finish. */
#define NATS_CLOSE_WAIT_MS 5000
#define NATS_MSG_ID_LEN 48

/* One publish awaiting its acknowledgement, or a finished one awaiting poll(). */
struct nats_slot {
    struct batch *b;      /* NULL: free */
    const natsMsg *msg;   /* the message libnats owns while in flight: names the ack */
    uint64_t deadline_ms; /* the acknowledgement is overdue after this */
    bool done;            /* r is set and the slot is on the done list */
    struct export_result r;
};

/* Retry identity: the runner re-submits a retried batch as the same struct
 * batch with attempts > 1 and first_attempt_ms unchanged; a pooled batch
 * reused for new data starts again at attempts 1. */
struct nats_id {
    struct batch *b; /* NULL: empty bucket */
    uint64_t first_attempt_ms;
    uint64_t seq;
};

struct nats_exp;

/*
 * What libnats's threads touch. The callbacks take `mu` and do nothing once
 * `x` is NULL, so destroy() only has to clear `x` under the lock; the link
 * itself is freed once libnats's threads are known to have ended.
 */
struct nats_link {
    pthread_mutex_t mu;
    struct nats_exp *x;
    struct nats_link *next_retired;
};

struct nats_report {
    struct batch *b;
    struct export_result r;
};

struct nats_exp {
    struct nats_link *link;
    natsOptions *opts;
    natsConnection *nc;
    jsCtx *js;
    int efd; /* eventfd: completions and wakeup() */

    char *subjects[OTLP_SIGNAL_COUNT];
    char *stream;
    bool create_stream;
    uint32_t replicas;
    uint64_t max_bytes;
    uint32_t dup_window_ms;
    uint32_t timeout_ms;
    char **hdr_names, **hdr_values; /* exporter.headers as NATS headers */
    unsigned n_hdrs;

    /* Nats-Msg-Id = "<id_prefix>-<seq>": random per process, so a restarted
     * gateway never collides with ids still in the stream's window. */
    char id_prefix[17];
    uint64_t next_seq;
    struct nats_id *ids; /* open addressing, linear probing; cap a power of 2 */
    unsigned ids_cap, ids_n;

    /* under link->mu: slot b/msg/done/r and the done list */
    struct nats_slot *slots;
    unsigned n_slots;
    unsigned *done_list, n_done;
    unsigned in_flight;          /* export thread only */
    struct nats_report *reports; /* scratch for poll() */

    bool stream_done; /* looked up (and created) */
    uint64_t next_stream_try_ms;
    bool max_payload_checked;
    uint64_t max_batch_bytes;

    /* totals for /metrics (read by the scraper) and the final log line */
    _Atomic uint64_t n_published, n_acked, n_duplicates, n_timeouts, n_failed, n_reconnects;
    _Atomic uint64_t pending; /* = in_flight, readable from any thread */
    _Atomic uint64_t is_connected;
};

/* ---- libnats lifetime ---- */

/* nats_CloseAndWait() is process-wide: only the last exporter calls it, and
 * links retired before then wait for it here. */
static pthread_mutex_t nats_lib_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned nats_lib_users;
static struct nats_link *nats_retired;

static void nats_lib_acquire(void)
{
    pthread_mutex_lock(&nats_lib_mu);
    nats_lib_users++;
    pthread_mutex_unlock(&nats_lib_mu);
}

/* Retire `l` (may be NULL); when no exporter is left, wait for libnats's
 * threads and free every retired link. */
static void nats_lib_release(struct nats_link *l)
{
    pthread_mutex_lock(&nats_lib_mu);
    if (l != NULL) {
        l->next_retired = nats_retired;
        nats_retired = l;
    }
    if (--nats_lib_users == 0) {
        natsStatus st = nats_CloseAndWait(NATS_CLOSE_WAIT_MS);
        if (st == NATS_OK) {
            while (nats_retired != NULL) {
                struct nats_link *n = nats_retired->next_retired;
                pthread_mutex_destroy(&nats_retired->mu);
                free(nats_retired);
                nats_retired = n;
            }
        } else {
            /* a callback may still run: keep the links (a few bytes) */
            log_warn("nats exporter: library threads did not end in time", "error=%s",
                     natsStatus_GetText(st));
        }
    }
    pthread_mutex_unlock(&nats_lib_mu);
}

/* ---- message ids ---- */

static unsigned id_bucket(const struct nats_exp *x, const struct batch *b)
{
    uint64_t h = (uint64_t)(uintptr_t)b * 0x9E3779B97F4A7C15ull;
    return (unsigned)(h >> 32) & (x->ids_cap - 1);
}

static struct nats_id *id_find(struct nats_exp *x, const struct batch *b)
{
    for (unsigned i = id_bucket(x, b);; i = (i + 1) & (x->ids_cap - 1)) {
        if (x->ids[i].b == b)
            return &x->ids[i];
        if (x->ids[i].b == NULL)
            return NULL;
    }
}

static int id_grow(struct nats_exp *x)
{
    unsigned old_cap = x->ids_cap;
    struct nats_id *old = x->ids;
    unsigned cap = old_cap ? old_cap * 2 : 64;
    struct nats_id *n = calloc(cap, sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    x->ids = n;
    x->ids_cap = cap;
    for (unsigned i = 0; i < old_cap; i++) {
        if (old[i].b == NULL)
            continue;
        unsigned j = id_bucket(x, old[i].b);
        while (n[j].b != NULL)
            j = (j + 1) & (cap - 1);
        n[j] = old[i];
    }
    free(old);
    return 0;
}

/* Remove b's entry (backward-shift deletion keeps probe chains intact). */
static void id_forget(struct nats_exp *x, const struct batch *b)
{
    struct nats_id *e = id_find(x, b);
    if (e == NULL)
        return;
    unsigned mask = x->ids_cap - 1;
    unsigned i = (unsigned)(e - x->ids);
    for (unsigned j = (i + 1) & mask; x->ids[j].b != NULL; j = (j + 1) & mask) {
        unsigned home = id_bucket(x, x->ids[j].b);
        /* move j into the hole at i unless its home lies cyclically in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            x->ids[i] = x->ids[j];
            i = j;
        }
    }
    x->ids[i].b = NULL;
    x->ids_n--;
}

/*
 * The id sequence for this attempt of `b`: the one of its first attempt for a
 * retry, a new one otherwise. Entries of batches the runner dropped after a
 * retryable failure stay until their struct batch is reused (attempts 1),
 * so the map never outgrows the batch pool. Returns 0 or -ENOMEM.
 */
static int id_for(struct nats_exp *x, struct batch *b, uint64_t *seq)
{
    if (x->ids_n + 1 > x->ids_cap / 2 && id_grow(x) < 0)
        return -ENOMEM;
    struct nats_id *e = id_find(x, b);
    if (e != NULL && b->attempts > 1 && e->first_attempt_ms == b->first_attempt_ms) {
        *seq = e->seq;
        return 0;
    }
    if (e == NULL) {
        unsigned i = id_bucket(x, b);
        while (x->ids[i].b != NULL)
            i = (i + 1) & (x->ids_cap - 1);
        e = &x->ids[i];
        x->ids_n++;
    }
    e->b = b;
    e->first_attempt_ms = b->first_attempt_ms;
    e->seq = ++x->next_seq;
    *seq = e->seq;
    return 0;
}

/* ---- results ---- */

static void set_result(struct export_result *r, enum export_status st, const char *reason,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void set_result(struct export_result *r, enum export_status st, const char *reason,
                       const char *fmt, ...)
{
    memset(r, 0, sizeof(*r));
    r->status = st;
    snprintf(r->reason, sizeof(r->reason), "%s", reason);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
}

static bool has_icase(const char *s, const char *what)
{
    return s != NULL && strcasestr(s, what) != NULL;
}

/*
 * A negative JetStream acknowledgement. Stream limits with discard "new"
 * ("maximum messages/bytes exceeded"), a message above the stream's
 * max_msg_size and a sealed stream will not change on a retry: PERMANENT.
 * Everything else (no leader yet, stream offline, storage hiccups) is
 * RETRYABLE, like a 503.
 */
static void jetstream_error(struct export_result *r, jsErrCode code, const char *text)
{
    const char *t = text != NULL ? text : "";
    if (code == JSStreamMessageExceedsMaximumErr)
        set_result(r, EXPORT_PERMANENT, "message_too_large", "JetStream %d: %s", (int)code, t);
    else if (code == JSStreamSealedErr)
        set_result(r, EXPORT_PERMANENT, "stream_sealed", "JetStream %d: %s", (int)code, t);
    else if (has_icase(t, "maximum messages") || has_icase(t, "maximum bytes") ||
             has_icase(t, "maximum msgs"))
        set_result(r, EXPORT_PERMANENT, "stream_full", "JetStream %d: %s", (int)code, t);
    else
        set_result(r, EXPORT_RETRYABLE, "jetstream_error", "JetStream %d: %s", (int)code, t);
}

/* A publish that libnats refused to start (we still own the message). */
static void publish_error(struct export_result *r, natsStatus st)
{
    const char *last = nats_GetLastError(NULL);
    const char *text = last != NULL && *last != '\0' ? last : natsStatus_GetText(st);
    if (st == NATS_MAX_PAYLOAD)
        set_result(r, EXPORT_PERMANENT, "message_too_large", "%s", text);
    else
        set_result(r, EXPORT_RETRYABLE, "publish_failed", "%s", text);
}

/* ---- libnats callbacks (libnats threads) ---- */

/* Queue slot `i` for poll(). Called with link->mu held. */
static void push_done(struct nats_exp *x, unsigned i)
{
    x->slots[i].done = true;
    x->done_list[x->n_done++] = i;
    uint64_t one = 1;
    ssize_t w = write(x->efd, &one, sizeof(one));
    (void)w; /* EAGAIN: the counter is non-zero, poll() wakes anyway */
}

/* The slot whose publish is `m`; NULL when poll() already gave up on it. */
static struct nats_slot *slot_of(struct nats_exp *x, const natsMsg *m, unsigned *idx)
{
    for (unsigned i = 0; i < x->n_slots; i++) {
        struct nats_slot *s = &x->slots[i];
        if (s->b != NULL && !s->done && s->msg == m) {
            *idx = i;
            return s;
        }
    }
    return NULL;
}

/* JetStream acknowledgement (pa) or failure (pae) of one asynchronous
 * publish, including libnats's own MaxWait timeout. We own `m`. */
static void on_ack(jsCtx *js, natsMsg *m, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    struct nats_link *l = closure;
    pthread_mutex_lock(&l->mu);
    struct nats_exp *x = l->x;
    unsigned i;
    struct nats_slot *s = x != NULL ? slot_of(x, m, &i) : NULL;
    if (s != NULL) {
        struct export_result *r = &s->r;
        if (pa != NULL) {
            set_result(r, EXPORT_OK, "", "%s", "");
            if (pa->Duplicate)
                atomic_fetch_add_explicit(&x->n_duplicates, 1, memory_order_relaxed);
        } else if (pae == NULL) {
            set_result(r, EXPORT_RETRYABLE, "nats_error", "%s", "acknowledgement without status");
        } else if (pae->Err == NATS_TIMEOUT) {
            set_result(r, EXPORT_RETRYABLE, "timeout", "no JetStream acknowledgement within %u ms",
                       x->timeout_ms);
            atomic_fetch_add_explicit(&x->n_timeouts, 1, memory_order_relaxed);
        } else if (pae->Err == NATS_NO_RESPONDERS) {
            set_result(r, EXPORT_RETRYABLE, "no_responders",
                       "no JetStream stream takes subject %s (stream %s missing or without "
                       "a leader)",
                       natsMsg_GetSubject(m), x->stream);
        } else if (pae->ErrCode != 0) {
            jetstream_error(r, pae->ErrCode, pae->ErrText);
        } else {
            set_result(r, EXPORT_RETRYABLE, "nats_error", "%s",
                       pae->ErrText != NULL ? pae->ErrText : natsStatus_GetText(pae->Err));
        }
        push_done(x, i);
    }
    pthread_mutex_unlock(&l->mu);
    natsMsg_Destroy(m);
}

static void conn_url(natsConnection *nc, char *buf, size_t n)
{
    buf[0] = '\0';
    if (natsConnection_GetConnectedUrl(nc, buf, n) != NATS_OK)
        buf[0] = '\0';
}

/* Record a connection event for /metrics. Returns false once destroy()
 * began: those events are expected and not logged. */
static bool live(void *closure, int up, bool reconnect)
{
    struct nats_link *l = closure;
    pthread_mutex_lock(&l->mu);
    struct nats_exp *x = l->x;
    if (x != NULL && up >= 0)
        atomic_store_explicit(&x->is_connected, (uint64_t)up, memory_order_relaxed);
    if (x != NULL && reconnect)
        atomic_fetch_add_explicit(&x->n_reconnects, 1, memory_order_relaxed);
    pthread_mutex_unlock(&l->mu);
    return x != NULL;
}

static void on_connected(natsConnection *nc, void *closure)
{
    if (!live(closure, 1, false))
        return;
    char url[256];
    conn_url(nc, url, sizeof(url));
    log_info("nats exporter connected", "url=%s", url);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    if (!live(closure, 0, false))
        return;
    log_warn("nats exporter disconnected; reconnecting, exports are retried meanwhile", "");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    if (!live(closure, 1, true))
        return;
    char url[256];
    conn_url(nc, url, sizeof(url));
    log_info("nats exporter reconnected", "url=%s", url);
}

static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    if (!live(closure, 0, false))
        return;
    log_warn("nats exporter connection closed", "");
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    if (!live(closure, -1, false))
        return;
    log_warn("nats exporter: asynchronous error", "error=%s", natsStatus_GetText(err));
}

/* ---- stream ---- */

/*
 * Look the stream up and, with create_stream, create it when it does not
 * exist: file storage, limits retention (discard old), the three subjects,
 * the configured replicas, max_bytes and duplicate window. An existing stream
 * is used as it is. Runs on the export thread and waits up to timeout_ms.
 * Returns 0 when done (found, created, or missing without create_stream),
 * -EAGAIN to try again later.
 */
static int ensure_stream(struct nats_exp *x)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus st = js_GetStreamInfo(&si, x->js, x->stream, NULL, &jerr);
    if (st == NATS_OK) {
        const jsStreamConfig *c = si->Config;
        log_info("nats exporter: using stream",
                 "stream=%s replicas=%" PRId64 " subjects=%d messages=%" PRIu64
                 " duplicate_window_ms=%" PRId64,
                 x->stream, c != NULL ? c->Replicas : 0, c != NULL ? c->SubjectsLen : 0,
                 si->State.Msgs, c != NULL ? c->Duplicates / 1000000 : 0);
        if (c != NULL && c->Duplicates / 1000000 < (int64_t)x->dup_window_ms)
            log_warn("nats exporter: the stream's duplicate window is shorter than the retry "
                     "horizon; a batch retried after it may be stored twice",
                     "stream=%s duplicate_window_ms=%" PRId64 " needed_ms=%u", x->stream,
                     c->Duplicates / 1000000, x->dup_window_ms);
        jsStreamInfo_Destroy(si);
        return 0;
    }
    if (st != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
        log_warn("nats exporter: cannot look up the stream; will try again", "stream=%s error=%s",
                 x->stream, nats_GetLastError(NULL));
        return -EAGAIN;
    }
    if (!x->create_stream) {
        log_warn("nats exporter: stream does not exist and exporter.nats.create_stream is false; "
                 "exports fail (and are retried) until it is created",
                 "stream=%s", x->stream);
        return 0;
    }
    const char *subj[OTLP_SIGNAL_COUNT];
    int n = 0;
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        bool dup = false;
        for (int k = 0; k < n; k++)
            dup = dup || strcmp(subj[k], x->subjects[s]) == 0;
        if (!dup)
            subj[n++] = x->subjects[s];
    }
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = x->stream;
    sc.Subjects = subj;
    sc.SubjectsLen = n;
    sc.Storage = js_FileStorage;
    sc.Retention = js_LimitsPolicy;
    sc.Discard = js_DiscardOld;
    sc.Replicas = x->replicas;
    sc.MaxBytes = x->max_bytes > 0 ? (int64_t)x->max_bytes : -1;
    sc.Duplicates = (int64_t)x->dup_window_ms * 1000000;
    st = js_AddStream(&si, x->js, &sc, NULL, &jerr);
    if (st == NATS_OK || jerr == JSStreamNameExistErr) {
        /* NameExist: another gateway created it first */
        log_info("nats exporter: created stream",
                 "stream=%s replicas=%u max_bytes=%" PRIu64
                 " duplicate_window_ms=%u subjects=%s,%s,%s",
                 x->stream, x->replicas, x->max_bytes, x->dup_window_ms, x->subjects[0],
                 x->subjects[1], x->subjects[2]);
        jsStreamInfo_Destroy(si);
        return 0;
    }
    log_error("nats exporter: cannot create the stream; will try again",
              "stream=%s code=%d error=%s", x->stream, (int)jerr, nats_GetLastError(NULL));
    return -EAGAIN;
}

static bool connected(const struct nats_exp *x)
{
    return natsConnection_Status(x->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* Once connected: the stream (until done) and the payload limit (once). */
static void connected_setup(struct nats_exp *x, uint64_t now)
{
    if (!connected(x))
        return;
    if (!x->max_payload_checked) {
        x->max_payload_checked = true;
        int64_t mp = natsConnection_GetMaxPayload(x->nc);
        if (mp > 0 && x->max_batch_bytes > (uint64_t)mp)
            log_warn("nats exporter: batch.max_batch_bytes is above the server's max_payload; "
                     "larger batches are rejected (message_too_large)",
                     "max_batch_bytes=%" PRIu64 " max_payload=%" PRId64, x->max_batch_bytes, mp);
    }
    if (!x->stream_done && now >= x->next_stream_try_ms) {
        x->stream_done = ensure_stream(x) == 0;
        x->next_stream_try_ms = base_now_ms() + NATS_STREAM_RETRY_MS;
    }
}

/* ---- ops ---- */

/* Report slot `i` finished without a publish (not connected, too large...). */
static void finish_now(struct nats_exp *x, unsigned i, struct batch *b,
                       const struct export_result *r)
{
    pthread_mutex_lock(&x->link->mu);
    struct nats_slot *s = &x->slots[i];
    s->b = b;
    s->msg = NULL;
    s->r = *r;
    push_done(x, i);
    pthread_mutex_unlock(&x->link->mu);
    x->in_flight++;
    atomic_store_explicit(&x->pending, x->in_flight, memory_order_relaxed);
}

static int nats_submit(void *state, struct batch *b)
{
    struct nats_exp *x = state;
    if (b == NULL || (unsigned)b->signal >= OTLP_SIGNAL_COUNT)
        return -EINVAL;
    if (x->in_flight >= x->n_slots)
        return -EBUSY;
    unsigned i = 0;
    while (x->slots[i].b != NULL) /* in_flight < n_slots: one is free */
        i++;
    uint64_t seq;
    if (id_for(x, b, &seq) < 0)
        return -ENOMEM;
    char id[NATS_MSG_ID_LEN];
    snprintf(id, sizeof(id), "%s-%" PRIu64, x->id_prefix, seq);

    uint64_t now = base_now_ms();
    connected_setup(x, now);
    struct export_result r;
    if (!connected(x)) {
        /* Publishing now would only fill libnats's reconnect buffer. */
        set_result(&r, EXPORT_RETRYABLE, "not_connected", "%s",
                   "no NATS server connection; reconnecting");
        finish_now(x, i, b, &r);
        return 0;
    }
    const char *subject = x->subjects[b->signal];
    int64_t max_payload = natsConnection_GetMaxPayload(x->nc);
    size_t len = b->body.len;
    if (len > INT_MAX || (max_payload > 0 && (uint64_t)len > (uint64_t)max_payload)) {
        set_result(&r, EXPORT_PERMANENT, "message_too_large",
                   "batch of %zu bytes is above the server's max_payload (%" PRId64
                   "); lower batch.max_batch_bytes",
                   len, max_payload);
        finish_now(x, i, b, &r);
        return 0;
    }

    natsMsg *m = NULL;
    natsStatus st = natsMsg_Create(&m, subject, NULL, (const char *)b->body.data, (int)len);
    if (st == NATS_OK)
        st = natsMsgHeader_Set(m, "Content-Type", "application/x-protobuf");
    for (unsigned h = 0; st == NATS_OK && h < x->n_hdrs; h++)
        st = natsMsgHeader_Set(m, x->hdr_names[h], x->hdr_values[h]);
    if (st != NATS_OK) {
        natsMsg_Destroy(m);
        return -ENOMEM;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    po.MaxWait = x->timeout_ms;

    /* Register before publishing: the acknowledgement may come first. */
    pthread_mutex_lock(&x->link->mu);
    struct nats_slot *s = &x->slots[i];
    s->b = b;
    s->msg = m;
    s->done = false;
    s->deadline_ms = now + x->timeout_ms + NATS_LOST_ACK_GRACE_MS;
    pthread_mutex_unlock(&x->link->mu);
    x->in_flight++;
    atomic_store_explicit(&x->pending, x->in_flight, memory_order_relaxed);
    atomic_fetch_add_explicit(&x->n_published, 1, memory_order_relaxed);

    st = js_PublishMsgAsync(x->js, &m, &po);
    if (st != NATS_OK) {
        /* libnats did not take the message and will not call on_ack for it */
        publish_error(&r, st);
        pthread_mutex_lock(&x->link->mu);
        s->msg = NULL;
        if (!s->done) { /* always: the guard keeps the done list bounded */
            s->r = r;
            push_done(x, i);
        }
        pthread_mutex_unlock(&x->link->mu);
        natsMsg_Destroy(m);
    }
    return 0;
}

static int nats_poll(void *state, int timeout_ms, export_done_fn done, void *arg)
{
    struct nats_exp *x = state;
    connected_setup(x, base_now_ms());
    pthread_mutex_lock(&x->link->mu);
    bool ready = x->n_done > 0;
    pthread_mutex_unlock(&x->link->mu);
    if (!ready && timeout_ms > 0) {
        struct pollfd pfd = {.fd = x->efd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR)
            return -errno;
    }
    uint64_t v;
    while (read(x->efd, &v, sizeof(v)) == (ssize_t)sizeof(v)) {
    }

    uint64_t now = base_now_ms();
    pthread_mutex_lock(&x->link->mu);
    for (unsigned i = 0; i < x->n_slots; i++) {
        struct nats_slot *s = &x->slots[i];
        if (s->b != NULL && !s->done && now > s->deadline_ms) {
            /* a late on_ack finds no slot and only frees the message */
            s->msg = NULL;
            set_result(&s->r, EXPORT_RETRYABLE, "timeout",
                       "no acknowledgement or timeout from libnats within %u ms",
                       x->timeout_ms + NATS_LOST_ACK_GRACE_MS);
            atomic_fetch_add_explicit(&x->n_timeouts, 1, memory_order_relaxed);
            push_done(x, i);
        }
    }
    unsigned n = x->n_done;
    for (unsigned k = 0; k < n; k++) {
        struct nats_slot *s = &x->slots[x->done_list[k]];
        x->reports[k].b = s->b;
        x->reports[k].r = s->r;
        s->b = NULL;
        s->msg = NULL;
        s->done = false;
    }
    x->n_done = 0;
    pthread_mutex_unlock(&x->link->mu);

    /* report from the copy: done() may submit again */
    for (unsigned k = 0; k < n; k++) {
        struct nats_report *rep = &x->reports[k];
        x->in_flight--;
        atomic_store_explicit(&x->pending, x->in_flight, memory_order_relaxed);
        atomic_fetch_add_explicit(rep->r.status == EXPORT_OK ? &x->n_acked : &x->n_failed, 1,
                                  memory_order_relaxed);
        if (rep->r.status != EXPORT_RETRYABLE)
            id_forget(x, rep->b);
        done(arg, rep->b, &rep->r);
    }
    return (int)n;
}

static void nats_wakeup(void *state)
{
    struct nats_exp *x = state;
    uint64_t one = 1;
    ssize_t w = write(x->efd, &one, sizeof(one));
    (void)w;
}

static void nats_destroy(void *state)
{
    struct nats_exp *x = state;
    if (x == NULL)
        return;
    struct nats_link *l = x->link;
    if (l != NULL) {
        pthread_mutex_lock(&l->mu);
        l->x = NULL; /* from here the callbacks leave x alone */
        pthread_mutex_unlock(&l->mu);
    }
    if (x->js != NULL)
        jsCtx_Destroy(x->js);
    if (x->nc != NULL) {
        log_info("nats exporter stopped",
                 "published=%" PRIu64 " acked=%" PRIu64 " duplicates=%" PRIu64 " timeouts=%" PRIu64
                 " failed=%" PRIu64 " in_flight=%u",
                 atomic_load(&x->n_published), atomic_load(&x->n_acked),
                 atomic_load(&x->n_duplicates), atomic_load(&x->n_timeouts),
                 atomic_load(&x->n_failed), x->in_flight);
        natsConnection_Destroy(x->nc);
    }
    natsOptions_Destroy(x->opts);
    if (l != NULL)
        nats_lib_release(l); /* frees l once libnats's threads are gone */
    if (x->efd >= 0)
        close(x->efd);
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++)
        free(x->subjects[s]);
    for (unsigned h = 0; h < x->n_hdrs; h++) {
        free(x->hdr_names[h]);
        free(x->hdr_values[h]);
    }
    free(x->hdr_names);
    free(x->hdr_values);
    free(x->stream);
    free(x->ids);
    free(x->slots);
    free(x->done_list);
    free(x->reports);
    free(x);
}

/* ---- metrics ---- */

static double read_u64(void *arg)
{
    return (double)atomic_load_explicit((_Atomic uint64_t *)arg, memory_order_relaxed);
}

/* otlp_nats_*: read at scrape time from the atomics above. */
static int nats_register_metrics(void *state, struct obs_registry *reg)
{
    struct nats_exp *x = state;
    const struct {
        bool counter;
        const char *name, *help;
        _Atomic uint64_t *v;
    } series[] = {
        {true, "otlp_nats_publishes_total",
         "JetStream publishes started (one per export attempt that reached the connection).",
         &x->n_published},
        {true, "otlp_nats_acks_total", "Positive JetStream acknowledgements.", &x->n_acked},
        {true, "otlp_nats_duplicate_acks_total",
         "Acknowledgements flagged duplicate: a retried batch JetStream had already stored.",
         &x->n_duplicates},
        {true, "otlp_nats_ack_timeouts_total",
         "Publishes without acknowledgement within exporter.timeout_ms.", &x->n_timeouts},
        {true, "otlp_nats_reconnects_total", "Reconnections to the NATS cluster.",
         &x->n_reconnects},
        {false, "otlp_nats_pending_acks", "Publishes awaiting their JetStream acknowledgement.",
         &x->pending},
        {false, "otlp_nats_connected", "1 while connected to a NATS server, else 0.",
         &x->is_connected},
    };
    for (size_t i = 0; i < ARRAY_SIZE(series); i++) {
        int rc = series[i].counter ? obs_counter_func_register(reg, series[i].name, series[i].help,
                                                               NULL, read_u64, series[i].v)
                                   : obs_gauge_func_register(reg, series[i].name, series[i].help,
                                                             NULL, read_u64, series[i].v);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static const struct exporter_ops nats_ops = {
    .name = "nats",
    .register_metrics = nats_register_metrics,
    .submit = nats_submit,
    .poll = nats_poll,
    .wakeup = nats_wakeup,
    .destroy = nats_destroy,
};

/* ---- set-up ---- */

static bool set(const char *s)
{
    return s != NULL && *s != '\0';
}

/* One entry of exporter.nats.servers ("a, b,c"): *len bytes at the
 * returned pointer, blanks trimmed; NULL at the end. Advances *p. */
static const char *next_server(const char **p, size_t *len)
{
    for (;;) {
        while (**p == ' ' || **p == '\t' || **p == ',')
            (*p)++;
        if (**p == '\0')
            return NULL;
        const char *s = *p;
        size_t n = strcspn(s, ",");
        *p += n;
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if (n > 0) {
            *len = n;
            return s;
        }
    }
}

/* Hand the server list to libnats; *tls when one is a tls:// URL.
 * Returns 0, -EINVAL, -ENOMEM. */
static int set_servers(natsOptions *o, const char *list, bool *tls)
{
    size_t total = strlen(list);
    char *store = malloc(total + 1);
    const char **urls = calloc(total / 2 + 1, sizeof(*urls));
    int n = 0, rc = -ENOMEM;
    if (store != NULL && urls != NULL) {
        char *w = store;
        const char *p = list, *u;
        size_t len;
        while ((u = next_server(&p, &len)) != NULL) {
            memcpy(w, u, len);
            w[len] = '\0';
            *tls = *tls || strncmp(w, "tls://", 6) == 0;
            urls[n++] = w;
            w += len + 1;
        }
        natsStatus st = n > 0 ? natsOptions_SetServers(o, urls, n) : NATS_INVALID_ARG;
        rc = st == NATS_OK ? 0 : st == NATS_NO_MEMORY ? -ENOMEM : -EINVAL;
        if (rc == -EINVAL)
            log_error("nats exporter: bad exporter.nats.servers", "error=%s",
                      n > 0 ? nats_GetLastError(NULL) : "no server");
    }
    free(store);
    free(urls);
    return rc;
}

/* The server list for logs, without user:password@ or token@. */
static void redact_servers(const char *list, char *out, size_t n)
{
    size_t used = 0;
    const char *p = list, *u;
    size_t len;
    out[0] = '\0';
    while ((u = next_server(&p, &len)) != NULL && used + 1 < n) {
        const char *auth = strstr(u, "://");
        auth = auth != NULL && auth < u + len ? auth + 3 : u;
        const char *at = memchr(auth, '@', len - (size_t)(auth - u));
        int w;
        if (at != NULL)
            w = snprintf(out + used, n - used, "%s%.*s***%.*s", used ? "," : "", (int)(auth - u), u,
                         (int)(u + len - at), at);
        else
            w = snprintf(out + used, n - used, "%s%.*s", used ? "," : "", (int)len, u);
        if (w < 0)
            break;
        used = BASE_MIN(used + (size_t)w, n - 1);
    }
}

#define NATS_TRY(call, what)                                                                       \
    do {                                                                                           \
        natsStatus st_ = (call);                                                                   \
        if (st_ != NATS_OK) {                                                                      \
            log_error("nats exporter: " what, "error=%s detail=%s", natsStatus_GetText(st_),       \
                      nats_GetLastError(NULL));                                                    \
            return st_ == NATS_NO_MEMORY ? -ENOMEM : -EINVAL;                                      \
        }                                                                                          \
    } while (0)

/* natsOptions from the config: servers, reconnect for ever, callbacks, TLS,
 * credentials. */
static int build_options(struct nats_exp *x, const struct svc_config *cfg)
{
    const struct exporter_config *ec = &cfg->exporter;
    const struct nats_exporter_config *nc = &ec->nats;
    bool tls = set(ec->tls.ca_file) || set(ec->tls.cert_file);
    NATS_TRY(natsOptions_Create(&x->opts), "cannot create options");
    int rc = set_servers(x->opts, nc->servers, &tls);
    if (rc < 0)
        return rc;
    natsOptions *o = x->opts;
    NATS_TRY(natsOptions_SetName(o, set(cfg->service.name) ? cfg->service.name : "otlp-service"),
             "cannot set the client name");
    /* Never give up: the runner decides when a batch is dropped. */
    NATS_TRY(natsOptions_SetMaxReconnect(o, -1), "cannot set max reconnect");
    NATS_TRY(natsOptions_SetReconnectWait(o, 250), "cannot set reconnect wait");
    NATS_TRY(natsOptions_SetTimeout(o, x->timeout_ms), "cannot set the connect timeout");
    NATS_TRY(natsOptions_SetPingInterval(o, 10000), "cannot set the ping interval");
    NATS_TRY(natsOptions_SetMaxPingsOut(o, 3), "cannot set max pings out");
    /* Start even when no server is up; the connection comes later. */
    NATS_TRY(natsOptions_SetRetryOnFailedConnect(o, true, on_connected, x->link),
             "cannot set retry on failed connect");
    NATS_TRY(natsOptions_SetDisconnectedCB(o, on_disconnected, x->link), "callback");
    NATS_TRY(natsOptions_SetReconnectedCB(o, on_reconnected, x->link), "callback");
    NATS_TRY(natsOptions_SetClosedCB(o, on_closed, x->link), "callback");
    NATS_TRY(natsOptions_SetErrorHandler(o, on_async_error, x->link), "callback");
    if (tls) {
        const struct tls_client_config *t = &ec->tls;
        NATS_TRY(natsOptions_SetSecure(o, true), "TLS is not available in libnats");
        if (set(t->ca_file))
            NATS_TRY(natsOptions_LoadCATrustedCertificates(o, t->ca_file),
                     "cannot load exporter.tls.ca_file");
        if (set(t->cert_file))
            NATS_TRY(natsOptions_LoadCertificatesChain(o, t->cert_file, t->key_file),
                     "cannot load exporter.tls.cert_file/key_file");
        if (set(t->server_name))
            NATS_TRY(natsOptions_SetExpectedHostname(o, t->server_name),
                     "cannot set exporter.tls.server_name");
        if (t->insecure)
            NATS_TRY(natsOptions_SkipServerVerification(o, true),
                     "cannot skip server verification");
    }
    if (set(nc->credentials_file))
        NATS_TRY(natsOptions_SetUserCredentialsFromFiles(o, nc->credentials_file, NULL),
                 "cannot use exporter.nats.credentials_file");
    return 0;
}

/* exporter.headers as NATS message headers, minus the ones we set and the
 * Nats-* headers JetStream interprets. */
static int copy_headers(struct nats_exp *x, const struct config_kv_list *hl)
{
    if (hl->n == 0)
        return 0;
    x->hdr_names = calloc(hl->n, sizeof(char *));
    x->hdr_values = calloc(hl->n, sizeof(char *));
    if (x->hdr_names == NULL || x->hdr_values == NULL)
        return -ENOMEM;
    for (unsigned i = 0; i < hl->n; i++) {
        const struct config_kv *kv = &hl->items[i];
        if (!set(kv->key) || strcasecmp(kv->key, "content-type") == 0 ||
            strncasecmp(kv->key, "nats-", 5) == 0) {
            log_warn("nats exporter: header ignored", "header=%s", kv->key ? kv->key : "");
            continue;
        }
        x->hdr_names[x->n_hdrs] = strdup(kv->key);
        x->hdr_values[x->n_hdrs] = strdup(kv->value != NULL ? kv->value : "");
        if (x->hdr_names[x->n_hdrs] == NULL || x->hdr_values[x->n_hdrs] == NULL) {
            free(x->hdr_names[x->n_hdrs]);
            free(x->hdr_values[x->n_hdrs]);
            return -ENOMEM;
        }
        x->n_hdrs++;
    }
    return 0;
}

int export_nats_create(const struct svc_config *cfg, struct exporter *out)
{
    if (cfg == NULL || out == NULL)
        return -EINVAL;
    const struct exporter_config *ec = &cfg->exporter;
    const struct nats_exporter_config *nc = &ec->nats;
    if (!set(nc->servers) || !set(nc->subject_prefix) || !set(nc->stream)) {
        log_error("nats exporter needs exporter.nats.servers, subject_prefix and stream", "");
        return -EINVAL;
    }
    if (set(ec->tls.cert_file) != set(ec->tls.key_file)) {
        log_error("exporter.tls.cert_file and key_file go together", "");
        return -EINVAL;
    }
    struct nats_exp *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return -ENOMEM;
    int rc = -ENOMEM;
    x->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (x->efd < 0) {
        rc = -errno;
        goto fail;
    }
    x->timeout_ms = ec->timeout_ms;
    x->create_stream = nc->create_stream;
    x->replicas = nc->stream_replicas;
    x->max_bytes = nc->stream_max_bytes;
    x->max_batch_bytes = cfg->batch.max_batch_bytes;
    /* Every retry of a batch must fall inside the window to be recognised. */
    uint64_t dw = nc->stream_duplicate_window_ms;
    if (dw == 0) {
        dw = (uint64_t)ec->retry.max_elapsed_ms + ec->timeout_ms + NATS_LOST_ACK_GRACE_MS;
        dw = BASE_MAX(dw, (uint64_t)NATS_MIN_DUP_WINDOW_MS);
    }
    x->dup_window_ms = (uint32_t)BASE_MIN(dw, (uint64_t)UINT32_MAX);
    x->stream = strdup(nc->stream);
    if (x->stream == NULL)
        goto fail;
    const char *named[OTLP_SIGNAL_COUNT] = {nc->traces_subject, nc->metrics_subject,
                                            nc->logs_subject};
    for (unsigned s = 0; s < OTLP_SIGNAL_COUNT; s++) {
        if (set(named[s]))
            x->subjects[s] = strdup(named[s]);
        else if (asprintf(&x->subjects[s], "%s.%s", nc->subject_prefix, otlp_signal_names[s]) < 0)
            x->subjects[s] = NULL;
        if (x->subjects[s] == NULL)
            goto fail;
    }
    if ((rc = copy_headers(x, &ec->headers)) < 0)
        goto fail;

    /* The window: the runner never has more than max_concurrent_exports out. */
    x->n_slots = BASE_MIN(nc->max_pending, BASE_MAX(cfg->batch.max_concurrent_exports, 1u));
    x->n_slots = BASE_MAX(x->n_slots, 1u);
    if (nc->max_pending < cfg->batch.max_concurrent_exports)
        log_warn("nats exporter: exporter.nats.max_pending is below batch.max_concurrent_exports; "
                 "submissions beyond it are refused and retried",
                 "max_pending=%u max_concurrent_exports=%u", nc->max_pending,
                 cfg->batch.max_concurrent_exports);
    rc = -ENOMEM;
    x->slots = calloc(x->n_slots, sizeof(*x->slots));
    x->done_list = calloc(x->n_slots, sizeof(*x->done_list));
    x->reports = calloc(x->n_slots, sizeof(*x->reports));
    if (x->slots == NULL || x->done_list == NULL || x->reports == NULL || id_grow(x) < 0)
        goto fail;

    uint8_t rnd[8];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        uint64_t t = base_wall_ns() ^ ((uint64_t)getpid() << 32);
        memcpy(rnd, &t, sizeof(rnd));
    }
    for (unsigned i = 0; i < sizeof(rnd); i++)
        snprintf(x->id_prefix + 2 * i, 3, "%02x", rnd[i]);

    x->link = calloc(1, sizeof(*x->link));
    if (x->link == NULL)
        goto fail;
    pthread_mutex_init(&x->link->mu, NULL);
    x->link->x = x;
    nats_lib_acquire();
    if ((rc = build_options(x, cfg)) < 0)
        goto fail;

    natsStatus st = natsConnection_Connect(&x->nc, x->opts);
    if (st != NATS_OK && st != NATS_NOT_YET_CONNECTED) {
        log_error("nats exporter: cannot create the connection", "error=%s detail=%s",
                  natsStatus_GetText(st), nats_GetLastError(NULL));
        rc = st == NATS_NO_MEMORY ? -ENOMEM : -EIO;
        goto fail;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = ec->timeout_ms;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = x->link;
    /* no MaxPending: the slots bound the window, and a stall would block
     * the export thread */
    st = natsConnection_JetStream(&x->js, x->nc, &jo);
    if (st != NATS_OK) {
        log_error("nats exporter: cannot create the JetStream context", "error=%s",
                  natsStatus_GetText(st));
        rc = st == NATS_NO_MEMORY ? -ENOMEM : -EIO;
        goto fail;
    }
    if (connected(x)) /* else on_connected() says when */
        atomic_store(&x->is_connected, 1u);
    connected_setup(x, base_now_ms());
    char shown[512];
    redact_servers(nc->servers, shown, sizeof(shown));
    log_info("nats exporter ready",
             "servers=%s connected=%s stream=%s subjects=%s,%s,%s window=%u timeout_ms=%u "
             "msg_id_prefix=%s",
             shown, connected(x) ? "true" : "false", x->stream, x->subjects[0], x->subjects[1],
             x->subjects[2], x->n_slots, x->timeout_ms, x->id_prefix);
    out->ops = &nats_ops;
    out->state = x;
    return 0;
fail:
    nats_destroy(x);
    return rc;
}
