/* SPDX-License-Identifier: Apache-2.0 */
/* Content-Encoding support: bounded decompression of request bodies (gzip,
 * zstd, deflate) for the receiver, with a hard output limit against
 * decompression bombs, and gzip compression for the exporters. */
#ifndef OTLP_COMPRESS_H
#define OTLP_COMPRESS_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

enum compress_codec { COMPRESS_NONE, COMPRESS_GZIP, COMPRESS_ZSTD, COMPRESS_DEFLATE };

/* Errors the module returns: X(negative errno, metric reason label, message). */
#define COMPRESS_ERRORS(X)                                                      \
    X(-EMSGSIZE, too_large, "decompressed size exceeds the limit")            \
    X(-EINVAL, corrupt, "corrupt or truncated compressed data")                \
    X(-ENOTSUP, unsupported, "unsupported content encoding")                   \
    X(-ENOMEM, no_memory, "out of memory")

/* Metric reason label and message for an error above; "internal" /
 * "internal error" for anything else. */
const char *compress_error_reason(int err);
const char *compress_error_message(int err);

/*
 * Map a Content-Encoding value to a codec, case-insensitively. NULL, "" and
 * "identity" are COMPRESS_NONE; "gzip" and "x-gzip" gzip; "zstd"; "deflate"
 * (zlib-wrapped, RFC 9110 8.4.1.2). Returns 0, or -ENOTSUP for anything else
 * (including lists such as "gzip, zstd"); *out is untouched on error.
 */
int compress_codec_parse(const char *content_encoding, enum compress_codec *out);

/* "identity", "gzip", "zstd", "deflate"; "?" for an invalid value. */
const char *compress_codec_name(enum compress_codec codec);

/* Per-thread (de)compression state. Not thread-safe: one per worker. */
struct compress_ctx;

/* Allocate the libdeflate decompressor and compressor (level 6) and a zstd
 * decompression context. Returns 0 and *out (caller destroys), or -ENOMEM. */
int compress_ctx_create(struct compress_ctx **out);

/* Free everything; NULL is a no-op. */
void compress_ctx_destroy(struct compress_ctx *c);

/*
 * Decompress `in` (borrowed) into `out`, which is reset first. The output
 * never exceeds `limit` bytes, nor out->limit when that is non-zero; `out`
 * grows toward that bound only as far as needed, so a caller that gives it
 * its full capacity up front gets no allocation. COMPRESS_NONE copies.
 *   gzip:    any number of concatenated members (RFC 1952 2.2); the ISIZE
 *            trailer is only a sizing hint; anything after the last member
 *            that is not a member is corrupt.
 *   zstd:    any number of frames (skippable frames are skipped); the frame
 *            window may not exceed max(limit, 8 MiB) (bounds decoder memory).
 *   deflate: one zlib stream; raw DEFLATE (no zlib header), as some clients
 *            send, is accepted too.
 * Returns 0; -EMSGSIZE when the output would exceed the limit (a bomb, or a
 * zstd window too large); -EINVAL for corrupt or truncated input (also empty
 * input for a compressed codec); -ENOTSUP for an unknown codec; -ENOMEM. On
 * error out->len is unspecified.
 */
int compress_inflate(struct compress_ctx *c, enum compress_codec codec, const uint8_t *in,
                     size_t in_len, struct buf *out, size_t limit);

/*
 * gzip `in` (borrowed) into `out`, which is reset first. `level` 1..12
 * (libdeflate levels), <= 0 means 6. Changing the level between calls
 * reallocates the compressor, so keep it constant per context.
 * Returns 0; -EINVAL for level > 12; -EMSGSIZE when the result does not fit
 * out->limit; -ENOMEM.
 */
int compress_gzip(struct compress_ctx *c, const uint8_t *in, size_t len, struct buf *out,
                  int level);

#endif
