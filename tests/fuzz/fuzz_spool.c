/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for lib/spool's segment scanner: the input becomes one or
 * two segment files (and maybe an acknowledgement mark) in a scratch
 * directory; spool_open() must not crash, and every record spool_read()
 * then yields must be a CRC-valid record present in the input, in strictly
 * increasing sequence order. A second open must find exactly the same
 * records (repairs are stable), and an append afterwards must read back.
 * Input: flags byte, split byte, seq byte, then the segment bytes.
 *   flags bit 0: prepend a valid segment header to each segment;
 *   bit 1: split the bytes into two segments at split * len / 256, the second
 *          named seq (so sequence ranges between segments are exercised);
 *   bit 2: fix up CRCs: every 8-aligned "SREC" header gets a correct header
 *          CRC, and a correct payload CRC when its length fits;
 *   bit 3: write an acknowledgement mark of value seq (valid CRC). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "obs/log.h"
#include "spool/spool.h"

static char dir[256];

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

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

static void clear_dir(void)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        abort();
    struct dirent *e;
    char path[600];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static void write_file(const char *name, const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || (an && write(fd, a, an) != (ssize_t)an) ||
        (bn && write(fd, b, bn) != (ssize_t)bn))
        abort();
    close(fd);
}

/* The independent oracle: is there, at an 8-aligned offset of file `f`
 * (after its 16-byte header), a record with this seq, CRC-valid, whose
 * payload is `body`? */
static int present(const uint8_t *f, size_t n, uint64_t seq, const struct buf *body)
{
    for (size_t o = 16; o + 48 <= n; o += 8) {
        const uint8_t *h = f + o;
        if (memcmp(h, "SREC", 4) != 0 || get32(h + 4) != spool_crc32c(0, h + 8, 40))
            continue;
        uint32_t len = get32(h + 8);
        if (get64(h + 16) != seq || len != body->len || n - o - 48 < len)
            continue;
        if (len > 0 && memcmp(h + 48, body->data, len) != 0)
            continue;
        if (get32(h + 12) == spool_crc32c(0, body->data, len))
            return 1;
    }
    return 0;
}

/* Every record of one open, in order; checks them against the files. */
static unsigned read_all(struct spool *s, const uint8_t *f1, size_t n1, const uint8_t *f2,
                         size_t n2, uint64_t *seqs, unsigned max)
{
    struct buf body = {0};
    struct spool_record rec;
    unsigned k = 0;
    uint64_t prev = 0;
    int rc;
    while ((rc = spool_read(s, &rec, &body)) == 0) {
        if (k > 0 && rec.seq <= prev)
            abort(); /* out of order */
        if (!present(f1, n1, rec.seq, &body) && !present(f2, n2, rec.seq, &body))
            abort(); /* not a CRC-valid record of the input */
        if ((unsigned)rec.signal >= OTLP_SIGNAL_COUNT)
            abort();
        prev = rec.seq;
        if (k < max)
            seqs[k] = rec.seq;
        k++;
    }
    if (rc != -ENOENT && rc != -EBUSY)
        abort();
    buf_free(&body);
    return k;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof(dir), "%s/fuzz-spool-XXXXXX", base);
    if (mkdtemp(dir) == NULL)
        abort();
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0)
        log_set_fd(devnull);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || size > 1 << 16)
        return 0;
    uint8_t flags = data[0], split = data[1], seqb = data[2];
    size_t n = size - 3;
    uint8_t *raw = malloc(n + 1);
    if (raw == NULL)
        abort();
    memcpy(raw, data + 3, n);

    uint8_t hdr[16];
    memcpy(hdr, "OTLPSPOL", 8);
    put32(hdr + 8, 1);
    put32(hdr + 12, spool_crc32c(0, hdr, 12));
    size_t h = flags & 1 ? 16 : 0;
    size_t cut = flags & 2 ? (size_t)split * n / 256 : n;

    /* The two files as the scanner sees them (header + part). */
    size_t n1 = h + cut, n2 = h + (n - cut);
    uint8_t *f1 = malloc(n1 + 1), *f2 = malloc(n2 + 1);
    if (f1 == NULL || f2 == NULL)
        abort();
    memcpy(f1, hdr, h);
    memcpy(f1 + h, raw, cut);
    memcpy(f2, hdr, h);
    memcpy(f2 + h, raw + cut, n - cut);
    if (flags & 4) {
        uint8_t *fs[2] = {f1, f2};
        size_t ns[2] = {n1, n2};
        for (int k = 0; k < 2; k++) {
            for (size_t o = 16; o + 48 <= ns[k]; o += 8) {
                uint8_t *r = fs[k] + o;
                if (memcmp(r, "SREC", 4) != 0)
                    continue;
                uint32_t len = get32(r + 8);
                if (len <= ns[k] - o - 48)
                    put32(r + 12, spool_crc32c(0, r + 48, len));
                put32(r + 4, spool_crc32c(0, r + 8, 40));
            }
        }
    }

    clear_dir();
    write_file("0000000000000001.seg", f1, n1, NULL, 0);
    if (flags & 2) {
        char name[32];
        snprintf(name, sizeof(name), "%016llx.seg", (unsigned long long)seqb);
        write_file(name, f2, n2, NULL, 0);
    }
    if (flags & 8) {
        uint8_t ack[16];
        put64(ack, seqb);
        memcpy(ack + 8, "ACKD", 4);
        put32(ack + 12, spool_crc32c(0, ack, 12));
        write_file("acked", ack, sizeof(ack), NULL, 0);
    }

    struct spool_options o = {.dir = dir,
                              .max_bytes = 1 << 20,
                              .segment_bytes = 4096,
                              .fsync = SPOOL_FSYNC_NEVER,
                              .fsync_interval_ms = 1000};
    struct spool *s = NULL;
    uint64_t seqs1[SPOOL_MAX_OUTSTANDING], seqs2[SPOOL_MAX_OUTSTANDING];
    if (spool_open(&o, &s) == 0) {
        unsigned k1 = read_all(s, f1, n1, f2, n2, seqs1, SPOOL_MAX_OUTSTANDING);
        spool_close(s);
        /* Repairs are stable: the same records again, nothing lost. */
        if (spool_open(&o, &s) != 0)
            abort();
        unsigned k2 = read_all(s, f1, n1, f2, n2, seqs2, SPOOL_MAX_OUTSTANDING);
        if (k1 != k2 || memcmp(seqs1, seqs2, BASE_MIN(k1, SPOOL_MAX_OUTSTANDING) * 8) != 0)
            abort();
        /* Appends go on after whatever was found, and read back. */
        static const uint8_t p[5] = "hello";
        int rc = k2 < SPOOL_MAX_OUTSTANDING ? spool_append(s, OTLP_LOGS, 1, p, sizeof(p)) : 1;
        if (rc < 0 && rc != -EOVERFLOW) /* -EOVERFLOW: a record at SPOOL_MAX_SEQ - 1 */
            abort();
        if (rc == 0) {
            struct buf body = {0};
            struct spool_record rec;
            if (spool_read(s, &rec, &body) != 0 || body.len != 5 || memcmp(body.data, p, 5) != 0 ||
                (k2 > 0 && rec.seq <= seqs2[BASE_MIN(k2, SPOOL_MAX_OUTSTANDING) - 1]) ||
                spool_ack(s, rec.seq) != 0)
                abort();
            buf_free(&body);
        }
        spool_close(s);
    }
    free(raw);
    free(f1);
    free(f2);
    return 0;
}
