/* SPDX-License-Identifier: Apache-2.0 */
/* The disk spool: an append-only log of batches (Export*ServiceRequest
 * bodies) in segment files, for the batches the export runner cannot deliver
 * in time. Records carry a length and CRC32C, are read back oldest first and
 * deleted a segment at a time once every record in it was acknowledged.
 * Only the export thread uses a spool; nothing here is thread-safe. */
#ifndef OTLP_SPOOL_H
#define OTLP_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "config/config.h"
#include "otlp/otlp.h"

/*
 * On disk (all integers little-endian), in <dir>/<first seq, 16 hex digits>.seg:
 *   segment header, 16 bytes: "OTLPSPOL", u32 version (1), u32 CRC32C of the
 *                             first 12 bytes
 *   records, each 8-byte aligned:
 *     0  u32 magic "SREC"      4  u32 CRC32C of header bytes 8..47
 *     8  u32 payload length   12  u32 CRC32C of the payload
 *    16  u64 sequence         24  u64 items (spans, data points, log records)
 *    32  u64 append time (Unix ms)
 *    40  u8 signal, u8 flags (0), u16 + u32 reserved (0)
 *    48  payload, zero-padded to a multiple of 8
 * Sequences grow by one per record across segments; a segment's name is the
 * sequence of its first record. <dir>/acked holds the highest sequence below
 * which every record was acknowledged (u64, "ACKD", CRC32C), so a restart
 * does not replay what was delivered; <dir>/LOCK is flock()ed while open.
 */
#define SPOOL_SEG_HDR_BYTES 16
#define SPOOL_REC_HDR_BYTES 48
#define SPOOL_MAX_RECORD_BYTES (1u << 30) /* largest payload one record holds */
#define SPOOL_MAX_OUTSTANDING 1024        /* records read and not yet acknowledged */
/* Sequences (and segment names) at or above this are not valid: a damaged
 * or crafted file cannot push the counter to wrap. */
#define SPOOL_MAX_SEQ (UINT64_C(1) << 62)

struct spool;

/* Where and how a spool writes. dir must be set (not ""). */
struct spool_options {
    const char *dir;
    uint64_t max_bytes;     /* segment files together, headers included */
    uint64_t segment_bytes; /* roll to a new segment past this */
    enum spool_fsync fsync;
    uint32_t fsync_interval_ms;
};

/* The metadata of one record read back. */
struct spool_record {
    uint64_t seq;
    enum otlp_signal signal;
    uint64_t items;
    uint64_t append_wall_ms; /* Unix time of the append */
};

/* Counters and levels, for /metrics. */
struct spool_stats {
    uint64_t bytes;                 /* segment files on disk */
    uint64_t records;               /* on disk and not acknowledged (read or not) */
    uint64_t unread;                /* of those, not handed out by spool_read() yet */
    uint64_t segments;              /* segment files */
    uint64_t appends_total;         /* records appended */
    uint64_t acks_total;            /* records acknowledged */
    uint64_t corrupt_records_total; /* torn or damaged records (or regions) skipped */
    uint64_t full_total;            /* appends refused: max_bytes or disk full */
    uint64_t io_errors_total;       /* appends, reads or fsyncs failed otherwise */
    uint64_t fsyncs_total;
};

/*
 * Open (creating it, mkdir -p) the spool in o->dir and scan every segment:
 * each record's header and payload CRC32C are checked. A torn tail (a record
 * cut short by a crash, or bytes after the last valid record) is truncated
 * away; a damaged record in the middle of a segment is skipped (the scan
 * resynchronises on the next valid record header at an 8-byte boundary).
 * Both are logged and counted in corrupt_records_total. A file whose segment
 * header is not ours is renamed <name>.corrupt and left alone. Records at or
 * below the saved acknowledgement mark are not handed out again. Appends go
 * to a new segment; the old ones are only read.
 * Returns 0 and *out; -EINVAL (NULL or empty dir, segment_bytes or max_bytes
 * 0); -EBUSY (another process holds the spool's lock); -ENOMEM; a negative
 * errno of mkdir/open/read/ftruncate (-EACCES, -ENOTDIR, -EROFS, -EIO...).
 */
int spool_open(const struct spool_options *o, struct spool **out);

/* fsync (unless fsync: never), save the acknowledgement mark, delete a fully
 * acknowledged last segment, release the lock and free. NULL is a no-op.
 * Records read and not acknowledged stay on disk for the next open. */
void spool_close(struct spool *s);

