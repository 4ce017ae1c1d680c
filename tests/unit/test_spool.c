/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for lib/spool on real directories: CRC32C, append/read/ack order,
 * reopen, torn and damaged records, the size limit and failed writes (which
 * must never damage earlier records), segment rollover and deletion, fsync
 * policies, the lock; and the export runner with the spool on a real
 * pipeline and a scripted exporter (outage, pressure, shutdown, restart). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "config/config.h"
#include "export/export.h"
#include "export/exporter.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "pipeline/pipeline.h"
#include "spool/spool.h"
#include "spool/wal.h"

/* ------------------------------------------------------------------ */
/* helpers                                                              */
/* ------------------------------------------------------------------ */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *make_dir(void)
{
    char *d = strdup("/tmp/otlp-spool-test-XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void free_dir(char *d)
{
    rm_rf(d);
    free(d);
}

static struct spool_options opts(const char *dir)
{
    return (struct spool_options){.dir = dir,
                                  .max_bytes = 64 << 20,
                                  .segment_bytes = 1 << 20,
                                  .fsync = SPOOL_FSYNC_INTERVAL,
                                  .fsync_interval_ms = 1000};
}

static struct spool *open_ok(const struct spool_options *o)
{
    struct spool *s = NULL;
    int rc = spool_open(o, &s);
    if (rc != 0)
        print_error("spool_open: %s\n", strerror(-rc));
    assert_int_equal(rc, 0);
    assert_non_null(s);
    return s;
}

/* Payload i: recognisable bytes of a length that varies with i. */
static size_t payload(unsigned i, uint8_t *out, size_t cap)
{
    size_t n = 1 + (i * 37u) % 300u;
    if (n > cap)
        n = cap;
    for (size_t k = 0; k < n; k++)
        out[k] = (uint8_t)(i * 7u + k);
    return n;
}

static void append_n(struct spool *s, unsigned from, unsigned n)
{
    uint8_t p[512];
    for (unsigned i = from; i < from + n; i++) {
        size_t len = payload(i, p, sizeof(p));
        assert_int_equal(spool_append(s, (enum otlp_signal)(i % OTLP_SIGNAL_COUNT), i, p, len), 0);
    }
}

/* Read one record and check it is payload `i`. Returns its seq. */
static uint64_t read_expect(struct spool *s, unsigned i, struct buf *body)
{
    struct spool_record rec;
    uint8_t p[512];
    int rc = spool_read(s, &rec, body);
    if (rc != 0)
        print_error("spool_read for payload %u: %d\n", i, rc);
    assert_int_equal(rc, 0);
    size_t len = payload(i, p, sizeof(p));
    assert_int_equal(body->len, len);
    assert_memory_equal(body->data, p, len);
    assert_int_equal(rec.items, i);
    assert_int_equal(rec.signal, i % OTLP_SIGNAL_COUNT);
    return rec.seq;
}

static unsigned count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name), sl = strlen(suffix);
        if (l > sl && strcmp(e->d_name + l - sl, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* Path of the n-th (sorted) segment file. */
static void seg_path(const char *dir, unsigned nth, char *out, size_t outlen)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    assert_true(n >= 0);
    unsigned k = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t l = strlen(list[i]->d_name);
        if (l == 20 && strcmp(list[i]->d_name + 16, ".seg") == 0) {
            if (k++ == nth)
                snprintf(out, outlen, "%s/%s", dir, list[i]->d_name);
        }
        free(list[i]);
    }
    free(list);
    assert_true(out[0] != '\0');
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void poke(const char *path, off_t off, uint8_t xor_mask)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t c;
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= xor_mask;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

/* Offset of record k (0-based) in a segment holding payloads from..., as
 * written by append_n. */
static off_t rec_offset(unsigned from, unsigned k)
{
    off_t off = SPOOL_SEG_HDR_BYTES;
    uint8_t p[512];
    for (unsigned i = from; i < from + k; i++)
        off += SPOOL_REC_HDR_BYTES + (off_t)((payload(i, p, sizeof(p)) + 7) & ~(size_t)7);
    return off;
}

/* ------------------------------------------------------------------ */
/* CRC32C                                                               */
/* ------------------------------------------------------------------ */

static void test_crc32c(void **state)
{
    (void)state;
    /* RFC 3720 B.4 check value and test vectors */
    assert_int_equal(spool_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(spool_crc32c_sw(0, "123456789", 9), 0xE3069283u);
    uint8_t z[32] = {0}, ff[32], inc[32], dec[32];
    memset(ff, 0xff, sizeof(ff));
    for (int i = 0; i < 32; i++) {
        inc[i] = (uint8_t)i;
        dec[i] = (uint8_t)(31 - i);
    }
    assert_int_equal(spool_crc32c(0, z, 32), 0x8A9136AAu);
    assert_int_equal(spool_crc32c(0, ff, 32), 0x62A8AB43u);
    assert_int_equal(spool_crc32c(0, inc, 32), 0x46DD794Eu);
    assert_int_equal(spool_crc32c(0, dec, 32), 0x113FDB5Cu);
    assert_int_equal(spool_crc32c(0, NULL, 0), 0);
    /* hardware and tables agree at every length and alignment; chaining */
    uint8_t buf[1100];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 131u + 7u);
    for (size_t off = 0; off < 9; off++) {
        for (size_t n = 0; n + off <= sizeof(buf); n += 1 + n / 3) {
            uint32_t a = spool_crc32c(0, buf + off, n);
            assert_int_equal(a, spool_crc32c_sw(0, buf + off, n));
            size_t h = n / 2;
            assert_int_equal(a, spool_crc32c(spool_crc32c(0, buf + off, h), buf + off + h, n - h));
        }
    }
}

/* ------------------------------------------------------------------ */
/* spool                                                                */
/* ------------------------------------------------------------------ */

static void test_append_read_ack_order(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct spool_options o = opts(dir);
    struct spool *s = open_ok(&o);
    struct buf body = {0};
    struct spool_record rec;
    assert_int_equal(spool_read(s, &rec, &body), -ENOENT);
    append_n(s, 0, 10);
    struct spool_stats st;
    spool_get_stats(s, &st);
    assert_int_equal(st.records, 10);
    assert_int_equal(st.unread, 10);
    assert_int_equal(st.appends_total, 10);
    assert_int_equal(st.segments, 1);
    assert_int_equal(st.bytes, rec_offset(0, 10));
    uint64_t seq[10];
    for (unsigned i = 0; i < 10; i++) {
        seq[i] = read_expect(s, i, &body);
        if (i > 0)
            assert_true(seq[i] == seq[i - 1] + 1);
    }
    assert_int_equal(spool_read(s, &rec, &body), -ENOENT);
    spool_get_stats(s, &st);
    assert_int_equal(st.records, 10);
    assert_int_equal(st.unread, 0);
    /* acknowledgements in any order; unknown or repeated ones refused */
    assert_int_equal(spool_ack(s, seq[3]), 0);
    assert_int_equal(spool_ack(s, seq[3]), -ENOENT);
    assert_int_equal(spool_ack(s, seq[9] + 100), -ENOENT);
    assert_int_equal(spool_ack(s, seq[0]), 0);
    spool_get_stats(s, &st);
    assert_int_equal(st.records, 8);
    /* appends after reading are read next */
    append_n(s, 10, 2);
    read_expect(s, 10, &body);
    read_expect(s, 11, &body);
    assert_int_equal(spool_unread(s), 0);
    /* a body buffer too small: -EMSGSIZE, the record stays next */
    append_n(s, 12, 1);
    struct buf small;
    assert_int_equal(buf_init(&small, 0, 4), 0);
    uint8_t p[512];
    if (payload(12, p, sizeof(p)) > 4)
        assert_int_equal(spool_read(s, &rec, &small), -EMSGSIZE);
    read_expect(s, 12, &body);
    buf_free(&small);
    assert_int_equal(spool_append(s, OTLP_SIGNAL_COUNT, 1, "x", 1), -EINVAL);
    assert_int_equal(spool_append(s, OTLP_TRACES, 1, NULL, 1), -EINVAL);
    assert_int_equal(spool_append(s, OTLP_TRACES, 0, NULL, 0), 0); /* empty payload is fine */
    spool_close(s);
    spool_close(NULL);
    buf_free(&body);
    free_dir(dir);
}

/* Reopen: what was not acknowledged comes back in order; what was
 * acknowledged does not (the saved mark); drained segments are gone. */
static void test_reopen(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct spool_options o = opts(dir);
    o.segment_bytes = 2048; /* several segments */
    struct spool *s = open_ok(&o);
    struct buf body = {0};
    append_n(s, 0, 40);
    struct spool_stats st;
    spool_get_stats(s, &st);
    assert_true(st.segments > 3);
    /* deliver the first 15, read (but not deliver) 5 more */
    for (unsigned i = 0; i < 15; i++)
        assert_int_equal(spool_ack(s, read_expect(s, i, &body)), 0);
    for (unsigned i = 15; i < 20; i++)
        read_expect(s, i, &body);
    spool_close(s);

    s = open_ok(&o);
    spool_get_stats(s, &st);
    assert_int_equal(st.records, 25);
    assert_int_equal(st.corrupt_records_total, 0);
    for (unsigned i = 15; i < 40; i++)
        assert_int_equal(spool_ack(s, read_expect(s, i, &body)), 0);
    struct spool_record rec;
    assert_int_equal(spool_read(s, &rec, &body), -ENOENT);
    /* new appends continue the sequence */
    append_n(s, 40, 3);
    for (unsigned i = 40; i < 43; i++)
        assert_int_equal(spool_ack(s, read_expect(s, i, &body)), 0);
    spool_close(s);
    /* all delivered: no segment left, and a reopen finds nothing */
    assert_int_equal(count_files(dir, ".seg"), 0);
    s = open_ok(&o);
    spool_get_stats(s, &st);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(spool_read(s, &rec, &body), -ENOENT);
    spool_close(s);
    buf_free(&body);
    free_dir(dir);
}

/* The acknowledgement mark is lost (crash before it was saved, or damaged):
 * delivered records come back once more, nothing is lost. */
static void test_lost_ack_mark_replays(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct spool_options o = opts(dir);
    struct spool *s = open_ok(&o);
    struct buf body = {0};
    append_n(s, 0, 6);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(spool_ack(s, read_expect(s, i, &body)), 0);
    spool_close(s);
    char path[512];
    snprintf(path, sizeof(path), "%s/acked", dir);
    poke(path, 0, 0x01); /* CRC no longer matches */
    s = open_ok(&o);
    for (unsigned i = 0; i < 6; i++)
        read_expect(s, i, &body);
    spool_close(s);
    buf_free(&body);
    free_dir(dir);
}

static void test_torn_last_record(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct spool_options o = opts(dir);
    struct spool *s = open_ok(&o);
    struct buf body = {0};
    append_n(s, 0, 5);
    spool_close(s);
    char path[512];
    seg_path(dir, 0, path, sizeof(path));
    off_t full = file_size(path);
    assert_int_equal(full, rec_offset(0, 5));
    /* a crash in the middle of the last write */
    assert_int_equal(truncate(path, full - 3), 0);
    s = open_ok(&o);
    struct spool_stats st;
    spool_get_stats(s, &st);
    assert_int_equal(st.records, 4);
    assert_int_equal(st.corrupt_records_total, 1);
    assert_int_equal(file_size(path), rec_offset(0, 4)); /* cut back to the last good record */
    for (unsigned i = 0; i < 4; i++)
        read_expect(s, i, &body);
    struct spool_record rec;
    assert_int_equal(spool_read(s, &rec, &body), -ENOENT);
    spool_close(s);
    /* a second open finds nothing more to repair */
    s = open_ok(&o);
    spool_get_stats(s, &st);
    assert_int_equal(st.corrupt_records_total, 0);
    assert_int_equal(st.records, 4);
    spool_close(s);

    /* garbage after the last record (a header cut short, random bytes) */
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "SREC\x01\x02\x03garbage", 14), 14);
    close(fd);
    s = open_ok(&o);
    spool_get_stats(s, &st);
    assert_int_equal(st.corrupt_records_total, 1);
    assert_int_equal(st.records, 4);
    assert_int_equal(file_size(path), rec_offset(0, 4));
    spool_close(s);

    /* a segment cut inside its own header (crash while creating it) */
    char stub[600];
    snprintf(stub, sizeof(stub), "%s/0000ff0000000000.seg", dir);
    fd = open(stub, O_WRONLY | O_CREAT, 0640);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "OTLPS", 5), 5);
    close(fd);
    s = open_ok(&o);
    assert_int_equal(access(stub, F_OK), -1);
    spool_get_stats(s, &st);
    assert_int_equal(st.records, 4);
    spool_close(s);
    buf_free(&body);
    free_dir(dir);
}

