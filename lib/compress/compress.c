/* SPDX-License-Identifier: Apache-2.0 */
/* Bounded decompression (libdeflate one-shot for gzip/deflate, zstd
 * streaming) and gzip compression. Every decoder writes into a window of the
 * output buf that ends at the limit, so a bomb stops at the limit instead of
 * being expanded and measured afterwards. */
#include "compress/compress.h"

#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <zstd.h>
#include <zstd_errors.h>

#define COMPRESS_DEFAULT_LEVEL 6
#define COMPRESS_MIN_GROW 4096u
/* Largest DEFLATE expansion: a 258-byte match coded in 2 bits is ~1032:1. */
#define COMPRESS_DEFLATE_MAX_RATIO 1032u
/* zstd windows up to this are always accepted (zstd -19 uses 8 MiB). */
#define COMPRESS_ZSTD_MIN_WINDOW_LOG 23
/* ZSTD_WINDOWLOG_MAX is only in zstd's static-linking API. */
#define COMPRESS_ZSTD_MAX_WINDOW_LOG (sizeof(size_t) == 4 ? 30 : 31)

struct compress_ctx {
    struct libdeflate_decompressor *dd;
    struct libdeflate_compressor *dc;
    int dc_level;
    ZSTD_DCtx *zd;
};

static const int err_codes[] = {
#define X(e, reason, msg) e,
    COMPRESS_ERRORS(X)
#undef X
};
static const char *const err_reasons[] = {
#define X(e, reason, msg) #reason,
    COMPRESS_ERRORS(X)
#undef X
};
static const char *const err_messages[] = {
#define X(e, reason, msg) msg,
    COMPRESS_ERRORS(X)
#undef X
};

const char *compress_error_reason(int err)
{
    for (size_t i = 0; i < ARRAY_SIZE(err_codes); i++)
        if (err_codes[i] == err)
            return err_reasons[i];
    return "internal";
}

const char *compress_error_message(int err)
{
    for (size_t i = 0; i < ARRAY_SIZE(err_codes); i++)
        if (err_codes[i] == err)
            return err_messages[i];
    return "internal error";
}

int compress_codec_parse(const char *content_encoding, enum compress_codec *out)
{
    const char *s = content_encoding;
    enum compress_codec c;
    if (s == NULL || s[0] == '\0' || strcasecmp(s, "identity") == 0)
        c = COMPRESS_NONE;
    else if (strcasecmp(s, "gzip") == 0 || strcasecmp(s, "x-gzip") == 0)
        c = COMPRESS_GZIP;
    else if (strcasecmp(s, "zstd") == 0)
        c = COMPRESS_ZSTD;
    else if (strcasecmp(s, "deflate") == 0)
        c = COMPRESS_DEFLATE;
    else
        return -ENOTSUP;
    *out = c;
    return 0;
}

const char *compress_codec_name(enum compress_codec codec)
{
    switch (codec) {
    case COMPRESS_NONE: return "identity";
    case COMPRESS_GZIP: return "gzip";
    case COMPRESS_ZSTD: return "zstd";
    case COMPRESS_DEFLATE: return "deflate";
    }
    return "?";
}

int compress_ctx_create(struct compress_ctx **out)
{
    struct compress_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->dd = libdeflate_alloc_decompressor();
    if (c->dd == NULL)
        goto fail;
    c->dc = libdeflate_alloc_compressor(COMPRESS_DEFAULT_LEVEL);
    if (c->dc == NULL)
        goto fail;
    c->dc_level = COMPRESS_DEFAULT_LEVEL;
    c->zd = ZSTD_createDCtx();
    if (c->zd == NULL)
        goto fail;
    *out = c;
    return 0;
fail:
    compress_ctx_destroy(c);
    return -ENOMEM;
}

void compress_ctx_destroy(struct compress_ctx *c)
{
    if (c == NULL)
        return;
    libdeflate_free_decompressor(c->dd);
    libdeflate_free_compressor(c->dc);
    ZSTD_freeDCtx(c->zd);
    free(c);
}

/* Bytes that may still be written into `out` without passing `lim`. */
static inline size_t room(const struct buf *out, size_t lim)
{
    size_t end = BASE_MIN(out->cap, lim);
    return end > out->len ? end - out->len : 0;
}

/*
 * Grow `out` so that at least min(want, lim) bytes of capacity exist, and at
 * least double what there was (bounded by lim) so retries stay logarithmic.
 * Returns 0, -ENOMEM (-EMSGSIZE cannot happen: lim <= out->limit).
 */
static int grow(struct buf *out, size_t lim, size_t want)
{
    size_t target = out->cap > SIZE_MAX / 2 ? SIZE_MAX : out->cap * 2;
    target = BASE_MAX(target, want);
    target = BASE_MAX(target, (size_t)COMPRESS_MIN_GROW);
    target = BASE_MIN(target, lim);
    if (target <= out->cap)
        return 0;
    return buf_reserve(out, target - out->len);
}

/* A first output size from what the input says, never above the limit nor
 * above what `in_len` bytes of DEFLATE can expand to. */
