/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for lib/compress: inflates the input with a small limit
 * for the codec the first byte picks, twice (into an empty buf that must grow,
 * and into one preallocated at the limit), and checks both agree and stay
 * within the limit. Input: codec byte, big-endian u16 limit, data.
 *   codec byte bits 0-1: codec; bit 2: also gzip the data and roundtrip it;
 *   bit 3: compress the data first (two gzip members / two zstd frames / one
 *   zlib stream) so the expected result is known exactly; bit 4: with bit 3,
 *   corrupt one byte of the compressed form. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>
#include <zstd.h>

#include "compress/compress.h"

static struct compress_ctx *ctx;

/* Compress `in` with `codec` into z (any number of units). */
static void make_stream(enum compress_codec codec, const uint8_t *in, size_t n, struct buf *z)
{
    static struct libdeflate_compressor *zc;
    if (zc == NULL && (zc = libdeflate_alloc_compressor(6)) == NULL)
        abort();
    size_t half = n / 2;
    struct buf part = {0};
    buf_reset(z);
    switch (codec) {
    case COMPRESS_NONE:
        if (buf_append(z, in, n) != 0)
            abort();
        break;
    case COMPRESS_GZIP: /* multi-member */
        if (compress_gzip(ctx, in, half, &part, 1) != 0 ||
            buf_append(z, part.data, part.len) != 0 ||
            compress_gzip(ctx, in + half, n - half, &part, 9) != 0 ||
            buf_append(z, part.data, part.len) != 0)
            abort();
        break;
    case COMPRESS_ZSTD: /* two frames */
        for (int k = 0; k < 2; k++) {
            const uint8_t *src = k ? in + half : in;
            size_t len = k ? n - half : half;
            size_t bound = ZSTD_compressBound(len);
            if (buf_reserve(z, bound) != 0)
                abort();
            size_t r = ZSTD_compress(z->data + z->len, bound, src, len, 1 + k * 5);
            if (ZSTD_isError(r))
                abort();
            z->len += r;
        }
        break;
    case COMPRESS_DEFLATE: {
        size_t bound = libdeflate_zlib_compress_bound(zc, n);
        if (buf_reserve(z, bound) != 0)
            abort();
        z->len = libdeflate_zlib_compress(zc, n ? in : (const uint8_t *)"", n, z->data, bound);
        if (z->len == 0)
            abort();
        break;
    }
    }
    buf_free(&part);
}

static void known_stream(enum compress_codec codec, const uint8_t *in, size_t n, size_t limit,
                         bool corrupt, uint8_t flip)
{
    static struct buf z, out;
    make_stream(codec, in, n, &z);
    size_t at = z.len ? (limit + flip) % z.len : 0;
    if (corrupt && z.len)
        z.data[at] ^= flip ? flip : 1;
    int rc = compress_inflate(ctx, codec, z.data, z.len, &out, limit);
    if (out.len > limit && rc == 0)
        abort();
    if (!corrupt) {
        if (n <= limit && (rc != 0 || out.len != n || (n && memcmp(out.data, in, n) != 0)))
            abort();
        if (n > limit && rc != -EMSGSIZE)
            abort();
    } else if (rc != 0 && rc != -EINVAL && rc != -EMSGSIZE) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    if (ctx == NULL && compress_ctx_create(&ctx) != 0)
        abort();
    enum compress_codec codec = (enum compress_codec)(data[0] & 3);
    size_t limit = ((size_t)data[1] << 8 | data[2]) * 4; /* up to 256 KiB */
    const uint8_t *in = data + 3;
    size_t n = size - 3;

    struct buf grown, pre;
    if (buf_init(&grown, 0, 0) != 0 || buf_init(&pre, limit, limit) != 0)
        abort();
    uint8_t *pre_data = pre.data;
    int rc1 = compress_inflate(ctx, codec, in, n, &grown, limit);
    int rc2 = compress_inflate(ctx, codec, in, n, &pre, limit);
    if (rc1 != 0 && rc1 != -EMSGSIZE && rc1 != -EINVAL)
        abort();
    if (rc1 != rc2)
        abort();
    if (rc1 == 0) {
        if (grown.len > limit || grown.len != pre.len ||
            (grown.len && memcmp(grown.data, pre.data, grown.len) != 0))
            abort();
        if (grown.cap > 2 * limit + 4096)
            abort();
    }
    if (limit > 0 && pre.data != pre_data) /* a buffer preallocated to the limit stays */
        abort();

    if (data[0] & 8)
        known_stream(codec, in, n, limit / 4, (data[0] & 16) != 0, data[1] ^ data[2]);

    if (data[0] & 4) {
        /* gzip whatever came in and get it back, exactly at the limit */
        if (compress_gzip(ctx, in, n, &pre, 1) == 0) {
            buf_reset(&grown);
            if (compress_inflate(ctx, COMPRESS_GZIP, pre.data, pre.len, &grown, n) != 0)
                abort();
            if (grown.len != n || (n && memcmp(grown.data, in, n) != 0))
                abort();
        } else if (pre.limit >= n + 64) {
            abort(); /* stored blocks always fit in n + small overhead */
        }
    }
    buf_free(&grown);
    buf_free(&pre);
    return 0;
}