/* Damage in the middle of a segment: the damaged record is skipped (logged,
 * counted), the records after it are still delivered. */
static void test_damage_in_the_middle(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct spool_options o = opts(dir);
    struct buf body = {0};
    char path[512];
    struct spool_stats st;
    /* (a) a payload byte of record 2 flipped; (b) the magic of record 2's
     * header; (c) its length field, which makes it claim far too much */
    const off_t where[3] = {SPOOL_REC_HDR_BYTES + 1, 0, 8};
    for (unsigned k = 0; k < 3; k++) {
        struct spool *s = open_ok(&o);
        append_n(s, 0, 6);
        spool_close(s);
        seg_path(dir, 0, path, sizeof(path));
        off_t full = file_size(path);
        poke(path, rec_offset(0, 2) + where[k], 0x40);
        s = open_ok(&o);
        spool_get_stats(s, &st);
        assert_int_equal(st.corrupt_records_total, 1);
        assert_int_equal(st.records, 5);
        assert_int_equal(file_size(path), full); /* nothing truncated */
        uint64_t seqs[6];
        unsigned n = 0;
        for (unsigned i = 0; i < 6; i++) {
            if (i == 2)
                continue;
            seqs[n++] = read_expect(s, i, &body);
        }
        struct spool_record rec;
        assert_int_equal(spool_read(s, &rec, &body), -ENOENT);
        for (unsigned i = 0; i < n; i++)
            assert_int_equal(spool_ack(s, seqs[i]), 0);
        spool_get_stats(s, &st);
        assert_int_equal(st.records, 0);
        spool_close(s);
        assert_int_equal(count_files(dir, ".seg"), 0);
    }

    /* damage that appears after the open scan is found when reading */
    struct spool *s = open_ok(&o);
    append_n(s, 0, 4);
    seg_path(dir, 0, path, sizeof(path));
    poke(path, rec_offset(0, 1) + SPOOL_REC_HDR_BYTES, 0x01);
    read_expect(s, 0, &body);
    read_expect(s, 2, &body);
    read_expect(s, 3, &body);
    spool_close(s);

    /* a segment whose header is not ours is set aside, not deleted */
    free_dir(dir);
    dir = make_dir();
    o = opts(dir);
    s = open_ok(&o);
    append_n(s, 0, 2);
    spool_close(s);
    seg_path(dir, 0, path, sizeof(path));
    poke(path, 0, 0xff);
    s = open_ok(&o);
    spool_get_stats(s, &st);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.corrupt_records_total, 1);
    assert_int_equal(count_files(dir, ".corrupt"), 1);
    /* appends still work (a new segment) */
    append_n(s, 5, 1);
    read_expect(s, 5, &body);
    spool_close(s);
    buf_free(&body);
    free_dir(dir);
}

