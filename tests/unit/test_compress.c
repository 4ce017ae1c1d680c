/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for lib/compress: roundtrips, multi-member gzip, multi-frame zstd,
 * decompression bombs against the limit, corrupt, truncated and lying input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libdeflate.h>
#include <zstd.h>

#include "compress/compress.h"

#define MIB (1024u * 1024u)

static struct compress_ctx *ctx;

static int setup(void **state)
{
    (void)state;
    return compress_ctx_create(&ctx) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    compress_ctx_destroy(ctx);
    ctx = NULL;
    return 0;
}

/* Mildly compressible, deterministic test data. */
static uint8_t *make_data(size_t n, uint32_t seed)
{
    uint8_t *d = malloc(n ? n : 1);
    assert_non_null(d);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        d[i] = (x % 4 == 0) ? (uint8_t)x : (uint8_t)"span-attribute "[i % 15];
    }
    return d;
}

static void gzip_into(const uint8_t *in, size_t n, struct buf *out)
{
    assert_int_equal(buf_init(out, 0, 0), 0);
    assert_int_equal(compress_gzip(ctx, in, n, out, 0), 0);
}

static void zlib_into(const uint8_t *in, size_t n, struct buf *out, bool raw)
{
    struct libdeflate_compressor *c = libdeflate_alloc_compressor(6);
    assert_non_null(c);
    size_t bound =
        raw ? libdeflate_deflate_compress_bound(c, n) : libdeflate_zlib_compress_bound(c, n);
    assert_int_equal(buf_init(out, bound, 0), 0);
    out->len = raw ? libdeflate_deflate_compress(c, in, n, out->data, bound)
                   : libdeflate_zlib_compress(c, in, n, out->data, bound);
    assert_true(out->len > 0);
    libdeflate_free_compressor(c);
}

/* One zstd frame appended to out; content size in the header or not. */
static void zstd_append(const uint8_t *in, size_t n, struct buf *out, bool with_size, int wlog)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    assert_non_null(c);
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, with_size ? 1 : 0);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    if (wlog)
        ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, wlog);
    size_t bound = ZSTD_compressBound(n) + 64;
    assert_int_equal(buf_reserve(out, bound), 0);
    ZSTD_outBuffer o = {out->data + out->len, bound, 0};
    ZSTD_inBuffer i = {in, n, 0};
    if (!with_size) {
        /* streaming without a pledged size: the frame cannot declare one */
        size_t half = n / 2;
        ZSTD_inBuffer i1 = {in, half, 0};
        assert_false(ZSTD_isError(ZSTD_compressStream2(c, &o, &i1, ZSTD_e_continue)));
        i.pos = i1.pos;
    }
    size_t r;
    do {
        r = ZSTD_compressStream2(c, &o, &i, ZSTD_e_end);
        assert_false(ZSTD_isError(r));
    } while (r != 0);
    out->len += o.pos;
    ZSTD_freeCCtx(c);
}

static void expect_inflate(enum compress_codec codec, const struct buf *z, const uint8_t *want,
                           size_t want_len, size_t limit)
{
    struct buf out;
    assert_int_equal(buf_init(&out, 0, 0), 0);
    assert_int_equal(compress_inflate(ctx, codec, z->data, z->len, &out, limit), 0);
    assert_int_equal(out.len, want_len);
    if (want_len)
        assert_memory_equal(out.data, want, want_len);
    buf_free(&out);
}

static void test_codec_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int rc;
        enum compress_codec c;
    } t[] = {
        {"", 0, COMPRESS_NONE},
        {"identity", 0, COMPRESS_NONE},
        {"IDENTITY", 0, COMPRESS_NONE},
        {"gzip", 0, COMPRESS_GZIP},
        {"x-gzip", 0, COMPRESS_GZIP},
        {"GZip", 0, COMPRESS_GZIP},
        {"zstd", 0, COMPRESS_ZSTD},
        {"deflate", 0, COMPRESS_DEFLATE},
        {"br", -ENOTSUP, 0},
        {"gzip, zstd", -ENOTSUP, 0},
        {"gzip ", -ENOTSUP, 0},
        {"compress", -ENOTSUP, 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        enum compress_codec c = (enum compress_codec)99;
        assert_int_equal(compress_codec_parse(t[i].s, &c), t[i].rc);
        if (t[i].rc == 0)
            assert_int_equal(c, t[i].c);
        else
            assert_int_equal(c, 99);
    }
    enum compress_codec c = COMPRESS_GZIP;
    assert_int_equal(compress_codec_parse(NULL, &c), 0);
    assert_int_equal(c, COMPRESS_NONE);
    assert_string_equal(compress_codec_name(COMPRESS_ZSTD), "zstd");
    assert_string_equal(compress_codec_name(COMPRESS_NONE), "identity");
    assert_string_equal(compress_error_reason(-EMSGSIZE), "too_large");
    assert_string_equal(compress_error_reason(-EINVAL), "corrupt");
    assert_string_equal(compress_error_reason(-ENOTSUP), "unsupported");
    assert_string_equal(compress_error_reason(-ENOMEM), "no_memory");
    assert_string_equal(compress_error_reason(-EIO), "internal");
    assert_true(strlen(compress_error_message(-EMSGSIZE)) > 0);
}

