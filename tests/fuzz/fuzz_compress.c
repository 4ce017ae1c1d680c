/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for lib/compress: inflates the input with a small limit
 * for the codec the first byte picks, twice (into an empty buf that must grow,
 * and into one preallocated at the limit), and checks both agree and stay
 * within the limit. Input: codec byte, big-endian u16 limit, data.
 *   codec byte bits 0-1: codec; bit 2: also gzip the data and roundtrip it. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compress/compress.h"

static struct compress_ctx *ctx;

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