/* max_bytes: -ENOSPC, nothing written, earlier records intact; deliveries
 * free space again. */
static void test_limit_enospc(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct spool_options o = opts(dir);
    o.max_bytes = 4096;
    o.segment_bytes = 1024;
    struct spool *s = open_ok(&o);
    struct buf body = {0};
    unsigned n = 0;
    uint8_t p[512];
    int rc;
    while ((rc = spool_append(s, OTLP_TRACES, n, p, payload(n, p, sizeof(p)))) == 0)
        n++;
    assert_int_equal(rc, -ENOSPC);
    assert_true(n >= 8);
    struct spool_stats st;
    spool_get_stats(s, &st);
    assert_true(st.bytes <= o.max_bytes);
    assert_int_equal(st.full_total, 1);
    assert_int_equal(st.records, n);
    /* a huge record is refused the same way */
    static uint8_t big[8192];
    assert_int_equal(spool_append(s, OTLP_TRACES, 1, big, sizeof(big)), -ENOSPC);
    spool_close(s);
    /* all n records are intact */
    s = open_ok(&o);
    spool_get_stats(s, &st);
    assert_int_equal(st.records, n);
    assert_int_equal(st.corrupt_records_total, 0);
    for (unsigned i = 0; i < n; i++) {
        struct spool_record rec;
        assert_int_equal(spool_read(s, &rec, &body), 0);
        assert_int_equal(rec.items, i);
        assert_int_equal(body.len, payload(i, p, sizeof(p)));
        assert_memory_equal(body.data, p, body.len);
        assert_int_equal(spool_ack(s, rec.seq), 0);
    }
    /* space is back */
    assert_int_equal(spool_append(s, OTLP_LOGS, 1, p, 100), 0);
    spool_close(s);
    buf_free(&body);
    free_dir(dir);
}

/* A write that fails halfway (here: RLIMIT_FSIZE, as a full disk would) is
 * cut back: the segment keeps exactly its earlier records. */
static void test_failed_write_cut_back(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct spool_options o = opts(dir);
    struct spool *s = open_ok(&o);
    struct buf body = {0};
    append_n(s, 0, 3);
    char path[512];
    seg_path(dir, 0, path, sizeof(path));
    off_t good = file_size(path);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = (rlim_t)good + 20; /* room for part of a header only */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    static uint8_t p[4000];
    int rc = spool_append(s, OTLP_TRACES, 9, p, sizeof(p));
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_true(rc == -EFBIG || rc == -ENOSPC);
    assert_int_equal(file_size(path), good);
    struct spool_stats st;
    spool_get_stats(s, &st);
    assert_int_equal(st.records, 3);
    /* the spool goes on working after the failure */
    append_n(s, 3, 1);
    for (unsigned i = 0; i < 4; i++)
        read_expect(s, i, &body);
    spool_close(s);
    s = open_ok(&o);
    spool_get_stats(s, &st);
    assert_int_equal(st.records, 4);
    assert_int_equal(st.corrupt_records_total, 0);
    spool_close(s);
    buf_free(&body);
    free_dir(dir);
}

/* Rollover at segment_bytes; a segment is deleted once all its records are
 * acknowledged, in any order; the one being written stays until rollover
 * or close. */
