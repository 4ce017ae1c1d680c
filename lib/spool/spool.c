/* SPDX-License-Identifier: Apache-2.0 */
/* The disk spool (spool.h): segment files of CRC-checked records, scanned and
 * repaired at open, appended by the export thread when the upstream cannot
 * take a batch, read back in order for replay and deleted a segment at a time
 * once every record in it was acknowledged. */
#include "spool/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "obs/log.h"

#define SEG_MAGIC "OTLPSPOL"
#define SEG_VERSION 1u
#define REC_MAGIC 0x43455253u /* "SREC" as little-endian bytes */
#define ACK_MAGIC 0x444b4341u /* "ACKD" */
#define ACK_FILE "acked"
#define ACK_TMP_FILE "acked.tmp"
#define LOCK_FILE "LOCK"
#define SEG_SUFFIX ".seg"
#define SEG_NAME_LEN 20 /* 16 hex digits + ".seg" */
#define WIN_BYTES (256u * 1024u)
#define ACK_SAVE_MS 200

_Static_assert(SPOOL_REC_HDR_BYTES % 8 == 0 && SPOOL_SEG_HDR_BYTES % 8 == 0,
               "records must stay 8-byte aligned");

/* One segment file. Records in it have sequences in [first_seq, next
 * segment's first_seq), strictly increasing. */
struct spool_seg {
    uint64_t first_seq; /* = file name */
    uint64_t size;      /* bytes of header and valid records = the file size */
    uint64_t n_records; /* valid records */
    uint64_t n_acked;   /* of them acknowledged (or below the mark at open) */
    uint64_t n_seen;    /* of them passed by the reader (returned or skipped) */
    bool had_corrupt;   /* damage was counted when it was scanned at open */
};

/* A read window over one file, so scanning does not pread per record. */
struct win {
    int fd;
    uint8_t *buf; /* WIN_BYTES */
    uint64_t off;
    size_t len;
};

struct rec_hdr {
    uint32_t len, pcrc;
    uint64_t seq, items, wall_ms;
    uint8_t signal;
};

struct spool {
    struct spool_options o;
    char *dir;
    int dir_fd, lock_fd;

    struct spool_seg *segs; /* oldest first */
    unsigned n_segs, cap_segs;
    int wr_fd; /* >= 0: segs[n_segs - 1] is open for appending */
    bool dirty;
    uint64_t last_sync_ms;
    uint64_t next_seq;
    uint64_t total_bytes; /* sum of segs[].size */
    uint64_t unacked;     /* sum of n_records - n_acked */

    /* reader: next record at rd_off in segs[rd_seg], sequence >= rd_lo */
    unsigned rd_seg;
    uint64_t rd_off, rd_lo;
    int rd_fd;
    struct win win;

    /* acknowledgements */
    uint64_t skip_upto; /* the mark found at open: records <= it are done */
    uint64_t last_read; /* highest sequence the reader passed */
    uint64_t ack_mark, ack_saved, ack_saved_ms;
    uint64_t out[SPOOL_MAX_OUTSTANDING]; /* read, not acknowledged */
    unsigned n_out;

    struct spool_stats st;
};

/* ---- little-endian fields ---- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ---- formats ---- */

/* Bytes one record of payload `len` takes in a segment. */
static uint64_t rec_bytes(uint64_t len)
{
    return SPOOL_REC_HDR_BYTES + ((len + 7u) & ~(uint64_t)7u);
}

static void seg_hdr_encode(uint8_t out[SPOOL_SEG_HDR_BYTES])
{
    memcpy(out, SEG_MAGIC, 8);
    put32(out + 8, SEG_VERSION);
    put32(out + 12, spool_crc32c(0, out, 12));
}

static bool seg_hdr_ok(const uint8_t *p)
{
    return memcmp(p, SEG_MAGIC, 8) == 0 && get32(p + 8) == SEG_VERSION &&
           get32(p + 12) == spool_crc32c(0, p, 12);
}

static void rec_hdr_encode(uint8_t out[SPOOL_REC_HDR_BYTES], const struct rec_hdr *h)
{
    memset(out, 0, SPOOL_REC_HDR_BYTES);
    put32(out, REC_MAGIC);
    put32(out + 8, h->len);
    put32(out + 12, h->pcrc);
    put64(out + 16, h->seq);
    put64(out + 24, h->items);
    put64(out + 32, h->wall_ms);
    out[40] = h->signal;
    put32(out + 4, spool_crc32c(0, out + 8, SPOOL_REC_HDR_BYTES - 8));
}