static void test_ctx_lifecycle(void **state)
{
    (void)state;
    compress_ctx_destroy(NULL);
    struct compress_ctx *c = NULL;
    assert_int_equal(compress_ctx_create(&c), 0);
    assert_non_null(c);
    compress_ctx_destroy(c);
    struct buf out = {0};
    assert_int_equal(compress_inflate(NULL, COMPRESS_NONE, NULL, 0, &out, 10), -EINVAL);
    assert_int_equal(compress_inflate(ctx, COMPRESS_NONE, NULL, 5, &out, 10), -EINVAL);
    assert_int_equal(
        compress_inflate(ctx, (enum compress_codec)42, (const uint8_t *)"x", 1, &out, 10),
        -ENOTSUP);
}

static void test_none(void **state)
{
    (void)state;
    struct buf out;
    assert_int_equal(buf_init(&out, 0, 0), 0);
    assert_int_equal(compress_inflate(ctx, COMPRESS_NONE, (const uint8_t *)"hello", 5, &out, 5), 0);
    assert_int_equal(out.len, 5);
    assert_int_equal(compress_inflate(ctx, COMPRESS_NONE, (const uint8_t *)"hello", 5, &out, 4),
                     -EMSGSIZE);
    assert_int_equal(compress_inflate(ctx, COMPRESS_NONE, NULL, 0, &out, 4), 0);
    assert_int_equal(out.len, 0);
    buf_free(&out);
}

static void test_gzip_roundtrip(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 100, 4096, 65537, 3 * MIB};
    static const int levels[] = {0, 1, 6, 9, 12};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *d = make_data(sizes[i], (uint32_t)i);
        for (size_t l = 0; l < sizeof(levels) / sizeof(levels[0]); l++) {
            if (sizes[i] > MIB && levels[l] > 6)
                continue; /* slow levels on big inputs add nothing */
            struct buf z;
            assert_int_equal(buf_init(&z, 0, 0), 0);
            assert_int_equal(compress_gzip(ctx, d, sizes[i], &z, levels[l]), 0);
            assert_true(z.len >= 18);
            assert_int_equal(z.data[0], 0x1f);
            assert_int_equal(z.data[1], 0x8b);
            expect_inflate(COMPRESS_GZIP, &z, d, sizes[i], sizes[i]);
            buf_free(&z);
        }
        free(d);
    }
    struct buf z = {0};
    assert_int_equal(compress_gzip(ctx, (const uint8_t *)"x", 1, &z, 13), -EINVAL);
    /* output buf limit below the bound still works when the result fits */
    uint8_t *zeros = calloc(1, 100000);
    assert_non_null(zeros);
    assert_int_equal(buf_init(&z, 0, 2000), 0);
    assert_int_equal(compress_gzip(ctx, zeros, 100000, &z, 6), 0);
    assert_true(z.len <= 2000);
    expect_inflate(COMPRESS_GZIP, &z, zeros, 100000, 100000);
    buf_free(&z);
    /* and fails cleanly when it does not */
    uint8_t *rnd = make_data(10000, 7);
    for (size_t i = 0; i < 10000; i++)
        rnd[i] = (uint8_t)(rnd[i] * 131 + i * 7919 + (i >> 3) * 31);
    assert_int_equal(buf_init(&z, 0, 64), 0);
    assert_int_equal(compress_gzip(ctx, rnd, 10000, &z, 6), -EMSGSIZE);
    buf_free(&z);
    free(rnd);
    free(zeros);
}