static void test_rollover_and_deletion(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct spool_options o = opts(dir);
    o.segment_bytes = 1024;
    struct spool *s = open_ok(&o);
    struct buf body = {0};
    append_n(s, 0, 30);
    struct spool_stats st;
    spool_get_stats(s, &st);
    unsigned segs = (unsigned)st.segments;
    assert_true(segs >= 4);
    assert_int_equal(count_files(dir, ".seg"), segs);
    uint64_t seq[30];
    for (unsigned i = 0; i < 30; i++)
        seq[i] = read_expect(s, i, &body);
    /* acknowledge backwards: segments go as they complete; the one being
     * written goes too (it holds more than segment_bytes / 8) */
    for (int i = 29; i >= 0; i--) {
        assert_int_equal(spool_ack(s, seq[i]), 0);
        spool_get_stats(s, &st);
        if (i > 0)
            assert_true(st.segments >= 1); /* the first segment waits for seq[0] */
    }
    spool_get_stats(s, &st);
    assert_int_equal(st.segments, 0);
    assert_int_equal(count_files(dir, ".seg"), 0);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.bytes, 0);
    /* a delivered segment smaller than segment_bytes / 8 stays until close */
    spool_close(s);
    o.segment_bytes = 1 << 20;
    s = open_ok(&o);
    append_n(s, 30, 1);
    assert_int_equal(spool_ack(s, read_expect(s, 30, &body)), 0);
    spool_get_stats(s, &st);
    assert_int_equal(st.segments, 1);
    assert_int_equal(count_files(dir, ".seg"), 1);
    spool_close(s);
    assert_int_equal(count_files(dir, ".seg"), 0);
    /* a record larger than segment_bytes gets a segment of its own */
    o.segment_bytes = 1024;
    s = open_ok(&o);
    static uint8_t big[3000];
    assert_int_equal(spool_append(s, OTLP_TRACES, 1, big, sizeof(big)), 0);
    append_n(s, 0, 1);
    spool_get_stats(s, &st);
    assert_int_equal(st.segments, 2);
    spool_close(s);
    buf_free(&body);
    free_dir(dir);
}

static void test_fsync_policies(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct spool_options o = opts(dir);
    struct spool_stats st;

    o.fsync = SPOOL_FSYNC_ALWAYS;
    struct spool *s = open_ok(&o);
    append_n(s, 0, 5);
    spool_get_stats(s, &st);
    assert_int_equal(st.fsyncs_total, 5);
    spool_close(s);

    o.fsync = SPOOL_FSYNC_NEVER;
    s = open_ok(&o);
    append_n(s, 0, 5);
    assert_int_equal(spool_sync(s, base_now_ms() + 100000, true), 0);
    spool_get_stats(s, &st);
    assert_int_equal(st.fsyncs_total, 0);
    spool_close(s);

    o.fsync = SPOOL_FSYNC_INTERVAL;
    o.fsync_interval_ms = 50;
    s = open_ok(&o);
    uint64_t t0 = base_now_ms();
    assert_int_equal(spool_sync(s, t0, false), 0); /* nothing written yet */
    spool_get_stats(s, &st);
    assert_int_equal(st.fsyncs_total, 0);
    append_n(s, 0, 5);
    assert_int_equal(spool_sync(s, t0, false), 0); /* the first sync */
    spool_get_stats(s, &st);
    uint64_t f0 = st.fsyncs_total;
    assert_int_equal(f0, 1);
    append_n(s, 5, 1);
    assert_int_equal(spool_sync(s, t0 + 10, false), 0); /* within the interval */
    spool_get_stats(s, &st);
    assert_int_equal(st.fsyncs_total, f0);
    assert_int_equal(spool_sync(s, t0 + 60, false), 0);
    spool_get_stats(s, &st);
    assert_int_equal(st.fsyncs_total, f0 + 1);
    append_n(s, 6, 1);
    assert_int_equal(spool_sync(s, t0 + 80, false), 0); /* interval not over */
    spool_get_stats(s, &st);
    assert_int_equal(st.fsyncs_total, f0 + 1);
    assert_int_equal(spool_sync(s, t0 + 80, true), 0); /* forced */
    spool_get_stats(s, &st);
    assert_int_equal(st.fsyncs_total, f0 + 2);
    assert_int_equal(spool_sync(s, t0 + 500, false), 0); /* clean: no fsync */
    spool_get_stats(s, &st);
    assert_int_equal(st.fsyncs_total, f0 + 2);
    spool_close(s);
    free_dir(dir);
}