/*
 * Append one record: `len` bytes at `data` (borrowed until return) holding
 * `items` items of signal `sig`. Written with one pwritev at the end of the
 * current segment; with fsync: always also fdatasync()ed before returning.
 * On any failure the segment is cut back to its previous end, so earlier
 * records are never damaged and no partial record stays behind.
 * Returns 0; -ENOSPC (max_bytes would be exceeded, or the disk is full:
 * nothing written); -EINVAL (bad signal, NULL data with len > 0); -EMSGSIZE
 * (len > SPOOL_MAX_RECORD_BYTES); -EOVERFLOW (sequence SPOOL_MAX_SEQ
 * reached); -EIO or another negative errno of open/pwritev/fdatasync
 * (nothing kept).
 */
int spool_append(struct spool *s, enum otlp_signal sig, uint64_t items, const void *data,
                 size_t len);

/*
 * Read the oldest record not handed out yet: its metadata into *rec, its
 * payload into `body` (replacing the content; grown within body->limit).
 * The record stays on disk until spool_ack(rec->seq); one that is never
 * acknowledged is handed out again only after the spool is reopened.
 * A record found damaged now is skipped (logged, counted) and the next one
 * returned.
 * Returns 0; -ENOENT (nothing unread); -EBUSY (SPOOL_MAX_OUTSTANDING records
 * wait for spool_ack); -EMSGSIZE (the payload exceeds body->limit; the record
 * stays next); -ENOMEM; -EIO or another negative errno of open/pread.
 */
int spool_read(struct spool *s, struct spool_record *rec, struct buf *body);

/*
 * Acknowledge a record returned by spool_read() (delivered, or given up for
 * good), in any order. A segment is deleted once all its records are
 * acknowledged; the one being appended to only when it also holds at least
 * segment_bytes / 8 (else at rollover or close), so small trickles do not
 * create and delete a file per record.
 * Returns 0; -ENOENT (seq is not a record read and not yet acknowledged);
 * a negative errno of unlink() (the acknowledgement itself is kept).
 */
int spool_ack(struct spool *s, uint64_t seq);

/*
 * Housekeeping, called periodically (the export loop does, at least every
 * 100 ms): with fsync: interval, fdatasync the segment written since the last
 * sync once fsync_interval_ms passed (any policy but never, at once when
 * `force`); save the acknowledgement mark when it moved (at most every 200 ms
 * unless `force`). Returns 0 or the negative errno of a failed fdatasync.
 */
int spool_sync(struct spool *s, uint64_t now_ms, bool force);

/*
 * The segment appends go to now: after a successful spool_append() the one
 * that holds its record, named by its first sequence (the write-ahead log
 * tracks references per segment with this). UINT64_MAX when no segment is
 * open for appending (none yet, or sealed by spool_seal()).
 */
uint64_t spool_write_segment(const struct spool *s);

/*
 * Seal the segment being appended to: fdatasync it (unless fsync: never)
 * and close it; the next append starts a new segment. A sealed segment with
 * no record is deleted. No-op when none is open.
 * Returns 0 or the negative errno of fdatasync (the segment is sealed anyway).
 */
int spool_seal(struct spool *s);

/*
 * Delete the sealed segment named `first_seq` with every record in it, read
 * or not (the write-ahead log: no batch refers to its records any more).
 * Returns 0; -EINVAL (NULL); -ENOENT (no such segment); -EBUSY (it is being
 * appended to, or holds a record read and not yet acknowledged); the
 * negative errno of unlink() (the segment leaves the accounting anyway).
 */
int spool_drop_segment(struct spool *s, uint64_t first_seq);

/*
 * The spool directory of `cfg` (spool.dir, else <service.data_dir>/spool)
 * into *out (caller frees). Returns 0 or -ENOMEM.
 */
int spool_config_dir(const struct svc_config *cfg, char **out);

/* Current figures. */
void spool_get_stats(const struct spool *s, struct spool_stats *st);

/* Records on disk not handed out by spool_read() yet (stats.unread). */
uint64_t spool_unread(const struct spool *s);

/* CRC32C (Castagnoli, as iSCSI and ext4 use) of `n` bytes, continuing from
 * `crc` (0 to start): spool_crc32c(spool_crc32c(0, a, x), b, y) is the CRC of
 * a followed by b. Uses the SSE4.2 crc32 instruction when the CPU has it,
 * slicing-by-8 tables otherwise. */
uint32_t spool_crc32c(uint32_t crc, const void *data, size_t n);

/* The table implementation alone, for tests comparing the two. */
uint32_t spool_crc32c_sw(uint32_t crc, const void *data, size_t n);

#endif