static void test_gzip_multi_member(void **state)
{
    (void)state;
    uint8_t *a = make_data(200000, 1);
    struct buf z1, z2, z3, all;
    gzip_into(a, 200000, &z1);
    gzip_into((const uint8_t *)"", 0, &z2);
    gzip_into((const uint8_t *)"x", 1, &z3);
    assert_int_equal(buf_init(&all, 0, 0), 0);
    buf_append(&all, z1.data, z1.len);
    buf_append(&all, z2.data, z2.len);
    buf_append(&all, z3.data, z3.len);
    /* ISIZE at the end says 1 byte: only a hint, the output grows past it */
    uint8_t *want = malloc(200001);
    assert_non_null(want);
    memcpy(want, a, 200000);
    want[200000] = 'x';
    expect_inflate(COMPRESS_GZIP, &all, want, 200001, 4 * MIB);
    expect_inflate(COMPRESS_GZIP, &all, want, 200001, 200001);
    struct buf out;
    assert_int_equal(buf_init(&out, 0, 0), 0);
    assert_int_equal(compress_inflate(ctx, COMPRESS_GZIP, all.data, all.len, &out, 200000),
                     -EMSGSIZE);
    /* the same member twice */
    buf_reset(&all);
    buf_append(&all, z3.data, z3.len);
    buf_append(&all, z3.data, z3.len);
    expect_inflate(COMPRESS_GZIP, &all, (const uint8_t *)"xx", 2, 10);
    /* trailing garbage, trailing zeros, a truncated second member */
    buf_reset(&all);
    buf_append(&all, z3.data, z3.len);
    buf_append(&all, "\0\0\0\0", 4);
    assert_int_equal(compress_inflate(ctx, COMPRESS_GZIP, all.data, all.len, &out, 10), -EINVAL);
    buf_reset(&all);
    buf_append(&all, z3.data, z3.len);
    buf_append(&all, z3.data, z3.len - 1);
    assert_int_equal(compress_inflate(ctx, COMPRESS_GZIP, all.data, all.len, &out, 10), -EINVAL);
    buf_free(&out);
    buf_free(&z1);
    buf_free(&z2);
    buf_free(&z3);
    buf_free(&all);
    free(a);
    free(want);
}

static void test_zstd(void **state)
{
    (void)state;
    uint8_t *a = make_data(300000, 3);
    struct buf z;
    assert_int_equal(buf_init(&z, 0, 0), 0);
    zstd_append(a, 300000, &z, true, 0);
    expect_inflate(COMPRESS_ZSTD, &z, a, 300000, 300000);
    /* several frames, one without a content size, one empty, a skippable one */
    zstd_append(a, 1000, &z, false, 0);
    zstd_append(a, 0, &z, true, 0);
    static const uint8_t skippable[] = {0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 'a', 'b', 'c'};
    buf_append(&z, skippable, sizeof(skippable));
    zstd_append(a + 1000, 5000, &z, false, 0);
    uint8_t *want = malloc(306000);
    assert_non_null(want);
    memcpy(want, a, 300000);
    memcpy(want + 300000, a, 1000);
    memcpy(want + 301000, a + 1000, 5000);
    expect_inflate(COMPRESS_ZSTD, &z, want, 306000, 306000);
    expect_inflate(COMPRESS_ZSTD, &z, want, 306000, 64 * MIB);
    struct buf out;
    assert_int_equal(buf_init(&out, 0, 0), 0);
    assert_int_equal(compress_inflate(ctx, COMPRESS_ZSTD, z.data, z.len, &out, 305999), -EMSGSIZE);
    /* the first frame's declared size alone is over the limit */
    assert_int_equal(compress_inflate(ctx, COMPRESS_ZSTD, z.data, z.len, &out, 1000), -EMSGSIZE);
    /* every truncation of a multi-frame stream is an error */
    for (size_t cut = 1; cut < z.len; cut += 997) {
        int rc = compress_inflate(ctx, COMPRESS_ZSTD, z.data, cut, &out, 64 * MIB);
        assert_int_equal(rc, -EINVAL);
    }
    buf_free(&out);
    buf_free(&z);
    free(want);
    free(a);
}

/* A frame that declares a 128 MiB window: refused under a small limit
 * (decoder memory stays bounded), accepted when the limit allows it. */
static void test_zstd_window(void **state)
{
    (void)state;
    uint8_t *a = make_data(100000, 4);
    struct buf z;
    assert_int_equal(buf_init(&z, 0, 0), 0);
    zstd_append(a, 100000, &z, false, 27);
    /* RFC 8878 3.1.1.1: no Single_Segment flag, Window_Descriptor exponent 17 */
    assert_int_equal(z.data[4] & 0x20, 0);
    assert_int_equal(10 + (z.data[5] >> 3), 27);
    struct buf out;
    assert_int_equal(buf_init(&out, 0, 0), 0);
    assert_int_equal(compress_inflate(ctx, COMPRESS_ZSTD, z.data, z.len, &out, MIB), -EMSGSIZE);
    expect_inflate(COMPRESS_ZSTD, &z, a, 100000, 128 * MIB);
    buf_free(&out);
    buf_free(&z);
    free(a);
}