static void test_lock_and_errors(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct spool_options o = opts(dir);
    struct spool *s = open_ok(&o), *s2 = NULL;
    assert_int_equal(spool_open(&o, &s2), -EBUSY);
    assert_null(s2);
    spool_close(s);
    s = open_ok(&o); /* released by close */
    spool_close(s);
    /* nested directory created */
    char sub[512];
    snprintf(sub, sizeof(sub), "%s/a/b/spool", dir);
    o.dir = sub;
    s = open_ok(&o);
    spool_close(s);
    /* bad options */
    o.dir = "";
    assert_int_equal(spool_open(&o, &s2), -EINVAL);
    o.dir = sub;
    o.max_bytes = 0;
    assert_int_equal(spool_open(&o, &s2), -EINVAL);
    assert_int_equal(spool_open(NULL, &s2), -EINVAL);
    /* a file where the directory should be */
    char file[512];
    snprintf(file, sizeof(file), "%s/file", dir);
    int fd = open(file, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    o = opts(file);
    assert_true(spool_open(&o, &s2) < 0);
    /* outstanding records are bounded */
    o = opts(dir);
    s = open_ok(&o);
    struct buf body = {0};
    uint8_t one = 1;
    for (unsigned i = 0; i <= SPOOL_MAX_OUTSTANDING; i++)
        assert_int_equal(spool_append(s, OTLP_LOGS, 1, &one, 1), 0);
    struct spool_record rec;
    for (unsigned i = 0; i < SPOOL_MAX_OUTSTANDING; i++)
        assert_int_equal(spool_read(s, &rec, &body), 0);
    assert_int_equal(spool_read(s, &rec, &body), -EBUSY);
    assert_int_equal(spool_ack(s, rec.seq), 0);
    assert_int_equal(spool_read(s, &rec, &body), 0);
    spool_close(s);
    buf_free(&body);
    free_dir(dir);
}

/* ------------------------------------------------------------------ */
/* the export runner with the spool                                     */
/* ------------------------------------------------------------------ */

/* A scripted exporter: completes each submitted batch on the next poll with
 * `status` (changeable while the runner runs), or never while `hang`. It
 * records the body of every batch accepted. */
struct fake {
    _Atomic int status;
    _Atomic bool hang;
    struct batch *pending[64];
    unsigned n_pending;
    _Atomic unsigned submits, oks;
    _Atomic uint64_t ok_items;
    uint64_t seen[4096]; /* first 8 bytes after the request prefix: the id */
    _Atomic unsigned n_seen;
};

static int fake_submit(void *st, struct batch *b)
{
    struct fake *f = st;
    if (f->n_pending == 64)
        return -EBUSY;
    f->pending[f->n_pending++] = b;
    f->submits++;
    return 0;
}

static int fake_poll(void *st, int timeout_ms, export_done_fn done, void *arg)
{
    struct fake *f = st;
    if (f->hang || f->n_pending == 0) {
        sleep_ms((unsigned)BASE_MIN(timeout_ms, 2));
        return 0;
    }
    unsigned n = f->n_pending;
    struct batch *b[64];
    memcpy(b, f->pending, n * sizeof(*b));
    f->n_pending = 0;
    for (unsigned i = 0; i < n; i++) {
        struct export_result r = {0};
        r.status = (enum export_status)f->status;
        if (r.status == EXPORT_OK) {
            r.http_status = 200;
            f->oks++;
            f->ok_items += b[i]->items;
            /* each produced request carries a 4-byte id: record them */
            for (size_t k = 0; k + 8 <= b[i]->body.len; k += 8) {
                uint64_t v;
                memcpy(&v, b[i]->body.data + k, 8);
                unsigned at = f->n_seen++;
                if (at < 4096)
                    f->seen[at] = v;
            }
        } else {
            r.http_status = r.status == EXPORT_RETRYABLE ? 503 : 400;
            snprintf(r.reason, sizeof(r.reason), "http_%d", r.http_status);
        }
        done(arg, b[i], &r);
    }
    return (int)n;
}

static void fake_wakeup(void *st)
{
    (void)st;
}

static void fake_destroy(void *st)
{
    (void)st;
}

static const struct exporter_ops fake_ops = {
    .name = "fake",
    .submit = fake_submit,
    .poll = fake_poll,
    .wakeup = fake_wakeup,
    .destroy = fake_destroy,
};

struct rig {
    struct svc_config cfg;
    struct pipeline *p;
    struct obs_registry *reg;
    struct export_runner *r;
    struct fake fake;
    char *dir;
    uint64_t next_id;
};

static void rig_setup(struct rig *g, char *dir)
{
    memset(g, 0, sizeof(*g));
    config_defaults(&g->cfg);
    g->dir = dir;
    g->next_id = 1;
    g->cfg.batch.max_concurrent_exports = 2;
    g->cfg.batch.max_queue_size = 100;
    g->cfg.batch.max_export_batch_size = 10;
    g->cfg.receiver.max_decompressed_bytes = 64 * 1024;
    g->cfg.batch.max_batch_bytes = 64 * 1024;
    g->cfg.exporter.retry.initial_interval_ms = 5;
    g->cfg.exporter.retry.max_interval_ms = 20;
    g->cfg.exporter.retry.randomization = 0;
    g->cfg.exporter.retry.max_elapsed_ms = 10000;
    g->cfg.spool.enabled = true;
    free(g->cfg.spool.dir);
    g->cfg.spool.dir = strdup(dir);
    g->cfg.spool.max_bytes = 1 << 20;
    g->cfg.spool.segment_bytes = 4096;
    assert_int_equal(pipeline_create(&g->cfg, 1, &g->p), 0);
    assert_int_equal(obs_registry_create(2, 4096, &g->reg), 0);
    health_reset();
}

static void rig_runner(struct rig *g, enum export_status st)
{
    g->fake.status = st;
    struct exporter ex = {&fake_ops, &g->fake};
    int rc = export_runner_create_with(&g->cfg, g->p, g->reg, 1, &ex, &g->r);
    assert_int_equal(rc, 0);
}

/* A worker's part: one batch of `n` items, each 8 bytes holding a unique id
 * (the fake exporter only looks at bytes, so the body need not be OTLP). */
static void produce(struct rig *g, unsigned n)
{
    struct batch *b = pipeline_open_batch(g->p, 0, OTLP_TRACES);
    assert_non_null(b);
    for (unsigned i = 0; i < n; i++) {
        assert_int_equal(pipeline_admit(g->p, 0, 1), 0);
        uint64_t id = g->next_id++;
        assert_int_equal(buf_append(&b->body, &id, 8), 0);
        pipeline_commit(g->p, 0, OTLP_TRACES, 1);
    }
    pipeline_flush(g->p, 0, OTLP_TRACES);
}

static double metric(struct rig *g, const char *series)
{
    struct buf out;
    assert_int_equal(buf_init(&out, 1 << 16, 0), 0);
    assert_int_equal(obs_render_prometheus(g->reg, &out), 0);
    assert_int_equal(buf_append(&out, "", 1), 0);
    double v = -1;
    size_t sl = strlen(series);
    for (char *line = (char *)out.data; line && *line;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, series, sl) == 0 && line[sl] == ' ') {
            v = strtod(line + sl + 1, NULL);
            break;
        }
        line = nl ? nl + 1 : NULL;
    }
    buf_free(&out);
    return v;
}

static bool wait_until(bool (*fn)(struct rig *), struct rig *g, unsigned max_ms)
{
    uint64_t end = base_now_ms() + max_ms;
    do {
        if (fn(g))
            return true;
        sleep_ms(5);
    } while (base_now_ms() < end);
    return fn(g);
}

/* Every id 1..next_id-1 was exported at least once; returns duplicates. */
static unsigned check_all_ids(struct rig *g)
{
    unsigned n = BASE_MIN(g->fake.n_seen, 4096u);
    uint64_t want = g->next_id - 1;
    unsigned *cnt = calloc(want + 1, sizeof(*cnt));
    assert_non_null(cnt);
    for (unsigned i = 0; i < n; i++) {
        assert_true(g->fake.seen[i] >= 1 && g->fake.seen[i] <= want);
        cnt[g->fake.seen[i]]++;
    }
    unsigned dups = 0;
    for (uint64_t id = 1; id <= want; id++) {
        if (cnt[id] == 0)
            print_error("id %" PRIu64 " never exported\n", id);
        assert_true(cnt[id] > 0);
        dups += cnt[id] - 1;
    }
    free(cnt);
    return dups;
}