static size_t deflate_hint(size_t in_len, uint64_t claimed, size_t lim)
{
    uint64_t max_out = (uint64_t)in_len * COMPRESS_DEFLATE_MAX_RATIO + 64;
    uint64_t h = claimed != 0 ? claimed : (uint64_t)in_len * 4;
    h = BASE_MIN(h, max_out);
    h = BASE_MIN(h, (uint64_t)lim);
    return (size_t)h;
}

enum deflate_fmt { FMT_GZIP, FMT_ZLIB, FMT_RAW };

static enum libdeflate_result run_libdeflate(struct libdeflate_decompressor *d, enum deflate_fmt f,
                                             const uint8_t *in, size_t in_len, void *out,
                                             size_t avail, size_t *in_used, size_t *out_used)
{
    switch (f) {
    case FMT_GZIP:
        return libdeflate_gzip_decompress_ex(d, in, in_len, out, avail, in_used, out_used);
    case FMT_ZLIB:
        return libdeflate_zlib_decompress_ex(d, in, in_len, out, avail, in_used, out_used);
    default:
        return libdeflate_deflate_decompress_ex(d, in, in_len, out, avail, in_used, out_used);
    }
}

/*
 * Decompress one libdeflate unit (gzip member, zlib stream, raw stream) at
 * in[0..in_len) appending to out. libdeflate is one-shot, so on
 * INSUFFICIENT_SPACE the unit is decoded again into a bigger window; the
 * window only reaches `lim` when the data really needs it, and a unit that
 * does not fit there is a bomb. Returns input bytes used, or a negative errno.
 */
static ssize_t inflate_unit(struct compress_ctx *c, enum deflate_fmt f, const uint8_t *in,
                            size_t in_len, struct buf *out, size_t lim, size_t hint)
{
    uint8_t dummy;
    if (room(out, lim) < hint && out->len < lim) {
        int rc = grow(out, lim, out->len + hint);
        if (rc < 0)
            return rc;
    }
    for (;;) {
        size_t avail = room(out, lim);
        void *dst = avail != 0 ? (void *)(out->data + out->len) : (void *)&dummy;
        size_t in_used = 0, out_used = 0;
        enum libdeflate_result r =
            run_libdeflate(c->dd, f, in, in_len, dst, avail, &in_used, &out_used);
        if (r == LIBDEFLATE_SUCCESS) {
            out->len += out_used;
            return (ssize_t)in_used;
        }
        if (r != LIBDEFLATE_INSUFFICIENT_SPACE)
            return -EINVAL;
        if (out->len + avail >= lim)
            return -EMSGSIZE;
        int rc = grow(out, lim, 0);
        if (rc < 0)
            return rc;
    }
}

