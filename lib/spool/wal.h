/* SPDX-License-Identifier: Apache-2.0 */
/* The write-ahead log of one worker (spool.durability: spool): every
 * accepted request is appended to it before the 200 is sent. A spool in
 * <spool dir>/wal-<worker> plus a reference count per segment: batches hold
 * references on the segments their requests are in, the export thread drops
 * them when a batch is delivered, dropped or moved into the overflow spool,
 * and the worker deletes a segment once it moved past it and no reference
 * is left. At start, what a previous run left is moved into the spool. */
#ifndef OTLP_WAL_H
#define OTLP_WAL_H

#include <stdint.h>

#include "spool/spool.h"

/* Segments of one log alive at once (sealed and not yet deleted, plus the
 * one written); an append that would need more gets -ENOSPC. */
#define WAL_MAX_SEGS 1024u

struct wal;

struct wal_options {
    const char *dir;
    uint64_t max_bytes;     /* this worker's share of spool.wal_max_bytes */
    uint64_t segment_bytes; /* roll past this size */
    uint32_t segment_ms;    /* ... or this age */
    enum spool_fsync fsync;
    uint32_t fsync_interval_ms;
};

/* Figures for /metrics; wal_get_stats() may be called from any thread. */
struct wal_stats {
    uint64_t bytes;                 /* segment files on disk */
    uint64_t segments;              /* segment files */
    uint64_t appends_total;         /* requests appended */
    uint64_t fsyncs_total;          /* fdatasync calls */
    uint64_t full_total;            /* appends refused: max_bytes, WAL_MAX_SEGS or disk full */
    uint64_t io_errors_total;       /* appends, fsyncs or deletes failed otherwise */
    uint64_t corrupt_records_total; /* torn or damaged records found at open */
    uint64_t recovered_total;       /* records of a previous run moved into the spool */
};

/*
 * Open (creating it) the log in o->dir; segments a previous run left stay
 * there, checked (torn tail cut, damage skipped, counted), for
 * wal_recover(). Appends go to new segments.
 * Returns 0 and *out; -EINVAL; -ENOMEM; what spool_open() returns.
 */
int wal_open(const struct wal_options *o, struct wal **out);

/*
 * Seal the segment being written and delete every segment no batch holds a
 * reference on; the others stay for the next start. Call after the export
 * thread stopped. NULL is a no-op.
 */
void wal_close(struct wal *w);

/* --- the worker that owns the log --- */

/*
 * Append one record (`len` bytes at `data`, borrowed until return: an
 * Export*ServiceRequest body of `items` items of `sig`) and return in *seg
 * the segment that holds it, for wal_ref(). With fsync: always the record
 * is on stable storage at return; otherwise in the page cache (it survives
 * the process, not a power loss). A failed append leaves no partial record.
 * Returns 0; -ENOSPC (max_bytes or WAL_MAX_SEGS reached, or disk full);
 * -EMSGSIZE; -EIO or another negative errno of spool_append().
 */
int wal_append(struct wal *w, enum otlp_signal sig, uint64_t items, const void *data, size_t len,
               uint32_t *seg);

/* Take a reference on segment `seg` (returned by wal_append()). */
void wal_ref(struct wal *w, uint32_t seg);

/*
 * Housekeeping, called by the worker often (every event-loop turn): seal
 * the segment written when it is older than segment_ms, delete sealed
 * segments without references, fdatasync per fsync_interval_ms. Returns ms
 * until it wants to run again, -1 when nothing is pending.
 */
int wal_tick(struct wal *w, uint64_t now_ms);

/* --- any thread (the export thread) --- */

/* Drop a reference on `seg`; the worker deletes the segment at its next
 * wal_tick() once it is sealed and unreferenced. */
void wal_unref(struct wal *w, uint32_t seg);

void wal_get_stats(const struct wal *w, struct wal_stats *st);

/* --- start-up, before the workers run --- */

/*
 * Move every record a previous run left in the log into `dst` (the spool
 * the export runner replays): appended, synced (spool_sync force), then
 * deleted from the log. A crash in between replays them twice, never zero
 * times. Stops at the first record `dst` refuses (full): the rest stays in
 * the log for the next start. *moved (may be NULL) gets the number moved.
 * Returns 0; the negative errno of the failed spool_append/read/sync.
 */
int wal_recover(struct wal *w, struct spool *dst, uint64_t *moved);

#endif