static void rig_teardown(struct rig *g)
{
    export_runner_destroy(g->r);
    assert_int_equal(pipeline_queued_items(g->p), 0);
    pipeline_destroy(g->p);
    obs_registry_destroy(g->reg);
    config_free(&g->cfg);
}

static bool spool_has_some(struct rig *g)
{
    return metric(g, "otlp_spool_appends_total") >= 3;
}

static bool all_exported(struct rig *g)
{
    return g->fake.ok_items >= g->next_id - 1 && metric(g, "otlp_spool_records") == 0;
}

/* Retries exhausted -> spooled, not dropped; the upstream recovers -> the
 * spooled batches are replayed and the spool drains. */
static void test_runner_outage_spool_replay(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct rig g;
    rig_setup(&g, dir);
    g.cfg.exporter.retry.max_elapsed_ms = 30;
    rig_runner(&g, EXPORT_RETRYABLE);
    assert_int_equal(export_runner_start(g.r), 0);
    for (int i = 0; i < 6; i++)
        produce(&g, 5);
    assert_true(wait_until(spool_has_some, &g, 5000));
    assert_int_equal(metric(&g, "otlp_spans_dropped_total{reason=\"retries_exhausted\"}"), 0);
    g.fake.status = EXPORT_OK;
    for (int i = 0; i < 4; i++)
        produce(&g, 5);
    assert_true(wait_until(all_exported, &g, 10000));
    assert_int_equal(check_all_ids(&g), 0);
    assert_int_equal(metric(&g, "otlp_spans_exported_total"), 50);
    assert_true(metric(&g, "otlp_spool_replayed_total") >= 3);
    assert_int_equal(metric(&g, "otlp_spool_replayed_total"),
                     metric(&g, "otlp_spool_appends_total"));
    assert_int_equal(metric(&g, "otlp_spans_dropped_total{reason=\"retries_exhausted\"}"), 0);
    rig_teardown(&g);
    assert_int_equal(count_files(dir, ".seg"), 0);
    free_dir(dir);
}

static bool queue_low(struct rig *g)
{
    return pipeline_queued_items(g->p) <= 80 && metric(g, "otlp_spool_appends_total") > 0;
}

/* A hanging upstream: the queue rises above 80 %; waiting batches go to the
 * spool so workers can keep admitting. */
static void test_runner_pressure_spills(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct rig g;
    rig_setup(&g, dir);
    g.fake.hang = true;
    rig_runner(&g, EXPORT_OK);
    assert_int_equal(export_runner_start(g.r), 0);
    for (int i = 0; i < 9; i++)
        produce(&g, 10); /* 90 of 100, 20 of them in flight */
    /* spilled down to 80 %: workers can admit again, and again */
    for (int i = 0; i < 3; i++) {
        assert_true(wait_until(queue_low, &g, 5000));
        produce(&g, 10);
    }
    assert_true(wait_until(queue_low, &g, 5000));
    assert_true(metric(&g, "otlp_spool_appends_total") >= 4);
    g.fake.hang = false;
    assert_true(wait_until(all_exported, &g, 10000));
    assert_int_equal(check_all_ids(&g), 0);
    rig_teardown(&g);
    free_dir(dir);
}

static bool pool_ok(struct rig *g)
{
    return pipeline_free_batches_min(g->p) >= 2;
}

/* Many small batches (flushed by age) during an outage: far below the item
 * mark, they would empty the batch pool (503 pool_exhausted); the runner
 * spools them when a worker's pool runs low. */
static void test_runner_small_batches_spill(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct rig g;
    rig_setup(&g, dir);
    g.cfg.exporter.retry.max_elapsed_ms = 600000;
    rig_runner(&g, EXPORT_RETRYABLE);
    assert_int_equal(export_runner_start(g.r), 0);
    unsigned pool = pipeline_batches_per_worker(g.p);
    for (unsigned i = 0; i < 3 * pool; i++) {
        assert_true(wait_until(pool_ok, &g, 5000));
        produce(&g, 1);
    }
    assert_true(pipeline_queued_items(g.p) < 80);
    assert_true(metric(&g, "otlp_spool_appends_total") > 0);
    g.fake.status = EXPORT_OK;
    assert_true(wait_until(all_exported, &g, 10000));
    assert_int_equal(check_all_ids(&g), 0);
    rig_teardown(&g);
    free_dir(dir);
}

/* Stop while the upstream fails: leftovers go to the spool (not dropped);
 * a new runner on the same spool delivers them. */
static void test_runner_shutdown_and_restart(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct rig g;
    rig_setup(&g, dir);
    rig_runner(&g, EXPORT_RETRYABLE);
    assert_int_equal(export_runner_start(g.r), 0);
    for (int i = 0; i < 5; i++)
        produce(&g, 4);
    sleep_ms(50);
    uint64_t t0 = base_now_ms();
    export_runner_stop(g.r, base_now_ms() + 2000);
    assert_true(base_now_ms() - t0 < 1000); /* outage: spooled at once, no wait */
    assert_int_equal(metric(&g, "otlp_spans_dropped_total{reason=\"shutdown\"}"), 0);
    assert_int_equal(metric(&g, "otlp_spool_records"), 5);
    uint64_t ids = g.next_id;
    export_runner_destroy(g.r);
    g.r = NULL;
    assert_int_equal(pipeline_queued_items(g.p), 0);

    /* "restart": a new runner with a healthy upstream */
    memset(&g.fake, 0, sizeof(g.fake));
    obs_registry_destroy(g.reg);
    assert_int_equal(obs_registry_create(2, 4096, &g.reg), 0);
    rig_runner(&g, EXPORT_OK);
    assert_int_equal(export_runner_start(g.r), 0);
    produce(&g, 3);
    assert_true(wait_until(all_exported, &g, 5000));
    assert_int_equal(check_all_ids(&g), 0);
    assert_int_equal(g.fake.ok_items, ids - 1 + 3);
    rig_teardown(&g);
    assert_int_equal(count_files(dir, ".seg"), 0);
    free_dir(dir);
}

