/* SPDX-License-Identifier: Apache-2.0 */
/* A worker's write-ahead log (wal.h): a spool written by one worker, with a
 * reference count per segment that the export thread decrements, so a
 * segment leaves the disk once every batch with data in it is done. */
#include "spool/wal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "obs/log.h"

enum wal_seg_state { WAL_SEG_FREE = 0, WAL_SEG_ACTIVE, WAL_SEG_SEALED };

/* One segment of this run, slot gen % WAL_MAX_SEGS. Worker only. */
struct wal_seg {
    uint64_t first_seq; /* the spool segment's name */
    uint64_t opened_ms;
    uint8_t state;
};

struct wal {
    struct spool *s;
    struct wal_options o;
    char *dir;
    /* segments of this run: generations [head, next), the last one ACTIVE
     * when `active` */
    uint32_t head, next;
    bool active;
    uint64_t released_seen;
    struct wal_seg segs[WAL_MAX_SEGS];
    /* written by both sides */
    _Atomic uint32_t refs[WAL_MAX_SEGS];
    _Alignas(BASE_CACHE_LINE) _Atomic uint64_t released; /* bumped when a count reaches 0 */
    /* published by the owner for wal_get_stats() */
    _Alignas(BASE_CACHE_LINE) _Atomic uint64_t pub[8];
    uint64_t recovered, drop_errors;
};

static struct wal_seg *seg_at(struct wal *w, uint32_t gen)
{
    return &w->segs[gen % WAL_MAX_SEGS];
}

/* Copy the spool's figures where other threads read them. */
static void publish(struct wal *w)
{
    struct spool_stats st;
    spool_get_stats(w->s, &st);
    uint64_t v[8] = {st.bytes,
                     st.segments,
                     st.appends_total,
                     st.fsyncs_total,
                     st.full_total,
                     st.io_errors_total + w->drop_errors,
                     st.corrupt_records_total,
                     w->recovered};
    for (int i = 0; i < 8; i++)
        atomic_store_explicit(&w->pub[i], v[i], memory_order_relaxed);
}