static void test_deflate(void **state)
{
    (void)state;
    uint8_t *a = make_data(70000, 5);
    struct buf z;
    zlib_into(a, 70000, &z, false);
    expect_inflate(COMPRESS_DEFLATE, &z, a, 70000, 70000);
    struct buf out;
    assert_int_equal(buf_init(&out, 0, 0), 0);
    assert_int_equal(compress_inflate(ctx, COMPRESS_DEFLATE, z.data, z.len, &out, 69999),
                     -EMSGSIZE);
    buf_append(&z, "x", 1);
    assert_int_equal(compress_inflate(ctx, COMPRESS_DEFLATE, z.data, z.len, &out, MIB), -EINVAL);
    buf_free(&z);
    /* raw DEFLATE as some clients send it */
    zlib_into(a, 70000, &z, true);
    expect_inflate(COMPRESS_DEFLATE, &z, a, 70000, 70000);
    buf_free(&z);
    buf_free(&out);
    free(a);
}

/* Every prefix of a single gzip member / zlib stream / zstd frame is refused,
 * as are flipped bytes and garbage. */
static void test_corrupt_and_truncated(void **state)
{
    (void)state;
    uint8_t *a = make_data(5000, 6);
    struct buf zs[3];
    gzip_into(a, 5000, &zs[0]);
    zlib_into(a, 5000, &zs[1], false);
    assert_int_equal(buf_init(&zs[2], 0, 0), 0);
    zstd_append(a, 5000, &zs[2], true, 0);
    static const enum compress_codec codecs[] = {COMPRESS_GZIP, COMPRESS_DEFLATE, COMPRESS_ZSTD};
    struct buf out;
    assert_int_equal(buf_init(&out, 0, 0), 0);
    for (int k = 0; k < 3; k++) {
        struct buf *z = &zs[k];
        for (size_t cut = 0; cut < z->len; cut++) {
            int rc = compress_inflate(ctx, codecs[k], z->data, cut, &out, MIB);
            if (rc != -EINVAL)
                print_error("codec %d cut %zu/%zu rc %d\n", k, cut, z->len, rc);
            assert_int_equal(rc, -EINVAL);
        }
        assert_int_equal(compress_inflate(ctx, codecs[k], z->data, z->len, &out, MIB), 0);
        /* flip one bit in the payload or the checksum */
        size_t flips[] = {z->len / 2, z->len - 1};
        for (size_t f = 0; f < 2; f++) {
            z->data[flips[f]] ^= 0x10;
            int rc = compress_inflate(ctx, codecs[k], z->data, z->len, &out, MIB);
            assert_true(rc == -EINVAL || rc == -EMSGSIZE);
            z->data[flips[f]] ^= 0x10;
        }
        buf_free(z);
    }
    uint8_t *garbage = make_data(1000, 9);
    for (int k = 0; k < 3; k++)
        assert_int_equal(compress_inflate(ctx, codecs[k], garbage, 1000, &out, MIB), -EINVAL);
    buf_free(&out);
    free(garbage);
    free(a);
}

/* ISIZE lying high: never trusted beyond what the input can expand to, so
 * the output buffer stays small; lying low: the output just grows. */
static void test_lying_isize(void **state)
{
    (void)state;
    struct buf z, out;
    gzip_into((const uint8_t *)"hello hello hello", 17, &z);
    memset(z.data + z.len - 4, 0xff, 4); /* claims 4 GiB */
    assert_int_equal(buf_init(&out, 0, 0), 0);
    assert_int_equal(compress_inflate(ctx, COMPRESS_GZIP, z.data, z.len, &out, 64 * MIB), -EINVAL);
    assert_true(out.cap <= 64 * 1024);
    buf_free(&out);
    buf_free(&z);

    uint8_t *a = make_data(500000, 8);
    gzip_into(a, 500000, &z);
    memcpy(z.data + z.len - 4, "\x0a\0\0\0", 4); /* claims 10 bytes */
    assert_int_equal(buf_init(&out, 0, 0), 0);
    /* decoded fully into a grown buffer, then the ISIZE check fails */
    assert_int_equal(compress_inflate(ctx, COMPRESS_GZIP, z.data, z.len, &out, 64 * MIB), -EINVAL);
    assert_int_equal(compress_inflate(ctx, COMPRESS_GZIP, z.data, z.len, &out, 100000), -EMSGSIZE);
    buf_free(&out);
    buf_free(&z);
    free(a);
}

/* Output exactly at the limit is fine; one byte over is a bomb. A buf whose
 * own limit is lower wins. A preallocated buf is used as is. */