/* RFC 1952: one or more members, each checked (CRC-32, ISIZE) by libdeflate. */
static int inflate_gzip(struct compress_ctx *c, const uint8_t *in, size_t in_len, struct buf *out,
                        size_t lim)
{
    if (in_len < 18) /* 10-byte header + empty deflate block + 8-byte trailer */
        return -EINVAL;
    /* ISIZE of the last member: the total for the usual single member. */
    const uint8_t *t = in + in_len - 4;
    uint32_t isize = (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 |
                     (uint32_t)t[3] << 24;
    size_t hint = deflate_hint(in_len, isize, lim);
    size_t pos = 0;
    while (pos < in_len) {
        ssize_t used = inflate_unit(c, FMT_GZIP, in + pos, in_len - pos, out, lim, hint);
        if (used < 0)
            return (int)used;
        if (used == 0)
            return -EINVAL;
        pos += (size_t)used;
        hint = 0;
    }
    return 0;
}

/* RFC 9110 8.4.1.2: HTTP "deflate" is the zlib format (RFC 1950). Some
 * clients send raw DEFLATE; a first byte pair that is not a zlib header
 * (CM 8, window <= 32K, FCHECK) selects raw decoding. */
static int inflate_deflate(struct compress_ctx *c, const uint8_t *in, size_t in_len,
                           struct buf *out, size_t lim)
{
    if (in_len < 2)
        return -EINVAL;
    bool zlib = (in[0] & 0x0f) == 8 && (in[0] >> 4) <= 7 &&
                (((unsigned)in[0] << 8) | in[1]) % 31 == 0;
    ssize_t used = inflate_unit(c, zlib ? FMT_ZLIB : FMT_RAW, in, in_len, out, lim,
                                deflate_hint(in_len, 0, lim));
    if (used < 0)
        return (int)used;
    return (size_t)used == in_len ? 0 : -EINVAL; /* trailing garbage */
}

static int zstd_err(size_t ret)
{
    switch (ZSTD_getErrorCode(ret)) {
    case ZSTD_error_frameParameter_windowTooLarge:
        return -EMSGSIZE;
    case ZSTD_error_memory_allocation:
        return -ENOMEM;
    default:
        return -EINVAL;
    }
}

/* Streaming decode of all frames. Output goes straight into `out` up to the
 * limit; once there, a one-byte probe tells a bomb from an exact fit. */
static int inflate_zstd(struct compress_ctx *c, const uint8_t *in, size_t in_len,
                        struct buf *out, size_t lim)
{
    if (in_len == 0)
        return -EINVAL;
    size_t ret = ZSTD_DCtx_reset(c->zd, ZSTD_reset_session_only);
    if (ZSTD_isError(ret))
        return -EINVAL;
    /* The decoder allocates the frame's window: bound it by the limit. */
    int wlog = COMPRESS_ZSTD_MIN_WINDOW_LOG;
    while (wlog < COMPRESS_ZSTD_MAX_WINDOW_LOG && ((size_t)1 << wlog) < lim)
        wlog++;
    ret = ZSTD_DCtx_setParameter(c->zd, ZSTD_d_windowLogMax, wlog);
    if (ZSTD_isError(ret))
        return -EINVAL;

    size_t hint;
    unsigned long long fcs = ZSTD_getFrameContentSize(in, in_len);
    if (fcs == ZSTD_CONTENTSIZE_ERROR)
        return -EINVAL;
    if (fcs != ZSTD_CONTENTSIZE_UNKNOWN) {
        /* zstd checks the declared size, so a larger one is a bomb or corrupt. */
        if (fcs > lim)
            return -EMSGSIZE;
        hint = (size_t)fcs;
    } else {
        hint = in_len > lim / 4 ? lim : in_len * 4;
    }
    if (room(out, lim) < hint) {
        int rc = grow(out, lim, hint);
        if (rc < 0)
            return rc;
    }

    ZSTD_inBuffer zin = {in, in_len, 0};
    uint8_t probe;
    size_t frame_left = 1; /* from the last call that moved: 0 = frame complete */
    for (;;) {
        if (room(out, lim) == 0 && out->len < lim) {
            int rc = grow(out, lim, 0);
            if (rc < 0)
                return rc;
        }
        size_t avail = room(out, lim);
        bool probing = avail == 0;
        ZSTD_outBuffer zout = {probing ? &probe : out->data + out->len, probing ? 1 : avail, 0};
        size_t in_before = zin.pos;
        ret = ZSTD_decompressStream(c->zd, &zout, &zin);
        if (ZSTD_isError(ret))
            return zstd_err(ret);
        if (probing && zout.pos != 0)
            return -EMSGSIZE;
        if (!probing)
            out->len += zout.pos;
        /* A call without progress after a complete frame reports the next
         * frame's header size: only calls that moved say where we are. */
        bool moved = zout.pos != 0 || zin.pos != in_before;
        if (moved)
            frame_left = ret;
        if (zin.pos == zin.size && zout.pos < zout.size)
            break; /* input used up and everything decoded is flushed */
        if (!moved)
            return -EINVAL; /* no progress: cannot happen with valid input */
    }
    /* The last frame is incomplete. */
    return frame_left == 0 ? 0 : -EINVAL;
}

int compress_inflate(struct compress_ctx *c, enum compress_codec codec, const uint8_t *in,
                     size_t in_len, struct buf *out, size_t limit)
{
    if (c == NULL || out == NULL || (in == NULL && in_len != 0))
        return -EINVAL;
    buf_reset(out);
    size_t lim = limit;
    if (out->limit != 0 && out->limit < lim)
        lim = out->limit;

    switch (codec) {
    case COMPRESS_NONE:
        if (in_len > lim)
            return -EMSGSIZE;
        return buf_append(out, in, in_len);
    case COMPRESS_GZIP:
        return inflate_gzip(c, in, in_len, out, lim);
    case COMPRESS_ZSTD:
        return inflate_zstd(c, in, in_len, out, lim);
    case COMPRESS_DEFLATE:
        return inflate_deflate(c, in, in_len, out, lim);
    }
    return -ENOTSUP;
}

int compress_gzip(struct compress_ctx *c, const uint8_t *in, size_t len, struct buf *out,
                  int level)
{
    if (c == NULL || out == NULL || (in == NULL && len != 0))
        return -EINVAL;
    if (level <= 0)
        level = COMPRESS_DEFAULT_LEVEL;
    if (level > 12)
        return -EINVAL;
    if (c->dc == NULL || c->dc_level != level) {
        libdeflate_free_compressor(c->dc);
        c->dc = libdeflate_alloc_compressor(level);
        if (c->dc == NULL)
            return -ENOMEM;
        c->dc_level = level;
    }
    buf_reset(out);
    size_t bound = libdeflate_gzip_compress_bound(c->dc, len);
    int rc = buf_reserve(out, bound);
    if (rc == -EMSGSIZE && out->limit != 0) /* may still fit below the bound */
        rc = buf_reserve(out, out->limit);
    if (rc < 0)
        return rc;
    size_t avail = out->limit != 0 ? BASE_MIN(out->cap, out->limit) : out->cap;
    static const uint8_t empty;
    size_t n = libdeflate_gzip_compress(c->dc, len != 0 ? in : &empty, len, out->data, avail);
    if (n == 0)
        return -EMSGSIZE;
    out->len = n;
    return 0;
}