void wal_get_stats(const struct wal *w, struct wal_stats *st)
{
    struct wal *m = (struct wal *)w;
    uint64_t v[8];
    for (int i = 0; i < 8; i++)
        v[i] = atomic_load_explicit(&m->pub[i], memory_order_relaxed);
    *st = (struct wal_stats){v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
}

int wal_open(const struct wal_options *o, struct wal **out)
{
    if (o == NULL || out == NULL || o->segment_ms == 0)
        return -EINVAL;
    struct wal *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->o = *o;
    w->dir = strdup(o->dir != NULL ? o->dir : "");
    if (w->dir == NULL) {
        free(w);
        return -ENOMEM;
    }
    w->o.dir = w->dir;
    for (unsigned i = 0; i < WAL_MAX_SEGS; i++)
        atomic_init(&w->refs[i], 0);
    atomic_init(&w->released, 0);
    struct spool_options so = {
        .dir = w->dir,
        .max_bytes = o->max_bytes,
        .segment_bytes = o->segment_bytes,
        .fsync = o->fsync,
        .fsync_interval_ms = o->fsync_interval_ms,
    };
    int rc = spool_open(&so, &w->s);
    if (rc < 0) {
        free(w->dir);
        free(w);
        return rc;
    }
    publish(w);
    *out = w;
    return 0;
}

/* Delete the sealed segments nobody references; move head past freed ones. */
static void sweep(struct wal *w)
{
    for (uint32_t g = w->head; g != w->next; g++) {
        struct wal_seg *sg = seg_at(w, g);
        if (sg->state != WAL_SEG_SEALED ||
            atomic_load_explicit(&w->refs[g % WAL_MAX_SEGS], memory_order_acquire) != 0)
            continue;
        int rc = spool_drop_segment(w->s, sg->first_seq);
        if (rc < 0 && rc != -ENOENT) {
            w->drop_errors++;
            log_error("wal: cannot delete a delivered segment", "dir=%s seq=%" PRIu64 " error=%s",
                      w->dir, sg->first_seq, strerror(-rc));
        }
        sg->state = WAL_SEG_FREE;
    }
    while (w->head != w->next && seg_at(w, w->head)->state == WAL_SEG_FREE)
        w->head++;
}

/* Stop writing to the active segment; the next append starts a new one. */
static void seal(struct wal *w)
{
    if (!w->active)
        return;
    (void)spool_seal(w->s);
    seg_at(w, w->next - 1)->state = WAL_SEG_SEALED;
    w->active = false;
}

void wal_close(struct wal *w)
{
    if (w == NULL)
        return;
    seal(w);
    sweep(w);
    if (w->head != w->next)
        log_info("wal: closed with undelivered data kept for the next start", "dir=%s segments=%u",
                 w->dir, (unsigned)(w->next - w->head));
    spool_close(w->s);
    free(w->dir);
    free(w);
}

int wal_append(struct wal *w, enum otlp_signal sig, uint64_t items, const void *data, size_t len,
               uint32_t *seg)
{
    if (unlikely(w->next - w->head >= WAL_MAX_SEGS)) {
        /* A new segment could not be tracked: no room until one is freed. */
        sweep(w);
        if (w->next - w->head >= WAL_MAX_SEGS) {
            atomic_fetch_add_explicit(&w->pub[4], 1, memory_order_relaxed);
            return -ENOSPC;
        }
    }
    int rc = spool_append(w->s, sig, items, data, len);
    if (unlikely(rc < 0)) {
        publish(w);
        return rc;
    }
    uint64_t first = spool_write_segment(w->s);
    if (!w->active || seg_at(w, w->next - 1)->first_seq != first) {
        /* The spool rolled to a new segment (or this is the first append
         * since a seal): the previous one is sealed. */
        if (w->active)
            seg_at(w, w->next - 1)->state = WAL_SEG_SEALED;
        struct wal_seg *sg = seg_at(w, w->next);
        *sg = (struct wal_seg){
            .first_seq = first, .opened_ms = base_now_ms(), .state = WAL_SEG_ACTIVE};
        atomic_store_explicit(&w->refs[w->next % WAL_MAX_SEGS], 0, memory_order_relaxed);
        w->next++;
        w->active = true;
    }
    *seg = w->next - 1;
    publish(w);
    return 0;
}

void wal_ref(struct wal *w, uint32_t seg)
{
    atomic_fetch_add_explicit(&w->refs[seg % WAL_MAX_SEGS], 1, memory_order_relaxed);
}

void wal_unref(struct wal *w, uint32_t seg)
{
    if (atomic_fetch_sub_explicit(&w->refs[seg % WAL_MAX_SEGS], 1, memory_order_acq_rel) == 1)
        atomic_fetch_add_explicit(&w->released, 1, memory_order_release);
}

int wal_tick(struct wal *w, uint64_t now_ms)
{
    int due = -1;
    bool changed = false;
    if (w->active) {
        struct wal_seg *sg = seg_at(w, w->next - 1);
        uint64_t seal_at = sg->opened_ms + w->o.segment_ms;
        if (now_ms >= seal_at) {
            seal(w);
            changed = true;
        } else {
            due = (int)(seal_at - now_ms);
            if (w->o.fsync == SPOOL_FSYNC_INTERVAL)
                due = (int)BASE_MIN((uint32_t)due, w->o.fsync_interval_ms);
        }
    }
    uint64_t rel = atomic_load_explicit(&w->released, memory_order_acquire);
    if (rel != w->released_seen || changed) {
        w->released_seen = rel;
        sweep(w);
        changed = true;
    }
    if (w->o.fsync != SPOOL_FSYNC_NEVER) {
        struct spool_stats before;
        spool_get_stats(w->s, &before);
        (void)spool_sync(w->s, now_ms, false);
        struct spool_stats after;
        spool_get_stats(w->s, &after);
        changed |= after.fsyncs_total != before.fsyncs_total;
    }
    if (changed)
        publish(w);
    return due;
}

int wal_recover(struct wal *w, struct spool *dst, uint64_t *moved)
{
    enum { CHUNK = 256 };
    uint64_t seqs[CHUNK];
    uint64_t n_moved = 0;
    struct buf body;
    buf_init(&body, 0, 0);
    int rc = 0;
    for (;;) {
        unsigned n = 0;
        while (n < CHUNK) {
            struct spool_record rec;
            rc = spool_read(w->s, &rec, &body);
            if (rc < 0)
                break;
            rc = spool_append(dst, rec.signal, rec.items, body.data, body.len);
            if (rc < 0)
                break; /* read, not acknowledged: stays in the log */
            seqs[n++] = rec.seq;
        }
        if (n > 0) {
            /* The copies must be as durable as the originals before these go. */
            int src = spool_sync(dst, base_now_ms(), true);
            if (src < 0) {
                rc = src;
                break;
            }
            for (unsigned i = 0; i < n; i++)
                (void)spool_ack(w->s, seqs[i]);
            n_moved += n;
        }
        if (rc == -ENOENT) {
            rc = 0;
            break;
        }
        if (rc < 0)
            break;
    }
    (void)spool_sync(w->s, base_now_ms(), true);
    buf_free(&body);
    w->recovered += n_moved;
    publish(w);
    if (rc < 0)
        log_error("wal: records of a previous run left in the log for the next start (the spool "
                  "refused them)",
                  "dir=%s moved=%" PRIu64 " error=%s", w->dir, n_moved, strerror(-rc));
    else if (n_moved > 0)
        log_info("wal: records of a previous run moved into the spool for replay",
                 "dir=%s records=%" PRIu64, w->dir, n_moved);
    if (moved != NULL)
        *moved = n_moved;
    return rc;
}