static void test_limit_edges(void **state)
{
    (void)state;
    uint8_t *a = make_data(12345, 10);
    struct buf z[3];
    gzip_into(a, 12345, &z[0]);
    zlib_into(a, 12345, &z[1], false);
    assert_int_equal(buf_init(&z[2], 0, 0), 0);
    zstd_append(a, 12345, &z[2], false, 0);
    static const enum compress_codec codecs[] = {COMPRESS_GZIP, COMPRESS_DEFLATE, COMPRESS_ZSTD};
    for (int k = 0; k < 3; k++) {
        struct buf out;
        assert_int_equal(buf_init(&out, 0, 0), 0);
        assert_int_equal(compress_inflate(ctx, codecs[k], z[k].data, z[k].len, &out, 12345), 0);
        assert_int_equal(out.len, 12345);
        assert_int_equal(compress_inflate(ctx, codecs[k], z[k].data, z[k].len, &out, 12344),
                         -EMSGSIZE);
        assert_int_equal(compress_inflate(ctx, codecs[k], z[k].data, z[k].len, &out, 0), -EMSGSIZE);
        buf_free(&out);
        assert_int_equal(buf_init(&out, 0, 12000), 0);
        assert_int_equal(compress_inflate(ctx, codecs[k], z[k].data, z[k].len, &out, MIB),
                         -EMSGSIZE);
        buf_free(&out);
        assert_int_equal(buf_init(&out, 20000, 20000), 0);
        uint8_t *data = out.data;
        assert_int_equal(compress_inflate(ctx, codecs[k], z[k].data, z[k].len, &out, MIB), 0);
        assert_ptr_equal(out.data, data);
        assert_memory_equal(out.data, a, 12345);
        buf_free(&out);
        buf_free(&z[k]);
    }
    free(a);
}

/* 100 MiB of zeros, limit 1 MiB: refused fast, with no big allocation. */
static void test_bombs(void **state)
{
    (void)state;
    size_t n = 100 * MIB;
    uint8_t *zeros = calloc(1, n);
    assert_non_null(zeros);
    struct buf z[3];
    assert_int_equal(buf_init(&z[0], 0, 0), 0);
    assert_int_equal(compress_gzip(ctx, zeros, n, &z[0], 1), 0);
    zlib_into(zeros, n, &z[1], false);
    assert_int_equal(buf_init(&z[2], 0, 0), 0);
    zstd_append(zeros, n, &z[2], false, 0);
    free(zeros);
    static const enum compress_codec codecs[] = {COMPRESS_GZIP, COMPRESS_DEFLATE, COMPRESS_ZSTD};
    for (int k = 0; k < 3; k++) {
        assert_true(z[k].len < n / 100);
        struct buf out;
        assert_int_equal(buf_init(&out, 0, 0), 0);
        uint64_t t0 = base_now_ms();
        assert_int_equal(compress_inflate(ctx, codecs[k], z[k].data, z[k].len, &out, MIB),
                         -EMSGSIZE);
        uint64_t ms = base_now_ms() - t0;
        print_message("bomb %s: %zu -> 100 MiB, refused in %llu ms, out cap %zu\n",
                      compress_codec_name(codecs[k]), z[k].len, (unsigned long long)ms, out.cap);
        assert_true(out.cap <= 2 * MIB);
        assert_true(ms < 2000);
        buf_free(&out);
        buf_free(&z[k]);
    }
    /* a zstd frame that declares 100 MiB is refused before decoding */
    struct buf zz;
    assert_int_equal(buf_init(&zz, 0, 0), 0);
    zeros = calloc(1, n);
    assert_non_null(zeros);
    zstd_append(zeros, n, &zz, true, 0);
    free(zeros);
    struct buf out;
    assert_int_equal(buf_init(&out, 0, 0), 0);
    assert_int_equal(compress_inflate(ctx, COMPRESS_ZSTD, zz.data, zz.len, &out, MIB), -EMSGSIZE);
    assert_true(out.cap <= 2 * MIB);
    buf_free(&out);
    buf_free(&zz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_parse),
        cmocka_unit_test(test_ctx_lifecycle),
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_gzip_roundtrip),
        cmocka_unit_test(test_gzip_multi_member),
        cmocka_unit_test(test_zstd),
        cmocka_unit_test(test_zstd_window),
        cmocka_unit_test(test_deflate),
        cmocka_unit_test(test_corrupt_and_truncated),
        cmocka_unit_test(test_lying_isize),
        cmocka_unit_test(test_limit_edges),
        cmocka_unit_test(test_bombs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