/* The header checks that need no payload. */
static bool rec_hdr_decode(const uint8_t *p, struct rec_hdr *h)
{
    if (get32(p) != REC_MAGIC || get32(p + 4) != spool_crc32c(0, p + 8, SPOOL_REC_HDR_BYTES - 8))
        return false;
    if (p[40] >= OTLP_SIGNAL_COUNT || p[41] != 0 || get16(p + 42) != 0 || get32(p + 44) != 0)
        return false;
    h->len = get32(p + 8);
    h->pcrc = get32(p + 12);
    h->seq = get64(p + 16);
    h->items = get64(p + 24);
    h->wall_ms = get64(p + 32);
    h->signal = p[40];
    return h->len <= SPOOL_MAX_RECORD_BYTES;
}

static void seg_name(char out[SEG_NAME_LEN + 1], uint64_t first_seq)
{
    snprintf(out, SEG_NAME_LEN + 1, "%016" PRIx64 SEG_SUFFIX, first_seq);
}

/* "<16 lower-case hex digits>.seg" -> its number. */
static bool seg_name_parse(const char *name, uint64_t *first_seq)
{
    if (strlen(name) != SEG_NAME_LEN || strcmp(name + 16, SEG_SUFFIX) != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        v = v << 4 | d;
    }
    *first_seq = v;
    return v < SPOOL_MAX_SEQ;
}

/* ---- I/O helpers ---- */