/* Spool full: batches stay in memory (queue fills, clients would get
 * 429/503), none is dropped; all arrive once the upstream is back. */
static void test_runner_spool_full_keeps_in_memory(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct rig g;
    rig_setup(&g, dir);
    g.cfg.spool.max_bytes = 512; /* room for about two records */
    g.cfg.spool.segment_bytes = 512;
    g.cfg.exporter.retry.max_elapsed_ms = 20;
    rig_runner(&g, EXPORT_RETRYABLE);
    assert_int_equal(export_runner_start(g.r), 0);
    for (int i = 0; i < 6; i++)
        produce(&g, 5);
    sleep_ms(300);
    if (metric(&g, "otlp_spool_full_total") <= 0)
        print_error("appends %f records %f bytes %f queued %" PRIu64 "\n",
                    metric(&g, "otlp_spool_appends_total"), metric(&g, "otlp_spool_records"),
                    metric(&g, "otlp_spool_bytes"), pipeline_queued_items(g.p));
    assert_true(metric(&g, "otlp_spool_full_total") > 0);
    assert_true(pipeline_queued_items(g.p) > 0);
    assert_int_equal(metric(&g, "otlp_spans_dropped_total{reason=\"retries_exhausted\"}"), 0);
    g.fake.status = EXPORT_OK;
    assert_true(wait_until(all_exported, &g, 10000));
    assert_int_equal(check_all_ids(&g), 0);
    rig_teardown(&g);
    free_dir(dir);
}

/* Permanent failure of a replayed batch: dropped with its reason and
 * acknowledged (not replayed forever). */
static void test_runner_replay_permanent(void **state)
{
    (void)state;
    char *dir = make_dir();
    {
        struct spool_options o = opts(dir);
        struct spool *s = open_ok(&o);
        uint64_t id = 7;
        assert_int_equal(spool_append(s, OTLP_TRACES, 1, &id, 8), 0);
        spool_close(s);
    }
    struct rig g;
    rig_setup(&g, dir);
    rig_runner(&g, EXPORT_PERMANENT);
    assert_int_equal(export_runner_start(g.r), 0);
    uint64_t end = base_now_ms() + 5000;
    while ((metric(&g, "otlp_spans_dropped_total{reason=\"upstream_rejected\"}") != 1 ||
            metric(&g, "otlp_spool_records") != 0) &&
           base_now_ms() < end)
        sleep_ms(5);
    assert_int_equal(metric(&g, "otlp_spans_dropped_total{reason=\"upstream_rejected\"}"), 1);
    assert_int_equal(metric(&g, "otlp_spool_records"), 0);
    rig_teardown(&g);
    free_dir(dir);
}

/* A spool that cannot be opened fails the runner's creation. */
static void test_runner_spool_open_fails(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct rig g;
    rig_setup(&g, dir);
    struct spool_options o = opts(dir);
    struct spool *s = open_ok(&o); /* holds the lock */
    struct exporter ex = {&fake_ops, &g.fake};
    assert_int_equal(export_runner_create_with(&g.cfg, g.p, g.reg, 1, &ex, &g.r), -EBUSY);
    g.r = NULL;
    spool_close(s);
    rig_teardown(&g);
    free_dir(dir);
}

/* ------------------------------------------------------------------ */
/* the write-ahead log (wal.h): segment references and release          */
/* ------------------------------------------------------------------ */

static struct wal_options wal_opts(const char *dir)
{
    return (struct wal_options){.dir = dir,
                                .max_bytes = 1 << 20,
                                .segment_bytes = 1024,
                                .segment_ms = 3600 * 1000,
                                .fsync = SPOOL_FSYNC_INTERVAL,
                                .fsync_interval_ms = 1000};
}

static struct wal *wal_open_ok(const struct wal_options *o)
{
    struct wal *w = NULL;
    int rc = wal_open(o, &w);
    if (rc != 0)
        print_error("wal_open: %s\n", strerror(-rc));
    assert_int_equal(rc, 0);
    return w;
}

/* Append payloads [from, from + n); segs[i - from] gets each one's segment. */
static void wal_append_n(struct wal *w, unsigned from, unsigned n, uint32_t *segs)
{
    uint8_t p[512];
    for (unsigned i = from; i < from + n; i++) {
        size_t len = payload(i, p, sizeof(p));
        int rc = wal_append(w, (enum otlp_signal)(i % OTLP_SIGNAL_COUNT), i, p, len, &segs[i - from]);
        assert_int_equal(rc, 0);
    }
}

/* Segments are deleted only once sealed (the writer moved past them) and
 * every reference on them was dropped, in any order. */
static void test_wal_refcount_release(void **state)
{
    (void)state;
    char *dir = make_dir();
    struct wal_options o = wal_opts(dir);
    struct wal *w = wal_open_ok(&o);
    uint32_t segs[40];
    wal_append_n(w, 0, 40, segs); /* ~170 bytes each: several 1 KiB segments */
    uint32_t first = segs[0], last = segs[39];
    assert_true(last - first >= 4);
    for (unsigned i = 1; i < 40; i++)
        assert_true(segs[i] == segs[i - 1] || segs[i] == segs[i - 1] + 1);
    /* Batch A holds the first two segments, batch B the rest; C also the first. */
    for (uint32_t g = first; g <= last; g++)
        wal_ref(w, g);
    wal_ref(w, first);
    unsigned files = count_files(dir, ".seg");
    assert_int_equal(files, last - first + 1);
    assert_int_equal(wal_tick(w, base_now_ms()) > 0, 1); /* seal and fsync pending */
    assert_int_equal(count_files(dir, ".seg"), files);

    /* B is delivered first: its sealed segments go, the active one stays. */
    for (uint32_t g = first + 2; g <= last; g++)
        wal_unref(w, g);
    wal_tick(w, base_now_ms());
    assert_int_equal(count_files(dir, ".seg"), 3); /* first, first + 1, active */
    /* A: the second segment goes; the first is still held by C. */
    wal_unref(w, first);
    wal_unref(w, first + 1);
    wal_tick(w, base_now_ms());
    assert_int_equal(count_files(dir, ".seg"), 2);
    wal_unref(w, first);
    wal_tick(w, base_now_ms());
    assert_int_equal(count_files(dir, ".seg"), 1);
    /* The active segment goes once it is old enough to be sealed. */
    assert_int_equal(wal_tick(w, base_now_ms() + o.segment_ms), -1);
    assert_int_equal(count_files(dir, ".seg"), 0);
    struct wal_stats st;
    wal_get_stats(w, &st);
    assert_int_equal(st.appends_total, 40);
    assert_int_equal(st.segments, 0);
    assert_int_equal(st.bytes, 0);
    /* Appends go on in a new segment. */
    wal_append_n(w, 40, 1, segs);
    assert_int_equal(segs[0], last + 1);
    assert_int_equal(count_files(dir, ".seg"), 1);
    wal_close(w); /* unreferenced: deleted */
    assert_int_equal(count_files(dir, ".seg"), 0);
    free_dir(dir);
}

/* What is still referenced at close (or at a crash) is moved into the
 * spool at the next open, in order, torn tail cut and counted. */
static void test_wal_recover(void **state)
{
    (void)state;
    char *dir = make_dir(), *sdir = make_dir();
    struct wal_options o = wal_opts(dir);
    struct wal *w = wal_open_ok(&o);
    uint32_t segs[20];
    wal_append_n(w, 0, 20, segs);
    for (unsigned i = 0; i < 20; i++)
        wal_ref(w, segs[i]);
    for (unsigned i = 0; i < 5; i++) /* the first five were delivered */
        wal_unref(w, segs[i]);
    wal_close(w);
    assert_true(count_files(dir, ".seg") >= 2);
    /* A crash in the middle of the next append: half a record header. */
    char path[512];
    seg_path(dir, count_files(dir, ".seg") - 1, path, sizeof(path));
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    fwrite("SREC\x01\x02\x03", 1, 7, f);
    fclose(f);

    w = wal_open_ok(&o);
    struct wal_stats st;
    wal_get_stats(w, &st);
    assert_int_equal(st.corrupt_records_total, 1);
    struct spool_options so = opts(sdir);
    struct spool *dst = open_ok(&so);
    uint64_t moved = 0;
    assert_int_equal(wal_recover(w, dst, &moved), 0);
    /* Segment granularity: records of a released segment that was still
     * shared with unreleased ones come back too (at least once). */
    unsigned from = 0;
    while (from < 20 && segs[from] != segs[5])
        from++;
    assert_int_equal(moved, 20 - from);
    wal_get_stats(w, &st);
    assert_int_equal(st.recovered_total, moved);
    assert_int_equal(count_files(dir, ".seg"), 0);
    struct buf body;
    buf_init(&body, 0, 0);
    for (unsigned i = from; i < 20; i++)
        assert_int_equal(spool_ack(dst, read_expect(dst, i, &body)), 0);
    struct spool_record rec;
    assert_int_equal(spool_read(dst, &rec, &body), -ENOENT);
    buf_free(&body);
    /* Nothing left to recover a second time. */
    wal_close(w);
    w = wal_open_ok(&o);
    assert_int_equal(wal_recover(w, dst, &moved), 0);
    assert_int_equal(moved, 0);
    wal_close(w);
    spool_close(dst);
    free_dir(dir);
    free_dir(sdir);
}

/* A full log refuses with -ENOSPC without touching earlier records, and
 * takes appends again once released segments are deleted. */
static void test_wal_full(void **state)
{
    (void)state;
    char *dir = make_dir(), *sdir = make_dir();
    struct wal_options o = wal_opts(dir);
    o.max_bytes = 8192;
    struct wal *w = wal_open_ok(&o);
    uint8_t p[512];
    uint32_t segs[200];
    unsigned n = 0;
    int rc = 0;
    while (n < 200) {
        size_t len = payload(n, p, sizeof(p));
        rc = wal_append(w, (enum otlp_signal)(n % OTLP_SIGNAL_COUNT), n, p, len, &segs[n]);
        if (rc < 0)
            break;
        wal_ref(w, segs[n]);
        n++;
    }
    assert_int_equal(rc, -ENOSPC);
    assert_true(n > 10);
    struct wal_stats st;
    wal_get_stats(w, &st);
    assert_true(st.full_total >= 1);
    assert_true(st.bytes <= o.max_bytes);
    /* Delivered: everything released, the writer seals by age, room again. */
    for (unsigned i = 0; i < n; i++)
        wal_unref(w, segs[i]);
    wal_tick(w, base_now_ms() + o.segment_ms);
    wal_get_stats(w, &st);
    assert_int_equal(st.bytes, 0);
    uint32_t seg;
    size_t len = payload(n, p, sizeof(p));
    assert_int_equal(wal_append(w, (enum otlp_signal)(n % OTLP_SIGNAL_COUNT), n, p, len, &seg), 0);
    wal_ref(w, seg);
    wal_close(w);
    /* The record appended after the refusal is intact. */
    w = wal_open_ok(&o);
    struct spool_options so = opts(sdir);
    struct spool *dst = open_ok(&so);
    uint64_t moved = 0;
    assert_int_equal(wal_recover(w, dst, &moved), 0);
    assert_int_equal(moved, 1);
    struct buf body;
    buf_init(&body, 0, 0);
    read_expect(dst, n, &body);
    buf_free(&body);
    wal_close(w);
    spool_close(dst);
    free_dir(dir);
    free_dir(sdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_append_read_ack_order),
        cmocka_unit_test(test_reopen),
        cmocka_unit_test(test_lost_ack_mark_replays),
        cmocka_unit_test(test_torn_last_record),
        cmocka_unit_test(test_damage_in_the_middle),
        cmocka_unit_test(test_limit_enospc),
        cmocka_unit_test(test_failed_write_cut_back),
        cmocka_unit_test(test_rollover_and_deletion),
        cmocka_unit_test(test_fsync_policies),
        cmocka_unit_test(test_lock_and_errors),
        cmocka_unit_test(test_runner_outage_spool_replay),
        cmocka_unit_test(test_runner_pressure_spills),
        cmocka_unit_test(test_runner_small_batches_spill),
        cmocka_unit_test(test_runner_shutdown_and_restart),
        cmocka_unit_test(test_runner_spool_full_keeps_in_memory),
        cmocka_unit_test(test_runner_replay_permanent),
        cmocka_unit_test(test_runner_spool_open_fails),
        cmocka_unit_test(test_wal_refcount_release),
        cmocka_unit_test(test_wal_recover),
        cmocka_unit_test(test_wal_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