static int pread_full(int fd, void *p, size_t n, uint64_t off)
{
    uint8_t *d = p;
    while (n > 0) {
        ssize_t r = pread(fd, d, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO; /* the file is shorter than its accounted size */
        d += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* pwritev all of iov (modified) at off. */
static int pwritev_full(int fd, struct iovec *iov, int iovcnt, uint64_t off)
{
    while (iovcnt > 0) {
        ssize_t r = pwritev(fd, iov, iovcnt, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        off += (uint64_t)r;
        size_t left = (size_t)r;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

static void win_reset(struct win *w, int fd)
{
    w->fd = fd;
    w->off = 0;
    w->len = 0;
}

/*
 * Bytes [pos, pos + n) of the window's file (n <= WIN_BYTES), served from the
 * window or read into it. Returns a pointer; NULL with *err 0 when the file
 * ends before pos + n, or with *err a negative errno.
 */
static const uint8_t *win_get(struct win *w, uint64_t pos, size_t n, int *err)
{
    *err = 0;
    if (pos >= w->off && pos + n <= w->off + w->len)
        return w->buf + (pos - w->off);
    size_t got = 0;
    w->len = 0;
    while (got < WIN_BYTES) {
        ssize_t r = pread(w->fd, w->buf + got, WIN_BYTES - got, (off_t)(pos + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            *err = -errno;
            return NULL;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    w->off = pos;
    w->len = got;
    return got >= n ? w->buf : NULL;
}

/*
 * A record header at `pos` that passes its own checks, lies completely
 * before `end` and has a sequence in [lo, hi). Returns 1 and *h; 0 when not;
 * a negative errno on a read error.
 */
static int rec_header_at(struct win *w, uint64_t pos, uint64_t end, uint64_t lo, uint64_t hi,
                         struct rec_hdr *h)
{
    int err;
    if (pos > end || end - pos < SPOOL_REC_HDR_BYTES)
        return 0;
    const uint8_t *p = win_get(w, pos, SPOOL_REC_HDR_BYTES, &err);
    if (p == NULL)
        return err;
    if (!rec_hdr_decode(p, h) || h->seq < lo || h->seq >= hi || h->seq >= SPOOL_MAX_SEQ)
        return 0;
    return rec_bytes(h->len) <= end - pos ? 1 : 0;
}

/* rec_header_at() and a payload that matches its CRC. */
static int rec_valid_at(struct win *w, uint64_t pos, uint64_t end, uint64_t lo, uint64_t hi,
                        struct rec_hdr *h)
{
    int rc = rec_header_at(w, pos, end, lo, hi, h);
    if (rc != 1)
        return rc;
    uint32_t crc = 0;
    uint64_t q = pos + SPOOL_REC_HDR_BYTES, left = h->len;
    while (left > 0) {
        size_t n = (size_t)BASE_MIN(left, (uint64_t)WIN_BYTES);
        const uint8_t *p = win_get(w, q, n, &rc);
        if (p == NULL)
            return rc;
        crc = spool_crc32c(crc, p, n);
        q += n;
        left -= n;
    }
    return crc == h->pcrc ? 1 : 0;
}

/*
 * After damage at `pos`: the first valid record at a later 8-byte boundary
 * before `end`. Returns 1 with *found and *h; 0 when there is none; a
 * negative errno on a read error.
 */
static int rec_resync(struct win *w, uint64_t pos, uint64_t end, uint64_t lo, uint64_t hi,
                      struct rec_hdr *h, uint64_t *found)
{
    for (uint64_t q = pos + 8; q < end && end - q >= SPOOL_REC_HDR_BYTES; q += 8) {
        int err;
        const uint8_t *p = win_get(w, q, 4, &err);
        if (p == NULL)
            return err;
        if (get32(p) != REC_MAGIC)
            continue;
        int rc = rec_valid_at(w, q, end, lo, hi, h);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            *found = q;
            return 1;
        }
    }
    return 0;
}

/* ---- segments ---- */

static int segs_reserve(struct spool *s)
{
    if (s->n_segs < s->cap_segs)
        return 0;
    unsigned cap = s->cap_segs ? s->cap_segs * 2 : 16;
    struct spool_seg *n = realloc(s->segs, cap * sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    s->segs = n;
    s->cap_segs = cap;
    return 0;
}

static bool seg_is_active(const struct spool *s, unsigned i)
{
    return s->wr_fd >= 0 && i + 1 == s->n_segs;
}

/* Put the reader at the start of segs[i] (i == n_segs: past the end). */
static void reader_enter(struct spool *s, unsigned i)
{
    if (s->rd_fd >= 0) {
        close(s->rd_fd);
        s->rd_fd = -1;
    }
    s->rd_seg = i;
    s->rd_off = SPOOL_SEG_HDR_BYTES;
    s->rd_lo = i < s->n_segs ? s->segs[i].first_seq : 0;
}

/* Delete segs[i] (fully acknowledged, or empty) and its file. Returns 0 or
 * the negative errno of unlink (the segment leaves the list anyway). */
static int seg_delete(struct spool *s, unsigned i)
{
    struct spool_seg *g = &s->segs[i];
    char name[SEG_NAME_LEN + 1];
    seg_name(name, g->first_seq);
    int rc = 0;
    if (seg_is_active(s, i)) {
        close(s->wr_fd);
        s->wr_fd = -1;
        s->dirty = false;
    }
    if (unlinkat(s->dir_fd, name, 0) < 0 && errno != ENOENT) {
        rc = -errno;
        s->st.io_errors_total++;
        log_error("spool: cannot delete a delivered segment", "dir=%s segment=%s error=%s", s->dir,
                  name, strerror(-rc));
    }
    s->total_bytes -= g->size;
    s->unacked -= g->n_records - g->n_acked;
    bool reader_here = s->rd_seg == i;
    memmove(&s->segs[i], &s->segs[i + 1], (s->n_segs - i - 1) * sizeof(*g));
    s->n_segs--;
    if (reader_here)
        reader_enter(s, i);
    else if (s->rd_seg > i)
        s->rd_seg--;
    return rc;
}

/* Delete segs[i] when nothing in it awaits delivery and nothing is appended
 * to it any more. */
static void seg_maybe_delete(struct spool *s, unsigned i)
{
    if (i < s->n_segs && !seg_is_active(s, i) && s->segs[i].n_acked == s->segs[i].n_records)
        (void)seg_delete(s, i);
}

/* The reader is done with segs[rd_seg] (sealed): records counted there but
 * not met again were damaged since the open scan; forget them. */
static void reader_leave(struct spool *s)
{
    struct spool_seg *g = &s->segs[s->rd_seg];
    if (g->n_seen < g->n_records) {
        uint64_t lost = g->n_records - g->n_seen;
        g->n_records -= lost;
        s->unacked -= lost;
        if (!g->had_corrupt)
            s->st.corrupt_records_total += lost;
    }
    if (g->n_acked >= g->n_records)
        seg_delete(s, s->rd_seg); /* the reader moves to the next one */
    else
        reader_enter(s, s->rd_seg + 1);
}

static int fsync_dir(struct spool *s)
{
    if (s->o.fsync == SPOOL_FSYNC_NEVER)
        return 0;
    if (fsync(s->dir_fd) < 0) {
        s->st.io_errors_total++;
        return -errno;
    }
    return 0;
}

/* fdatasync the segment being appended to when it has unsynced records. */
static int sync_writer(struct spool *s, uint64_t now_ms)
{
    if (s->wr_fd < 0 || !s->dirty || s->o.fsync == SPOOL_FSYNC_NEVER)
        return 0;
    if (fdatasync(s->wr_fd) < 0) {
        int rc = -errno;
        s->st.io_errors_total++;
        log_error("spool: fdatasync failed", "dir=%s error=%s", s->dir, strerror(-rc));
        return rc;
    }
    s->st.fsyncs_total++;
    s->dirty = false;
    s->last_sync_ms = now_ms;
    return 0;
}

/* Seal the segment being appended to (synced, deleted when delivered) and
 * start a new one named next_seq. Returns 0 or a negative errno (no new
 * segment then). */
static int seg_roll(struct spool *s)
{
    if (s->wr_fd >= 0) {
        (void)sync_writer(s, base_now_ms());
        close(s->wr_fd);
        s->wr_fd = -1;
        seg_maybe_delete(s, s->n_segs - 1);
    }
    int rc = segs_reserve(s);
    if (rc < 0)
        return rc;
    char name[SEG_NAME_LEN + 1];
    int fd = -1;
    for (int tries = 0; tries < 8; tries++) {
        seg_name(name, s->next_seq);
        fd = openat(s->dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (fd >= 0 || errno != EEXIST)
            break;
        s->next_seq++; /* a stray file of that name: skip its number */
    }
    if (fd < 0)
        return -errno;
    uint8_t hdr[SPOOL_SEG_HDR_BYTES];
    seg_hdr_encode(hdr);
    struct iovec iov = {hdr, sizeof(hdr)};
    rc = pwritev_full(fd, &iov, 1, 0);
    if (rc == 0)
        rc = fsync_dir(s);
    if (rc < 0) {
        close(fd);
        unlinkat(s->dir_fd, name, 0);
        return rc;
    }
    bool reader_past_end = s->rd_seg >= s->n_segs;
    s->segs[s->n_segs++] = (struct spool_seg){.first_seq = s->next_seq, .size = sizeof(hdr)};
    s->total_bytes += sizeof(hdr);
    s->wr_fd = fd;
    s->dirty = s->o.fsync != SPOOL_FSYNC_ALWAYS;
    if (reader_past_end)
        reader_enter(s, s->n_segs - 1);
    return 0;
}

/* ---- acknowledgement mark ---- */

static int ack_mark_save(struct spool *s, uint64_t now_ms)
{
    uint8_t b[16];
    put64(b, s->ack_mark);
    put32(b + 8, ACK_MAGIC);
    put32(b + 12, spool_crc32c(0, b, 12));
    int fd = openat(s->dir_fd, ACK_TMP_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    struct iovec iov = {b, sizeof(b)};
    int rc = pwritev_full(fd, &iov, 1, 0);
    close(fd);
    if (rc == 0 && renameat(s->dir_fd, ACK_TMP_FILE, s->dir_fd, ACK_FILE) < 0)
        rc = -errno;
    if (rc < 0) {
        s->st.io_errors_total++;
        return rc;
    }
    s->ack_saved = s->ack_mark;
    s->ack_saved_ms = now_ms;
    return 0;
}

/* The saved mark, or 0 when there is none or it does not check out (then
 * delivered records may be replayed once more, nothing is lost). */
static uint64_t ack_mark_load(struct spool *s)
{
    int fd = openat(s->dir_fd, ACK_FILE, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    uint8_t b[16];
    ssize_t n = pread(fd, b, sizeof(b), 0);
    close(fd);
    if (n != (ssize_t)sizeof(b) || get32(b + 8) != ACK_MAGIC ||
        get32(b + 12) != spool_crc32c(0, b, 12) || get64(b) >= SPOOL_MAX_SEQ) {
        log_warn("spool: acknowledgement mark unreadable, delivered records may be replayed again",
                 "dir=%s", s->dir);
        return 0;
    }
    return get64(b);
}

static void ack_mark_update(struct spool *s)
{
    uint64_t m = s->last_read;
    for (unsigned i = 0; i < s->n_out; i++)
        m = BASE_MIN(m, s->out[i] - 1);
    if (m > s->ack_mark)
        s->ack_mark = m;
}

/* ---- open ---- */

static int mkdir_p(const char *path)
{
    char *p = strdup(path);
    if (p == NULL)
        return -ENOMEM;
    int rc = 0;
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q != '\0')
            continue;
        char c = *q;
        *q = '\0';
        if (mkdir(p, 0750) < 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *q = c;
        if (c == '\0')
            break;
    }
    free(p);
    return rc;
}

static int cmp_seg(const void *a, const void *b)
{
    uint64_t x = ((const struct spool_seg *)a)->first_seq;
    uint64_t y = ((const struct spool_seg *)b)->first_seq;
    return x < y ? -1 : x > y;
}

/* Collect the segment files' names into s->segs, sorted. */
static int list_segments(struct spool *s)
{
    int fd = openat(s->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    int rc = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        uint64_t first;
        if (!seg_name_parse(e->d_name, &first))
            continue;
        if ((rc = segs_reserve(s)) < 0)
            break;
        s->segs[s->n_segs++] = (struct spool_seg){.first_seq = first};
    }
    closedir(d);
    if (rc == 0 && s->n_segs > 1)
        qsort(s->segs, s->n_segs, sizeof(*s->segs), cmp_seg);
    return rc;
}

/*
 * Scan segs[i]: check the segment header and every record, skip damage in
 * the middle, truncate a torn tail. Returns 1 when the segment is kept, 0
 * when it was set aside (empty or not ours: caller removes it from the
 * list), a negative errno on an I/O error.
 */
static int seg_scan(struct spool *s, unsigned i)
{
    struct spool_seg *g = &s->segs[i];
    char name[SEG_NAME_LEN + 1];
    seg_name(name, g->first_seq);
    int fd = openat(s->dir_fd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    win_reset(&s->win, fd);
    const uint8_t *p =
        size >= SPOOL_SEG_HDR_BYTES ? win_get(&s->win, 0, SPOOL_SEG_HDR_BYTES, &rc) : NULL;
    if (p == NULL && size >= SPOOL_SEG_HDR_BYTES) {
        rc = rc < 0 ? rc : -EIO; /* read error, or the file shrank under us */
        goto out;
    }
    if (p == NULL) {
        /* Cut short while it was being created: it holds no record. */
        log_info("spool: removing a segment without header", "dir=%s segment=%s bytes=%" PRIu64,
                 s->dir, name, size);
        if (unlinkat(s->dir_fd, name, 0) < 0 && errno != ENOENT) {
            rc = -errno;
            goto out;
        }
        rc = 0;
        goto out;
    }
    if (!seg_hdr_ok(p)) {
        char bad[SEG_NAME_LEN + 16];
        snprintf(bad, sizeof(bad), "%s.corrupt", name);
        log_error("spool: segment header damaged or foreign, set aside", "dir=%s segment=%s",
                  s->dir, bad);
        s->st.corrupt_records_total++;
        if (renameat(s->dir_fd, name, s->dir_fd, bad) < 0) {
            rc = -errno;
            goto out;
        }
        rc = 0;
        goto out;
    }
    uint64_t hi = i + 1 < s->n_segs ? s->segs[i + 1].first_seq : UINT64_MAX;
    uint64_t lo = g->first_seq, pos = SPOOL_SEG_HDR_BYTES;
    while (pos < size) {
        struct rec_hdr h;
        rc = rec_valid_at(&s->win, pos, size, lo, hi, &h);
        if (rc < 0)
            goto out;
        if (rc == 0) {
            uint64_t found;
            rc = rec_resync(&s->win, pos, size, lo, hi, &h, &found);
            if (rc < 0)
                goto out;
            if (rc == 0)
                break; /* nothing valid follows: a torn tail */
            log_warn("spool: damaged record skipped",
                     "dir=%s segment=%s offset=%" PRIu64 " bytes=%" PRIu64, s->dir, name, pos,
                     found - pos);
            s->st.corrupt_records_total++;
            g->had_corrupt = true;
            pos = found;
        }
        g->n_records++;
        if (h.seq <= s->skip_upto)
            g->n_acked++;
        s->next_seq = BASE_MAX(s->next_seq, h.seq + 1);
        lo = h.seq + 1;
        pos += rec_bytes(h.len);
    }
    if (pos < size) {
        log_warn("spool: torn record at the end of a segment truncated",
                 "dir=%s segment=%s offset=%" PRIu64 " bytes=%" PRIu64, s->dir, name, pos,
                 size - pos);
        s->st.corrupt_records_total++;
        if (ftruncate(fd, (off_t)pos) < 0 ||
            (s->o.fsync != SPOOL_FSYNC_NEVER && fdatasync(fd) < 0)) {
            rc = -errno;
            goto out;
        }
    }
    g->size = pos;
    s->total_bytes += g->size;
    s->unacked += g->n_records - g->n_acked;
    rc = 1;
out:
    win_reset(&s->win, -1);
    close(fd);
    return rc;
}

int spool_open(const struct spool_options *o, struct spool **out)
{
    if (o == NULL || out == NULL || o->dir == NULL || o->dir[0] == '\0' || o->max_bytes == 0 ||
        o->segment_bytes == 0 || (unsigned)o->fsync > SPOOL_FSYNC_NEVER)
        return -EINVAL;
    struct spool *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->o = *o;
    s->dir_fd = s->lock_fd = s->wr_fd = s->rd_fd = -1;
    s->win.fd = -1;
    int rc = -ENOMEM;
    s->dir = strdup(o->dir);
    s->win.buf = malloc(WIN_BYTES);
    if (s->dir == NULL || s->win.buf == NULL)
        goto fail;
    s->o.dir = s->dir;
    if ((rc = mkdir_p(s->dir)) < 0) {
        log_error("spool: cannot create the directory", "dir=%s error=%s", s->dir, strerror(-rc));
        goto fail;
    }
    s->dir_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dir_fd < 0) {
        rc = -errno;
        log_error("spool: cannot open the directory", "dir=%s error=%s", s->dir, strerror(-rc));
        goto fail;
    }
    s->lock_fd = openat(s->dir_fd, LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        log_error("spool: cannot lock the directory (another instance uses it?)", "dir=%s error=%s",
                  s->dir, strerror(-rc));
        goto fail;
    }
    s->skip_upto = ack_mark_load(s);
    s->ack_mark = s->ack_saved = s->last_read = s->skip_upto;
    s->next_seq = s->skip_upto + 1;
    if ((rc = list_segments(s)) < 0)
        goto fail;
    for (unsigned i = 0; i < s->n_segs;) {
        s->next_seq = BASE_MAX(s->next_seq, s->segs[i].first_seq + 1);
        rc = seg_scan(s, i);
        if (rc < 0) {
            char name[SEG_NAME_LEN + 1];
            seg_name(name, s->segs[i].first_seq);
            log_error("spool: cannot read a segment", "dir=%s segment=%s error=%s", s->dir, name,
                      strerror(-rc));
            goto fail;
        }
        if (rc == 0) {
            memmove(&s->segs[i], &s->segs[i + 1], (s->n_segs - i - 1) * sizeof(*s->segs));
            s->n_segs--;
            continue;
        }
        i++;
    }
    reader_enter(s, 0);
    /* Delivered (or empty) segments go now. */
    for (unsigned i = 0; i < s->n_segs;) {
        unsigned n = s->n_segs;
        seg_maybe_delete(s, i);
        if (s->n_segs == n)
            i++;
    }
    log_info("spool opened",
             "dir=%s segments=%u records=%" PRIu64 " bytes=%" PRIu64 " corrupt_records=%" PRIu64
             " fsync=%s",
             s->dir, s->n_segs, s->unacked, s->total_bytes, s->st.corrupt_records_total,
             config_spool_fsync_name(s->o.fsync));
    *out = s;
    return 0;
fail:
    spool_close(s);
    return rc;
}

void spool_close(struct spool *s)
{
    if (s == NULL)
        return;
    if (s->wr_fd >= 0) {
        (void)sync_writer(s, base_now_ms());
        unsigned last = s->n_segs - 1;
        bool done = s->segs[last].n_acked == s->segs[last].n_records;
        close(s->wr_fd);
        s->wr_fd = -1;
        if (done)
            (void)seg_delete(s, last);
    }
    if (s->dir_fd >= 0 && s->lock_fd >= 0 && s->ack_mark != s->ack_saved)
        (void)ack_mark_save(s, base_now_ms());
    if (s->rd_fd >= 0)
        close(s->rd_fd);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* releases the flock */
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    free(s->win.buf);
    free(s->segs);
    free(s->dir);
    free(s);
}

/* ---- append ---- */

int spool_append(struct spool *s, enum otlp_signal sig, uint64_t items, const void *data,
                 size_t len)
{
    if (s == NULL || (unsigned)sig >= OTLP_SIGNAL_COUNT || (data == NULL && len > 0))
        return -EINVAL;
    if (len > SPOOL_MAX_RECORD_BYTES)
        return -EMSGSIZE;
    if (s->next_seq >= SPOOL_MAX_SEQ)
        return -EOVERFLOW;
    uint64_t need = rec_bytes(len);
    struct spool_seg *g = s->wr_fd >= 0 ? &s->segs[s->n_segs - 1] : NULL;
    bool roll = g == NULL || (g->n_records > 0 && g->size + need > s->o.segment_bytes);
    if (s->total_bytes + need + (roll ? SPOOL_SEG_HDR_BYTES : 0) > s->o.max_bytes) {
        s->st.full_total++;
        return -ENOSPC;
    }
    int rc;
    if (roll && (rc = seg_roll(s)) < 0)
        goto failed;
    g = &s->segs[s->n_segs - 1];

    struct rec_hdr h = {
        .len = (uint32_t)len,
        .pcrc = spool_crc32c(0, data, len),
        .seq = s->next_seq,
        .items = items,
        .wall_ms = base_wall_ns() / 1000000u,
        .signal = (uint8_t)sig,
    };
    uint8_t hdr[SPOOL_REC_HDR_BYTES];
    static const uint8_t zeros[8];
    rec_hdr_encode(hdr, &h);
    struct iovec iov[3] = {
        {hdr, sizeof(hdr)},
        {(void *)(uintptr_t)data, len},
        {(void *)(uintptr_t)zeros, (size_t)(need - SPOOL_REC_HDR_BYTES - len)},
    };
    rc = pwritev_full(s->wr_fd, iov, 3, g->size);
    if (rc == 0 && s->o.fsync == SPOOL_FSYNC_ALWAYS) {
        if (fdatasync(s->wr_fd) < 0)
            rc = -errno;
        else
            s->st.fsyncs_total++;
    }
    if (rc < 0) {
        /* Cut back to the last complete record; if even that fails, seal the
         * segment: the open scan truncates the partial record later. */
        if (ftruncate(s->wr_fd, (off_t)g->size) < 0) {
            log_error("spool: cannot cut back a failed append, segment sealed", "dir=%s error=%s",
                      s->dir, strerror(errno));
            close(s->wr_fd);
            s->wr_fd = -1;
            s->dirty = false;
        }
        goto failed;
    }
    g->size += need;
    g->n_records++;
    s->total_bytes += need;
    s->unacked++;
    s->next_seq++;
    s->st.appends_total++;
    if (s->o.fsync != SPOOL_FSYNC_ALWAYS)
        s->dirty = true;
    return 0;
failed:
    if (rc == -ENOSPC || rc == -EDQUOT) {
        s->st.full_total++;
        return -ENOSPC;
    }
    s->st.io_errors_total++;
    return rc;
}

/* ---- read and acknowledge ---- */

int spool_read(struct spool *s, struct spool_record *rec, struct buf *body)
{
    if (s == NULL || rec == NULL || body == NULL)
        return -EINVAL;
    if (s->n_out >= SPOOL_MAX_OUTSTANDING)
        return -EBUSY;
    for (;;) {
        if (s->rd_seg >= s->n_segs)
            return -ENOENT;
        struct spool_seg *g = &s->segs[s->rd_seg];
        if (s->rd_off >= g->size) {
            if (seg_is_active(s, s->rd_seg))
                return -ENOENT;
            reader_leave(s);
            continue;
        }
        char name[SEG_NAME_LEN + 1];
        seg_name(name, g->first_seq);
        if (s->rd_fd < 0) {
            s->rd_fd = openat(s->dir_fd, name, O_RDONLY | O_CLOEXEC);
            if (s->rd_fd < 0) {
                s->st.io_errors_total++;
                return -errno;
            }
            win_reset(&s->win, s->rd_fd);
        }
        uint64_t hi = s->rd_seg + 1 < s->n_segs ? s->segs[s->rd_seg + 1].first_seq : UINT64_MAX;
        struct rec_hdr h;
        int rc = rec_header_at(&s->win, s->rd_off, g->size, s->rd_lo, hi, &h);
        if (rc < 0) {
            s->st.io_errors_total++;
            return rc;
        }
        if (rc == 1 && h.seq <= s->skip_upto) {
            /* Delivered before the restart. */
            s->rd_off += rec_bytes(h.len);
            s->rd_lo = h.seq + 1;
            s->last_read = BASE_MAX(s->last_read, h.seq);
            g->n_seen++;
            continue;
        }
        if (rc == 1) {
            buf_reset(body);
            if ((rc = buf_reserve(body, h.len)) < 0)
                return rc;
            rc = pread_full(s->rd_fd, body->data, h.len, s->rd_off + SPOOL_REC_HDR_BYTES);
            if (rc < 0) {
                s->st.io_errors_total++;
                return rc;
            }
            if (spool_crc32c(0, body->data, h.len) == h.pcrc) {
                body->len = h.len;
                rec->seq = h.seq;
                rec->signal = (enum otlp_signal)h.signal;
                rec->items = h.items;
                rec->append_wall_ms = h.wall_ms;
                s->rd_off += rec_bytes(h.len);
                s->rd_lo = h.seq + 1;
                s->last_read = BASE_MAX(s->last_read, h.seq);
                g->n_seen++;
                s->out[s->n_out++] = h.seq;
                return 0;
            }
        }
        /* Damaged since the open scan (or already known damage): skip to the
         * next valid record. */
        uint64_t found = g->size;
        rc = rec_resync(&s->win, s->rd_off, g->size, s->rd_lo, hi, &h, &found);
        if (rc < 0) {
            s->st.io_errors_total++;
            return rc;
        }
        if (!g->had_corrupt) {
            log_warn("spool: damaged record skipped",
                     "dir=%s segment=%s offset=%" PRIu64 " bytes=%" PRIu64, s->dir, name, s->rd_off,
                     found - s->rd_off);
        }
        s->rd_off = rc == 1 ? found : g->size;
    }
}

int spool_ack(struct spool *s, uint64_t seq)
{
    if (s == NULL)
        return -EINVAL;
    unsigned k = 0;
    while (k < s->n_out && s->out[k] != seq)
        k++;
    if (k == s->n_out)
        return -ENOENT;
    s->out[k] = s->out[--s->n_out];
    /* The last segment whose first sequence is <= seq holds it. */
    unsigned lo = 0, hi = s->n_segs;
    while (hi - lo > 1) {
        unsigned mid = (lo + hi) / 2;
        if (s->segs[mid].first_seq <= seq)
            lo = mid;
        else
            hi = mid;
    }
    s->st.acks_total++;
    ack_mark_update(s);
    if (s->n_segs == 0 || s->segs[lo].first_seq > seq)
        return 0; /* cannot happen: a segment with an outstanding record stays */
    struct spool_seg *g = &s->segs[lo];
    if (g->n_acked < g->n_records) {
        g->n_acked++;
        s->unacked--;
    }
    /* Every valid record in it is delivered: nothing left for the reader.
     * The segment being written goes too once it is big enough to matter
     * (the next append starts a new one), so a drained spool gives its disk
     * back without waiting for a rollover. */
    if (g->n_acked == g->n_records && (!seg_is_active(s, lo) || g->size >= s->o.segment_bytes / 8))
        return seg_delete(s, lo);
    return 0;
}

int spool_sync(struct spool *s, uint64_t now_ms, bool force)
{
    if (s == NULL)
        return -EINVAL;
    int rc = 0;
    if (force || now_ms - s->last_sync_ms >= s->o.fsync_interval_ms)
        rc = sync_writer(s, now_ms);
    if (s->ack_mark != s->ack_saved && (force || now_ms - s->ack_saved_ms >= ACK_SAVE_MS))
        (void)ack_mark_save(s, now_ms);
    return rc;
}

uint64_t spool_write_segment(const struct spool *s)
{
    return s->wr_fd >= 0 ? s->segs[s->n_segs - 1].first_seq : UINT64_MAX;
}

int spool_seal(struct spool *s)
{
    if (s == NULL || s->wr_fd < 0)
        return 0;
    int rc = sync_writer(s, base_now_ms());
    close(s->wr_fd);
    s->wr_fd = -1;
    s->dirty = false;
    if (s->segs[s->n_segs - 1].n_records == 0)
        (void)seg_delete(s, s->n_segs - 1);
    return rc;
}

int spool_drop_segment(struct spool *s, uint64_t first_seq)
{
    if (s == NULL)
        return -EINVAL;
    unsigned i = 0;
    while (i < s->n_segs && s->segs[i].first_seq != first_seq)
        i++;
    if (i == s->n_segs)
        return -ENOENT;
    if (seg_is_active(s, i))
        return -EBUSY;
    uint64_t hi = i + 1 < s->n_segs ? s->segs[i + 1].first_seq : UINT64_MAX;
    for (unsigned k = 0; k < s->n_out; k++) {
        if (s->out[k] >= first_seq && s->out[k] < hi)
            return -EBUSY;
    }
    return seg_delete(s, i);
}

int spool_config_dir(const struct svc_config *cfg, char **out)
{
    const struct spool_config *sc = &cfg->spool;
    char *dir = NULL;
    if (sc->dir != NULL && sc->dir[0] != '\0')
        dir = strdup(sc->dir);
    else if (asprintf(&dir, "%s/spool",
                      cfg->service.data_dir != NULL ? cfg->service.data_dir : ".") < 0)
        dir = NULL;
    if (dir == NULL)
        return -ENOMEM;
    *out = dir;
    return 0;
}

void spool_get_stats(const struct spool *s, struct spool_stats *st)
{
    *st = s->st;
    st->bytes = s->total_bytes;
    st->records = s->unacked;
    st->unread = s->unacked >= s->n_out ? s->unacked - s->n_out : 0;
    st->segments = s->n_segs;
}

uint64_t spool_unread(const struct spool *s)
{
    return s->unacked >= s->n_out ? s->unacked - s->n_out : 0;
}
